//! The schema: the sections read key by key, then their cross-key rules
//! (`[network]` and `[api]` have their own modules).

use std::collections::BTreeMap;
use std::path::PathBuf;

use toml::{Table, Value};

use crate::flow::Format;

use super::api::api;
use super::fields::{key_path, Fields};
use super::network::network;
use super::read::Reader;
use super::{
    ChangesConfig, Clock, ClusterConfig, Config, KafkaConfig, LoggingConfig, OffsetReset,
    ServicesConfig, StateConfig, WindowConfig,
};

/// librdkafka properties the config must not set, and why.
const RESERVED_LIBRDKAFKA: &[(&str, &str)] = &[
    ("bootstrap.servers", "set kafka.brokers instead"),
    ("metadata.broker.list", "set kafka.brokers instead"),
    ("group.id", "set kafka.group_id instead"),
    ("auto.offset.reset", "set kafka.auto_offset_reset instead"),
    (
        "enable.auto.commit",
        "the service commits offsets itself, after each checkpoint",
    ),
    (
        "enable.auto.offset.store",
        "the service stores offsets itself, with its checkpointed state",
    ),
];

/// Reads every section of `root`; problems go to `reader`.
pub(super) fn read(root: &Table, reader: &mut Reader) -> Config {
    let empty = Table::new();
    let mut top = Fields::new(String::new(), root);
    let kafka = section(reader, &mut top, "kafka", &empty, kafka);
    let network = section(reader, &mut top, "network", &empty, network);
    let window = section(reader, &mut top, "window", &empty, window);
    let state = section(reader, &mut top, "state", &empty, state);
    let api = section(reader, &mut top, "api", &empty, api);
    let logging = section(reader, &mut top, "logging", &empty, logging);
    let services = section(reader, &mut top, "services", &empty, services);
    let changes = section(reader, &mut top, "changes", &empty, changes);
    let cluster = section(reader, &mut top, "cluster", &empty, cluster);
    reader.finish(top);
    if let Some(topic) = &changes.topic {
        let clash = if kafka.topics.contains(topic) {
            Some("kafka.topics, so the events would be read as flow records")
        } else if *topic == kafka.dead_letter_topic {
            Some("kafka.dead_letter_topic")
        } else {
            None
        };
        if let Some(clash) = clash {
            reader.push(
                "changes.topic",
                format!("{topic:?} is also in {clash}; give the events a topic of their own"),
            );
        }
    }
    Config {
        kafka,
        network,
        window,
        state,
        api,
        logging,
        services,
        changes,
        cluster,
    }
}

/// Reads section `name` with `read_fields`; an absent section is empty (all
/// defaults).
fn section<'t, T>(
    reader: &mut Reader,
    top: &mut Fields<'t>,
    name: &'static str,
    empty: &'t Table,
    read_fields: fn(&mut Reader, Fields<'t>) -> T,
) -> T {
    let table = reader.opt(top, name, |r, path, value| r.table(path, value));
    read_fields(reader, Fields::new(name.to_owned(), table.unwrap_or(empty)))
}

fn kafka(r: &mut Reader, mut f: Fields) -> KafkaConfig {
    let defaults = KafkaConfig::default();
    let brokers = r
        .opt(&mut f, "brokers", brokers)
        .unwrap_or(defaults.brokers);
    let topics = r.opt(&mut f, "topics", topics).unwrap_or(defaults.topics);
    let group_id = r
        .opt(&mut f, "group_id", Reader::non_empty_string)
        .unwrap_or(defaults.group_id);
    let format_names: Vec<&str> = Format::ALL.iter().map(|format| format.as_str()).collect();
    let format = r
        .opt(&mut f, "format", |r, p, v| r.choice(p, v, &format_names))
        .unwrap_or(defaults.format);
    let auto_offset_reset = r
        .opt(&mut f, "auto_offset_reset", |r, p, v| {
            r.choice(p, v, OffsetReset::NAMES)
        })
        .unwrap_or(defaults.auto_offset_reset);
    let dead_letter_topic = r
        .opt(&mut f, "dead_letter_topic", Reader::string)
        .unwrap_or(defaults.dead_letter_topic);
    if !dead_letter_topic.is_empty() && topics.contains(&dead_letter_topic) {
        r.push(
            "kafka.dead_letter_topic",
            format!(
                "{dead_letter_topic:?} is also in kafka.topics, so rejected records would be \
                 consumed again; use another topic, or \"\" to only count them"
            ),
        );
    }
    let mut librdkafka = defaults.librdkafka;
    librdkafka.extend(r.opt(&mut f, "librdkafka", properties).unwrap_or_default());
    r.finish(f);
    KafkaConfig {
        brokers,
        topics,
        group_id,
        format,
        auto_offset_reset,
        dead_letter_topic,
        librdkafka,
    }
}

