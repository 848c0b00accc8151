//! What the workers have applied, per partition, and the gate that gives
//! checkpoints a consistent cut.

use std::sync::{Arc, RwLock, RwLockReadGuard};

use dashmap::DashMap;

use crate::state::checkpoint::PartitionOffset;

/// The next offset to apply, per (topic, partition).
///
/// Workers apply a batch while holding the gate for reading and advance the
/// partition's offset before letting go; a checkpoint takes the gate for
/// writing, so the state it encodes holds exactly the records below the
/// offsets it encodes.
#[derive(Debug, Default)]
pub struct Progress {
    next: DashMap<(Arc<str>, i32), i64>,
    gate: RwLock<()>,
}

impl Progress {
    /// Starts from checkpointed offsets.
    pub fn restore(&self, offsets: &[PartitionOffset]) {
        for o in offsets {
            self.next
                .insert((o.topic.clone(), o.partition), o.next_offset);
        }
    }

    /// Held by a worker while it applies a batch.
    pub(super) fn applying(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn advance(&self, topic: &Arc<str>, partition: i32, next_offset: i64) {
        self.next
            .entry((topic.clone(), partition))
            .and_modify(|o| *o = (*o).max(next_offset))
            .or_insert(next_offset);
    }

    /// The next offset to apply for a partition, if it is known (applied
    /// here, or restored from a checkpoint).
    pub fn next_offset(&self, topic: &Arc<str>, partition: i32) -> Option<i64> {
        self.next.get(&(topic.clone(), partition)).map(|o| *o)
    }

    /// The same, by name (for callbacks, which have no interned topic).
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

    /// Runs `f` with no batch being applied, giving it every partition's
    /// next offset: a consistent cut of state and offsets.
    pub fn consistent<R>(&self, f: impl FnOnce(Vec<PartitionOffset>) -> R) -> R {
        let _cut = self.gate.write().unwrap_or_else(|e| e.into_inner());
        f(self.snapshot())
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
        assert_eq!(p.next_offset(&t, 0), Some(10));
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
        assert_eq!(p.next_offset(&topic, 3), Some(77));
        assert_eq!(p.consistent(|o| o), p.snapshot());
    }
}
