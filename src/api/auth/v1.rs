//! Signature v1 (HMAC-SHA1 over the parameters), as the official SDKs send
//! it with `signature_algorithm = 'v2'`: the `Signature` parameter is
//! `base64(HMAC-SHA1(secret + "&", METHOD + "&%2F&" + encode(query)))`, where
//! `query` is every parameter of the query string and the form body but
//! `Signature`, RFC 3986-encoded and sorted.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::super::error::ApiError;
use super::super::rpc::Params;
use super::encode::{canonical_pairs, encode};
use super::Claims;

/// What a v1 request claims, before it is verified.
pub struct V1<'r> {
    pub claims: Claims,
    signature: &'r str,
}

impl<'r> V1<'r> {
    /// Reads the signature parameters; each missing one is named.
    pub fn parse(params: &'r Params) -> Result<Self, ApiError> {
        let required = |name: &str, hint: &str| {
            params
                .get(name)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| ApiError::MissingParameter {
                    param: name.to_owned(),
                    hint: hint.to_owned(),
                })
        };
        let signature = required("Signature", "the v1 signature of the request")?;
        let access_key_id = required("AccessKeyId", "the AccessKeyId the request is signed with")?;
        let nonce = required("SignatureNonce", "a unique value for every request")?;
        let timestamp = required(
            "Timestamp",
            "the UTC time of the request, e.g. 2024-03-01T12:00:00Z",
        )?;
        let method = required("SignatureMethod", "HMAC-SHA1")?;
        if method != "HMAC-SHA1" {
            return Err(ApiError::Parameters {
                param: "SignatureMethod".to_owned(),
                message: format!("{method:?} is not supported; use HMAC-SHA1"),
            });
        }
        if let Some(version) = params.get("SignatureVersion").map(str::trim) {
            if !version.is_empty() && version != "1.0" {
                return Err(ApiError::Parameters {
                    param: "SignatureVersion".to_owned(),
                    message: format!("{version:?} is not supported; use 1.0"),
                });
            }
        }
        if let Some(kind) = params.get("SignatureType").filter(|t| !t.is_empty()) {
            return Err(ApiError::Parameters {
                param: "SignatureType".to_owned(),
                message: format!("{kind:?} is not supported; sign with an AccessKey"),
            });
        }
        Ok(V1 {
            claims: Claims {
                access_key_id: access_key_id.to_owned(),
                nonce: nonce.to_owned(),
                timestamp: timestamp.to_owned(),
                timestamp_name: "Timestamp",
            },
            signature,
        })
    }

    /// Checks the signature with `secret`; on a mismatch the error shows
    /// the string the server signed.
    pub fn verify(&self, method: &str, params: &Params, secret: &str) -> Result<(), ApiError> {
        let to_sign = string_to_sign(method, params);
        let mut mac = Hmac::<Sha1>::new_from_slice(format!("{secret}&").as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(to_sign.as_bytes());
        let given = decode_signature(self.signature);
        match given {
            Some(bytes) if mac.verify_slice(&bytes).is_ok() => Ok(()),
            _ => Err(ApiError::SignatureDoesNotMatch {
                detail: format!(
                    "signature v1 (HMAC-SHA1, key AccessKeySecret + \"&\"); the server's string to sign is {to_sign:?}"
                ),
            }),
        }
    }
}

/// `METHOD&%2F&` and the encoded, sorted parameters but `Signature`.
pub fn string_to_sign(method: &str, params: &Params) -> String {
    let query = canonical_pairs(params.iter().filter(|(k, _)| *k != "Signature"));
    format!("{method}&%2F&{}", encode(&query))
}

