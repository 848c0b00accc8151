//! `api.auth = "acs"`: signed requests, permissions and per-user limits,
//! with requests signed here the way the official SDK signs them (the
//! signing code is checked against the SDK's own output in `auth::acs3`
//! and `auth::v1`).

use axum::http::header::AUTHORIZATION;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::*;
use crate::api::auth::{acs3, encode, v1};
use crate::api::rpc::RpcRequest;
use crate::config::Secret;

pub(super) const SECOPS_KEY: &str = "LTAI-secops";
pub(super) const SECOPS_SECRET: &str = "secops-secret-0123456789";
pub(super) const PORTS_KEY: &str = "LTAI-ports";
pub(super) const PORTS_SECRET: &str = "ports-secret-abcdef";

pub(super) fn users(secops_qps: Option<u32>) -> Vec<UserConfig> {
    vec![
        UserConfig {
            name: "secops".into(),
            access_key_id: SECOPS_KEY.into(),
            access_key_secret: Secret::new(SECOPS_SECRET),
            qps: secops_qps,
            actions: vec!["*".into()],
        },
        UserConfig {
            name: "ports-only".into(),
            access_key_id: PORTS_KEY.into(),
            access_key_secret: Secret::new(PORTS_SECRET),
            qps: Some(2),
            actions: vec!["DescribeInternetOpenPort".into()],
        },
    ]
}

fn acs(default_qps: u32) -> Harness {
    harness_users(Auth::Acs, default_qps, users(None))
}

/// `NOW_MS + offset_ms` as the SDK writes it.
pub(super) fn utc(offset_ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis((NOW_MS + offset_ms) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A request signed like the SDK's default (ACS3-HMAC-SHA256): POST, the
/// parameters form-encoded in the query, the Action in `x-acs-action`.
struct Acs3Request<'a> {
    action: &'a str,
    query: &'a str,
    key: &'a str,
    secret: &'a str,
    nonce: String,
    date: String,
    body: &'a [u8],
}

impl<'a> Acs3Request<'a> {
    fn new(action: &'a str, query: &'a str) -> Self {
        Acs3Request {
            action,
            query,
            key: SECOPS_KEY,
            secret: SECOPS_SECRET,
            nonce: format!("nonce-{}", rand::random::<u64>()),
            date: utc(0),
            body: b"",
        }
    }

    fn build(&self) -> Request<Body> {
        let mut headers = HeaderMap::new();
        let mut set = |k: &'static str, v: &str| {
            headers.insert(k, v.parse().unwrap());
        };
        set("host", "127.0.0.1:8080");
        set("x-acs-action", self.action);
        set("x-acs-version", "2017-12-07");
        set("x-acs-date", &self.date);
        set("x-acs-signature-nonce", &self.nonce);
        set("accept", "application/json");
        set("user-agent", "AlibabaCloud (test) Python/3 TeaDSL/2");
        set(
            "x-acs-content-sha256",
            &hex::encode(Sha256::digest(self.body)),
        );
        if !self.body.is_empty() {
            set("content-type", "application/x-www-form-urlencoded");
        }
        let mut signed: Vec<String> = headers.keys().map(|k| k.as_str().to_owned()).collect();
        signed.sort();
        let canonical = acs3::canonical_request(
            &acs3::Signed {
                method: "POST",
                path: "/",
                query: Some(self.query),
                headers: &headers,
                authority: None,
                body: self.body,
            },
            &signed,
            &hex::encode(Sha256::digest(self.body)),
        )
        .unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.as_bytes()).unwrap();
        mac.update(acs3::string_to_sign(&canonical).as_bytes());
        let authorization = format!(
            "ACS3-HMAC-SHA256 Credential={},SignedHeaders={},Signature={}",
            self.key,
            signed.join(";"),
            hex::encode(mac.finalize().into_bytes())
        );
        let mut req = Request::post(format!("/?{}", self.query))
            .body(Body::from(self.body.to_vec()))
            .unwrap();
        *req.headers_mut() = headers;
        req.headers_mut()
            .insert(AUTHORIZATION, authorization.parse().unwrap());
        req
    }
}

/// A request signed with signature v1, as the SDK with
/// `signature_algorithm = 'v2'` sends it.
fn v1_request(
    action: &str,
    extra: &str,
    key: &str,
    secret: &str,
    nonce: &str,
    ts: &str,
) -> Request<Body> {
    let query = v1_query("POST", action, extra, key, secret, nonce, ts);
    Request::post(format!("/?{query}"))
        .header("x-acs-action", action)
        .body(Body::empty())
        .unwrap()
}

