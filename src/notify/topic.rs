//! `changes.topic` (`docs/operations.md#the-kafka-topic`): every event on a
//! Kafka topic, key `"<Ip>:<Port>/<Protocol>"`, value the event object;
//! each exactly once and in order per endpoint, across kill -9, without
//! broker transactions.
//!
//! How, in three rules:
//! - only events a checkpoint holds are produced (the log's durable `Seq`,
//!   [`Log::durable`]): after any crash the restored log has every event
//!   ever produced, under the same `Seq` with the same content;
//! - each event goes to partition `crc32(key) % partitions`, chosen here,
//!   by an idempotent producer: a partition holds, in `Seq` order, a prefix
//!   of the events of its keys, never one without those before it;
//! - at start the last message of each partition says how far that prefix
//!   goes, and an event is produced only if its `Seq` is beyond its
//!   partition's last.
//!
//! The price is latency: an event is on the topic within
//! `state.checkpoint_interval` (default 10 s) of being recorded, where
//! `GET /events` and the webhooks have it at once.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::changes::events::{endpoint_key, Event, Log};
use crate::metrics::Metrics;
use crate::state::Engine;

/// How long the broker's metadata and the partitions' last messages may
/// take at start.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the durable `Seq` is looked at.
const POLL: Duration = Duration::from_millis(100);
/// What is still queued gets this long to reach the broker at a stop; the
/// rest is produced at the next start.
const STOP_FLUSH: Duration = Duration::from_secs(1);

/// The partition an event with `key` goes to, of `partitions`.
pub fn partition_of(key: &str, partitions: i32) -> i32 {
    let partitions = u32::try_from(partitions.max(1)).unwrap_or(1);
    i32::try_from(crc32fast::hash(key.as_bytes()) % partitions).expect("below an i32")
}

/// Produces every durable event to `topic` on `brokers` until `stop`. Any
/// failure of the broker (a delivery that fails, a topic that is missing)
/// is an error: the caller starts it again, and it takes up from what the
/// topic holds.
pub fn run(
    engine: &Engine,
    brokers: &str,
    topic: &str,
    metrics: &Metrics,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let Some(log) = engine.changes() else {
        return Ok(());
    };
    let producer: BaseProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        // The topic must exist: its partition count places the events.
        .set("allow.auto.create.topics", "false")
        .set("linger.ms", "5")
        .create_with_context(Deliveries::default())
        .context("creating the changes.topic producer")?;
    let partitions = partition_count(&producer, topic)?;
    let mut last = last_seqs(brokers, topic, partitions)?;
    let durable = log.durable();
    if let Some(&beyond) = last.iter().filter(|&&seq| seq > durable).max() {
        // The events on the topic came from a state that is gone (a deleted
        // or older state.dir): Seq starts over after what this state has.
        error!(
            topic,
            topic_seq = beyond,
            state_seq = durable,
            "changes.topic holds events beyond this state's last Seq; producing from the state's, so Seq goes back on the topic"
        );
        for seq in &mut last {
            *seq = (*seq).min(durable);
        }
    }
    let mut cursor = last.iter().copied().min().unwrap_or(0);
    info!(
        topic,
        partitions,
        after_seq = cursor,
        "producing exposure changes"
    );
    loop {
        let stopping = stop.is_cancelled();
        cursor = produce_durable(&producer, log, topic, partitions, &last, cursor, metrics)?;
        producer.poll(Duration::ZERO);
        producer.context().check()?;
        if stopping {
            break;
        }
        let until = Instant::now() + POLL;
        while Instant::now() < until && !stop.is_cancelled() && log.durable() <= cursor {
            producer.poll(Duration::from_millis(20));
        }
    }
    if let Err(e) = producer.flush(STOP_FLUSH) {
        warn!(topic, "changes.topic: not every event was produced before the stop, the next start produces them: {e}");
    }
    producer.context().check()
}

/// Produces the durable events after `cursor` that their partition lacks;
/// returns the new cursor.
fn produce_durable(
    producer: &BaseProducer<Deliveries>,
    log: &Log,
    topic: &str,
    partitions: i32,
    last: &[u64],
    mut cursor: u64,
    metrics: &Metrics,
) -> anyhow::Result<u64> {
    loop {
        let durable = log.durable();
        if durable <= cursor {
            return Ok(cursor);
        }
        let (lost, events) = log.read_after(cursor, 10_000);
        if lost > 0 {
            error!(
                topic,
                lost, "events left the history before they were produced to changes.topic"
            );
            metrics.changes_topic_dropped.inc_by(lost);
            cursor += lost;
        }
        for event in events.iter().take_while(|e| e.seq <= durable) {
            let key = endpoint_key(event.endpoint);
            let partition = partition_of(&key, partitions);
            let partition_last = usize::try_from(partition)
                .ok()
                .and_then(|p| last.get(p))
                .copied()
                .unwrap_or(0);
            if event.seq > partition_last {
                send(producer, topic, partition, &key, event)?;
                metrics.changes_topic_produced.inc();
            }
            cursor = event.seq;
        }
        metrics
            .changes_topic_seq
            .set(i64::try_from(cursor).unwrap_or(i64::MAX));
    }
}

