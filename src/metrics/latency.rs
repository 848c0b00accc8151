//! Latency distributions kept in `hdrhistogram` and exported as Prometheus
//! summaries.
//!
//! Quantiles cover a sliding window: the samples of the current [`WINDOW`]
//! and of the one before it, so between one and two windows (60 to 120 s)
//! of history. That keeps a dashboard's p99 about *now* rather than since
//! start, as the Go client's `MaxAge` summaries do. `_sum` and `_count` are
//! cumulative since start, as Prometheus expects of a summary, so
//! `rate(x_sum[5m]) / rate(x_count[5m])` gives the mean over any range. A
//! window with no sample exports `NaN` quantiles.
//!
//! Recording takes a mutex. The API records once per request; ingest
//! records once per batch through an [`IngestRecorder`], never per flow.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{LabelPair, Metric, MetricFamily, MetricType, Quantile, Summary};
use prometheus::IntCounter;

use crate::flow::Flow;
use crate::state::wall_now_ms;

/// The quantiles every summary exports.
pub const QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];
/// Quantiles cover the current window and the previous one.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Significant decimal digits kept: quantiles are exact to about 1 %.
const SIGNIFICANT_DIGITS: u8 = 2;

/// The unit samples are recorded in; exported in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Milliseconds, up to 400 days (a flow replayed from long ago).
    Millis,
    /// Microseconds, up to one hour (a request).
    Micros,
}

impl Unit {
    fn per_second(self) -> f64 {
        match self {
            Unit::Millis => 1e3,
            Unit::Micros => 1e6,
        }
    }

    /// The largest value told apart; larger ones are recorded as this.
    fn highest(self) -> u64 {
        match self {
            Unit::Millis => 400 * 86_400 * 1_000,
            Unit::Micros => 3_600 * 1_000_000,
        }
    }
}

/// One label value's samples: two rotating windows and the running totals.
struct Window {
    current: Histogram<u64>,
    previous: Histogram<u64>,
    /// When `current` started.
    started: Instant,
    /// Sum of every sample since start, in the unit.
    sum: u128,
    /// Samples since start.
    count: u64,
}

impl Window {
    fn new(unit: Unit, now: Instant) -> Self {
        let histogram = Histogram::new_with_bounds(1, unit.highest(), SIGNIFICANT_DIGITS)
            .expect("valid histogram bounds");
        Window {
            previous: histogram.clone(),
            current: histogram,
            started: now,
            sum: 0,
            count: 0,
        }
    }

    /// Moves to a new window when the current one is over.
    fn rotate(&mut self, now: Instant) {
        let age = now.saturating_duration_since(self.started);
        if age < WINDOW {
            return;
        }
        if age >= 2 * WINDOW {
            self.previous.reset();
        } else {
            std::mem::swap(&mut self.previous, &mut self.current);
        }
        self.current.reset();
        self.started = now;
    }

    fn record(&mut self, value: u64) {
        self.current.saturating_record(value);
        self.sum += u128::from(value);
        self.count += 1;
    }

    /// The quantiles over both windows (NaN when empty), sum and count.
    fn summary(&mut self, unit: Unit, now: Instant) -> Summary {
        self.rotate(now);
        let mut merged = self.previous.clone();
        // Same bounds on both sides: the addition cannot fail.
        let _ = merged.add(&self.current);
        let scale = unit.per_second();
        let quantiles = QUANTILES
            .iter()
            .map(|&q| {
                let mut quantile = Quantile::default();
                quantile.set_quantile(q);
                quantile.set_value(if merged.is_empty() {
                    f64::NAN
                } else {
                    merged.value_at_quantile(q) as f64 / scale
                });
                quantile
            })
            .collect();
        let mut summary = Summary::default();
        summary.set_quantile(quantiles);
        summary.set_sample_sum(self.sum as f64 / scale);
        summary.set_sample_count(self.count);
        summary
    }
}

/// A latency distribution, optionally split by one bounded label.
pub struct Latency {
    name: &'static str,
    help: String,
    /// The label name, when split (`action` for the API).
    label: Option<&'static str>,
    unit: Unit,
    /// By label value (`""` when not split).
    windows: Mutex<BTreeMap<&'static str, Window>>,
}

