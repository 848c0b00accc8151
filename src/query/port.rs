//! `DescribeInternetOpenPort`: one row per (port, protocol) with at least one
//! open endpoint in the range (`docs/api.md#describeinternetopenport`).

use std::borrow::Cow;
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::HashMap;

use serde::Serialize;

use super::params::{Facts, PortQuery};
use super::scan::{scan, unknown_reasons, Group, Totals};
use super::{PageInfo, Paged, TimeWindows};
use crate::catalog::{EndpointService, Lang, Protocol, Service};
use crate::state::{hour_of, Engine, LabelCount};

/// One row of `DataList`, with Alibaba Cloud's field names and JSON types.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortRow {
    pub risk_level: u8,
    pub prob_risk_desc: String,
    pub traffic_percent_1_day: String,
    pub protocol: &'static str,
    pub public_ip_num: u64,
    pub suggest_level: u8,
    pub detail_num: u64,
    pub port: u16,
    pub traffic_percent_7_day: String,
    pub traffic_percent_30_day: String,
    pub prob_risk: String,
    pub risk_reason: String,
    pub service_name_list: Vec<String>,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub total_bytes: u64,
    pub unknown_reason: Vec<String>,
}

/// The response body of `DescribeInternetOpenPort`.
pub type PortResponse = Paged<PortRow>;

/// Computes the whole answer for `q` at `wall_now_ms`.
pub fn describe_internet_open_port(
    engine: &Engine,
    q: &PortQuery,
    wall_now_ms: i64,
    request_id: String,
) -> PortResponse {
    let mut answer = CANDIDATES.with_borrow_mut(|candidates| {
        by_index(engine, q, wall_now_ms, candidates)
            .unwrap_or_else(|| by_scan(engine, q, wall_now_ms, candidates))
    });
    answer.request_id = request_id;
    answer
}

/// The answer computed by walking the state, never from the port index:
/// what the index must agree with.
#[cfg(test)]
pub(crate) fn describe_internet_open_port_by_scan(
    engine: &Engine,
    q: &PortQuery,
    wall_now_ms: i64,
) -> PortResponse {
    by_scan(engine, q, wall_now_ms, &mut Vec::new())
}

/// The answer read from the port index only; `None` if it cannot answer.
#[cfg(test)]
pub(crate) fn describe_internet_open_port_by_index(
    engine: &Engine,
    q: &PortQuery,
    wall_now_ms: i64,
) -> Option<PortResponse> {
    by_index(engine, q, wall_now_ms, &mut Vec::new())
}

thread_local! {
    /// The rows that pass a call's filters, kept between calls on a thread
    /// for their buffer: at 100 k open endpoints on 5 k ports a call would
    /// otherwise allocate and free a few hundred kilobytes.
    static CANDIDATES: RefCell<Vec<Candidate>> = const { RefCell::new(Vec::new()) };
}

/// What ordering and paging need of one row that passed the filters, as
/// plain values; the service names and texts are looked up for the rows
/// of the page only.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    port: u16,
    proto: Protocol,
    risk_level: u8,
    /// Endpoints open in the range: `DetailNum`.
    endpoints: u64,
    in_bytes: u64,
    out_bytes: u64,
    /// TotalBytes over the last 1, 7 and 30 days.
    recent: [u64; 3],
    no_payload: bool,
    unknown_strict: bool,
}

impl Candidate {
    fn total_bytes(&self) -> u64 {
        self.in_bytes.saturating_add(self.out_bytes)
    }

    /// RiskLevel desc, TotalBytes desc, Port asc, Protocol asc
    /// (`docs/api.md#describeinternetopenport`);
    /// protocols order as their names do, tcp before udp.
    fn order(&self) -> (Reverse<u8>, Reverse<u64>, u16, Protocol) {
        (
            Reverse(self.risk_level),
            Reverse(self.total_bytes()),
            self.port,
            self.proto,
        )
    }
}

