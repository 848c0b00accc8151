//! Sharded windowed state per endpoint, and the engine that applies flows.
//!
//! The [`Engine`] owns a `DashMap` from [`Endpoint`] to its boxed [`EndpointState`]:
//! ingest threads update different shards concurrently and queries read one
//! shard at a time, so nothing takes a global lock. Each endpoint keeps a
//! [`Series`] of hour buckets (see [`series`] for the day rollup).
//!
//! Endpoints that received traffic but never answered are *pending*: they are
//! kept (up to `state.max_pending`) so that their inbound bytes count if a
//! reply shows up later, whatever order the flows arrive in. Beyond the
//! bound, inbound flows to new unanswered endpoints are only counted as
//! probes of their port.

mod changes;
pub mod checkpoint;
pub mod index;
mod mirror;
pub mod peers;
pub mod series;
mod stats;
mod summary;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use smallvec::SmallVec;

use crate::catalog::{Catalog, Protocol};
use crate::classify::{Classifier, Endpoint, Verdict};
use crate::config::{Clock, Config};
use crate::flow::{self, DecodeError, Flow, Format};
use index::{KeptRecent, PortIndex, Recent, Share};
pub use index::{LabelCount, PortSums, WindowSums};
pub use mirror::{is_port_slot, DayCell, Meta, MetaChange};
pub use peers::Peers;
pub use series::{HourRange, Resolution, Sample, Series, Tally};
pub use stats::{Outcome, RejectReason, Stats, StatsSnapshot};
pub use summary::{DayShare, Summary};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Shards of the endpoint map. A query reads one shard at a time and holds
/// it while it walks it; with many shards each hold is short, so ingest
/// threads writing to that shard wait little (dashmap's default, 4 x cores,
/// is 8 on two cores: a query then blocks an eighth of all writes for a
/// millisecond or more at a time).
const ENDPOINT_SHARDS: usize = 1024;
/// A flow averaging more than this many bytes per packet carried payload.
const PAYLOAD_BYTES_PER_PACKET: u64 = 60;

/// The engine's settings, taken from [`Config`].
#[derive(Clone, Debug)]
pub struct Settings {
    /// Data older than this many days before "now" is dropped.
    pub retention_days: u32,
    /// Where "now" comes from.
    pub clock: Clock,
    /// Flows further than this ahead of the wall clock are rejected.
    pub max_future_skew_ms: i64,
    /// Bound on all endpoints held (open and pending).
    pub max_endpoints: usize,
    /// Bound on endpoints that have not answered yet.
    pub max_pending: usize,
}

impl Settings {
    pub fn from_config(config: &Config) -> Self {
        Settings {
            retention_days: config.window.retention_days,
            clock: config.window.clock,
            max_future_skew_ms: config
                .window
                .max_future_skew
                .as_millis()
                .min(i64::MAX as u128) as i64,
            max_endpoints: config.state.max_endpoints,
            max_pending: config.state.max_pending,
        }
    }
}

/// Everything known about one endpoint.
#[derive(Clone, Debug, Default)]
pub struct EndpointState {
    /// Traffic and evidence by hour.
    pub series: Series,
    /// The latest L7 label a collector gave for this endpoint's flows.
    pub label: Option<Arc<str>>,
    /// Response evidence was seen at least once (not pending).
    pub ever_open: bool,
    /// Distinct Internet peers it exchanged flows with (an estimate).
    pub peers: Peers,
    /// Its share of the port index, once open and indexed.
    pub recent: KeptRecent,
    /// Its latest flow's time, UNIX seconds: when it closes.
    pub last_seen_s: u32,
    /// The expected entry covering it when last judged
    /// (`changes::cover_mark`; 0: none).
    pub cover: u32,
    /// Open as far as exposure changes go: `opened` was recorded and
    /// `closed` not since.
    pub live: bool,
    /// The changelog slot holding the last value written of the fields
    /// above other than the buckets (`cluster::changelog`).
    pub meta_slot: bool,
}

