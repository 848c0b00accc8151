//! A view of one TOML table that hands out the keys a section knows and
//! reports the rest as unknown, and key-path formatting.

use std::collections::BTreeSet;

use toml::{Table, Value};

/// The keys of one table, handed out one by one; what is never taken is
/// reported as unknown.
pub(super) struct Fields<'t> {
    /// The table's key path (empty for the root).
    path: String,
    table: &'t Table,
    /// The keys asked for, listed in the unknown-key message.
    known: Vec<&'static str>,
}

impl<'t> Fields<'t> {
    pub(super) fn new(path: String, table: &'t Table) -> Self {
        Fields {
            path,
            table,
            known: Vec::new(),
        }
    }

    pub(super) fn path(&self) -> &str {
        &self.path
    }

    /// The value of `key` and its key path, if present.
    pub(super) fn take(&mut self, key: &'static str) -> Option<(String, &'t Value)> {
        self.known.push(key);
        let value = self.table.get(key)?;
        Some((key_path(&self.path, key), value))
    }

    /// Every key that was never taken, as (key path, problem).
    pub(super) fn unknown_keys(self) -> Vec<(String, String)> {
        let known: BTreeSet<&str> = self.known.iter().copied().collect();
        let listed = self.known.join(", ");
        let place = if self.path.is_empty() {
            "at the top level; known sections".to_owned()
        } else {
            format!("in {}; known keys", self.path)
        };
        let mut unknown = Vec::new();
        for key in self
            .table
            .keys()
            .filter(|key| !known.contains(key.as_str()))
        {
            let path = key_path(&self.path, key);
            let guess = self
                .known
                .iter()
                .find(|candidate| strsim::levenshtein(candidate, key) <= 2)
                .map(|candidate| format!(" (did you mean {candidate}?)"))
                .unwrap_or_default();
            unknown.push((path, format!("unknown key{guess} {place}: {listed}")));
        }
        unknown
    }
}

/// `parent.key`, quoting `key` when it is not a bare TOML key.
pub(super) fn key_path(parent: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

/// "a string", "an integer", ...: the kind of a value, never the value itself
/// (it may be a secret).
pub(super) fn describe(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}
