//! Row 1: end to end from the broker vs a consume-only loop, same topic,
//! same client settings, alternating passes (see the crate doc).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use exposure::catalog::Catalog;
use exposure::config::{Clock, Config, KafkaConfig};
use exposure::flow::encode_goflow2_pb;
use exposure::flow::Format;
use exposure::generate::{Generator, World};
use exposure::health::Health;
use exposure::metrics::Metrics;
use exposure::source::file;
use exposure::source::kafka::fetch::{FetchQueue, Fetched};
use exposure::source::kafka::{consumer_config, BATCH_RECORDS};
use exposure::state::{wall_now_ms, Engine};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use tokio_util::sync::CancellationToken;

use exposure::generate::bench::load_average;

use crate::support::{create_topic, rand_name, start_source, CpuMeter, Tansu};
use crate::{kafka_config, send, service_config, Args, HOUR_MS, STALL};

/// How long the consume-only loop waits in one poll.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// Records (a2) reads a call, as exposure's poll thread.
const BATCH: usize = BATCH_RECORDS;
/// Addresses of `--pipeline-only` flows: outside the bench's assets and
/// internal ranges, so every flow is ignored.
const OUTSIDE_SRC: [u8; 4] = [198, 51, 100, 7];
const OUTSIDE_DST: [u8; 4] = [192, 0, 2, 9];
/// How often the engine's record count is read while (b) runs.
const WATCH_INTERVAL: Duration = Duration::from_millis(1);

/// Records encoded back to back, with their ends.
struct Records {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Records {
    /// `count` generated flows; with `outside`, each moved to a pair of
    /// addresses that are neither assets nor internal.
    fn generate(world: &World, count: usize, now_ms: i64, outside: bool) -> Records {
        let mut records = Records {
            bytes: Vec::new(),
            ends: Vec::with_capacity(count),
        };
        for mut flow in Generator::new(world, 1, now_ms - HOUR_MS, HOUR_MS).take(count) {
            if outside {
                flow.src_addr = OUTSIDE_SRC.into();
                flow.dst_addr = OUTSIDE_DST.into();
            }
            encode_goflow2_pb(&flow, &mut records.bytes);
            records.ends.push(records.bytes.len());
        }
        records
    }

    /// The first `max` records of `path` in `format`, split as `exposure
    /// analyze` splits a file.
    fn read(path: &Path, format: Format, max: usize) -> anyhow::Result<Records> {
        let what = || format!("reading {}", path.display());
        let input = file::open(path).with_context(what)?;
        let mut records = Records {
            bytes: Vec::new(),
            ends: Vec::new(),
        };
        for record in file::records(input, format).with_context(what)?.take(max) {
            match record.with_context(what)? {
                Ok(bytes) => {
                    records.bytes.extend_from_slice(&bytes);
                    records.ends.push(records.bytes.len());
                }
                Err(e) => bail!(
                    "{}: after {} records: {e}",
                    path.display(),
                    records.ends.len()
                ),
            }
        }
        if records.ends.is_empty() {
            bail!("{}: no records", path.display());
        }
        Ok(records)
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(start, end)| &self.bytes[start..end])
    }
}

/// Counts the producer's delivery reports.
#[derive(Default)]
struct Deliveries {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let counter = if result.is_ok() {
            &self.ok
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Produces every record, round-robin over the partitions, in librdkafka's
/// usual batches (a consumer reading from the start only fetches at batch
/// boundaries, so tansu's defect 1 does not apply). Returns the settings
/// and the time taken until every record was acknowledged.
fn produce_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    records: &Records,
) -> anyhow::Result<(String, Duration)> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576");
    let settings = config
        .config_map()
        .into_iter()
        .filter(|(k, _)| *k != "bootstrap.servers")
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    let producer: BaseProducer<Deliveries> = config
        .create_with_context(Deliveries::default())
        .context("creating the producer")?;
    let started = Instant::now();
    for (i, payload) in records.iter().enumerate() {
        let partition = (i % partitions as usize) as i32;
        send(
            &producer,
            BaseRecord::to(topic).partition(partition).payload(payload),
        )?;
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(300))
        .context("flushing the producer")?;
    let took = started.elapsed();
    let deliveries = producer.context();
    let ok = deliveries.ok.load(Ordering::Relaxed);
    let failed = deliveries.failed.load(Ordering::Relaxed);
    if ok != records.ends.len() as u64 {
        bail!(
            "{ok} of {} records acknowledged, {failed} failed",
            records.ends.len()
        );
    }
    Ok((settings, took))
}