/// The query string of a `method` request signed with signature v1: the
/// SDK's parameters, `extra`, and `Signature` last.
pub(super) fn v1_query(
    method: &str,
    action: &str,
    extra: &str,
    key: &str,
    secret: &str,
    nonce: &str,
    ts: &str,
) -> String {
    let mut query = format!(
        "Action={action}&Format=json&Version=2017-12-07&Timestamp={}&SignatureNonce={nonce}\
         &SignatureMethod=HMAC-SHA1&SignatureVersion=1.0&AccessKeyId={key}",
        encode::encode(ts)
    );
    if !extra.is_empty() {
        query.push('&');
        query.push_str(extra);
    }
    let params = RpcRequest::parse(Some(&query), &HeaderMap::new(), b"")
        .unwrap()
        .params;
    let mut mac = Hmac::<Sha1>::new_from_slice(format!("{secret}&").as_bytes()).unwrap();
    mac.update(v1::string_to_sign(method, &params).as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    query.push_str("&Signature=");
    query.push_str(&encode::encode(&signature));
    query
}

const PORT: &str = "DescribeInternetOpenPort";

#[tokio::test]
async fn an_acs3_signed_request_is_answered_and_logged_with_its_user() {
    let h = acs(0);
    let reply = h
        .send(Acs3Request::new(PORT, "Lang=en&ServiceNameFuzzy=SQL&Note=a+b%2Fc").build())
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let v = reply.json();
    assert_eq!(v["PageInfo"]["TotalCount"], 1);
    assert_eq!(v["DataList"][0]["Port"], 3306);
}

#[tokio::test]
async fn a_form_body_is_covered_by_the_acs3_payload_hash() {
    let h = acs(0);
    let mut r = Acs3Request::new(PORT, "Lang=en");
    r.body = b"Port=22";
    let reply = h.send(r.build()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["DataList"][0]["Port"], 22);
}

#[tokio::test]
async fn a_v1_signed_request_is_answered() {
    let h = acs(0);
    let reply = h
        .send(v1_request(
            PORT,
            "Port=443&Lang=en",
            SECOPS_KEY,
            SECOPS_SECRET,
            "v1-a",
            &utc(0),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["DataList"][0]["Port"], 443);
}

#[tokio::test]
async fn a_wrong_secret_is_signature_does_not_match_and_never_echoes_a_secret() {
    let h = acs(0);
    let mut r = Acs3Request::new(PORT, "Lang=en");
    r.secret = "not-the-secret";
    let reply = h.send(r.build()).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_code(), "SignatureDoesNotMatch");
    let reply = h
        .send(v1_request(
            PORT,
            "",
            SECOPS_KEY,
            "not-the-secret",
            "v1-b",
            &utc(0),
        ))
        .await;
    assert_eq!(reply.error_code(), "SignatureDoesNotMatch");
    assert!(
        reply.message().contains("string to sign"),
        "{}",
        reply.message()
    );
    for secret in [SECOPS_SECRET, PORTS_SECRET, "not-the-secret"] {
        assert!(!reply.text().contains(secret));
    }
}

#[tokio::test]
async fn an_unknown_access_key_is_not_found() {
    let h = acs(0);
    let mut r = Acs3Request::new(PORT, "");
    r.key = "LTAI-nobody";
    let reply = h.send(r.build()).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.error_code(), "InvalidAccessKeyId.NotFound");
    assert!(reply.message().contains("LTAI-nobody"));
    let reply = h
        .send(v1_request(PORT, "", "LTAI-nobody", "x", "v1-c", &utc(0)))
        .await;
    assert_eq!(reply.error_code(), "InvalidAccessKeyId.NotFound");
}

#[tokio::test]
async fn a_replayed_nonce_is_refused_for_both_versions() {
    let h = acs(0);
    let r = Acs3Request::new(PORT, "Lang=en");
    assert_eq!(h.send(r.build()).await.status, StatusCode::OK);
    let replay = h.send(r.build()).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert_eq!(replay.error_code(), "SignatureNonceUsed");
    let ts = utc(0);
    let first = h
        .send(v1_request(PORT, "", SECOPS_KEY, SECOPS_SECRET, "v1-d", &ts))
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let replay = h
        .send(v1_request(PORT, "", SECOPS_KEY, SECOPS_SECRET, "v1-d", &ts))
        .await;
    assert_eq!(replay.error_code(), "SignatureNonceUsed");
    // Nonces are per AccessKey: another key may use the same value.
    let other = h
        .send(v1_request(PORT, "", PORTS_KEY, PORTS_SECRET, "v1-d", &ts))
        .await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.text());
}

