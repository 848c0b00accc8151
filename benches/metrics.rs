//! A `/metrics` scrape with 1 M open endpoints (goal: <= 10 ms, see
//! docs/benchmarks.md#goals-and-results).
//!
//! The state is built from the generator: flows spread over the last 30
//! days until every server has answered. Measured, in one run:
//! - `render`: what `GET /metrics` returns, every family gathered from the
//!   engine's summary and encoded as Prometheus text;
//! - `summary`: `Engine::summary` alone, the part of `render` read from the
//!   state;
//! - `walk` (the same-run anchor): one pass over every endpoint tallying
//!   its last day, the work a scrape did before the engine kept a summary
//!   and what the first scrape or query of an hour still does once, to
//!   move the port index.
//!
//! ```text
//! cargo bench --bench metrics
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use exposure::generate::{bench, World};
use exposure::metrics::Metrics;
use exposure::query::TimeWindows;
use exposure::state::wall_now_ms;

const ENDPOINTS: usize = 1_000_000;

fn benches(c: &mut Criterion) {
    let now = wall_now_ms();
    let world = World::new(1, ENDPOINTS);
    let engine = Arc::new(bench::engine(&world));
    bench::fill(&engine, &world, now, 0, |_| {});
    assert_eq!(engine.open_endpoints(), ENDPOINTS);
    let metrics = Metrics::new(engine.clone());
    let text = metrics.render();
    let summary = engine.summary(wall_now_ms());
    eprintln!(
        "state: {} open endpoints, {} pending, {} open ports, {} (port, label) shares \
         in the last day; a scrape is {} lines, {} bytes",
        engine.open_endpoints(),
        engine.pending_endpoints(),
        summary.open_ports.iter().sum::<u64>(),
        summary.last_day.len(),
        text.lines().count(),
        text.len()
    );
    eprintln!("load average: {}", bench::load_average());

    let mut group = c.benchmark_group("metrics_1m_endpoints");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("render", |b| b.iter(|| black_box(metrics.render())));
    group.bench_function("summary", |b| {
        b.iter(|| black_box(engine.summary(wall_now_ms())))
    });
    group.bench_function("walk", |b| {
        b.iter(|| {
            let now_ms = engine.now_ms(wall_now_ms());
            let res = engine.resolution(now_ms);
            let last_day = [TimeWindows::new(now_ms, None, None).last_1d];
            let mut bytes = 0u64;
            engine.for_each(|_, state| {
                let [day] = state.series.tally(&last_day, res);
                bytes = bytes.wrapping_add(day.total_bytes());
            });
            black_box(bytes)
        })
    });
    group.finish();
}

criterion_group!(metrics, benches);
criterion_main!(metrics);