/// Queues one event, waiting while the producer's queue is full.
fn send(
    producer: &BaseProducer<Deliveries>,
    topic: &str,
    partition: i32,
    key: &str,
    event: &Event,
) -> anyhow::Result<()> {
    let payload = event.to_json_line();
    let mut record = BaseRecord::to(topic)
        .partition(partition)
        .key(key)
        .payload(&payload);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                back,
            )) => {
                producer.poll(Duration::from_millis(50));
                producer.context().check()?;
                record = back;
            }
            Err((e, _)) => anyhow::bail!(
                "changes.topic {topic}: cannot queue event {}: {e}",
                event.seq
            ),
        }
    }
}

/// The partitions of `topic`; an error naming it when the brokers do not
/// have it.
fn partition_count(producer: &BaseProducer<Deliveries>, topic: &str) -> anyhow::Result<i32> {
    let metadata = producer
        .client()
        .fetch_metadata(Some(topic), START_TIMEOUT)
        .with_context(|| format!("changes.topic {topic}: cannot read its metadata"))?;
    let found = metadata.topics().iter().find(|t| t.name() == topic);
    match found {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
            Ok(i32::try_from(t.partitions().len()).unwrap_or(i32::MAX))
        }
        _ => anyhow::bail!(
            "changes.topic {topic:?} does not exist on the brokers; create it (its partition count is kept: events are placed by key)"
        ),
    }
}

/// The `Seq` of the last message of each partition (0: empty).
fn last_seqs(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<Vec<u64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "exposure-changes-topic-reader")
        .set("enable.auto.commit", "false")
        .create()
        .context("creating the changes.topic reader")?;
    let mut last = vec![0; usize::try_from(partitions).unwrap_or(0)];
    let mut wanted = TopicPartitionList::new();
    let mut ends = Vec::new();
    for partition in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, START_TIMEOUT)
            .with_context(|| {
                format!("changes.topic {topic}: cannot read partition {partition}'s offsets")
            })?;
        if high > low {
            wanted.add_partition_offset(topic, partition, Offset::Offset(high - 1))?;
            ends.push((partition, high - 1));
        }
    }
    if ends.is_empty() {
        return Ok(last);
    }
    consumer.assign(&wanted)?;
    let deadline = Instant::now() + START_TIMEOUT;
    let mut missing = ends.len();
    while missing > 0 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "changes.topic {topic}: the last message of {missing} partition(s) did not arrive within {START_TIMEOUT:?}"
        );
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message =
            message.with_context(|| format!("changes.topic {topic}: reading its last messages"))?;
        let partition = message.partition();
        if !ends.contains(&(partition, message.offset())) {
            continue;
        }
        let payload = message.payload().unwrap_or_default();
        let seq = serde_json::from_slice::<serde_json::Value>(payload)
            .ok()
            .and_then(|v| v["Seq"].as_u64())
            .with_context(|| {
                format!(
                    "changes.topic {topic}: the last message of partition {partition} (offset {}) is not an event with a Seq; \
                     the topic must hold only exposure's events",
                    message.offset()
                )
            })?;
        if let Some(slot) = usize::try_from(partition)
            .ok()
            .and_then(|p| last.get_mut(p))
        {
            *slot = seq;
        }
        missing -= 1;
    }
    Ok(last)
}

/// The producer's delivery reports: the first failure, which ends the run.
#[derive(Default)]
struct Deliveries {
    failed: Mutex<Option<String>>,
}

impl Deliveries {
    fn check(&self) -> anyhow::Result<()> {
        match &*self.failed.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(failure) => anyhow::bail!("changes.topic: a delivery failed: {failure}"),
            None => Ok(()),
        }
    }
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
            failed.get_or_insert_with(|| e.to_string());
        }
    }
}

/// Runs [`run`] on a blocking thread until `stop`, for the supervisor.
pub async fn task(
    engine: Arc<Engine>,
    brokers: String,
    topic: String,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || run(&engine, &brokers, &topic, &metrics, &stop))
        .await
        .map_err(crate::supervise::join_error)?
}
