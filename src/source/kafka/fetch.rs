//! The fetch queue: a librdkafka queue of the source's own that every
//! assigned partition's records are forwarded to, read in batches.
//!
//! rust-rdkafka's `BaseConsumer::poll` hands out one record per call, each
//! wrapped in an event it allocates and reference-counts; at a few million
//! records a second that per-record work was most of the poll thread's time.
//! librdkafka itself can hand out many records in one call
//! (`rd_kafka_consume_batch_queue`), but not on the consumer queue, where
//! rust-rdkafka's rebalance events also travel: served there, a rebalance
//! would bypass the source's own handling (drain and checkpoint before a
//! revoke, resume from the checkpoint after an assign). So records and
//! events are kept apart:
//!
//! - when a partition is assigned, before librdkafka fetches it, its queue
//!   is forwarded here ([`FetchQueue::route`]), so its records all come
//!   from this one queue, in order. librdkafka drops the forwarding when it
//!   stops fetching the partition (a revoke, or an assign that restarts
//!   it), and a later start does not forward it anywhere (an application's
//!   forwarding, `RD_KAFKA_Q_F_FWD_APP`, is left as it is); so the source
//!   routes each partition at every assignment and, to be safe, every
//!   assigned partition again once a second;
//! - the poll thread reads records here in batches ([`FetchQueue::poll`])
//!   and serves the consumer queue, which now carries only events (and the
//!   records of any partition that could not be routed), with
//!   `BaseConsumer::poll`.
//!
//! Records of a partition that was revoked, or re-assigned at another
//! offset, carry an outdated version and are dropped by librdkafka here as
//! on the consumer queue.
//!
//! This is the one module that calls librdkafka directly; everything
//! unsafe about it stays here. It is public for `examples/bench_kafka`,
//! whose consume-only loops read the same way.

use std::ffi::{CStr, CString};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::types::RDKafkaRespErr;

/// A queue of the consumer's client that partitions are forwarded to.
///
/// It holds the consumer, so the queue (and every record still on it) is
/// always destroyed before the client it belongs to, whatever order its
/// owners drop things in; a [`Fetched`] batch borrows the queue, so its
/// records cannot outlive it either.
pub struct FetchQueue<C: ConsumerContext + 'static> {
    queue: NonNull<rdsys::rd_kafka_queue_t>,
    consumer: Arc<BaseConsumer<C>>,
}

// SAFETY: librdkafka's queues are locked internally; every function used
// here may be called from any thread. The consumer is `Send + Sync` itself.
unsafe impl<C: ConsumerContext> Send for FetchQueue<C> {}
unsafe impl<C: ConsumerContext> Sync for FetchQueue<C> {}

impl<C: ConsumerContext> FetchQueue<C> {
    /// A new, empty queue of `consumer`'s client.
    pub fn new(consumer: &Arc<BaseConsumer<C>>) -> Option<FetchQueue<C>> {
        // SAFETY: the client pointer is valid while the consumer lives,
        // which the queue makes sure of by holding it.
        let queue = unsafe { rdsys::rd_kafka_queue_new(consumer.client().native_ptr()) };
        NonNull::new(queue).map(|queue| FetchQueue {
            queue,
            consumer: consumer.clone(),
        })
    }

    /// The consumer whose partitions are forwarded here.
    pub fn consumer(&self) -> &BaseConsumer<C> {
        &self.consumer
    }

    /// Forwards the records of `topic`/`partition` here from now on. Call it
    /// before the partition is fetched. False if librdkafka has no queue for
    /// the partition (its records then stay on the consumer queue).
    ///
    /// librdkafka drops a partition's forwarding whenever it stops fetching
    /// it, and a later start leaves an application's forwarding as it is:
    /// dropped. Routing a partition again restores it, moving any records
    /// waiting on the partition's own queue here, after those already
    /// here, in order; on a partition that is routed, it changes nothing.
    pub fn route(&self, topic: &str, partition: i32) -> bool {
        self.with_partition_queue(topic, partition, |partition_queue| {
            // SAFETY: both queues are valid for this call.
            unsafe { rdsys::rd_kafka_queue_forward(partition_queue, self.queue.as_ptr()) }
        })
        .is_some()
    }

    /// Calls `f` with librdkafka's queue of a partition, if it has one.
    fn with_partition_queue<R>(
        &self,
        topic: &str,
        partition: i32,
        f: impl FnOnce(*mut rdsys::rd_kafka_queue_t) -> R,
    ) -> Option<R> {
        let topic = CString::new(topic).ok()?;
        // SAFETY: the client pointer is valid while the consumer lives; the
        // handle is released after `f` (a forward set through it stays set
        // on the partition).
        unsafe {
            let partition_queue = rdsys::rd_kafka_queue_get_partition(
                self.consumer.client().native_ptr(),
                topic.as_ptr(),
                partition,
            );
            if partition_queue.is_null() {
                return None;
            }
            let result = f(partition_queue);
            rdsys::rd_kafka_queue_destroy(partition_queue);
            Some(result)
        }
    }

