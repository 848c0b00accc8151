//! `DescribeInternetOpenService`: one row per (service, protocol) with at
//! least one open endpoint in the range.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Serialize;

use super::params::{Facts, Query};
use super::scan::{port_list, scan, Group, Totals};
use super::Paged;
use crate::catalog::{Lang, Protocol};
use crate::state::Engine;

/// One row of `DataList`, with the SDK model's field names
/// (`DescribeInternetOpenServiceResponseBodyDataList`). `ServiceName` is a
/// string, as Alibaba Cloud sends it (the SDK's type hint says `int`, but
/// the SDK does not convert).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceRow {
    /// Open endpoints (address, port) of the service on this protocol.
    pub detail_num: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    /// Sorted distinct ports it is open on, as strings.
    pub port_list: Vec<String>,
    pub prob_risk: String,
    pub prob_risk_desc: String,
    pub protocol: &'static str,
    /// Distinct asset addresses it is open on.
    pub public_ip_num: u64,
    pub risk_level: u8,
    pub risk_reason: String,
    pub service_name: String,
    pub suggest_level: u8,
    pub total_bytes: u64,
    pub traffic_percent_1_day: String,
    pub traffic_percent_30_day: String,
    pub traffic_percent_7_day: String,
    pub unknown_reason: Vec<String>,
}

/// The response body of `DescribeInternetOpenService`.
pub type ServiceResponse = Paged<ServiceRow>;

/// Computes the whole answer for `q` at `wall_now_ms`.
pub fn describe_internet_open_service(
    engine: &Engine,
    q: &Query,
    wall_now_ms: i64,
    request_id: String,
) -> ServiceResponse {
    let mut groups: HashMap<(Cow<str>, Protocol), Group> = HashMap::new();
    let totals = scan(engine, q, wall_now_ms, |open| {
        groups
            .entry((open.service.name.clone(), open.endpoint.proto))
            .or_default()
            .add(&open);
    });
    let mut list: Vec<ServiceRow> = groups
        .into_iter()
        .filter_map(|((name, proto), mut group)| {
            let ports = group.ports().to_vec();
            let row = build_row(
                name.into_owned(),
                proto,
                &mut group,
                &ports,
                &totals,
                q.lang,
            );
            let keep = q.matches(&Facts {
                services: std::slice::from_ref(&row.service_name),
                risk_level: row.risk_level,
                suggest_level: Some(row.suggest_level),
                ports: &ports,
                public_ip: None,
            });
            keep.then_some(row)
        })
        .collect();
    list.sort_by(|a, b| {
        b.risk_level
            .cmp(&a.risk_level)
            .then(b.total_bytes.cmp(&a.total_bytes))
            .then_with(|| a.service_name.cmp(&b.service_name))
            .then(a.protocol.cmp(b.protocol))
    });
    let (page_info, data_list) = super::paginate(list, q.current_page, q.page_size);
    ServiceResponse {
        request_id,
        page_info,
        data_list,
    }
}

fn build_row(
    service_name: String,
    proto: Protocol,
    group: &mut Group,
    ports: &[u16],
    totals: &Totals,
    lang: Lang,
) -> ServiceRow {
    let top = group.top();
    let text = top.text(lang);
    let [d1, d7, d30] = totals.percents(group.recent);
    ServiceRow {
        detail_num: group.endpoints,
        in_bytes: group.in_bytes,
        out_bytes: group.out_bytes,
        port_list: port_list(ports),
        prob_risk: text.prob_risk.clone(),
        prob_risk_desc: text.prob_risk_desc.clone(),
        protocol: proto.as_str(),
        public_ip_num: group.distinct_ips(),
        risk_level: top.risk_level,
        risk_reason: text.risk_reason.clone(),
        service_name,
        suggest_level: top.suggest_level,
        total_bytes: group.total_bytes(),
        traffic_percent_1_day: d1,
        traffic_percent_30_day: d30,
        traffic_percent_7_day: d7,
        unknown_reason: group.unknown_reason(),
    }
}
