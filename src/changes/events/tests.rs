use std::sync::Arc;

use super::*;
use crate::catalog::{Catalog, Protocol};
use crate::changes::expected::Expected;
use crate::changes::watch::Watched;

const T0_MS: i64 = 1_764_950_400_000;

fn log(keep: usize) -> Log {
    Log::new(
        Arc::new(Catalog::builtin()),
        Arc::new(Watched::empty()),
        keep,
        30,
    )
}

fn redis() -> Endpoint {
    Endpoint {
        ip: "203.0.113.10".parse().unwrap(),
        port: 6379,
        proto: Protocol::Tcp,
    }
}

fn opened(log: &Log, endpoint: Endpoint, time_ms: i64) -> u64 {
    let look = log.look(endpoint, None, &Expected::empty(), time_ms);
    log.record(Kind::Opened, time_ms, endpoint, look, None)
}

#[test]
fn an_opened_event_is_the_documented_object() {
    let log = log(10);
    let seq = opened(&log, redis(), T0_MS + 999);
    assert_eq!(seq, 1);
    let event = &log.last(1)[0];
    assert_eq!(
        event.to_json(),
        serde_json::json!({
            "Seq": 1,
            "EventId": "1-opened-203.0.113.10:6379/tcp-1764950400",
            "Kind": "opened",
            "Time": 1_764_950_400,
            "Ip": "203.0.113.10",
            "Port": 6379,
            "Protocol": "tcp",
            "ServiceNameList": ["Redis"],
            "RiskLevel": 3,
            "SuggestLevel": 30,
            "Expected": false,
            "Owner": null,
            "Reason": null,
        })
    );
}

#[test]
fn a_changed_event_names_only_the_fields_that_changed() {
    let log = log(10);
    let expected = Expected::parse(
        "[[expected]]\nip = \"203.0.113.0/24\"\nport = 6379\nowner = \"cache team\"\nreason = \"replica\"\n",
    )
    .unwrap();
    let before = log.look(redis(), None, &Expected::empty(), T0_MS);
    let after = log.look(redis(), None, &expected, T0_MS);
    log.record(Kind::Changed, T0_MS, redis(), after, Some(before));
    let json = log.last(1)[0].to_json();
    assert_eq!(json["Expected"], true);
    assert_eq!(json["Owner"], "cache team");
    assert_eq!(json["Reason"], "replica");
    assert_eq!(
        json["Previous"],
        serde_json::json!({"Expected": false, "Owner": null, "Reason": null})
    );

    let labelled = log.look(redis(), Some("http"), &Expected::empty(), T0_MS);
    let plain = log.look(redis(), None, &Expected::empty(), T0_MS);
    log.record(Kind::Changed, T0_MS, redis(), labelled, Some(plain));
    let json = log.last(1)[0].to_json();
    assert_eq!(json["ServiceNameList"], serde_json::json!(["HTTP"]));
    let previous = json["Previous"].as_object().unwrap();
    assert_eq!(previous["ServiceNameList"], serde_json::json!(["Redis"]));
    assert_eq!(previous["RiskLevel"], 3);
    assert!(!previous.contains_key("Expected"), "{previous:?}");
}

#[test]
fn every_event_reads_back_from_its_json_line() {
    let log = log(10);
    let expected = Expected::parse(
        "[[expected]]\nip = \"203.0.113.10\"\nport = \"6000-7000\"\nowner = \"o\"\n",
    )
    .unwrap();
    opened(&log, redis(), T0_MS);
    let before = log.look(redis(), None, &Expected::empty(), T0_MS);
    let after = log.look(redis(), Some("http"), &expected, T0_MS);
    log.record(Kind::Changed, T0_MS + 5_000, redis(), after, Some(before));
    let look = log.look(redis(), Some("http"), &expected, T0_MS);
    log.record(Kind::Closed, T0_MS + 86_400_000, redis(), look, None);
    for event in log.last(3) {
        let line = event.to_json_line();
        assert_eq!(Event::from_json_line(&line).unwrap(), event, "{line}");
    }
}

#[test]
fn a_reader_gets_what_it_missed_or_a_gap() {
    let log = log(3);
    for i in 0..5 {
        opened(&log, redis(), T0_MS + i);
    }
    assert_eq!(log.latest(), 5);
    let seqs = |since: Since| match since {
        Since::Events(events) => events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        Since::Gap => panic!("a gap"),
    };
    assert_eq!(seqs(log.after(5)), Vec::<u64>::new());
    assert_eq!(seqs(log.after(2)), vec![3, 4, 5]);
    assert_eq!(
        log.after(1),
        Since::Gap,
        "four missed, three kept for replay"
    );
    assert_eq!(seqs(log.after(99)), Vec::<u64>::new());
}

