//! A deterministic, realistic world of flows, for benches, tests and demos.
//!
//! A [`World`] holds asset hosts in [`ASSETS_V4`] and [`ASSETS_V6`] running
//! open server endpoints, Internet clients, scanners, sites the assets
//! browse, and internal hosts. A [`Generator`] walks it the way collectors
//! see it: every conversation as unidirectional flows, request and reply.
//! The mix, by share of sessions:
//!
//! | share | session | flows |
//! |---|---|---|
//! | 55 % | an Internet client uses an open server: TCP replies with SYN\|ACK\|PSH, DNS and NTP over UDP, handshake-only ports | request in, reply out |
//! | 10 % | a client knocks on a closed TCP port | SYN in, RST\|ACK out |
//! | 5 % | a SYN scan of 4 to 24 ports of one asset | SYNs in, no reply |
//! | 15 % | an asset browses the web (443, 80) or resolves a name | request out, reply in |
//! | 10 % | internal traffic between 10.x hosts and assets | both ways |
//! | 5 % | ICMP echo, or a UDP probe of a closed port answered by ICMP | both ways |
//!
//! That is about 2.6 flows a session, a quarter of them scan SYNs. About 1
//! server in 20 and 1 browsing asset in 20 is IPv6. Only the open servers
//! ever answer with response evidence, so feeding the flows to an engine
//! opens exactly [`World::servers`].
//!
//! Same seed, same world; same world and seed, same flows. Flow times are
//! spread uniformly over the span, not sorted, as from many exporters with
//! their own delays.

pub mod bench;
mod world;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::flow::{tcp_flags as f, Flow, PROTO_TCP, PROTO_UDP};
use world::{asset_host, conversation, leg, one_way, Leg};
pub use world::{Profile, Server, World};

/// The IPv4 asset range of every world.
pub const ASSETS_V4: &str = "203.0.113.0/24";
/// The IPv6 asset range of every world.
pub const ASSETS_V6: &str = "2001:db8:100::/48";

const PROTO_ICMP: u8 = 1;
/// Percentage of servers and browsing assets on IPv6.
const V6_PERCENT: u32 = 5;
const SYN_ACK_PSH_FIN: u16 = f::SYN | f::ACK | f::PSH | f::FIN;
const SYN_ACK_PSH: u16 = f::SYN | f::ACK | f::PSH;

/// Ports scanners and stray clients knock on.
const PROBED: &[u16] = &[
    23, 2323, 445, 139, 135, 1433, 3389, 5900, 81, 8888, 110, 143, 5060, 7547, 8000, 9000,
];

/// An endless stream of flows from a [`World`], at times spread over
/// `[start_ms, start_ms + span_ms)` (replies up to 50 ms later). Take as
/// many as needed.
#[derive(Clone, Debug)]
pub struct Generator {
    world: World,
    rng: StdRng,
    start_ms: i64,
    span_ms: i64,
    /// Flows of the current session not handed out yet.
    queue: VecDeque<Flow>,
    /// Server sessions so far: the first pass visits every server in turn.
    server_sessions: usize,
}

impl Generator {
    /// A stream over `world`, reproducible from `seed`.
    pub fn new(world: &World, seed: u64, start_ms: i64, span_ms: i64) -> Self {
        Generator {
            world: world.clone(),
            rng: StdRng::seed_from_u64(seed),
            start_ms,
            span_ms: span_ms.max(1),
            queue: VecDeque::new(),
            server_sessions: 0,
        }
    }

    /// Every server has had at least one session (request and reply) among
    /// the flows handed out so far; about `4.7 * endpoints` flows in.
    pub fn covered_all_servers(&self) -> bool {
        self.server_sessions >= self.world.servers().len() && self.queue.is_empty()
    }

    fn session(&mut self) {
        let t = self.start_ms + self.rng.gen_range(0..self.span_ms);
        match self.rng.gen_range(0..100) {
            0..=54 if !self.world.servers().is_empty() => self.serve(t),
            0..=64 => self.closed_port(t),
            65..=69 => self.scan(t),
            70..=84 => self.browse(t),
            85..=94 => self.internal(t),
            _ => self.icmp(t),
        }
    }

    fn serve(&mut self, t: i64) {
        let n = self.world.servers().len();
        let index = if self.server_sessions < n {
            self.server_sessions
        } else {
            ((n as f64) * self.rng.gen::<f64>().powi(2)) as usize
        };
        self.server_sessions += 1;
        let flows = self.world.exchange(index.min(n - 1), t, &mut self.rng);
        self.queue.extend(flows);
    }

    /// Queues the request from `client` and the reply from `server`.
    fn talk(&mut self, client: SocketAddr, server: SocketAddr, proto: u8, legs: [Leg; 2], t: i64) {
        let flows = conversation(client, server, proto, legs, t, &mut self.rng);
        self.queue.extend(flows);
    }

    /// An Internet client at an ephemeral port.
    fn client(&mut self) -> SocketAddr {
        let ip = self.world.client_v4(&mut self.rng);
        SocketAddr::new(ip, self.world.ephemeral(&mut self.rng))
    }

