//! The sibling Actions: each rule of docs/api.md, and that every answer is
//! derived from the same endpoints as `DescribeInternetOpenPort`.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::changes::expected::Expected;

/// Every row of `action` over the property tests' range, nothing expected.
fn all(e: &Engine, q: Query, action: Action) -> Answer {
    all_expecting(e, &Expected::empty(), q, action)
}

/// [`all`] with `expected` as the list of expected exposures.
fn all_expecting(e: &Engine, expected: &Expected, q: Query, action: Action) -> Answer {
    let q = Query {
        start_time: Some(T0 / 1000),
        end_time: Some((T0 + 11 * DAY) / 1000),
        page_size: u32::MAX,
        ..q
    };
    crate::query::answer(action, e, expected, &q, T0 + 60 * DAY, "ID".into())
}

fn ips(e: &Engine, q: Query) -> Vec<IpRow> {
    match all(e, q, Action::Ip) {
        Answer::Ip(r) => r.data_list,
        _ => unreachable!(),
    }
}

fn services(e: &Engine, q: Query) -> Vec<ServiceRow> {
    match all(e, q, Action::Service) {
        Answer::Service(r) => r.data_list,
        _ => unreachable!(),
    }
}

fn details(e: &Engine, q: Query) -> Vec<DetailRow> {
    match all(e, q, Action::Detail) {
        Answer::Detail(r) => r.data_list,
        _ => unreachable!(),
    }
}

fn ports(e: &Engine, q: Query) -> Vec<PortRow> {
    match all(e, q, Action::Port) {
        Answer::Port(r) => r.data_list,
        _ => unreachable!(),
    }
}

fn statistic(e: &Engine) -> StatisticResponse {
    statistic_expecting(e, "")
}

/// The Statistic answer with the expected list `toml` in use.
fn statistic_expecting(e: &Engine, toml: &str) -> StatisticResponse {
    let expected = Expected::parse(toml).expect("a valid expected list");
    match all_expecting(e, &expected, Query::default(), Action::Statistic) {
        Answer::Statistic(r) => r,
        _ => unreachable!(),
    }
}

/// Three rows: 443/tcp on two addresses, 22/tcp and 53/udp on one.
fn three_rows() -> Engine {
    let e = engine();
    for (server, port) in [
        ("203.0.113.10", 443),
        ("203.0.113.11", 443),
        ("203.0.113.10", 22),
    ] {
        apply_all(&e, &conversation(server, port, "198.51.100.1", 10, 10, T0));
    }
    let dns = conversation("203.0.113.10", 53, "198.51.100.1", 10, 10, T0).map(|f| Flow {
        proto: PROTO_UDP,
        tcp_flags: 0,
        ..f
    });
    apply_all(&e, &dns);
    e
}

#[test]
fn without_a_list_every_open_port_is_unprotected() {
    let s = statistic(&three_rows());
    assert_eq!(s.internet_port_num, 3);
    assert_eq!(s.internet_unprotected_port_num, 3);
}

#[test]
fn an_entry_covering_every_endpoint_of_a_row_protects_that_row_only() {
    let e = three_rows();
    let s = statistic_expecting(
        &e,
        "[[expected]]\nip = \"203.0.113.0/24\"\nport = 443\nprotocol = \"tcp\"\n",
    );
    assert_eq!(
        (s.internet_port_num, s.internet_unprotected_port_num),
        (3, 2)
    );
    // An entry without a protocol covers UDP too.
    let s = statistic_expecting(
        &e,
        "[[expected]]\nip = \"203.0.113.10\"\nport = \"50-60\"\n",
    );
    assert_eq!(
        (s.internet_port_num, s.internet_unprotected_port_num),
        (3, 2)
    );
}

#[test]
fn an_entry_covering_one_of_two_endpoints_leaves_the_row_unprotected() {
    let s = statistic_expecting(
        &three_rows(),
        "[[expected]]\nip = \"203.0.113.10\"\nport = 443\n",
    );
    assert_eq!(
        (s.internet_port_num, s.internet_unprotected_port_num),
        (3, 3)
    );
}

#[test]
fn an_expired_entry_protects_nothing_and_an_unexpired_one_does() {
    let e = three_rows();
    let entry = |expires: &str| {
        format!("[[expected]]\nip = \"203.0.113.10\"\nport = 22\nexpires = {expires}\n")
    };
    // "Now" is the event clock's, the flows' T0 (2024-01-01).
    let s = statistic_expecting(&e, &entry("2023-12-31"));
    assert_eq!(s.internet_unprotected_port_num, 3);
    let s = statistic_expecting(&e, &entry("2024-01-01"));
    assert_eq!(s.internet_unprotected_port_num, 2);
}

