//! `GET /events` (`docs/api.md#the-event-stream`): the engine's exposure
//! changes as server-sent events, as they are recorded.
//!
//! Each event is `id: <Seq>` and `data: <the event object>`. A client that
//! reconnects names the last `Seq` it saw (`Last-Event-ID`, or the
//! `LastEventId` parameter, since a browser's first connect cannot set
//! headers) and gets what it missed from the log's last `changes.keep`
//! events; when some of them are gone it gets `event: reset` with the latest
//! `Seq` first, and the events after it. Without a resume point a client
//! gets only the events after it connected.
//!
//! The stream is opened like a call of `DescribeExposureChanges`: through
//! the envelope (request id, error body, metric, log line), the same
//! signature checks and rate limit as `/`, and that Action's permission.
//! It ends when the service shuts down ([`Shutdown`], set by
//! [`super::serve`]), so that an open stream never holds up the stop.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::actions::{client_of, permit};
use super::envelope::CallInfo;
use super::error::ApiError;
use super::rpc::RpcRequest;
use super::App;
use crate::changes::events::{Event, Log, Since};
use crate::query::Action;

/// How often a comment is sent on a quiet stream, so that proxies and
/// browsers do not take it for dead.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The parameter a browser's first connect names its resume point with.
const LAST_EVENT_ID_PARAM: &str = "LastEventId";
const LAST_EVENT_ID_HEADER: &str = "last-event-id";

/// Cancelled when the service stops: every open stream ends then. Set on
/// every request by [`super::serve`]; without it a stream ends when its
/// client goes.
#[derive(Clone, Debug)]
pub struct Shutdown(pub CancellationToken);

/// Handler of `GET /events`.
pub async fn events(State(app): State<Arc<App>>, req: Request) -> Response {
    let mut info = CallInfo {
        action: Action::Changes.name(),
        ..CallInfo::default()
    };
    let mut response = match open(&app, req, &mut info) {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    response.extensions_mut().insert(info);
    response
}

/// Checks the caller and the resume point, then starts the stream.
fn open(app: &App, req: Request, info: &mut CallInfo) -> Result<Response, ApiError> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return Err(ApiError::StreamMethodNotAllowed {
            method: req.method().to_string(),
        });
    }
    let client = client_of(&req);
    let shutdown = req
        .extensions()
        .get::<Shutdown>()
        .map_or_else(CancellationToken::new, |Shutdown(token)| token.clone());
    let (parts, _body) = req.into_parts();
    // A stream has no body to read: its parameters are in the query string,
    // which a v1 signature covers.
    let rpc = RpcRequest::parse(parts.uri.query(), &parts.headers, b"")?;
    let user = app.caller(&parts, b"", &rpc, client, info)?;
    check_action(&rpc)?;
    rpc.check_version()?;
    permit(user, Action::Changes)?;
    let resume = resume_point(&parts.headers, &rpc)?;
    app.check_ready()?;
    let feed = Feed::start(app.state.engine.changes().cloned(), resume, shutdown);
    let mut response = Sse::new(feed.into_stream())
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response();
    // nginx buffers responses unless told not to; events must not wait.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    debug_assert!(response.headers().contains_key(header::CACHE_CONTROL));
    Ok(response)
}

/// `Action` is not needed on `/events`; when given (a client signing the
/// stream as the call it is) it must be the one it is.
fn check_action(rpc: &RpcRequest) -> Result<(), ApiError> {
    match rpc.action.as_deref() {
        None => Ok(()),
        Some(name) if name == Action::Changes.name() => Ok(()),
        Some(other) => Err(ApiError::Parameters {
            param: "Action".to_owned(),
            message: format!(
                "{:?} is not served at /events; leave Action out or give {}",
                other.chars().take(64).collect::<String>(),
                Action::Changes.name()
            ),
        }),
    }
}

