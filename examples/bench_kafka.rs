//! The Kafka path against a real broker process (tansu 0.6.0, in memory),
//! for two rows of docs/benchmarks.md#goals-and-results.
//!
//! **End to end from the broker vs a consume-only loop** (goal: >= 80 %).
//! N goflow2-pb records (one generated flow each, `exposure::generate`,
//! seed 1) are produced round-robin into a fresh topic of P partitions.
//! Then, in the same run and from the same topic, each pass with its own
//! fresh consumer group and the client settings of
//! `exposure::source::kafka::consumer_config` with the service's default
//! librdkafka properties (plus `fetch.wait.max.ms=10`, docs/testing.md, tansu defect 5):
//!
//! - (a) consume only: a `BaseConsumer` polls until it has received all N
//!   records, touching each payload (its length and first byte);
//! - (b) exposure: the real Kafka source (`source::kafka::start`, as
//!   `exposure run` starts it, without checkpoint files) feeding a fresh
//!   `Engine`, until the engine has counted all N records.
//!
//! Rates are N over the time from the first record seen to the last, so the
//! group join is left out (it is printed apart). (a) and (b) alternate for
//! `--rounds` rounds, the order swapped every round; each round and the
//! medians are printed, since the machine's cores are shared. Beside the
//! rates: the longest pause of each pass (a pause near 1 s is librdkafka's
//! `fetch.queue.backoff.ms` at its own default of 1000 ms; the service sets
//! 10, and `--set fetch.queue.backoff.ms=1000` shows the difference), and
//! the CPU time of every thread (this
//! process's, from `/proc/self/task/*/schedstat`, and the broker's), to
//! show where the time goes.
//!
//! **Freshness, produced to visible in the API** (goal: p99 <= 1 s). The
//! source and the HTTP API (`api::router` on 127.0.0.1:0, `auth = "none"`,
//! no rate limit) run over an engine that already holds a world of open
//! endpoints. One record at a time (request and reply of a new IPv6
//! endpoint in one goflow2-pb record) is produced at a steady pace; the
//! time from the produce call until `DescribeInternetOpenDetail` for that
//! address and port answers one row, over HTTP, goes into an HDR histogram.
//! The HTTP round trips of those polls are reported too: they bound the
//! measurement's resolution.
//!
//! ```text
//! cargo build --release --example bench_kafka
//! target/release/examples/bench_kafka            # 2 M records, 3 rounds, 500 samples
//! target/release/examples/bench_kafka --records 200000 --rounds 1 --samples 100
//! target/release/examples/bench_kafka --set fetch.queue.backoff.ms=10
//! target/release/examples/bench_kafka --pipeline-only --samples 0
//! ```
//!
//! `--pipeline-only` moves every flow between two addresses that are not
//! assets, so exposure decodes and classifies each record and keeps no
//! state: the ratio is then the ceiling of the Kafka path itself (poll
//! thread, hand-over to the workers), whatever the engine costs.
//!
//! The bench starts and stops its own tansu (`~/.cargo/bin/tansu` or on
//! PATH) and listens on 127.0.0.1 only.

#[path = "bench_kafka/freshness.rs"]
mod freshness;
#[path = "bench_kafka/support.rs"]
mod support;
#[path = "bench_kafka/throughput.rs"]
mod throughput;

use std::time::Duration;

use clap::Parser;
use exposure::config::{Config, KafkaConfig, NetworkConfig, OffsetReset};
use exposure::flow::Format;
use exposure::generate::bench::load_average;
use exposure::generate::World;
use exposure::source::kafka::consumer_config;
pub(crate) use support::send;
use support::Tansu;

const HOUR_MS: i64 = 3_600_000;
/// A pass or sample that sees nothing for this long has failed.
const STALL: Duration = Duration::from_secs(60);

