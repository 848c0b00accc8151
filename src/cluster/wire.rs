//! The small binary encoding the internal topics' records share:
//! LEB128 varints, zigzag for signed values, length-prefixed UTF-8.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a value could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("record ends at byte {0}, inside its {1}")]
    Truncated(usize, &'static str),
    #[error("record's {0} is not UTF-8")]
    NotUtf8(&'static str),
    #[error("record's {0} is out of range")]
    OutOfRange(&'static str),
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Reads values from the front of a record.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The bytes not read yet, for a reader of their own; then
    /// [`Reader::advance`] by what it took.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Moves past `n` bytes (at most those left).
    pub fn advance(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
    }

    pub fn take<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], WireError> {
        let bytes = self
            .buf
            .get(self.pos..self.pos + N)
            .ok_or(WireError::Truncated(self.buf.len(), what))?;
        self.pos += N;
        Ok(bytes.try_into().expect("N bytes"))
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take::<1>(what)?[0])
    }

    pub fn addr(&mut self, v6: bool, what: &'static str) -> Result<IpAddr, WireError> {
        Ok(if v6 {
            IpAddr::V6(Ipv6Addr::from(self.take::<16>(what)?))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.take::<4>(what)?))
        })
    }

    pub fn varint(&mut self, what: &'static str) -> Result<u64, WireError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8(what)?;
            if shift == 63 && byte > 1 {
                return Err(WireError::OutOfRange(what));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError::OutOfRange(what))
    }

    pub fn str(&mut self, what: &'static str) -> Result<&'a str, WireError> {
        let len = usize::try_from(self.varint(what)?).map_err(|_| WireError::OutOfRange(what))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.buf.len())
            .ok_or(WireError::Truncated(self.buf.len(), what))?;
        let s =
            std::str::from_utf8(&self.buf[self.pos..end]).map_err(|_| WireError::NotUtf8(what))?;
        self.pos = end;
        Ok(s)
    }
}