impl EndpointState {
    /// Approximate bytes this endpoint holds: its map entry (key, pointer
    /// and a word of table overhead), its boxed state with the allocator's
    /// header, and its buckets.
    pub fn approx_bytes(&self) -> usize {
        Self::FIXED_BYTES + self.series.heap_bytes()
    }

    /// What every endpoint holds whatever its buckets: the map entry and the
    /// boxed state, each with a word of overhead.
    pub const FIXED_BYTES: usize = std::mem::size_of::<(Endpoint, Box<EndpointState>)>()
        + 8
        + std::mem::size_of::<EndpointState>()
        + 8;
}

/// A flow checked and classified by [`Engine::prepare`]: what it adds to
/// which endpoint, ready to apply.
#[derive(Clone, Debug)]
pub struct Prepared {
    endpoint: Endpoint,
    /// The flow's time, UNIX ms.
    time_ms: i64,
    /// Its hour since the epoch.
    hour: u32,
    sample: Sample,
    /// From an Internet peer to the endpoint (else from the endpoint).
    inbound: bool,
    /// The Internet side.
    peer: std::net::IpAddr,
    /// The collector's L7 label, interned.
    label: Option<Arc<str>>,
}

impl Prepared {
    /// The endpoint the flow counts for.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    /// The hour (since the epoch) the flow falls in.
    pub fn hour(&self) -> u32 {
        self.hour
    }
}

/// Applies flows to the sharded state; shared by every ingest thread and
/// every query.
pub struct Engine {
    classifier: Classifier,
    catalog: Arc<Catalog>,
    settings: Settings,
    /// Each state is boxed: the tables then hold 32-byte slots (key and
    /// pointer) instead of 192-byte ones, so the part a lookup probes stays
    /// in cache, and a table that has just doubled wastes little memory.
    endpoints: DashMap<Endpoint, Box<EndpointState>, ahash::RandomState>,
    /// How many endpoints are held, open and pending.
    held: Padded<Held>,
    /// Latest accepted flow time (UNIX ms): "now" under `clock = "event"`.
    event_now_ms: Padded<AtomicI64>,
    /// Set once any flow has been accepted, so an empty event clock is not 1970.
    seen_any: AtomicBool,
    /// Inbound flows to endpoints that had not answered, by `port * 2 + proto`.
    probes: Box<[AtomicU64]>,
    /// Endpoints held that are open (within retention), by `port * 2 + proto`.
    open_by_port: Box<[AtomicU32]>,
    /// Endpoints that became open (first response evidence), by risk level 0..=3.
    new_exposures: [AtomicU64; 4],
    /// Interned L7 labels (few distinct values, many flows).
    labels: DashMap<Box<str>, Arc<str>, ahash::RandomState>,
    /// Per-(port, protocol) sums over the last 1, 7 and 30 days.
    index: PortIndex,
    stats: Stats,
    /// Where exposure changes go, when they are tracked (`exposure run`,
    /// `exposure analyze --changes`).
    changes: Option<changes::Tracker>,
}

