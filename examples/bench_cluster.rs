//! Cluster mode (`docs/operations.md#scale-out`) against one broker
//! process, for the cluster rows of docs/benchmarks.md#goals-and-results.
//!
//! **Records/s of 1 and N instances** (goal: N instances on N cores at
//! least 0.85 x N times one). For each instance count, a fresh
//! `exposure-mock-broker` (librdkafka's mock cluster in its own process,
//! the broker of the cluster tests) is started with the group's internal
//! topics of `--partitions` partitions and the flow topic (as many
//! partitions again, or more, so that each holds at most 2 MiB: the mock
//! cluster keeps only a partition's newest 5 MiB, and the bench fails if
//! any partition lost records), and `--records`
//! goflow2-pb records (one generated flow each, `exposure::generate`,
//! seed 1) are produced round-robin before any instance starts. Then the
//! instances start, each `exposure run` pinned to a core of its own
//! (`taskset -c i`), with the shipped defaults (`cluster.commit_interval`
//! 500 ms). Every instance's `/metrics` is read every 250 ms; the rate is
//! the flows counted (`exposure_cluster_flows_counted_total`, summed over
//! the instances) from 10 % of the total, or from when every instance has
//! counted a flow if later, to 90 %, over the time between (each moment
//! interpolated between the reads around it), so the group joins and the
//! restore of empty partitions are left out (the time to the first
//! counted flow is printed apart).
//!
//! **Freshness in cluster mode** (goal: p99 <= 2 s). With the N instances
//! of the last pass still running, one record at a time (request and reply
//! of a new IPv6 endpoint) is produced; the time from the produce call to
//! `DescribeInternetOpenDetail` on the first instance listing it (route,
//! count, changelog flush, replica) goes into an HDR histogram.
//!
//! **Restore of a moved partition** (`--restore-endpoints`, default 100 k).
//! One routing partition (`cluster.partitions = 1`): instance A counts
//! flows until every endpoint of a world of that size is open; instance B
//! starts and reads the changelog; A is stopped (SIGTERM) and B takes the
//! partition over, restoring it as soon as it is given (no new record is
//! produced). Printed: B's `exposure_cluster_restore_duration_seconds`,
//! the time from the SIGTERM to B holding the partition (the mock cluster
//! holds the rebalance after A's leave open for `session.timeout.ms` less
//! one second: `--session-timeout-ms`), and B's log line of the restore
//! (changelog records read, endpoints).
//!
//! ```text
//! cargo build --release --bins --example bench_cluster
//! target/release/examples/bench_cluster --partitions 64   # 1 and 2 instances, 2 M records; freshness; restore at 100 k
//! target/release/examples/bench_cluster --records 200000 --samples 50 --restore-endpoints 10000  # a short run
//! ```
//!
//! The throughput passes run against the mock cluster (`--broker`), the
//! restore pass against tansu (`--restore-broker`): a changelog partition
//! of 100 k endpoints is larger than the 5 MiB the mock cluster keeps.
//!
//! The broker and the instances are this build's binaries beside the
//! example (`target/release/exposure`, `exposure-mock-broker`; tansu as
//! the tests find it); everything
//! listens on 127.0.0.1 and stops with the bench.

#[path = "bench_kafka/support.rs"]
#[allow(dead_code)] // the tansu parts are bench_kafka's
mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use exposure::flow::encode_goflow2_pb;
use exposure::generate::bench::{load_average, percentiles_ms};
use exposure::generate::{Generator, World};
use exposure::state::wall_now_ms;
use hdrhistogram::Histogram;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use support::{fresh_ip, fresh_record, http_get, send, visible};

const HOUR_MS: i64 = 3_600_000;
const GROUP: &str = "bench";
const FLOWS: &str = "flows";
/// How often the instances' /metrics are read during a pass. Each read
/// costs the instance (a scrape renders every series: at 20 ms it took
/// about a fifth of an instance's core), so the reads are sparse and the
/// 10 % and 90 % moments interpolated between them.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);
/// A pass that counts nothing more for this long has failed.
const STALL: Duration = Duration::from_secs(120);

