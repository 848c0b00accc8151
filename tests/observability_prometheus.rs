//! A real scrape: Debian's `prometheus` loads the shipped alerting rules and
//! scrapes the service on loopback every second; the service is fed flows
//! that expose a high-risk port, and the alert becomes firing in
//! Prometheus's HTTP API. Also runs `promtool test rules` on the shipped
//! rule tests, so `cargo test` alone covers them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use exposure::api::{self, ApiState};
use exposure::catalog::Catalog;
use exposure::classify::Classifier;
use exposure::config::{ApiConfig, Auth, Clock};
use exposure::flow::tcp_flags::{ACK, PSH, SYN};
use exposure::flow::{Flow, PROTO_TCP};
use exposure::health::Health;
use exposure::metrics::Metrics;
use exposure::state::{wall_now_ms, Engine, Settings};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// How long Prometheus may take to start, scrape and fire.
const TIMEOUT: Duration = Duration::from_secs(40);

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The binary `name` on PATH; its absence fails the test, never skips it.
fn tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed: run .ci/install-tools (Debian's prometheus package)")
        })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.0 GET; returns (status, body).
fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

/// A Prometheus server process, killed when dropped.
struct Prometheus {
    child: Child,
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
        Prometheus { child, addr, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET an API path and parse its JSON `data`.
    fn api(&self, path: &str) -> Option<Value> {
        let (status, body) = get(self.addr, path).ok()?;
        if status != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&body).ok()?;
        (v["status"] == "success").then(|| v["data"].clone())
    }

    /// The value of an instant query's first sample.
    fn query(&self, promql: &str) -> Option<f64> {
        let q = utf8_percent_encode(promql, NON_ALPHANUMERIC);
        let data = self.api(&format!("/api/v1/query?query={q}"))?;
        data["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Polls `check` until it gives a value, or fails with the log.
    fn wait_for<T>(&mut self, what: &str, mut check: impl FnMut(&Self) -> Option<T>) -> T {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(v) = check(self) {
                return v;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "prometheus exited ({status}) waiting for {what}:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not seen after {TIMEOUT:?}; prometheus log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn flow(src: &str, sport: u16, dst: &str, dport: u16, time_ms: i64) -> Flow {
    Flow {
        src_addr: src.parse().unwrap(),
        dst_addr: dst.parse().unwrap(),
        src_port: sport,
        dst_port: dport,
        proto: PROTO_TCP,
        tcp_flags: SYN | ACK | PSH,
        bytes: 1_000,
        packets: 10,
        time_ms,
        label: None,
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let settings = Settings {
        retention_days: 30,
        clock: Clock::Wall,
        max_future_skew_ms: 300_000,
        max_endpoints: 1_000,
        max_pending: 1_000,
    };
    let classifier = Classifier::new(&["203.0.113.0/24".parse().unwrap()], &[]);
    let engine = Arc::new(Engine::new(
        classifier,
        Arc::new(Catalog::builtin()),
        settings,
    ));
    let metrics = Arc::new(Metrics::new(Arc::clone(&engine)));
    let health = Arc::new(Health::default());
    health.set_restored(true);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let service = listener.local_addr().unwrap();
    let state = ApiState {
        engine: Arc::clone(&engine),
        metrics,
        health,
        config: ApiConfig {
            listen: service,
            auth: Auth::None,
            ..ApiConfig::default()
        },
        wall_clock: wall_now_ms,
    };
    let stop = CancellationToken::new();
    let server = runtime.spawn(api::serve(listener, api::router(state), stop.clone()));

    let dir = tempfile::tempdir().unwrap();
    let mut prometheus = Prometheus::start(dir.path(), service);
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
    engine.apply(
        &flow("192.0.2.9", 61000, "203.0.113.12", 23, now - 5_000),
        now,
    );
    engine.apply(
        &flow("203.0.113.12", 23, "192.0.2.9", 61000, now - 5_000),
        now,
    );

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
    stop.cancel();
    let _ = runtime.block_on(server);
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
