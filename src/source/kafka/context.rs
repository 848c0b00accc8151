//! librdkafka's callbacks: connection state, lag and rebalances go to the
//! health flags and metrics; an assignment starts each partition where this
//! process left it (restored from the checkpoint) and routes it to the
//! fetch queue. Only a revoke waits: for what was read from its partitions
//! to be applied and checkpointed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{info, warn};

use super::fetch::FetchQueue;
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
    /// Where assigned partitions' records go; set once the consumer exists,
    /// gone once the poll thread has stopped.
    pub fetch: OnceLock<Weak<FetchQueue<Context>>>,
    /// Partitions assigned, as the rebalances left them. Counted here
    /// rather than asked of librdkafka: `assignment()` from inside the
    /// revoke of a consumer that is closing never returns.
    pub assigned: AtomicUsize,
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
                    .progress()
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
    /// Takes over librdkafka's rebalance (rust-rdkafka's default assigns the
    /// list as given, with committed offsets):
    ///
    /// - an assignment starts every partition this process has applied
    ///   records of at its own next offset, in the one assign call, and
    ///   routes every partition to the fetch queue before it is fetched;
    /// - before partitions go to another consumer, everything read from
    ///   them is applied, checkpointed and committed, so the new owner
    ///   starts exactly where this one stopped.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let resumed = self.resume_from_progress(tpl);
                self.route_to_fetch_queue(tpl);
                let assigned = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = assigned {
                    warn!(error = %e, "kafka: assigning partitions failed");
                    return;
                }
                info!(partitions = tpl.count(), "kafka: partitions assigned");
                if resumed > 0 {
                    info!(
                        partitions = resumed,
                        "kafka: resuming partitions from checkpointed offsets"
                    );
                }
                self.health.set_assigned(true);
                // Rebalances are served on the poll thread only, one at a time.
                let total = if cooperative {
                    self.assigned.load(Ordering::Acquire) + tpl.count()
                } else {
                    tpl.count()
                };
                self.assigned.store(total, Ordering::Release);
                self.metrics.kafka_assigned_partitions.set(total as i64);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                if tpl.count() > 0 {
                    if let Err(e) = self.core.checkpoint(consumer, CommitMode::Sync) {
                        warn!(error = %e, "kafka: could not checkpoint before giving partitions away; the new owner may re-read records applied here");
                    }
                }
                let unassigned = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = unassigned {
                    warn!(error = %e, "kafka: giving partitions away failed");
                }
                info!(partitions = tpl.count(), "kafka: partitions revoked");
                let left = if cooperative {
                    self.assigned
                        .load(Ordering::Acquire)
                        .saturating_sub(tpl.count())
                } else {
                    0
                };
                self.assigned.store(left, Ordering::Release);
                self.health.set_assigned(left > 0);
                self.metrics.kafka_assigned_partitions.set(left as i64);
            }
            other => {
                let code: RDKafkaErrorCode = other.into();
                warn!(error = %code, "kafka: rebalance failed");
            }
        }
    }
}

impl Context {
    /// Forwards each partition's records to the fetch queue; a partition
    /// that cannot be routed is read from the consumer queue instead.
    fn route_to_fetch_queue(&self, assigned: &TopicPartitionList) {
        let Some(fetch) = self.fetch.get().and_then(Weak::upgrade) else {
            return;
        };
        for e in assigned.elements() {
            if !fetch.route(e.topic(), e.partition()) {
                warn!(
                    topic = e.topic(),
                    partition = e.partition(),
                    "kafka: partition not routed to the fetch queue; its records are read one by one"
                );
            }
        }
    }

    /// Sets each assigned partition that this process has applied records
    /// of (restored from the checkpoint, or applied before a rebalance) to
    /// start at its next offset; the others start from their committed
    /// offset or `auto_offset_reset`. Workers also skip anything below
    /// these offsets, so a record delivered twice is applied once. Returns
    /// how many partitions resume so.
    fn resume_from_progress(&self, assigned: &mut TopicPartitionList) -> usize {
        let mut resumed = 0;
        let partitions: Vec<(String, i32)> = assigned
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        for (topic, partition) in partitions {
            let Some(next) = self.core.progress().next_offset_by_name(&topic, partition) else {
                continue;
            };
            self.core.progress().resume_at(&topic, partition, next);
            match assigned.set_partition_offset(&topic, partition, Offset::Offset(next)) {
                Ok(()) => resumed += 1,
                Err(err) => {
                    warn!(error = %err, topic, partition, "kafka: cannot set resume offset")
                }
            }
        }
        resumed
    }
}
