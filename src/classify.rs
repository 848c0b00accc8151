//! Direction, server side and response evidence (`docs/semantics.md`).
//!
//! Every flow is judged on its own: which of its two addresses is one of our
//! assets and which is on the Internet, which side serves, and, for replies,
//! whether the reply proves the service answered.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::catalog::{Catalog, Protocol};
use crate::flow::{tcp_flags, Flow};

/// The built-in non-Internet ranges (`docs/semantics.md#addresses`);
/// `network.internal` adds to them.
pub const BUILTIN_INTERNAL: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

/// [`BUILTIN_INTERNAL`], parsed.
pub fn builtin_internal_ranges() -> Vec<IpNet> {
    BUILTIN_INTERNAL
        .iter()
        .map(|range| range.parse().expect("built-in ranges are valid CIDRs"))
        .collect()
}

/// One (asset IP, port, protocol): the unit whose exposure is tracked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// The asset address that serves.
    pub ip: IpAddr,
    /// The port it serves on.
    pub port: u16,
    /// TCP or UDP.
    pub proto: Protocol,
}

/// Where an address sits, as far as exposure is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrClass {
    /// One of our public ranges (`network.assets`).
    Asset,
    /// Non-routable or explicitly internal: never "the Internet".
    Internal,
    /// Everything else.
    Internet,
}

/// Why a flow is irrelevant to exposure (it says nothing about it); the label of
/// `exposure_records_ignored_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Irrelevant {
    /// Neither TCP nor UDP.
    NotTcpUdp,
    /// Neither side is an asset (transit, or purely internal traffic).
    NoAsset,
    /// An asset talks to another asset or to an internal address.
    NotInternet,
    /// The asset is the client of an Internet service.
    AssetIsClient,
}

impl Irrelevant {
    /// Every reason, in a fixed order (for counters indexed by reason).
    pub const ALL: [Irrelevant; 4] = [
        Irrelevant::NotTcpUdp,
        Irrelevant::NoAsset,
        Irrelevant::NotInternet,
        Irrelevant::AssetIsClient,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Irrelevant::NotTcpUdp => "not_tcp_udp",
            Irrelevant::NoAsset => "no_asset",
            Irrelevant::NotInternet => "not_internet",
            Irrelevant::AssetIsClient => "asset_is_client",
        }
    }
}

/// What a flow means for exposure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// From an Internet peer to a serving asset endpoint.
    Inbound(Endpoint),
    /// From a serving asset endpoint to an Internet peer; `evidence` is true
    /// when the reply proves the service answered.
    Outbound { endpoint: Endpoint, evidence: bool },
    /// Says nothing about exposure.
    Ignored(Irrelevant),
}

/// A set of address ranges, as sorted disjoint intervals for binary search.
#[derive(Clone, Debug, Default)]
struct RangeSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl RangeSet {
    fn new<'a>(nets: impl IntoIterator<Item = &'a IpNet>) -> Self {
        let mut set = RangeSet::default();
        for net in nets {
            match net {
                IpNet::V4(n) => set.v4.push((n.network().into(), n.broadcast().into())),
                IpNet::V6(n) => set.v6.push((n.network().into(), n.broadcast().into())),
            }
        }
        set.v4 = merge(set.v4);
        set.v6 = merge(set.v6);
        set
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => in_ranges(&self.v4, u32::from(a)),
            IpAddr::V6(a) => in_ranges(&self.v6, u128::from(a)),
        }
    }
}

/// Sorts inclusive ranges and merges the ones that overlap or touch.
fn merge<T: Ord + Copy + num_like::Succ>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if start <= last.1.succ() => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

fn in_ranges<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    // Index of the first range starting after x; the candidate is the one before.
    let i = ranges.partition_point(|&(start, _)| start <= x);
    i > 0 && x <= ranges[i - 1].1
}

mod num_like {
    /// The next value, saturating (so a range ending at MAX merges correctly).
    pub trait Succ {
        fn succ(self) -> Self;
    }
    impl Succ for u32 {
        fn succ(self) -> Self {
            self.saturating_add(1)
        }
    }
    impl Succ for u128 {
        fn succ(self) -> Self {
            self.saturating_add(1)
        }
    }
}

