//! `DescribeInternetOpenPort`: one row per (port, protocol) with at least one
//! open endpoint in the range (SPEC §6).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::params::PortQuery;
use super::{percent, PageInfo, TimeWindows};
use crate::catalog::{Catalog, Lang, Protocol, Service};
use crate::classify::Endpoint;
use crate::state::{EndpointState, Engine};

/// One row of `DataList`, with the seed's field names and JSON types.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PortRow {
    #[serde(rename = "RiskLevel")]
    pub risk_level: u8,
    #[serde(rename = "ProbRiskDesc")]
    pub prob_risk_desc: String,
    #[serde(rename = "TrafficPercent1Day")]
    pub traffic_percent_1_day: String,
    #[serde(rename = "Protocol")]
    pub protocol: &'static str,
    #[serde(rename = "PublicIpNum")]
    pub public_ip_num: u64,
    #[serde(rename = "SuggestLevel")]
    pub suggest_level: u8,
    #[serde(rename = "DetailNum")]
    pub detail_num: u64,
    #[serde(rename = "Port")]
    pub port: u16,
    #[serde(rename = "TrafficPercent7Day")]
    pub traffic_percent_7_day: String,
    #[serde(rename = "TrafficPercent30Day")]
    pub traffic_percent_30_day: String,
    #[serde(rename = "ProbRisk")]
    pub prob_risk: String,
    #[serde(rename = "RiskReason")]
    pub risk_reason: String,
    #[serde(rename = "ServiceNameList")]
    pub service_name_list: Vec<String>,
    #[serde(rename = "InBytes")]
    pub in_bytes: u64,
    #[serde(rename = "OutBytes")]
    pub out_bytes: u64,
    #[serde(rename = "TotalBytes")]
    pub total_bytes: u64,
    #[serde(rename = "UnknownReason")]
    pub unknown_reason: Vec<String>,
}

/// The response body of `DescribeInternetOpenPort`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PortResponse {
    #[serde(rename = "RequestId")]
    pub request_id: String,
    #[serde(rename = "PageInfo")]
    pub page_info: PageInfo,
    #[serde(rename = "DataList")]
    pub data_list: Vec<PortRow>,
}

/// The service an endpoint runs, and the catalog entry its risk comes from.
struct ServiceOf<'a> {
    name: Cow<'a, str>,
    risk: &'a Service,
    unknown: bool,
}

/// An endpoint's service: the collector's L7 label when there is one (named
/// as the catalog names it when the catalog knows the label), else the
/// catalog's service for its port, else `Unknown`. A label the catalog does
/// not know keeps the collector's name and takes the port's risk.
fn service_of<'a>(catalog: &'a Catalog, endpoint: &Endpoint, label: Option<&str>) -> ServiceOf<'a> {
    let by_port = catalog
        .service_for_port(endpoint.port, endpoint.proto)
        .map(|id| catalog.get(id));
    if let Some(label) = label {
        if let Some(id) = catalog.service_by_name(label) {
            let s = catalog.get(id);
            return ServiceOf {
                name: Cow::Borrowed(&s.name),
                risk: s,
                unknown: false,
            };
        }
        return ServiceOf {
            name: Cow::Owned(label.to_owned()),
            risk: by_port.unwrap_or_else(|| catalog.unknown()),
            unknown: false,
        };
    }
    match by_port {
        Some(s) => ServiceOf {
            name: Cow::Borrowed(&s.name),
            risk: s,
            unknown: false,
        },
        None => {
            let s = catalog.unknown();
            ServiceOf {
                name: Cow::Borrowed(&s.name),
                risk: s,
                unknown: true,
            }
        }
    }
}

/// Everything summed for one (port, protocol).
#[derive(Default)]
struct RowAcc<'a> {
    endpoints: u64,
    in_bytes: u64,
    out_bytes: u64,
    /// Service name -> the catalog entry its risk comes from.
    services: BTreeMap<Cow<'a, str>, &'a Service>,
    no_payload: bool,
    unknown_strict: bool,
    /// TotalBytes over the last 1, 7 and 30 days of its endpoints open then.
    recent: [u64; 3],
}

