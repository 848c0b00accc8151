//! A real scrape: Debian's `prometheus` loads the shipped alerting rules and
//! scrapes the service on loopback every second; the service is fed flows
//! that expose a high-risk port, and the alert becomes firing in
//! Prometheus's HTTP API. Also runs `promtool test rules` on the shipped
//! rule tests, so `cargo test` alone covers them.

mod support;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use exposure::flow::Flow;
use exposure::health::Health;
use exposure::metrics::Metrics;
use exposure::state::wall_now_ms;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;
use support::{free_port, repo, tool, wait_until, ApiServer};

/// How long Prometheus may take to start, scrape and fire.
const TIMEOUT: Duration = Duration::from_secs(40);

/// A Prometheus server process, killed when dropped.
struct Prometheus {
    child: RefCell<Child>,
    addr: SocketAddr,
    log: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second with the shipped rules.
    fn start(dir: &Path, target: SocketAddr) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {rules}\n\
                 scrape_configs:\n  - job_name: exposure\n    static_configs:\n      - targets: [\"{target}\"]\n",
                rules = repo("config/prometheus/alerts.yml").display(),
            ),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = dir.join("prometheus.log");
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("prometheus starts");
        Prometheus {
            child: RefCell::new(child),
            addr,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET an API path and parse its JSON `data`.
    fn api(&self, path: &str) -> Option<Value> {
        let response = support::try_request(self.addr, "GET", path, &[], b"").ok()?;
        if response.status != 200 {
            return None;
        }
        let v: Value = serde_json::from_slice(&response.body).ok()?;
        (v["status"] == "success").then(|| v["data"].clone())
    }

    /// The value of an instant query's first sample.
    fn query(&self, promql: &str) -> Option<f64> {
        let q = utf8_percent_encode(promql, NON_ALPHANUMERIC);
        let data = self.api(&format!("/api/v1/query?query={q}"))?;
        data["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Polls `check` until it gives a value, or fails with the log.
    fn wait_for<T>(&self, what: &str, mut check: impl FnMut(&Self) -> Option<T>) -> T {
        let attempt = || {
            if let Some(v) = check(self) {
                return Ok(v);
            }
            if let Ok(Some(status)) = self.child.borrow_mut().try_wait() {
                panic!(
                    "prometheus exited ({status}) waiting for {what}:\n{}",
                    self.log()
                );
            }
            Err(())
        };
        wait_until(TIMEOUT, Duration::from_millis(200), attempt, |()| {
            format!(
                "{what}: not seen after {TIMEOUT:?}; prometheus log:\n{}",
                self.log()
            )
        })
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let child = self.child.get_mut();
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The alerts in `state` named `name`.
fn alerts(data: &Value, name: &str, state: &str) -> Vec<Value> {
    data["alerts"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|a| a["labels"]["alertname"] == name && a["state"] == state)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn prometheus_fires_the_high_risk_alert_from_a_live_scrape() {
    let runtime = support::runtime();
    let engine = Arc::new(support::engine());
    let metrics = Arc::new(Metrics::new(Arc::clone(&engine)));
    let health = Arc::new(Health::default());
    health.set_restored(true);
    let server = runtime.block_on(ApiServer::start(
        Arc::clone(&engine),
        metrics,
        health,
        support::no_auth(),
        wall_now_ms,
    ));
    let service = server.addr;

    let dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::start(dir.path(), service);
    // Scraped at least once before anything is exposed: the counter's 0 is
    // what the increase is measured from.
    let before = prometheus.wait_for("a first scrape of the service", |p| {
        p.query(r#"exposure_new_exposures_total{job="exposure",risk_level="3"}"#)
    });
    assert_eq!(before, 0.0);
    let data = prometheus.api("/api/v1/alerts").expect("alerts answered");
    assert!(
        alerts(&data, "ExposureHighRiskPortNewlyExposed", "firing").is_empty(),
        "fired before any exposure: {data}"
    );

    // Telnet (risk level 3) answers an Internet client.
    let now = wall_now_ms();
    for f in support::conversation("203.0.113.12", 23, "192.0.2.9", 1_000, 1_000, now - 5_000) {
        engine.apply(&Flow { packets: 10, ..f }, now);
    }

    let firing = prometheus.wait_for("ExposureHighRiskPortNewlyExposed firing", |p| {
        let data = p.api("/api/v1/alerts")?;
        alerts(&data, "ExposureHighRiskPortNewlyExposed", "firing")
            .into_iter()
            .next()
    });
    assert_eq!(firing["labels"]["severity"], "critical", "{firing}");
    assert_eq!(firing["labels"]["risk_level"], "3", "{firing}");
    assert_eq!(firing["labels"]["job"], "exposure", "{firing}");
    assert!(
        firing["annotations"]["action"]
            .as_str()
            .is_some_and(|a| a.contains("block the port")),
        "{firing}"
    );
    // The per-port gauge names the port, through Prometheus too.
    let ips = prometheus.wait_for("the Telnet port in exposure_port_public_ips", |p| {
        p.query(
            r#"exposure_port_public_ips{port="23",protocol="tcp",service="Telnet",risk_level="3"}"#,
        )
    });
    assert_eq!(ips, 1.0);
    // The scrape was clean: Prometheus took every sample.
    let up = prometheus.query(r#"up{job="exposure"}"#);
    assert_eq!(up, Some(1.0));

    drop(prometheus);
    let _ = runtime.block_on(server.stop());
}

#[test]
fn the_shipped_alerting_rules_pass_their_promtool_tests() {
    let out = Command::new(tool("promtool"))
        .args(["test", "rules"])
        .arg(repo("config/prometheus/alerts_test.yml"))
        .output()
        .expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_shipped_prometheus_config_and_rules_are_valid() {
    let out = Command::new(tool("promtool"))
        .args(["check", "config"])
        .arg(repo("config/prometheus/prometheus.yml"))
        .output()
        .expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check config:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