    /// An IPv4 asset host and a port no server listens on there.
    fn closed_endpoint(&mut self, proto: u8) -> SocketAddr {
        loop {
            let ip = asset_host(&mut self.rng, 0);
            let port = if self.rng.gen_bool(0.5) {
                PROBED[self.rng.gen_range(0..PROBED.len())]
            } else {
                self.rng.gen_range(1..32768)
            };
            if !self.world.is_open(ip, port, proto) {
                return SocketAddr::new(ip, port);
            }
        }
    }

    fn closed_port(&mut self, t: i64) {
        let closed = self.closed_endpoint(PROTO_TCP);
        let client = self.client();
        let syn = leg(&mut self.rng, 1..=1, 60..=60, f::SYN);
        let rst = leg(&mut self.rng, 1..=1, 40..=40, f::RST | f::ACK);
        self.talk(client, closed, PROTO_TCP, [syn, rst], t);
    }

    fn scan(&mut self, t: i64) {
        let ip = self.world.scanner(&mut self.rng);
        let scanner = SocketAddr::new(ip, self.rng.gen_range(40000..65000));
        let target = asset_host(&mut self.rng, 0);
        let count: u16 = self.rng.gen_range(4..=24);
        let sequential = self.rng.gen_bool(0.5);
        let first: u16 = self.rng.gen_range(1..=1000);
        let syn = leg(&mut self.rng, 1..=1, 44..=44, f::SYN);
        for i in 0..count {
            let port = if sequential {
                first + i
            } else {
                self.rng.gen_range(1..=65535)
            };
            // An open port would answer; these scans only find closed ones.
            if self.world.is_open(target, port, PROTO_TCP) {
                continue;
            }
            let to = SocketAddr::new(target, port);
            let flow = one_way(scanner, to, PROTO_TCP, syn, t + i64::from(i));
            self.queue.push_back(flow);
        }
    }

    fn browse(&mut self, t: i64) {
        let v6 = self.rng.gen_ratio(V6_PERCENT, 100);
        let ip = asset_host(&mut self.rng, if v6 { 100 } else { 0 });
        let asset = SocketAddr::new(ip, self.world.ephemeral(&mut self.rng));
        if self.rng.gen_ratio(3, 4) {
            let port = if self.rng.gen_ratio(85, 100) { 443 } else { 80 };
            let site = SocketAddr::new(self.world.site(&mut self.rng, v6), port);
            let legs = [
                leg(&mut self.rng, 5..=40, 60..=600, SYN_ACK_PSH_FIN),
                leg(&mut self.rng, 5..=300, 600..=1400, SYN_ACK_PSH_FIN),
            ];
            self.talk(asset, site, PROTO_TCP, legs, t);
        } else {
            let resolver: IpAddr = if v6 {
                "2001:4860:4860::8888".parse().expect("address parses")
            } else {
                [[8, 8, 8, 8], [1, 1, 1, 1], [9, 9, 9, 9]][self.rng.gen_range(0..3)].into()
            };
            let legs = Profile::Dns.exchange(&mut self.rng);
            self.talk(asset, SocketAddr::new(resolver, 53), PROTO_UDP, legs, t);
        }
    }

    fn internal(&mut self, t: i64) {
        let host = self.world.internal_host(&mut self.rng);
        let asset = asset_host(&mut self.rng, 0);
        let legs = Profile::Tcp.exchange(&mut self.rng);
        let ephemeral = self.world.ephemeral(&mut self.rng);
        if self.rng.gen_ratio(3, 5) {
            // An internal client administers or uses an asset.
            let port = [22, 443, 5432][self.rng.gen_range(0..3)];
            let client = SocketAddr::new(host, ephemeral);
            self.talk(client, SocketAddr::new(asset, port), PROTO_TCP, legs, t);
        } else {
            // An asset uses an internal database.
            let client = SocketAddr::new(asset, ephemeral);
            self.talk(client, SocketAddr::new(host, 5432), PROTO_TCP, legs, t);
        }
    }

    fn icmp(&mut self, t: i64) {
        let client = self.client();
        if self.rng.gen_ratio(3, 5) {
            let echo = leg(&mut self.rng, 1..=1, 84..=84, 0);
            let asset = SocketAddr::new(asset_host(&mut self.rng, 0), 0);
            let pinger = SocketAddr::new(client.ip(), 0);
            self.talk(pinger, asset, PROTO_ICMP, [echo, echo], t);
            return;
        }
        // A UDP probe of a closed port, answered by ICMP port unreachable.
        let closed = self.closed_endpoint(PROTO_UDP);
        let probe = leg(&mut self.rng, 1..=1, 60..=120, 0);
        let unreachable = leg(&mut self.rng, 1..=1, 70..=150, 0);
        let reply_from = SocketAddr::new(closed.ip(), 0);
        let reply_to = SocketAddr::new(client.ip(), 0);
        self.queue
            .push_back(one_way(client, closed, PROTO_UDP, probe, t));
        self.queue.push_back(one_way(
            reply_from,
            reply_to,
            PROTO_ICMP,
            unreachable,
            t + 1,
        ));
    }
}

impl Iterator for Generator {
    type Item = Flow;

    fn next(&mut self) -> Option<Flow> {
        while self.queue.is_empty() {
            self.session();
        }
        self.queue.pop_front()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::MAX, None)
    }
}

#[cfg(test)]
mod tests;
