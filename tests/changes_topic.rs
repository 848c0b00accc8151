//! `changes.topic` end to end, against `exposure run` in its own process
//! and librdkafka's mock cluster: killed with SIGKILL twice while flows
//! arrive, the service leaves on the topic each event exactly once, in
//! order per endpoint, each the same object `DescribeExposureChanges`
//! lists under its `Seq`; a missing topic is named and waited for.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use support::{
    batching_producer, conversation, goflow2_pb, produce, rand_name, wait_until, MockBroker,
    Service, ServiceOptions,
};

const PARTITIONS: i32 = 3;

/// The servers of endpoints `range` (one port each) answering clients
/// `ago_s` seconds ago.
fn answer(broker: &MockBroker, topic: &str, range: std::ops::Range<u16>, ago_s: i64) {
    let at = exposure::state::wall_now_ms() - ago_s * 1000;
    let records: Vec<(String, Vec<u8>)> = range
        .flat_map(|i| {
            let server = format!("203.0.113.{}", i % 200 + 1);
            conversation(&server, 2000 + i, "198.51.100.1", 100, 200, at)
        })
        .map(|f| (f.dst_addr.to_string(), goflow2_pb(&f)))
        .collect();
    produce(&batching_producer(&broker.bootstrap), topic, &records);
}

/// Every event the service recorded, by Seq.
fn recorded(service: &Service) -> BTreeMap<u64, Value> {
    service.exposure_changes("PageSize=1000")["DataList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["Seq"].as_u64().unwrap(), e.clone()))
        .collect()
}

fn topic_seq(service: &Service) -> f64 {
    service.metric("exposure_changes_topic_seq ").unwrap_or(0.0)
}

/// Every message of `topic`, per partition in offset order: (key, event).
fn read_topic(bootstrap: &str, topic: &str) -> Vec<Vec<(String, Value)>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", rand_name("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    let mut ends = Vec::new();
    for p in 0..PARTITIONS {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        ends.push(high);
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut partitions: Vec<Vec<(String, Value)>> = vec![Vec::new(); ends.len()];
    let total: i64 = ends.iter().sum();
    let mut read = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while read < total {
        assert!(
            std::time::Instant::now() < deadline,
            "read {read} of {total} messages"
        );
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.unwrap();
        let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
        let event: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
        partitions[usize::try_from(message.partition()).unwrap()].push((key, event));
        read += 1;
    }
    partitions
}

#[test]
fn each_event_is_on_the_topic_once_in_order_across_two_kill_9() {
    let flows = rand_name("flows");
    let changes = rand_name("changes");
    let broker = MockBroker::start_topics(&[(&flows, 2), (&changes, PARTITIONS)]);
    let opts = ServiceOptions {
        checkpoint_interval: "1s",
        ..ServiceOptions::default()
    };
    let extra = format!("[changes]\ntopic = \"{changes}\"\nclosed_after = \"1s\"\n");
    let mut service = Service::start_opts(
        &broker.bootstrap,
        &[&flows],
        &rand_name("group"),
        &extra,
        &opts,
    );

    // 60 endpoints open a minute ago (each then closes, a second later):
    // some of their events reach the topic.
    answer(&broker, &flows, 0..60, 60);
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        || match topic_seq(&service) {
            seq if seq >= 30.0 => Ok(()),
            seq => Err(seq),
        },
        |seq| format!("the topic is at Seq {seq}\n{}", service.log()),
    );
    // They answer again half a minute ago (closed, then opened again), 60
    // more open; killed while the records are being read.
    answer(&broker, &flows, 0..120, 30);
    service.kill9();
    let mut service = service.restart();
    let before = topic_seq(&service);
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        || match topic_seq(&service) {
            seq if seq > before => Ok(()),
            seq => Err(seq),
        },
        |seq| {
            format!(
                "the topic stayed at Seq {seq} after the restart\n{}",
                service.log()
            )
        },
    );
    answer(&broker, &flows, 120..180, 30);
    std::thread::sleep(Duration::from_millis(300));
    service.kill9();
    let service = service.restart();

    // Every endpoint: opened and closed; the first 60 twice.
    const EVENTS: u64 = 60 * 4 + 120 * 2;
    let events = wait_until(
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let events = recorded(&service);
            let seq = topic_seq(&service);
            if events.len() as u64 == EVENTS && seq == EVENTS as f64 {
                Ok(events)
            } else {
                Err((events.len(), seq))
            }
        },
        |(count, seq)| {
            format!(
                "{count} events recorded, the topic at Seq {seq}, not {EVENTS}\n{}",
                service.log()
            )
        },
    );
    assert_eq!(
        events.keys().copied().collect::<Vec<_>>(),
        (1..=EVENTS).collect::<Vec<_>>()
    );

    let partitions = read_topic(&broker.bootstrap, &changes);
    let mut seen = BTreeSet::new();
    for (partition, messages) in partitions.iter().enumerate() {
        let mut last_of_key: BTreeMap<&str, u64> = BTreeMap::new();
        for (key, event) in messages {
            let seq = event["Seq"].as_u64().unwrap();
            assert!(seen.insert(seq), "Seq {seq} is on the topic twice");
            assert_eq!(
                event, &events[&seq],
                "the topic's event {seq} is not the service's"
            );
            assert_eq!(
                key,
                &format!(
                    "{}:{}/{}",
                    event["Ip"].as_str().unwrap(),
                    event["Port"],
                    event["Protocol"].as_str().unwrap()
                )
            );
            if let Some(before) = last_of_key.insert(key, seq) {
                assert!(
                    before < seq,
                    "partition {partition}: {key} has Seq {seq} after {before}"
                );
            }
        }
    }
    assert_eq!(seen.len() as u64, EVENTS, "events missing from the topic");
    // Each restart took up from what the topic held, not from the start.
    let log = service.log();
    let starts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("producing exposure changes"))
        .collect();
    assert_eq!(starts.len(), 3, "{log}");
    for start in &starts[1..] {
        assert!(
            !start.contains("after_seq=0 "),
            "a restart produced from Seq 0: {start}"
        );
    }
    // Per endpoint the kinds follow the flows: opened, closed (, opened, closed).
    let mut kinds: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for event in events.values() {
        let key = format!("{}:{}", event["Ip"].as_str().unwrap(), event["Port"]);
        kinds
            .entry(key)
            .or_default()
            .push(event["Kind"].as_str().unwrap().to_owned());
    }
    for (endpoint, kinds) in &kinds {
        let expected: &[&str] = if kinds.len() == 4 {
            &["opened", "closed", "opened", "closed"]
        } else {
            &["opened", "closed"]
        };
        assert_eq!(kinds, expected, "{endpoint}");
    }
}

#[test]
fn a_missing_topic_is_named_and_waited_for() {
    let flows = rand_name("flows");
    let broker = MockBroker::start(&flows, 1);
    let extra = "[changes]\ntopic = \"no-such-topic\"\n";
    let service = Service::start(&broker.bootstrap, &[&flows], &rand_name("group"), extra);
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let log = service.log();
            if log.contains("\"no-such-topic\" does not exist on the brokers") {
                Ok(())
            } else {
                Err(log)
            }
        },
        |log| format!("the missing topic is not named:\n{log}"),
    );
    // The API still answers; the task is down and counted.
    let (status, _) = service.get("/?Action=DescribeExposureChanges");
    assert_eq!(status, 200);
    assert!(
        service
            .metric(r#"exposure_task_failures_total{task="changes-topic"}"#)
            .unwrap_or(0.0)
            >= 1.0
    );
}
