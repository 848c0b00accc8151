//! The service's tasks made to fail, in a real `exposure run` process
//! against the mock broker process, with fault injection (`fail` points,
//! set in the `FAILPOINTS` environment variable; the binary must be built
//! with `--features failpoints`, as `.ci/test` does for this file):
//!
//! - a panicking ingest thread stops the process with exit 1, without
//!   checkpointing a state that lacks part of what was read, so a restart
//!   counts everything exactly once;
//! - a panicking maintenance task is restarted, counted and shown in
//!   `/readyz` while it is down, and the service goes on meanwhile;
//! - `exposure demo` whose traffic fails stops with exit 1 and says why,
//!   rather than answering from a state that no longer moves.
#![cfg(feature = "failpoints")]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{
    batching_producer, free_port, produce, rand_name, wait_for_port, wait_until, workload,
    MockBroker, Service, ServiceOptions,
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
    service.wait_for_totals(CONVERGE_WITHIN, "exact totals after the restart", &expected);
    service.assert_totals_stay(Duration::from_secs(1), &expected, "counted twice later");
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
    let (status, body) =
        service.wait_for_readyz(Duration::from_secs(20), r#""tasks_down":["maintenance"]"#);
    assert_eq!(status, 503, "{body}");
    // Then running again, having failed twice; and the service went on.
    let body = wait_until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let (status, body) = service.get("/readyz");
            let failures = service
                .metric(r#"exposure_task_failures_total{task="maintenance"}"#)
                .unwrap_or(0.0);
            if status == 200 && failures == 2.0 {
                Ok(body)
            } else {
                Err((status, body, failures))
            }
        },
        |(status, body, failures)| {
            format!(
                "not running again: {status} {body}, {failures} failures\n{}",
                service.log()
            )
        },
    );
    assert!(body.contains(r#""tasks_down":[]"#), "{body}");
    let (records, expected) = workload(3, 200, 10);
    produce(&batching_producer(&broker.bootstrap), &topic, &records);
    service.wait_for_totals(
        CONVERGE_WITHIN,
        "records applied after the restarts",
        &expected,
    );
    let log = service.log();
    assert_eq!(log.matches("task failed, restarting").count(), 2, "{log}");
    assert!(log.contains("panicked: injected"), "{log}");
}

#[test]
fn a_demo_whose_traffic_fails_stops_with_exit_1_and_says_why() {
    let cwd = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let log_path = cwd.path().join("demo.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_exposure"))
        .args(["demo", "--listen", &listen])
        .current_dir(cwd.path())
        // Twenty ticks of live traffic (5 s), then the traffic thread panics.
        .env("FAILPOINTS", "demo-traffic=20*off->panic(injected)")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("the demo starts");
    wait_for_port(&listen, Duration::from_secs(30));
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let code = wait_until(
        Duration::from_secs(60),
        Duration::from_millis(50),
        || child.try_wait().unwrap().map(|s| s.code()).ok_or(()),
        |()| format!("the demo did not stop when its traffic failed:\n{}", log()),
    );
    let log = log();
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("the demo traffic failed: panicked: injected"),
        "{log}"
    );
}
