//! What every RPC response shares, whatever its Action or outcome: a request
//! id (in the body and in `x-acs-request-id`), the JSON content type, the
//! error body (`docs/api.md#errors`), one metric increment and one log line.
//! `GET /events` goes through it too: a stream keeps its own content type,
//! and is counted and logged when it starts.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use super::error::ErrorReply;
use super::App;
use crate::query::new_request_id;

/// `content-type` of every RPC response.
pub const JSON: &str = "application/json;charset=utf-8";
/// `content-type` of `GET /events`.
const EVENT_STREAM: &str = "text/event-stream";
/// The Code of throttled requests, logged at debug level only.
const THROTTLED: &str = "Throttling.User";
/// Longest `Host` header echoed as `HostId`.
const MAX_HOST_LEN: usize = 255;

/// The request's id, handed from the envelope to the handler.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// What the handler learned, handed back to the envelope for the metric and
/// the log line.
#[derive(Clone, Debug)]
pub struct CallInfo {
    /// The Action as a bounded metric label (`unknown` for others).
    pub action: &'static str,
    /// The `SourceIp` parameter, once validated.
    pub source_ip: Option<IpAddr>,
    /// The user whose signature was verified (`auth = "acs"`).
    pub user: Option<Arc<str>>,
}

impl Default for CallInfo {
    fn default() -> Self {
        CallInfo {
            action: "unknown",
            source_ip: None,
            user: None,
        }
    }
}

/// The client's socket address, when the server recorded it.
pub fn peer_addr(req: &Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
}

/// Middleware around `/`: ids, headers, error bodies, metric, log.
pub async fn envelope(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = new_request_id();
    let host_id = host_id(&req, &app.state.config.listen.to_string());
    let peer = peer_addr(&req);
    req.extensions_mut().insert(RequestId(request_id.clone()));

    let mut response = next.run(req).await;

    let info = response
        .extensions_mut()
        .remove::<CallInfo>()
        .unwrap_or_default();
    let code = match response.extensions_mut().remove::<ErrorReply>() {
        Some(reply) => {
            *response.body_mut() = Body::from(reply.body(&request_id, &host_id));
            reply.code
        }
        None => "Success",
    };
    let headers = response.headers_mut();
    // Every answer is JSON but an event stream (`GET /events`), which keeps
    // its own type.
    let streaming = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(EVENT_STREAM.as_bytes()));
    if !streaming {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    }
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        headers.insert("x-acs-request-id", id);
    }
    app.state
        .metrics
        .api_requests
        .with_label_values(&[info.action, code])
        .inc();
    app.state
        .metrics
        .record_api_latency(info.action, started.elapsed());
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    // Throttled requests are counted, and logged only at debug level, so
    // that a flood does not flood the log too.
    macro_rules! log_request {
        ($level:expr) => {
            tracing::event!(
                $level,
                action = info.action,
                code,
                status = response.status().as_u16(),
                elapsed_ms,
                source_ip = info.source_ip.map(tracing::field::display),
                user = info.user.as_deref(),
                client = peer.map(tracing::field::display),
                request_id,
                "api request"
            )
        };
    }
    if code == THROTTLED {
        log_request!(tracing::Level::DEBUG);
    } else {
        log_request!(tracing::Level::INFO);
    }
    response
}

/// `HostId`: the request's `Host` (or URI authority), else the listen address.
fn host_id(req: &Request, listen: &str) -> String {
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .filter(|h| !h.is_empty() && h.len() <= MAX_HOST_LEN)
        .unwrap_or(listen)
        .to_owned()
}
