//! # exposure
//!
//! Knows, continuously and exactly, which public IP addresses and ports of an
//! organisation are open to the Internet, how much traffic they carry and how
//! risky they are, from network flow records.
//!
//! # Layout
//!
//! Data flows through the modules in one direction:
//!
//! ```text
//! source (files, Kafka) -> flow (decoders) -> classify -> state -> query -> api / analyze
//! ```
//!
//! - [`config`]: the typed configuration, its loading and validation (every
//!   problem reported with its key path).
//! - [`flow`]: the normalised [`flow::Flow`] record and one decoder per input
//!   format (goflow2 protobuf and JSON, pmacct JSON, auto-detection).
//! - [`catalog`]: the service catalog (`config/services.toml`): service names
//!   by port and protocol, risk and suggestion levels, texts in zh and en.
//! - [`classify`]: which addresses are assets, internal or Internet; a flow's
//!   direction, which side serves, and whether it is response evidence.
//! - [`state`]: the sharded windowed counters per endpoint (hour buckets,
//!   rolled up to days beyond 48 hours), the engine that applies flows, the
//!   port index (per-port sums over the last 1, 7 and 30 days, kept as flows
//!   arrive), and checkpoints of the state with the Kafka offsets it holds.
//! - [`query`]: the `DescribeInternetOpen*` family (Port, Ip, Service,
//!   Detail, Statistic): `DescribeInternetOpenPort` from the port index when
//!   its range allows, everything else from one scan of the state;
//!   parameters, filters, ordering, paging and the response bodies.
//! - [`api`]: HTTP: RPC-style `DescribeInternetOpen*` on `/`, rate limits,
//!   error mapping, `/healthz`, `/readyz`, `/metrics`.
//! - [`source`]: where records come from: files and stdin for `analyze`;
//!   Kafka (a poll thread, ingest workers, checkpoints) for `run` and `demo`.
//! - [`analyze`]: the offline `exposure analyze` command.
//! - [`service`]: `exposure run`: the Kafka source feeding the engine, the
//!   API reading it, maintenance, orderly shutdown.
//! - [`demo`]: `exposure demo`: the service with an embedded broker and
//!   generated traffic.
//! - [`metrics`]: every Prometheus metric, defined in one place.
//! - [`cluster`]: building blocks for several instances sharing one group
//!   (the routed record, the replay guard); not wired into `run` yet.
//! - [`health`]: the readiness flags behind `/readyz`.
//! - [`ui`]: the live view at `/ui/`, a page embedded in the binary that
//!   polls the API; browsers opening `/` are sent there.
//! - [`logging`]: structured `tracing` logs, as text or JSON lines.
//! - [`generate`]: a seeded, realistic world of flows for benches, tests and
//!   demos, and the engines and states the benches measure.

pub mod analyze;
pub mod api;
pub mod catalog;
pub mod changes;
pub mod classify;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod flow;
pub mod generate;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod query;
pub mod service;
pub mod source;
pub mod state;
pub mod supervise;
#[cfg(test)]
mod testkit;
pub mod ui;

/// The cores this process may use, at least one: the ingest threads and
/// the API's concurrent answers are one per core.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Prints a usage or config error and gives the exit status for it (2).
pub fn usage_error(message: &str) -> std::process::ExitCode {
    eprintln!("error: {message}");
    std::process::ExitCode::from(2)
}

/// The exit status for how a command ended: 0, or 1 with the error printed.
pub fn exit_status(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
