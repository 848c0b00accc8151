//! A minimal HTTP/1.1 keep-alive client, cheap on CPU: each connection
//! writes one fixed request and reads the response by its `Content-Length`,
//! one request at a time, with blocking I/O on a thread of its own. Enough
//! for the API, which always answers with a length; a chunked answer is
//! reported as an error.
//!
//! Two drivers: [`saturate`] sends back to back on every connection, and
//! [`paced`] follows a fixed schedule, timing each request from when it was
//! due (coordinated omission corrected). Pacing sleeps with
//! `std::thread::sleep` (a high-resolution timer, about 50 µs late on Linux)
//! rather than tokio's timer, which rounds every deadline up to the next
//! millisecond and would add up to 1 ms to each latency.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::procfs::own_cpu_ns;

/// A read or write waiting longer than this fails the request, which is
/// counted as an error and its connection replaced, so that a stuck server
/// cannot hang the bench.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Initial read buffer; grown when a response does not fit.
const BUFFER_BYTES: usize = 64 * 1024;
/// Histogram range and precision: 1 µs to 10 minutes, 3 significant digits.
const MAX_MICROS: u64 = 600_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;

/// A latency histogram in microseconds.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, SIGNIFICANT_DIGITS).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// One keep-alive connection sending the same request over and over.
pub struct Connection {
    addr: SocketAddr,
    stream: TcpStream,
    /// The whole request, head and (empty) body.
    request: Arc<[u8]>,
    buf: Vec<u8>,
    /// Bytes of `buf` read from the socket.
    filled: usize,
    /// The last response's body within `buf`; its end is where the next
    /// response starts.
    body: Range<usize>,
}

/// What one response said.
#[derive(Clone, Copy, Debug)]
pub struct Reply {
    pub status: u16,
    pub body_bytes: usize,
}

impl Connection {
    pub fn connect(addr: SocketAddr, request: Arc<[u8]>) -> io::Result<Connection> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
        Ok(Connection {
            addr,
            stream,
            request,
            buf: vec![0; BUFFER_BYTES],
            filled: 0,
            body: 0..0,
        })
    }

    /// A fresh connection to the same address, after an error.
    fn reconnect(&mut self) -> io::Result<()> {
        *self = Connection::connect(self.addr, Arc::clone(&self.request))?;
        Ok(())
    }

    /// The body of the last response.
    pub fn body(&self) -> &[u8] {
        &self.buf[self.body.clone()]
    }

    /// Sends the request and reads its whole response.
    pub fn call(&mut self) -> io::Result<Reply> {
        // Drop the previous response, keep anything read beyond it.
        let previous_end = self.body.end;
        self.buf.copy_within(previous_end..self.filled, 0);
        self.filled -= previous_end;
        self.body = 0..0;

        self.stream.write_all(&self.request)?;
        let head_end = loop {
            if let Some(at) = find(&self.buf[..self.filled], b"\r\n\r\n") {
                break at + 4;
            }
            self.fill()?;
        };
        let (status, length) = parse_head(&self.buf[..head_end])?;
        while self.filled < head_end + length {
            self.fill()?;
        }
        self.body = head_end..head_end + length;
        Ok(Reply {
            status,
            body_bytes: length,
        })
    }

    /// Reads what the socket has, growing the buffer when it is full.
    fn fill(&mut self) -> io::Result<()> {
        if self.filled == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = self.stream.read(&mut self.buf[self.filled..])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.filled += n;
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Status and `Content-Length` of a response head (status line and headers,
/// blank line included).
fn parse_head(head: &[u8]) -> io::Result<(u16, usize)> {
    let invalid = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{what} in response head {:?}",
                String::from_utf8_lossy(head)
            ),
        )
    };
    let text = std::str::from_utf8(head).map_err(|_| invalid("non-UTF-8 bytes"))?;
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.strip_prefix("HTTP/1.1 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("no HTTP/1.1 status line"))?;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(invalid("a transfer-encoding (only Content-Length is read)"));
        }
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .trim()
                    .parse()
                    .map_err(|_| invalid("a bad content-length"))?,
            );
        }
    }
    let length = length.ok_or_else(|| invalid("no content-length"))?;
    Ok((status, length))
}

/// What a run of requests produced, over all its connections.
pub struct Outcome {
    /// Responses received.
    pub responses: u64,
    /// Responses whose status was not 200.
    pub non_200: u64,
    /// Requests that failed (I/O error or timeout); their connection was replaced.
    pub errors: u64,
    /// Latency of each response, µs. When paced, from the time the request was due.
    pub latency: Histogram<u64>,
    /// When paced: from sending to the response (the server's time alone), µs.
    pub service: Histogram<u64>,
    /// When paced: requests due before the end that were never sent,
    /// because every connection was still waiting on the server.
    pub unsent: u64,
    /// From the start until the last connection finished.
    pub elapsed: Duration,
    /// CPU time the client's threads used, ns.
    pub client_cpu_ns: u64,
}

