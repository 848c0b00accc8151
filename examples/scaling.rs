//! The scaling curve (docs/benchmarks.md): ingest records/s with 1 and 2 ingest
//! threads, and `DescribeInternetOpenPort` latency as the state grows from
//! 10 k to 100 k to 1 M open endpoints.
//!
//! **Ingest threads.** A world of `--ingest-endpoints` open endpoints; 2 M
//! goflow2-pb records are generated and encoded first, then applied once to
//! warm the state (every endpoint exists afterwards, as in a long-running
//! service). Each run then decodes and applies all of them again, split
//! round-robin between the threads in batches of `BATCH_RECORDS` as `exposure run`'s
//! poll thread hands them out, and reports records per wall-clock second.
//! The port index is kept, as `exposure run` does. Two ways to apply:
//!
//! - *by owner*, as `exposure run`'s workers do: each thread applies the
//!   flows of the endpoints it owns (`Engine::owner`) and passes the others,
//!   a batch's worth at a time, to their owner over a channel (one
//!   thread owns everything and calls `Engine::apply`, as a single worker
//!   does);
//! - *where decoded* (`--where-decoded`, how the service worked before):
//!   each thread applies every flow it decodes, so both threads write to
//!   every endpoint's state and shard lock.
//!
//! **Query latency by state size.** For each size the state is built as
//! `benches/query.rs` builds it (flows over the last 30 days until every
//! server has answered, plus 2 M more), then the default query (last 7 days,
//! PageSize 10) is timed `--calls` times one after another into an
//! hdrhistogram: p50, p99, p999 and max.
//!
//! Wall-clock numbers: run on a quiet machine (the load average is printed).
//!
//! ```text
//! cargo run --release --example scaling
//! cargo run --release --example scaling -- --sizes 10000,100000 --calls 500
//! cargo run --release --example scaling -- --sizes 10000 --calls 10 --where-decoded
//! ```

use std::hint::black_box;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Instant;

use clap::Parser;
use exposure::flow::{self, Flow, Format};
use exposure::generate::{bench, Generator, World};
use exposure::query::{self, PortQuery};
use exposure::source::kafka::BATCH_RECORDS;
use exposure::state::{wall_now_ms, Engine, Prepared};
use hdrhistogram::Histogram;

const HOUR_MS: i64 = 3_600_000;

#[derive(Parser, Debug)]
#[command(about = "Ingest threads and query latency by state size")]
struct Args {
    /// Open endpoints of the states the query is timed on.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    sizes: Vec<usize>,
    /// Queries timed per state.
    #[arg(long, default_value_t = 1000)]
    calls: u64,
    /// Open endpoints of the world the ingest threads write to.
    #[arg(long, default_value_t = 10_000)]
    ingest_endpoints: usize,
    /// Records per ingest run.
    #[arg(long, default_value_t = 2_000_000)]
    records: usize,
    /// Timed runs per thread count (the best is reported with the others).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Ingest without keeping the port index (as `exposure analyze` does
    /// until its query), to show what keeping it costs.
    #[arg(long)]
    without_index: bool,
    /// Apply each flow on the thread that decoded it, instead of on the
    /// thread that owns its endpoint.
    #[arg(long)]
    where_decoded: bool,
    /// Start every run from an empty engine instead of a warm one, so the
    /// run creates its endpoints (most of them pending) as a service does
    /// after a start without a checkpoint, or under a scan.
    #[arg(long)]
    fresh: bool,
}

/// Decodes and applies every flow of every `threads`-th batch of records
/// starting at batch `first`, on this thread.
fn ingest_where_decoded(
    engine: &Engine,
    records: &[Vec<u8>],
    first: usize,
    threads: usize,
    now: i64,
) {
    let mut out: Vec<Flow> = Vec::with_capacity(4);
    for batch in records.chunks(BATCH_RECORDS).skip(first).step_by(threads) {
        for record in batch {
            out.clear();
            if flow::decode(Format::Goflow2Pb, record, None, &mut out).is_ok() {
                for f in &out {
                    engine.apply(f, now);
                }
            }
        }
    }
}

