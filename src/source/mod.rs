//! Where flow records come from: files and stdin (for `exposure analyze`),
//! and Kafka (for `exposure run` and `exposure demo`).

pub mod file;
pub mod kafka;
