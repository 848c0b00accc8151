use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::cluster::routed;
use crate::flow::tcp_flags::{ACK, PSH, RST, SYN};
use crate::flow::{Flow, PROTO_TCP, PROTO_UDP};
use crate::query::{describe_internet_open_port, PortQuery};
use crate::testkit::{self, HOUR, T0};

/// The wall clock of every test: a day after the last flow.
const WALL: i64 = T0 + 5 * 24 * HOUR;

fn endpoint(ip: &str, port: u16) -> Endpoint {
    Endpoint {
        ip: ip.parse().unwrap(),
        port,
        proto: Protocol::Tcp,
    }
}

fn meta() -> Meta {
    let mut peers = Peers::default();
    peers.add("198.51.100.7".parse().unwrap());
    Meta {
        label: Some("ssh".into()),
        ever_open: true,
        peers,
        last_seen_s: 1_704_067_260,
    }
}

fn day_of_traffic(day: u32) -> Series {
    let mut s = Series::default();
    for h in [1, 5] {
        s.add(
            day + h,
            crate::state::Sample {
                in_bytes: 10 * u64::from(h),
                out_bytes: 7,
                evidence: h == 5,
                payload: false,
            },
        );
    }
    s
}

fn marker() -> Marker {
    Marker {
        epoch: 9,
        next_offset: 1234,
        clock_ms: T0,
        seen_any: true,
        applied: vec![SourcePosition {
            topic: "flows".into(),
            partition: 3,
            offset: 99,
            index: 2,
        }],
    }
}

/// One record of each kind.
fn records() -> Vec<Record> {
    let day = (T0 / HOUR) as u32;
    let e = endpoint("2001:db8:100::5", 443);
    vec![
        (
            cell_key(&Cell::Fields(e), true),
            cell_value(7, &Body::Fields(Some(meta()))),
        ),
        (
            cell_key(&Cell::Fields(e), false),
            cell_value(7, &Body::Fields(None)),
        ),
        (
            cell_key(&Cell::Day(e, day), false),
            cell_value(8, &Body::Day(day_of_traffic(day))),
        ),
        (
            cell_key(&Cell::Probes(445 * 2), true),
            cell_value(8, &Body::Probes(12)),
        ),
        (marker_key(), marker_value(&marker())),
    ]
}

