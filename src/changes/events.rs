//! Exposure changes as events (`docs/semantics.md#exposure-changes`): an
//! endpoint that becomes open (`opened`), that has had no flow for
//! `changes.closed_after` (`closed`), or whose service, risk or expected
//! status changes (`changed`).
//!
//! The engine decides *when* (it sees every flow, under the endpoint's
//! shard lock); the [`Log`] decides *what*: it names the service and risk
//! from the catalog, judges the endpoint against the expected list, gives
//! the event the next `Seq` and keeps it, for `GET /events` and
//! `DescribeExposureChanges`. The log is part of the checkpoint, so `Seq`
//! goes on where it was after a restart, and the events after the
//! checkpoint's cut are derived again from the records read again.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use super::expected::Expected;
use super::watch::Watched;
use crate::catalog::{Catalog, Protocol};
use crate::classify::Endpoint;

/// At most this many events are kept for `DescribeExposureChanges`, the
/// oldest dropped first (besides those older than `window.retention_days`):
/// about 200 MB. A first start on a large network opens every endpoint at
/// once.
pub const HISTORY_LIMIT: usize = 1_000_000;

/// What happened to an exposure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Opened,
    Closed,
    Changed,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Opened, Kind::Closed, Kind::Changed];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Opened => "opened",
            Kind::Closed => "closed",
            Kind::Changed => "changed",
        }
    }
}

impl std::str::FromStr for Kind {
    type Err = ();

    fn from_str(s: &str) -> Result<Kind, ()> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s).ok_or(())
    }
}

/// `"<Ip>:<Port>/<Protocol>"`: how an endpoint is named in an `EventId`, in
/// a `changes.topic` key and by the alerts of a webhook.
pub fn endpoint_key(endpoint: Endpoint) -> String {
    let Endpoint { ip, port, proto } = endpoint;
    format!("{ip}:{port}/{proto}")
}

/// The expected entry covering an exposure: who owns it and why it is open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cover {
    pub owner: Option<String>,
    pub reason: Option<String>,
}

/// What an exposure looks like at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Look {
    /// Its service name (the L7 label, else the catalog's, else `Unknown`).
    pub service: String,
    pub risk_level: u8,
    pub suggest_level: u8,
    /// `Some` while an unexpired expected entry covers it.
    pub expected: Option<Cover>,
}

/// One change of one exposure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// One more than the service's event before it; survives restarts.
    pub seq: u64,
    pub kind: Kind,
    /// When it happened, UNIX seconds on the window clock.
    pub time: i64,
    pub endpoint: Endpoint,
    /// The exposure after the change.
    pub now: Look,
    /// `changed` only: the exposure before it (the JSON names only the
    /// fields that differ).
    pub previous: Option<Look>,
}

/// The JSON object of an event (`docs/semantics.md#the-event-object`), field
/// for field.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Wire {
    seq: u64,
    event_id: String,
    kind: Kind,
    time: i64,
    ip: IpAddr,
    port: u16,
    protocol: Protocol,
    service_name_list: Vec<String>,
    risk_level: u8,
    suggest_level: u8,
    expected: bool,
    owner: Option<String>,
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    previous: Option<WirePrevious>,
}

/// The old values of the fields a `changed` event changed.
#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct WirePrevious {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    service_name_list: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    risk_level: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    suggest_level: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    expected: Option<bool>,
    /// With `expected`: the owner and reason before (either may be null).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    owner: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    reason: Option<Option<String>>,
}

impl Event {
    /// The same string on every channel and every redelivery of this event.
    pub fn event_id(&self) -> String {
        format!(
            "{}-{}-{}-{}",
            self.seq,
            self.kind.as_str(),
            endpoint_key(self.endpoint),
            self.time
        )
    }

