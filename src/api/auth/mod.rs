//! Signed requests (`api.auth = "acs"`): who is calling, and may they.
//!
//! A request is signed with an AccessKey of `api.users`, either
//! ACS3-HMAC-SHA256 ([`acs3`], the `Authorization` header) or signature v1
//! ([`v1`], the `Signature` parameter). [`Authenticator::verify`] checks,
//! in this order: the signature parameters are present; the AccessKeyId is
//! known; the signature matches (constant-time); the timestamp is within
//! [`MAX_SKEW_MS`] of the clock. [`Authenticator::admit`] then refuses a
//! nonce used before ([`nonce`]) and applies the caller's rate limit.
//! Secrets are only ever passed to the HMAC: no message or log shows them.

pub mod acs3;
pub mod encode;
pub mod nonce;
pub mod v1;

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::HeaderMap;

use super::error::ApiError;
use super::rpc::Params;
use crate::config::{ApiConfig, Secret};
use crate::query::Action;
use nonce::{NonceStore, Refusal};

/// How far a request's timestamp may be from the server clock, either way.
pub const MAX_SKEW_MS: i64 = 15 * 60 * 1000;
/// Live nonces remembered per AccessKey at most (about 40 bytes each): a
/// key sending more distinct requests than this within 30 minutes is
/// throttled until older nonces expire.
pub const MAX_NONCES_PER_KEY: usize = 1_000_000;

/// What a request claims about itself, read before it is verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub access_key_id: String,
    pub nonce: String,
    pub timestamp: String,
    /// Where the timestamp came from (`x-acs-date` or `Timestamp`).
    pub timestamp_name: &'static str,
}

/// An API user (`[[api.users]]`).
pub struct User {
    /// Its name, for logs and the `user` metric label.
    pub name: Arc<str>,
    secret: Secret,
    /// Requests per second (its `qps`, else `api.default_qps`); 0 = no limit.
    pub qps: u32,
    /// Whether it may call each Action, by [`Action`] index.
    allowed: [bool; Action::ALL.len()],
}

impl User {
    /// `actions` lists the Action, or `*`.
    pub fn may_call(&self, action: Action) -> bool {
        self.allowed[action as usize]
    }
}

/// The parts of a request its signature covers.
pub struct Request<'r> {
    pub method: &'r str,
    pub path: &'r str,
    /// The raw query string (ACS3 signs it re-encoded).
    pub query: Option<&'r str>,
    pub headers: &'r HeaderMap,
    pub authority: Option<&'r str>,
    pub body: &'r [u8],
    /// Query string and form body, decoded and merged (v1 signs these).
    pub params: &'r Params,
}

/// A request whose signature and timestamp are good.
#[derive(Debug)]
pub struct Verified {
    /// Index of the user in [`Authenticator::user`].
    pub user: usize,
    nonce: String,
    /// When its nonce may be forgotten: its timestamp plus [`MAX_SKEW_MS`].
    expires_ms: i64,
}

/// The users, by AccessKeyId, and their nonces.
pub struct Authenticator {
    users: Vec<User>,
    by_key: HashMap<String, usize>,
    nonces: NonceStore,
}

impl Authenticator {
    pub fn new(config: &ApiConfig) -> Self {
        let users: Vec<User> = config
            .users
            .iter()
            .map(|u| {
                let all = u.actions.iter().any(|a| a == "*");
                User {
                    name: Arc::from(u.name.as_str()),
                    secret: u.access_key_secret.clone(),
                    qps: u.qps.unwrap_or(config.default_qps),
                    allowed: Action::ALL.map(|a| all || u.actions.iter().any(|n| n == a.name())),
                }
            })
            .collect();
        let by_key = config
            .users
            .iter()
            .enumerate()
            .map(|(i, u)| (u.access_key_id.clone(), i))
            .collect();
        let nonces = NonceStore::new(users.len(), MAX_NONCES_PER_KEY);
        Authenticator {
            users,
            by_key,
            nonces,
        }
    }

