//! The flow record model and one decoder per input format
//! (`docs/semantics.md#input-records`).
//!
//! A decoder turns the payload of one Kafka record (or one line of a file)
//! into zero or more [`Flow`]s. Bad input is data, not an exception: every
//! decoder returns a [`DecodeError`] whose [`DecodeError::reason`] is the
//! label counted in `exposure_records_rejected_total{reason}`.

use std::net::IpAddr;

/// IANA protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IANA protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// TCP flag bits as exported by goflow2 and pmacct (the TCP header's flags byte).
pub mod tcp_flags {
    pub const FIN: u16 = 0x01;
    pub const SYN: u16 = 0x02;
    pub const RST: u16 = 0x04;
    pub const PSH: u16 = 0x08;
    pub const ACK: u16 = 0x10;
    pub const URG: u16 = 0x20;
    pub const ECE: u16 = 0x40;
    pub const CWR: u16 = 0x80;
}

/// One unidirectional flow, normalised from any input format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    /// Sender of the flow's packets.
    pub src_addr: IpAddr,
    /// Receiver of the flow's packets.
    pub dst_addr: IpAddr,
    /// Sender's transport port (0 when the protocol has none).
    pub src_port: u16,
    /// Receiver's transport port.
    pub dst_port: u16,
    /// IP protocol number; only [`PROTO_TCP`] and [`PROTO_UDP`] are used.
    pub proto: u8,
    /// Union of the TCP flags seen in the flow; 0 when not exported.
    pub tcp_flags: u16,
    /// Bytes, already multiplied by the sampling rate when it is above 1.
    pub bytes: u64,
    /// Packets, already multiplied by the sampling rate when it is above 1.
    pub packets: u64,
    /// The flow's time in UNIX milliseconds: its end time, else its start
    /// time, else the time it was received, else the Kafka record timestamp.
    pub time_ms: i64,
    /// An L7 application label from the collector (pmacct `class`), if any.
    pub label: Option<Box<str>>,
}

mod goflow2_json;
mod goflow2_pb;
mod json;
mod pmacct_json;
mod time;
mod value;

use std::fmt;
use std::str::FromStr;

pub use goflow2_json::encode_goflow2_json;
pub use goflow2_pb::encode_goflow2_pb;
pub use pmacct_json::encode_pmacct_json;

/// Largest JSON record decoded; a larger one is rejected as `oversized`.
/// Real goflow2 and pmacct lines are under 2 KiB.
pub const MAX_JSON_RECORD_BYTES: usize = 64 * 1024;

/// Input format of a record (config `kafka.format`, CLI `--format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// goflow2 `-format=bin`: varint-length-delimited `flowpb.FlowMessage`s.
    Goflow2Pb,
    /// goflow2 `-format=json`: one flow per record.
    Goflow2Json,
    /// pmacct's JSON (kafka or print plugin): one flow or marker per record.
    PmacctJson,
    /// Detect the format of each record (see [`decode`]).
    Auto,
}

impl Format {
    /// Every format, in the order they are listed to users.
    pub const ALL: [Format; 4] = [
        Format::Goflow2Pb,
        Format::Goflow2Json,
        Format::PmacctJson,
        Format::Auto,
    ];

