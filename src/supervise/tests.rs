use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::health::Health;
use crate::metrics::Metrics;

fn supervisor() -> (Supervisor, Arc<Health>, Arc<Metrics>) {
    let health = Arc::new(Health::default());
    health.set_restored(true);
    health.set_assigned(true);
    let metrics = Arc::new(Metrics::new(Arc::new(crate::testkit::engine())));
    (
        Supervisor::new(health.clone(), metrics.clone()),
        health,
        metrics,
    )
}

fn failures(metrics: &Metrics, task: &str) -> u64 {
    metrics.task_failures.with_label_values(&[task]).get()
}

/// A task that runs until `stop` is cancelled.
async fn until(stop: CancellationToken) -> anyhow::Result<()> {
    stop.cancelled().await;
    Ok(())
}

#[tokio::test]
async fn a_task_that_panics_is_a_failure_named_counted_and_shown() {
    let (mut tasks, health, metrics) = supervisor();
    let stop = CancellationToken::new();
    tasks.spawn("steady", until(stop.clone()));
    tasks.spawn("fragile", async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        panic!("boom");
    });
    let failure = tasks
        .wait(&CancellationToken::new())
        .await
        .expect("a failure");
    assert_eq!(failure.task, "fragile");
    assert!(
        failure.cause.contains("panicked: boom"),
        "{}",
        failure.cause
    );
    assert_eq!(failures(&metrics, "fragile"), 1);
    assert_eq!(failures(&metrics, "steady"), 0);
    let snapshot = health.snapshot();
    assert_eq!(snapshot.tasks_down, vec!["fragile"]);
    assert!(!snapshot.ready());
    // The others are still there to be stopped in order.
    stop.cancel();
    tasks.join("steady", Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_task_that_returns_before_it_is_stopped_is_a_failure() {
    let (mut tasks, _, metrics) = supervisor();
    tasks.spawn("api", async { Ok(()) });
    let failure = tasks
        .wait(&CancellationToken::new())
        .await
        .expect("a failure");
    assert_eq!(failure.task, "api");
    assert!(
        failure.cause.contains("without being asked"),
        "{}",
        failure.cause
    );
    assert_eq!(failures(&metrics, "api"), 1);
}

#[tokio::test]
async fn a_thread_that_fails_is_a_failure_with_its_error() {
    let (mut tasks, _, _) = supervisor();
    tasks
        .spawn_thread("worker", || anyhow::bail!("disk on fire"))
        .unwrap();
    let failure = tasks
        .wait(&CancellationToken::new())
        .await
        .expect("a failure");
    assert_eq!(
        (failure.task, failure.cause.as_str()),
        ("worker", "disk on fire")
    );
    // Its result is kept for whoever joins it during the stop.
    let joined = tasks.join("worker", Duration::from_secs(1)).await;
    assert_eq!(joined.unwrap_err().to_string(), "disk on fire");
}

#[tokio::test]
async fn a_thread_that_panics_is_a_failure_with_its_message() {
    let (mut tasks, _, _) = supervisor();
    tasks
        .spawn_thread("worker", || panic!("index out of bounds"))
        .unwrap();
    let failure = tasks
        .wait(&CancellationToken::new())
        .await
        .expect("a failure");
    assert_eq!(failure.cause, "panicked: index out of bounds");
}

#[tokio::test]
async fn a_stop_signal_is_no_failure_and_tasks_are_joined_with_their_results() {
    let (mut tasks, health, metrics) = supervisor();
    let shutdown = CancellationToken::new();
    let stop = CancellationToken::new();
    tasks.spawn("source", until(stop.clone()));
    let thread_stop = stop.clone();
    tasks
        .spawn_thread("poll", move || {
            while !thread_stop.is_cancelled() {
                std::thread::sleep(Duration::from_millis(5));
            }
            anyhow::bail!("not checkpointed")
        })
        .unwrap();
    shutdown.cancel();
    assert!(tasks.wait(&shutdown).await.is_none());
    stop.cancel();
    tasks.join("source", Duration::from_secs(5)).await.unwrap();
    let poll = tasks.join("poll", Duration::from_secs(5)).await;
    assert_eq!(poll.unwrap_err().to_string(), "not checkpointed");
    // Ends during a stop are not failures.
    assert_eq!(failures(&metrics, "source") + failures(&metrics, "poll"), 0);
    assert!(
        !health.snapshot().ready(),
        "a stopping service is not ready"
    );
}

#[tokio::test]
async fn a_join_gives_up_at_its_deadline() {
    let (mut tasks, _, _) = supervisor();
    tasks.spawn("stuck", std::future::pending());
    let shutdown = CancellationToken::new();
    shutdown.cancel();
    assert!(tasks.wait(&shutdown).await.is_none());
    let joined = tasks.join("stuck", Duration::from_millis(50)).await;
    assert!(joined
        .unwrap_err()
        .to_string()
        .contains("did not stop within"));
}

#[tokio::test(start_paused = true)]
async fn a_restarting_task_runs_again_after_each_failure_with_a_growing_delay() {
    let (mut tasks, health, metrics) = supervisor();
    let starts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = CancellationToken::new();
    {
        let (starts, stop) = (starts.clone(), stop.clone());
        tasks.spawn_restarting("maintenance", move || {
            let (starts, stop) = (starts.clone(), stop.clone());
            async move {
                let run = {
                    let mut starts = starts.lock().unwrap();
                    starts.push(tokio::time::Instant::now());
                    starts.len()
                };
                match run {
                    1 => anyhow::bail!("first run fails"),
                    2 => panic!("second run panics"),
                    _ => until(stop).await,
                }
            }
        });
    }
    // Down while it waits to start again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(health.snapshot().tasks_down, vec!["maintenance"]);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let starts = starts.lock().unwrap().clone();
    assert_eq!(starts.len(), 3, "started again after each failure");
    assert_eq!(failures(&metrics, "maintenance"), 2);
    assert!(health.snapshot().tasks_down.is_empty());
    assert!(health.snapshot().ready());
    let delays: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(delays[0] >= FIRST_RESTART_DELAY, "{delays:?}");
    assert!(delays[1] >= 2 * FIRST_RESTART_DELAY, "{delays:?}");
    stop.cancel();
}
