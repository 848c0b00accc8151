//! What became of every record and flow: applied, ignored or rejected, by
//! reason. The counts behind `exposure analyze`'s summary and the
//! `exposure_records_*_total` metrics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::classify::Irrelevant;
use crate::flow::{self, DecodeError};

/// Why the engine refused a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// More than `window.max_future_skew` ahead of the wall clock.
    Future,
    /// Older than `window.retention_days` before "now".
    TooOld,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Future => "future_time",
            RejectReason::TooOld => "too_old",
        }
    }
}

/// Why a flow (or record) was read but changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IgnoredReason {
    /// The classifier found it says nothing about exposure.
    Classified(Irrelevant),
    /// `state.max_endpoints` is reached; the flow is counted as a probe only.
    EndpointLimit,
    /// `state.max_pending` is reached; the flow is counted as a probe only.
    PendingLimit,
}

impl From<Irrelevant> for IgnoredReason {
    fn from(reason: Irrelevant) -> Self {
        IgnoredReason::Classified(reason)
    }
}

impl IgnoredReason {
    pub fn as_str(self) -> &'static str {
        match self {
            IgnoredReason::Classified(r) => r.as_str(),
            IgnoredReason::EndpointLimit => "endpoint_limit",
            IgnoredReason::PendingLimit => "pending_limit",
        }
    }

    fn index(self) -> usize {
        match self {
            IgnoredReason::Classified(r) => {
                Irrelevant::ALL.iter().position(|&x| x == r).unwrap_or(0)
            }
            IgnoredReason::EndpointLimit => Irrelevant::ALL.len(),
            IgnoredReason::PendingLimit => Irrelevant::ALL.len() + 1,
        }
    }

    const COUNT: usize = Irrelevant::ALL.len() + 2;

    fn all() -> impl Iterator<Item = IgnoredReason> {
        Irrelevant::ALL
            .into_iter()
            .map(IgnoredReason::Classified)
            .chain([IgnoredReason::EndpointLimit, IgnoredReason::PendingLimit])
    }
}

/// What became of one flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It changed an endpoint's state.
    Applied,
    Ignored(IgnoredReason),
    Rejected(RejectReason),
}

/// Lock-free counters on the flow path; a mutex only for decode rejections
/// and markers, which are rare and whose reasons the decoders name.
#[derive(Debug, Default)]
pub struct Stats {
    /// The per-record and per-flow counters, one stripe per group of
    /// threads: ingest threads counting into one shared cache line would
    /// each wait for it on every record.
    stripes: [Stripe; STRIPES],
    records_other: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

/// Stripes of [`Stats`]; threads take them in turn.
const STRIPES: usize = 8;

/// One stripe of counters, on cache lines of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe {
    applied: AtomicU64,
    ignored: [AtomicU64; IgnoredReason::COUNT],
    future: AtomicU64,
    too_old: AtomicU64,
    records: AtomicU64,
}

/// The stripe of the calling thread.
fn stripe_index() -> usize {
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    INDEX.with(|i| *i)
}

/// A consistent-enough copy of [`Stats`] for reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Records (Kafka records or file lines) read.
    pub records: u64,
    /// Flows that changed state.
    pub applied: u64,
    /// Rejections by reason: records the decoders refused, flows the engine refused.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Ignored records and flows by reason.
    pub ignored: BTreeMap<&'static str, u64>,
}

impl Stats {
    /// Counts one flow's outcome.
    pub fn count(&self, outcome: Outcome) {
        let stripe = &self.stripes[stripe_index()];
        let counter = match outcome {
            Outcome::Applied => &stripe.applied,
            Outcome::Ignored(r) => &stripe.ignored[r.index()],
            Outcome::Rejected(RejectReason::Future) => &stripe.future,
            Outcome::Rejected(RejectReason::TooOld) => &stripe.too_old,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one record read and what its decode (`flow::decode`) made
    /// of it: a marker is ignored, a record the decoder refused is rejected
    /// with the error's reason.
    pub fn count_decoded(&self, decoded: &Result<flow::Outcome, DecodeError>) {
        self.count_record();
        match decoded {
            Ok(flow::Outcome::Flows) => {}
            Ok(flow::Outcome::Marker) => self.count_record_ignored("marker"),
            Err(e) => self.count_record_rejected(e.reason()),
        }
    }

    /// Counts one record read, whatever became of it.
    pub fn count_record(&self) {
        self.stripes[stripe_index()]
            .records
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a record the decoder refused (`reason` from `DecodeError::reason`).
    pub fn count_record_rejected(&self, reason: &'static str) {
        self.count_other("rejected", reason);
    }

    /// Counts a record that carries no flow by design (a pmacct marker).
    pub fn count_record_ignored(&self, reason: &'static str) {
        self.count_other("ignored", reason);
    }

    fn count_other(&self, kind: &'static str, reason: &'static str) {
        let mut map = self.records_other.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((kind, reason)).or_default() += 1;
    }

    /// Records read so far, whatever became of them (cheaper than a
    /// snapshot).
    pub fn records(&self) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.records.load(Ordering::Relaxed))
            .sum()
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let sum = |counter: &dyn Fn(&Stripe) -> &AtomicU64| -> u64 {
            self.stripes
                .iter()
                .map(|stripe| counter(stripe).load(Ordering::Relaxed))
                .sum()
        };
        let mut snap = StatsSnapshot {
            records: self.records(),
            applied: sum(&|s| &s.applied),
            ..StatsSnapshot::default()
        };
        for reason in IgnoredReason::all() {
            let n = sum(&|s| &s.ignored[reason.index()]);
            if n > 0 {
                snap.ignored.insert(reason.as_str(), n);
            }
        }
        for (reason, n) in [
            (RejectReason::Future, sum(&|s| &s.future)),
            (RejectReason::TooOld, sum(&|s| &s.too_old)),
        ] {
            if n > 0 {
                snap.rejected.insert(reason.as_str(), n);
            }
        }
        let other = self.records_other.lock().unwrap_or_else(|e| e.into_inner());
        for (&(kind, reason), &n) in other.iter() {
            let map = if kind == "rejected" {
                &mut snap.rejected
            } else {
                &mut snap.ignored
            };
            *map.entry(reason).or_default() += n;
        }
        snap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Threads count into different stripes; every count is in the totals.
    #[test]
    fn counts_from_many_threads_all_add_up() {
        let stats = Stats::default();
        std::thread::scope(|s| {
            for _ in 0..STRIPES + 3 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        stats.count_record();
                        stats.count(Outcome::Applied);
                        stats.count(Outcome::Rejected(RejectReason::TooOld));
                    }
                });
            }
        });
        let threads = (STRIPES + 3) as u64;
        assert_eq!(stats.records(), 1000 * threads);
        let snap = stats.snapshot();
        assert_eq!(snap.records, 1000 * threads);
        assert_eq!(snap.applied, 1000 * threads);
        assert_eq!(snap.rejected.get("too_old"), Some(&(1000 * threads)));
    }
}
