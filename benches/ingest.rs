//! Decode + aggregate on one core, per input format (goals: >= 3 M
//! records/s for goflow2-pb, >= 1 M/s for the JSON formats; see
//! docs/benchmarks.md#goals-and-results).
//!
//! Records are generated and encoded in memory first, one flow a record,
//! laid out back to back as a consumer's fetch buffer holds them. The
//! measured loop is what `exposure analyze` does per record: count it,
//! `flow::decode` into a reused `Vec`, then `Engine::apply` each flow. The
//! engine lives across iterations, so after the warm-up every endpoint
//! exists: this is the steady state of a long-running ingest.
//!
//! `decode` and `apply` alone are measured too, to show where time goes,
//! and goflow2-pb into an engine that does not keep the port index, to show
//! what keeping it costs.
//!
//! Times are the bench thread's CPU time (see `support`): the machine's two
//! cores are shared with builds, and wall time would count the waits.
//!
//! ```text
//! cargo bench --bench ingest
//! BENCH_RECORDS=1000000 cargo bench --bench ingest -- ingest/   # a bigger state
//! ```
//!
//! More records mean more distinct scanned and refused endpoints held as
//! pending, so a bigger map and more cache misses per flow.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use exposure::flow::{self, Flow, Format, Outcome};
use exposure::generate::{bench, Generator, World};
use exposure::state::{wall_now_ms, Engine};
use support::ThreadCpu;

mod support;

/// Records per iteration, unless `BENCH_RECORDS` says otherwise.
const RECORDS: usize = 200_000;
/// Open server endpoints in the world: 10 k on 500 ports.
const ENDPOINTS: usize = 10_000;
const HOUR_MS: i64 = 3_600_000;

/// Records encoded back to back, with their bounds.
struct Records {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Records {
    fn encode(format: Format, flows: &[Flow]) -> Records {
        let mut bytes = Vec::new();
        let mut ends = Vec::with_capacity(flows.len());
        for f in flows {
            match format {
                Format::Goflow2Pb => flow::encode_goflow2_pb(f, &mut bytes),
                Format::Goflow2Json => bytes.extend(flow::encode_goflow2_json(f).as_bytes()),
                Format::PmacctJson => bytes.extend(flow::encode_pmacct_json(f).as_bytes()),
                Format::Auto => unreachable!("benches name their format"),
            }
            ends.push(bytes.len());
        }
        Records { bytes, ends }
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(start, end)| &self.bytes[start..end])
    }
}

/// One record through the pipeline, as `analyze::run` does it.
fn ingest(engine: &Engine, format: Format, records: &Records, flows: &mut Vec<Flow>, now: i64) {
    for record in records.iter() {
        engine.stats().count_record();
        flows.clear();
        match flow::decode(format, record, None, flows) {
            Ok(Outcome::Flows) => {
                for f in flows.iter() {
                    engine.apply(f, now);
                }
            }
            Ok(Outcome::Marker) => engine.stats().count_record_ignored("marker"),
            Err(e) => engine.stats().count_record_rejected(e.reason()),
        }
    }
}

fn benches(c: &mut Criterion<ThreadCpu>) {
    eprintln!("load average: {}", bench::load_average());
    let count: usize = std::env::var("BENCH_RECORDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(RECORDS);
    let now = wall_now_ms();
    let world = World::new(1, ENDPOINTS);
    let flows: Vec<Flow> = Generator::new(&world, 1, now - HOUR_MS, HOUR_MS)
        .take(count)
        .collect();
    let formats = [Format::Goflow2Pb, Format::Goflow2Json, Format::PmacctJson];

    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(count as u64));
    for format in formats {
        let records = Records::encode(format, &flows);
        let engine = bench::engine(&world);
        let mut out = Vec::with_capacity(4);
        group.bench_function(format.as_str(), |b| {
            b.iter(|| ingest(&engine, format, &records, &mut out, now))
        });
        eprintln!(
            "state after {format}: {} open endpoints, {} pending",
            engine.open_endpoints(),
            engine.pending_endpoints()
        );
    }
    // What keeping the port index costs, in the same run.
    let records = Records::encode(Format::Goflow2Pb, &flows);
    let unindexed = bench::unindexed_engine(&world);
    let mut out = Vec::with_capacity(4);
    group.bench_function("goflow2-pb-without-index", |b| {
        b.iter(|| ingest(&unindexed, Format::Goflow2Pb, &records, &mut out, now))
    });
    group.finish();

    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(count as u64));
    for format in formats {
        let records = Records::encode(format, &flows);
        let mut out = Vec::with_capacity(4);
        group.bench_function(format.as_str(), |b| {
            b.iter(|| {
                for record in records.iter() {
                    out.clear();
                    let _ = black_box(flow::decode(format, record, None, &mut out));
                }
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("apply");
    group.throughput(Throughput::Elements(count as u64));
    let steady = bench::engine(&world);
    group.bench_function("steady", |b| {
        b.iter(|| {
            for f in &flows {
                black_box(steady.apply(f, now));
            }
        })
    });
    // Every endpoint new: the first pass over a fresh engine.
    group.bench_function("fresh", |b| {
        b.iter_batched(
            || bench::engine(&world),
            |fresh| {
                for f in &flows {
                    black_box(fresh.apply(f, now));
                }
                fresh
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group! {
    name = group;
    config = Criterion::default()
        .with_measurement(ThreadCpu)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6));
    targets = benches
}
criterion_main!(group);
