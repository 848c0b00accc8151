//! One endpoint's traffic history: hour buckets, rolled up to UTC days
//! beyond 48 hours, kept for the retention period.
//!
//! Resolution is decided at read time from "now", not from when a bucket was
//! written: an hour bucket older than [`RECENT_HOURS`] reads as its whole UTC
//! day. The answer therefore depends only on the flows and on "now", never on
//! the order the flows arrived in; [`Series::compact`] merges such hours into
//! day buckets to save memory without changing any answer.

use smallvec::SmallVec;

/// Hours kept at hour resolution, counting the hour that holds "now".
pub const RECENT_HOURS: u32 = 48;

const HOURS_PER_DAY: u32 = 24;
/// Bucket slots added when a series is full.
const GROW_BUCKETS: usize = 4;
/// Spare bucket slots left after a compaction.
const COMPACT_SLACK: usize = 2;
const DAY_FLAG: u32 = 1 << 31;
const EVIDENCE_FLAG: u32 = 1 << 30;
const PAYLOAD_FLAG: u32 = 1 << 29;
/// The changelog slot (0 or 1) that holds the last value written of the
/// bucket's day (`cluster::changelog`); every bucket of a day carries the
/// same bit.
const SLOT_FLAG: u32 = 1 << 28;
const HOUR_MASK: u32 = SLOT_FLAG - 1;

/// A time range in whole hours since the UNIX epoch, `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HourRange {
    pub start: u32,
    pub end: u32,
}

impl HourRange {
    pub fn overlaps(self, other: HourRange) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// How to read buckets: which hours are still at hour resolution, and which
/// are past retention. Both follow from "now".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolution {
    /// Hour buckets starting before this hour read as their whole day.
    pub recent_from: u32,
    /// Buckets ending at or before this hour are past retention.
    pub retained_after: u32,
}

impl Resolution {
    /// The resolution in force when "now" falls in hour `now_hour`.
    pub fn at(now_hour: u32, retention_days: u32) -> Self {
        Resolution {
            recent_from: now_hour.saturating_sub(RECENT_HOURS - 1),
            retained_after: (now_hour + 1).saturating_sub(retention_days * HOURS_PER_DAY),
        }
    }
}

/// Traffic of one bucket. Packed to 20 bytes: a full 30-day history is
/// 48 hour buckets and 30 day buckets, about 1.5 KiB.
#[derive(Clone, Copy, Debug)]
#[repr(C, packed(4))]
struct Bucket {
    in_bytes: u64,
    out_bytes: u64,
    /// Start hour since the epoch in the low bits, then [`SLOT_FLAG`],
    /// [`PAYLOAD_FLAG`], [`EVIDENCE_FLAG`] and [`DAY_FLAG`].
    tag: u32,
}

impl Bucket {
    fn start(self) -> u32 {
        self.tag & HOUR_MASK
    }

    fn is_day(self) -> bool {
        self.tag & DAY_FLAG != 0
    }

    /// Sort key: by start hour, a day bucket before the hours of its day.
    fn key(self) -> (u32, bool) {
        (self.start(), !self.is_day())
    }

    /// The hours this bucket stands for under `res`.
    fn span(self, res: Resolution) -> HourRange {
        let start = self.start();
        if self.is_day() || start < res.recent_from {
            let day = start - start % HOURS_PER_DAY;
            HourRange {
                start: day,
                end: day + HOURS_PER_DAY,
            }
        } else {
            HourRange {
                start,
                end: start + 1,
            }
        }
    }
}

/// What one flow adds to a bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    pub in_bytes: u64,
    pub out_bytes: u64,
    /// The flow is response evidence: the endpoint is open in this bucket.
    pub evidence: bool,
    /// The flow averaged more than 60 bytes per packet.
    pub payload: bool,
}

/// Sums of a series over one window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub in_bytes: u64,
    pub out_bytes: u64,
    /// Some bucket in the window holds response evidence.
    pub open: bool,
    /// Some bucket in the window holds a flow with payload.
    pub payload: bool,
}