fn brokers(r: &mut Reader, path: &str, value: &Value) -> Option<String> {
    let text = r.non_empty_string(path, value)?;
    if text.split(',').any(|broker| broker.trim().is_empty()) {
        r.push(
            path,
            format!("{text:?} has an empty entry; write host:port[,host:port...]"),
        );
        return None;
    }
    Some(text)
}

fn topics(r: &mut Reader, path: &str, value: &Value) -> Option<Vec<String>> {
    let before = r.problems.len();
    let items = r.string_list(path, value)?;
    if items.is_empty() && r.problems.len() == before {
        r.push(path, "must list at least one topic, e.g. [\"flows\"]");
    }
    let mut topics: Vec<String> = Vec::with_capacity(items.len());
    for (item_path, topic) in items {
        if topic.trim().is_empty() {
            r.push(&item_path, "must not be empty; write a topic name");
        } else if topics.contains(&topic) {
            r.push(&item_path, format!("{topic:?} is listed twice"));
        } else {
            topics.push(topic);
        }
    }
    Some(topics)
}

/// librdkafka properties: text, or numbers and booleans turned into text.
fn properties(r: &mut Reader, path: &str, value: &Value) -> Option<BTreeMap<String, String>> {
    let table = r.table(path, value)?;
    let mut properties = BTreeMap::new();
    for (key, value) in table {
        let key_path = key_path(path, key);
        if let Some((_, why)) = RESERVED_LIBRDKAFKA.iter().find(|(name, _)| name == key) {
            r.push(&key_path, format!("may not be set here: {why}"));
            continue;
        }
        let text = match value {
            Value::String(text) => text.clone(),
            Value::Integer(number) => number.to_string(),
            Value::Float(number) => number.to_string(),
            Value::Boolean(flag) => flag.to_string(),
            _ => {
                r.wrong_type(
                    &key_path,
                    "a string (librdkafka takes every property as text)",
                    value,
                );
                continue;
            }
        };
        properties.insert(key.clone(), text);
    }
    Some(properties)
}

fn window(r: &mut Reader, mut f: Fields) -> WindowConfig {
    let defaults = WindowConfig::default();
    let retention_days = r
        .opt(&mut f, "retention_days", |r, p, v| r.int(p, v, 1, 366))
        .unwrap_or(defaults.retention_days);
    let clock = r
        .opt(&mut f, "clock", |r, p, v| r.choice(p, v, Clock::NAMES))
        .unwrap_or(defaults.clock);
    let max_future_skew = r
        .opt(&mut f, "max_future_skew", Reader::duration)
        .unwrap_or(defaults.max_future_skew);
    r.finish(f);
    WindowConfig {
        retention_days,
        clock,
        max_future_skew,
    }
}

fn state(r: &mut Reader, mut f: Fields) -> StateConfig {
    let defaults = StateConfig::default();
    let dir = r
        .opt(&mut f, "dir", Reader::non_empty_string)
        .map_or(defaults.dir, PathBuf::from);
    let checkpoint_interval = r
        .opt(&mut f, "checkpoint_interval", |r, p, v| {
            let interval = r.duration(p, v)?;
            if interval.is_zero() {
                r.push(p, "must be longer than 0s, e.g. \"10s\"");
                return None;
            }
            Some(interval)
        })
        .unwrap_or(defaults.checkpoint_interval);
    let max_endpoints = r
        .opt(&mut f, "max_endpoints", |r, p, v| r.int(p, v, 1, i64::MAX))
        .unwrap_or(defaults.max_endpoints);
    let max_pending = r
        .opt(&mut f, "max_pending", |r, p, v| r.int(p, v, 0, i64::MAX))
        .unwrap_or(defaults.max_pending);
    r.finish(f);
    StateConfig {
        dir,
        checkpoint_interval,
        max_endpoints,
        max_pending,
    }
}

