use std::sync::Arc;

use super::*;
use crate::catalog::{Catalog, Protocol};
use crate::changes::events::{Cover, Kind, Look};
use crate::changes::expected::Expected;
use crate::changes::watch::Watched;
use crate::classify::Endpoint;

/// 2025-12-05T16:00:00Z, on the window clock.
const T0_MS: i64 = 1_764_950_400_000;

fn endpoint(ip: &str, port: u16) -> Endpoint {
    Endpoint {
        ip: ip.parse().unwrap(),
        port,
        proto: Protocol::Tcp,
    }
}

/// A log holding, a minute apart from `T0_MS`: Redis opened (3), SSH
/// opened (2), HTTPS opened and expected (1), Redis closed (4).
fn log() -> Log {
    let log = Log::new(
        Arc::new(Catalog::builtin()),
        Arc::new(Watched::empty()),
        100,
        30,
    );
    let none = Expected::empty();
    let at = |minute: i64| T0_MS + minute * 60_000;
    let redis = endpoint("203.0.113.10", 6379);
    let ssh = endpoint("203.0.113.11", 22);
    let https = endpoint("203.0.113.12", 443);
    log.record(
        Kind::Opened,
        at(0),
        redis,
        log.look(redis, None, &none, at(0)),
        None,
    );
    log.record(
        Kind::Opened,
        at(1),
        ssh,
        log.look(ssh, None, &none, at(1)),
        None,
    );
    let expected = Look {
        expected: Some(Cover {
            owner: Some("web".into()),
            reason: None,
        }),
        ..log.look(https, None, &none, at(2))
    };
    log.record(Kind::Opened, at(2), https, expected, None);
    log.record(
        Kind::Closed,
        at(3),
        redis,
        log.look(redis, None, &none, at(3)),
        None,
    );
    log
}

/// The answer at ten minutes past `T0_MS`.
fn answer(log: Option<&Log>, q: Query) -> ChangesResponse {
    describe_exposure_changes(log, &q, T0_MS + 600_000, "ID".into())
}

fn seqs(r: &ChangesResponse) -> Vec<u64> {
    r.data_list.iter().map(|e| e.seq).collect()
}

#[test]
fn every_event_of_the_default_range_is_listed_newest_first_as_event_objects() {
    let log = log();
    let r = answer(Some(&log), Query::default());
    assert_eq!(seqs(&r), [4, 3, 2, 1]);
    assert_eq!(r.page_info.total_count, 4);
    assert_eq!((r.page_info.current_page, r.page_info.page_size), (1, 10));
    let newest = log.last(1).pop().unwrap();
    assert_eq!(r.data_list[0], newest);
    assert_eq!(r.data_list[0].to_json()["Kind"], "closed");
}

#[test]
fn the_filters_combine_with_and() {
    let log = log();
    let q = |f: fn(&mut Query)| {
        let mut q = Query::default();
        f(&mut q);
        seqs(&answer(Some(&log), q))
    };
    assert_eq!(q(|q| q.kind = Some(Kind::Opened)), [3, 2, 1]);
    assert_eq!(q(|q| q.expected = Some(true)), [3]);
    assert_eq!(q(|q| q.expected = Some(false)), [4, 2, 1]);
    assert_eq!(q(|q| q.port = Some(6379)), [4, 1]);
    assert_eq!(q(|q| q.service_name = Some("redis".into())), [4, 1]);
    assert_eq!(q(|q| q.risk_level = Some(3)), [4, 1]);
    assert_eq!(
        q(|q| {
            q.kind = Some(Kind::Opened);
            q.port = Some(6379);
        }),
        [1]
    );
    // "In assessment" matches nothing: every event is assessed.
    assert_eq!(q(|q| q.risk_level = Some(-1)), Vec::<u64>::new());
}

#[test]
fn the_range_is_start_inclusive_end_exclusive_in_seconds() {
    let log = log();
    let t0 = T0_MS / 1000;
    let q = Query {
        start_time: Some(t0 + 60),
        end_time: Some(t0 + 180),
        ..Query::default()
    };
    assert_eq!(seqs(&answer(Some(&log), q)), [3, 2]);
    // Events older than the default 7 days are outside the default range.
    let late = describe_exposure_changes(
        Some(&log),
        &Query::default(),
        T0_MS + 8 * 86_400_000,
        "ID".into(),
    );
    assert_eq!(late.page_info.total_count, 0);
}

#[test]
fn pages_cut_the_ordered_list_and_count_all_of_it() {
    let log = log();
    let page = |current_page| {
        answer(
            Some(&log),
            Query {
                current_page,
                page_size: 3,
                ..Query::default()
            },
        )
    };
    assert_eq!(seqs(&page(1)), [4, 3, 2]);
    assert_eq!(seqs(&page(2)), [1]);
    let past = page(3);
    assert!(past.data_list.is_empty());
    assert_eq!(past.page_info.total_count, 4);
}

#[test]
fn an_engine_without_an_event_log_has_no_changes() {
    let r = answer(None, Query::default());
    assert!(r.data_list.is_empty());
    assert_eq!(r.page_info.total_count, 0);
    assert_eq!(r.request_id, "ID");
}
