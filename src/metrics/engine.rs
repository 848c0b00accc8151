//! The engine's metrics, read at scrape time: the ingest counters (plain
//! atomics in [`crate::state::Stats`]), the state's size, and the exposure
//! gauges from [`Engine::summary`], which the engine keeps up to date as
//! flows arrive. A scrape costs in proportion to the ports in use, not to
//! the endpoints held; only the first scrape of an hour (or the first API
//! query of it, whichever comes first) walks the state to move the port
//! index to that hour.
//!
//! Two notions of "open" appear, and each HELP text says which:
//! - *within retention*: the endpoint answered at least once in the
//!   retention period (`exposure_open_endpoints`, `exposure_open_ports`);
//! - *in the last 24 hours*: it answered in the last 24 hours, the window of
//!   `TrafficPercent1Day` (`exposure_port_*`, `exposure_exposed_*`,
//!   `exposure_unexpected_endpoints`). These follow closing ports within a
//!   day, which is what a dashboard of current exposure wants.
//!
//! `exposure_unexpected_endpoints` comes from the summary too, less the
//! endpoints an expected entry covers. The engine has no way in by port, so
//! finding those walks the state once per scrape, only while an unexpired
//! entry covers a port open in the last day: a known cost that grows with
//! the endpoints held (`docs/operations.md#expected-exposures`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use crate::catalog::{Catalog, Protocol};
use crate::changes::watch::Watched;
use crate::state::{wall_now_ms, Engine, Summary};

/// Per-port series exported by default, highest risk first (see [`EngineCollector`]).
pub const DEFAULT_MAX_PORT_SERIES: usize = 500;

/// Labels of the per-port families.
const PORT_LABELS: [&str; 4] = ["port", "protocol", "service", "risk_level"];

/// (name, help, labels) of every family the engine collector produces.
const FAMILIES: [(&str, &str, &[&str]); 16] = [
    ("exposure_records_consumed_total", "Records read (Kafka records or file lines), whatever became of them.", &[]),
    ("exposure_flows_applied_total", "Flows that changed an endpoint's state.", &[]),
    ("exposure_records_rejected_total", "Records the decoders refused, and flows the engine refused (too old, in the future), by reason.", &["reason"]),
    ("exposure_records_ignored_total", "Records and flows that say nothing about exposure, by reason.", &["reason"]),
    ("exposure_open_endpoints", "Endpoints (asset IP, port, protocol) with response evidence within retention.", &[]),
    ("exposure_pending_endpoints", "Endpoints held that received traffic but have not answered.", &[]),
    ("exposure_open_ports", "Distinct open ports (response evidence within retention), by protocol.", &["protocol"]),
    ("exposure_new_exposures_total", "Endpoints that became open (first response evidence) since start, by risk level (0 none, 1 low, 2 medium, 3 high).", &["risk_level"]),
    ("exposure_state_endpoints", "Endpoints held in memory, open and pending.", &[]),
    ("exposure_state_bytes", "Approximate memory held by the endpoint state.", &[]),
    ("exposure_port_public_ips", "Distinct asset IPs with the port open in the last 24 hours, by port, protocol, service and risk level; capped, highest risk first (see exposure_port_series_dropped).", &PORT_LABELS),
    ("exposure_port_traffic_bytes", "TotalBytes over the last 24 hours of the endpoints behind exposure_port_public_ips (same series, same cap).", &PORT_LABELS),
    ("exposure_port_series_dropped", "Per-port series left out of exposure_port_public_ips and exposure_port_traffic_bytes by the series cap.", &[]),
    ("exposure_exposed_ports", "Distinct (port, protocol) open in the last 24 hours, by the highest risk level of their services; uncapped.", &["risk_level"]),
    ("exposure_exposed_traffic_bytes", "TotalBytes over the last 24 hours of every endpoint open in that time; the denominator of a port's traffic share.", &[]),
    ("exposure_unexpected_endpoints", "Endpoints open in the last 24 hours that no unexpired entry of changes.expected covers, by the risk level of their service (0 none, 1 low, 2 medium, 3 high).", &["risk_level"]),
];

/// Reads the engine's counters and sizes at scrape time.
///
/// The per-port families have one series per (port, protocol, service,
/// risk level) open in the last 24 hours. At most `max_port_series` are
/// exported: highest risk first, then most public IPs, then most traffic,
/// then lowest port; how many were left out is `exposure_port_series_dropped`.
pub struct EngineCollector {
    engine: Arc<Engine>,
    max_port_series: usize,
    /// The expected list `exposure_unexpected_endpoints` is judged against.
    expected: Arc<Watched>,
    descs: Vec<Desc>,
}

/// A finished per-port series; the service name borrows from the catalog
/// (or, for a label the catalog does not know, is the label).
struct PortSeries<'a> {
    port: u16,
    proto: Protocol,
    service: Cow<'a, str>,
    risk_level: u8,
    public_ips: u64,
    traffic_bytes: u64,
}