impl Tally {
    pub fn total_bytes(&self) -> u64 {
        self.in_bytes.saturating_add(self.out_bytes)
    }
}

/// Buckets sorted by start hour (a day bucket before the hours of its
/// day); writes almost always hit the last one. The first bucket is held
/// inline: most endpoints a scan leaves pending never get a second one,
/// and then cost no allocation of their own.
#[derive(Clone, Debug, Default)]
pub struct Series {
    buckets: SmallVec<[Bucket; 1]>,
}

impl Series {
    /// Adds a flow falling in hour `hour` (since the epoch).
    pub fn add(&mut self, hour: u32, sample: Sample) {
        debug_assert!(hour <= HOUR_MASK);
        let key = (hour, true);
        // Search from the end: flows mostly arrive in time order.
        let pos = self.buckets.iter().rposition(|b| b.key() <= key);
        let index = match pos {
            Some(i) if self.buckets[i].key() == key => i,
            _ => {
                let at = pos.map_or(0, |i| i + 1);
                // A new bucket of a day that has some keeps the day's slot.
                let slot = self.day_slot_flag(day_start(hour));
                if self.buckets.len() == self.buckets.capacity() {
                    // Grow by a few buckets, not by doubling: a series gains
                    // one bucket an hour, and doubling would leave up to half
                    // of a 1.5 KiB history unused.
                    self.buckets.reserve_exact(GROW_BUCKETS);
                }
                self.buckets.insert(
                    at,
                    Bucket {
                        in_bytes: 0,
                        out_bytes: 0,
                        tag: hour | slot,
                    },
                );
                at
            }
        };
        let b = &mut self.buckets[index];
        b.in_bytes = b.in_bytes.saturating_add(sample.in_bytes);
        b.out_bytes = b.out_bytes.saturating_add(sample.out_bytes);
        if sample.evidence {
            b.tag |= EVIDENCE_FLAG;
        }
        if sample.payload {
            b.tag |= PAYLOAD_FLAG;
        }
    }

    /// The hours a flow falling in hour `hour` is read as under `res`: that
    /// hour, or its whole day once older than [`RECENT_HOURS`].
    pub fn sample_span(hour: u32, res: Resolution) -> HourRange {
        Bucket {
            in_bytes: 0,
            out_bytes: 0,
            tag: hour,
        }
        .span(res)
    }

    /// Sums the buckets overlapping each window; buckets past retention are
    /// left out.
    pub fn tally<const N: usize>(&self, windows: &[HourRange; N], res: Resolution) -> [Tally; N] {
        let mut out = [Tally::default(); N];
        for &b in &self.buckets {
            let span = b.span(res);
            if span.end <= res.retained_after {
                continue;
            }
            for (window, tally) in windows.iter().zip(out.iter_mut()) {
                if span.overlaps(*window) {
                    tally.in_bytes = tally.in_bytes.saturating_add(b.in_bytes);
                    tally.out_bytes = tally.out_bytes.saturating_add(b.out_bytes);
                    tally.open |= b.tag & EVIDENCE_FLAG != 0;
                    tally.payload |= b.tag & PAYLOAD_FLAG != 0;
                }
            }
        }
        out
    }

