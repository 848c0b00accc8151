//! Flow records from Kafka: one poll thread, several worker threads, and
//! checkpoints that make every record count exactly once.
//!
//! The poll thread reads records with librdkafka and hands them, in batches,
//! to worker threads chosen by partition (module `worker`), so every partition is
//! applied in order by one worker while different partitions are decoded
//! and applied in parallel (the engine's state is sharded: no global lock).
//! A worker records the next offset of every partition it has applied in
//! [`Progress`].
//!
//! Every `state.checkpoint_interval`, and at shutdown, the poll thread takes
//! a consistent cut (no batch mid-apply), writes the engine's state and
//! those offsets as one checkpoint file, and only then commits the offsets
//! to Kafka (for lag tools). On start the checkpoint is restored and each
//! partition resumes from its checkpointed offset; records below it are
//! skipped if delivered again. A crash (kill -9) therefore loses nothing and
//! counts nothing twice: the state and the offsets always move together.
//!
//! Rejected records are counted by reason, logged rate-limited with a sample,
//! copied to `kafka.dead_letter_topic` when set, and their offsets advance
//! like any other: bad input never stops a partition.

mod context;
mod log_limit;
pub mod progress;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::KafkaConfig;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::state::checkpoint::{self, PartitionOffset, Store};
use crate::state::{wall_now_ms, Engine};
use context::Context;
use log_limit::LogLimit;
pub use progress::Progress;
use worker::{Batch, DeadLetters, Item, Shared};

/// Records handed to a worker at once, at most.
const BATCH_RECORDS: usize = 512;
/// A batch waits at most this long for more records before it is handed on.
const BATCH_LINGER: Duration = Duration::from_millis(5);
/// How long one poll waits for a record.
const POLL_TIMEOUT: Duration = Duration::from_millis(5);
/// While records keep coming, the poll thread reads the clock and the
/// shutdown token once per this many (a batch's linger then runs late by
/// at most the time to read them: about 20 µs).
const CLOCK_RECORDS: u32 = 64;
/// Batches queued per worker before the poll thread waits (backpressure).
const QUEUE_BATCHES: usize = 4;
/// A revoke waits at most this long for the workers to apply what was read.
const DRAIN_DEADLINE: Duration = Duration::from_secs(30);
/// A Kafka client or consume error is logged at most this often; the next
/// line says how many were held back.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Where and how often checkpoints are written.
#[derive(Clone, Debug)]
pub struct Checkpointing {
    pub store: Store,
    pub interval: Duration,
}

/// The running consumer: stop it with the token given to [`start`], then [`KafkaSource::join`].
pub struct KafkaSource {
    poll_thread: JoinHandle<anyhow::Result<()>>,
    /// What the workers have applied, per partition.
    pub progress: Arc<Progress>,
}

impl KafkaSource {
    /// Waits until the consumer has drained, checkpointed and committed.
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
        // The checkpoint holds the offsets; commits follow checkpoints.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("statistics.interval.ms", "1000");
    for (k, v) in &config.librdkafka {
        cc.set(k, v);
    }
    cc
}

