//! The one walk over the engine's state that every `DescribeInternetOpen*`
//! answer is computed from, and the sums its rows are built of.
//!
//! [`scan`] visits every endpoint once, tallies its series over the query
//! range and the last 1, 7 and 30 days, and hands each endpoint open in the
//! range to the caller as an [`Open`]. [`Group`] sums such endpoints into
//! one row (a port, an address, a service).

use std::borrow::Cow;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::net::IpAddr;

use super::params::Query;
use super::{percent, TimeWindows};
use crate::catalog::{EndpointService, Service};
use crate::classify::Endpoint;
use crate::state::{EndpointState, Engine, Peers, Tally};

/// `UnknownReason` of an `Unknown` endpoint that only saw handshakes.
pub const NO_PAYLOAD: &str = "no_payload";
/// `UnknownReason` of an `Unknown` endpoint that carried payload.
pub const UNKNOWN_STRICT: &str = "unknown_strict";

/// One endpoint open in the query range.
pub struct Open<'a> {
    pub endpoint: Endpoint,
    /// Its traffic in the query range.
    pub range: Tally,
    /// Its traffic over the last 1, 7 and 30 days; zero for a window in
    /// which it was not open.
    pub recent: [Tally; 3],
    /// The service it runs and the catalog entry its risk comes from.
    pub service: EndpointService<'a>,
    /// Its distinct Internet peers (an estimate over the retention window).
    pub peers: Peers,
}

impl Open<'_> {
    /// `no_payload` or `unknown_strict` for `Unknown` endpoints.
    pub fn unknown_reason(&self) -> Option<&'static str> {
        if !self.service.unknown {
            None
        } else if self.range.payload {
            Some(UNKNOWN_STRICT)
        } else {
            Some(NO_PAYLOAD)
        }
    }

    /// TotalBytes over the last 1, 7 and 30 days.
    pub fn recent_bytes(&self) -> [u64; 3] {
        self.recent.map(|t| t.total_bytes())
    }
}

/// Traffic of every open endpoint over the last 1, 7 and 30 days: the
/// denominators of `TrafficPercent1Day`, `7Day` and `30Day`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals(pub [u64; 3]);

impl Totals {
    /// `bytes` over the last 1, 7 and 30 days as percentages of the totals.
    pub fn percents(&self, bytes: [u64; 3]) -> [String; 3] {
        std::array::from_fn(|i| percent(bytes[i], self.0[i]))
    }
}

/// Calls `f` for every endpoint open in `q`'s range (evaluated at
/// `wall_now_ms`), in no particular order, and returns the totals.
pub fn scan<'a>(
    engine: &'a Engine,
    q: &Query,
    wall_now_ms: i64,
    mut f: impl FnMut(Open<'a>),
) -> Totals {
    let catalog = engine.catalog();
    let now_ms = engine.now_ms(wall_now_ms);
    let windows = TimeWindows::new(now_ms, q.start_time, q.end_time);
    let res = engine.resolution(now_ms);
    let mut totals = [0u64; 3];
    engine.for_each(|endpoint, state: &EndpointState| {
        if !state.ever_open {
            return;
        }
        let [range, d1, d7, d30] = state.series.tally(&windows.all(), res);
        let recent = [d1, d7, d30].map(|t| if t.open { t } else { Tally::default() });
        for (sum, t) in totals.iter_mut().zip(&recent) {
            *sum = sum.saturating_add(t.total_bytes());
        }
        if !range.open {
            return;
        }
        f(Open {
            endpoint: *endpoint,
            range,
            recent,
            service: catalog.endpoint_service(
                endpoint.port,
                endpoint.proto,
                state.label.as_deref(),
            ),
            peers: state.peers,
        });
    });
    Totals(totals)
}

/// Endpoints summed into one row.
#[derive(Default)]
pub struct Group<'a> {
    /// Endpoints in the row: its `DetailNum`.
    pub endpoints: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    /// TotalBytes over the last 1, 7 and 30 days.
    pub recent: [u64; 3],
    /// OutBytes over the last 7 days (`TotalReplyBytes`).
    pub reply_7d: u64,
    /// Distinct Internet peers of its endpoints, each counted once.
    pub peers: Peers,
    /// Service name -> the riskiest catalog entry it was seen with.
    services: BTreeMap<Cow<'a, str>, &'a Service>,
    no_payload: bool,
    unknown_strict: bool,
    /// The endpoints' addresses and ports, with repeats.
    ips: Vec<IpAddr>,
    ports: Vec<u16>,
}

