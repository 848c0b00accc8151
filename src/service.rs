//! The streaming service behind `exposure run` and `exposure demo`: the
//! Kafka source feeding the engine, the HTTP API reading it, a maintenance
//! task, and an orderly shutdown.
//!
//! Shutdown order (SPEC §9, STYLE): stop fetching, apply what was fetched
//! and commit, then stop HTTP. The whole drain has a deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::api::{self, ApiState};
use crate::catalog::Catalog;
use crate::config::Config;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::source::kafka;
use crate::state::checkpoint::Store;
use crate::state::{wall_now_ms, Engine};

/// How often old hours are rolled into days and expired data dropped.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);
/// How often the port index is checked against the clock: a new hour moves
/// it here rather than in the first query of the hour.
const INDEX_INTERVAL: Duration = Duration::from_secs(1);
/// The drain after a stop signal must finish within this (SPEC §9: exit within 10 s).
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(8);

/// The parts of a running service, for callers that need to look inside (the demo, tests).
#[derive(Clone)]
pub struct Handles {
    pub engine: Arc<Engine>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

/// Runs the service until `shutdown` is cancelled. `on_listening` is called
/// with the API's bound address once it accepts connections.
pub async fn run(
    config: Config,
    catalog: Catalog,
    shutdown: CancellationToken,
    on_listening: impl FnOnce(SocketAddr, &Handles),
) -> anyhow::Result<()> {
    let engine = Arc::new(Engine::from_config(&config, Arc::new(catalog)));
    let metrics = Arc::new(Metrics::new(engine.clone()));
    let health = Arc::new(Health::default());
    let progress = Arc::new(kafka::Progress::default());
    let store = Store::open(&config.state.dir)
        .with_context(|| format!("state.dir: cannot use {}", config.state.dir.display()))?;
    restore(&store, &engine, &progress)?;
    engine.keep_port_index_current(wall_now_ms());
    health.set_restored(true);
    let handles = Handles {
        engine: engine.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
    };

    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("api.listen: cannot listen on {}", config.api.listen))?;
    let bound = listener.local_addr()?;

    let consumer_stop = CancellationToken::new();
    let checkpointing = kafka::Checkpointing {
        store,
        interval: config.state.checkpoint_interval,
    };
    let source = kafka::start(
        &config.kafka,
        crate::cores(),
        engine.clone(),
        progress,
        Some(checkpointing),
        metrics.clone(),
        health.clone(),
        consumer_stop.clone(),
    )?;
    info!(brokers = %config.kafka.brokers, topics = ?config.kafka.topics, "consuming");

    let http_stop = CancellationToken::new();
    let router = api::router(ApiState {
        engine: engine.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
        config: config.api.clone(),
        wall_clock: wall_now_ms,
    });
    let mut server = tokio::spawn(api::serve(listener, router, http_stop.clone()));
    info!(listen = %bound, "serving the api");
    on_listening(bound, &handles);

    let maintenance = {
        let engine = engine.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(MAINTENANCE_INTERVAL);
            let mut index_tick = tokio::time::interval(INDEX_INTERVAL);
            tick.tick().await;
            loop {
                let engine = engine.clone();
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {
                        let _ = tokio::task::spawn_blocking(move || engine.maintain(wall_now_ms())).await;
                    }
                    _ = index_tick.tick() => {
                        let _ = tokio::task::spawn_blocking(move || engine.keep_port_index_current(wall_now_ms())).await;
                    }
                }
            }
        })
    };

    // The server ending by itself is a failure; the consumer still drains.
    let server_ended = tokio::select! {
        _ = shutdown.cancelled() => None,
        ended = &mut server => Some(ended),
    };
    info!("stopping: draining the consumer");
    consumer_stop.cancel();
    let drained = tokio::time::timeout(
        SHUTDOWN_DEADLINE,
        tokio::task::spawn_blocking(move || source.join()),
    )
    .await;
    let consumer_result = match drained {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(anyhow::anyhow!("consumer thread failed: {e}")),
        Err(_) => Err(anyhow::anyhow!(
            "the consumer did not drain within {SHUTDOWN_DEADLINE:?}"
        )),
    };
    http_stop.cancel();
    maintenance.abort();
    if let Some(ended) = server_ended {
        let reason = match ended {
            Ok(Ok(())) => "it stopped unexpectedly".to_owned(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        error!(reason, "the api server stopped");
        consumer_result?;
        anyhow::bail!("the api server stopped: {reason}");
    }
    match tokio::time::timeout(Duration::from_secs(2), server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => warn!(error = %e, "api server error on shutdown"),
        Ok(Err(e)) => warn!(error = %e, "api server task failed"),
        Err(_) => warn!("api server did not stop in time"),
    }
    consumer_result
}

/// Restores the newest usable checkpoint into the (empty) engine. No
/// checkpoint at all is a first start; checkpoints that exist but cannot be
/// read stop the service with every file and problem named.
fn restore(store: &Store, engine: &Engine, progress: &kafka::Progress) -> anyhow::Result<()> {
    let Some((path, decoded, skipped)) = store.load_latest()? else {
        info!(dir = %store.dir().display(), "no checkpoint: starting with empty state");
        return Ok(());
    };
    for problem in &skipped {
        error!("unusable checkpoint skipped, falling back to an older one: {problem}");
    }
    let endpoints = decoded.endpoints.len();
    progress.restore(&decoded.offsets);
    let partitions = decoded.offsets.len();
    engine.restore(decoded);
    info!(path = %path.display(), endpoints, partitions, "state restored from checkpoint");
    Ok(())
}

/// Cancels `token` on SIGINT or SIGTERM; a second signal exits at once.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("signal received: shutting down (a second signal exits at once)");
        token.cancel();
        wait_for_signal().await;
        warn!("second signal: exiting now");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
