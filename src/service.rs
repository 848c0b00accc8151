//! The streaming service behind `exposure run` and `exposure demo`: the
//! Kafka source feeding the engine, the HTTP API reading it, a maintenance
//! task, and an orderly shutdown.
//!
//! Shutdown order (`docs/operations.md#shutdown`): stop fetching, apply what was fetched
//! and commit, then stop HTTP. The whole drain has a deadline.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::api::{self, ApiState};
use crate::catalog::Catalog;
use crate::changes::watch::{Reload, Watched};
use crate::cluster::node::{self, Names};
use crate::config::Config;
use crate::health::Health;
use crate::metrics::{self, Metrics};
use crate::notify;
use crate::source::kafka;
use crate::state::checkpoint::Store;
use crate::state::{wall_now_ms, Engine};
use crate::supervise::{run_until_signal, Supervisor};

/// How often old hours are rolled into days and expired data dropped.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);
/// How often the port index is checked against the clock: a new hour moves
/// it here rather than in the first query of the hour.
const INDEX_INTERVAL: Duration = Duration::from_secs(1);
/// How often open endpoints are checked for `changes.closed_after` and for
/// their expected entry (`Engine::sweep_changes`).
const CHANGES_INTERVAL: Duration = Duration::from_secs(5);
/// How often `changes.expected` is checked for a new modified time or length.
const EXPECTED_POLL_INTERVAL: Duration = Duration::from_secs(2);
/// The drain after a stop signal must finish within this, so the process
/// exits within 10 s (`docs/operations.md#shutdown`).
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(8);

/// The names the service's tasks are supervised, logged and counted under
/// (`exposure_task_failures_total{task}`).
const KAFKA_TASK: &str = metrics::task::KAFKA_POLL;
const API_TASK: &str = metrics::task::API;
const MAINTENANCE_TASK: &str = metrics::task::MAINTENANCE;
const EXPECTED_TASK: &str = metrics::task::EXPECTED;
const WEBHOOKS_TASK: &str = metrics::task::WEBHOOKS;
const CHANGES_TOPIC_TASK: &str = metrics::task::CHANGES_TOPIC;
const CLUSTER_ROUTE_TASK: &str = metrics::task::CLUSTER_ROUTE;
const CLUSTER_COUNT_TASK: &str = metrics::task::CLUSTER_COUNT;
const CLUSTER_REPLICA_TASK: &str = metrics::task::CLUSTER_REPLICA;
/// The threads of cluster mode, which stand in for the Kafka source.
const CLUSTER_TASKS: [&str; 3] = [CLUSTER_ROUTE_TASK, CLUSTER_COUNT_TASK, CLUSTER_REPLICA_TASK];

/// The parts of a running service, for callers that need to look inside (the demo, tests).
#[derive(Clone)]
pub struct Handles {
    pub engine: Arc<Engine>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

/// `exposure run --config PATH`: loads and checks the config and the
/// expected list it names (exit 2 with every problem), then serves until a
/// signal (exit 0) or a failure (exit 1).
pub fn command(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            for problem in &e.0 {
                eprintln!("{}: {problem}", path.display());
            }
            return ExitCode::from(2);
        }
    };
    let _ = crate::logging::init(config.logging.format);
    let catalog = match crate::analyze::load_catalog(&config.services.catalog) {
        Ok(c) => c,
        Err(e) => return crate::usage_error(&format!("{e:#}")),
    };
    let expected = match Watched::for_config(config.changes.expected.as_deref()) {
        Ok(watched) => watched,
        Err(problems) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            return ExitCode::from(2);
        }
    };
    crate::exit_status(run_until_signal(move |stop| {
        run(config, catalog, expected, stop, |_, _| {})
    }))
}