#[derive(Parser, Debug)]
#[command(
    about = "exposure in cluster mode against one broker: records/s of 1 and N instances, freshness, restore"
)]
struct Args {
    /// Records produced for each throughput pass.
    #[arg(long, default_value_t = 2_000_000)]
    records: usize,
    /// Partitions of the flow topic and the internal topics.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Instance counts to measure, comma-separated (the first is the base).
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 2])]
    instances: Vec<usize>,
    /// Open endpoints of the generated world of the throughput passes.
    #[arg(long, default_value_t = 10_000)]
    endpoints: usize,
    /// Freshness samples (0: none).
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Endpoints of the restore pass (0: no restore pass).
    #[arg(long, default_value_t = 100_000)]
    restore_endpoints: usize,
    /// Do not pin the instances to cores.
    #[arg(long)]
    no_pin: bool,
    /// The instances' `session.timeout.ms` (default: librdkafka's, 45 s).
    /// The mock cluster holds a rebalance after a member leaves open for
    /// this less one second, so it bounds the restore pass's move.
    #[arg(long)]
    session_timeout_ms: Option<u32>,
    /// The broker process of the throughput passes.
    #[arg(long, value_enum, default_value_t = BrokerKind::Mock)]
    broker: BrokerKind,
    /// The broker process of the restore pass (the mock cluster keeps too
    /// little of a partition for a changelog of 100 k endpoints).
    #[arg(long, value_enum, default_value_t = BrokerKind::Tansu)]
    restore_broker: BrokerKind,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.records > 0, "--records must be above 0");
    anyhow::ensure!(args.partitions > 0, "--partitions must be above 0");
    anyhow::ensure!(
        !args.instances.is_empty() && !args.instances.contains(&0),
        "--instances must list instance counts above 0"
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "# exposure in cluster mode against {} (goals: docs/benchmarks.md)",
        match args.broker {
            BrokerKind::Mock => "exposure-mock-broker",
            BrokerKind::Tansu => "tansu",
        }
    );
    println!(
        "machine       {cores} cores, load average at start {}",
        load_average()
    );
    let world = World::new(1, args.endpoints);
    let records = generate(&world, args.records);
    println!(
        "workload      {} goflow2-pb records, {} endpoints, {} partitions of the internal topics, the flow topic's {}; instances {}",
        args.records,
        args.endpoints,
        args.partitions,
        flow_partitions(args.broker, &records, args.partitions),
        if args.no_pin {
            "not pinned".to_owned()
        } else {
            "pinned with taskset -c <i mod cores>".to_owned()
        }
    );
    println!();
    let mut rates = Vec::new();
    let mut last = None;
    for (pass, &count) in args.instances.iter().enumerate() {
        let flow_partitions = flow_partitions(args.broker, &records, args.partitions);
        let broker = Broker::start(args.broker, flow_partitions, args.partitions)?;
        produce(&broker.bootstrap, &records, flow_partitions)?;
        broker.check_nothing_deleted(FLOWS)?;
        let instances = (0..count)
            .map(|i| {
                Instance::start(
                    &broker,
                    &world,
                    args.partitions,
                    pin(&args, i, cores),
                    args.session_timeout_ms,
                )
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let counted = watch_counting(&broker, &instances, records.len())?;
        let rate = counted.rate();
        rates.push((count, rate));
        let rated = match (rate, rates[0].1) {
            (Some(rate), Some(base)) => format!(
                "{rate:.0} flows/s counted up to 90 %; {:.2} x the first pass, {:.2} x per instance",
                rate / base,
                rate / base / (count as f64 / args.instances[0] as f64),
            ),
            _ => "too short to rate (produce more --records)".to_owned(),
        };
        println!(
            "{count} instance(s): {rated} ({} flows, first counted after {:.2} s, by every instance after {:.2} s, all after {:.2} s)",
            counted.total,
            counted.first.as_secs_f64(),
            counted.all_counting.as_secs_f64(),
            counted.last.as_secs_f64(),
        );
        if pass + 1 == args.instances.len() {
            last = Some((broker, instances));
        }
    }
    if let Some((broker, instances)) = &last {
        if args.samples > 0 {
            println!();
            freshness(&broker.bootstrap, instances, args.samples)?;
        }
    }
    drop(last);
    if args.restore_endpoints > 0 {
        println!();
        restore(args.restore_endpoints, &args, cores)?;
    }
    println!();
    println!("load average at end {}", load_average());
    Ok(())
}

/// The mock cluster keeps a partition's newest 5 MiB
/// (docs/testing.md#the-mock-cluster): there the flow topic gets enough
/// partitions (at least `partitions`) for each to hold at most 2 MiB of
/// `records`.
fn flow_partitions(kind: BrokerKind, records: &[Vec<u8>], partitions: u32) -> u32 {
    const PER_PARTITION: usize = 2 << 20;
    if kind == BrokerKind::Tansu {
        return partitions;
    }
    let bytes: usize = records.iter().map(Vec::len).sum();
    partitions.max(u32::try_from(bytes.div_ceil(PER_PARTITION)).unwrap_or(u32::MAX))
}

fn pin(args: &Args, i: usize, cores: usize) -> Option<usize> {
    (!args.no_pin).then_some(i % cores)
}

/// `count` generated flows, one goflow2-pb record each.
fn generate(world: &World, count: usize) -> Vec<Vec<u8>> {
    Generator::new(world, 1, wall_now_ms() - HOUR_MS, HOUR_MS)
        .take(count)
        .map(|flow| {
            let mut record = Vec::new();
            encode_goflow2_pb(&flow, &mut record);
            record
        })
        .collect()
}

/// A binary of this build, beside the example.
fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the example is not in target/<profile>/examples")?;
    let path = dir.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: cargo build --release --bins --example bench_cluster",
        path.display()
    );
    Ok(path)
}

