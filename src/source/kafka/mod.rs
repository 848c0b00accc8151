//! Flow records from Kafka: one poll thread, several worker threads, and
//! checkpoints that make every record count exactly once.
//!
//! The poll thread reads records in batches from the fetch queue that every
//! assigned partition is routed to (module `fetch`), and hands the batches
//! to the workers in turn. Each worker decodes its batches and applies each
//! flow on the worker that owns the flow's endpoint (module `worker`): the
//! engine's state is sharded, and each worker owns a range of shards, so
//! workers never contend for one endpoint's cache lines. Once every part
//! of a batch is applied, the batch's partitions move forward in
//! [`Progress`]. How far the poll thread reads ahead is bounded
//! (`MAX_IN_FLIGHT_PER_WORKER`).
//!
//! Every `state.checkpoint_interval`, and at shutdown, the poll thread takes
//! a consistent cut (it hands on what it has read and waits until nothing
//! is in flight), writes the engine's state and those offsets as one
//! checkpoint file, and only then commits the offsets to Kafka (for lag
//! tools). On start the checkpoint is restored and each partition resumes
//! from its checkpointed offset; records below it are skipped if delivered
//! again. A crash (kill -9) therefore loses nothing and counts nothing
//! twice: the state and the offsets always move together.
//!
//! Rejected records are counted by reason, logged rate-limited with a sample,
//! copied to `kafka.dead_letter_topic` when set, and their offsets advance
//! like any other: bad input never stops a partition.

mod context;
pub mod fetch;
mod in_flight;
mod log_limit;
pub mod progress;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::RDKafkaErrorCode;
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
use fetch::{FetchQueue, Fetched};
use in_flight::InFlight;
use log_limit::LogLimit;
pub use progress::Progress;
use worker::{Batch, DeadLetters, Item, Shared, Work};

/// Records handed to a worker at once, at most, and read from the fetch
/// queue a call. A batch also goes on after a short linger (5 ms) when traffic
/// is slow, so freshness does not depend on it. (2048 was measured too, in
/// docs/benchmarks.md: no clear gain.)
pub const BATCH_RECORDS: usize = 512;
// A batch numbers its topics in a u16 (`Batch::topic_index`).
const _: () = assert!(BATCH_RECORDS <= u16::MAX as usize);
/// Payload bytes a new batch reserves room for, at most: a full batch of
/// JSON records of 2 KiB each.
const BATCH_RESERVED_BYTES: usize = 2048 * BATCH_RECORDS;
/// A batch waits at most this long for more records before it is handed on.
const BATCH_LINGER: Duration = Duration::from_millis(5);
/// How often the poll thread routes every assigned partition to the fetch
/// queue again, so that a partition whose forwarding librdkafka dropped
/// stalls for at most this long.
const REROUTE_INTERVAL: Duration = Duration::from_secs(1);
/// How long one poll waits for a record when none is queued.
const POLL_TIMEOUT: Duration = Duration::from_millis(5);
/// Pieces of work in flight per worker (batches of records, and the flows
/// workers pass each other) before the poll thread waits: enough that one
/// partition's burst of records does not stall the poll thread while
/// another worker idles.
const MAX_IN_FLIGHT_PER_WORKER: usize = 16;
/// A drain (before a checkpoint, a revoke or the stop) waits at most this
/// long for the workers to apply what was read. What is in flight is
/// bounded (`MAX_IN_FLIGHT_PER_WORKER` batches a worker) and applied in
/// milliseconds, so only a stuck worker reaches it; the revoke callback
/// waits in it, so it also bounds how long a rebalance is held up.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// A Kafka client or consume error is logged at most this often; the next
/// line says how many were held back.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Where and how often checkpoints are written.
#[derive(Clone, Debug)]
pub struct Checkpointing {
    pub store: Store,
    pub interval: Duration,
}

/// A subscribed consumer, ready to run: [`KafkaSource::run`] is the poll
/// thread's body, for the caller to run on a thread of its own (the
/// service's supervisor does).
pub struct KafkaSource {
    consumer: Arc<BaseConsumer<Context>>,
    fetch: Arc<FetchQueue<Context>>,
    core: Arc<Core>,
    receivers: Vec<Receiver<Work>>,
    shutdown: CancellationToken,
}

