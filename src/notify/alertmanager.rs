//! `format = "alertmanager"`: one alert per open exposure the webhook
//! wants (unexpected, at `min_risk_level` or above), posted to
//! Alertmanager's `POST <url>/api/v2/alerts`.
//!
//! The alerts follow the exposures, not the events one by one: an event
//! fires the alert of its exposure or resolves it (`endsAt`, when it
//! closes, becomes expected or falls below `min_risk_level`; a new
//! service or risk level is a new alert, so the old one is resolved), and
//! every `resend_interval` the whole set is taken again from the engine's
//! state and sent, firing alerts with `endsAt` [`LIFETIME_INTERVALS`]
//! intervals ahead. If this service stops, or cannot reach Alertmanager,
//! Alertmanager resolves them by itself then, as it does for Prometheus.
//! The alerts held firing are saved, so that after a restart the ones no
//! longer wanted are resolved.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::store::{Saved, Store};
use super::{redacted, Context, Delivered, Sender};
use crate::catalog::{Catalog, Lang};
use crate::changes::events::{endpoint_key, Kind, Look};
use crate::classify::Endpoint;
use crate::config::WebhookConfig;

/// The `alertname` of every alert.
pub const ALERTNAME: &str = "ExposureOpened";
/// Alertmanager's API path, after the webhook's URL.
pub const ALERTS_PATH: &str = "/api/v2/alerts";
/// A firing alert ends this many `resend_interval`s after it was sent,
/// unless sent again.
pub const LIFETIME_INTERVALS: u32 = 4;
/// At most this many alerts in one POST.
const BATCH: usize = 1000;
/// At most this many events are read from the log at once.
const READ: usize = 10_000;
/// While alerts change, the ones held firing are saved at most this often
/// (and always when it stops).
const SAVE_EVERY: Duration = Duration::from_secs(5);

/// One alert, as kept (and saved) between sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// When the exposure opened (or was first seen wanted), UNIX seconds.
    pub starts_at: i64,
}

/// An alert to post, and when it ends (UNIX s): ahead for a firing one,
/// now or before for a resolved one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Post {
    pub alert: Alert,
    pub ends_at: i64,
}

/// Whether `hook` wants an alert for an open exposure that looks like
/// `look`.
pub fn wanted(hook: &WebhookConfig, look: &Look) -> bool {
    look.risk_level >= hook.min_risk_level && (look.expected.is_none() || !hook.only_unexpected)
}

