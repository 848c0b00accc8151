//! The fetch queue against librdkafka's mock cluster: records of routed
//! partitions come out of it in batches and in order, and a partition whose
//! routing librdkafka dropped is read again, without losing or reordering
//! anything, once routed again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::{FetchQueue, Fetched};

const TOPIC: &str = "fetch-queue";

fn produce(bootstrap: &str, payloads: impl Iterator<Item = String>) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("producer");
    for payload in payloads {
        producer
            .send(
                BaseRecord::<(), _>::to(TOPIC)
                    .partition(0)
                    .payload(&payload),
            )
            .expect("queued");
    }
    producer.flush(Duration::from_secs(10)).expect("flushed");
}

fn consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "fetch-queue-test")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer")
}

fn assign_from(consumer: &BaseConsumer, offset: i64) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Offset(offset))
        .expect("offset");
    consumer.assign(&tpl).expect("assigned");
}

/// Reads (offset, payload) pairs until `count` arrived, calling `between`
/// after every poll; panics after 20 s.
fn read(
    consumer: &BaseConsumer,
    fetch: &FetchQueue<DefaultConsumerContext>,
    count: usize,
    mut between: impl FnMut(),
) -> Vec<(i64, String)> {
    let mut got = Vec::new();
    let mut batch = Fetched::default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} records",
            got.len()
        );
        // Serves the consumer's own queue, as the poll loop does.
        let _ = consumer.poll(Duration::ZERO);
        fetch.poll(Duration::from_millis(20), 64, &mut batch);
        for r in batch.iter() {
            assert!(r.error().is_none(), "{:?}", r.error());
            assert_eq!((r.topic(), r.partition()), (TOPIC, 0));
            let payload = String::from_utf8(r.payload().to_vec()).expect("utf-8");
            got.push((r.offset(), payload));
        }
        between();
    }
    got
}

/// A mock cluster whose topic holds `records` records, and a consumer of
/// it assigned from the start with the partition routed to a fetch queue
/// (bound in this order, they are dropped in reverse: the queue and the
/// consumer it holds, then the cluster).
fn routed_from_the_start(
    records: i64,
) -> (
    MockCluster<'static, DefaultProducerContext>,
    Arc<BaseConsumer>,
    FetchQueue<DefaultConsumerContext>,
) {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(TOPIC, 1, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    produce(&bootstrap, (0..records).map(|i| format!("record {i}")));
    let consumer = Arc::new(consumer(&bootstrap));
    let fetch = FetchQueue::new(&consumer).expect("fetch queue");
    assert!(fetch.route(TOPIC, 0));
    assign_from(&consumer, 0);
    (cluster, consumer, fetch)
}

fn expected(range: std::ops::Range<i64>) -> Vec<(i64, String)> {
    range.map(|i| (i, format!("record {i}"))).collect()
}

#[test]
fn routed_records_come_out_in_batches_and_in_order() {
    let (cluster, consumer, fetch) = routed_from_the_start(500);
    let bootstrap = cluster.bootstrap_servers();
    let got = read(&consumer, &fetch, 500, || {});
    assert_eq!(got, expected(0..500));
    // Queued records come many to a poll, at most as many as asked.
    produce(&bootstrap, (500..700).map(|i| format!("record {i}")));
    std::thread::sleep(Duration::from_millis(500));
    let mut batch = Fetched::default();
    fetch.poll(Duration::from_millis(20), 64, &mut batch);
    assert_eq!(batch.iter().count(), 64);
    assert_eq!(batch.iter().next().map(|r| r.offset()), Some(500));
    // The rest, then nothing: an empty poll returns after its timeout.
    let rest = read(&consumer, &fetch, 136, || {});
    assert_eq!(rest, expected(564..700));
    let started = Instant::now();
    fetch.poll(Duration::from_millis(50), 64, &mut batch);
    assert_eq!(batch.iter().count(), 0);
    assert!(started.elapsed() >= Duration::from_millis(40));
}

#[test]
fn a_partition_restarted_without_a_rebalance_is_read_again_once_routed_again() {
    let (cluster, consumer, fetch) = routed_from_the_start(100);
    let bootstrap = cluster.bootstrap_servers();
    let mut got = read(&consumer, &fetch, 100, || {});

    // Assigning again restarts the partition: librdkafka stops its fetcher,
    // which drops the routing, and starts it without routing it again.
    assign_from(&consumer, 100);
    produce(&bootstrap, (100..300).map(|i| format!("record {i}")));
    let mut batch = Fetched::default();
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let _ = consumer.poll(Duration::ZERO);
        fetch.poll(Duration::from_millis(20), 64, &mut batch);
        assert_eq!(
            batch.iter().count(),
            0,
            "records reached the fetch queue without routing the partition again: \
             librdkafka now keeps the routing across a restart (see FetchQueue::route)"
        );
    }
    // Routed again: everything arrives, in order, once.
    assert!(fetch.route(TOPIC, 0));
    got.extend(read(&consumer, &fetch, 200, || {
        // Routing again and again changes nothing.
        assert!(fetch.route(TOPIC, 0));
    }));
    assert_eq!(got, expected(0..300));
    fetch.poll(Duration::from_millis(100), 64, &mut batch);
    assert_eq!(batch.iter().count(), 0);
}
