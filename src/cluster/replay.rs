//! The replay guard of the counting side: per source partition, the
//! highest [`SourcePosition`] applied. Flows of one source partition reach
//! a routing partition in the order they were read (one router holds a
//! source partition at a time, and its producer is idempotent), and a
//! router that takes a source partition over starts again from the last
//! committed offset, so everything it sends up to where its predecessor
//! stopped is a replay: a position not above the highest applied.
//! Persisted with the state it guards (checkpoint or changelog), it makes
//! counting exact without broker transactions.

use std::collections::BTreeMap;

use super::routed::SourcePosition;

/// The highest position applied per source (topic, partition).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// topic -> partition -> (offset, index).
    highest: BTreeMap<String, BTreeMap<i32, (i64, u32)>>,
    replays: u64,
}

impl Applied {
    /// Whether the flow at `source` is new (above the highest applied of
    /// its source partition); if so it becomes the highest. A replay is
    /// counted and must be dropped.
    pub fn admit(&mut self, source: &SourcePosition) -> bool {
        let at = (source.offset, source.index);
        let partitions = match self.highest.get_mut(source.topic.as_str()) {
            Some(partitions) => partitions,
            None => self.highest.entry(source.topic.clone()).or_default(),
        };
        match partitions.get_mut(&source.partition) {
            Some(highest) if at <= *highest => {
                self.replays += 1;
                false
            }
            Some(highest) => {
                *highest = at;
                true
            }
            None => {
                partitions.insert(source.partition, at);
                true
            }
        }
    }

    /// Flows dropped as replays since this guard was made.
    pub fn replays(&self) -> u64 {
        self.replays
    }

    /// The highest position applied of every source partition seen, in
    /// (topic, partition) order: what a checkpoint or changelog flush keeps.
    pub fn positions(&self) -> impl Iterator<Item = SourcePosition> + '_ {
        self.highest.iter().flat_map(|(topic, partitions)| {
            partitions
                .iter()
                .map(|(&partition, &(offset, index))| SourcePosition {
                    topic: topic.clone(),
                    partition,
                    offset,
                    index,
                })
        })
    }

    /// A guard that resumes from `positions` (from [`Applied::positions`]);
    /// for a partition listed twice the higher position stands.
    pub fn resume(positions: impl IntoIterator<Item = SourcePosition>) -> Applied {
        let mut applied = Applied::default();
        for p in positions {
            let at = (p.offset, p.index);
            let highest = applied
                .highest
                .entry(p.topic)
                .or_default()
                .entry(p.partition)
                .or_insert(at);
            *highest = (*highest).max(at);
        }
        applied
    }
}

#[cfg(test)]
mod tests;
