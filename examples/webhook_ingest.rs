//! Whether a webhook slows ingest (docs/benchmarks.md#webhooks-and-ingest):
//! the same flows, which open every endpoint of a 200,000-endpoint
//! world (one `opened` event each), applied by one thread to a fresh
//! engine recording changes, with no webhook, with a json webhook whose
//! receiver never answers, and with one whose receiver takes everything.
//! The runs alternate (none, hung, taking, none, ...) and the median of
//! each is printed.
//!
//! ```text
//! cargo run --release --example webhook_ingest
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::http::StatusCode;
use exposure::catalog::{Catalog, Lang};
use exposure::changes::events::Log;
use exposure::changes::watch::Watched;
use exposure::config::{WebhookConfig, WebhookFormat};
use exposure::flow::Flow;
use exposure::generate::{bench, Generator, World};
use exposure::metrics::Metrics;
use exposure::notify;
use exposure::state::{wall_now_ms, Engine};
use tokio_util::sync::CancellationToken;

const ENDPOINTS: usize = 200_000;
const ROUNDS: usize = 9;
const DAY_MS: i64 = 86_400_000;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Receiver {
    None,
    Hung,
    Taking,
}

fn main() -> anyhow::Result<()> {
    let world = World::new(1, ENDPOINTS);
    let now = wall_now_ms();
    let mut generator = Generator::new(&world, 1, now - DAY_MS, DAY_MS);
    let mut flows: Vec<Flow> = Vec::new();
    while !generator.covered_all_servers() {
        flows.push(generator.next().expect("the generator is endless"));
    }
    println!("{} flows opening {ENDPOINTS} endpoints", flows.len());
    let runtime = tokio::runtime::Runtime::new()?;
    let mut results: Vec<(Receiver, Vec<f64>, u64)> =
        [Receiver::None, Receiver::Hung, Receiver::Taking]
            .into_iter()
            .map(|r| (r, Vec::new(), 0))
            .collect();
    for _ in 0..ROUNDS {
        for (receiver, rates, sent) in &mut results {
            let (rate, delivered) = run(&runtime, &world, &flows, now, *receiver)?;
            rates.push(rate);
            *sent = delivered;
        }
    }
    for (receiver, mut rates, sent) in results {
        rates.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        println!(
            "{receiver:?}: {:.2} M flows/s median of {ROUNDS} (min {:.2}, max {:.2}); events the receiver took in the last run: {sent}",
            median / 1e6,
            rates[0] / 1e6,
            rates[rates.len() - 1] / 1e6
        );
    }
    println!("load average: {}", bench::load_average());
    Ok(())
}

/// Applies `flows` to a fresh engine with `receiver`'s webhook running;
/// the flows per second, and the events the receiver took.
fn run(
    runtime: &tokio::runtime::Runtime,
    world: &World,
    flows: &[Flow],
    now: i64,
    receiver: Receiver,
) -> anyhow::Result<(f64, u64)> {
    let catalog = Arc::new(Catalog::builtin());
    let log = Log::new(catalog.clone(), Arc::new(Watched::empty()), 10_000, 30);
    let engine = Arc::new(bench::unindexed_engine(world).track_changes(Arc::new(log), DAY_MS));
    let stop = CancellationToken::new();
    let took = Arc::new(AtomicU64::new(0));
    let dir = tempfile::tempdir()?;
    let mut task = None;
    if receiver != Receiver::None {
        let url = runtime.block_on(serve(receiver, took.clone()))?;
        let hook = WebhookConfig::new("bench", url, WebhookFormat::Json);
        let context = Arc::new(notify::Context {
            engine: engine.clone(),
            catalog,
            lang: Lang::En,
            dir: dir.path().to_owned(),
            metrics: Metrics::new(engine.clone()).webhooks,
            wall_clock: wall_now_ms,
            restored_seq: 0,
            started: Default::default(),
            done: CancellationToken::new(),
        });
        task = Some(runtime.spawn(notify::run(vec![hook], context, stop.clone())));
    }
    let started = Instant::now();
    apply(&engine, flows, now);
    let rate = flows.len() as f64 / started.elapsed().as_secs_f64();
    let events = engine.changes().map_or(0, |log| log.latest());
    assert_eq!(events, ENDPOINTS as u64, "one opened event per endpoint");
    // The webhook ends before the next run starts.
    stop.cancel();
    if let Some(task) = task {
        runtime.block_on(task)??;
    }
    drop(engine);
    Ok((rate, took.load(Ordering::Relaxed)))
}

fn apply(engine: &Engine, flows: &[Flow], now: i64) {
    for f in flows {
        engine.apply(f, now);
    }
}

/// A receiver on 127.0.0.1 that never answers (`Hung`) or answers 200,
/// counting the events it took; its URL.
async fn serve(receiver: Receiver, took: Arc<AtomicU64>) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let took = took.clone();
        async move {
            if receiver == Receiver::Hung {
                std::future::pending::<()>().await;
            }
            let events: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let count = events["Events"].as_array().map_or(0, Vec::len) as u64;
            took.fetch_add(count, Ordering::Relaxed);
            StatusCode::OK
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}
