//! The RPC endpoint `/`: reads the request, authenticates it, applies the
//! rate limit, and dispatches on `Action`.
//!
//! Order of checks: method; parameters (decoding); the caller (with
//! `auth = "acs"`: signature parameters present, AccessKeyId known,
//! signature, timestamp, nonce) and its rate limit; `Action` present;
//! `Version`; `Action` known; the user may call it; the Action's own
//! parameters; readiness. Throttling comes after authentication so that
//! the limit applies to the verified user rather than to whatever a request
//! claims, and after the nonce check so that replays of a captured request
//! cannot spend the user's budget.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::auth::{self, User};
use super::envelope::{peer_addr, CallInfo, RequestId};
use super::error::ApiError;
use super::rpc::{read_body, RpcRequest};
use super::App;
use crate::config::ACTIONS;
use crate::query::{self, new_request_id, Action, Query};

/// The Actions answered.
pub const SUPPORTED: &[&str] = &Action::NAMES;

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
    let request_id = request_id_of(&req);
    let client = client_of(&req);
    let (parts, body) = req.into_parts();
    let body = read_body(&parts.headers, body).await?;
    let rpc = RpcRequest::parse(parts.uri.query(), &parts.headers, &body)?;
    info.action = metric_label(rpc.action.as_deref());
    let user = app.caller(&parts, &body, &rpc, client, info)?;
    let Some(name) = rpc.action.as_deref() else {
        return Err(ApiError::MissingAction);
    };
    rpc.check_version()?;
    let action = Action::from_name(name).ok_or_else(|| ApiError::InvalidAction {
        action: name.to_owned(),
        supported: SUPPORTED,
    })?;
    permit(user, action)?;
    let q = Query::parse_for(
        action,
        |name| rpc.params.get(name),
        app.state.config.max_page_size,
    )?;
    info.source_ip = q.source_ip;
    app.check_ready()?;
    let engine = Arc::clone(&app.state.engine);
    let expected = app.state.expected.current();
    let now_ms = (app.state.wall_clock)();
    // An answer may walk the whole state: keep it off the async workers,
    // and compute at most one per core at a time.
    let _computing = app
        .computing
        .acquire()
        .await
        .map_err(|_| ApiError::QueryFailed)?;
    let answer = tokio::task::spawn_blocking(move || {
        query::answer(action, &engine, &expected, &q, now_ms, request_id)
    })
    .await
    .map_err(|error| {
        tracing::error!(%error, action = action.name(), "query task failed");
        ApiError::QueryFailed
    })?;
    json(&answer)
}

/// Refuses `action` to a user whose `actions` do not list it (nobody is
/// refused with `auth = "none"`).
pub(super) fn permit(user: Option<&User>, action: Action) -> Result<(), ApiError> {
    match user {
        Some(user) if !user.may_call(action) => Err(ApiError::Forbidden {
            user: user.name.to_string(),
            action: action.name().to_owned(),
        }),
        _ => Ok(()),
    }
}

/// The id the envelope gave the request (a new one without the envelope).
pub(super) fn request_id_of(req: &Request) -> String {
    req.extensions()
        .get::<RequestId>()
        .map_or_else(new_request_id, |RequestId(id)| id.clone())
}

/// The client's address for the per-client limit. Without a recorded peer
/// (a router served without connect info) every caller shares one bucket:
/// stricter, never unlimited.
pub(super) fn client_of(req: &Request) -> IpAddr {
    peer_addr(req).map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip().to_canonical())
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
pub(super) fn metric_label(action: Option<&str>) -> &'static str {
    action
        .and_then(|a| ACTIONS.iter().find(|known| **known == a && **known != "*"))
        .copied()
        .unwrap_or("unknown")
}

impl App {
    /// Who is calling, within their rate limit: with `auth = "acs"` the
    /// verified user (its signature, timestamp and nonce checked, and noted
    /// in `info`), with `auth = "none"` nobody, limited by `client`.
    pub(super) fn caller(
        &self,
        parts: &Parts,
        body: &[u8],
        rpc: &RpcRequest,
        client: IpAddr,
        info: &mut CallInfo,
    ) -> Result<Option<&User>, ApiError> {
        let Some(authenticator) = &self.auth else {
            self.throttle_client(client)?;
            return Ok(None);
        };
        let now_ms = (self.state.wall_clock)();
        let verified = authenticator.verify(
            &auth::Request {
                method: parts.method.as_str(),
                path: parts.uri.path(),
                query: parts.uri.query(),
                headers: &parts.headers,
                authority: parts.uri.authority().map(|a| a.as_str()),
                body,
                params: &rpc.params,
            },
            now_ms,
        )?;
        let user = authenticator.user(verified.user);
        info.user = Some(Arc::clone(&user.name));
        authenticator.admit(&verified, now_ms, || {
            self.throttle_user(verified.user, user)
        })?;
        Ok(Some(user))
    }

    /// Applies the per-client limit (`auth = "none"`).
    fn throttle_client(&self, client: IpAddr) -> Result<(), ApiError> {
        let qps = self.state.config.default_qps;
        self.limiter
            .check(client, qps, Instant::now())
            .map_err(|retry_after| self.throttled(ANONYMOUS, qps, retry_after))
    }

    /// Applies a user's limit (`auth = "acs"`).
    fn throttle_user(&self, index: usize, user: &User) -> Result<(), ApiError> {
        self.user_limiter
            .check(index, user.qps, Instant::now())
            .map_err(|retry_after| self.throttled(&user.name, user.qps, retry_after))
    }

    fn throttled(&self, label: &str, qps: u32, retry_after: std::time::Duration) -> ApiError {
        self.state
            .metrics
            .api_throttled
            .with_label_values(&[label])
            .inc();
        ApiError::Throttled { qps, retry_after }
    }

    /// Refuses queries until the state is restored and, in cluster mode,
    /// every partition of the group's state is read.
    pub(super) fn check_ready(&self) -> Result<(), ApiError> {
        let health = self.state.health.snapshot();
        if !health.restored {
            Err(ApiError::NotReady)
        } else if !health.missing_partitions.is_empty() {
            Err(ApiError::PartitionsMissing {
                partitions: health.missing_partitions,
            })
        } else {
            Ok(())
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

    #[test]
    fn every_action_name_is_a_config_action_and_a_metric_label() {
        for name in SUPPORTED {
            assert!(ACTIONS.contains(name), "{name}");
            assert_eq!(metric_label(Some(name)), *name);
            assert_eq!(Action::from_name(name).map(Action::name), Some(*name));
        }
        assert_eq!(SUPPORTED.len() + 1, ACTIONS.len());
    }
}
