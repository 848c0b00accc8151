//! What `/readyz` reports: whether the state is restored and the consumer
//! has its partitions, and whether the brokers are reachable.

use std::sync::atomic::{AtomicBool, Ordering};

/// Readiness flags, set by the engine's owners and read by the API.
#[derive(Debug, Default)]
pub struct Health {
    /// The state has been restored (from a checkpoint, or started empty
    /// because there was none); until then queries cannot be answered truthfully.
    restored: AtomicBool,
    /// The consumer has been assigned its partitions.
    assigned: AtomicBool,
    /// The consumer reaches the brokers.
    connected: AtomicBool,
}

/// A copy of the flags, for one answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthSnapshot {
    pub restored: bool,
    pub assigned: bool,
    pub connected: bool,
}

impl HealthSnapshot {
    /// Ready to answer: state restored and partitions assigned.
    pub fn ready(&self) -> bool {
        self.restored && self.assigned
    }
}

impl Health {
    pub fn set_restored(&self, v: bool) {
        self.restored.store(v, Ordering::Release);
    }

    pub fn set_assigned(&self, v: bool) {
        self.assigned.store(v, Ordering::Release);
    }

    pub fn set_connected(&self, v: bool) {
        self.connected.store(v, Ordering::Release);
    }

    pub fn snapshot(&self) -> HealthSnapshot {
        HealthSnapshot {
            restored: self.restored.load(Ordering::Acquire),
            assigned: self.assigned.load(Ordering::Acquire),
            connected: self.connected.load(Ordering::Acquire),
        }
    }
}