impl Latency {
    /// A distribution named `name`; the quantile window is appended to `help`.
    pub fn new(name: &'static str, help: &str, label: Option<&'static str>, unit: Unit) -> Self {
        let mut windows = BTreeMap::new();
        if label.is_none() {
            // Exported from the start, so that dashboards and alerts find it.
            windows.insert("", Window::new(unit, Instant::now()));
        }
        Latency {
            name,
            help: format!(
                "{help} Quantiles over the last {}-{} s; _sum and _count since start.",
                WINDOW.as_secs(),
                2 * WINDOW.as_secs()
            ),
            label,
            unit,
            windows: Mutex::new(windows),
        }
    }

    /// Records samples (in the distribution's unit) under one label value
    /// (`""` when not split), taking the lock once.
    pub fn record_all(&self, label_value: &'static str, values: impl IntoIterator<Item = u64>) {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let window = windows
            .entry(label_value)
            .or_insert_with(|| Window::new(self.unit, now));
        window.rotate(now);
        for value in values {
            window.record(value);
        }
    }

    /// Records one duration.
    pub fn record_duration(&self, label_value: &'static str, elapsed: Duration) {
        let value = match self.unit {
            Unit::Millis => elapsed.as_millis(),
            Unit::Micros => elapsed.as_micros(),
        };
        self.record_all(label_value, [u64::try_from(value).unwrap_or(u64::MAX)]);
    }

    fn desc(&self) -> Desc {
        Desc::new(
            self.name.to_owned(),
            self.help.clone(),
            self.label.iter().map(|l| l.to_string()).collect(),
            Default::default(),
        )
        .expect("valid metric")
    }

    fn family(&self, now: Instant) -> MetricFamily {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let metrics = windows
            .iter_mut()
            .map(|(value, window)| {
                let mut metric = Metric::default();
                if let Some(label) = self.label {
                    let mut pair = LabelPair::default();
                    pair.set_name(label.to_owned());
                    pair.set_value((*value).to_owned());
                    metric.set_label(vec![pair]);
                }
                metric.set_summary(window.summary(self.unit, now));
                metric
            })
            .collect();
        let mut family = MetricFamily::default();
        family.set_name(self.name.to_owned());
        family.set_help(self.help.clone());
        family.set_field_type(MetricType::SUMMARY);
        family.set_metric(metrics);
        family
    }
}

/// Renders every [`Latency`] at scrape time.
pub(super) struct LatencyCollector {
    latencies: Vec<Arc<Latency>>,
    descs: Vec<Desc>,
}

impl LatencyCollector {
    pub(super) fn new(latencies: Vec<Arc<Latency>>) -> Self {
        let descs = latencies.iter().map(|l| l.desc()).collect();
        LatencyCollector { latencies, descs }
    }
}

impl Collector for LatencyCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let now = Instant::now();
        self.latencies.iter().map(|l| l.family(now)).collect()
    }
}

/// What one ingest worker measures, kept by the worker and handed to the
/// shared metrics once per batch ([`IngestRecorder::flush`]): nothing on the
/// per-record path takes a lock or looks a label up.
///
/// Made by [`super::Metrics::ingest_recorder`]; flushes itself when dropped.
pub struct IngestRecorder {
    pub(super) records: IntCounter,
    pub(super) bytes: IntCounter,
    pub(super) latency: Arc<Latency>,
    pub(super) freshness: Arc<Latency>,
    pub(super) pending_records: u64,
    pub(super) pending_bytes: u64,
    /// End times (UNIX ms) of the flows of this batch.
    pub(super) flow_ends: Vec<i64>,
    /// Kafka timestamps (UNIX ms) of the records of this batch.
    pub(super) produced: Vec<i64>,
}

