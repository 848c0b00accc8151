//! A server-sent events client over a real socket: `GET` a stream, then
//! read its messages one by one as they arrive (de-chunked), with a
//! deadline for each.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One message: its fields as sent (a comment is a keep-alive).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SseMessage {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: Option<String>,
    pub comment: Option<String>,
}

impl SseMessage {
    /// `data` as JSON.
    pub fn json(&self) -> Value {
        let data = self
            .data
            .as_deref()
            .unwrap_or_else(|| panic!("no data: {self:?}"));
        serde_json::from_str(data).unwrap_or_else(|e| panic!("not JSON ({e}): {data}"))
    }
}

/// An open `text/event-stream` response.
pub struct SseStream {
    stream: TcpStream,
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    /// Received, not yet de-chunked.
    raw: Vec<u8>,
    /// De-chunked, not yet parsed into messages.
    text: String,
    /// The last chunk (size 0) was read: the server ended the stream.
    ended: bool,
}

impl SseStream {
    /// `GET target` with `headers`; reads the response head.
    pub fn connect(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> SseStream {
        let mut stream = TcpStream::connect(addr).unwrap();
        let mut raw =
            format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (name, value) in headers {
            raw.push_str(&format!("{name}: {value}\r\n"));
        }
        raw.push_str("\r\n");
        stream.write_all(raw.as_bytes()).unwrap();
        let mut s = SseStream {
            stream,
            status: 0,
            headers: Vec::new(),
            raw: Vec::new(),
            text: String::new(),
            ended: false,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let head_end = loop {
            if let Some(at) = s.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            assert!(s.fill(deadline), "no response head from {target}");
        };
        let head = String::from_utf8(s.raw[..head_end].to_vec()).unwrap();
        s.raw.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        s.status = lines.next().unwrap()[9..12].parse().unwrap();
        s.headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        s
    }

    /// The first header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body of a refusal (a response that is not a stream), as JSON.
    pub fn error_body(mut self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        let length: usize = self
            .header("content-length")
            .map_or(0, |v| v.parse().unwrap());
        while self.raw.len() < length {
            assert!(self.fill(deadline), "the error body did not arrive");
        }
        serde_json::from_slice(&self.raw[..length]).unwrap()
    }

    /// The next message other than a keep-alive, `None` when the server
    /// ended the stream; panics after `within`.
    pub fn next_event(&mut self, within: Duration) -> Option<SseMessage> {
        let deadline = Instant::now() + within;
        loop {
            match self.next_message(deadline)? {
                m if m.comment.is_some() => continue,
                m => return Some(m),
            }
        }
    }

    /// Whether no message but keep-alives arrives within `wait`.
    pub fn quiet_for(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(m) = self.parse_message() {
                if m.comment.is_none() {
                    return false;
                }
                continue;
            }
            if !self.fill(deadline) {
                return true;
            }
        }
    }

    /// The next message of any kind; `None` when the stream ended. Panics
    /// at `deadline`.
    fn next_message(&mut self, deadline: Instant) -> Option<SseMessage> {
        loop {
            if let Some(m) = self.parse_message() {
                return Some(m);
            }
            if self.ended {
                return None;
            }
            if !self.fill(deadline) && !self.ended {
                panic!("no message before the deadline; so far {:?}", self.text);
            }
        }
    }

    fn parse_message(&mut self) -> Option<SseMessage> {
        self.dechunk();
        let end = self.text.find("\n\n")?;
        let block: String = self.text.drain(..end + 2).collect();
        let mut m = SseMessage::default();
        for line in block.lines().filter(|l| !l.is_empty()) {
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
            match name {
                "" => m.comment = Some(value),
                "id" => m.id = Some(value),
                "event" => m.event = Some(value),
                "data" => m.data = Some(value),
                other => panic!("unexpected field {other:?} in {block:?}"),
            }
        }
        Some(m)
    }

    /// Moves every complete chunk from `raw` to `text`.
    fn dechunk(&mut self) {
        while let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") {
            let size_text = std::str::from_utf8(&self.raw[..eol]).unwrap();
            let size = usize::from_str_radix(size_text.trim(), 16).unwrap();
            if size == 0 {
                self.ended = true;
                self.raw.clear();
                return;
            }
            if self.raw.len() < eol + 2 + size + 2 {
                return;
            }
            let chunk = self.raw[eol + 2..eol + 2 + size].to_vec();
            self.text.push_str(std::str::from_utf8(&chunk).unwrap());
            self.raw.drain(..eol + 2 + size + 2);
        }
    }

    /// Reads what arrives before `deadline`; false when nothing did (or
    /// the connection closed).
    fn fill(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        self.stream.set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 16 * 1024];
        match self.stream.read(&mut buf) {
            Ok(0) => {
                self.ended = true;
                false
            }
            Ok(n) => {
                self.raw.extend_from_slice(&buf[..n]);
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(e) => panic!("reading the stream: {e}"),
        }
    }
}
