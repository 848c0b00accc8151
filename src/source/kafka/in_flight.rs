//! Work handed to the ingest workers and not finished yet: it bounds how
//! far the poll thread reads ahead of them, and tells a drain when every
//! record read has been applied.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// A count of unfinished pieces of work (batches of records, and batches of
/// flows one worker passes to another), with a way to wait for it to fall.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    count: AtomicUsize,
    /// While a thread waits, one more than the count it waits for; 0 while
    /// none does. Work that finishes wakes the waiter only when it brings
    /// the count below this, so the workers do not wake (and the scheduler
    /// does not switch to) the poll thread after every batch.
    wake_below: AtomicUsize,
    /// Waiters sleep on `changed`; `lock` orders their last look at the
    /// count against a wake-up, so none is missed.
    lock: Mutex<()>,
    changed: Condvar,
    /// Set when a worker failed: work it held will never finish, so no
    /// wait can succeed any more.
    abandoned: AtomicBool,
}

impl InFlight {
    /// A piece of work is about to be handed on.
    pub fn start(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    /// A piece of work is done (or was never handed on after [`InFlight::start`]).
    pub fn finish(&self) {
        let left = self.count.fetch_sub(1, Ordering::SeqCst) - 1;
        if left < self.wake_below.load(Ordering::SeqCst) {
            let _ordered = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.changed.notify_all();
        }
    }

    /// Some work will never finish (a worker failed): every wait, now and
    /// later, gives up at once.
    pub fn abandon(&self) {
        self.abandoned.store(true, Ordering::SeqCst);
        let _ordered = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.changed.notify_all();
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Waits until at most `bound` pieces are unfinished. False if that did
    /// not happen before `deadline`, or the work was abandoned. One thread
    /// waits at a time (the poll thread).
    pub fn wait_until_at_most(&self, bound: usize, deadline: Instant) -> bool {
        if self.count() <= bound {
            return true;
        }
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        // Registered before the count is looked at again: a finish either
        // sees the registration and wakes this thread, or happened before
        // that look (both are sequentially consistent).
        self.wake_below.store(bound + 1, Ordering::SeqCst);
        let reached = loop {
            if self.count() <= bound {
                break true;
            }
            if self.abandoned.load(Ordering::SeqCst) {
                break false;
            }
            let now = Instant::now();
            if now >= deadline {
                break false;
            }
            // Bounded as well: correctness rests on the count, not on
            // the wake-up.
            let wait = (deadline - now).min(Duration::from_millis(50));
            guard = self
                .changed
                .wait_timeout(guard, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        self.wake_below.store(0, Ordering::SeqCst);
        reached
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_waiter_wakes_when_the_work_is_finished_elsewhere() {
        let work = Arc::new(InFlight::default());
        for _ in 0..3 {
            work.start();
        }
        let finisher = {
            let work = work.clone();
            std::thread::spawn(move || {
                for _ in 0..3 {
                    std::thread::sleep(Duration::from_millis(5));
                    work.finish();
                }
            })
        };
        assert!(work.wait_until_at_most(0, Instant::now() + Duration::from_secs(10)));
        assert_eq!(work.count(), 0);
        finisher.join().unwrap();
    }

    #[test]
    fn an_abandoned_wait_gives_up_at_once() {
        let work = Arc::new(InFlight::default());
        work.start();
        let abandoner = {
            let work = work.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                work.abandon();
            })
        };
        let started = Instant::now();
        assert!(!work.wait_until_at_most(0, Instant::now() + Duration::from_secs(30)));
        assert!(started.elapsed() < Duration::from_secs(10));
        // And every later wait too, even one the count would satisfy later.
        assert!(!work.wait_until_at_most(0, Instant::now() + Duration::from_secs(30)));
        abandoner.join().unwrap();
    }

    #[test]
    fn a_wait_gives_up_at_its_deadline() {
        let work = InFlight::default();
        work.start();
        work.start();
        assert!(work.wait_until_at_most(2, Instant::now()));
        assert!(!work.wait_until_at_most(1, Instant::now() + Duration::from_millis(20)));
        work.finish();
        assert!(work.wait_until_at_most(1, Instant::now()));
    }
}
