//! The API's errors and how each one looks on the wire (`docs/api.md#errors`).
//!
//! [`ApiError`] maps every variant to its HTTP status, Alibaba Cloud error
//! code and hint in one `match` ([`ApiError::kind`]). Its `IntoResponse`
//! sets the status, the retry headers of `Throttling.User` and an
//! [`ErrorReply`] extension; the request envelope (see [`super::envelope`])
//! renders that into `{RequestId, HostId, Code, Message, Recommend}`,
//! because only it knows the request id and the host. Messages are written
//! for the caller: internal details go to the log where they happen.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::query::ParamError;

/// Longest client-supplied text echoed back in a message, in characters.
const MAX_ECHO_CHARS: usize = 64;

/// Everything the API refuses, one variant per cause.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// A parameter broke its rule: `param` names it, `message` says the rule.
    #[error("invalid {param}: {message}")]
    Parameters { param: String, message: String },
    /// No `Action` in the query string, the form body or `x-acs-action`.
    #[error(
        "Action is missing; give it in the query string (Action=DescribeInternetOpenPort) \
         or in the x-acs-action header"
    )]
    MissingAction,
    /// A parameter (or header) a signed request needs is missing.
    #[error("{param} is missing: {hint}")]
    MissingParameter { param: String, hint: String },
    /// An `Action` this service does not serve.
    #[error(
        "the Action {:?} does not exist here; supported Actions: {}",
        echo(.action),
        .supported.join(", ")
    )]
    InvalidAction {
        action: String,
        supported: &'static [&'static str],
    },
    /// A method other than GET, HEAD or POST on `/`.
    #[error("the method {} is not supported; use GET or POST", echo(.method))]
    MethodNotAllowed { method: String },
    /// A method other than GET or HEAD on `/events`.
    #[error("the method {} is not supported on /events; use GET", echo(.method))]
    StreamMethodNotAllowed { method: String },
    /// Over the caller's requests per second.
    #[error("too many requests: more than {qps} per second; retry after {} ms", retry_ms(.retry_after))]
    Throttled { qps: u32, retry_after: Duration },
    /// The AccessKey sent more distinct requests within the timestamp
    /// window than the service remembers nonces for.
    #[error(
        "too many distinct requests with this AccessKey within 30 minutes; retry after {} ms",
        retry_ms(.retry_after)
    )]
    TooManyNonces { retry_after: Duration },
    /// The signature does not match the one computed with the user's secret;
    /// `detail` is safe to show (e.g. the string to sign the server used).
    #[error("the request signature does not match: {detail}")]
    SignatureDoesNotMatch { detail: String },
    /// No user has this AccessKeyId.
    #[error("the AccessKeyId {:?} does not exist", echo(.access_key_id))]
    InvalidAccessKeyId { access_key_id: String },
    /// The `SignatureNonce` was used before (a replay).
    #[error("the SignatureNonce {:?} was already used; send a new one with every request", echo(.nonce))]
    SignatureNonceUsed { nonce: String },
    /// The request's timestamp is more than the allowed skew off the clock.
    #[error("the timestamp {:?} is more than 15 minutes away from the server clock", echo(.timestamp))]
    TimestampExpired { timestamp: String },
    /// The user may not call this Action (`api.users[].actions`).
    #[error("user {user:?} may not call {action}")]
    Forbidden { user: String, action: String },
    /// The state is not restored yet, so an answer would be wrong.
    #[error("the state is still being restored; retry when /readyz answers 200")]
    NotReady,
    /// Cluster mode: this instance has not yet read the group's state of
    /// these partitions, so an answer would be a partial sum.
    #[error("this instance has not yet read the state of partitions {partitions:?} of the group; retry when /readyz answers 200")]
    PartitionsMissing { partitions: Vec<i32> },
    /// The query failed inside the service; the cause is in the log.
    #[error("the query could not be answered; try again, and report it if it persists")]
    QueryFailed,
    /// The answer could not be serialized; the cause is in the log.
    #[error("internal error")]
    MarshalJson,
}

/// Status, Code and hint of an [`ApiError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorKind {
    pub status: StatusCode,
    /// The Alibaba Cloud error code (`ErrorParameters`).
    pub code: &'static str,
    /// What to do about it, for the `Recommend` field.
    pub recommend: &'static str,
}

