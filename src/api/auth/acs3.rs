//! ACS3-HMAC-SHA256, what the official SDKs send by default:
//!
//! ```text
//! Authorization: ACS3-HMAC-SHA256 Credential=<AccessKeyId>,SignedHeaders=<a;b;c>,Signature=<hex>
//! canonical = METHOD \n path \n sorted RFC 3986 query \n
//!             name:value\n for each signed header \n signed;headers \n hex(SHA-256(body))
//! Signature = hex(HMAC-SHA256(secret, "ACS3-HMAC-SHA256\n" + hex(SHA-256(canonical))))
//! ```
//!
//! The query is decoded as the client sent it (form encoding: `+` is a
//! space) and encoded again per RFC 3986, as the SDK signs it. Headers the
//! answer depends on must be signed: `host`, `content-type` when present,
//! and every `x-acs-*` header (so the Action, the date, the nonce and the
//! body's hash, which are required).

use std::collections::BTreeSet;

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::super::error::ApiError;
use super::encode::{canonical_pairs, query_pairs};
use super::Claims;

/// The only ACS3 algorithm verified.
pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";
/// Longest canonical request echoed in a mismatch message.
const MAX_ECHO: usize = 2048;

/// What an ACS3 request claims, before it is verified.
pub struct Acs3 {
    pub claims: Claims,
    /// Lowercase, sorted, distinct.
    signed_headers: Vec<String>,
    /// The hex signature as sent.
    signature: String,
}

/// The parts of the request the canonical request covers.
pub struct Signed<'r> {
    pub method: &'r str,
    pub path: &'r str,
    pub query: Option<&'r str>,
    pub headers: &'r HeaderMap,
    /// The request's authority when it has no `Host` header (HTTP/2).
    pub authority: Option<&'r str>,
    pub body: &'r [u8],
}

fn malformed(detail: impl Into<String>) -> ApiError {
    ApiError::SignatureDoesNotMatch {
        detail: detail.into(),
    }
}

impl Acs3 {
    /// Reads the `Authorization` header, the date and the nonce.
    pub fn parse(authorization: &str, headers: &HeaderMap) -> Result<Self, ApiError> {
        let form = "the Authorization header must be \"ACS3-HMAC-SHA256 Credential=<AccessKeyId>,\
                    SignedHeaders=<a;b;c>,Signature=<hex>\"";
        let (algorithm, rest) = authorization
            .trim()
            .split_once(' ')
            .ok_or_else(|| malformed(form))?;
        if algorithm != ALGORITHM {
            return Err(malformed(format!(
                "the algorithm {:?} is not supported; sign with {ALGORITHM} or signature v1",
                shorten(algorithm)
            )));
        }
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (key, value) = part.trim().split_once('=').ok_or_else(|| malformed(form))?;
            let slot = match key.trim() {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed,
                "Signature" => &mut signature,
                _ => return Err(malformed(form)),
            };
            if slot.replace(value.trim()).is_some() {
                return Err(malformed(format!("{form}; {key} is given twice")));
            }
        }
        let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature)
        else {
            return Err(malformed(form));
        };
        if credential.is_empty() {
            return Err(malformed(form));
        }
        let signed_headers: Vec<String> = signed
            .split(';')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for required in [
            "host",
            "x-acs-content-sha256",
            "x-acs-date",
            "x-acs-signature-nonce",
        ] {
            if !signed_headers.iter().any(|h| h == required) {
                return Err(malformed(format!("SignedHeaders must include {required}")));
            }
        }
        for name in headers.keys() {
            let name = name.as_str();
            let must = name.starts_with("x-acs-") || name == "content-type";
            if must && !signed_headers.iter().any(|h| h == name) {
                return Err(malformed(format!(
                    "the header {name} is sent but not signed; every x-acs-* header, host and \
                     content-type must be in SignedHeaders"
                )));
            }
        }
        let header = |name: &str, hint: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| ApiError::MissingParameter {
                    param: name.to_owned(),
                    hint: hint.to_owned(),
                })
        };
        let timestamp = header(
            "x-acs-date",
            "the UTC time of the request, e.g. 2024-03-01T12:00:00Z",
        )?;
        let nonce = header("x-acs-signature-nonce", "a unique value for every request")?;
        header(
            "x-acs-content-sha256",
            "the hex SHA-256 of the body (of nothing: e3b0c442...b855)",
        )?;
        Ok(Acs3 {
            claims: Claims {
                access_key_id: credential.to_owned(),
                nonce,
                timestamp,
                timestamp_name: "x-acs-date",
            },
            signed_headers,
            signature: signature.to_owned(),
        })
    }

    /// Checks the signature with `secret`; on a mismatch the error shows
    /// the canonical request the server signed.
    pub fn verify(&self, req: &Signed<'_>, secret: &str) -> Result<(), ApiError> {
        let body_hash = hex::encode(Sha256::digest(req.body));
        if let Some(claimed) = req.headers.get("x-acs-content-sha256") {
            if !claimed
                .as_bytes()
                .eq_ignore_ascii_case(body_hash.as_bytes())
            {
                return Err(malformed(
                    "x-acs-content-sha256 is not the SHA-256 of the body; it must be the hex \
                     SHA-256 of exactly the bytes sent",
                ));
            }
        }
        let canonical = canonical_request(req, &self.signed_headers, &body_hash)?;
        let to_sign = string_to_sign(&canonical);
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(to_sign.as_bytes());
        match hex::decode(&self.signature) {
            Ok(given) if mac.verify_slice(&given).is_ok() => Ok(()),
            _ => Err(malformed(format!(
                "{ALGORITHM}; the server's canonical request is {:?}",
                shorten_to(&canonical, MAX_ECHO)
            ))),
        }
    }
}

