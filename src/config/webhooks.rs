//! `[[changes.webhooks]]`: where exposure changes are pushed
//! (`docs/operations.md#webhooks`).

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Value;

use super::fields::{key_path, Fields};
use super::read::Reader;
use super::{WebhookConfig, WebhookFormat};
use crate::changes::events::Kind;

/// The longest `resend_interval`.
const MAX_RESEND_INTERVAL: Duration = Duration::from_secs(3600);

/// The valid entries of `value` (an array of tables), each problem reported
/// with its key.
pub(super) fn webhooks(r: &mut Reader, path: &str, value: &Value) -> Vec<WebhookConfig> {
    let Value::Array(entries) = value else {
        r.wrong_type(
            path,
            "an array of tables ([[changes.webhooks]] entries)",
            value,
        );
        return Vec::new();
    };
    let mut hooks = Vec::with_capacity(entries.len());
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for (index, entry) in entries.iter().enumerate() {
        let entry_path = format!("{path}[{index}]");
        let Some(table) = r.table(&entry_path, entry) else {
            continue;
        };
        let Some(hook) = webhook(r, Fields::new(entry_path.clone(), table)) else {
            continue;
        };
        if let Some(first) = names.get(&hook.name) {
            let message = format!(
                "{:?} also names {first}; give each webhook its own name = \"...\" \
                 (it names the webhook's metrics and its file under state.dir)",
                hook.name
            );
            r.push(&key_path(&entry_path, "name"), message);
            continue;
        }
        names.insert(hook.name.clone(), entry_path);
        hooks.push(hook);
    }
    hooks
}

fn webhook(r: &mut Reader, mut f: Fields) -> Option<WebhookConfig> {
    let entry_path = f.path().to_owned();
    let before = r.problems.len();
    let url = r.required(
        &mut f,
        "url",
        "write the receiver's URL, e.g. url = \"https://hooks.example.com/exposure\"",
        url,
    );
    let format = r
        .opt(&mut f, "format", |r, p, v| {
            r.choice(p, v, WebhookFormat::NAMES)
        })
        .unwrap_or(WebhookFormat::Json);
    let name = r.opt(&mut f, "name", name);
    let kinds = r.opt(&mut f, "kinds", kinds);
    let min_risk_level = r.opt(&mut f, "min_risk_level", |r, p, v| r.int(p, v, 0, 3));
    let only_unexpected = r.opt(&mut f, "only_unexpected", boolean);
    let secret = r.opt(&mut f, "secret", Reader::secret);
    let resend_interval = r.opt(&mut f, "resend_interval", |r, p, v| {
        let interval = r.duration_at_least(p, v, Duration::from_secs(1), "\"1m\"")?;
        if interval > MAX_RESEND_INTERVAL {
            r.push(
                p,
                "must be at most 1h: Alertmanager ends an alert 4 intervals after it was last sent",
            );
            return None;
        }
        Some(interval)
    });
    let max_retry = r.opt(&mut f, "max_retry", |r, p, v| {
        r.duration_at_least(p, v, Duration::from_secs(1), "\"1h\"")
    });
    // Keys that mean nothing for the format are refused, not ignored: a
    // `secret` that signs nothing would be a false assurance.
    let json_only = format == WebhookFormat::Json;
    let misplaced = [
        (
            "resend_interval",
            json_only && resend_interval.is_some(),
            "alertmanager",
            "a json webhook sends each event once",
        ),
        (
            "kinds",
            !json_only && kinds.is_some(),
            "json",
            "an alertmanager webhook keeps one alert per open exposure, resolved when it closes",
        ),
        (
            "secret",
            !json_only && secret.is_some(),
            "json",
            "Alertmanager's API checks no signature; put it behind a proxy that authenticates",
        ),
    ];
    for (key, given, format, why) in misplaced {
        if given {
            r.push(
                &key_path(&entry_path, key),
                format!("applies to format = \"{format}\" only ({why}); remove it"),
            );
        }
    }
    if let (WebhookFormat::Alertmanager, Some(url)) = (format, &url) {
        let problem = if url.query().is_some() || url.fragment().is_some() {
            Some("has a query or a fragment")
        } else if url.path().trim_end_matches('/').ends_with("/api/v2/alerts") {
            Some("ends in /api/v2/alerts, which is added to it")
        } else {
            None
        };
        if let Some(problem) = problem {
            r.push(
                &key_path(&entry_path, "url"),
                format!(
                    "{problem}; an alertmanager webhook's url is Alertmanager's base URL, e.g. \"http://alertmanager:9093\""
                ),
            );
        }
    }
    r.finish(f);
    let url = url?;
    if r.problems.len() > before {
        return None;
    }
    let name = match name {
        Some(name) => name,
        None => default_name(&url)?,
    };
    let defaults = WebhookConfig::new(name, url.to_string(), format);
    Some(WebhookConfig {
        kinds: kinds.unwrap_or(defaults.kinds),
        min_risk_level: min_risk_level.unwrap_or(defaults.min_risk_level),
        only_unexpected: only_unexpected.unwrap_or(defaults.only_unexpected),
        secret,
        resend_interval: resend_interval.unwrap_or(defaults.resend_interval),
        max_retry: max_retry.unwrap_or(defaults.max_retry),
        ..defaults
    })
}

