use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use super::alertmanager::{self, Alert, Alerts, Post};
use super::json;
use super::store::{Saved, Store};
use super::*;
use crate::changes::events::{Cover, Event, Kind, Log, Look};
use crate::changes::watch::Watched;
use crate::classify::Endpoint;
use crate::config::{Clock, Secret};
use crate::testkit::{self, conversation, DAY, T0};

const REDIS: &str = "203.0.113.10";
const CLIENT: &str = "198.51.100.7";

fn hook(format: WebhookFormat) -> WebhookConfig {
    WebhookConfig::new("test", "http://127.0.0.1:9/", format)
}

fn redis() -> Endpoint {
    Endpoint {
        ip: REDIS.parse().unwrap(),
        port: 6379,
        proto: crate::catalog::Protocol::Tcp,
    }
}

fn look(service: &str, risk_level: u8, expected: Option<Cover>) -> Look {
    Look {
        service: service.into(),
        risk_level,
        suggest_level: 30,
        expected,
    }
}

fn event(kind: Kind, now: Look, previous: Option<Look>) -> Event {
    Event {
        seq: 1,
        kind,
        time: T0 / 1000,
        endpoint: redis(),
        now,
        previous,
    }
}

fn owned() -> Option<Cover> {
    Some(Cover {
        owner: Some("cache team".into()),
        reason: None,
    })
}

