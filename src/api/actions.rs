//! The RPC endpoint `/`: reads the request, applies the rate limit, and
//! dispatches on `Action`, one `match` arm per Action.
//!
//! Order of checks: method, parameters (decoding), caller and rate limit, `Action`
//! present, `Version`, `Action` known, the Action's own parameters,
//! readiness.
//! Throttling comes after decoding so that the throttle metric and the log
//! know the Action, and so that (with signatures, later) the limit applies
//! to the verified user rather than to whatever a request claims.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::envelope::{peer_addr, CallInfo, RequestId};
use super::error::ApiError;
use super::rpc::{read_body, Params, RpcRequest};
use super::App;
use crate::config::{Auth, ACTIONS};
use crate::query::{describe_internet_open_port, new_request_id, PortQuery};

/// The Actions answered now; the siblings of SPEC §7 come later.
pub const SUPPORTED: &[&str] = &["DescribeInternetOpenPort"];

/// `throttled` metric label when requests are not signed (`auth = "none"`).
const ANONYMOUS: &str = "anonymous";

/// Handler of `GET`/`POST /`.
pub async fn rpc(State(app): State<Arc<App>>, req: Request) -> Response {
    let mut info = CallInfo::default();
    let mut response = match call(&app, req, &mut info).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    response.extensions_mut().insert(info);
    response
}

async fn call(app: &App, req: Request, info: &mut CallInfo) -> Result<Response, ApiError> {
    if !matches!(*req.method(), Method::GET | Method::HEAD | Method::POST) {
        return Err(ApiError::MethodNotAllowed {
            method: req.method().to_string(),
        });
    }
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map_or_else(new_request_id, |RequestId(id)| id.clone());
    // Without a recorded peer (a router served without connect info) every
    // caller shares one bucket: stricter, never unlimited.
    let client =
        peer_addr(&req).map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip().to_canonical());
    let (parts, body) = req.into_parts();
    let body = read_body(&parts.headers, body).await?;
    let rpc = RpcRequest::parse(parts.uri.query(), &parts.headers, &body)?;
    info.action = metric_label(rpc.action.as_deref());

    // Who is calling: the client address without signatures. Signed
    // requests are not verified yet, so `auth = "acs"` fails closed rather
    // than serving unsigned requests to an operator who asked for keys.
    match app.state.config.auth {
        Auth::None => app.throttle(client)?,
        Auth::Acs => {
            return Err(ApiError::SignatureDoesNotMatch {
                detail: "this version does not verify signatures yet; \
                         set api.auth = \"none\" for unsigned local use"
                    .to_owned(),
            })
        }
    }
    let Some(action) = rpc.action.as_deref() else {
        return Err(ApiError::MissingAction);
    };
    rpc.check_version()?;
    match action {
        "DescribeInternetOpenPort" => describe_port(app, &rpc.params, request_id, info).await,
        // One arm per sibling Action (DescribeInternetOpenIp, ...Service,
        // ...Detail, ...Statistic) when they are built, and its name in
        // SUPPORTED (a test checks that every name there is dispatched).
        _ => Err(ApiError::InvalidAction {
            action: action.to_owned(),
            supported: SUPPORTED,
        }),
    }
}

/// `DescribeInternetOpenPort` (SPEC §6).
async fn describe_port(
    app: &App,
    params: &Params,
    request_id: String,
    info: &mut CallInfo,
) -> Result<Response, ApiError> {
    let q = PortQuery::parse(|name| params.get(name), app.state.config.max_page_size)?;
    info.source_ip = q.source_ip;
    app.check_ready()?;
    let engine = Arc::clone(&app.state.engine);
    let now_ms = (app.state.wall_clock)();
    // The answer scans the whole state: keep it off the async workers.
    let answer = tokio::task::spawn_blocking(move || {
        describe_internet_open_port(&engine, &q, now_ms, request_id)
    })
    .await
    .map_err(|error| {
        tracing::error!(%error, action = "DescribeInternetOpenPort", "query task failed");
        ApiError::QueryFailed
    })?;
    json(&answer)
}

/// A 200 answer with `body` as JSON (the envelope sets the content type).
fn json(body: &impl Serialize) -> Result<Response, ApiError> {
    let bytes = serde_json::to_vec(body).map_err(|error| {
        tracing::error!(%error, "answer not serialized");
        ApiError::MarshalJson
    })?;
    let mut response = bytes.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(super::envelope::JSON),
    );
    Ok(response)
}

/// The Action as a metric label: a known Action name, else `unknown`, so
/// that callers cannot create series at will.
fn metric_label(action: Option<&str>) -> &'static str {
    action
        .and_then(|a| ACTIONS.iter().find(|known| **known == a && **known != "*"))
        .copied()
        .unwrap_or("unknown")
}

impl App {
    /// Applies the per-client limit (`auth = "none"`).
    fn throttle(&self, client: IpAddr) -> Result<(), ApiError> {
        let qps = self.state.config.default_qps;
        self.limiter
            .check(client, qps, Instant::now())
            .map_err(|retry_after| {
                self.state
                    .metrics
                    .api_throttled
                    .with_label_values(&[ANONYMOUS])
                    .inc();
                ApiError::Throttled { qps, retry_after }
            })
    }

    /// Refuses queries until the state is restored.
    fn check_ready(&self) -> Result<(), ApiError> {
        if self.state.health.snapshot().restored {
            Ok(())
        } else {
            Err(ApiError::NotReady)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_labels_are_bounded_to_known_actions() {
        assert_eq!(
            metric_label(Some("DescribeInternetOpenPort")),
            "DescribeInternetOpenPort"
        );
        assert_eq!(
            metric_label(Some("DescribeInternetOpenIp")),
            "DescribeInternetOpenIp"
        );
        assert_eq!(metric_label(Some("DropTables")), "unknown");
        assert_eq!(metric_label(Some("*")), "unknown");
        assert_eq!(metric_label(None), "unknown");
    }
}
