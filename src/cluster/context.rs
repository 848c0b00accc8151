//! librdkafka's callbacks for the consumers of an instance in cluster
//! mode: the statistics give each partition's lag (route on the flow
//! topics, count on the routing partitions it holds, replica on every
//! changelog partition) and whether the brokers are reached; the count
//! consumer also hears which partitions are given to it and taken away.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;
use rdkafka::TopicPartitionList;

use crate::health::Health;
use crate::metrics::ClusterMetrics;

/// How often librdkafka hands its statistics to [`Context::stats`].
pub(super) const STATISTICS_INTERVAL_MS: &str = "1000";

pub(super) struct Context {
    metrics: ClusterMetrics,
    /// Set for the one consumer whose connection `/readyz` and
    /// `exposure_kafka_connected` report (route, which reads the flows).
    health: Option<Arc<Health>>,
    /// The routing partitions given to and taken from this instance, in
    /// the order the rebalance callbacks (inside `poll`) heard them, before
    /// any record of a later assignment: a partition is restored as soon as
    /// it is given (not at its first record), and one given back later is
    /// restored afresh, never counted on from a state another owner has
    /// moved past.
    moves: Mutex<Vec<Move>>,
    /// The partitions whose lag the last statistics reported: a partition
    /// no longer reported (moved away) loses its series rather than keep a
    /// last value.
    reported: Mutex<HashSet<(String, i32)>>,
}

impl Context {
    pub(super) fn new(metrics: &ClusterMetrics, health: Option<Arc<Health>>) -> Context {
        Context {
            metrics: metrics.clone(),
            health,
            moves: Mutex::new(Vec::new()),
            reported: Mutex::new(HashSet::new()),
        }
    }

    /// The partitions given and taken since the last call, in order.
    pub(super) fn take_moves(&self) -> Vec<Move> {
        std::mem::take(&mut *self.moves.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn heard(&self, partitions: &TopicPartitionList, moved: fn(i32) -> Move) {
        let mut moves = self.moves.lock().unwrap_or_else(PoisonError::into_inner);
        moves.extend(partitions.elements().iter().map(|e| moved(e.partition())));
    }
}

/// A routing partition given to this instance or taken from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Move {
    Assigned(i32),
    Revoked(i32),
}

/// One partition a consumer reads, as its statistics give it.
struct Read {
    topic: String,
    partition: i32,
    /// The high watermark.
    high: i64,
    /// Where the consumer stands: after the last record it was handed,
    /// else at its committed offset, else at the start of the log (a
    /// reader from the beginning that has read nothing yet).
    position: i64,
}

impl Read {
    /// The partitions `stats` shows this consumer reading, with a known
    /// position and high watermark.
    fn all(stats: &Statistics) -> Vec<Read> {
        let mut read = Vec::new();
        for (topic, t) in &stats.topics {
            for (&partition, p) in &t.partitions {
                let position = [p.app_offset, p.committed_offset, p.lo_offset]
                    .into_iter()
                    .find(|&offset| offset >= 0);
                if let Some(position) = position.filter(|_| partition >= 0 && p.desired) {
                    if p.hi_offset >= 0 {
                        read.push(Read {
                            topic: topic.clone(),
                            partition,
                            high: p.hi_offset,
                            position,
                        });
                    }
                }
            }
        }
        read
    }
}

impl Context {
    /// Sets the lag and position of every partition in `read`, and drops
    /// the series of those the last report had and this one lacks.
    fn report(&self, read: &[Read]) {
        let mut reported = HashSet::new();
        for r in read {
            let labels = [r.topic.as_str(), &r.partition.to_string()];
            self.metrics
                .kafka_lag
                .with_label_values(&labels)
                .set((r.high - r.position).max(0));
            self.metrics
                .kafka_next_offset
                .with_label_values(&labels)
                .set(r.position);
            reported.insert((r.topic.clone(), r.partition));
        }
        let mut last = self.reported.lock().unwrap_or_else(PoisonError::into_inner);
        for (topic, partition) in last.difference(&reported) {
            let labels = [topic.as_str(), &partition.to_string()];
            let _ = self.metrics.kafka_lag.remove_label_values(&labels);
            let _ = self.metrics.kafka_next_offset.remove_label_values(&labels);
        }
        *last = reported;
    }
}

impl ClientContext for Context {
    fn stats(&self, stats: Statistics) {
        if let Some(health) = &self.health {
            let connected = stats
                .brokers
                .values()
                .any(|b| b.nodeid >= 0 && b.state == "UP");
            health.set_connected(connected);
            self.metrics.kafka_connected.set(i64::from(connected));
        }
        self.report(&Read::all(&stats));
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            self.heard(partitions, Move::Revoked);
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            self.heard(partitions, Move::Assigned);
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus::core::Collector;

    use super::*;
    use crate::metrics::Metrics;

    fn read(topic: &str, partition: i32, high: i64, position: i64) -> Read {
        Read {
            topic: topic.to_owned(),
            partition,
            high,
            position,
        }
    }

    fn series(metrics: &ClusterMetrics) -> Vec<(String, i64, i64)> {
        let mut found = Vec::new();
        for family in metrics.kafka_lag.collect() {
            for m in family.get_metric() {
                let label = |name: &str| {
                    m.get_label()
                        .iter()
                        .find(|l| l.name() == name)
                        .map(|l| l.value().to_owned())
                        .unwrap()
                };
                let partition: i64 = label("partition").parse().unwrap();
                found.push((label("topic"), partition, m.get_gauge().get_value() as i64));
            }
        }
        found.sort();
        found
    }

    #[test]
    fn lag_is_the_high_watermark_less_the_position_and_a_partition_moved_away_loses_its_series() {
        let metrics = Metrics::new(Arc::new(crate::testkit::engine())).cluster;
        let context = Context::new(&metrics, None);
        context.report(&[read("g-by-asset", 0, 100, 40), read("g-by-asset", 1, 7, 9)]);
        assert_eq!(
            series(&metrics),
            vec![
                ("g-by-asset".to_owned(), 0, 60),
                ("g-by-asset".to_owned(), 1, 0),
            ]
        );
        context.report(&[read("g-by-asset", 1, 12, 10)]);
        assert_eq!(series(&metrics), vec![("g-by-asset".to_owned(), 1, 2)]);
    }
}