/// Computes the whole answer for `q` at `wall_now_ms`.
pub fn describe_internet_open_port(
    engine: &Engine,
    q: &PortQuery,
    wall_now_ms: i64,
    request_id: String,
) -> PortResponse {
    let catalog = engine.catalog();
    let now_ms = engine.now_ms(wall_now_ms);
    let windows = TimeWindows::new(now_ms, q.start_time, q.end_time);
    let res = engine.resolution(now_ms);

    let mut rows: HashMap<(u16, Protocol), RowAcc> = HashMap::new();
    let mut all_recent = [0u64; 3];
    engine.for_each(|endpoint, state: &EndpointState| {
        if !state.ever_open {
            return;
        }
        let [range, d1, d7, d30] = state.series.tally(&windows.all(), res);
        let recent = [d1, d7, d30];
        for (sum, t) in all_recent.iter_mut().zip(&recent) {
            if t.open {
                *sum = sum.saturating_add(t.total_bytes());
            }
        }
        if !range.open {
            return;
        }
        let acc = rows.entry((endpoint.port, endpoint.proto)).or_default();
        acc.endpoints += 1;
        acc.in_bytes = acc.in_bytes.saturating_add(range.in_bytes);
        acc.out_bytes = acc.out_bytes.saturating_add(range.out_bytes);
        for (sum, t) in acc.recent.iter_mut().zip(&recent) {
            if t.open {
                *sum = sum.saturating_add(t.total_bytes());
            }
        }
        let service = service_of(catalog, endpoint, state.label.as_deref());
        if service.unknown {
            if range.payload {
                acc.unknown_strict = true;
            } else {
                acc.no_payload = true;
            }
        }
        acc.services.insert(service.name, service.risk);
    });

    let mut list: Vec<PortRow> = rows
        .into_iter()
        .map(|((port, proto), acc)| build_row(port, proto, acc, &all_recent, q.lang))
        .filter(|row| matches(row, q))
        .collect();
    list.sort_by(|a, b| {
        b.risk_level
            .cmp(&a.risk_level)
            .then(b.total_bytes.cmp(&a.total_bytes))
            .then(a.port.cmp(&b.port))
            .then(a.protocol.cmp(b.protocol))
    });
    let (page_info, data_list) = super::paginate(list, q.current_page, q.page_size);
    PortResponse {
        request_id,
        page_info,
        data_list,
    }
}

fn build_row(
    port: u16,
    proto: Protocol,
    acc: RowAcc,
    all_recent: &[u64; 3],
    lang: Lang,
) -> PortRow {
    // Highest risk wins; among equals, the lowest name (BTreeMap order).
    let (_, top) = acc
        .services
        .iter()
        .fold(None::<(&str, &Service)>, |best, (name, s)| match best {
            Some((_, b)) if b.risk_level >= s.risk_level => best,
            _ => Some((name.as_ref(), *s)),
        })
        .expect("a row has at least one service");
    let text = top.text(lang);
    let mut unknown_reason = Vec::new();
    if acc.no_payload {
        unknown_reason.push("no_payload".to_owned());
    }
    if acc.unknown_strict {
        unknown_reason.push("unknown_strict".to_owned());
    }
    PortRow {
        risk_level: top.risk_level,
        prob_risk_desc: text.prob_risk_desc.clone(),
        traffic_percent_1_day: percent(acc.recent[0], all_recent[0]),
        protocol: proto.as_str(),
        public_ip_num: acc.endpoints,
        suggest_level: top.suggest_level,
        detail_num: acc.endpoints,
        port,
        traffic_percent_7_day: percent(acc.recent[1], all_recent[1]),
        traffic_percent_30_day: percent(acc.recent[2], all_recent[2]),
        prob_risk: text.prob_risk.clone(),
        risk_reason: text.risk_reason.clone(),
        service_name_list: acc.services.into_keys().map(Cow::into_owned).collect(),
        in_bytes: acc.in_bytes,
        out_bytes: acc.out_bytes,
        total_bytes: acc.in_bytes.saturating_add(acc.out_bytes),
        unknown_reason,
    }
}

fn matches(row: &PortRow, q: &PortQuery) -> bool {
    q.port.is_none_or(|p| row.port == p)
        && q.risk_level.is_none_or(|r| row.risk_level == r)
        && q.suggest_level.is_none_or(|s| row.suggest_level == s)
        && q.service_name.as_deref().is_none_or(|want| {
            row.service_name_list
                .iter()
                .any(|n| n.eq_ignore_ascii_case(want) || n.to_lowercase() == want.to_lowercase())
        })
        && q.service_name_fuzzy.as_deref().is_none_or(|part| {
            row.service_name_list
                .iter()
                .any(|n| n.to_lowercase().contains(part))
        })
}