impl PortSeries<'_> {
    /// The cap's order: highest risk first, then most public IPs, then most
    /// traffic, then lowest port (and protocol, and name: a total order).
    fn cap_order(&self, other: &Self) -> std::cmp::Ordering {
        other
            .risk_level
            .cmp(&self.risk_level)
            .then(other.public_ips.cmp(&self.public_ips))
            .then(other.traffic_bytes.cmp(&self.traffic_bytes))
            .then(self.port.cmp(&other.port))
            .then(self.proto.as_str().cmp(other.proto.as_str()))
            .then(self.service.cmp(&other.service))
    }
}

impl EngineCollector {
    /// A collector exporting at most [`DEFAULT_MAX_PORT_SERIES`] per-port series.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self::with_max_port_series(engine, DEFAULT_MAX_PORT_SERIES)
    }

    pub fn with_max_port_series(engine: Arc<Engine>, max_port_series: usize) -> Self {
        let descs = FAMILIES
            .iter()
            .map(|(name, help, labels)| {
                Desc::new(
                    name.to_string(),
                    help.to_string(),
                    labels.iter().map(|l| l.to_string()).collect(),
                    Default::default(),
                )
                .expect("valid metric")
            })
            .collect();
        EngineCollector {
            engine,
            max_port_series,
            expected: Arc::new(Watched::empty()),
            descs,
        }
    }

    /// Judges `exposure_unexpected_endpoints` against the list `expected`
    /// holds at each scrape (by default nothing is expected).
    pub fn expecting(self, expected: Arc<Watched>) -> Self {
        EngineCollector { expected, ..self }
    }

    /// Endpoints open in the last day that are not expected, by risk level
    /// 0..=3: the summary's counts, less the expected endpoints of the ports
    /// an unexpired entry covers, found by one walk of the state (skipped
    /// when no such port is open).
    fn unexpected_endpoints(&self, summary: &Summary, catalog: &Catalog, wall_ms: i64) -> [u64; 4] {
        let level = |port, proto, label: Option<&str>| {
            let service = catalog.endpoint_service(port, proto, label);
            usize::from(service.risk.risk_level.min(3))
        };
        let mut by_level = [0u64; 4];
        for share in &summary.last_day {
            by_level[level(share.port, share.proto, share.label.as_deref())] += share.endpoints;
        }
        let expected = self.expected.current();
        if expected.is_empty() {
            return by_level;
        }
        let now_ms = self.engine.now_ms(wall_ms);
        let ranges: Vec<_> = expected.port_ranges(now_ms).collect();
        // Which open ports some unexpired entry covers, by `port * 2 + udp`.
        let slot = |port: u16, proto: Protocol| {
            usize::from(port) * 2 + usize::from(proto == Protocol::Udp)
        };
        let mut covered = vec![false; 2 << 16];
        let mut any = false;
        for share in &summary.last_day {
            let (port, proto) = (share.port, share.proto);
            if ranges
                .iter()
                .any(|(ports, p)| ports.contains(&port) && p.is_none_or(|p| p == proto))
            {
                covered[slot(port, proto)] = true;
                any = true;
            }
        }
        if !any {
            return by_level;
        }
        self.engine.for_each_open_last_day(
            wall_ms,
            |port, proto| covered[slot(port, proto)],
            |endpoint, label| {
                if expected
                    .covering(endpoint.ip, endpoint.port, endpoint.proto, now_ms)
                    .is_some()
                {
                    let n = &mut by_level[level(endpoint.port, endpoint.proto, label)];
                    // Ingest may have moved on since the summary was read.
                    *n = n.saturating_sub(1);
                }
            },
        );
        by_level
    }

    /// The summary's last-day shares by service name; the first
    /// `max_port_series` are the ones the cap keeps, in its order
    /// ([`PortSeries::cap_order`]), the rest in no order. A scrape at 1 M
    /// endpoints has some 20,000 of them, so nothing here allocates per share
    /// and only the kept ones are sorted.
    fn port_series<'a>(&self, summary: &'a Summary, catalog: &'a Catalog) -> Vec<PortSeries<'a>> {
        let mut list: Vec<PortSeries<'a>> = Vec::with_capacity(summary.last_day.len());
        // Two labels may name one service (a label the catalog knows, and its port): merge.
        let mut by_service: HashMap<(u16, Protocol, Cow<'a, str>), usize> =
            HashMap::with_capacity(summary.last_day.len());
        for share in &summary.last_day {
            let (port, proto) = (share.port, share.proto);
            let service = catalog.endpoint_service(port, proto, share.label.as_deref());
            // A label the catalog does not know is its own name: borrow it.
            let name = match (service.name, share.label.as_deref()) {
                (Cow::Owned(_), Some(label)) => Cow::Borrowed(label),
                (name, _) => name,
            };
            let at = *by_service
                .entry((port, proto, name.clone()))
                .or_insert_with(|| {
                    list.push(PortSeries {
                        port,
                        proto,
                        service: name,
                        risk_level: service.risk.risk_level,
                        public_ips: 0,
                        traffic_bytes: 0,
                    });
                    list.len() - 1
                });
            let series = &mut list[at];
            series.public_ips += share.endpoints;
            series.traffic_bytes = series.traffic_bytes.saturating_add(share.total_bytes);
        }
        let kept = self.max_port_series.min(list.len());
        if kept < list.len() && kept > 0 {
            list.select_nth_unstable_by(kept - 1, PortSeries::cap_order);
        }
        list[..kept].sort_unstable_by(PortSeries::cap_order);
        list
    }
}

