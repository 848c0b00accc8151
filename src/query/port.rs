//! `DescribeInternetOpenPort`: one row per (port, protocol) with at least one
//! open endpoint in the range (SPEC §6).

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::HashMap;

use serde::Serialize;

use super::params::{Facts, PortQuery};
use super::scan::{scan, unknown_reasons, Group, Totals};
use super::{Paged, TimeWindows};
use crate::catalog::{EndpointService, Lang, Protocol, Service};
use crate::state::{hour_of, Engine, PortSums};

/// One row of `DataList`, with the seed's field names and JSON types.
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
    let (groups, totals) =
        index_groups(engine, q, wall_now_ms).unwrap_or_else(|| scan_groups(engine, q, wall_now_ms));
    respond(groups, &totals, q, request_id)
}

/// The answer computed by walking the state, never from the port index:
/// what the index must agree with.
#[cfg(test)]
pub(crate) fn describe_internet_open_port_by_scan(
    engine: &Engine,
    q: &PortQuery,
    wall_now_ms: i64,
) -> PortResponse {
    let (groups, totals) = scan_groups(engine, q, wall_now_ms);
    respond(groups, &totals, q, String::new())
}

/// The answer read from the port index only; `None` if it cannot answer.
#[cfg(test)]
pub(crate) fn describe_internet_open_port_by_index(
    engine: &Engine,
    q: &PortQuery,
    wall_now_ms: i64,
) -> Option<PortResponse> {
    let (groups, totals) = index_groups(engine, q, wall_now_ms)?;
    Some(respond(groups, &totals, q, String::new()))
}

/// The endpoints of one (port, protocol) open in the range: what its row
/// is built from.
struct PortGroup<'a> {
    port: u16,
    proto: Protocol,
    /// Endpoints open in the range: `DetailNum`.
    endpoints: u64,
    in_bytes: u64,
    out_bytes: u64,
    /// TotalBytes over the last 1, 7 and 30 days.
    recent: [u64; 3],
    no_payload: bool,
    unknown_strict: bool,
    /// The catalog entry of the row's RiskLevel, SuggestLevel and texts:
    /// the highest risk; among equals, the lowest service name.
    top: &'a Service,
    /// Sorted distinct service names.
    names: Names<'a>,
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