    /// Waits up to `timeout` for a first record, then takes whatever else
    /// is queued without waiting, until `batch` holds `max` records.
    pub fn poll<'q>(&'q self, timeout: Duration, max: usize, batch: &mut Fetched<'q>) {
        batch.clear();
        self.take(max, batch);
        if batch.messages.is_empty() {
            let timeout_ms = timeout.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: the queue is valid while `self` lives; the message,
            // if any, is owned by `batch` from here on.
            let first = unsafe { rdsys::rd_kafka_consume_queue(self.queue.as_ptr(), timeout_ms) };
            if first.is_null() {
                return;
            }
            batch.messages.push(first);
            self.take(max, batch);
        }
    }

    /// Appends what is queued to `batch`, without waiting, until it holds `max`.
    fn take<'q>(&'q self, max: usize, batch: &mut Fetched<'q>) {
        let room = max.saturating_sub(batch.messages.len());
        if room == 0 {
            return;
        }
        let len = batch.messages.len();
        // SAFETY: `reserve` made room for `room` more pointers past `len`;
        // librdkafka writes at most `room` of them and returns how many (or
        // -1, taken as none); each is owned by `batch` from here on.
        unsafe {
            batch.messages.reserve(room);
            let written = rdsys::rd_kafka_consume_batch_queue(
                self.queue.as_ptr(),
                0,
                batch.messages.as_mut_ptr().add(len),
                room,
            );
            let written = usize::try_from(written).unwrap_or(0).min(room);
            batch.messages.set_len(len + written);
        }
    }
}

impl<C: ConsumerContext> Drop for FetchQueue<C> {
    fn drop(&mut self) {
        // SAFETY: the handle was created in `new` and is released once; the
        // records still queued are destroyed with it.
        unsafe { rdsys::rd_kafka_queue_destroy(self.queue.as_ptr()) }
    }
}

/// Records taken from a [`FetchQueue`], owned until cleared or dropped;
/// it borrows the queue (`'q`), which keeps their client alive.
#[derive(Default)]
pub struct Fetched<'q> {
    messages: Vec<*mut rdsys::rd_kafka_message_t>,
    queue: PhantomData<&'q ()>,
}

impl Fetched<'_> {
    /// The records, in the order they were queued.
    pub fn iter(&self) -> impl Iterator<Item = Record<'_>> {
        // SAFETY: every pointer came from librdkafka and stays valid until
        // `clear` destroys it, which needs `&mut self`.
        self.messages.iter().map(|&m| Record(unsafe { &*m }))
    }

    /// Destroys the records.
    pub fn clear(&mut self) {
        for m in self.messages.drain(..) {
            // SAFETY: each message is destroyed once, here.
            unsafe { rdsys::rd_kafka_message_destroy(m) }
        }
    }
}

impl Drop for Fetched<'_> {
    fn drop(&mut self) {
        self.clear();
    }
}

/// One record of a [`Fetched`] batch, or a consume error librdkafka
/// reported in its place.
#[derive(Clone, Copy)]
pub struct Record<'a>(&'a rdsys::rd_kafka_message_t);

impl<'a> Record<'a> {
    /// The consume error this record stands for, if any. Partition EOF
    /// (only with `enable.partition.eof`) is `Some` too.
    pub fn error(&self) -> Option<RDKafkaErrorCode> {
        (self.0.err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR).then(|| self.0.err.into())
    }

    /// The same for every record of one topic in a batch: a cheap way to
    /// tell that a record's topic is that of the one before.
    pub fn topic_id(&self) -> usize {
        self.0.rkt as usize
    }

    pub fn topic(&self) -> &'a str {
        // SAFETY: a fetched record's topic handle and its name live at
        // least as long as the record.
        let name = unsafe { CStr::from_ptr(rdsys::rd_kafka_topic_name(self.0.rkt)) };
        // Topic names are ASCII (Kafka allows [a-zA-Z0-9._-]).
        name.to_str().unwrap_or_default()
    }

    pub fn partition(&self) -> i32 {
        self.0.partition
    }

    pub fn offset(&self) -> i64 {
        self.0.offset
    }

    pub fn payload(&self) -> &'a [u8] {
        if self.0.payload.is_null() {
            return &[];
        }
        // SAFETY: librdkafka's payload pointer and length describe one
        // buffer that lives as long as the record.
        unsafe { std::slice::from_raw_parts(self.0.payload as *const u8, self.0.len) }
    }

    /// The record's Kafka timestamp (create or log-append time), in UNIX ms.
    pub fn timestamp_ms(&self) -> Option<i64> {
        let mut kind = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: reads the record's own fields.
        let t = unsafe { rdsys::rd_kafka_message_timestamp(self.0, &mut kind) };
        let available = kind != rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        (available && t != -1).then_some(t)
    }
}

#[cfg(test)]
mod tests;
