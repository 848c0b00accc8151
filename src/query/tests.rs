//! The engine and `DescribeInternetOpenPort` together: each rule of
//! `docs/semantics.md` and `docs/api.md#describeinternetopenport` as it
//! shows in the answer.

use proptest::prelude::*;

use super::*;
use crate::catalog::{Catalog, Lang};
use crate::config::Clock;
use crate::flow::tcp_flags::{ACK, PSH, RST, SYN};
use crate::flow::{Flow, PROTO_TCP, PROTO_UDP};
use crate::state::{Engine, Outcome, RejectReason, Settings};
use crate::testkit::{self, conversation, engine_with, CLIENT_PORT, DAY, HOUR, T0};

/// [`testkit::settings`] on `clock`, with room for 100,000 endpoints.
fn settings(clock: Clock) -> Settings {
    Settings {
        clock,
        max_endpoints: 100_000,
        max_pending: 100_000,
        ..testkit::settings()
    }
}

fn engine() -> Engine {
    engine_with(settings(Clock::Event))
}

/// A [`testkit::flow`] with its protocol, flags, bytes and time: the
/// generated flows' builder (`arb_flows` here, and `index`'s).
#[allow(clippy::too_many_arguments)]
fn flow(
    src: &str,
    sport: u16,
    dst: &str,
    dport: u16,
    proto: u8,
    tcp_flags: u16,
    bytes: u64,
    time_ms: i64,
) -> Flow {
    Flow {
        proto,
        tcp_flags,
        bytes,
        time_ms,
        ..testkit::flow(src, sport, dst, dport)
    }
}

fn apply_all(e: &Engine, flows: &[Flow]) {
    for f in flows {
        e.apply(f, T0 + 60 * DAY);
    }
}

fn query(e: &Engine, q: PortQuery) -> PortResponse {
    describe_internet_open_port(e, &q, T0 + 60 * DAY, "ID".into())
}

fn all_rows(e: &Engine) -> Vec<PortRow> {
    query(
        e,
        PortQuery {
            page_size: u32::MAX,
            ..PortQuery::default()
        },
    )
    .data_list
}

#[test]
fn open_port_row_counts_ips_and_bytes() {
    let e = engine();
    apply_all(
        &e,
        &conversation("203.0.113.10", 22, "198.51.100.1", 100, 1000, T0),
    );
    apply_all(
        &e,
        &conversation("203.0.113.11", 22, "198.51.100.2", 50, 500, T0),
    );
    let rows = all_rows(&e);
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(
        (r.port, r.protocol, r.public_ip_num, r.detail_num),
        (22, "tcp", 2, 2)
    );
    assert_eq!((r.in_bytes, r.out_bytes, r.total_bytes), (150, 1500, 1650));
    assert_eq!(r.service_name_list, vec!["SSH"]);
    assert!(r.unknown_reason.is_empty());
}

#[test]
fn port_answered_only_with_rst_is_not_open() {
    let e = engine();
    apply_all(
        &e,
        &[
            Flow {
                tcp_flags: SYN,
                bytes: 60,
                ..testkit::flow("198.51.100.1", 40000, "203.0.113.10", 23)
            },
            Flow {
                tcp_flags: RST | ACK,
                bytes: 40,
                ..testkit::flow("203.0.113.10", 23, "198.51.100.1", 40000)
            },
        ],
    );
    assert!(all_rows(&e).is_empty());
}

/// A scanner's SYN to `port` of 203.0.113.10, at T0.
fn scan_syn(port: u16) -> Flow {
    Flow {
        tcp_flags: SYN,
        bytes: 44,
        ..testkit::flow("198.51.100.66", 55555, "203.0.113.10", port)
    }
}

#[test]
fn syn_scan_without_replies_lists_nothing_but_counts_probes() {
    let e = engine();
    for port in 1..=1000u16 {
        e.apply(&scan_syn(port), T0);
    }
    assert!(all_rows(&e).is_empty());
    assert_eq!(e.probes(443, crate::catalog::Protocol::Tcp), 1);
    assert_eq!(e.pending_endpoints(), 1000);
    assert_eq!(e.open_endpoints(), 0);
}

