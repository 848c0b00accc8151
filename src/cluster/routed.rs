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

use std::net::IpAddr;

use super::wire::{put_str, put_varint, unzigzag, zigzag, Reader, WireError};
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

impl From<WireError> for RoutedError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Truncated(at, what) => RoutedError::Truncated(at, what),
            WireError::NotUtf8(what) => RoutedError::NotUtf8(what),
            WireError::OutOfRange(what) => RoutedError::OutOfRange(what),
        }
    }
}

/// The record key of a flow whose asset is `asset`: its address bytes (4
/// for IPv4, 16 for IPv6).
pub fn key(asset: IpAddr) -> Vec<u8> {
    let mut key = Vec::with_capacity(16);
    put_key(asset, &mut key);
    key
}

/// Appends [`key`] of `asset` to `out` (the route loop reuses one buffer).
pub fn put_key(asset: IpAddr, out: &mut Vec<u8>) {
    match asset {
        IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
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
    let mut r = Reader::new(value);
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
    if r.left() != 0 {
        return Err(RoutedError::Trailing(r.left()));
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

#[cfg(test)]
mod tests;
