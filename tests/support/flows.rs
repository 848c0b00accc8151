//! Flows and the Kafka records they travel in, beyond the builders both
//! kits share (`shared.rs`): a flow over UDP, goflow2-pb records, and the
//! seeded workload the durability tests count exactly.

use std::collections::BTreeMap;

use exposure::flow::{encode_goflow2_pb, Flow, PROTO_TCP};
use rand::{Rng, SeedableRng};

use super::conversation;

/// `f` over `proto`: on UDP without the TCP flags.
pub fn over(proto: u8, f: Flow) -> Flow {
    let tcp_flags = if proto == PROTO_TCP { f.tcp_flags } else { 0 };
    Flow {
        proto,
        tcp_flags,
        ..f
    }
}

/// One goflow2-pb record of `flow` (length-delimited, as goflow2 writes it).
pub fn goflow2_pb(flow: &Flow) -> Vec<u8> {
    let mut pb = Vec::new();
    encode_goflow2_pb(flow, &mut pb);
    pb
}

/// Kafka records (key, payload) to produce.
pub type Records = Vec<(String, Vec<u8>)>;

/// `n` conversations (goflow2-pb, now, four packets a flow) of one client
/// with `servers` endpoints (ports 20000.. on one host, so each row is one
/// endpoint); returns the records and the exact TotalBytes expected per port.
pub fn workload(seed: u64, n: usize, servers: u16) -> (Records, BTreeMap<u64, u64>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let now = exposure::state::wall_now_ms();
    let mut records = Vec::new();
    let mut expected: BTreeMap<u64, u64> = BTreeMap::new();
    for i in 0..n {
        let port = 20_000 + rng.gen_range(0..servers);
        let (request, reply) = (rng.gen_range(1..5_000u64), rng.gen_range(1..50_000u64));
        for f in conversation("203.0.113.10", port, "198.51.100.7", request, reply, now) {
            records.push((format!("k{i}"), goflow2_pb(&Flow { packets: 4, ..f })));
        }
        *expected.entry(u64::from(port)).or_default() += request + reply;
    }
    (records, expected)
}
