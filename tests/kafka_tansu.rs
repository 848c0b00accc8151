//! The Kafka path end to end against a real broker process (tansu): records
//! produced to a topic become visible in the API over a real socket.
//!
//! tansu 0.6.0's known defects shape these tests
//! (`docs/testing.md#known-defects-of-tansu-060`): producers write one
//! record per batch, and consumers leave the group cleanly (SIGTERM) rather
//! than being killed.

mod support;

use std::time::{Duration, Instant};

use exposure::flow::{encode_goflow2_json, Flow};
use serde_json::Value;
use support::{create_topic, goflow2_pb, produce, producer, rand_name, Service, Tansu};

const VISIBLE_WITHIN: Duration = Duration::from_secs(30);

/// A request from 198.51.100.7 to `server:port` and its reply, now, of
/// three packets each: one open endpoint.
fn exchange(server: &str, port: u16, request: u64, reply: u64) -> [Flow; 2] {
    let now = exposure::state::wall_now_ms();
    support::conversation(server, port, "198.51.100.7", request, reply, now)
        .map(|f| Flow { packets: 3, ..f })
}

fn json_records(flows: &[Flow]) -> Vec<(String, Vec<u8>)> {
    flows
        .iter()
        .map(|f| (f.dst_addr.to_string(), encode_goflow2_json(f).into_bytes()))
        .collect()
}

fn row(answer: &Value, port: u64) -> Option<&Value> {
    answer["DataList"]
        .as_array()?
        .iter()
        .find(|r| r["Port"] == port)
}

fn total_bytes(answer: &Value, port: u64) -> u64 {
    row(answer, port)
        .and_then(|r| r["TotalBytes"].as_u64())
        .unwrap_or(0)
}

#[test]
fn records_produced_become_visible_over_http() {
    let broker = Tansu::start();
    let topic = rand_name("flows");
    create_topic(&broker.bootstrap, &topic, 3);
    let service = Service::start(&broker.bootstrap, &[&topic], &rand_name("group"), "");
    let mut flows = Vec::new();
    for i in 0..20 {
        flows.extend(exchange(&format!("203.0.113.{}", 10 + i), 22, 100, 1000));
    }
    produce(&producer(&broker.bootstrap), &topic, &json_records(&flows));
    let answer = service.wait_for(VISIBLE_WITHIN, "22/tcp with 22000 bytes", |a| {
        total_bytes(a, 22) == 22_000
    });
    let ssh = row(&answer, 22).unwrap();
    assert_eq!(ssh["PublicIpNum"], 20);
    assert_eq!(ssh["InBytes"], 2_000);
    assert_eq!(ssh["ServiceNameList"], serde_json::json!(["SSH"]));
    let (status, body) = service.get("/readyz");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        service.metric("exposure_records_consumed_total"),
        Some(40.0)
    );
    assert_eq!(service.metric("exposure_open_endpoints"), Some(20.0));
}

#[test]
fn several_partitions_are_all_counted_exactly() {
    let broker = Tansu::start();
    let topic = rand_name("flows");
    create_topic(&broker.bootstrap, &topic, 4);
    let service = Service::start(&broker.bootstrap, &[&topic], &rand_name("group"), "");
    let mut records = Vec::new();
    let mut expected = 0;
    for i in 0..60u64 {
        let server = format!("203.0.113.{}", i % 30);
        let flows = exchange(&server, 443, 10 + i, 100 + i);
        expected += 110 + 2 * i;
        for f in &flows {
            // goflow2-pb records this time; keys spread them over the partitions.
            records.push((format!("{server}-{i}"), goflow2_pb(f)));
        }
    }
    produce(&producer(&broker.bootstrap), &topic, &records);
    let answer = service.wait_for(VISIBLE_WITHIN, "443/tcp exact total", |a| {
        total_bytes(a, 443) == expected
    });
    assert_eq!(row(&answer, 443).unwrap()["PublicIpNum"], 30);
    // Nothing counted twice: wait a little longer and look again.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(total_bytes(&service.open_ports(), 443), expected);
    assert_eq!(
        service.metric("exposure_records_consumed_total"),
        Some(120.0)
    );
}

