//! goflow2 `-format=bin`: each `flowpb.FlowMessage` (goflow2 v2
//! `pb/flow.proto`) prefixed by its varint length (`protodelim`), one or more
//! per record. Read by hand over the wire format: no allocation per flow
//! beyond the push into the output vector.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{DecodeError, Flow, Outcome, Parts};

// Field numbers in goflow2 v2 `pb/flow.proto`.
const SAMPLING_RATE: u64 = 3; // uint64
const SRC_ADDR: u64 = 6; // bytes, 4 or 16
const DST_ADDR: u64 = 7; // bytes
const BYTES: u64 = 9; // uint64
const PACKETS: u64 = 10; // uint64
const PROTO: u64 = 20; // uint32
const SRC_PORT: u64 = 21; // uint32
const DST_PORT: u64 = 22; // uint32
const TCP_FLAGS: u64 = 26; // uint32
const ETYPE: u64 = 30; // uint32, written by the encoder, not read
const TIME_RECEIVED_NS: u64 = 110; // uint64
const TIME_FLOW_START_NS: u64 = 111; // uint64
const TIME_FLOW_END_NS: u64 = 112; // uint64

// Wire types.
const VARINT: u64 = 0;
const I64: u64 = 1;
const LEN: u64 = 2;
const I32: u64 = 5;

/// Decodes every message of a record into `out` (the caller restores `out`
/// on error). An empty record is malformed: goflow2 never sends one.
pub(super) fn decode(
    payload: &[u8],
    fallback_time_ms: Option<i64>,
    out: &mut Vec<Flow>,
) -> Result<Outcome, DecodeError> {
    if payload.is_empty() {
        return Err(malformed(0, "empty record"));
    }
    let mut reader = Reader {
        buf: payload,
        pos: 0,
    };
    while reader.pos < payload.len() {
        let message = reader.len_delimited()?;
        let mut fields = Reader {
            buf: &payload[..message.end],
            pos: message.start,
        };
        out.push(read_message(&mut fields)?.into_flow(fallback_time_ms)?);
    }
    Ok(Outcome::Flows)
}

/// The value of a varint's first bytes (up to 8, continuation bits still
/// set, bytes beyond it zero): its 7-bit groups moved together.
#[inline(always)]
fn compact_groups(word: u64) -> u64 {
    let x = word & 0x7f7f_7f7f_7f7f_7f7f;
    let x = ((x & 0x7f00_7f00_7f00_7f00) >> 1) | (x & 0x007f_007f_007f_007f);
    let x = ((x & 0x3fff_0000_3fff_0000) >> 2) | (x & 0x0000_3fff_0000_3fff);
    ((x & 0x0fff_ffff_0000_0000) >> 4) | (x & 0x0000_0000_0fff_ffff)
}

fn malformed(offset: usize, what: &'static str) -> DecodeError {
    DecodeError::MalformedProtobuf { offset, what }
}

