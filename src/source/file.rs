//! Flow records from files: newline-delimited JSON (goflow2, pmacct), or a
//! goflow2 `-format=bin` stream of varint-length-prefixed protobuf messages.
//!
//! A file is split into records the way a collector would have sent them to
//! Kafka: one JSON object per line, one protobuf message per record. A bad
//! record is handed on like any other, so the decoder can reject it by
//! reason and the rest of the file still counts.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use crate::flow::Format;

/// Largest protobuf message accepted from a stream; a larger length prefix
/// means the stream is corrupt from there on.
pub const MAX_PB_MESSAGE: usize = 64 * 1024;

/// One record as read, or the reason the rest of the input is unreadable.
pub type Record = Result<Vec<u8>, RecordError>;

/// The input cannot be split into records past this point.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("protobuf length prefix {len} is larger than {MAX_PB_MESSAGE} bytes: the rest of the stream is not readable")]
    Oversized { len: u64 },
    #[error("protobuf stream ends inside a message")]
    Truncated,
    #[error("bad varint length prefix")]
    BadVarint,
}

impl RecordError {
    /// The rejection reason label.
    pub fn reason(&self) -> &'static str {
        match self {
            RecordError::Oversized { .. } => "oversized",
            RecordError::Truncated | RecordError::BadVarint => "malformed_protobuf",
        }
    }
}

/// Opens `path` (`-` for stdin) for reading.
pub fn open(path: &Path) -> io::Result<Box<dyn BufRead + Send>> {
    if path == Path::new("-") {
        Ok(Box::new(BufReader::with_capacity(1 << 20, io::stdin())))
    } else {
        Ok(Box::new(BufReader::with_capacity(
            1 << 20,
            File::open(path)?,
        )))
    }
}

/// Splits `input` into records for `format`. With `Format::Auto` a stream
/// whose first non-blank byte is `{` is read as JSON lines, anything else as
/// a protobuf stream.
pub fn records(
    input: Box<dyn BufRead + Send>,
    format: Format,
) -> io::Result<Box<dyn Iterator<Item = io::Result<Record>>>> {
    let mut reader = reader(input, format)?;
    Ok(Box::new(std::iter::from_fn(move || {
        let mut record = Vec::new();
        reader
            .next_into(&mut record)
            .transpose()
            .map(|next| next.map(|framed| framed.map(|()| record)))
    })))
}

/// Like [`records`], but each record is appended to a buffer of the
/// caller's ([`RecordReader::next_into`]), so that many records can share
/// one allocation.
pub fn reader(mut input: Box<dyn BufRead + Send>, format: Format) -> io::Result<RecordReader> {
    let json = match format {
        Format::Goflow2Json | Format::PmacctJson => true,
        Format::Goflow2Pb => false,
        Format::Auto => first_non_blank(&mut input)? == Some(b'{'),
    };
    Ok(RecordReader {
        input,
        json,
        broken: false,
    })
}

/// Reads one record after another from a file or stdin.
pub struct RecordReader {
    input: Box<dyn BufRead + Send>,
    /// JSON lines, else a protobuf stream.
    json: bool,
    /// Set after a framing error: nothing after it can be trusted.
    broken: bool,
}

impl RecordReader {
    /// Appends the next record to `out`. `None` at the end of the input;
    /// `Some(Err(_))` when the rest of the input cannot be split into
    /// records (then `out` is as it was, and the next call says `None`).
    pub fn next_into(&mut self, out: &mut Vec<u8>) -> io::Result<Option<Result<(), RecordError>>> {
        if self.json {
            self.next_line(out)
        } else {
            self.next_message(out)
        }
    }

