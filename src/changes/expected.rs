//! The exposures an organisation expects, read from a TOML file, so that an
//! open endpoint can be told apart as known (with its owner and reason) or
//! new.
//!
//! ```toml
//! [[expected]]
//! ip = "203.0.113.0/24"        # an address or a CIDR; required
//! port = "8000-8100"           # a number, or an inclusive range as a string; required
//! protocol = "tcp"             # "tcp" or "udp" in any case; optional, default both
//! owner = "web team"           # optional
//! reason = "public website"    # optional
//! expires = 2027-01-31         # optional: a TOML date or offset date-time, or a string of either
//! ```
//!
//! An endpoint (ip, port, protocol) is expected at a time while an entry
//! covers it (the ip is inside the entry's network, the port inside its
//! range, the protocol equal or the entry names none) and the entry has not
//! expired. An IPv4 address never falls inside an IPv6 network nor the other
//! way round; an IPv4-mapped IPv6 address is an IPv6 address, matched as
//! written. When several entries cover an endpoint, the first unexpired one
//! in file order is the match; repeated or overlapping entries are allowed.
//!
//! Expiry:
//! - a bare date holds through the end of that day in UTC: `2027-01-31`
//!   covers up to 2027-01-31T23:59:59.999Z and is expired from
//!   2027-02-01T00:00:00Z;
//! - a date-time with an offset (`2027-01-31T12:00:00+08:00`) expires at
//!   that instant: the entry is expired when now is at or after it;
//! - a local date-time without an offset is a problem: the zone is not
//!   guessed;
//! - an entry already expired when the file is read is valid (it simply
//!   covers nothing).
//!
//! The file is the whole truth: an unknown key, in an entry or at the top
//! level, is a problem rather than ignored, so that a typo (`prot = "tcp"`)
//! cannot silently widen an entry. An empty file, or one without
//! `[[expected]]`, expects nothing. [`Expected::parse`] reports every
//! problem in the file at once, each with its line and key; only a TOML
//! syntax error, after which nothing more can be read, stops it early.
//!
//! Lookups are a linear scan of the entries in file order: the file is
//! written by hand, so it holds tens or hundreds of entries, and the scan
//! keeps "first match in file order" obvious.

use std::fmt;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::Path;

use ipnet::IpNet;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use toml::value::Datetime;
use toml::{Spanned, Value};

use crate::catalog::Protocol;

/// The keys an entry may have, in the order the problems list them.
const KEYS: [&str; 6] = ["ip", "port", "protocol", "owner", "reason", "expires"];

const DAY_MS: i64 = 86_400_000;

/// The expected exposures of one file, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    entries: Vec<Entry>,
}

/// One `[[expected]]` entry, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The addresses it covers (a single address is a /32 or /128).
    pub net: IpNet,
    /// The ports it covers, inclusive.
    pub ports: RangeInclusive<u16>,
    /// The protocol it covers; `None`: both.
    pub protocol: Option<Protocol>,
    pub owner: Option<String>,
    pub reason: Option<String>,
    /// UNIX ms from which it no longer holds; `None`: it never expires.
    pub expires_ms: Option<i64>,
    /// The line (1-based) of the entry's start (`[[expected]]`).
    pub line: usize,
}

/// One problem in the file: where, which key, what is wrong. The file's
/// name is for the caller to add.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based.
    pub line: usize,
    /// The key path (`expected[2].port`, `expected[3]` for a missing key);
    /// empty for a TOML syntax error, whose message starts with the column.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "line {}: {}", self.line, self.message)
        } else {
            write!(f, "line {}: {}: {}", self.line, self.key, self.message)
        }
    }
}

impl std::error::Error for Problem {}

impl Entry {
    /// Whether it covers the endpoint, expiry aside.
    fn covers(&self, ip: IpAddr, port: u16, protocol: Protocol) -> bool {
        self.net.contains(&ip)
            && self.ports.contains(&port)
            && self.protocol.is_none_or(|p| p == protocol)
    }

