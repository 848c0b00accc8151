//! An Alibaba Cloud RPC-style request: `Action`, `Version` and parameters
//! from the query string, a form body and the `x-acs-*` headers
//! (`docs/api.md#calling`).
//!
//! Decisions (also in `docs/api.md#calling`):
//!
//! - Parameters come from the query string and from an
//!   `application/x-www-form-urlencoded` body (a body without a
//!   `Content-Type` is read as a form too; any other type is refused). Both
//!   may be present and are merged. A name given more than once, in one
//!   place or across both, must carry the same value every time: different
//!   values are refused with `ErrorParameters` naming it, so that no
//!   component can read a different value than the one checked (parameter
//!   pollution), and a signature covers exactly what is used.
//! - `Action` and `Version` may also come from `x-acs-action` and
//!   `x-acs-version`; when a header and a parameter are both given they must
//!   agree. An empty value counts as absent.
//! - The body is at most [`MAX_BODY_BYTES`] and must arrive within
//!   [`BODY_TIMEOUT`]; names and values must be UTF-8 once
//!   percent-decoded. Anything else is `ErrorParameters`.
//! - Unknown parameters are ignored, as Alibaba Cloud does.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use percent_encoding::percent_decode;

use super::error::ApiError;

/// Largest form body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long the body may take to arrive (no slow-drip connections).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The only API version (`docs/api.md#calling`).
pub const VERSION: &str = "2017-12-07";

const FORM: &str = "application/x-www-form-urlencoded";

/// Parameters by name, each given once (or always with the same value).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params {
    map: HashMap<String, String>,
}

impl Params {
    /// The value of parameter `name`, exactly as decoded.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    /// Every parameter, for signature checks.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn insert(&mut self, name: String, value: String) -> Result<(), ApiError> {
        match self.map.entry(name) {
            Entry::Vacant(slot) => {
                slot.insert(value);
                Ok(())
            }
            Entry::Occupied(slot) if *slot.get() == value => Ok(()),
            Entry::Occupied(slot) => Err(ApiError::Parameters {
                message: format!(
                    "is given more than once with different values ({:?} and {:?}); give it once",
                    shorten(slot.get()),
                    shorten(&value)
                ),
                param: slot.key().clone(),
            }),
        }
    }
}

/// What one RPC request asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RpcRequest {
    /// `Action`, from a parameter or `x-acs-action`.
    pub action: Option<String>,
    /// `Version`, from a parameter or `x-acs-version`.
    pub version: Option<String>,
    /// All parameters, `Action` and `Version` included when sent as such.
    pub params: Params,
}

impl RpcRequest {
    /// Reads the query string `query`, the form `body` and the headers.
    pub fn parse(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Result<Self, ApiError> {
        let mut params = Params::default();
        if let Some(query) = query {
            decode_pairs(query.as_bytes(), &mut params)?;
        }
        if !body.is_empty() {
            check_form_type(headers)?;
            decode_pairs(body, &mut params)?;
        }
        let action = pick(&params, headers, "Action", "x-acs-action")?;
        let version = pick(&params, headers, "Version", "x-acs-version")?;
        Ok(RpcRequest {
            action,
            version,
            params,
        })
    }

    /// `Version`, when given, must be the one this API implements.
    pub fn check_version(&self) -> Result<(), ApiError> {
        match self.version.as_deref() {
            None | Some(VERSION) => Ok(()),
            Some(other) => Err(ApiError::Parameters {
                param: "Version".to_owned(),
                message: format!("{:?} is not supported; use {VERSION}", shorten(other)),
            }),
        }
    }
}

/// Reads the body: at most [`MAX_BODY_BYTES`], within [`BODY_TIMEOUT`].
pub async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::Parameters {
        param: "request body".to_owned(),
        message: format!(
            "is larger than {MAX_BODY_BYTES} bytes; send a smaller form body or put the \
             parameters in the query string"
        ),
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error)) => {
            let over = std::error::Error::source(&error)
                .is_some_and(|e| e.is::<http_body_util::LengthLimitError>());
            if over {
                return Err(too_large());
            }
            tracing::debug!(%error, "request body not read");
            Err(ApiError::Parameters {
                param: "request body".to_owned(),
                message: "could not be read completely".to_owned(),
            })
        }
        Err(_) => Err(ApiError::Parameters {
            param: "request body".to_owned(),
            message: format!(
                "did not arrive within {} s; send it at once",
                BODY_TIMEOUT.as_secs()
            ),
        }),
    }
}

