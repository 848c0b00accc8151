use std::sync::Arc;

use crate::changes::watch::Watched;
use crate::metrics::{Metrics, MetricsOptions};
use crate::state::{wall_now_ms, Engine};
use crate::testkit::{conversation, engine};

/// Open now: MySQL (risk 3) on two addresses, HTTP (1) and HTTPS (0) on one.
fn four_endpoints() -> Arc<Engine> {
    let e = engine();
    let now = wall_now_ms();
    for (server, port) in [
        ("203.0.113.10", 3306),
        ("203.0.113.11", 3306),
        ("203.0.113.10", 80),
        ("203.0.113.10", 443),
    ] {
        for f in conversation(server, port, "198.51.100.1", 10, 10, now - 60_000) {
            e.apply(&f, now);
        }
    }
    Arc::new(e)
}

/// `exposure_unexpected_endpoints` by risk level 0..=3, from a scrape.
fn unexpected(metrics: &Metrics) -> [u64; 4] {
    let text = metrics.render();
    std::array::from_fn(|level| {
        let prefix = format!("exposure_unexpected_endpoints{{risk_level=\"{level}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
            .parse()
            .unwrap()
    })
}

#[test]
fn without_a_list_every_endpoint_open_in_the_last_day_is_unexpected_by_risk_level() {
    let metrics = Metrics::new(four_endpoints());
    assert_eq!(unexpected(&metrics), [1, 1, 0, 2]);
}

#[test]
fn with_a_list_the_endpoints_an_unexpired_entry_covers_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("expected.toml");
    std::fs::write(
        &path,
        r#"
[[expected]]
ip = "203.0.113.10"
port = 3306
protocol = "tcp"

[[expected]]
ip = "203.0.113.11"
port = 3306
expires = 2020-01-01

[[expected]]
ip = "203.0.113.0/24"
port = "79-80"
"#,
    )
    .unwrap();
    let watched = Arc::new(Watched::load(&path).unwrap());
    let metrics = Metrics::watching(four_endpoints(), watched, MetricsOptions::default());
    // MySQL on .11 stays: its entry expired. HTTPS is on no entry's port.
    assert_eq!(unexpected(&metrics), [1, 0, 0, 1]);
}