    /// Whether it still holds at `now_ms`.
    fn holds_at(&self, now_ms: i64) -> bool {
        self.expires_ms.is_none_or(|e| now_ms < e)
    }
}

impl Expected {
    /// Reads the file's text; every problem in it, sorted by line, if any.
    pub fn parse(text: &str) -> Result<Expected, Vec<Problem>> {
        let lines = Lines::new(text);
        let raw: RawFile = toml::from_str(text).map_err(|e| vec![lines.toml_problem(&e)])?;
        let mut problems = Vec::new();
        for key in &raw.unknown {
            problems.push(Problem {
                line: lines.line(key.span().start),
                key: key.get_ref().clone(),
                message: "unknown key (known: expected)".to_owned(),
            });
        }
        let entries: Vec<Entry> = raw
            .expected
            .iter()
            .enumerate()
            .filter_map(|(i, e)| entry(i, e, &lines, &mut problems))
            .collect();
        if problems.is_empty() {
            Ok(Expected { entries })
        } else {
            problems.sort_by_key(|p| p.line);
            Err(problems)
        }
    }

    /// Reads and parses the file at `path`; on failure every problem, as
    /// `<path> line L: <key>: <message>` (or `<path>: cannot read: ...`).
    pub fn load(path: &Path) -> Result<Expected, Vec<String>> {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![format!("{shown}: cannot read: {e}")])?;
        Expected::parse(&text)
            .map_err(|problems| problems.iter().map(|p| format!("{shown} {p}")).collect())
    }

    /// Expects nothing: every endpoint is unexpected.
    pub fn empty() -> Expected {
        Expected::default()
    }

    /// The number of entries, expired ones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, in file order, expired ones included.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The first unexpired entry covering the endpoint at `now_ms` (UNIX
    /// ms), in file order.
    pub fn covering(
        &self,
        ip: IpAddr,
        port: u16,
        protocol: Protocol,
        now_ms: i64,
    ) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.holds_at(now_ms) && e.covers(ip, port, protocol))
    }

    /// The port range and protocol (`None`: both) of every entry unexpired
    /// at `now_ms`, in file order, so that a caller can skip the ports no
    /// entry can cover. Ranges may overlap and repeat.
    pub fn port_ranges(
        &self,
        now_ms: i64,
    ) -> impl Iterator<Item = (RangeInclusive<u16>, Option<Protocol>)> + '_ {
        self.entries
            .iter()
            .filter(move |e| e.holds_at(now_ms))
            .map(|e| (e.ports.clone(), e.protocol))
    }

    /// The earliest expiry after `now_ms` among the entries, so that a
    /// caller knows when [`Expected::covering`]'s answers next change;
    /// `None` if no entry expires after it.
    pub fn next_expiry_ms(&self, now_ms: i64) -> Option<i64> {
        self.entries
            .iter()
            .filter_map(|e| e.expires_ms)
            .filter(|&e| e > now_ms)
            .min()
    }
}

/// Validates entry `i`; `None` (with its problems pushed) if it is invalid.
fn entry(
    i: usize,
    raw: &Spanned<RawEntry>,
    lines: &Lines,
    problems: &mut Vec<Problem>,
) -> Option<Entry> {
    let line = lines.line(raw.span().start);
    let pairs = &raw.get_ref().0;
    let before = problems.len();
    let mut net = None;
    let mut ports = None;
    let mut protocol = None;
    let mut owner = None;
    let mut reason = None;
    let mut expires_ms = None;
    for (key, value) in pairs {
        let name = key.get_ref().as_str();
        let value = value.get_ref();
        let result = match name {
            "ip" => network(value).map(|n| net = Some(n)),
            "port" => port_range(value).map(|r| ports = Some(r)),
            "protocol" => protocol_of(value).map(|p| protocol = Some(p)),
            "owner" => string(value).map(|s| owner = Some(s.to_owned())),
            "reason" => string(value).map(|s| reason = Some(s.to_owned())),
            "expires" => expiry_ms(value).map(|e| expires_ms = Some(e)),
            _ => Err(format!("unknown key (known: {})", KEYS.join(", "))),
        };
        if let Err(message) = result {
            problems.push(Problem {
                line: lines.line(key.span().start),
                key: format!("expected[{i}].{name}"),
                message,
            });
        }
    }
    for required in ["ip", "port"] {
        if !pairs.iter().any(|(k, _)| k.get_ref() == required) {
            problems.push(Problem {
                line,
                key: format!("expected[{i}]"),
                message: format!("missing key {required:?}"),
            });
        }
    }
    if problems.len() > before {
        return None;
    }
    Some(Entry {
        net: net?,
        ports: ports?,
        protocol,
        owner,
        reason,
        expires_ms,
        line,
    })
}

