//! A Kafka-protocol broker in its own process, for crash, restart and
//! outage tests: librdkafka's mock cluster (the one `exposure demo` embeds),
//! which keeps its data while a broker is taken down and brought back.
//!
//! ```text
//! exposure-mock-broker [--brokers N] [--topic NAME:PARTITIONS]...
//! ```
//!
//! Prints `bootstrap=HOST:PORT,...` on stdout once ready, then reads commands
//! on stdin, one per line, answering `ok` or `error: ...`:
//! `down ID` / `up ID` take broker ID (1-based) down or up, `quit` stops.
//! End of input also stops.

use std::io::{self, BufRead, Write};
use std::process::ExitCode;

use rdkafka::mocking::MockCluster;

fn main() -> ExitCode {
    let mut brokers = 1;
    let mut topics: Vec<(String, i32)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        match (arg.as_str(), value) {
            ("--brokers", Some(v)) => match v.parse() {
                Ok(n) if n > 0 => brokers = n,
                _ => return usage(&format!("--brokers {v:?} is not a positive number")),
            },
            ("--topic", Some(v)) => match v.rsplit_once(':').map(|(t, p)| (t, p.parse::<i32>())) {
                Some((topic, Ok(partitions))) if !topic.is_empty() && partitions > 0 => {
                    topics.push((topic.to_owned(), partitions))
                }
                _ => return usage(&format!("--topic {v:?} is not NAME:PARTITIONS")),
            },
            (other, _) => return usage(&format!("unknown argument {other:?}")),
        }
    }
    let cluster = match MockCluster::new(brokers) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot start the mock cluster: {e}");
            return ExitCode::from(1);
        }
    };
    for (topic, partitions) in &topics {
        if let Err(e) = cluster.create_topic(topic, *partitions, 1) {
            eprintln!("error: cannot create topic {topic}: {e}");
            return ExitCode::from(1);
        }
    }
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "bootstrap={}", cluster.bootstrap_servers());
    let _ = out.flush();
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let mut words = line.split_whitespace();
        let answer = match (words.next(), words.next().map(str::parse::<i32>)) {
            (Some("quit"), _) => break,
            (Some("down"), Some(Ok(id))) => cluster.broker_down(id).map_err(|e| e.to_string()),
            (Some("up"), Some(Ok(id))) => cluster.broker_up(id).map_err(|e| e.to_string()),
            (None, _) => continue,
            _ => Err(format!(
                "unknown command {line:?}; use down ID, up ID or quit"
            )),
        };
        let _ = match answer {
            Ok(()) => writeln!(out, "ok"),
            Err(e) => writeln!(out, "error: {e}"),
        };
        let _ = out.flush();
    }
    ExitCode::SUCCESS
}

fn usage(problem: &str) -> ExitCode {
    eprintln!(
        "error: {problem}\nusage: exposure-mock-broker [--brokers N] [--topic NAME:PARTITIONS]..."
    );
    ExitCode::from(2)
}
