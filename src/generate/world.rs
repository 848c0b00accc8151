//! The hosts and services of a generated world, and the traffic shape of
//! each kind of server.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;

use ipnet::IpNet;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{ASSETS_V4, ASSETS_V6, SYN_ACK_PSH, SYN_ACK_PSH_FIN, V6_PERCENT};
use crate::catalog::{Catalog, Protocol};
use crate::classify::{AddrClass, Classifier};
use crate::flow::{tcp_flags as f, Flow, PROTO_TCP, PROTO_UDP};

/// Open endpoints per distinct server port, on average (100 k on 5 k ports).
const ENDPOINTS_PER_PORT: usize = 20;
/// 2001:db8:f000::/36, where the IPv6 clients live.
const CLIENTS_V6: u128 = 0x2001_0db8_f000_0000_0000_0000_0000_0000;
/// 2001:db8:e000::/36, where the IPv6 sites the assets browse live.
const SITES_V6: u128 = 0x2001_0db8_e000_0000_0000_0000_0000_0000;
/// At most this many server ports, leaving unknown ports for the tail.
const MAX_PORTS: usize = 20_000;

/// The traffic shape of a server: sizes and flags of its requests and replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Profile {
    /// HTTP(S): small requests, large replies.
    Web,
    /// Interactive sessions, both ways.
    Ssh,
    /// Mail submission: larger requests than replies.
    Mail,
    /// Queries and result sets.
    Database,
    /// One UDP query and one answer of up to 512 bytes.
    Dns,
    /// One 76-byte UDP packet each way.
    Ntp,
    /// Any other TCP service.
    Tcp,
    /// Any other UDP service.
    Udp,
    /// A TCP port that completes handshakes but carries no payload (at
    /// most 60 bytes a packet), as `UnknownReason` `no_payload` expects.
    Handshake,
}

/// Packets, bytes and TCP flags of one direction of a conversation.
#[derive(Clone, Copy, Debug)]
pub(super) struct Leg {
    pub(super) packets: u64,
    pub(super) bytes: u64,
    pub(super) flags: u16,
}

/// A leg of `packets` packets of `per_packet` bytes each (on average).
pub(super) fn leg(
    rng: &mut StdRng,
    packets: RangeInclusive<u64>,
    per_packet: RangeInclusive<u64>,
    flags: u16,
) -> Leg {
    let packets = rng.gen_range(packets);
    let drawn = packets.min(8);
    let sizes: u64 = (0..drawn).map(|_| rng.gen_range(per_packet.clone())).sum();
    Leg {
        packets,
        bytes: sizes * packets / drawn,
        flags,
    }
}

impl Profile {
    /// The request (inbound) and reply (outbound) of one session.
    pub(super) fn exchange(self, rng: &mut StdRng) -> [Leg; 2] {
        match self {
            Profile::Web => [
                leg(rng, 5..=30, 60..=500, SYN_ACK_PSH_FIN),
                leg(rng, 6..=400, 600..=1400, SYN_ACK_PSH),
            ],
            Profile::Ssh => [
                leg(rng, 10..=300, 60..=300, SYN_ACK_PSH_FIN),
                leg(rng, 10..=300, 80..=400, SYN_ACK_PSH),
            ],
            Profile::Mail => [
                leg(rng, 10..=80, 100..=1400, SYN_ACK_PSH_FIN),
                leg(rng, 8..=30, 60..=200, SYN_ACK_PSH),
            ],
            Profile::Database => [
                leg(rng, 4..=60, 80..=600, SYN_ACK_PSH_FIN),
                leg(rng, 4..=200, 200..=1400, SYN_ACK_PSH),
            ],
            Profile::Tcp => [
                leg(rng, 3..=40, 60..=800, SYN_ACK_PSH_FIN),
                leg(rng, 3..=60, 80..=1200, SYN_ACK_PSH),
            ],
            Profile::Handshake => [
                leg(rng, 2..=3, 52..=60, f::SYN | f::ACK | f::FIN),
                leg(rng, 1..=2, 40..=60, f::SYN | f::ACK),
            ],
            Profile::Dns => [leg(rng, 1..=1, 60..=90, 0), leg(rng, 1..=1, 90..=512, 0)],
            Profile::Ntp => [leg(rng, 1..=1, 76..=76, 0), leg(rng, 1..=1, 76..=76, 0)],
            Profile::Udp => [
                leg(rng, 1..=20, 60..=500, 0),
                leg(rng, 1..=20, 60..=1200, 0),
            ],
        }
    }
}

