//! The engine's side of the changelog (`crate::cluster::changelog`): what
//! an endpoint holds, read as cells (its fields, and its buckets one UTC
//! day at a time) by the instance that counts its partition, and written
//! back, cell by cell, into the engine of an instance that mirrors it (a
//! replica answering queries, or a new owner restoring the partition).
//!
//! A mirrored endpoint is set, not added to: applying a cell twice, or a
//! newer cell over an older one, leaves what the counting instance held.
//! The derived sums (open endpoints by port, the port index, the bytes
//! held) follow as they do when flows apply.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::index::{KeptRecent, Recent};
use super::{EndpointState, Engine, Peers, Series, PORT_SLOTS};
use crate::classify::Endpoint;

/// An endpoint's fields other than its buckets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    pub label: Option<Arc<str>>,
    pub ever_open: bool,
    pub peers: Peers,
    pub last_seen_s: u32,
}

/// The buckets of one UTC day of one endpoint, as held.
#[derive(Clone, Debug)]
pub struct DayCell {
    /// The day's first hour since the epoch (a multiple of 24).
    pub day: u32,
    pub buckets: Series,
    /// The changelog slot the cell is (to be) written in.
    pub slot: bool,
}

/// What an endpoint's fields become when mirrored.
#[derive(Clone, Debug)]
pub enum MetaChange {
    /// Left as they are (only buckets changed).
    Keep,
    /// Set, from the changelog slot given.
    Set(Meta, bool),
    /// The endpoint is no longer held: it goes, buckets and all.
    Remove,
}

impl Engine {
    /// The endpoint's fields and the buckets of each of `days`, each with
    /// the changelog slot it is to be written in, the one that does not
    /// hold its last written value (which is then the slot noted). `None`
    /// if the endpoint is not held.
    pub fn cells_to_write(
        &self,
        endpoint: &Endpoint,
        days: &[u32],
    ) -> Option<((Meta, bool), Vec<DayCell>)> {
        let mut state = self.endpoints.get_mut(endpoint)?;
        state.meta_slot = !state.meta_slot;
        let meta = (
            Meta {
                label: state.label.clone(),
                ever_open: state.ever_open,
                peers: state.peers,
                last_seen_s: state.last_seen_s,
            },
            state.meta_slot,
        );
        let cells = days
            .iter()
            .map(|&day| {
                let slot = !state.series.day_slot(day);
                state.series.set_day_slot(day, slot);
                DayCell {
                    day,
                    buckets: state.series.day(day),
                    slot,
                }
            })
            .collect();
        Some((meta, cells))
    }

    /// Sets the endpoint's fields and the buckets of the days given as a
    /// changelog holds them; `whole`: the days given are every day it
    /// holds, and the buckets of others go. An endpoint whose buckets
    /// arrive before its fields is held as pending until they do. The
    /// bounds on endpoints held do not apply: a mirror holds what its
    /// counting instance held.
    pub fn mirror(&self, endpoint: Endpoint, meta: MetaChange, days: &[DayCell], whole: bool) {
        let mut entry = match self.endpoints.entry(endpoint) {
            dashmap::Entry::Occupied(entry) => entry,
            dashmap::Entry::Vacant(vacant) => {
                if matches!(meta, MetaChange::Remove) {
                    return;
                }
                self.held.pending.fetch_add(1, Ordering::AcqRel);
                vacant.insert_entry(Box::default())
            }
        };
        let state = entry.get_mut();
        let old_recent = state.recent.take();
        let old_label = state.label.clone();
        if let Some(recent) = old_recent.as_ref() {
            let share = self.share(endpoint, &old_label, recent);
            self.index
                .replace(endpoint.port, endpoint.proto, Some(share), None);
        }
        let heap_before = state.series.heap_bytes();
        match meta {
            MetaChange::Keep => {}
            MetaChange::Set(meta, slot) => {
                self.set_open(endpoint, state, meta.ever_open, meta.label.as_deref());
                state.label = meta.label.as_deref().map(|l| self.intern(l));
                state.peers = meta.peers;
                state.last_seen_s = meta.last_seen_s;
                state.meta_slot = slot;
            }
            MetaChange::Remove => {
                self.set_open(endpoint, state, false, None);
                self.resized(heap_before, 0);
                self.held.pending.fetch_sub(1, Ordering::AcqRel);
                entry.remove();
                return;
            }
        }
        if whole {
            let gone: Vec<u32> = state
                .series
                .days()
                .filter(|day| !days.iter().any(|cell| cell.day == *day))
                .collect();
            for day in gone {
                state.series.replace_day(day, &Series::default(), false);
            }
        }
        for cell in days {
            state.series.replace_day(cell.day, &cell.buckets, cell.slot);
        }
        self.resized(heap_before, state.series.heap_bytes());
        if state.ever_open {
            if let Some(target) = self.index.target() {
                let res = self.resolution_at(target);
                state.recent = KeptRecent::default();
                state.recent.set(Recent::of(&state.series, target, res));
                let recent = state.recent.get().expect("just set");
                let share = self.share(endpoint, &state.label, &recent);
                self.index
                    .replace(endpoint.port, endpoint.proto, None, Some(share));
            }
        }
    }

    /// Moves a mirrored endpoint between pending and open.
    fn set_open(
        &self,
        endpoint: Endpoint,
        state: &mut EndpointState,
        open: bool,
        label: Option<&str>,
    ) {
        if state.ever_open == open {
            return;
        }
        state.ever_open = open;
        let (from, to) = if open {
            (&self.held.pending, &self.held.open)
        } else {
            (&self.held.open, &self.held.pending)
        };
        from.fetch_sub(1, Ordering::AcqRel);
        to.fetch_add(1, Ordering::AcqRel);
        if open {
            self.count_new_exposure(endpoint, label);
        }
        self.count_open(endpoint, open);
    }

    /// Inbound flows to endpoints that had not answered, by port slot
    /// (`port * 2 + protocol`), for every slot with any.
    pub fn probe_slots(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.probes.iter().enumerate().filter_map(|(slot, n)| {
            let n = n.load(Ordering::Relaxed);
            (n > 0).then_some((slot as u32, n))
        })
    }

    /// Adds `delta` (which may be negative) to the probes of a port slot;
    /// a slot out of range is ignored.
    pub fn mirror_probes(&self, slot: u32, delta: i64) {
        let Some(count) = self.probes.get(slot as usize) else {
            return;
        };
        if delta >= 0 {
            count.fetch_add(delta as u64, Ordering::Relaxed);
        } else {
            count.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }

    /// The latest accepted flow time (UNIX ms) and whether any was
    /// accepted: what a changelog flush carries of the event clock.
    pub fn event_clock(&self) -> (i64, bool) {
        (
            self.event_now_ms.load(Ordering::Acquire),
            self.seen_any.load(Ordering::Acquire),
        )
    }

    /// Moves the event clock up to `ms` (never back), as a mirrored
    /// partition's clock arrives.
    pub fn mirror_clock(&self, ms: i64, seen_any: bool) {
        if seen_any {
            self.event_now_ms.fetch_max(ms, Ordering::AcqRel);
            self.seen_any.store(true, Ordering::Release);
        }
    }
}

/// Whether `slot` is a port slot (`port * 2 + protocol`).
pub fn is_port_slot(slot: u32) -> bool {
    (slot as usize) < PORT_SLOTS
}