/// Which broker process a bench runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum BrokerKind {
    /// `exposure-mock-broker`: librdkafka's mock cluster in a process.
    Mock,
    /// tansu 0.6.0 in memory (docs/testing.md, its defects and settings).
    Tansu,
}

/// The broker process, with the flow topic and the internal topics.
struct Broker {
    process: Process,
    bootstrap: String,
    topics: Vec<(String, u32)>,
}

/// The broker process, held until the bench drops it (the mock broker
/// quits when its stdin closes; tansu is killed when dropped).
enum Process {
    Mock { child: Child, _stdin: ChildStdin },
    Tansu { _tansu: support::Tansu },
}

impl Broker {
    /// A broker with `flow_partitions` partitions of the flow topic and
    /// `partitions` of each internal topic.
    fn start(kind: BrokerKind, flow_partitions: u32, partitions: u32) -> anyhow::Result<Broker> {
        let topics = vec![
            (FLOWS.to_owned(), flow_partitions),
            (format!("{GROUP}-by-asset"), partitions),
            (format!("{GROUP}-changelog"), partitions),
        ];
        let (process, bootstrap) = match kind {
            BrokerKind::Mock => {
                let mut command = Command::new(binary("exposure-mock-broker")?);
                for (topic, partitions) in &topics {
                    command.args(["--topic", &format!("{topic}:{partitions}")]);
                }
                let mut child = command
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("starting exposure-mock-broker")?;
                let stdin = child.stdin.take().context("broker stdin")?;
                let mut line = String::new();
                BufReader::new(child.stdout.take().context("broker stdout")?)
                    .read_line(&mut line)?;
                let bootstrap = line
                    .trim()
                    .strip_prefix("bootstrap=")
                    .with_context(|| format!("the broker printed {line:?}"))?
                    .to_owned();
                (
                    Process::Mock {
                        child,
                        _stdin: stdin,
                    },
                    bootstrap,
                )
            }
            BrokerKind::Tansu => {
                let tansu = support::Tansu::launch()?;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                for (topic, partitions) in &topics {
                    support::create_topic(&runtime, &tansu.bootstrap, topic, *partitions as i32)?;
                }
                let bootstrap = tansu.bootstrap.clone();
                (Process::Tansu { _tansu: tansu }, bootstrap)
            }
        };
        Ok(Broker {
            process,
            bootstrap,
            topics,
        })
    }

