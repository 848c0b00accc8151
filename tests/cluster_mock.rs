//! Cluster mode (`cluster.enabled = true`) against a broker in its own
//! process (librdkafka's mock cluster, `exposure-mock-broker`, which has no
//! CreateTopics: the internal topics are made at its start): several
//! `exposure run` processes sharing one group answer, each of them, exactly
//! what one instance counts; kill -9, SIGTERM and a broker outage lose
//! and double nothing;
//! and so do an instance joining and one leaving mid-stream; and until an
//! instance has read the group's state, it answers 503.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use exposure::flow::Flow;
use rand::{Rng, SeedableRng};
use support::{
    batching_producer, conversation, exposure, goflow2_pb, produce, rand_name, totals, MockBroker,
    Records, Service, ServiceOptions,
};

const PARTITIONS: i32 = 4;

/// The tests of this file run one at a time: each starts a broker and up
/// to four instances, which on two cores is load enough.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}
const CONVERGE_WITHIN: Duration = Duration::from_secs(90);

fn cluster_section() -> String {
    format!(
        r#"
[cluster]
enabled = true
advertise = "http://127.0.0.1:8080"
partitions = {PARTITIONS}
commit_interval = "200ms"
"#
    )
}

/// `n` conversations with `servers` ports on 40 hosts (so the assets
/// spread over every partition), keyed at random so that records go to
/// every flow partition; the exact TotalBytes per port.
fn workload(seed: u64, n: usize, servers: u16) -> (Records, BTreeMap<u64, u64>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let now = exposure::state::wall_now_ms();
    let mut records = Vec::new();
    let mut expected: BTreeMap<u64, u64> = BTreeMap::new();
    for i in 0..n {
        let host = format!("203.0.113.{}", 1 + rng.gen_range(0..40));
        let port = 20_000 + rng.gen_range(0..servers);
        let (request, reply) = (rng.gen_range(1..5_000u64), rng.gen_range(1..50_000u64));
        for (j, f) in conversation(&host, port, "198.51.100.7", request, reply, now)
            .into_iter()
            .enumerate()
        {
            records.push((
                format!("k{i}-{j}-{}", rng.gen::<u32>()),
                goflow2_pb(&Flow { packets: 4, ..f }),
            ));
        }
        *expected.entry(u64::from(port)).or_default() += request + reply;
    }
    (records, expected)
}

/// A broker with the flow topic and the group's internal topics.
fn broker(flows: &str, group: &str) -> MockBroker {
    let (by_asset, changelog) = (format!("{group}-by-asset"), format!("{group}-changelog"));
    MockBroker::start_topics(&[
        (flows, PARTITIONS),
        (&by_asset, PARTITIONS),
        (&changelog, PARTITIONS),
    ])
}

fn instance(bootstrap: &str, flows: &str, group: &str) -> Service {
    let opts = ServiceOptions {
        session_timeout_ms: 3000,
        ..ServiceOptions::default()
    };
    Service::start_opts(bootstrap, &[flows], group, &cluster_section(), &opts)
}

/// A broker with fresh flow and group names, and `n` instances of the
/// group: (broker, flow topic, group id, instances).
fn start_group(n: usize) -> (MockBroker, String, String, Vec<Service>) {
    let (flows, group) = (rand_name("flows"), rand_name("group"));
    let broker = broker(&flows, &group);
    let instances = (0..n)
        .map(|_| instance(&broker.bootstrap, &flows, &group))
        .collect();
    (broker, flows, group, instances)
}

/// The open-port answer, or `None` for a 503 `ServiceUnavailable` (the
/// instance has not read the group's state yet). Anything else fails.
fn answer(service: &Service) -> Option<serde_json::Value> {
    let (status, body) = service.get("/?Action=DescribeInternetOpenPort&PageSize=1000");
    match status {
        200 => Some(serde_json::from_str(&body).expect("JSON body")),
        503 => {
            assert!(body.contains("ServiceUnavailable"), "{body}");
            None
        }
        other => panic!("status {other}: {body}"),
    }
}

