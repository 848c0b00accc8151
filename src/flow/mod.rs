//! The flow record model and one decoder per input format (SPEC §4).
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
    /// Not JSON, not an object, or a key given twice.
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
    let len_before = out.len();
    let result = decode_into(format, payload, fallback_time_ms, out);
    if result.is_err() {
        out.truncate(len_before);
    }
    result
}

fn decode_into(
    format: Format,
    payload: &[u8],
    fallback_time_ms: Option<i64>,
    out: &mut Vec<Flow>,
) -> Result<Outcome, DecodeError> {
    match format {
        Format::Goflow2Pb => goflow2_pb::decode(payload, fallback_time_ms, out),
        Format::Goflow2Json => {
            let record = json::parse(payload)?;
            out.push(goflow2_json::interpret(&record, fallback_time_ms)?);
            Ok(Outcome::Flows)
        }
        Format::PmacctJson => {
            let record = json::parse(payload)?;
            pmacct_json::interpret(&record, fallback_time_ms, out)
        }
        Format::Auto => decode_auto(payload, fallback_time_ms, out),
    }
}

fn decode_auto(
    payload: &[u8],
    fallback_time_ms: Option<i64>,
    out: &mut Vec<Flow>,
) -> Result<Outcome, DecodeError> {
    let first = payload.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return goflow2_pb::decode(payload, fallback_time_ms, out);
    }
    let record = match json::parse(payload) {
        Ok(record) => record,
        Err(json_error @ DecodeError::MalformedJson(_)) => {
            // Maybe a 123-byte protobuf message: its length prefix is `{`.
            let len_before = out.len();
            return goflow2_pb::decode(payload, fallback_time_ms, out).map_err(|_| {
                out.truncate(len_before);
                json_error
            });
        }
        Err(other) => return Err(other),
    };
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
mod tests {
    use super::*;

    fn flow() -> Flow {
        Flow {
            src_addr: IpAddr::from([198, 51, 100, 7]),
            dst_addr: IpAddr::from([203, 0, 113, 10]),
            src_port: 51000,
            dst_port: 443,
            proto: PROTO_TCP,
            tcp_flags: tcp_flags::SYN | tcp_flags::ACK,
            bytes: 1500,
            packets: 3,
            time_ms: 1_700_000_000_123,
            label: None,
        }
    }

    fn auto(payload: &[u8]) -> Result<(Outcome, Vec<Flow>), DecodeError> {
        let mut out = Vec::new();
        let outcome = decode(Format::Auto, payload, None, &mut out)?;
        Ok((outcome, out))
    }

    #[test]
    fn format_names_parse_print_and_deserialize_alike() {
        for format in Format::ALL {
            assert_eq!(format.as_str().parse::<Format>(), Ok(format));
            assert_eq!(format.to_string(), format.as_str());
            let quoted = format!("\"{}\"", format.as_str());
            assert_eq!(serde_json::from_str::<Format>(&quoted).unwrap(), format);
            assert_eq!(serde_json::to_string(&format).unwrap(), quoted);
        }
    }

    #[test]
    fn unknown_format_name_lists_the_valid_ones() {
        let message = "netflow".parse::<Format>().unwrap_err().to_string();
        for format in Format::ALL {
            assert!(message.contains(format.as_str()), "{message}");
        }
    }

    #[test]
    fn auto_detects_each_format() {
        let mut pb = Vec::new();
        encode_goflow2_pb(&flow(), &mut pb);
        encode_goflow2_pb(&flow(), &mut pb);
        assert_eq!(auto(&pb).unwrap(), (Outcome::Flows, vec![flow(), flow()]));
        let goflow2 = format!("  \n{}\n", encode_goflow2_json(&flow()));
        assert_eq!(
            auto(goflow2.as_bytes()).unwrap(),
            (Outcome::Flows, vec![flow()])
        );
        let pmacct = encode_pmacct_json(&flow());
        assert_eq!(
            auto(pmacct.as_bytes()).unwrap(),
            (Outcome::Flows, vec![flow()])
        );
    }

