//! librdkafka's callbacks: connection state, lag and rebalances go to the
//! health flags and metrics; an assignment resumes each partition from the
//! restored checkpoint. Nothing here blocks.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{info, warn};

use super::log_limit::LogLimit;
use super::Core;
use crate::health::Health;
use crate::metrics::Metrics;

pub(super) struct Context {
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    pub core: Arc<Core>,
    /// librdkafka reports every failed connection attempt; during an outage
    /// that is many a second, so they are logged at most once per interval.
    pub error_log: Mutex<LogLimit>,
}

impl ClientContext for Context {
    fn stats(&self, stats: Statistics) {
        let connected = stats
            .brokers
            .values()
            .any(|b| b.nodeid >= 0 && b.state == "UP");
        self.health.set_connected(connected);
        self.metrics.kafka_connected.set(i64::from(connected));
        for (topic, t) in &stats.topics {
            for (id, p) in &t.partitions {
                if *id < 0 || !p.desired || p.hi_offset < 0 {
                    continue;
                }
                let position = self
                    .core
                    .progress
                    .next_offset_by_name(topic, *id)
                    .or((p.committed_offset >= 0).then_some(p.committed_offset));
                let labels = [topic.as_str(), &id.to_string()];
                if let Some(position) = position {
                    self.metrics
                        .kafka_lag
                        .with_label_values(&labels)
                        .set((p.hi_offset - position).max(0));
                    self.metrics
                        .kafka_next_offset
                        .with_label_values(&labels)
                        .set(position);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.health.set_connected(false);
            self.metrics.kafka_connected.set(0);
        }
        let admitted = self
            .error_log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(Instant::now());
        if let Some(suppressed) = admitted {
            warn!(%error, suppressed, "kafka: {reason}");
        }
    }
}

impl ConsumerContext for Context {
    /// Before partitions go to another consumer, everything read from them
    /// is applied, checkpointed and committed, so the new owner starts
    /// exactly where this one stopped.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        if tpl.count() == 0 {
            return;
        }
        let handed = self
            .core
            .drain()
            .and_then(|()| self.core.checkpoint(consumer, CommitMode::Sync));
        if let Err(e) = handed {
            warn!(error = %e, "kafka: could not checkpoint before giving partitions away; the new owner may re-read records applied here");
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                info!(partitions = tpl.count(), "kafka: partitions assigned");
                self.resume_from_checkpoint(consumer, tpl);
                self.health.set_assigned(true);
                self.metrics
                    .kafka_assigned_partitions
                    .set(tpl.count() as i64);
            }
            Rebalance::Revoke(tpl) => {
                info!(partitions = tpl.count(), "kafka: partitions revoked");
                self.health.set_assigned(false);
                self.metrics.kafka_assigned_partitions.set(0);
            }
            Rebalance::Error(e) => warn!(error = %e, "kafka: rebalance failed"),
        }
    }
}

impl Context {
    /// Re-assigns the partitions with the offsets this process has applied
    /// up to (restored from the checkpoint, or applied before a
    /// rebalance); the others start from their committed offset or
    /// `auto_offset_reset`. Workers also skip anything below these offsets,
    /// so a record delivered twice is applied once.
    fn resume_from_checkpoint(&self, consumer: &BaseConsumer<Self>, assigned: &TopicPartitionList) {
        let mut tpl = TopicPartitionList::new();
        let mut known = 0;
        for e in assigned.elements() {
            let offset = match self
                .core
                .progress
                .next_offset_by_name(e.topic(), e.partition())
            {
                Some(next) => {
                    known += 1;
                    Offset::Offset(next)
                }
                None => Offset::Stored,
            };
            if let Err(err) = tpl.add_partition_offset(e.topic(), e.partition(), offset) {
                warn!(error = %err, topic = e.topic(), partition = e.partition(), "kafka: cannot set resume offset");
            }
        }
        if known == 0 {
            return;
        }
        match consumer.assign(&tpl) {
            Ok(()) => info!(
                partitions = known,
                "kafka: resuming partitions from checkpointed offsets"
            ),
            Err(e) => warn!(error = %e, "kafka: resuming from checkpointed offsets failed"),
        }
    }
}
