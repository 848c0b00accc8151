//! `DescribeInternetOpenStatistic`: how many addresses, ports and services
//! are open in the range, how many of them are high-risk, and how many
//! ports have an open endpoint nobody said to expect.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use serde::Serialize;

use super::params::Query;
use super::scan::scan;
use crate::catalog::Protocol;
use crate::changes::expected::Expected;
use crate::state::Engine;

/// The RiskLevel from which an address, port or service counts as risky.
pub const HIGH_RISK: u8 = 3;

/// The response body, with the SDK model's field names and JSON types
/// (`DescribeInternetOpenStatisticResponseBody`). Each count equals the
/// `TotalCount` of the sibling Action without filters, over the same range.
/// `InternetUnprotectedPortNum` counts the ports with an endpoint the
/// expected list does not cover (`docs/api.md#describeinternetopenstatistic`):
/// this service sees traffic, not ACLs, so "unprotected" means "not
/// expected"; without a list it equals `InternetPortNum`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StatisticResponse {
    /// Asset addresses with at least one open endpoint (DescribeInternetOpenIp rows).
    pub internet_ip_num: u64,
    /// Open (port, protocol) pairs (DescribeInternetOpenPort rows).
    pub internet_port_num: u64,
    /// Addresses whose riskiest open endpoint is high-risk.
    pub internet_risk_ip_num: u64,
    /// (port, protocol) pairs whose row is high-risk.
    pub internet_risk_port_num: u64,
    /// Distinct high-risk service names.
    pub internet_risk_service_num: u64,
    /// Distinct service names (a service on TCP and UDP counts once).
    pub internet_service_num: u64,
    /// Server Load Balancer addresses: this service knows no SLB, 0.
    pub internet_slb_ip_num: u64,
    /// Server Load Balancer ports: 0, as above.
    pub internet_slb_ip_port_num: u64,
    /// (port, protocol) pairs with at least one open endpoint that no
    /// unexpired expected entry covers at the time of the answer.
    pub internet_unprotected_port_num: u64,
    pub request_id: String,
}

/// Computes the whole answer for `q` at `wall_now_ms`; an endpoint is
/// expected when an entry of `expected` covers it at the window clock's now.
pub fn describe_internet_open_statistic(
    engine: &Engine,
    expected: &Expected,
    q: &Query,
    wall_now_ms: i64,
    request_id: String,
) -> StatisticResponse {
    let now_ms = engine.now_ms(wall_now_ms);
    // The highest RiskLevel seen for each address, port and service.
    let mut ips: HashMap<IpAddr, u8> = HashMap::new();
    let mut ports: HashMap<(u16, Protocol), u8> = HashMap::new();
    let mut services: HashMap<Cow<str>, u8> = HashMap::new();
    // Ports with an open endpoint that is not expected.
    let mut unprotected: HashSet<(u16, Protocol)> = HashSet::new();
    scan(engine, q, wall_now_ms, |open| {
        let risk = open.service.risk.risk_level;
        let raise = |level: &mut u8| *level = (*level).max(risk);
        let endpoint = open.endpoint;
        raise(ips.entry(endpoint.ip).or_default());
        raise(ports.entry((endpoint.port, endpoint.proto)).or_default());
        raise(services.entry(open.service.name).or_default());
        if expected
            .covering(endpoint.ip, endpoint.port, endpoint.proto, now_ms)
            .is_none()
        {
            unprotected.insert((endpoint.port, endpoint.proto));
        }
    });
    let risky = |levels: &mut dyn Iterator<Item = &u8>| {
        levels.filter(|&&level| level >= HIGH_RISK).count() as u64
    };
    StatisticResponse {
        internet_ip_num: ips.len() as u64,
        internet_port_num: ports.len() as u64,
        internet_risk_ip_num: risky(&mut ips.values()),
        internet_risk_port_num: risky(&mut ports.values()),
        internet_risk_service_num: risky(&mut services.values()),
        internet_service_num: services.len() as u64,
        internet_slb_ip_num: 0,
        internet_slb_ip_port_num: 0,
        internet_unprotected_port_num: unprotected.len() as u64,
        request_id,
    }
}
