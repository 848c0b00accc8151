//! Checkpoints: the engine's state and the next offset of every partition,
//! written together, atomically, in a versioned format with a checksum
//! (`docs/operations.md#the-checkpoint-file`).
//!
//! A file is `checkpoint-<sequence>.bin` in `state.dir`, written as a
//! temporary file, fsynced, renamed, and the directory fsynced. The newest
//! [`KEEP`] are kept. On start the newest readable one is restored; an
//! unreadable newest file falls back to the one before it, loudly; when
//! files exist and none is readable, the engine stops with an error naming
//! each file and what is wrong with it. It never silently starts empty.
//!
//! Layout (little-endian):
//!
//! ```text
//! magic "EXPOSCKP" | version u32 | body length u64 | body CRC-32 u32 | body
//! body: created_ms i64 | event_now_ms i64 | seen_any u8
//!       | offsets: u32 count, then (topic: u16 len + UTF-8, partition i32, next offset i64)
//!       | endpoints: u64 count, then (family u8 4|6, address, port u16, proto u8,
//!         ever_open u8, label: u16 len + UTF-8 (0xFFFF: none), peers: mode u8 + 64 bytes,
//!         series, last_seen_s u32, cover u32, live u8)
//!       | probes: u32 count, then (index u32, count u64)
//!       | changes: next Seq u64, u32 count, then (u32 len + the event's JSON line)
//! ```
//!
//! Version 1 (without the three fields after the series and without the
//! changes) is still read: an endpoint's change tracking is then derived
//! from its series, and the event log starts at `Seq` 1.

use std::fs::{self, File};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{EndpointState, Engine, Peers, Series};
use crate::catalog::Protocol;
use crate::changes::events::Event;
use crate::classify::Endpoint;

const MAGIC: &[u8; 8] = b"EXPOSCKP";
/// The format version this build writes and reads.
pub const VERSION: u32 = 2;
/// The oldest format version this build still reads.
const OLDEST_VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8 + 4;
/// Checkpoint files kept; older ones are removed after a successful write.
pub const KEEP: usize = 3;
const NO_LABEL: u16 = u16::MAX;

/// The next offset to apply of one partition, as checkpointed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionOffset {
    pub topic: Arc<str>,
    pub partition: i32,
    pub next_offset: i64,
}

/// Why a checkpoint file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not a checkpoint (bad magic bytes)")]
    BadMagic { path: PathBuf },
    #[error(
        "{path}: format version {found}, this build reads versions {OLDEST_VERSION} to {VERSION}"
    )]
    Version { path: PathBuf, found: u32 },
    #[error("{path}: truncated: {what}")]
    Truncated { path: PathBuf, what: &'static str },
    #[error("{path}: checksum mismatch (stored {stored:08x}, computed {computed:08x}): the file is corrupt")]
    Checksum {
        path: PathBuf,
        stored: u32,
        computed: u32,
    },
    #[error("{path}: corrupt: {what}")]
    Corrupt { path: PathBuf, what: &'static str },
    #[error("no usable checkpoint in {dir}:\n  {}", .problems.join("\n  "))]
    NoneUsable { dir: PathBuf, problems: Vec<String> },
}

/// Encodes the engine's state and `offsets` as a complete checkpoint file.
/// The caller makes sure no flow is applied meanwhile (a consistent cut).
pub fn encode(engine: &Engine, offsets: &[PartitionOffset], created_ms: i64) -> Vec<u8> {
    let mut body = Vec::with_capacity(64 + engine.endpoints.len() * 64);
    body.extend_from_slice(&created_ms.to_le_bytes());
    body.extend_from_slice(&engine.event_now_ms.load(Ordering::Acquire).to_le_bytes());
    body.push(u8::from(engine.seen_any.load(Ordering::Acquire)));
    body.extend_from_slice(&(offsets.len() as u32).to_le_bytes());
    for o in offsets {
        put_str(&mut body, &o.topic);
        body.extend_from_slice(&o.partition.to_le_bytes());
        body.extend_from_slice(&o.next_offset.to_le_bytes());
    }
    // The count goes first; fill it in after the walk.
    let count_at = body.len();
    body.extend_from_slice(&0u64.to_le_bytes());
    let mut count = 0u64;
    engine.for_each(|endpoint, state| {
        count += 1;
        match endpoint.ip {
            IpAddr::V4(a) => {
                body.push(4);
                body.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                body.push(6);
                body.extend_from_slice(&a.octets());
            }
        }
        body.extend_from_slice(&endpoint.port.to_le_bytes());
        body.push(endpoint.proto.number());
        body.push(u8::from(state.ever_open));
        match &state.label {
            Some(label) => put_str(&mut body, label),
            None => body.extend_from_slice(&NO_LABEL.to_le_bytes()),
        }
        body.extend_from_slice(&state.peers.to_bytes());
        state.series.encode(&mut body);
        body.extend_from_slice(&state.last_seen_s.to_le_bytes());
        body.extend_from_slice(&state.cover.to_le_bytes());
        body.push(u8::from(state.live));
    });
    body[count_at..count_at + 8].copy_from_slice(&count.to_le_bytes());
    let probes: Vec<(u32, u64)> = engine
        .probes
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let n = p.load(Ordering::Relaxed);
            (n > 0).then_some((i as u32, n))
        })
        .collect();
    body.extend_from_slice(&(probes.len() as u32).to_le_bytes());
    for (i, n) in probes {
        body.extend_from_slice(&i.to_le_bytes());
        body.extend_from_slice(&n.to_le_bytes());
    }
    let (next_seq, events) = engine
        .changes()
        .map_or((1, Vec::new()), |log| log.snapshot());
    body.extend_from_slice(&next_seq.to_le_bytes());
    body.extend_from_slice(&(events.len() as u32).to_le_bytes());
    for event in &events {
        let line = event.to_json_line();
        body.extend_from_slice(&(line.len() as u32).to_le_bytes());
        body.extend_from_slice(line.as_bytes());
    }
    let mut file = Vec::with_capacity(HEADER_LEN + body.len());
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&VERSION.to_le_bytes());
    file.extend_from_slice(&(body.len() as u64).to_le_bytes());
    file.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    file.extend_from_slice(&body);
    file
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = s.len().min(NO_LABEL as usize - 1);
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..len]);
}

