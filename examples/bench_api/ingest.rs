//! The ingest thread: pre-encoded goflow2-pb records applied to the engine
//! at full speed, as in `benches/query.rs`, and what it did between two
//! moments (records, and the CPU time it got).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use exposure::flow::{self, Flow, Format};
use exposure::state::Engine;

use crate::procfs::{own_tid, thread_cpu_ns};

/// Shared between the ingest thread and the thread that reads its progress.
#[derive(Default)]
pub struct Ingest {
    pub stop: AtomicBool,
    /// Records applied so far.
    pub records: AtomicU64,
    /// The ingest thread's id, to read its CPU time from `/proc`; set
    /// (to `None` where `/proc` does not tell) once the thread runs.
    tid: OnceLock<Option<u32>>,
}

/// Where the ingest thread was at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    pub at: Instant,
    pub records: u64,
    /// CPU time the ingest thread has had, ns.
    pub cpu_ns: u64,
}

/// What the ingest thread did between two marks.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    /// Records per wall second, in M.
    pub wall: f64,
    /// Records per second of CPU time the thread got, in M.
    pub per_cpu: f64,
    /// Share of the interval the thread was running, 0 to 1.
    pub cpu_share: f64,
}

impl Ingest {
    /// Applies `records` (one-byte-length-prefixed messages) to `engine`
    /// in a loop until `stop`; run it on its own thread.
    pub fn run(&self, engine: &Engine, records: &[u8], now_ms: i64) {
        let _ = self.tid.set(own_tid());
        let mut out: Vec<Flow> = Vec::with_capacity(4);
        while !self.stop.load(Ordering::Relaxed) {
            let mut at = 0;
            while at < records.len() && !self.stop.load(Ordering::Relaxed) {
                let end = at + 1 + usize::from(records[at]);
                out.clear();
                let _ = flow::decode(Format::Goflow2Pb, &records[at..end], None, &mut out);
                for f in &out {
                    engine.apply(f, now_ms);
                }
                self.records.fetch_add(1, Ordering::Relaxed);
                at = end;
            }
        }
    }

    /// Waits until the thread has started and told its id.
    pub fn wait_started(&self) {
        while self.tid.get().is_none() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    pub fn mark(&self) -> Mark {
        Mark {
            at: Instant::now(),
            records: self.records.load(Ordering::Relaxed),
            cpu_ns: self.tid.get().copied().flatten().map_or(0, thread_cpu_ns),
        }
    }
}

impl Rate {
    pub fn between(from: Mark, to: Mark) -> Rate {
        let secs = (to.at - from.at).as_secs_f64();
        let records = (to.records - from.records) as f64;
        let cpu_secs = to.cpu_ns.saturating_sub(from.cpu_ns) as f64 / 1e9;
        Rate {
            wall: records / secs / 1e6,
            per_cpu: if cpu_secs > 0.0 {
                records / cpu_secs / 1e6
            } else {
                0.0
            },
            cpu_share: cpu_secs / secs,
        }
    }
}
