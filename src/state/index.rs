//! Per-(port, protocol) sums of the open endpoints over the last 1, 7 and
//! 30 days, kept up to date as flows are applied, so that
//! `DescribeInternetOpenPort` reads one entry per port instead of walking
//! every endpoint's history.
//!
//! The sums are exact, not sampled: each open endpoint keeps its own tallies
//! over the three windows ([`Recent`]) as of the index's hour, and every
//! change to the endpoint replaces what it contributed to its port (old
//! tallies out, new ones in) while its shard is locked. The windows move
//! when the hour changes: [`PortIndex::begin_refresh`] then sets the new
//! hour, every endpoint's tallies are recomputed from its series, and only
//! when all are done does the index answer for that hour. The service moves
//! it within a second of a new hour; a query that finds it elsewhere moves
//! it first. Query ranges other than the three windows walk the state.
//!
//! Nothing is tracked before the first refresh: `exposure run` starts the
//! index at startup, `exposure analyze` at its query.
//!
//! Lock order: an endpoint's shard, then its port's sums. Readers take only
//! the port sums, one at a time.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use smallvec::SmallVec;

use super::series::{HourRange, Resolution, Sample, Series, Tally};
use super::{port_slot, slot_port, PORT_SLOTS};
use crate::catalog::Protocol;

/// Windows the index keeps: the last 1, 7 and 30 days.
pub const WINDOW_DAYS: [u32; 3] = [1, 7, 30];
/// No hour: the index has not been computed yet.
const NO_HOUR: u32 = u32::MAX;

/// The last 1, 7 and 30 days when "now" falls in hour `hour`: from the
/// hour holding now minus N days to the end of the hour holding now.
pub fn recent_windows(hour: u32) -> [HourRange; 3] {
    WINDOW_DAYS.map(|days| HourRange {
        start: hour.saturating_sub(days * 24),
        end: hour + 1,
    })
}

/// One open endpoint's tallies over the three windows, as of `hour`: what
/// it adds to its port's sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recent {
    pub hour: u32,
    pub tallies: [Tally; 3],
}

impl Recent {
    /// Tallies `series` over the windows of `hour`.
    pub fn of(series: &Series, hour: u32, res: Resolution) -> Recent {
        Recent {
            hour,
            tallies: series.tally(&recent_windows(hour), res),
        }
    }
}

/// An endpoint's [`Recent`] as it keeps it: packed into 56 bytes, with no
/// allocation and no value before the endpoint is open and indexed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeptRecent {
    in_bytes: [u64; 3],
    out_bytes: [u64; 3],
    /// [`NO_HOUR`] while there is nothing kept.
    hour: u32,
    /// Bit `w`: open in window `w`; bit `3 + w`: payload in window `w`.
    flags: u8,
}

impl Default for KeptRecent {
    fn default() -> Self {
        KeptRecent {
            in_bytes: [0; 3],
            out_bytes: [0; 3],
            hour: NO_HOUR,
            flags: 0,
        }
    }
}

impl KeptRecent {
    pub fn get(&self) -> Option<Recent> {
        if self.hour == NO_HOUR {
            return None;
        }
        Some(Recent {
            hour: self.hour,
            tallies: std::array::from_fn(|w| Tally {
                in_bytes: self.in_bytes[w],
                out_bytes: self.out_bytes[w],
                open: self.flags & (1 << w) != 0,
                payload: self.flags & (1 << (3 + w)) != 0,
            }),
        })
    }

    pub fn set(&mut self, recent: Recent) {
        let mut flags = 0;
        for (w, t) in recent.tallies.iter().enumerate() {
            self.in_bytes[w] = t.in_bytes;
            self.out_bytes[w] = t.out_bytes;
            flags |= u8::from(t.open) << w | u8::from(t.payload) << (3 + w);
        }
        self.hour = recent.hour;
        self.flags = flags;
    }