/// The well-known services every world starts with, most popular first.
const POPULAR: &[(u16, u8, Profile)] = &[
    (443, PROTO_TCP, Profile::Web),
    (80, PROTO_TCP, Profile::Web),
    (22, PROTO_TCP, Profile::Ssh),
    (53, PROTO_UDP, Profile::Dns),
    (25, PROTO_TCP, Profile::Mail),
    (8080, PROTO_TCP, Profile::Web),
    (123, PROTO_UDP, Profile::Ntp),
    (3389, PROTO_TCP, Profile::Tcp),
    (8443, PROTO_TCP, Profile::Web),
    (993, PROTO_TCP, Profile::Mail),
    (587, PROTO_TCP, Profile::Mail),
    (3306, PROTO_TCP, Profile::Database),
    (5432, PROTO_TCP, Profile::Database),
    (21, PROTO_TCP, Profile::Tcp),
    (6379, PROTO_TCP, Profile::Database),
    (500, PROTO_UDP, Profile::Udp),
    (1194, PROTO_UDP, Profile::Udp),
    (161, PROTO_UDP, Profile::Udp),
    (9200, PROTO_TCP, Profile::Database),
    (27017, PROTO_TCP, Profile::Database),
];

/// One open server endpoint of the world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    /// The asset address it listens on.
    pub ip: IpAddr,
    /// The port it listens on.
    pub port: u16,
    /// IP protocol number: [`PROTO_TCP`] or [`PROTO_UDP`].
    pub proto: u8,
    /// The shape of its traffic.
    pub profile: Profile,
    /// The L7 label a collector with a classifier attaches (pmacct `class`),
    /// for a few web servers on unusual ports.
    pub label: Option<Box<str>>,
}

/// The hosts and services flows are generated from. Cheap to clone.
#[derive(Clone, Debug)]
pub struct World {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    servers: Vec<Server>,
    /// (ip, port, proto) of every server, so closed ports stay closed.
    open: HashSet<(IpAddr, u16, u8)>,
    /// Internet clients of IPv4 servers.
    clients_v4: Vec<IpAddr>,
    /// Internet clients of IPv6 servers.
    clients_v6: Vec<IpAddr>,
    /// Internet hosts that SYN-scan the assets.
    scanners: Vec<IpAddr>,
    /// Internet web sites the assets browse, IPv4 and IPv6.
    sites_v4: Vec<IpAddr>,
    sites_v6: Vec<IpAddr>,
    /// Hosts in 10/8 that talk to the assets.
    internal: Vec<IpAddr>,
    /// Client ports no catalog service uses, so the asset side of a
    /// conversation is always judged the server.
    ephemeral: Vec<u16>,
}