impl Engine {
    pub fn new(classifier: Classifier, catalog: Arc<Catalog>, settings: Settings) -> Self {
        Engine {
            classifier,
            catalog,
            settings,
            endpoints: DashMap::with_hasher_and_shard_amount(
                ahash::RandomState::new(),
                ENDPOINT_SHARDS,
            ),
            held: Padded::default(),
            event_now_ms: Padded(AtomicI64::new(i64::MIN)),
            seen_any: AtomicBool::new(false),
            probes: (0..PORT_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            open_by_port: (0..PORT_SLOTS).map(|_| AtomicU32::new(0)).collect(),
            new_exposures: Default::default(),
            labels: DashMap::with_hasher(ahash::RandomState::new()),
            index: PortIndex::default(),
            stats: Stats::default(),
            changes: None,
        }
    }

    /// Builds the engine a config describes.
    pub fn from_config(config: &Config, catalog: Arc<Catalog>) -> Self {
        let classifier = Classifier::new(&config.network.assets, &config.network.internal);
        Engine::new(classifier, catalog, Settings::from_config(config))
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// "Now" in UNIX ms: the wall clock, or the latest accepted flow time
    /// under `clock = "event"` (the wall clock until a flow is accepted).
    pub fn now_ms(&self, wall_now_ms: i64) -> i64 {
        match self.settings.clock {
            Clock::Wall => wall_now_ms,
            Clock::Event if self.seen_any.load(Ordering::Acquire) => {
                self.event_now_ms.load(Ordering::Acquire)
            }
            Clock::Event => wall_now_ms,
        }
    }

    /// The resolution buckets are read at, given "now".
    pub fn resolution(&self, now_ms: i64) -> Resolution {
        self.resolution_at(hour_of(now_ms))
    }

    /// The resolution buckets are read at when "now" falls in `hour`.
    fn resolution_at(&self, hour: u32) -> Resolution {
        Resolution::at(hour, self.settings.retention_days)
    }

    /// Decodes one record (a Kafka record or a file line) and applies its
    /// flows, counting the record and what became of it: what a source
    /// does, in one call, for `exposure analyze`, benchmarks and tests. A
    /// record is applied whole or not at all; the decode error is returned
    /// for the caller to log. `scratch` is reused between calls.
    pub fn ingest(
        &self,
        format: Format,
        payload: &[u8],
        fallback_time_ms: Option<i64>,
        wall_now_ms: i64,
        scratch: &mut Vec<Flow>,
    ) -> Result<(), DecodeError> {
        scratch.clear();
        let decoded = flow::decode(format, payload, fallback_time_ms, scratch);
        self.stats.count_decoded(&decoded);
        decoded?;
        for f in scratch.iter() {
            self.apply(f, wall_now_ms);
        }
        Ok(())
    }

    /// Applies one decoded flow and counts what became of it.
    pub fn apply(&self, flow: &Flow, wall_now_ms: i64) -> Outcome {
        let outcome = match self.prepare_inner(flow, wall_now_ms) {
            Ok(prepared) => self.update(prepared),
            Err(outcome) => outcome,
        };
        self.stats.count(outcome);
        outcome
    }

    /// The first half of [`Engine::apply`]: checks the flow's time, moves
    /// the event clock and classifies it. A flow that changes no endpoint
    /// is counted here and its outcome returned as the error; any other is
    /// returned for [`Engine::apply_prepared`], on this thread or on the
    /// one that owns its endpoint ([`Engine::owner`]).
    pub fn prepare(&self, flow: &Flow, wall_now_ms: i64) -> Result<Prepared, Outcome> {
        let prepared = self.prepare_inner(flow, wall_now_ms);
        if let Err(outcome) = prepared {
            self.stats.count(outcome);
        }
        prepared
    }

    /// The second half of [`Engine::apply`]: applies a prepared flow to its
    /// endpoint and counts what became of it.
    pub fn apply_prepared(&self, flow: Prepared) -> Outcome {
        let outcome = self.update(flow);
        self.stats.count(outcome);
        outcome
    }

    /// Which of `threads` ingest threads owns `flow`'s endpoint: each owns
    /// one contiguous range of the map's shards. Threads that apply only
    /// the flows they own never take each other's shard locks or endpoint
    /// states, whose cache lines would otherwise move between cores on
    /// almost every flow.
    pub fn owner(&self, flow: &Prepared, threads: usize) -> usize {
        self.endpoints.determine_map(&flow.endpoint) * threads.max(1) / ENDPOINT_SHARDS
    }

    fn prepare_inner(&self, flow: &Flow, wall_now_ms: i64) -> Result<Prepared, Outcome> {
        if flow.time_ms > wall_now_ms.saturating_add(self.settings.max_future_skew_ms) {
            return Err(Outcome::Rejected(RejectReason::Future));
        }
        let retention_ms = i64::from(self.settings.retention_days) * DAY_MS;
        let now = match self.settings.clock {
            Clock::Wall => wall_now_ms,
            Clock::Event => self.event_now_ms.load(Ordering::Acquire).max(flow.time_ms),
        };
        if flow.time_ms < now.saturating_sub(retention_ms) || flow.time_ms < 0 {
            return Err(Outcome::Rejected(RejectReason::TooOld));
        }
        if self.settings.clock == Clock::Event {
            // Written only when they change: every ingest thread reads these
            // for every flow, and a write (even of the same value) would
            // take the cache line away from all the others.
            if flow.time_ms > self.event_now_ms.load(Ordering::Acquire) {
                self.event_now_ms.fetch_max(flow.time_ms, Ordering::AcqRel);
            }
            if !self.seen_any.load(Ordering::Acquire) {
                self.seen_any.store(true, Ordering::Release);
            }
        }
        let payload = has_payload(flow);
        let (endpoint, sample, inbound) = match self.classifier.classify(flow, &self.catalog) {
            Verdict::Ignored(reason) => return Err(Outcome::Ignored(reason.into())),
            Verdict::Inbound(endpoint) => (
                endpoint,
                Sample {
                    in_bytes: flow.bytes,
                    payload,
                    ..Sample::default()
                },
                true,
            ),
            Verdict::Outbound { endpoint, evidence } => (
                endpoint,
                Sample {
                    out_bytes: flow.bytes,
                    evidence,
                    payload,
                    ..Sample::default()
                },
                false,
            ),
        };
        Ok(Prepared {
            endpoint,
            time_ms: flow.time_ms,
            hour: hour_of(flow.time_ms),
            sample,
            inbound,
            peer: if inbound {
                flow.src_addr
            } else {
                flow.dst_addr
            },
            label: flow.label.as_deref().map(|l| self.intern(l)),
        })
    }

    fn update(&self, flow: Prepared) -> Outcome {
        let Prepared {
            endpoint,
            time_ms,
            hour,
            sample,
            inbound,
            peer,
            label,
        } = flow;
        let vacant = match self.endpoints.entry(endpoint) {
            dashmap::Entry::Occupied(mut known) => {
                let state = known.get_mut();
                if !state.ever_open {
                    self.count_probe(endpoint, inbound);
                }
                self.touch(endpoint, state, time_ms, sample, peer, label);
                return Outcome::Applied;
            }
            dashmap::Entry::Vacant(vacant) => vacant,
        };
        // A new endpoint, its shard locked (no other thread can insert it
        // meanwhile): it needs room under the bounds first.
        self.count_probe(endpoint, inbound);
        let held =
            self.held.open.load(Ordering::Acquire) + self.held.pending.load(Ordering::Acquire);
        if held >= self.settings.max_endpoints {
            return Outcome::Ignored(stats::IgnoredReason::EndpointLimit);
        }
        let (counter, bound) = if sample.evidence {
            (&self.held.open, usize::MAX)
        } else {
            (&self.held.pending, self.settings.max_pending)
        };
        if !try_reserve(counter, bound) {
            return Outcome::Ignored(stats::IgnoredReason::PendingLimit);
        }
        if sample.evidence {
            self.count_new_exposure(endpoint, label.as_deref());
            self.count_open(endpoint, true);
        }
        let mut series = Series::default();
        series.add(hour, sample);
        self.resized(0, series.heap_bytes());
        let mut peers = Peers::default();
        peers.add(peer);
        let mut state = vacant.insert(Box::new(EndpointState {
            peers,
            series,
            label,
            ever_open: sample.evidence,
            recent: KeptRecent::default(),
            last_seen_s: 0,
            cover: 0,
            live: false,
            meta_slot: false,
        }));
        self.track(endpoint, &mut state, time_ms, sample.evidence, None);
        if sample.evidence {
            self.reindex(endpoint, &mut state, None, hour, sample);
        }
        Outcome::Applied
    }

    /// Applies a flow to a known endpoint (its shard locked): label,
    /// evidence, buckets, peers, and its share of the port index.
    fn touch(
        &self,
        endpoint: Endpoint,
        state: &mut EndpointState,
        time_ms: i64,
        sample: Sample,
        peer: std::net::IpAddr,
        label: Option<Arc<str>>,
    ) {
        let hour = hour_of(time_ms);
        // The label the endpoint was indexed under, when this flow changes it.
        let mut replaced = None;
        if let Some(label) = label {
            if !state
                .label
                .as_ref()
                .is_some_and(|current| Arc::ptr_eq(current, &label))
            {
                replaced = Some(state.label.replace(label));
            }
        }
        if sample.evidence && !state.ever_open {
            state.ever_open = true;
            self.held.pending.fetch_sub(1, Ordering::AcqRel);
            self.held.open.fetch_add(1, Ordering::AcqRel);
            self.count_new_exposure(endpoint, state.label.as_deref());
            self.count_open(endpoint, true);
        }
        self.track(endpoint, state, time_ms, sample.evidence, replaced.as_ref());
        let heap_before = state.series.heap_bytes();
        state.series.add(hour, sample);
        self.resized(heap_before, state.series.heap_bytes());
        state.peers.add(peer);
        if state.ever_open {
            self.reindex(endpoint, state, replaced.as_ref(), hour, sample);
        }
    }

    /// Brings an open endpoint's share of the port index up to date after
    /// `sample` was added at `hour`; `old_label` is the label it was indexed
    /// under if that changed. Called with the endpoint's shard locked.
    fn reindex(
        &self,
        endpoint: Endpoint,
        state: &mut EndpointState,
        old_label: Option<&Option<Arc<str>>>,
        hour: u32,
        sample: Sample,
    ) {
        let Some(target) = self.index.target() else {
            return;
        };
        let before = state.recent;
        let res = self.resolution_at(target);
        match state.recent.add(target, hour, sample, res) {
            // Mostly a flow only adds bytes: no window opens, no payload
            // flag or label changes. Then the bytes move, in place.
            Some(added) if !added.flags_changed && old_label.is_none() => {
                self.index
                    .add_bytes(endpoint.port, endpoint.proto, &state.label, &added.moved);
                return;
            }
            Some(_) => {}
            // Kept for another hour, or not yet: tally the series.
            None => state.recent.set(Recent::of(&state.series, target, res)),
        }
        let old = before.get();
        let new = state.recent.get().expect("set for the target hour");
        let old_label = old_label.unwrap_or(&state.label);
        let old_share = old
            .as_ref()
            .map(|recent| self.share(endpoint, old_label, recent));
        let new_share = self.share(endpoint, &state.label, &new);
        self.index
            .replace(endpoint.port, endpoint.proto, old_share, Some(new_share));
    }

    /// What an open endpoint with `label` and `recent` tallies adds to its
    /// port's sums.
    fn share<'a>(
        &self,
        endpoint: Endpoint,
        label: &'a Option<Arc<str>>,
        recent: &'a Recent,
    ) -> Share<'a> {
        Share {
            label,
            // As `Catalog::endpoint_service` decides `Unknown`.
            unknown: label.is_none() && !self.catalog.is_known(endpoint.port, endpoint.proto),
            tallies: &recent.tallies,
        }
    }

