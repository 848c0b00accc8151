//! Crashes and outages against a broker in its own process (librdkafka's
//! mock cluster, `exposure-mock-broker`): kill -9 at random moments during
//! ingest must lose nothing and count nothing twice; a broker outage must
//! not stop queries, and nothing is lost when the broker is back.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use support::{
    batching_producer, produce, producer, rand_name, totals, wait_until, workload, MockBroker,
    Service, ServiceOptions,
};

const CONVERGE_WITHIN: Duration = Duration::from_secs(60);

#[test]
fn kill_9_during_ingest_loses_nothing_and_counts_nothing_twice() {
    let topic = rand_name("flows");
    let broker = MockBroker::start(&topic, 3);
    let (records, expected) = workload(7, 60_000, 200);
    let opts = ServiceOptions {
        checkpoint_interval: "150ms",
        session_timeout_ms: 3000,
        ..ServiceOptions::default()
    };
    let group = rand_name("group");
    let mut service = Service::start_opts(&broker.bootstrap, &[&topic], &group, "", &opts);
    let producer = batching_producer(&broker.bootstrap);
    let mut rng = rand::rngs::StdRng::seed_from_u64(rand::random());
    // Six waves; during each, once the restarted service has applied its
    // first records, a kill -9 at a random moment while it goes on.
    let waves: Vec<&[(String, Vec<u8>)]> = records.chunks(records.len() / 6 + 1).collect();
    let mut kills = Vec::new();
    for wave in &waves {
        produce(&producer, &topic, wave);
        wait_until(
            CONVERGE_WITHIN,
            Duration::from_millis(2),
            || match service.metric("exposure_records_consumed_total") {
                Some(consumed) if consumed != 0.0 => Ok(()),
                _ => Err(()),
            },
            |()| format!("the restarted service consumed nothing:\n{}", service.log()),
        );
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..40)));
        let consumed_at_kill = service
            .metric("exposure_records_consumed_total")
            .unwrap_or(0.0);
        service.kill9();
        kills.push(consumed_at_kill);
        service = service.restart();
    }
    println!("records consumed by each process before its kill -9: {kills:?}");
    service.wait_for_totals(CONVERGE_WITHIN, "exact totals after every kill", &expected);
    // And they stay exact: nothing is applied twice later.
    service.assert_totals_stay(
        Duration::from_secs(1),
        &expected,
        &format!("kills at {kills:?}"),
    );
    let log = service.log();
    assert!(
        log.matches("state restored from checkpoint").count() >= 5,
        "{log}"
    );
}

#[test]
fn broker_outage_keeps_answering_and_loses_nothing() {
    let topic = rand_name("flows");
    let mut broker = MockBroker::start(&topic, 2);
    let (first, mut expected) = workload(1, 500, 20);
    let (second, more) = workload(2, 500, 20);
    for (port, bytes) in more {
        *expected.entry(port).or_default() += bytes;
    }
    let service = Service::start(&broker.bootstrap, &[&topic], &rand_name("group"), "");
    let producer = producer(&broker.bootstrap);
    produce(&producer, &topic, &first);
    let before = service.wait_for(CONVERGE_WITHIN, "first half", |a| {
        !a["DataList"].as_array().unwrap().is_empty()
    });
    let first_totals = service.wait_for(CONVERGE_WITHIN, "first half exact", |a| {
        totals(a).values().sum::<u64>() == workload(1, 500, 20).1.values().sum::<u64>()
    });
    assert!(!totals(&before).is_empty());

    broker.down();
    // The outage shows in exposure_kafka_connected.
    service.wait_for_metric(Duration::from_secs(20), "exposure_kafka_connected", 0.0);
    let (_, ready) = service.get("/readyz");
    assert!(ready.contains("\"kafka_connected\":false"), "{ready}");
    // Queries are still answered from the state.
    assert_eq!(totals(&service.open_ports()), totals(&first_totals));

    broker.up();
    produce(&producer, &topic, &second);
    service.wait_for_totals(CONVERGE_WITHIN, "both halves exact", &expected);
    // The reconnection shows.
    service.wait_for_metric(Duration::from_secs(20), "exposure_kafka_connected", 1.0);
}

#[test]
fn corrupt_checkpoints_stop_the_service_naming_the_files() {
    let topic = rand_name("flows");
    let broker = MockBroker::start(&topic, 1);
    let mut service = Service::start(&broker.bootstrap, &[&topic], &rand_name("group"), "");
    let (records, expected) = workload(3, 50, 5);
    produce(&producer(&broker.bootstrap), &topic, &records);
    service.wait_for_totals(CONVERGE_WITHIN, "records applied", &expected);
    let (code, _) = service.terminate();
    assert_eq!(code, Some(0));
    let state = service.dir.path().join("state");
    let files: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!files.is_empty(), "a checkpoint was written at shutdown");
    for f in &files {
        let mut bytes = std::fs::read(f).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(f, bytes).unwrap();
    }
    let config = service.dir.path().join("exposure.toml");
    let out = support::exposure(&["run", "--config", config.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no usable checkpoint") && err.contains("checksum mismatch"),
        "{err}"
    );
    for f in &files {
        assert!(
            err.contains(&f.file_name().unwrap().to_string_lossy().to_string()),
            "{err}"
        );
    }
}

