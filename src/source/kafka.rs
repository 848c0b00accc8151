//! Flow records from Kafka: one poll thread, several worker threads.
//!
//! The poll thread reads records with librdkafka and hands them, in batches,
//! to worker threads chosen by partition, so every partition is applied in
//! order by one worker while different partitions are decoded and applied in
//! parallel (the engine's state is sharded: no global lock). A worker records
//! the next offset of every partition it has applied in [`Progress`]; only
//! then does the poll thread store that offset for commit, so an offset never
//! advances past a record whose effect is not applied.
//!
//! Rejected records are counted by reason, logged rate-limited with a sample,
//! copied to `kafka.dead_letter_topic` when set, and their offsets advance
//! like any other: bad input never stops a partition.

use std::collections::HashMap;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use dashmap::DashMap;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::KafkaConfig;
use crate::flow::{self, Flow, Format};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::state::{wall_now_ms, Engine};

/// Records handed to a worker at once, at most.
const BATCH_RECORDS: usize = 512;
/// A batch waits at most this long for more records before it is handed on.
const BATCH_LINGER: Duration = Duration::from_millis(5);
/// How long one poll waits for a record.
const POLL_TIMEOUT: Duration = Duration::from_millis(5);
/// Batches queued per worker before the poll thread waits (backpressure).
const QUEUE_BATCHES: usize = 4;
/// Applied offsets are stored for commit this often.
const STORE_INTERVAL: Duration = Duration::from_millis(200);
/// A rejected record is logged at most this often per worker (the rest are counted).
const REJECT_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// The next offset to apply, per (topic, partition): what workers have applied.
#[derive(Debug, Default)]
pub struct Progress {
    next: DashMap<(Arc<str>, i32), i64>,
}

impl Progress {
    fn advance(&self, topic: &Arc<str>, partition: i32, next_offset: i64) {
        self.next
            .entry((topic.clone(), partition))
            .and_modify(|o| *o = (*o).max(next_offset))
            .or_insert(next_offset);
    }

    /// The next offset to apply for a partition, if anything was applied.
    pub fn next_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.next.get(&(Arc::from(topic), partition)).map(|o| *o)
    }

    /// Every partition's next offset.
    pub fn snapshot(&self) -> Vec<(Arc<str>, i32, i64)> {
        self.next
            .iter()
            .map(|e| (e.key().0.clone(), e.key().1, *e.value()))
            .collect()
    }
}

/// librdkafka's callbacks: connection state, lag and rebalances go to the
/// health flags and metrics; nothing here blocks.
struct Context {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    progress: Arc<Progress>,
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
                    .progress
                    .next_offset(topic, *id)
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
        warn!(%error, "kafka: {reason}");
    }
}

impl ConsumerContext for Context {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                info!(partitions = tpl.count(), "kafka: partitions assigned");
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

/// Records for one worker: payloads back to back in one buffer.
#[derive(Default)]
struct Batch {
    data: Vec<u8>,
    items: Vec<Item>,
    started: Option<Instant>,
}

struct Item {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    end: usize,
}

/// What the workers share.
struct WorkerShared {
    engine: Arc<Engine>,
    progress: Arc<Progress>,
    format: Format,
    dead_letters: Option<DeadLetters>,
    metrics: Arc<Metrics>,
}

/// Copies rejected records to the dead-letter topic, the error in a header.
struct DeadLetters {
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
}

impl DeadLetters {
    fn send(&self, item: &Item, payload: &[u8], error: &flow::DecodeError) {
        let message = error.to_string();
        let origin = format!("{}/{}/{}", item.topic, item.partition, item.offset);
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "exposure-error",
                value: Some(message.as_str()),
            })
            .insert(Header {
                key: "exposure-reason",
                value: Some(error.reason()),
            })
            .insert(Header {
                key: "exposure-origin",
                value: Some(origin.as_str()),
            });
        let record: BaseRecord<'_, (), [u8]> = BaseRecord::to(&self.topic)
            .payload(payload)
            .headers(headers);
        if let Err((e, _)) = self.producer.send(record) {
            warn!(error = %e, origin, "dead-letter copy failed");
        }
    }
}

/// The running consumer: stop it with the token given to [`start`], then [`KafkaSource::join`].
pub struct KafkaSource {
    poll_thread: JoinHandle<anyhow::Result<()>>,
    /// What the workers have applied, per partition.
    pub progress: Arc<Progress>,
}