#[derive(Parser, Debug)]
#[command(
    about = "exposure's Kafka source against tansu: throughput vs consume-only, and freshness"
)]
struct Args {
    /// Records produced for the throughput passes.
    #[arg(long, default_value_t = 2_000_000)]
    records: usize,
    /// Partitions of the topics.
    #[arg(long, default_value_t = 2)]
    partitions: i32,
    /// Rounds of (a) consume-only and (b) exposure.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Ingest threads of exposure's source (default: one per core, as `exposure run`).
    #[arg(long)]
    workers: Option<usize>,
    /// Open endpoints of the generated world (throughput records; freshness state).
    #[arg(long, default_value_t = 10_000)]
    endpoints: usize,
    /// Freshness samples.
    #[arg(long, default_value_t = 500)]
    samples: usize,
    /// Freshness samples produced per second, at most.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// librdkafka's `fetch.wait.max.ms` for every consumer (tansu: about 10, docs/testing.md).
    #[arg(long, default_value_t = 10)]
    fetch_wait_max_ms: u32,
    /// An extra librdkafka property for every consumer, as `kafka.librdkafka`
    /// would set it (repeatable), e.g. `--set fetch.queue.backoff.ms=10`.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_setting)]
    settings: Vec<(String, String)>,
    /// Throughput records between two addresses outside the assets: exposure
    /// decodes and classifies each, then ignores it, holding no state. The
    /// ratio is then the Kafka path's own ceiling.
    #[arg(long)]
    pipeline_only: bool,
    /// Before (b), apply the same records to its engine directly (not
    /// measured): the pass then runs on a state that already holds every
    /// endpoint, as in a service that has been running, instead of a
    /// fresh one that creates an endpoint for a fifth of the records.
    #[arg(long)]
    warm: bool,
    /// Produce the records of this file for the throughput passes instead
    /// of generated ones (at most --records of them): NDJSON from goflow2
    /// or pmacct, one record a line, or a goflow2 `-format=bin` stream.
    /// Needs --assets. Their flow times are read on the event clock, as
    /// `exposure analyze` reads a file, so a capture from last month counts
    /// as it did then.
    #[arg(long, value_name = "FILE")]
    input: Option<std::path::PathBuf>,
    /// The format of --input: goflow2-pb, goflow2-json, pmacct-json or auto
    /// (detected per record, the default).
    #[arg(long)]
    format: Option<Format>,
    /// The asset ranges of --input's network, comma-separated, as `exposure
    /// analyze --assets` takes them.
    #[arg(long, value_delimiter = ',')]
    assets: Vec<ipnet::IpNet>,
}

fn parse_setting(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))?;
    Ok((key.trim().to_owned(), value.trim().to_owned()))
}

fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    anyhow::ensure!(
        args.records > 0 && args.rounds > 0,
        "--records and --rounds must be above 0"
    );
    anyhow::ensure!(args.partitions > 0, "--partitions must be above 0");
    anyhow::ensure!(args.rate > 0.0, "--rate must be above 0");
    if args.input.is_some() {
        anyhow::ensure!(
            !args.assets.is_empty(),
            "--input needs --assets: the address ranges that are the network's own"
        );
        anyhow::ensure!(
            !args.pipeline_only,
            "--pipeline-only moves generated flows outside the assets; it does not apply to --input"
        );
    } else {
        anyhow::ensure!(
            args.format.is_none() && args.assets.is_empty(),
            "--format and --assets describe an --input file; the generated records have their own"
        );
    }
    let workers = args.workers.unwrap_or_else(exposure::cores).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let tansu = Tansu::launch()?;

    println!("# exposure's Kafka source against tansu (goals: docs/benchmarks.md)");
    println!("broker        {}", tansu.command);
    println!(
        "client        exposure::source::kafka::consumer_config, fresh group.id per pass: {}",
        client_settings(&kafka_config(&tansu.bootstrap, "TOPIC", "GROUP", &args))
    );
    println!(
        "machine       {} cores, load average at start {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average()
    );
    println!("workers       {workers} ingest threads in exposure's source");
    println!();

    let world = World::new(1, args.endpoints);
    throughput::run(&args, workers, &runtime, &tansu, &world)?;
    println!();
    freshness::run(&args, workers, &runtime, &tansu, &world)?;
    println!();
    println!("load average at end {}", load_average());
    Ok(())
}

/// The `[kafka]` section of a service consuming `topic` as `group`: the
/// service's default librdkafka properties, then the bench's.
fn kafka_config(bootstrap: &str, topic: &str, group: &str, args: &Args) -> KafkaConfig {
    let mut librdkafka = KafkaConfig::default().librdkafka;
    librdkafka.insert(
        "fetch.wait.max.ms".to_owned(),
        args.fetch_wait_max_ms.to_string(),
    );
    librdkafka.extend(args.settings.iter().cloned());
    KafkaConfig {
        brokers: bootstrap.to_owned(),
        topics: vec![topic.to_owned()],
        group_id: group.to_owned(),
        format: Format::Goflow2Pb,
        auto_offset_reset: OffsetReset::Earliest,
        dead_letter_topic: String::new(),
        librdkafka,
    }
}

/// The service's config for `kafka`, with the world's asset ranges.
fn service_config(kafka: KafkaConfig, world: &World) -> Config {
    Config {
        kafka,
        network: NetworkConfig {
            assets: world.assets(),
            internal: Vec::new(),
        },
        ..Config::default()
    }
}

/// The librdkafka properties of `config`, without the servers and group.
fn client_settings(config: &KafkaConfig) -> String {
    consumer_config(config)
        .config_map()
        .into_iter()
        .filter(|(k, _)| !matches!(*k, "bootstrap.servers" | "group.id"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}
