//! Every metric `exposure` exports, defined in one place (SPEC §8).
//!
//! Counters on the ingest hot path live in the engine as plain atomics
//! ([`crate::state::Stats`]); an [`EngineCollector`] turns them into
//! Prometheus families at scrape time, so ingest never touches a label map.
//! Metrics of the API and the Kafka source are ordinary `prometheus` vectors.

use std::collections::HashSet;
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::catalog::Protocol;
use crate::state::Engine;

/// The metric registry and the metrics updated outside the engine.
pub struct Metrics {
    registry: Registry,
    /// API requests by Action and response Code (`Success` when it succeeded).
    pub api_requests: IntCounterVec,
    /// Requests refused for going over the QPS limit, by user (`anonymous`
    /// when `api.auth = "none"`: client addresses would be unbounded labels).
    pub api_throttled: IntCounterVec,
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
}

impl Metrics {
    /// Registers every metric; engine metrics are read from `engine` at scrape time.
    pub fn new(engine: Arc<Engine>) -> Self {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let m = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(m.clone()))
                .expect("unique metric");
            m
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let m = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(m.clone()))
                .expect("unique metric");
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
        let kafka_connected = IntGauge::new(
            "exposure_kafka_connected",
            "1 while the consumer reaches the Kafka brokers, 0 otherwise.",
        )
        .expect("valid metric");
        let kafka_assigned_partitions = IntGauge::new(
            "exposure_kafka_assigned_partitions",
            "Partitions assigned to this consumer.",
        )
        .expect("valid metric");
        let dead_letters = IntCounter::new(
            "exposure_dead_letter_records_total",
            "Rejected records copied to the dead-letter topic.",
        )
        .expect("valid metric");
        for m in [&kafka_connected, &kafka_assigned_partitions] {
            registry
                .register(Box::new(m.clone()))
                .expect("unique metric");
        }
        registry
            .register(Box::new(dead_letters.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(EngineCollector::new(engine)))
            .expect("unique metric");
        Metrics {
            registry,
            api_requests,
            api_throttled,
            kafka_lag,
            kafka_next_offset,
            kafka_connected,
            kafka_assigned_partitions,
            dead_letters,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# metrics could not be encoded: {e}\n"))
    }
}

/// Reads the engine's counters and sizes at scrape time.
pub struct EngineCollector {
    engine: Arc<Engine>,
    descs: Vec<Desc>,
}

/// (name, help) of every family the engine collector produces.
const ENGINE_FAMILIES: [(&str, &str); 7] = [
    ("exposure_records_consumed_total", "Records read (Kafka records or file lines), whatever became of them."),
    ("exposure_flows_applied_total", "Flows that changed an endpoint's state."),
    ("exposure_records_rejected_total", "Records the decoders refused, and flows the engine refused (too old, in the future), by reason."),
    ("exposure_records_ignored_total", "Records and flows that say nothing about exposure, by reason."),
    ("exposure_open_endpoints", "Endpoints (asset IP, port, protocol) with response evidence within retention."),
    ("exposure_pending_endpoints", "Endpoints held that received traffic but have not answered."),
    ("exposure_open_ports", "Distinct open ports, by protocol."),
];

impl EngineCollector {
    pub fn new(engine: Arc<Engine>) -> Self {
        let descs = ENGINE_FAMILIES
            .iter()
            .map(|(name, help)| {
                Desc::new(
                    name.to_string(),
                    help.to_string(),
                    vec![],
                    Default::default(),
                )
                .expect("valid metric")
            })
            .collect();
        EngineCollector { engine, descs }
    }
}

impl Collector for EngineCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let stats = self.engine.stats().snapshot();
        let counter = |name: &str, help: &str, v: u64| {
            let c = IntCounter::new(name, help).expect("valid metric");
            c.inc_by(v);
            c.collect()
        };
        let by_reason =
            |name: &str, help: &str, map: &std::collections::BTreeMap<&'static str, u64>| {
                let c =
                    IntCounterVec::new(Opts::new(name, help), &["reason"]).expect("valid metric");
                for (reason, n) in map {
                    c.with_label_values(&[*reason]).inc_by(*n);
                }
                c.collect()
            };
        let gauge = |name: &str, help: &str, v: i64| {
            let g = IntGauge::new(name, help).expect("valid metric");
            g.set(v);
            g.collect()
        };
        let [consumed, applied, rejected, ignored, open, pending, ports] = ENGINE_FAMILIES;
        let mut open_ports: HashSet<(u16, Protocol)> = HashSet::new();
        self.engine.for_each(|endpoint, state| {
            if state.ever_open {
                open_ports.insert((endpoint.port, endpoint.proto));
            }
        });
        let ports_vec =
            IntGaugeVec::new(Opts::new(ports.0, ports.1), &["protocol"]).expect("valid metric");
        for proto in Protocol::ALL {
            let n = open_ports.iter().filter(|(_, p)| *p == proto).count();
            ports_vec.with_label_values(&[proto.as_str()]).set(n as i64);
        }
        let mut out = Vec::new();
        out.extend(counter(consumed.0, consumed.1, stats.records));
        out.extend(counter(applied.0, applied.1, stats.applied));
        out.extend(by_reason(rejected.0, rejected.1, &stats.rejected));
        out.extend(by_reason(ignored.0, ignored.1, &stats.ignored));
        out.extend(gauge(open.0, open.1, self.engine.open_endpoints() as i64));
        out.extend(gauge(
            pending.0,
            pending.1,
            self.engine.pending_endpoints() as i64,
        ));
        out.extend(ports_vec.collect());
        out
    }
}