/// The alert of `endpoint` looking like `look`, its texts in `lang`.
pub fn alert(
    catalog: &Catalog,
    lang: Lang,
    endpoint: Endpoint,
    look: &Look,
    starts_at: i64,
) -> Alert {
    let Endpoint { ip, port, proto } = endpoint;
    let severity = match look.risk_level {
        3 => "critical",
        2 => "warning",
        _ => "info",
    };
    let labels = BTreeMap::from([
        ("alertname".to_owned(), ALERTNAME.to_owned()),
        ("ip".to_owned(), ip.to_string()),
        ("port".to_owned(), port.to_string()),
        ("protocol".to_owned(), proto.to_string()),
        ("service".to_owned(), look.service.clone()),
        ("risk_level".to_owned(), look.risk_level.to_string()),
        ("severity".to_owned(), severity.to_owned()),
    ]);
    let risk = catalog
        .endpoint_service(port, proto, Some(&look.service))
        .risk
        .text(lang);
    let at = endpoint_key(endpoint);
    let level = usize::from(look.risk_level.min(3));
    let summary = match (lang, &look.expected) {
        (Lang::En, None) => format!(
            "{} on {at} is open to the Internet, not expected ({} risk)",
            look.service,
            ["no", "low", "medium", "high"][level]
        ),
        (Lang::En, Some(_)) => format!(
            "{} on {at} is open to the Internet, expected ({} risk)",
            look.service,
            ["no", "low", "medium", "high"][level]
        ),
        (Lang::Zh, None) => format!(
            "{at} 上的 {} 对互联网开放，非预期（{}）",
            look.service,
            ["无风险", "低危", "中危", "高危"][level]
        ),
        (Lang::Zh, Some(_)) => format!(
            "{at} 上的 {} 对互联网开放，预期内（{}）",
            look.service,
            ["无风险", "低危", "中危", "高危"][level]
        ),
    };
    let description = [&risk.prob_risk_desc, &risk.risk_reason]
        .into_iter()
        .filter(|text| !text.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    let mut annotations = BTreeMap::from([("summary".to_owned(), summary)]);
    if !description.is_empty() {
        annotations.insert("description".to_owned(), description);
    }
    if let Some(cover) = &look.expected {
        for (key, value) in [("owner", &cover.owner), ("reason", &cover.reason)] {
            if let Some(value) = value {
                annotations.insert(key.to_owned(), value.clone());
            }
        }
    }
    Alert {
        labels,
        annotations,
        starts_at,
    }
}

fn key_of_alert(alert: &Alert) -> String {
    let label = |name: &str| alert.labels.get(name).map_or("", String::as_str);
    format!("{}:{}/{}", label("ip"), label("port"), label("protocol"))
}

/// The alerts held firing, and what changes them.
#[derive(Debug, Default)]
pub struct Alerts {
    firing: HashMap<String, Alert>,
}

impl Alerts {
    /// The alerts saved by the last run.
    pub fn restore(saved: Vec<Alert>) -> Alerts {
        Alerts {
            firing: saved.into_iter().map(|a| (key_of_alert(&a), a)).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.firing.len()
    }

    pub fn is_empty(&self) -> bool {
        self.firing.is_empty()
    }

    /// The alerts held firing, for saving.
    pub fn firing(&self) -> Vec<Alert> {
        self.firing.values().cloned().collect()
    }

    /// After `endpoint` came to want `alert` (`None`: no alert, it closed
    /// or is no longer wanted) at `time` (UNIX s): the posts that say so
    /// (the old alert resolved at `time`, the new one firing until
    /// `fire_until`). Nothing when it is what is held already.
    pub fn update(
        &mut self,
        endpoint: Endpoint,
        alert: Option<Alert>,
        time: i64,
        fire_until: i64,
    ) -> Vec<Post> {
        let key = endpoint_key(endpoint);
        let mut posts = Vec::new();
        match (self.firing.remove(&key), alert) {
            (Some(old), Some(new)) if old.labels == new.labels => {
                // Same alert: keep when it started; new texts (an owner) go out.
                let kept = Alert {
                    starts_at: old.starts_at,
                    ..new
                };
                if kept != old {
                    posts.push(Post {
                        alert: kept.clone(),
                        ends_at: fire_until,
                    });
                }
                self.firing.insert(key, kept);
            }
            (old, new) => {
                if let Some(old) = old {
                    posts.push(Post {
                        alert: old,
                        ends_at: time,
                    });
                }
                if let Some(new) = new {
                    posts.push(Post {
                        alert: new.clone(),
                        ends_at: fire_until,
                    });
                    self.firing.insert(key, new);
                }
            }
        }
        posts
    }

    /// Takes `wanted` (every open exposure's alert now) as the whole set:
    /// the posts resolving what is no longer wanted at `now`, then every
    /// wanted alert firing until `fire_until` (those already held keep
    /// their start).
    pub fn resync(
        &mut self,
        wanted: HashMap<String, Alert>,
        now: i64,
        fire_until: i64,
    ) -> Vec<Post> {
        let mut posts = Vec::with_capacity(wanted.len());
        let mut firing = HashMap::with_capacity(wanted.len());
        for (key, mut alert) in wanted {
            if let Some(old) = self.firing.remove(&key) {
                if old.labels == alert.labels {
                    alert.starts_at = old.starts_at;
                } else {
                    posts.push(Post {
                        alert: old,
                        ends_at: now,
                    });
                }
            }
            firing.insert(key, alert);
        }
        posts.extend(self.firing.drain().map(|(_, alert)| Post {
            alert,
            ends_at: now,
        }));
        posts.extend(firing.values().map(|alert| Post {
            alert: alert.clone(),
            ends_at: fire_until,
        }));
        self.firing = firing;
        posts
    }
}

/// Alertmanager's postable alerts: `[{labels, annotations, startsAt, endsAt}]`.
pub fn body(posts: &[Post]) -> Vec<u8> {
    let alerts: Vec<serde_json::Value> = posts
        .iter()
        .map(|post| {
            serde_json::json!({
                "labels": post.alert.labels,
                "annotations": post.alert.annotations,
                "startsAt": rfc3339(post.alert.starts_at.min(post.ends_at)),
                "endsAt": rfc3339(post.ends_at),
            })
        })
        .collect();
    serde_json::to_vec(&alerts).expect("alerts serialize")
}

fn rfc3339(unix_s: i64) -> String {
    // Within what RFC 3339 can write (years 1970 to 9999).
    let seconds = u64::try_from(unix_s.clamp(0, 253_402_300_799)).unwrap_or(0);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds)).to_string()
}