impl ApiError {
    /// The status, Code and hint of every variant, in one place.
    pub fn kind(&self) -> ErrorKind {
        use StatusCode as S;
        let (status, code, recommend) = match self {
            ApiError::Parameters { .. } => (
                S::BAD_REQUEST,
                "ErrorParameters",
                "fix the named parameter; see docs/api.md#errors",
            ),
            ApiError::MissingAction => (
                S::BAD_REQUEST,
                "MissingParameter",
                "send Action=DescribeInternetOpenPort; see docs/api.md#calling",
            ),
            ApiError::MissingParameter { .. } => (
                S::BAD_REQUEST,
                "MissingParameter",
                "send the named parameter; see docs/api.md#signed-requests",
            ),
            ApiError::InvalidAction { .. } => (
                S::NOT_FOUND,
                "InvalidAction.NotFound",
                "use one of the supported Actions; see docs/api.md#errors",
            ),
            ApiError::MethodNotAllowed { .. } => (
                S::METHOD_NOT_ALLOWED,
                "UnsupportedHTTPMethod",
                "call / with GET or POST; see docs/api.md#calling",
            ),
            ApiError::StreamMethodNotAllowed { .. } => (
                S::METHOD_NOT_ALLOWED,
                "UnsupportedHTTPMethod",
                "open /events with GET; see docs/api.md#the-event-stream",
            ),
            ApiError::Throttled { .. } | ApiError::TooManyNonces { .. } => (
                S::BAD_REQUEST,
                "Throttling.User",
                "wait for x-acs-retry-after milliseconds, then retry; see docs/api.md#rate-limits",
            ),
            ApiError::SignatureDoesNotMatch { .. } => (
                S::BAD_REQUEST,
                "SignatureDoesNotMatch",
                "check the AccessKeySecret and how the request is signed; see docs/api.md#errors",
            ),
            ApiError::InvalidAccessKeyId { .. } => (
                S::NOT_FOUND,
                "InvalidAccessKeyId.NotFound",
                "use an AccessKeyId listed in api.users; see docs/api.md#errors",
            ),
            ApiError::SignatureNonceUsed { .. } => (
                S::BAD_REQUEST,
                "SignatureNonceUsed",
                "send a fresh SignatureNonce with every request; see docs/api.md#errors",
            ),
            ApiError::TimestampExpired { .. } => (
                S::BAD_REQUEST,
                "InvalidTimeStamp.Expired",
                "synchronise the client clock (UTC); see docs/api.md#errors",
            ),
            ApiError::Forbidden { .. } => (
                S::FORBIDDEN,
                "Forbidden.RAM",
                "grant the Action in api.users[].actions; see docs/api.md#errors",
            ),
            ApiError::NotReady | ApiError::QueryFailed => (
                S::BAD_REQUEST,
                "ErrorDBSelectError",
                "retry shortly; GET /readyz tells when the service can answer",
            ),
            ApiError::PartitionsMissing { .. } => (
                S::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "retry shortly; GET /readyz tells when every partition is read (docs/operations.md#scale-out)",
            ),
            ApiError::MarshalJson => (
                S::BAD_REQUEST,
                "ErrorMarshalJSON",
                "retry; report it if it persists",
            ),
        };
        ErrorKind {
            status,
            code,
            recommend,
        }
    }
}

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> Self {
        ApiError::Parameters {
            param: e.param.to_owned(),
            message: e.message,
        }
    }
}

/// What the envelope needs to render an error body; carried as a response
/// extension from [`ApiError::into_response`].
#[derive(Clone, Debug)]
pub struct ErrorReply {
    pub code: &'static str,
    pub message: String,
    pub recommend: &'static str,
}

/// The error body (`docs/api.md#errors`).
#[derive(Serialize)]
struct ErrorBody<'a> {
    #[serde(rename = "RequestId")]
    request_id: &'a str,
    #[serde(rename = "HostId")]
    host_id: &'a str,
    #[serde(rename = "Code")]
    code: &'a str,
    #[serde(rename = "Message")]
    message: &'a str,
    #[serde(rename = "Recommend")]
    recommend: &'a str,
}

impl ErrorReply {
    /// `{RequestId, HostId, Code, Message, Recommend}` as JSON.
    pub fn body(&self, request_id: &str, host_id: &str) -> Vec<u8> {
        let body = ErrorBody {
            request_id,
            host_id,
            code: self.code,
            message: &self.message,
            recommend: self.recommend,
        };
        // Plain strings always serialize.
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = self.kind();
        let mut response = kind.status.into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::Throttled { retry_after, .. } | ApiError::TooManyNonces { retry_after } => {
                let ms = retry_ms(retry_after);
                headers.insert("x-acs-retry-after", HeaderValue::from(ms));
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(ms.div_ceil(1000).max(1)),
                );
            }
            ApiError::MethodNotAllowed { .. } => {
                headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
            }
            ApiError::StreamMethodNotAllowed { .. } => {
                headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            }
            _ => {}
        }
        response.extensions_mut().insert(ErrorReply {
            code: kind.code,
            message: self.to_string(),
            recommend: kind.recommend,
        });
        response
    }
}

