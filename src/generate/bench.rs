//! What the benches and bench examples share: the engines and states they
//! measure, built one way so their numbers compare, and what they print
//! about the machine beside their results (Linux `/proc`).

use std::sync::Arc;

use hdrhistogram::Histogram;

use super::{Generator, World};
use crate::catalog::Catalog;
use crate::classify::Classifier;
use crate::config::Clock;
use crate::flow::Flow;
use crate::state::{wall_now_ms, Engine, Settings};

const DAY_MS: i64 = 86_400_000;

/// 30 days' retention, the event clock (flows are replayed), and bounds no
/// bench state reaches.
pub fn settings() -> Settings {
    Settings {
        retention_days: 30,
        clock: Clock::Event,
        max_future_skew_ms: 5 * 60_000,
        max_endpoints: 50_000_000,
        max_pending: 10_000_000,
    }
}

/// An engine for `world`'s assets that keeps the port index from the
/// start, as `exposure run` does.
pub fn engine(world: &World) -> Engine {
    let engine = unindexed_engine(world);
    engine.keep_port_index_current(wall_now_ms());
    engine
}

/// The same engine without the port index, as `exposure analyze` ingests
/// until its query.
pub fn unindexed_engine(world: &World) -> Engine {
    let classifier = Classifier::new(&world.assets(), &[]);
    Engine::new(classifier, Arc::new(Catalog::builtin()), settings())
}

/// The query benches' state: flows spread over the 30 days before `now`
/// until every server of `world` has answered, then `extra` more, each also
/// handed to `each_extra` (to encode it for an ingest thread, say); then
/// `Engine::maintain`.
pub fn fill(
    engine: &Engine,
    world: &World,
    now: i64,
    extra: usize,
    mut each_extra: impl FnMut(&Flow),
) {
    let mut generator = Generator::new(world, 1, now - 30 * DAY_MS, 30 * DAY_MS);
    while !generator.covered_all_servers() {
        engine.apply(&generator.next().expect("the generator is endless"), now);
    }
    for f in generator.by_ref().take(extra) {
        engine.apply(&f, now);
        each_extra(&f);
    }
    engine.maintain(now);
}

/// p50, p99, p99.9 and max of a histogram of microseconds, in ms.
pub fn percentiles_ms(h: &Histogram<u64>) -> [f64; 4] {
    let ms = |us: u64| us as f64 / 1e3;
    [
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
    ]
}

/// The 1, 5 and 15-minute load averages, as `/proc/loadavg` has them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Resident set size of this process, in bytes (0 where `/proc` has none).
pub fn rss_bytes() -> u64 {
    /// Linux's page size on x86-64 and most arm64 kernels.
    const PAGE_BYTES: u64 = 4096;
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * PAGE_BYTES
}