/// Service names; most ports have one, which needs no allocation.
enum Names<'a> {
    One(Cow<'a, str>),
    Many(Vec<Cow<'a, str>>),
}

impl<'a> Names<'a> {
    fn as_slice(&self) -> &[Cow<'a, str>] {
        match self {
            Names::One(name) => std::slice::from_ref(name),
            Names::Many(names) => names,
        }
    }

    fn to_strings(&self) -> Vec<String> {
        self.as_slice()
            .iter()
            .map(|n| n.clone().into_owned())
            .collect()
    }
}

/// The riskiest of `services` (ties: the lowest name) and their sorted
/// distinct names; `None` if there are none.
fn top_and_names<'a>(
    services: impl Iterator<Item = EndpointService<'a>>,
) -> Option<(&'a Service, Names<'a>)> {
    let mut top: Option<(&'a Service, Cow<'a, str>)> = None;
    let mut names: Option<Names<'a>> = None;
    for service in services {
        if top.as_ref().is_none_or(|(risk, name)| {
            (service.risk.risk_level, Reverse(&service.name)) > (risk.risk_level, Reverse(name))
        }) {
            top = Some((service.risk, service.name.clone()));
        }
        names = Some(match names {
            None => Names::One(service.name),
            Some(Names::One(first)) if first == service.name => Names::One(first),
            Some(Names::One(first)) => Names::Many(vec![first, service.name]),
            Some(Names::Many(mut all)) => {
                all.push(service.name);
                Names::Many(all)
            }
        });
    }
    if let Some(Names::Many(all)) = &mut names {
        all.sort_unstable();
        all.dedup();
    }
    Some((top?.0, names?))
}

/// The riskiest of `services` (ties: the lowest name), as
/// [`top_and_names`] finds it, without collecting the names.
fn top_of<'a>(services: impl Iterator<Item = EndpointService<'a>>) -> Option<&'a Service> {
    services
        .max_by(|a, b| {
            (a.risk.risk_level, Reverse(&a.name)).cmp(&(b.risk.risk_level, Reverse(&b.name)))
        })
        .map(|s| s.risk)
}

/// The services of one port's labels open in window `w`.
fn services_in<'e, 'l>(
    engine: &'e Engine,
    port: u16,
    proto: Protocol,
    labels: &'l [LabelCount],
    w: usize,
) -> impl Iterator<Item = EndpointService<'e>> + use<'e, 'l> {
    let catalog = engine.catalog();
    labels
        .iter()
        .filter(move |count| count.open[w] > 0)
        .map(move |count| catalog.endpoint_service(port, proto, count.label.as_deref()))
}

/// Whether a row with these services passes the filters of `q`.
fn passes(q: &PortQuery, port: u16, top: &Service, names: impl FnOnce() -> Vec<String>) -> bool {
    let filter_on_services = q.service_name.is_some() || q.service_name_fuzzy.is_some();
    let services = if filter_on_services {
        names()
    } else {
        Vec::new()
    };
    q.matches(&Facts {
        services: &services,
        risk_level: top.risk_level,
        suggest_level: Some(top.suggest_level),
        ports: &[port],
        public_ip: None,
    })
}

/// The answer from the port index, or `None` when the range is not one of
/// its windows (or the clock moved while it was read).
fn by_index(
    engine: &Engine,
    q: &PortQuery,
    wall_now_ms: i64,
    candidates: &mut Vec<Candidate>,
) -> Option<PortResponse> {
    let now_ms = engine.now_ms(wall_now_ms);
    let w = TimeWindows::new(now_ms, q.start_time, q.end_time).range_is_recent()?;
    candidates.clear();
    let mut totals = [0u64; 3];
    let complete = engine.read_port_index(hour_of(now_ms), |port, proto, sums| {
        // Every endpoint open in a window, each with its bytes there.
        for (i, total) in totals.iter_mut().enumerate() {
            *total = total.saturating_add(sums.windows[i].recent[i]);
        }
        let window = &sums.windows[w];
        if window.endpoints == 0 {
            return;
        }
        let services = || services_in(engine, port, proto, &sums.labels, w);
        let Some(top) = top_of(services()) else {
            return;
        };
        let names = || top_and_names(services()).map_or_else(Vec::new, |(_, n)| n.to_strings());
        if passes(q, port, top, names) {
            candidates.push(Candidate {
                port,
                proto,
                risk_level: top.risk_level,
                endpoints: window.endpoints,
                in_bytes: window.in_bytes,
                out_bytes: window.out_bytes,
                recent: window.recent,
                no_payload: window.no_payload > 0,
                unknown_strict: window.unknown_strict > 0,
            });
        }
    });
    if !complete {
        return None;
    }
    // The page's rows take their services from a second look at their
    // ports' labels (the sums above are gone): a label that changed in
    // between shows in the row, not in its place in the order.
    Some(respond(candidates, &Totals(totals), q, |c| {
        let labels = engine.port_labels(c.port, c.proto);
        let (top, names) = top_and_names(services_in(engine, c.port, c.proto, &labels, w))
            .unwrap_or_else(|| {
                let unlabelled = engine.catalog().endpoint_service(c.port, c.proto, None);
                (unlabelled.risk, Names::One(unlabelled.name))
            });
        (top, names.to_strings())
    }))
}

