//! The changelog topic (`<group_id>-changelog`): the state of each
//! partition of the routing topic as cells, so that a new owner restores a
//! partition and every instance mirrors the whole group's state, exactly,
//! without broker transactions.
//!
//! ## Cells
//!
//! A partition's state is cut into cells, each a compacted record of its
//! own: an endpoint's fields other than its buckets, an endpoint's buckets
//! of one UTC day (hours older than 48 are merged into their day, so a day
//! is the unit that stays put), and the inbound probes of one port. A
//! cell's value is absolute: applying it sets the cell, so a record read
//! twice changes nothing.
//!
//! ## Generations, claims and fencing
//!
//! Each owner of a partition writes under a generation of its own, part of
//! every key it writes. A new owner takes over in four steps:
//!
//! 1. it reads the partition to its end;
//! 2. it writes a *claim* of the next generation (one above every
//!    generation read or claimed) and reads on until it reads its own claim
//!    back. A claim is refused if a claim of its generation or a newer one
//!    was read first, and its writer claims again above it. Claims change
//!    nothing for readers: they give each generation a single writer;
//! 3. it writes its whole state again, as one flush, under its generation.
//!    When that flush's marker is read, the generation becomes the one
//!    readers apply: its cells replace the partition's whole state (the
//!    endpoints, days and probes it does not hold go), and every record of
//!    an older generation after it is stale and ignored;
//! 4. once that flush is delivered, it deletes (with tombstones) every key
//!    of an older generation that it read.
//!
//! Until step 3 closes, the previous owner's flushes still count: a new
//! owner that dies after claiming loses nothing, and if the previous owner
//! (not knowing it lost the partition, a zombie) flushes on meanwhile, the
//! new owner's state replaces what those flushes added, and it counts
//! those flows again from its marker's offsets. As every owner writes
//! under keys of its own generation, compaction drops only records that a
//! newer record of the same generation, or a newer generation's whole
//! state, has replaced.
//!
//! ## Markers and slots
//!
//! The owner writes the cells changed since its last flush, then a closing
//! marker carrying the next offset of the routing partition to count, the
//! partition's event clock and the highest source position applied per
//! source partition ([`super::replay::Applied`]). A flush counts only once
//! its marker is written: records after the last marker belong to a flush
//! that may never close (the owner died), and are held back until a marker
//! closes them.
//!
//! A crash mid-flush must not destroy the last closed value of a cell
//! that compaction might then drop. So within a generation each cell has
//! two keys, slots 0 and 1, and a flush writes a cell in the slot that
//! does not hold its last written value. After any closed marker, the
//! last record of each cell (either slot) up to it is valid, and a reader
//! that applies the last record of each cell once a marker closes it holds
//! exactly the state the marker's offsets describe. The next owner
//! rewrites everything under a new generation, so an unclosed flush's
//! cells are never applied once its first flush has closed.
//!
//! ## Records
//!
//! ```text
//! key    kind u8 (1 fields, 2 day, 3 probes, 4 marker, 5 claim),
//!        generation varint, then for a claim the claimant's nonce u64 BE,
//!        for a cell: slot u8, and the endpoint
//!        (family u8 4/6, address, port u16 BE, protocol number u8) and for
//!        a day its first hour u32 BE, or the port slot u32 BE of probes
//! value  empty: a tombstone (the key was rewritten under a newer
//!        generation); else version u8 = 2, then
//!        fields: held u8; if held: open u8, last seen s varint,
//!                peers 65 bytes, label (u8 0/1, then varint length + UTF-8)
//!        day:    the buckets (u32 LE count, 20 bytes each, as a checkpoint)
//!        probes: count varint
//!        marker: next offset varint, clock ms zigzag varint, seen any u8,
//!                source positions (count varint; topic, partition,
//!                offset, index each)
//!        claim:  nothing more
//! ```

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use smallvec::SmallVec;

use super::replay::Applied;
use super::routed::SourcePosition;
use super::wire::{put_str, put_varint, unzigzag, zigzag, Reader as Wire, WireError};
use crate::catalog::Protocol;
use crate::classify::Endpoint;
use crate::state::series::day_start;
use crate::state::{DayCell, Engine, Meta, MetaChange, Peers, Series};