/// The `Seq` the client saw last: the `Last-Event-ID` header (what a
/// browser sends when it reconnects by itself), else the `LastEventId`
/// parameter; `None` when neither is given (or both are empty).
fn resume_point(headers: &HeaderMap, rpc: &RpcRequest) -> Result<Option<u64>, ApiError> {
    let header = match headers.get(LAST_EVENT_ID_HEADER) {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| ApiError::Parameters {
            param: "Last-Event-ID".to_owned(),
            message: "is not visible ASCII; send the id of the last event received".to_owned(),
        })?),
    };
    let given = [
        ("Last-Event-ID", header),
        (LAST_EVENT_ID_PARAM, rpc.params.get(LAST_EVENT_ID_PARAM)),
    ];
    for (name, value) in given {
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            continue;
        };
        let seq = value.parse::<u64>().map_err(|_| ApiError::Parameters {
            param: name.to_owned(),
            message: format!(
                "{:?} is not an event id (a Seq, an integer from 0)",
                value.chars().take(64).collect::<String>()
            ),
        })?;
        return Ok(Some(seq));
    }
    Ok(None)
}

/// One client's position in the log, and what it is to be sent next.
struct Feed {
    /// `None` when the engine records no changes: only keep-alives then.
    log: Option<Arc<Log>>,
    /// Wakes when a newer event is recorded.
    latest: Option<watch::Receiver<u64>>,
    /// The `Seq` the client has (or is about to have) last.
    last_sent: u64,
    /// A reset to send before anything else, with the latest `Seq`.
    reset: Option<u64>,
    /// Read from the log, not sent yet, oldest first.
    pending: VecDeque<Event>,
    shutdown: CancellationToken,
}

impl Feed {
    /// The feed of a client that saw `resume` last (`None`: a new client,
    /// which gets only what is recorded from now on).
    fn start(log: Option<Arc<Log>>, resume: Option<u64>, shutdown: CancellationToken) -> Feed {
        // Subscribe before reading the latest Seq, so that nothing recorded
        // in between goes unnoticed.
        let latest = log.as_ref().map(|log| {
            let mut rx = log.subscribe();
            rx.borrow_and_update();
            rx
        });
        let newest = log.as_ref().map_or(0, |log| log.latest());
        let mut feed = Feed {
            log,
            latest,
            last_sent: newest,
            reset: None,
            pending: VecDeque::new(),
            shutdown,
        };
        match resume {
            None => {}
            // A Seq this log never gave: its events started over (a new
            // state directory), so what the client holds is not comparable.
            Some(seen) if seen > newest => feed.reset = Some(newest),
            Some(seen) => {
                feed.last_sent = seen;
                feed.read();
            }
        }
        feed
    }

    /// Takes what the log has after `last_sent`; on a gap, a reset to the
    /// latest `Seq` instead.
    fn read(&mut self) {
        let Some(log) = &self.log else { return };
        match log.after(self.last_sent) {
            Since::Events(events) => self.pending.extend(events),
            Since::Gap => {
                let latest = log.latest();
                self.reset = Some(latest);
                self.last_sent = latest;
            }
        }
    }

    /// The next message, waiting for one; `None` once the service stops.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(latest) = self.reset.take() {
                return Some(reset(latest));
            }
            if let Some(event) = self.pending.pop_front() {
                self.last_sent = event.seq;
                return Some(message(&event));
            }
            let Some(rx) = &mut self.latest else {
                self.shutdown.cancelled().await;
                return None;
            };
            tokio::select! {
                () = self.shutdown.cancelled() => return None,
                changed = rx.changed() => changed.ok()?,
            }
            rx.borrow_and_update();
            self.read();
        }
    }

    fn into_stream(self) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static {
        stream::unfold(self, |mut feed| async move {
            let message = feed.next().await?;
            Some((Ok(message), feed))
        })
    }
}

/// `id: <Seq>` and `data: <the event object on one line>`.
fn message(event: &Event) -> SseEvent {
    SseEvent::default()
        .id(event.seq.to_string())
        .data(event.to_json_line())
}

/// `event: reset` and `data: {"Latest": <Seq>}`: events were missed. It
/// carries `id: <Seq>` too, so that a browser reconnecting right after it
/// resumes from there instead of being reset again.
fn reset(latest: u64) -> SseEvent {
    SseEvent::default()
        .event("reset")
        .id(latest.to_string())
        .data(serde_json::json!({ "Latest": latest }).to_string())
}

// Tested through the router: `src/api/tests/events.rs`.