impl Collector for EngineCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let stats = self.engine.stats().snapshot();
        let wall_ms = wall_now_ms();
        let summary = self.engine.summary(wall_ms);
        let [consumed, applied, rejected, ignored, open, pending, ports, new_exposures, endpoints, state_bytes, public_ips, traffic, dropped, exposed_ports, exposed_traffic, unexpected] =
            FAMILIES;
        let counter = |(name, help, _): (&str, &str, &[&str]), v: u64| {
            let c = IntCounter::new(name, help).expect("valid metric");
            c.inc_by(v);
            c.collect()
        };
        let counter_vec = |(name, help, labels): (&str, &str, &[&str])| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let gauge = |(name, help, _): (&str, &str, &[&str]), v: u64| {
            let g = IntGauge::new(name, help).expect("valid metric");
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
            g.collect()
        };
        let gauge_vec = |(name, help, labels): (&str, &str, &[&str])| {
            IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let mut out = Vec::new();
        out.extend(counter(consumed, stats.records));
        out.extend(counter(applied, stats.applied));
        for (family, map) in [(rejected, &stats.rejected), (ignored, &stats.ignored)] {
            let c = counter_vec(family);
            for (reason, n) in map {
                c.with_label_values(&[*reason]).inc_by(*n);
            }
            out.extend(c.collect());
        }
        let (open_endpoints, pending_endpoints) = (
            self.engine.open_endpoints() as u64,
            self.engine.pending_endpoints() as u64,
        );
        out.extend(gauge(open, open_endpoints));
        out.extend(gauge(pending, pending_endpoints));
        let ports_vec = gauge_vec(ports);
        for (proto, n) in Protocol::ALL.into_iter().zip(summary.open_ports) {
            ports_vec.with_label_values(&[proto.as_str()]).set(n as i64);
        }
        out.extend(ports_vec.collect());
        let new_vec = counter_vec(new_exposures);
        for (level, n) in self.engine.new_exposures().into_iter().enumerate() {
            new_vec.with_label_values(&[&level.to_string()]).inc_by(n);
        }
        out.extend(new_vec.collect());
        out.extend(gauge(endpoints, open_endpoints + pending_endpoints));
        out.extend(gauge(state_bytes, self.engine.state_bytes() as u64));

        let catalog = self.engine.catalog();
        let series = self.port_series(&summary, catalog);
        let mut top_risk: HashMap<(u16, Protocol), u8> = HashMap::new();
        for s in &series {
            let risk = top_risk.entry((s.port, s.proto)).or_default();
            *risk = (*risk).max(s.risk_level);
        }
        let exposed_vec = gauge_vec(exposed_ports);
        for level in 0..=3u8 {
            let n = top_risk.values().filter(|&&r| r.min(3) == level).count();
            exposed_vec
                .with_label_values(&[&level.to_string()])
                .set(n as i64);
        }
        out.extend(exposed_vec.collect());
        out.extend(gauge(exposed_traffic, summary.last_day_bytes));
        let unexpected_vec = gauge_vec(unexpected);
        for (level, n) in self
            .unexpected_endpoints(&summary, catalog, wall_ms)
            .into_iter()
            .enumerate()
        {
            unexpected_vec
                .with_label_values(&[&level.to_string()])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        out.extend(unexpected_vec.collect());
        let ips_vec = gauge_vec(public_ips);
        let traffic_vec = gauge_vec(traffic);
        for s in series.iter().take(self.max_port_series) {
            let labels = [
                &s.port.to_string(),
                s.proto.as_str(),
                s.service.as_ref(),
                &s.risk_level.to_string(),
            ];
            ips_vec.with_label_values(&labels).set(s.public_ips as i64);
            traffic_vec
                .with_label_values(&labels)
                .set(i64::try_from(s.traffic_bytes).unwrap_or(i64::MAX));
        }
        out.extend(ips_vec.collect());
        out.extend(traffic_vec.collect());
        out.extend(gauge(
            dropped,
            series.len().saturating_sub(self.max_port_series) as u64,
        ));
        out
    }
}

#[cfg(test)]
mod tests;
