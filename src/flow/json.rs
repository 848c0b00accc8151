//! JSON machinery shared by the goflow2 and pmacct decoders: one borrowed
//! parse that reads every key either format uses (so `auto` needs no second
//! parse), and typed accessors whose errors name the field.
//!
//! Values are checked after parsing rather than inside serde, so an error
//! keeps its reason (`invalid_value`, `invalid_address`, ...) instead of
//! collapsing into a serde message.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::{tcp_flags, DecodeError, MAX_JSON_RECORD_BYTES};

/// A JSON value as read, before it is checked against what its field needs.
/// `null` is not here: an `Option<Raw>` holding `None` is absent or null.
#[derive(Debug)]
pub(super) enum Raw<'a> {
    Uint(u64),
    Negative,
    Float(f64),
    /// Borrowed from the record unless it held escapes.
    Str(Cow<'a, str>),
    /// An array of strings, read as TCP flag names (pmacct
    /// `tcpflags_encode_as_array`); unknown names and pmacct's "NULL" add no bit.
    Flags(u16),
    /// A bool, object or other array: never valid for a field read here.
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Raw<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a json value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Raw<'de>, E> {
        Ok(Raw::Other)
    }
    fn visit_i64<E>(self, v: i64) -> Result<Raw<'de>, E> {
        Ok(u64::try_from(v).map_or(Raw::Negative, Raw::Uint))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Raw<'de>, E> {
        Ok(Raw::Uint(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Raw<'de>, E> {
        Ok(Raw::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Raw<'de>, E> {
        Ok(Raw::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Raw<'de>, E> {
        Ok(Raw::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Raw<'de>, E> {
        Ok(Raw::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Raw<'de>, E> {
        Ok(Raw::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw<'de>, A::Error> {
        let mut bits = 0;
        let mut all_names = true;
        while let Some(element) = seq.next_element::<FlagName>()? {
            match element {
                FlagName::Bit(bit) => bits |= bit,
                FlagName::NotAName => all_names = false,
            }
        }
        Ok(if all_names {
            Raw::Flags(bits)
        } else {
            Raw::Other
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Raw::Other)
    }
}

/// One element of an array value: a TCP flag name, or something else.
enum FlagName {
    Bit(u16),
    NotAName,
}

impl<'de> Deserialize<'de> for FlagName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FlagVisitor;
        impl<'de> Visitor<'de> for FlagVisitor {
            type Value = FlagName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a tcp flag name")
            }
            fn visit_str<E>(self, v: &str) -> Result<FlagName, E> {
                Ok(FlagName::Bit(tcp_flag_bit(v)))
            }
            fn visit_bool<E>(self, _: bool) -> Result<FlagName, E> {
                Ok(FlagName::NotAName)
            }
            fn visit_i64<E>(self, _: i64) -> Result<FlagName, E> {
                Ok(FlagName::NotAName)
            }
            fn visit_u64<E>(self, _: u64) -> Result<FlagName, E> {
                Ok(FlagName::NotAName)
            }
            fn visit_f64<E>(self, _: f64) -> Result<FlagName, E> {
                Ok(FlagName::NotAName)
            }
            fn visit_unit<E>(self) -> Result<FlagName, E> {
                Ok(FlagName::NotAName)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FlagName, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(FlagName::NotAName)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FlagName, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(FlagName::NotAName)
            }
        }
        deserializer.deserialize_any(FlagVisitor)
    }
}

fn tcp_flag_bit(name: &str) -> u16 {
    const NAMES: [(&str, u16); 8] = [
        ("FIN", tcp_flags::FIN),
        ("SYN", tcp_flags::SYN),
        ("RST", tcp_flags::RST),
        ("PSH", tcp_flags::PSH),
        ("ACK", tcp_flags::ACK),
        ("URG", tcp_flags::URG),
        ("ECE", tcp_flags::ECE),
        ("CWR", tcp_flags::CWR),
    ];
    NAMES
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(name))
        .map_or(0, |&(_, bit)| bit)
}

/// Every key either JSON format uses; all others are skipped unread.
#[derive(Deserialize)]
pub(super) struct Record<'a> {
    // goflow2 (snake_case names of flowpb.FlowMessage)
    #[serde(borrow)]
    pub src_addr: Option<Raw<'a>>,
    #[serde(borrow)]
    pub dst_addr: Option<Raw<'a>>,
    #[serde(borrow)]
    pub src_port: Option<Raw<'a>>,
    #[serde(borrow)]
    pub dst_port: Option<Raw<'a>>,
    #[serde(borrow)]
    pub proto: Option<Raw<'a>>,
    #[serde(borrow)]
    pub time_flow_end_ns: Option<Raw<'a>>,
    #[serde(borrow)]
    pub time_flow_start_ns: Option<Raw<'a>>,
    #[serde(borrow)]
    pub time_received_ns: Option<Raw<'a>>,
    pub sampler_address: Option<IgnoredAny>,
    // both
    #[serde(borrow)]
    pub tcp_flags: Option<Raw<'a>>,
    #[serde(borrow)]
    pub bytes: Option<Raw<'a>>,
    #[serde(borrow)]
    pub packets: Option<Raw<'a>>,
    #[serde(borrow)]
    pub sampling_rate: Option<Raw<'a>>,
    // pmacct
    #[serde(borrow)]
    pub event_type: Option<Raw<'a>>,
    #[serde(borrow)]
    pub ip_src: Option<Raw<'a>>,
    #[serde(borrow)]
    pub ip_dst: Option<Raw<'a>>,
    #[serde(borrow)]
    pub port_src: Option<Raw<'a>>,
    #[serde(borrow)]
    pub port_dst: Option<Raw<'a>>,
    #[serde(borrow)]
    pub ip_proto: Option<Raw<'a>>,
    #[serde(borrow)]
    pub flows: Option<Raw<'a>>,
    #[serde(borrow)]
    pub class: Option<Raw<'a>>,
    #[serde(borrow)]
    pub timestamp_end: Option<Raw<'a>>,
    #[serde(borrow)]
    pub timestamp_start: Option<Raw<'a>>,
    #[serde(borrow)]
    pub timestamp_arrival: Option<Raw<'a>>,
    #[serde(borrow)]
    pub stamp_inserted: Option<Raw<'a>>,
    #[serde(borrow)]
    pub stamp_updated: Option<Raw<'a>>,
}

impl Record<'_> {
    /// Whether a key only goflow2 writes is present (for `auto`).
    pub fn has_goflow2_keys(&self) -> bool {
        self.src_addr.is_some()
            || self.dst_addr.is_some()
            || self.time_flow_end_ns.is_some()
            || self.time_flow_start_ns.is_some()
            || self.time_received_ns.is_some()
            || self.sampler_address.is_some()
    }

    /// Whether a key only pmacct writes is present (for `auto`).
    pub fn has_pmacct_keys(&self) -> bool {
        self.ip_src.is_some() || self.ip_dst.is_some() || self.event_type.is_some()
    }
}

