//! Hostile traffic against bounded state: a SYN scan of every port of many
//! asset addresses (no replies), then a flood of distinct Internet sources
//! against one open port. Reports the pending and open endpoint counts, what
//! was dropped (the `pending_limit` / `endpoint_limit` counters behind
//! `exposure_records_ignored_total`), and the process's resident memory.
//! The scanner sends from port 61000, so SYNs to higher ports are the
//! asset's client side by the lower-port rule (`asset_is_client`).
//!
//! ```text
//! cargo run --release --example scan_flood -- --addresses 256 --max-pending 1000000
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use exposure::catalog::Catalog;
use exposure::classify::Classifier;
use exposure::config::Clock;
use exposure::flow::tcp_flags::{ACK, PSH, SYN};
use exposure::flow::{Flow, PROTO_TCP};
use exposure::generate::bench;
use exposure::state::{Engine, Settings};

#[derive(Parser, Debug)]
struct Args {
    /// Asset addresses scanned (203.0.113.0/24, then 198.18.0.0/15 declared as assets).
    #[arg(long, default_value_t = 256)]
    addresses: u32,
    /// state.max_pending
    #[arg(long, default_value_t = 1_000_000)]
    max_pending: usize,
    /// state.max_endpoints
    #[arg(long, default_value_t = 5_000_000)]
    max_endpoints: usize,
    /// Distinct Internet sources in the flood.
    #[arg(long, default_value_t = 5_000_000)]
    sources: u32,
}

fn main() {
    let args = Args::parse();
    let now = exposure::state::wall_now_ms();
    let engine = Engine::new(
        Classifier::new(
            &[
                "203.0.113.0/24".parse().unwrap(),
                "198.18.0.0/15".parse().unwrap(),
            ],
            &[],
        ),
        Arc::new(Catalog::builtin()),
        Settings {
            retention_days: 30,
            clock: Clock::Wall,
            max_future_skew_ms: 300_000,
            max_endpoints: args.max_endpoints,
            max_pending: args.max_pending,
        },
    );
    let base_rss = bench::rss_bytes();
    let asset = |i: u32| -> IpAddr {
        if i < 256 {
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, i as u8))
        } else {
            IpAddr::V4(Ipv4Addr::from(
                u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i - 256,
            ))
        }
    };
    let mut syn = Flow {
        src_addr: "192.0.2.66".parse().unwrap(),
        dst_addr: asset(0),
        src_port: 61000,
        dst_port: 1,
        proto: PROTO_TCP,
        tcp_flags: SYN,
        bytes: 44,
        packets: 1,
        time_ms: now,
        label: None,
    };
    let started = Instant::now();
    let mut scanned = 0u64;
    for a in 0..args.addresses {
        syn.dst_addr = asset(a);
        for port in 1..=65535u16 {
            syn.dst_port = port;
            engine.apply(&syn, now);
            scanned += 1;
        }
    }
    let scan_elapsed = started.elapsed();
    let stats = engine.stats().snapshot();
    println!(
        "scan: {scanned} SYNs to {} addresses x 65535 ports in {:.1} s; pending {} (max_pending {}), open {}, dropped pending_limit={} endpoint_limit={}, probes of port 22: {}, rss +{:.0} MiB",
        args.addresses,
        scan_elapsed.as_secs_f64(),
        engine.pending_endpoints(),
        args.max_pending,
        engine.open_endpoints(),
        stats.ignored.get("pending_limit").copied().unwrap_or(0),
        stats.ignored.get("endpoint_limit").copied().unwrap_or(0),
        engine.probes(22, exposure::catalog::Protocol::Tcp),
        (bench::rss_bytes() - base_rss) as f64 / (1 << 20) as f64,
    );

    // A flood of distinct sources against one open server: sources are not
    // part of any key, so the state does not grow with them.
    let before = bench::rss_bytes();
    let server: IpAddr = "203.0.113.80".parse().unwrap();
    let reply = Flow {
        src_addr: server,
        dst_addr: "192.0.2.1".parse().unwrap(),
        src_port: 443,
        dst_port: 61000,
        proto: PROTO_TCP,
        tcp_flags: SYN | ACK | PSH,
        bytes: 1500,
        packets: 2,
        time_ms: now,
        label: None,
    };
    engine.apply(&reply, now);
    let endpoints_before = engine.open_endpoints() + engine.pending_endpoints();
    let started = Instant::now();
    let mut request = Flow {
        src_addr: server,
        dst_addr: server,
        src_port: 0,
        dst_port: 443,
        tcp_flags: SYN | ACK,
        bytes: 300,
        ..reply.clone()
    };
    for s in 0..args.sources {
        // Sources spread over 1.0.0.0/8 .. (all Internet addresses).
        request.src_addr = IpAddr::V4(Ipv4Addr::from(0x0100_0000 + s));
        request.src_port = 1024 + (s % 60000) as u16;
        engine.apply(&request, now);
    }
    println!(
        "flood: {} distinct sources to 203.0.113.80:443 in {:.1} s; endpoints {} -> {}, rss +{:.1} MiB",
        args.sources,
        started.elapsed().as_secs_f64(),
        endpoints_before,
        engine.open_endpoints() + engine.pending_endpoints(),
        (bench::rss_bytes() as f64 - before as f64) / (1 << 20) as f64,
    );
}