    /// The librdkafka settings an instance needs against this broker:
    /// tansu holds every fetch for the full `fetch.wait.max.ms`
    /// (docs/testing.md, defect 5), so 10 ms.
    fn instance_settings(&self) -> &'static [(&'static str, &'static str)] {
        match self.process {
            Process::Mock { .. } => &[],
            Process::Tansu { .. } => &[("fetch.wait.max.ms", "10")],
        }
    }

    /// Fails if the broker deleted records of `topic`: the mock cluster
    /// keeps only a partition's newest 5 MiB of batches
    /// (docs/testing.md#the-mock-cluster), deleting older ones as new ones
    /// arrive whether or not they were read. Checked for the flow topic
    /// once it is produced; for the routing topic when counting stalls
    /// (deleted there before being counted, flows are missing).
    fn check_nothing_deleted(&self, topic: &str) -> anyhow::Result<()> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()?;
        let partitions = self
            .topics
            .iter()
            .find(|(name, _)| name == topic)
            .map_or(0, |(_, partitions)| *partitions);
        for partition in 0..partitions as i32 {
            let (low, high) =
                consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
            anyhow::ensure!(
                low == 0,
                "the mock cluster deleted offsets 0..{low} of {topic} partition {partition} \
                 (of {high}): it keeps a partition's newest 5 MiB; use more partitions or fewer records"
            );
        }
        Ok(())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Process::Mock { child, .. } = &mut self.process {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Produces every record, round-robin over the partitions, and waits for
/// every acknowledgement.
fn produce(bootstrap: &str, records: &[Vec<u8>], partitions: u32) -> anyhow::Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()?;
    for (i, payload) in records.iter().enumerate() {
        let partition = (i % partitions as usize) as i32;
        send(
            &producer,
            BaseRecord::to(FLOWS).partition(partition).payload(payload),
        )?;
    }
    producer
        .flush(Duration::from_secs(300))
        .context("flushing the producer")
}

/// One `exposure run` in cluster mode.
struct Instance {
    child: Child,
    api: SocketAddr,
    dir: tempfile::TempDir,
}

