//! Kafka brokers in their own processes: a real tansu broker, and
//! librdkafka's mock cluster (`exposure-mock-broker`) whose broker a test
//! takes down and up; topics, producers, produce-and-wait.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

pub use super::tansu::Tansu;
use super::{free_port, tool, wait_for_port};

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
/// of a batch when a fetch starts inside it (defect 1 of
/// `docs/testing.md#known-defects-of-tansu-060`).
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
