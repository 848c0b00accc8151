//! `DescribeInternetOpenIp`: one row per asset address with at least one
//! open endpoint in the range.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::Serialize;

use super::params::{Facts, Query};
use super::scan::{port_list, scan, Group, Totals};
use super::Paged;
use crate::catalog::Lang;
use crate::state::Engine;

/// One row of `DataList`, with the SDK model's field names and JSON types
/// (`DescribeInternetOpenIpResponseBodyDataList`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpRow {
    /// Why there is no ACL recommendation: this service makes none.
    pub acl_recommend_detail: String,
    /// Alibaba Cloud inventory, unknown here: empty.
    pub assets_instance_id: String,
    pub assets_name: String,
    pub assets_type: String,
    /// Open endpoints (port, protocol) of the address.
    pub detail_num: u64,
    pub has_acl_recommend: bool,
    pub in_bytes: u64,
    /// Cloud Firewall member account: none here, 0.
    pub member_uid: u64,
    pub out_bytes: u64,
    /// Sorted distinct open ports, as strings.
    pub port_list: Vec<String>,
    pub public_ip: String,
    pub region_no: String,
    pub risk_level: u8,
    pub risk_reason: String,
    pub service_name_list: Vec<String>,
    /// Distinct Internet peers of the address's open endpoints, over the
    /// retention window: a 64-register HyperLogLog estimate (13 % standard
    /// error; small counts within a few percent).
    pub src_ip_cnt: u64,
    pub total_bytes: u64,
    /// OutBytes over the last 7 days, whatever the range.
    pub total_reply_bytes: u64,
    pub traffic_percent_1_day: String,
    pub traffic_percent_30_day: String,
    pub traffic_percent_7_day: String,
    pub unknown_reason: Vec<String>,
}

/// The response body of `DescribeInternetOpenIp`.
pub type IpResponse = Paged<IpRow>;

/// Computes the whole answer for `q` at `wall_now_ms`.
pub fn describe_internet_open_ip(
    engine: &Engine,
    q: &Query,
    wall_now_ms: i64,
    request_id: String,
) -> IpResponse {
    let mut groups: HashMap<IpAddr, Group> = HashMap::new();
    let totals = scan(engine, q, wall_now_ms, |open| {
        groups.entry(open.endpoint.ip).or_default().add(&open);
    });
    let mut rows: Vec<(IpAddr, IpRow)> = groups
        .into_iter()
        .filter_map(|(ip, mut group)| {
            let ports = group.ports().to_vec();
            let row = build_row(ip, &group, &ports, &totals, q.lang);
            let keep = q.matches(&Facts {
                services: &row.service_name_list,
                risk_level: row.risk_level,
                suggest_level: None,
                ports: &ports,
                public_ip: Some(ip),
            });
            keep.then_some((ip, row))
        })
        .collect();
    rows.sort_by(|(ip_a, a), (ip_b, b)| {
        b.risk_level
            .cmp(&a.risk_level)
            .then(b.total_bytes.cmp(&a.total_bytes))
            .then(ip_a.cmp(ip_b))
    });
    let list = rows.into_iter().map(|(_, row)| row).collect();
    let (page_info, data_list) = super::paginate(list, q.current_page, q.page_size);
    IpResponse {
        request_id,
        page_info,
        data_list,
    }
}

fn build_row(ip: IpAddr, group: &Group, ports: &[u16], totals: &Totals, lang: Lang) -> IpRow {
    let top = group.top();
    let [d1, d7, d30] = totals.percents(group.recent);
    IpRow {
        acl_recommend_detail: String::new(),
        assets_instance_id: String::new(),
        assets_name: String::new(),
        assets_type: String::new(),
        detail_num: group.endpoints,
        has_acl_recommend: false,
        in_bytes: group.in_bytes,
        member_uid: 0,
        out_bytes: group.out_bytes,
        port_list: port_list(ports),
        public_ip: ip.to_string(),
        region_no: String::new(),
        risk_level: top.risk_level,
        risk_reason: top.text(lang).risk_reason.clone(),
        service_name_list: group.service_names(),
        src_ip_cnt: group.peers.estimate(),
        total_bytes: group.total_bytes(),
        total_reply_bytes: group.reply_7d,
        traffic_percent_1_day: d1,
        traffic_percent_30_day: d30,
        traffic_percent_7_day: d7,
        unknown_reason: group.unknown_reason(),
    }
}
