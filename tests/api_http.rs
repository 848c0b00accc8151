//! The API end to end over a real socket: `api::serve` on 127.0.0.1, plain
//! HTTP/1.1 written by hand on a `TcpStream`, status, headers and body
//! checked as a client sees them, then a graceful shutdown.

mod support;

use std::sync::Arc;
use std::time::Duration;

use exposure::config::ApiConfig;
use exposure::flow::Flow;
use exposure::metrics::Metrics;
use exposure::state::Engine;
use support::{get, request, ApiServer};

/// 2024-03-01T12:00:00Z.
const NOW_MS: i64 = 1_709_294_400_000;
const QUERY: &str = "/?Action=DescribeInternetOpenPort&Version=2017-12-07&Lang=en";

fn wall_clock() -> i64 {
    NOW_MS
}

/// An engine with SSH open on one asset and HTTPS on another.
fn engine() -> Arc<Engine> {
    let engine = support::engine();
    for (server, port) in [("203.0.113.10", 22), ("203.0.113.11", 443)] {
        for f in support::conversation(server, port, "192.0.2.9", 1_000, 5_000, NOW_MS - 60_000) {
            engine.apply(&Flow { packets: 10, ..f }, NOW_MS);
        }
    }
    Arc::new(engine)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_internet_open_port_over_a_real_socket() {
    let logs = support::capture_logs(tracing::Level::INFO);
    let engine = engine();
    let metrics = Arc::new(Metrics::new(Arc::clone(&engine)));
    let config = ApiConfig {
        default_qps: 1,
        max_page_size: 100,
        ..support::no_auth()
    };
    let server = ApiServer::start(engine, metrics, support::ready(), config, wall_clock).await;
    let addr = server.addr;

    // GET with the parameters in the query string.
    let r = get(addr, &format!("{QUERY}&SourceIp=114.242.33.9"));
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
    let r = get(addr, QUERY);
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
    let r = get(addr, "/healthz");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok\n"[..]));
    let r = get(addr, "/metrics");
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
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let r = request(addr, "POST", &format!("{QUERY}&Port=22"), &[form], b"");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["PageInfo"]["TotalCount"], 1);
    assert_eq!(r.json()["DataList"][0]["Port"], 22);

    // And a second later: a form body with the Action in x-acs-action.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let r = request(
        addr,
        "POST",
        "/",
        &[("x-acs-action", "DescribeInternetOpenPort"), form],
        b"Port=443&PageSize=5",
    );
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

    server.stop().await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