/// Classifies flows against our asset ranges and the service catalog.
#[derive(Clone, Debug)]
pub struct Classifier {
    assets: RangeSet,
    internal: RangeSet,
}

impl Classifier {
    /// `assets` are our public ranges; `extra_internal` is added to
    /// [`BUILTIN_INTERNAL`].
    pub fn new(assets: &[IpNet], extra_internal: &[IpNet]) -> Self {
        let builtin = builtin_internal_ranges();
        Classifier {
            assets: RangeSet::new(assets),
            internal: RangeSet::new(builtin.iter().chain(extra_internal)),
        }
    }

    /// Where `ip` sits. Assets win over internal ranges, so an operator can
    /// declare a range of theirs inside, say, 100.64/10 as an asset.
    pub fn addr_class(&self, ip: IpAddr) -> AddrClass {
        if self.assets.contains(ip) {
            AddrClass::Asset
        } else if self.internal.contains(ip) {
            AddrClass::Internal
        } else {
            AddrClass::Internet
        }
    }

    /// Judges one flow (`docs/semantics.md#direction-and-which-side-serves`,
    /// `docs/semantics.md#response-evidence-and-open-endpoints`).
    pub fn classify(&self, flow: &Flow, catalog: &Catalog) -> Verdict {
        let Some(proto) = Protocol::from_number(flow.proto) else {
            return Verdict::Ignored(Irrelevant::NotTcpUdp);
        };
        let src = self.addr_class(flow.src_addr);
        let dst = self.addr_class(flow.dst_addr);
        let inbound = match (src, dst) {
            (AddrClass::Internet, AddrClass::Asset) => true,
            (AddrClass::Asset, AddrClass::Internet) => false,
            (AddrClass::Asset, _) | (_, AddrClass::Asset) => {
                return Verdict::Ignored(Irrelevant::NotInternet)
            }
            _ => return Verdict::Ignored(Irrelevant::NoAsset),
        };
        let (asset_ip, asset_port, peer_port) = if inbound {
            (flow.dst_addr, flow.dst_port, flow.src_port)
        } else {
            (flow.src_addr, flow.src_port, flow.dst_port)
        };
        if !asset_serves(catalog, asset_port, peer_port, proto) {
            return Verdict::Ignored(Irrelevant::AssetIsClient);
        }
        let endpoint = Endpoint {
            ip: asset_ip,
            port: asset_port,
            proto,
        };
        if inbound {
            Verdict::Inbound(endpoint)
        } else {
            Verdict::Outbound {
                endpoint,
                evidence: is_response_evidence(proto, flow.tcp_flags),
            }
        }
    }
}

/// The asset side serves when the catalog knows its port and not the
/// peer's; when both or neither are known, when its port is the lower one.
pub fn asset_serves(catalog: &Catalog, asset_port: u16, peer_port: u16, proto: Protocol) -> bool {
    let asset_known = catalog.is_known(asset_port, proto);
    let peer_known = catalog.is_known(peer_port, proto);
    if asset_known != peer_known {
        return asset_known;
    }
    asset_port <= peer_port
}