/// A checkpoint read and checked, not yet applied.
pub struct Decoded {
    pub event_now_ms: i64,
    pub seen_any: bool,
    pub offsets: Vec<PartitionOffset>,
    pub endpoints: Vec<(Endpoint, EndpointState)>,
    pub probes: Vec<(u32, u64)>,
    /// The endpoints' change tracking was written (format 2 on).
    pub tracked: bool,
    /// The event log's next `Seq` and its kept events.
    pub changes: (u64, Vec<Event>),
}

/// Reads and checks a whole checkpoint file's bytes.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<Decoded, CheckpointError> {
    let truncated = |what| CheckpointError::Truncated {
        path: path.to_owned(),
        what,
    };
    let corrupt = |what| CheckpointError::Corrupt {
        path: path.to_owned(),
        what,
    };
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(CheckpointError::BadMagic {
            path: path.to_owned(),
        });
    }
    if bytes.len() < HEADER_LEN {
        return Err(truncated("header"));
    }
    let mut header = &bytes[MAGIC.len()..HEADER_LEN];
    let version = take::<4>(&mut header)
        .map(u32::from_le_bytes)
        .ok_or_else(|| truncated("header"))?;
    if !(OLDEST_VERSION..=VERSION).contains(&version) {
        return Err(CheckpointError::Version {
            path: path.to_owned(),
            found: version,
        });
    }
    let body_len = take::<8>(&mut header)
        .map(u64::from_le_bytes)
        .ok_or_else(|| truncated("header"))?;
    let stored = take::<4>(&mut header)
        .map(u32::from_le_bytes)
        .ok_or_else(|| truncated("header"))?;
    let body = &bytes[HEADER_LEN..];
    if (body.len() as u64) < body_len {
        return Err(truncated("body shorter than its header says"));
    }
    if body.len() as u64 > body_len {
        return Err(corrupt("bytes after the body"));
    }
    let computed = crc32fast::hash(body);
    if computed != stored {
        return Err(CheckpointError::Checksum {
            path: path.to_owned(),
            stored,
            computed,
        });
    }
    // The checksum matched, so what follows was written by an encoder;
    // still, nothing below trusts a count or a length.
    let mut input = body;
    let i64_ = |input: &mut &[u8]| {
        take::<8>(input)
            .map(i64::from_le_bytes)
            .ok_or_else(|| corrupt("cut short"))
    };
    let _created_ms = i64_(&mut input)?;
    let event_now_ms = i64_(&mut input)?;
    let seen_any = take::<1>(&mut input).ok_or_else(|| corrupt("cut short"))?[0] != 0;
    let n_offsets = take::<4>(&mut input)
        .map(u32::from_le_bytes)
        .ok_or_else(|| corrupt("cut short"))?;
    let mut offsets = Vec::new();
    for _ in 0..n_offsets {
        let topic = take_str(&mut input).ok_or_else(|| corrupt("bad topic name"))?;
        let partition = take::<4>(&mut input)
            .map(i32::from_le_bytes)
            .ok_or_else(|| corrupt("cut short"))?;
        let next_offset = i64_(&mut input)?;
        offsets.push(PartitionOffset {
            topic: Arc::from(topic),
            partition,
            next_offset,
        });
    }
    let n_endpoints = take::<8>(&mut input)
        .map(u64::from_le_bytes)
        .ok_or_else(|| corrupt("cut short"))?;
    let mut endpoints = Vec::with_capacity((n_endpoints as usize).min(input.len() / 16));
    for _ in 0..n_endpoints {
        let ip = match take::<1>(&mut input).ok_or_else(|| corrupt("cut short"))?[0] {
            4 => IpAddr::V4(Ipv4Addr::from(
                take::<4>(&mut input).ok_or_else(|| corrupt("cut short"))?,
            )),
            6 => IpAddr::V6(Ipv6Addr::from(
                take::<16>(&mut input).ok_or_else(|| corrupt("cut short"))?,
            )),
            _ => return Err(corrupt("bad address family")),
        };
        let port = take::<2>(&mut input)
            .map(u16::from_le_bytes)
            .ok_or_else(|| corrupt("cut short"))?;
        let flags = take::<2>(&mut input).ok_or_else(|| corrupt("cut short"))?;
        let proto = Protocol::from_number(flags[0]).ok_or_else(|| corrupt("bad protocol"))?;
        let ever_open = flags[1] != 0;
        let label = take_label(&mut input).map_err(corrupt)?;
        let peers = take::<65>(&mut input)
            .and_then(Peers::from_bytes)
            .ok_or_else(|| corrupt("bad peer sketch"))?;
        let series = Series::decode(&mut input).map_err(corrupt)?;
        let (mut last_seen_s, mut cover, mut live) = (0, 0, false);
        if version >= 2 {
            let u32_ = |input: &mut &[u8]| {
                take::<4>(input)
                    .map(u32::from_le_bytes)
                    .ok_or_else(|| corrupt("cut short"))
            };
            last_seen_s = u32_(&mut input)?;
            cover = u32_(&mut input)?;
            live = take::<1>(&mut input).ok_or_else(|| corrupt("cut short"))?[0] != 0;
        }
        endpoints.push((
            Endpoint { ip, port, proto },
            EndpointState {
                series,
                label: label.map(Arc::from),
                ever_open,
                peers,
                recent: Default::default(),
                last_seen_s,
                cover,
                live,
                meta_slot: false,
            },
        ));
    }
    let n_probes = take::<4>(&mut input)
        .map(u32::from_le_bytes)
        .ok_or_else(|| corrupt("cut short"))?;
    let mut probes = Vec::new();
    for _ in 0..n_probes {
        let index = take::<4>(&mut input)
            .map(u32::from_le_bytes)
            .ok_or_else(|| corrupt("cut short"))?;
        let n = take::<8>(&mut input)
            .map(u64::from_le_bytes)
            .ok_or_else(|| corrupt("cut short"))?;
        if index as usize >= 65536 * 2 {
            return Err(corrupt("probe index out of range"));
        }
        probes.push((index, n));
    }
    let mut changes = (1, Vec::new());
    if version >= 2 {
        let next_seq = take::<8>(&mut input)
            .map(u64::from_le_bytes)
            .ok_or_else(|| corrupt("cut short"))?;
        let n_events = take::<4>(&mut input)
            .map(u32::from_le_bytes)
            .ok_or_else(|| corrupt("cut short"))?;
        let mut events = Vec::with_capacity((n_events as usize).min(input.len() / 64));
        for _ in 0..n_events {
            let len = take::<4>(&mut input)
                .map(u32::from_le_bytes)
                .ok_or_else(|| corrupt("cut short"))? as usize;
            if input.len() < len {
                return Err(corrupt("event cut short"));
            }
            let (line, rest) = input.split_at(len);
            input = rest;
            let event = std::str::from_utf8(line)
                .ok()
                .and_then(|line| Event::from_json_line(line).ok())
                .ok_or_else(|| corrupt("bad event"))?;
            events.push(event);
        }
        changes = (next_seq, events);
    }
    if !input.is_empty() {
        return Err(corrupt("bytes after the last section"));
    }
    Ok(Decoded {
        event_now_ms,
        seen_any,
        offsets,
        endpoints,
        probes,
        tracked: version >= 2,
        changes,
    })
}

