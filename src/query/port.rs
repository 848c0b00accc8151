//! `DescribeInternetOpenPort`: one row per (port, protocol) with at least one
//! open endpoint in the range (SPEC §6).

use std::cmp::Reverse;
use std::collections::HashMap;

use serde::Serialize;

use super::params::{Facts, PortQuery};
use super::scan::{scan, Group, Totals};
use super::Paged;
use crate::catalog::{Lang, Protocol};
use crate::state::Engine;

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
pub type PortResponse = Paged<PortRow>;

/// Computes the whole answer for `q` at `wall_now_ms`.
pub fn describe_internet_open_port(
    engine: &Engine,
    q: &PortQuery,
    wall_now_ms: i64,
    request_id: String,
) -> PortResponse {
    let mut groups: HashMap<(u16, Protocol), Group> = HashMap::new();
    let totals = scan(engine, q, wall_now_ms, |open| {
        groups
            .entry((open.endpoint.port, open.endpoint.proto))
            .or_default()
            .add_sums(&open);
    });
    // Filter and order the groups by what the rows are ordered on, then
    // build full rows (texts, percentages, lists) only for the page.
    let filter_on_services = q.service_name.is_some() || q.service_name_fuzzy.is_some();
    let mut list: Vec<((u16, Protocol), Group)> = groups
        .into_iter()
        .filter(|((port, _), group)| {
            let top = group.top();
            let services = if filter_on_services {
                group.service_names()
            } else {
                Vec::new()
            };
            q.matches(&Facts {
                services: &services,
                risk_level: top.risk_level,
                suggest_level: Some(top.suggest_level),
                ports: &[*port],
                public_ip: None,
            })
        })
        .collect();
    // RiskLevel desc, TotalBytes desc, Port asc, Protocol asc (SPEC §6).
    list.sort_by_cached_key(|((port, proto), group)| {
        (
            Reverse(group.top().risk_level),
            Reverse(group.total_bytes()),
            *port,
            proto.as_str(),
        )
    });
    let (page_info, page) = super::paginate(list, q.current_page, q.page_size);
    let data_list = page
        .into_iter()
        .map(|((port, proto), group)| build_row(port, proto, &group, &totals, q.lang))
        .collect();
    PortResponse {
        request_id,
        page_info,
        data_list,
    }
}

fn build_row(port: u16, proto: Protocol, group: &Group, totals: &Totals, lang: Lang) -> PortRow {
    let top = group.top();
    let text = top.text(lang);
    let [d1, d7, d30] = totals.percents(group.recent);
    PortRow {
        risk_level: top.risk_level,
        prob_risk_desc: text.prob_risk_desc.clone(),
        traffic_percent_1_day: d1,
        protocol: proto.as_str(),
        // Each endpoint of a (port, protocol) is on its own address.
        public_ip_num: group.endpoints,
        suggest_level: top.suggest_level,
        detail_num: group.endpoints,
        port,
        traffic_percent_7_day: d7,
        traffic_percent_30_day: d30,
        prob_risk: text.prob_risk.clone(),
        risk_reason: text.risk_reason.clone(),
        service_name_list: group.service_names(),
        in_bytes: group.in_bytes,
        out_bytes: group.out_bytes,
        total_bytes: group.total_bytes(),
        unknown_reason: group.unknown_reason(),
    }
}