/// Parses one JSON record, borrowing its strings.
pub(super) fn parse(payload: &[u8]) -> Result<Record<'_>, DecodeError> {
    if payload.len() > MAX_JSON_RECORD_BYTES {
        return Err(DecodeError::Oversized {
            size: payload.len(),
            limit: MAX_JSON_RECORD_BYTES,
        });
    }
    serde_json::from_slice(payload).map_err(DecodeError::MalformedJson)
}

fn invalid(field: &'static str, what: &'static str) -> DecodeError {
    DecodeError::InvalidValue { field, what }
}

/// A required address: absent or `""` is missing; `::ffff:a.b.c.d` becomes IPv4.
pub(super) fn address(raw: &Option<Raw<'_>>, field: &'static str) -> Result<IpAddr, DecodeError> {
    match raw {
        None => Err(DecodeError::MissingField { field }),
        Some(Raw::Str(text)) if text.is_empty() => Err(DecodeError::MissingField { field }),
        Some(Raw::Str(text)) => text
            .parse::<IpAddr>()
            .map(|ip| ip.to_canonical())
            .map_err(|_| DecodeError::InvalidAddress {
                field,
                what: "not an ip address",
            }),
        Some(_) => Err(DecodeError::InvalidAddress {
            field,
            what: "not a string",
        }),
    }
}

