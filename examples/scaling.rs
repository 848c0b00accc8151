//! The scaling curve (SPEC §11): ingest records/s with 1 and 2 ingest
//! threads, and `DescribeInternetOpenPort` latency as the state grows from
//! 10 k to 100 k to 1 M open endpoints.
//!
//! **Ingest threads.** A world of `--ingest-endpoints` open endpoints; 2 M
//! goflow2-pb records are generated and encoded first, then applied once to
//! warm the state (every endpoint exists afterwards, as in a long-running
//! service). Each run then decodes and applies all of them again, split
//! round-robin between the threads as records of different partitions
//! would be, and reports records per wall-clock second. The port index is
//! kept, as `exposure run` does.
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
//! ```

use std::hint::black_box;
use std::time::Instant;

use clap::Parser;
use exposure::flow::{self, Flow, Format};
use exposure::generate::{bench, Generator, World};
use exposure::query::{self, PortQuery};
use exposure::state::{wall_now_ms, Engine};
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
}

/// Decodes and applies every `threads`-th record starting at `first`.
fn ingest(engine: &Engine, records: &[Vec<u8>], first: usize, threads: usize, now: i64) {
    let mut out: Vec<Flow> = Vec::with_capacity(4);
    for record in records.iter().skip(first).step_by(threads) {
        out.clear();
        if flow::decode(Format::Goflow2Pb, record, None, &mut out).is_ok() {
            for f in &out {
                engine.apply(f, now);
            }
        }
    }
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
    let engine = if args.without_index {
        bench::unindexed_engine(&world)
    } else {
        bench::engine(&world)
    };
    ingest(&engine, &records, 0, 1, now);
    println!(
        "ingest: {} goflow2-pb records a run, {} open and {} pending endpoints after warm-up, port index {}; load average {}",
        records.len(),
        engine.open_endpoints(),
        engine.pending_endpoints(),
        if args.without_index { "not kept" } else { "kept" },
        bench::load_average()
    );
    println!("| ingest threads | runs (M records/s, wall) | best |");
    println!("|---|---|---|");
    for threads in [1, 2] {
        let rates: Vec<f64> = (0..args.runs)
            .map(|_| {
                let start = Instant::now();
                std::thread::scope(|s| {
                    for first in 0..threads {
                        let (engine, records) = (&engine, &records);
                        s.spawn(move || ingest(engine, records, first, threads, now));
                    }
                });
                records.len() as f64 / start.elapsed().as_secs_f64() / 1e6
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