    /// The next line that is not blank, without its trailing whitespace
    /// (`\r\n` included).
    fn next_line(&mut self, out: &mut Vec<u8>) -> io::Result<Option<Result<(), RecordError>>> {
        let start = out.len();
        loop {
            if self.input.read_until(b'\n', out)? == 0 {
                return Ok(None);
            }
            while out.len() > start && out.last().is_some_and(|b| b.is_ascii_whitespace()) {
                out.pop();
            }
            if out[start..].iter().all(u8::is_ascii_whitespace) {
                out.truncate(start);
            } else {
                return Ok(Some(Ok(())));
            }
        }
    }

    /// The next length-prefixed message, prefix included: a record is what
    /// goflow2 would have sent.
    fn next_message(&mut self, out: &mut Vec<u8>) -> io::Result<Option<Result<(), RecordError>>> {
        if self.broken {
            return Ok(None);
        }
        let len = match self.read_varint()? {
            None => return Ok(None),
            Some(Ok(len)) => len,
            Some(Err(e)) => {
                self.broken = true;
                return Ok(Some(Err(e)));
            }
        };
        if len > MAX_PB_MESSAGE as u64 {
            self.broken = true;
            return Ok(Some(Err(RecordError::Oversized { len })));
        }
        let start = out.len();
        encode_varint(len, out);
        let body = out.len();
        out.resize(body + len as usize, 0);
        match self.input.read_exact(&mut out[body..]) {
            Ok(()) => Ok(Some(Ok(()))),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                out.truncate(start);
                self.broken = true;
                Ok(Some(Err(RecordError::Truncated)))
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    fn read_varint(&mut self) -> io::Result<Option<Result<u64, RecordError>>> {
        let mut value = 0u64;
        for i in 0..10 {
            let mut byte = [0u8];
            if self.input.read(&mut byte)? == 0 {
                return Ok(if i == 0 {
                    None
                } else {
                    Some(Err(RecordError::Truncated))
                });
            }
            value |= u64::from(byte[0] & 0x7f) << (7 * i);
            if byte[0] & 0x80 == 0 {
                return Ok(Some(Ok(value)));
            }
        }
        Ok(Some(Err(RecordError::BadVarint)))
    }
}

impl RecordReader {
    /// For JSON lines, a reader of whole-line blocks over the same input
    /// ([`LineBlocks`]); a protobuf stream is given back as it is.
    pub fn into_line_blocks(self) -> Result<LineBlocks, RecordReader> {
        if !self.json {
            return Err(self);
        }
        Ok(LineBlocks {
            input: self.input,
            carry: Vec::new(),
            done: false,
        })
    }
}

/// JSON lines read a block at a time: each block is whole lines, read with
/// few large reads and no copy per line, split into records by
/// [`lines`] wherever the caller likes (on another thread, say). The
/// records are those [`RecordReader`] gives, one by one.
pub struct LineBlocks {
    input: Box<dyn BufRead + Send>,
    /// The start of a line the last block ended inside.
    carry: Vec<u8>,
    done: bool,
}

impl LineBlocks {
    /// Fills `out` (emptied first) with the next whole lines: at least
    /// `size` bytes read unless the input ends, more if a line is longer,
    /// and at the end of the input its last line even without a newline.
    /// `false` when nothing is left.
    pub fn next_block(&mut self, out: &mut Vec<u8>, size: usize) -> io::Result<bool> {
        out.clear();
        out.append(&mut self.carry);
        while !self.done {
            let start = out.len();
            out.resize(start + size.max(1), 0);
            let read = loop {
                match self.input.read(&mut out[start..]) {
                    Ok(read) => break read,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        out.truncate(start);
                        return Err(e);
                    }
                }
            };
            out.truncate(start + read);
            if read == 0 {
                self.done = true;
                break;
            }
            if let Some(last) = memchr::memrchr(b'\n', &out[start..]) {
                let cut = start + last + 1;
                self.carry.extend_from_slice(&out[cut..]);
                out.truncate(cut);
                return Ok(true);
            }
        }
        Ok(!out.is_empty())
    }
}

/// The records of a block of JSON lines: each line that is not blank,
/// without its trailing whitespace (`\r\n` included), as
/// [`RecordReader::next_into`] gives them.
pub fn lines(block: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(b'\n', block)
        .chain((!block.ends_with(b"\n")).then_some(block.len()))
        .map(move |end| {
            let line = &block[start..end];
            start = end + 1;
            line.trim_ascii_end()
        })
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
}

fn first_non_blank(input: &mut Box<dyn BufRead + Send>) -> io::Result<Option<u8>> {
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(None);
        }
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => return Ok(Some(buf[i])),
            None => {
                let n = buf.len();
                input.consume(n);
            }
        }
    }
}

