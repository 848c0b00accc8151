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
        generation: 9,
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
            cell_key(7, &Cell::Fields(e), true),
            cell_value(&Body::Fields(Some(meta()))),
        ),
        (
            cell_key(7, &Cell::Fields(e), false),
            cell_value(&Body::Fields(None)),
        ),
        (
            cell_key(300, &Cell::Day(e, day), false),
            cell_value(&Body::Day(day_of_traffic(day))),
        ),
        (
            cell_key(8, &Cell::Probes(445 * 2), true),
            cell_value(&Body::Probes(12)),
        ),
        (marker_key(9), marker_value(&marker())),
        claim_record(10, 0xfeed_beef),
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
            generation: 7,
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
            generation: 300,
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
    assert!(matches!(
        read[5],
        Entry::Claim {
            generation: 10,
            nonce: 0xfeed_beef
        }
    ));
    for (key, _) in records() {
        assert!(matches!(decode(&key, &[]), Ok(Entry::Tombstone)), "{key:?}");
    }
}

#[test]
fn a_cut_short_or_foreign_record_is_refused_with_what_is_wrong() {
    for (key, value) in records() {
        for len in 1..value.len() {
            assert!(decode(&key, &value[..len]).is_err(), "{len} bytes");
        }
        let mut longer = value.clone();
        longer.push(0);
        assert_eq!(
            decode(&key, &longer).unwrap_err(),
            ChangelogError::Trailing(1)
        );
        let mut newer = value.clone();
        newer[0] = 3;
        let e = decode(&key, &newer).unwrap_err();
        assert_eq!(e, ChangelogError::Version(3));
        assert!(e.to_string().contains("version 3 is not 2"), "{e}");
    }
    let (key, value) = records().remove(2);
    let mut other_kind = key.clone();
    other_kind[0] = 9;
    assert_eq!(
        decode(&other_kind, &value).unwrap_err(),
        ChangelogError::Key("unknown kind")
    );
    // Generation 300 takes two bytes; the slot follows.
    let mut bad_slot = key.clone();
    bad_slot[3] = 2;
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

/// What happens next to a partition's owners.
#[derive(Clone, Debug)]
enum Step {
    /// The owner counts up to this many routed records.
    Count(usize),
    /// The owner flushes.
    Flush,
    /// The owner flushes but dies after writing this many of the flush's
    /// records (never its marker); a new owner takes over.
    CrashMidFlush(usize),
    /// The owner dies between flushes; a new owner takes over.
    Crash,
    /// A new owner takes over. `zombie`: the owner loses the partition
    /// without noticing and lives on as a zombie (in place of any earlier
    /// zombie); else it died. Between the new owner's claim and its first
    /// flush the zombie counts `window` records and flushes, and the broker
    /// compacts if `compact`. `cut`: the new owner dies after writing this
    /// many of its records (state, tombstones), and another takes over.
    TakeOver {
        zombie: bool,
        window: Option<usize>,
        compact: bool,
        cut: Option<usize>,
    },
    /// The zombie counts up to this many routed records and flushes.
    ZombieFlush(usize),
    /// A new owner takes over, but a rival claim of the same generation
    /// is written just before its own (the rival then dies).
    RivalClaim,
    /// The broker compacts the log: the last record of each key stays,
    /// unless it is a tombstone.
    Compact,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        6 => (1..40usize).prop_map(Step::Count),
        3 => Just(Step::Flush),
        1 => (0..30usize).prop_map(Step::CrashMidFlush),
        1 => Just(Step::Crash),
        3 => (
            any::<bool>(),
            prop::option::of(0..30usize),
            any::<bool>(),
            prop::option::weighted(0.3, 0..60usize)
        )
            .prop_map(|(zombie, window, compact, cut)| Step::TakeOver {
                zombie,
                window,
                compact,
                cut,
            }),
        2 => (1..40usize).prop_map(Step::ZombieFlush),
        1 => Just(Step::RivalClaim),
        1 => Just(Step::Compact),
    ];
    prop::collection::vec(step, 0..30)
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

/// A partition's changelog: as the broker holds it, and every record ever
/// written in order (what a replica reading all along read).
#[derive(Default)]
struct Log {
    stored: Vec<Record>,
    history: Vec<Record>,
    /// The nonce of the next claim.
    nonce: u64,
}

impl Log {
    fn append(&mut self, records: impl IntoIterator<Item = Record>) {
        for record in records {
            self.stored.push(record.clone());
            self.history.push(record);
        }
    }
}

impl Owner {
    /// Claims the partition as a new owner does (`node::restore`): reads
    /// the log and claims it (again, if a `rival` claim beats its first).
    fn claim(log: &mut Log, rival: bool) -> (Engine, Reader) {
        let (engine, mut reader) = restored(&log.stored);
        let mut first = true;
        loop {
            log.nonce += 1;
            let (key, value) = reader.claim(log.nonce);
            if rival && first {
                // Computed from the same log, so of the same generation.
                let (rival_key, rival_value) = reader.claim(u64::MAX);
                log.append([(rival_key.clone(), rival_value.clone())]);
                let heard = reader.read(&engine, &rival_key, &rival_value).unwrap();
                assert_eq!(
                    heard,
                    Read::Claim {
                        nonce: u64::MAX,
                        accepted: true
                    }
                );
            }
            log.append([(key.clone(), value.clone())]);
            let heard = reader.read(&engine, &key, &value).unwrap();
            let accepted = heard
                == Read::Claim {
                    nonce: log.nonce,
                    accepted: true,
                };
            assert_eq!(accepted, !(rival && first), "{heard:?}");
            first = false;
            if accepted {
                return (engine, reader);
            }
        }
    }

    /// The owner that claimed with `reader`, and the records it writes
    /// after its claim: its whole state, then the tombstones of the older
    /// keys.
    fn finish(engine: Engine, reader: Reader) -> (Owner, Vec<Record>) {
        let (next, applied) = reader.marker().map_or((0, Applied::default()), |m| {
            (m.next_offset as usize, Applied::resume(m.applied.clone()))
        });
        let obsolete = reader.obsolete();
        let flusher = reader.into_flusher(&engine);
        let mut owner = Owner {
            engine,
            applied,
            flusher,
            next,
        };
        let mut records = owner.flush();
        records.extend(obsolete);
        (owner, records)
    }

    fn take_over(log: &mut Log, rival: bool) -> (Owner, Vec<Record>) {
        let (engine, reader) = Owner::claim(log, rival);
        Owner::finish(engine, reader)
    }

    /// Takes the partition over and writes every record of it.
    fn take_over_whole(log: &mut Log) -> Owner {
        let (owner, records) = Owner::take_over(log, false);
        log.append(records);
        owner
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

/// The last record of each key, in the order they stand, without the keys
/// whose last record is a tombstone.
fn compact(log: &[Record]) -> Vec<Record> {
    let last: HashMap<&[u8], usize> = log
        .iter()
        .enumerate()
        .map(|(i, (k, _))| (k.as_slice(), i))
        .collect();
    log.iter()
        .enumerate()
        .filter(|(i, (k, v))| last[k.as_slice()] == *i && !v.is_empty())
        .map(|(_, r)| r.clone())
        .collect()
}

/// Counts one partition through `steps` and to its end. Returns the log
/// as the broker holds it at the end, and every record ever written in
/// order (what a replica reading all along read).
fn count_partition(routed: &[Vec<u8>], steps: &[Step]) -> (Vec<Record>, Vec<Record>) {
    let mut log = Log::default();
    let mut owner = Owner::take_over_whole(&mut log);
    let mut zombie: Option<Owner> = None;
    for step in steps {
        match step {
            Step::Count(n) => owner.count(routed, *n),
            Step::Flush => log.append(owner.flush()),
            Step::CrashMidFlush(k) => {
                let mut records = owner.flush();
                records.truncate((*k).min(records.len() - 1));
                log.append(records);
                owner = Owner::take_over_whole(&mut log);
            }
            Step::Crash => owner = Owner::take_over_whole(&mut log),
            &Step::TakeOver {
                zombie: lives_on,
                window,
                compact: compacts,
                cut,
            } => {
                let (engine, reader) = Owner::claim(&mut log, false);
                if let Some(n) = window {
                    // The owner that lost the partition, if it lives on,
                    // else an earlier zombie.
                    let late = if lives_on {
                        Some(&mut owner)
                    } else {
                        zombie.as_mut()
                    };
                    if let Some(late) = late {
                        late.count(routed, n);
                        log.append(late.flush());
                    }
                }
                if compacts {
                    log.stored = compact(&log.stored);
                }
                let (new, mut records) = Owner::finish(engine, reader);
                let old = std::mem::replace(&mut owner, new);
                if lives_on {
                    zombie = Some(old);
                }
                if let Some(k) = cut {
                    records.truncate(k);
                    log.append(records);
                    owner = Owner::take_over_whole(&mut log);
                } else {
                    log.append(records);
                }
            }
            Step::ZombieFlush(n) => {
                if let Some(zombie) = zombie.as_mut() {
                    zombie.count(routed, *n);
                    log.append(zombie.flush());
                }
            }
            Step::RivalClaim => {
                let (new, records) = Owner::take_over(&mut log, true);
                owner = new;
                log.append(records);
            }
            Step::Compact => log.stored = compact(&log.stored),
        }
    }
    owner.count(routed, usize::MAX);
    log.append(owner.flush());
    (log.stored, log.history)
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
fn a_record_of_an_older_generation_than_one_read_is_stale_and_ignored() {
    let engine = testkit::engine();
    let mut reader = Reader::new();
    let m = marker();
    assert_eq!(
        reader.read(&engine, &marker_key(9), &marker_value(&m)),
        Ok(Read::Closed)
    );
    let e = endpoint("203.0.113.5", 22);
    let old = cell_value(&Body::Fields(Some(meta())));
    assert_eq!(
        reader.read(&engine, &cell_key(8, &Cell::Fields(e), false), &old),
        Ok(Read::Stale)
    );
    assert_eq!(
        reader.read(&engine, &marker_key(8), &marker_value(&m)),
        Ok(Read::Stale)
    );
    let (key, value) = claim_record(9, 1);
    assert_eq!(
        reader.read(&engine, &key, &value),
        Ok(Read::Claim {
            nonce: 1,
            accepted: false
        }),
        "a claim of a generation already read is beaten"
    );
    assert_eq!((reader.stale(), reader.unclosed()), (3, 0));
    assert_eq!(engine.open_endpoints() + engine.pending_endpoints(), 0);
    assert!(matches!(
        decode(&reader.claim(5).0, &reader.claim(5).1),
        Ok(Entry::Claim {
            generation: 10,
            nonce: 5
        })
    ));
}

/// Generation `generation`'s flush of one open endpoint, with its marker.
fn flush_of_one(generation: u64, e: Endpoint, peer: &str) -> Vec<Record> {
    let mut m = meta();
    m.peers.add(peer.parse().unwrap());
    let mut marker = marker();
    marker.generation = generation;
    vec![
        (
            cell_key(generation, &Cell::Fields(e), true),
            cell_value(&Body::Fields(Some(m))),
        ),
        (marker_key(generation), marker_value(&marker)),
    ]
}

/// The endpoints an engine holds, sorted.
fn held(engine: &Engine) -> Vec<Endpoint> {
    let mut held = Vec::new();
    engine.for_each(|endpoint, _| held.push(*endpoint));
    held.sort_by_key(|e| format!("{e:?}"));
    held
}

/// Reads `log` with a restoring owner's reader.
fn restored(log: &[Record]) -> (Engine, Reader) {
    let engine = testkit::engine();
    let mut reader = Reader::for_restore();
    for (key, value) in log {
        reader.read(&engine, key, value).unwrap();
    }
    (engine, reader)
}

#[test]
fn a_new_generations_first_flush_replaces_the_state_and_fences_the_previous_owner() {
    let (e, f) = (endpoint("203.0.113.5", 22), endpoint("203.0.113.6", 22));
    let engine = testkit::engine();
    let mut reader = Reader::new();
    // Generation 1 counts e; generation 2 claims; the previous owner, not
    // knowing, counts f and flushes before generation 2's first flush.
    let mut log = flush_of_one(1, e, "198.51.100.8");
    log.push(claim_record(2, 77));
    log.extend(flush_of_one(1, f, "198.51.100.9"));
    // Generation 2 restored what the log held up to its claim: e alone.
    log.extend(flush_of_one(2, e, "198.51.100.8"));
    // The previous owner flushes on.
    log.extend(flush_of_one(1, f, "198.51.100.10"));
    let heard: Vec<Read> = log
        .iter()
        .map(|(k, v)| reader.read(&engine, k, v).unwrap())
        .collect();
    assert_eq!(
        heard,
        [
            Read::Held,
            Read::Closed,
            Read::Claim {
                nonce: 77,
                accepted: true
            },
            Read::Held,
            Read::Closed,
            Read::Held,
            Read::Closed,
            Read::Stale,
            Read::Stale,
        ]
    );
    assert_eq!(held(&engine), [e], "f went with the first flush of 2");
    assert_eq!((reader.generation(), reader.unclosed()), (2, 0));
}

#[test]
fn a_claim_whose_owner_died_before_its_first_flush_leaves_the_previous_state_whole() {
    let (e, f) = (endpoint("203.0.113.5", 22), endpoint("203.0.113.6", 22));
    // Generation 2 claims and dies; the previous owner flushes once more,
    // over the keys of its closed flush.
    let mut log = flush_of_one(1, e, "198.51.100.8");
    log.push(claim_record(2, 5));
    let mut late = flush_of_one(1, e, "198.51.100.9");
    late.extend(flush_of_one(1, f, "198.51.100.9"));
    log.extend(late);
    let (all_along, read) = restored(&log);
    let (compacted, read_compacted) = restored(&compact(&log));
    assert_eq!(held(&all_along), [e, f]);
    assert_eq!(held(&compacted), [e, f], "compaction kept a closed state");
    assert_eq!(read.marker(), read_compacted.marker());
    assert!(read_compacted.marker().is_some());
    assert_eq!(read_compacted.claim(1).0, claim_record(3, 1).0);
}

#[test]
fn a_beaten_claim_keeps_the_winning_claim_through_compaction() {
    let (e, f) = (endpoint("203.0.113.5", 22), endpoint("203.0.113.6", 22));
    let mut log = flush_of_one(1, e, "198.51.100.8");
    // B and C read the same log; B's claim is written first.
    let (_, b) = restored(&log);
    let (b_claim, c_claim) = (b.claim(1), b.claim(2));
    log.push(b_claim);
    // The previous owner flushes f; B reads on to its claim, and writes
    // its state (e only) under generation 2, then dies before deleting.
    let (b_engine, b_reader) = restored(&log);
    log.extend(flush_of_one(1, f, "198.51.100.9"));
    let mut flusher = b_reader.into_flusher(&b_engine);
    let mut rewrite = Vec::new();
    flusher.flush(&b_engine, 0, &Applied::default(), &mut rewrite);
    log.extend(rewrite);
    log.push(c_claim);
    let (all_along, _) = restored(&log);
    let (compacted, _) = restored(&compact(&log));
    assert_eq!(held(&all_along), [e]);
    assert_eq!(held(&compacted), [e]);
}

#[test]
fn a_new_owner_writes_its_whole_state_under_its_generation_and_deletes_the_older_keys() {
    let (e, f) = (endpoint("203.0.113.5", 22), endpoint("203.0.113.6", 443));
    let mut log = flush_of_one(1, e, "198.51.100.8");
    // Generation 2's first flush: its whole state, e and f.
    let mut second = flush_of_one(2, f, "198.51.100.9");
    second.insert(0, flush_of_one(2, e, "198.51.100.8").remove(0));
    log.extend(second);
    // A key deleted already is not deleted again.
    log.push((log[0].0.clone(), Vec::new()));
    log.push(claim_record(3, 5));
    let (engine, reader) = restored(&log);
    let mut obsolete = reader.obsolete();
    obsolete.sort();
    let mut expected: Vec<Record> = log[1..5]
        .iter()
        .map(|(key, _)| (key.clone(), Vec::new()))
        .collect();
    expected.sort();
    assert_eq!(obsolete, expected, "generations 1 and 2, not the claim");
    let mut flusher = reader.into_flusher(&engine);
    assert_eq!(flusher.generation(), 3);
    let mut out = Vec::new();
    let closed = flusher.flush(&engine, 0, &Applied::default(), &mut out);
    assert_eq!(closed.generation, 3);
    let mut rewritten: Vec<Cell> = out
        .iter()
        .filter_map(|(k, v)| match decode(k, v) {
            Ok(Entry::Cell {
                cell,
                generation: 3,
                ..
            }) => Some(cell),
            _ => None,
        })
        .collect();
    rewritten.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(rewritten, [Cell::Fields(e), Cell::Fields(f)]);
    assert_eq!(out.last().unwrap().0, marker_key(3));
}