impl KafkaSource {
    /// Waits until the consumer has drained, stored and committed its offsets.
    pub fn join(self) -> anyhow::Result<()> {
        self.poll_thread
            .join()
            .map_err(|_| anyhow::anyhow!("kafka poll thread panicked"))?
    }
}

/// The librdkafka consumer settings for `config`: the service's own, then
/// the user's `kafka.librdkafka` on top.
pub fn consumer_config(config: &KafkaConfig) -> ClientConfig {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group_id)
        .set("auto.offset.reset", config.auto_offset_reset.as_str())
        // Offsets are stored only once applied (see the module doc).
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("statistics.interval.ms", "1000");
    for (k, v) in &config.librdkafka {
        cc.set(k, v);
    }
    cc
}

/// Subscribes to `config.topics` and starts the poll thread and `workers`
/// worker threads. Returns once the consumer is created (not yet assigned).
pub fn start(
    config: &KafkaConfig,
    workers: usize,
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> anyhow::Result<KafkaSource> {
    let progress = Arc::new(Progress::default());
    let context = Context {
        health,
        metrics: metrics.clone(),
        progress: progress.clone(),
    };
    let consumer: BaseConsumer<Context> = consumer_config(config)
        .create_with_context(context)
        .context("creating the kafka consumer")?;
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .with_context(|| format!("subscribing to {topics:?}"))?;
    let dead_letters = if config.dead_letter_topic.is_empty() {
        None
    } else {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .create()
            .context("creating the dead-letter producer")?;
        Some(DeadLetters {
            producer,
            topic: config.dead_letter_topic.clone(),
        })
    };
    let shared = Arc::new(WorkerShared {
        engine,
        progress: progress.clone(),
        format: config.format,
        dead_letters,
        metrics,
    });
    let workers = workers.max(1);
    let mut senders = Vec::with_capacity(workers);
    let mut handles = Vec::with_capacity(workers);
    for i in 0..workers {
        let (tx, rx) = sync_channel::<Batch>(QUEUE_BATCHES);
        let shared = shared.clone();
        senders.push(tx);
        handles.push(
            std::thread::Builder::new()
                .name(format!("ingest-{i}"))
                .spawn(move || worker(rx, &shared))
                .context("starting an ingest thread")?,
        );
    }
    let poll_progress = progress.clone();
    let poll_thread = std::thread::Builder::new()
        .name("kafka-poll".into())
        .spawn(move || {
            let result = poll_loop(&consumer, &senders, &poll_progress, &shutdown);
            drop(senders);
            for h in handles {
                if h.join().is_err() {
                    warn!("an ingest thread panicked");
                }
            }
            store_progress(&consumer, &poll_progress, &mut HashMap::new());
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => info!("kafka: offsets committed"),
                // Nothing consumed yet, or the brokers are gone: the next
                // start resumes from the last commit that succeeded.
                Err(e) => warn!(error = %e, "kafka: final commit failed"),
            }
            if let Some(dl) = &shared.dead_letters {
                let _ = dl.producer.flush(Duration::from_secs(5));
            }
            result
        })
        .context("starting the kafka poll thread")?;
    Ok(KafkaSource {
        poll_thread,
        progress,
    })
}