    /// Moves the port index to the windows of `hour`, unless it is there
    /// already: every open endpoint's share is recomputed (one walk of the
    /// state, shard by shard, ingest continuing meanwhile).
    pub fn refresh_port_index(&self, hour: u32) {
        let Some(refresh) = self.index.begin_refresh(hour) else {
            return;
        };
        let res = self.resolution_at(hour);
        for mut entry in self.endpoints.iter_mut() {
            let (endpoint, state) = entry.pair_mut();
            let old = state.recent.get();
            if !state.ever_open || old.is_some_and(|r| r.hour == hour) {
                continue;
            }
            let new = Recent::of(&state.series, hour, res);
            let old_share = old
                .as_ref()
                .map(|recent| self.share(*endpoint, &state.label, recent));
            let new_share = self.share(*endpoint, &state.label, &new);
            self.index
                .replace(endpoint.port, endpoint.proto, old_share, Some(new_share));
            state.recent.set(new);
        }
        refresh.finish();
    }

    /// Moves the port index to the hour holding "now", if it is elsewhere;
    /// the first call starts keeping it.
    pub fn keep_port_index_current(&self, wall_now_ms: i64) {
        self.refresh_port_index(hour_of(self.now_ms(wall_now_ms)));
    }

    /// The L7 labels of `port`/`proto`'s indexed endpoints, with how many
    /// carrying each are open in each window (see [`PortSums::labels`]).
    pub fn port_labels(&self, port: u16, proto: Protocol) -> SmallVec<[LabelCount; 1]> {
        self.index.labels(port, proto)
    }

