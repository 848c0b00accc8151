//! Determinism, the mix, and evidence for every server.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use super::*;
use crate::catalog::Catalog;
use crate::classify::Classifier;
use crate::config::Clock;
use crate::state::{Engine, Settings};

const START_MS: i64 = 1_795_000_000_000;
const SPAN_MS: i64 = 6 * 3_600_000;

fn engine(world: &World) -> Engine {
    let settings = Settings {
        retention_days: 30,
        clock: Clock::Event,
        max_future_skew_ms: 300_000,
        max_endpoints: 5_000_000,
        max_pending: 1_000_000,
    };
    let classifier = Classifier::new(&world.assets(), &[]);
    Engine::new(classifier, Arc::new(Catalog::builtin()), settings)
}

#[test]
fn same_seed_gives_same_flows() {
    let flows = |world_seed, seed| -> Vec<Flow> {
        let world = World::new(world_seed, 300);
        Generator::new(&world, seed, START_MS, SPAN_MS)
            .take(5_000)
            .collect()
    };
    assert_eq!(flows(7, 9), flows(7, 9));
    assert_ne!(flows(7, 9), flows(7, 10));
    assert_ne!(flows(7, 9), flows(8, 9));
    assert_eq!(World::new(3, 50).servers(), World::new(3, 50).servers());
}

#[test]
fn endpoints_spread_over_one_port_per_twenty() {
    let world = World::new(1, 20_000);
    assert_eq!(world.servers().len(), 20_000);
    let endpoints: HashSet<_> = world
        .servers()
        .iter()
        .map(|s| (s.ip, s.port, s.proto))
        .collect();
    assert_eq!(endpoints.len(), 20_000, "endpoints are distinct");
    let ports: HashSet<_> = world.servers().iter().map(|s| (s.port, s.proto)).collect();
    assert_eq!(ports.len(), 1_000);
    let nets = world.assets();
    assert!(world
        .servers()
        .iter()
        .all(|s| nets.iter().any(|n| n.contains(&s.ip))));
    assert!(world.servers().iter().any(|s| s.ip.is_ipv6()));
}

#[test]
fn flows_fall_in_the_span() {
    let world = World::new(2, 100);
    for flow in Generator::new(&world, 2, START_MS, SPAN_MS).take(20_000) {
        assert!((START_MS..START_MS + SPAN_MS + 50).contains(&flow.time_ms));
    }
}

#[test]
fn the_mix_contains_each_kind() {
    let world = World::new(4, 500);
    let nets = world.assets();
    let asset = |ip: &IpAddr| nets.iter().any(|n| n.contains(ip));
    let internal = |ip: &IpAddr| matches!(ip, IpAddr::V4(v4) if v4.octets()[0] == 10);
    let flows: Vec<Flow> = Generator::new(&world, 4, START_MS, SPAN_MS)
        .take(30_000)
        .collect();
    let count = |pred: &dyn Fn(&Flow) -> bool| flows.iter().filter(|f| pred(f)).count();
    let kinds: [(&str, usize); 12] = [
        (
            "tcp reply with syn|ack|psh",
            count(&|f| asset(&f.src_addr) && f.tcp_flags == SYN_ACK_PSH && f.packets > 1),
        ),
        (
            "dns reply",
            count(&|f| asset(&f.src_addr) && f.src_port == 53 && f.proto == PROTO_UDP),
        ),
        (
            "ntp reply",
            count(&|f| asset(&f.src_addr) && f.src_port == 123 && f.proto == PROTO_UDP),
        ),
        (
            "rst|ack from a closed port",
            count(&|f| asset(&f.src_addr) && f.tcp_flags == f::RST | f::ACK),
        ),
        (
            "scan syn",
            count(&|f| f.tcp_flags == f::SYN && f.bytes == 44),
        ),
        (
            "asset browsing out",
            count(&|f| {
                asset(&f.src_addr) && (f.dst_port == 443 || f.dst_port == 80) && f.src_port > 32767
            }),
        ),
        (
            "web reply to a browsing asset",
            count(&|f| asset(&f.dst_addr) && f.src_port == 443 && f.dst_port > 32767),
        ),
        (
            "internal to asset",
            count(&|f| internal(&f.src_addr) && asset(&f.dst_addr)),
        ),
        (
            "asset to internal",
            count(&|f| asset(&f.src_addr) && internal(&f.dst_addr)),
        ),
        ("ipv6", count(&|f| f.src_addr.is_ipv6())),
        ("icmp", count(&|f| f.proto == PROTO_ICMP)),
        ("labelled", count(&|f| f.label.is_some())),
    ];
    for (kind, n) in kinds {
        assert!(n > 0, "no {kind} among {} flows", flows.len());
    }
    // Bidirectional: most flows have their reverse in the sample.
    let key = |f: &Flow| (f.src_addr, f.src_port, f.dst_addr, f.dst_port);
    let seen: HashSet<_> = flows.iter().map(key).collect();
    let reversed = count(&|f| seen.contains(&(f.dst_addr, f.dst_port, f.src_addr, f.src_port)));
    assert!(reversed * 2 > flows.len(), "{reversed} of {}", flows.len());
}

#[test]
fn every_server_endpoint_gets_reply_evidence_and_nothing_else_opens() {
    let world = World::new(5, 2_000);
    let engine = engine(&world);
    let mut generator = Generator::new(&world, 5, START_MS, SPAN_MS);
    let mut applied = 0;
    while !generator.covered_all_servers() {
        let flow = generator.next().expect("endless");
        engine.apply(&flow, START_MS + SPAN_MS);
        applied += 1;
    }
    assert!(applied < 8 * 2_000, "{applied} flows to cover 2000 servers");
    // More traffic of every other kind opens nothing new.
    for flow in generator.take(20_000) {
        engine.apply(&flow, START_MS + SPAN_MS);
    }
    let servers: HashSet<_> = world
        .servers()
        .iter()
        .map(|s| (s.ip, s.port, s.proto))
        .collect();
    let mut open = HashSet::new();
    engine.for_each(|e, state| {
        if state.ever_open {
            open.insert((e.ip, e.port, e.proto.number()));
        }
    });
    assert_eq!(open, servers);
    assert_eq!(engine.open_endpoints(), 2_000);
    assert!(
        engine.pending_endpoints() > 0,
        "closed ports and scans leave pending endpoints"
    );
}
