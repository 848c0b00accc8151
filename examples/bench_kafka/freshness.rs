//! Row 2: freshness, from the produce call to the endpoint listed by the
//! HTTP API (see the crate doc).

use std::net::{Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use exposure::api::{self, ApiState};
use exposure::catalog::Catalog;
use exposure::config::{ApiConfig, Auth};
use exposure::generate::{bench, Generator, World};
use exposure::health::Health;
use exposure::metrics::Metrics;
use exposure::state::{wall_now_ms, Engine};
use hdrhistogram::Histogram;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tokio_util::sync::CancellationToken;

use crate::support::{
    create_topic, fresh_ip, fresh_record, rand_name, start_source, visible, Tansu, FRESH_PORT,
};
use crate::{kafka_config, send, service_config, Args, HOUR_MS};

/// The pause between two API polls of one freshness sample.
const POLL_PAUSE: Duration = Duration::from_millis(1);
/// A freshness sample not visible after this long counts as missing.
const VISIBLE_WITHIN: Duration = Duration::from_secs(30);

/// What the freshness samples measured, in µs.
struct Freshness {
    produced_to_visible: Histogram<u64>,
    http_round_trip: Histogram<u64>,
    missing: usize,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

pub fn run(
    args: &Args,
    workers: usize,
    runtime: &tokio::runtime::Runtime,
    tansu: &Tansu,
    world: &World,
) -> anyhow::Result<()> {
    println!("## Freshness: produced to visible in the API (goal: p99 <= 1 s)");
    let topic = rand_name("bench-fresh");
    create_topic(runtime, &tansu.bootstrap, &topic, args.partitions)?;
    let config = service_config(
        kafka_config(&tansu.bootstrap, &topic, &rand_name("bench-fresh"), args),
        world,
    );
    let engine = Arc::new(Engine::from_config(&config, Arc::new(Catalog::builtin())));
    let now = wall_now_ms();
    let mut generator = Generator::new(world, 2, now - 24 * HOUR_MS, 24 * HOUR_MS);
    while !generator.covered_all_servers() {
        engine.apply(&generator.next().expect("endless"), now);
    }
    let metrics = Arc::new(Metrics::new(engine.clone()));
    let health = Arc::new(Health::default());
    health.set_restored(true);

    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let api_addr = listener.local_addr()?;
    let router = api::router(ApiState {
        engine: engine.clone(),
        expected: Arc::new(exposure::changes::watch::Watched::empty()),
        metrics: metrics.clone(),
        health: health.clone(),
        config: ApiConfig {
            listen: api_addr,
            auth: Auth::None,
            default_qps: 0,
            ..ApiConfig::default()
        },
        wall_clock: wall_now_ms,
    });
    let http_stop = CancellationToken::new();
    let server = runtime.spawn(api::serve(listener, router, http_stop.clone()));
    let stop = CancellationToken::new();
    let source = start_source(&config.kafka, workers, &engine, metrics, health, &stop)?;
    println!(
        "state         {} open endpoints, {} pending before the samples (world of {}, seed 2, last 24 h)",
        engine.open_endpoints(),
        engine.pending_endpoints(),
        args.endpoints
    );
    println!("api           HTTP on {api_addr}: api::router, auth none, no rate limit; a new connection per request");
    println!(
        "samples       {} new endpoints, one goflow2-pb record each (request and reply), at most {} a second, to a topic of {} partitions; producer linger.ms=0 batch.num.messages=1",
        args.samples, args.rate, args.partitions
    );
    println!(
        "visible       DescribeInternetOpenDetail?PublicIp=<new address>&Port={FRESH_PORT} answers TotalCount 1, polled every {POLL_PAUSE:?} after the previous answer; timed from the produce call (no flush)"
    );
    let measured = measure_freshness(&tansu.bootstrap, &topic, api_addr, args);
    stop.cancel();
    let joined = source
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the poll thread panicked")));
    http_stop.cancel();
    let served = runtime.block_on(server);
    let f = measured?;
    joined?;
    served??;

    println!();
    println!("| | samples | p50 | p99 | p999 | max |");
    println!("|---|---|---|---|---|---|");
    for (what, h, decimals) in [
        ("produced to visible", &f.produced_to_visible, 1),
        ("one API poll (HTTP round trip)", &f.http_round_trip, 2),
    ] {
        let [p50, p99, p999, max] = bench::percentiles_ms(h);
        println!(
            "| {what} | {} | {p50:.decimals$} ms | {p99:.decimals$} ms | {p999:.decimals$} ms | {max:.decimals$} ms |",
            h.len()
        );
    }
    if f.missing > 0 {
        println!(
            "{} samples were not visible within {VISIBLE_WITHIN:?} (not in the histogram)",
            f.missing
        );
    }
    Ok(())
}

fn measure_freshness(
    bootstrap: &str,
    topic: &str,
    api: SocketAddr,
    args: &Args,
) -> anyhow::Result<Freshness> {
    // One record per batch and no linger, as the tests produce to tansu: the
    // producer's own wait is not the service's.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("batch.num.messages", "1")
        .set("linger.ms", "0")
        .create()
        .context("creating the producer")?;
    let mut f = Freshness {
        produced_to_visible: Histogram::new_with_bounds(1, 3_600_000_000, 3)?,
        http_round_trip: Histogram::new_with_bounds(1, 3_600_000_000, 3)?,
        missing: 0,
    };
    // Warm-up: the consumer has joined its group and fetched once.
    let warm_up = produce_and_wait(&producer, topic, 0, api, fresh_ip(0), None)?;
    if warm_up.is_none() {
        bail!("the warm-up endpoint never became visible");
    }
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let mut next = Instant::now();
    for i in 1..=args.samples {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        next = (next + interval).max(Instant::now());
        match produce_and_wait(
            &producer,
            topic,
            (i % args.partitions as usize) as i32,
            api,
            fresh_ip(i),
            Some(&mut f.http_round_trip),
        )? {
            Some(took) => f.produced_to_visible.record(micros(took))?,
            None => f.missing += 1,
        }
    }
    producer
        .flush(Duration::from_secs(10))
        .context("flushing the producer")?;
    Ok(f)
}

/// Produces one new endpoint to `partition` and polls the API until it is
/// listed; the time from the produce call, or `None` after [`VISIBLE_WITHIN`].
fn produce_and_wait(
    producer: &BaseProducer,
    topic: &str,
    partition: i32,
    api: SocketAddr,
    server: Ipv6Addr,
    mut round_trips: Option<&mut Histogram<u64>>,
) -> anyhow::Result<Option<Duration>> {
    let record = fresh_record(server);
    let started = Instant::now();
    send(
        producer,
        BaseRecord::to(topic)
            .partition(partition)
            .payload(record.as_slice()),
    )?;
    loop {
        producer.poll(Duration::ZERO);
        let asked = Instant::now();
        let seen = visible(api, server)?;
        if let Some(h) = round_trips.as_deref_mut() {
            h.record(micros(asked.elapsed()))?;
        }
        if seen == Some(true) {
            return Ok(Some(started.elapsed()));
        }
        if started.elapsed() > VISIBLE_WITHIN {
            return Ok(None);
        }
        std::thread::sleep(POLL_PAUSE);
    }
}
