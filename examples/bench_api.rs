//! `DescribeInternetOpenPort` over a real socket: requests per second at
//! saturation, and what serving `--rate` requests a second costs ingest.
//! The goal: ingest drops by no more than 10 % while the API serves 1,000
//! requests a second; and the query's own goal (docs/benchmarks.md), p99 <= 5 ms
//! during full-speed ingest, is printed beside the latencies measured here,
//! which include HTTP and queueing.
//!
//! The state is the one of `benches/query.rs`: `exposure::generate` with
//! seed 1 and `--endpoints` open endpoints, flows over 30 days until every
//! server has answered, then `--extra-flows` more, which are also encoded as
//! goflow2-pb for the ingest thread. The server is the real one,
//! `api::router` served by `api::serve` on 127.0.0.1 (an ephemeral port),
//! with `auth = "none"` and no rate limit (`default_qps = 0`), on its own
//! multi-thread tokio runtime of `--server-threads` workers; each query runs
//! on the runtime's blocking pool, one thread per query in flight. The
//! client is a minimal HTTP/1.1 client: keep-alive connections, each on a
//! thread of its own with blocking I/O, writing one fixed `GET` and reading
//! the answer by its `Content-Length`. Every latency goes into an
//! `hdrhistogram`; every response must be a 200.
//!
//! 1. Saturation: `--connections` connections send back to back for
//!    `--seconds`, for the default query (PageSize 10), then PageSize 100.
//! 2. Ingest under load: one thread applies the pre-encoded records at full
//!    speed, as the ingest thread of `benches/query.rs` does, for
//!    `--seconds` with no API load, then `--seconds` while a paced client
//!    sends `--rate` default queries a second over `--paced-connections`,
//!    then `--seconds` with no load again. The paced client follows a fixed
//!    schedule (request i is due at start + i / rate) and times each request
//!    from when it was due, so a stalled server shows up as latency rather
//!    than as fewer requests (coordinated omission corrected); requests due
//!    but never sent because every connection was still waiting are counted.
//!    The drop is the loaded phase's rate against the mean of the two idle
//!    phases.
//!
//! The machine has 2 cores: server workers, query threads, the client and
//! the ingest thread all share them, and share them with whatever else
//! runs (the load average is printed). The ingest thread's own CPU time
//! (`/proc/self/task/TID/schedstat`) and the process's CPU use are printed
//! beside each rate, to tell a lost core from contention on the state.
//!
//! ```text
//! cargo run --release --example bench_api
//! cargo run --release --example bench_api -- --endpoints 10000 --extra-flows 200000 --seconds 3
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use exposure::api::{self, ApiState};
use exposure::config::{ApiConfig, Auth};
use exposure::flow;
use exposure::generate::{bench, World};
use exposure::health::Health;
use exposure::metrics::Metrics;
use exposure::state::{wall_now_ms, Engine};
use hdrhistogram::Histogram;
use tokio_util::sync::CancellationToken;

#[path = "bench_api/client.rs"]
mod client;
#[path = "bench_api/ingest.rs"]
mod ingest;
#[path = "bench_api/procfs.rs"]
mod procfs;

use client::{Connection, Outcome};
use exposure::generate::bench::load_average;
use ingest::{Ingest, Mark, Rate};
use procfs::{process_threads, Cpu};

/// The default query: last 7 days, PageSize 10.
const DEFAULT_QUERY: &str = "/?Action=DescribeInternetOpenPort&Version=2017-12-07";
/// Largest PageSize the server accepts (`api.max_page_size`'s default).
const MAX_PAGE_SIZE: u32 = 1000;
/// The largest acceptable ingest drop under API load, in %.
const GOAL_DROP_PERCENT: f64 = 10.0;
/// The goal (docs/benchmarks.md): p99 of `DescribeInternetOpenPort` during ingest, ms.
const GOAL_P99_MS: f64 = 5.0;