    /// Adds `sample`, at `sample_hour`, to tallies kept for `hour`, in
    /// place: the same as [`Recent::of`] the series with the sample added,
    /// without walking it. Returns the bytes that moved and whether the
    /// sample opened a window or brought a window's first payload; `None`,
    /// changing nothing, when nothing is kept for `hour`.
    pub fn add(
        &mut self,
        hour: u32,
        sample_hour: u32,
        sample: Sample,
        res: Resolution,
    ) -> Option<Added> {
        if self.hour != hour {
            return None;
        }
        let span = Series::sample_span(sample_hour, res);
        let mut moved = MovedBytes {
            in_bytes: [0; 3],
            out_bytes: [0; 3],
            open: self.flags & 0b111,
        };
        let flags_before = self.flags;
        if span.end > res.retained_after {
            for (w, window) in recent_windows(hour).iter().enumerate() {
                if !span.overlaps(*window) {
                    continue;
                }
                let (i, o) = (self.in_bytes[w], self.out_bytes[w]);
                self.in_bytes[w] = i.saturating_add(sample.in_bytes);
                self.out_bytes[w] = o.saturating_add(sample.out_bytes);
                moved.in_bytes[w] = self.in_bytes[w] - i;
                moved.out_bytes[w] = self.out_bytes[w] - o;
                self.flags |= u8::from(sample.evidence) << w | u8::from(sample.payload) << (3 + w);
            }
        }
        Some(Added {
            moved,
            flags_changed: self.flags != flags_before,
        })
    }

    /// The kept value, leaving nothing.
    pub fn take(&mut self) -> Option<Recent> {
        let recent = self.get();
        *self = KeptRecent::default();
        recent
    }
}

/// What [`KeptRecent::add`] did.
#[derive(Clone, Copy, Debug)]
pub struct Added {
    /// The bytes added to each window.
    pub moved: MovedBytes,
    /// A window opened or got its first payload: more than bytes changed.
    pub flags_changed: bool,
}

/// Bytes added to an endpoint's windows (see [`KeptRecent::add`]).
#[derive(Clone, Copy, Debug)]
pub struct MovedBytes {
    in_bytes: [u64; 3],
    out_bytes: [u64; 3],
    /// Bit `w`: the endpoint is open in window `w`.
    open: u8,
}

/// Sums over the endpoints of one port that are open in one window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WindowSums {
    /// Endpoints open in the window.
    pub endpoints: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    /// Their TotalBytes over the last 1, 7 and 30 days, each counted only
    /// where the endpoint is open in that window.
    pub recent: [u64; 3],
    /// Their OutBytes over the last 7 days (where open in those 7 days).
    pub reply_7d: u64,
    /// `Unknown` endpoints without payload in the window.
    pub no_payload: u64,
    /// `Unknown` endpoints with payload in the window.
    pub unknown_strict: u64,
}

/// What one endpoint adds to its port: its label, whether no service
/// names it, and its tallies.
#[derive(Clone, Copy, Debug)]
pub struct Share<'a> {
    pub label: &'a Option<Arc<str>>,
    pub unknown: bool,
    pub tallies: &'a [Tally; 3],
}

/// An L7 label of a port's endpoints and how many carrying it are open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelCount {
    /// The label; `None` for endpoints without one.
    pub label: Option<Arc<str>>,
    /// Endpoints carrying it open in each window.
    pub open: [u64; 3],
    /// Their TotalBytes over the last day, each counted where it is open
    /// in the last day (what `/metrics` reports per service).
    pub day_bytes: u64,
}

/// The sums of one (port, protocol) over the three windows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortSums {
    pub windows: [WindowSums; 3],
    /// The L7 labels of its endpoints (`None`: no label), with how many
    /// endpoints carrying each are open in each window and their last day's
    /// bytes; labels no open endpoint carries are removed.
    pub labels: SmallVec<[LabelCount; 1]>,
}

impl WindowSums {
    /// What one endpoint with tallies `t` adds to window `r`; zero if it
    /// is not open there.
    fn of(share: &Share, r: usize) -> WindowSums {
        let t = share.tallies;
        if !t[r].open {
            return WindowSums::default();
        }
        let open_bytes = |w: usize| if t[w].open { t[w].total_bytes() } else { 0 };
        let unknown = u64::from(share.unknown);
        WindowSums {
            endpoints: 1,
            in_bytes: t[r].in_bytes,
            out_bytes: t[r].out_bytes,
            recent: [open_bytes(0), open_bytes(1), open_bytes(2)],
            reply_7d: if t[1].open { t[1].out_bytes } else { 0 },
            no_payload: unknown * u64::from(!t[r].payload),
            unknown_strict: unknown * u64::from(t[r].payload),
        }
    }

