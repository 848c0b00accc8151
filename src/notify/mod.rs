//! Pushes exposure changes to `[[changes.webhooks]]`
//! (`docs/operations.md#webhooks`): each webhook reads the event log
//! ([`crate::changes::events::Log`]) from where it last delivered, on its
//! own task, so a slow or dead receiver never holds up ingest; the log is
//! its queue (bounded by the event history, what falls out of it before it
//! is sent is counted as dropped).
//!
//! - [`json`]: every event, batched as `{"Events": [...]}`, signed with
//!   HMAC-SHA256 when the webhook has a `secret`;
//! - [`alertmanager`]: one alert per open unexpected exposure, resent while
//!   it lasts, resolved (`endsAt`) when it closes or becomes expected.
//!
//! - [`topic`]: `changes.topic`, every event exactly once on a Kafka topic.
//!
//! The webhooks are at least once: a failed POST is retried with backoff for
//! `max_retry`, and what was delivered is kept in a file of its own under
//! `state.dir/webhooks/`, so a restart goes on from there.

pub mod alertmanager;
pub mod json;
mod store;
pub mod topic;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::catalog::{Catalog, Lang};
use crate::config::{WebhookConfig, WebhookFormat};
use crate::metrics::WebhookMetrics;
use crate::state::Engine;

pub use store::Store;

/// How long one POST may take, connecting included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The first wait after a failed POST; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What every webhook shares.
pub struct Context {
    pub engine: Arc<Engine>,
    pub catalog: Arc<Catalog>,
    /// The language of the texts sent (`changes.lang`).
    pub lang: Lang,
    /// `state.dir/webhooks`.
    pub dir: PathBuf,
    pub metrics: WebhookMetrics,
    /// Wall-clock UNIX milliseconds.
    pub wall_clock: fn() -> i64,
    /// The latest `Seq` when the state was restored, before any record was
    /// read: a new webhook starts after it.
    pub restored_seq: u64,
    /// The webhooks started since the state was restored: only a first
    /// start follows `restored_seq` (a restart of the task finds the log
    /// as it left it).
    pub started: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Cancelled once [`run`] has returned after its stop, every webhook
    /// saved.
    pub done: CancellationToken,
}

impl Context {
    /// Where a webhook that saved `saved` (`None`: nothing) goes on from:
    /// after it, but never beyond what the restored state holds when it is
    /// the webhook's first start since the restore; a new webhook starts
    /// after `restored_seq`.
    pub fn resume_after(&self, name: &str, saved: Option<u64>, latest: u64) -> u64 {
        let first = self
            .started
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_owned());
        match saved {
            None => self.restored_seq,
            Some(seq) if first => seq.min(self.restored_seq),
            Some(seq) => seq.min(latest),
        }
    }
}

/// Runs every webhook until `stop`; returns when all have saved where they
/// are. One that fails stops the others (each saves), and its error is
/// returned for the supervisor to start them all again.
pub async fn run(
    hooks: Vec<WebhookConfig>,
    context: Arc<Context>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let result = run_all(hooks, &context, &stop).await;
    if stop.is_cancelled() {
        context.done.cancel();
    }
    result
}

async fn run_all(
    hooks: Vec<WebhookConfig>,
    context: &Arc<Context>,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&context.dir)
        .with_context(|| format!("cannot create {}", context.dir.display()))?;
    let client = client()?;
    let stop = stop.child_token();
    let mut tasks = tokio::task::JoinSet::new();
    for hook in hooks {
        context.metrics.start(&hook.name);
        let sender = Sender {
            client: client.clone(),
            metrics: context.metrics.clone(),
            hook,
            wall_clock: context.wall_clock,
        };
        let context = context.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            let name = sender.hook.name.clone();
            let result = match sender.hook.format {
                WebhookFormat::Json => json::run(sender, &context, stop).await,
                WebhookFormat::Alertmanager => alertmanager::run(sender, &context, stop).await,
            };
            result.with_context(|| format!("webhook {name}"))
        });
    }
    let mut failure = None;
    while let Some(done) = tasks.join_next().await {
        let result = done.map_err(crate::supervise::join_error).and_then(|r| r);
        if let Err(e) = result {
            stop.cancel();
            failure.get_or_insert(e);
        }
    }
    failure.map_or(Ok(()), Err)
}

/// The HTTP client of every webhook: bounded time per request, no
/// redirects (a POST that is sent elsewhere is a failure to look at, not
/// to follow), rustls with the Mozilla roots.
pub fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("exposure/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the webhook HTTP client")
}

/// One webhook's way out: POSTs with its client, counted in its metrics.
pub struct Sender {
    client: reqwest::Client,
    metrics: WebhookMetrics,
    pub hook: WebhookConfig,
    wall_clock: fn() -> i64,
}

/// How a delivery ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivered {
    /// The receiver answered 2xx.
    Yes,
    /// It failed for `max_retry`: given up.
    GaveUp,
    /// The service is stopping; not delivered.
    Stopped,
}

impl Sender {
    /// POSTs `body` to `url` until the receiver takes it (2xx), `max_retry`
    /// has passed since the first try, or `stop`.
    pub async fn deliver(
        &self,
        url: &str,
        body: Vec<u8>,
        headers: &[(&'static str, String)],
        max_retry: Duration,
        stop: &CancellationToken,
    ) -> Delivered {
        let logged_url = redacted(url);
        let name = self.hook.name.as_str();
        let first_try = tokio::time::Instant::now();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let mut request = self
                .client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            let outcome = tokio::select! {
                () = stop.cancelled() => return Delivered::Stopped,
                outcome = request.send() => outcome,
            };
            let problem = match outcome {
                Ok(response) if response.status().is_success() => {
                    self.metrics
                        .deliveries
                        .with_label_values(&[name, "ok"])
                        .inc();
                    self.metrics
                        .last_success
                        .with_label_values(&[name])
                        .set((self.wall_clock)() / 1000);
                    return Delivered::Yes;
                }
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    let text: String = text.chars().take(200).collect();
                    format!("answered {status}: {text:?}")
                }
                Err(error) => error_chain(&error),
            };
            self.metrics
                .deliveries
                .with_label_values(&[name, "error"])
                .inc();
            let failing_for = first_try.elapsed();
            if failing_for >= max_retry {
                warn!(
                    webhook = name,
                    url = %logged_url,
                    ?failing_for,
                    "giving up a delivery: {problem}"
                );
                return Delivered::GaveUp;
            }
            warn!(webhook = name, url = %logged_url, retry_in = ?backoff, "delivery failed: {problem}");
            let wait = backoff.min(max_retry.saturating_sub(failing_for));
            tokio::select! {
                () = stop.cancelled() => return Delivered::Stopped,
                () = tokio::time::sleep(wait) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn wall_now_ms(&self) -> i64 {
        (self.wall_clock)()
    }
}

/// `url` as it may be logged: without a password, and without the query's
/// values (either may hold a token).
pub fn redacted(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return "(not a URL)".to_owned();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query().is_some() {
        let keys: Vec<String> = parsed
            .query_pairs()
            .map(|(k, _)| format!("{k}=***"))
            .collect();
        parsed.set_query(Some(&keys.join("&")));
    }
    parsed.to_string()
}

/// An error and its causes on one line (reqwest's own message leaves out
/// why a connection failed).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
