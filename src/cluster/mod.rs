//! Building blocks for several `exposure run` processes sharing one
//! consumer group (route, count, answer through Kafka itself). Not wired
//! into `exposure run` yet: a group still has one consumer (see
//! `docs/operations.md#durability-what-survives-what`, "One consumer per
//! group").
//!
//! - [`routed`]: the records of the routing topic, one accepted flow each,
//!   keyed by its asset and carrying where it was read;
//! - [`replay`]: the counting side's guard that drops a routed flow it has
//!   applied already;
//! - [`changelog`]: the counting side's state of a partition as cells in
//!   the changelog topic, flushed in epochs closed by a marker, and read
//!   back by a restoring owner or a replica.

pub mod changelog;
pub mod node;
pub mod replay;
pub mod routed;
mod wire;
