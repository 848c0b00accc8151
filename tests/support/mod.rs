//! The integration tests' kit: the builders of flows and engines the unit
//! tests' `testkit` has too (`shared.rs`: `flow`, `conversation`, `engine`,
//! ...), more flows and records ([`flows`]), a plain HTTP
//! client over a real socket ([`http`]), log capture ([`logs`]), the API
//! served in this process ([`api`]), broker processes ([`broker`]), the
//! `exposure` binary as a process ([`service`]), a client of its event
//! stream ([`sse`]) and a webhook receiver ([`receiver`]); every item is re-exported
//! here (`support::flow`, `support::Service`, ...).
#![allow(dead_code, unused_imports)]

pub mod api;
pub mod broker;
pub mod flows;
pub mod http;
pub mod logs;
pub mod receiver;
pub mod service;
pub mod sse;
pub mod tansu;

pub use api::*;
pub use broker::*;
pub use flows::*;
pub use http::*;
pub use logs::*;
pub use receiver::*;
pub use service::*;
pub use sse::*;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use exposure::catalog::Catalog;
use exposure::classify::Classifier;
use exposure::config::Clock;
use exposure::flow::tcp_flags::{ACK, PSH, SYN};
use exposure::flow::{Flow, PROTO_TCP};
use exposure::state::{Engine, Settings};

// The builders the unit tests' `testkit` has too: `T0`, `flow`,
// `conversation`, `engine`, ...
include!("shared.rs");

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

/// Tries `attempt` every `every` until it gives `Ok`; after `timeout`,
/// panics with what `failure` makes of the last `Err`.
pub fn wait_until<T, E>(
    timeout: Duration,
    every: Duration,
    mut attempt: impl FnMut() -> Result<T, E>,
    failure: impl FnOnce(E) -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match attempt() {
            Ok(value) => return value,
            Err(last) => last,
        };
        if Instant::now() >= deadline {
            panic!("{}", failure(last));
        }
        std::thread::sleep(every);
    }
}

/// Waits until something listens on `addr`, or panics after `timeout`.
pub fn wait_for_port(addr: &str, timeout: Duration) {
    wait_until(
        timeout,
        Duration::from_millis(50),
        || TcpStream::connect(addr),
        |_| format!("nothing listens on {addr} after {timeout:?}"),
    );
}

/// `path` in the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The program `name`: on PATH or in cargo's bin directory. Installed by
/// `.ci/install-tools`; a missing tool fails the test, it never skips it.
pub fn tool(name: &str) -> PathBuf {
    tansu::find_tool(name).unwrap_or_else(|| {
        panic!(
            "{name} is not installed: run .ci/install-tools (tansu from crates.io, \
             prometheus and promtool from Debian's prometheus package, \
             prometheus-alertmanager from Debian's)"
        )
    })
}