impl KafkaSource {
    /// Starts the ingest threads and polls until the shutdown token is
    /// cancelled or a part of the source fails; then stops fetching,
    /// applies what was fetched, checkpoints and commits (unless the state
    /// lacks part of what was read: then the last checkpoint stands), and
    /// stops the ingest threads. An error says what failed first.
    pub fn run(self) -> anyhow::Result<()> {
        let KafkaSource {
            consumer,
            fetch,
            core,
            receivers,
            shutdown,
        } = self;
        let handles = core.start_workers(receivers)?;
        let result = poll_loop(&consumer, &fetch, &core, &shutdown);
        // Stop fetching; what was fetched is applied, then checkpointed.
        let drained = core.drain();
        let stopped = core.stop_workers(handles);
        let checkpointed = match (&drained, &stopped) {
            (Ok(()), Ok(())) => core.checkpoint(&consumer, CommitMode::Sync),
            _ => Err(anyhow::anyhow!(
                "not checkpointed at shutdown: the last checkpoint stands"
            )),
        };
        if let Some(dl) = &core.shared.dead_letters {
            let _ = dl.producer.flush(Duration::from_secs(5));
        }
        // The first failure is the cause; what followed from it comes after.
        let failure = core.shared.failure();
        match failure {
            Some(failure) => Err(failure.context(match checkpointed {
                Ok(()) => "stopped after a last checkpoint".to_owned(),
                Err(e) => format!("stopped without a last checkpoint ({e:#})"),
            })),
            None => result.and(drained).and(stopped).and(checkpointed),
        }
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

/// Creates the consumer and subscribes to `config.topics`, for
/// [`KafkaSource::run`] to poll with `workers` ingest threads until
/// `shutdown`. `progress` holds the offsets restored from a checkpoint
/// (empty on a first start).
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
    let shared = Arc::new(Shared {
        engine,
        progress: progress.clone(),
        format: config.format,
        dead_letters,
        metrics: metrics.clone(),
        in_flight: Arc::new(InFlight::default()),
        broken: AtomicBool::new(false),
        failure: Mutex::new(None),
    });
    let workers = workers.max(1);
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..workers).map(|_| channel::<Work>()).unzip();
    let core = Arc::new(Core {
        shared,
        health: health.clone(),
        checkpointing,
        dispatch: Mutex::new(Dispatch {
            batch: Batch::default(),
            next: 0,
            senders,
        }),
    });
    let context = Context {
        health,
        metrics,
        core: core.clone(),
        error_log: Mutex::new(LogLimit::new(ERROR_LOG_INTERVAL)),
        assigned: AtomicUsize::new(0),
        fetch: OnceLock::new(),
    };
    let consumer: Arc<BaseConsumer<Context>> = Arc::new(
        consumer_config(config)
            .create_with_context(context)
            .context("creating the kafka consumer")?,
    );
    // Owned by the poll thread; the context only routes partitions to it
    // while it exists.
    let fetch = Arc::new(FetchQueue::new(&consumer).context("creating the kafka fetch queue")?);
    let _ = consumer.context().fetch.set(Arc::downgrade(&fetch));
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .with_context(|| format!("subscribing to {topics:?}"))?;
    Ok(KafkaSource {
        consumer,
        fetch,
        core,
        receivers,
        shutdown,
    })
}

/// Records read and not yet handed to a worker, and the workers' queues.
///
/// Batches go to the workers in turn, whatever their partitions: decoding
/// is then spread evenly even when records come in long runs of one
/// partition, or from a topic of one partition. Which worker applies a
/// flow is decided by its endpoint, not here (see `worker`).
struct Dispatch {
    batch: Batch,
    /// The worker the next batch goes to.
    next: usize,
    senders: Vec<Sender<Work>>,
}

impl Dispatch {
    /// Copies a record into the batch, handing the batch on once full.
    fn add(
        &mut self,
        topics: &mut Topics,
        record: Polled<'_>,
        now: Instant,
        in_flight: &InFlight,
    ) -> anyhow::Result<()> {
        let batch = &mut self.batch;
        batch.data.extend_from_slice(record.payload);
        let topic = batch.topic_index(topics.intern(record.topic));
        batch.items.push(Item {
            topic,
            partition: record.partition,
            offset: record.offset,
            timestamp_ms: record.timestamp_ms,
            end: batch.data.len(),
        });
        batch.started.get_or_insert(now);
        if batch.items.len() >= BATCH_RECORDS {
            self.hand_on(in_flight)?;
        }
        Ok(())
    }

