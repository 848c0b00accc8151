//! `[network]`: asset and internal ranges, and the rules between them.

use std::net::IpAddr;

use ipnet::IpNet;
use toml::Value;

use super::fields::Fields;
use super::read::Reader;
use super::NetworkConfig;

const ASSETS_HINT: &str = "list your public address ranges, \
    e.g. assets = [\"203.0.113.0/24\", \"2001:db8:100::/48\"]";

pub use crate::classify::builtin_internal_ranges;

pub(super) fn network(r: &mut Reader, mut f: Fields) -> NetworkConfig {
    let assets = r
        .required(&mut f, "assets", ASSETS_HINT, |r, p, v| {
            let before = r.problems.len();
            let assets = cidrs(r, p, v)?;
            if assets.is_empty() && r.problems.len() == before {
                r.push(p, format!("must not be empty; {ASSETS_HINT}"));
            }
            Some(assets)
        })
        .unwrap_or_default();
    let internal = r.opt(&mut f, "internal", cidrs).unwrap_or_default();
    let builtin = builtin_internal_ranges();
    for (path, asset) in &assets {
        if let Some(range) = builtin.iter().find(|range| overlap(asset, range)) {
            let message = if range.contains(asset) {
                format!(
                    "{asset} lies in the built-in internal range {range}, which Internet traffic \
                     never reaches, so none of its ports would ever be reported; \
                     list public ranges only, e.g. 203.0.113.0/24"
                )
            } else {
                format!(
                    "{asset} includes the built-in internal range {range}; \
                     list only the public ranges within it"
                )
            };
            r.push(path, message);
        } else if let Some((internal_path, range)) =
            internal.iter().find(|(_, range)| overlap(asset, range))
        {
            r.push(
                path,
                format!(
                    "{asset} overlaps {internal_path} ({range}); an address is either ours and \
                     public (assets) or not the Internet (internal), not both"
                ),
            );
        }
    }
    r.finish(f);
    NetworkConfig {
        assets: assets.into_iter().map(|(_, net)| net).collect(),
        internal: internal.into_iter().map(|(_, net)| net).collect(),
    }
}

/// A list of CIDRs, each with its key path; bad ones are reported and left out.
fn cidrs(r: &mut Reader, path: &str, value: &Value) -> Option<Vec<(String, IpNet)>> {
    let items = r.string_list(path, value)?;
    Some(
        items
            .into_iter()
            .filter_map(|(item_path, text)| Some((item_path.clone(), cidr(r, &item_path, &text)?)))
            .collect(),
    )
}

/// A CIDR; a bare address is a one-address network.
fn cidr(r: &mut Reader, path: &str, text: &str) -> Option<IpNet> {
    if let Ok(net) = text.trim().parse::<IpNet>() {
        if net.trunc() == net {
            return Some(net);
        }
        r.push(
            path,
            format!(
                "{text:?} has host bits set; write the network {} (or {}/{} for that one address)",
                net.trunc(),
                net.addr(),
                net.max_prefix_len()
            ),
        );
        return None;
    }
    if let Ok(address) = text.trim().parse::<IpAddr>() {
        return Some(IpNet::from(address));
    }
    r.push(
        path,
        format!("{text:?} is not a CIDR (e.g. 203.0.113.0/24)"),
    );
    None
}

/// Two prefixes overlap exactly when one contains the other.
fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}
