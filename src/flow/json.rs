//! The JSON parse shared by the goflow2 and pmacct decoders: one borrowed
//! pass that keeps the value of every key either format uses (so `auto`
//! needs no second parse) and skips all others.
//!
//! Two readers fill the same [`Record`]: [`scan`], a scanner for the flat
//! records collectors write, and, for whatever it gives up on, serde_json
//! ([`parse_with_serde`]), which reads any JSON or names its error.
//!
//! Values are kept as read ([`Raw`]) and checked afterwards by
//! [`super::value`], so an error keeps its reason (`invalid_value`,
//! `invalid_address`, ...) instead of collapsing into a serde message.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::{tcp_flags, DecodeError, MAX_JSON_RECORD_BYTES};

mod scan;

/// A JSON value as read, before it is checked against what its field needs.
#[derive(Debug)]
pub(super) enum Raw<'a> {
    /// `null`: stored in a [`Record`] as `None`, like an absent key.
    Null,
    /// A non-negative integer.
    Uint(u64),
    /// A negative integer (never valid: no field read here is signed).
    Negative,
    /// A number with a fraction or exponent.
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
        Ok(Raw::Null)
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

/// Every key either JSON format uses; all others are skipped unread. `null`
/// is absent; a key given twice keeps its last value.
#[derive(Debug, Default)]
pub(super) struct Record<'a> {
    // goflow2 (snake_case names of flowpb.FlowMessage)
    pub src_addr: Option<Raw<'a>>,
    pub dst_addr: Option<Raw<'a>>,
    pub src_port: Option<Raw<'a>>,
    pub dst_port: Option<Raw<'a>>,
    pub proto: Option<Raw<'a>>,
    pub time_flow_end_ns: Option<Raw<'a>>,
    pub time_flow_start_ns: Option<Raw<'a>>,
    pub time_received_ns: Option<Raw<'a>>,
    /// Only its presence matters (for `auto`).
    pub sampler_address: bool,
    // both
    pub tcp_flags: Option<Raw<'a>>,
    pub bytes: Option<Raw<'a>>,
    pub packets: Option<Raw<'a>>,
    pub sampling_rate: Option<Raw<'a>>,
    // pmacct
    pub event_type: Option<Raw<'a>>,
    pub ip_src: Option<Raw<'a>>,
    pub ip_dst: Option<Raw<'a>>,
    pub port_src: Option<Raw<'a>>,
    pub port_dst: Option<Raw<'a>>,
    pub ip_proto: Option<Raw<'a>>,
    pub flows: Option<Raw<'a>>,
    pub class: Option<Raw<'a>>,
    pub timestamp_end: Option<Raw<'a>>,
    pub timestamp_start: Option<Raw<'a>>,
    pub timestamp_arrival: Option<Raw<'a>>,
    pub stamp_inserted: Option<Raw<'a>>,
    pub stamp_updated: Option<Raw<'a>>,
}

impl<'a> Record<'a> {
    /// Where the value of `key` is kept; `None` for a key whose value is
    /// not kept (`sampler_address` is only noted as present).
    fn slot(&mut self, key: Key) -> Option<&mut Option<Raw<'a>>> {
        Some(match key {
            Key::Unused => return None,
            Key::SamplerAddress => {
                self.sampler_address = true;
                return None;
            }
            Key::SrcAddr => &mut self.src_addr,
            Key::DstAddr => &mut self.dst_addr,
            Key::SrcPort => &mut self.src_port,
            Key::DstPort => &mut self.dst_port,
            Key::Proto => &mut self.proto,
            Key::TimeFlowEndNs => &mut self.time_flow_end_ns,
            Key::TimeFlowStartNs => &mut self.time_flow_start_ns,
            Key::TimeReceivedNs => &mut self.time_received_ns,
            Key::TcpFlags => &mut self.tcp_flags,
            Key::Bytes => &mut self.bytes,
            Key::Packets => &mut self.packets,
            Key::SamplingRate => &mut self.sampling_rate,
            Key::EventType => &mut self.event_type,
            Key::IpSrc => &mut self.ip_src,
            Key::IpDst => &mut self.ip_dst,
            Key::PortSrc => &mut self.port_src,
            Key::PortDst => &mut self.port_dst,
            Key::IpProto => &mut self.ip_proto,
            Key::Flows => &mut self.flows,
            Key::Class => &mut self.class,
            Key::TimestampEnd => &mut self.timestamp_end,
            Key::TimestampStart => &mut self.timestamp_start,
            Key::TimestampArrival => &mut self.timestamp_arrival,
            Key::StampInserted => &mut self.stamp_inserted,
            Key::StampUpdated => &mut self.stamp_updated,
        })
    }

    /// Whether a key only goflow2 writes is present (for `auto`).
    pub fn has_goflow2_keys(&self) -> bool {
        self.src_addr.is_some()
            || self.dst_addr.is_some()
            || self.time_flow_end_ns.is_some()
            || self.time_flow_start_ns.is_some()
            || self.time_received_ns.is_some()
            || self.sampler_address
    }

    /// Whether a key only pmacct writes is present (for `auto`).
    pub fn has_pmacct_keys(&self) -> bool {
        self.ip_src.is_some() || self.ip_dst.is_some() || self.event_type.is_some()
    }
}