    /// Drops buckets past retention and merges hours older than
    /// [`RECENT_HOURS`] into their day. Changes no answer under `res` or any
    /// later resolution.
    pub fn compact(&mut self, res: Resolution) {
        let needs_work = self.buckets.iter().any(|b| {
            b.span(res).end <= res.retained_after || (!b.is_day() && b.start() < res.recent_from)
        });
        if !needs_work {
            return;
        }
        // In place: merging only ever shortens the list, so the write
        // position never passes the read position.
        let mut write: usize = 0;
        for read in 0..self.buckets.len() {
            let b = self.buckets[read];
            let span = b.span(res);
            if span.end <= res.retained_after {
                continue;
            }
            let b = if b.is_day() || b.start() >= res.recent_from {
                b
            } else {
                Bucket {
                    tag: (b.tag & !HOUR_MASK) | DAY_FLAG | span.start,
                    ..b
                }
            };
            match write.checked_sub(1).map(|i| &mut self.buckets[i]) {
                Some(last) if last.is_day() && b.is_day() && last.start() == b.start() => {
                    last.in_bytes = last.in_bytes.saturating_add(b.in_bytes);
                    last.out_bytes = last.out_bytes.saturating_add(b.out_bytes);
                    last.tag |= b.tag & (EVIDENCE_FLAG | PAYLOAD_FLAG);
                }
                _ => {
                    self.buckets[write] = b;
                    write += 1;
                }
            }
        }
        self.buckets.truncate(write);
        // Keep room for the next hours' buckets (one new bucket an hour,
        // compaction once an hour), so steady state never reallocates; give
        // back only a large excess.
        if self.buckets.capacity() > write + 4 * COMPACT_SLACK {
            self.buckets.grow(write + COMPACT_SLACK);
        }
    }

    /// The buckets of the UTC day starting at hour `day` (a multiple of
    /// 24): contiguous, since buckets are sorted by start hour.
    fn day_range(&self, day: u32) -> std::ops::Range<usize> {
        let from = self.buckets.partition_point(|b| b.start() < day);
        let to = self
            .buckets
            .partition_point(|b| b.start() < day + HOURS_PER_DAY);
        from..to
    }

    fn day_slot_flag(&self, day: u32) -> u32 {
        let range = self.day_range(day);
        self.buckets[range].first().map_or(0, |b| b.tag & SLOT_FLAG)
    }

    /// The UTC days (their first hour) that hold a bucket, in order.
    pub fn days(&self) -> impl Iterator<Item = u32> + '_ {
        let mut last = None;
        self.buckets.iter().filter_map(move |b| {
            let day = day_start(b.start());
            (last != Some(day)).then(|| {
                last = Some(day);
                day
            })
        })
    }

    /// A copy of the buckets of the UTC day starting at hour `day`, as
    /// held (hours, or the day's bucket, or both), without their slot.
    pub fn day(&self, day: u32) -> Series {
        let range = self.day_range(day);
        Series {
            buckets: self.buckets[range]
                .iter()
                .map(|&b| Bucket {
                    tag: b.tag & !SLOT_FLAG,
                    ..b
                })
                .collect(),
        }
    }

    /// Replaces the buckets of the UTC day starting at hour `day` with
    /// those of `with` (which must all fall in that day), marked with
    /// changelog slot `slot`.
    pub fn replace_day(&mut self, day: u32, with: &Series, slot: bool) {
        debug_assert!(with.buckets.iter().all(|b| day_start(b.start()) == day));
        let range = self.day_range(day);
        let flag = if slot { SLOT_FLAG } else { 0 };
        let new = with.buckets.iter().map(|&b| Bucket {
            tag: (b.tag & !SLOT_FLAG) | flag,
            ..b
        });
        self.buckets.insert_many(range.start, new);
        let removed = range.len();
        let start = range.start + with.buckets.len();
        self.buckets.drain(start..start + removed);
    }

    /// The changelog slot holding the last value written of day `day`
    /// (false for a day with no bucket).
    pub fn day_slot(&self, day: u32) -> bool {
        self.day_slot_flag(day) != 0
    }

    /// Marks the buckets of day `day` with changelog slot `slot`.
    pub fn set_day_slot(&mut self, day: u32, slot: bool) {
        let range = self.day_range(day);
        for b in &mut self.buckets[range] {
            b.tag = if slot {
                b.tag | SLOT_FLAG
            } else {
                b.tag & !SLOT_FLAG
            };
        }
    }

    /// The last hour its newest bucket covers (`None`: no bucket).
    pub fn last_hour(&self) -> Option<u32> {
        let last = self.buckets.last()?;
        Some(if last.is_day() {
            last.start() + 23
        } else {
            last.start()
        })
    }

    /// No bucket left (everything expired).
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Number of buckets held.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Appends the buckets to a checkpoint: a count, then 20 bytes each.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.buckets.len() as u32).to_le_bytes());
        for &b in &self.buckets {
            let (in_bytes, out_bytes, tag) = (b.in_bytes, b.out_bytes, b.tag);
            out.extend_from_slice(&in_bytes.to_le_bytes());
            out.extend_from_slice(&out_bytes.to_le_bytes());
            out.extend_from_slice(&tag.to_le_bytes());
        }
    }

    /// Reads what [`Series::encode`] wrote from the front of `input`,
    /// checking that the buckets are in order.
    pub fn decode(input: &mut &[u8]) -> Result<Series, &'static str> {
        let count = take_u32(input).ok_or("bucket count cut short")? as usize;
        if count > input.len() / 20 {
            return Err("bucket count larger than the data");
        }
        let mut buckets = SmallVec::with_capacity(count);
        for _ in 0..count {
            let in_bytes = take_u64(input).ok_or("bucket cut short")?;
            let out_bytes = take_u64(input).ok_or("bucket cut short")?;
            let tag = take_u32(input).ok_or("bucket cut short")?;
            let b = Bucket {
                in_bytes,
                out_bytes,
                tag,
            };
            if buckets
                .last()
                .is_some_and(|last: &Bucket| last.key() >= b.key())
            {
                return Err("buckets out of order");
            }
            buckets.push(b);
        }
        Ok(Series { buckets })
    }

    /// Heap bytes held by the buckets.
    pub fn heap_bytes(&self) -> usize {
        if self.buckets.spilled() {
            self.buckets.capacity() * std::mem::size_of::<Bucket>()
        } else {
            0
        }
    }
}