    #[test]
    fn auto_json_without_known_keys_is_unknown_format() {
        let err = auto(br#"{"src":"198.51.100.7","bytes":1}"#).unwrap_err();
        assert_eq!(err.reason(), "unknown_format");
        assert_eq!(auto(b"{\"src\":").unwrap_err().reason(), "malformed_json");
    }

    #[test]
    fn auto_reads_a_123_byte_protobuf_message_whose_length_is_a_brace() {
        let mut pb = Vec::new();
        encode_goflow2_pb(&flow(), &mut pb);
        // Pad the message with an unknown string field (1001) to 123 bytes.
        let pad = 123 - (pb.len() - 1) - 3;
        pb.extend_from_slice(&[0xca, 0x3e, pad as u8]);
        pb.resize(pb.len() + pad, b'x');
        pb[0] = 123;
        assert_eq!(pb[0], b'{');
        assert_eq!(auto(&pb).unwrap(), (Outcome::Flows, vec![flow()]));
    }

    #[test]
    fn oversized_json_is_rejected() {
        let line = encode_goflow2_json(&flow());
        let padded = format!("{}{}}}", &line[..line.len() - 1], ",\"x\":0".repeat(12_000));
        assert!(padded.len() > MAX_JSON_RECORD_BYTES);
        let mut out = Vec::new();
        for format in [Format::Goflow2Json, Format::PmacctJson, Format::Auto] {
            let err = decode(format, padded.as_bytes(), None, &mut out).unwrap_err();
            assert_eq!(err.reason(), "oversized", "{format}");
        }
    }

    #[test]
    fn reasons_are_distinct_snake_case_labels() {
        let json_error = serde_json::from_str::<u8>("x").unwrap_err();
        let errors = [
            DecodeError::MalformedJson(json_error),
            DecodeError::MalformedProtobuf {
                offset: 0,
                what: "x",
            },
            DecodeError::MissingField { field: "x" },
            DecodeError::InvalidAddress {
                field: "x",
                what: "x",
            },
            DecodeError::InvalidValue {
                field: "x",
                what: "x",
            },
            DecodeError::NoTimestamp,
            DecodeError::UnknownFormat,
            DecodeError::Oversized { size: 2, limit: 1 },
        ];
        let mut reasons: Vec<&str> = errors.iter().map(DecodeError::reason).collect();
        assert!(reasons
            .iter()
            .all(|r| r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), errors.len());
        for error in &errors {
            let message = error.to_string();
            assert!(
                !message.ends_with('.') && message.starts_with(|c: char| c.is_lowercase()),
                "{message}"
            );
        }
    }
}
#[cfg(test)]
mod tmp_throughput {
    use super::*;
    #[test]
    #[ignore]
    fn throughput() {
        let n = 200_000usize;
        let flows: Vec<Flow> = (0..n)
            .map(|i| Flow {
                src_addr: IpAddr::from([198, 51, (i >> 8) as u8, i as u8]),
                dst_addr: IpAddr::from([203, 0, 113, (i % 251) as u8]),
                src_port: (i % 60000) as u16 + 1024,
                dst_port: 443,
                proto: PROTO_TCP,
                tcp_flags: 0x12,
                bytes: 1500 + i as u64,
                packets: 3,
                time_ms: 1_700_000_000_000 + i as i64,
                label: if i % 2 == 0 {
                    None
                } else {
                    Some("https".into())
                },
            })
            .collect();
        let pb: Vec<Vec<u8>> = flows
            .iter()
            .map(|f| {
                let mut b = Vec::new();
                encode_goflow2_pb(f, &mut b);
                b
            })
            .collect();
        let gj: Vec<String> = flows.iter().map(encode_goflow2_json).collect();
        // goflow2 default full-field line style (~1 KB)
        let gj_full: Vec<String> = gj.iter().map(|l| format!("{},\"in_if\":11,\"out_if\":12,\"src_mac\":\"42:61:64:55:53:42\",\"dst_mac\":\"48:6f:73:74:50:43\",\"src_vlan\":0,\"dst_vlan\":0,\"vlan_id\":0,\"ip_tos\":0,\"forwarding_status\":0,\"ip_ttl\":0,\"ip_flags\":0,\"icmp_type\":0,\"icmp_code\":0,\"ipv6_flow_label\":0,\"fragment_id\":0,\"fragment_offset\":0,\"src_as\":0,\"dst_as\":0,\"next_hop\":\"0.0.0.0\",\"next_hop_as\":0,\"src_net\":\"0.0.0.0/0\",\"dst_net\":\"0.0.0.0/0\",\"bgp_next_hop\":\"\",\"bgp_communities\":[],\"as_path\":[],\"mpls_ttl\":[],\"mpls_label\":[],\"mpls_ip\":[],\"observation_domain_id\":0,\"observation_point_id\":0,\"layer_stack\":[],\"layer_size\":[],\"ipv6_routing_header_addresses\":[],\"ipv6_routing_header_seg_left\":0}}", &l[..l.len()-1])).collect();
        let pm: Vec<String> = flows.iter().map(encode_pmacct_json).collect();
        let mut out = Vec::with_capacity(16);
        let mut run = |name: &str, format: Format, recs: &[&[u8]]| {
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t = std::time::Instant::now();
                for r in recs {
                    out.clear();
                    decode(format, r, None, &mut out).unwrap();
                }
                best = best.min(t.elapsed().as_secs_f64());
            }
            let avg = recs.iter().map(|r| r.len()).sum::<usize>() / recs.len();
            println!(
                "{name:28} {:6.2} M rec/s  ({avg} B/rec)",
                recs.len() as f64 / best / 1e6
            );
        };
        let v: Vec<&[u8]> = pb.iter().map(|b| &b[..]).collect();
        run("goflow2-pb", Format::Goflow2Pb, &v);
        run("goflow2-pb (auto)", Format::Auto, &v);
        let v: Vec<&[u8]> = gj.iter().map(|b| b.as_bytes()).collect();
        run("goflow2-json", Format::Goflow2Json, &v);
        run("goflow2-json (auto)", Format::Auto, &v);
        let v: Vec<&[u8]> = gj_full.iter().map(|b| b.as_bytes()).collect();
        run("goflow2-json full fields", Format::Goflow2Json, &v);
        let v: Vec<&[u8]> = pm.iter().map(|b| b.as_bytes()).collect();
        run("pmacct-json", Format::PmacctJson, &v);
        run("pmacct-json (auto)", Format::Auto, &v);
    }
}