impl Outcome {
    fn new() -> Outcome {
        Outcome {
            responses: 0,
            non_200: 0,
            errors: 0,
            latency: histogram(),
            service: histogram(),
            unsent: 0,
            elapsed: Duration::ZERO,
            client_cpu_ns: 0,
        }
    }

    fn merge(&mut self, other: &Outcome) {
        self.responses += other.responses;
        self.non_200 += other.non_200;
        self.errors += other.errors;
        self.client_cpu_ns += other.client_cpu_ns;
        self.latency
            .add(&other.latency)
            .expect("same histogram bounds");
        self.service
            .add(&other.service)
            .expect("same histogram bounds");
    }

    /// Counts one exchange; on an error, replaces the connection.
    fn record(
        &mut self,
        conn: &mut Connection,
        result: io::Result<Reply>,
        from: Instant,
        sent: Instant,
    ) -> io::Result<()> {
        let done = Instant::now();
        match result {
            Ok(reply) => {
                self.responses += 1;
                if reply.status != 200 {
                    self.non_200 += 1;
                }
                self.latency.saturating_record(micros(done - from));
                self.service.saturating_record(micros(done - sent));
                Ok(())
            }
            Err(error) => {
                self.errors += 1;
                if self.errors == 1 {
                    eprintln!("request failed, reconnecting: {error}");
                }
                conn.reconnect()
            }
        }
    }
}

/// Every connection sends back to back until `duration` has passed.
pub fn saturate(connections: Vec<Connection>, duration: Duration) -> io::Result<Outcome> {
    let start = Instant::now();
    let end = start + duration;
    on_threads(connections, start, |mut conn| {
        let mut outcome = Outcome::new();
        while Instant::now() < end {
            let sent = Instant::now();
            let result = conn.call();
            outcome.record(&mut conn, result, sent, sent)?;
        }
        Ok(outcome)
    })
}

/// Sends `rate` requests a second for `duration` on a fixed schedule:
/// request i is due at start + i / rate and goes out on the first free
/// connection at or after that time. Latency counts from the due time.
/// Once `duration` has passed no request is sent; those due but not sent
/// are counted in [`Outcome::unsent`].
pub fn paced(connections: Vec<Connection>, rate: f64, duration: Duration) -> io::Result<Outcome> {
    let start = Instant::now();
    let end = start + duration;
    let next = AtomicU64::new(0);
    let mut outcome = on_threads(connections, start, |mut conn| {
        let mut outcome = Outcome::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            let now = Instant::now();
            if due >= end || now >= end {
                break;
            }
            if due > now {
                std::thread::sleep(due - now);
            }
            let sent = Instant::now();
            let result = conn.call();
            outcome.record(&mut conn, result, due, sent)?;
        }
        Ok(outcome)
    })?;
    let due = (duration.as_secs_f64() * rate).ceil() as u64;
    outcome.unsent = due.saturating_sub(outcome.responses + outcome.errors);
    Ok(outcome)
}

/// Runs `drive` on each connection, each on a thread of its own, and adds
/// up what they did (and the CPU time each thread used, all of it spent
/// driving: the threads are new).
fn on_threads(
    connections: Vec<Connection>,
    start: Instant,
    drive: impl Fn(Connection) -> io::Result<Outcome> + Sync,
) -> io::Result<Outcome> {
    let drive = &drive;
    let outcomes: Vec<io::Result<Outcome>> = std::thread::scope(|s| {
        let threads: Vec<_> = connections
            .into_iter()
            .map(|conn| {
                s.spawn(move || {
                    let mut outcome = drive(conn)?;
                    outcome.client_cpu_ns = own_cpu_ns();
                    Ok(outcome)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(io::Error::other("client thread panicked")))
            })
            .collect()
    });
    let mut total = Outcome::new();
    for outcome in outcomes {
        total.merge(&outcome?);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_gives_its_status_and_length() {
        let head = b"HTTP/1.1 400 Bad Request\r\ncontent-type: x\r\nContent-Length: 12\r\n\r\n";
        assert_eq!(parse_head(head).unwrap(), (400, 12));
    }

    #[test]
    fn a_chunked_head_is_refused() {
        let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(parse_head(head).is_err());
    }
}
