//! What `/readyz` reports: whether the state is restored and the consumer
//! has its partitions, whether the brokers are reachable, which tasks are
//! down, whether checkpoints are failing, and in cluster mode which
//! partitions of the group's state are still being read.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

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
    /// Tasks that failed and are not running (being restarted, or the
    /// service is stopping because of them); see [`crate::supervise`].
    tasks_down: Mutex<BTreeSet<&'static str>>,
    /// The last checkpoint attempt failed: answers are still exact, but a
    /// crash now would re-read everything since the last good one.
    checkpoint_failing: AtomicBool,
    /// In cluster mode, the changelog partitions not yet read to the end
    /// they had at start: an answer now would lack their endpoints.
    missing_partitions: Mutex<Vec<i32>>,
}

/// A copy of the flags, for one answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthSnapshot {
    pub restored: bool,
    pub assigned: bool,
    pub connected: bool,
    pub tasks_down: Vec<&'static str>,
    pub checkpoint_failing: bool,
    pub missing_partitions: Vec<i32>,
}

impl HealthSnapshot {
    /// Ready to answer: state restored, partitions assigned and every task
    /// running. A failing checkpoint does not make the answers wrong, so it
    /// does not count here (it has its own alert).
    pub fn ready(&self) -> bool {
        self.restored
            && self.assigned
            && self.tasks_down.is_empty()
            && self.missing_partitions.is_empty()
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

    /// Marks `task` as down (failed, not running) or running again.
    pub fn set_task_down(&self, task: &'static str, down: bool) {
        let mut tasks = self.tasks_down.lock().unwrap_or_else(|e| e.into_inner());
        if down {
            tasks.insert(task);
        } else {
            tasks.remove(task);
        }
    }

    pub fn set_checkpoint_failing(&self, v: bool) {
        self.checkpoint_failing.store(v, Ordering::Release);
    }

    /// Names the changelog partitions still being read (cluster mode).
    pub fn set_missing_partitions(&self, mut partitions: Vec<i32>) {
        partitions.sort_unstable();
        *self
            .missing_partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = partitions;
    }

    pub fn snapshot(&self) -> HealthSnapshot {
        let tasks_down = self.tasks_down.lock().unwrap_or_else(|e| e.into_inner());
        HealthSnapshot {
            restored: self.restored.load(Ordering::Acquire),
            assigned: self.assigned.load(Ordering::Acquire),
            connected: self.connected.load(Ordering::Acquire),
            tasks_down: tasks_down.iter().copied().collect(),
            checkpoint_failing: self.checkpoint_failing.load(Ordering::Acquire),
            missing_partitions: self
                .missing_partitions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}
