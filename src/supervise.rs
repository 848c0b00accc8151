//! Every task and thread of `exposure run` in one place, and what happens
//! when one of them ends that should not have.
//!
//! A [`Supervisor`] starts each part of the service under a name and hears
//! of its end, whatever the cause (an error, a panic, or returning when
//! nobody asked it to). Two kinds of task:
//!
//! - **must run** ([`Supervisor::spawn`], [`Supervisor::spawn_thread`]): the
//!   Kafka source (its poll thread owns the ingest threads) and the HTTP
//!   server. If one ends before it is stopped, [`Supervisor::wait`] returns
//!   its cause; the service then stops in its usual order (the source
//!   drains and writes a last checkpoint if its state is whole) and exits 1.
//! - **restarted** ([`Supervisor::spawn_restarting`]): tasks that hold no
//!   state of their own (maintenance), started again after a failure with a
//!   growing delay.
//!
//! Either way a failure is logged with its cause, counted in
//! `exposure_task_failures_total{task}` and shown in `/readyz` (the task is
//! listed in `tasks_down`, and the service is not ready) until the task runs
//! again or the process exits.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinError, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::health::Health;
use crate::metrics::Metrics;

/// The first delay before a failed restartable task starts again; it
/// doubles with each failure in a row, up to [`MAX_RESTART_DELAY`].
const FIRST_RESTART_DELAY: Duration = Duration::from_secs(1);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);

/// How a must-run task ended before it was stopped.
#[derive(Debug)]
pub struct Failure {
    pub task: &'static str,
    pub cause: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} stopped: {}", self.task, self.cause)
    }
}

/// A task's end, as its wrapper reports it.
struct Ended {
    task: &'static str,
    result: anyhow::Result<()>,
}

/// Owns the service's tasks; see the module docs.
pub struct Supervisor {
    /// Where failures are shown (`/readyz`).
    health: Arc<Health>,
    /// Where failures are counted.
    metrics: Arc<Metrics>,
    /// Every task's wrapper reports its end here.
    ended_tx: mpsc::UnboundedSender<Ended>,
    ended_rx: mpsc::UnboundedReceiver<Ended>,
    /// Must-run tasks by name, with their result once they have ended.
    must_run: HashMap<&'static str, Option<anyhow::Result<()>>>,
    /// The async tasks (threads cannot be aborted; they end when stopped),
    /// aborted when the supervisor is dropped.
    tasks: JoinSet<()>,
    /// Set once the service is stopping: ends from then on are expected.
    stopping: bool,
}

impl Supervisor {
    pub fn new(health: Arc<Health>, metrics: Arc<Metrics>) -> Self {
        let (ended_tx, ended_rx) = mpsc::unbounded_channel();
        Supervisor {
            health,
            metrics,
            ended_tx,
            ended_rx,
            must_run: HashMap::new(),
            tasks: JoinSet::new(),
            stopping: false,
        }
    }