#[test]
fn poison_records_are_rejected_and_the_partition_goes_on() {
    let broker = Tansu::start();
    let topic = rand_name("flows");
    create_topic(&broker.bootstrap, &topic, 1);
    let service = Service::start(&broker.bootstrap, &[&topic], &rand_name("group"), "");
    let mut records = json_records(&exchange("203.0.113.10", 3306, 500, 5000));
    let poison: [&[u8]; 5] = [
        b"this is not a flow",
        b"{\"src_addr\": \"198.51.100.1\", \"dst_addr\": ",
        b"{\"src_addr\":\"999.1.1.1\",\"dst_addr\":\"203.0.113.10\",\"proto\":\"TCP\",\"bytes\":1,\"time_flow_end_ns\":1}",
        b"\xff\xfe\x00\x01\x02",
        b"",
    ];
    for p in poison {
        records.push(("poison".to_owned(), p.to_vec()));
    }
    records.extend(json_records(&exchange("203.0.113.11", 3306, 500, 5000)));
    produce(&producer(&broker.bootstrap), &topic, &records);
    let answer = service.wait_for(VISIBLE_WITHIN, "both MySQL servers", |a| {
        total_bytes(a, 3306) == 11_000
    });
    assert_eq!(row(&answer, 3306).unwrap()["PublicIpNum"], 2);
    let (_, metrics) = service.get("/metrics");
    let rejected: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("exposure_records_rejected_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(rejected, 5.0, "{metrics}");
    assert!(
        service.log().contains("record rejected"),
        "a sample is logged"
    );
}

#[test]
fn restart_resumes_from_the_checkpoint_without_counting_twice() {
    let broker = Tansu::start();
    let topic = rand_name("flows");
    create_topic(&broker.bootstrap, &topic, 1);
    let group = rand_name("group");
    let mut service = Service::start(&broker.bootstrap, &[&topic], &group, "");
    let producer = producer(&broker.bootstrap);
    produce(
        &producer,
        &topic,
        &json_records(&exchange("203.0.113.10", 22, 100, 900)),
    );
    service.wait_for(VISIBLE_WITHIN, "first batch", |a| {
        total_bytes(a, 22) == 1000
    });
    let (code, took) = service.terminate();
    assert_eq!(code, Some(0), "graceful exit:\n{}", service.log());
    assert!(took < Duration::from_secs(10), "SIGTERM took {took:?}");

    let service = service.restart();
    produce(
        &producer,
        &topic,
        &json_records(&exchange("203.0.113.10", 443, 50, 450)),
    );
    let answer = service.wait_for(VISIBLE_WITHIN, "second batch", |a| {
        total_bytes(a, 443) == 500
    });
    // The first batch survives in the checkpoint and is not read again.
    assert_eq!(total_bytes(&answer, 22), 1000, "{answer}");
    assert_eq!(service.metric("exposure_records_consumed_total"), Some(2.0));
    assert!(
        service.log().contains("state restored from checkpoint"),
        "{}",
        service.log()
    );
}

#[test]
fn freshness_from_produce_to_visible() {
    let broker = Tansu::start();
    let topic = rand_name("flows");
    create_topic(&broker.bootstrap, &topic, 1);
    let service = Service::start(&broker.bootstrap, &[&topic], &rand_name("group"), "");
    let producer = producer(&broker.bootstrap);
    // Warm up: the consumer has joined and fetched once.
    produce(
        &producer,
        &topic,
        &json_records(&exchange("203.0.113.9", 8080, 1, 1)),
    );
    service.wait_for(VISIBLE_WITHIN, "warm-up", |a| total_bytes(a, 8080) == 2);
    let mut samples = Vec::new();
    for i in 0..20u16 {
        let port = 40_000 + i;
        let records = json_records(&exchange("203.0.113.10", port, 1, 1));
        // From the moment the record is handed to the producer (no flush:
        // its delivery callback's own latency is not the service's).
        let started = Instant::now();
        for (key, payload) in &records {
            producer
                .send(
                    rdkafka::producer::BaseRecord::to(&topic)
                        .key(key.as_str())
                        .payload(payload.as_slice()),
                )
                .map_err(|(e, _)| e)
                .expect("queued");
        }
        loop {
            producer.poll(Duration::ZERO);
            let (_, body) = service.get(&format!("/?Action=DescribeInternetOpenPort&Port={port}"));
            if body.contains("\"TotalCount\":1") {
                break;
            }
            assert!(
                started.elapsed() < VISIBLE_WITHIN,
                "port {port} never became visible"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        samples.push(started.elapsed());
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10)).expect("flushed");
    samples.sort();
    let p50 = samples[samples.len() / 2];
    let max = samples[samples.len() - 1];
    // A measurement, not a timed assertion: the numbers go to docs/benchmarks.md.
    println!(
        "freshness over {} samples (tansu, fetch.wait.max.ms=10): p50 {p50:?}, max {max:?}",
        samples.len()
    );
}