/// The only version written and read.
const VERSION: u8 = 2;
const FIELDS: u8 = 1;
const DAY: u8 = 2;
const PROBES: u8 = 3;
const MARKER: u8 = 4;
const CLAIM: u8 = 5;
/// What a changelog record's key names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cell {
    /// An endpoint's fields other than its buckets.
    Fields(Endpoint),
    /// An endpoint's buckets of the UTC day starting at this hour.
    Day(Endpoint, u32),
    /// Inbound flows to unanswered endpoints of a port slot
    /// (`port * 2 + protocol`).
    Probes(u32),
}

/// What a cell's record holds.
#[derive(Clone, Debug)]
pub enum Body {
    /// `None`: the endpoint is not held.
    Fields(Option<Meta>),
    Day(Series),
    Probes(u64),
}

/// A flush's closing record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    /// The generation of the owner that wrote it.
    pub generation: u64,
    /// The next offset of the routing partition to count.
    pub next_offset: i64,
    /// The partition's event clock (UNIX ms) and whether it saw a flow.
    pub clock_ms: i64,
    pub seen_any: bool,
    /// The highest source position applied per source partition.
    pub applied: Vec<SourcePosition>,
}

/// One changelog record, read: its generation (from the key) and what it
/// holds.
#[derive(Clone, Debug)]
pub enum Entry {
    Cell {
        cell: Cell,
        slot: bool,
        generation: u64,
        body: Body,
    },
    Marker(Marker),
    /// A new owner's claim of the partition: `nonce` tells the claimant
    /// its own claim when it reads it back.
    Claim {
        generation: u64,
        nonce: u64,
    },
    /// A deleted key (of an older generation than its writer's).
    Tombstone,
}

/// Why a changelog record could not be read. The topic is written only by
/// `exposure` itself, so any of these means another producer, another
/// version, or a damaged record.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChangelogError {
    #[error("changelog record key: {0}")]
    Key(&'static str),
    #[error(
        "changelog record version {0} is not {VERSION} (written by another version of exposure; \
         delete the changelog topic and let the instances restore it from the routing topic's \
         retention, or run the version that wrote it)"
    )]
    Version(u8),
    #[error("changelog record value: {0}")]
    Wire(#[from] WireError),
    #[error("changelog record value: {0}")]
    Value(&'static str),
    #[error("changelog record has {0} bytes after its end")]
    Trailing(usize),
}

/// A changelog record as written: key and value (empty for a tombstone).
pub type Record = (Vec<u8>, Vec<u8>);

/// The key of `cell` in `slot`, in `generation`.
pub fn cell_key(generation: u64, cell: &Cell, slot: bool) -> Vec<u8> {
    let mut key = Vec::with_capacity(32);
    let kind = match cell {
        Cell::Fields(_) => FIELDS,
        Cell::Day(..) => DAY,
        Cell::Probes(_) => PROBES,
    };
    key.push(kind);
    put_varint(&mut key, generation);
    key.push(u8::from(slot));
    match cell {
        Cell::Fields(endpoint) => put_endpoint(&mut key, endpoint),
        Cell::Day(endpoint, day) => {
            put_endpoint(&mut key, endpoint);
            key.extend_from_slice(&day.to_be_bytes());
        }
        Cell::Probes(slot) => key.extend_from_slice(&slot.to_be_bytes()),
    }
    key
}

/// The key of every marker of a generation (compaction keeps the last).
pub fn marker_key(generation: u64) -> Vec<u8> {
    let mut key = vec![MARKER];
    put_varint(&mut key, generation);
    key
}

/// The record of a claim of `generation`.
pub fn claim_record(generation: u64, nonce: u64) -> Record {
    let mut key = vec![CLAIM];
    put_varint(&mut key, generation);
    key.extend_from_slice(&nonce.to_be_bytes());
    (key, vec![VERSION])
}

fn put_endpoint(out: &mut Vec<u8>, endpoint: &Endpoint) {
    match endpoint.ip {
        IpAddr::V4(a) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out.push(6);
            out.extend_from_slice(&a.octets());
        }
    }
    out.extend_from_slice(&endpoint.port.to_be_bytes());
    out.push(endpoint.proto.number());
}