#[derive(Parser, Debug)]
#[command(about = "DescribeInternetOpenPort over HTTP: saturation, and ingest under API load")]
struct Args {
    /// Open endpoints in the state (on ports spread as in benches/query.rs).
    #[arg(long, default_value_t = 100_000)]
    endpoints: usize,
    /// Flows applied after every server has answered, and replayed by the ingest thread.
    #[arg(long, default_value_t = 2_000_000)]
    extra_flows: usize,
    /// Keep-alive connections sending back to back in the saturation runs.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Length of each timed run and phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Requests per second of the paced client during ingest.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Connections of the paced client: at most this many requests in flight.
    #[arg(long, default_value_t = 16)]
    paced_connections: usize,
    /// Worker threads of the server's runtime (default: one per core, as `exposure run`).
    #[arg(long)]
    server_threads: Option<usize>,
    /// Format every request's log line as `exposure run` does (INFO), into
    /// a sink; off, the log events have no subscriber and cost next to nothing.
    #[arg(long)]
    log_requests: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.connections > 0 && args.paced_connections > 0 && args.rate > 0);
    if args.log_requests {
        tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .with_max_level(tracing::Level::INFO)
            .init();
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let server_threads = args.server_threads.unwrap_or(cores);
    let seconds = Duration::from_secs(args.seconds);
    println!("machine: {cores} cores, load average {}", load_average());

    let now = wall_now_ms();
    let started = Instant::now();
    eprintln!("building the state ...");
    let (engine, records) = build_state(args.endpoints, args.extra_flows, now);
    println!(
        "state: {} open endpoints, {} pending, built in {:.1} s; {} goflow2-pb records ({} bytes) for the ingest thread",
        engine.open_endpoints(),
        engine.pending_endpoints(),
        started.elapsed().as_secs_f64(),
        args.extra_flows,
        records.len(),
    );

    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(server_threads)
        .thread_name("api")
        .enable_all()
        .build()?;
    let listener = server_rt.block_on(tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))?;
    let addr = listener.local_addr()?;
    let metrics = Arc::new(Metrics::new(Arc::clone(&engine)));
    let health = Arc::new(Health::default());
    health.set_restored(true);
    health.set_assigned(true);
    let state = ApiState {
        engine: Arc::clone(&engine),
        expected: Arc::new(exposure::changes::watch::Watched::empty()),
        metrics,
        health,
        config: ApiConfig {
            listen: addr,
            auth: Auth::None,
            default_qps: 0,
            max_page_size: MAX_PAGE_SIZE,
            users: Vec::new(),
        },
        wall_clock: wall_now_ms,
    };
    let shutdown = CancellationToken::new();
    let server = server_rt.spawn(api::serve(listener, api::router(state), shutdown.clone()));
    println!(
        "server: http://{addr}, auth none, no rate limit, tokio multi-thread runtime with \
         {server_threads} workers + blocking pool (one thread per query in flight); \
         client: one thread per connection, blocking I/O; request logging {}",
        if args.log_requests {
            "formatted into a sink"
        } else {
            "off"
        }
    );

    for path in [
        DEFAULT_QUERY.to_owned(),
        format!("{DEFAULT_QUERY}&PageSize=100"),
    ] {
        saturation(addr, &path, args.connections, seconds)?;
    }
    ingest_under_load(&args, addr, &engine, &records, now)?;

    shutdown.cancel();
    let stopped =
        server_rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), server).await });
    match stopped {
        Ok(Ok(result)) => result.context("api server")?,
        Ok(Err(error)) => anyhow::bail!("api server task failed: {error}"),
        Err(_) => eprintln!("the api server did not stop within 10 s"),
    }
    server_rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// The state of `benches/query.rs`, and the extra flows encoded as
/// one-byte-length-prefixed goflow2-pb messages.
fn build_state(endpoints: usize, extra_flows: usize, now: i64) -> (Arc<Engine>, Vec<u8>) {
    let world = World::new(1, endpoints);
    let engine = bench::engine(&world);
    let mut records = Vec::new();
    bench::fill(&engine, &world, now, extra_flows, |f| {
        flow::encode_goflow2_pb(f, &mut records)
    });
    if engine.open_endpoints() != endpoints {
        eprintln!(
            "warning: {} open endpoints, {endpoints} asked for",
            engine.open_endpoints()
        );
    }
    (Arc::new(engine), records)
}

