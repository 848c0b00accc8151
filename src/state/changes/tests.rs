use std::path::Path;

use super::*;
use crate::changes::events::Event;
use crate::flow::tcp_flags::{ACK, RST, SYN};
use crate::flow::Flow;
use crate::state::checkpoint;
use crate::testkit::{self, conversation, flow, DAY, HOUR, T0};

const REDIS: &str = "203.0.113.10";
const CLIENT: &str = "198.51.100.7";

/// An engine on the event clock recording changes, closing after a day,
/// judged against `expected`.
fn tracking(expected: Watched) -> Engine {
    let mut settings = testkit::settings();
    settings.clock = Clock::Event;
    let log = Log::new(
        Arc::new(Catalog::builtin()),
        Arc::new(expected),
        100,
        settings.retention_days,
    );
    testkit::engine_with(settings).track_changes(Arc::new(log), DAY)
}

fn apply(engine: &Engine, flows: impl IntoIterator<Item = Flow>) {
    for f in flows {
        engine.apply(&f, T0 + 40 * DAY);
    }
}

fn events(engine: &Engine) -> Vec<Event> {
    engine.changes().expect("tracked").last(usize::MAX)
}

/// (Seq, kind, port, time relative to T0 in seconds) of every event.
fn kinds(engine: &Engine) -> Vec<(u64, &'static str, u16, i64)> {
    events(engine)
        .iter()
        .map(|e| (e.seq, e.kind.as_str(), e.endpoint.port, e.time - T0 / 1000))
        .collect()
}

fn expected_file(dir: &Path, text: &str) -> Watched {
    let path = dir.join("expected.toml");
    std::fs::write(&path, text).unwrap();
    Watched::load(&path).unwrap()
}

#[test]
fn the_first_answer_opens_and_more_traffic_does_not() {
    let engine = tracking(Watched::empty());
    // A probe alone opens nothing; the reply does, at its time.
    apply(&engine, [flow(CLIENT, 50000, REDIS, 6379)]);
    assert_eq!(kinds(&engine), vec![]);
    apply(
        &engine,
        conversation(REDIS, 6379, CLIENT, 100, 200, T0 + 5_000),
    );
    apply(
        &engine,
        conversation(REDIS, 6379, CLIENT, 100, 200, T0 + HOUR),
    );
    assert_eq!(kinds(&engine), vec![(1, "opened", 6379, 5)]);
    let event = &events(&engine)[0];
    assert_eq!(event.now.service, "Redis");
    assert_eq!(event.now.risk_level, 3);
    assert_eq!(event.now.expected, None);
}

#[test]
fn a_refusal_is_not_an_opening() {
    let engine = tracking(Watched::empty());
    apply(
        &engine,
        [Flow {
            tcp_flags: RST | ACK,
            ..flow(REDIS, 6379, CLIENT, 50000)
        }],
    );
    assert_eq!(kinds(&engine), vec![]);
}

#[test]
fn a_day_without_flows_closes_at_the_moment_it_closed_and_the_next_answer_reopens() {
    let engine = tracking(Watched::empty());
    apply(&engine, conversation(REDIS, 6379, CLIENT, 100, 200, T0));
    // Inbound traffic keeps it open; the next flow after a quiet day closes it.
    apply(
        &engine,
        [flow(CLIENT, 50000, REDIS, 6379)].map(|f| Flow {
            time_ms: T0 + 20 * HOUR,
            ..f
        }),
    );
    apply(
        &engine,
        [Flow {
            time_ms: T0 + 50 * HOUR,
            ..flow(CLIENT, 50000, REDIS, 6379)
        }],
    );
    assert_eq!(
        kinds(&engine),
        vec![
            (1, "opened", 6379, 0),
            (2, "closed", 6379, (20 * HOUR + DAY) / 1000)
        ]
    );
    // Closed, a probe does not reopen it; an answer does.
    apply(
        &engine,
        conversation(REDIS, 6379, CLIENT, 100, 200, T0 + 51 * HOUR),
    );
    assert_eq!(
        kinds(&engine).last(),
        Some(&(3, "opened", 6379, 51 * HOUR / 1000))
    );
}

#[test]
fn the_sweep_closes_what_stays_quiet() {
    let engine = tracking(Watched::empty());
    apply(&engine, conversation(REDIS, 6379, CLIENT, 100, 200, T0));
    apply(
        &engine,
        conversation(REDIS, 22, CLIENT, 100, 200, T0 + 30 * HOUR),
    );
    // Event clock: now is T0 + 30 h, so Redis (quiet since T0) is closed,
    // SSH not; a second sweep adds nothing.
    engine.sweep_changes(0);
    engine.sweep_changes(0);
    assert_eq!(
        kinds(&engine),
        vec![
            (1, "opened", 6379, 0),
            (2, "opened", 22, 30 * HOUR / 1000),
            (3, "closed", 6379, DAY / 1000),
        ]
    );
}

#[test]
fn a_label_that_changes_the_service_is_a_change_naming_the_old_one() {
    let engine = tracking(Watched::empty());
    apply(&engine, conversation(REDIS, 6379, CLIENT, 100, 200, T0));
    let labelled = conversation(REDIS, 6379, CLIENT, 100, 200, T0 + 60_000).map(|f| Flow {
        label: Some("http".into()),
        ..f
    });
    apply(&engine, labelled.clone());
    // The same label again changes nothing.
    apply(&engine, labelled);
    assert_eq!(
        kinds(&engine),
        vec![(1, "opened", 6379, 0), (2, "changed", 6379, 60)]
    );
    let change = &events(&engine)[1];
    assert_eq!(change.now.service, "HTTP");
    let previous = change
        .previous
        .as_ref()
        .expect("a change has its previous look");
    assert_eq!(previous.service, "Redis");
    assert_eq!(previous.risk_level, 3);
}