    /// The event's JSON object (as a value: its fields sorted by name;
    /// serialize the event itself for the documented order).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.wire()).expect("an event always serializes")
    }

    /// The event as one line of JSON.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(&self.wire()).expect("an event always serializes")
    }

    /// Reads back what [`Event::to_json_line`] wrote.
    pub fn from_json_line(line: &str) -> Result<Event, serde_json::Error> {
        let wire: Wire = serde_json::from_str(line)?;
        let now = Look {
            service: wire
                .service_name_list
                .into_iter()
                .next()
                .unwrap_or_default(),
            risk_level: wire.risk_level,
            suggest_level: wire.suggest_level,
            expected: wire.expected.then_some(Cover {
                owner: wire.owner,
                reason: wire.reason,
            }),
        };
        let previous = wire.previous.map(|p| {
            let expected = match p.expected {
                Some(true) => Some(Cover {
                    owner: p.owner.flatten(),
                    reason: p.reason.flatten(),
                }),
                Some(false) => None,
                None => now.expected.clone(),
            };
            Look {
                service: p
                    .service_name_list
                    .and_then(|l| l.into_iter().next())
                    .unwrap_or_else(|| now.service.clone()),
                risk_level: p.risk_level.unwrap_or(now.risk_level),
                suggest_level: p.suggest_level.unwrap_or(now.suggest_level),
                expected,
            }
        });
        Ok(Event {
            seq: wire.seq,
            kind: wire.kind,
            time: wire.time,
            endpoint: Endpoint {
                ip: wire.ip,
                port: wire.port,
                proto: wire.protocol,
            },
            now,
            previous,
        })
    }

    fn wire(&self) -> Wire {
        let now = &self.now;
        let cover = now.expected.clone().unwrap_or_default();
        Wire {
            seq: self.seq,
            event_id: self.event_id(),
            kind: self.kind,
            time: self.time,
            ip: self.endpoint.ip,
            port: self.endpoint.port,
            protocol: self.endpoint.proto,
            service_name_list: vec![now.service.clone()],
            risk_level: now.risk_level,
            suggest_level: now.suggest_level,
            expected: now.expected.is_some(),
            owner: cover.owner,
            reason: cover.reason,
            previous: self.previous.as_ref().map(|old| {
                let mut p = WirePrevious::default();
                if old.service != now.service {
                    p.service_name_list = Some(vec![old.service.clone()]);
                }
                if old.risk_level != now.risk_level {
                    p.risk_level = Some(old.risk_level);
                }
                if old.suggest_level != now.suggest_level {
                    p.suggest_level = Some(old.suggest_level);
                }
                if old.expected != now.expected {
                    let cover = old.expected.clone().unwrap_or_default();
                    p.expected = Some(old.expected.is_some());
                    p.owner = Some(cover.owner);
                    p.reason = Some(cover.reason);
                }
                p
            }),
        }
    }
}

/// Which events [`Log::page`] returns (`DescribeExposureChanges`).
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// `[start, end)` in UNIX seconds.
    pub start: i64,
    pub end: i64,
    pub kind: Option<Kind>,
    pub risk_level: Option<u8>,
    pub expected: Option<bool>,
    pub port: Option<u16>,
    /// Case-insensitive, as the other Actions match service names.
    pub service: Option<String>,
}

impl Filter {
    fn admits(&self, e: &Event) -> bool {
        (self.start..self.end).contains(&e.time)
            && self.kind.is_none_or(|k| k == e.kind)
            && self.risk_level.is_none_or(|r| r == e.now.risk_level)
            && self.expected.is_none_or(|x| x == e.now.expected.is_some())
            && self.port.is_none_or(|p| p == e.endpoint.port)
            && self
                .service
                .as_ref()
                .is_none_or(|s| s.eq_ignore_ascii_case(&e.now.service))
    }
}

/// What [`Log::after`] has for a reader that last saw `Seq` n.
#[derive(Debug, PartialEq, Eq)]
pub enum Since {
    /// Every event after it, oldest first (maybe none).
    Events(Vec<Event>),
    /// Some of the events after it are no longer kept: the reader must
    /// start again from what it can get (`event: reset`).
    Gap,
}

/// The events of this service: numbered, kept, and announced.
pub struct Log {
    catalog: Arc<Catalog>,
    expected: Arc<Watched>,
    /// How many of the newest events a reconnecting SSE client can replay.
    keep: usize,
    retention_s: i64,
    inner: Mutex<Inner>,
    /// The latest `Seq` (0: none yet), for readers waiting for more.
    latest: tokio::sync::watch::Sender<u64>,
    /// The latest `Seq` of the last [`Log::snapshot`].
    snapshotted: AtomicU64,
    /// The latest `Seq` a checkpoint written whole holds: every event up to
    /// it survives any crash, under the same `Seq` and with the same
    /// content (`changes.topic` produces no further).
    durable: AtomicU64,
}

#[derive(Default)]
struct Inner {
    /// The `Seq` the next event gets.
    next_seq: u64,
    /// Oldest first, `Seq` consecutive.
    events: VecDeque<Event>,
}