impl Instance {
    fn start(
        broker: &Broker,
        world: &World,
        partitions: u32,
        core: Option<usize>,
        session_timeout_ms: Option<u32>,
    ) -> anyhow::Result<Instance> {
        let bootstrap = &broker.bootstrap;
        let mut settings: Vec<String> = broker
            .instance_settings()
            .iter()
            .map(|(k, v)| format!("\"{k}\" = \"{v}\""))
            .collect();
        if let Some(ms) = session_timeout_ms {
            settings.push(format!("\"session.timeout.ms\" = \"{ms}\""));
        }
        let dir = tempfile::tempdir()?;
        let api = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let assets: Vec<String> = world.assets().iter().map(|a| format!("\"{a}\"")).collect();
        let config = format!(
            r#"
[kafka]
brokers = "{bootstrap}"
topics = ["{FLOWS}"]
group_id = "{GROUP}"
format = "goflow2-pb"
auto_offset_reset = "earliest"
{librdkafka}
[network]
assets = [{assets}]

[state]
dir = "{state}"

[api]
listen = "{api}"
auth = "none"
default_qps = 0

[cluster]
enabled = true
advertise = "http://{api}"
partitions = {partitions}
"#,
            assets = assets.join(", "),
            librdkafka = if settings.is_empty() {
                String::new()
            } else {
                format!("librdkafka = {{ {} }}\n", settings.join(", "))
            },
            state = dir.path().join("state").display(),
        );
        let path = dir.path().join("exposure.toml");
        std::fs::write(&path, config)?;
        let log = std::fs::File::create(dir.path().join("exposure.log"))?;
        let exposure = binary("exposure")?;
        let mut command = match core {
            Some(core) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &core.to_string()]).arg(exposure);
                c
            }
            None => Command::new(exposure),
        };
        let child = command
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting exposure run (taskset is in util-linux)")?;
        Ok(Instance { child, api, dir })
    }

    /// The sum of the samples of `name` (every label set) in /metrics.
    fn metric(&self, name: &str) -> f64 {
        let Ok((200, body)) = http_get(self.api, "/metrics") else {
            return 0.0;
        };
        body.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with([' ', '{']))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("exposure.log")).unwrap_or_default()
    }

    fn sigterm(&mut self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How counting went in a pass: flows counted over time since the start.
struct Counted {
    total: u64,
    timeline: Vec<(Duration, u64)>,
    first: Duration,
    /// When every instance had counted a flow (the group settled).
    all_counting: Duration,
    last: Duration,
}

impl Counted {
    /// Flows per second from 10 % of the total (or from when every
    /// instance counts, if later: a pass is not judged on the seconds one
    /// instance counts alone while the group settles) to 90 %, each moment
    /// interpolated between the two reads around it.
    /// `None` when that window spans fewer than four reads: too short
    /// to rate (produce more `--records`).
    fn rate(&self) -> Option<f64> {
        let from = self.time_at(0.1).max(self.all_counting.as_secs_f64());
        let to = self.time_at(0.9);
        (to - from >= 4.0 * WATCH_INTERVAL.as_secs_f64())
            .then(|| (0.9 * self.total as f64 - self.count_at(from)) / (to - from))
    }

    /// The moment `share` of the total was counted.
    fn time_at(&self, share: f64) -> f64 {
        let target = self.total as f64 * share;
        match self.timeline.iter().position(|&(_, n)| n as f64 >= target) {
            Some(0) => self.timeline[0].0.as_secs_f64(),
            Some(i) => {
                let ((t0, n0), (t1, n1)) = (self.timeline[i - 1], self.timeline[i]);
                let (t0, t1) = (t0.as_secs_f64(), t1.as_secs_f64());
                t0 + (t1 - t0) * (target - n0 as f64) / (n1 - n0) as f64
            }
            None => self.last.as_secs_f64(),
        }
    }

    /// The flows counted at `t` seconds.
    fn count_at(&self, t: f64) -> f64 {
        match self
            .timeline
            .iter()
            .position(|&(at, _)| at.as_secs_f64() >= t)
        {
            Some(0) | None => self.timeline.first().map_or(0.0, |&(_, n)| n as f64),
            Some(i) => {
                let ((t0, n0), (t1, n1)) = (self.timeline[i - 1], self.timeline[i]);
                let (t0, t1) = (t0.as_secs_f64(), t1.as_secs_f64());
                n0 as f64 + (n1 - n0) as f64 * (t - t0) / (t1 - t0).max(1e-9)
            }
        }
    }
}

/// Reads the instances' counters until every record is consumed and every
/// routed flow counted.
fn watch_counting(
    broker: &Broker,
    instances: &[Instance],
    records: usize,
) -> anyhow::Result<Counted> {
    let started = Instant::now();
    let mut timeline = Vec::new();
    let mut first = None;
    let mut all_counting = None;
    let mut progress = (0u64, Instant::now());
    loop {
        let sum = |name: &str| instances.iter().map(|i| i.metric(name)).sum::<f64>() as u64;
        let each: Vec<f64> = instances
            .iter()
            .map(|i| i.metric("exposure_cluster_flows_counted_total"))
            .collect();
        let counted = each.iter().sum::<f64>() as u64;
        let consumed = sum("exposure_records_consumed_total");
        let routed = sum("exposure_flows_applied_total");
        let at = started.elapsed();
        timeline.push((at, counted));
        if counted > 0 && first.is_none() {
            first = Some(at);
        }
        if each.iter().all(|&n| n > 0.0) && all_counting.is_none() {
            all_counting = Some(at);
        }
        if consumed >= records as u64 && routed > 0 && counted >= routed {
            return Ok(Counted {
                total: counted,
                timeline,
                first: first.unwrap_or(at),
                all_counting: all_counting.unwrap_or(at),
                last: at,
            });
        }
        if counted != progress.0 {
            progress = (counted, Instant::now());
        } else if progress.1.elapsed() > STALL {
            broker
                .check_nothing_deleted(&format!("{GROUP}-by-asset"))
                .with_context(|| format!("counting stalled at {counted} of {routed} routed"))?;
            bail!(
                "counting stalled at {counted} of {routed} routed ({consumed} of {records} consumed); first instance's log:\n{}",
                instances[0].log()
            );
        }
        std::thread::sleep(WATCH_INTERVAL);
    }
}

/// Produced-to-visible times of `samples` new endpoints, one at a time.
fn freshness(bootstrap: &str, instances: &[Instance], samples: usize) -> anyhow::Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "0")
        .create()?;
    let api = instances[0].api;
    let mut hist = Histogram::<u64>::new(3)?;
    for i in 0..samples {
        let server: Ipv6Addr = fresh_ip(i);
        let record = fresh_record(server);
        anyhow::ensure!(
            visible(api, server)? == Some(false),
            "sample {i}: {server} is listed (or refused) before it is produced"
        );
        let produced = Instant::now();
        send(&producer, BaseRecord::to(FLOWS).payload(&record[..]))?;
        producer.poll(Duration::ZERO);
        loop {
            if visible(api, server)? == Some(true) {
                break;
            }
            if produced.elapsed() > Duration::from_secs(30) {
                bail!(
                    "sample {i} not visible within 30 s:\n{}",
                    instances[0].log()
                );
            }
            producer.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_millis(2));
        }
        hist.record(
            u64::try_from(produced.elapsed().as_micros())
                .unwrap_or(u64::MAX)
                .max(1),
        )?;
        std::thread::sleep(Duration::from_millis(50));
    }
    let [p50, p90, p99, max] = percentiles_ms(&hist);
    println!(
        "freshness, {} instance(s), {samples} samples, produced to DescribeInternetOpenDetail on the first: p50 {p50:.1} ms, p90 {p90:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
        instances.len()
    );
    Ok(())
}

