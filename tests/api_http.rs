//! The API end to end over a real socket: `api::serve` on 127.0.0.1, plain
//! HTTP/1.1 written by hand on a `TcpStream`, status, headers and body
//! checked as a client sees them, then a graceful shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use exposure::api::{self, ApiState};
use exposure::catalog::Catalog;
use exposure::classify::Classifier;
use exposure::config::{ApiConfig, Auth, Clock};
use exposure::flow::tcp_flags::{ACK, PSH, SYN};
use exposure::flow::{Flow, PROTO_TCP};
use exposure::health::Health;
use exposure::metrics::Metrics;
use exposure::state::{Engine, Settings};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// 2024-03-01T12:00:00Z.
const NOW_MS: i64 = 1_709_294_400_000;
const QUERY: &str = "/?Action=DescribeInternetOpenPort&Version=2017-12-07&Lang=en";

fn wall_clock() -> i64 {
    NOW_MS
}

fn tcp(src: &str, sport: u16, dst: &str, dport: u16, bytes: u64) -> Flow {
    Flow {
        src_addr: src.parse().unwrap(),
        dst_addr: dst.parse().unwrap(),
        src_port: sport,
        dst_port: dport,
        proto: PROTO_TCP,
        tcp_flags: SYN | ACK | PSH,
        bytes,
        packets: 10,
        time_ms: NOW_MS - 60_000,
        label: None,
    }
}

/// An engine with SSH open on one asset and HTTPS on another.
fn engine() -> Arc<Engine> {
    let settings = Settings {
        retention_days: 30,
        clock: Clock::Wall,
        max_future_skew_ms: 300_000,
        max_endpoints: 1_000,
        max_pending: 1_000,
    };
    let classifier = Classifier::new(&["203.0.113.0/24".parse().unwrap()], &[]);
    let engine = Engine::new(classifier, Arc::new(Catalog::builtin()), settings);
    for (server, port) in [("203.0.113.10", 22), ("203.0.113.11", 443)] {
        engine.apply(&tcp("192.0.2.9", 61000, server, port, 1_000), NOW_MS);
        engine.apply(&tcp(server, port, "192.0.2.9", 61000, 5_000), NOW_MS);
    }
    Arc::new(engine)
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Every line logged so far.
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Sends this process's INFO logs into a buffer. Global, not scoped: a
/// scoped subscriber misses callsites other threads registered first.
fn capture_logs() -> Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .init();
        captured
    })
    .clone()
}

struct Response {
    status: u16,
    /// Header names lowercased, in order.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// Sends one request on a new connection and reads the whole response.
async fn request(addr: SocketAddr, head: &str, body: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let mut raw = format!(
        "{head}\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    stream.write_all(&raw).await.unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received))
        .await
        .expect("the server answers within 10 s")
        .unwrap();
    parse(&received)
}

fn parse(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (k, v) = line.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[eol + 2 + size + 2..];
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_internet_open_port_over_a_real_socket() {
    let logs = capture_logs();
    let engine = engine();
    let metrics = Arc::new(Metrics::new(Arc::clone(&engine)));
    let health = Arc::new(Health::default());
    health.set_restored(true);
    health.set_assigned(true);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = ApiState {
        engine,
        metrics,
        health,
        config: ApiConfig {
            listen: addr,
            auth: Auth::None,
            default_qps: 1,
            max_page_size: 100,
            users: Vec::new(),
        },
        wall_clock,
    };
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(api::serve(listener, api::router(state), shutdown.clone()));

    // GET with the parameters in the query string.
    let r = request(
        addr,
        &format!("GET {QUERY}&SourceIp=114.242.33.9 HTTP/1.1"),
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.header("content-type"),
        Some("application/json;charset=utf-8")
    );
    let v = r.json();
    assert_eq!(r.header("x-acs-request-id"), v["RequestId"].as_str());
    assert_eq!(v["PageInfo"]["TotalCount"], 2);
    let ports: Vec<i64> = v["DataList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["Port"].as_i64().unwrap())
        .collect();
    assert_eq!(ports.len(), 2);
    assert!(ports.contains(&22) && ports.contains(&443), "{ports:?}");
    assert_eq!(v["DataList"][0]["TrafficPercent1Day"], "50");

    // A second request from this address within a second is throttled
    // (default_qps = 1): the limit keys on the real peer address.
    let r = request(addr, &format!("GET {QUERY} HTTP/1.1"), b"").await;
    assert_eq!(r.status, 400);
    let v = r.json();
    assert_eq!(v["Code"], "Throttling.User");
    assert_eq!(v["HostId"], addr.to_string());
    assert_eq!(r.header("x-acs-request-id"), v["RequestId"].as_str());
    let retry_ms: u64 = r.header("x-acs-retry-after").unwrap().parse().unwrap();
    assert!((1..=1000).contains(&retry_ms), "{retry_ms}");
    let retry_s: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert_eq!(retry_s, 1);

    // The operations endpoints are not rate limited.
    let r = request(addr, "GET /healthz HTTP/1.1", b"").await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok\n"[..]));
    let r = request(addr, "GET /metrics HTTP/1.1", b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8(r.body).unwrap();
    for line in [
        r#"exposure_api_requests_total{action="DescribeInternetOpenPort",code="Success"} 1"#,
        r#"exposure_api_requests_total{action="DescribeInternetOpenPort",code="Throttling.User"} 1"#,
    ] {
        assert!(text.contains(line), "{line} missing in:\n{text}");
    }

    // After the advertised wait: POST as the official SDK sends it (query
    // string, empty body).
    tokio::time::sleep(Duration::from_millis(retry_ms)).await;
    let r = request(
        addr,
        &format!(
            "POST {QUERY}&Port=22 HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded"
        ),
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["PageInfo"]["TotalCount"], 1);
    assert_eq!(r.json()["DataList"][0]["Port"], 22);

    // And a second later: a form body with the Action in x-acs-action.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let r = request(
        addr,
        "POST / HTTP/1.1\r\nx-acs-action: DescribeInternetOpenPort\r\nContent-Type: application/x-www-form-urlencoded",
        b"Port=443&PageSize=5",
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["PageInfo"]["PageSize"], 5);
    assert_eq!(r.json()["DataList"][0]["Port"], 443);

    // One log line per request, with the real peer address; throttled
    // requests only at debug level.
    let text = logs.text();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("api request")).collect();
    assert_eq!(lines.len(), 3, "{text}");
    for part in [
        "action=\"DescribeInternetOpenPort\"",
        "code=\"Success\"",
        "status=200",
        "source_ip=114.242.33.9",
        "client=127.0.0.1:",
        "elapsed_ms=",
        "request_id=",
    ] {
        assert!(lines[0].contains(part), "{part} missing in {}", lines[0]);
    }
    assert!(!text.contains("Throttling.User"), "{text}");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve returns after shutdown")
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err());
}
