//! Webhooks end to end, against `exposure run` in its own process fed
//! through a broker (librdkafka's mock cluster), over real sockets on
//! 127.0.0.1: a json receiver that fails for a minute gets every event,
//! signed; events not delivered survive a kill -9; a hung receiver holds
//! up nothing; and Debian's Alertmanager sees the alert of an unexpected
//! high-risk exposure become active, stay active while it is resent, and
//! resolve when the exposure becomes expected.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use support::{
    conversation, free_port, goflow2_pb, produce, producer, rand_name, try_request, wait_until,
    MockBroker, Received, Receiver, Service, ServiceOptions,
};

const SECRET: &str = "webhook-test-secret";

/// A service consuming a fresh topic of its own mock broker, with `extra`
/// config.
fn service(extra: &str, opts: &ServiceOptions) -> (MockBroker, Service, String) {
    let topic = rand_name("flows");
    let broker = MockBroker::start(&topic, 1);
    let service = Service::start_opts(
        &broker.bootstrap,
        &[&topic],
        &rand_name("group"),
        extra,
        opts,
    );
    (broker, service, topic)
}

/// Clients talking to each `server:port` a minute ago, and the servers answering.
fn answer(broker: &MockBroker, topic: &str, endpoints: &[(&str, u16)]) {
    let at = exposure::state::wall_now_ms() - 60_000;
    let records: Vec<(String, Vec<u8>)> = endpoints
        .iter()
        .flat_map(|(server, port)| conversation(server, *port, "198.51.100.1", 100, 200, at))
        .map(|f| (f.dst_addr.to_string(), goflow2_pb(&f)))
        .collect();
    produce(&producer(&broker.bootstrap), topic, &records);
}

fn json_hook(url: &str, extra: &str) -> String {
    format!(
        r#"
[[changes.webhooks]]
name = "receiver"
url = "{url}"
format = "json"
secret = "{SECRET}"
{extra}
"#
    )
}

/// The Seqs of every event the service recorded.
fn recorded(service: &Service) -> BTreeSet<u64> {
    service.exposure_changes("PageSize=1000")["DataList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Seq"].as_u64().unwrap())
        .collect()
}

/// The Seqs of the events in the requests the receiver answered 2xx,
/// each checked to carry the body's signature.
fn accepted(receiver: &Receiver) -> Vec<u64> {
    receiver
        .received()
        .iter()
        .filter(|r| (200..300).contains(&r.answered))
        .flat_map(|r| {
            check_signature(r);
            r.json()["Events"].as_array().unwrap().clone()
        })
        .map(|e| e["Seq"].as_u64().unwrap())
        .collect()
}

fn check_signature(request: &Received) {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&request.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let given = request.headers["x-exposure-signature"].to_str().unwrap();
    assert_eq!(given, expected, "a body whose signature is not its HMAC");
}

/// Waits until the receiver has accepted every event the service recorded
/// (`count` of them), each once.
fn wait_for_every_event(service: &Service, receiver: &Receiver, count: usize, within: Duration) {
    wait_until(
        within,
        Duration::from_millis(200),
        || {
            let got = accepted(receiver);
            let events = recorded(service);
            if events.len() == count && got.iter().copied().collect::<BTreeSet<_>>() == events {
                Ok(got)
            } else {
                Err((got, events))
            }
        },
        |(got, events)| {
            format!(
                "the receiver accepted {got:?} of the events {events:?}\n{}",
                service.log()
            )
        },
    );
    let got = accepted(receiver);
    let unique: BTreeSet<u64> = got.iter().copied().collect();
    assert_eq!(
        unique.len(),
        got.len(),
        "an accepted event was sent again: {got:?}"
    );
}

fn metric(service: &Service, line: &str) -> f64 {
    service
        .metric(line)
        .unwrap_or_else(|| panic!("no {line} in /metrics"))
}