/// A non-negative integer given as a JSON number (integral) or a numeric
/// string; absent or `""` is `None`.
pub(super) fn uint(raw: &Option<Raw<'_>>, field: &'static str) -> Result<Option<u64>, DecodeError> {
    match raw {
        None => Ok(None),
        Some(Raw::Uint(n)) => Ok(Some(*n)),
        Some(Raw::Negative) => Err(invalid(field, "negative")),
        // 2^64 as f64; a float at or above it does not fit.
        Some(Raw::Float(x))
            if x.fract() == 0.0 && *x >= 0.0 && *x < 18_446_744_073_709_551_616.0 =>
        {
            Ok(Some(*x as u64))
        }
        Some(Raw::Float(_)) => Err(invalid(field, "not a non-negative integer")),
        Some(Raw::Str(text)) if text.is_empty() => Ok(None),
        Some(Raw::Str(text)) if text.bytes().all(|b| b.is_ascii_digit()) => text
            .parse()
            .map(Some)
            .map_err(|_| invalid(field, "above 64 bits")),
        Some(_) => Err(invalid(field, "not a non-negative integer")),
    }
}

/// A counter (bytes, packets, flows): absent is 0.
pub(super) fn counter(raw: &Option<Raw<'_>>, field: &'static str) -> Result<u64, DecodeError> {
    Ok(uint(raw, field)?.unwrap_or(0))
}

/// A port: absent is 0 (protocols without ports).
pub(super) fn port(raw: &Option<Raw<'_>>, field: &'static str) -> Result<u16, DecodeError> {
    let n = uint(raw, field)?.unwrap_or(0);
    u16::try_from(n).map_err(|_| invalid(field, "above 65535"))
}

/// TCP flags: a number, a numeric string, or an array of flag names; absent is 0.
pub(super) fn flags(raw: &Option<Raw<'_>>, field: &'static str) -> Result<u16, DecodeError> {
    if let Some(Raw::Flags(bits)) = raw {
        return Ok(*bits);
    }
    let n = uint(raw, field)?.unwrap_or(0);
    u16::try_from(n).map_err(|_| invalid(field, "above 65535"))
}

/// Protocol number of a name nobody registered for us (IANA "reserved"):
/// such a flow is neither TCP nor UDP, so it is ignored downstream, not
/// rejected. goflow2 writes `""` for protocols it has no name for.
pub(super) const PROTO_UNNAMED: u8 = 255;

/// The IP protocol: a number, a numeric string, or a name (goflow2 "TCP",
/// pmacct "tcp"; case-insensitive); absent is missing.
pub(super) fn proto(raw: &Option<Raw<'_>>, field: &'static str) -> Result<u8, DecodeError> {
    if let Some(Raw::Str(name)) = raw {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(proto_number(name));
        }
    }
    let n = uint(raw, field)?.ok_or(DecodeError::MissingField { field })?;
    u8::try_from(n).map_err(|_| invalid(field, "above 255"))
}

/// Names goflow2 and pmacct write (pmacct's table follows /etc/protocols).
const PROTO_NAMES: [(&str, u8); 22] = [
    ("icmp", 1),
    ("igmp", 2),
    ("ipencap", 4),
    ("tcp", 6),
    ("egp", 8),
    ("udp", 17),
    ("ipv6", 41),
    ("ipv6-route", 43),
    ("ipv6-frag", 44),
    ("rsvp", 46),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("ipv6-icmp", 58),
    ("icmpv6", 58),
    ("ipv6-nonxt", 59),
    ("ipv6-opts", 60),
    ("ospf", 89),
    ("pim", 103),
    ("vrrp", 112),
    ("l2tp", 115),
    ("sctp", 132),
];