    /// Hands the batch, if it holds anything, to the next worker.
    fn hand_on(&mut self, in_flight: &InFlight) -> anyhow::Result<()> {
        if self.batch.items.is_empty() {
            return Ok(());
        }
        if self.senders.is_empty() {
            anyhow::bail!("the ingest threads were stopped");
        }
        let index = self.next % self.senders.len();
        self.next = index + 1;
        // The next batch gets room for a full batch of records as big, on
        // average, as this one's (within a bound: a few huge records must
        // not make every batch reserve hundreds of MiB).
        let average = self.batch.data.len().div_ceil(self.batch.items.len());
        let bytes = (average * BATCH_RECORDS).min(BATCH_RESERVED_BYTES);
        let next = Batch::with_capacity(BATCH_RECORDS, bytes);
        in_flight.start();
        self.senders[index]
            .send(Work::Records(std::mem::replace(&mut self.batch, next)))
            .map_err(|_| {
                in_flight.finish();
                anyhow::anyhow!("an ingest thread stopped")
            })
    }
}

/// What the poll loop and librdkafka's callbacks (which run inside
/// `poll`, on the same thread) share.
pub(super) struct Core {
    shared: Arc<Shared>,
    /// Where a failing checkpoint is shown (`/readyz`).
    health: Arc<Health>,
    checkpointing: Option<Checkpointing>,
    dispatch: Mutex<Dispatch>,
}

impl Core {
    fn lock_dispatch(&self) -> std::sync::MutexGuard<'_, Dispatch> {
        self.dispatch.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn progress(&self) -> &Progress {
        &self.shared.progress
    }

    /// Hands every pending record to the workers and waits until they have
    /// applied all of it: the consistent cut a checkpoint or a revoke needs.
    /// Called on the poll thread, so nothing new is handed on meanwhile.
    /// Fails at once if an ingest thread has failed: what it held is lost.
    pub(super) fn drain(&self) -> anyhow::Result<()> {
        self.shared.check()?;
        self.lock_dispatch().hand_on(&self.shared.in_flight)?;
        if !self
            .shared
            .in_flight
            .wait_until_at_most(0, Instant::now() + DRAIN_DEADLINE)
        {
            self.shared.check()?;
            anyhow::bail!("ingest threads did not drain within {DRAIN_DEADLINE:?}");
        }
        Ok(())
    }

    /// Starts one worker per receiver; each can pass flows to every other.
    /// If one cannot be started, those started are stopped again.
    fn start_workers(&self, receivers: Vec<Receiver<Work>>) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let peers = self.lock_dispatch().senders.clone();
        let mut handles = Vec::with_capacity(receivers.len());
        for (i, rx) in receivers.into_iter().enumerate() {
            let (shared, peers) = (self.shared.clone(), peers.clone());
            let started = std::thread::Builder::new()
                .name(format!("ingest-{i}"))
                .spawn(move || worker::run(i, rx, peers, &shared));
            match started {
                Ok(handle) => handles.push(handle),
                Err(e) => {
                    let _ = self.stop_workers(handles);
                    return Err(e).context("starting an ingest thread");
                }
            }
        }
        Ok(handles)
    }

    /// Stops the workers (after a drain: nothing is in flight) and waits for them.
    fn stop_workers(&self, handles: Vec<JoinHandle<()>>) -> anyhow::Result<()> {
        for sender in self.lock_dispatch().senders.drain(..) {
            let _ = sender.send(Work::Stop);
        }
        let mut panicked = 0;
        for h in handles {
            if h.join().is_err() {
                panicked += 1;
            }
        }
        if panicked > 0 {
            error!(panicked, "ingest threads panicked");
            anyhow::bail!("{panicked} ingest thread(s) panicked");
        }
        Ok(())
    }

    /// Writes a checkpoint of a consistent cut (after a drain), then
    /// commits its offsets.
    pub(super) fn checkpoint<C: rdkafka::consumer::ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        mode: CommitMode,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        if self.shared.broken.load(Ordering::Acquire) {
            anyhow::bail!("an ingest thread stopped mid-batch: no checkpoint is written");
        }
        self.drain()?;
        let offsets = self.shared.progress.snapshot();
        let Some(c) = &self.checkpointing else {
            // No state dir: nothing to write, only the offsets to commit.
            commit(consumer, &offsets, mode);
            return Ok(());
        };
        let bytes = checkpoint::encode(&self.shared.engine, &offsets, wall_now_ms());
        let metrics = &self.shared.metrics;
        let path = c.store.write(&bytes).map_err(|e| {
            metrics.record_checkpoint_failure();
            self.health.set_checkpoint_failing(true);
            error!(dir = %c.store.dir().display(), error = %e, "checkpoint failed; the previous one stands, the next attempt is in state.checkpoint_interval");
            anyhow::anyhow!("writing a checkpoint in {}: {e}", c.store.dir().display())
        })?;
        if let Some(log) = self.shared.engine.changes() {
            log.mark_durable();
        }
        metrics.record_checkpoint_success(started.elapsed(), bytes.len() as u64);
        self.health.set_checkpoint_failing(false);
        tracing::debug!(path = %path.display(), bytes = bytes.len(), elapsed = ?started.elapsed(), "checkpoint written");
        commit(consumer, &offsets, mode);
        Ok(())
    }
}