/// A string value, or why it is not one.
fn string(value: &Value) -> Result<&str, String> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(format!("{other} is {}, not a string", a_type(other))),
    }
}

/// "an integer", "a table", ...: the value's TOML type, for messages.
fn a_type(value: &Value) -> String {
    let name = value.type_str();
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
}

/// `ip`: an address (a one-address network) or a CIDR without host bits.
fn network(value: &Value) -> Result<IpNet, String> {
    let s = string(value)?;
    let bad = || format!("{s:?} is not an IP address or CIDR");
    if s.contains('/') {
        let net: IpNet = s.parse().map_err(|_| bad())?;
        if net.trunc() != net {
            return Err(format!(
                "{s:?} has bits set beyond its prefix length (the network is {})",
                net.trunc()
            ));
        }
        Ok(net)
    } else {
        s.parse::<IpAddr>().map(IpNet::from).map_err(|_| bad())
    }
}

/// `port`: an integer, or a string holding a port or `start-end`.
fn port_range(value: &Value) -> Result<RangeInclusive<u16>, String> {
    const PORTS: &str = "ports are 1 to 65535";
    match value {
        Value::Integer(n) => u16::try_from(*n)
            .ok()
            .filter(|&p| p != 0)
            .map(|p| p..=p)
            .ok_or_else(|| format!("{n} is not a port ({PORTS})")),
        Value::String(s) => {
            let number = |part: &str| -> Result<u16, String> {
                let part = part.trim();
                if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!(
                        "{s:?} is not a port or a port range (write 443 or \"8000-8100\")"
                    ));
                }
                part.parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| format!("{s:?} is not a port ({part} is not: {PORTS})"))
            };
            match s.split_once('-') {
                None => number(s).map(|p| p..=p),
                Some((start, end)) => {
                    let (start, end) = (number(start)?, number(end)?);
                    if start > end {
                        return Err(format!(
                            "{s:?} is not a port range (the start is above the end)"
                        ));
                    }
                    Ok(start..=end)
                }
            }
        }
        other => Err(format!(
            "{other} is {}, not a port or a port range",
            a_type(other)
        )),
    }
}

/// `protocol`: `tcp` or `udp`, in any case.
fn protocol_of(value: &Value) -> Result<Protocol, String> {
    let s = string(value)?;
    s.parse()
        .map_err(|_| format!("{s:?} is not a protocol (tcp or udp)"))
}