#[tokio::test]
async fn timestamps_more_than_15_minutes_off_are_expired() {
    let h = acs(0);
    for (offset_min, ok) in [(-16, false), (16, false), (-14, true), (14, true)] {
        let mut r = Acs3Request::new(PORT, "");
        r.date = utc(offset_min * 60_000);
        let reply = h.send(r.build()).await;
        if ok {
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "{offset_min}: {}",
                reply.text()
            );
        } else {
            assert_eq!(
                reply.error_code(),
                "InvalidTimeStamp.Expired",
                "{offset_min}"
            );
        }
        let nonce = format!("v1-skew{offset_min}");
        let reply = h
            .send(v1_request(
                PORT,
                "",
                SECOPS_KEY,
                SECOPS_SECRET,
                &nonce,
                &utc(offset_min * 60_000),
            ))
            .await;
        assert_eq!(
            reply.status.is_success(),
            ok,
            "v1 {offset_min}: {}",
            reply.text()
        );
    }
    let mut r = Acs3Request::new(PORT, "");
    r.date = "yesterday".into();
    let reply = h.send(r.build()).await;
    assert_eq!(reply.error_code(), "ErrorParameters");
    assert!(
        reply.message().contains("x-acs-date"),
        "{}",
        reply.message()
    );
}

#[tokio::test]
async fn a_user_may_call_only_its_actions() {
    let h = acs(0);
    let mut r = Acs3Request::new("DescribeInternetOpenIp", "");
    r.key = PORTS_KEY;
    r.secret = PORTS_SECRET;
    let reply = h.send(r.build()).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.error_code(), "Forbidden.RAM");
    assert!(
        reply.message().contains("ports-only"),
        "{}",
        reply.message()
    );
    let mut r = Acs3Request::new(PORT, "");
    r.key = PORTS_KEY;
    r.secret = PORTS_SECRET;
    assert_eq!(h.send(r.build()).await.status, StatusCode::OK);
    // "*" grants every Action.
    for action in crate::query::Action::NAMES {
        let reply = h.send(Acs3Request::new(action, "").build()).await;
        assert_eq!(reply.status, StatusCode::OK, "{action}: {}", reply.text());
    }
}

#[tokio::test]
async fn each_user_has_its_own_rate_limit() {
    let h = harness_users(Auth::Acs, 0, users(Some(3)));
    for i in 0..3 {
        let reply = h.send(Acs3Request::new(PORT, "").build()).await;
        assert_eq!(reply.status, StatusCode::OK, "request {i}");
    }
    let throttled = Acs3Request::new(PORT, "");
    let reply = h.send(throttled.build()).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_code(), "Throttling.User");
    let ms: u64 = reply.headers["x-acs-retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=334).contains(&ms), "{ms}");
    assert!(reply.headers.contains_key("retry-after"));
    // The other user, from the same address, is not held back.
    let mut other = Acs3Request::new(PORT, "");
    other.key = PORTS_KEY;
    other.secret = PORTS_SECRET;
    assert_eq!(h.send(other.build()).await.status, StatusCode::OK);
    let text = h.metrics_text();
    assert!(
        text.contains(r#"exposure_api_throttled_total{user="secops"} 1"#),
        "{text}"
    );
    // A throttled request did not use its nonce: sent again later, it is served.
    tokio::time::sleep(std::time::Duration::from_millis(ms + 5)).await;
    let again = h.send(throttled.build()).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
}

#[tokio::test]
async fn replays_do_not_spend_the_users_budget() {
    let h = harness_users(Auth::Acs, 0, users(Some(2)));
    let r = Acs3Request::new(PORT, "");
    assert_eq!(h.send(r.build()).await.status, StatusCode::OK);
    for _ in 0..20 {
        assert_eq!(h.send(r.build()).await.error_code(), "SignatureNonceUsed");
    }
    let fresh = h.send(Acs3Request::new(PORT, "").build()).await;
    assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.text());
}