#[test]
fn between_filters_and_orders_newest_first() {
    let log = log(10);
    let ssh = Endpoint {
        port: 22,
        ..redis()
    };
    opened(&log, redis(), T0_MS);
    opened(&log, ssh, T0_MS + 10_000);
    let look = log.look(redis(), None, &Expected::empty(), T0_MS);
    log.record(Kind::Closed, T0_MS + 20_000, redis(), look, None);
    let all = Filter {
        start: T0_MS / 1000,
        end: T0_MS / 1000 + 21,
        ..Filter::default()
    };
    let seqs = |f: &Filter| {
        let (total, page) = log.page(f, 0, usize::MAX);
        assert_eq!(total, page.len());
        page.iter().map(|e| e.seq).collect::<Vec<_>>()
    };
    assert_eq!(seqs(&all), vec![3, 2, 1]);
    assert_eq!(
        seqs(&Filter {
            end: T0_MS / 1000 + 20,
            ..all.clone()
        }),
        vec![2, 1],
        "EndTime is exclusive"
    );
    assert_eq!(
        seqs(&Filter {
            kind: Some(Kind::Opened),
            ..all.clone()
        }),
        vec![2, 1]
    );
    assert_eq!(
        seqs(&Filter {
            port: Some(22),
            ..all.clone()
        }),
        vec![2]
    );
    assert_eq!(
        seqs(&Filter {
            service: Some("redis".into()),
            ..all.clone()
        }),
        vec![3, 1]
    );
    assert_eq!(
        seqs(&Filter {
            expected: Some(true),
            ..all.clone()
        }),
        Vec::<u64>::new()
    );
}

#[test]
fn events_older_than_retention_are_dropped() {
    let log = log(10);
    opened(&log, redis(), T0_MS);
    opened(&log, redis(), T0_MS + 31 * 86_400_000);
    let (next, kept) = log.snapshot();
    assert_eq!(next, 3);
    assert_eq!(kept.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2]);
}

#[test]
fn a_restored_log_goes_on_numbering() {
    let log1 = log(10);
    opened(&log1, redis(), T0_MS);
    opened(&log1, redis(), T0_MS + 1);
    let (next, events) = log1.snapshot();
    let log2 = log(10);
    log2.restore(next, events);
    assert_eq!(log2.latest(), 2);
    assert_eq!(opened(&log2, redis(), T0_MS + 2), 3);
    assert_eq!(log2.last(10).len(), 3);
}

#[test]
fn kinds_parse_by_their_names_only() {
    for kind in Kind::ALL {
        assert_eq!(kind.as_str().parse::<Kind>(), Ok(kind));
    }
    assert!("bogus".parse::<Kind>().is_err());
    assert!("Opened".parse::<Kind>().is_err());
}

#[test]
fn durable_is_what_the_last_written_checkpoint_holds() {
    let log = log(10);
    opened(&log, redis(), T0_MS);
    assert_eq!(log.durable(), 0, "nothing is durable before a checkpoint");
    let (next_seq, events) = log.snapshot();
    let ssh = Endpoint {
        port: 22,
        ..redis()
    };
    opened(&log, ssh, T0_MS + 1_000);
    // The checkpoint of the snapshot is written: its events, not the later one.
    log.mark_durable();
    assert_eq!(log.durable(), 1);
    // Restored from it, the log holds what is durable.
    let restored = self::log(10);
    restored.restore(next_seq, events);
    assert_eq!((restored.durable(), restored.latest()), (1, 1));
}

#[test]
fn read_after_counts_what_left_the_history_and_ignores_keep() {
    let log = log(2);
    for i in 0..5 {
        let endpoint = Endpoint {
            port: 1000 + i,
            ..redis()
        };
        opened(&log, endpoint, T0_MS);
    }
    // `keep` (2) limits SSE replay, not a webhook's backlog.
    let (lost, events) = log.read_after(0, 3);
    assert_eq!(lost, 0);
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    let (lost, events) = log.read_after(4, 10);
    assert_eq!((lost, events.len()), (0, 1));
    let (lost, events) = log.read_after(5, 10);
    assert_eq!((lost, events.len()), (0, 0));
    // An event 31 days later pushes the first five out of the 30 days kept.
    opened(&log, redis(), T0_MS + 31 * 86_400_000);
    let (lost, events) = log.read_after(2, 10);
    assert_eq!(lost, 3, "events 3 to 5 left before they were read");
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [6]);
}