fn add(a: &BTreeMap<u64, u64>, b: &BTreeMap<u64, u64>) -> BTreeMap<u64, u64> {
    let mut sum = a.clone();
    for (port, bytes) in b {
        *sum.entry(*port).or_default() += bytes;
    }
    sum
}

/// exposure keeps the whole network's state in one process, so it runs as
/// the only consumer of its group (replicas use their own group ids). When
/// another member joins the group and leaves again, the partitions it held
/// come back and resume from this process's own progress: nothing it
/// applied is counted twice, nothing the other member read is missing.
#[test]
fn partitions_taken_away_and_given_back_keep_the_count_exact() {
    taken_away_and_given_back(None);
}

/// The same under the cooperative protocol, where a rebalance moves only
/// the partitions that change owner: A gives 2 of its 4 away and later
/// gets them back in increments, and still says how many it holds.
#[test]
fn partitions_moved_cooperatively_keep_the_count_exact() {
    taken_away_and_given_back(Some("cooperative-sticky"));
}

fn taken_away_and_given_back(assignment_strategy: Option<&'static str>) {
    let opts = ServiceOptions {
        assignment_strategy,
        ..ServiceOptions::default()
    };
    let topic = rand_name("flows");
    let broker = MockBroker::start(&topic, 4);
    let group = rand_name("group");
    let (first, expected_first) = workload(11, 2_000, 30);
    let (second, expected_second) = workload(12, 2_000, 30);
    let producer = batching_producer(&broker.bootstrap);
    let a = Service::start_opts(&broker.bootstrap, &[&topic], &group, "", &opts);
    produce(&producer, &topic, &first);
    a.wait_for_totals(CONVERGE_WITHIN, "the first wave", &expected_first);
    assert_eq!(a.metric("exposure_kafka_assigned_partitions"), Some(4.0));

    // Another member joins: half of the partitions are taken away from A.
    let mut b = Service::start_opts(&broker.bootstrap, &[&topic], &group, "", &opts);
    let assigned = |s: &Service| s.metric("exposure_kafka_assigned_partitions");
    wait_until(
        CONVERGE_WITHIN,
        Duration::from_millis(50),
        || match (assigned(&a), assigned(&b)) {
            (Some(2.0), Some(2.0)) => Ok(()),
            _ => Err(()),
        },
        |()| {
            format!(
                "no rebalance to 2 partitions each:\nA:\n{}\nB:\n{}",
                a.log(),
                b.log()
            )
        },
    );
    produce(&producer, &topic, &second);
    b.wait_for(CONVERGE_WITHIN, "B applies its half", |x| {
        !totals(x).is_empty()
    });
    // It leaves; A gets every partition back and catches up from its own progress.
    let (code, _) = b.terminate();
    assert_eq!(code, Some(0));
    let expected = add(&expected_first, &expected_second);
    a.wait_for_totals(CONVERGE_WITHIN, "A exact over both waves", &expected);
    a.assert_totals_stay(
        Duration::from_millis(500),
        &expected,
        "nothing counted twice later",
    );
    assert_eq!(
        a.metric("exposure_kafka_assigned_partitions"),
        Some(4.0),
        "A holds every partition again:\n{}",
        a.log()
    );
    assert!(
        a.log()
            .contains("resuming partitions from checkpointed offsets"),
        "{}",
        a.log()
    );
}

