//! Reading a parsed TOML table field by field, so that every problem is
//! reported with its key path and none stops the others.
//!
//! `#[serde(deny_unknown_fields)]` stops at the first unknown key and serde
//! type errors built from a `toml::Value` do not name the key, so the config
//! is read by hand: a [`Fields`] view hands out the keys a section knows and
//! reports whatever is left as unknown; the [`Reader`] converts values and
//! collects [`ConfigProblem`]s.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Duration;

use toml::{Table, Value};

use super::fields::{describe, key_path, Fields};
use super::{quoted_list, ConfigProblem, Secret};

/// The prefix of environment variables that override config keys.
pub(super) const ENV_PREFIX: &str = "EXPOSURE__";

/// An environment variable that set a key.
struct Override {
    /// The variable's name, quoted in every problem about the key it set.
    var: String,
    /// The variable's text as given, used as is where a string is expected
    /// (`EXPOSURE__KAFKA__GROUP_ID=123` means the group `"123"`).
    raw: String,
}

/// Converts values and collects every problem found.
pub(super) struct Reader<'e> {
    /// Every problem found so far, in reading order.
    pub(super) problems: Vec<ConfigProblem>,
    /// Keys set from the environment, by key path.
    overrides: BTreeMap<String, Override>,
    /// Looks up the variables named by `env:` secrets.
    env: &'e dyn Fn(&str) -> Option<String>,
}

impl<'e> Reader<'e> {
    /// Applies `overrides` (`(variable, value)` pairs) to `root` and returns a
    /// reader that knows where each overridden key came from.
    pub(super) fn new(
        root: &mut Table,
        overrides: &[(String, String)],
        env: &'e dyn Fn(&str) -> Option<String>,
    ) -> Self {
        let mut reader = Reader {
            problems: Vec::new(),
            overrides: BTreeMap::new(),
            env,
        };
        for (var, raw) in overrides {
            reader.apply_override(root, var, raw);
        }
        reader
    }

