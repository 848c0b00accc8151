//! Every metric `exposure` exports, defined in one place. The reference,
//! with what each means, is `docs/operations.md#reference`.
//!
//! Three kinds, by how they are fed:
//! - counters on the ingest hot path live in the engine as plain atomics
//!   ([`crate::state::Stats`]); the [`EngineCollector`] turns them, and the
//!   exposure gauges computed from the state, into Prometheus families at
//!   scrape time, so ingest never touches a label map;
//! - latency distributions are `hdrhistogram`s exported as summaries
//!   ([`latency`]); ingest workers hand theirs over once per batch through
//!   an [`IngestRecorder`];
//! - the API, the Kafka source and checkpoints update ordinary `prometheus`
//!   metrics, the pub fields and methods of [`Metrics`].

mod engine;
pub mod latency;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub use engine::{EngineCollector, DEFAULT_MAX_PORT_SERIES};
pub use latency::{IngestRecorder, Latency, Unit};

use crate::changes::events::Log;
use crate::changes::watch::Watched;
use crate::flow::Format;
use crate::state::Engine;

/// The service's supervised tasks: the values of the `task` label of
/// `exposure_task_failures_total`, each exported from 0 from the start, so
/// that an alert on its increase sees the first failure.
pub mod task {
    /// The Kafka poll thread and its ingest workers.
    pub const KAFKA_POLL: &str = "kafka-poll";
    /// The HTTP server.
    pub const API: &str = "api";
    /// Compaction, expiry and the port index's hourly move.
    pub const MAINTENANCE: &str = "maintenance";
    /// Re-reading `changes.expected` on SIGHUP and when it changes.
    pub const EXPECTED: &str = "expected";
    /// Deliveries to `[[changes.webhooks]]`.
    pub const WEBHOOKS: &str = "webhooks";
    /// Producing events to `changes.topic`.
    pub const CHANGES_TOPIC: &str = "changes-topic";
    /// Cluster mode: routing flows to the asset's partition.
    pub const CLUSTER_ROUTE: &str = "cluster-route";
    /// Cluster mode: counting the partitions held, flushing the changelog.
    pub const CLUSTER_COUNT: &str = "cluster-count";
    /// Cluster mode: reading every changelog partition into the replica.
    pub const CLUSTER_REPLICA: &str = "cluster-replica";
    pub const ALL: [&str; 9] = [
        KAFKA_POLL,
        API,
        MAINTENANCE,
        EXPECTED,
        WEBHOOKS,
        CHANGES_TOPIC,
        CLUSTER_ROUTE,
        CLUSTER_COUNT,
        CLUSTER_REPLICA,
    ];
}

/// Choices made when the metrics are built.
#[derive(Clone, Copy, Debug)]
pub struct MetricsOptions {
    /// At most this many `exposure_port_*` series (port, protocol, service,
    /// risk level), highest risk first.
    pub max_port_series: usize,
}

impl Default for MetricsOptions {
    fn default() -> Self {
        MetricsOptions {
            max_port_series: DEFAULT_MAX_PORT_SERIES,
        }
    }
}

