//! `GET /events` through the router: the stream's messages, resume and
//! reset, keep-alive, shutdown, and the same refusals as `/`.

use std::time::Duration;

use http_body_util::BodyExt;

use super::changes::{open, tracking};
use super::signed::{users, utc, v1_query, PORTS_KEY, PORTS_SECRET, SECOPS_KEY, SECOPS_SECRET};
use super::*;
use crate::api::events::{Shutdown, KEEP_ALIVE};
use tokio_util::sync::CancellationToken;

/// How long a test waits for a message that should come.
const WAIT: Duration = Duration::from_secs(5);

/// One message of the stream, its fields as sent.
#[derive(Debug, Default, PartialEq)]
struct Message {
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    comment: Option<String>,
}

impl Message {
    fn data_json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().expect("data")).unwrap()
    }
}

/// An open stream as its client reads it.
struct Stream {
    status: StatusCode,
    headers: HeaderMap,
    body: Body,
    buf: String,
    /// How long [`Stream::next`] waits for a message.
    wait: Duration,
}

impl Stream {
    /// The next message, or `None` when the stream ended; panics after
    /// `wait`.
    async fn next(&mut self) -> Option<Message> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                return Some(parse(&block));
            }
            let frame = tokio::time::timeout(self.wait, self.body.frame())
                .await
                .expect("a message within the wait");
            match frame {
                None => return None,
                Some(frame) => {
                    if let Ok(data) = frame.unwrap().into_data() {
                        self.buf.push_str(std::str::from_utf8(&data).unwrap());
                    }
                }
            }
        }
    }

    /// Whether nothing arrives within `wait`.
    async fn quiet_for(&mut self, wait: Duration) -> bool {
        self.buf.is_empty() && tokio::time::timeout(wait, self.body.frame()).await.is_err()
    }
}

fn parse(block: &str) -> Message {
    let mut m = Message::default();
    for line in block.lines().filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
        match name {
            "" => m.comment = Some(value),
            "id" => m.id = Some(value),
            "event" => m.event = Some(value),
            "data" => m.data = Some(value),
            other => panic!("unexpected field {other:?} in {block:?}"),
        }
    }
    m
}

impl Harness {
    /// Sends `req` and keeps its body open, as an EventSource does.
    async fn stream(&self, mut req: Request<Body>) -> Stream {
        let addr: SocketAddr = CLIENT_A.parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(addr));
        let response = self.router.clone().oneshot(req).await.unwrap();
        let (parts, body) = response.into_parts();
        Stream {
            status: parts.status,
            headers: parts.headers,
            body,
            buf: String::new(),
            wait: WAIT,
        }
    }

    async fn connect(&self, uri: &str, last_event_id: Option<&str>) -> Stream {
        let mut req = Request::get(uri);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        self.stream(req.body(Body::empty()).unwrap()).await
    }
}

/// A stream must open: 200 and the event-stream headers.
fn assert_open(s: &Stream) {
    assert_eq!(s.status, StatusCode::OK, "{:?}", s.headers);
    assert_eq!(s.headers["content-type"], "text/event-stream");
    assert_eq!(s.headers["cache-control"], "no-cache");
    assert!(s.headers.contains_key("x-acs-request-id"));
}

fn tracked() -> (Arc<Engine>, Harness) {
    let engine = tracking(100);
    let h = harness_on(Arc::clone(&engine), Auth::None, 0, Vec::new());
    (engine, h)
}

/// The ids of the next `n` messages.
async fn ids(s: &mut Stream, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let m = s.next().await.expect("the stream goes on");
        ids.push(m.id.expect("an id"));
    }
    ids
}

#[tokio::test]
async fn a_new_client_gets_the_events_recorded_after_it_connects() {
    let (engine, h) = tracked();
    let mut s = h.connect("/events", None).await;
    assert_open(&s);
    assert!(s.quiet_for(Duration::from_millis(100)).await, "{}", s.buf);
    open(&engine, "203.0.113.20", 8080, NOW_MS - 60_000);
    let m = s.next().await.unwrap();
    let event = engine.changes().unwrap().last(1).pop().unwrap();
    assert_eq!(m.id.as_deref(), Some("6"));
    assert_eq!((&m.event, &m.comment), (&None, &None));
    assert_eq!(m.data.as_deref(), Some(event.to_json_line().as_str()));
    assert_eq!(m.data_json()["Kind"], "opened");
    assert_eq!(m.data_json()["Port"], 8080);
}