impl<'a> Group<'a> {
    /// Adds an endpoint: its sums, and its address, port and peers (for
    /// rows that list or count those).
    pub fn add(&mut self, open: &Open<'a>) {
        self.add_sums(open);
        self.peers.merge(&open.peers);
        self.ips.push(open.endpoint.ip);
        self.ports.push(open.endpoint.port);
    }

    /// Adds an endpoint's sums, services and reasons (what every row needs).
    pub fn add_sums(&mut self, open: &Open<'a>) {
        self.endpoints += 1;
        self.in_bytes = self.in_bytes.saturating_add(open.range.in_bytes);
        self.out_bytes = self.out_bytes.saturating_add(open.range.out_bytes);
        for (sum, bytes) in self.recent.iter_mut().zip(open.recent_bytes()) {
            *sum = sum.saturating_add(bytes);
        }
        self.reply_7d = self.reply_7d.saturating_add(open.recent[1].out_bytes);
        match open.unknown_reason() {
            Some(NO_PAYLOAD) => self.no_payload = true,
            Some(_) => self.unknown_strict = true,
            None => {}
        }
        self.add_service(open.service.clone());
    }

    /// Keeps the riskiest catalog entry seen with the service's name.
    fn add_service(&mut self, service: EndpointService<'a>) {
        let risk = service.risk;
        match self.services.entry(service.name) {
            Entry::Vacant(slot) => {
                slot.insert(risk);
            }
            Entry::Occupied(mut slot) => {
                if riskier(risk, slot.get()) {
                    slot.insert(risk);
                }
            }
        }
    }

    pub fn total_bytes(&self) -> u64 {
        self.in_bytes.saturating_add(self.out_bytes)
    }

    /// The catalog entry the row's RiskLevel, SuggestLevel and texts come
    /// from: the highest risk; among equals, the lowest service name.
    pub fn top(&self) -> &'a Service {
        let mut best: Option<&'a Service> = None;
        for s in self.services.values() {
            if best.is_none_or(|b| s.risk_level > b.risk_level) {
                best = Some(s);
            }
        }
        best.expect("a group holds at least one endpoint")
    }

    /// Sorted distinct service names.
    pub fn service_names(&self) -> Vec<String> {
        self.services
            .keys()
            .map(|n| n.clone().into_owned())
            .collect()
    }

    /// Sorted distinct reasons of its `Unknown` endpoints.
    pub fn unknown_reason(&self) -> Vec<String> {
        unknown_reasons(self.no_payload, self.unknown_strict)
    }

    /// Whether some `Unknown` endpoint had no payload, and whether one had.
    pub fn unknown_flags(&self) -> (bool, bool) {
        (self.no_payload, self.unknown_strict)
    }

    /// Distinct addresses of its endpoints.
    pub fn distinct_ips(&mut self) -> u64 {
        self.ips.sort_unstable();
        self.ips.dedup();
        self.ips.len() as u64
    }

    /// Sorted distinct ports of its endpoints.
    pub fn ports(&mut self) -> &[u16] {
        self.ports.sort_unstable();
        self.ports.dedup();
        &self.ports
    }
}

/// Whether `a` should stand for a service name rather than `b`: a higher
/// risk, or the same risk from the lower-named catalog entry (so the
/// choice does not depend on the order endpoints are visited in).
fn riskier(a: &Service, b: &Service) -> bool {
    (a.risk_level, std::cmp::Reverse(&a.name)) > (b.risk_level, std::cmp::Reverse(&b.name))
}

/// `UnknownReason` of a row: `no_payload` if some `Unknown` endpoint had
/// none, `unknown_strict` if some had payload, in that order.
pub fn unknown_reasons(no_payload: bool, unknown_strict: bool) -> Vec<String> {
    [(no_payload, NO_PAYLOAD), (unknown_strict, UNKNOWN_STRICT)]
        .into_iter()
        .filter(|(present, _)| *present)
        .map(|(_, reason)| reason.to_owned())
        .collect()
}

/// Ports as the SDK's `PortList` carries them: strings.
pub fn port_list(ports: &[u16]) -> Vec<String> {
    ports.iter().map(u16::to_string).collect()
}