/// A cursor over `buf`; offsets are from the start of the record.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    #[inline(always)]
    fn varint(&mut self) -> Result<u64, DecodeError> {
        // Fast paths: tags and small values are one byte; the tags of
        // fields 16 to 2047 and ports are two.
        match *self.buf.get(self.pos..).unwrap_or_default() {
            [b0, ..] if b0 < 0x80 => {
                self.pos += 1;
                Ok(u64::from(b0))
            }
            [b0, b1, ..] if b1 < 0x80 => {
                self.pos += 2;
                Ok(u64::from(b0 & 0x7f) | u64::from(b1) << 7)
            }
            _ => self.varint_slow(),
        }
    }

    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, DecodeError> {
        let rest = &self.buf[self.pos..];
        // Timestamps in ns are 9 bytes: read the first 8 as one word.
        if let Some(word) = rest.first_chunk::<8>().map(|w| u64::from_le_bytes(*w)) {
            let stops = !word & 0x8080_8080_8080_8080;
            let (len, low) = if stops == 0 {
                (8, word)
            } else {
                let len = stops.trailing_zeros() as usize / 8 + 1;
                (len, word & (u64::MAX >> (64 - 8 * len)))
            };
            let value = compact_groups(low);
            if stops != 0 {
                self.pos += len;
                return Ok(value);
            }
            // 9 or 10 bytes: 56 bits so far. Errors are left to the loop.
            match (rest.get(8), rest.get(9)) {
                (Some(&b8), _) if b8 < 0x80 => {
                    self.pos += 9;
                    return Ok(value | u64::from(b8) << 56);
                }
                (Some(&b8), Some(&b9)) if b9 <= 1 => {
                    self.pos += 10;
                    return Ok(value | u64::from(b8 & 0x7f) << 56 | u64::from(b9) << 63);
                }
                _ => {}
            }
        }
        // Fewer than 8 bytes left, or an error: byte by byte.
        let mut value = 0u64;
        // At most 10 bytes; `take` keeps the loop free of bounds checks.
        for (i, &b) in rest.iter().take(10).enumerate() {
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                if i == 9 && b > 1 {
                    return Err(malformed(self.pos + i, "varint exceeds 64 bits"));
                }
                self.pos += i + 1;
                return Ok(value);
            }
        }
        if rest.len() < 10 {
            return Err(malformed(self.buf.len(), "truncated varint"));
        }
        Err(malformed(self.pos + 9, "varint exceeds 64 bits"))
    }

    fn skip(&mut self, n: u64) -> Result<(), DecodeError> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .filter(|&end| end <= self.buf.len())
            .ok_or(malformed(self.pos, "truncated field"))?;
        self.pos = end;
        Ok(())
    }

    /// A varint length, then that many bytes; returns their range.
    fn len_delimited(&mut self) -> Result<std::ops::Range<usize>, DecodeError> {
        let len = self.varint()?;
        let start = self.pos;
        self.skip(len)?;
        Ok(start..self.pos)
    }
}

/// The fields used, as they are on the wire (0 = absent, as in proto3).
#[derive(Default)]
struct Fields {
    sampling_rate: u64,
    src_addr: Option<std::ops::Range<usize>>,
    dst_addr: Option<std::ops::Range<usize>>,
    bytes: u64,
    packets: u64,
    proto: u64,
    src_port: u64,
    dst_port: u64,
    tcp_flags: u64,
    time_received_ns: u64,
    time_flow_start_ns: u64,
    time_flow_end_ns: u64,
}

fn read_message(r: &mut Reader<'_>) -> Result<Parts, DecodeError> {
    let mut f = Fields::default();
    while r.pos < r.buf.len() {
        let tag_at = r.pos;
        let key = r.varint()?;
        let (field, wire) = (key >> 3, key & 7);
        if field == 0 || key > u64::from(u32::MAX) {
            return Err(malformed(tag_at, "field number 0 or above 2^29"));
        }
        // Read the value by its wire type, then keep it if the field is used.
        match wire {
            VARINT => {
                let value = r.varint()?;
                match field {
                    SAMPLING_RATE => f.sampling_rate = value,
                    BYTES => f.bytes = value,
                    PACKETS => f.packets = value,
                    PROTO => f.proto = value,
                    SRC_PORT => f.src_port = value,
                    DST_PORT => f.dst_port = value,
                    TCP_FLAGS => f.tcp_flags = value,
                    TIME_RECEIVED_NS => f.time_received_ns = value,
                    TIME_FLOW_START_NS => f.time_flow_start_ns = value,
                    TIME_FLOW_END_NS => f.time_flow_end_ns = value,
                    SRC_ADDR | DST_ADDR => return Err(wrong_wire_type(tag_at)),
                    _ => {}
                }
            }
            LEN => {
                let value = r.len_delimited()?;
                match field {
                    SRC_ADDR => f.src_addr = Some(value),
                    DST_ADDR => f.dst_addr = Some(value),
                    _ if is_used_varint(field) => return Err(wrong_wire_type(tag_at)),
                    _ => {}
                }
            }
            I64 | I32 => {
                r.skip(if wire == I64 { 8 } else { 4 })?;
                if is_used_varint(field) || matches!(field, SRC_ADDR | DST_ADDR) {
                    return Err(wrong_wire_type(tag_at));
                }
            }
            3 | 4 => return Err(malformed(tag_at, "groups are not supported")),
            _ => return Err(malformed(tag_at, "invalid wire type")),
        }
    }
    let buf = r.buf;
    Ok(Parts {
        src_addr: address(f.src_addr.map(|range| &buf[range]), "src_addr")?,
        dst_addr: address(f.dst_addr.map(|range| &buf[range]), "dst_addr")?,
        src_port: narrow(f.src_port, "src_port", "above 65535")?,
        dst_port: narrow(f.dst_port, "dst_port", "above 65535")?,
        proto: narrow(f.proto, "proto", "above 255")?,
        tcp_flags: narrow(f.tcp_flags, "tcp_flags", "above 65535")?,
        bytes: f.bytes,
        packets: f.packets,
        sampling_rate: f.sampling_rate,
        end_ms: ns_to_ms(f.time_flow_end_ns),
        start_ms: ns_to_ms(f.time_flow_start_ns),
        received_ms: ns_to_ms(f.time_received_ns),
        label: None,
    })
}