fn poll_loop(
    consumer: &BaseConsumer<Context>,
    fetch: &FetchQueue<Context>,
    core: &Core,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut topics = Topics::default();
    let mut last_checkpoint = Instant::now();
    let mut last_reroute = Instant::now();
    let mut error_log = LogLimit::new(ERROR_LOG_INTERVAL);
    let interval = core.checkpointing.as_ref().map(|c| c.interval);
    let mut fetched = Fetched::default();
    let in_flight = &core.shared.in_flight;
    let max_in_flight = MAX_IN_FLIGHT_PER_WORKER * core.lock_dispatch().senders.len();
    loop {
        // An ingest thread that failed stops the source.
        core.shared.check()?;
        // Backpressure: once the workers are `max_in_flight` behind, wait
        // until they are half that (at most a poll's time, so events are
        // still served), rather than waking for every batch they finish.
        let room = in_flight.count() < max_in_flight
            || in_flight.wait_until_at_most(max_in_flight / 2, Instant::now() + POLL_TIMEOUT);
        // Events first (rebalances, statistics, commits, errors; served by
        // the context inside `poll`), with the records of any partition
        // that is not routed to the fetch queue.
        let mut unrouted = Vec::new();
        while unrouted.len() < BATCH_RECORDS {
            match consumer.poll(Duration::ZERO) {
                None => break,
                Some(Ok(m)) => unrouted.push(m),
                Some(Err(e)) => {
                    if let Some(suppressed) = error_log.admit(Instant::now()) {
                        warn!(error = %e, suppressed, "kafka: consume error");
                    }
                }
            }
        }
        if room {
            let wait = if unrouted.is_empty() {
                POLL_TIMEOUT
            } else {
                Duration::ZERO
            };
            fetch.poll(wait, BATCH_RECORDS, &mut fetched);
        }
        let now = Instant::now();
        if shutdown.is_cancelled() {
            break;
        }
        let mut dispatch = core.lock_dispatch();
        for m in &unrouted {
            let record = Polled {
                topic: m.topic(),
                partition: m.partition(),
                offset: m.offset(),
                timestamp_ms: m.timestamp().to_millis(),
                payload: m.payload().unwrap_or_default(),
            };
            dispatch.add(&mut topics, record, now, in_flight)?;
        }
        // The topic's name, read once per run of records from one topic.
        let mut topic: Option<(usize, &str)> = None;
        for r in fetched.iter() {
            if let Some(code) = r.error() {
                if code != RDKafkaErrorCode::PartitionEOF {
                    if let Some(suppressed) = error_log.admit(now) {
                        warn!(error = %code, topic = r.topic(), partition = r.partition(), suppressed, "kafka: consume error");
                    }
                }
                continue;
            }
            let name = match topic {
                Some((id, name)) if id == r.topic_id() => name,
                _ => {
                    let name = r.topic();
                    topic = Some((r.topic_id(), name));
                    name
                }
            };
            let record = Polled {
                topic: name,
                partition: r.partition(),
                offset: r.offset(),
                timestamp_ms: r.timestamp_ms(),
                payload: r.payload(),
            };
            dispatch.add(&mut topics, record, now, in_flight)?;
        }
        if dispatch
            .batch
            .started
            .is_some_and(|t| now.duration_since(t) >= BATCH_LINGER)
        {
            dispatch.hand_on(in_flight)?;
        }
        drop(dispatch);
        // Copied into batches: librdkafka's buffers go back.
        fetched.clear();
        drop(unrouted);
        if now.duration_since(last_reroute) >= REROUTE_INTERVAL {
            reroute_assigned(consumer, fetch);
            last_reroute = now;
        }
        if interval.is_some_and(|i| now.duration_since(last_checkpoint) >= i) {
            // A failed checkpoint is logged; the next one tries again, and
            // until then the previous one still stands.
            let _ = core.checkpoint(consumer, CommitMode::Async);
            last_checkpoint = Instant::now();
        }
    }
    Ok(())
}