    /// Adds `plus` and takes away `minus`, field by field. Wrapping
    /// arithmetic makes taking away the exact inverse of adding.
    fn shift(&mut self, plus: &WindowSums, minus: &WindowSums) {
        let move_by = |sum: &mut u64, p: u64, m: u64| *sum = sum.wrapping_add(p).wrapping_sub(m);
        move_by(&mut self.endpoints, plus.endpoints, minus.endpoints);
        move_by(&mut self.in_bytes, plus.in_bytes, minus.in_bytes);
        move_by(&mut self.out_bytes, plus.out_bytes, minus.out_bytes);
        for w in 0..3 {
            move_by(&mut self.recent[w], plus.recent[w], minus.recent[w]);
        }
        move_by(&mut self.reply_7d, plus.reply_7d, minus.reply_7d);
        move_by(&mut self.no_payload, plus.no_payload, minus.no_payload);
        move_by(
            &mut self.unknown_strict,
            plus.unknown_strict,
            minus.unknown_strict,
        );
    }
}

impl PortSums {
    /// Moves the sums by the added bytes of an endpoint carrying `label`:
    /// what [`PortSums::replace`] does when only bytes changed.
    fn add_bytes(&mut self, label: &Option<Arc<str>>, moved: &MovedBytes) {
        let open = |w: usize| moved.open & (1 << w) != 0;
        let total: [u64; 3] = std::array::from_fn(|w| {
            if open(w) {
                moved.in_bytes[w].wrapping_add(moved.out_bytes[w])
            } else {
                0
            }
        });
        let reply_7d = if open(1) { moved.out_bytes[1] } else { 0 };
        for (r, sums) in self.windows.iter_mut().enumerate() {
            if !open(r) {
                continue;
            }
            sums.in_bytes = sums.in_bytes.wrapping_add(moved.in_bytes[r]);
            sums.out_bytes = sums.out_bytes.wrapping_add(moved.out_bytes[r]);
            for (sum, add) in sums.recent.iter_mut().zip(total) {
                *sum = sum.wrapping_add(add);
            }
            sums.reply_7d = sums.reply_7d.wrapping_add(reply_7d);
        }
        if total[0] != 0 {
            if let Some(count) = self.labels.iter_mut().find(|c| &c.label == label) {
                count.day_bytes = count.day_bytes.wrapping_add(total[0]);
            }
        }
    }

    /// Replaces one endpoint's share: `old` out, `new` in.
    fn replace(&mut self, old: Option<Share>, new: Option<Share>) {
        let zero = WindowSums::default();
        // What the old and the new share count for their labels.
        let mut opened = [[0u64; 3]; 2];
        let mut day_bytes = [0u64; 2];
        for (r, window) in self.windows.iter_mut().enumerate() {
            let minus = old.as_ref().map(|s| WindowSums::of(s, r));
            let plus = new.as_ref().map(|s| WindowSums::of(s, r));
            let (minus, plus) = (
                minus.as_ref().unwrap_or(&zero),
                plus.as_ref().unwrap_or(&zero),
            );
            window.shift(plus, minus);
            opened[0][r] = minus.endpoints;
            opened[1][r] = plus.endpoints;
            if r == 0 {
                day_bytes = [minus.recent[0], plus.recent[0]];
            }
        }
        // With the label and its open windows unchanged, only its bytes move.
        if let (Some(old), Some(new)) = (&old, &new) {
            if old.label == new.label && opened[0] == opened[1] {
                if let Some(count) = self.labels.iter_mut().find(|c| &c.label == new.label) {
                    count.day_bytes = count
                        .day_bytes
                        .wrapping_add(day_bytes[1])
                        .wrapping_sub(day_bytes[0]);
                }
                return;
            }
        }
        if let Some(old) = old {
            self.count_label(old.label, opened[0], day_bytes[0], true);
        }
        if let Some(new) = new {
            self.count_label(new.label, opened[1], day_bytes[1], false);
        }
    }

