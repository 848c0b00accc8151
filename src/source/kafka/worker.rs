//! Ingest workers: each decodes (`flow::decode`) the batches of records the poll thread
//! hands it (batches go to the workers in turn) and applies every flow on
//! the worker that owns the flow's endpoint
//! ([`Engine::owner`]): flows of another worker's endpoints are passed to it
//! in one [`Handoff`] per batch. So no two workers ever write to the same
//! endpoint state or take the same shard lock, and those cache lines stay
//! on one core. Also here: dead-letter copies and rate-limited logs of
//! rejected records.
//!
//! A batch of records is applied once its decoding worker and every worker
//! it passed flows to are done with it; the last of them moves the batch's
//! partitions forward in [`Progress`]. Checkpoints and revokes first wait
//! until no work is in flight (`Core::drain`), so a cut never falls between
//! the parts of a batch.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};
use tracing::{error, warn};

use super::in_flight::InFlight;
use super::log_limit::LogLimit;
use super::progress::Progress;
use crate::flow::{self, DecodeError, Flow, Format};
use crate::metrics::{IngestRecorder, Metrics};
use crate::state::{wall_now_ms, Engine, Prepared};

/// A rejected record is logged at most this often per worker (the rest are counted).
const REJECT_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// What a worker is given to do.
pub(super) enum Work {
    /// Records read by the poll thread, for this worker to decode.
    Records(Batch),
    /// Flows another worker decoded, of endpoints this worker owns.
    Flows(Handoff),
    /// Exit; sent once nothing is in flight.
    Stop,
}

/// Records for one worker: payloads back to back in one buffer.
#[derive(Default)]
pub(super) struct Batch {
    pub data: Vec<u8>,
    pub items: Vec<Item>,
    /// The topics of the items, each once per run of items from it.
    pub topics: Vec<Arc<str>>,
    pub started: Option<Instant>,
}

impl Batch {
    /// An empty batch with room for `records` records of `bytes` payload
    /// bytes in all, so that filling it does not grow its buffers again
    /// and again (each growth a `realloc` and a copy, on the poll thread).
    pub fn with_capacity(records: usize, bytes: usize) -> Batch {
        Batch {
            data: Vec::with_capacity(bytes),
            items: Vec::with_capacity(records),
            topics: Vec::new(),
            started: None,
        }
    }

    /// The index in [`Batch::topics`] for a next item from `topic`: a
    /// batch holds a topic's name once, not a reference per record (whose
    /// count every thread would update).
    pub fn topic_index(&mut self, topic: &Arc<str>) -> u16 {
        match self.topics.last() {
            Some(last) if Arc::ptr_eq(last, topic) => {}
            _ => self.topics.push(topic.clone()),
        }
        u16::try_from(self.topics.len() - 1).expect("a batch holds fewer records than u16::MAX")
    }
}

pub(super) struct Item {
    /// Index in the batch's `topics`.
    pub topic: u16,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    /// End of this record's payload in [`Batch::data`].
    pub end: usize,
}

/// Flows of one batch that another worker owns.
pub(super) struct Handoff {
    flows: Vec<Prepared>,
    done: Arc<BatchDone>,
}

/// The parts of one batch still being applied, and where its partitions
/// stand once they all are.
struct BatchDone {
    remaining: AtomicUsize,
    /// (topic, partition, next offset) for every partition of the batch.
    next: Vec<(Arc<str>, i32, i64)>,
}

impl BatchDone {
    /// One part is applied; the last one moves the partitions forward.
    fn finish(&self, progress: &Progress) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            for (topic, partition, next) in &self.next {
                progress.advance(topic, *partition, *next);
            }
        }
    }
}

