use super::*;

fn at(topic: &str, partition: i32, offset: i64, index: u32) -> SourcePosition {
    SourcePosition {
        topic: topic.into(),
        partition,
        offset,
        index,
    }
}

#[test]
fn new_positions_are_admitted_and_a_replay_is_dropped_and_counted() {
    let mut applied = Applied::default();
    assert!(applied.admit(&at("flows", 0, 10, 0)));
    assert!(applied.admit(&at("flows", 0, 10, 1)));
    assert!(applied.admit(&at("flows", 0, 12, 0)));
    // A router that took partition 0 over re-sends from offset 10.
    assert!(!applied.admit(&at("flows", 0, 10, 0)));
    assert!(!applied.admit(&at("flows", 0, 10, 1)));
    assert!(!applied.admit(&at("flows", 0, 12, 0)));
    assert!(applied.admit(&at("flows", 0, 12, 1)));
    assert_eq!(applied.replays(), 3);
}

#[test]
fn each_source_partition_has_its_own_highest() {
    let mut applied = Applied::default();
    assert!(applied.admit(&at("flows", 0, 100, 0)));
    assert!(applied.admit(&at("flows", 1, 5, 0)));
    assert!(applied.admit(&at("other", 0, 5, 0)));
    assert!(!applied.admit(&at("flows", 0, 99, 3)));
    assert_eq!(applied.replays(), 1);
}

#[test]
fn a_resumed_guard_drops_what_was_applied_before_it_was_saved() {
    let mut applied = Applied::default();
    for offset in 0..5 {
        assert!(applied.admit(&at("flows", 2, offset, 0)));
    }
    assert!(applied.admit(&at("pmacct", 0, 7, 4)));
    let saved: Vec<_> = applied.positions().collect();
    assert_eq!(saved, [at("flows", 2, 4, 0), at("pmacct", 0, 7, 4)]);

    let mut resumed = Applied::resume(saved);
    assert!(!resumed.admit(&at("flows", 2, 4, 0)));
    assert!(!resumed.admit(&at("pmacct", 0, 7, 4)));
    assert!(resumed.admit(&at("flows", 2, 5, 0)));
    assert!(resumed.admit(&at("pmacct", 0, 7, 5)));
}

#[test]
fn resuming_from_two_saved_positions_of_one_partition_keeps_the_higher() {
    let resumed = Applied::resume([at("flows", 0, 9, 0), at("flows", 0, 3, 0)]);
    assert_eq!(
        resumed.positions().collect::<Vec<_>>(),
        [at("flows", 0, 9, 0)]
    );
}