fn request(addr: SocketAddr, path: &str) -> Arc<[u8]> {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n")
        .into_bytes()
        .into()
}

/// `n` connections, each having sent one request (to open it and warm the
/// server); checks that answer and returns its summary.
fn warm_connections(
    addr: SocketAddr,
    path: &str,
    n: usize,
) -> anyhow::Result<(Vec<Connection>, String)> {
    let request = request(addr, path);
    let mut connections = Vec::with_capacity(n);
    let mut summary = String::new();
    for _ in 0..n {
        let mut conn = Connection::connect(addr, Arc::clone(&request))?;
        let reply = conn.call()?;
        let body = conn.body();
        anyhow::ensure!(
            reply.status == 200,
            "GET {path}: status {}: {}",
            reply.status,
            String::from_utf8_lossy(body)
        );
        if summary.is_empty() {
            let v: serde_json::Value = serde_json::from_slice(body).context("a JSON body")?;
            summary = format!(
                "TotalCount {}, {} rows, {} bytes",
                v["PageInfo"]["TotalCount"],
                v["DataList"].as_array().map_or(0, Vec::len),
                reply.body_bytes
            );
        }
        connections.push(conn);
    }
    Ok((connections, summary))
}

fn saturation(
    addr: SocketAddr,
    path: &str,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<()> {
    println!(
        "\nsaturation: GET {path}, {connections} connections, {} s",
        duration.as_secs()
    );
    let (conns, summary) = warm_connections(addr, path, connections)?;
    println!("  answer: {summary}");
    let cpu = Cpu::now();
    let outcome = client::saturate(conns, duration)?;
    let secs = outcome.elapsed.as_secs_f64();
    let (process, machine) = cpu.cores_until(Cpu::now(), secs);
    println!(
        "  {:.1} requests/s ({} in {secs:.1} s), non-200: {}, errors: {}",
        outcome.responses as f64 / secs,
        outcome.responses,
        outcome.non_200,
        outcome.errors,
    );
    println!("  latency: {}", percentiles(&outcome.latency));
    println!(
        "  CPU: this process {process:.2} cores (client threads {:.2}), whole machine \
         {machine:.2}; {} threads; load average {}",
        outcome.client_cpu_ns as f64 / 1e9 / secs,
        process_threads(),
        load_average()
    );
    warn_if_busy(machine, process);
    Ok(())
}

/// One phase of the ingest run: the ingest thread's rate and the CPU use
/// over it.
struct Phase {
    rate: Rate,
    /// Cores this process used on average.
    process_cores: f64,
    /// Cores the whole machine used on average (this process included).
    machine_cores: f64,
    threads: usize,
}

impl Phase {
    fn between(from: (Mark, Cpu), to: (Mark, Cpu)) -> Phase {
        let secs = (to.0.at - from.0.at).as_secs_f64();
        let (process_cores, machine_cores) = from.1.cores_until(to.1, secs);
        Phase {
            rate: Rate::between(from.0, to.0),
            process_cores,
            machine_cores,
            threads: process_threads(),
        }
    }

    fn print(&self, name: &str) {
        println!(
            "  {name:<15} {:.2} M records/s; ingest thread on a core {:.0} % of the time, \
             {:.2} M per CPU second; CPU: this process {:.2} cores, whole machine {:.2}; \
             {} threads",
            self.rate.wall,
            self.rate.cpu_share * 100.0,
            self.rate.per_cpu,
            self.process_cores,
            self.machine_cores,
            self.threads,
        );
        warn_if_busy(self.machine_cores, self.process_cores);
    }
}

/// Cores used by other processes beyond which a phase's numbers say more
/// about them than about this process.
const OTHERS_CORES_WARNING: f64 = 0.25;

/// Warns when other processes took a noticeable share of the machine.
fn warn_if_busy(machine_cores: f64, process_cores: f64) {
    let others = machine_cores - process_cores;
    if others > OTHERS_CORES_WARNING {
        println!(
            "  warning: other processes used {others:.2} cores meanwhile; \
             the numbers above are not those of a quiet machine"
        );
    }
}

/// How much lower `loaded` is than the mean of `before` and `after`, in %.
fn drop_percent(before: f64, loaded: f64, after: f64) -> (f64, f64) {
    let baseline = (before + after) / 2.0;
    ((1.0 - loaded / baseline) * 100.0, baseline)
}

fn ingest_under_load(
    args: &Args,
    addr: SocketAddr,
    engine: &Engine,
    records: &[u8],
    now: i64,
) -> anyhow::Result<()> {
    println!(
        "\ningest: 1 thread applying goflow2-pb records at full speed, {} s idle, {} s with \
         GET {DEFAULT_QUERY} paced at {} requests/s over {} connections, {} s idle",
        args.seconds, args.seconds, args.rate, args.paced_connections, args.seconds
    );
    let ingest = Ingest::default();
    std::thread::scope(|s| {
        let thread = s.spawn(|| ingest.run(engine, records, now));
        ingest.wait_started();
        let result = phases(args, addr, &ingest);
        ingest.stop.store(true, Ordering::Relaxed);
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("ingest thread panicked"))?;
        result
    })?;
    println!("load average {}", load_average());
    Ok(())
}