    /// Adds (or with `remove`, takes away) endpoints open per window and
    /// their last day's bytes to the count of `label`, dropping labels left
    /// with none open.
    fn count_label(
        &mut self,
        label: &Option<Arc<str>>,
        open: [u64; 3],
        day_bytes: u64,
        remove: bool,
    ) {
        if open == [0; 3] {
            return;
        }
        let at = match self.labels.iter().position(|c| &c.label == label) {
            Some(at) => at,
            None => {
                self.labels.push(LabelCount {
                    label: label.clone(),
                    open: [0; 3],
                    day_bytes: 0,
                });
                self.labels.len() - 1
            }
        };
        let count = &mut self.labels[at];
        let by = |sum: u64, n: u64| {
            if remove {
                sum.wrapping_sub(n)
            } else {
                sum.wrapping_add(n)
            }
        };
        for (sum, n) in count.open.iter_mut().zip(open) {
            *sum = by(*sum, n);
        }
        count.day_bytes = by(count.day_bytes, day_bytes);
        if count.open == [0; 3] {
            self.labels.swap_remove(at);
        }
    }
}

/// The sums of every (port, protocol), and the hour they are computed for.
pub struct PortIndex {
    /// The hour shares are computed at: read by writers under their
    /// endpoint's shard lock.
    target: AtomicU32,
    /// The hour for which every open endpoint's share is in the sums.
    ready: AtomicU32,
    /// Odd while a refresh runs; readers check it did not move.
    generation: AtomicU64,
    refreshing: Mutex<()>,
    /// Position + 1 of each (port, protocol) slot ([`port_slot`]) in `entries` (0: none yet).
    positions: Box<[AtomicU32]>,
    /// The sums, in the order their ports were first seen, in chunks that
    /// never move: readers walk them front to back through memory.
    entries: Box<[OnceLock<Box<[Entry]>>]>,
    /// Entries in use; positions below it are initialized.
    len: AtomicU32,
    /// Held while an entry is added.
    adding: Mutex<()>,
}

/// One (port, protocol)'s sums.
#[derive(Default)]
struct Entry {
    /// `port * 2 + protocol`, set before the entry is published.
    slot: AtomicU32,
    sums: Mutex<PortSums>,
}

/// Entries per chunk of [`PortIndex::entries`].
const CHUNK: usize = 256;

impl Default for PortIndex {
    fn default() -> Self {
        PortIndex {
            target: AtomicU32::new(NO_HOUR),
            ready: AtomicU32::new(NO_HOUR),
            generation: AtomicU64::new(0),
            refreshing: Mutex::new(()),
            positions: (0..PORT_SLOTS).map(|_| AtomicU32::new(0)).collect(),
            entries: (0..PORT_SLOTS / CHUNK).map(|_| OnceLock::new()).collect(),
            len: AtomicU32::new(0),
            adding: Mutex::new(()),
        }
    }
}

impl PortIndex {
    /// The hour writers compute shares at, or `None` before the first
    /// refresh (nothing is tracked until then).
    pub fn target(&self) -> Option<u32> {
        let hour = self.target.load(Ordering::Acquire);
        (hour != NO_HOUR).then_some(hour)
    }

    /// Replaces what one endpoint of `port`/`proto` contributes: `old` out,
    /// `new` in (either may be absent).
    pub fn replace(&self, port: u16, proto: Protocol, old: Option<Share>, new: Option<Share>) {
        self.sums(port, proto).replace(old, new);
    }

    /// Adds the moved bytes of one endpoint of `port`/`proto` carrying
    /// `label` to their sums.
    pub fn add_bytes(
        &self,
        port: u16,
        proto: Protocol,
        label: &Option<Arc<str>>,
        moved: &MovedBytes,
    ) {
        if moved.in_bytes == [0; 3] && moved.out_bytes == [0; 3] {
            return;
        }
        self.sums(port, proto).add_bytes(label, moved);
    }

