//! Memory per open endpoint with a full 30-day history (goal: <= 2 KiB,
//! see docs/benchmarks.md#goals-and-results).
//!
//! Builds 100 k open endpoints (on 5 k ports) that each answer a session
//! every hour for 30 days, fed in time order as a live stream would be,
//! with `Engine::maintain` every `--maintain-hours` (rolling hours older
//! than 48 into days), and once more at the end. Reports the growth of the
//! process's resident set (from `/proc/self/statm`) and the engine's own
//! estimate, `Engine::state_bytes`, per open endpoint; then times the
//! default `DescribeInternetOpenPort` on that state, and the size and
//! encoding time of a checkpoint of it.
//!
//! ```text
//! cargo run --release --example memory -- --endpoints 100000
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use exposure::generate::{bench, World};
use exposure::query::{self, PortQuery};
use rand::rngs::StdRng;
use rand::SeedableRng;

const HOUR_MS: i64 = 3_600_000;

#[derive(Parser, Debug)]
#[command(about = "Bytes per open endpoint with a full 30-day history")]
struct Args {
    /// Open endpoints.
    #[arg(long, default_value_t = 100_000)]
    endpoints: usize,
    /// Days of hourly history.
    #[arg(long, default_value_t = 30)]
    days: i64,
    /// Hours between two `maintain` calls while feeding.
    #[arg(long, default_value_t = 1)]
    maintain_hours: i64,
}

/// Resident set after asking glibc to give free heap pages back, to tell
/// live state from freed-but-kept memory.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn rss_after_trim() -> Option<u64> {
    extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: glibc's malloc_trim only releases free memory; it is safe to
    // call at any time from any thread.
    unsafe { malloc_trim(0) };
    Some(bench::rss_bytes())
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn rss_after_trim() -> Option<u64> {
    None
}

fn main() {
    let args = Args::parse();
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    // The end of the current hour: every flow is in the past of "now".
    let now = (wall / HOUR_MS + 1) * HOUR_MS;
    let hours = args.days * 24;
    let start = now - hours * HOUR_MS;

    let world = World::new(1, args.endpoints);
    // As `exposure run`: the port index is kept from the start (and moved
    // to each new hour by `maintain`).
    let engine = bench::engine(&world);
    let mut rng = StdRng::seed_from_u64(1);
    let before = bench::rss_bytes();

    let fed = Instant::now();
    let mut maintaining = Duration::ZERO;
    for hour in 0..hours {
        let hour_start = start + hour * HOUR_MS;
        for index in 0..world.servers().len() {
            let at = hour_start + (index as i64 * 7_919) % (HOUR_MS - 60_000);
            for f in world.exchange(index, at, &mut rng) {
                engine.apply(&f, now);
            }
        }
        if (hour + 1) % args.maintain_hours.max(1) == 0 {
            let m = Instant::now();
            engine.maintain(now);
            maintaining += m.elapsed();
        }
    }
    engine.maintain(now);
    let fed = fed.elapsed();
    let after = bench::rss_bytes();

    let open = engine.open_endpoints();
    assert_eq!(open, args.endpoints, "every endpoint is open");
    let mut buckets = 0;
    engine.for_each(|_, state| buckets += state.series.len());
    let flows = 2 * hours as u64 * args.endpoints as u64;
    println!(
        "fed {flows} flows ({} hours x {} endpoints x 2) in {:.1} s ({:.2} M flows/s), maintain {:.1} s of it",
        hours,
        args.endpoints,
        fed.as_secs_f64(),
        flows as f64 / fed.as_secs_f64() / 1e6,
        maintaining.as_secs_f64()
    );
    println!(
        "open endpoints {open}, buckets per endpoint {:.1}",
        buckets as f64 / open as f64
    );
    println!(
        "rss: {:.1} MiB before, {:.1} MiB after: {:.0} bytes per open endpoint",
        before as f64 / (1 << 20) as f64,
        after as f64 / (1 << 20) as f64,
        after.saturating_sub(before) as f64 / open as f64
    );
    println!(
        "engine.state_bytes(): {:.0} bytes per open endpoint",
        engine.state_bytes() as f64 / open as f64
    );
    if let Some(trimmed) = rss_after_trim() {
        println!(
            "rss after malloc_trim(0): {:.1} MiB: {:.0} bytes per open endpoint (the rest was freed heap glibc kept)",
            trimmed as f64 / (1 << 20) as f64,
            trimmed.saturating_sub(before) as f64 / open as f64
        );
    }

    // A checkpoint of this state: the time ingest pauses to encode it, and
    // the bytes written to disk every state.checkpoint_interval.
    let t = Instant::now();
    let checkpoint = exposure::state::checkpoint::encode(&engine, &[], now);
    println!(
        "checkpoint: {:.1} MiB ({:.0} bytes per open endpoint), encoded in {:.0} ms",
        checkpoint.len() as f64 / (1 << 20) as f64,
        checkpoint.len() as f64 / open as f64,
        t.elapsed().as_secs_f64() * 1e3
    );
    drop(checkpoint);

    let q = PortQuery::default();
    let mut times: Vec<Duration> = (0..100)
        .map(|_| {
            let t = Instant::now();
            black_box(query::describe_internet_open_port(
                &engine,
                &q,
                now,
                String::new(),
            ));
            t.elapsed()
        })
        .collect();
    times.sort_unstable();
    println!(
        "DescribeInternetOpenPort (default query, PageSize 10) on this state: p50 {:.2} ms, p99 {:.2} ms",
        times[50].as_secs_f64() * 1e3,
        times[99].as_secs_f64() * 1e3
    );
}