#[test]
fn a_receiver_that_fails_for_a_minute_gets_every_event_signed() {
    let receiver = Receiver::start(500);
    let (broker, service, topic) =
        service(&json_hook(&receiver.url(), ""), &ServiceOptions::default());
    let failing_until = Instant::now() + Duration::from_secs(60);

    // Two exposures open at once, a third half a minute later: all while
    // the receiver answers 500.
    answer(
        &broker,
        &topic,
        &[("203.0.113.10", 6379), ("203.0.113.11", 22)],
    );
    std::thread::sleep(Duration::from_secs(30));
    answer(&broker, &topic, &[("203.0.113.12", 3306)]);
    std::thread::sleep(failing_until.saturating_duration_since(Instant::now()));
    assert_eq!(accepted(&receiver), Vec::<u64>::new());
    assert_eq!(recorded(&service).len(), 3);
    let failures = metric(
        &service,
        r#"exposure_webhook_deliveries_total{result="error",webhook="receiver"}"#,
    );
    assert!(failures >= 5.0, "retried {failures} times in a minute");

    // It recovers; one more opens after.
    receiver.set_status(200);
    answer(&broker, &topic, &[("203.0.113.13", 443)]);
    wait_for_every_event(&service, &receiver, 4, Duration::from_secs(60));
    assert_eq!(
        metric(
            &service,
            r#"exposure_webhook_sent_total{webhook="receiver"}"#
        ),
        4.0
    );
    assert_eq!(
        metric(
            &service,
            r#"exposure_webhook_dropped_total{reason="max_retry",webhook="receiver"}"#
        ),
        0.0
    );
}

#[test]
fn events_not_yet_delivered_survive_a_kill_9() {
    let receiver = Receiver::start(503);
    let opts = ServiceOptions {
        checkpoint_interval: "1s",
        ..ServiceOptions::default()
    };
    let (broker, mut service, topic) = service(&json_hook(&receiver.url(), ""), &opts);
    answer(
        &broker,
        &topic,
        &[
            ("203.0.113.10", 6379),
            ("203.0.113.11", 22),
            ("203.0.113.12", 3306),
        ],
    );
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        || match recorded(&service).len() {
            3 => Ok(()),
            n => Err(n),
        },
        |n| format!("{n} events recorded, not 3\n{}", service.log()),
    );
    // Two checkpoints after the events: they are in the state on disk.
    let checkpoints = |s: &Service| metric(s, r#"exposure_checkpoints_total{result="success"}"#);
    let before = checkpoints(&service);
    wait_until(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || match checkpoints(&service) {
            n if n >= before + 2.0 => Ok(()),
            n => Err(n),
        },
        |n| format!("checkpoints stayed at {n}\n{}", service.log()),
    );
    assert_eq!(accepted(&receiver), Vec::<u64>::new());
    service.kill9();

    receiver.set_status(200);
    let service = service.restart();
    wait_for_every_event(&service, &receiver, 3, Duration::from_secs(60));
}

#[test]
fn a_hung_receiver_holds_up_nothing() {
    let receiver = Receiver::start(0);
    let (broker, service, topic) =
        service(&json_hook(&receiver.url(), ""), &ServiceOptions::default());
    // 200 exposures open while the receiver takes requests and never answers.
    let servers: Vec<String> = (1..=200)
        .map(|i| format!("203.0.113.{}", i % 250 + 1))
        .collect();
    let endpoints: Vec<(&str, u16)> = servers
        .iter()
        .enumerate()
        .map(|(i, ip)| (ip.as_str(), 1000 + i as u16))
        .collect();
    let started = Instant::now();
    answer(&broker, &topic, &endpoints);
    service.wait_for(Duration::from_secs(30), "200 open ports", |answer| {
        answer["PageInfo"]["TotalCount"] == 200
    });
    let applied_in = started.elapsed();
    assert_eq!(recorded(&service).len(), 200);
    wait_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || match receiver.received().len() {
            0 => Err(()),
            _ => Ok(()),
        },
        |()| "nothing was sent to the receiver".to_owned(),
    );
    assert_eq!(accepted(&receiver), Vec::<u64>::new());
    assert_eq!(
        metric(
            &service,
            r#"exposure_webhook_pending_events{webhook="receiver"}"#
        ),
        200.0
    );
    // The API answers as fast with a hung receiver.
    let api_started = Instant::now();
    let (status, _) = service.get("/?Action=DescribeInternetOpenStatistic");
    assert_eq!(status, 200);
    eprintln!(
        "with a hung receiver: 200 exposures applied and visible in {applied_in:?}, \
         a Statistic answer in {:?}",
        api_started.elapsed()
    );

    // The receiver answers again: the request in flight times out, the
    // next one delivers all 200.
    receiver.set_status(200);
    wait_for_every_event(&service, &receiver, 200, Duration::from_secs(60));
}

