//! What `bench_kafka` needs around the measurement: a tansu broker process
//! that dies with the bench, topics, exposure's source, a plain HTTP GET,
//! the machine's load.
//!
//! The broker is the test kit's (`tests/support/tansu.rs`, included here):
//! the same binary and command line as the tests (docs/testing.md).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use exposure::config::KafkaConfig;
use exposure::flow::tcp_flags::{ACK, PSH, SYN};
use exposure::flow::{encode_goflow2_pb, Flow, PROTO_TCP};
use exposure::health::Health;
use exposure::metrics::Metrics;
use exposure::source::kafka::{self, Progress};
use exposure::state::{wall_now_ms, Engine};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, ProducerContext};
use tokio_util::sync::CancellationToken;

#[path = "../../tests/support/tansu.rs"]
#[allow(dead_code)] // `Tansu::start` is for the tests
mod tansu;
pub use tansu::Tansu;

/// exposure's Kafka source into `engine`, as `exposure run` starts it but
/// without checkpoints (from the start of the topic for a new group), on
/// its poll thread; join the thread after cancelling `stop`.
pub fn start_source(
    kafka: &KafkaConfig,
    workers: usize,
    engine: &Arc<Engine>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stop: &CancellationToken,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<()>>> {
    let source = kafka::start(
        kafka,
        workers,
        engine.clone(),
        Arc::new(Progress::default()),
        None,
        metrics,
        health,
        stop.clone(),
    )?;
    std::thread::Builder::new()
        .name("kafka-poll".into())
        .spawn(move || source.run())
        .context("starting the poll thread")
}

/// A random name, as rust-rdkafka's tests make them.
pub fn rand_name(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

/// CPU time (ns) the threads of process `pid` ("self" for this one) have
/// run so far, summed by thread name without its number (`ingest-0` and
/// `ingest-1` are `ingest`, `rdk:broker1` is `rdk:broker`).
pub fn thread_cpu_ns(pid: &str) -> BTreeMap<String, u64> {
    let mut by_name = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let name = comm
            .trim()
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .trim_end_matches('-');
        let ns: u64 = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        *by_name.entry(name.to_owned()).or_insert(0) += ns;
    }
    by_name
}

/// Creates `topic` with `partitions` partitions.
pub fn create_topic(
    runtime: &tokio::runtime::Runtime,
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("creating the admin client")?;
    let results = runtime.block_on(admin.create_topics(
        &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
        &AdminOptions::new(),
    ))?;
    for result in results {
        result.map_err(|(topic, code)| anyhow::anyhow!("creating {topic}: {code}"))?;
    }
    Ok(())
}

/// A plain HTTP/1.1 GET over a new connection; returns (status, body).
pub fn http_get(addr: SocketAddr, path_and_query: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    ))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n.min(rest.len())]);
        body = rest.get(n + 2..).unwrap_or("");
    }
    out
}

/// CPU time of this process's threads and of the broker over one pass.
pub struct CpuMeter {
    broker_pid: String,
    before: BTreeMap<String, u64>,
    broker_before: u64,
}

impl CpuMeter {
    pub fn start(tansu: &Tansu) -> CpuMeter {
        let broker_pid = tansu.pid().to_string();
        let broker_before = thread_cpu_ns(&broker_pid).values().sum();
        CpuMeter {
            before: thread_cpu_ns("self"),
            broker_before,
            broker_pid,
        }
    }

    /// Seconds by thread name since [`CpuMeter::start`]; call it while the
    /// pass's threads still run. Threads that ended since are not counted.
    pub fn read(&self) -> BTreeMap<String, f64> {
        let mut cpu: BTreeMap<String, f64> = thread_cpu_ns("self")
            .into_iter()
            .map(|(name, ns)| {
                let before = self.before.get(&name).copied().unwrap_or(0);
                (name, ns.saturating_sub(before) as f64 / 1e9)
            })
            .collect();
        let broker: u64 = thread_cpu_ns(&self.broker_pid).values().sum();
        cpu.insert(
            "tansu".to_owned(),
            broker.saturating_sub(self.broker_before) as f64 / 1e9,
        );
        cpu
    }
}

/// The freshness samples' endpoints: new addresses in the IPv6 asset range
/// that the generated world never uses, each with this port open.
pub const FRESH_NET: u128 = 0x2001_0db8_0100_f00d_0000_0000_0000_0000;
pub const FRESH_PORT: u16 = 443;
/// The Internet client of the freshness samples (the world's IPv6 clients' range).
pub const FRESH_CLIENT: &str = "2001:db8:f000::7";

/// The address of freshness sample `i`.
pub fn fresh_ip(i: usize) -> Ipv6Addr {
    Ipv6Addr::from(FRESH_NET + 1 + i as u128)
}

/// One record with a request to `server` and its reply: a new open endpoint.
pub fn fresh_record(server: Ipv6Addr) -> Vec<u8> {
    let client: IpAddr = FRESH_CLIENT.parse().expect("a valid address");
    let t = wall_now_ms();
    let flow = |src, sport, dst, dport, bytes| Flow {
        src_addr: src,
        dst_addr: dst,
        src_port: sport,
        dst_port: dport,
        proto: PROTO_TCP,
        tcp_flags: SYN | ACK | PSH,
        bytes,
        packets: 3,
        time_ms: t,
        label: None,
    };
    let mut record = Vec::new();
    encode_goflow2_pb(
        &flow(client, 61000, IpAddr::V6(server), FRESH_PORT, 300),
        &mut record,
    );
    encode_goflow2_pb(
        &flow(IpAddr::V6(server), FRESH_PORT, client, 61000, 3000),
        &mut record,
    );
    record
}

/// Whether the API lists `server`'s endpoint; `None` for a refusal (not ready yet).
pub fn visible(api: SocketAddr, server: Ipv6Addr) -> anyhow::Result<Option<bool>> {
    let (status, body) = http_get(
        api,
        &format!("/?Action=DescribeInternetOpenDetail&PublicIp={server}&Port={FRESH_PORT}"),
    )?;
    if status != 200 {
        return Ok(None);
    }
    let answer: serde_json::Value = serde_json::from_str(&body)
        .with_context(|| format!("the API answered something else than JSON: {body}"))?;
    Ok(Some(answer["PageInfo"]["TotalCount"].as_u64() == Some(1)))
}

/// Sends `record`, waiting while librdkafka's queue is full.
pub fn send<'a, C: ProducerContext<DeliveryOpaque = ()>>(
    producer: &BaseProducer<C>,
    mut record: BaseRecord<'a, (), [u8]>,
) -> anyhow::Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(5));
            }
            Err((e, _)) => bail!("producing: {e}"),
        }
    }
}