/// What the workers share.
pub(super) struct Shared {
    pub engine: Arc<Engine>,
    pub progress: Arc<Progress>,
    pub format: Format,
    pub dead_letters: Option<DeadLetters>,
    pub metrics: Arc<Metrics>,
    /// Work handed on and not yet finished (see [`super::Core::drain`]).
    pub in_flight: Arc<InFlight>,
    /// Set when a worker could not pass flows on (another worker is gone):
    /// the state may then lack part of a batch, so no checkpoint is written.
    pub broken: AtomicBool,
    /// The first failure of an ingest thread (a panic), which stops the source.
    pub failure: Mutex<Option<String>>,
}

impl Shared {
    /// Records that an ingest thread failed: the state now lacks part of
    /// what was read, so nothing more is checkpointed, and whoever waits
    /// for the workers stops waiting.
    pub fn fail(&self, what: String) {
        error!("{what}");
        self.broken.store(true, Ordering::Release);
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        failure.get_or_insert(what);
        drop(failure);
        self.in_flight.abandon();
    }

    /// The first failure of an ingest thread, if one failed.
    pub fn failure(&self) -> Option<anyhow::Error> {
        let failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        failure.as_ref().map(|f| anyhow::anyhow!("{f}"))
    }

    /// Fails with the first failure of an ingest thread, if one failed.
    pub fn check(&self) -> anyhow::Result<()> {
        match self.failure() {
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }
}

/// Worker `me`'s loop; `peers` reach every worker (itself included), by
/// index. A panic is caught and recorded ([`Shared::fail`]): the source
/// then stops, without checkpointing a state that lacks what this worker held.
pub(super) fn run(me: usize, rx: Receiver<Work>, peers: Vec<Sender<Work>>, shared: &Shared) {
    let worked = std::panic::catch_unwind(AssertUnwindSafe(|| work(me, rx, peers, shared)));
    if let Err(panic) = worked {
        let cause = crate::supervise::panicked(panic.as_ref());
        shared.fail(format!("ingest thread {me} {cause}"));
    }
}

fn work(me: usize, rx: Receiver<Work>, peers: Vec<Sender<Work>>, shared: &Shared) {
    let mut decoder = Decoder {
        me,
        flows: Vec::new(),
        outboxes: (0..peers.len()).map(|_| Vec::new()).collect(),
        reject_log: RejectLog::default(),
        ingest: shared.metrics.ingest_recorder(shared.format),
    };
    while let Ok(work) = rx.recv() {
        match work {
            Work::Records(batch) => {
                fail::fail_point!("ingest-batch");
                decoder.decode_and_apply(&batch, &peers, shared)
            }
            Work::Flows(handoff) => {
                for flow in handoff.flows {
                    shared.engine.apply_prepared(flow);
                }
                handoff.done.finish(&shared.progress);
            }
            Work::Stop => break,
        }
        shared.in_flight.finish();
    }
}

/// A worker's buffers, reused from batch to batch.
struct Decoder {
    me: usize,
    flows: Vec<Flow>,
    /// Flows of the batch being decoded, by the worker that owns them.
    outboxes: Vec<Vec<Prepared>>,
    reject_log: RejectLog,
    ingest: IngestRecorder,
}

impl Decoder {
    /// Applies the decoded flows this worker owns and puts the others in
    /// their owners' outboxes.
    fn apply_or_pass_on(&mut self, engine: &Engine, wall_now_ms: i64, workers: usize) {
        for flow in &self.flows {
            let Ok(prepared) = engine.prepare(flow, wall_now_ms) else {
                continue;
            };
            let owner = engine.owner(&prepared, workers);
            if owner == self.me {
                engine.apply_prepared(prepared);
            } else {
                self.outboxes[owner].push(prepared);
            }
        }
    }