/// The number of a protocol name, or [`PROTO_UNNAMED`].
pub(super) fn proto_number(name: &str) -> u8 {
    PROTO_NAMES
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(name))
        .map_or(PROTO_UNNAMED, |&(_, n)| n)
}

/// The name pmacct writes for a protocol number, if it has one.
pub(super) fn proto_name(n: u8) -> Option<&'static str> {
    PROTO_NAMES
        .iter()
        .find(|&&(_, m)| m == n)
        .map(|&(name, _)| name)
}

/// An optional text value; anything but a string is `invalid_value`.
pub(super) fn text<'r>(
    raw: &'r Option<Raw<'_>>,
    field: &'static str,
) -> Result<Option<&'r str>, DecodeError> {
    match raw {
        None => Ok(None),
        Some(Raw::Str(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(field, "not a string")),
    }
}

/// A goflow2 time: nanoseconds as a number or numeric string, or RFC 3339
/// text (goflow2's `datetimenano` renderer); 0 is absent. Returns ms.
pub(super) fn goflow2_time(
    raw: &Option<Raw<'_>>,
    field: &'static str,
) -> Result<Option<i64>, DecodeError> {
    if let Some(Raw::Str(s)) = raw {
        if !s.is_empty() && !s.bytes().all(|b| b.is_ascii_digit()) {
            return datetime_ms(s)
                .map(Some)
                .ok_or(invalid(field, "neither nanoseconds nor an rfc 3339 time"));
        }
    }
    // u64 nanoseconds / 10^6 always fits an i64.
    Ok(uint(raw, field)?
        .map(|ns| (ns / 1_000_000) as i64)
        .filter(|&ms| ms != 0))
}

/// pmacct writes a zero time in local time ("1970-01-01 01:00:00" in CET,
/// "0000-00-00 00:00:00" in some versions): times this close to the epoch
/// are absent.
const PMACCT_ZERO_TIME_SLACK_MS: i64 = 2 * 86_400_000;

/// A pmacct time: `"1677577561.000000"` (epoch seconds with a fraction,
/// `timestamps_since_epoch`), `"YYYY-MM-DD HH:MM:SS[.ffffff]"` (taken as UTC,
/// as `timestamps_utc` writes it), RFC 3339 (`timestamps_rfc3339`), or a
/// JSON number of epoch seconds. Returns ms; near the epoch is absent.
pub(super) fn pmacct_time(
    raw: &Option<Raw<'_>>,
    field: &'static str,
) -> Result<Option<i64>, DecodeError> {
    let ms = match raw {
        None => return Ok(None),
        Some(Raw::Str(s)) if s.is_empty() || s.starts_with("0000-00-00") => return Ok(None),
        Some(Raw::Str(s)) if s.as_bytes().get(4) == Some(&b'-') => datetime_ms(s),
        Some(Raw::Str(s)) => epoch_decimal_ms(s),
        Some(Raw::Uint(secs)) => i64::try_from(*secs).ok().and_then(|s| s.checked_mul(1000)),
        Some(Raw::Float(secs)) if secs.is_finite() && *secs >= 0.0 && *secs < 1e15 => {
            Some((secs * 1000.0).round() as i64)
        }
        Some(_) => None,
    };
    let ms = ms.ok_or(invalid(
        field,
        "not a time (epoch seconds or YYYY-MM-DD HH:MM:SS)",
    ))?;
    Ok(Some(ms).filter(|ms| ms.abs() >= PMACCT_ZERO_TIME_SLACK_MS))
}

/// `"1677577561"` or `"1677577561.123456"` → ms.
fn epoch_decimal_ms(s: &str) -> Option<i64> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    secs.checked_mul(1000)?.checked_add(fraction_ms(frac)?)
}

/// The milliseconds of a fraction's digits (`"5"` → 500, `"123456"` → 123).
fn fraction_ms(digits: &str) -> Option<i64> {
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut ms = 0;
    for i in 0..3 {
        ms = ms * 10 + digits.as_bytes().get(i).map_or(0, |d| i64::from(d - b'0'));
    }
    Some(ms)
}