/// The value of a cell's record.
pub fn cell_value(body: &Body) -> Vec<u8> {
    let mut out = vec![VERSION];
    match body {
        Body::Fields(None) => out.push(0),
        Body::Fields(Some(meta)) => {
            out.extend_from_slice(&[1, u8::from(meta.ever_open)]);
            put_varint(&mut out, u64::from(meta.last_seen_s));
            out.extend_from_slice(&meta.peers.to_bytes());
            match &meta.label {
                Some(label) => {
                    out.push(1);
                    put_str(&mut out, label);
                }
                None => out.push(0),
            }
        }
        Body::Day(buckets) => buckets.encode(&mut out),
        Body::Probes(n) => put_varint(&mut out, *n),
    }
    out
}

/// The value of a marker's record (its generation is in its key).
pub fn marker_value(marker: &Marker) -> Vec<u8> {
    let mut out = vec![VERSION];
    put_varint(&mut out, marker.next_offset.max(0) as u64);
    put_varint(&mut out, zigzag(marker.clock_ms));
    out.push(u8::from(marker.seen_any));
    put_varint(&mut out, marker.applied.len() as u64);
    for p in &marker.applied {
        put_str(&mut out, &p.topic);
        put_varint(&mut out, u64::from(p.partition.max(0) as u32));
        put_varint(&mut out, p.offset.max(0) as u64);
        put_varint(&mut out, u64::from(p.index));
    }
    out
}

/// The generation a changelog key names.
pub fn key_generation(key: &[u8]) -> Result<u64, ChangelogError> {
    let mut k = Wire::new(key);
    k.u8("kind")?;
    Ok(k.varint("generation")?)
}

/// Reads a changelog record.
pub fn decode(key: &[u8], value: &[u8]) -> Result<Entry, ChangelogError> {
    let mut k = Wire::new(key);
    let kind = k.u8("kind").map_err(|_| ChangelogError::Key("empty"))?;
    if !(FIELDS..=CLAIM).contains(&kind) {
        return Err(ChangelogError::Key("unknown kind"));
    }
    let generation = k.varint("generation")?;
    if value.is_empty() {
        return Ok(Entry::Tombstone);
    }
    let mut v = Wire::new(value);
    let version = v.u8("version")?;
    if version != VERSION {
        return Err(ChangelogError::Version(version));
    }
    let entry = match kind {
        MARKER => {
            if k.left() != 0 {
                return Err(ChangelogError::Key("longer than its generation"));
            }
            Entry::Marker(read_marker(generation, &mut v)?)
        }
        CLAIM => {
            let nonce = u64::from_be_bytes(k.take::<8>("nonce")?);
            if k.left() != 0 {
                return Err(ChangelogError::Key("longer than its nonce"));
            }
            Entry::Claim { generation, nonce }
        }
        _ => {
            let slot = match k.u8("slot")? {
                0 => false,
                1 => true,
                _ => return Err(ChangelogError::Key("slot is not 0 or 1")),
            };
            let cell = match kind {
                FIELDS => Cell::Fields(read_endpoint(&mut k)?),
                DAY => {
                    let endpoint = read_endpoint(&mut k)?;
                    let day = u32::from_be_bytes(k.take::<4>("day")?);
                    if day_start(day) != day {
                        return Err(ChangelogError::Key("day is not the first hour of a day"));
                    }
                    Cell::Day(endpoint, day)
                }
                _ => {
                    let slot = u32::from_be_bytes(k.take::<4>("port slot")?);
                    if !crate::state::is_port_slot(slot) {
                        return Err(ChangelogError::Key("port slot out of range"));
                    }
                    Cell::Probes(slot)
                }
            };
            if k.left() != 0 {
                return Err(ChangelogError::Key("longer than its cell"));
            }
            let body = match cell {
                Cell::Fields(_) => Body::Fields(read_fields(&mut v)?),
                Cell::Day(_, day) => Body::Day(read_day(day, &mut v)?),
                Cell::Probes(_) => Body::Probes(v.varint("probes")?),
            };
            Entry::Cell {
                cell,
                slot,
                generation,
                body,
            }
        }
    };
    if v.left() != 0 {
        return Err(ChangelogError::Trailing(v.left()));
    }
    Ok(entry)
}

fn read_endpoint(k: &mut Wire) -> Result<Endpoint, ChangelogError> {
    let ip = match k.u8("address family")? {
        4 => IpAddr::V4(Ipv4Addr::from(k.take::<4>("address")?)),
        6 => IpAddr::V6(Ipv6Addr::from(k.take::<16>("address")?)),
        _ => return Err(ChangelogError::Key("address family is not 4 or 6")),
    };
    let port = u16::from_be_bytes(k.take::<2>("port")?);
    let proto = Protocol::from_number(k.u8("protocol")?)
        .ok_or(ChangelogError::Key("protocol is not TCP or UDP"))?;
    Ok(Endpoint { ip, port, proto })
}