#[tokio::test]
async fn last_event_id_replays_exactly_the_missed_events_then_new_ones() {
    let (engine, h) = tracked();
    let mut s = h.connect("/events", Some("2")).await;
    assert_open(&s);
    assert_eq!(ids(&mut s, 3).await, ["3", "4", "5"]);
    assert!(s.quiet_for(Duration::from_millis(100)).await);
    open(&engine, "203.0.113.20", 8080, NOW_MS - 60_000);
    assert_eq!(ids(&mut s, 1).await, ["6"]);
}

#[tokio::test]
async fn the_last_event_id_parameter_resumes_and_the_header_wins() {
    let (_engine, h) = tracked();
    let mut s = h.connect("/events?LastEventId=3", None).await;
    assert_eq!(ids(&mut s, 2).await, ["4", "5"]);
    // A browser reconnecting by itself sends the header with the URL of its
    // first connect: the header is the newer.
    let mut s = h.connect("/events?LastEventId=1", Some("4")).await;
    assert_eq!(ids(&mut s, 1).await, ["5"]);
    let mut s = h.connect("/events?LastEventId=5", None).await;
    assert!(s.quiet_for(Duration::from_millis(100)).await);
}

#[tokio::test]
async fn missed_events_no_longer_kept_are_a_reset_then_new_events() {
    let engine = tracking(2);
    let h = harness_on(Arc::clone(&engine), Auth::None, 0, Vec::new());
    let mut s = h.connect("/events", Some("1")).await;
    assert_open(&s);
    let m = s.next().await.unwrap();
    assert_eq!(m.event.as_deref(), Some("reset"));
    assert_eq!(m.data_json(), serde_json::json!({"Latest": 5}));
    assert_eq!(m.id.as_deref(), Some("5"));
    assert!(s.quiet_for(Duration::from_millis(100)).await);
    open(&engine, "203.0.113.20", 8080, NOW_MS - 60_000);
    assert_eq!(ids(&mut s, 1).await, ["6"]);
    // Within the last two, a resume replays.
    let mut s = h.connect("/events", Some("4")).await;
    assert_eq!(ids(&mut s, 2).await, ["5", "6"]);
}

#[tokio::test]
async fn a_client_that_falls_behind_the_kept_events_is_reset_and_goes_on() {
    let engine = tracking(2);
    let h = harness_on(Arc::clone(&engine), Auth::None, 0, Vec::new());
    let mut s = h.connect("/events", None).await;
    // Three events before the client reads any: more than the two kept.
    for (i, server) in ["203.0.113.20", "203.0.113.21", "203.0.113.22"]
        .into_iter()
        .enumerate()
    {
        open(&engine, server, 8080, NOW_MS - 60_000 + i as i64);
    }
    let m = s.next().await.unwrap();
    assert_eq!(m.event.as_deref(), Some("reset"));
    assert_eq!(m.data_json(), serde_json::json!({"Latest": 8}));
    open(&engine, "203.0.113.23", 8080, NOW_MS - 30_000);
    assert_eq!(ids(&mut s, 1).await, ["9"]);
}

#[tokio::test]
async fn an_id_this_log_never_gave_is_a_reset() {
    let (_engine, h) = tracked();
    let mut s = h.connect("/events", Some("99")).await;
    let m = s.next().await.unwrap();
    assert_eq!(m.event.as_deref(), Some("reset"));
    assert_eq!(m.data_json(), serde_json::json!({"Latest": 5}));
}

#[tokio::test]
async fn without_an_event_log_the_stream_is_open_and_empty() {
    let h = harness(0);
    let mut s = h.connect("/events", None).await;
    assert_open(&s);
    assert!(s.quiet_for(Duration::from_millis(100)).await);
    let mut s = h.connect("/events", Some("3")).await;
    let m = s.next().await.unwrap();
    assert_eq!(m.data_json(), serde_json::json!({"Latest": 0}));
}

#[tokio::test(start_paused = true)]
async fn a_quiet_stream_gets_a_keep_alive_comment_every_15_s() {
    let (_engine, h) = tracked();
    let mut s = h.connect("/events", None).await;
    s.wait = 4 * KEEP_ALIVE;
    let started = tokio::time::Instant::now();
    let m = s.next().await.unwrap();
    assert_eq!(m.comment.as_deref(), Some("keep-alive"));
    assert_eq!((m.id, m.data), (None, None));
    assert_eq!(KEEP_ALIVE, Duration::from_secs(15));
    assert!(started.elapsed() >= KEEP_ALIVE, "{:?}", started.elapsed());
    let m = s.next().await.unwrap();
    assert_eq!(m.comment.as_deref(), Some("keep-alive"));
    assert!(started.elapsed() >= 2 * KEEP_ALIVE);
}