    /// The name used in the config and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Goflow2Pb => "goflow2-pb",
            Format::Goflow2Json => "goflow2-json",
            Format::PmacctJson => "pmacct-json",
            Format::Auto => "auto",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A format name that is not one of [`Format::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format `{0}`: expected one of goflow2-pb, goflow2-json, pmacct-json, auto")]
pub struct ParseFormatError(pub String);

impl FromStr for Format {
    type Err = ParseFormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|format| format.as_str() == s)
            .ok_or_else(|| ParseFormatError(s.to_owned()))
    }
}

/// What a successfully read record held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Flows were appended to the output vector (possibly zero).
    Flows,
    /// A record that carries no flow by design (pmacct `event_type` other
    /// than `purge`); counted as ignored, not rejected.
    Marker,
}

/// Why a record was rejected. [`DecodeError::reason`] is the metric label.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or not a JSON object.
    #[error("malformed json: {0}")]
    MalformedJson(serde_json::Error),
    /// Not a sequence of length-delimited protobuf messages.
    #[error("malformed protobuf at byte {offset}: {what}")]
    MalformedProtobuf {
        /// Offset in the record where reading failed.
        offset: usize,
        /// What was wrong there.
        what: &'static str,
    },
    /// A field the flow cannot do without (an address, the protocol).
    #[error("missing field `{field}`")]
    MissingField {
        /// The field's name in the input format.
        field: &'static str,
    },
    /// An address that is not 4 or 16 bytes, or not IP address text.
    #[error("invalid address in `{field}`: {what}")]
    InvalidAddress {
        /// The field's name in the input format.
        field: &'static str,
        /// What was wrong with it.
        what: &'static str,
    },
    /// A value out of range or of the wrong kind.
    #[error("invalid value for `{field}`: {what}")]
    InvalidValue {
        /// The field's name in the input format.
        field: &'static str,
        /// What was wrong with it.
        what: &'static str,
    },
    /// No end, start or received time in the record, and no Kafka timestamp.
    #[error("no timestamp: the record has no end, start or received time and no kafka timestamp")]
    NoTimestamp,
    /// `auto` could not tell which JSON format a record is in.
    #[error(
        "unknown format: json record has neither goflow2 keys (src_addr, dst_addr, time_flow_end_ns) \
         nor pmacct keys (ip_src, ip_dst, event_type)"
    )]
    UnknownFormat,
    /// A JSON record above [`MAX_JSON_RECORD_BYTES`].
    #[error("oversized record: {size} bytes of json, the limit is {limit}")]
    Oversized {
        /// The record's size in bytes.
        size: usize,
        /// The limit it exceeds.
        limit: usize,
    },
}

impl DecodeError {
    /// Low-cardinality snake_case label for `exposure_records_rejected_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::MalformedJson(_) => "malformed_json",
            DecodeError::MalformedProtobuf { .. } => "malformed_protobuf",
            DecodeError::MissingField { .. } => "missing_field",
            DecodeError::InvalidAddress { .. } => "invalid_address",
            DecodeError::InvalidValue { .. } => "invalid_value",
            DecodeError::NoTimestamp => "no_timestamp",
            DecodeError::UnknownFormat => "unknown_format",
            DecodeError::Oversized { .. } => "oversized",
        }
    }
}

/// Decodes one record. `fallback_time_ms` is the Kafka record timestamp
/// (None for files).
///
/// Flows are appended to `out`. On error `out` is left as it was, so a record
/// is applied whole or not at all. Never panics on any input.
///
/// Rules shared by all formats:
/// - a flow's time is its end time, else its start time, else its received
///   time, else `fallback_time_ms`; a 0 time is absent; none → `no_timestamp`;
/// - bytes and packets are multiplied by the sampling rate when it is above 1
///   (0 means unsampled); a product above 64 bits → `invalid_value`;
/// - IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, which goflow2 may send as
///   16 bytes) become IPv4;
/// - counters are not cross-checked: `packets == 0` with `bytes > 0` is kept,
///   as some exporters fill only one of them and the traffic still happened;
/// - flows of any protocol are decoded; the classifier keeps TCP and UDP.
///
/// `auto` looks at the first non-whitespace byte: `{` means JSON, anything
/// else protobuf. A JSON record is goflow2 when it has a goflow2 key
/// (`src_addr`, `dst_addr`, `time_flow_*_ns`, `time_received_ns`,
/// `sampler_address`), else pmacct when it has `ip_src`, `ip_dst` or
/// `event_type`, else `unknown_format`; the keys are found in the one parse
/// that also reads the values. A goflow2 protobuf message of exactly 123
/// bytes starts with `{` (its length prefix), so a `{` record that is not
/// JSON is tried as protobuf before being rejected as `malformed_json`.
pub fn decode(
    format: Format,
    payload: &[u8],
    fallback_time_ms: Option<i64>,
    out: &mut Vec<Flow>,
) -> Result<Outcome, DecodeError> {
    decode_checked(format, payload, None, fallback_time_ms, out)
}

/// [`decode`] for a record already known to be UTF-8 (a line of a block
/// checked whole), which a JSON record then need not be checked again for.
pub fn decode_utf8(
    format: Format,
    text: &str,
    fallback_time_ms: Option<i64>,
    out: &mut Vec<Flow>,
) -> Result<Outcome, DecodeError> {
    decode_checked(format, text.as_bytes(), Some(text), fallback_time_ms, out)
}

/// [`decode`], with `text` the payload as UTF-8 if that is known already.
fn decode_checked(
    format: Format,
    payload: &[u8],
    text: Option<&str>,
    fallback_time_ms: Option<i64>,
    out: &mut Vec<Flow>,
) -> Result<Outcome, DecodeError> {
    let len_before = out.len();
    let result = decode_into(format, payload, text, fallback_time_ms, out);
    if result.is_err() {
        out.truncate(len_before);
    }
    result
}