fn read_fields(v: &mut Wire) -> Result<Option<Meta>, ChangelogError> {
    if v.u8("held")? == 0 {
        return Ok(None);
    }
    let ever_open = v.u8("open")? != 0;
    let last_seen_s =
        u32::try_from(v.varint("last seen")?).map_err(|_| WireError::OutOfRange("last seen"))?;
    let peers =
        Peers::from_bytes(v.take::<65>("peers")?).ok_or(ChangelogError::Value("bad peers"))?;
    let label = match v.u8("label")? {
        0 => None,
        _ => Some(v.str("label")?.into()),
    };
    Ok(Some(Meta {
        label,
        ever_open,
        peers,
        last_seen_s,
    }))
}

fn read_day(day: u32, v: &mut Wire) -> Result<Series, ChangelogError> {
    let all = v.rest();
    let mut rest = all;
    let buckets = Series::decode(&mut rest).map_err(ChangelogError::Value)?;
    v.advance(all.len() - rest.len());
    if buckets.days().any(|d| d != day) {
        return Err(ChangelogError::Value("a bucket outside its day"));
    }
    Ok(buckets)
}

fn read_marker(generation: u64, v: &mut Wire) -> Result<Marker, ChangelogError> {
    let next_offset = i64::try_from(v.varint("next offset")?)
        .map_err(|_| WireError::OutOfRange("next offset"))?;
    let clock_ms = unzigzag(v.varint("clock")?);
    let seen_any = v.u8("seen any")? != 0;
    let n = v.varint("source count")?;
    let mut applied = Vec::new();
    for _ in 0..n {
        let topic = v.str("source topic")?.to_owned();
        let partition = i32::try_from(v.varint("source partition")?)
            .map_err(|_| WireError::OutOfRange("source partition"))?;
        let offset = i64::try_from(v.varint("source offset")?)
            .map_err(|_| WireError::OutOfRange("source offset"))?;
        let index = u32::try_from(v.varint("source index")?)
            .map_err(|_| WireError::OutOfRange("source index"))?;
        applied.push(SourcePosition {
            topic,
            partition,
            offset,
            index,
        });
    }
    Ok(Marker {
        generation,
        next_offset,
        clock_ms,
        seen_any,
        applied,
    })
}

/// The counting side of one partition: what changed since the last flush,
/// and the next flush's records.
#[derive(Debug)]
pub struct Flusher {
    generation: u64,
    /// Endpoints with flows applied since the last flush, and the days
    /// those flows fell in.
    dirty: HashMap<Endpoint, SmallVec<[u32; 2]>>,
    /// Probes per port slot as last written, and the slot written.
    probes: HashMap<u32, (u64, bool)>,
}

impl Flusher {
    /// The generation this flusher writes under.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Notes that a flow falling in `hour` was applied to `endpoint`.
    pub fn touched(&mut self, endpoint: Endpoint, hour: u32) {
        let day = day_start(hour);
        let days = self.dirty.entry(endpoint).or_default();
        if !days.contains(&day) {
            days.push(day);
        }
    }

    /// Notes every cell `engine` holds as changed, so that the next flush
    /// writes the whole state.
    fn touch_all(&mut self, engine: &Engine) {
        engine.for_each(|endpoint, state| {
            self.dirty.insert(*endpoint, state.series.days().collect());
        });
        self.probes.clear();
    }