#[test]
fn rejected_records_are_copied_to_the_dead_letter_topic_with_the_error() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};

    let topic = rand_name("flows");
    let dlq = rand_name("rejected");
    let broker = MockBroker::start_topics(&[(&topic, 1), (&dlq, 1)]);
    let opts = ServiceOptions {
        dead_letter_topic: dlq.clone(),
        ..ServiceOptions::default()
    };
    let service = Service::start_opts(&broker.bootstrap, &[&topic], &rand_name("group"), "", &opts);
    let (mut records, expected) = workload(5, 20, 3);
    let bad: [&[u8]; 4] = [
        b"{\"src_addr\":\"198.51.100.1\",\"dst_addr\":\"203.0.113.10\",\"proto\":\"TCP\",\"bytes\":-1,\"time_flow_end_ns\":1}",
        b"{\"ip_src\":\"300.1.1.1\",\"ip_dst\":\"203.0.113.10\",\"ip_proto\":\"tcp\",\"bytes\":1}",
        b"{\"src_addr\":\"198.51.100.1\",\"dst_addr\":\"203.0.113.10\",\"proto\":6,\"bytes\":1e400}",
        b"\x08\x01\x12",
    ];
    for (i, b) in bad.iter().enumerate() {
        records.insert(5 * i, (format!("bad{i}"), b.to_vec()));
    }
    produce(&batching_producer(&broker.bootstrap), &topic, &records);
    service.wait_for_totals(CONVERGE_WITHIN, "the good records", &expected);

    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("group.id", rand_name("reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&dlq]).unwrap();
    let mut copies = Vec::new();
    let deadline = Instant::now() + CONVERGE_WITHIN;
    while copies.len() < bad.len() {
        assert!(
            Instant::now() < deadline,
            "only {} dead letters arrived",
            copies.len()
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let headers = m.headers().expect("headers");
            let header = |name: &str| {
                headers
                    .iter()
                    .find(|h| h.key == name)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            };
            copies.push((
                m.payload().unwrap_or_default().to_vec(),
                header("exposure-reason"),
                header("exposure-error"),
            ));
        }
    }
    for (payload, reason, error) in &copies {
        assert!(
            bad.contains(&payload.as_slice()),
            "an unexpected copy: {payload:?}"
        );
        assert!(
            reason.as_deref().is_some_and(|r| !r.is_empty()),
            "reason header"
        );
        assert!(
            error.as_deref().is_some_and(|e| !e.is_empty()),
            "error header"
        );
    }
    assert_eq!(
        service.metric("exposure_dead_letter_records_total"),
        Some(bad.len() as f64)
    );
}

#[test]
fn a_state_dir_that_goes_away_fails_checkpoints_visibly_and_loses_nothing() {
    let topic = rand_name("flows");
    let broker = MockBroker::start(&topic, 2);
    let (first, mut expected) = workload(5, 400, 20);
    let (second, more) = workload(6, 400, 20);
    for (port, bytes) in more {
        *expected.entry(port).or_default() += bytes;
    }
    let opts = ServiceOptions {
        checkpoint_interval: "200ms",
        ..ServiceOptions::default()
    };
    let mut service = Service::start_opts(&broker.bootstrap, &[&topic], &rand_name("g"), "", &opts);
    let producer = producer(&broker.bootstrap);
    produce(&producer, &topic, &first);
    service.wait_for_totals(CONVERGE_WITHIN, "first half exact", &workload(5, 400, 20).1);

    // The volume goes away: a file stands where the directory was (as
    // root, a read-only directory would still be written).
    let state = service.dir.path().join("state");
    let moved = service.dir.path().join("state.away");
    std::fs::rename(&state, &moved).unwrap();
    std::fs::write(&state, "not a directory").unwrap();
    let (status, body) = service.wait_for_readyz(CONVERGE_WITHIN, r#""checkpoint_failing":true"#);
    // Answers are still exact: the instance stays ready.
    assert_eq!(status, 200, "{body}");
    assert!(
        service
            .metric(r#"exposure_checkpoints_total{result="failure"}"#)
            .unwrap_or(0.0)
            >= 1.0
    );
    let log = service.log();
    assert!(log.contains("checkpoint failed"), "{log}");
    assert!(log.contains(&state.display().to_string()), "{log}");
    // Ingest goes on meanwhile.
    produce(&producer, &topic, &second);
    service.wait_for_totals(CONVERGE_WITHIN, "both halves exact", &expected);

    // Back: checkpoints resume, and a restart finds everything.
    std::fs::remove_file(&state).unwrap();
    std::fs::rename(&moved, &state).unwrap();
    service.wait_for_readyz(CONVERGE_WITHIN, r#""checkpoint_failing":false"#);
    let (code, _) = service.terminate();
    assert_eq!(code, Some(0), "{}", service.log());
    let service = service.restart();
    service.wait_for_totals(CONVERGE_WITHIN, "restored exact", &expected);
}

#[test]
fn a_broker_that_refuses_connections_keeps_the_service_up_and_unready() {
    // Nothing listens there.
    let bootstrap = format!("127.0.0.1:{}", support::free_port());
    let mut service = Service::start(&bootstrap, &["flows"], &rand_name("g"), "");
    std::thread::sleep(Duration::from_secs(3));
    let (status, body) = service.get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(r#""kafka_connected":false"#), "{body}");
    assert!(body.contains(r#""partitions_assigned":false"#), "{body}");
    assert_eq!(service.get("/healthz").0, 200);
    // Queries are answered (nothing is known yet) rather than refused.
    assert_eq!(totals(&service.open_ports()).len(), 0);
    let log = service.log();
    assert!(log.contains(&bootstrap), "the log names the broker:\n{log}");
    let (code, took) = service.terminate();
    assert_eq!(code, Some(0), "{}", service.log());
    assert!(took < Duration::from_secs(10), "{took:?}");
}