/// The answer from one walk of the state.
fn by_scan(
    engine: &Engine,
    q: &PortQuery,
    wall_now_ms: i64,
    candidates: &mut Vec<Candidate>,
) -> PortResponse {
    let mut groups: HashMap<(u16, Protocol), Group> = HashMap::new();
    let totals = scan(engine, q, wall_now_ms, |open| {
        groups
            .entry((open.endpoint.port, open.endpoint.proto))
            .or_default()
            .add_sums(&open);
    });
    candidates.clear();
    for (&(port, proto), group) in &groups {
        let top = group.top();
        if !passes(q, port, top, || group.service_names()) {
            continue;
        }
        let (no_payload, unknown_strict) = group.unknown_flags();
        candidates.push(Candidate {
            port,
            proto,
            risk_level: top.risk_level,
            endpoints: group.endpoints,
            in_bytes: group.in_bytes,
            out_bytes: group.out_bytes,
            recent: group.recent,
            no_payload,
            unknown_strict,
        });
    }
    respond(candidates, &totals, q, |c| {
        let group = &groups[&(c.port, c.proto)];
        (group.top(), group.service_names())
    })
}

/// Orders and pages the candidates into the answer (its request id left
/// empty); `describe` gives a page row's top service (risk, suggestion,
/// texts) and service names.
fn respond<'a>(
    candidates: &mut [Candidate],
    totals: &Totals,
    q: &PortQuery,
    describe: impl Fn(&Candidate) -> (&'a Service, Vec<String>),
) -> PortResponse {
    // Only the rows up to the end of the page need their order.
    let total_count = candidates.len();
    let end = (u64::from(q.current_page) * u64::from(q.page_size)).min(total_count as u64) as usize;
    if end > 0 && end < total_count {
        candidates.select_nth_unstable_by_key(end - 1, Candidate::order);
        candidates[..end].sort_unstable_by_key(Candidate::order);
    } else {
        candidates.sort_unstable_by_key(Candidate::order);
    }
    let skip = (u64::from(q.current_page.saturating_sub(1)) * u64::from(q.page_size))
        .min(end as u64) as usize;
    let data_list = candidates[skip..end]
        .iter()
        .map(|c| {
            let (top, names) = describe(c);
            build_row(c, top, names, totals, q.lang)
        })
        .collect();
    PortResponse {
        request_id: String::new(),
        page_info: PageInfo {
            current_page: q.current_page,
            page_size: q.page_size,
            total_count: total_count as u64,
        },
        data_list,
    }
}

fn build_row(
    c: &Candidate,
    top: &Service,
    service_name_list: Vec<String>,
    totals: &Totals,
    lang: Lang,
) -> PortRow {
    let text = top.text(lang);
    let [d1, d7, d30] = totals.percents(c.recent);
    PortRow {
        risk_level: top.risk_level,
        prob_risk_desc: text.prob_risk_desc.clone(),
        traffic_percent_1_day: d1,
        protocol: c.proto.as_str(),
        // Each endpoint of a (port, protocol) is on its own address.
        public_ip_num: c.endpoints,
        suggest_level: top.suggest_level,
        detail_num: c.endpoints,
        port: c.port,
        traffic_percent_7_day: d7,
        traffic_percent_30_day: d30,
        prob_risk: text.prob_risk.clone(),
        risk_reason: text.risk_reason.clone(),
        service_name_list,
        in_bytes: c.in_bytes,
        out_bytes: c.out_bytes,
        total_bytes: c.total_bytes(),
        unknown_reason: unknown_reasons(c.no_payload, c.unknown_strict),
    }
}
