//! Logging that cannot flood: one line per interval, with how many were
//! held back since the last one.

use std::time::{Duration, Instant};

/// Admits one event per `interval` for logging and counts the rest.
#[derive(Debug)]
pub(super) struct LogLimit {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimit {
    pub(super) fn new(interval: Duration) -> Self {
        LogLimit {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(events held back since the last logged one)` when this event
    /// should be logged, `None` when it is only counted.
    pub(super) fn admit(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.interval)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_interval_is_admitted_with_the_count_held_back() {
        let mut limit = LogLimit::new(Duration::from_secs(5));
        let t0 = Instant::now();
        assert_eq!(limit.admit(t0), Some(0));
        for i in 1..=100 {
            assert_eq!(limit.admit(t0 + Duration::from_millis(i * 10)), None);
        }
        assert_eq!(limit.admit(t0 + Duration::from_secs(5)), Some(100));
        assert_eq!(limit.admit(t0 + Duration::from_secs(6)), None);
    }
}