/// One pass over the topic.
struct Pass {
    /// From creating the consumer to the last record.
    total: Duration,
    /// From the first record to the last: the rate's denominator.
    steady: Duration,
    /// Between the first record and the last, the longest time (a) waited
    /// on an empty local queue, or (b)'s engine record count stood still.
    longest_pause: Duration,
    /// CPU seconds by thread over the whole pass, the broker's included.
    cpu: BTreeMap<String, f64>,
}

impl Pass {
    fn rate(&self, records: usize) -> f64 {
        records as f64 / self.steady.as_secs_f64()
    }

    fn join_time(&self) -> Duration {
        self.total.saturating_sub(self.steady)
    }
}

/// What a consume-only loop keeps while it runs: records seen, their
/// payloads touched, and its waits on an empty local queue.
struct Consumed {
    started: Instant,
    first: Option<Instant>,
    received: usize,
    touched: u64,
    /// When the local queue was last found empty, while it stays empty.
    waiting_since: Option<Instant>,
    longest_wait: Duration,
}

impl Consumed {
    fn new() -> Consumed {
        Consumed {
            started: Instant::now(),
            first: None,
            received: 0,
            touched: 0,
            waiting_since: None,
            longest_wait: Duration::ZERO,
        }
    }

    /// The local queue was found empty; an error once it stayed so too long.
    fn empty(&mut self, who: &str, expected: usize) -> anyhow::Result<()> {
        let since = *self.waiting_since.get_or_insert_with(Instant::now);
        if since.elapsed() > STALL {
            bail!(
                "{who}: {} of {expected} records, then nothing for {STALL:?}",
                self.received
            );
        }
        Ok(())
    }

    /// A record arrived: its payload is touched (length and first byte).
    fn record(&mut self, payload: &[u8]) {
        if let Some(since) = self.waiting_since.take() {
            let now = Instant::now();
            if self.first.is_some() {
                self.longest_wait = self.longest_wait.max(now - since);
            }
        }
        self.first.get_or_insert_with(Instant::now);
        self.touched = self
            .touched
            .wrapping_add(payload.len() as u64)
            .wrapping_add(u64::from(payload.first().copied().unwrap_or(0)));
        self.received += 1;
    }

    fn pass(self, cpu: &CpuMeter) -> Pass {
        let done = Instant::now();
        black_box(self.touched);
        Pass {
            total: done - self.started,
            steady: done - self.first.unwrap_or(self.started),
            longest_pause: self.longest_wait,
            cpu: cpu.read(),
        }
    }
}

/// (a): polls until `expected` records arrived, touching each payload.
fn consume_only(kafka: &KafkaConfig, expected: usize, cpu: &CpuMeter) -> anyhow::Result<Pass> {
    let mut consumed = Consumed::new();
    let consumer: BaseConsumer = consumer_config(kafka)
        .create()
        .context("creating the consumer")?;
    let topics: Vec<&str> = kafka.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    while consumed.received < expected {
        // A blocking poll (and the clock) only when nothing is queued, so the
        // record path is the plain loop.
        let polled = match consumer.poll(Duration::ZERO) {
            Some(polled) => Some(polled),
            None => {
                consumed.empty("consume-only", expected)?;
                consumer.poll(POLL_TIMEOUT)
            }
        };
        match polled {
            Some(Ok(m)) => consumed.record(m.payload().unwrap_or_default()),
            Some(Err(e)) => tracing::warn!(error = %e, "consume-only: consume error"),
            None => {}
        }
    }
    Ok(consumed.pass(cpu))
}

/// Routes every partition it is assigned to a fetch queue before it is
/// fetched, as exposure's source does.
#[derive(Default)]
struct Routing {
    fetch: OnceLock<Weak<FetchQueue<Routing>>>,
}