/// Debian's Alertmanager on a free loopback port, killed when dropped.
struct Alertmanager {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    fn start() -> Alertmanager {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n",
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(support::tool("prometheus-alertmanager"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-alertmanager runs (.ci/install-tools installs it)");
        let am = Alertmanager {
            child,
            port,
            _dir: dir,
        };
        wait_until(
            Duration::from_secs(30),
            Duration::from_millis(100),
            || match am.try_get("/-/ready") {
                Some((200, _)) => Ok(()),
                other => Err(other),
            },
            |last| format!("alertmanager not ready: {last:?}"),
        );
        am
    }

    fn try_get(&self, path: &str) -> Option<(u16, String)> {
        let addr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        let response = try_request(addr, "GET", path, &[], b"").ok()?;
        Some((response.status, response.text()))
    }

    /// The alerts Alertmanager holds active.
    fn active(&self) -> Vec<Value> {
        let (status, body) = self
            .try_get("/api/v2/alerts?active=true&silenced=false&inhibited=false")
            .expect("alertmanager answers");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Vec<Value>>(&body).unwrap()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_expected(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn alertmanager_sees_an_unexpected_exposure_fire_and_resolve_when_it_becomes_expected() {
    let am = Alertmanager::start();
    let dir = tempfile::tempdir().unwrap();
    let expected = dir.path().join("expected.toml");
    write_expected(&expected, "");
    let extra = format!(
        r#"
[changes]
expected = "{}"
lang = "en"

[[changes.webhooks]]
url = "http://127.0.0.1:{}"
format = "alertmanager"
min_risk_level = 3
resend_interval = "2s"
"#,
        expected.display(),
        am.port
    );
    let (broker, service, topic) = service(&extra, &ServiceOptions::default());
    let hook = format!("127.0.0.1-{}", am.port);
    // Redis (high risk) and HTTPS (low: below min_risk_level) open.
    answer(
        &broker,
        &topic,
        &[("203.0.113.10", 6379), ("203.0.113.11", 443)],
    );
    let alerts = wait_until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || match am.active() {
            alerts if !alerts.is_empty() => Ok(alerts),
            alerts => Err(alerts),
        },
        |alerts| {
            format!(
                "no active alert in alertmanager: {alerts:?}\n{}",
                service.log()
            )
        },
    );
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(alert["status"]["state"], "active", "{alert}");
    let labels = &alert["labels"];
    assert_eq!(labels["alertname"], "ExposureOpened");
    assert_eq!(labels["ip"], "203.0.113.10");
    assert_eq!(labels["port"], "6379");
    assert_eq!(labels["protocol"], "tcp");
    assert_eq!(labels["service"], "Redis");
    assert_eq!(labels["risk_level"], "3");
    assert_eq!(labels["severity"], "critical");
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("203.0.113.10:6379/tcp is open to the Internet, not expected"),
        "{alert}"
    );

    // Resent while it lasts: Alertmanager keeps it active.
    let sent = |s: &Service| {
        metric(
            s,
            &format!(r#"exposure_webhook_sent_total{{webhook="{hook}"}}"#),
        )
    };
    let first = sent(&service);
    std::thread::sleep(Duration::from_secs(7));
    assert!(sent(&service) >= first + 2.0, "not resent every 2 s");
    assert_eq!(am.active().len(), 1);
    assert_eq!(
        metric(
            &service,
            &format!(r#"exposure_webhook_alerts_firing{{webhook="{hook}"}}"#)
        ),
        1.0
    );

    // Someone owns it now: the alert resolves.
    write_expected(
        &expected,
        "[[expected]]\nip = \"203.0.113.10\"\nport = 6379\nowner = \"cache team\"\n",
    );
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || match am.active() {
            alerts if alerts.is_empty() => Ok(()),
            alerts => Err(alerts),
        },
        |alerts| format!("the alert did not resolve: {alerts:?}\n{}", service.log()),
    );
    assert_eq!(
        metric(
            &service,
            &format!(r#"exposure_webhook_alerts_firing{{webhook="{hook}"}}"#)
        ),
        0.0
    );
}