/// The metric registry and the metrics updated outside the engine.
pub struct Metrics {
    registry: Registry,
    /// API requests by Action and response Code (`Success` when it succeeded).
    pub api_requests: IntCounterVec,
    /// Requests refused for going over the QPS limit, by user (`anonymous`
    /// when `api.auth = "none"`: client addresses would be unbounded labels).
    pub api_throttled: IntCounterVec,
    /// Time from a request's arrival to its response, by Action.
    pub api_latency: Arc<Latency>,
    /// Records between the consumer's position and the high watermark.
    pub kafka_lag: IntGaugeVec,
    /// The next offset to apply, per partition.
    pub kafka_next_offset: IntGaugeVec,
    /// 1 while the consumer reaches the brokers, 0 otherwise.
    pub kafka_connected: IntGauge,
    /// Partitions currently assigned to this consumer.
    pub kafka_assigned_partitions: IntGauge,
    /// Records copied to the dead-letter topic.
    pub dead_letters: IntCounter,
    /// Kafka records taken by the ingest workers, by configured format.
    pub ingest_records: IntCounterVec,
    /// Payload bytes of those records, by configured format.
    pub ingest_bytes: IntCounterVec,
    /// From a flow's end time to its record being applied.
    pub ingest_latency: Arc<Latency>,
    /// From a record's Kafka timestamp (produce time) to its being applied.
    pub ingest_freshness: Arc<Latency>,
    /// When the last checkpoint was written whole (UNIX s; 0: never).
    pub checkpoint_last_success: Gauge,
    /// How long the last successful checkpoint took.
    pub checkpoint_duration: Gauge,
    /// Size of the last successful checkpoint.
    pub checkpoint_size: IntGauge,
    /// Checkpoints attempted, by result (`success`, `failure`).
    pub checkpoints: IntCounterVec,
    /// Tasks of the service that ended unexpectedly or failed, by task
    /// (see [`crate::supervise`]).
    pub task_failures: IntCounterVec,
    /// `state.checkpoint_interval` in seconds; 0 while checkpoints are off
    /// (the "never checkpointed" alert only looks at processes where it is set).
    pub checkpoint_interval: Gauge,
    /// Entries in the expected list in use, expired ones included.
    pub expected_entries: IntGauge,
    /// Re-reads of `changes.expected`, by result (`ok`, `error`).
    pub expected_reloads: IntCounterVec,
    /// The deliveries to `[[changes.webhooks]]`.
    pub webhooks: WebhookMetrics,
    /// Events produced to `changes.topic`.
    pub changes_topic_produced: IntCounter,
    /// Events that left the history before they were produced.
    pub changes_topic_dropped: IntCounter,
    /// The last `Seq` `changes.topic` has had produced (or found there).
    pub changes_topic_seq: IntGauge,
    /// Cluster mode (`docs/operations.md#scale-out`).
    pub cluster: ClusterMetrics,
}

/// The metrics of cluster mode, 0 outside it.
#[derive(Clone)]
pub struct ClusterMetrics {
    /// Routing partitions this instance counts.
    pub partitions_held: IntGauge,
    /// Changelog partitions the replica has not read to their end at start.
    pub partitions_missing: IntGauge,
    /// Routed flows dropped as replays (applied already).
    pub replays_dropped: IntCounter,
    /// Routed flows counted into the partitions held here.
    pub flows_counted: IntCounter,
    /// Changelog flushes, by result (`ok`, `failed`).
    pub flushes: IntCounterVec,
    /// Partitions restored from the changelog.
    pub restores: IntCounter,
    /// How long the last restore of a partition took.
    pub restore_seconds: Gauge,
    /// Changelog records the replica ignored as stale.
    pub stale_records: IntCounter,
    /// Partitions counted here that another instance took over, claimed back.
    pub fenced: IntCounter,
    /// `exposure_kafka_consumer_lag`, `exposure_kafka_next_offset` and
    /// `exposure_kafka_connected`, which the cluster consumers report for
    /// the flow topics and the internal topics alike.
    pub kafka_lag: IntGaugeVec,
    pub kafka_next_offset: IntGaugeVec,
    pub kafka_connected: IntGauge,
}

/// The metrics of `[[changes.webhooks]]`, each labelled with the webhook's
/// name (`docs/operations.md#webhooks`).
#[derive(Clone)]
pub struct WebhookMetrics {
    /// POSTs, by result (`ok`: a 2xx answer; `error`: anything else).
    pub deliveries: IntCounterVec,
    /// Events (json) or alerts (alertmanager) a receiver accepted.
    pub sent: IntCounterVec,
    /// Events or alerts given up, by reason (`max_retry`: retried for
    /// `max_retry`; `evicted`: gone from the event history before they
    /// were read).
    pub dropped: IntCounterVec,
    /// Where each webhook is in the event log, for
    /// `exposure_webhook_pending_events` at scrape time.
    pub positions: WebhookPositions,
    /// Alerts the webhook holds firing (alertmanager).
    pub firing: IntGaugeVec,
    /// When a POST last succeeded (UNIX s; 0: never).
    pub last_success: IntGaugeVec,
}