    /// Runs `task` on the runtime until it is stopped (by a token it
    /// watches); its ending before that is a failure of the service.
    pub fn spawn<F>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.register(name);
        let ended = self.ended_tx.clone();
        self.tasks.spawn(async move {
            let result = run_catching(task).await;
            let _ = ended.send(Ended { task: name, result });
        });
    }

    /// Runs `body` on a thread of its own, named `name`, under the same
    /// rule as [`Supervisor::spawn`]. Fails only if the thread cannot start.
    pub fn spawn_thread<F>(&mut self, name: &'static str, body: F) -> anyhow::Result<()>
    where
        F: FnOnce() -> anyhow::Result<()> + Send + 'static,
    {
        let ended = self.ended_tx.clone();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let result = std::panic::catch_unwind(AssertUnwindSafe(body))
                    .unwrap_or_else(|panic| Err(panicked(panic.as_ref())));
                let _ = ended.send(Ended { task: name, result });
            })
            .map_err(|e| anyhow::anyhow!("starting the {name} thread: {e}"))?;
        self.register(name);
        Ok(())
    }

    /// Runs the task `make` builds, and builds and runs it again whenever
    /// it fails (returns an error or panics), after a delay that doubles
    /// with each failure in a row. A task that returns `Ok` is done.
    pub fn spawn_restarting<M, F>(&mut self, name: &'static str, mut make: M)
    where
        M: FnMut() -> F + Send + 'static,
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let health = self.health.clone();
        let metrics = self.metrics.clone();
        // Counted from zero, as the must-run tasks are (see `register`).
        metrics.task_failures.with_label_values(&[name]);
        self.tasks.spawn(async move {
            let mut delay = FIRST_RESTART_DELAY;
            loop {
                let started = tokio::time::Instant::now();
                let Err(cause) = run_catching(make()).await else {
                    return;
                };
                // A task that ran a good while before failing starts over
                // from the first delay.
                if started.elapsed() > MAX_RESTART_DELAY {
                    delay = FIRST_RESTART_DELAY;
                }
                error!(task = name, restart_in = ?delay, "task failed, restarting: {cause:#}");
                metrics.task_failures.with_label_values(&[name]).inc();
                health.set_task_down(name, true);
                tokio::time::sleep(delay).await;
                health.set_task_down(name, false);
                info!(task = name, "task restarted");
                delay = (delay * 2).min(MAX_RESTART_DELAY);
            }
        });
    }

    fn register(&mut self, name: &'static str) {
        let previous = self.must_run.insert(name, None);
        debug_assert!(previous.is_none(), "two tasks named {name}");
        // Counted from zero, so that a rate over it exists before any failure.
        self.metrics.task_failures.with_label_values(&[name]);
    }

    /// Waits until `shutdown` is cancelled (`None`) or a must-run task ends
    /// (`Some`, with its cause). Either way the service is stopping from
    /// here on: later ends are expected, and [`Supervisor::join`] collects them.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> Option<Failure> {
        let failure = tokio::select! {
            _ = shutdown.cancelled() => None,
            ended = self.ended_rx.recv() => {
                let ended = ended.expect("the supervisor holds a sender");
                let cause = match &ended.result {
                    Ok(()) => "it ended without being asked to".to_owned(),
                    Err(e) => format!("{e:#}"),
                };
                error!(task = ended.task, "task stopped unexpectedly: {cause}");
                self.metrics.task_failures.with_label_values(&[ended.task]).inc();
                self.health.set_task_down(ended.task, true);
                let task = ended.task;
                self.must_run.insert(task, Some(ended.result));
                Some(Failure { task, cause })
            }
        };
        self.stopping = true;
        failure
    }

    /// Waits up to `timeout` for must-run task `name` to end (after its
    /// stop was asked for) and returns its result.
    pub async fn join(&mut self, name: &'static str, timeout: Duration) -> anyhow::Result<()> {
        debug_assert!(self.stopping, "join after wait");
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.must_run.get_mut(name) {
                None => anyhow::bail!("no task named {name}"),
                Some(result @ Some(_)) => return result.take().expect("matched Some"),
                Some(None) => {}
            }
            match tokio::time::timeout_at(deadline, self.ended_rx.recv()).await {
                Ok(Some(ended)) => {
                    self.health.set_task_down(ended.task, true);
                    if let Err(e) = &ended.result {
                        warn!(task = ended.task, "task stopped with an error: {e:#}");
                    }
                    self.must_run.insert(ended.task, Some(ended.result));
                }
                Ok(None) => unreachable!("the supervisor holds a sender"),
                Err(_) => anyhow::bail!("{name} did not stop within {timeout:?}"),
            }
        }
    }
}

/// Runs `task` as a task of its own, so that a panic in it is caught and
/// returned as an error; the task is aborted if this future is dropped.
async fn run_catching<F>(task: F) -> anyhow::Result<()>
where
    F: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let handle = tokio::spawn(task);
    let _abort = AbortOnDrop(handle.abort_handle());
    match handle.await {
        Ok(result) => result,
        Err(e) => Err(join_error(e)),
    }
}

/// The error for a task that did not finish: its panic, with the message, or
/// its cancellation.
pub fn join_error(e: JoinError) -> anyhow::Error {
    match e.try_into_panic() {
        Ok(panic) => panicked(panic.as_ref()),
        Err(e) => anyhow::anyhow!("{e}"),
    }
}

/// The error for a caught panic, with its message.
pub fn panicked(panic: &(dyn std::any::Any + Send)) -> anyhow::Error {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    anyhow::anyhow!("panicked: {message}")
}

struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the future `start` builds on a multi-threaded runtime until it
/// returns; SIGINT or SIGTERM cancels the token it is given, and a second
/// signal exits at once (status 130).
pub fn run_until_signal<F, Fut>(start: F) -> anyhow::Result<()>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    let result = runtime.block_on(async {
        let stop = CancellationToken::new();
        cancel_on_signals(stop.clone());
        start(stop).await
    });
    // Threads still blocked on I/O must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
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
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
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

#[cfg(test)]
mod tests;
