//! When an exposure changes (`docs/semantics.md#exposure-changes`): the
//! engine's side of [`crate::changes::events`].
//!
//! Every flow applied to an endpoint passes [`Engine::track`] with the
//! endpoint's shard locked, so the events of one endpoint follow the
//! order its flows are applied in, and follow from them alone:
//!
//! - `closed` when a flow arrives `changes.closed_after` or more after the
//!   endpoint's last one (dated the moment it closed), or when
//!   [`Engine::sweep_changes`] finds it idle that long;
//! - `changed` when a new L7 label changes its service or risk, and when
//!   the sweep finds its expected entry added, edited, expired or gone;
//! - `opened` when response evidence arrives and it is not open.

use std::sync::{Arc, Mutex, PoisonError};

use super::{EndpointState, Engine};
use crate::catalog::Catalog;
use crate::changes::events::{Cover, Kind, Log, Look};
use crate::changes::expected::{Entry, Expected};
use crate::changes::watch::Watched;
use crate::classify::Endpoint;
use crate::config::{Clock, Config};

/// The engine's link to the event log.
pub(super) struct Tracker {
    log: Arc<Log>,
    closed_after_ms: i64,
    /// The list and time of the last sweep, to name what an entry was
    /// before it changed.
    swept: Mutex<(Arc<Expected>, i64)>,
}

/// A fingerprint of the expected entry covering an endpoint (0: none), kept
/// in its state so that a sweep sees an entry added, edited or removed.
pub(super) fn cover_mark(entry: Option<&Entry>) -> u32 {
    let Some(entry) = entry else { return 0 };
    // FNV-1a over what an event shows of the entry.
    let mut hash: u32 = 0x811c_9dc5;
    for part in [&entry.owner, &entry.reason] {
        for byte in part.as_deref().unwrap_or("\u{0}").bytes().chain([0xff]) {
            hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
        }
    }
    hash | 1
}

fn cover_of(entry: Option<&Entry>) -> Option<Cover> {
    entry.map(|e| Cover {
        owner: e.owner.clone(),
        reason: e.reason.clone(),
    })
}

fn seconds(time_ms: i64) -> u32 {
    u32::try_from(time_ms.div_euclid(1000).max(0)).unwrap_or(u32::MAX)
}

impl Engine {
    /// The engine a config describes, recording its exposure changes
    /// (`changes.closed_after`, `changes.keep`) judged against `expected`.
    pub fn from_config_with_changes(
        config: &Config,
        catalog: Arc<Catalog>,
        expected: Arc<Watched>,
    ) -> Engine {
        let log = Log::new(
            catalog.clone(),
            expected,
            config.changes.keep,
            config.window.retention_days,
        );
        let closed_after_ms =
            i64::try_from(config.changes.closed_after.as_millis()).unwrap_or(i64::MAX);
        Engine::from_config(config, catalog).track_changes(Arc::new(log), closed_after_ms)
    }

    /// Records this engine's exposure changes in `log`; an endpoint with no
    /// flow for `closed_after_ms` is closed.
    pub fn track_changes(mut self, log: Arc<Log>, closed_after_ms: i64) -> Engine {
        let list = log.expected();
        self.changes = Some(Tracker {
            log,
            closed_after_ms,
            swept: Mutex::new((list, i64::MIN)),
        });
        self
    }

    /// The event log, when changes are tracked.
    pub fn changes(&self) -> Option<&Arc<Log>> {
        self.changes.as_ref().map(|t| &t.log)
    }

    /// Notes a flow at `time_ms` applied to `state` (its shard locked),
    /// after its label was set; `old_label` is the label before when this
    /// flow changed it.
    pub(super) fn track(
        &self,
        endpoint: Endpoint,
        state: &mut EndpointState,
        time_ms: i64,
        evidence: bool,
        old_label: Option<&Option<Arc<str>>>,
    ) {
        let Some(t) = &self.changes else {
            state.last_seen_s = state.last_seen_s.max(seconds(time_ms));
            return;
        };
        let label_before = old_label.unwrap_or(&state.label);
        if state.live {
            let closed_at = i64::from(state.last_seen_s) * 1000 + t.closed_after_ms;
            if closed_at <= time_ms {
                let list = t.log.expected();
                let look = t
                    .log
                    .look(endpoint, label_before.as_deref(), &list, closed_at);
                t.log.record(Kind::Closed, closed_at, endpoint, look, None);
                state.live = false;
            }
        }
        if state.live && old_label.is_some() {
            let list = t.log.expected();
            let before = t
                .log
                .look(endpoint, label_before.as_deref(), &list, time_ms);
            let after = t.log.look(endpoint, state.label.as_deref(), &list, time_ms);
            if before != after {
                t.log
                    .record(Kind::Changed, time_ms, endpoint, after, Some(before));
            }
        }
        if evidence && !state.live {
            let list = t.log.expected();
            let look = t.log.look(endpoint, state.label.as_deref(), &list, time_ms);
            state.cover =
                cover_mark(list.covering(endpoint.ip, endpoint.port, endpoint.proto, time_ms));
            t.log.record(Kind::Opened, time_ms, endpoint, look, None);
            state.live = true;
        }
        state.last_seen_s = state.last_seen_s.max(seconds(time_ms));
    }