impl ClientContext for Routing {}

impl ConsumerContext for Routing {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let (Rebalance::Assign(tpl), Some(fetch)) =
            (rebalance, self.fetch.get().and_then(Weak::upgrade))
        else {
            return;
        };
        for e in tpl.elements() {
            fetch.route(e.topic(), e.partition());
        }
    }
}

/// (a2): reads as exposure's poll thread does (every partition routed to a
/// fetch queue, read up to `BATCH_RECORDS` records a call) until `expected` records
/// arrived, touching each payload.
fn consume_batched(kafka: &KafkaConfig, expected: usize, cpu: &CpuMeter) -> anyhow::Result<Pass> {
    let mut consumed = Consumed::new();
    let consumer: Arc<BaseConsumer<Routing>> = Arc::new(
        consumer_config(kafka)
            .create_with_context(Routing::default())
            .context("creating the consumer")?,
    );
    let fetch = Arc::new(FetchQueue::new(&consumer).context("creating the fetch queue")?);
    let _ = consumer.context().fetch.set(Arc::downgrade(&fetch));
    let topics: Vec<&str> = kafka.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    let mut batch = Fetched::default();
    while consumed.received < expected {
        // Events (the group join, assignments) are served here.
        let _ = consumer.poll(Duration::ZERO);
        fetch.poll(Duration::from_millis(5), BATCH, &mut batch);
        let before = consumed.received;
        for r in batch.iter().filter(|r| r.error().is_none()) {
            consumed.record(r.payload());
        }
        if consumed.received == before {
            consumed.empty("consume-only (batched)", expected)?;
        }
    }
    Ok(consumed.pass(cpu))
}

/// What (b) left in its engine, for the report.
struct EngineCounts {
    flows_applied: u64,
    rejected: u64,
    open: usize,
    pending: usize,
}

/// (b): exposure's source feeding a fresh engine until it counted
/// `expected` records; with `warm`, the engine applies those records first
/// (not measured), so the pass runs on a state that holds every endpoint.
fn exposure_pass(
    config: &Config,
    workers: usize,
    expected: usize,
    warm: Option<&Records>,
    tansu: &Tansu,
) -> anyhow::Result<(Pass, EngineCounts)> {
    let engine = Arc::new(Engine::from_config(config, Arc::new(Catalog::builtin())));
    if let Some(records) = warm {
        let mut scratch = Vec::new();
        let now = wall_now_ms();
        for record in records.iter() {
            let _ = engine.ingest(config.kafka.format, record, None, now, &mut scratch);
        }
    }
    let warmed = engine.stats().records();
    let cpu = &CpuMeter::start(tansu);
    let metrics = Arc::new(Metrics::new(engine.clone()));
    let health = Arc::new(Health::default());
    health.set_restored(true);
    let stop = CancellationToken::new();
    let started = Instant::now();
    let source = start_source(&config.kafka, workers, &engine, metrics, health, &stop)?;
    let watched = watch_records(&engine, warmed, warmed + expected as u64, started, cpu);
    // Stopping also encodes the state once (the final checkpoint cut): not timed.
    stop.cancel();
    let joined = source
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the poll thread panicked")));
    let pass = watched?;
    joined?;
    let stats = engine.stats().snapshot();
    let counts = EngineCounts {
        flows_applied: stats.applied,
        rejected: stats.rejected.values().sum(),
        open: engine.open_endpoints(),
        pending: engine.pending_endpoints(),
    };
    Ok((pass, counts))
}

/// Reads the engine's record count, which starts at `base`, until it
/// reaches `expected`.
fn watch_records(
    engine: &Engine,
    base: u64,
    expected: u64,
    started: Instant,
    cpu: &CpuMeter,
) -> anyhow::Result<Pass> {
    let mut first: Option<Instant> = None;
    let mut last_seen = (base, Instant::now());
    let mut longest_pause = Duration::ZERO;
    loop {
        let records = engine.stats().records();
        let now = Instant::now();
        if records > base {
            first.get_or_insert(now);
        }
        if records != last_seen.0 && last_seen.0 > base {
            longest_pause = longest_pause.max(now - last_seen.1);
        }
        if records >= expected {
            return Ok(Pass {
                total: now - started,
                steady: now - first.unwrap_or(started),
                longest_pause,
                cpu: cpu.read(),
            });
        }
        if records != last_seen.0 {
            last_seen = (records, now);
        } else if now - last_seen.1 > STALL {
            bail!("exposure: {records} of {expected} records, then nothing for {STALL:?}");
        }
        std::thread::sleep(WATCH_INTERVAL);
    }
}