    /// (port, protocol) pairs the port index holds sums for.
    pub fn indexed_ports(&self) -> usize {
        self.index.ports()
    }

    /// Calls `f` with the sums of every (port, protocol) over the windows of
    /// `hour` ([`index::recent_windows`]), bringing the index to that hour
    /// first. Returns false, having called `f` for nothing or for a part,
    /// only if another refresh moved the index meanwhile (the clock moved
    /// while reading); the caller then reads the state itself.
    pub fn read_port_index(&self, hour: u32, mut f: impl FnMut(u16, Protocol, &PortSums)) -> bool {
        if !self.index.is_ready(hour) {
            self.refresh_port_index(hour);
        }
        self.index.read(hour, &mut f)
    }

    fn count_probe(&self, endpoint: Endpoint, inbound: bool) {
        if inbound {
            self.probes[port_slot(endpoint.port, endpoint.proto)].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn risk_level(&self, endpoint: Endpoint, label: Option<&str>) -> usize {
        let service = self
            .catalog
            .endpoint_service(endpoint.port, endpoint.proto, label);
        usize::from(service.risk.risk_level.min(3))
    }

    fn count_new_exposure(&self, endpoint: Endpoint, label: Option<&str>) {
        self.new_exposures[self.risk_level(endpoint, label)].fetch_add(1, Ordering::Relaxed);
    }

    /// Endpoints that became open since start, by risk level (index 0..=3).
    /// An endpoint expired by retention and opened again counts again.
    pub fn new_exposures(&self) -> [u64; 4] {
        std::array::from_fn(|i| self.new_exposures[i].load(Ordering::Relaxed))
    }

    fn intern(&self, label: &str) -> Arc<str> {
        if let Some(found) = self.labels.get(label) {
            return found.clone();
        }
        self.labels
            .entry(label.into())
            .or_insert_with(|| Arc::from(label))
            .clone()
    }

    /// Inbound flows to `port`/`proto` that reached an endpoint which had
    /// not answered (yet): scans, and the first packets of real services.
    pub fn probes(&self, port: u16, proto: Protocol) -> u64 {
        self.probes[port_slot(port, proto)].load(Ordering::Relaxed)
    }

    /// Endpoints with response evidence (ever, within retention).
    pub fn open_endpoints(&self) -> usize {
        self.held.open.load(Ordering::Acquire)
    }

    /// Endpoints held that have not answered.
    pub fn pending_endpoints(&self) -> usize {
        self.held.pending.load(Ordering::Acquire)
    }

    /// Calls `f` for every endpoint, one shard locked (for reading) at a time.
    pub fn for_each(&self, mut f: impl FnMut(&Endpoint, &EndpointState)) {
        for entry in self.endpoints.iter() {
            f(entry.key(), entry.value());
        }
    }

    /// Rolls old hours into days and drops what is past retention; endpoints
    /// left with no traffic are removed.
    pub fn maintain(&self, wall_now_ms: i64) {
        let res = self.resolution(self.now_ms(wall_now_ms));
        self.endpoints.retain(|endpoint, state| {
            let heap_before = state.series.heap_bytes();
            state.series.compact(res);
            self.resized(heap_before, state.series.heap_bytes());
            if !state.series.is_empty() {
                return true;
            }
            self.resized(state.series.heap_bytes(), 0);
            self.track_removal(*endpoint, state);
            if let Some(recent) = state.recent.take() {
                let share = self.share(*endpoint, &state.label, &recent);
                self.index
                    .replace(endpoint.port, endpoint.proto, Some(share), None);
            }
            let counter = if state.ever_open {
                self.count_open(*endpoint, false);
                &self.held.open
            } else {
                &self.held.pending
            };
            counter.fetch_sub(1, Ordering::AcqRel);
            false
        });
        // Once queries use the index, keep it on the current hour so the
        // first query of an hour does not pay for moving it.
        if self.index.target().is_some() {
            self.keep_port_index_current(wall_now_ms);
        }
    }

    /// Approximate bytes the endpoint states hold (the sum of their
    /// [`EndpointState::approx_bytes`]), kept as they change.
    pub fn state_bytes(&self) -> usize {
        let endpoints = self.open_endpoints() + self.pending_endpoints();
        endpoints * EndpointState::FIXED_BYTES + self.held.series_heap.load(Ordering::Relaxed)
    }

    /// Counts an endpoint in (or, with `open` false, out of) the open
    /// endpoints of its port.
    fn count_open(&self, endpoint: Endpoint, open: bool) {
        let count = &self.open_by_port[port_slot(endpoint.port, endpoint.proto)];
        if open {
            count.fetch_add(1, Ordering::Relaxed);
        } else {
            count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Notes that an endpoint's buckets went from `before` to `after` heap bytes.
    fn resized(&self, before: usize, after: usize) {
        if after > before {
            self.held
                .series_heap
                .fetch_add(after - before, Ordering::Relaxed);
        } else if before > after {
            self.held
                .series_heap
                .fetch_sub(before - after, Ordering::Relaxed);
        }
    }
}

/// The counts of endpoints held.
#[derive(Debug, Default)]
struct Held {
    /// Endpoints with response evidence.
    open: AtomicUsize,
    /// Endpoints without response evidence yet.
    pending: AtomicUsize,
    /// Heap bytes of every endpoint's buckets ([`Series::heap_bytes`]).
    series_heap: AtomicUsize,
}

/// A value on cache lines of its own. For what ingest threads write often
/// (the held counts, for each new endpoint: a fifth of the flows in the
/// benchmarks' mix; the event clock): sharing a line with what every flow
/// only reads (the map's shard table and hasher, the classifier) would take
/// that line from the other cores at every write.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// Takes one slot in `counter` if it is below `bound`.
fn try_reserve(counter: &AtomicUsize, bound: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < bound).then_some(n + 1)
        })
        .is_ok()
}

/// Slots of per-(port, protocol) tables: every port, TCP and UDP.
const PORT_SLOTS: usize = 65536 * 2;

/// The slot of `port`/`proto` in per-(port, protocol) tables.
fn port_slot(port: u16, proto: Protocol) -> usize {
    usize::from(port) * 2 + usize::from(proto == Protocol::Udp)
}

/// The (port, protocol) of a slot; the inverse of [`port_slot`].
fn slot_port(slot: usize) -> (u16, Protocol) {
    let proto = if slot.is_multiple_of(2) {
        Protocol::Tcp
    } else {
        Protocol::Udp
    };
    ((slot / 2) as u16, proto)
}

/// The wall clock in UNIX ms.
pub fn wall_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Hours since the epoch of a UNIX ms time (clamped at 0).
pub fn hour_of(time_ms: i64) -> u32 {
    (time_ms.max(0) / HOUR_MS).min(u32::MAX as i64) as u32
}

fn has_payload(flow: &Flow) -> bool {
    flow.bytes > PAYLOAD_BYTES_PER_PACKET.saturating_mul(flow.packets.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the map's tables hold per endpoint: key and pointer, two to a
    /// cache line. A bigger slot would make lookups miss the cache more
    /// and empty slots cost more after a table doubles.
    #[test]
    fn a_map_slot_is_32_bytes() {
        assert_eq!(std::mem::size_of::<(Endpoint, Box<EndpointState>)>(), 32);
    }

    #[test]
    fn every_port_and_protocol_has_its_own_slot_and_back() {
        let mut seen = vec![false; PORT_SLOTS];
        for port in [0, 1, 443, 65535] {
            for proto in [Protocol::Tcp, Protocol::Udp] {
                let slot = port_slot(port, proto);
                assert!(!seen[slot]);
                seen[slot] = true;
                assert_eq!(slot_port(slot), (port, proto));
            }
        }
    }
}