/// Thread `me` of `peers.len()`: decodes every `threads`-th batch starting
/// at batch `me`, applies the flows it owns and sends the others to their
/// owner, applying what the others send it between its own batches and
/// after them, until every other thread is done.
fn ingest_by_owner(
    engine: &Engine,
    records: &[Vec<u8>],
    me: usize,
    peers: Vec<Sender<Vec<Prepared>>>,
    inbox: Receiver<Vec<Prepared>>,
    now: i64,
) {
    let threads = peers.len();
    let mut out: Vec<Flow> = Vec::with_capacity(4);
    let mut outboxes: Vec<Vec<Prepared>> = (0..threads).map(|_| Vec::new()).collect();
    for batch in records.chunks(BATCH_RECORDS).skip(me).step_by(threads) {
        for record in batch {
            out.clear();
            if flow::decode(Format::Goflow2Pb, record, None, &mut out).is_err() {
                continue;
            }
            if threads == 1 {
                // As a single worker does: no owner to look up.
                out.iter().for_each(|f| {
                    engine.apply(f, now);
                });
                continue;
            }
            for f in &out {
                let Ok(prepared) = engine.prepare(f, now) else {
                    continue;
                };
                let owner = engine.owner(&prepared, threads);
                if owner == me {
                    engine.apply_prepared(prepared);
                } else {
                    outboxes[owner].push(prepared);
                }
            }
        }
        for (owner, outbox) in outboxes.iter_mut().enumerate() {
            if !outbox.is_empty() {
                let _ = peers[owner].send(std::mem::take(outbox));
            }
        }
        while let Ok(flows) = inbox.try_recv() {
            flows.into_iter().for_each(|p| {
                engine.apply_prepared(p);
            });
        }
    }
    // The others hold senders to this thread until they are done.
    drop(peers);
    for flows in inbox {
        flows.into_iter().for_each(|p| {
            engine.apply_prepared(p);
        });
    }
}

/// One timed run over `records` with `threads` threads; M records/s.
fn run(engine: &Engine, records: &[Vec<u8>], threads: usize, by_owner: bool, now: i64) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        if !by_owner {
            for first in 0..threads {
                s.spawn(move || ingest_where_decoded(engine, records, first, threads, now));
            }
            return;
        }
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..threads).map(|_| channel()).unzip();
        for (me, inbox) in receivers.into_iter().enumerate() {
            let peers = senders.clone();
            s.spawn(move || ingest_by_owner(engine, records, me, peers, inbox, now));
        }
        drop(senders);
    });
    records.len() as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn ingest_threads(args: &Args) {
    let now = wall_now_ms();
    let world = World::new(1, args.ingest_endpoints);
    let records: Vec<Vec<u8>> = Generator::new(&world, 1, now - HOUR_MS, HOUR_MS)
        .take(args.records)
        .map(|f| {
            // One length-delimited message a record, as goflow2 writes them.
            let mut bytes = Vec::new();
            flow::encode_goflow2_pb(&f, &mut bytes);
            bytes
        })
        .collect();
    let new_engine = || {
        if args.without_index {
            bench::unindexed_engine(&world)
        } else {
            bench::engine(&world)
        }
    };
    let engine = new_engine();
    ingest_where_decoded(&engine, &records, 0, 1, now);
    let by_owner = !args.where_decoded;
    println!(
        "ingest: {} goflow2-pb records a run into {} engine ({} open and {} pending endpoints after a run), port index {}, flows applied {}; load average {}",
        records.len(),
        if args.fresh { "a fresh" } else { "a warm" },
        engine.open_endpoints(),
        engine.pending_endpoints(),
        if args.without_index { "not kept" } else { "kept" },
        if by_owner { "by their endpoint's owner (as exposure run)" } else { "where decoded" },
        bench::load_average()
    );
    println!("| ingest threads | runs (M records/s, wall) | best |");
    println!("|---|---|---|");
    for threads in [1, 2] {
        let rates: Vec<f64> = (0..args.runs)
            .map(|_| {
                if args.fresh {
                    run(&new_engine(), &records, threads, by_owner, now)
                } else {
                    run(&engine, &records, threads, by_owner, now)
                }
            })
            .collect();
        let best = rates.iter().copied().fold(0.0, f64::max);
        let runs: Vec<String> = rates.iter().map(|r| format!("{r:.2}")).collect();
        println!("| {threads} | {} | {best:.2} |", runs.join(", "));
    }
}

fn query_latency(args: &Args) {
    println!();
    println!("| open endpoints | pending | ports | p50 ms | p99 ms | p999 ms | max ms | state built in |");
    println!("|---|---|---|---|---|---|---|---|");
    for &size in &args.sizes {
        let now = wall_now_ms();
        let built = Instant::now();
        let world = World::new(1, size);
        let engine = bench::engine(&world);
        bench::fill(&engine, &world, now, 2_000_000, |_| {});
        let built = built.elapsed();
        let q = PortQuery::default();
        let ports = query::describe_internet_open_port(&engine, &q, now, String::new())
            .page_info
            .total_count;
        let mut hist = Histogram::<u64>::new(3).expect("valid precision");
        for _ in 0..args.calls {
            let start = Instant::now();
            black_box(query::describe_internet_open_port(
                &engine,
                &q,
                now,
                String::new(),
            ));
            hist.record(start.elapsed().as_micros() as u64)
                .expect("in range");
        }
        let [p50, p99, p999, max] = bench::percentiles_ms(&hist);
        println!(
            "| {} | {} | {ports} | {p50:.2} | {p99:.2} | {p999:.2} | {max:.2} | {:.0} s (load {}) |",
            engine.open_endpoints(),
            engine.pending_endpoints(),
            built.as_secs_f64(),
            bench::load_average()
        );
    }
}

fn main() {
    let args = Args::parse();
    ingest_threads(&args);
    query_latency(&args);
}
