//! What `exposure_unexpected_endpoints` costs a `/metrics` scrape at 1 M
//! open endpoints (docs/operations.md#expected-exposures): the scrape without
//! an expected list, and with one entry covering an open port, which makes
//! every scrape walk the state once.
//!
//! ```text
//! cargo run --release --example expected_scrape
//! ```

use std::sync::Arc;
use std::time::Instant;

use exposure::changes::watch::Watched;
use exposure::generate::{bench, World};
use exposure::metrics::{Metrics, MetricsOptions};
use exposure::state::wall_now_ms;

const ENDPOINTS: usize = 1_000_000;
const SCRAPES: u32 = 20;

fn main() -> anyhow::Result<()> {
    let world = World::new(1, ENDPOINTS);
    let engine = Arc::new(bench::engine(&world));
    bench::fill(&engine, &world, wall_now_ms(), 0, |_| {});
    let summary = engine.summary(wall_now_ms());
    let port = summary.last_day.first().map_or(443, |share| share.port);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("expected.toml");
    std::fs::write(
        &path,
        format!("[[expected]]\nip = \"0.0.0.0/0\"\nport = {port}\n"),
    )?;
    let watched = Arc::new(Watched::load(&path).map_err(|p| anyhow::anyhow!("{p:?}"))?);
    let without = Metrics::new(engine.clone());
    let with = Metrics::watching(engine.clone(), watched, MetricsOptions::default());
    for (name, metrics) in [
        ("no list", &without),
        ("a list covering an open port", &with),
    ] {
        metrics.render();
        let started = Instant::now();
        for _ in 0..SCRAPES {
            std::hint::black_box(metrics.render());
        }
        let ms = started.elapsed().as_secs_f64() * 1e3 / f64::from(SCRAPES);
        println!(
            "{name}: {ms:.1} ms per scrape ({} open endpoints)",
            engine.open_endpoints()
        );
    }
    println!("load average: {}", bench::load_average());
    Ok(())
}
