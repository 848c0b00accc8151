//! The HTTP API (`docs/api.md`): Alibaba Cloud RPC-style `GET`/`POST /` for the
//! `DescribeInternetOpen*` Actions and `DescribeExposureChanges`, the event
//! stream `GET /events` ([`events`]), plus `/healthz`, `/readyz` and
//! `/metrics`.
//!
//! A request to `/` flows through [`envelope`] (request id, content type,
//! error body, metric, log line) into [`actions`] (method, [`rpc`]
//! decoding, [`auth`] signatures and permissions, [`ratelimit`], dispatch
//! on `Action`), which answers from the engine through [`crate::query`].
//! Every refusal is an [`ApiError`] ([`error`]). The operations endpoints
//! are in [`ops`]; the live view's page, in [`crate::ui`].
//!
//! With `api.auth = "acs"` every request is signed with a user's AccessKey
//! and the rate limit applies per user; with `api.auth = "none"` nothing is
//! signed and the limit applies per client address.

pub mod actions;
pub mod auth;
pub mod envelope;
pub mod error;
pub mod events;
pub mod ops;
pub mod ratelimit;
pub mod rpc;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::routing::{any, get};
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::changes::watch::Watched;
use crate::config::ApiConfig;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::state::Engine;
use auth::Authenticator;
pub use error::ApiError;
use ratelimit::RateLimiter;

/// Everything the API answers from.
#[derive(Clone)]
pub struct ApiState {
    /// The state the answers are computed from.
    pub engine: Arc<Engine>,
    /// The expected exposures in use (`DescribeInternetOpenStatistic`'s
    /// `InternetUnprotectedPortNum`); re-read by `exposure run`.
    pub expected: Arc<Watched>,
    /// Where API requests and throttles are counted, and what `/metrics` renders.
    pub metrics: Arc<Metrics>,
    /// Readiness flags: queries are refused until the state is restored.
    pub health: Arc<Health>,
    /// `[api]`: listen address (the `HostId` fallback), auth, limits.
    pub config: ApiConfig,
    /// Wall clock in UNIX ms (injected for tests).
    pub wall_clock: fn() -> i64,
}

/// The shared state of the handlers: the caller's [`ApiState`] and the
/// rate limiter that lives as long as the router.
pub struct App {
    pub(crate) state: ApiState,
    /// The users and their nonces (`auth = "acs"`).
    auth: Option<Authenticator>,
    /// Token buckets per client address (`auth = "none"`).
    limiter: RateLimiter<IpAddr>,
    /// Token buckets per user, by index (`auth = "acs"`).
    user_limiter: RateLimiter<usize>,
    /// Answers computed at once, at most one per core: under a flood,
    /// requests wait here instead of each taking a thread (and the cores
    /// ingest needs).
    pub(crate) computing: tokio::sync::Semaphore,
}

/// The API's routes. Serve it with [`serve`] (or
/// `into_make_service_with_connect_info::<SocketAddr>()`): the rate limit
/// needs the client's address.
pub fn router(state: ApiState) -> Router {
    let auth =
        (state.config.auth == crate::config::Auth::Acs).then(|| Authenticator::new(&state.config));
    let users = auth.as_ref().map_or(0, Authenticator::users);
    let app = Arc::new(App {
        state,
        auth,
        limiter: RateLimiter::new(ratelimit::DEFAULT_MAX_KEYS),
        user_limiter: RateLimiter::new(users.max(1)),
        computing: tokio::sync::Semaphore::new(crate::cores()),
    });
    let rpc = Router::new()
        .route("/", any(actions::rpc))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            envelope::envelope,
        ))
        // Outermost: a browser opening `/` gets the live view, not an error.
        .route_layer(axum::middleware::from_fn(crate::ui::redirect_browsers))
        .with_state(Arc::clone(&app));
    let stream = Router::new()
        .route("/events", any(events::events))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            envelope::envelope,
        ))
        .with_state(Arc::clone(&app));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .with_state(app)
        .merge(rpc)
        .merge(stream)
        .merge(crate::ui::routes())
}

/// Serves until `shutdown` is cancelled (graceful: in-flight requests
/// finish, and open event streams end at once, see [`events::Shutdown`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "api listening");
    }
    let router = router.layer(axum::Extension(events::Shutdown(shutdown.clone())));
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled_owned().await })
    .await?;
    tracing::info!("api stopped");
    Ok(())
}

#[cfg(test)]
mod tests;
