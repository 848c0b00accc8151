//! Ingest workers: decode and apply batches of records, one partition
//! always on the same worker; dead-letter copies and rate-limited logs of
//! rejected records.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};
use tracing::warn;

use super::log_limit::LogLimit;
use super::progress::Progress;
use crate::flow::{DecodeError, Flow, Format};
use crate::metrics::Metrics;
use crate::state::{wall_now_ms, Engine};

/// A rejected record is logged at most this often per worker (the rest are counted).
const REJECT_LOG_INTERVAL: Duration = Duration::from_secs(5);

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
    /// The index in [`Batch::topics`] for a next item from `topic`: a
    /// batch holds a topic's name once, not a reference per record (whose
    /// count every thread would update).
    pub fn topic_index(&mut self, topic: &Arc<str>) -> u16 {
        match self.topics.last() {
            Some(last) if Arc::ptr_eq(last, topic) => {}
            _ => self.topics.push(topic.clone()),
        }
        u16::try_from(self.topics.len() - 1).expect("a batch holds at most 512 records")
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

/// What the workers share.
pub(super) struct Shared {
    pub engine: Arc<Engine>,
    pub progress: Arc<Progress>,
    pub format: Format,
    pub dead_letters: Option<DeadLetters>,
    pub metrics: Arc<Metrics>,
    /// Batches handed on and not yet applied (see [`super::Core::drain`]).
    pub in_flight: Arc<AtomicUsize>,
}

/// Every partition goes to one worker, so it is applied in order.
pub(super) fn worker_for(topic: &str, partition: i32, workers: usize) -> usize {
    let mut h = partition as u64;
    for b in topic.bytes() {
        h = h.wrapping_mul(31).wrapping_add(u64::from(b));
    }
    (h % workers as u64) as usize
}

pub(super) fn run(rx: Receiver<Batch>, shared: &Shared) {
    let mut flows: Vec<Flow> = Vec::new();
    let mut reject_log = RejectLog::default();
    let mut ingest = shared.metrics.ingest_recorder(shared.format);
    while let Ok(batch) = rx.recv() {
        let _applying = shared.progress.applying();
        let wall_now_ms = wall_now_ms();
        // Where each partition of this batch stands; records below it were
        // applied before (restored from a checkpoint): skip them. A batch
        // holds few partitions, so a list beats a map.
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
                    let applied_up_to = shared
                        .progress
                        .next_offset(topic, item.partition)
                        .unwrap_or(i64::MIN);
                    next.push((topic.clone(), item.partition, applied_up_to));
                    next.len() - 1
                }
            };
            if item.offset < next[at].2 {
                continue;
            }
            if let Err(error) = shared.engine.ingest(
                shared.format,
                payload,
                item.timestamp_ms,
                wall_now_ms,
                &mut flows,
            ) {
                reject_log.record(topic, item, payload, &error);
                if let Some(dl) = &shared.dead_letters {
                    dl.send(topic, item, payload, &error);
                    shared.metrics.dead_letters.inc();
                }
            }
            ingest.record(payload.len(), item.timestamp_ms, &flows);
            next[at].2 = item.offset + 1;
        }
        ingest.flush();
        for (topic, partition, offset) in next {
            shared.progress.advance(&topic, partition, offset);
        }
        shared.in_flight.fetch_sub(1, Ordering::AcqRel);
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