impl<'a> PortGroup<'a> {
    /// From the port index: window `w` of one port's sums.
    fn from_sums(
        engine: &'a Engine,
        port: u16,
        proto: Protocol,
        sums: &PortSums,
        w: usize,
    ) -> Option<PortGroup<'a>> {
        let window = &sums.windows[w];
        let catalog = engine.catalog();
        let services = sums
            .labels
            .iter()
            .filter(|(_, open)| open[w] > 0)
            .map(|(label, _)| catalog.endpoint_service(port, proto, label.as_deref()));
        let (top, names) = top_and_names(services)?;
        Some(PortGroup {
            port,
            proto,
            endpoints: window.endpoints,
            in_bytes: window.in_bytes,
            out_bytes: window.out_bytes,
            recent: window.recent,
            no_payload: window.no_payload > 0,
            unknown_strict: window.unknown_strict > 0,
            top,
            names,
        })
    }

    /// From the walk: endpoints summed by [`Group::add_sums`].
    fn from_group(port: u16, proto: Protocol, group: &Group<'a>) -> PortGroup<'a> {
        let (no_payload, unknown_strict) = group.unknown_flags();
        PortGroup {
            port,
            proto,
            endpoints: group.endpoints,
            in_bytes: group.in_bytes,
            out_bytes: group.out_bytes,
            recent: group.recent,
            no_payload,
            unknown_strict,
            top: group.top(),
            names: Names::Many(group.service_names().into_iter().map(Cow::Owned).collect()),
        }
    }

    fn total_bytes(&self) -> u64 {
        self.in_bytes.saturating_add(self.out_bytes)
    }

    fn unknown_reason(&self) -> Vec<String> {
        unknown_reasons(self.no_payload, self.unknown_strict)
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

/// Filters, orders and pages the groups into the answer.
fn respond(
    groups: Vec<PortGroup>,
    totals: &Totals,
    q: &PortQuery,
    request_id: String,
) -> PortResponse {
    // Order only what passes the filters, by what rows are ordered on:
    // RiskLevel desc, TotalBytes desc, Port asc, Protocol asc (SPEC §6).
    // Full rows (texts, percentages, lists) are built for the page only.
    let filter_on_services = q.service_name.is_some() || q.service_name_fuzzy.is_some();
    let mut order = Vec::with_capacity(groups.len());
    order.extend(
        groups
            .iter()
            .enumerate()
            .filter(|(_, group)| {
                let services = if filter_on_services {
                    group.names.to_strings()
                } else {
                    Vec::new()
                };
                q.matches(&Facts {
                    services: &services,
                    risk_level: group.top.risk_level,
                    suggest_level: Some(group.top.suggest_level),
                    ports: &[group.port],
                    public_ip: None,
                })
            })
            .map(|(i, group)| {
                // Protocols order as their names do: tcp before udp.
                let key = (
                    Reverse(group.top.risk_level),
                    Reverse(group.total_bytes()),
                    group.port,
                    group.proto,
                );
                (key, i)
            }),
    );
    // Only the rows up to the end of the page need their order.
    let end = (u64::from(q.current_page) * u64::from(q.page_size)).min(order.len() as u64) as usize;
    if end > 0 && end < order.len() {
        order.select_nth_unstable(end - 1);
        order[..end].sort_unstable();
    } else {
        order.sort_unstable();
    }
    let (page_info, page) = super::paginate(order, q.current_page, q.page_size);
    let data_list = page
        .into_iter()
        .map(|(_, i)| build_row(&groups[i], totals, q.lang))
        .collect();
    PortResponse {
        request_id,
        page_info,
        data_list,
    }
}

/// The groups and totals from the port index; `None` when the range is not
/// one of its windows (the last 1, 7 or 30 days; the default range is the
/// last 7), or the clock moved the index while it was read.
fn index_groups<'a>(
    engine: &'a Engine,
    q: &PortQuery,
    wall_now_ms: i64,
) -> Option<(Vec<PortGroup<'a>>, Totals)> {
    let now_ms = engine.now_ms(wall_now_ms);
    let w = TimeWindows::new(now_ms, q.start_time, q.end_time).range_is_recent()?;
    let mut groups = Vec::with_capacity(engine.indexed_ports());
    let mut totals = [0u64; 3];
    let complete = engine.read_port_index(hour_of(now_ms), |port, proto, sums| {
        // Every endpoint open in a window, each with its bytes there.
        for (i, total) in totals.iter_mut().enumerate() {
            *total = total.saturating_add(sums.windows[i].recent[i]);
        }
        if sums.windows[w].endpoints > 0 {
            groups.extend(PortGroup::from_sums(engine, port, proto, sums, w));
        }
    });
    complete.then_some((groups, Totals(totals)))
}

/// The groups and totals by walking the state.
fn scan_groups<'a>(
    engine: &'a Engine,
    q: &PortQuery,
    wall_now_ms: i64,
) -> (Vec<PortGroup<'a>>, Totals) {
    let mut groups: HashMap<(u16, Protocol), Group> = HashMap::new();
    let totals = scan(engine, q, wall_now_ms, |open| {
        groups
            .entry((open.endpoint.port, open.endpoint.proto))
            .or_default()
            .add_sums(&open);
    });
    let groups = groups
        .iter()
        .map(|((port, proto), group)| PortGroup::from_group(*port, *proto, group))
        .collect();
    (groups, totals)
}

fn build_row(group: &PortGroup, totals: &Totals, lang: Lang) -> PortRow {
    let text = group.top.text(lang);
    let [d1, d7, d30] = totals.percents(group.recent);
    PortRow {
        risk_level: group.top.risk_level,
        prob_risk_desc: text.prob_risk_desc.clone(),
        traffic_percent_1_day: d1,
        protocol: group.proto.as_str(),
        // Each endpoint of a (port, protocol) is on its own address.
        public_ip_num: group.endpoints,
        suggest_level: group.top.suggest_level,
        detail_num: group.endpoints,
        port: group.port,
        traffic_percent_7_day: d7,
        traffic_percent_30_day: d30,
        prob_risk: text.prob_risk.clone(),
        risk_reason: text.risk_reason.clone(),
        service_name_list: group.names.to_strings(),
        in_bytes: group.in_bytes,
        out_bytes: group.out_bytes,
        total_bytes: group.total_bytes(),
        unknown_reason: group.unknown_reason(),
    }
}