#[test]
fn a_service_on_two_ports_of_one_address_counts_the_address_once() {
    let e = engine();
    apply_all(
        &e,
        &conversation("203.0.113.10", 22, "198.51.100.1", 10, 20, T0),
    );
    apply_all(
        &e,
        &conversation("203.0.113.10", 2222, "198.51.100.1", 30, 40, T0),
    );
    apply_all(
        &e,
        &conversation("203.0.113.11", 22, "198.51.100.1", 50, 60, T0),
    );
    let rows = services(&e, Query::default());
    assert_eq!(rows.len(), 1);
    let ssh = &rows[0];
    assert_eq!(ssh.service_name, "SSH");
    assert_eq!((ssh.public_ip_num, ssh.detail_num), (2, 3));
    assert_eq!(ssh.port_list, ["22", "2222"]);
    assert_eq!(ssh.total_bytes, 210);
    let ip = ips(&e, Query::default());
    let first = ip.iter().find(|r| r.public_ip == "203.0.113.10").unwrap();
    assert_eq!(first.port_list, ["22", "2222"]);
    assert_eq!(first.detail_num, 2);
}

#[test]
fn an_address_takes_its_risk_from_its_riskiest_endpoint() {
    let e = engine();
    apply_all(
        &e,
        &conversation("203.0.113.10", 443, "198.51.100.1", 10, 10_000, T0),
    );
    apply_all(
        &e,
        &conversation("203.0.113.10", 6379, "198.51.100.1", 10, 10, T0),
    );
    let rows = ips(
        &e,
        Query {
            lang: Lang::En,
            ..Query::default()
        },
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].risk_level, 3);
    assert!(
        rows[0].risk_reason.to_lowercase().contains("redis") || !rows[0].risk_reason.is_empty()
    );
    assert_eq!(rows[0].service_name_list, ["HTTPS", "Redis"]);
    // The filter sees the address's ports and services.
    let q = Query {
        port: Some(6379),
        ..Query::default()
    };
    assert_eq!(ips(&e, q).len(), 1);
    let q = Query {
        service_name: Some("https".into()),
        ..Query::default()
    };
    assert_eq!(ips(&e, q).len(), 1);
    let q = Query {
        risk_level: Some(0),
        ..Query::default()
    };
    assert!(ips(&e, q).is_empty(), "the row's RiskLevel is 3");
}

#[test]
fn detail_rows_are_endpoints_with_their_own_service_and_reason() {
    let e = engine();
    // An unknown port that carried payload, and one that only shook hands.
    apply_all(
        &e,
        &conversation("203.0.113.10", 40000, "198.51.100.1", 1000, 1000, T0),
    );
    apply_all(
        &e,
        &conversation("2001:db8:100::5", 40001, "2001:db8::9", 40, 40, T0),
    );
    let rows = details(&e, Query::default());
    let by_id: BTreeMap<&str, &DetailRow> = rows.iter().map(|r| (r.id.as_str(), r)).collect();
    let strict = by_id["203.0.113.10:40000/tcp"];
    assert_eq!(strict.unknown_reason, ["unknown_strict"]);
    assert_eq!(
        (strict.service_name.as_str(), strict.risk_level),
        ("Unknown", 1)
    );
    let v6 = by_id["[2001:db8:100::5]:40001/tcp"];
    assert_eq!(v6.public_ip, "2001:db8:100::5");
    assert_eq!(v6.unknown_reason, ["no_payload"]);
    let q = Query {
        public_ip: Some("2001:db8:100::5".parse().unwrap()),
        ..Query::default()
    };
    assert_eq!(details(&e, q).len(), 1);
}

#[test]
fn inventory_filters_and_in_assessment_match_no_row() {
    let e = engine();
    apply_all(
        &e,
        &conversation("203.0.113.10", 22, "198.51.100.1", 10, 10, T0),
    );
    assert_eq!(details(&e, Query::default()).len(), 1);
    let q = Query {
        inventory_filter: true,
        ..Query::default()
    };
    assert!(details(&e, q.clone()).is_empty());
    assert!(ips(&e, q).is_empty());
    let q = Query {
        risk_level: Some(-1),
        ..Query::default()
    };
    assert!(ports(&e, q).is_empty());
}