/// Whole milliseconds to wait, at least 1 (the SDK only retries on > 0).
fn retry_ms(retry_after: &Duration) -> u64 {
    let ms = retry_after.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX).max(1)
}

/// Client text as echoed in a message: at most [`MAX_ECHO_CHARS`] characters.
fn echo(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHO_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_headers_are_positive_ms_and_whole_seconds() {
        let r = ApiError::Throttled {
            qps: 10,
            retry_after: Duration::from_micros(1_500),
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.headers()["x-acs-retry-after"], "2");
        assert_eq!(r.headers()["retry-after"], "1");
        let r = ApiError::Throttled {
            qps: 1,
            retry_after: Duration::from_millis(2_001),
        }
        .into_response();
        assert_eq!(r.headers()["x-acs-retry-after"], "2001");
        assert_eq!(r.headers()["retry-after"], "3");
        let r = ApiError::Throttled {
            qps: 1,
            retry_after: Duration::ZERO,
        }
        .into_response();
        assert_eq!(r.headers()["x-acs-retry-after"], "1");
    }

    #[test]
    fn every_variant_has_the_spec_status_and_code() {
        let s = |x: &str| x.to_owned();
        for (error, status, code) in [
            (
                ApiError::Parameters {
                    param: s("Port"),
                    message: s("m"),
                },
                400,
                "ErrorParameters",
            ),
            (ApiError::MissingAction, 400, "MissingParameter"),
            (
                ApiError::MissingParameter {
                    param: s("x-acs-date"),
                    hint: s("h"),
                },
                400,
                "MissingParameter",
            ),
            (
                ApiError::TooManyNonces {
                    retry_after: Duration::from_secs(1),
                },
                400,
                "Throttling.User",
            ),
            (
                ApiError::MethodNotAllowed { method: s("PUT") },
                405,
                "UnsupportedHTTPMethod",
            ),
            (
                ApiError::StreamMethodNotAllowed { method: s("POST") },
                405,
                "UnsupportedHTTPMethod",
            ),
            (
                ApiError::InvalidAction {
                    action: s("X"),
                    supported: &["A"],
                },
                404,
                "InvalidAction.NotFound",
            ),
            (
                ApiError::Throttled {
                    qps: 1,
                    retry_after: Duration::from_secs(1),
                },
                400,
                "Throttling.User",
            ),
            (
                ApiError::SignatureDoesNotMatch { detail: s("d") },
                400,
                "SignatureDoesNotMatch",
            ),
            (
                ApiError::InvalidAccessKeyId {
                    access_key_id: s("k"),
                },
                404,
                "InvalidAccessKeyId.NotFound",
            ),
            (
                ApiError::SignatureNonceUsed { nonce: s("n") },
                400,
                "SignatureNonceUsed",
            ),
            (
                ApiError::TimestampExpired { timestamp: s("t") },
                400,
                "InvalidTimeStamp.Expired",
            ),
            (
                ApiError::Forbidden {
                    user: s("u"),
                    action: s("a"),
                },
                403,
                "Forbidden.RAM",
            ),
            (ApiError::NotReady, 400, "ErrorDBSelectError"),
            (
                ApiError::PartitionsMissing {
                    partitions: vec![1, 3],
                },
                503,
                "ServiceUnavailable",
            ),
            (ApiError::QueryFailed, 400, "ErrorDBSelectError"),
            (ApiError::MarshalJson, 400, "ErrorMarshalJSON"),
        ] {
            let kind = error.kind();
            assert_eq!(
                (kind.status.as_u16(), kind.code),
                (status, code),
                "{error:?}"
            );
            let response = error.into_response();
            let reply = response.extensions().get::<ErrorReply>().expect("reply");
            assert_eq!(reply.code, code);
            assert!(!reply.message.is_empty());
        }
    }

    #[test]
    fn long_client_text_is_cut_in_messages() {
        let e = ApiError::InvalidAction {
            action: "A".repeat(10_000),
            supported: &["DescribeInternetOpenPort"],
        };
        let message = e.to_string();
        assert!(message.len() < 200, "{message}");
        assert!(message.contains("DescribeInternetOpenPort"));
    }

    #[test]
    fn error_body_has_the_five_fields() {
        let reply = ErrorReply {
            code: "ErrorParameters",
            message: "invalid Port: x".into(),
            recommend: "r",
        };
        let v: serde_json::Value = serde_json::from_slice(&reply.body("ID", "host")).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["Code", "HostId", "Message", "Recommend", "RequestId"]
        );
        assert_eq!(v["RequestId"], "ID");
        assert_eq!(v["HostId"], "host");
    }
}