/// The restore of one partition holding `endpoints` endpoints' history.
fn restore(endpoints: usize, args: &Args, cores: usize) -> anyhow::Result<()> {
    let world = World::new(1, endpoints);
    let mut generator = Generator::new(&world, 1, wall_now_ms() - HOUR_MS, HOUR_MS);
    let mut records = Vec::new();
    while !generator.covered_all_servers() || records.len() < endpoints {
        let flow = generator.next().context("the generator ended")?;
        let mut record = Vec::new();
        encode_goflow2_pb(&flow, &mut record);
        records.push(record);
    }
    let flow_partitions = flow_partitions(args.restore_broker, &records, 1);
    let broker = Broker::start(args.restore_broker, flow_partitions, 1)?;
    produce(&broker.bootstrap, &records, flow_partitions)?;
    broker.check_nothing_deleted(FLOWS)?;
    let mut a = Instance::start(
        &broker,
        &world,
        1,
        pin(args, 0, cores),
        args.session_timeout_ms,
    )?;
    let counted = watch_counting(&broker, std::slice::from_ref(&a), records.len())?;
    let open = wait_for(&a, "exposure_open_endpoints", |open| {
        open >= endpoints as f64
    })?;
    let b = Instance::start(
        &broker,
        &world,
        1,
        pin(args, 1, cores),
        args.session_timeout_ms,
    )?;
    wait_for(&b, "exposure_open_endpoints", |n| n >= open)?;
    a.sigterm()?;
    let moved = Instant::now();
    // The partition is restored as soon as it is given: no record needed.
    wait_for(&b, "exposure_cluster_partitions_held", |held| held >= 1.0)?;
    let held = moved.elapsed();
    let took = b.metric("exposure_cluster_restore_duration_seconds");
    let line = b
        .log()
        .lines()
        .rfind(|l| l.contains("partition taken over from the changelog"))
        .unwrap_or("")
        .to_owned();
    println!(
        "restore ({:?}), one partition of {open} open endpoints ({} flows counted from {} records): {:.3} s (exposure_cluster_restore_duration_seconds on the instance taking over; {:.2} s from SIGTERM of the owner to the partition held, session.timeout.ms {})",
        args.restore_broker,
        counted.total,
        records.len(),
        took,
        held.as_secs_f64(),
        args.session_timeout_ms
            .map_or("librdkafka's default".to_owned(), |ms| ms.to_string()),
    );
    println!("  {}", line.trim());
    std::io::stdout().flush()?;
    Ok(())
}

/// Waits until `name` on `instance` satisfies `done`; returns its value.
fn wait_for(instance: &Instance, name: &str, done: impl Fn(f64) -> bool) -> anyhow::Result<f64> {
    let deadline = Instant::now() + STALL;
    loop {
        let value = instance.metric(name);
        if done(value) {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("{name} reads {value} after {STALL:?}:\n{}", instance.log());
        }
        std::thread::sleep(WATCH_INTERVAL);
    }
}
