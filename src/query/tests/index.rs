//! The port index against the walk it replaces: for any flows, clock
//! moves, label changes and expiry, `DescribeInternetOpenPort` read from
//! the index equals the answer computed by walking every endpoint.

use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::query::port::{
    describe_internet_open_port_by_index, describe_internet_open_port_by_scan,
};

/// One step of a property run.
#[derive(Clone, Debug)]
enum Op {
    Apply(Flow),
    /// The wall clock moves this many minutes forward.
    Advance(u32),
    Maintain,
    /// Both answers compared for the last 1, 7 and 30 days.
    Compare,
}

fn wall_engine() -> Engine {
    engine_with(settings(Clock::Wall))
}

/// Every row of both answers for the range that is the last `days` days at
/// `now` (widened to hours, as the default range is).
fn both_answers(e: &Engine, now: i64, days: i64) -> (PortResponse, PortResponse) {
    let q = PortQuery {
        start_time: Some(now / 1000 - days * 86_400),
        end_time: Some(now / 1000 + 1),
        page_size: 1000,
        ..PortQuery::default()
    };
    (
        describe_internet_open_port_by_index(e, &q, now)
            .expect("the index answers a recent window"),
        describe_internet_open_port_by_scan(e, &q, now),
    )
}

/// Asserts both answers agree for the last 1, 7 and 30 days; returns the
/// rows of the last 30 days.
fn assert_index_agrees(e: &Engine, now: i64) -> usize {
    let mut rows = 0;
    for days in [1, 7, 30] {
        let (index, scan) = both_answers(e, now, days);
        assert_eq!(index.page_info, scan.page_info, "last {days} days");
        assert_eq!(index.data_list, scan.data_list, "last {days} days");
        rows = index.data_list.len();
    }
    rows
}

/// Flows over 40 days before a moving "now", between a few servers and
/// peers, with and without labels (a label can change the service).
fn arb_ops() -> impl Strategy<Value = Vec<Op>> {
    let asset = prop_oneof![Just("203.0.113.10"), Just("203.0.113.11")];
    let peer = prop_oneof![Just("198.51.100.1"), Just("198.51.100.2")];
    let port = prop_oneof![Just(22u16), Just(80), Just(6379), Just(40000)];
    let flags = prop_oneof![Just(SYN), Just(SYN | ACK), Just(ACK | PSH), Just(RST | ACK)];
    let label = prop_oneof![
        4 => Just(None),
        1 => Just(Some("redis")),
        1 => Just(Some("http")),
        1 => Just(Some("custom-rpc")),
    ];
    let one = (
        asset,
        peer,
        port,
        flags,
        any::<bool>(),
        label,
        1u64..5000,
        0i64..40 * 24,
    );
    let op = prop_oneof![
        8 => one.prop_map(|(a, p, port, flags, outbound, label, bytes, hours_back)| {
            // The time is relative to "now"; it is fixed when applied.
            let mut f = if outbound {
                flow(a, port, p, CLIENT_PORT, PROTO_TCP, flags, bytes, -hours_back * HOUR)
            } else {
                flow(p, CLIENT_PORT, a, port, PROTO_TCP, flags, bytes, -hours_back * HOUR)
            };
            f.label = label.map(Box::from);
            Op::Apply(f)
        }),
        2 => (0u32..3000).prop_map(Op::Advance),
        1 => Just(Op::Maintain),
        2 => Just(Op::Compare),
    ];
    prop::collection::vec(op, 1..80)
}

proptest! {
    #[test]
    fn the_index_answers_as_the_walk_does(ops in arb_ops()) {
        let e = wall_engine();
        let mut now = T0 + 40 * DAY;
        // A first query makes the engine keep the index from here on.
        assert_index_agrees(&e, now);
        for op in ops {
            match op {
                Op::Apply(mut f) => {
                    f.time_ms += now;
                    e.apply(&f, now);
                }
                Op::Advance(minutes) => now += i64::from(minutes) * 60_000,
                Op::Maintain => e.maintain(now),
                Op::Compare => {
                    assert_index_agrees(&e, now);
                }
            }
        }
        assert_index_agrees(&e, now);
    }
}

#[test]
fn a_range_that_is_not_a_recent_window_walks_the_state() {
    let e = wall_engine();
    let now = T0 + 40 * DAY;
    for f in conversation("203.0.113.10", 22, "198.51.100.1", 100, 200, now - 3 * DAY) {
        e.apply(&f, now);
    }
    let q = PortQuery {
        start_time: Some((now - 4 * DAY) / 1000),
        end_time: Some((now - 2 * DAY) / 1000),
        ..PortQuery::default()
    };
    let answer = describe_internet_open_port(&e, &q, now, "ID".into());
    assert_eq!(answer.data_list.len(), 1);
    assert_eq!(answer.data_list[0].total_bytes, 300);
    assert!(describe_internet_open_port_by_index(&e, &q, now).is_none());
    assert_eq!(
        answer.data_list,
        describe_internet_open_port_by_scan(&e, &q, now).data_list
    );
}

/// Two threads apply flows while the index is moved hour by hour under
/// them; once they stop, the index holds exactly what the walk computes.
#[test]
fn concurrent_ingest_and_refreshes_leave_the_index_exact() {
    let e = Arc::new(wall_engine());
    let start = T0 + 40 * DAY;
    let end = start + 6 * HOUR;
    assert_index_agrees(&e, start);
    std::thread::scope(|s| {
        for thread in 0..2u64 {
            let e = e.clone();
            s.spawn(move || {
                let mut now = start;
                let mut i = 0u64;
                while now < end {
                    let server = format!("203.0.113.{}", 10 + i % 50);
                    let client = format!("198.51.100.{}", 1 + (i + thread) % 7);
                    let port = [22, 80, 443, 6379, 40000][(i % 5) as usize];
                    let back = ((i * 7919) % (40 * 24)) as i64 * HOUR;
                    let mut pair = conversation(&server, port, &client, 10 + i, 20 + i, now - back);
                    if i.is_multiple_of(11) {
                        pair[1].label =
                            Some(["redis", "ssh", "custom-rpc"][(i % 3) as usize].into());
                    }
                    for f in &pair {
                        e.apply(f, now);
                    }
                    i += 1;
                    now += 60_000 / 4;
                }
            });
        }
        let mut now = start;
        while now < end {
            e.refresh_port_index(crate::state::hour_of(now));
            now += HOUR / 2;
            std::thread::yield_now();
        }
    });
    // 5 ports, each open on some of the 50 servers.
    assert_eq!(assert_index_agrees(&e, end), 5);
}