impl World {
    /// A world with `endpoints` open server endpoints on about
    /// `endpoints / 20` distinct ports (at least the popular ones): the
    /// well-known services first, then ports below 32768 the catalog does
    /// not know. A few ports get many endpoints, most get a few.
    pub fn new(seed: u64, endpoints: usize) -> World {
        let mut rng = StdRng::seed_from_u64(seed);
        let catalog = Catalog::builtin();
        let known = |port: u16| {
            catalog.is_known(port, Protocol::Tcp) || catalog.is_known(port, Protocol::Udp)
        };
        let ports = server_ports(&mut rng, endpoints, &known);

        let mut open = HashSet::with_capacity(endpoints);
        let mut servers = Vec::with_capacity(endpoints);
        while servers.len() < endpoints {
            // Every port once, then skewed towards the popular ones.
            let index = match servers.len() {
                i if i < ports.len() => i,
                _ => ((ports.len() as f64) * rng.gen::<f64>().powi(2)) as usize,
            };
            let (port, proto, profile) = ports[index.min(ports.len() - 1)];
            let ip = asset_host(&mut rng, V6_PERCENT);
            if !open.insert((ip, port, proto)) {
                continue;
            }
            let label = (profile == Profile::Tcp && rng.gen_ratio(3, 100)).then(|| "HTTP".into());
            servers.push(Server {
                ip,
                port,
                proto,
                profile,
                label,
            });
        }

        let classifier = Classifier::new(&assets(), &[]);
        let n_clients = (endpoints * 2).clamp(256, 100_000);
        let inner = Inner {
            servers,
            open,
            clients_v4: internet_v4(&mut rng, &classifier, n_clients),
            clients_v6: (0..n_clients / 16)
                .map(|_| v6_in(&mut rng, CLIENTS_V6))
                .collect(),
            scanners: internet_v4(&mut rng, &classifier, 24),
            sites_v4: internet_v4(&mut rng, &classifier, 256),
            sites_v6: (0..16).map(|_| v6_in(&mut rng, SITES_V6)).collect(),
            internal: (0..64)
                .map(|_| IpAddr::from([10, 0, rng.gen(), rng.gen_range(1..=254)]))
                .collect(),
            ephemeral: (32768..=60999).filter(|&p| !known(p)).collect(),
        };
        World {
            inner: Arc::new(inner),
        }
    }

    /// The asset ranges to configure: [`ASSETS_V4`] and [`ASSETS_V6`].
    pub fn assets(&self) -> Vec<IpNet> {
        assets()
    }

    /// The open server endpoints, in a fixed order.
    pub fn servers(&self) -> &[Server] {
        &self.inner.servers
    }

    /// One session with server `index`: the client's request (inbound)
    /// at `time_ms` and the server's reply (outbound, response evidence)
    /// up to 50 ms later.
    pub fn exchange(&self, index: usize, time_ms: i64, rng: &mut StdRng) -> [Flow; 2] {
        let server = &self.inner.servers[index];
        let client_ip = if server.ip.is_ipv4() {
            pick(rng, &self.inner.clients_v4)
        } else {
            pick(rng, &self.inner.clients_v6)
        };
        let client = SocketAddr::new(client_ip, self.ephemeral(rng));
        let at = SocketAddr::new(server.ip, server.port);
        let legs = server.profile.exchange(rng);
        let mut flows = conversation(client, at, server.proto, legs, time_ms, rng);
        for flow in &mut flows {
            flow.label.clone_from(&server.label);
        }
        flows
    }

    /// Whether a server listens on `ip`, `port`, `proto`.
    pub(super) fn is_open(&self, ip: IpAddr, port: u16, proto: u8) -> bool {
        self.inner.open.contains(&(ip, port, proto))
    }

    /// A client port that no catalog service uses.
    pub(super) fn ephemeral(&self, rng: &mut StdRng) -> u16 {
        self.inner.ephemeral[rng.gen_range(0..self.inner.ephemeral.len())]
    }

    pub(super) fn client_v4(&self, rng: &mut StdRng) -> IpAddr {
        pick(rng, &self.inner.clients_v4)
    }

    pub(super) fn scanner(&self, rng: &mut StdRng) -> IpAddr {
        pick(rng, &self.inner.scanners)
    }

    pub(super) fn site(&self, rng: &mut StdRng, v6: bool) -> IpAddr {
        if v6 {
            pick(rng, &self.inner.sites_v6)
        } else {
            pick(rng, &self.inner.sites_v4)
        }
    }