#[test]
fn the_signature_is_the_hmac_sha256_of_the_body_in_hex() {
    // RFC 4231, test case 2.
    assert_eq!(
        json::signature("Jefe", b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn a_json_webhook_admits_by_kind_risk_and_expected_status() {
    let all = hook(WebhookFormat::Json);
    let opened = event(Kind::Opened, look("Redis", 3, None), None);
    assert!(json::admits(&all, &opened));
    let only_closed = WebhookConfig {
        kinds: vec![Kind::Closed],
        ..all.clone()
    };
    assert!(!json::admits(&only_closed, &opened));

    let high = WebhookConfig {
        min_risk_level: 3,
        ..all.clone()
    };
    assert!(!json::admits(
        &high,
        &event(Kind::Opened, look("HTTPS", 1, None), None)
    ));
    // A drop below the level is news to whoever heard of the rise.
    let fell = event(
        Kind::Changed,
        look("HTTPS", 1, None),
        Some(look("Redis", 3, None)),
    );
    assert!(json::admits(&high, &fell));

    let expected_opened = event(Kind::Opened, look("Redis", 3, owned()), None);
    assert!(
        !json::admits(&all, &expected_opened),
        "only_unexpected is the default"
    );
    let became_expected = event(
        Kind::Changed,
        look("Redis", 3, owned()),
        Some(look("Redis", 3, None)),
    );
    assert!(
        json::admits(&all, &became_expected),
        "a receiver hears that its alert's exposure is now expected"
    );
    let everything = WebhookConfig {
        only_unexpected: false,
        ..all
    };
    assert!(json::admits(&everything, &expected_opened));
}

#[test]
fn a_json_body_holds_the_event_objects() {
    let opened = event(Kind::Opened, look("Redis", 3, None), None);
    let body: serde_json::Value = serde_json::from_slice(&json::body(&[&opened])).unwrap();
    assert_eq!(body, serde_json::json!({ "Events": [opened.to_json()] }));
    // In the documented order, as on every channel.
    let text = String::from_utf8(json::body(&[&opened])).unwrap();
    assert!(
        text.starts_with(r#"{"Events":[{"Seq":1,"EventId":"#),
        "{text}"
    );
}

fn alert_of(look: &Look, starts_at: i64) -> Alert {
    alertmanager::alert(
        &crate::catalog::Catalog::builtin(),
        Lang::En,
        redis(),
        look,
        starts_at,
    )
}

#[test]
fn an_alert_names_the_exposure_in_its_labels() {
    let alert = alert_of(&look("Redis", 3, None), 100);
    let labels: Vec<(&str, &str)> = alert
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        labels,
        [
            ("alertname", "ExposureOpened"),
            ("ip", REDIS),
            ("port", "6379"),
            ("protocol", "tcp"),
            ("risk_level", "3"),
            ("service", "Redis"),
            ("severity", "critical"),
        ]
    );
    assert_eq!(
        alert.annotations["summary"],
        "Redis on 203.0.113.10:6379/tcp is open to the Internet, not expected (high risk)"
    );
    assert!(!alert.annotations["description"].is_empty());
    let zh = alertmanager::alert(
        &crate::catalog::Catalog::builtin(),
        Lang::Zh,
        redis(),
        &look("Redis", 3, None),
        100,
    );
    assert_eq!(
        zh.annotations["summary"],
        "203.0.113.10:6379/tcp 上的 Redis 对互联网开放，非预期（高危）"
    );

    let body: serde_json::Value = serde_json::from_slice(&alertmanager::body(&[Post {
        alert,
        ends_at: 1_764_950_400,
    }]))
    .unwrap();
    assert_eq!(body[0]["startsAt"], "1970-01-01T00:01:40Z");
    assert_eq!(body[0]["endsAt"], "2025-12-05T16:00:00Z");
    assert_eq!(body[0]["labels"]["alertname"], "ExposureOpened");
}

#[test]
fn events_fire_and_resolve_the_alert_of_their_exposure() {
    let mut alerts = Alerts::default();
    let redis_alert = alert_of(&look("Redis", 3, None), 10);
    // Opened: fires until the lifetime's end.
    let posts = alerts.update(redis(), Some(redis_alert.clone()), 10, 1000);
    assert_eq!(
        posts,
        [Post {
            alert: redis_alert.clone(),
            ends_at: 1000
        }]
    );
    // The same alert again: nothing to say, and it keeps its start.
    assert_eq!(
        alerts.update(
            redis(),
            Some(alert_of(&look("Redis", 3, None), 20)),
            20,
            1000
        ),
        []
    );
    // A new service is a new alert: the old one is resolved.
    let ssh_label = alert_of(&look("SSH", 2, None), 30);
    let posts = alerts.update(redis(), Some(ssh_label.clone()), 30, 1000);
    assert_eq!(
        posts,
        [
            Post {
                alert: redis_alert,
                ends_at: 30
            },
            Post {
                alert: ssh_label.clone(),
                ends_at: 1000
            },
        ]
    );
    // Closed (or no longer wanted): resolved at the event's time.
    assert_eq!(
        alerts.update(redis(), None, 40, 1000),
        [Post {
            alert: ssh_label,
            ends_at: 40
        }]
    );
    assert!(alerts.is_empty());
    assert_eq!(alerts.update(redis(), None, 50, 1000), []);
}

#[test]
fn a_resync_resolves_what_is_no_longer_wanted_and_resends_the_rest() {
    let old = alert_of(&look("Redis", 3, None), 10);
    let mut alerts = Alerts::restore(vec![old.clone()]);
    let other = Endpoint {
        port: 22,
        ..redis()
    };
    let ssh = alertmanager::alert(
        &crate::catalog::Catalog::builtin(),
        Lang::En,
        other,
        &look("SSH", 2, None),
        500,
    );
    let wanted = HashMap::from([(format!("{REDIS}:22/tcp"), ssh.clone())]);
    let posts = alerts.resync(wanted, 500, 900);
    assert_eq!(
        posts,
        [
            Post {
                alert: old.clone(),
                ends_at: 500
            },
            Post {
                alert: ssh.clone(),
                ends_at: 900
            }
        ]
    );
    // Still wanted a minute later: sent again with its first start.
    let again = HashMap::from([(
        format!("{REDIS}:22/tcp"),
        Alert {
            starts_at: 560,
            ..ssh.clone()
        },
    )]);
    assert_eq!(
        alerts.resync(again, 560, 960),
        [Post {
            alert: ssh,
            ends_at: 960
        }]
    );
    assert_eq!(alerts.len(), 1);
}

#[test]
fn alertmanager_wants_open_unexpected_exposures_at_the_risk_level() {
    let hook = WebhookConfig {
        min_risk_level: 2,
        ..hook(WebhookFormat::Alertmanager)
    };
    assert!(alertmanager::wanted(&hook, &look("Redis", 3, None)));
    assert!(!alertmanager::wanted(&hook, &look("HTTPS", 1, None)));
    assert!(!alertmanager::wanted(&hook, &look("Redis", 3, owned())));
}

#[test]
fn the_saved_position_survives_and_a_corrupt_file_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), "hooks.example.com");
    assert_eq!(store.load(), Saved::default());
    let saved = Saved {
        delivered: Some(42),
        firing: vec![alert_of(&look("Redis", 3, None), 7)],
        resolving: vec![Post {
            alert: alert_of(&look("SSH", 2, None), 5),
            ends_at: 9,
        }],
    };
    store.save(&saved).unwrap();
    assert_eq!(store.load(), saved);
    std::fs::write(store.path(), b"{not json").unwrap();
    assert_eq!(store.load(), Saved::default());
    assert!(dir.path().join("hooks.example.com.json.corrupt").exists());
}