/// 4 bytes is IPv4; 16 bytes is IPv6, or IPv4 when IPv4-mapped (goflow2
/// issue #31: "IPv4 will either be 4 bytes or mapped inside 16 bytes").
fn address(bytes: Option<&[u8]>, field: &'static str) -> Result<IpAddr, DecodeError> {
    let bytes = bytes.unwrap_or_default();
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Ok(IpAddr::V4(Ipv4Addr::from(v4)));
    }
    if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        return Ok(IpAddr::V6(Ipv6Addr::from(v6)).to_canonical());
    }
    if bytes.is_empty() {
        return Err(DecodeError::MissingField { field });
    }
    Err(DecodeError::InvalidAddress {
        field,
        what: "not 4 or 16 bytes",
    })
}

fn is_used_varint(field: u64) -> bool {
    matches!(
        field,
        SAMPLING_RATE
            | BYTES
            | PACKETS
            | PROTO
            | SRC_PORT
            | DST_PORT
            | TCP_FLAGS
            | TIME_RECEIVED_NS
            | TIME_FLOW_START_NS
            | TIME_FLOW_END_NS
    )
}

fn wrong_wire_type(offset: usize) -> DecodeError {
    malformed(offset, "known field with the wrong wire type")
}

fn narrow<T: TryFrom<u64>>(
    value: u64,
    field: &'static str,
    what: &'static str,
) -> Result<T, DecodeError> {
    T::try_from(value).map_err(|_| DecodeError::InvalidValue { field, what })
}

fn ns_to_ms(ns: u64) -> Option<i64> {
    // u64 nanoseconds / 10^6 always fits an i64.
    Some((ns / 1_000_000) as i64).filter(|&ms| ms != 0)
}

/// Appends one goflow2 `-format=bin` message (varint length +
/// `flowpb.FlowMessage`) for `flow`: sampling_rate 1, all three times
/// `flow.time_ms` in ns (a negative time is written as 0), etype 0x800 or
/// 0x86dd by the source address. Zero fields are omitted, as proto3 does.
pub fn encode_goflow2_pb(flow: &Flow, out: &mut Vec<u8>) {
    let ns = u64::try_from(flow.time_ms)
        .unwrap_or(0)
        .saturating_mul(1_000_000);
    let etype = if flow.src_addr.is_ipv4() {
        0x800
    } else {
        0x86dd
    };
    // At most 120 bytes (every field at its widest), so the length is one byte.
    let len_at = out.len();
    out.push(0);
    put_uint(out, SAMPLING_RATE, 1);
    put_addr(out, SRC_ADDR, flow.src_addr);
    put_addr(out, DST_ADDR, flow.dst_addr);
    put_uint(out, BYTES, flow.bytes);
    put_uint(out, PACKETS, flow.packets);
    put_uint(out, PROTO, flow.proto.into());
    put_uint(out, SRC_PORT, flow.src_port.into());
    put_uint(out, DST_PORT, flow.dst_port.into());
    put_uint(out, TCP_FLAGS, flow.tcp_flags.into());
    put_uint(out, ETYPE, etype);
    put_uint(out, TIME_RECEIVED_NS, ns);
    put_uint(out, TIME_FLOW_START_NS, ns);
    put_uint(out, TIME_FLOW_END_NS, ns);
    let len = out.len() - len_at - 1;
    debug_assert!(len < 0x80, "a flow message is at most 120 bytes");
    out[len_at] = len as u8;
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_uint(out: &mut Vec<u8>, field: u64, value: u64) {
    if value != 0 {
        put_varint(out, field << 3 | VARINT);
        put_varint(out, value);
    }
}

fn put_addr(out: &mut Vec<u8>, field: u64, addr: IpAddr) {
    put_varint(out, field << 3 | LEN);
    match addr {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(16);
            out.extend_from_slice(&v6.octets());
        }
    }
}

#[cfg(test)]
mod tests;