/// Runs the service until `shutdown` is cancelled or one of its tasks
/// fails (then the error says which, and why), judging exposures against
/// `expected` (re-read on SIGHUP and when its file changes). `on_listening`
/// is called with the API's bound address once it accepts connections.
pub async fn run(
    config: Config,
    catalog: Catalog,
    expected: Watched,
    shutdown: CancellationToken,
    on_listening: impl FnOnce(SocketAddr, &Handles),
) -> anyhow::Result<()> {
    // SIGHUP's default action ends the process: take it over before anything
    // listens (tokio never gives a signal back); `watch_expected` hears it.
    drop(
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot listen for SIGHUP")?,
    );
    let expected = Arc::new(expected);
    let catalog = Arc::new(catalog);
    // In cluster mode the engine is the replica of the whole group's
    // state that the API answers from; exposure changes are not tracked
    // there yet (docs/operations.md#scale-out).
    let cluster = config.cluster.enabled;
    let engine = Arc::new(if cluster {
        Engine::from_config(&config, catalog.clone())
    } else {
        Engine::from_config_with_changes(&config, catalog.clone(), expected.clone())
    });
    if let Some(file) = expected.path() {
        let entries = expected.current().len();
        info!(file = %file.display(), entries, "expected exposures loaded");
    }
    let metrics = Arc::new(Metrics::watching(
        engine.clone(),
        expected.clone(),
        Default::default(),
    ));
    let health = Arc::new(Health::default());
    let progress = Arc::new(kafka::Progress::default());
    let names = Names::of(&config.kafka.group_id);
    if cluster {
        // Nothing is answered until the replica has read every partition.
        let partitions = i32::try_from(config.cluster.partitions).unwrap_or(i32::MAX);
        health.set_missing_partitions((0..partitions).collect());
    }
    let store = Store::open(&config.state.dir)
        .with_context(|| format!("state.dir: cannot use {}", config.state.dir.display()))?;
    if !cluster {
        restore(&store, &engine, &progress)?;
    }
    let restored_seq = engine.changes().map_or(0, |log| log.latest());
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
    if cluster {
        node::ensure_topics(&config.kafka, &config.cluster, &names).await?;
    }

    let mut tasks = Supervisor::new(health.clone(), metrics.clone());
    let consumer_stop = CancellationToken::new();
    let checkpointing = kafka::Checkpointing {
        store,
        interval: config.state.checkpoint_interval,
    };
    if cluster {
        start_cluster(
            &mut tasks,
            &config,
            &catalog,
            &handles,
            &names,
            &consumer_stop,
        )?;
    } else {
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
        tasks.spawn_thread(KAFKA_TASK, move || source.run())?;
    }
    info!(brokers = %config.kafka.brokers, topics = ?config.kafka.topics, cluster, "consuming");

    let http_stop = CancellationToken::new();
    let router = api::router(ApiState {
        engine: engine.clone(),
        expected: expected.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
        config: config.api.clone(),
        wall_clock: wall_now_ms,
    });
    let server = api::serve(listener, router, http_stop.clone());
    tasks.spawn(API_TASK, async move { Ok(server.await?) });
    info!(listen = %bound, "serving the api");
    on_listening(bound, &handles);

    let maintenance_stop = CancellationToken::new();
    {
        let stop = maintenance_stop.clone();
        let engine = engine.clone();
        tasks.spawn_restarting(MAINTENANCE_TASK, move || {
            maintain(engine.clone(), stop.clone())
        });
    }

    let watch_stop = CancellationToken::new();
    {
        let stop = watch_stop.clone();
        let metrics = metrics.clone();
        tasks.spawn_restarting(EXPECTED_TASK, move || {
            watch_expected(expected.clone(), metrics.clone(), stop.clone())
        });
    }

    let webhooks_stop = CancellationToken::new();
    let mut webhooks_done = None;
    if cluster && (!config.changes.webhooks.is_empty() || config.changes.topic.is_some()) {
        warn!("changes.webhooks and changes.topic are not served in cluster mode (docs/operations.md#scale-out)");
    }
    if !config.changes.webhooks.is_empty() && !cluster {
        let context = Arc::new(notify::Context {
            engine: engine.clone(),
            catalog,
            lang: config.changes.lang,
            dir: config.state.dir.join("webhooks"),
            metrics: metrics.webhooks.clone(),
            wall_clock: wall_now_ms,
            restored_seq,
            started: Default::default(),
            done: CancellationToken::new(),
        });
        webhooks_done = Some(context.done.clone());
        let hooks = config.changes.webhooks.clone();
        let stop = webhooks_stop.clone();
        tasks.spawn_restarting(WEBHOOKS_TASK, move || {
            notify::run(hooks.clone(), context.clone(), stop.clone())
        });
    }

    let topic_stop = CancellationToken::new();
    if let Some(topic) = config.changes.topic.as_ref().filter(|_| !cluster) {
        let engine = engine.clone();
        let brokers = config.kafka.brokers.clone();
        let topic = topic.clone();
        let metrics = metrics.clone();
        let stop = topic_stop.clone();
        tasks.spawn_restarting(CHANGES_TOPIC_TASK, move || {
            notify::topic::task(
                engine.clone(),
                brokers.clone(),
                topic.clone(),
                metrics.clone(),
                stop.clone(),
            )
        });
    }

    let failure = tasks.wait(&shutdown).await;
    match &failure {
        None => info!("stopping: draining the consumer"),
        Some(f) => error!("stopping because a task failed: {f}"),
    }
    // No more sweeps: the last checkpoint holds every event recorded.
    maintenance_stop.cancel();
    // Stop consuming (the source applies what it fetched, checkpoints and
    // commits), then stop serving.
    consumer_stop.cancel();
    let consumed = if cluster {
        let mut consumed = Ok(());
        for task in CLUSTER_TASKS {
            let joined = tasks.join(task, SHUTDOWN_DEADLINE).await;
            consumed = consumed.and(joined);
        }
        consumed
    } else {
        tasks.join(KAFKA_TASK, SHUTDOWN_DEADLINE).await
    };
    watch_stop.cancel();
    // Each webhook saves where it is as it stops, and the topic gets what
    // the last checkpoint made durable, while the API stops.
    webhooks_stop.cancel();
    topic_stop.cancel();
    http_stop.cancel();
    let last_stops = Duration::from_secs(2);
    let started = tokio::time::Instant::now();
    if let Err(e) = tasks.join(API_TASK, last_stops).await {
        warn!("api server: {e:#}");
    }
    if let Some(done) = webhooks_done {
        let left = last_stops.saturating_sub(started.elapsed());
        if tokio::time::timeout(left, done.cancelled()).await.is_err() {
            warn!("webhooks did not stop within {last_stops:?}: each resumes from its last save");
        }
    }
    match failure {
        None => consumed,
        Some(failure) => {
            // The source's own failure is the cause already given.
            let source_failed = failure.task == KAFKA_TASK || CLUSTER_TASKS.contains(&failure.task);
            if let (Err(e), false) = (consumed, source_failed) {
                error!("kafka source: {e:#}");
            }
            Err(anyhow::anyhow!("{failure}"))
        }
    }
}