impl Log {
    pub fn new(
        catalog: Arc<Catalog>,
        expected: Arc<Watched>,
        keep: usize,
        retention_days: u32,
    ) -> Log {
        Log {
            catalog,
            expected,
            keep,
            retention_s: i64::from(retention_days) * 86_400,
            inner: Mutex::new(Inner {
                next_seq: 1,
                events: VecDeque::new(),
            }),
            latest: tokio::sync::watch::channel(0).0,
            snapshotted: AtomicU64::new(0),
            durable: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The expected list's holder, which `exposure run` re-reads.
    pub fn watched(&self) -> Arc<Watched> {
        self.expected.clone()
    }

    /// The expected list in use, for judging many endpoints at one time.
    pub fn expected(&self) -> Arc<Expected> {
        self.expected.current()
    }

    /// What `endpoint` with `label` looks like at `time_ms` under `expected`.
    pub fn look(
        &self,
        endpoint: Endpoint,
        label: Option<&str>,
        expected: &Expected,
        time_ms: i64,
    ) -> Look {
        let service = self
            .catalog
            .endpoint_service(endpoint.port, endpoint.proto, label);
        Look {
            service: service.name.into_owned(),
            risk_level: service.risk.risk_level,
            suggest_level: service.risk.suggest_level,
            expected: expected
                .covering(endpoint.ip, endpoint.port, endpoint.proto, time_ms)
                .map(|entry| Cover {
                    owner: entry.owner.clone(),
                    reason: entry.reason.clone(),
                }),
        }
    }

    /// Numbers, keeps and announces one event; returns its `Seq`.
    pub fn record(
        &self,
        kind: Kind,
        time_ms: i64,
        endpoint: Endpoint,
        now: Look,
        previous: Option<Look>,
    ) -> u64 {
        let time = time_ms.div_euclid(1000);
        let seq = {
            let mut inner = self.lock();
            let seq = inner.next_seq;
            inner.next_seq += 1;
            inner.events.push_back(Event {
                seq,
                kind,
                time,
                endpoint,
                now,
                previous,
            });
            let horizon = time.saturating_sub(self.retention_s);
            while inner.events.len() > HISTORY_LIMIT
                || inner.events.front().is_some_and(|e| e.time < horizon)
            {
                inner.events.pop_front();
            }
            seq
        };
        self.latest.send_replace(seq);
        seq
    }

    /// The latest `Seq` given (0: none yet).
    pub fn latest(&self) -> u64 {
        self.lock().next_seq - 1
    }

    /// Wakes when a newer event is recorded.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.latest.subscribe()
    }

    /// The events after `seq`, when the reader has not missed any that
    /// fell out of the last `changes.keep`.
    pub fn after(&self, seq: u64) -> Since {
        let inner = self.lock();
        let latest = inner.next_seq - 1;
        if seq >= latest {
            return Since::Events(Vec::new());
        }
        let missed = usize::try_from(latest - seq).unwrap_or(usize::MAX);
        let oldest = inner.events.front().map_or(u64::MAX, |e| e.seq);
        if missed > self.keep || seq + 1 < oldest {
            return Since::Gap;
        }
        let skip = usize::try_from(seq + 1 - oldest).unwrap_or(usize::MAX);
        Since::Events(inner.events.iter().skip(skip).cloned().collect())
    }

    /// Up to `max` events after `seq`, oldest first, whatever `changes.keep`
    /// says (a webhook's backlog), and how many events after `seq` are no
    /// longer kept at all (they left the history before they were read).
    pub fn read_after(&self, seq: u64, max: usize) -> (u64, Vec<Event>) {
        let inner = self.lock();
        let oldest = inner.events.front().map_or(inner.next_seq, |e| e.seq);
        let first = (seq + 1).max(oldest);
        let lost = first - (seq + 1);
        let skip = usize::try_from(first - oldest).unwrap_or(usize::MAX);
        let events = inner.events.iter().skip(skip).take(max).cloned().collect();
        (lost, events)
    }

    /// The last `n` events, oldest first (a new SSE client's start).
    pub fn last(&self, n: usize) -> Vec<Event> {
        let inner = self.lock();
        let skip = inner.events.len().saturating_sub(n);
        inner.events.iter().skip(skip).cloned().collect()
    }

    /// How many kept events `filter` admits, and `take` of them after the
    /// first `skip`, newest first: a page costs one pass over the log and
    /// copies only its own events.
    pub fn page(&self, filter: &Filter, skip: usize, take: usize) -> (usize, Vec<Event>) {
        let inner = self.lock();
        let mut total = 0;
        let mut page = Vec::new();
        for event in inner.events.iter().rev().filter(|e| filter.admits(e)) {
            if total >= skip && page.len() < take {
                page.push(event.clone());
            }
            total += 1;
        }
        (total, page)
    }

    /// The next `Seq` and the kept events, for a checkpoint.
    pub fn snapshot(&self) -> (u64, Vec<Event>) {
        let inner = self.lock();
        self.snapshotted
            .store(inner.next_seq - 1, Ordering::Release);
        (inner.next_seq, inner.events.iter().cloned().collect())
    }

    /// Says that the checkpoint holding the last [`Log::snapshot`] is
    /// written whole.
    pub fn mark_durable(&self) {
        let seq = self.snapshotted.load(Ordering::Acquire);
        self.durable.fetch_max(seq, Ordering::AcqRel);
    }

    /// The latest `Seq` a checkpoint holds (0: none).
    pub fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Puts back what [`Log::snapshot`] took (at restore, before any
    /// event is recorded).
    pub fn restore(&self, next_seq: u64, events: Vec<Event>) {
        let mut inner = self.lock();
        inner.next_seq = next_seq.max(1);
        inner.events = events.into();
        drop(inner);
        let latest = next_seq.max(1) - 1;
        // What was restored came from a checkpoint.
        self.snapshotted.store(latest, Ordering::Release);
        self.durable.store(latest, Ordering::Release);
        self.latest.send_replace(latest);
    }
}

/// The event object, its fields in the documented order
/// (`docs/api.md#the-event-object`).
impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.wire().serialize(serializer)
    }
}

#[cfg(test)]
mod tests;
