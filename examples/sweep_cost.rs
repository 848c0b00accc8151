//! What the walks of the state behind exposure changes cost at 1 M
//! endpoints (docs/benchmarks.md#the-walks-behind-exposure-changes): the
//! sweep `exposure run` makes every 5 s (`Engine::sweep_changes`: closes
//! idle exposures, judges them against the expected list), without a list
//! and with one entry covering a port, and the walk an Alertmanager
//! webhook makes every `resend_interval` (`Engine::open_exposures`).
//!
//! ```text
//! cargo run --release --example sweep_cost
//! ```

use std::sync::Arc;
use std::time::Instant;

use exposure::catalog::Catalog;
use exposure::changes::events::Log;
use exposure::changes::watch::Watched;
use exposure::generate::{bench, World};
use exposure::state::{wall_now_ms, Engine};

const ENDPOINTS: usize = 1_000_000;
const ROUNDS: u32 = 10;
/// Nothing closes during the measured sweeps: their cost is the walk.
const CLOSED_AFTER_MS: i64 = 60 * 86_400_000;

fn main() -> anyhow::Result<()> {
    let world = World::new(1, ENDPOINTS);
    let now = wall_now_ms();
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("expected.toml");
    std::fs::write(&path, "[[expected]]\nip = \"0.0.0.0/0\"\nport = 443\n")?;
    let lists = [
        ("no expected list", Arc::new(Watched::empty())),
        (
            "a list covering 443 everywhere",
            Arc::new(Watched::load(&path).map_err(|p| anyhow::anyhow!("{p:?}"))?),
        ),
    ];
    for (name, watched) in lists {
        let engine = tracked(&world, watched);
        bench::fill(&engine, &world, now, 0, |_| {});
        // The first sweep judges every exposure against the list once.
        let started = Instant::now();
        engine.sweep_changes(now);
        let first_ms = started.elapsed().as_secs_f64() * 1e3;
        let started = Instant::now();
        for _ in 0..ROUNDS {
            engine.sweep_changes(now);
        }
        let sweep_ms = started.elapsed().as_secs_f64() * 1e3 / f64::from(ROUNDS);
        let started = Instant::now();
        let mut open = 0usize;
        for _ in 0..ROUNDS {
            open = 0;
            engine.open_exposures(now, |_, look| {
                open += usize::from(look.expected.is_none());
            });
        }
        let walk_ms = started.elapsed().as_secs_f64() * 1e3 / f64::from(ROUNDS);
        println!(
            "{name}: {} open endpoints ({open} not expected), {} events; \
             first sweep {first_ms:.1} ms, then {sweep_ms:.1} ms per sweep; \
             open_exposures {walk_ms:.1} ms per walk",
            engine.open_endpoints(),
            engine.changes().map_or(0, |log| log.latest()),
        );
    }
    println!("load average: {}", bench::load_average());
    Ok(())
}

fn tracked(world: &World, watched: Arc<Watched>) -> Engine {
    let log = Log::new(Arc::new(Catalog::builtin()), watched, 10_000, 30);
    let engine = bench::unindexed_engine(world).track_changes(Arc::new(log), CLOSED_AFTER_MS);
    engine.keep_port_index_current(wall_now_ms());
    engine
}