/// The first hour of the UTC day holding hour `hour`.
pub fn day_start(hour: u32) -> u32 {
    hour - hour % HOURS_PER_DAY
}

fn take_u32(input: &mut &[u8]) -> Option<u32> {
    let (head, rest) = input.split_first_chunk::<4>()?;
    *input = rest;
    Some(u32::from_le_bytes(*head))
}

fn take_u64(input: &mut &[u8]) -> Option<u64> {
    let (head, rest) = input.split_first_chunk::<8>()?;
    *input = rest;
    Some(u64::from_le_bytes(*head))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY0: u32 = 480_000; // a multiple of 24: hour 0 of a UTC day

    fn range(start: u32, end: u32) -> HourRange {
        HourRange { start, end }
    }

    #[test]
    fn one_bucket_is_held_inline_and_more_go_to_the_heap() {
        let mut s = Series::default();
        s.add(DAY0, traffic(1));
        s.add(DAY0, traffic(2));
        assert_eq!((s.len(), s.heap_bytes()), (1, 0));
        s.add(DAY0 + 1, traffic(3));
        assert_eq!(s.len(), 2);
        assert!(s.heap_bytes() >= 2 * std::mem::size_of::<Bucket>());
    }

    fn traffic(n: u64) -> Sample {
        Sample {
            in_bytes: n,
            out_bytes: 0,
            evidence: false,
            payload: false,
        }
    }

    #[test]
    fn encode_decode_round_trips() {
        let mut s = Series::default();
        for h in [3, 1, 70, 71] {
            s.add(
                DAY0 + h,
                Sample {
                    in_bytes: h as u64,
                    out_bytes: 7,
                    evidence: h == 70,
                    payload: h == 1,
                },
            );
        }
        s.compact(Resolution::at(DAY0 + 100, 30));
        let mut bytes = Vec::new();
        s.encode(&mut bytes);
        let mut input = &bytes[..];
        let back = Series::decode(&mut input).unwrap();
        assert!(input.is_empty());
        let res = Resolution::at(DAY0 + 100, 30);
        let w = [range(0, u32::MAX), range(DAY0 + 70, DAY0 + 71)];
        assert_eq!(back.tally(&w, res), s.tally(&w, res));
        assert_eq!(back.len(), s.len());
    }

    #[test]
    fn decode_refuses_short_or_unordered_input() {
        let mut s = Series::default();
        s.add(DAY0 + 1, traffic(1));
        s.add(DAY0 + 2, traffic(1));
        let mut bytes = Vec::new();
        s.encode(&mut bytes);
        assert!(Series::decode(&mut &bytes[..bytes.len() - 1]).is_err());
        // Swap the two buckets' tags.
        let mut swapped = bytes.clone();
        swapped[20..24].copy_from_slice(&bytes[40..44]);
        swapped[40..44].copy_from_slice(&bytes[20..24]);
        assert_eq!(
            Series::decode(&mut &swapped[..]).unwrap_err(),
            "buckets out of order"
        );
    }

    #[test]
    fn a_day_is_read_and_replaced_whole_and_keeps_its_slot() {
        let mut s = Series::default();
        for h in [2, 30, 31, 50] {
            s.add(DAY0 + h, traffic(u64::from(h)));
        }
        let days: Vec<u32> = s.days().collect();
        assert_eq!(days, [DAY0, DAY0 + 24, DAY0 + 48]);
        let second = s.day(DAY0 + 24);
        assert_eq!(second.len(), 2);
        let all = [range(0, u32::MAX)];
        let res = Resolution::at(DAY0 + 60, 30);
        assert_eq!(second.tally(&all, res)[0].in_bytes, 61);

        // Replaced by one bucket, in slot 1: the other days are untouched.
        let mut one = Series::default();
        one.add(DAY0 + 40, traffic(5));
        s.replace_day(DAY0 + 24, &one, true);
        assert_eq!(s.len(), 3);
        assert_eq!(s.tally(&all, res)[0].in_bytes, 2 + 5 + 50);
        assert!(s.day_slot(DAY0 + 24) && !s.day_slot(DAY0));
        // A new hour of that day takes the day's slot; a copy drops it.
        s.add(DAY0 + 41, traffic(1));
        assert!(s.day(DAY0 + 24).len() == 2 && s.day_slot(DAY0 + 24));
        s.set_day_slot(DAY0 + 24, false);
        assert!(!s.day_slot(DAY0 + 24));
        // Compaction into the day keeps the slot.
        s.set_day_slot(DAY0 + 24, true);
        s.compact(Resolution::at(DAY0 + 24 * 5, 30));
        assert!(s.day_slot(DAY0 + 24));
        assert_eq!(s.day(DAY0 + 24).len(), 1);
        // An empty replacement empties the day.
        s.replace_day(DAY0 + 24, &Series::default(), false);
        assert_eq!(s.days().collect::<Vec<_>>(), [DAY0, DAY0 + 48]);
    }

    #[test]
    fn bucket_is_twenty_bytes() {
        assert_eq!(std::mem::size_of::<Bucket>(), 20);
    }

    #[test]
    fn flows_in_one_hour_share_a_bucket() {
        let mut s = Series::default();
        s.add(DAY0 + 5, traffic(10));
        s.add(DAY0 + 5, traffic(5));
        assert_eq!(s.len(), 1);
        let res = Resolution::at(DAY0 + 6, 30);
        let [t] = s.tally(&[range(DAY0 + 5, DAY0 + 6)], res);
        assert_eq!(t.in_bytes, 15);
    }

    #[test]
    fn out_of_order_hours_stay_sorted() {
        let mut s = Series::default();
        for h in [7, 3, 9, 3, 1, 8] {
            s.add(DAY0 + h, traffic(1));
        }
        let starts: Vec<u32> = s.buckets.iter().map(|b| b.start() - DAY0).collect();
        assert_eq!(starts, vec![1, 3, 7, 8, 9]);
    }

    #[test]
    fn recent_hours_keep_hour_resolution() {
        let mut s = Series::default();
        s.add(DAY0 + 30, traffic(7));
        let res = Resolution::at(DAY0 + 40, 30);
        let [hit, miss] = s.tally(
            &[range(DAY0 + 30, DAY0 + 31), range(DAY0 + 29, DAY0 + 30)],
            res,
        );
        assert_eq!(hit.in_bytes, 7);
        assert_eq!(miss.in_bytes, 0);
    }

    #[test]
    fn hours_older_than_48h_read_as_their_whole_day() {
        let mut s = Series::default();
        s.add(DAY0 + 2, traffic(7));
        // "now" is three days later: hour 2 of DAY0 is beyond 48 hours.
        let res = Resolution::at(DAY0 + 72, 30);
        let [t] = s.tally(&[range(DAY0 + 20, DAY0 + 21)], res);
        assert_eq!(t.in_bytes, 7, "any hour of the day covers the day bucket");
    }

    #[test]
    fn the_48th_hour_back_is_still_hourly() {
        let now = DAY0 + 100;
        let res = Resolution::at(now, 30);
        assert_eq!(res.recent_from, now - 47);
        let mut s = Series::default();
        s.add(now - 47, traffic(1));
        let [t] = s.tally(&[range(now - 48, now - 47)], res);
        assert_eq!(t.in_bytes, 0);
    }

    #[test]
    fn compaction_changes_no_answer() {
        let mut s = Series::default();
        for h in 0..200 {
            s.add(
                DAY0 + h,
                Sample {
                    in_bytes: h as u64,
                    out_bytes: 1,
                    evidence: h % 50 == 0,
                    payload: h == 3,
                },
            );
        }
        let res = Resolution::at(DAY0 + 199, 30);
        let windows = [
            range(DAY0, DAY0 + 1),
            range(DAY0 + 30, DAY0 + 60),
            range(DAY0 + 160, DAY0 + 170),
            range(0, u32::MAX),
        ];
        let before = s.tally(&windows, res);
        s.compact(res);
        assert_eq!(s.tally(&windows, res), before);
        // 8 full days before the 48 recent hours, plus the partial day
        // holding the first recent hour, then 48 hour buckets.
        assert_eq!(
            s.len(),
            6 + 1 + 48,
            "{:?}",
            s.buckets
                .iter()
                .map(|b| (b.start() - DAY0, b.is_day()))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn flows_for_a_compacted_day_still_add_up() {
        let mut s = Series::default();
        s.add(DAY0 + 1, traffic(1));
        let res = Resolution::at(DAY0 + 100, 30);
        s.compact(res);
        s.add(DAY0 + 5, traffic(2)); // a late flow for the same day
        let [t] = s.tally(&[range(DAY0, DAY0 + 24)], res);
        assert_eq!(t.in_bytes, 3);
        s.compact(res);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn buckets_past_retention_are_dropped() {
        let mut s = Series::default();
        s.add(DAY0, traffic(1));
        s.add(DAY0 + 24 * 10, traffic(2));
        // Retention 5 days, now on day 11: day 0 is gone, day 10 stays.
        let res = Resolution::at(DAY0 + 24 * 11, 5);
        let [t] = s.tally(&[range(0, u32::MAX)], res);
        assert_eq!(t.in_bytes, 2);
        s.compact(res);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn evidence_and_payload_flags_survive_rollup() {
        let mut s = Series::default();
        s.add(
            DAY0 + 1,
            Sample {
                evidence: true,
                ..traffic(1)
            },
        );
        s.add(
            DAY0 + 2,
            Sample {
                payload: true,
                ..traffic(1)
            },
        );
        let res = Resolution::at(DAY0 + 24 * 5, 30);
        s.compact(res);
        let [t] = s.tally(&[range(DAY0, DAY0 + 1)], res);
        assert!(t.open && t.payload);
    }

    #[test]
    fn full_history_fits_in_under_two_kib() {
        let mut s = Series::default();
        let now = DAY0 + 30 * 24;
        for h in (now - 30 * 24 + 1)..=now {
            s.add(h, traffic(1));
        }
        s.compact(Resolution::at(now, 30));
        assert!(
            s.heap_bytes() + std::mem::size_of::<Series>() < 2048,
            "{}",
            s.heap_bytes()
        );
    }
}