/// Keeps Alertmanager's alerts the open exposures the webhook wants,
/// until `stop`.
///
/// A POST is tried for at most `resend_interval` (or `max_retry`, if
/// shorter): firing alerts that did not go out are in the next resync
/// anyway; resolutions that did not go out are kept (and saved) and sent
/// with the next POST, until `max_retry` after they happened.
pub async fn run(sender: Sender, context: &Context, stop: CancellationToken) -> anyhow::Result<()> {
    let Some(log) = context.engine.changes().cloned() else {
        stop.cancelled().await;
        return Ok(());
    };
    let hook = sender.hook.clone();
    let name = hook.name.as_str();
    let url = format!("{}{ALERTS_PATH}", hook.url.trim_end_matches('/'));
    let store = Store::new(&context.dir, name);
    let saved = store.load();
    let mut alerts = Alerts::restore(saved.firing);
    let mut resolving = saved.resolving;
    let lifetime = hook.resend_interval.saturating_mul(LIFETIME_INTERVALS);
    let try_for = hook.max_retry.min(hook.resend_interval);
    let max_retry_s = i64::try_from(hook.max_retry.as_secs()).unwrap_or(i64::MAX);
    info!(webhook = name, url = %redacted(&url), firing = alerts.len(), file = %store.path().display(), "alertmanager webhook started");
    let mut wake = log.subscribe();
    let mut resend = tokio::time::interval(hook.resend_interval);
    resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cursor = log.latest();
    let position = Arc::new(AtomicU64::new(cursor));
    context.metrics.track(name, position.clone(), log.clone());
    let mut saved_at: Option<tokio::time::Instant> = None;
    loop {
        let (posts, now) = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            _ = resend.tick() => {
                let (now_ms, now, fire_until) = clock(&sender, lifetime);
                // Events recorded during the walk are read again after it:
                // taking one twice changes nothing.
                cursor = log.latest();
                let wanted = wanted_now(context, &hook, now_ms).await?;
                (alerts.resync(wanted, now, fire_until), now)
            }
            changed = wake.changed() => {
                if changed.is_err() {
                    stop.cancelled().await;
                    break;
                }
                let (_, now, fire_until) = clock(&sender, lifetime);
                let (lost, events) = log.read_after(cursor, READ);
                if lost > 0 {
                    // Which exposures they changed is unknown: take them all again.
                    warn!(webhook = name, lost, "events left the history before they were read; taking every exposure again");
                    resend.reset_immediately();
                    cursor += lost;
                }
                let mut posts = Vec::new();
                for event in &events {
                    cursor = event.seq;
                    let at = event.time.min(now);
                    let alert = (event.kind != Kind::Closed && wanted(&hook, &event.now))
                        .then(|| alert(&context.catalog, context.lang, event.endpoint, &event.now, at));
                    posts.extend(alerts.update(event.endpoint, alert, at, fire_until));
                }
                if log.latest() > cursor {
                    wake.mark_changed();
                }
                (posts, now)
            }
        };
        position.store(cursor, Ordering::Release);
        context
            .metrics
            .firing
            .with_label_values(&[name])
            .set(i64::try_from(alerts.len()).unwrap_or(i64::MAX));
        // Resolutions kept from before go out first; past max_retry they
        // are given up (Alertmanager ends them at their last endsAt).
        let before = resolving.len();
        resolving.retain(|post: &Post| now.saturating_sub(post.ends_at) < max_retry_s);
        let expired = (before - resolving.len()) as u64;
        if expired > 0 {
            context
                .metrics
                .dropped
                .with_label_values(&[name, "max_retry"])
                .inc_by(expired);
        }
        let posts: Vec<Post> = resolving.drain(..).chain(posts).collect();
        if posts.is_empty() {
            continue;
        }
        let mut stopped = false;
        for (index, chunk) in posts.chunks(BATCH).enumerate() {
            let count = chunk.len() as u64;
            match sender.deliver(&url, body(chunk), &[], try_for, &stop).await {
                Delivered::Yes => context
                    .metrics
                    .sent
                    .with_label_values(&[name])
                    .inc_by(count),
                outcome => {
                    // This and every later chunk: keep the resolutions.
                    let unsent = &posts[index * BATCH..];
                    resolving.extend(unsent.iter().filter(|p| p.ends_at <= now).cloned());
                    stopped = outcome == Delivered::Stopped;
                    break;
                }
            }
        }
        if stopped {
            break;
        }
        if saved_at.is_none_or(|at| at.elapsed() >= SAVE_EVERY) {
            save(&store, &alerts, &resolving, cursor);
            saved_at = Some(tokio::time::Instant::now());
        }
    }
    save(&store, &alerts, &resolving, cursor);
    Ok(())
}

/// Now in UNIX milliseconds and seconds, and the `endsAt` of an alert
/// fired now.
fn clock(sender: &Sender, lifetime: Duration) -> (i64, i64, i64) {
    let now_ms = sender.wall_now_ms();
    let now = now_ms.div_euclid(1000);
    let lifetime = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
    (now_ms, now, now.saturating_add(lifetime))
}

/// The alert of every open exposure `hook` wants, from the engine's state
/// (a walk of it, off the async threads).
async fn wanted_now(
    context: &Context,
    hook: &WebhookConfig,
    now_ms: i64,
) -> anyhow::Result<HashMap<String, Alert>> {
    let engine = context.engine.clone();
    let catalog = context.catalog.clone();
    let lang = context.lang;
    let hook = hook.clone();
    tokio::task::spawn_blocking(move || {
        let now = now_ms.div_euclid(1000);
        let mut wanted_alerts = HashMap::new();
        engine.open_exposures(now_ms, |endpoint, look| {
            if wanted(&hook, &look) {
                wanted_alerts.insert(
                    endpoint_key(endpoint),
                    alert(&catalog, lang, endpoint, &look, now),
                );
            }
        });
        wanted_alerts
    })
    .await
    .map_err(crate::supervise::join_error)
}

fn save(store: &Store, alerts: &Alerts, resolving: &[Post], cursor: u64) {
    let saved = Saved {
        delivered: Some(cursor),
        firing: alerts.firing(),
        resolving: resolving.to_vec(),
    };
    if let Err(e) = store.save(&saved) {
        warn!(file = %store.path().display(), "cannot save the alerts held firing: {e}");
    }
}