fn logging(r: &mut Reader, mut f: Fields) -> LoggingConfig {
    let format = r
        .opt(&mut f, "format", |r, p, v| {
            r.choice(p, v, &["text", "json"])
        })
        .unwrap_or_default();
    r.finish(f);
    LoggingConfig { format }
}

fn services(r: &mut Reader, mut f: Fields) -> ServicesConfig {
    let defaults = ServicesConfig::default();
    let catalog = r
        .opt(&mut f, "catalog", Reader::non_empty_string)
        .map_or(defaults.catalog, PathBuf::from);
    r.finish(f);
    ServicesConfig { catalog }
}

fn changes(r: &mut Reader, mut f: Fields) -> ChangesConfig {
    let defaults = ChangesConfig::default();
    let expected = r
        .opt(&mut f, "expected", Reader::non_empty_string)
        .map(PathBuf::from)
        .or(defaults.expected);
    let closed_after = r
        .opt(&mut f, "closed_after", |r, p, v| {
            r.duration_at_least(p, v, std::time::Duration::from_secs(1), "\"24h\"")
        })
        .unwrap_or(defaults.closed_after);
    let keep = r
        .opt(&mut f, "keep", |r, p, v| r.int(p, v, 0, i64::MAX))
        .unwrap_or(defaults.keep);
    let topic = r
        .opt(&mut f, "topic", Reader::non_empty_string)
        .or(defaults.topic);
    let lang = r
        .opt(&mut f, "lang", |r, p, v| r.choice(p, v, &["zh", "en"]))
        .unwrap_or(defaults.lang);
    let webhooks = match f.take("webhooks") {
        Some((path, value)) => super::webhooks::webhooks(r, &path, value),
        None => defaults.webhooks,
    };
    r.finish(f);
    ChangesConfig {
        expected,
        closed_after,
        keep,
        topic,
        lang,
        webhooks,
    }
}

fn cluster(r: &mut Reader, mut f: Fields) -> ClusterConfig {
    let defaults = ClusterConfig::default();
    let enabled = r
        .opt(&mut f, "enabled", Reader::boolean)
        .unwrap_or(defaults.enabled);
    let advertise = r.opt(&mut f, "advertise", Reader::non_empty_string);
    if let Some(url) = advertise
        .as_deref()
        .filter(|url| !advertised_url_is_valid(url))
    {
        r.push(
            "cluster.advertise",
            format!("{url:?} is not an http:// or https:// URL with a host and port; write e.g. \"http://10.0.0.5:8080\""),
        );
    }
    let partitions = r
        .opt(&mut f, "partitions", |r, p, v| r.int(p, v, 1, 1000))
        .unwrap_or(defaults.partitions);
    let commit_interval = r
        .opt(&mut f, "commit_interval", |r, p, v| {
            let interval = r.duration(p, v)?;
            if interval.is_zero() || interval > std::time::Duration::from_secs(60) {
                r.push(p, "must be longer than 0s and at most 60s, e.g. \"500ms\"");
                return None;
            }
            Some(interval)
        })
        .unwrap_or(defaults.commit_interval);
    if enabled && advertise.is_none() {
        r.push(
            "cluster.advertise",
            "required when cluster.enabled = true: how the other instances reach this one's API, e.g. \"http://10.0.0.5:8080\"",
        );
    }
    r.finish(f);
    ClusterConfig {
        enabled,
        advertise,
        partitions,
        commit_interval,
    }
}

/// `http://` or `https://`, a host, a port, and at most a path after.
fn advertised_url_is_valid(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    match authority.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}