impl IngestRecorder {
    /// Notes one record after the engine applied it: its size, its Kafka
    /// timestamp (produce time) and the flows it held (the engine's scratch
    /// vector after `Engine::ingest`; empty when the record was rejected).
    pub fn record(&mut self, payload_len: usize, kafka_timestamp_ms: Option<i64>, flows: &[Flow]) {
        self.pending_records += 1;
        self.pending_bytes += payload_len as u64;
        if let Some(ts) = kafka_timestamp_ms {
            self.produced.push(ts);
        }
        self.flow_ends.extend(flows.iter().map(|f| f.time_ms));
    }

    /// Hands the batch to the shared metrics, "applied" being now. Call it
    /// once per batch, after the batch is applied.
    pub fn flush(&mut self) {
        self.flush_at(wall_now_ms());
    }

    /// [`IngestRecorder::flush`] with the applied time given (UNIX ms).
    pub fn flush_at(&mut self, applied_ms: i64) {
        if self.pending_records > 0 {
            self.records.inc_by(self.pending_records);
            self.bytes.inc_by(self.pending_bytes);
            self.pending_records = 0;
            self.pending_bytes = 0;
        }
        // A time ahead of the applier's clock (clock skew) counts as 0.
        let since = |t: &i64| u64::try_from(applied_ms.saturating_sub(*t)).unwrap_or(0);
        if !self.flow_ends.is_empty() {
            self.latency
                .record_all("", self.flow_ends.iter().map(since));
            self.flow_ends.clear();
        }
        if !self.produced.is_empty() {
            self.freshness
                .record_all("", self.produced.iter().map(since));
            self.produced.clear();
        }
    }
}

impl Drop for IngestRecorder {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quantile_values(latency: &Latency, now: Instant) -> Vec<f64> {
        let family = latency.family(now);
        family.get_metric()[0]
            .get_summary()
            .get_quantile()
            .iter()
            .map(|q| q.value())
            .collect()
    }

    #[test]
    fn quantiles_are_exported_in_seconds_within_one_percent() {
        let latency = Latency::new("x_seconds", "X.", None, Unit::Millis);
        latency.record_all("", 1..=1000);
        let q = quantile_values(&latency, Instant::now());
        for (got, want) in q.iter().zip([0.5, 0.9, 0.99, 0.999]) {
            assert!((got - want).abs() <= want * 0.01, "{got} vs {want}");
        }
        let family = latency.family(Instant::now());
        let summary = family.get_metric()[0].get_summary();
        assert_eq!(summary.sample_count(), 1000);
        assert!((summary.sample_sum() - 500.5).abs() < 1e-9);
    }

    #[test]
    fn old_samples_leave_the_quantiles_but_stay_in_sum_and_count() {
        let latency = Latency::new("x_seconds", "X.", None, Unit::Millis);
        latency.record_all("", [5_000]);
        let later = Instant::now() + 2 * WINDOW + Duration::from_secs(1);
        let q = quantile_values(&latency, later);
        assert!(q.iter().all(|v| v.is_nan()), "{q:?}");
        let family = latency.family(later);
        assert_eq!(family.get_metric()[0].get_summary().sample_count(), 1);
    }

    #[test]
    fn the_previous_window_still_counts() {
        let latency = Latency::new("x_seconds", "X.", None, Unit::Millis);
        latency.record_all("", [2_000]);
        let q = quantile_values(&latency, Instant::now() + WINDOW + Duration::from_secs(1));
        assert!((q[0] - 2.0).abs() < 0.02, "{q:?}");
    }

    #[test]
    fn split_distributions_export_one_series_per_label_value() {
        let latency = Latency::new("api_seconds", "API.", Some("action"), Unit::Micros);
        assert!(latency.family(Instant::now()).get_metric().is_empty());
        latency.record_duration("A", Duration::from_millis(3));
        latency.record_duration("B", Duration::from_millis(7));
        let family = latency.family(Instant::now());
        let labels: Vec<&str> = family
            .get_metric()
            .iter()
            .map(|m| m.get_label()[0].value())
            .collect();
        assert_eq!(labels, ["A", "B"]);
        let p50 = family.get_metric()[1].get_summary().get_quantile()[0].value();
        assert!((p50 - 0.007).abs() < 0.0001, "{p50}");
    }
}