    pub(super) fn internal_host(&self, rng: &mut StdRng) -> IpAddr {
        pick(rng, &self.inner.internal)
    }
}

fn assets() -> Vec<IpNet> {
    [ASSETS_V4, ASSETS_V6]
        .iter()
        .map(|s| s.parse().expect("asset range parses"))
        .collect()
}

/// The (port, protocol, profile) servers run on: the popular ones, then
/// random ports below 32768 that the catalog does not know (one in eight
/// UDP, one in eight handshake-only). Even a small world gets a few of
/// those, so every kind of row shows up.
fn server_ports(
    rng: &mut StdRng,
    endpoints: usize,
    known: &impl Fn(u16) -> bool,
) -> Vec<(u16, u8, Profile)> {
    let wanted = (endpoints / ENDPOINTS_PER_PORT)
        .max(endpoints.min(POPULAR.len() + 4))
        .min(MAX_PORTS);
    let mut ports: Vec<_> = POPULAR.iter().copied().take(wanted).collect();
    let mut taken: HashSet<(u16, u8)> = ports.iter().map(|&(p, proto, _)| (p, proto)).collect();
    while ports.len() < wanted {
        let port = rng.gen_range(1024..32768);
        let (proto, profile) = match (ports.len() - POPULAR.len()) % 8 {
            1 => (PROTO_UDP, Profile::Udp),
            2 => (PROTO_TCP, Profile::Handshake),
            _ => (PROTO_TCP, Profile::Tcp),
        };
        if !known(port) && taken.insert((port, proto)) {
            ports.push((port, proto, profile));
        }
    }
    ports
}

/// A host in the asset ranges; IPv6 `v6_percent` % of the time.
pub(super) fn asset_host(rng: &mut StdRng, v6_percent: u32) -> IpAddr {
    if rng.gen_ratio(v6_percent, 100) {
        let subnet: u16 = rng.gen_range(0..4);
        let host: u16 = rng.gen_range(1..=4096);
        IpAddr::from(Ipv6Addr::new(0x2001, 0xdb8, 0x100, subnet, 0, 0, 0, host))
    } else {
        IpAddr::from([203, 0, 113, rng.gen_range(1..=254)])
    }
}

/// `n` random IPv4 addresses the classifier calls Internet.
fn internet_v4(rng: &mut StdRng, classifier: &Classifier, n: usize) -> Vec<IpAddr> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let ip = IpAddr::from(Ipv4Addr::from(rng.gen::<u32>()));
        if classifier.addr_class(ip) == AddrClass::Internet {
            out.push(ip);
        }
    }
    out
}

/// A random address in the /36 starting at `net`.
fn v6_in(rng: &mut StdRng, net: u128) -> IpAddr {
    let low: u128 = rng.gen::<u128>() >> 36;
    IpAddr::from(Ipv6Addr::from(net | low))
}

fn pick(rng: &mut StdRng, from: &[IpAddr]) -> IpAddr {
    from[rng.gen_range(0..from.len())]
}

/// One unidirectional flow.
pub(super) fn one_way(from: SocketAddr, to: SocketAddr, proto: u8, leg: Leg, time_ms: i64) -> Flow {
    Flow {
        src_addr: from.ip(),
        dst_addr: to.ip(),
        src_port: from.port(),
        dst_port: to.port(),
        proto,
        tcp_flags: leg.flags,
        bytes: leg.bytes,
        packets: leg.packets,
        time_ms,
        label: None,
    }
}

/// The request from `client` at `time_ms` and the reply from `server` up
/// to 50 ms later.
pub(super) fn conversation(
    client: SocketAddr,
    server: SocketAddr,
    proto: u8,
    [request, reply]: [Leg; 2],
    time_ms: i64,
    rng: &mut StdRng,
) -> [Flow; 2] {
    [
        one_way(client, server, proto, request, time_ms),
        one_way(server, client, proto, reply, time_ms + rng.gen_range(0..50)),
    ]
}