#[test]
fn pending_endpoints_are_bounded() {
    let e = engine_with(Settings {
        max_pending: 10,
        ..settings(Clock::Event)
    });
    for port in 1..=100u16 {
        e.apply(&scan_syn(port), T0);
    }
    assert_eq!(e.pending_endpoints(), 10);
    assert_eq!(e.stats().snapshot().ignored.get("pending_limit"), Some(&90));
    assert_eq!(
        e.probes(100, crate::catalog::Protocol::Tcp),
        1,
        "dropped probes still count per port"
    );
    // A real server still shows up when it answers.
    apply_all(
        &e,
        &conversation("203.0.113.20", 443, "198.51.100.1", 10, 10, T0),
    );
    assert_eq!(all_rows(&e).len(), 1);
}

#[test]
fn endpoints_are_bounded_open_or_pending() {
    let e = engine_with(Settings {
        max_endpoints: 3,
        ..settings(Clock::Event)
    });
    // Two servers answer, one port is scanned: three endpoints held.
    for (address, port) in [("203.0.113.20", 443), ("203.0.113.21", 8443)] {
        apply_all(&e, &conversation(address, port, "198.51.100.1", 10, 10, T0));
    }
    e.apply(&scan_syn(22), T0);
    assert_eq!((e.open_endpoints(), e.pending_endpoints()), (2, 1));
    // Beyond the bound nothing new is held, open or pending: counted as probes only.
    e.apply(&scan_syn(23), T0);
    apply_all(
        &e,
        &conversation("203.0.113.22", 9443, "198.51.100.1", 10, 10, T0),
    );
    assert_eq!((e.open_endpoints(), e.pending_endpoints()), (2, 1));
    assert_eq!(e.stats().snapshot().ignored.get("endpoint_limit"), Some(&3));
    assert_eq!(e.probes(23, crate::catalog::Protocol::Tcp), 1);
    assert_eq!(all_rows(&e).len(), 2);
    // Endpoints already held still take their flows.
    e.apply(&scan_syn(22), T0);
    assert_eq!(e.probes(22, crate::catalog::Protocol::Tcp), 2);
    apply_all(
        &e,
        &conversation("203.0.113.20", 443, "198.51.100.2", 10, 10, T0),
    );
    assert_eq!(all_rows(&e).len(), 2);
    assert_eq!(e.stats().snapshot().ignored.get("endpoint_limit"), Some(&3));
}

#[test]
fn inbound_bytes_before_the_first_reply_count() {
    let e = engine();
    let [request, reply] = conversation("203.0.113.10", 443, "198.51.100.1", 300, 700, T0);
    e.apply(&request, T0);
    assert!(all_rows(&e).is_empty(), "no reply yet: pending, not open");
    e.apply(&reply, T0);
    assert_eq!(all_rows(&e)[0].in_bytes, 300);
}

#[test]
fn asset_browsing_out_is_never_listed() {
    let e = engine();
    apply_all(
        &e,
        &[
            Flow {
                tcp_flags: SYN | ACK,
                bytes: 500,
                ..testkit::flow("203.0.113.10", 50123, "198.51.100.9", 443)
            },
            Flow {
                tcp_flags: SYN | ACK,
                bytes: 5000,
                ..testkit::flow("198.51.100.9", 443, "203.0.113.10", 50123)
            },
        ],
    );
    assert!(all_rows(&e).is_empty());
    assert_eq!(
        e.stats().snapshot().ignored.get("asset_is_client"),
        Some(&2)
    );
}

#[test]
fn internal_traffic_is_ignored() {
    let e = engine();
    apply_all(
        &e,
        &[
            Flow {
                tcp_flags: SYN,
                bytes: 60,
                ..testkit::flow("10.0.0.5", 40000, "203.0.113.10", 3306)
            },
            Flow {
                tcp_flags: SYN | ACK,
                bytes: 60,
                ..testkit::flow("203.0.113.10", 3306, "10.0.0.5", 40000)
            },
        ],
    );
    assert!(all_rows(&e).is_empty());
    assert_eq!(e.stats().snapshot().ignored.get("not_internet"), Some(&2));
}