    /// Appends the records of one flush to `out`: the cells changed in
    /// `engine` (the partition's state) since the last flush, then the
    /// closing marker with `next_offset` and `applied`. Nothing is written
    /// for an endpoint that is no longer held (retention dropped it; the
    /// readers' own maintenance drops it too). The flush counts once every
    /// record is written; a flush that fails to write must not be followed
    /// by another from this state (restore the partition instead).
    pub fn flush(
        &mut self,
        engine: &Engine,
        next_offset: i64,
        applied: &Applied,
        out: &mut Vec<Record>,
    ) -> Marker {
        let generation = self.generation;
        let mut cell = |cell: Cell, slot: bool, body: Body| {
            out.push((cell_key(generation, &cell, slot), cell_value(&body)));
        };
        for (endpoint, days) in self.dirty.drain() {
            if let Some(((meta, slot), cells)) = engine.cells_to_write(&endpoint, &days) {
                cell(Cell::Fields(endpoint), slot, Body::Fields(Some(meta)));
                for DayCell { day, buckets, slot } in cells {
                    cell(Cell::Day(endpoint, day), slot, Body::Day(buckets));
                }
            }
        }
        for (port, n) in engine.probe_slots() {
            let written = self.probes.entry(port).or_insert((0, true));
            if written.0 != n {
                written.1 = !written.1;
                written.0 = n;
                cell(Cell::Probes(port), written.1, Body::Probes(n));
            }
        }
        let (clock_ms, seen_any) = engine.event_clock();
        let marker = Marker {
            generation,
            next_offset,
            clock_ms,
            seen_any,
            applied: applied.positions().collect(),
        };
        out.push((marker_key(generation), marker_value(&marker)));
        marker
    }
}

/// What reading one changelog record did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// A cell, held until a marker closes it.
    Held,
    /// A marker: the cells it closes were applied (for a generation's
    /// first, in place of the partition's whole state).
    Closed,
    /// A claim, refused when a claim or a record of its generation or a
    /// newer one was read before it.
    Claim { nonce: u64, accepted: bool },
    /// A cell or marker of a generation older than the one applied:
    /// ignored.
    Stale,
    /// A tombstone: nothing to apply.
    Deleted,
}

/// Cells read and not yet closed by a marker: the last record of each.
type Pending = HashMap<Cell, (bool, Body)>;

/// Reads one changelog partition in offset order into an engine: the
/// restore of a new owner, and the replica every instance keeps.
#[derive(Debug, Default)]
pub struct Reader {
    /// The generation whose flushes are applied: the newest whose first
    /// flush (its owner's whole state) has closed.
    current: u64,
    /// The newest generation claimed or written.
    newest: u64,
    /// The current generation's cells since its last marker.
    pending: Pending,
    /// Newer generations' cells, before their first marker: each its
    /// owner's whole state, replacing the partition's when it closes.
    rewrites: HashMap<u64, Pending>,
    /// Probes per port slot as applied, and their slot.
    probes: HashMap<u32, (u64, bool)>,
    /// The endpoints applied from this partition.
    endpoints: HashSet<Endpoint, ahash::RandomState>,
    marker: Option<Marker>,
    stale: u64,
    /// A restoring owner's: every key read and not deleted since.
    keys: Option<HashSet<Box<[u8]>, ahash::RandomState>>,
}

impl Reader {
    /// A replica's reader.
    pub fn new() -> Self {
        Reader::default()
    }

    /// A restoring owner's reader: it also keeps the keys it reads, to
    /// delete them once its own generation holds their state
    /// ([`Reader::obsolete`]).
    pub fn for_restore() -> Self {
        Reader {
            keys: Some(HashSet::default()),
            ..Reader::default()
        }
    }

    /// Reads one record; on a marker, applies to `engine` the cells it
    /// closes. A stale record (of a generation older than the one
    /// applied) is counted and ignored.
    pub fn read(
        &mut self,
        engine: &Engine,
        key: &[u8],
        value: &[u8],
    ) -> Result<Read, ChangelogError> {
        let entry = decode(key, value)?;
        if let Some(keys) = self.keys.as_mut() {
            if matches!(entry, Entry::Tombstone) {
                keys.remove(key);
            } else if !keys.contains(key) {
                keys.insert(key.into());
            }
        }
        let generation = match &entry {
            Entry::Tombstone => return Ok(Read::Deleted),
            &Entry::Claim { generation, nonce } => {
                let accepted = generation > self.newest;
                if accepted {
                    self.newest = generation;
                } else {
                    self.stale += 1;
                }
                return Ok(Read::Claim { nonce, accepted });
            }
            Entry::Cell { generation, .. } => *generation,
            Entry::Marker(marker) => marker.generation,
        };
        if generation < self.current {
            self.stale += 1;
            return Ok(Read::Stale);
        }
        self.newest = self.newest.max(generation);
        match entry {
            Entry::Cell {
                cell, slot, body, ..
            } => {
                let pending = if generation == self.current {
                    &mut self.pending
                } else {
                    self.rewrites.entry(generation).or_default()
                };
                pending.insert(cell, (slot, body));
                Ok(Read::Held)
            }
            Entry::Marker(marker) => {
                let whole = generation > self.current;
                if whole {
                    self.replace(generation);
                }
                self.apply(engine, whole);
                engine.mirror_clock(marker.clock_ms, marker.seen_any);
                self.marker = Some(marker);
                Ok(Read::Closed)
            }
            Entry::Claim { .. } | Entry::Tombstone => unreachable!("returned above"),
        }
    }

