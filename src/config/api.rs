//! `[api]` and its `[[api.users]]`.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::net::SocketAddr;

use toml::Value;

use super::fields::{key_path, Fields};
use super::read::Reader;
use super::{quoted_list, ApiConfig, Auth, UserConfig};

/// The Action names a user may be granted; `"*"` grants all
/// (`docs/api.md#permissions`).
pub const ACTIONS: &[&str] = &[
    "*",
    "DescribeInternetOpenPort",
    "DescribeInternetOpenIp",
    "DescribeInternetOpenService",
    "DescribeInternetOpenDetail",
    "DescribeInternetOpenStatistic",
    "DescribeExposureChanges",
];

pub(super) fn api(r: &mut Reader, mut f: Fields) -> ApiConfig {
    let defaults = ApiConfig::default();
    let listen = r
        .opt(&mut f, "listen", |r, p, v| {
            let text = r.string(p, v)?;
            let parsed = text.trim().parse::<SocketAddr>().ok();
            if parsed.is_none() {
                r.push(
                    p,
                    format!(
                        "{text:?} is not a socket address; write IP:PORT, e.g. 127.0.0.1:8080, \
                         0.0.0.0:8080 or [::]:8080 (host names are not resolved)"
                    ),
                );
            }
            parsed
        })
        .unwrap_or(defaults.listen);
    let auth = r.opt(&mut f, "auth", |r, p, v| r.choice(p, v, Auth::NAMES));
    let default_qps = r
        .opt(&mut f, "default_qps", |r, p, v| {
            r.int(p, v, 0, u32::MAX.into())
        })
        .unwrap_or(defaults.default_qps);
    let max_page_size = r
        .opt(&mut f, "max_page_size", |r, p, v| {
            r.int(p, v, 1, u32::MAX.into())
        })
        .unwrap_or(defaults.max_page_size);
    let (users, entries) = match f.take("users") {
        Some((path, value)) => users(r, &path, value),
        None => (Vec::new(), 0),
    };
    let users_path = key_path(f.path(), "users");
    r.finish(f);
    if auth.is_none_or(|auth| auth == Auth::Acs) && entries == 0 && !has_problem(r, "api.auth") {
        r.push(
            &users_path,
            "auth = \"acs\" needs at least one [[api.users]] entry (name, access_key_id, \
             access_key_secret, actions); or set api.auth = \"none\" for unauthenticated local use",
        );
    }
    ApiConfig {
        listen,
        auth: auth.unwrap_or(defaults.auth),
        default_qps,
        max_page_size,
        users,
    }
}

fn has_problem(r: &Reader, key: &str) -> bool {
    r.problems.iter().any(|problem| problem.key == key)
}

/// The users that are valid, and how many entries there were.
fn users(r: &mut Reader, path: &str, value: &Value) -> (Vec<UserConfig>, usize) {
    let Value::Array(entries) = value else {
        r.wrong_type(path, "an array of tables ([[api.users]] entries)", value);
        return (Vec::new(), 0);
    };
    let mut users: Vec<UserConfig> = Vec::with_capacity(entries.len());
    let mut names = BTreeMap::new();
    let mut key_ids = BTreeMap::new();
    for (index, entry) in entries.iter().enumerate() {
        let entry_path = format!("{path}[{index}]");
        let Some(table) = r.table(&entry_path, entry) else {
            continue;
        };
        let mut f = Fields::new(entry_path.clone(), table);
        let name = r.required(
            &mut f,
            "name",
            "write a name, e.g. name = \"secops\"",
            Reader::non_empty_string,
        );
        let access_key_id = r.required(
            &mut f,
            "access_key_id",
            "write the AccessKeyId this user signs with",
            Reader::non_empty_string,
        );
        let access_key_secret = r.required(
            &mut f,
            "access_key_secret",
            "write access_key_secret = \"env:VARIABLE_NAME\"",
            Reader::secret,
        );
        let qps = r.opt(&mut f, "qps", |r, p, v| r.int(p, v, 0, u32::MAX.into()));
        let actions = r.required(
            &mut f,
            "actions",
            "list the Actions this user may call, e.g. actions = [\"*\"]",
            actions,
        );
        r.finish(f);
        if let Some(name) = &name {
            unique(r, &mut names, name, &entry_path, "name", "name");
        }
        if let Some(key_id) = &access_key_id {
            unique(
                r,
                &mut key_ids,
                key_id,
                &entry_path,
                "access_key_id",
                "AccessKeyId",
            );
        }
        if let (Some(name), Some(access_key_id), Some(access_key_secret), Some(actions)) =
            (name, access_key_id, access_key_secret, actions)
        {
            users.push(UserConfig {
                name,
                access_key_id,
                access_key_secret,
                qps,
                actions,
            });
        }
    }
    (users, entries.len())
}

/// Reports `value` at `entry_path.key` when an earlier entry has it too.
fn unique(
    r: &mut Reader,
    seen: &mut BTreeMap<String, String>,
    value: &str,
    entry_path: &str,
    key: &str,
    what: &str,
) {
    match seen.entry(value.to_owned()) {
        Entry::Occupied(first) => {
            let message = format!(
                "{value:?} is also the {what} of {}; each user needs its own",
                first.get()
            );
            r.push(&key_path(entry_path, key), message);
        }
        Entry::Vacant(slot) => {
            slot.insert(entry_path.to_owned());
        }
    }
}

fn actions(r: &mut Reader, path: &str, value: &Value) -> Option<Vec<String>> {
    let before = r.problems.len();
    let items = r.string_list(path, value)?;
    if items.is_empty() && r.problems.len() == before {
        r.push(
            path,
            "must list at least one Action, e.g. [\"*\"] or [\"DescribeInternetOpenPort\"]",
        );
        return None;
    }
    let mut ok = r.problems.len() == before;
    let mut actions = Vec::with_capacity(items.len());
    for (item_path, action) in items {
        if ACTIONS.contains(&action.as_str()) {
            actions.push(action);
            continue;
        }
        ok = false;
        let message = match ACTIONS
            .iter()
            .find(|known| known.eq_ignore_ascii_case(&action))
        {
            Some(known) => format!("{action:?} is not an Action; did you mean {known:?}?"),
            None => format!(
                "{action:?} is not an Action; expected one of {}",
                quoted_list(ACTIONS)
            ),
        };
        r.push(&item_path, message);
    }
    ok.then_some(actions)
}
