//! Where flow records come from: files and stdin (for `exposure analyze`).

pub mod file;