#[test]
fn expected_entries_added_edited_and_expired_are_changes() {
    let dir = tempfile::tempdir().unwrap();
    let watched = expected_file(dir.path(), "");
    let engine = tracking(watched);
    apply(&engine, conversation(REDIS, 6379, CLIENT, 100, 200, T0));
    apply(&engine, conversation(REDIS, 22, CLIENT, 100, 200, T0));
    let log = engine.changes().unwrap().clone();
    let path = dir.path().join("expected.toml");
    // Added: the Redis endpoint becomes expected.
    std::fs::write(
        &path,
        "[[expected]]\nip = \"203.0.113.10\"\nport = 6379\nowner = \"cache\"\nexpires = \"2024-01-01T12:00:00Z\"\n",
    )
    .unwrap();
    let watched = engine_watched(&engine);
    assert!(matches!(
        watched.reload(true),
        crate::changes::watch::Reload::Loaded(1)
    ));
    engine.sweep_changes(0);
    let added = log.last(1).pop().unwrap();
    assert_eq!((added.kind, added.endpoint.port), (Kind::Changed, 6379));
    assert_eq!(
        added.now.expected.as_ref().unwrap().owner.as_deref(),
        Some("cache")
    );
    assert_eq!(added.previous.as_ref().unwrap().expected, None);
    // Nothing new: no event.
    engine.sweep_changes(0);
    assert_eq!(log.latest(), added.seq);
    // Edited: a new owner.
    std::fs::write(
        &path,
        "[[expected]]\nip = \"203.0.113.10\"\nport = 6379\nowner = \"platform\"\nexpires = \"2024-01-01T12:00:00Z\"\n",
    )
    .unwrap();
    watched.reload(true);
    engine.sweep_changes(0);
    let edited = log.last(1).pop().unwrap();
    assert_eq!(edited.seq, added.seq + 1);
    assert_eq!(
        edited.now.expected.as_ref().unwrap().owner.as_deref(),
        Some("platform")
    );
    assert_eq!(
        edited
            .previous
            .as_ref()
            .unwrap()
            .expected
            .as_ref()
            .unwrap()
            .owner
            .as_deref(),
        Some("cache")
    );
    // Expired: the event clock passes noon with SSH's next flow.
    apply(
        &engine,
        conversation(REDIS, 22, CLIENT, 100, 200, T0 + 13 * HOUR),
    );
    engine.sweep_changes(0);
    let expired = log.last(1).pop().unwrap();
    assert_eq!((expired.kind, expired.endpoint.port), (Kind::Changed, 6379));
    assert_eq!(expired.now.expected, None);
    assert_eq!(expired.time, (T0 + 13 * HOUR) / 1000);
    assert_eq!(
        log.latest(),
        5,
        "opened twice, then three changes of Redis: {:?}",
        kinds(&engine)
    );
}

/// The list the engine's log judges against.
fn engine_watched(engine: &Engine) -> Arc<Watched> {
    engine.changes.as_ref().unwrap().log.watched()
}

#[test]
fn an_endpoint_opened_under_an_entry_is_expected_and_no_sweep_changes_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = tracking(expected_file(
        dir.path(),
        "[[expected]]\nip = \"203.0.113.0/24\"\nport = \"6000-7000\"\nreason = \"cache\"\n",
    ));
    apply(&engine, conversation(REDIS, 6379, CLIENT, 100, 200, T0));
    engine.sweep_changes(0);
    assert_eq!(kinds(&engine), vec![(1, "opened", 6379, 0)]);
    let cover = events(&engine)[0].now.expected.clone().expect("expected");
    assert_eq!(cover.reason.as_deref(), Some("cache"));
}

#[test]
fn a_checkpoint_keeps_the_log_and_what_each_endpoint_was() {
    let engine = tracking(Watched::empty());
    apply(&engine, conversation(REDIS, 6379, CLIENT, 100, 200, T0));
    apply(
        &engine,
        conversation(REDIS, 22, CLIENT, 100, 200, T0 + 30 * HOUR),
    );
    let bytes = checkpoint::encode(&engine, &[], T0);
    let restored = tracking(Watched::empty());
    restored.restore(checkpoint::decode(Path::new("test"), &bytes).expect("decodes"));
    assert_eq!(events(&restored), events(&engine));
    // Both go on alike: Redis closes once, with the next Seq.
    for e in [&engine, &restored] {
        e.sweep_changes(0);
        apply(
            e,
            [Flow {
                tcp_flags: SYN | ACK,
                ..flow(REDIS, 22, CLIENT, 50000)
            }],
        );
    }
    assert_eq!(kinds(&restored), kinds(&engine));
    assert_eq!(
        kinds(&restored).last(),
        Some(&(3, "closed", 6379, DAY / 1000))
    );
}

#[test]
fn without_a_log_nothing_is_tracked_and_nothing_fails() {
    let engine = testkit::engine();
    apply(&engine, conversation(REDIS, 6379, CLIENT, 100, 200, T0));
    engine.sweep_changes(T0 + DAY * 3);
    assert!(engine.changes().is_none());
}
