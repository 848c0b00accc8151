//! The records of the routing topic (`<group_id>-by-asset`): one accepted
//! flow each, keyed by its asset's address so that both directions of every
//! connection of an asset land in one partition, whatever partitioning the
//! collector used, and carrying where it was read ([`SourcePosition`]) so
//! that the counting side can drop a replay ([`super::replay`]).
//!
//! The value is a compact binary form of our own, not the collector's record:
//!
//! ```text
//! version      u8 = 1
//! flags        u8: bit 0 source is IPv6, bit 1 destination is IPv6, bit 2 has a label
//! src, dst     4 or 16 bytes each
//! src_port     u16 big-endian
//! dst_port     u16 big-endian
//! proto        u8
//! tcp_flags    u16 big-endian
//! bytes        varint
//! packets      varint
//! time_ms      zigzag varint
//! label        varint length + UTF-8 (if flag bit 2)
//! topic        varint length + UTF-8
//! partition    varint
//! offset       varint
//! index        varint: the flow's place among those its record decoded to
//! ```
//!
//! A goflow2 protobuf record can hold several flows, so a position is the
//! record's offset and the flow's index in it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::flow::Flow;

/// The only version written and read.
const VERSION: u8 = 1;
const SRC_V6: u8 = 1;
const DST_V6: u8 = 2;
const HAS_LABEL: u8 = 4;

/// Where a routed flow was read: its record's topic, partition and offset,
/// and its index among the flows that record decoded to. Positions of one
/// source partition are ordered by (offset, index).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourcePosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub index: u32,
}

/// Why a routed record could not be read. The routing topic is written
/// only by `exposure` itself, so any of these means another producer, a
/// newer version, or a damaged record.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RoutedError {
    #[error("routed record version {0} is not 1 (written by a newer exposure?)")]
    Version(u8),
    #[error("routed record ends at byte {0}, inside its {1}")]
    Truncated(usize, &'static str),
    #[error("routed record's {0} is not UTF-8")]
    NotUtf8(&'static str),
    #[error("routed record's {0} is out of range")]
    OutOfRange(&'static str),
    #[error("routed record has {0} bytes after its end")]
    Trailing(usize),
}

/// The record key of a flow whose asset is `asset`: its address bytes (4
/// for IPv4, 16 for IPv6).
pub fn key(asset: IpAddr) -> Vec<u8> {
    match asset {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Appends the record value of `flow` read at `source` to `out`.
pub fn encode(flow: &Flow, source: &SourcePosition, out: &mut Vec<u8>) {
    let mut flags = 0;
    if flow.src_addr.is_ipv6() {
        flags |= SRC_V6;
    }
    if flow.dst_addr.is_ipv6() {
        flags |= DST_V6;
    }
    if flow.label.is_some() {
        flags |= HAS_LABEL;
    }
    out.extend_from_slice(&[VERSION, flags]);
    for addr in [flow.src_addr, flow.dst_addr] {
        match addr {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        }
    }
    out.extend_from_slice(&flow.src_port.to_be_bytes());
    out.extend_from_slice(&flow.dst_port.to_be_bytes());
    out.push(flow.proto);
    out.extend_from_slice(&flow.tcp_flags.to_be_bytes());
    put_varint(out, flow.bytes);
    put_varint(out, flow.packets);
    put_varint(out, zigzag(flow.time_ms));
    if let Some(label) = &flow.label {
        put_str(out, label);
    }
    put_str(out, &source.topic);
    // Never negative for a record that was read; if one were, it would
    // not fit its type on the way back and be refused there.
    put_varint(out, u64::from(source.partition as u32));
    put_varint(out, source.offset as u64);
    put_varint(out, u64::from(source.index));
}

/// Reads a record value written by [`encode`].
pub fn decode(value: &[u8]) -> Result<(Flow, SourcePosition), RoutedError> {
    let mut r = Reader { buf: value, pos: 0 };
    let version = r.u8("version")?;
    if version != VERSION {
        return Err(RoutedError::Version(version));
    }
    let flags = r.u8("flags")?;
    let src_addr = r.addr(flags & SRC_V6 != 0, "source address")?;
    let dst_addr = r.addr(flags & DST_V6 != 0, "destination address")?;
    let src_port = u16::from_be_bytes(r.take::<2>("source port")?);
    let dst_port = u16::from_be_bytes(r.take::<2>("destination port")?);
    let proto = r.u8("protocol")?;
    let tcp_flags = u16::from_be_bytes(r.take::<2>("TCP flags")?);
    let bytes = r.varint("bytes")?;
    let packets = r.varint("packets")?;
    let time_ms = unzigzag(r.varint("time")?);
    let label = if flags & HAS_LABEL != 0 {
        Some(r.str("label")?.into())
    } else {
        None
    };
    let topic = r.str("topic")?.to_owned();
    let partition =
        i32::try_from(r.varint("partition")?).map_err(|_| RoutedError::OutOfRange("partition"))?;
    let offset =
        i64::try_from(r.varint("offset")?).map_err(|_| RoutedError::OutOfRange("offset"))?;
    let index = u32::try_from(r.varint("index")?).map_err(|_| RoutedError::OutOfRange("index"))?;
    if r.pos != value.len() {
        return Err(RoutedError::Trailing(value.len() - r.pos));
    }
    let flow = Flow {
        src_addr,
        dst_addr,
        src_port,
        dst_port,
        proto,
        tcp_flags,
        bytes,
        packets,
        time_ms,
        label,
    };
    let source = SourcePosition {
        topic,
        partition,
        offset,
        index,
    };
    Ok((flow, source))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], RoutedError> {
        let bytes = self
            .buf
            .get(self.pos..self.pos + N)
            .ok_or(RoutedError::Truncated(self.buf.len(), what))?;
        self.pos += N;
        Ok(bytes.try_into().expect("N bytes"))
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, RoutedError> {
        Ok(self.take::<1>(what)?[0])
    }

    fn addr(&mut self, v6: bool, what: &'static str) -> Result<IpAddr, RoutedError> {
        Ok(if v6 {
            IpAddr::V6(Ipv6Addr::from(self.take::<16>(what)?))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.take::<4>(what)?))
        })
    }

    fn varint(&mut self, what: &'static str) -> Result<u64, RoutedError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8(what)?;
            if shift == 63 && byte > 1 {
                return Err(RoutedError::OutOfRange(what));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RoutedError::OutOfRange(what))
    }

    fn str(&mut self, what: &'static str) -> Result<&'a str, RoutedError> {
        let len = usize::try_from(self.varint(what)?).map_err(|_| RoutedError::OutOfRange(what))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.buf.len())
            .ok_or(RoutedError::Truncated(self.buf.len(), what))?;
        let s = std::str::from_utf8(&self.buf[self.pos..end])
            .map_err(|_| RoutedError::NotUtf8(what))?;
        self.pos = end;
        Ok(s)
    }
}

#[cfg(test)]
mod tests;