fn decode_into(
    format: Format,
    payload: &[u8],
    text: Option<&str>,
    fallback_time_ms: Option<i64>,
    out: &mut Vec<Flow>,
) -> Result<Outcome, DecodeError> {
    match format {
        Format::Goflow2Pb => goflow2_pb::decode(payload, fallback_time_ms, out),
        Format::Goflow2Json => {
            let mut record = json::Record::default();
            json::parse(payload, text, &mut record)?;
            out.push(goflow2_json::interpret(&record, fallback_time_ms)?);
            Ok(Outcome::Flows)
        }
        Format::PmacctJson => {
            let mut record = json::Record::default();
            json::parse(payload, text, &mut record)?;
            pmacct_json::interpret(&record, fallback_time_ms, out)
        }
        Format::Auto => decode_auto(payload, text, fallback_time_ms, out),
    }
}

fn decode_auto(
    payload: &[u8],
    text: Option<&str>,
    fallback_time_ms: Option<i64>,
    out: &mut Vec<Flow>,
) -> Result<Outcome, DecodeError> {
    let first = payload.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return goflow2_pb::decode(payload, fallback_time_ms, out);
    }
    let mut record = json::Record::default();
    match json::parse(payload, text, &mut record) {
        Ok(()) => {}
        Err(json_error @ DecodeError::MalformedJson(_)) => {
            // Maybe a 123-byte protobuf message: its length prefix is `{`.
            let len_before = out.len();
            return goflow2_pb::decode(payload, fallback_time_ms, out).map_err(|_| {
                out.truncate(len_before);
                json_error
            });
        }
        Err(other) => return Err(other),
    }
    if record.has_goflow2_keys() {
        out.push(goflow2_json::interpret(&record, fallback_time_ms)?);
        Ok(Outcome::Flows)
    } else if record.has_pmacct_keys() {
        pmacct_json::interpret(&record, fallback_time_ms, out)
    } else {
        Err(DecodeError::UnknownFormat)
    }
}

/// What every decoder extracts from a record, before the rules shared by all
/// formats (time fallbacks, sampling) turn it into a [`Flow`].
struct Parts {
    src_addr: IpAddr,
    dst_addr: IpAddr,
    src_port: u16,
    dst_port: u16,
    proto: u8,
    tcp_flags: u16,
    bytes: u64,
    packets: u64,
    /// 0 and 1 both mean unsampled.
    sampling_rate: u64,
    end_ms: Option<i64>,
    start_ms: Option<i64>,
    received_ms: Option<i64>,
    label: Option<Box<str>>,
}

impl Parts {
    fn into_flow(self, fallback_time_ms: Option<i64>) -> Result<Flow, DecodeError> {
        let present = |t: Option<i64>| t.filter(|&ms| ms != 0);
        let time_ms = present(self.end_ms)
            .or(present(self.start_ms))
            .or(present(self.received_ms))
            .or(present(fallback_time_ms))
            .ok_or(DecodeError::NoTimestamp)?;
        let (bytes, packets) = if self.sampling_rate > 1 {
            let scale = |n: u64| {
                n.checked_mul(self.sampling_rate)
                    .ok_or(DecodeError::InvalidValue {
                        field: "sampling_rate",
                        what: "counters times the sampling rate exceed 64 bits",
                    })
            };
            (scale(self.bytes)?, scale(self.packets)?)
        } else {
            (self.bytes, self.packets)
        };
        Ok(Flow {
            src_addr: self.src_addr,
            dst_addr: self.dst_addr,
            src_port: self.src_port,
            dst_port: self.dst_port,
            proto: self.proto,
            tcp_flags: self.tcp_flags,
            bytes,
            packets,
            time_ms,
            label: self.label,
        })
    }
}

#[cfg(test)]
mod tests;

/// Property-test strategies shared by the decoders' tests.
#[cfg(test)]
pub(crate) mod strategies {
    use super::Flow;
    use proptest::prelude::*;
    use std::net::IpAddr;

    /// Any flow, IPv4 or IPv6 (IPv4-mapped addresses read as IPv4), with a
    /// time in `times` (ms) and a label from `labels`.
    pub fn flow(
        times: std::ops::RangeInclusive<i64>,
        labels: impl Strategy<Value = Option<String>>,
    ) -> impl Strategy<Value = Flow> {
        let addr = prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u8; 16]>().prop_map(|b| IpAddr::from(b).to_canonical()),
        ];
        (
            addr.clone(),
            addr,
            any::<(u16, u16, u8, u16)>(),
            any::<(u64, u64)>(),
            times,
            labels,
        )
            .prop_map(
                |(
                    src_addr,
                    dst_addr,
                    (src_port, dst_port, proto, tcp_flags),
                    (bytes, packets),
                    time_ms,
                    label,
                )| Flow {
                    src_addr,
                    dst_addr,
                    src_port,
                    dst_port,
                    proto,
                    tcp_flags,
                    bytes,
                    packets,
                    time_ms,
                    label: label.map(Box::from),
                },
            )
    }
}
