//! `DescribeInternetOpenDetail`: one row per open endpoint (asset address,
//! port, protocol) in the range.

use std::cmp::Ordering;
use std::net::IpAddr;

use serde::Serialize;

use super::params::{Facts, Query, Sort, SortKey};
use super::scan::{scan, Open, Totals};
use super::Paged;
use crate::catalog::Lang;
use crate::classify::Endpoint;
use crate::state::Engine;

/// One row of `DataList`, with the SDK model's field names and JSON types
/// (`DescribeInternetOpenDetailResponseBodyDataList`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DetailRow {
    /// Alibaba Cloud inventory, unknown here: empty.
    pub assets_instance_id: String,
    pub assets_name: String,
    pub assets_type: String,
    /// The endpoint as `ip:port/protocol` (`[v6]:port/protocol`): stable
    /// and unique.
    pub id: String,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub port: u16,
    pub prob_risk: String,
    pub prob_risk_desc: String,
    pub protocol: &'static str,
    pub public_ip: String,
    pub region_no: String,
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

/// The response body of `DescribeInternetOpenDetail`.
pub type DetailResponse = Paged<DetailRow>;

/// Computes the whole answer for `q` at `wall_now_ms`.
pub fn describe_internet_open_detail(
    engine: &Engine,
    q: &Query,
    wall_now_ms: i64,
    request_id: String,
) -> DetailResponse {
    let mut opens: Vec<Open> = Vec::new();
    let totals = scan(engine, q, wall_now_ms, |open| {
        let service = [open.service.name.clone().into_owned()];
        let keep = q.matches(&Facts {
            services: &service,
            risk_level: open.service.risk.risk_level,
            suggest_level: Some(open.service.risk.suggest_level),
            ports: &[open.endpoint.port],
            public_ip: Some(open.endpoint.ip),
        });
        if keep {
            opens.push(open);
        }
    });
    let mut rows: Vec<(Endpoint, DetailRow)> = opens
        .iter()
        .map(|open| (open.endpoint, build_row(open, &totals, q.lang)))
        .collect();
    rows.sort_by(|a, b| order(&q.sort_list, a, b));
    let list = rows.into_iter().map(|(_, row)| row).collect();
    let (page_info, data_list) = super::paginate(list, q.current_page, q.page_size);
    DetailResponse {
        request_id,
        page_info,
        data_list,
    }
}

/// `SortList` first, then RiskLevel desc, TotalBytes desc, PublicIp, Port
/// and Protocol asc.
fn order(
    sorts: &[Sort],
    (ea, a): &(Endpoint, DetailRow),
    (eb, b): &(Endpoint, DetailRow),
) -> Ordering {
    for sort in sorts {
        let ord = match sort.key {
            SortKey::ServiceName => a.service_name.cmp(&b.service_name),
            SortKey::PublicIp => ea.ip.cmp(&eb.ip),
            SortKey::Port => ea.port.cmp(&eb.port),
        };
        let ord = if sort.descending { ord.reverse() } else { ord };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    b.risk_level
        .cmp(&a.risk_level)
        .then(b.total_bytes.cmp(&a.total_bytes))
        .then(ea.ip.cmp(&eb.ip))
        .then(ea.port.cmp(&eb.port))
        .then(ea.proto.cmp(&eb.proto))
}

fn build_row(open: &Open, totals: &Totals, lang: Lang) -> DetailRow {
    let risk = open.service.risk;
    let text = risk.text(lang);
    let [d1, d7, d30] = totals.percents(open.recent_bytes());
    let Endpoint { ip, port, proto } = open.endpoint;
    DetailRow {
        assets_instance_id: String::new(),
        assets_name: String::new(),
        assets_type: String::new(),
        id: endpoint_id(ip, port, proto.as_str()),
        in_bytes: open.range.in_bytes,
        out_bytes: open.range.out_bytes,
        port,
        prob_risk: text.prob_risk.clone(),
        prob_risk_desc: text.prob_risk_desc.clone(),
        protocol: proto.as_str(),
        public_ip: ip.to_string(),
        region_no: String::new(),
        risk_level: risk.risk_level,
        risk_reason: text.risk_reason.clone(),
        service_name: open.service.name.clone().into_owned(),
        suggest_level: risk.suggest_level,
        total_bytes: open.range.total_bytes(),
        traffic_percent_1_day: d1,
        traffic_percent_30_day: d30,
        traffic_percent_7_day: d7,
        unknown_reason: open
            .unknown_reason()
            .map(|r| vec![r.to_owned()])
            .unwrap_or_default(),
    }
}

/// `203.0.113.10:22/tcp`, `[2001:db8::1]:22/tcp`.
fn endpoint_id(ip: IpAddr, port: u16, proto: &str) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}/{proto}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}/{proto}"),
    }
}