/// `expires`: the UNIX ms from which the entry no longer holds (see the
/// module doc for dates against date-times).
fn expiry_ms(value: &Value) -> Result<i64, String> {
    let (datetime, shown) = match value {
        Value::Datetime(d) => (*d, d.to_string()),
        Value::String(s) => match s.parse::<Datetime>() {
            Ok(d) => (d, format!("{s:?}")),
            Err(_) => {
                return Err(format!(
                    "{s:?} is not a date or a date-time \
                     (write 2027-01-31 or 2027-01-31T12:00:00Z)"
                ))
            }
        },
        other => {
            return Err(format!(
                "{other} is {}, not a date or a date-time",
                a_type(other)
            ))
        }
    };
    match (datetime.date, datetime.time, datetime.offset) {
        (Some(date), None, None) => Ok((days(date) + 1) * DAY_MS),
        (Some(date), Some(time), Some(offset)) => {
            let offset_minutes = match offset {
                toml::value::Offset::Z => 0,
                toml::value::Offset::Custom { minutes } => i64::from(minutes),
            };
            let seconds =
                i64::from(time.hour) * 3600 + i64::from(time.minute) * 60 + i64::from(time.second)
                    - offset_minutes * 60;
            // Rounded up: "expired when now >= the instant" on whole ms.
            let sub_ms = i64::from(time.nanosecond.div_ceil(1_000_000));
            Ok(days(date) * DAY_MS + seconds * 1000 + sub_ms)
        }
        (Some(_), Some(_), None) => Err(format!(
            "{shown} has no UTC offset: add one (2027-01-31T12:00:00Z, \
             2027-01-31T12:00:00+08:00), the time zone is not guessed"
        )),
        _ => Err(format!(
            "{shown} is a time of day without a date (write 2027-01-31 or \
             2027-01-31T12:00:00Z)"
        )),
    }
}

/// Days from 1970-01-01 to `date` (proleptic Gregorian; H. Hinnant's
/// `days_from_civil`).
fn days(date: toml::value::Date) -> i64 {
    let (month, day) = (i64::from(date.month), i64::from(date.day));
    let year = i64::from(date.year) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Byte offsets to 1-based lines and columns.
struct Lines<'a> {
    text: &'a str,
    /// Byte offset of every `\n`.
    newlines: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        let newlines = text
            .bytes()
            .enumerate()
            .filter(|&(_, b)| b == b'\n')
            .map(|(i, _)| i)
            .collect();
        Lines { text, newlines }
    }

    fn line(&self, offset: usize) -> usize {
        1 + self.newlines.partition_point(|&nl| nl < offset)
    }

    /// 1-based, in characters.
    fn column(&self, offset: usize) -> usize {
        let line = self.line(offset);
        let start = if line == 1 {
            0
        } else {
            self.newlines[line - 2] + 1
        };
        let offset = offset.min(self.text.len());
        1 + self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
    }

    /// A problem the TOML reader found (syntax, or `expected` not being an
    /// array of tables).
    fn toml_problem(&self, error: &toml::de::Error) -> Problem {
        let message = error.message().trim().replace('\n', "; ");
        match error.span() {
            Some(span) => Problem {
                line: self.line(span.start),
                key: String::new(),
                message: format!("column {}: {message}", self.column(span.start)),
            },
            None => Problem {
                line: 1,
                key: String::new(),
                message,
            },
        }
    }
}

/// The top level: the `expected` entries and the keys that have no business
/// there.
struct RawFile {
    expected: Vec<Spanned<RawEntry>>,
    unknown: Vec<Spanned<String>>,
}

/// One entry's keys and values, in file order (not deserialized into a
/// struct: each key's line is needed and every problem is reported).
struct RawEntry(Vec<(Spanned<String>, Spanned<Value>)>);

impl<'de> Deserialize<'de> for RawFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Top;
        impl<'de> Visitor<'de> for Top {
            type Value = RawFile;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of [[expected]] entries")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawFile, A::Error> {
                let mut file = RawFile {
                    expected: Vec::new(),
                    unknown: Vec::new(),
                };
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    if key.get_ref() == "expected" {
                        file.expected = map.next_value()?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                        file.unknown.push(key);
                    }
                }
                Ok(file)
            }
        }
        deserializer.deserialize_map(Top)
    }
}

impl<'de> Deserialize<'de> for RawEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = RawEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an [[expected]] entry (a table)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEntry, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry()? {
                    pairs.push(pair);
                }
                Ok(RawEntry(pairs))
            }
        }
        deserializer.deserialize_map(Pairs)
    }
}

#[cfg(test)]
mod tests;