#[test]
fn rows_are_ordered_by_risk_then_bytes_then_port_then_protocol() {
    let e = engine();
    apply_all(
        &e,
        &conversation("203.0.113.10", 443, "198.51.100.1", 10, 10_000, T0),
    ); // HTTPS, low risk, many bytes
    apply_all(
        &e,
        &conversation("203.0.113.10", 3389, "198.51.100.1", 10, 10, T0),
    ); // RDP, high risk
    apply_all(
        &e,
        &conversation("203.0.113.10", 6379, "198.51.100.1", 10, 100, T0),
    ); // Redis, high risk, more bytes
    apply_all(
        &e,
        &conversation("203.0.113.10", 40001, "198.51.100.1", 10, 10, T0),
    ); // unknown
    apply_all(
        &e,
        &conversation("203.0.113.10", 40000, "198.51.100.1", 10, 10, T0),
    ); // unknown, same bytes, lower port
    let rows = all_rows(&e);
    let ports: Vec<u16> = rows.iter().map(|r| r.port).collect();
    assert_eq!(ports, vec![6379, 3389, 40000, 40001, 443], "{rows:#?}");
    assert!(rows.windows(2).all(|w| w[0].risk_level >= w[1].risk_level));
}

#[test]
fn same_port_orders_tcp_before_udp() {
    let e = engine();
    apply_all(
        &e,
        &conversation("203.0.113.10", 5000, "198.51.100.1", 10, 10, T0),
    );
    apply_all(
        &e,
        &[
            Flow {
                proto: PROTO_UDP,
                bytes: 10,
                ..testkit::flow("198.51.100.1", 40000, "203.0.113.10", 5000)
            },
            Flow {
                proto: PROTO_UDP,
                bytes: 10,
                ..testkit::flow("203.0.113.10", 5000, "198.51.100.1", 40000)
            },
        ],
    );
    let rows = all_rows(&e);
    let keys: Vec<(u16, &str)> = rows.iter().map(|r| (r.port, r.protocol)).collect();
    assert_eq!(keys, vec![(5000, "tcp"), (5000, "udp")]);
}

#[test]
fn unknown_service_without_payload_is_no_payload() {
    let e = engine();
    apply_all(
        &e,
        &conversation("203.0.113.10", 40000, "198.51.100.1", 60, 40, T0),
    );
    apply_all(
        &e,
        &conversation("203.0.113.10", 40001, "198.51.100.1", 60, 1400, T0),
    );
    let rows = all_rows(&e);
    let by_port = |p: u16| rows.iter().find(|r| r.port == p).unwrap();
    assert_eq!(by_port(40000).service_name_list, vec!["Unknown"]);
    assert_eq!(by_port(40000).unknown_reason, vec!["no_payload"]);
    assert_eq!(by_port(40001).unknown_reason, vec!["unknown_strict"]);
    assert_eq!(
        (by_port(40000).risk_level, by_port(40000).suggest_level),
        (1, 20)
    );
}

#[test]
fn collector_label_names_the_service() {
    let e = engine();
    let [mut a, mut b] = conversation("203.0.113.10", 8443, "198.51.100.1", 100, 100, T0);
    a.label = Some("ssh".into());
    b.label = Some("ssh".into());
    apply_all(&e, &[a, b]);
    let rows = all_rows(&e);
    assert_eq!(
        rows[0].service_name_list,
        vec!["SSH"],
        "the catalog's name for a known label"
    );
    let ssh = Catalog::builtin();
    let ssh = ssh.get(ssh.service_by_name("SSH").unwrap());
    assert_eq!(rows[0].risk_level, ssh.risk_level);
}

#[test]
fn row_risk_is_the_highest_of_its_services() {
    let e = engine();
    // Port 8080 on two hosts: one labelled as plain HTTP, one as Redis.
    let [mut a, mut b] = conversation("203.0.113.10", 8080, "198.51.100.1", 100, 100, T0);
    a.label = Some("Redis".into());
    b.label = Some("Redis".into());
    apply_all(&e, &[a, b]);
    apply_all(
        &e,
        &conversation("203.0.113.11", 8080, "198.51.100.1", 100, 100, T0),
    );
    let row = &all_rows(&e)[0];
    assert_eq!(row.service_name_list.len(), 2);
    assert!(row.service_name_list.contains(&"Redis".to_owned()));
    assert_eq!(row.risk_level, 3);
}