    /// Decodes a batch, applies the flows this worker owns and passes the
    /// others on.
    fn decode_and_apply(&mut self, batch: &Batch, peers: &[Sender<Work>], shared: &Shared) {
        let engine = &shared.engine;
        let wall_now_ms = wall_now_ms();
        // Where each partition of this batch resumed; records below it are
        // in the state already (restored from a checkpoint): skip them. A
        // batch holds few partitions, so a list beats a map. Then, per
        // partition, the offset after the batch's last record.
        let mut next: Vec<(Arc<str>, i32, i64)> = Vec::new();
        let mut start = 0;
        for item in &batch.items {
            let payload = &batch.data[start..item.end];
            start = item.end;
            let topic = &batch.topics[usize::from(item.topic)];
            let at = match next
                .iter()
                .position(|(t, partition, _)| *partition == item.partition && t == topic)
            {
                Some(at) => at,
                None => {
                    let resumed_at = shared
                        .progress
                        .floor(topic, item.partition)
                        .unwrap_or(i64::MIN);
                    next.push((topic.clone(), item.partition, resumed_at));
                    next.len() - 1
                }
            };
            if item.offset < next[at].2 {
                continue;
            }
            self.flows.clear();
            let decoded = flow::decode(shared.format, payload, item.timestamp_ms, &mut self.flows);
            engine.stats().count_decoded(&decoded);
            if let Err(error) = decoded {
                self.reject_log.record(topic, item, payload, &error);
                if let Some(dl) = &shared.dead_letters {
                    dl.send(topic, item, payload, &error);
                    shared.metrics.dead_letters.inc();
                }
            }
            if peers.len() == 1 {
                // The only worker owns every endpoint: nothing to look up.
                for flow in &self.flows {
                    engine.apply(flow, wall_now_ms);
                }
            } else {
                self.apply_or_pass_on(engine, wall_now_ms, peers.len());
            }
            self.ingest
                .record(payload.len(), item.timestamp_ms, &self.flows);
            next[at].2 = item.offset + 1;
        }
        self.ingest.flush();
        let parts = 1 + self.outboxes.iter().filter(|o| !o.is_empty()).count();
        let done = Arc::new(BatchDone {
            remaining: AtomicUsize::new(parts),
            next,
        });
        for (owner, outbox) in self.outboxes.iter_mut().enumerate() {
            if outbox.is_empty() {
                continue;
            }
            // The next batch's outbox starts as big as this one's.
            let flows = std::mem::replace(outbox, Vec::with_capacity(outbox.len()));
            let handoff = Handoff {
                flows,
                done: done.clone(),
            };
            shared.in_flight.start();
            if peers[owner].send(Work::Flows(handoff)).is_err() {
                // The other worker is gone: these flows are lost, so the
                // batch never counts as applied and no checkpoint follows.
                shared.in_flight.finish();
                shared.broken.store(true, Ordering::Release);
                error!(
                    worker = owner,
                    "an ingest thread stopped; flows of a batch were lost"
                );
            }
        }
        done.finish(&shared.progress);
    }
}

/// Copies rejected records to the dead-letter topic, the error in a header.
pub(super) struct DeadLetters {
    pub producer: ThreadedProducer<DefaultProducerContext>,
    pub topic: String,
}

impl DeadLetters {
    fn send(&self, topic: &str, item: &Item, payload: &[u8], error: &DecodeError) {
        let message = error.to_string();
        let origin = format!("{topic}/{}/{}", item.partition, item.offset);
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

/// Logs the first rejected record of every interval with a sample of its
/// bytes, and how many were rejected since.
struct RejectLog(LogLimit);

impl Default for RejectLog {
    fn default() -> Self {
        RejectLog(LogLimit::new(REJECT_LOG_INTERVAL))
    }
}

impl RejectLog {
    fn record(&mut self, topic: &str, item: &Item, payload: &[u8], error: &DecodeError) {
        let Some(suppressed) = self.0.admit(Instant::now()) else {
            return;
        };
        let sample = String::from_utf8_lossy(&payload[..payload.len().min(160)]).into_owned();
        warn!(
            topic,
            partition = item.partition,
            offset = item.offset,
            reason = error.reason(),
            suppressed,
            sample,
            "record rejected: {error}"
        );
    }
}
