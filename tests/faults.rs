//! The service's tasks made to fail, in a real `exposure run` process
//! against the mock broker process, with fault injection (`fail` points,
//! set in the `FAILPOINTS` environment variable; the binary must be built
//! with `--features failpoints`, as `.ci/test` does for this file):
//!
//! - a panicking ingest thread stops the process with exit 1, without
//!   checkpointing a state that lacks part of what was read, so a restart
//!   counts everything exactly once;
//! - a panicking maintenance task is restarted, counted and shown in
//!   `/readyz` while it is down, and the service goes on meanwhile.
#![cfg(feature = "failpoints")]

mod support;

use std::time::{Duration, Instant};

use support::{
    batching_producer, produce, rand_name, totals, workload, MockBroker, Service, ServiceOptions,
};

const CONVERGE_WITHIN: Duration = Duration::from_secs(60);

#[test]
fn a_panicking_ingest_thread_stops_the_service_and_a_restart_counts_exactly() {
    let topic = rand_name("flows");
    let broker = MockBroker::start(&topic, 3);
    let (records, expected) = workload(11, 20_000, 100);
    produce(&batching_producer(&broker.bootstrap), &topic, &records);
    let opts = ServiceOptions {
        checkpoint_interval: "100ms",
        // Ten batches go through, then every one panics.
        env: vec![("FAILPOINTS", "ingest-batch=10*off->panic(injected)".into())],
        ..ServiceOptions::default()
    };
    let mut service = Service::start_opts(&broker.bootstrap, &[&topic], &rand_name("g"), "", &opts);
    let started = Instant::now();
    let code = service.wait_exit(Duration::from_secs(30), "an ingest thread panicked");
    let log = service.log();
    assert_eq!(code, Some(1), "{log}");
    // Well within the shutdown deadline: nobody waits for the lost batch.
    assert!(started.elapsed() < Duration::from_secs(20), "{log}");
    assert!(log.contains("task stopped unexpectedly"), "{log}");
    assert!(log.contains("ingest thread"), "{log}");
    assert!(log.contains("panicked: injected"), "{log}");
    assert!(log.contains("without a last checkpoint"), "{log}");

    let service = service.restart();
    let answer = service.wait_for(CONVERGE_WITHIN, "exact totals after the restart", |a| {
        totals(a) == expected
    });
    assert_eq!(totals(&answer), expected);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        totals(&service.open_ports()),
        expected,
        "counted twice later"
    );
}

#[test]
fn a_panicking_maintenance_task_is_restarted_counted_and_shown_while_down() {
    let topic = rand_name("flows");
    let broker = MockBroker::start(&topic, 1);
    let opts = ServiceOptions {
        // The first two rounds of maintenance panic (it runs every second).
        env: vec![("FAILPOINTS", "maintenance=2*panic(injected)".into())],
        ..ServiceOptions::default()
    };
    let service = Service::start_opts(&broker.bootstrap, &[&topic], &rand_name("g"), "", &opts);
    // Down while it waits to start again (1 s, then 2 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = service.get("/readyz");
        if body.contains(r#""tasks_down":["maintenance"]"#) {
            assert_eq!(status, 503, "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "never shown down: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Then running again, having failed twice; and the service went on.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = service.get("/readyz");
        let failures = service
            .metric(r#"exposure_task_failures_total{task="maintenance"}"#)
            .unwrap_or(0.0);
        if status == 200 && failures == 2.0 {
            assert!(body.contains(r#""tasks_down":[]"#), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not running again: {status} {body}, {failures} failures\n{}",
            service.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (records, expected) = workload(3, 200, 10);
    produce(&batching_producer(&broker.bootstrap), &topic, &records);
    service.wait_for(CONVERGE_WITHIN, "records applied after the restarts", |a| {
        totals(a) == expected
    });
    let log = service.log();
    assert_eq!(log.matches("task failed, restarting").count(), 2, "{log}");
    assert!(log.contains("panicked: injected"), "{log}");
}