#[test]
fn total_reply_bytes_are_the_last_seven_days_whatever_the_range() {
    let e = engine();
    // Replies 20 days ago and 2 days ago ("now" is T0 + 60 days).
    let now = T0 + 60 * DAY;
    for (t, reply) in [(now - 20 * DAY, 1000), (now - 2 * DAY, 300)] {
        for f in conversation("203.0.113.10", 443, "198.51.100.1", 5, reply, t) {
            e.apply(&f, now);
        }
    }
    let q = Query {
        start_time: Some((now - 30 * DAY) / 1000),
        end_time: Some(now / 1000 + 1),
        page_size: 10,
        ..Query::default()
    };
    let row = describe_internet_open_ip(&e, &q, now, "ID".into())
        .data_list
        .remove(0);
    assert_eq!(row.out_bytes, 1300);
    assert_eq!(row.total_reply_bytes, 300);
}

#[test]
fn statistic_counts_high_risk_addresses_ports_and_services() {
    let e = engine();
    apply_all(
        &e,
        &conversation("203.0.113.10", 22, "198.51.100.1", 10, 10, T0),
    );
    apply_all(
        &e,
        &conversation("203.0.113.10", 445, "198.51.100.1", 10, 10, T0),
    );
    apply_all(
        &e,
        &conversation("203.0.113.11", 445, "198.51.100.1", 10, 10, T0),
    );
    apply_all(
        &e,
        &conversation("203.0.113.12", 443, "198.51.100.1", 10, 10, T0),
    );
    let s = statistic(&e);
    assert_eq!(
        (
            s.internet_ip_num,
            s.internet_port_num,
            s.internet_service_num
        ),
        (3, 3, 3)
    );
    assert_eq!(
        (
            s.internet_risk_ip_num,
            s.internet_risk_port_num,
            s.internet_risk_service_num
        ),
        (2, 1, 1),
        "SMB on two addresses"
    );
}

proptest! {
    #[test]
    fn every_sibling_is_derived_from_the_same_endpoints(flows in arb_flows()) {
        let e = engine();
        apply_all(&e, &flows);
        let port = ports(&e, Query::default());
        let ip = ips(&e, Query::default());
        let service = services(&e, Query::default());
        let detail = details(&e, Query::default());
        let stat = statistic(&e);

        let endpoints = detail.len() as u64;
        prop_assert_eq!(port.iter().map(|r| r.detail_num).sum::<u64>(), endpoints);
        prop_assert_eq!(ip.iter().map(|r| r.detail_num).sum::<u64>(), endpoints);
        prop_assert_eq!(service.iter().map(|r| r.detail_num).sum::<u64>(), endpoints);
        let bytes = |rows: &mut dyn Iterator<Item = (u64, u64)>| {
            rows.fold((0, 0), |(i, o), (a, b)| (i + a, o + b))
        };
        let want = bytes(&mut detail.iter().map(|r| (r.in_bytes, r.out_bytes)));
        prop_assert_eq!(bytes(&mut port.iter().map(|r| (r.in_bytes, r.out_bytes))), want);
        prop_assert_eq!(bytes(&mut ip.iter().map(|r| (r.in_bytes, r.out_bytes))), want);
        prop_assert_eq!(bytes(&mut service.iter().map(|r| (r.in_bytes, r.out_bytes))), want);

        prop_assert_eq!(stat.internet_ip_num, ip.len() as u64);
        prop_assert_eq!(stat.internet_port_num, port.len() as u64);
        prop_assert_eq!(stat.internet_unprotected_port_num, port.len() as u64);
        let names: BTreeSet<&str> = service.iter().map(|r| r.service_name.as_str()).collect();
        prop_assert_eq!(stat.internet_service_num, names.len() as u64);
        prop_assert_eq!(
            stat.internet_risk_ip_num,
            ip.iter().filter(|r| r.risk_level == 3).count() as u64
        );
        prop_assert_eq!(
            stat.internet_risk_port_num,
            port.iter().filter(|r| r.risk_level == 3).count() as u64
        );

        // Each address row lists exactly the ports of its detail rows.
        for row in &ip {
            let mut want: Vec<u16> = detail
                .iter()
                .filter(|d| d.public_ip == row.public_ip)
                .map(|d| d.port)
                .collect();
            want.sort_unstable();
            want.dedup();
            let got: Vec<u16> = row.port_list.iter().map(|p| p.parse().unwrap()).collect();
            prop_assert_eq!(got, want);
        }
        // Orders: RiskLevel desc, then TotalBytes desc.
        for rows in [
            ip.iter().map(|r| (r.risk_level, r.total_bytes)).collect::<Vec<_>>(),
            service.iter().map(|r| (r.risk_level, r.total_bytes)).collect(),
            detail.iter().map(|r| (r.risk_level, r.total_bytes)).collect(),
        ] {
            prop_assert!(rows.windows(2).all(|w| w[0] >= w[1]), "{:?}", rows);
        }
    }
}