/// Polls every instance until its totals are `expected`, checking that
/// each answer meanwhile is a 503 or never more than was produced.
fn wait_for_exact(instances: &[&Service], expected: &BTreeMap<u64, u64>, what: &str) {
    let deadline = Instant::now() + CONVERGE_WITHIN;
    for (i, service) in instances.iter().enumerate() {
        loop {
            let seen = answer(service).map(|a| totals(&a));
            if let Some(seen) = &seen {
                for (port, bytes) in seen {
                    let most = expected.get(port).copied().unwrap_or(0);
                    assert!(
                        *bytes <= most,
                        "{what}: instance {i} answers {bytes} bytes on port {port}, more than the {most} produced"
                    );
                }
                if seen == expected {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{what}: instance {i} not exact within {CONVERGE_WITHIN:?}: {} ports of {}\nlog:\n{}",
                seen.map_or(0, |s| s.len()),
                expected.len(),
                service.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// [`wait_for_exact`] on every instance, then checks that their totals
/// stay exact a second later (nothing counted twice after the fact).
fn wait_for_exact_and_staying(instances: &[Service], expected: &BTreeMap<u64, u64>, what: &str) {
    let all: Vec<&Service> = instances.iter().collect();
    wait_for_exact(&all, expected, what);
    for service in instances {
        service.assert_totals_stay(
            Duration::from_secs(1),
            expected,
            "nothing counted twice later",
        );
    }
}

/// Waits until `service` counts `partitions` routing partitions.
fn wait_until_holding(service: &Service, partitions: i32, what: &str) {
    let deadline = Instant::now() + CONVERGE_WITHIN;
    let held = || service.metric("exposure_cluster_partitions_held");
    while held() != Some(f64::from(partitions)) {
        assert!(
            Instant::now() < deadline,
            "{what} holds {:?} of {partitions} partitions:\n{}",
            held(),
            service.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Produces `records` to `topic` from another thread, `wave` records at a
/// time with `pause_ms` between waves, so that instances can be killed,
/// stopped or added while records flow.
fn produce_in_waves(
    broker: &MockBroker,
    topic: &str,
    records: Records,
    wave: usize,
    pause_ms: u64,
) -> std::thread::JoinHandle<()> {
    let (bootstrap, topic) = (broker.bootstrap.clone(), topic.to_owned());
    std::thread::spawn(move || {
        let producer = batching_producer(&bootstrap);
        for chunk in records.chunks(wave) {
            produce(&producer, &topic, chunk);
            std::thread::sleep(Duration::from_millis(pause_ms));
        }
    })
}

/// Waits until `service` has consumed a record.
fn wait_until_consuming(service: &Service, what: &str) {
    support::wait_until(
        CONVERGE_WITHIN,
        Duration::from_millis(5),
        || {
            let consumed = service
                .metric("exposure_records_consumed_total")
                .unwrap_or(0.0);
            (consumed > 0.0).then_some(()).ok_or(())
        },
        |()| format!("{what} consumed nothing:\n{}", service.log()),
    );
}

/// The value of `metric` per partition of `topic` in `service`'s /metrics.
fn per_partition(service: &Service, metric: &str, topic: &str) -> BTreeMap<u32, f64> {
    let (_, body) = service.get("/metrics");
    let (name, topic) = (format!("{metric}{{"), format!("topic=\"{topic}\""));
    body.lines()
        .filter(|l| l.starts_with(&name) && l.contains(&topic))
        .map(|l| {
            let partition = l
                .split("partition=\"")
                .nth(1)
                .and_then(|p| p.split('"').next());
            let value = l.rsplit(' ').next().and_then(|v| v.parse().ok());
            (
                partition.and_then(|p| p.parse().ok()).expect(l),
                value.expect(l),
            )
        })
        .collect()
}

/// Waits until the instances report, per partition of each topic they
/// read, no lag and the position given: the flow partitions and the
/// routing partitions each read by one instance (their positions adding
/// up to what was produced there), every changelog partition read by
/// every instance to the same end.
fn wait_for_no_lag(instances: &[Service], flows: &str, group: &str, produced: usize) {
    let (by_asset, changelog) = (format!("{group}-by-asset"), format!("{group}-changelog"));
    let check = || -> Result<(), String> {
        let every = |metric: &str, topic: &str| -> Vec<BTreeMap<u32, f64>> {
            instances
                .iter()
                .map(|s| per_partition(s, metric, topic))
                .collect()
        };
        for topic in [flows, by_asset.as_str()] {
            let lags = every("exposure_kafka_consumer_lag", topic);
            let held: Vec<u32> = lags.iter().flat_map(|l| l.keys().copied()).collect();
            let mut sorted = held.clone();
            sorted.sort_unstable();
            if sorted != (0..PARTITIONS as u32).collect::<Vec<_>>() {
                return Err(format!("{topic}: partitions reported {held:?}"));
            }
            if lags.iter().flat_map(|l| l.values()).any(|&lag| lag != 0.0) {
                return Err(format!("{topic}: lag {lags:?}"));
            }
        }
        let positions = every("exposure_kafka_next_offset", flows);
        let read: f64 = positions.iter().flat_map(|p| p.values()).sum();
        if read != produced as f64 {
            return Err(format!("{flows}: positions {positions:?} add up to {read}"));
        }
        let lags = every("exposure_kafka_consumer_lag", &changelog);
        let positions = every("exposure_kafka_next_offset", &changelog);
        for (i, (lag, position)) in lags.iter().zip(&positions).enumerate() {
            if lag.len() != PARTITIONS as usize || lag.values().any(|&l| l != 0.0) {
                return Err(format!("instance {i}: changelog lag {lag:?}"));
            }
            if position != &positions[0] || position.values().any(|&p| p <= 0.0) {
                return Err(format!("changelog positions {positions:?}"));
            }
        }
        Ok(())
    };
    support::wait_until(CONVERGE_WITHIN, Duration::from_millis(200), check, |e| {
        format!("lag per topic not settled: {e}")
    });
}

fn without_request_id(mut answer: serde_json::Value) -> serde_json::Value {
    answer.as_object_mut().unwrap().remove("RequestId");
    answer
}

#[test]
fn three_instances_answer_exactly_what_one_instance_counts() {
    let _serial = one_at_a_time();
    let (broker, flows, group, instances) = start_group(3);
    let single = Service::start(&broker.bootstrap, &[&flows], &rand_name("single"), "");
    let (records, expected) = workload(11, 6_000, 60);
    produce(&batching_producer(&broker.bootstrap), &flows, &records);
    let all: Vec<&Service> = instances.iter().collect();
    wait_for_exact(&all, &expected, "three instances");
    single.wait_for_totals(CONVERGE_WITHIN, "one instance", &expected);
    let one = without_request_id(single.open_ports());
    for (i, service) in instances.iter().enumerate() {
        let answer = without_request_id(answer(service).expect("ready"));
        assert_eq!(answer, one, "instance {i} answers as one instance does");
        let (status, body) = service.get("/readyz");
        assert_eq!(status, 200, "{body}");
        assert_eq!(service.metric("exposure_kafka_connected"), Some(1.0));
    }
    wait_for_no_lag(&instances, &flows, &group, records.len());
}

#[test]
fn kill_9_sigterm_and_a_broker_outage_lose_and_double_nothing() {
    let _serial = one_at_a_time();
    let (mut broker, flows, _, mut instances) = start_group(3);
    let (records, expected) = workload(12, 20_000, 60);
    // The records go on in waves while one instance is killed and another
    // stopped, each after it has routed and counted part of the stream.
    let producing = produce_in_waves(&broker, &flows, records, 2_000, 100);
    wait_until_consuming(&instances[0], "instance 0");
    instances[0].kill9();
    let killed = instances.remove(0).restart();
    instances.push(killed);
    wait_until_consuming(&instances[0], "instance 1");
    let (code, _) = instances[0].terminate();
    assert_eq!(code, Some(0), "SIGTERM exits 0:\n{}", instances[0].log());
    let stopped = instances.remove(0).restart();
    instances.push(stopped);
    producing.join().expect("every record produced");
    // And the broker goes away for a moment, its data kept, while the
    // instances route and count what is left.
    broker.down();
    std::thread::sleep(Duration::from_secs(1));
    broker.up();
    wait_for_exact_and_staying(&instances, &expected, "after kill -9 and SIGTERM");
}

#[test]
fn an_instance_paused_past_its_session_and_resumed_loses_and_doubles_nothing() {
    let _serial = one_at_a_time();
    let (broker, flows, _, instances) = start_group(2);
    let (records, expected) = workload(15, 16_000, 50);
    let producing = produce_in_waves(&broker, &flows, records, 1_000, 100);
    wait_until_consuming(&instances[0], "instance 0");
    // Paused mid-stream, the first instance misses its session: the group
    // gives its partitions to the second, which claims them. Resumed, the
    // first still holds what it counted and flushes it before it hears
    // that it lost them.
    instances[0].pause();
    wait_until_holding(&instances[1], PARTITIONS, "the running instance");
    instances[0].resume();
    producing.join().expect("every record produced");
    wait_for_exact_and_staying(&instances, &expected, "after a pause past the session");
}

#[test]
fn a_broken_cluster_section_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (section, key) in [
        ("[cluster]\nenabled = true\n", "cluster.advertise"),
        (
            "[cluster]\nenabled = true\nadvertise = \"10.0.0.5:8080\"\n",
            "cluster.advertise",
        ),
        (
            "[cluster]\nenabled = true\nadvertise = \"http://10.0.0.5:8080\"\npartitions = 0\n",
            "cluster.partitions",
        ),
        (
            "[cluster]\ncommit_interval = \"0s\"\n",
            "cluster.commit_interval",
        ),
    ] {
        let path = dir.path().join("exposure.toml");
        std::fs::write(
            &path,
            format!("[network]\nassets = [\"203.0.113.0/24\"]\n{section}"),
        )
        .unwrap();
        for command in ["check-config", "run"] {
            let out = exposure(&[command, "--config", path.to_str().unwrap()], None);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command} {section}: {stderr}");
            assert!(stderr.contains(key), "{command} {section}: {stderr}");
        }
    }
}

#[test]
fn internal_topics_with_another_partition_count_stop_the_start_naming_them() {
    let _serial = one_at_a_time();
    let (flows, group) = (rand_name("flows"), rand_name("group"));
    let by_asset = format!("{group}-by-asset");
    let changelog = format!("{group}-changelog");
    let broker = MockBroker::start_topics(&[(&flows, 2), (&by_asset, 2), (&changelog, 2)]);
    let mut service = instance(&broker.bootstrap, &flows, &group);
    let code = service.wait_exit(Duration::from_secs(30), "a start on topics of 2 partitions");
    assert_eq!(code, Some(1));
    let log = service.log();
    assert!(
        log.contains("cluster.partitions = 4") && log.contains(&by_asset),
        "{log}"
    );
}

#[test]
fn an_instance_joining_and_one_leaving_mid_stream_lose_and_double_nothing() {
    let _serial = one_at_a_time();
    let (broker, flows, group, mut instances) = start_group(2);
    let (records, expected) = workload(13, 12_000, 50);
    let producing = produce_in_waves(&broker, &flows, records, 1_500, 150);
    wait_until_consuming(&instances[0], "instance 0");
    // A third instance joins while records flow: partitions move to it.
    instances.push(instance(&broker.bootstrap, &flows, &group));
    wait_until_consuming(&instances[2], "the joining instance");
    // And one of the first two leaves for good: its partitions move back.
    let (code, _) = instances[0].terminate();
    assert_eq!(code, Some(0), "SIGTERM exits 0:\n{}", instances[0].log());
    instances.remove(0);
    producing.join().expect("every record produced");
    wait_for_exact_and_staying(&instances, &expected, "after a join and a leave");
}

#[test]
fn the_partitions_of_a_stopped_instance_are_restored_at_once_with_no_new_record() {
    let _serial = one_at_a_time();
    let (broker, flows, _, mut instances) = start_group(2);
    let (records, expected) = workload(14, 4_000, 40);
    produce(&batching_producer(&broker.bootstrap), &flows, &records);
    let all: Vec<&Service> = instances.iter().collect();
    wait_for_exact(&all, &expected, "two instances");
    let held = |service: &Service| service.metric("exposure_cluster_partitions_held");
    let before = held(&instances[1]).unwrap_or(0.0);
    assert!(
        before < f64::from(PARTITIONS),
        "the second instance holds only its share ({before})"
    );
    let restores = instances[1].metric("exposure_cluster_restores_total");
    let (code, _) = instances[0].terminate();
    assert_eq!(code, Some(0), "SIGTERM exits 0:\n{}", instances[0].log());
    // Nothing more is produced: the partitions that move must be restored
    // when given, not when their next record arrives.
    let taker = &instances[1];
    wait_until_holding(taker, PARTITIONS, "the remaining instance");
    assert_eq!(
        taker.metric("exposure_cluster_restores_total"),
        restores.map(|r| r + f64::from(PARTITIONS) - before),
        "each partition moved was restored once"
    );
    taker.assert_totals_stay(
        Duration::from_secs(1),
        &expected,
        "the same totals after the move",
    );
}