/// The base64 signature; a `+` that arrived unescaped (so decoded as a
/// space) is read as `+` again.
fn decode_signature(text: &str) -> Option<Vec<u8>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    b64.decode(text)
        .or_else(|_| b64.decode(text.replace(' ', "+")))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    use super::super::super::rpc::RpcRequest;

    fn params(query: &str) -> Params {
        RpcRequest::parse(Some(query), &HeaderMap::new(), b"")
            .unwrap()
            .params
    }

    /// Signed by the official SDK (`Utils.get_rpcsignature`, tea-openapi
    /// 0.4.6) with the secret `sec`.
    const SDK_QUERY: &str = "Action=DescribeInternetOpenPort&Format=json&Version=2017-12-07\
        &Timestamp=2024-03-01T12%3A00%3A00Z&SignatureNonce=nonce-1&Lang=en\
        &ServiceNameFuzzy=my+sql%2A~%27&SignatureMethod=HMAC-SHA1&SignatureVersion=1.0\
        &AccessKeyId=AKID&Signature=RD9u8nL%2Fd78bzT15Uq7ImKE%2FBsk%3D";

    #[test]
    fn a_signature_made_by_the_sdk_verifies() {
        let p = params(SDK_QUERY);
        let v1 = V1::parse(&p).unwrap();
        assert_eq!(v1.claims.access_key_id, "AKID");
        assert_eq!(v1.claims.nonce, "nonce-1");
        v1.verify("POST", &p, "sec").unwrap();
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let p = params(SDK_QUERY);
        let v1 = V1::parse(&p).unwrap();
        assert!(v1.verify("POST", &p, "sec2").is_err(), "secret");
        assert!(v1.verify("GET", &p, "sec").is_err(), "method");
        for (from, to) in [
            ("Lang=en", "Lang=zh"),
            ("nonce-1", "nonce-2"),
            ("my+sql", "my%2Bsql"),
            ("Lang=en", "Lang=en&Port=22"),
            ("RD9u8", "RD9u9"),
        ] {
            let p = params(&SDK_QUERY.replace(from, to));
            let err = V1::parse(&p)
                .unwrap()
                .verify("POST", &p, "sec")
                .unwrap_err();
            assert!(
                matches!(err, ApiError::SignatureDoesNotMatch { .. }),
                "{from} -> {to}"
            );
        }
    }

    #[test]
    fn a_plus_sent_unescaped_in_the_signature_still_verifies() {
        // base64 of this signature has no '+', so make one that does by
        // checking the decoder directly.
        assert_eq!(decode_signature("a+b/"), decode_signature("a b/"));
    }

    #[test]
    fn the_mismatch_shows_the_string_to_sign_and_never_the_secret() {
        let p = params(SDK_QUERY);
        let err = V1::parse(&p)
            .unwrap()
            .verify("POST", &p, "wrong-secret-value")
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("POST&%2F&AccessKeyId%3DAKID"), "{text}");
        assert!(!text.contains("wrong-secret-value"), "{text}");
    }

    #[test]
    fn missing_and_unsupported_signature_parameters_are_named() {
        for (query, param) in [
            ("Signature=x", "AccessKeyId"),
            ("Signature=x&AccessKeyId=a", "SignatureNonce"),
            ("Signature=x&AccessKeyId=a&SignatureNonce=n", "Timestamp"),
            (
                "Signature=x&AccessKeyId=a&SignatureNonce=n&Timestamp=t",
                "SignatureMethod",
            ),
            (
                "Signature=x&AccessKeyId=a&SignatureNonce=n&Timestamp=t&SignatureMethod=HMAC-SHA256",
                "SignatureMethod",
            ),
            (
                "Signature=x&AccessKeyId=a&SignatureNonce=n&Timestamp=t&SignatureMethod=HMAC-SHA1&SignatureVersion=2.0",
                "SignatureVersion",
            ),
        ] {
            let p = params(query);
            let err = V1::parse(&p).err().unwrap_or_else(|| panic!("{query}"));
            let named = match &err {
                ApiError::MissingParameter { param, .. } | ApiError::Parameters { param, .. } => {
                    param.clone()
                }
                other => panic!("{query}: {other:?}"),
            };
            assert_eq!(named, param, "{query}");
        }
    }
}