/// Whether an outbound flow from a serving endpoint proves it answered:
/// any UDP reply; a TCP reply with SYN+ACK, or ACK without RST, or no flags
/// exported at all. A bare RST is a refusal: the port is closed.
pub fn is_response_evidence(proto: Protocol, flags: u16) -> bool {
    match proto {
        Protocol::Udp => true,
        Protocol::Tcp => {
            let has = |f: u16| flags & f == f;
            flags == 0
                || has(tcp_flags::SYN | tcp_flags::ACK)
                || (has(tcp_flags::ACK) && !has(tcp_flags::RST))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::PROTO_UDP;
    use crate::testkit;
    use tcp_flags::{ACK, FIN, PSH, RST, SYN};

    fn classifier() -> Classifier {
        testkit::classifier(&["198.18.0.0/15"])
    }

    fn ep(ip: &str, port: u16, proto: Protocol) -> Endpoint {
        Endpoint {
            ip: ip.parse().unwrap(),
            port,
            proto,
        }
    }

    #[test]
    fn builtin_internal_ranges_are_not_internet() {
        let c = classifier();
        for ip in [
            "10.1.2.3",
            "192.168.0.1",
            "100.64.0.1",
            "127.0.0.1",
            "fe80::1",
            "fd00::1",
            "::1",
            "224.0.0.5",
        ] {
            assert_eq!(
                c.addr_class(ip.parse().unwrap()),
                AddrClass::Internal,
                "{ip}"
            );
        }
    }

    #[test]
    fn configured_internal_ranges_add_to_builtin() {
        let c = classifier();
        assert_eq!(
            c.addr_class("198.19.255.255".parse().unwrap()),
            AddrClass::Internal
        );
        assert_eq!(
            c.addr_class("198.20.0.0".parse().unwrap()),
            AddrClass::Internet
        );
    }

    #[test]
    fn documentation_ranges_count_as_internet() {
        let c = classifier();
        for ip in ["198.51.100.7", "192.0.2.1", "2001:db8::1", "8.8.8.8"] {
            assert_eq!(
                c.addr_class(ip.parse().unwrap()),
                AddrClass::Internet,
                "{ip}"
            );
        }
    }

    #[test]
    fn asset_ranges_match_v4_and_v6_at_their_edges() {
        let c = classifier();
        assert_eq!(
            c.addr_class("203.0.113.0".parse().unwrap()),
            AddrClass::Asset
        );
        assert_eq!(
            c.addr_class("203.0.113.255".parse().unwrap()),
            AddrClass::Asset
        );
        assert_eq!(
            c.addr_class("203.0.114.0".parse().unwrap()),
            AddrClass::Internet
        );
        assert_eq!(
            c.addr_class("2001:db8:100:ffff::1".parse().unwrap()),
            AddrClass::Asset
        );
        assert_eq!(
            c.addr_class("2001:db8:101::1".parse().unwrap()),
            AddrClass::Internet
        );
    }

    #[test]
    fn overlapping_ranges_merge() {
        let set = RangeSet::new(&[
            "10.0.0.0/8".parse().unwrap(),
            "10.1.0.0/16".parse().unwrap(),
            "11.0.0.0/8".parse().unwrap(),
        ]);
        assert_eq!(set.v4, vec![(0x0a00_0000, 0x0bff_ffff)]);
    }

    #[test]
    fn inbound_to_asset_server_port() {
        let cat = Catalog::builtin();
        let f = Flow {
            tcp_flags: SYN,
            ..testkit::flow("198.51.100.7", 51000, "203.0.113.10", 22)
        };
        assert_eq!(
            classifier().classify(&f, &cat),
            Verdict::Inbound(ep("203.0.113.10", 22, Protocol::Tcp))
        );
    }

    #[test]
    fn outbound_reply_from_asset_server_is_evidence() {
        let cat = Catalog::builtin();
        let f = Flow {
            tcp_flags: SYN | ACK,
            ..testkit::flow("203.0.113.10", 22, "198.51.100.7", 51000)
        };
        assert_eq!(
            classifier().classify(&f, &cat),
            Verdict::Outbound {
                endpoint: ep("203.0.113.10", 22, Protocol::Tcp),
                evidence: true
            }
        );
    }

    #[test]
    fn rst_reply_is_not_response_evidence() {
        assert!(!is_response_evidence(Protocol::Tcp, RST));
        assert!(!is_response_evidence(Protocol::Tcp, RST | ACK));
        let cat = Catalog::builtin();
        let f = Flow {
            tcp_flags: RST | ACK,
            ..testkit::flow("203.0.113.10", 23, "198.51.100.7", 51000)
        };
        assert_eq!(
            classifier().classify(&f, &cat),
            Verdict::Outbound {
                endpoint: ep("203.0.113.10", 23, Protocol::Tcp),
                evidence: false
            }
        );
    }

    #[test]
    fn tcp_evidence_needs_syn_ack_or_ack_without_rst_or_no_flags() {
        assert!(is_response_evidence(Protocol::Tcp, SYN | ACK));
        assert!(is_response_evidence(Protocol::Tcp, ACK | PSH | FIN));
        assert!(is_response_evidence(Protocol::Tcp, 0), "flags not exported");
        assert!(
            !is_response_evidence(Protocol::Tcp, SYN),
            "a bare SYN is not a reply"
        );
        assert!(!is_response_evidence(Protocol::Tcp, FIN));
    }

    #[test]
    fn any_udp_reply_is_evidence() {
        assert!(is_response_evidence(Protocol::Udp, 0));
        assert!(
            is_response_evidence(Protocol::Udp, RST),
            "flags mean nothing for udp"
        );
    }

    #[test]
    fn asset_browsing_the_web_is_a_client() {
        let cat = Catalog::builtin();
        let c = classifier();
        let out = Flow {
            tcp_flags: SYN,
            ..testkit::flow("203.0.113.10", 50123, "198.51.100.7", 443)
        };
        let back = Flow {
            tcp_flags: SYN | ACK,
            ..testkit::flow("198.51.100.7", 443, "203.0.113.10", 50123)
        };
        assert_eq!(
            c.classify(&out, &cat),
            Verdict::Ignored(Irrelevant::AssetIsClient)
        );
        assert_eq!(
            c.classify(&back, &cat),
            Verdict::Ignored(Irrelevant::AssetIsClient)
        );
    }

    #[test]
    fn catalog_port_wins_over_lower_port() {
        let cat = Catalog::builtin();
        // 3306 (MySQL) is known, 1000 is not: the asset serves MySQL even
        // though the peer's port is lower.
        assert!(asset_serves(&cat, 3306, 1000, Protocol::Tcp));
        assert!(!asset_serves(&cat, 1000, 3306, Protocol::Tcp));
    }

    #[test]
    fn lower_port_serves_when_both_or_neither_known() {
        let cat = Catalog::builtin();
        assert!(
            asset_serves(&cat, 40000, 50000, Protocol::Tcp),
            "neither known"
        );
        assert!(
            !asset_serves(&cat, 50000, 40000, Protocol::Tcp),
            "neither known"
        );
        assert!(asset_serves(&cat, 22, 80, Protocol::Tcp), "both known");
        assert!(!asset_serves(&cat, 80, 22, Protocol::Tcp), "both known");
        assert!(
            asset_serves(&cat, 7000, 7000, Protocol::Udp),
            "equal ports: the asset serves"
        );
    }

    #[test]
    fn internal_and_transit_flows_are_ignored() {
        let cat = Catalog::builtin();
        let c = classifier();
        let internal = Flow {
            tcp_flags: SYN,
            ..testkit::flow("10.0.0.1", 5000, "203.0.113.10", 22)
        };
        let asset_to_asset = Flow {
            tcp_flags: SYN,
            ..testkit::flow("203.0.113.1", 5000, "203.0.113.10", 22)
        };
        let transit = Flow {
            proto: PROTO_UDP,
            ..testkit::flow("198.51.100.7", 5000, "8.8.8.8", 53)
        };
        let lan = Flow {
            tcp_flags: SYN,
            ..testkit::flow("10.0.0.1", 5000, "10.0.0.2", 22)
        };
        assert_eq!(
            c.classify(&internal, &cat),
            Verdict::Ignored(Irrelevant::NotInternet)
        );
        assert_eq!(
            c.classify(&asset_to_asset, &cat),
            Verdict::Ignored(Irrelevant::NotInternet)
        );
        assert_eq!(
            c.classify(&transit, &cat),
            Verdict::Ignored(Irrelevant::NoAsset)
        );
        assert_eq!(
            c.classify(&lan, &cat),
            Verdict::Ignored(Irrelevant::NoAsset)
        );
    }

    #[test]
    fn icmp_is_ignored() {
        let cat = Catalog::builtin();
        let f = Flow {
            proto: 1,
            ..testkit::flow("198.51.100.7", 0, "203.0.113.10", 0)
        };
        assert_eq!(
            classifier().classify(&f, &cat),
            Verdict::Ignored(Irrelevant::NotTcpUdp)
        );
    }

    #[test]
    fn ipv6_inbound_is_classified() {
        let cat = Catalog::builtin();
        let f = Flow {
            tcp_flags: SYN,
            ..testkit::flow("2001:db8::7", 40000, "2001:db8:100::5", 443)
        };
        assert_eq!(
            classifier().classify(&f, &cat),
            Verdict::Inbound(ep("2001:db8:100::5", 443, Protocol::Tcp))
        );
    }
}