/// `YYYY-MM-DD[ T]HH:MM:SS[.fraction][Z|±HH:MM|±HHMM]` → ms since the epoch;
/// no offset means UTC.
pub(super) fn datetime_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, to: usize| -> Option<i64> {
        let digits = b.get(from..to)?;
        digits.iter().try_fold(0i64, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
        })
    };
    let sep_ok = b.get(4) == Some(&b'-')
        && b.get(7) == Some(&b'-')
        && matches!(b.get(10), Some(b' ' | b'T' | b't'))
        && b.get(13) == Some(&b':')
        && b.get(16) == Some(&b':');
    if !sep_ok {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second <= 60;
    if !valid {
        return None;
    }
    let mut rest = &s[19..];
    let mut ms = 0;
    if let Some(after_dot) = rest.strip_prefix('.') {
        let end = after_dot
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after_dot.len());
        if end == 0 {
            return None;
        }
        ms = fraction_ms(&after_dot[..end])?;
        rest = &after_dot[end..];
    }
    let offset_secs = match rest.as_bytes() {
        [] | [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] | [sign @ (b'+' | b'-'), h1, h2, m1, m2] => {
            let (h1, h2, m1, m2) = (*h1, *h2, *m1, *m2);
            if ![h1, h2, m1, m2].iter().all(u8::is_ascii_digit) {
                return None;
            }
            let hours = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
            let minutes = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
            let secs = hours * 3600 + minutes * 60;
            if *sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(secs * 1000 + ms)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// ms since the epoch → `"YYYY-MM-DD HH:MM:SS.ffffff"` (UTC), as pmacct
/// writes `timestamp_*` with `timestamps_utc: true`.
pub(super) fn format_datetime(ms: i64) -> String {
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (year, month, day) = civil_from_days(days);
    let secs = ms_of_day / 1000;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:06}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms_of_day % 1000 * 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_parses_space_and_rfc3339_forms() {
        assert_eq!(datetime_ms("2023-02-28 09:46:01"), Some(1_677_577_561_000));
        assert_eq!(
            datetime_ms("2023-02-28T09:46:01.25Z"),
            Some(1_677_577_561_250)
        );
        assert_eq!(
            datetime_ms("2023-02-28T10:46:01.123456+01:00"),
            Some(1_677_577_561_123)
        );
        assert_eq!(
            datetime_ms("2023-02-28T04:46:01-0500"),
            Some(1_677_577_561_000)
        );
        assert_eq!(datetime_ms("2024-02-29 00:00:00"), Some(1_709_164_800_000));
    }

    #[test]
    fn impossible_datetimes_are_refused() {
        for bad in [
            "2023-02-29 00:00:00",
            "2023-13-01 00:00:00",
            "2023-01-01 24:00:00",
            "2023-01-01 00:00:00.",
            "2023-01-01 00:00:00 junk",
            "2023-01-01",
            "2023/01/01 00:00:00",
            "2023-01-01 00:00:00+1",
        ] {
            assert_eq!(datetime_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn format_datetime_inverts_datetime_ms() {
        for ms in [
            0,
            1_677_577_561_123,
            951_782_400_000,
            -86_400_001,
            253_402_300_799_999,
        ] {
            assert_eq!(datetime_ms(&format_datetime(ms)), Some(ms), "{ms}");
        }
    }

    #[test]
    fn numeric_strings_and_integral_floats_are_counters() {
        let parse = |json: &str| -> Result<Option<u64>, DecodeError> {
            let raw: Option<Raw<'_>> = serde_json::from_str(json).unwrap();
            uint(&raw, "bytes")
        };
        assert_eq!(parse("\"19\"").unwrap(), Some(19));
        assert_eq!(parse("3.0").unwrap(), Some(3));
        assert_eq!(parse("null").unwrap(), None);
        for bad in [
            "-1",
            "1.5",
            "\"1.5\"",
            "\"-3\"",
            "\"x\"",
            "true",
            "{}",
            "1e30",
            "\"99999999999999999999\"",
        ] {
            assert_eq!(parse(bad).unwrap_err().reason(), "invalid_value", "{bad}");
        }
    }
}
