use std::collections::BTreeMap;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::config::Clock;
use crate::flow::tcp_flags::{ACK, PSH, SYN};
use crate::flow::{Flow, PROTO_TCP, PROTO_UDP};
use crate::query::TimeWindows;
use crate::state::checkpoint;
use crate::testkit::{self, HOUR, T0};

/// (port, protocol, label) -> (endpoints, TotalBytes) open in the last day.
type ByLabel = BTreeMap<(u16, &'static str, Option<String>), (u64, u64)>;

/// What the summary must say, found the slow way: one walk of every
/// endpoint, tallying its series over the last day.
fn walked(engine: &Engine, wall_now_ms: i64) -> (Summary, ByLabel) {
    let now_ms = engine.now_ms(wall_now_ms);
    let res = engine.resolution(now_ms);
    let last_day = [TimeWindows::new(now_ms, None, None).last_1d];
    let mut open_slots = std::collections::BTreeSet::new();
    let mut by_label = ByLabel::new();
    let mut last_day_bytes = 0;
    engine.for_each(|endpoint, state| {
        if !state.ever_open {
            return;
        }
        open_slots.insert((endpoint.port, endpoint.proto.as_str()));
        let [day] = state.series.tally(&last_day, res);
        if !day.open {
            return;
        }
        let key = (
            endpoint.port,
            endpoint.proto.as_str(),
            state.label.as_deref().map(str::to_owned),
        );
        let sum = by_label.entry(key).or_default();
        sum.0 += 1;
        sum.1 += day.total_bytes();
        last_day_bytes += day.total_bytes();
    });
    let count = |proto: &str| open_slots.iter().filter(|(_, p)| *p == proto).count() as u64;
    let summary = Summary {
        open_ports: [count("tcp"), count("udp")],
        last_day: Vec::new(),
        last_day_bytes,
    };
    (summary, by_label)
}

/// The summary's last-day shares keyed as [`walked`] keys them.
fn by_label(summary: &Summary) -> ByLabel {
    summary
        .last_day
        .iter()
        .map(|s| {
            let key = (
                s.port,
                s.proto.as_str(),
                s.label.as_deref().map(str::to_owned),
            );
            (key, (s.endpoints, s.total_bytes))
        })
        .collect()
}

fn assert_matches_walk(engine: &Engine, wall_now_ms: i64, when: &str) {
    let summary = engine.summary(wall_now_ms);
    let (expected, expected_by_label) = walked(engine, wall_now_ms);
    assert_eq!(summary.open_ports, expected.open_ports, "open ports {when}");
    assert_eq!(
        summary.last_day_bytes, expected.last_day_bytes,
        "last day's bytes {when}"
    );
    assert_eq!(
        by_label(&summary),
        expected_by_label,
        "last day by label {when}"
    );
    let mut walked_bytes = 0;
    engine.for_each(|_, state| walked_bytes += state.approx_bytes());
    assert_eq!(engine.state_bytes(), walked_bytes, "state bytes {when}");
}

/// Random traffic to a few servers: requests (pending until answered),
/// replies (response evidence), some with L7 labels, over three days.
fn random_flows(rng: &mut StdRng, n: usize, end_ms: i64) -> Vec<Flow> {
    const PORTS: [(u16, u8); 6] = [
        (22, PROTO_TCP),
        (80, PROTO_TCP),
        (443, PROTO_TCP),
        (3306, PROTO_TCP),
        (8080, PROTO_TCP),
        (53, PROTO_UDP),
    ];
    const LABELS: [Option<&str>; 4] = [None, None, Some("http"), Some("ssh")];
    (0..n)
        .map(|_| {
            let server = format!("203.0.113.{}", rng.gen_range(1..40));
            let client = format!("198.51.100.{}", rng.gen_range(1..200));
            let (port, proto) = PORTS[rng.gen_range(0..PORTS.len())];
            let time_ms = end_ms - rng.gen_range(0..72 * HOUR);
            let bytes = rng.gen_range(40..5000);
            let (src, sport, dst, dport) = if rng.gen_bool(0.5) {
                (&client, 61000, &server, port)
            } else {
                (&server, port, &client, 61000)
            };
            Flow {
                proto,
                tcp_flags: SYN | ACK | PSH,
                bytes,
                time_ms,
                label: LABELS[rng.gen_range(0..LABELS.len())].map(Into::into),
                ..testkit::flow(src, sport, dst, dport)
            }
        })
        .collect()
}

#[test]
fn the_summary_equals_a_walk_of_the_state_as_flows_arrive_and_expire() {
    let mut settings = testkit::settings();
    settings.retention_days = 2;
    let engine = testkit::engine_with(settings);
    let mut rng = StdRng::seed_from_u64(7);
    let now = T0 + 48 * HOUR;

    // Before the index is kept, then with it (the first summary starts it).
    for flow in random_flows(&mut rng, 400, now) {
        engine.apply(&flow, now);
    }
    assert_matches_walk(&engine, now, "before the index was kept");
    for flow in random_flows(&mut rng, 800, now) {
        engine.apply(&flow, now);
    }
    assert_matches_walk(&engine, now, "as flows arrived");

    // The hours move on: windows move, old hours expire and their endpoints go.
    let later = now + 30 * HOUR;
    engine.maintain(later);
    assert_matches_walk(&engine, later, "after a day passed");
    for flow in random_flows(&mut rng, 300, later) {
        engine.apply(&flow, later);
    }
    assert_matches_walk(&engine, later, "after more flows");
    engine.maintain(later + 72 * HOUR);
    assert_matches_walk(&engine, later + 72 * HOUR, "after everything expired");
    assert_eq!(engine.summary(later + 72 * HOUR), Summary::default());
}

#[test]
fn a_restored_engine_has_the_same_summary() {
    let engine = testkit::engine();
    let mut rng = StdRng::seed_from_u64(11);
    for flow in random_flows(&mut rng, 500, T0) {
        engine.apply(&flow, T0);
    }
    let bytes = checkpoint::encode(&engine, &[], T0);
    let restored = testkit::engine();
    restored.restore(checkpoint::decode(Path::new("test"), &bytes).expect("decodes"));
    let (summary, before) = (restored.summary(T0), engine.summary(T0));
    assert_eq!(summary.open_ports, before.open_ports);
    assert_eq!(summary.last_day_bytes, before.last_day_bytes);
    // The order of the labels within a port may differ; the shares may not.
    assert_eq!(by_label(&summary), by_label(&before));
    // The state's bytes are its own (restored series hold no spare
    // capacity), and still those a walk finds.
    assert_matches_walk(&restored, T0, "after a restore");
}

#[test]
fn the_event_clock_reads_the_day_before_the_latest_flow() {
    let mut settings = testkit::settings();
    settings.clock = Clock::Event;
    let engine = testkit::engine_with(settings);
    let mut rng = StdRng::seed_from_u64(3);
    for flow in random_flows(&mut rng, 300, T0) {
        engine.apply(&flow, T0 + 1000 * HOUR);
    }
    assert_matches_walk(&engine, T0 + 1000 * HOUR, "on the event clock");
    assert!(
        engine.summary(0).last_day_bytes > 0,
        "the wall clock is not read"
    );
}