/// The format `--input` is read in.
fn input_format(args: &Args) -> Format {
    args.format.unwrap_or(Format::Auto)
}

/// (b)'s config: the service's for the generated world or, with `--input`,
/// for the file's own assets and format, its flow times on the event clock.
fn exposure_config(kafka: KafkaConfig, world: &World, args: &Args) -> Config {
    let mut config = service_config(kafka, world);
    if args.input.is_some() {
        config.kafka.format = input_format(args);
        config.network.assets = args.assets.clone();
        config.window.clock = Clock::Event;
    }
    config
}

/// One line of the CPU table.
fn cpu_row(round: usize, name: &str, pass: &Pass, records: usize) -> String {
    let mut by_thread: Vec<(&String, &f64)> =
        pass.cpu.iter().filter(|(_, s)| **s >= 0.005).collect();
    by_thread.sort_by(|a, b| b.1.total_cmp(a.1));
    let threads = by_thread
        .iter()
        .map(|(name, s)| format!("{name} {s:.2}"))
        .collect::<Vec<_>>()
        .join(", ");
    let total: f64 = pass.cpu.values().sum();
    let wall = pass.total.as_secs_f64();
    format!(
        "| {round} | {name} | {wall:.2} s | {:.2} s | {:.0} ms | {threads} | {total:.2} s | {:.2} | {:.2} |",
        pass.join_time().as_secs_f64(),
        pass.longest_pause.as_secs_f64() * 1e3,
        total / wall,
        total * 1e6 / records as f64
    )
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

pub fn run(
    args: &Args,
    workers: usize,
    runtime: &tokio::runtime::Runtime,
    tansu: &Tansu,
    world: &World,
) -> anyhow::Result<()> {
    println!("## End to end from the broker vs consume-only (goal: (b)/(a) >= 80 %)");
    let generating = Instant::now();
    let records = match &args.input {
        Some(path) => Records::read(path, input_format(args), args.records)?,
        None => Records::generate(world, args.records, wall_now_ms(), args.pipeline_only),
    };
    let generated_in = generating.elapsed();
    let n = records.len();
    let topic = rand_name("bench-flows");
    create_topic(runtime, &tansu.bootstrap, &topic, args.partitions)?;
    let (producer_settings, produced_in) =
        produce_all(&tansu.bootstrap, &topic, args.partitions, &records)?;
    match &args.input {
        Some(path) => println!(
            "records       {n} records of {} (format {}), {:.1} bytes on average; assets {}; flow times on the event clock; read in {:.1} s",
            path.display(),
            input_format(args).as_str(),
            records.bytes.len() as f64 / n as f64,
            args.assets
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            generated_in.as_secs_f64(),
        ),
        None => println!(
            "records       {n} goflow2-pb records, one flow each, {:.1} bytes on average; world of {} open endpoints (seed 1), flow times in the last hour; generated in {:.1} s",
            records.bytes.len() as f64 / n as f64,
            args.endpoints,
            generated_in.as_secs_f64(),
        ),
    }
    println!(
        "topic         {} partitions, records round-robin; produced in {:.1} s ({:.0} records/s) with {producer_settings}",
        args.partitions,
        produced_in.as_secs_f64(),
        n as f64 / produced_in.as_secs_f64()
    );
    if args.pipeline_only {
        println!(
            "pipeline only every flow moved to {} -> {}, neither an asset: exposure decodes and classifies each record and keeps no state",
            std::net::Ipv4Addr::from(OUTSIDE_SRC),
            std::net::Ipv4Addr::from(OUTSIDE_DST)
        );
    }
    println!("(a)           consume only, as rust-rdkafka hands records out: BaseConsumer::poll, one record a call");
    println!("(a2)          consume only, as exposure reads: every partition routed to a fetch queue, up to {BATCH} records a call");
    println!(
        "(b)           exposure's source into {} engine, {workers} ingest threads",
        if args.warm {
            "a warmed (the same records applied first, not measured)"
        } else {
            "a fresh"
        }
    );
    println!("rates         N / (last record - first record); 'join' is the time before the first record (group join, first fetch)");
    println!("(b) stops when Engine::stats().records reaches N, read every {WATCH_INTERVAL:?}");
    println!("pauses        after the first record: (a), (a2) the longest wait on an empty local queue, (b) the longest time the engine's record count stood still");
    println!("the order of the three passes turns every round");
    println!();
    println!("| round | order | (a) rec/s | (a2) rec/s | (b) rec/s | (b)/(a) | (b)/(a2) | (b)/faster | load |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut rates = [Vec::new(), Vec::new(), Vec::new()];
    let mut ratios: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let mut counts = None;
    let mut cpu_rows = Vec::new();
    let mut longest_pause = Duration::ZERO;
    const NAMES: [&str; 3] = ["(a)", "(a2)", "(b)"];
    for round in 1..=args.rounds {
        let order: Vec<usize> = (0..3).map(|k| (k + round - 1) % 3).collect();
        let mut passes: [Option<Pass>; 3] = [None, None, None];
        for &which in &order {
            let group = rand_name(["bench-a", "bench-a2", "bench-b"][which]);
            let kafka = kafka_config(&tansu.bootstrap, &topic, &group, args);
            passes[which] = Some(match which {
                0 => consume_only(&kafka, n, &CpuMeter::start(tansu))?,
                1 => consume_batched(&kafka, n, &CpuMeter::start(tansu))?,
                _ => {
                    let config = exposure_config(kafka, world, args);
                    let warm = args.warm.then_some(&records);
                    let (pass, c) = exposure_pass(&config, workers, n, warm, tansu)?;
                    counts = Some(c);
                    pass
                }
            });
        }
        let passes = passes.map(|p| p.expect("every pass ran"));
        let rate = passes.each_ref().map(|p| p.rate(n));
        let faster = rate[0].max(rate[1]);
        let round_ratios = [rate[2] / rate[0], rate[2] / rate[1], rate[2] / faster];
        println!(
            "| {round} | {} | {:.0} | {:.0} | {:.0} | {:.1} % | {:.1} % | {:.1} % | {} |",
            order
                .iter()
                .map(|&k| NAMES[k])
                .collect::<Vec<_>>()
                .join(", "),
            rate[0],
            rate[1],
            rate[2],
            100.0 * round_ratios[0],
            100.0 * round_ratios[1],
            100.0 * round_ratios[2],
            load_average(),
        );
        for (k, pass) in passes.iter().enumerate() {
            longest_pause = longest_pause.max(pass.longest_pause);
            cpu_rows.push(cpu_row(round, NAMES[k], pass, n));
            rates[k].push(rate[k]);
            ratios[k].push(round_ratios[k]);
        }
    }
    println!(
        "| median | | {:.0} | {:.0} | {:.0} | {:.1} % | {:.1} % | **{:.1} %** | |",
        median(&rates[0]),
        median(&rates[1]),
        median(&rates[2]),
        100.0 * median(&ratios[0]),
        100.0 * median(&ratios[1]),
        100.0 * median(&ratios[2]),
    );
    println!();
    println!("(b)/faster is (b) against the faster consume-only loop of its round: the figure held to the goal");
    println!();
    println!("CPU over each whole pass (join included), by thread: bench_kafka is the main thread ((a)'s poll loop, (b)'s watcher), kafka-poll and ingest are exposure's source, rdk:* are librdkafka's, tansu is the broker process");
    println!();
    println!(
        "| round | pass | wall | join | longest pause | CPU s by thread | CPU total | cores busy | CPU µs per record |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in cpu_rows {
        println!("{row}");
    }
    if let Some(c) = counts {
        println!();
        println!(
            "engine after the last (b): {} flows applied, {} rejected, {} open endpoints, {} pending",
            c.flows_applied, c.rejected, c.open, c.pending
        );
    }
    Ok(())
}