fn poll_loop(
    consumer: &BaseConsumer<Context>,
    senders: &[SyncSender<Batch>],
    progress: &Progress,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut batches: Vec<Batch> = (0..senders.len()).map(|_| Batch::default()).collect();
    let mut topics: HashMap<String, Arc<str>> = HashMap::new();
    let mut stored: HashMap<(Arc<str>, i32), i64> = HashMap::new();
    let mut last_store = Instant::now();
    let mut last_error_log: Option<Instant> = None;
    while !shutdown.is_cancelled() {
        match consumer.poll(POLL_TIMEOUT) {
            None => {}
            Some(Err(e)) if last_error_log.is_none_or(|t| t.elapsed() > REJECT_LOG_INTERVAL) => {
                warn!(error = %e, "kafka: consume error");
                last_error_log = Some(Instant::now());
            }
            Some(Err(_)) => {}
            Some(Ok(m)) => {
                let topic = match topics.get(m.topic()) {
                    Some(t) => t.clone(),
                    None => {
                        let t: Arc<str> = Arc::from(m.topic());
                        topics.insert(m.topic().to_owned(), t.clone());
                        t
                    }
                };
                let index = worker_for(&topic, m.partition(), senders.len());
                let batch = &mut batches[index];
                batch
                    .data
                    .extend_from_slice(m.payload().unwrap_or_default());
                batch.items.push(Item {
                    topic,
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp_ms: m.timestamp().to_millis(),
                    end: batch.data.len(),
                });
                batch.started.get_or_insert_with(Instant::now);
                if batch.items.len() >= BATCH_RECORDS {
                    hand_on(&mut batches[index], &senders[index])?;
                }
            }
        }
        for (batch, tx) in batches.iter_mut().zip(senders) {
            if batch.started.is_some_and(|t| t.elapsed() >= BATCH_LINGER) {
                hand_on(batch, tx)?;
            }
        }
        if last_store.elapsed() >= STORE_INTERVAL {
            store_progress(consumer, progress, &mut stored);
            last_store = Instant::now();
        }
    }
    // Stop fetching; what was fetched is still applied.
    for (batch, tx) in batches.iter_mut().zip(senders) {
        hand_on(batch, tx)?;
    }
    Ok(())
}

fn hand_on(batch: &mut Batch, tx: &SyncSender<Batch>) -> anyhow::Result<()> {
    if batch.items.is_empty() {
        return Ok(());
    }
    tx.send(std::mem::take(batch))
        .map_err(|_| anyhow::anyhow!("an ingest thread stopped"))
}

/// Every partition goes to one worker, so it is applied in order.
fn worker_for(topic: &str, partition: i32, workers: usize) -> usize {
    let mut h = partition as u64;
    for b in topic.bytes() {
        h = h.wrapping_mul(31).wrapping_add(u64::from(b));
    }
    (h % workers as u64) as usize
}

/// Stores, for commit, the offsets the workers have applied since last time.
fn store_progress(
    consumer: &BaseConsumer<Context>,
    progress: &Progress,
    stored: &mut HashMap<(Arc<str>, i32), i64>,
) {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, next) in progress.snapshot() {
        let key = (topic, partition);
        if stored.get(&key) == Some(&next) {
            continue;
        }
        if tpl
            .add_partition_offset(&key.0, partition, Offset::Offset(next))
            .is_ok()
        {
            stored.insert(key, next);
        }
    }
    if tpl.count() == 0 {
        return;
    }
    if let Err(e) = consumer.store_offsets(&tpl) {
        // A partition revoked meanwhile: its new owner resumes from the last commit.
        warn!(error = %e, "kafka: storing applied offsets failed");
    }
}

fn worker(rx: Receiver<Batch>, shared: &WorkerShared) {
    let mut flows: Vec<Flow> = Vec::new();
    let mut reject_log = RejectLog::default();
    while let Ok(batch) = rx.recv() {
        let wall_now_ms = wall_now_ms();
        let mut start = 0;
        for item in &batch.items {
            let payload = &batch.data[start..item.end];
            start = item.end;
            let ingested = shared.engine.ingest(
                shared.format,
                payload,
                item.timestamp_ms,
                wall_now_ms,
                &mut flows,
            );
            if let Err(error) = ingested {
                reject_log.record(item, payload, &error);
                if let Some(dl) = &shared.dead_letters {
                    dl.send(item, payload, &error);
                    shared.metrics.dead_letters.inc();
                }
            }
            shared
                .progress
                .advance(&item.topic, item.partition, item.offset + 1);
        }
    }
}

/// Logs the first rejected record of every interval with a sample of its
/// bytes, and how many were rejected since.
#[derive(Default)]
struct RejectLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RejectLog {
    fn record(&mut self, item: &Item, payload: &[u8], error: &flow::DecodeError) {
        if self.last.is_some_and(|t| t.elapsed() < REJECT_LOG_INTERVAL) {
            self.suppressed += 1;
            return;
        }
        let sample = String::from_utf8_lossy(&payload[..payload.len().min(160)]).into_owned();
        warn!(
            topic = %item.topic,
            partition = item.partition,
            offset = item.offset,
            reason = error.reason(),
            suppressed = self.suppressed,
            sample,
            "record rejected: {error}"
        );
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }
}
