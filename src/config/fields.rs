//! A view of one TOML table that hands out the keys a section knows and
//! reports the rest as unknown, and key-path formatting.

use std::collections::BTreeSet;

use toml::{Table, Value};

use super::read::Reader;

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

    /// Reports every key that was never taken.
    pub(super) fn finish(self, reader: &mut Reader) {
        let known: BTreeSet<&str> = self.known.iter().copied().collect();
        let listed = self.known.join(", ");
        let place = if self.path.is_empty() {
            "at the top level; known sections".to_owned()
        } else {
            format!("in {}; known keys", self.path)
        };
        for key in self
            .table
            .keys()
            .filter(|key| !known.contains(key.as_str()))
        {
            let path = key_path(&self.path, key);
            let guess = self
                .known
                .iter()
                .find(|candidate| edit_distance(candidate, key) <= 2)
                .map(|candidate| format!(" (did you mean {candidate}?)"))
                .unwrap_or_default();
            reader.push(&path, format!("unknown key{guess} {place}: {listed}"));
        }
    }
}

/// Levenshtein distance, for "did you mean" hints on short key names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, a_char) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, b_char) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a_char != *b_char);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
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