#[test]
fn lang_selects_the_texts() {
    let e = engine();
    apply_all(
        &e,
        &conversation("203.0.113.10", 3389, "198.51.100.1", 10, 10, T0),
    );
    let zh = query(&e, PortQuery::default()).data_list.remove(0);
    let en = query(
        &e,
        PortQuery {
            lang: Lang::En,
            ..PortQuery::default()
        },
    )
    .data_list
    .remove(0);
    assert_ne!(zh.prob_risk, en.prob_risk);
    assert!(en.prob_risk.is_ascii());
    assert!(!zh.prob_risk.is_ascii());
}

#[test]
fn filters_combine_with_and() {
    let e = engine();
    apply_all(
        &e,
        &conversation("203.0.113.10", 3389, "198.51.100.1", 10, 10, T0),
    );
    apply_all(
        &e,
        &conversation("203.0.113.10", 445, "198.51.100.1", 10, 10, T0),
    );
    apply_all(
        &e,
        &conversation("203.0.113.10", 443, "198.51.100.1", 10, 10, T0),
    );
    let count = |q: PortQuery| query(&e, q).page_info.total_count;
    assert_eq!(
        count(PortQuery {
            port: Some(445),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        count(PortQuery {
            service_name: Some("smb".into()),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        count(PortQuery {
            service_name: Some("SM".into()),
            ..Default::default()
        }),
        0,
        "exact match only"
    );
    assert_eq!(
        count(PortQuery {
            service_name_fuzzy: Some("s".into()),
            ..Default::default()
        }),
        2,
        "SMB and HTTPS"
    );
    assert_eq!(
        count(PortQuery {
            risk_level: Some(3),
            ..Default::default()
        }),
        2
    );
    assert_eq!(
        count(PortQuery {
            risk_level: Some(3),
            port: Some(443),
            ..Default::default()
        }),
        0
    );
    let deny = count(PortQuery {
        suggest_level: Some(30),
        ..Default::default()
    });
    assert_eq!(deny, 2, "RDP and SMB are 'deny'");
}

#[test]
fn traffic_percent_is_over_all_open_endpoints_and_ignores_the_range() {
    let e = engine();
    // Now is T0 + 10 days (the latest flow). Port 22: 700 bytes today;
    // port 443: 300 bytes today and 9000 bytes 5 days ago.
    let now = T0 + 10 * DAY;
    apply_all(
        &e,
        &conversation("203.0.113.10", 22, "198.51.100.1", 0, 700, now),
    );
    apply_all(
        &e,
        &conversation("203.0.113.10", 443, "198.51.100.1", 0, 300, now - HOUR),
    );
    apply_all(
        &e,
        &conversation("203.0.113.10", 443, "198.51.100.1", 0, 9000, now - 5 * DAY),
    );
    let q = PortQuery {
        start_time: Some((now - HOUR) / 1000),
        end_time: Some(now / 1000 + 1),
        ..PortQuery::default()
    };
    let rows = query(&e, q).data_list;
    let by_port = |p: u16| rows.iter().find(|r| r.port == p).unwrap();
    assert_eq!(by_port(22).traffic_percent_1_day, "70");
    assert_eq!(by_port(443).traffic_percent_1_day, "30");
    assert_eq!(by_port(22).traffic_percent_7_day, "7");
    assert_eq!(by_port(443).traffic_percent_7_day, "93");
    assert_eq!(
        by_port(443).total_bytes,
        300,
        "the range holds only today's bytes"
    );
}

#[test]
fn percent_rounds_to_one_decimal_without_trailing_zero() {
    assert_eq!(percent(1, 9), "11.1");
    assert_eq!(percent(77, 100), "77");
    assert_eq!(percent(0, 100), "0");
    assert_eq!(percent(0, 0), "0");
    assert_eq!(percent(2, 3), "66.7");
    assert_eq!(percent(1, 2000), "0.1", "0.05 rounds half up");
    assert_eq!(percent(u64::MAX, u64::MAX), "100");
}

#[test]
fn default_range_is_the_last_seven_days_including_now() {
    let e = engine();
    let now = T0 + 20 * DAY;
    apply_all(
        &e,
        &conversation("203.0.113.10", 22, "198.51.100.1", 1, 1, now),
    );
    apply_all(
        &e,
        &conversation("203.0.113.10", 443, "198.51.100.1", 1, 1, now - 8 * DAY),
    );
    let rows = all_rows(&e);
    assert_eq!(rows.iter().map(|r| r.port).collect::<Vec<_>>(), vec![22]);
}

#[test]
fn explicit_range_covers_every_bucket_it_overlaps() {
    let e = engine();
    let now = T0 + 20 * DAY;
    apply_all(
        &e,
        &conversation("203.0.113.10", 22, "198.51.100.1", 1, 1, now - 30 * 60_000),
    );
    // One second inside the hour of the flow is enough.
    let hour_start = (now - HOUR) / 1000;
    let q = |start: i64, end: i64| PortQuery {
        start_time: Some(start),
        end_time: Some(end),
        ..PortQuery::default()
    };
    assert_eq!(
        query(&e, q(hour_start + 3599, hour_start + 3600))
            .page_info
            .total_count,
        1
    );
    assert_eq!(
        query(&e, q(hour_start - 10, hour_start))
            .page_info
            .total_count,
        0,
        "end is exclusive"
    );
}

#[test]
fn data_older_than_48_hours_reads_at_day_resolution() {
    let e = engine();
    let now = T0 + 20 * DAY;
    apply_all(
        &e,
        &conversation("203.0.113.10", 22, "198.51.100.1", 1, 1, now),
    );
    apply_all(
        &e,
        &conversation(
            "203.0.113.10",
            443,
            "198.51.100.1",
            1,
            1,
            T0 + 10 * DAY + 2 * HOUR,
        ),
    );
    // A range covering only hour 20 of that day still finds the flow of hour 2.
    let start = (T0 + 10 * DAY + 20 * HOUR) / 1000;
    let q = PortQuery {
        start_time: Some(start),
        end_time: Some(start + 3600),
        ..PortQuery::default()
    };
    assert_eq!(query(&e, q).data_list[0].port, 443);
}

#[test]
fn event_clock_follows_the_latest_flow() {
    let e = engine();
    let t = T0 + 3 * DAY + 5 * HOUR;
    apply_all(
        &e,
        &conversation("203.0.113.10", 22, "198.51.100.1", 1, 1, t),
    );
    assert_eq!(e.now_ms(T0 + 60 * DAY), t);
}

#[test]
fn flows_older_than_retention_are_rejected() {
    let e = engine();
    e.apply(
        &conversation("203.0.113.10", 22, "198.51.100.1", 1, 1, T0 + 40 * DAY)[0],
        T0 + 60 * DAY,
    );
    let old = conversation(
        "203.0.113.10",
        22,
        "198.51.100.1",
        1,
        1,
        T0 + 40 * DAY - 31 * DAY,
    )[0]
    .clone();
    assert_eq!(
        e.apply(&old, T0 + 60 * DAY),
        Outcome::Rejected(RejectReason::TooOld)
    );
}

#[test]
fn future_flows_are_rejected_and_do_not_move_the_clock() {
    let e = engine();
    let wall = T0;
    let far = conversation("203.0.113.10", 22, "198.51.100.1", 1, 1, wall + 10 * 60_000)[0].clone();
    assert_eq!(e.apply(&far, wall), Outcome::Rejected(RejectReason::Future));
    let near = conversation("203.0.113.10", 22, "198.51.100.1", 1, 1, wall + 60_000)[0].clone();
    assert_eq!(e.apply(&near, wall), Outcome::Applied);
    assert_eq!(e.now_ms(wall), wall + 60_000);
}

#[test]
fn wall_clock_rejects_flows_older_than_retention_before_the_wall_clock() {
    let e = engine_with(settings(Clock::Wall));
    let wall = T0 + 60 * DAY;
    let old = conversation("203.0.113.10", 22, "198.51.100.1", 1, 1, wall - 31 * DAY)[0].clone();
    assert_eq!(e.apply(&old, wall), Outcome::Rejected(RejectReason::TooOld));
    assert_eq!(e.now_ms(wall), wall);
}

#[test]
fn maintenance_changes_no_answer() {
    let e = engine();
    for d in 0..20 {
        apply_all(
            &e,
            &conversation(
                "203.0.113.10",
                22,
                "198.51.100.1",
                d,
                2 * d,
                T0 + d as i64 * DAY + 3 * HOUR,
            ),
        );
    }
    let before = all_rows(&e);
    e.maintain(T0 + 60 * DAY);
    assert_eq!(all_rows(&e), before);
}

#[test]
fn pages_are_cut_from_the_ordered_list() {
    let e = engine();
    for port in 40000..40025u16 {
        apply_all(
            &e,
            &conversation("203.0.113.10", port, "198.51.100.1", 1, 1, T0),
        );
    }
    let page = |n: u32| {
        query(
            &e,
            PortQuery {
                current_page: n,
                page_size: 10,
                ..Default::default()
            },
        )
    };
    assert_eq!(page(3).data_list.len(), 5);
    assert_eq!(page(3).page_info.total_count, 25);
    assert_eq!(
        page(4).data_list.len(),
        0,
        "past the end is an empty page, not an error"
    );
    assert_eq!(page(1).data_list[0].port, 40000);
}

#[test]
fn request_ids_have_alibaba_shape() {
    let id = new_request_id();
    assert_eq!(id.len(), 36);
    assert_eq!(id.matches('-').count(), 4);
    assert_ne!(id, new_request_id());
}

/// A small world for property tests: a few servers, clients, scans and noise.
fn arb_flows() -> impl Strategy<Value = Vec<Flow>> {
    let asset = prop_oneof![
        Just("203.0.113.10"),
        Just("203.0.113.11"),
        Just("2001:db8:100::5")
    ];
    let peer = prop_oneof![
        Just("198.51.100.1"),
        Just("198.51.100.2"),
        Just("2001:db8::9"),
        Just("10.0.0.1")
    ];
    let port = prop_oneof![
        Just(22u16),
        Just(80),
        Just(443),
        Just(3389),
        Just(40000),
        Just(50000)
    ];
    let flags = prop_oneof![
        Just(0u16),
        Just(SYN),
        Just(SYN | ACK),
        Just(ACK),
        Just(RST | ACK)
    ];
    let one = (
        asset,
        peer,
        port,
        30000u16..60000,
        flags,
        any::<bool>(),
        any::<bool>(),
        1u64..5000,
        0i64..(10 * DAY),
    );
    prop::collection::vec(
        one.prop_map(|(a, p, aport, pport, flags, outbound, udp, bytes, dt)| {
            let proto = if udp { PROTO_UDP } else { PROTO_TCP };
            let t = T0 + dt;
            let same_family = a.contains(':') == p.contains(':');
            let (a, p) = if same_family {
                (a, p)
            } else {
                ("203.0.113.12", "198.51.100.3")
            };
            if outbound {
                flow(a, aport, p, pport, proto, flags, bytes, t)
            } else {
                flow(p, pport, a, aport, proto, flags, bytes, t)
            }
        }),
        1..120,
    )
}

fn answer(flows: &[Flow], page_size: u32, page: u32) -> PortResponse {
    let e = engine();
    apply_all(&e, flows);
    let q = PortQuery {
        start_time: Some(T0 / 1000),
        end_time: Some((T0 + 11 * DAY) / 1000),
        page_size,
        current_page: page,
        ..PortQuery::default()
    };
    describe_internet_open_port(&e, &q, T0 + 60 * DAY, "ID".into())
}

proptest! {
    #[test]
    fn shuffling_the_input_does_not_change_the_answer(flows in arb_flows(), seed in any::<u64>()) {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let mut shuffled = flows.clone();
        shuffled.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        prop_assert_eq!(answer(&flows, 1000, 1).data_list, answer(&shuffled, 1000, 1).data_list);
    }

    #[test]
    fn pages_concatenated_equal_the_unpaged_list(flows in arb_flows(), size in 1u32..7) {
        let all = answer(&flows, 1000, 1).data_list;
        let mut joined = Vec::new();
        for page in 1.. {
            let part = answer(&flows, size, page).data_list;
            if part.is_empty() { break; }
            joined.extend(part);
        }
        prop_assert_eq!(joined, all);
    }

    #[test]
    fn byte_totals_equal_the_bytes_of_qualifying_flows(flows in arb_flows()) {
        // Expected, computed independently: flows of endpoints with response
        // evidence, classified by hand for this small world.
        let e = engine();
        apply_all(&e, &flows);
        let catalog = Catalog::builtin();
        let classifier = testkit::classifier(&[]);
        let mut by_endpoint: std::collections::HashMap<crate::classify::Endpoint, (u64, bool)> = Default::default();
        for f in &flows {
            match classifier.classify(f, &catalog) {
                crate::classify::Verdict::Inbound(ep) => by_endpoint.entry(ep).or_default().0 += f.bytes,
                crate::classify::Verdict::Outbound { endpoint, evidence } => {
                    let entry = by_endpoint.entry(endpoint).or_default();
                    entry.0 += f.bytes;
                    entry.1 |= evidence;
                }
                crate::classify::Verdict::Ignored(_) => {}
            }
        }
        let expected: u64 = by_endpoint.values().filter(|(_, open)| *open).map(|(b, _)| b).sum();
        let rows = answer(&flows, 1000, 1).data_list;
        let total: u64 = rows.iter().map(|r| r.total_bytes).sum();
        prop_assert_eq!(total, expected);
        prop_assert!(rows.iter().all(|r| r.total_bytes == r.in_bytes + r.out_bytes));
    }
}

#[test]
fn new_exposures_are_counted_once_by_risk_level() {
    let e = engine();
    // Redis (risk 3) answers twice, HTTPS (risk 0) once, a refused port never.
    apply_all(
        &e,
        &conversation("203.0.113.10", 6379, "198.51.100.1", 10, 10, T0),
    );
    apply_all(
        &e,
        &conversation("203.0.113.10", 6379, "198.51.100.2", 10, 10, T0),
    );
    apply_all(
        &e,
        &conversation("203.0.113.11", 443, "198.51.100.1", 10, 10, T0),
    );
    apply_all(
        &e,
        &[
            Flow {
                tcp_flags: SYN,
                bytes: 60,
                ..testkit::flow("198.51.100.1", 61000, "203.0.113.12", 23)
            },
            Flow {
                tcp_flags: RST | ACK,
                bytes: 40,
                ..testkit::flow("203.0.113.12", 23, "198.51.100.1", 61000)
            },
        ],
    );
    assert_eq!(e.new_exposures(), [1, 0, 0, 1]);
}

mod family;
mod index;
mod threads;

#[test]
fn src_ip_cnt_estimates_distinct_peers_of_an_address() {
    let e = engine();
    // Five clients talk to SSH, three of them (and one more) to HTTPS: six
    // distinct peers of 203.0.113.10; repeats count once.
    for round in 0..3 {
        for c in 1..=5 {
            apply_all(
                &e,
                &conversation(
                    "203.0.113.10",
                    22,
                    &format!("198.51.100.{c}"),
                    10,
                    10,
                    T0 + round,
                ),
            );
        }
        for c in 3..=6 {
            apply_all(
                &e,
                &conversation(
                    "203.0.113.10",
                    443,
                    &format!("198.51.100.{c}"),
                    10,
                    10,
                    T0 + round,
                ),
            );
        }
    }
    let q = PortQuery {
        page_size: 100,
        ..PortQuery::default()
    };
    let ip = super::ip::describe_internet_open_ip(&e, &q, T0 + 60 * DAY, "ID".into());
    assert_eq!(ip.data_list.len(), 1);
    assert_eq!(ip.data_list[0].src_ip_cnt, 6);
}