fn encode_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn read(bytes: &[u8], format: Format) -> Vec<Record> {
        let input: Box<dyn BufRead + Send> = Box::new(Cursor::new(bytes.to_vec()));
        records(input, format)
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn json_lines_skip_blank_lines_and_trim_crlf() {
        let got = read(b"{\"a\":1}\r\n\n   \n{\"b\":2}", Format::Auto);
        let got: Vec<Vec<u8>> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(got, vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]);
    }

    /// Every record of `bytes` as blocks of about `size` bytes give them.
    fn read_in_blocks(bytes: &[u8], size: usize) -> Vec<Vec<u8>> {
        let input: Box<dyn BufRead + Send> = Box::new(Cursor::new(bytes.to_vec()));
        let mut blocks = reader(input, Format::Goflow2Json)
            .unwrap()
            .into_line_blocks()
            .unwrap_or_else(|_| panic!("json lines"));
        let mut all = Vec::new();
        let mut block = Vec::new();
        while blocks.next_block(&mut block, size).unwrap() {
            all.push(std::mem::take(&mut block));
        }
        if let Some((_, whole)) = all.split_last() {
            assert!(
                whole.iter().all(|b| b.ends_with(b"\n")),
                "only the last block ends inside a line"
            );
        }
        all.iter()
            .flat_map(|b| lines(b))
            .map(<[u8]>::to_vec)
            .collect()
    }

    #[test]
    fn blocks_of_lines_hold_the_records_read_one_by_one() {
        let text = b"{\"a\":1}\r\n\n   \n{\"b\":22222222222}\n\t{\"c\":3}  \n{\"d\":4}";
        let one_by_one: Vec<Vec<u8>> = read(text, Format::Auto)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(one_by_one.len(), 4);
        // Blocks smaller than a line, of about a line, and of everything.
        for size in [1, 3, 8, 9, 20, 1 << 20] {
            assert_eq!(read_in_blocks(text, size), one_by_one, "blocks of {size}");
        }
        assert!(read_in_blocks(b"", 8).is_empty());
        assert!(read_in_blocks(b"\n\n  \n", 8).is_empty());
    }

    #[test]
    fn pb_stream_splits_on_length_prefixes() {
        let mut stream = Vec::new();
        for body in [&b"abc"[..], &b""[..], &[7u8; 200][..]] {
            encode_varint(body.len() as u64, &mut stream);
            stream.extend_from_slice(body);
        }
        let got: Vec<Vec<u8>> = read(&stream, Format::Auto)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], b"\x03abc");
        assert_eq!(got[2].len(), 202, "two-byte prefix kept");
    }

    #[test]
    fn truncated_pb_stream_ends_with_an_error() {
        let got = read(b"\x03abc\x05ab", Format::Goflow2Pb);
        assert_eq!(got.len(), 2);
        assert!(got[0].is_ok());
        assert_eq!(got[1].as_ref().unwrap_err().reason(), "malformed_protobuf");
    }

    #[test]
    fn absurd_length_prefix_stops_the_stream() {
        let mut stream = Vec::new();
        encode_varint(1 << 40, &mut stream);
        stream.extend_from_slice(b"whatever");
        let got = read(&stream, Format::Goflow2Pb);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_ref().unwrap_err().reason(), "oversized");
    }
}