fn take<const N: usize>(input: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = input.split_first_chunk::<N>()?;
    *input = rest;
    Some(*head)
}

fn take_str<'a>(input: &mut &'a [u8]) -> Option<&'a str> {
    let len = u16::from_le_bytes(take::<2>(input)?) as usize;
    if input.len() < len {
        return None;
    }
    let (s, rest) = input.split_at(len);
    *input = rest;
    std::str::from_utf8(s).ok()
}

fn take_label<'a>(input: &mut &'a [u8]) -> Result<Option<&'a str>, &'static str> {
    let Some(len) = input.first_chunk::<2>().map(|b| u16::from_le_bytes(*b)) else {
        return Err("cut short");
    };
    if len == NO_LABEL {
        *input = &input[2..];
        return Ok(None);
    }
    take_str(input).map(Some).ok_or("bad label")
}

impl Engine {
    /// Replaces the (empty) state with a decoded checkpoint.
    pub fn restore(&self, checkpoint: Decoded) {
        debug_assert!(self.endpoints.is_empty(), "restore into a fresh engine");
        self.event_now_ms
            .store(checkpoint.event_now_ms, Ordering::Release);
        self.seen_any.store(checkpoint.seen_any, Ordering::Release);
        let (mut open, mut pending) = (0, 0);
        let now_ms = self.now_ms(super::wall_now_ms());
        for (endpoint, mut state) in checkpoint.endpoints {
            if !checkpoint.tracked {
                self.derive_tracking(endpoint, &mut state, now_ms);
            }
            if state.ever_open {
                open += 1;
                self.count_open(endpoint, true);
            } else {
                pending += 1;
            }
            self.resized(0, state.series.heap_bytes());
            self.endpoints.insert(endpoint, Box::new(state));
        }
        self.held.open.store(open, Ordering::Release);
        self.held.pending.store(pending, Ordering::Release);
        for (index, n) in checkpoint.probes {
            self.probes[index as usize].store(n, Ordering::Relaxed);
        }
        if let Some(log) = self.changes() {
            let (next_seq, events) = checkpoint.changes;
            log.restore(next_seq, events);
        }
    }
}

