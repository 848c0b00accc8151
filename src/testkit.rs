//! What the crate's unit tests share: engines over the test assets, and
//! builders of flows (integration tests have theirs in `tests/support`).

use std::sync::Arc;

use crate::catalog::Catalog;
use crate::classify::Classifier;
use crate::config::Clock;
use crate::state::{Engine, Settings};

/// The asset ranges of every test: one IPv4 and one IPv6 documentation range.
pub const ASSETS: [&str; 2] = ["203.0.113.0/24", "2001:db8:100::/48"];

/// The engine settings of most tests: 30 days on the wall clock, room for
/// 10,000 endpoints.
pub fn settings() -> Settings {
    Settings {
        retention_days: 30,
        clock: Clock::Wall,
        max_future_skew_ms: 5 * 60_000,
        max_endpoints: 10_000,
        max_pending: 10_000,
    }
}

/// An empty engine over [`ASSETS`] with `settings` and the built-in catalog.
pub fn engine_with(settings: Settings) -> Engine {
    let assets: Vec<_> = ASSETS
        .iter()
        .map(|a| a.parse().expect("test asset"))
        .collect();
    Engine::new(
        Classifier::new(&assets, &[]),
        Arc::new(Catalog::builtin()),
        settings,
    )
}

/// An empty engine over [`ASSETS`] with [`settings`].
pub fn engine() -> Engine {
    engine_with(settings())
}