    pub fn user(&self, index: usize) -> &User {
        &self.users[index]
    }

    /// How many users there are (for the rate limiter's bound).
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Checks the signature and the timestamp of `req` at `now_ms`.
    pub fn verify(&self, req: &Request<'_>, now_ms: i64) -> Result<Verified, ApiError> {
        let mut authorizations = req
            .headers
            .get_all(axum::http::header::AUTHORIZATION)
            .iter();
        let authorization = authorizations.next();
        if authorizations.next().is_some() {
            return Err(ApiError::SignatureDoesNotMatch {
                detail: "the Authorization header is given more than once; send one".to_owned(),
            });
        }
        let (claims, user) = if let Some(value) = authorization {
            let text = value
                .to_str()
                .map_err(|_| ApiError::SignatureDoesNotMatch {
                    detail: "the Authorization header is not visible ASCII".to_owned(),
                })?;
            let signed = acs3::Acs3::parse(text, req.headers)?;
            let user = self.lookup(&signed.claims.access_key_id)?;
            signed.verify(
                &acs3::Signed {
                    method: req.method,
                    path: req.path,
                    query: req.query,
                    headers: req.headers,
                    authority: req.authority,
                    body: req.body,
                },
                self.users[user].secret.expose(),
            )?;
            (signed.claims, user)
        } else if req.params.get("Signature").is_some() {
            let signed = v1::V1::parse(req.params)?;
            // v1 covers parameters, not headers: an Action given only in
            // x-acs-action would not be signed.
            let action_param = req
                .params
                .get("Action")
                .is_some_and(|a| !a.trim().is_empty());
            if !action_param && req.headers.contains_key("x-acs-action") {
                return Err(ApiError::MissingParameter {
                    param: "Action".to_owned(),
                    hint: "signature v1 covers parameters only, so send the Action as a \
                           parameter, not only in x-acs-action"
                        .to_owned(),
                });
            }
            let user = self.lookup(&signed.claims.access_key_id)?;
            signed.verify(req.method, req.params, self.users[user].secret.expose())?;
            (signed.claims, user)
        } else {
            return Err(ApiError::MissingParameter {
                param: "Signature".to_owned(),
                hint: "sign the request with an AccessKey of api.users: an Authorization header \
                       (ACS3-HMAC-SHA256) or the Signature parameter (signature v1)"
                    .to_owned(),
            });
        };
        let time_ms = encode::parse_utc(&claims.timestamp).ok_or_else(|| ApiError::Parameters {
            param: claims.timestamp_name.to_owned(),
            message: format!(
                "{:?} is not a UTC time like 2024-03-01T12:00:00Z",
                claims.timestamp.chars().take(64).collect::<String>()
            ),
        })?;
        if (time_ms - now_ms).abs() > MAX_SKEW_MS {
            return Err(ApiError::TimestampExpired {
                timestamp: claims.timestamp,
            });
        }
        Ok(Verified {
            user,
            nonce: claims.nonce,
            expires_ms: time_ms + MAX_SKEW_MS,
        })
    }

    /// Consumes the request's nonce, unless it was used before or `throttle`
    /// refuses the request (then the nonce stays unused).
    pub fn admit(
        &self,
        verified: &Verified,
        now_ms: i64,
        throttle: impl FnOnce() -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        self.nonces
            .admit(
                verified.user,
                &verified.nonce,
                verified.expires_ms,
                now_ms,
                throttle,
            )
            .map_err(|refusal| match refusal {
                Refusal::Used => ApiError::SignatureNonceUsed {
                    nonce: verified.nonce.clone(),
                },
                Refusal::Full(retry_after) => ApiError::TooManyNonces { retry_after },
                Refusal::Refused(error) => error,
            })
    }

    fn lookup(&self, access_key_id: &str) -> Result<usize, ApiError> {
        self.by_key
            .get(access_key_id)
            .copied()
            .ok_or_else(|| ApiError::InvalidAccessKeyId {
                access_key_id: access_key_id.to_owned(),
            })
    }
}