#[test]
fn every_kind_of_record_reads_back_as_written() {
    let day = (T0 / HOUR) as u32;
    let e = endpoint("2001:db8:100::5", 443);
    let read: Vec<Entry> = records()
        .iter()
        .map(|(k, v)| decode(k, v).unwrap())
        .collect();
    match &read[0] {
        Entry::Cell {
            cell: Cell::Fields(at),
            slot: true,
            epoch: 7,
            body: Body::Fields(Some(m)),
        } => assert_eq!((*at, m), (e, &meta())),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        read[1],
        Entry::Cell {
            slot: false,
            body: Body::Fields(None),
            ..
        }
    ));
    match &read[2] {
        Entry::Cell {
            cell: Cell::Day(at, d),
            body: Body::Day(buckets),
            epoch: 8,
            ..
        } => {
            assert_eq!((*at, *d), (e, day));
            let res = crate::state::Resolution::at(day + 30, 30);
            let all = [crate::state::HourRange {
                start: 0,
                end: u32::MAX,
            }];
            assert_eq!(
                buckets.tally(&all, res),
                day_of_traffic(day).tally(&all, res)
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        read[3],
        Entry::Cell {
            cell: Cell::Probes(890),
            body: Body::Probes(12),
            ..
        }
    ));
    match &read[4] {
        Entry::Marker(m) => assert_eq!(m, &marker()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_cut_short_or_foreign_record_is_refused_with_what_is_wrong() {
    for (key, value) in records() {
        for len in 0..value.len() {
            assert!(decode(&key, &value[..len]).is_err(), "{len} bytes");
        }
        let mut longer = value.clone();
        longer.push(0);
        assert_eq!(
            decode(&key, &longer).unwrap_err(),
            ChangelogError::Trailing(1)
        );
        let mut newer = value.clone();
        newer[0] = 2;
        let e = decode(&key, &newer).unwrap_err();
        assert_eq!(e, ChangelogError::Version(2));
        assert!(e.to_string().contains("version 2"), "{e}");
    }
    let (key, value) = records().remove(2);
    let mut other_kind = key.clone();
    other_kind[0] = 9;
    assert_eq!(
        decode(&other_kind, &value).unwrap_err(),
        ChangelogError::Key("unknown kind")
    );
    let mut bad_slot = key.clone();
    bad_slot[1] = 2;
    assert_eq!(
        decode(&bad_slot, &value).unwrap_err(),
        ChangelogError::Key("slot is not 0 or 1")
    );
    // The same buckets under the next day's key: outside their day.
    let mut next_day = key.clone();
    let at = next_day.len() - 4;
    let day = u32::from_be_bytes(next_day[at..].try_into().unwrap()) + 24;
    next_day[at..].copy_from_slice(&day.to_be_bytes());
    assert_eq!(
        decode(&next_day, &value).unwrap_err(),
        ChangelogError::Value("a bucket outside its day")
    );
    assert_eq!(
        decode(&[], &value).unwrap_err(),
        ChangelogError::Key("empty")
    );
}

/// The flows of the simulated group: a few assets and ports, both
/// directions, handshakes, refusals and scans over four days.
fn flows() -> impl Strategy<Value = Vec<Flow>> {
    let one = (
        0..6u8,
        prop::sample::select(vec![22u16, 80, 443, 3389]),
        0..5u8,
        any::<bool>(),
        prop::sample::select(vec![SYN, SYN | ACK, ACK | PSH, RST | ACK, 0]),
        1..5000u64,
        0..96i64,
        prop::sample::select(vec![None, Some("ssh"), Some("http")]),
        any::<bool>(),
    )
        .prop_map(
            |(asset, port, client, inbound, flags, bytes, hour, label, udp)| {
                let (server, client) = (
                    format!("203.0.113.{}", asset + 1),
                    format!("198.51.100.{}", client + 1),
                );
                let f = if inbound {
                    testkit::flow(&client, testkit::CLIENT_PORT, &server, port)
                } else {
                    testkit::flow(&server, port, &client, testkit::CLIENT_PORT)
                };
                Flow {
                    proto: if udp { PROTO_UDP } else { PROTO_TCP },
                    tcp_flags: if udp { 0 } else { flags },
                    bytes,
                    packets: 1 + bytes / 1000,
                    time_ms: T0 + hour * HOUR + (bytes as i64 % 60) * 60_000,
                    label: label.map(Into::into),
                    ..f
                }
            },
        );
    prop::collection::vec(one, 1..300)
}

/// What a counting owner does next with its partition.
#[derive(Clone, Debug)]
enum Step {
    /// Counts up to this many routed records.
    Count(usize),
    /// Flushes, closing the epoch.
    Flush,
    /// Flushes but dies after writing this many of the flush's records
    /// (never its marker); a new owner restores from the log.
    CrashMidFlush(usize),
    /// Dies between flushes; a new owner restores from the log.
    Crash,
    /// The broker compacts the log: the last record of each key stays.
    Compact,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        4 => (1..40usize).prop_map(Step::Count),
        2 => Just(Step::Flush),
        1 => (0..30usize).prop_map(Step::CrashMidFlush),
        1 => Just(Step::Crash),
        1 => Just(Step::Compact),
    ];
    prop::collection::vec(step, 0..25)
}

const PARTITIONS: usize = 3;

/// Routes `flows` (read from two source partitions, `flows` 0 and 1 by
/// index parity) to their asset's partition as routed records, with the
/// replays a router that restarts from a committed offset sends: after
/// flow `i`, `resend[i]` flows of its source partition up to it again.
fn route(flows: &[Flow], resend: &[usize]) -> Vec<Vec<Vec<u8>>> {
    let router = testkit::engine();
    let mut routed_parts = vec![Vec::new(); PARTITIONS];
    let send = |i: usize, routed_parts: &mut Vec<Vec<Vec<u8>>>| {
        let Ok(prepared) = router.prepare(&flows[i], WALL) else {
            return;
        };
        let key = routed::key(prepared.endpoint().ip);
        let part = crc32fast::hash(&key) as usize % PARTITIONS;
        let source = SourcePosition {
            topic: "flows".into(),
            partition: (i % 2) as i32,
            offset: (i / 2) as i64,
            index: 0,
        };
        let mut value = Vec::new();
        routed::encode(&flows[i], &source, &mut value);
        routed_parts[part].push(value);
    };
    for i in 0..flows.len() {
        send(i, &mut routed_parts);
        let again = resend.get(i).copied().unwrap_or(0);
        let same_source: Vec<usize> = (0..=i).rev().step_by(2).take(again).collect();
        for &j in same_source.iter().rev() {
            send(j, &mut routed_parts);
        }
    }
    routed_parts
}

/// The instance counting one partition.
struct Owner {
    engine: Engine,
    applied: Applied,
    flusher: Flusher,
    next: usize,
}

impl Owner {
    /// Restores the partition from its changelog, as a new owner does.
    fn restore(log: &[Record]) -> Owner {
        let engine = testkit::engine();
        let mut reader = Reader::new();
        for (key, value) in log {
            reader.read(&engine, key, value).unwrap();
        }
        let (next, applied) = reader.marker().map_or((0, Applied::default()), |m| {
            (m.next_offset as usize, Applied::resume(m.applied.clone()))
        });
        Owner {
            engine,
            applied,
            flusher: reader.into_flusher(),
            next,
        }
    }

    fn count(&mut self, routed: &[Vec<u8>], n: usize) {
        let end = self.next.saturating_add(n).min(routed.len());
        for value in &routed[self.next..end] {
            let (flow, source) = routed::decode(value).unwrap();
            if !self.applied.admit(&source) {
                continue;
            }
            if let Ok(prepared) = self.engine.prepare(&flow, WALL) {
                let (endpoint, hour) = (prepared.endpoint(), prepared.hour());
                if self.engine.apply_prepared(prepared) == crate::state::Outcome::Applied {
                    self.flusher.touched(endpoint, hour);
                }
            }
        }
        self.next = end;
    }

    fn flush(&mut self) -> Vec<Record> {
        let mut out = Vec::new();
        self.flusher
            .flush(&self.engine, self.next as i64, &self.applied, &mut out);
        out
    }
}

/// The last record of each key, in the order they stand.
fn compact(log: &[Record]) -> Vec<Record> {
    let last: HashMap<&[u8], usize> = log
        .iter()
        .enumerate()
        .map(|(i, (k, _))| (k.as_slice(), i))
        .collect();
    log.iter()
        .enumerate()
        .filter(|(i, (k, _))| last[k.as_slice()] == *i)
        .map(|(_, r)| r.clone())
        .collect()
}

/// Counts one partition through `steps` and to its end. Returns the log
/// as the broker holds it at the end, and every record ever written in
/// order (what a replica reading all along read).
fn count_partition(routed: &[Vec<u8>], steps: &[Step]) -> (Vec<Record>, Vec<Record>) {
    let (mut log, mut history) = (Vec::new(), Vec::new());
    let mut owner = Owner::restore(&log);
    for step in steps {
        match step {
            Step::Count(n) => owner.count(routed, *n),
            Step::Flush => {
                let records = owner.flush();
                log.extend(records.iter().cloned());
                history.extend(records);
            }
            Step::CrashMidFlush(k) => {
                let mut records = owner.flush();
                records.truncate((*k).min(records.len() - 1));
                log.extend(records.iter().cloned());
                history.extend(records);
                owner = Owner::restore(&log);
            }
            Step::Crash => owner = Owner::restore(&log),
            Step::Compact => log = compact(&log),
        }
    }
    owner.count(routed, usize::MAX);
    let records = owner.flush();
    log.extend(records.iter().cloned());
    history.extend(records);
    (log, history)
}

/// A replica's engine: every partition's log read in order.
fn replica<'a>(logs: impl IntoIterator<Item = &'a Vec<Record>>) -> Engine {
    let engine = testkit::engine();
    engine.keep_port_index_current(WALL);
    for log in logs {
        let mut reader = Reader::new();
        for (key, value) in log {
            reader.read(&engine, key, value).unwrap();
        }
        assert_eq!(reader.unclosed(), 0, "the last flush closed");
    }
    engine
}

/// What an engine answers and holds, to compare engines by.
fn answers(
    e: &Engine,
) -> (
    serde_json::Value,
    Vec<String>,
    usize,
    usize,
    Vec<(u32, u64)>,
) {
    let q = PortQuery {
        page_size: 1000,
        start_time: Some(T0 / 1000),
        end_time: Some(WALL / 1000),
        ..PortQuery::default()
    };
    let mut v =
        serde_json::to_value(describe_internet_open_port(e, &q, WALL, "ID".into())).unwrap();
    v.as_object_mut().unwrap().remove("RequestId");
    let res = e.resolution(WALL);
    let windows = crate::state::index::recent_windows((WALL / HOUR) as u32);
    let mut endpoints = Vec::new();
    e.for_each(|endpoint, s| {
        endpoints.push(format!(
            "{endpoint:?} open {} label {:?} peers {} seen {} {:?}",
            s.ever_open,
            s.label,
            s.peers.estimate(),
            s.last_seen_s,
            s.series.tally(&windows, res)
        ))
    });
    endpoints.sort();
    let mut probes: Vec<_> = e.probe_slots().collect();
    probes.sort();
    (
        v,
        endpoints,
        e.open_endpoints(),
        e.pending_endpoints(),
        probes,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the crashes, replays and compactions, a replica of the
    /// changelogs answers as one engine that applied every flow once.
    #[test]
    fn the_changelogs_hold_exactly_what_one_engine_counts(
        flows in flows(),
        resend in prop::collection::vec(prop_oneof![8 => Just(0usize), 1 => 1..4usize], 0..300),
        steps in prop::collection::vec(steps(), PARTITIONS),
    ) {
        let single = testkit::engine();
        single.keep_port_index_current(WALL);
        for f in &flows {
            single.apply(f, WALL);
        }
        let routed = route(&flows, &resend);
        let (logs, histories): (Vec<_>, Vec<_>) = routed
            .iter()
            .zip(&steps)
            .map(|(routed, steps)| count_partition(routed, steps))
            .unzip();
        let expected = answers(&single);
        prop_assert_eq!(&answers(&replica(&logs)), &expected, "from the logs as stored");
        prop_assert_eq!(&answers(&replica(&histories)), &expected, "read all along");
        let compacted: Vec<_> = logs.iter().map(|log| compact(log)).collect();
        prop_assert_eq!(&answers(&replica(&compacted)), &expected, "compacted");
    }
}

#[test]
fn a_record_of_an_older_epoch_than_one_read_is_stale_and_ignored() {
    let engine = testkit::engine();
    let mut reader = Reader::new();
    let mut m = marker();
    reader
        .read(&engine, &marker_key(), &marker_value(&m))
        .unwrap();
    let e = endpoint("203.0.113.5", 22);
    let old = cell_value(8, &Body::Fields(Some(meta())));
    assert_eq!(
        reader.read(&engine, &cell_key(&Cell::Fields(e), false), &old),
        Ok(None)
    );
    m.epoch = 8;
    assert_eq!(
        reader.read(&engine, &marker_key(), &marker_value(&m)),
        Ok(None)
    );
    assert_eq!((reader.stale(), reader.unclosed()), (2, 0));
    assert_eq!(engine.open_endpoints() + engine.pending_endpoints(), 0);
    assert_eq!(reader.into_flusher().epoch(), 10);
}

#[test]
fn cells_after_the_last_marker_wait_for_one_and_a_new_owner_rewrites_them() {
    let engine = testkit::engine();
    let mut reader = Reader::new();
    let e = endpoint("203.0.113.5", 22);
    let fields = cell_key(&Cell::Fields(e), true);
    reader
        .read(
            &engine,
            &fields,
            &cell_value(3, &Body::Fields(Some(meta()))),
        )
        .unwrap();
    assert_eq!(engine.open_endpoints(), 0, "not applied before its marker");
    assert_eq!(reader.unclosed(), 1);
    // The owner died: its successor writes the cell again, in slot 1,
    // as not held, in an epoch above the one it found.
    let mut flusher = reader.into_flusher();
    let mut out = Vec::new();
    let closed = flusher.flush(&engine, 0, &Applied::default(), &mut out);
    assert_eq!(closed.epoch, 4);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0].0, fields);
    assert!(matches!(
        decode(&out[0].0, &out[0].1),
        Ok(Entry::Cell {
            epoch: 4,
            body: Body::Fields(None),
            ..
        })
    ));
}