impl WebhookMetrics {
    /// Exports `webhook`'s series from zero, so that an alert on their
    /// increase sees the first failure.
    pub fn start(&self, webhook: &str) {
        for result in ["ok", "error"] {
            self.deliveries.with_label_values(&[webhook, result]);
        }
        self.sent.with_label_values(&[webhook]);
        for reason in ["max_retry", "evicted"] {
            self.dropped.with_label_values(&[webhook, reason]);
        }
        self.last_success.with_label_values(&[webhook]);
    }

    /// Exports `webhook`'s pending events as the log's latest `Seq` less
    /// `position` (the last `Seq` it has read), whatever it is doing.
    pub fn track(&self, webhook: &str, position: Arc<AtomicU64>, log: Arc<Log>) {
        let mut positions = self
            .positions
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        positions.retain(|(name, _, _)| name != webhook);
        positions.push((webhook.to_owned(), position, log));
    }
}

/// Each webhook's name, position in the log and the log.
#[derive(Clone, Default)]
pub struct WebhookPositions(Arc<Mutex<Vec<Position>>>);

/// A webhook's name, the last `Seq` it read, and the log it reads.
type Position = (String, Arc<AtomicU64>, Arc<Log>);

const WEBHOOK_PENDING: (&str, &str) = (
    "exposure_webhook_pending_events",
    "Events recorded that a webhook has not read yet.",
);

/// Exports `exposure_webhook_pending_events` at scrape time, so that a
/// webhook stuck on a hung receiver shows its backlog growing.
struct WebhookPending {
    positions: WebhookPositions,
    desc: Desc,
}

impl Collector for WebhookPending {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let pending = IntGaugeVec::new(
            Opts::new(WEBHOOK_PENDING.0, WEBHOOK_PENDING.1),
            &["webhook"],
        )
        .expect("valid metric");
        let positions = self
            .positions
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (name, position, log) in positions.iter() {
            let behind = log
                .latest()
                .saturating_sub(position.load(Ordering::Acquire));
            pending
                .with_label_values(&[name])
                .set(i64::try_from(behind).unwrap_or(i64::MAX));
        }
        pending.collect()
    }
}