/// Routes every assigned partition to the fetch queue again. A rebalance
/// routes partitions before librdkafka fetches them, and that lasts until
/// they are revoked; but librdkafka drops the routing whenever it stops
/// fetching a partition (see [`FetchQueue::route`]), so should a partition
/// be restarted some other way, its records would wait unread. (Whether a
/// partition's routing was dropped cannot be read: librdkafka's queue
/// length follows the routing.)
fn reroute_assigned(consumer: &BaseConsumer<Context>, fetch: &FetchQueue<Context>) {
    let Ok(assigned) = consumer.assignment() else {
        return;
    };
    for e in assigned.elements() {
        fetch.route(e.topic(), e.partition());
    }
}

/// A record as the poll thread reads it, from either queue.
struct Polled<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    payload: &'a [u8],
}

/// Topic names interned once, so a batch holds a reference to its topic
/// instead of a copy per record; the last one is remembered, since records
/// mostly come many at a time from one topic.
#[derive(Default)]
struct Topics {
    interned: HashMap<String, Arc<str>>,
    last: Option<Arc<str>>,
}

impl Topics {
    fn intern(&mut self, topic: &str) -> &Arc<str> {
        if self.last.as_ref().is_none_or(|last| **last != *topic) {
            let interned = match self.interned.get(topic) {
                Some(t) => t.clone(),
                None => {
                    let t: Arc<str> = Arc::from(topic);
                    self.interned.insert(topic.to_owned(), t.clone());
                    t
                }
            };
            self.last = Some(interned);
        }
        self.last.as_ref().expect("set above")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn dispatch_to_one_worker() -> (Dispatch, Receiver<Work>) {
        let (sender, receiver) = channel();
        let dispatch = Dispatch {
            batch: Batch::default(),
            next: 0,
            senders: vec![sender],
        };
        (dispatch, receiver)
    }

    fn fill_one_batch(dispatch: &mut Dispatch, payload: &[u8], in_flight: &InFlight) {
        let mut topics = Topics::default();
        for offset in 0..BATCH_RECORDS as i64 {
            let record = Polled {
                topic: "flows",
                partition: 0,
                offset,
                timestamp_ms: None,
                payload,
            };
            dispatch
                .add(&mut topics, record, Instant::now(), in_flight)
                .unwrap();
        }
    }

    #[test]
    fn a_new_batch_has_room_for_a_full_batch_like_the_last() {
        let (mut dispatch, receiver) = dispatch_to_one_worker();
        let in_flight = InFlight::default();
        fill_one_batch(&mut dispatch, &[7; 72], &in_flight);
        let Ok(Work::Records(sent)) = receiver.try_recv() else {
            panic!("a full batch is handed on");
        };
        assert_eq!(sent.items.len(), BATCH_RECORDS);
        assert_eq!(sent.data.len(), 72 * BATCH_RECORDS);
        let next = &dispatch.batch;
        assert!(next.items.is_empty() && next.data.is_empty());
        assert!(next.items.capacity() >= BATCH_RECORDS);
        assert!(next.data.capacity() >= 72 * BATCH_RECORDS);
    }

    #[test]
    fn huge_records_do_not_make_every_batch_reserve_their_size() {
        let (mut dispatch, receiver) = dispatch_to_one_worker();
        let in_flight = InFlight::default();
        fill_one_batch(&mut dispatch, &vec![7; 64 * 1024], &in_flight);
        assert!(matches!(receiver.try_recv(), Ok(Work::Records(_))));
        let reserved = dispatch.batch.data.capacity();
        assert!(reserved >= BATCH_RESERVED_BYTES, "reserved {reserved}");
        assert!(reserved < 64 * 1024 * BATCH_RECORDS, "reserved {reserved}");
    }
}
