//! `format = "json"`: the events a webhook admits, oldest first, as
//! `POST url` with `{"Events": [<event object>, ...]}` (at most
//! [`BATCH`] a request), and `X-Exposure-Signature: sha256=<hex>` (the
//! HMAC-SHA256 of the body under `secret`) when the webhook has one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::store::{Saved, Store};
use super::{redacted, Context, Delivered, Sender};
use crate::changes::events::Event;
use crate::config::WebhookConfig;

/// At most this many events in one POST.
pub const BATCH: usize = 500;
/// The header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "X-Exposure-Signature";
/// While events flow, where the webhook is is saved at most this often
/// (and always when it stops).
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// Sends every admitted event from where the webhook left off, until
/// `stop`. A new webhook starts with the events recorded after the state
/// was restored (`DescribeExposureChanges` has the ones before).
pub async fn run(sender: Sender, context: &Context, stop: CancellationToken) -> anyhow::Result<()> {
    let Some(log) = context.engine.changes().cloned() else {
        stop.cancelled().await;
        return Ok(());
    };
    let hook = &sender.hook;
    let name = hook.name.as_str();
    let metrics = &context.metrics;
    let store = Store::new(&context.dir, name);
    let saved = store.load();
    // A saved Seq beyond the restored log's latest was delivered after the
    // last checkpoint: those events are derived again from the records
    // read again, and sent again (at least once).
    let mut cursor = context.resume_after(name, saved.delivered, log.latest());
    info!(webhook = name, url = %redacted(&hook.url), after_seq = cursor, file = %store.path().display(), "webhook started");
    let position = Arc::new(AtomicU64::new(cursor));
    metrics.track(name, position.clone(), log.clone());
    let mut wake = log.subscribe();
    // Saved at once: a kill -9 before the first delivery must find where
    // this webhook starts, or it would start as a new one after it.
    if saved.delivered != Some(cursor) {
        save(&store, cursor);
    }
    let mut unsaved = false;
    let mut saved_at = tokio::time::Instant::now();
    loop {
        let (lost, events) = log.read_after(cursor, BATCH);
        if lost > 0 {
            warn!(
                webhook = name,
                lost, "events left the history before they were sent"
            );
            metrics
                .dropped
                .with_label_values(&[name, "evicted"])
                .inc_by(lost);
            cursor += lost;
            position.store(cursor, Ordering::Release);
        }
        let Some(last) = events.last().map(|e| e.seq) else {
            if unsaved {
                save(&store, cursor);
                unsaved = false;
            }
            tokio::select! {
                () = stop.cancelled() => break,
                changed = wake.changed() => if changed.is_err() {
                    stop.cancelled().await;
                    break;
                },
            }
            continue;
        };
        let chosen: Vec<&Event> = events.iter().filter(|e| admits(hook, e)).collect();
        if !chosen.is_empty() {
            let body = body(&chosen);
            let headers: Vec<(&'static str, String)> = hook
                .secret
                .as_ref()
                .map(|secret| (SIGNATURE_HEADER, signature(secret.expose(), &body)))
                .into_iter()
                .collect();
            let count = chosen.len() as u64;
            match sender
                .deliver(&hook.url, body, &headers, hook.max_retry, &stop)
                .await
            {
                Delivered::Yes => metrics.sent.with_label_values(&[name]).inc_by(count),
                Delivered::GaveUp => metrics
                    .dropped
                    .with_label_values(&[name, "max_retry"])
                    .inc_by(count),
                Delivered::Stopped => break,
            }
        }
        cursor = last;
        position.store(cursor, Ordering::Release);
        unsaved = true;
        if saved_at.elapsed() >= SAVE_EVERY {
            save(&store, cursor);
            unsaved = false;
            saved_at = tokio::time::Instant::now();
        }
    }
    save(&store, cursor);
    Ok(())
}

/// Whether `hook` sends `event`: its kind is listed; the exposure reaches
/// `min_risk_level` (before or after a change, so that a receiver hears
/// of a drop below it); and with `only_unexpected`, it is not expected
/// (before or after a change, so that it hears an exposure became
/// expected).
pub fn admits(hook: &WebhookConfig, event: &Event) -> bool {
    let looks = std::iter::once(&event.now).chain(event.previous.as_ref());
    let mut risky = false;
    let mut unexpected = false;
    for look in looks {
        risky |= look.risk_level >= hook.min_risk_level;
        unexpected |= look.expected.is_none();
    }
    hook.kinds.contains(&event.kind) && risky && (unexpected || !hook.only_unexpected)
}

/// `{"Events": [...]}`.
pub fn body(events: &[&Event]) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Body<'e> {
        #[serde(rename = "Events")]
        events: &'e [&'e Event],
    }
    serde_json::to_vec(&Body { events }).expect("event objects serialize")
}

/// `sha256=<hex of HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn save(store: &Store, delivered: u64) {
    let saved = Saved {
        delivered: Some(delivered),
        ..Saved::default()
    };
    if let Err(e) = store.save(&saved) {
        // Not fatal: after a restart more is sent again, nothing is lost.
        warn!(file = %store.path().display(), "cannot save the webhook's position: {e}");
    }
}