/// A webhook receiver on 127.0.0.1: records what it is sent and answers
/// `status` (0: never answers).
#[derive(Clone, Default)]
struct Receiver {
    status: Arc<AtomicU16>,
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

impl Receiver {
    async fn start(status: u16) -> (Receiver, String) {
        let receiver = Receiver::default();
        receiver.status.store(status, Ordering::SeqCst);
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    fn bodies(&self) -> Vec<serde_json::Value> {
        let got = self.got.lock().unwrap();
        got.iter()
            .map(|(_, body)| serde_json::from_slice(body).unwrap())
            .collect()
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.got.lock().unwrap().push((headers, body));
    match r.status.load(Ordering::SeqCst) {
        0 => std::future::pending().await,
        code => StatusCode::from_u16(code).unwrap(),
    }
}

fn metrics() -> WebhookMetrics {
    crate::metrics::Metrics::new(Arc::new(testkit::engine())).webhooks
}

fn sender(hook: WebhookConfig, metrics: &WebhookMetrics) -> Sender {
    Sender {
        client: client().unwrap(),
        metrics: metrics.clone(),
        hook,
        wall_clock: crate::state::wall_now_ms,
    }
}

#[tokio::test]
async fn a_delivery_is_retried_until_the_receiver_takes_it() {
    let (receiver, url) = Receiver::start(500).await;
    let metrics = metrics();
    let sender = sender(hook(WebhookFormat::Json), &metrics);
    let flip = receiver.clone();
    tokio::spawn(async move {
        // Two failures (at 0 s and 1 s), then it takes the third (at 3 s).
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        flip.status.store(204, Ordering::SeqCst);
    });
    let stop = CancellationToken::new();
    let delivered = sender
        .deliver(&url, b"{}".to_vec(), &[], sender.hook.max_retry, &stop)
        .await;
    assert_eq!(delivered, Delivered::Yes);
    assert_eq!(receiver.got.lock().unwrap().len(), 3);
    let count = |result| {
        metrics
            .deliveries
            .with_label_values(&["test", result])
            .get()
    };
    assert_eq!((count("ok"), count("error")), (1, 2));
}

#[tokio::test]
async fn a_delivery_is_given_up_after_max_retry_and_a_hung_receiver_times_out() {
    let (_receiver, url) = Receiver::start(0).await;
    let metrics = metrics();
    let sender = sender(
        WebhookConfig {
            max_retry: Duration::from_secs(1),
            ..hook(WebhookFormat::Json)
        },
        &metrics,
    );
    let started = tokio::time::Instant::now();
    let delivered = sender
        .deliver(
            &url,
            b"{}".to_vec(),
            &[],
            sender.hook.max_retry,
            &CancellationToken::new(),
        )
        .await;
    assert_eq!(delivered, Delivered::GaveUp);
    // One try, cut at the request timeout.
    let took = started.elapsed();
    assert!(
        took >= REQUEST_TIMEOUT && took < REQUEST_TIMEOUT * 2,
        "{took:?}"
    );

    let stop = CancellationToken::new();
    stop.cancel();
    let stopped = sender
        .deliver(&url, b"{}".to_vec(), &[], sender.hook.max_retry, &stop)
        .await;
    assert_eq!(stopped, Delivered::Stopped);
}

/// An engine on the event clock recording changes, with a log of its own.
fn tracking() -> Arc<Engine> {
    let mut settings = testkit::settings();
    settings.clock = Clock::Event;
    let log = Log::new(
        Arc::new(Catalog::builtin()),
        Arc::new(Watched::empty()),
        100,
        settings.retention_days,
    );
    Arc::new(testkit::engine_with(settings).track_changes(Arc::new(log), DAY))
}

fn open(engine: &Engine, port: u16, at: i64) {
    for f in conversation(REDIS, port, CLIENT, 100, 200, at) {
        engine.apply(&f, T0 + 40 * DAY);
    }
}

fn context(engine: &Arc<Engine>, dir: &std::path::Path, metrics: &WebhookMetrics) -> Arc<Context> {
    Arc::new(Context {
        engine: engine.clone(),
        catalog: Arc::new(Catalog::builtin()),
        lang: Lang::En,
        dir: dir.to_owned(),
        metrics: metrics.clone(),
        wall_clock: crate::state::wall_now_ms,
        restored_seq: engine.changes().unwrap().latest(),
        started: Default::default(),
        done: CancellationToken::new(),
    })
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn seqs(bodies: &[serde_json::Value]) -> Vec<u64> {
    bodies
        .iter()
        .flat_map(|b| b["Events"].as_array().unwrap().clone())
        .map(|e| e["Seq"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_json_webhook_sends_each_new_event_signed_and_goes_on_after_a_restart() {
    let (receiver, url) = Receiver::start(200).await;
    let engine = tracking();
    let dir = tempfile::tempdir().unwrap();
    let metrics = metrics();
    open(&engine, 22, T0);
    let hook = WebhookConfig {
        url,
        secret: Some(Secret::new("s3cret")),
        ..hook(WebhookFormat::Json)
    };
    let run_once = |stop: CancellationToken| {
        tokio::spawn(run(
            vec![hook.clone()],
            context(&engine, dir.path(), &metrics),
            stop,
        ))
    };
    let stop = CancellationToken::new();
    let task = run_once(stop.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A new webhook starts from now: the event before it is not sent.
    open(&engine, 6379, T0 + 1_000);
    open(&engine, 3306, T0 + 2_000);
    wait_for("two events", || seqs(&receiver.bodies()).len() == 2).await;
    assert_eq!(seqs(&receiver.bodies()), [2, 3]);
    let (headers, body) = receiver.got.lock().unwrap()[0].clone();
    assert_eq!(
        headers[json::SIGNATURE_HEADER].to_str().unwrap(),
        json::signature("s3cret", &body)
    );
    assert_eq!(headers["content-type"], "application/json");
    stop.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(Store::new(dir.path(), "test").load().delivered, Some(3));

    // Stopped, an event is recorded; started again, it is sent, and only it.
    open(&engine, 5432, T0 + 3_000);
    let stop = CancellationToken::new();
    let task = run_once(stop.clone());
    wait_for("the event recorded while stopped", || {
        seqs(&receiver.bodies()).len() == 3
    })
    .await;
    assert_eq!(seqs(&receiver.bodies()), [2, 3, 4]);
    assert_eq!(metrics.sent.with_label_values(&["test"]).get(), 3);
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_saved_seq_beyond_the_restored_log_is_sent_again() {
    // Delivered up to 9, but the checkpoint restored holds 2 events: the
    // events after them are derived again and must reach the receiver.
    let (receiver, url) = Receiver::start(200).await;
    let engine = tracking();
    open(&engine, 22, T0);
    open(&engine, 6379, T0 + 1_000);
    let dir = tempfile::tempdir().unwrap();
    Store::new(dir.path(), "test")
        .save(&Saved {
            delivered: Some(9),
            ..Saved::default()
        })
        .unwrap();
    let metrics = metrics();
    let hook = WebhookConfig {
        url,
        ..hook(WebhookFormat::Json)
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(
        vec![hook],
        context(&engine, dir.path(), &metrics),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    open(&engine, 3306, T0 + 2_000);
    wait_for("the event after the restored log", || {
        seqs(&receiver.bodies()) == [3]
    })
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_alertmanager_webhook_fires_for_open_exposures_and_resolves_on_close() {
    let (receiver, url) = Receiver::start(200).await;
    let engine = tracking();
    open(&engine, 6379, T0);
    let dir = tempfile::tempdir().unwrap();
    let metrics = metrics();
    let hook = WebhookConfig {
        url: url.trim_end_matches("/hook").to_owned(),
        ..hook(WebhookFormat::Alertmanager)
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(
        vec![hook],
        context(&engine, dir.path(), &metrics),
        stop.clone(),
    ));
    // At start, the open exposure's alert, from the state.
    wait_for("the first alert", || !receiver.bodies().is_empty()).await;
    let first = receiver.bodies()[0].clone();
    assert_eq!(first.as_array().unwrap().len(), 1, "{first}");
    assert_eq!(first[0]["labels"]["port"], "6379");
    // A flow a day later closes it (and opens it again): resolved, then fired anew.
    open(&engine, 6379, T0 + 2 * DAY);
    wait_for("the close and the new opening", || {
        receiver.bodies().len() >= 2
    })
    .await;
    let posts: Vec<serde_json::Value> = receiver.bodies()[1..]
        .iter()
        .flat_map(|b| b.as_array().unwrap().clone())
        .collect();
    let ends: Vec<&str> = posts
        .iter()
        .map(|p| p["endsAt"].as_str().unwrap())
        .collect();
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert!(
        ends[0] < ends[1],
        "the first resolves (endsAt at the close), the second fires: {ends:?}"
    );
    assert_eq!(metrics.firing.with_label_values(&["test"]).get(), 1);
    stop.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(Store::new(dir.path(), "test").load().firing.len(), 1);
}

#[test]
fn an_event_keeps_its_partition_by_key() {
    // crc32 of the key, so any client can tell where an endpoint's events are.
    let key = crate::changes::events::endpoint_key(redis());
    assert_eq!(key, "203.0.113.10:6379/tcp");
    assert_eq!(
        super::topic::partition_of(&key, 3),
        i32::try_from(crc32fast::hash(key.as_bytes()) % 3).unwrap()
    );
    for partitions in [1, 2, 7] {
        let p = super::topic::partition_of(&key, partitions);
        assert!((0..partitions).contains(&p));
    }
}

#[test]
fn a_logged_url_shows_no_password_and_no_query_value() {
    assert_eq!(
        redacted("https://bot:hunter2@hooks.example.com/x?token=abc&team=sec"),
        "https://bot:***@hooks.example.com/x?token=***&team=***"
    );
    assert_eq!(redacted("http://127.0.0.1:9093"), "http://127.0.0.1:9093/");
}

#[test]
fn only_the_first_start_after_a_restore_is_held_to_the_restored_seq() {
    let engine = tracking();
    let dir = tempfile::tempdir().unwrap();
    let context = Context {
        restored_seq: 5,
        ..Arc::into_inner(context(&engine, dir.path(), &metrics())).unwrap()
    };
    // Delivered 9 before a crash that restored 5: 6 to 9 are derived again.
    assert_eq!(context.resume_after("a", Some(9), 12), 5);
    // The task started again later in the same process: the log is whole.
    assert_eq!(context.resume_after("a", Some(9), 12), 9);
    assert_eq!(
        context.resume_after("b", None, 12),
        5,
        "a new webhook starts after the restore"
    );
}

#[tokio::test]
async fn a_new_json_webhook_saves_where_it_starts_before_its_first_delivery() {
    let (_receiver, url) = Receiver::start(503).await;
    let engine = tracking();
    open(&engine, 22, T0);
    let dir = tempfile::tempdir().unwrap();
    let hook = WebhookConfig {
        url,
        ..hook(WebhookFormat::Json)
    };
    let task = tokio::spawn(run(
        vec![hook],
        context(&engine, dir.path(), &metrics()),
        CancellationToken::new(),
    ));
    open(&engine, 6379, T0 + 1_000);
    let store = Store::new(dir.path(), "test");
    wait_for("the file", || store.path().exists()).await;
    // Killed while event 2 fails: the file says to start after 1.
    task.abort();
    assert_eq!(store.load().delivered, Some(1));
}

#[tokio::test]
async fn a_resolution_alertmanager_did_not_take_is_sent_when_it_is_back() {
    let (receiver, url) = Receiver::start(200).await;
    let engine = tracking();
    open(&engine, 6379, T0);
    let dir = tempfile::tempdir().unwrap();
    let hook = WebhookConfig {
        url: url.trim_end_matches("/hook").to_owned(),
        resend_interval: Duration::from_secs(1),
        ..hook(WebhookFormat::Alertmanager)
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(
        vec![hook],
        context(&engine, dir.path(), &metrics()),
        stop.clone(),
    ));
    wait_for("the alert", || !receiver.bodies().is_empty()).await;
    // Alertmanager fails; the exposure closes (a flow two days later
    // closes it, and opens it again).
    receiver.status.store(500, Ordering::SeqCst);
    let failed_from = receiver.got.lock().unwrap().len();
    open(&engine, 6379, T0 + 2 * DAY);
    // Not one body retried for max_retry (an hour): each try lasts at most
    // resend_interval, then the next send carries the state as it is.
    wait_for("new sends while it fails", || {
        let got = receiver.got.lock().unwrap();
        let bodies: std::collections::HashSet<&Bytes> =
            got[failed_from..].iter().map(|(_, b)| b).collect();
        bodies.len() >= 2
    })
    .await;
    receiver.status.store(200, Ordering::SeqCst);
    let resolved = |b: &serde_json::Value| {
        b.as_array().unwrap().iter().any(|a| {
            a["endsAt"].as_str().is_some_and(|e| e < "2024-01-03") && a["labels"]["port"] == "6379"
        })
    };
    wait_for("the resolution once it is back", || {
        let got = receiver.got.lock().unwrap();
        got[failed_from..].iter().any(|(_, body)| {
            let body: serde_json::Value = serde_json::from_slice(body).unwrap();
            resolved(&body)
        })
    })
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
}