/// The canonical request over `signed` headers and the body's hash.
pub fn canonical_request(
    req: &Signed<'_>,
    signed: &[String],
    body_hash: &str,
) -> Result<String, ApiError> {
    let pairs = query_pairs(req.query);
    let query = canonical_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut out = format!("{}\n{}\n{query}\n", req.method, req.path);
    for name in signed {
        let mut values: Vec<String> = req
            .headers
            .get_all(name.as_str())
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
            .collect();
        if values.is_empty() && name == "host" {
            values.extend(req.authority.map(str::to_owned));
        }
        if values.is_empty() {
            return Err(malformed(format!(
                "the signed header {:?} is not in the request",
                shorten(name)
            )));
        }
        values.sort();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed.join(";"));
    out.push('\n');
    out.push_str(body_hash);
    Ok(out)
}

/// `ACS3-HMAC-SHA256\n` and the hex SHA-256 of the canonical request.
pub fn string_to_sign(canonical: &str) -> String {
    format!(
        "{ALGORITHM}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    )
}

fn shorten(text: &str) -> String {
    shorten_to(text, 64)
}

fn shorten_to(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    /// Signed by the official SDK (`Utils.get_authorization`, tea-openapi
    /// 0.4.6) with the secret `sec`, for the query and headers below.
    const SDK_AUTHORIZATION: &str = "ACS3-HMAC-SHA256 Credential=AKID,SignedHeaders=accept;host;\
        user-agent;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;\
        x-acs-version,Signature=1469856f2feb4a6d9e7273431acfbd10fd3bb7c83ca1a9c6c07384d4018aa8db";
    /// As the SDK sends it: form encoding, space as `+`.
    const SDK_QUERY: &str = "Lang=en&ServiceNameFuzzy=my+sql%2A~%27&SortList.1.Dir=asc";

    fn sdk_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("host", "127.0.0.1:8080"),
            ("x-acs-version", "2017-12-07"),
            ("x-acs-action", "DescribeInternetOpenPort"),
            ("user-agent", "UA/1.0"),
            ("x-acs-date", "2024-03-01T12:00:00Z"),
            ("x-acs-signature-nonce", "nonce-2"),
            ("accept", "application/json"),
            ("x-acs-content-sha256", EMPTY_SHA256),
            ("accept-encoding", "identity"),
            ("content-length", "0"),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        h
    }

    fn check(query: &str, headers: &HeaderMap, body: &[u8], secret: &str) -> Result<(), ApiError> {
        let auth = headers
            .get("authorization")
            .map_or(SDK_AUTHORIZATION, |v| v.to_str().unwrap());
        let acs3 = Acs3::parse(auth, headers)?;
        acs3.verify(
            &Signed {
                method: "POST",
                path: "/",
                query: Some(query),
                headers,
                authority: None,
                body,
            },
            secret,
        )
    }

    #[test]
    fn a_signature_made_by_the_sdk_verifies() {
        let headers = sdk_headers();
        let acs3 = Acs3::parse(SDK_AUTHORIZATION, &headers).unwrap();
        assert_eq!(acs3.claims.access_key_id, "AKID");
        assert_eq!(acs3.claims.nonce, "nonce-2");
        assert_eq!(acs3.claims.timestamp, "2024-03-01T12:00:00Z");
        check(SDK_QUERY, &headers, b"", "sec").unwrap();
        // The same query written with %20 and in another order is the same request.
        check(
            "SortList.1.Dir=asc&ServiceNameFuzzy=my%20sql*~'&Lang=en",
            &headers,
            b"",
            "sec",
        )
        .unwrap();
    }

    #[test]
    fn small_changes_break_the_signature() {
        let headers = sdk_headers();
        assert!(check(SDK_QUERY, &headers, b"", "sec ").is_err(), "secret");
        assert!(check(
            "Lang=zh&ServiceNameFuzzy=my+sql%2A~%27&SortList.1.Dir=asc",
            &headers,
            b"",
            "sec"
        )
        .is_err());
        assert!(check(&format!("{SDK_QUERY}&Port=22"), &headers, b"", "sec").is_err());
        // A signed header changed in transit.
        for (name, value) in [
            ("x-acs-action", "DescribeInternetOpenIp"),
            ("user-agent", "UA/1.1"),
            ("host", "127.0.0.1:8081"),
            ("x-acs-signature-nonce", "nonce-3"),
        ] {
            let mut h = sdk_headers();
            h.insert(name, HeaderValue::from_static(value));
            assert!(check(SDK_QUERY, &h, b"", "sec").is_err(), "{name}");
        }
        // A body the hash header does not describe.
        let err = check(SDK_QUERY, &headers, b"Port=22", "sec").unwrap_err();
        assert!(err.to_string().contains("x-acs-content-sha256"), "{err}");
        // A signature one hex digit off, or not hex.
        for sig in [
            "1469856f2feb4a6d9e7273431acfbd10fd3bb7c83ca1a9c6c07384d4018aa8dc",
            "zz",
        ] {
            let mut h = sdk_headers();
            let auth = SDK_AUTHORIZATION.replace(
                "1469856f2feb4a6d9e7273431acfbd10fd3bb7c83ca1a9c6c07384d4018aa8db",
                sig,
            );
            h.insert("authorization", HeaderValue::from_str(&auth).unwrap());
            assert!(check(SDK_QUERY, &h, b"", "sec").is_err(), "{sig}");
        }
    }

    #[test]
    fn unsigned_acs_headers_and_missing_required_ones_are_refused() {
        let mut h = sdk_headers();
        h.insert("x-acs-extra", HeaderValue::from_static("1"));
        let err = Acs3::parse(SDK_AUTHORIZATION, &h).err().unwrap();
        assert!(err.to_string().contains("x-acs-extra"), "{err}");
        let mut h = sdk_headers();
        h.insert(
            "content-type",
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        assert!(Acs3::parse(SDK_AUTHORIZATION, &h).is_err());
        let mut h = sdk_headers();
        h.remove("x-acs-content-sha256");
        let unsigned = SDK_AUTHORIZATION.replace("x-acs-content-sha256;", "");
        let err = Acs3::parse(&unsigned, &h).err().unwrap();
        assert!(err.to_string().contains("x-acs-content-sha256"), "{err}");
        let without_host = SDK_AUTHORIZATION.replace("host;", "");
        let err = Acs3::parse(&without_host, &sdk_headers()).err().unwrap();
        assert!(err.to_string().contains("host"), "{err}");
    }

    #[test]
    fn malformed_authorization_headers_are_refused() {
        let h = sdk_headers();
        for auth in [
            "",
            "ACS3-HMAC-SHA256",
            "ACS3-HMAC-SM3 Credential=AKID,SignedHeaders=host,Signature=00",
            "Basic dXNlcjpwYXNz",
            "ACS3-HMAC-SHA256 Credential=AKID,Signature=00",
            "ACS3-HMAC-SHA256 Credential=,SignedHeaders=host;x-acs-date;x-acs-signature-nonce,Signature=00",
            "ACS3-HMAC-SHA256 Credential=A,Credential=B,SignedHeaders=host,Signature=00",
            "ACS3-HMAC-SHA256 Credential=A,Other=1,SignedHeaders=host,Signature=00",
        ] {
            let err = Acs3::parse(auth, &h).err().unwrap_or_else(|| panic!("{auth}"));
            assert!(matches!(err, ApiError::SignatureDoesNotMatch { .. }), "{auth}: {err:?}");
        }
    }

    #[test]
    fn a_signed_header_that_is_absent_is_refused() {
        let mut h = sdk_headers();
        h.remove("accept");
        let err = check(SDK_QUERY, &h, b"", "sec").unwrap_err();
        assert!(err.to_string().contains("accept"), "{err}");
    }

    #[test]
    fn the_mismatch_shows_the_canonical_request_and_never_the_secret() {
        let err = check(SDK_QUERY, &sdk_headers(), b"", "hunter2-secret").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("ServiceNameFuzzy=my%20sql%2A~%27"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
