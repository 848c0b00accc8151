//! Test support: a real tansu broker process, the `exposure` binary as a
//! separate process, a plain HTTP client, random names.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use exposure::flow::tcp_flags::{ACK, PSH, SYN};
use exposure::flow::{encode_goflow2_pb, Flow, PROTO_TCP};
use rand::{Rng, SeedableRng};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A random name, as rust-rdkafka's tests do (`rand_test_topic`).
pub fn rand_name(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

/// The tansu binary: on PATH or in cargo's bin directory. Installed by
/// `.ci/install-tools`; a missing broker fails the test, it never skips it.
pub fn tansu_binary() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin")));
    for dir in candidates {
        let path = dir.join("tansu");
        if path.is_file() {
            return path;
        }
    }
    panic!("tansu is not installed: run .ci/install-tools (cargo install tansu --version 0.6.0 --features dynostore --locked)");
}

/// A tansu broker process with in-memory storage on a free loopback port.
pub struct Tansu {
    child: Child,
    pub bootstrap: String,
}

impl Tansu {
    pub fn start() -> Tansu {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        let bootstrap = format!("127.0.0.1:{port}");
        wait_for_port(&bootstrap, Duration::from_secs(20));
        Tansu { child, bootstrap }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_for_port(addr: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on {addr} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Creates `topic` with `partitions` partitions.
pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = runtime
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))
        .expect("create_topics answered");
    for r in results {
        r.expect("topic created");
    }
}

/// A producer that writes one record per batch: tansu 0.6.0 returns nothing
/// of a batch when a fetch starts inside it (SPEC §10, defect 1).
pub fn producer(bootstrap: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("batch.num.messages", "1")
        .set("linger.ms", "0")
        .create()
        .expect("producer")
}

/// A producer with librdkafka's usual batching (for the mock cluster, which
/// has no trouble fetching from inside a batch).
pub fn batching_producer(bootstrap: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer")
}

/// Produces every (key, payload) to `topic` (partition chosen by key) and
/// waits until all are acknowledged.
pub fn produce(producer: &BaseProducer, topic: &str, records: &[(String, Vec<u8>)]) {
    for (key, payload) in records {
        let mut record = BaseRecord::to(topic)
            .key(key.as_str())
            .payload(payload.as_slice());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(20))
        .expect("every record acknowledged");
}

/// Kafka records (key, payload) to produce.
pub type Records = Vec<(String, Vec<u8>)>;

/// `n` conversations (a request in, a reply out, goflow2-pb, now) over
/// `servers` endpoints (ports 20000.. on one host, so each row is one
/// endpoint); returns the records and the exact TotalBytes expected per port.
pub fn workload(seed: u64, n: usize, servers: u16) -> (Records, BTreeMap<u64, u64>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let now = exposure::state::wall_now_ms();
    let mut records = Vec::new();
    let mut expected: BTreeMap<u64, u64> = BTreeMap::new();
    for i in 0..n {
        let port = 20_000 + rng.gen_range(0..servers);
        let (request, reply) = (rng.gen_range(1..5_000u64), rng.gen_range(1..50_000u64));
        let flow = |src: &str, sport, dst: &str, dport, bytes| Flow {
            src_addr: src.parse().unwrap(),
            dst_addr: dst.parse().unwrap(),
            src_port: sport,
            dst_port: dport,
            proto: PROTO_TCP,
            tcp_flags: SYN | ACK | PSH,
            bytes,
            packets: 4,
            time_ms: now,
            label: None,
        };
        for f in [
            flow("198.51.100.7", 61000, "203.0.113.10", port, request),
            flow("203.0.113.10", port, "198.51.100.7", 61000, reply),
        ] {
            let mut pb = Vec::new();
            encode_goflow2_pb(&f, &mut pb);
            records.push((format!("k{i}"), pb));
        }
        *expected.entry(u64::from(port)).or_default() += request + reply;
    }
    (records, expected)
}

