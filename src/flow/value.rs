//! Typed reading of [`Raw`] JSON values, with errors that name the field.
//! Numeric fields may be JSON numbers or numeric strings (pmacct writes
//! both); `null` and absent keys are alike.

use std::net::IpAddr;

use super::json::Raw;
use super::time::{datetime_ms, epoch_decimal_ms};
use super::DecodeError;

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

#[cfg(test)]
mod tests {
    use super::*;

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