/// Idle, paced API load, idle again, while `ingest` runs; prints each
/// phase and the drop.
fn phases(args: &Args, addr: SocketAddr, ingest: &Ingest) -> anyhow::Result<()> {
    let duration = Duration::from_secs(args.seconds);
    let rate = f64::from(args.rate);
    let mark = || (ingest.mark(), Cpu::now());

    let m0 = mark();
    std::thread::sleep(duration);
    let before = Phase::between(m0, mark());
    before.print("idle before:");

    let (conns, _) = warm_connections(addr, DEFAULT_QUERY, args.paced_connections)?;
    let m2 = mark();
    let paced = std::thread::spawn(move || client::paced(conns, rate, duration));
    std::thread::sleep(duration.saturating_sub(m2.0.at.elapsed()));
    let loaded = Phase::between(m2, mark());
    let outcome = paced
        .join()
        .map_err(|_| anyhow::anyhow!("paced client panicked"))??;
    loaded.print("with API load:");

    let m4 = mark();
    std::thread::sleep(duration);
    let after = Phase::between(m4, mark());
    after.print("idle after:");

    let (drop, baseline) = drop_percent(before.rate.wall, loaded.rate.wall, after.rate.wall);
    println!(
        "  drop under API load: {drop:.1} % against the idle mean of {baseline:.2} M/s \
         (goal <= {GOAL_DROP_PERCENT} %: {})",
        if drop <= GOAL_DROP_PERCENT {
            "met"
        } else {
            "missed"
        }
    );
    let (cpu_drop, cpu_baseline) =
        drop_percent(before.rate.per_cpu, loaded.rate.per_cpu, after.rate.per_cpu);
    println!(
        "  per CPU second of the ingest thread: {cpu_drop:.1} % against {cpu_baseline:.2} M \
         (contention on the state and caches, without the time it lost its core)"
    );
    print_paced(&outcome, rate, duration);
    Ok(())
}

fn print_paced(outcome: &Outcome, rate: f64, duration: Duration) {
    let secs = duration.as_secs_f64();
    println!(
        "  API under paced load: {:.1} requests/s served of {rate:.0} asked ({} responses, \
         {} due but not sent by the end, non-200: {}, errors: {}); client threads {:.2} cores",
        outcome.responses as f64 / secs,
        outcome.responses,
        outcome.unsent,
        outcome.non_200,
        outcome.errors,
        outcome.client_cpu_ns as f64 / 1e9 / outcome.elapsed.as_secs_f64(),
    );
    println!(
        "  latency from due time: {} (goal, the query alone: p99 <= {GOAL_P99_MS} ms)",
        percentiles(&outcome.latency)
    );
    println!("  latency from sending:  {}", percentiles(&outcome.service));
}

/// p50, p99, p99.9 and max of a µs histogram, in ms.
fn percentiles(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "no responses".to_owned();
    }
    let [p50, p99, p999, max] = bench::percentiles_ms(h);
    format!("p50 {p50:.2} ms, p99 {p99:.2} ms, p99.9 {p999:.2} ms, max {max:.2} ms")
}