/// The checkpoint files of one `state.dir`.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creating it if needed) the checkpoint directory.
    pub fn open(dir: &Path) -> io::Result<Store> {
        fs::create_dir_all(dir)?;
        Ok(Store {
            dir: dir.to_owned(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Checkpoint files, newest first, with their sequence numbers.
    fn files(&self) -> io::Result<Vec<(u64, PathBuf)>> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let seq = path.file_name().and_then(|n| n.to_str()).and_then(|n| {
                n.strip_prefix("checkpoint-")?
                    .strip_suffix(".bin")?
                    .parse::<u64>()
                    .ok()
            });
            if let Some(seq) = seq {
                files.push((seq, path));
            }
        }
        files.sort_by_key(|f| std::cmp::Reverse(f.0));
        Ok(files)
    }

    /// Writes `bytes` as the next checkpoint: temporary file, fsync,
    /// rename, directory fsync; then removes all but the newest [`KEEP`].
    pub fn write(&self, bytes: &[u8]) -> io::Result<PathBuf> {
        let seq = self.files()?.first().map_or(1, |(s, _)| s + 1);
        let path = self.dir.join(format!("checkpoint-{seq:020}.bin"));
        let tmp = self.dir.join(format!(".checkpoint-{seq:020}.tmp"));
        {
            let mut file = File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        File::open(&self.dir)?.sync_all()?;
        for (_, old) in self.files()?.into_iter().skip(KEEP) {
            let _ = fs::remove_file(old);
        }
        Ok(path)
    }

    /// The newest usable checkpoint, or `None` when there is none at all.
    /// Unusable newer files are returned as warnings; when files exist and
    /// none is usable, an error names every one.
    #[allow(clippy::type_complexity)]
    pub fn load_latest(
        &self,
    ) -> Result<Option<(PathBuf, Decoded, Vec<CheckpointError>)>, CheckpointError> {
        let files = self.files().map_err(|source| CheckpointError::Io {
            path: self.dir.clone(),
            source,
        })?;
        if files.is_empty() {
            return Ok(None);
        }
        let mut skipped = Vec::new();
        for (_, path) in files {
            let loaded = fs::read(&path)
                .map_err(|source| CheckpointError::Io {
                    path: path.clone(),
                    source,
                })
                .and_then(|bytes| decode(&path, &bytes));
            match loaded {
                Ok(decoded) => return Ok(Some((path, decoded, skipped))),
                Err(e) => skipped.push(e),
            }
        }
        Err(CheckpointError::NoneUsable {
            dir: self.dir.clone(),
            problems: skipped.iter().map(ToString::to_string).collect(),
        })
    }
}

#[cfg(test)]
mod tests;
