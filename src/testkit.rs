//! What the crate's unit tests share: engines over the test assets, and
//! builders of flows (integration tests have theirs in `tests/support`).

use std::sync::Arc;

use crate::catalog::Catalog;
use crate::classify::Classifier;
use crate::config::Clock;
use crate::flow::{Flow, PROTO_TCP};
use crate::state::{Engine, Settings};

/// The asset ranges of every test: one IPv4 and one IPv6 documentation range.
pub const ASSETS: [&str; 2] = ["203.0.113.0/24", "2001:db8:100::/48"];

/// 2024-01-01T00:00:00Z, the time of flows unless a test says otherwise.
pub const T0: i64 = 1_704_067_200_000;

/// One TCP flow of one packet of 100 bytes at [`T0`] without flags or label;
/// a test sets what it is about with struct update syntax:
/// `Flow { tcp_flags: SYN | ACK, ..testkit::flow("203.0.113.5", 443, "198.51.100.7", 50000) }`.
pub fn flow(src: &str, sport: u16, dst: &str, dport: u16) -> Flow {
    Flow {
        src_addr: src.parse().expect("test address"),
        dst_addr: dst.parse().expect("test address"),
        src_port: sport,
        dst_port: dport,
        proto: PROTO_TCP,
        tcp_flags: 0,
        bytes: 100,
        packets: 1,
        time_ms: T0,
        label: None,
    }
}

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