#[tokio::test]
async fn the_service_stopping_ends_an_open_stream() {
    let (_engine, h) = tracked();
    let stop = CancellationToken::new();
    let mut req = Request::get("/events").body(Body::empty()).unwrap();
    req.extensions_mut().insert(Shutdown(stop.clone()));
    let mut s = h.stream(req).await;
    assert_open(&s);
    assert!(s.quiet_for(Duration::from_millis(50)).await);
    stop.cancel();
    assert_eq!(s.next().await, None);
}

#[tokio::test]
async fn resume_points_that_are_not_ids_name_themselves() {
    let (_engine, h) = tracked();
    for (uri, header, named) in [
        ("/events", Some("abc"), "Last-Event-ID"),
        ("/events?LastEventId=-1", None, "LastEventId"),
        ("/events?Action=DescribeInternetOpenPort", None, "Action"),
        ("/events?Version=2020-01-01", None, "Version"),
    ] {
        let mut req = Request::get(uri);
        if let Some(id) = header {
            req = req.header("last-event-id", id);
        }
        let reply = h.send(req.body(Body::empty()).unwrap()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(reply.error_code(), "ErrorParameters", "{uri}");
        assert!(
            reply.message().starts_with(&format!("invalid {named}:")),
            "{uri}: {}",
            reply.message()
        );
    }
}

#[tokio::test]
async fn only_get_opens_a_stream() {
    let (_engine, h) = tracked();
    let reply = h
        .send(Request::post("/events").body(Body::empty()).unwrap())
        .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.error_code(), "UnsupportedHTTPMethod");
    assert_eq!(reply.headers["allow"], "GET, HEAD");
}

#[tokio::test]
async fn streams_are_counted_as_describe_exposure_changes_and_refused_until_ready() {
    let (_engine, h) = tracked();
    let s = h.connect("/events", None).await;
    assert_open(&s);
    h.health.set_restored(false);
    let reply = h.get("/events").await;
    assert_eq!(reply.error_code(), "ErrorDBSelectError");
    let text = h.metrics_text();
    for code in ["Success", "ErrorDBSelectError"] {
        let line = format!(
            r#"exposure_api_requests_total{{action="DescribeExposureChanges",code="{code}"}} 1"#
        );
        assert!(text.contains(&line), "{line}");
    }
}

#[tokio::test]
async fn streams_count_against_the_clients_rate_limit() {
    let engine = tracking(100);
    let h = harness_on(engine, Auth::None, 1, Vec::new());
    assert_open(&h.connect("/events", None).await);
    let reply = h.get("/events").await;
    assert_eq!(reply.error_code(), "Throttling.User");
    assert!(reply.headers.contains_key("x-acs-retry-after"));
}

/// `GET /events` with a v1-signed query (`extra` included).
fn signed(key: &str, secret: &str, nonce: &str, action: &str, extra: &str) -> Request<Body> {
    let query = v1_query("GET", action, extra, key, secret, nonce, &utc(0));
    Request::get(format!("/events?{query}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn with_acs_a_stream_is_signed_like_a_get_of_the_action() {
    let engine = tracking(100);
    let h = harness_on(engine, Auth::Acs, 0, users(None));
    let reply = h.get("/events").await;
    assert_eq!(reply.error_code(), "MissingParameter");
    assert!(reply.message().starts_with("Signature is missing"));

    // The Action may be named or left out; resume points are signed too.
    let mut s = h
        .stream(signed(
            SECOPS_KEY,
            SECOPS_SECRET,
            "n-1",
            "",
            "LastEventId=4",
        ))
        .await;
    assert_open(&s);
    assert_eq!(ids(&mut s, 1).await, ["5"]);
    let s = h
        .stream(signed(
            SECOPS_KEY,
            SECOPS_SECRET,
            "n-2",
            "DescribeExposureChanges",
            "",
        ))
        .await;
    assert_open(&s);

    // A replayed URL (a browser's own reconnect) is refused: sign anew.
    let reply = h
        .send(signed(
            SECOPS_KEY,
            SECOPS_SECRET,
            "n-2",
            "DescribeExposureChanges",
            "",
        ))
        .await;
    assert_eq!(reply.error_code(), "SignatureNonceUsed");
    // A changed resume point breaks the signature.
    let mut tampered = signed(SECOPS_KEY, SECOPS_SECRET, "n-3", "", "LastEventId=4");
    *tampered.uri_mut() = tampered
        .uri()
        .to_string()
        .replace("LastEventId=4", "LastEventId=1")
        .parse()
        .unwrap();
    assert_eq!(h.send(tampered).await.error_code(), "SignatureDoesNotMatch");
    // A user without DescribeExposureChanges may not open it.
    let reply = h.send(signed(PORTS_KEY, PORTS_SECRET, "n-4", "", "")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.error_code(), "Forbidden.RAM");
    assert!(reply.message().contains("DescribeExposureChanges"));
}
