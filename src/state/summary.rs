//! The exposure summary `/metrics` reports, read from what the engine keeps
//! up to date as flows are applied: counts of open endpoints per port and
//! the port index's last-day sums. Reading it costs in proportion to the
//! ports in use, not to the endpoints held.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::index::Recent;
use super::{hour_of, slot_port, wall_now_ms, Engine};
use crate::catalog::Protocol;
use crate::classify::Endpoint;

/// What is open, by port. Two notions of "open" appear (see `/metrics`):
/// within retention ([`Summary::open_ports`]), and in the last day, the
/// window of `TrafficPercent1Day` (the rest).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Distinct ports with an endpoint open within retention, by protocol,
    /// in the order of [`Protocol::ALL`].
    pub open_ports: [u64; 2],
    /// Every (port, protocol, L7 label) with endpoints open in the last day.
    pub last_day: Vec<DayShare>,
    /// TotalBytes over the last day of every endpoint open in it.
    pub last_day_bytes: u64,
}

/// The endpoints of one (port, protocol) carrying one L7 label that are
/// open in the last day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayShare {
    pub port: u16,
    pub proto: Protocol,
    /// The label (`None`: endpoints without one).
    pub label: Option<Arc<str>>,
    pub endpoints: u64,
    /// Their TotalBytes over the last day.
    pub total_bytes: u64,
}

impl Engine {
    /// The summary as of `wall_ms` (UNIX ms). The last day is the port
    /// index's: from the hour holding now minus 24 hours to the end of the
    /// hour holding now. If the index has to move to that hour first (the
    /// first read of an hour, or the first read ever), that read walks the
    /// state once.
    pub fn summary(&self, wall_ms: i64) -> Summary {
        let mut open_ports = [0; 2];
        for (slot, count) in self.open_by_port.iter().enumerate() {
            if count.load(Ordering::Relaxed) > 0 {
                let (_, proto) = slot_port(slot);
                open_ports[usize::from(proto == Protocol::Udp)] += 1;
            }
        }
        let mut wall = wall_ms;
        loop {
            let hour = hour_of(self.now_ms(wall));
            let mut last_day = Vec::new();
            let mut last_day_bytes = 0u64;
            let complete = self.read_port_index(hour, |port, proto, sums| {
                last_day_bytes = last_day_bytes.wrapping_add(sums.windows[0].recent[0]);
                let open = sums.labels.iter().filter(|count| count.open[0] > 0);
                last_day.extend(open.map(|count| DayShare {
                    port,
                    proto,
                    label: count.label.clone(),
                    endpoints: count.open[0],
                    total_bytes: count.day_bytes,
                }));
            });
            if complete {
                return Summary {
                    open_ports,
                    last_day,
                    last_day_bytes,
                };
            }
            // The index moved to another hour while it was read: the clock
            // went on, so read again at the clock's hour.
            wall = wall.max(wall_now_ms());
        }
    }
}

impl Engine {
    /// Calls `f` with every endpoint open in the last day as of `wall_ms`
    /// (the endpoints [`Engine::summary`] counts) whose (port, protocol)
    /// `wanted` accepts, with its L7 label. Unlike the summary this walks
    /// every endpoint held (`wanted` looks at the key alone, so a refused
    /// endpoint costs little): its cost grows with the endpoints.
    pub fn for_each_open_last_day(
        &self,
        wall_ms: i64,
        wanted: impl Fn(u16, Protocol) -> bool,
        mut f: impl FnMut(&Endpoint, Option<&str>),
    ) {
        let hour = hour_of(self.now_ms(wall_ms));
        let res = self.resolution_at(hour);
        self.for_each(|endpoint, state| {
            // The key first: it is in the map's slot, the state behind a pointer.
            if !wanted(endpoint.port, endpoint.proto) || !state.ever_open {
                return;
            }
            // The index's tallies, unless the hour moved since they were kept.
            let recent = match state.recent.get() {
                Some(recent) if recent.hour == hour => recent,
                _ => Recent::of(&state.series, hour, res),
            };
            if recent.tallies[0].open {
                f(endpoint, state.label.as_deref());
            }
        });
    }
}

#[cfg(test)]
mod tests;
