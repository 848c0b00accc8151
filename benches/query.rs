//! `DescribeInternetOpenPort` with 100 k open endpoints on 5 k ports
//! (goal: p99 <= 5 ms during full-speed ingest; see
//! docs/benchmarks.md#goals-and-results).
//!
//! The state is built from the generator: flows spread over the last 30
//! days until every server has answered, then 2 M more. The default query
//! (last 7 days, PageSize 10) is measured by criterion for the mean, then
//! timed one call at a time into an hdrhistogram for p50, p99 and p999:
//! idle, and while another thread ingests goflow2-pb records at full speed
//! (the machine has 2 cores).
//!
//! ```text
//! cargo bench --bench query
//! ```

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use exposure::flow::{self, Flow, Format};
use exposure::generate::{bench, World};
use exposure::query::{self, PortQuery};
use exposure::state::{wall_now_ms, Engine};
use hdrhistogram::Histogram;

mod support;

const ENDPOINTS: usize = 100_000;
const EXTRA_FLOWS: usize = 2_000_000;
/// Calls timed one by one for the percentiles.
const CALLS: usize = 3000;

/// p50, p99, p999 and max of `CALLS` queries timed one by one, in ms
/// (an hdrhistogram of microseconds).
fn percentiles(engine: &Engine, q: &PortQuery, now: i64) -> [f64; 4] {
    let mut hist = Histogram::<u64>::new(3).expect("valid precision");
    for _ in 0..CALLS {
        let start = Instant::now();
        let answer = query::describe_internet_open_port(engine, q, now, String::new());
        black_box(answer);
        hist.record(start.elapsed().as_micros() as u64)
            .expect("in range");
    }
    bench::percentiles_ms(&hist)
}

fn benches(c: &mut Criterion) {
    let now = wall_now_ms();
    let world = World::new(1, ENDPOINTS);
    let engine = bench::engine(&world);
    // Records for the ingest thread, encoded before any timing.
    let mut ingest_records = Vec::new();
    bench::fill(&engine, &world, now, EXTRA_FLOWS, |f| {
        flow::encode_goflow2_pb(f, &mut ingest_records)
    });
    assert_eq!(engine.open_endpoints(), ENDPOINTS);

    let q = PortQuery::default();
    let answer = query::describe_internet_open_port(&engine, &q, now, String::new());
    eprintln!(
        "state: {} open endpoints, {} pending, {} rows (port, protocol) in the default range",
        engine.open_endpoints(),
        engine.pending_endpoints(),
        answer.page_info.total_count
    );

    eprintln!("load average: {}", bench::load_average());
    let [p50, p99, p999, max] = percentiles(&engine, &q, now);
    eprintln!(
        "idle: p50 {p50:.2} ms, p99 {p99:.2} ms, p999 {p999:.2} ms, max {max:.2} ms over {CALLS} calls"
    );

    let stop = AtomicBool::new(false);
    let ingested = AtomicU64::new(0);
    let (busy, secs) = std::thread::scope(|s| {
        s.spawn(|| {
            let mut out: Vec<Flow> = Vec::with_capacity(4);
            while !stop.load(Ordering::Relaxed) {
                // One decode call per message: split the stream by its one-byte length prefix.
                let mut at = 0;
                while at < ingest_records.len() && !stop.load(Ordering::Relaxed) {
                    let end = at + 1 + usize::from(ingest_records[at]);
                    out.clear();
                    let _ =
                        flow::decode(Format::Goflow2Pb, &ingest_records[at..end], None, &mut out);
                    for f in &out {
                        engine.apply(f, now);
                    }
                    ingested.fetch_add(1, Ordering::Relaxed);
                    at = end;
                }
            }
        });
        let start = Instant::now();
        let result = percentiles(&engine, &q, now);
        let secs = start.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        (result, secs)
    });
    let [p50, p99, p999, max] = busy;
    let rate = ingested.load(Ordering::Relaxed) as f64 / secs / 1e6;
    eprintln!(
        "during ingest ({rate:.2} M records/s on the other core): p50 {p50:.2} ms, p99 {p99:.2} ms, p999 {p999:.2} ms, max {max:.2} ms over {CALLS} calls"
    );

    c.bench_function("describe_internet_open_port/100k_endpoints_5k_ports", |b| {
        b.iter(|| query::describe_internet_open_port(&engine, &q, now, String::new()))
    });
}

criterion_group! {
    name = group;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10));
    targets = benches
}
criterion_main!(group);
