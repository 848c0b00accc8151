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
//!   rolled up to days beyond 48 hours) and the engine that applies flows.
//! - [`query`]: `DescribeInternetOpenPort`: parameters, filters, ordering,
//!   paging and the response body.
//! - [`source`]: where records come from (files and stdin for `analyze`).
//! - [`analyze`]: the offline `exposure analyze` command.

pub mod analyze;
pub mod catalog;
pub mod classify;
pub mod config;
pub mod flow;
pub mod query;
pub mod source;
pub mod state;