/// Starts the three threads of an instance in cluster mode
/// (`crate::cluster::node`): route, count, and the replica the API answers
/// from.
fn start_cluster(
    tasks: &mut Supervisor,
    config: &Config,
    catalog: &Arc<Catalog>,
    handles: &Handles,
    names: &Names,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let Handles {
        engine,
        metrics,
        health,
    } = handles;
    let metrics = metrics.cluster.clone();
    let claims = Arc::new(node::Claims::new(config.cluster.partitions));
    health.set_assigned(true);
    let config = Arc::new(config.clone());
    {
        let (config, engine, health, names, metrics, stop) = (
            config.clone(),
            engine.clone(),
            health.clone(),
            names.clone(),
            metrics.clone(),
            stop.clone(),
        );
        tasks.spawn_thread(CLUSTER_ROUTE_TASK, move || {
            node::route(&config, &engine, &health, &names, &metrics, &stop)
        })?;
    }
    {
        let (config, catalog, names, claims, metrics, stop) = (
            config.clone(),
            catalog.clone(),
            names.clone(),
            claims.clone(),
            metrics.clone(),
            stop.clone(),
        );
        tasks.spawn_thread(CLUSTER_COUNT_TASK, move || {
            node::count(&config, &catalog, &names, &claims, &metrics, &stop)
        })?;
    }
    let (engine, health, names, stop) =
        (engine.clone(), health.clone(), names.clone(), stop.clone());
    tasks.spawn_thread(CLUSTER_REPLICA_TASK, move || {
        node::replica(&config, &engine, &health, &names, &claims, &metrics, &stop)
    })?;
    Ok(())
}

/// One round of [`maintain`].
#[derive(Clone, Copy)]
enum Work {
    Full,
    Index,
    Changes,
}

/// Rolls old hours into days and drops expired data every
/// [`MAINTENANCE_INTERVAL`], moves the port index to a new hour within
/// [`INDEX_INTERVAL`], and closes idle exposures and judges them against the
/// expected list every [`CHANGES_INTERVAL`], until `stop`. The work runs off
/// the async threads.
async fn maintain(engine: Arc<Engine>, stop: CancellationToken) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(MAINTENANCE_INTERVAL);
    let mut index_tick = tokio::time::interval(INDEX_INTERVAL);
    let mut changes_tick = tokio::time::interval(CHANGES_INTERVAL);
    tick.tick().await;
    loop {
        let work = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tick.tick() => Work::Full,
            _ = index_tick.tick() => Work::Index,
            _ = changes_tick.tick() => Work::Changes,
        };
        let engine = engine.clone();
        tokio::task::spawn_blocking(move || {
            fail::fail_point!("maintenance");
            match work {
                Work::Full => engine.maintain(wall_now_ms()),
                Work::Index => engine.keep_port_index_current(wall_now_ms()),
                Work::Changes => engine.sweep_changes(wall_now_ms()),
            }
        })
        .await
        .map_err(crate::supervise::join_error)?;
    }
}

/// Re-reads the expected list on SIGHUP, and when its file's modified time
/// or length changes (checked every [`EXPECTED_POLL_INTERVAL`]), until
/// `stop`. A good file replaces the list; a broken or vanished one keeps the
/// previous list, and every problem is logged. SIGHUP is heard even without
/// a file, so that it never stops the process.
async fn watch_expected(
    expected: Arc<Watched>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    let mut poll = tokio::time::interval(EXPECTED_POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = hangup.recv() => true,
            _ = poll.tick() => false,
        };
        let Some(file) = expected.path().map(|p| p.display().to_string()) else {
            if forced {
                info!("SIGHUP: no changes.expected file to re-read");
            }
            continue;
        };
        let watched = expected.clone();
        let reload = tokio::task::spawn_blocking(move || watched.reload(forced))
            .await
            .map_err(crate::supervise::join_error)?;
        match reload {
            Reload::Unchanged => {}
            Reload::Loaded(entries) => {
                info!(file, entries, "expected exposures reloaded");
                metrics.expected_reloads.with_label_values(&["ok"]).inc();
                metrics
                    .expected_entries
                    .set(i64::try_from(entries).unwrap_or(i64::MAX));
            }
            Reload::Failed(problems) => {
                for problem in &problems {
                    warn!(file, "expected exposures not reloaded, the previous list stays in use: {problem}");
                }
                metrics.expected_reloads.with_label_values(&["error"]).inc();
            }
        }
    }
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
