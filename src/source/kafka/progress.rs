//! What the workers have applied, per partition.

use std::sync::Arc;

use dashmap::DashMap;

use crate::state::checkpoint::PartitionOffset;

/// The next offset to apply, per (topic, partition), and where each
/// partition resumed.
///
/// A partition moves forward once a batch of its records is applied whole
/// (by every worker that had a part of it). Batches of one partition may be
/// applied by different workers at once and finish out of order, so the
/// offset is exact only when no work is in flight: a checkpoint reads it
/// only then (`Core::drain`), so the state it encodes holds exactly the
/// records below the offsets it encodes.
#[derive(Debug, Default)]
pub struct Progress {
    next: DashMap<(Arc<str>, i32), i64>,
    /// Where each partition was restored or resumed: every record below is
    /// in the state, and one delivered again is skipped. Unlike `next`, it
    /// moves only when the partition (re)starts, so a worker may check
    /// records against it while other batches of the partition are in
    /// flight.
    floor: DashMap<(Arc<str>, i32), i64>,
}

impl Progress {
    /// Starts from checkpointed offsets.
    pub fn restore(&self, offsets: &[PartitionOffset]) {
        for o in offsets {
            self.next
                .insert((o.topic.clone(), o.partition), o.next_offset);
            self.floor
                .insert((o.topic.clone(), o.partition), o.next_offset);
        }
    }

    /// A partition resumes at `offset` (all below is applied): records
    /// below it delivered again are skipped.
    pub(super) fn resume_at(&self, topic: &str, partition: i32, offset: i64) {
        self.floor.insert((Arc::from(topic), partition), offset);
    }

    /// Where a partition was restored or last resumed, if it was.
    pub(super) fn floor(&self, topic: &Arc<str>, partition: i32) -> Option<i64> {
        self.floor.get(&(topic.clone(), partition)).map(|o| *o)
    }

    pub(super) fn advance(&self, topic: &Arc<str>, partition: i32, next_offset: i64) {
        self.next
            .entry((topic.clone(), partition))
            .and_modify(|o| *o = (*o).max(next_offset))
            .or_insert(next_offset);
    }

    /// The next offset to apply for a partition, if it is known (applied
    /// here, or restored from a checkpoint).
    pub fn next_offset_by_name(&self, topic: &str, partition: i32) -> Option<i64> {
        self.next
            .iter()
            .find(|e| e.key().1 == partition && &*e.key().0 == topic)
            .map(|e| *e.value())
    }

    /// Every partition's next offset.
    pub fn snapshot(&self) -> Vec<PartitionOffset> {
        let mut all: Vec<PartitionOffset> = self
            .next
            .iter()
            .map(|e| PartitionOffset {
                topic: e.key().0.clone(),
                partition: e.key().1,
                next_offset: *e.value(),
            })
            .collect();
        all.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_only_move_forward() {
        let p = Progress::default();
        let t: Arc<str> = Arc::from("flows");
        p.advance(&t, 0, 10);
        p.advance(&t, 0, 5);
        assert_eq!(p.next_offset_by_name("flows", 0), Some(10));
        assert_eq!(p.next_offset_by_name("flows", 1), None);
    }

    #[test]
    fn restored_offsets_are_the_starting_point() {
        let p = Progress::default();
        let topic: Arc<str> = Arc::from("flows");
        p.restore(&[PartitionOffset {
            topic: topic.clone(),
            partition: 3,
            next_offset: 77,
        }]);
        assert_eq!(p.next_offset_by_name("flows", 3), Some(77));
        assert_eq!(p.floor(&topic, 3), Some(77));
    }

    #[test]
    fn a_partition_skips_below_where_it_resumed_not_below_its_progress() {
        let p = Progress::default();
        let t: Arc<str> = Arc::from("flows");
        assert_eq!(p.floor(&t, 0), None);
        p.resume_at("flows", 0, 40);
        // Batches finishing (possibly out of order) move the progress only.
        p.advance(&t, 0, 90);
        assert_eq!(p.floor(&t, 0), Some(40));
        assert_eq!(p.next_offset_by_name("flows", 0), Some(90));
    }
}