    /// Notes that an open endpoint leaves the state (past retention).
    pub(super) fn track_removal(&self, endpoint: Endpoint, state: &EndpointState) {
        let Some(t) = &self.changes else { return };
        if state.live {
            let closed_at = i64::from(state.last_seen_s) * 1000 + t.closed_after_ms;
            let list = t.log.expected();
            let look = t
                .log
                .look(endpoint, state.label.as_deref(), &list, closed_at);
            t.log.record(Kind::Closed, closed_at, endpoint, look, None);
        }
    }

    /// What a restored endpoint's change tracking would be had its flows
    /// been applied (a checkpoint of format 1 does not hold it): last seen at
    /// the end of its newest bucket, open while that is within
    /// `changes.closed_after` of the checkpoint's now.
    pub(super) fn derive_tracking(
        &self,
        endpoint: Endpoint,
        state: &mut EndpointState,
        now_ms: i64,
    ) {
        let last_ms = state
            .series
            .last_hour()
            .map_or(0, |hour| (i64::from(hour) + 1) * super::HOUR_MS - 1000);
        state.last_seen_s = seconds(last_ms);
        let Some(t) = &self.changes else { return };
        state.live = state.ever_open && last_ms + t.closed_after_ms > now_ms;
        let list = t.log.expected();
        state.cover = cover_mark(list.covering(endpoint.ip, endpoint.port, endpoint.proto, now_ms));
    }

    /// Closes the open endpoints idle for `changes.closed_after`, and
    /// records a `changed` for each open endpoint whose expected entry is no
    /// longer the one it had: one walk of the state, a shard at a time.
    /// Called every few seconds by `exposure run`, and once at the end of
    /// `exposure analyze --changes`.
    pub fn sweep_changes(&self, wall_now_ms: i64) {
        let Some(t) = &self.changes else { return };
        if self.settings.clock == Clock::Event
            && !self.seen_any.load(std::sync::atomic::Ordering::Acquire)
        {
            return;
        }
        let now = self.now_ms(wall_now_ms);
        let list = t.log.expected();
        let (before, before_ms) = std::mem::replace(
            &mut *t.swept.lock().unwrap_or_else(PoisonError::into_inner),
            (list.clone(), now),
        );
        let judge = !(list.is_empty() && before.is_empty());
        for mut entry in self.endpoints.iter_mut() {
            let (endpoint, state) = entry.pair_mut();
            if !state.live {
                continue;
            }
            let closed_at = i64::from(state.last_seen_s) * 1000 + t.closed_after_ms;
            if closed_at <= now {
                let look = t
                    .log
                    .look(*endpoint, state.label.as_deref(), &list, closed_at);
                t.log.record(Kind::Closed, closed_at, *endpoint, look, None);
                state.live = false;
                continue;
            }
            if !judge {
                continue;
            }
            let covering = list.covering(endpoint.ip, endpoint.port, endpoint.proto, now);
            let mark = cover_mark(covering);
            if mark == state.cover {
                continue;
            }
            let after = t.log.look(*endpoint, state.label.as_deref(), &list, now);
            let was = before
                .covering(endpoint.ip, endpoint.port, endpoint.proto, before_ms)
                .filter(|e| cover_mark(Some(e)) == state.cover);
            let previous = Look {
                expected: match (state.cover, was) {
                    (0, _) => None,
                    (_, Some(entry)) => cover_of(Some(entry)),
                    (_, None) => Some(Cover::default()),
                },
                ..after.clone()
            };
            t.log
                .record(Kind::Changed, now, *endpoint, after, Some(previous));
            state.cover = mark;
        }
    }
}

impl Engine {
    /// Every open exposure and what it looks like at `wall_now_ms` on the
    /// window clock (its service, risk and expected entry): one walk of the
    /// state, a shard at a time under its read lock. Nothing without an
    /// event log.
    pub fn open_exposures(&self, wall_now_ms: i64, mut each: impl FnMut(Endpoint, Look)) {
        let Some(t) = &self.changes else { return };
        let now = self.now_ms(wall_now_ms);
        let list = t.log.expected();
        for entry in self.endpoints.iter() {
            let (endpoint, state) = entry.pair();
            if state.live {
                each(
                    *endpoint,
                    t.log.look(*endpoint, state.label.as_deref(), &list, now),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