    fn apply_override(&mut self, root: &mut Table, var: &str, raw: &str) {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            return self.push(
                "",
                format!(
                    "{var}: not a config override; overrides are named {ENV_PREFIX}SECTION__KEY"
                ),
            );
        };
        let segments: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
        if segments.len() < 2 || segments.iter().any(String::is_empty) {
            return self.push(
                "",
                format!(
                    "{var}: an override names a section and a key, \
                     e.g. {ENV_PREFIX}KAFKA__BROKERS for kafka.brokers"
                ),
            );
        }
        let (last, parents) = segments.split_last().expect("at least two segments");
        let mut table = root;
        let mut path = String::new();
        for segment in parents {
            path = key_path(&path, segment);
            let entry = table
                .entry(segment.clone())
                .or_insert_with(|| Value::Table(Table::new()));
            let Value::Table(inner) = entry else {
                let found = describe(entry);
                return self.push(
                    "",
                    format!("{var}: {path} is {found}, not a table, so it has no key {last:?}"),
                );
            };
            table = inner;
        }
        path = key_path(&path, last);
        table.insert(last.clone(), parse_env_value(raw));
        self.overrides.insert(
            path,
            Override {
                var: var.to_owned(),
                raw: raw.to_owned(),
            },
        );
    }

    /// Reports every key of `fields` that was never taken as unknown.
    pub(super) fn finish(&mut self, fields: Fields) {
        for (path, problem) in fields.unknown_keys() {
            self.push(&path, problem);
        }
    }

    /// Records a problem at `key`, naming the environment variable that set
    /// the key (or created it) if one did.
    pub(super) fn push(&mut self, key: &str, message: impl Into<String>) {
        let mut message = message.into();
        if let Some(origin) = self.origin(key) {
            let _ = write!(message, " (set by {})", origin.var);
        }
        self.problems.push(ConfigProblem {
            key: key.to_owned(),
            message,
        });
    }

    fn origin(&self, key: &str) -> Option<&Override> {
        if key.is_empty() {
            return None;
        }
        let within = |inner: &str, outer: &str| {
            inner == outer
                || inner
                    .strip_prefix(outer)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        };
        self.overrides
            .iter()
            .find(|(path, _)| within(key, path) || within(path, key))
            .map(|(_, origin)| origin)
    }

    /// The raw text of the environment variable that set exactly `key`.
    fn raw_override(&self, key: &str) -> Option<&str> {
        self.overrides.get(key).map(|origin| origin.raw.as_str())
    }

    /// Reads `key` from `fields` with `convert` when present.
    pub(super) fn opt<'t, T>(
        &mut self,
        fields: &mut Fields<'t>,
        key: &'static str,
        convert: impl FnOnce(&mut Self, &str, &'t Value) -> Option<T>,
    ) -> Option<T> {
        let (path, value) = fields.take(key)?;
        convert(self, &path, value)
    }

    /// Reads `key` from `fields`; when it is missing, reports `hint` (what to
    /// write) as the problem.
    pub(super) fn required<'t, T>(
        &mut self,
        fields: &mut Fields<'t>,
        key: &'static str,
        hint: &str,
        convert: impl FnOnce(&mut Self, &str, &'t Value) -> Option<T>,
    ) -> Option<T> {
        let Some((path, value)) = fields.take(key) else {
            let path = key_path(fields.path(), key);
            self.push(&path, format!("missing; {hint}"));
            return None;
        };
        convert(self, &path, value)
    }

    pub(super) fn wrong_type(&mut self, path: &str, expected: &str, value: &Value) {
        self.push(
            path,
            format!("expected {expected}, found {}", describe(value)),
        );
    }

    pub(super) fn string(&mut self, path: &str, value: &Value) -> Option<String> {
        if let Value::String(text) = value {
            return Some(text.clone());
        }
        if let Some(raw) = self.raw_override(path) {
            return Some(raw.to_owned());
        }
        self.wrong_type(path, "a string", value);
        None
    }

    pub(super) fn boolean(&mut self, path: &str, value: &Value) -> Option<bool> {
        if let Value::Boolean(flag) = value {
            return Some(*flag);
        }
        self.wrong_type(path, "true or false", value);
        None
    }

    pub(super) fn non_empty_string(&mut self, path: &str, value: &Value) -> Option<String> {
        let text = self.string(path, value)?;
        if text.trim().is_empty() {
            self.push(path, "must not be empty");
            return None;
        }
        Some(text)
    }

    /// A string naming one of a fixed set of choices, parsed with `FromStr`.
    pub(super) fn choice<T: FromStr>(
        &mut self,
        path: &str,
        value: &Value,
        names: &[&str],
    ) -> Option<T> {
        let text = self.string(path, value)?;
        let parsed = text.trim().parse().ok();
        if parsed.is_none() {
            let names = quoted_list(names);
            self.push(
                path,
                format!("{text:?} is not valid; expected one of {names}"),
            );
        }
        parsed
    }

    /// An integer in `min..=max`, converted to `T`.
    pub(super) fn int<T: TryFrom<i64>>(
        &mut self,
        path: &str,
        value: &Value,
        min: i64,
        max: i64,
    ) -> Option<T> {
        let range = if max == i64::MAX {
            format!("an integer of at least {min}")
        } else {
            format!("an integer from {min} to {max}")
        };
        let number = match value {
            Value::Integer(number) => *number,
            Value::String(text) if text.trim().parse::<i64>().is_ok() => {
                self.push(
                    path,
                    format!("expected {range}, found the string {text:?}; remove the quotes"),
                );
                return None;
            }
            _ => {
                self.wrong_type(path, &range, value);
                return None;
            }
        };
        let converted = (min..=max)
            .contains(&number)
            .then(|| T::try_from(number).ok())
            .flatten();
        if converted.is_none() {
            self.push(path, format!("must be {range}, found {number}"));
        }
        converted
    }

    /// A duration written as a string with units (`"10s"`, `"5m"`, `"1h 30m"`).
    pub(super) fn duration(&mut self, path: &str, value: &Value) -> Option<Duration> {
        let text = match value {
            Value::String(text) => text,
            Value::Integer(number) => {
                self.push(
                    path,
                    format!("expected a duration with a unit, e.g. \"{number}s\", found the integer {number}"),
                );
                return None;
            }
            _ => {
                self.wrong_type(path, "a duration string such as \"10s\" or \"5m\"", value);
                return None;
            }
        };
        match humantime::parse_duration(text.trim()) {
            Ok(duration) => Some(duration),
            Err(error) => {
                self.push(
                    path,
                    format!(
                        "{text:?} is not a duration ({error}); write a number and a unit, \
                         e.g. \"10s\", \"5m\", \"1h\""
                    ),
                );
                None
            }
        }
    }

    /// A duration (as [`Reader::duration`]) of at least `min`; `example`
    /// is one to suggest.
    pub(super) fn duration_at_least(
        &mut self,
        path: &str,
        value: &Value,
        min: Duration,
        example: &str,
    ) -> Option<Duration> {
        let duration = self.duration(path, value)?;
        if duration < min {
            let min = humantime::format_duration(min);
            self.push(path, format!("must be at least {min}, e.g. {example}"));
            return None;
        }
        Some(duration)
    }

    /// An array of strings, each with its key path; an element that is not a
    /// string is reported and left out. A plain string set from the
    /// environment is split on commas (`EXPOSURE__KAFKA__TOPICS=flows,more`).
    pub(super) fn string_list(
        &mut self,
        path: &str,
        value: &Value,
    ) -> Option<Vec<(String, String)>> {
        match value {
            Value::Array(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .filter_map(|(index, item)| {
                        let item_path = format!("{path}[{index}]");
                        let text = self.string(&item_path, item)?;
                        Some((item_path, text))
                    })
                    .collect(),
            ),
            Value::String(text) if self.raw_override(path).is_some() => Some(
                text.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .enumerate()
                    .map(|(index, item)| (format!("{path}[{index}]"), item.to_owned()))
                    .collect(),
            ),
            _ => {
                self.wrong_type(path, "an array of strings, e.g. [\"a\", \"b\"]", value);
                None
            }
        }
    }

    pub(super) fn table<'t>(&mut self, path: &str, value: &'t Value) -> Option<&'t Table> {
        if let Value::Table(table) = value {
            return Some(table);
        }
        self.wrong_type(path, "a table", value);
        None
    }

    /// A secret: `env:NAME` is the value of the variable NAME, anything else is
    /// the secret itself. No message ever quotes the value.
    pub(super) fn secret(&mut self, path: &str, value: &Value) -> Option<Secret> {
        let Value::String(text) = value else {
            self.wrong_type(path, "a string (the secret, or env:VARIABLE_NAME)", value);
            return None;
        };
        let Some(name) = text.strip_prefix("env:") else {
            if text.is_empty() {
                self.push(
                    path,
                    "must not be empty; write the secret or env:VARIABLE_NAME",
                );
                return None;
            }
            return Some(Secret::new(text.clone()));
        };
        let name = name.trim();
        if name.is_empty() {
            self.push(path, "\"env:\" names no variable; write env:VARIABLE_NAME");
            return None;
        }
        match (self.env)(name) {
            None => {
                self.push(
                    path,
                    format!("environment variable {name} is not set; export it or change this key"),
                );
                None
            }
            Some(secret) if secret.is_empty() => {
                self.push(
                    path,
                    format!("environment variable {name} is set but empty"),
                );
                None
            }
            Some(secret) => Some(Secret::new(secret)),
        }
    }
}

/// The value of an override: a TOML value when the text is one (`10`,
/// `true`, `["a", "b"]`, `"quoted"`), else the text as a string.
fn parse_env_value(raw: &str) -> Value {
    toml::from_str::<Table>(&format!("value = {raw}"))
        .ok()
        .filter(|table| table.len() == 1)
        .and_then(|mut table| table.remove("value"))
        .unwrap_or_else(|| Value::String(raw.to_owned()))
}
