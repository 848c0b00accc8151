//! The API through `Router::oneshot`, without a socket: each behaviour of
//! the API (`docs/api.md`) as a caller sees it (status, headers, body).

mod changes;
mod errors;
mod events;
mod family;
mod limits;
mod ops;
mod signed;
mod success;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;

use super::{router, ApiState};
use crate::changes::watch::Watched;
use crate::config::{ApiConfig, Auth, UserConfig};
use crate::flow::Flow;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::state::Engine;
use crate::testkit::{self, HOUR};

/// 2024-03-01T12:00:00Z: the injected wall clock.
const NOW_MS: i64 = 1_709_294_400_000;
const CLIENT_A: &str = "198.51.100.7:50000";
const CLIENT_B: &str = "198.51.100.8:50000";

fn wall_clock() -> i64 {
    NOW_MS
}

/// Four open TCP ports an hour ago: SSH, HTTPS (on two IPs), MySQL, and an
/// unknown port that only ever saw handshakes.
fn engine() -> Arc<Engine> {
    let engine = testkit::engine();
    for (server, port, request, reply, packets) in [
        ("203.0.113.10", 22, 4_000, 6_000, 10),
        ("203.0.113.11", 443, 10_000, 90_000, 100),
        ("203.0.113.12", 443, 1_000, 9_000, 10),
        ("203.0.113.13", 3306, 2_000, 3_000, 10),
        ("203.0.113.14", 40000, 40, 40, 1),
    ] {
        let flows =
            testkit::conversation(server, port, "192.0.2.50", request, reply, NOW_MS - HOUR);
        for f in flows {
            engine.apply(&Flow { packets, ..f }, NOW_MS);
        }
    }
    Arc::new(engine)
}

struct Harness {
    router: Router,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

fn harness(default_qps: u32) -> Harness {
    harness_with(Auth::None, default_qps)
}

fn harness_with(auth: Auth, default_qps: u32) -> Harness {
    harness_users(auth, default_qps, Vec::new())
}

fn harness_users(auth: Auth, default_qps: u32, users: Vec<UserConfig>) -> Harness {
    harness_on(engine(), auth, default_qps, users)
}

/// The router over `engine`.
fn harness_on(
    engine: Arc<Engine>,
    auth: Auth,
    default_qps: u32,
    users: Vec<UserConfig>,
) -> Harness {
    let metrics = Arc::new(Metrics::new(Arc::clone(&engine)));
    let health = Arc::new(Health::default());
    health.set_restored(true);
    health.set_assigned(true);
    let config = ApiConfig {
        listen: "127.0.0.1:8080".parse().unwrap(),
        auth,
        default_qps,
        max_page_size: 100,
        users,
    };
    let router = router(ApiState {
        engine,
        expected: Arc::new(Watched::empty()),
        metrics: Arc::clone(&metrics),
        health: Arc::clone(&health),
        config,
        wall_clock,
    });
    Harness {
        router,
        metrics,
        health,
    }
}

/// What came back.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    /// The error body's `Code`, after checking the error envelope.
    fn error_code(&self) -> String {
        let v = self.json();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["Code", "HostId", "Message", "Recommend", "RequestId"]
        );
        assert_eq!(
            self.headers["x-acs-request-id"],
            v["RequestId"].as_str().unwrap()
        );
        assert_eq!(
            self.headers["content-type"],
            "application/json;charset=utf-8"
        );
        v["Code"].as_str().unwrap().to_owned()
    }

    fn message(&self) -> String {
        self.json()["Message"].as_str().unwrap().to_owned()
    }
}

impl Harness {
    /// Sends `req` as if from `client`.
    async fn send_from(&self, client: &str, mut req: Request<Body>) -> Reply {
        let addr: SocketAddr = client.parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(addr));
        let response = self.router.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn send(&self, req: Request<Body>) -> Reply {
        self.send_from(CLIENT_A, req).await
    }

    async fn get(&self, uri: &str) -> Reply {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    fn metrics_text(&self) -> String {
        self.metrics.render()
    }
}

const PORT_QUERY: &str = "/?Action=DescribeInternetOpenPort&Version=2017-12-07";