fn url(r: &mut Reader, path: &str, value: &Value) -> Option<reqwest::Url> {
    let text = r.non_empty_string(path, value)?;
    let problem = match reqwest::Url::parse(text.trim()) {
        Ok(url) if !matches!(url.scheme(), "http" | "https") => {
            format!("{text:?} is not http:// or https://")
        }
        Ok(url) if url.host_str().is_none_or(str::is_empty) => {
            format!("{text:?} names no host")
        }
        Ok(url) => return Some(url),
        Err(error) => format!("{text:?} is not a URL ({error})"),
    };
    r.push(
        path,
        format!("{problem}; write e.g. \"https://hooks.example.com/exposure\""),
    );
    None
}

/// Letters, digits, `.`, `_` and `-`: it names a file.
fn name(r: &mut Reader, path: &str, value: &Value) -> Option<String> {
    let text = r.non_empty_string(path, value)?;
    let fits = text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !fits {
        r.push(
            path,
            format!(
                "{text:?} is not a name: use at most 64 letters, digits, '.', '_' or '-' \
                 (it names a file under state.dir)"
            ),
        );
        return None;
    }
    Some(text)
}

/// The URL's host, and its port when it names one: `hooks.example.com`,
/// `127.0.0.1-9093`.
fn default_name(url: &reqwest::Url) -> Option<String> {
    let host = url.host_str()?.trim_matches(['[', ']']).replace(':', "-");
    Some(match url.port() {
        Some(port) => format!("{host}-{port}"),
        None => host,
    })
}

fn kinds(r: &mut Reader, path: &str, value: &Value) -> Option<Vec<Kind>> {
    let before = r.problems.len();
    let items = r.string_list(path, value)?;
    let mut kinds = Vec::with_capacity(items.len());
    for (item_path, text) in items {
        match text.trim().parse::<Kind>() {
            Ok(kind) if !kinds.contains(&kind) => kinds.push(kind),
            Ok(_) => r.push(&item_path, format!("{text:?} is listed twice")),
            Err(()) => r.push(
                &item_path,
                format!(
                    "{text:?} is not a kind; expected one of \"opened\", \"closed\", \"changed\""
                ),
            ),
        }
    }
    if kinds.is_empty() && r.problems.len() == before {
        r.push(
            path,
            "lists no kind; leave it out for every kind, or list some of \"opened\", \"closed\", \"changed\"",
        );
    }
    (r.problems.len() == before).then_some(kinds)
}

fn boolean(r: &mut Reader, path: &str, value: &Value) -> Option<bool> {
    match value {
        Value::Boolean(flag) => Some(*flag),
        Value::String(text) if matches!(text.trim(), "true" | "false") => {
            r.push(
                path,
                format!("expected true or false, found the string {text:?}; remove the quotes"),
            );
            None
        }
        _ => {
            r.wrong_type(path, "true or false", value);
            None
        }
    }
}