#[tokio::test]
async fn unsigned_requests_are_refused_naming_the_signature() {
    let h = acs(0);
    let reply = h.get(PORT_QUERY).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_code(), "MissingParameter");
    assert!(reply.message().contains("Signature"), "{}", reply.message());
    assert_eq!(h.get("/healthz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn v1_needs_the_action_among_the_signed_parameters() {
    let h = acs(0);
    // Signed without Action, which then only travels in the unsigned header.
    let ts = utc(0);
    let query = format!(
        "Format=json&Version=2017-12-07&Timestamp={}&SignatureNonce=n-x&SignatureMethod=HMAC-SHA1\
         &SignatureVersion=1.0&AccessKeyId={SECOPS_KEY}",
        encode::encode(&ts)
    );
    let params = RpcRequest::parse(Some(&query), &HeaderMap::new(), b"")
        .unwrap()
        .params;
    let mut mac = Hmac::<Sha1>::new_from_slice(format!("{SECOPS_SECRET}&").as_bytes()).unwrap();
    mac.update(v1::string_to_sign("POST", &params).as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let req = Request::post(format!("/?{query}&Signature={}", encode::encode(&sig)))
        .header("x-acs-action", "DescribeInternetOpenIp")
        .body(Body::empty())
        .unwrap();
    let reply = h.send(req).await;
    assert_eq!(reply.error_code(), "MissingParameter");
    assert!(reply.message().contains("Action"), "{}", reply.message());
}

#[tokio::test]
async fn an_action_header_changed_in_transit_breaks_the_acs3_signature() {
    let h = acs(0);
    let mut req = Acs3Request::new(PORT, "").build();
    req.headers_mut()
        .insert("x-acs-action", "DescribeInternetOpenIp".parse().unwrap());
    assert_eq!(h.send(req).await.error_code(), "SignatureDoesNotMatch");
    // A query parameter added in transit too.
    let req = Acs3Request::new(PORT, "Lang=en").build();
    let (mut parts, body) = req.into_parts();
    parts.uri = "/?Lang=en&Port=22".parse().unwrap();
    let reply = h.send(Request::from_parts(parts, body)).await;
    assert_eq!(reply.error_code(), "SignatureDoesNotMatch");
}

#[tokio::test]
async fn a_second_authorization_header_is_refused() {
    let h = acs(0);
    let mut req = Acs3Request::new(PORT, "").build();
    let first = req.headers()[AUTHORIZATION].clone();
    req.headers_mut().append(AUTHORIZATION, first);
    assert_eq!(h.send(req).await.error_code(), "SignatureDoesNotMatch");
}

#[tokio::test]
async fn hostile_signed_requests_never_get_a_500() {
    let h = acs(0);
    let long = "x".repeat(8_000);
    let cases: Vec<(&str, String)> = vec![
        ("authorization", "ACS3-HMAC-SHA256".into()),
        (
            "authorization",
            format!("ACS3-HMAC-SHA256 Credential={long},SignedHeaders=host,Signature=00"),
        ),
        (
            "authorization",
            format!(
                "ACS3-HMAC-SHA256 Credential={SECOPS_KEY},SignedHeaders={},Signature=00",
                "a;".repeat(2000)
            ),
        ),
        (
            "authorization",
            "ACS3-HMAC-SHA256 Credential==,SignedHeaders==,Signature==".into(),
        ),
        ("authorization", "\t".into()),
    ];
    for (name, value) in cases {
        let req = Request::post("/?Action=DescribeInternetOpenPort")
            .header("x-acs-date", utc(0))
            .header("x-acs-signature-nonce", "n")
            .header(name, value.as_str())
            .body(Body::empty())
            .unwrap();
        let reply = h.send(req).await;
        assert!(
            reply.status.is_client_error(),
            "{}",
            &value[..value.len().min(60)]
        );
        reply.error_code();
        assert!(reply.message().len() < 4000);
    }
    for query in [
        format!("Signature=%FF%FE&AccessKeyId={SECOPS_KEY}&SignatureNonce=n&Timestamp=x&SignatureMethod=HMAC-SHA1"),
        format!("Signature={long}&AccessKeyId={SECOPS_KEY}&SignatureNonce=n&Timestamp={}&SignatureMethod=HMAC-SHA1&Action=DescribeInternetOpenPort", encode::encode(&utc(0))),
        "Signature=&AccessKeyId=".to_owned(),
    ] {
        let reply = h.get(&format!("/?{query}")).await;
        assert!(reply.status.is_client_error(), "{}", &query[..60.min(query.len())]);
        reply.error_code();
    }
}