/// Subscribes to `config.topics` and starts the poll thread and `workers`
/// worker threads. `progress` holds the offsets restored from a checkpoint
/// (empty on a first start). Returns once the consumer is created.
#[allow(clippy::too_many_arguments)]
pub fn start(
    config: &KafkaConfig,
    workers: usize,
    engine: Arc<Engine>,
    progress: Arc<Progress>,
    checkpointing: Option<Checkpointing>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> anyhow::Result<KafkaSource> {
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
    if let Some(c) = &checkpointing {
        metrics.set_checkpoint_interval(c.interval);
    }
    let in_flight = Arc::new(AtomicUsize::new(0));
    let shared = Arc::new(Shared {
        engine: engine.clone(),
        progress: progress.clone(),
        format: config.format,
        dead_letters,
        metrics: metrics.clone(),
        in_flight: in_flight.clone(),
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
                .spawn(move || worker::run(rx, &shared))
                .context("starting an ingest thread")?,
        );
    }
    let core = Arc::new(Core {
        engine,
        progress: progress.clone(),
        checkpointing,
        dispatch: Mutex::new(Dispatch {
            batches: (0..workers).map(|_| Batch::default()).collect(),
            senders,
        }),
        in_flight,
        metrics: metrics.clone(),
    });
    let context = Context {
        health,
        metrics,
        core: core.clone(),
        error_log: Mutex::new(LogLimit::new(ERROR_LOG_INTERVAL)),
    };
    let consumer: BaseConsumer<Context> = consumer_config(config)
        .create_with_context(context)
        .context("creating the kafka consumer")?;
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .with_context(|| format!("subscribing to {topics:?}"))?;
    let poll_thread = std::thread::Builder::new()
        .name("kafka-poll".into())
        .spawn(move || {
            let result = poll_loop(&consumer, &core, &shutdown);
            // Stop fetching; what was fetched is applied, then checkpointed.
            let handed_on = core.lock_dispatch().hand_on_all(&core.in_flight);
            core.lock_dispatch().senders.clear();
            for h in handles {
                if h.join().is_err() {
                    error!("an ingest thread panicked");
                }
            }
            let checkpointed = core.checkpoint(&consumer, CommitMode::Sync);
            if let Some(dl) = &shared.dead_letters {
                let _ = dl.producer.flush(Duration::from_secs(5));
            }
            result.and(handed_on).and(checkpointed)
        })
        .context("starting the kafka poll thread")?;
    Ok(KafkaSource {
        poll_thread,
        progress,
    })
}

/// Records read and not yet handed to a worker, and the workers' queues.
struct Dispatch {
    batches: Vec<Batch>,
    senders: Vec<SyncSender<Batch>>,
}

impl Dispatch {
    fn hand_on(&mut self, index: usize, in_flight: &AtomicUsize) -> anyhow::Result<()> {
        let batch = &mut self.batches[index];
        if batch.items.is_empty() {
            return Ok(());
        }
        in_flight.fetch_add(1, Ordering::AcqRel);
        self.senders[index]
            .send(std::mem::take(batch))
            .map_err(|_| {
                in_flight.fetch_sub(1, Ordering::AcqRel);
                anyhow::anyhow!("an ingest thread stopped")
            })
    }

    fn hand_on_all(&mut self, in_flight: &AtomicUsize) -> anyhow::Result<()> {
        for index in 0..self.batches.len() {
            self.hand_on(index, in_flight)?;
        }
        Ok(())
    }
}

/// What the poll loop and librdkafka's callbacks (which run inside
/// `poll`, on the same thread) share.
pub(super) struct Core {
    engine: Arc<Engine>,
    progress: Arc<Progress>,
    checkpointing: Option<Checkpointing>,
    dispatch: Mutex<Dispatch>,
    in_flight: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl Core {
    fn lock_dispatch(&self) -> std::sync::MutexGuard<'_, Dispatch> {
        self.dispatch.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands every pending record to the workers and waits until they have
    /// applied all of it (before partitions are revoked).
    pub(super) fn drain(&self) -> anyhow::Result<()> {
        self.lock_dispatch().hand_on_all(&self.in_flight)?;
        let deadline = Instant::now() + DRAIN_DEADLINE;
        while self.in_flight.load(Ordering::Acquire) > 0 {
            if Instant::now() > deadline {
                anyhow::bail!("ingest threads did not drain within {DRAIN_DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Writes a checkpoint of a consistent cut, then commits its offsets.
    pub(super) fn checkpoint<C: rdkafka::consumer::ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        mode: CommitMode,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let Some(c) = &self.checkpointing else {
            // No state dir: nothing to write, only the offsets to commit.
            let offsets = self.progress.consistent(|offsets| offsets);
            commit(consumer, &offsets, mode);
            return Ok(());
        };
        let (bytes, offsets) = self.progress.consistent(|offsets| {
            (
                checkpoint::encode(&self.engine, &offsets, wall_now_ms()),
                offsets,
            )
        });
        let path = c.store.write(&bytes).map_err(|e| {
            self.metrics.record_checkpoint_failure();
            error!(dir = %c.store.dir().display(), error = %e, "checkpoint failed");
            anyhow::anyhow!("writing a checkpoint in {}: {e}", c.store.dir().display())
        })?;
        self.metrics
            .record_checkpoint_success(started.elapsed(), bytes.len() as u64);
        tracing::debug!(path = %path.display(), bytes = bytes.len(), elapsed = ?started.elapsed(), "checkpoint written");
        commit(consumer, &offsets, mode);
        Ok(())
    }
}

fn poll_loop(
    consumer: &BaseConsumer<Context>,
    core: &Core,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut route = Route::default();
    let mut last_checkpoint = Instant::now();
    let mut error_log = LogLimit::new(ERROR_LOG_INTERVAL);
    let interval = core.checkpointing.as_ref().map(|c| c.interval);
    let mut now = Instant::now();
    // Records since the clock was last read.
    let mut unclocked = 0;
    loop {
        let polled = consumer.poll(POLL_TIMEOUT);
        // The clock (for batch start, linger and checkpoint) and the
        // shutdown token (a mutex) are read when the queue ran dry, and
        // every CLOCK_RECORDS records while it keeps delivering.
        unclocked += 1;
        let clocked = polled.is_none() || unclocked >= CLOCK_RECORDS;
        if clocked {
            now = Instant::now();
            unclocked = 0;
            if shutdown.is_cancelled() {
                break;
            }
        }
        let mut dispatch = core.lock_dispatch();
        match polled {
            None => {}
            Some(Err(e)) => {
                if let Some(suppressed) = error_log.admit(now) {
                    warn!(error = %e, suppressed, "kafka: consume error");
                }
            }
            Some(Ok(m)) => {
                let (topic, index) = route.of(m.topic(), m.partition(), dispatch.senders.len());
                let batch = &mut dispatch.batches[index];
                batch
                    .data
                    .extend_from_slice(m.payload().unwrap_or_default());
                let topic = batch.topic_index(topic);
                batch.items.push(Item {
                    topic,
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp_ms: m.timestamp().to_millis(),
                    end: batch.data.len(),
                });
                batch.started.get_or_insert(now);
                if batch.items.len() >= BATCH_RECORDS {
                    dispatch.hand_on(index, &core.in_flight)?;
                }
            }
        }
        if !clocked {
            continue;
        }
        for index in 0..dispatch.batches.len() {
            if dispatch.batches[index]
                .started
                .is_some_and(|t| now.duration_since(t) >= BATCH_LINGER)
            {
                dispatch.hand_on(index, &core.in_flight)?;
            }
        }
        drop(dispatch);
        if interval.is_some_and(|i| now.duration_since(last_checkpoint) >= i) {
            // A failed checkpoint is logged; the next one tries again, and
            // until then the previous one still stands.
            let _ = core.checkpoint(consumer, CommitMode::Async);
            last_checkpoint = Instant::now();
        }
    }
    Ok(())
}

/// Which worker a record goes to, remembered for the last partition seen:
/// records mostly come many at a time from one partition.
#[derive(Default)]
struct Route {
    /// Interned topic names.
    topics: HashMap<String, Arc<str>>,
    last: Option<(Arc<str>, i32, usize)>,
}

impl Route {
    /// The interned topic and the worker for a record of `topic`/`partition`.
    fn of(&mut self, topic: &str, partition: i32, workers: usize) -> (&Arc<str>, usize) {
        let same = self
            .last
            .as_ref()
            .is_some_and(|(last, p, _)| *p == partition && **last == *topic);
        if !same {
            let interned = match self.topics.get(topic) {
                Some(t) => t.clone(),
                None => {
                    let t: Arc<str> = Arc::from(topic);
                    self.topics.insert(topic.to_owned(), t.clone());
                    t
                }
            };
            let index = worker::worker_for(&interned, partition, workers);
            self.last = Some((interned, partition, index));
        }
        let (interned, _, index) = self.last.as_ref().expect("set above");
        (interned, *index)
    }
}

/// Commits checkpointed offsets so lag tools see them; only for the
/// partitions assigned here, never over another consumer's progress.
fn commit<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    offsets: &[PartitionOffset],
    mode: CommitMode,
) {
    let Ok(assigned) = consumer.assignment() else {
        return;
    };
    let mut tpl = TopicPartitionList::new();
    for o in offsets {
        if assigned.find_partition(&o.topic, o.partition).is_some() {
            let _ = tpl.add_partition_offset(&o.topic, o.partition, Offset::Offset(o.next_offset));
        }
    }
    if tpl.count() == 0 {
        return;
    }
    match consumer.commit(&tpl, mode) {
        Ok(()) if matches!(mode, CommitMode::Sync) => {
            info!(partitions = tpl.count(), "kafka: offsets committed")
        }
        Ok(()) => {}
        // The brokers are away or the partitions moved: the checkpoint
        // still holds the offsets; lag tools catch up at the next commit.
        Err(e) => warn!(error = %e, "kafka: committing checkpointed offsets failed"),
    }
}
