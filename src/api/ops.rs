//! Operations endpoints: `/healthz` (the process answers), `/readyz` (the
//! state can answer truthfully) and `/metrics` (Prometheus text format).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::App;

/// `content-type` of the Prometheus text exposition format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The body of `/readyz`.
#[derive(Serialize)]
struct Readiness {
    ready: bool,
    restored: bool,
    partitions_assigned: bool,
    kafka_connected: bool,
    /// Tasks that failed and are not running (see `crate::supervise`).
    tasks_down: Vec<&'static str>,
    /// The last checkpoint attempt failed (answers are still exact).
    checkpoint_failing: bool,
    /// Cluster mode: partitions of the group's state not yet read.
    missing_partitions: Vec<i32>,
}

/// `GET /healthz`: 200 `ok` while the process serves requests.
pub async fn healthz() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "ok\n",
    )
        .into_response()
}

/// `GET /readyz`: 200 when the state is restored, partitions are assigned
/// and every task runs, else 503; the flags in the body either way.
pub async fn readyz(State(app): State<Arc<App>>) -> Response {
    let health = app.state.health.snapshot();
    let body = Readiness {
        ready: health.ready(),
        restored: health.restored,
        partitions_assigned: health.assigned,
        kafka_connected: health.connected,
        tasks_down: health.tasks_down,
        checkpoint_failing: health.checkpoint_failing,
        missing_partitions: health.missing_partitions,
    };
    let status = if body.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let json = serde_json::to_string(&body).unwrap_or_default();
    (
        status,
        [(header::CONTENT_TYPE, super::envelope::JSON)],
        json,
    )
        .into_response()
}

/// `GET /metrics`: every metric, rendered off the async workers (the engine
/// collector walks the state).
pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let metrics = Arc::clone(&app.state.metrics);
    match tokio::task::spawn_blocking(move || metrics.render()).await {
        Ok(text) => ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], text).into_response(),
        Err(error) => {
            tracing::error!(%error, "metrics not rendered");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "metrics are unavailable; try again\n",
            )
                .into_response()
        }
    }
}