/// Parses one JSON record into `record`, borrowing its strings. The record
/// is filled in place (a `DeserializeSeed`) rather than returned: it is
/// large, and moving it cost more than reading a short line.
pub(super) fn parse<'a>(
    payload: &'a [u8],
    checked: Option<&'a str>,
    record: &mut Record<'a>,
) -> Result<(), DecodeError> {
    if payload.len() > MAX_JSON_RECORD_BYTES {
        return Err(DecodeError::Oversized {
            size: payload.len(),
            limit: MAX_JSON_RECORD_BYTES,
        });
    }
    // One UTF-8 check for the whole record (or for a whole block of records,
    // `checked`) is faster than serde_json's check of every string; invalid
    // UTF-8 is re-read only to get serde's error.
    let text = match checked.map_or_else(|| std::str::from_utf8(payload), Ok) {
        Ok(text) => text,
        Err(_) => {
            let error = serde_json::from_slice::<IgnoredAny>(payload)
                .err()
                .unwrap_or_else(|| serde::de::Error::custom("invalid utf-8"));
            return Err(DecodeError::MalformedJson(error));
        }
    };
    if scan::record(text, record) {
        return Ok(());
    }
    *record = Record::default();
    parse_with_serde(text, record).map_err(DecodeError::MalformedJson)
}

/// The full reading of [`parse`], for what [`scan`] leaves: any JSON
/// serde_json reads, and its error for the rest.
fn parse_with_serde<'a>(text: &'a str, record: &mut Record<'a>) -> Result<(), serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    Fill(record)
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end())
}

/// Fills a [`Record`] from a JSON object.
struct Fill<'r, 'a>(&'r mut Record<'a>);

impl<'de: 'a, 'a> DeserializeSeed<'de> for Fill<'_, 'a> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for Fill<'_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a json object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let record = self.0;
        while let Some(key) = map.next_key::<Key>()? {
            let Some(slot) = record.slot(key) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            *slot = match map.next_value::<Raw<'de>>()? {
                Raw::Null => None,
                raw => Some(raw),
            };
        }
        Ok(())
    }
}

/// A key of [`Record`], or one it skips.
#[derive(Clone, Copy)]
enum Key {
    Unused,
    SamplerAddress,
    SrcAddr,
    DstAddr,
    SrcPort,
    DstPort,
    Proto,
    TimeFlowEndNs,
    TimeFlowStartNs,
    TimeReceivedNs,
    TcpFlags,
    Bytes,
    Packets,
    SamplingRate,
    EventType,
    IpSrc,
    IpDst,
    PortSrc,
    PortDst,
    IpProto,
    Flows,
    Class,
    TimestampEnd,
    TimestampStart,
    TimestampArrival,
    StampInserted,
    StampUpdated,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Key, E> {
        Ok(key_of(key.as_bytes()))
    }
}

/// The key's [`Key`], matched by length first: most keys of a goflow2 line
/// are skipped, and this rejects them with one comparison.
fn key_of(key: &[u8]) -> Key {
    match key.len() {
        5 => match key {
            b"proto" => Key::Proto,
            b"bytes" => Key::Bytes,
            b"flows" => Key::Flows,
            b"class" => Key::Class,
            _ => Key::Unused,
        },
        6 => match key {
            b"ip_src" => Key::IpSrc,
            b"ip_dst" => Key::IpDst,
            _ => Key::Unused,
        },
        7 => match key {
            b"packets" => Key::Packets,
            _ => Key::Unused,
        },
        8 => match key {
            b"src_addr" => Key::SrcAddr,
            b"dst_addr" => Key::DstAddr,
            b"src_port" => Key::SrcPort,
            b"dst_port" => Key::DstPort,
            b"port_src" => Key::PortSrc,
            b"port_dst" => Key::PortDst,
            b"ip_proto" => Key::IpProto,
            _ => Key::Unused,
        },
        9 => match key {
            b"tcp_flags" => Key::TcpFlags,
            _ => Key::Unused,
        },
        10 => match key {
            b"event_type" => Key::EventType,
            _ => Key::Unused,
        },
        13 => match key {
            b"sampling_rate" => Key::SamplingRate,
            b"timestamp_end" => Key::TimestampEnd,
            b"stamp_updated" => Key::StampUpdated,
            _ => Key::Unused,
        },
        14 => match key {
            b"stamp_inserted" => Key::StampInserted,
            _ => Key::Unused,
        },
        15 => match key {
            b"timestamp_start" => Key::TimestampStart,
            b"sampler_address" => Key::SamplerAddress,
            _ => Key::Unused,
        },
        16 => match key {
            b"time_flow_end_ns" => Key::TimeFlowEndNs,
            b"time_received_ns" => Key::TimeReceivedNs,
            _ => Key::Unused,
        },
        17 => match key {
            b"timestamp_arrival" => Key::TimestampArrival,
            _ => Key::Unused,
        },
        18 => match key {
            b"time_flow_start_ns" => Key::TimeFlowStartNs,
            _ => Key::Unused,
        },
        _ => Key::Unused,
    }
}
