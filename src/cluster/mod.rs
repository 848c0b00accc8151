//! Several `exposure run` processes sharing one consumer group
//! (`cluster.enabled = true`): route, count and answer through Kafka
//! itself (`docs/operations.md#scale-out`).
//!
//! - [`node`]: the three threads of an instance and the internal topics;
//! - [`routed`]: the records of the routing topic, one accepted flow each,
//!   keyed by its asset and carrying where it was read;
//! - [`replay`]: the counting side's guard that drops a routed flow it has
//!   applied already;
//! - [`changelog`]: the counting side's state of a partition as cells in
//!   the changelog topic, under the generation of the owner that claimed
//!   it, flushed in batches closed by a marker, and read back by a
//!   restoring owner or a replica;
//! - `context`: the cluster consumers' callbacks (lag, connection,
//!   partitions given and taken).

pub mod changelog;
mod context;
pub mod node;
pub mod replay;
pub mod routed;
mod wire;
