// The builders both test kits share, written once: `src/testkit.rs` (the
// unit tests', `crate::testkit`) and `tests/support/mod.rs` (the
// integration tests', `support`) include this file. The includer brings
// into scope: `Arc`, `Catalog`, `Classifier`, `Clock`, `Engine`, `Flow`,
// `Settings`, `PROTO_TCP` and the flags `ACK`, `PSH`, `SYN`.

/// The asset ranges of every test: one IPv4 and one IPv6 documentation range.
pub const ASSETS: [&str; 2] = ["203.0.113.0/24", "2001:db8:100::/48"];

/// 2024-01-01T00:00:00Z, the time of flows unless a test says otherwise.
pub const T0: i64 = 1_704_067_200_000;
/// An hour in milliseconds.
pub const HOUR: i64 = 3_600_000;
/// A day in milliseconds.
pub const DAY: i64 = 24 * HOUR;

/// The ephemeral port of every client, above every server port used.
pub const CLIENT_PORT: u16 = 61000;

/// One TCP flow of one packet of 100 bytes at [`T0`] without flags or label;
/// a test sets what it is about with struct update syntax:
/// `Flow { tcp_flags: SYN | ACK, ..flow("203.0.113.5", 443, "198.51.100.7", 50000) }`.
pub fn flow(src: &str, sport: u16, dst: &str, dport: u16) -> Flow {
    Flow {
        src_addr: src.parse().expect("test address"),
        dst_addr: dst.parse().expect("test address"),
        src_port: sport,
        dst_port: dport,
        proto: PROTO_TCP,
        tcp_flags: 0,
        bytes: 100,
        packets: 1,
        time_ms: T0,
        label: None,
    }
}

/// A request from `client` (port [`CLIENT_PORT`]) to `server:port` and the
/// reply, both carrying data (SYN, ACK, PSH) at `time_ms`: one open TCP
/// endpoint. Other fields as [`flow`] has them; a test changes both with
/// `conversation(..).map(|f| Flow { packets: 10, ..f })`.
pub fn conversation(
    server: &str,
    port: u16,
    client: &str,
    request: u64,
    reply: u64,
    time_ms: i64,
) -> [Flow; 2] {
    let data = |f: Flow, bytes| Flow {
        tcp_flags: SYN | ACK | PSH,
        bytes,
        time_ms,
        ..f
    };
    [
        data(flow(client, CLIENT_PORT, server, port), request),
        data(flow(server, port, client, CLIENT_PORT), reply),
    ]
}

/// The engine settings of most tests: 30 days on the wall clock, room for
/// 10,000 endpoints.
pub fn settings() -> Settings {
    Settings {
        retention_days: 30,
        clock: Clock::Wall,
        max_future_skew_ms: 5 * 60_000,
        max_endpoints: 10_000,
        max_pending: 10_000,
    }
}

/// A classifier of [`ASSETS`] with these internal ranges.
pub fn classifier(internal: &[&str]) -> Classifier {
    let nets = |ranges: &[&str]| -> Vec<_> {
        ranges
            .iter()
            .map(|r| r.parse().expect("test range"))
            .collect()
    };
    Classifier::new(&nets(&ASSETS), &nets(internal))
}

/// An empty engine over [`ASSETS`] with `settings` and the built-in catalog.
pub fn engine_with(settings: Settings) -> Engine {
    Engine::new(classifier(&[]), Arc::new(Catalog::builtin()), settings)
}

/// An empty engine over [`ASSETS`] with [`settings`].
pub fn engine() -> Engine {
    engine_with(settings())
}