impl Metrics {
    /// Registers every metric; engine metrics are read from `engine` at
    /// scrape time. Nothing is expected.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self::with_options(engine, MetricsOptions::default())
    }

    /// [`Metrics::new`] with the choices in `options`.
    pub fn with_options(engine: Arc<Engine>, options: MetricsOptions) -> Self {
        Self::watching(engine, Arc::new(Watched::empty()), options)
    }

    /// [`Metrics::with_options`], with `exposure_unexpected_endpoints` judged
    /// against the list `expected` holds at each scrape.
    pub fn watching(engine: Arc<Engine>, expected: Arc<Watched>, options: MetricsOptions) -> Self {
        let registry = Registry::new();
        let register = |m: Box<dyn Collector>| registry.register(m).expect("unique metric");
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let m = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            register(Box::new(m.clone()));
            m
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let m = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            register(Box::new(m.clone()));
            m
        };
        let int_gauge = |name: &str, help: &str| {
            let m = IntGauge::new(name, help).expect("valid metric");
            register(Box::new(m.clone()));
            m
        };
        let gauge = |name: &str, help: &str| {
            let m = Gauge::new(name, help).expect("valid metric");
            register(Box::new(m.clone()));
            m
        };
        let api_requests = counter_vec(
            "exposure_api_requests_total",
            "API requests by Action and response Code (Success when answered).",
            &["action", "code"],
        );
        let api_throttled = counter_vec(
            "exposure_api_throttled_total",
            "API requests refused with Throttling.User, by user.",
            &["user"],
        );
        let kafka_lag = gauge_vec(
            "exposure_kafka_consumer_lag",
            "Records between the applied position and the high watermark, per partition.",
            &["topic", "partition"],
        );
        let kafka_next_offset = gauge_vec(
            "exposure_kafka_next_offset",
            "Next offset to apply, per partition.",
            &["topic", "partition"],
        );
        let kafka_connected = int_gauge(
            "exposure_kafka_connected",
            "1 while the consumer reaches the Kafka brokers, 0 otherwise.",
        );
        let kafka_assigned_partitions = int_gauge(
            "exposure_kafka_assigned_partitions",
            "Partitions assigned to this consumer.",
        );
        let dead_letters = IntCounter::new(
            "exposure_dead_letter_records_total",
            "Rejected records copied to the dead-letter topic.",
        )
        .expect("valid metric");
        register(Box::new(dead_letters.clone()));
        let ingest_records = counter_vec(
            "exposure_ingest_records_total",
            "Kafka records taken by the ingest workers, by the configured kafka.format.",
            &["format"],
        );
        let ingest_bytes = counter_vec(
            "exposure_ingest_bytes_total",
            "Payload bytes of the Kafka records taken by the ingest workers, by the configured kafka.format.",
            &["format"],
        );
        let checkpoint_last_success = gauge(
            "exposure_checkpoint_last_success_timestamp_seconds",
            "When the last checkpoint was written whole (UNIX time); 0 until the first.",
        );
        let checkpoint_duration = gauge(
            "exposure_checkpoint_duration_seconds",
            "How long the last successful checkpoint took to write, fsync and rename.",
        );
        let checkpoint_size = int_gauge(
            "exposure_checkpoint_size_bytes",
            "Size of the last successful checkpoint.",
        );
        let checkpoints = counter_vec(
            "exposure_checkpoints_total",
            "Checkpoints attempted, by result (success, failure).",
            &["result"],
        );
        for result in ["success", "failure"] {
            checkpoints.with_label_values(&[result]);
        }
        let task_failures = counter_vec(
            "exposure_task_failures_total",
            "Tasks of the service that failed (an error or a panic) or ended unexpectedly, by task.",
            &["task"],
        );
        for name in task::ALL {
            task_failures.with_label_values(&[name]);
        }
        let checkpoint_interval = gauge(
            "exposure_checkpoint_interval_seconds",
            "The configured state.checkpoint_interval; 0 while checkpoints are not taken.",
        );
        let expected_entries = int_gauge(
            "exposure_expected_entries",
            "Entries in the expected-exposures list in use (changes.expected), expired ones included.",
        );
        expected_entries.set(i64::try_from(expected.current().len()).unwrap_or(i64::MAX));
        let expected_reloads = counter_vec(
            "exposure_expected_reloads_total",
            "Re-reads of the changes.expected file, by result (ok, error: the previous list stays in use).",
            &["result"],
        );
        for result in ["ok", "error"] {
            expected_reloads.with_label_values(&[result]);
        }
        let webhooks = WebhookMetrics {
            deliveries: counter_vec(
                "exposure_webhook_deliveries_total",
                "POSTs to a webhook, by result (ok: a 2xx answer; error: any other answer, a timeout or no connection).",
                &["webhook", "result"],
            ),
            sent: counter_vec(
                "exposure_webhook_sent_total",
                "Events (format json) or alerts (format alertmanager) a webhook accepted.",
                &["webhook"],
            ),
            dropped: counter_vec(
                "exposure_webhook_dropped_total",
                "Events or alerts given up, by reason (max_retry: retried for max_retry; evicted: gone from the event history before they were sent).",
                &["webhook", "reason"],
            ),
            positions: WebhookPositions::default(),
            firing: gauge_vec(
                "exposure_webhook_alerts_firing",
                "Alerts an alertmanager webhook holds firing.",
                &["webhook"],
            ),
            last_success: gauge_vec(
                "exposure_webhook_last_success_timestamp_seconds",
                "When a POST to a webhook last succeeded (UNIX time; 0: never).",
                &["webhook"],
            ),
        };
        let int_counter = |name: &str, help: &str| {
            let m = IntCounter::new(name, help).expect("valid metric");
            register(Box::new(m.clone()));
            m
        };
        let changes_topic_produced = int_counter(
            "exposure_changes_topic_produced_total",
            "Events produced to changes.topic (each once: an event the topic already holds is not produced again).",
        );
        let changes_topic_dropped = int_counter(
            "exposure_changes_topic_dropped_total",
            "Events that left the event history before they could be produced to changes.topic.",
        );
        let changes_topic_seq = int_gauge(
            "exposure_changes_topic_seq",
            "The last Seq changes.topic is produced up to (events after it wait for a checkpoint).",
        );
        let flushes = counter_vec(
            "exposure_cluster_flushes_total",
            "Changelog flushes of the partitions counted here, by result (ok, failed).",
            &["result"],
        );
        for result in ["ok", "failed"] {
            flushes.with_label_values(&[result]);
        }
        let cluster = ClusterMetrics {
            partitions_held: int_gauge(
                "exposure_cluster_partitions_held",
                "Partitions of the routing topic this instance counts (cluster mode).",
            ),
            partitions_missing: int_gauge(
                "exposure_cluster_partitions_missing",
                "Changelog partitions this instance has not yet read to the end they had at its start; queries are refused while above 0.",
            ),
            replays_dropped: int_counter(
                "exposure_cluster_replays_dropped_total",
                "Routed flows dropped because their source position was applied already (a router sent them again).",
            ),
            flows_counted: int_counter(
                "exposure_cluster_flows_counted_total",
                "Routed flows counted into the partitions this instance holds (replays not included).",
            ),
            flushes,
            restores: int_counter(
                "exposure_cluster_restores_total",
                "Partitions taken over from the changelog before being counted here.",
            ),
            restore_seconds: gauge(
                "exposure_cluster_restore_duration_seconds",
                "How long the last take-over of a partition took: reading the changelog, claiming, writing the state again and deleting the older keys.",
            ),
            stale_records: int_counter(
                "exposure_cluster_stale_records_total",
                "Changelog records ignored because a newer generation of their partition was read already.",
            ),
            fenced: int_counter(
                "exposure_cluster_fenced_total",
                "Partitions counted here that another instance took over while the group still gave them here, claimed back (counted again from the last closed flush).",
            ),
            kafka_lag: kafka_lag.clone(),
            kafka_next_offset: kafka_next_offset.clone(),
            kafka_connected: kafka_connected.clone(),
        };
        let start_time = gauge(
            "exposure_start_time_seconds",
            "When this process started (UNIX time).",
        );
        start_time.set(crate::state::wall_now_ms() as f64 / 1e3);
        let build_info = IntGaugeVec::new(
            Opts::new(
                "exposure_build_info",
                "Always 1; the version of the running exposure binary as a label.",
            ),
            &["version"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        register(Box::new(build_info));

        let api_latency = Arc::new(Latency::new(
            "exposure_api_request_duration_seconds",
            "Time from an API request's arrival to its response, by Action.",
            Some("action"),
            Unit::Micros,
        ));
        let ingest_latency = Arc::new(Latency::new(
            "exposure_ingest_latency_seconds",
            "Time from a flow's end to its record being applied (every decoded flow).",
            None,
            Unit::Millis,
        ));
        let ingest_freshness = Arc::new(Latency::new(
            "exposure_ingest_freshness_seconds",
            "Time from a record's Kafka timestamp (produce time) to its being applied.",
            None,
            Unit::Millis,
        ));
        register(Box::new(latency::LatencyCollector::new(vec![
            api_latency.clone(),
            ingest_latency.clone(),
            ingest_freshness.clone(),
        ])));
        register(Box::new(WebhookPending {
            positions: webhooks.positions.clone(),
            desc: Desc::new(
                WEBHOOK_PENDING.0.to_owned(),
                WEBHOOK_PENDING.1.to_owned(),
                vec!["webhook".to_owned()],
                Default::default(),
            )
            .expect("valid metric"),
        }));
        register(Box::new(CheckpointAge {
            last_success: checkpoint_last_success.clone(),
            desc: Desc::new(
                CHECKPOINT_AGE.0.to_owned(),
                CHECKPOINT_AGE.1.to_owned(),
                vec![],
                Default::default(),
            )
            .expect("valid metric"),
        }));
        register(Box::new(
            EngineCollector::with_max_port_series(engine, options.max_port_series)
                .expecting(expected),
        ));
        Metrics {
            registry,
            api_requests,
            api_throttled,
            api_latency,
            kafka_lag,
            kafka_next_offset,
            kafka_connected,
            kafka_assigned_partitions,
            dead_letters,
            ingest_records,
            ingest_bytes,
            ingest_latency,
            ingest_freshness,
            checkpoint_last_success,
            checkpoint_duration,
            checkpoint_size,
            checkpoints,
            task_failures,
            checkpoint_interval,
            expected_entries,
            expected_reloads,
            webhooks,
            changes_topic_produced,
            changes_topic_dropped,
            changes_topic_seq,
            cluster,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# metrics could not be encoded: {e}\n"))
    }

    /// A recorder for one ingest worker reading records of `format`: keep
    /// it for the worker's life, [`IngestRecorder::record`] every record,
    /// [`IngestRecorder::flush`] once per batch.
    pub fn ingest_recorder(&self, format: Format) -> IngestRecorder {
        IngestRecorder {
            records: self.ingest_records.with_label_values(&[format.as_str()]),
            bytes: self.ingest_bytes.with_label_values(&[format.as_str()]),
            latency: self.ingest_latency.clone(),
            freshness: self.ingest_freshness.clone(),
            pending_records: 0,
            pending_bytes: 0,
            flow_ends: Vec::new(),
            produced: Vec::new(),
        }
    }

    /// Records how long an API request took; `action` is the bounded label
    /// the envelope counts requests under.
    pub fn record_api_latency(&self, action: &'static str, elapsed: Duration) {
        self.api_latency.record_duration(action, elapsed);
    }

    /// Records a checkpoint written whole: now is its time of success.
    pub fn record_checkpoint_success(&self, duration: Duration, size_bytes: u64) {
        self.checkpoint_last_success
            .set(crate::state::wall_now_ms() as f64 / 1e3);
        self.checkpoint_duration.set(duration.as_secs_f64());
        self.checkpoint_size
            .set(i64::try_from(size_bytes).unwrap_or(i64::MAX));
        self.checkpoints.with_label_values(&["success"]).inc();
    }

    /// Records a checkpoint that failed (the previous one stays in force).
    pub fn record_checkpoint_failure(&self) {
        self.checkpoints.with_label_values(&["failure"]).inc();
    }

    /// Says checkpoints are taken every `interval` (call once, when the
    /// checkpoint task starts).
    pub fn set_checkpoint_interval(&self, interval: Duration) {
        self.checkpoint_interval.set(interval.as_secs_f64());
    }
}

/// (name, help) of the checkpoint age, computed at scrape time.
const CHECKPOINT_AGE: (&str, &str) = (
    "exposure_checkpoint_age_seconds",
    "Seconds since the last successful checkpoint; absent until the first.",
);

/// Exports the checkpoint's age at scrape time.
struct CheckpointAge {
    last_success: Gauge,
    desc: Desc,
}

impl Collector for CheckpointAge {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let last = self.last_success.get();
        if last <= 0.0 {
            return Vec::new();
        }
        let now = crate::state::wall_now_ms() as f64 / 1e3;
        let age = Gauge::new(CHECKPOINT_AGE.0, CHECKPOINT_AGE.1).expect("valid metric");
        age.set((now - last).max(0.0));
        age.collect()
    }
}