/// TotalBytes by port of a `DescribeInternetOpenPort` answer.
pub fn totals(answer: &serde_json::Value) -> BTreeMap<u64, u64> {
    answer["DataList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["Port"].as_u64().unwrap(),
                r["TotalBytes"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// What a test may change in the service's config.
pub struct ServiceOptions {
    pub checkpoint_interval: &'static str,
    pub session_timeout_ms: u32,
    /// `kafka.dead_letter_topic` ("" for none).
    pub dead_letter_topic: String,
    /// librdkafka's `partition.assignment.strategy`, if not its default
    /// (an eager protocol).
    pub assignment_strategy: Option<&'static str>,
    /// Environment variables of the first start (not of restarts), such
    /// as `FAILPOINTS` for the fault tests.
    pub env: Vec<(&'static str, String)>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            checkpoint_interval: "10s",
            session_timeout_ms: 6000,
            dead_letter_topic: String::new(),
            assignment_strategy: None,
            env: Vec::new(),
        }
    }
}

/// librdkafka's mock cluster in its own process (`exposure-mock-broker`),
/// with its brokers taken down and up on command.
pub struct MockBroker {
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    pub bootstrap: String,
}

impl MockBroker {
    /// Starts one broker with `topic` of `partitions` partitions.
    pub fn start(topic: &str, partitions: i32) -> MockBroker {
        MockBroker::start_topics(&[(topic, partitions)])
    }

    /// Starts one broker with these (topic, partitions).
    pub fn start_topics(topics: &[(&str, i32)]) -> MockBroker {
        use std::io::BufRead;
        let args: Vec<String> = topics
            .iter()
            .flat_map(|(t, p)| ["--topic".to_owned(), format!("{t}:{p}")])
            .collect();
        let mut child = Command::new(env!("CARGO_BIN_EXE_exposure-mock-broker"))
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the mock broker runs");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let bootstrap = line
            .trim()
            .strip_prefix("bootstrap=")
            .expect("bootstrap line")
            .to_owned();
        MockBroker {
            child,
            stdin,
            stdout,
            bootstrap,
        }
    }

    fn command(&mut self, command: &str) {
        use std::io::BufRead;
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ok", "{command}");
    }

    /// Takes the (only) broker down: connections drop, data is kept.
    pub fn down(&mut self) {
        self.command("down 1");
    }

    pub fn up(&mut self) {
        self.command("up 1");
    }
}

impl Drop for MockBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `exposure` binary running `exposure run` with a config written for the test.
pub struct Service {
    child: Child,
    pub api: SocketAddr,
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

impl Service {
    /// Starts `exposure run` consuming `topics` from `bootstrap`, with extra TOML appended.
    pub fn start(bootstrap: &str, topics: &[&str], group: &str, extra: &str) -> Service {
        Service::start_opts(bootstrap, topics, group, extra, &ServiceOptions::default())
    }

    /// [`Service::start`] with non-default options.
    pub fn start_opts(
        bootstrap: &str,
        topics: &[&str],
        group: &str,
        extra: &str,
        opts: &ServiceOptions,
    ) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let topics: Vec<String> = topics.iter().map(|t| format!("{t:?}")).collect();
        let config = format!(
            r#"
[kafka]
brokers = "{bootstrap}"
topics = [{topics}]
group_id = "{group}"
format = "auto"
auto_offset_reset = "earliest"
dead_letter_topic = "{dead_letter_topic}"
librdkafka = {{ "fetch.wait.max.ms" = "10", "session.timeout.ms" = "{session_timeout_ms}", "heartbeat.interval.ms" = "500"{strategy} }}

[network]
assets = ["203.0.113.0/24", "2001:db8:100::/48"]

[window]
clock = "wall"

[state]
dir = "{dir}"
checkpoint_interval = "{checkpoint_interval}"

[api]
listen = "{api}"
auth = "none"
default_qps = 0
{extra}
"#,
            topics = topics.join(", "),
            dir = dir.path().join("state").display(),
            session_timeout_ms = opts.session_timeout_ms,
            checkpoint_interval = opts.checkpoint_interval,
            dead_letter_topic = opts.dead_letter_topic,
            strategy = opts.assignment_strategy.map_or(String::new(), |s| format!(
                r#", "partition.assignment.strategy" = "{s}""#
            )),
        );
        let path = dir.path().join("exposure.toml");
        std::fs::write(&path, config).unwrap();
        Service::start_with(dir, &path, api, &opts.env)
    }

    fn start_with(
        dir: tempfile::TempDir,
        config: &Path,
        api: SocketAddr,
        env: &[(&str, String)],
    ) -> Service {
        let log = dir.path().join("exposure.log");
        let child = Command::new(env!("CARGO_BIN_EXE_exposure"))
            .args(["run", "--config"])
            .arg(config)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .spawn()
            .expect("exposure runs");
        let service = Service {
            child,
            api,
            dir,
            log,
        };
        wait_for_port(&api.to_string(), Duration::from_secs(20));
        service
    }

    /// Restarts with the same config (after [`Service::terminate`]).
    pub fn restart(mut self) -> Service {
        let placeholder = tempfile::tempdir().unwrap();
        let dir = std::mem::replace(&mut self.dir, placeholder);
        let path = dir.path().join("exposure.toml");
        Service::start_with(dir, &path, self.api, &[])
    }

    /// The service's log so far (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the process with SIGKILL (no shutdown of any kind) and waits.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits; returns the exit code and how long it took.
    pub fn terminate(&mut self) -> (Option<i32>, Duration) {
        let started = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let code = self.wait_exit(Duration::from_secs(30), "SIGTERM");
        (code, started.elapsed())
    }

    /// Waits up to `timeout` for the process to exit by itself (after
    /// `what`); returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration, what: &str) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "exposure did not exit after {what}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET `path_and_query`; returns (status, body).
    pub fn get(&self, path_and_query: &str) -> (u16, String) {
        http_get(self.api, path_and_query)
    }

    /// The `DescribeInternetOpenPort` answer with all rows.
    pub fn open_ports(&self) -> serde_json::Value {
        let (status, body) = self.get("/?Action=DescribeInternetOpenPort&PageSize=1000");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("JSON body")
    }

    /// Polls until `check` holds for the open-port answer, or panics after `timeout`.
    pub fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let answer = self.open_ports();
            if check(&answer) {
                return answer;
            }
            assert!(
                Instant::now() < deadline,
                "{what} not seen after {timeout:?}; last answer: {answer}\nlog:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The value of a metric line starting with `prefix` in /metrics.
    pub fn metric(&self, prefix: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics");
        body.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET over a real socket.
pub fn http_get(addr: SocketAddr, path_and_query: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the api");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
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