    /// Makes `generation` the one applied: its cells, read since it
    /// began, are its owner's whole state, so what the partition holds
    /// beyond them goes. The older generation's unclosed cells can no
    /// longer close.
    fn replace(&mut self, generation: u64) {
        self.current = generation;
        self.pending = self.rewrites.remove(&generation).unwrap_or_default();
        self.rewrites.retain(|&g, _| g > generation);
        let pending = &mut self.pending;
        for endpoint in &self.endpoints {
            pending
                .entry(Cell::Fields(*endpoint))
                .or_insert((false, Body::Fields(None)));
        }
        for &port in self.probes.keys() {
            pending
                .entry(Cell::Probes(port))
                .or_insert((false, Body::Probes(0)));
        }
    }

    /// Applies the pending cells to `engine`; `whole`: they are the
    /// partition's whole state, each endpoint's days all it holds.
    fn apply(&mut self, engine: &Engine, whole: bool) {
        let mut endpoints: HashMap<Endpoint, (MetaChange, Vec<DayCell>)> = HashMap::new();
        for (cell, (slot, body)) in self.pending.drain() {
            match (cell, body) {
                (Cell::Fields(endpoint), Body::Fields(meta)) => {
                    endpoints
                        .entry(endpoint)
                        .or_insert((MetaChange::Keep, Vec::new()))
                        .0 = match meta {
                        Some(meta) => MetaChange::Set(meta, slot),
                        None => MetaChange::Remove,
                    }
                }
                (Cell::Day(endpoint, day), Body::Day(buckets)) => endpoints
                    .entry(endpoint)
                    .or_insert((MetaChange::Keep, Vec::new()))
                    .1
                    .push(DayCell { day, buckets, slot }),
                (Cell::Probes(port), Body::Probes(n)) => {
                    let before = match n {
                        0 => self.probes.remove(&port),
                        _ => self.probes.insert(port, (n, slot)),
                    };
                    let before = before.map_or(0, |(n, _)| n);
                    engine.mirror_probes(port, n as i64 - before as i64);
                }
                _ => unreachable!("decode pairs each cell with its body"),
            }
        }
        for (endpoint, (meta, days)) in endpoints {
            if matches!(meta, MetaChange::Remove) {
                self.endpoints.remove(&endpoint);
            } else {
                self.endpoints.insert(endpoint);
            }
            engine.mirror(endpoint, meta, &days, whole);
        }
    }

    /// The generation applied.
    pub fn generation(&self) -> u64 {
        self.current
    }

    /// The record of a claim of the next generation, above every one read.
    pub fn claim(&self, nonce: u64) -> Record {
        claim_record(self.newest + 1, nonce)
    }

    /// The last marker read: where counting resumes.
    pub fn marker(&self) -> Option<&Marker> {
        self.marker.as_ref()
    }

    /// Records ignored as stale.
    pub fn stale(&self) -> u64 {
        self.stale
    }

    /// Cells read that no marker closed (yet).
    pub fn unclosed(&self) -> usize {
        self.pending.len() + self.rewrites.values().map(HashMap::len).sum::<usize>()
    }

    /// Tombstones for every key read (and not deleted since) of a
    /// generation older than the newest read: a restoring owner's, once
    /// it has rewritten their state under its claimed generation. None
    /// for a replica's reader.
    pub fn obsolete(&self) -> Vec<Record> {
        self.keys
            .iter()
            .flatten()
            .filter(|key| key_generation(key).is_ok_and(|g| g < self.newest))
            .map(|key| (key.to_vec(), Vec::new()))
            .collect()
    }

    /// The flusher of the owner whose accepted claim this reader read
    /// last: its first flush writes the whole state of `engine` (which
    /// this reader restored) under the claimed generation.
    pub fn into_flusher(self, engine: &Engine) -> Flusher {
        let mut flusher = Flusher {
            generation: self.newest,
            dirty: HashMap::new(),
            probes: HashMap::new(),
        };
        flusher.touch_all(engine);
        flusher
    }
}

#[cfg(test)]
mod tests;