    /// The labels of `port`/`proto` with their open counts (none if the
    /// index holds nothing for it).
    pub fn labels(&self, port: u16, proto: Protocol) -> SmallVec<[LabelCount; 1]> {
        match self.positions[port_slot(port, proto)].load(Ordering::Acquire) {
            0 => SmallVec::new(),
            p => lock(&self.entry(p - 1).sums).labels.clone(),
        }
    }

    fn sums(&self, port: u16, proto: Protocol) -> MutexGuard<'_, PortSums> {
        let slot = port_slot(port, proto);
        let position = match self.positions[slot].load(Ordering::Acquire) {
            0 => self.add(slot),
            p => p - 1,
        };
        lock(&self.entry(position).sums)
    }

    /// The entry at `position` (below `len`).
    fn entry(&self, position: u32) -> &Entry {
        let position = position as usize;
        let chunk = self.entries[position / CHUNK]
            .get()
            .expect("chunks below len are allocated");
        &chunk[position % CHUNK]
    }

    /// Gives `slot` the next entry (unless another thread just did) and
    /// returns its position.
    fn add(&self, slot: usize) -> u32 {
        let _adding = lock(&self.adding);
        if let Some(p) = self.positions[slot].load(Ordering::Acquire).checked_sub(1) {
            return p;
        }
        let position = self.len.load(Ordering::Acquire);
        let chunk = self.entries[position as usize / CHUNK]
            .get_or_init(|| (0..CHUNK).map(|_| Entry::default()).collect());
        chunk[position as usize % CHUNK]
            .slot
            .store(slot as u32, Ordering::Release);
        self.positions[slot].store(position + 1, Ordering::Release);
        self.len.store(position + 1, Ordering::Release);
        position
    }

    /// Starts moving the index to `hour`, unless it is there already. While
    /// the returned guard lives, writers compute shares at `hour` and the
    /// caller must recompute every endpoint whose share is for another
    /// hour; [`Refresh::finish`] then marks the index ready.
    pub fn begin_refresh(&self, hour: u32) -> Option<Refresh<'_>> {
        let guard = lock(&self.refreshing);
        if self.ready.load(Ordering::Acquire) == hour {
            return None;
        }
        // Odd from here until `finish`, whatever an abandoned refresh left.
        let generation = (self.generation.load(Ordering::Acquire) | 1) + 2;
        self.generation.store(generation, Ordering::Release);
        self.ready.store(NO_HOUR, Ordering::Release);
        self.target.store(hour, Ordering::SeqCst);
        Some(Refresh {
            index: self,
            hour,
            generation,
            _guard: guard,
        })
    }

    /// (port, protocol) pairs with sums (some may be all zero).
    pub fn ports(&self) -> usize {
        self.len.load(Ordering::Acquire) as usize
    }

    /// Whether the sums are complete for `hour`.
    pub fn is_ready(&self, hour: u32) -> bool {
        self.ready.load(Ordering::Acquire) == hour
    }

    /// Calls `f` with the sums of every port, if they are complete for
    /// `hour`, and returns whether they were (and stayed so throughout).
    pub fn read(&self, hour: u32, mut f: impl FnMut(u16, Protocol, &PortSums)) -> bool {
        let generation = self.generation.load(Ordering::Acquire);
        if generation % 2 == 1 || !self.is_ready(hour) {
            return false;
        }
        for position in 0..self.len.load(Ordering::Acquire) {
            let entry = self.entry(position);
            let (port, proto) = slot_port(entry.slot.load(Ordering::Acquire) as usize);
            f(port, proto, &lock(&entry.sums));
        }
        self.generation.load(Ordering::Acquire) == generation
    }
}

/// A refresh in progress (see [`PortIndex::begin_refresh`]).
pub struct Refresh<'a> {
    index: &'a PortIndex,
    pub hour: u32,
    generation: u64,
    _guard: MutexGuard<'a, ()>,
}

impl Refresh<'_> {
    /// Every endpoint's share is now for `hour`: the index answers for it.
    pub fn finish(self) {
        self.index.ready.store(self.hour, Ordering::Release);
        self.index
            .generation
            .store(self.generation + 1, Ordering::Release);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