/// A non-empty body must be a form (or carry no `Content-Type`).
fn check_form_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("");
    let essence = text.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case(FORM) {
        return Ok(());
    }
    Err(ApiError::Parameters {
        param: "Content-Type".to_owned(),
        message: format!(
            "{:?} is not accepted for a body; send {FORM} or put the parameters in the query string",
            shorten(text)
        ),
    })
}

/// Decodes `name=value&...` (form encoding: `+` is a space) into `params`.
fn decode_pairs(input: &[u8], params: &mut Params) -> Result<(), ApiError> {
    for (name, value) in decode_pairs_list(input)? {
        params.insert(name, value)?;
    }
    Ok(())
}

/// Decodes `name=value&...` (form encoding: `+` is a space) into its pairs,
/// in order, repeats kept; pairs without a name are skipped.
pub fn decode_pairs_list(input: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    let mut pairs = Vec::new();
    for pair in input.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (raw_name, raw_value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        let name = decode(raw_name).ok_or_else(|| ApiError::Parameters {
            param: "parameter name".to_owned(),
            message: "is not valid UTF-8 once percent-decoded".to_owned(),
        })?;
        if name.is_empty() {
            continue;
        }
        let value = decode(raw_value).ok_or_else(|| ApiError::Parameters {
            param: shorten(&name).into_owned(),
            message: "is not valid UTF-8 once percent-decoded".to_owned(),
        })?;
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// Percent-decodes one form component; `None` when it is not UTF-8.
fn decode(raw: &[u8]) -> Option<String> {
    let bytes: Cow<[u8]> = if raw.contains(&b'+') {
        Cow::Owned(
            raw.iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect(),
        )
    } else {
        Cow::Borrowed(raw)
    };
    percent_decode(&bytes)
        .decode_utf8()
        .ok()
        .map(Cow::into_owned)
}

/// `name` from the parameters or `header`; both given must agree.
fn pick(
    params: &Params,
    headers: &HeaderMap,
    name: &str,
    header_name: &str,
) -> Result<Option<String>, ApiError> {
    let from_param = params.get(name).map(str::trim).filter(|v| !v.is_empty());
    let from_header = match headers.get(header_name) {
        None => None,
        Some(value) => {
            let text = value.to_str().map_err(|_| ApiError::Parameters {
                param: header_name.to_owned(),
                message: "is not visible ASCII".to_owned(),
            })?;
            Some(text.trim()).filter(|v| !v.is_empty())
        }
    };
    match (from_param, from_header) {
        (Some(p), Some(h)) if p != h => Err(ApiError::Parameters {
            param: name.to_owned(),
            message: format!(
                "{:?} differs from the {header_name} header {:?}; send one, or the same in both",
                shorten(p),
                shorten(h)
            ),
        }),
        (Some(v), _) | (None, Some(v)) => Ok(Some(v.to_owned())),
        (None, None) => Ok(None),
    }
}

/// Client text as echoed in a message: at most 64 characters.
fn shorten(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(64) {
        Some((cut, _)) => Cow::Owned(format!("{}...", &text[..cut])),
        None => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    fn param_of(e: ApiError) -> String {
        match e {
            ApiError::Parameters { param, .. } => param,
            other => panic!("not ErrorParameters: {other:?}"),
        }
    }

    #[test]
    fn query_and_form_body_are_merged_and_decoded() {
        let r = RpcRequest::parse(
            Some("Action=DescribeInternetOpenPort&ServiceNameFuzzy=my+sql&Lang=%65n"),
            &headers(&[(
                "content-type",
                "application/x-www-form-urlencoded; charset=UTF-8",
            )]),
            b"Port=3306&Version=2017-12-07",
        )
        .unwrap();
        assert_eq!(r.action.as_deref(), Some("DescribeInternetOpenPort"));
        assert_eq!(r.version.as_deref(), Some(VERSION));
        assert_eq!(r.params.get("ServiceNameFuzzy"), Some("my sql"));
        assert_eq!(r.params.get("Lang"), Some("en"));
        assert_eq!(r.params.get("Port"), Some("3306"));
    }

    #[test]
    fn action_and_version_come_from_headers() {
        let r = RpcRequest::parse(
            Some("PageSize=5"),
            &headers(&[
                ("x-acs-action", "DescribeInternetOpenPort"),
                ("x-acs-version", "2017-12-07"),
            ]),
            b"",
        )
        .unwrap();
        assert_eq!(r.action.as_deref(), Some("DescribeInternetOpenPort"));
        assert!(r.check_version().is_ok());
    }

    #[test]
    fn conflicting_header_and_parameter_are_refused() {
        let e = RpcRequest::parse(Some("Action=A"), &headers(&[("x-acs-action", "B")]), b"")
            .unwrap_err();
        assert_eq!(param_of(e), "Action");
    }

    #[test]
    fn a_repeated_parameter_must_repeat_its_value() {
        let ok = RpcRequest::parse(Some("Port=80&Port=80"), &HeaderMap::new(), b"Port=80").unwrap();
        assert_eq!(ok.params.get("Port"), Some("80"));
        let e = RpcRequest::parse(Some("Port=80&Port=443"), &HeaderMap::new(), b"").unwrap_err();
        assert_eq!(param_of(e), "Port");
        let e = RpcRequest::parse(Some("Port=80"), &HeaderMap::new(), b"Port=22").unwrap_err();
        assert_eq!(param_of(e), "Port");
    }

    #[test]
    fn non_utf8_values_and_bodies_are_refused_by_name() {
        let e = RpcRequest::parse(Some("ServiceName=%FF%FE"), &HeaderMap::new(), b"").unwrap_err();
        assert_eq!(param_of(e), "ServiceName");
        let e = RpcRequest::parse(None, &HeaderMap::new(), b"Port=\xff").unwrap_err();
        assert_eq!(param_of(e), "Port");
        let e = RpcRequest::parse(None, &HeaderMap::new(), b"%C3%28=1").unwrap_err();
        assert_eq!(param_of(e), "parameter name");
    }

    #[test]
    fn a_json_body_is_refused_naming_content_type() {
        let e = RpcRequest::parse(
            None,
            &headers(&[("content-type", "application/json")]),
            b"{\"Port\":80}",
        )
        .unwrap_err();
        assert_eq!(param_of(e), "Content-Type");
    }

    #[test]
    fn malformed_pairs_are_read_leniently_and_unknown_ones_kept_aside() {
        let r = RpcRequest::parse(Some("&&=x&Flag&A=b=c&%zz=1"), &HeaderMap::new(), b"").unwrap();
        assert_eq!(r.params.get("Flag"), Some(""));
        assert_eq!(r.params.get("A"), Some("b=c"));
        assert_eq!(r.params.get("%zz"), Some("1"));
        assert_eq!(r.action, None);
    }

    #[test]
    fn other_versions_are_refused_naming_version() {
        let r = RpcRequest::parse(Some("Version=2020-01-01"), &HeaderMap::new(), b"").unwrap();
        let e = r.check_version().unwrap_err();
        assert_eq!(param_of(e.clone()), "Version");
        assert!(e.to_string().contains("2017-12-07"), "{e}");
        let empty = RpcRequest::parse(Some("Version="), &HeaderMap::new(), b"").unwrap();
        assert!(empty.check_version().is_ok());
    }

    #[tokio::test]
    async fn oversized_bodies_are_refused() {
        let big = vec![b'a'; MAX_BODY_BYTES + 1];
        let e = read_body(&HeaderMap::new(), Body::from(big))
            .await
            .unwrap_err();
        assert_eq!(param_of(e), "request body");
        let declared = headers(&[("content-length", "100000000")]);
        let e = read_body(&declared, Body::empty()).await.unwrap_err();
        assert_eq!(param_of(e), "request body");
        let fits = vec![b'a'; MAX_BODY_BYTES];
        assert_eq!(
            read_body(&HeaderMap::new(), Body::from(fits))
                .await
                .unwrap()
                .len(),
            MAX_BODY_BYTES
        );
    }
}

/// Hostile requests: any query string and any form body decode to
/// parameters or to an error, never a panic.
#[cfg(test)]
mod hostile {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_query_and_body_never_panic(
            query in prop_oneof![any::<String>(), "[A-Za-z0-9%=&+.\\-]{0,200}"],
            body in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, FORM.parse().unwrap());
            let _ = RpcRequest::parse(Some(&query), &headers, &body);
            let _ = decode_pairs_list(&body);
        }
    }
}
