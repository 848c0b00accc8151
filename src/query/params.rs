//! Request parameters of the `DescribeInternetOpen*` Actions, validated
//! (`docs/api.md#rules-every-action-shares`, and the request models of the
//! official SDK).
//!
//! Every parameter arrives as a string. Each Action reads the parameters its
//! SDK request model has ([`Action::params`]) and ignores the others, as
//! Alibaba Cloud ignores parameters it does not know. A bad value is refused
//! with an error that names the parameter and the rule it broke.

use std::net::IpAddr;

use super::Action;
use crate::catalog::Lang;
use crate::changes::events::Kind;

/// Longest string accepted for a text parameter (service names, ids).
pub const MAX_TEXT_LEN: usize = 256;
/// Most `SortList` entries read (`SortList.1` to `SortList.10`).
pub const MAX_SORT_KEYS: usize = 10;
/// `RiskLevel` and `SuggestLevel` value meaning "in assessment": accepted,
/// matches no row (every row is assessed when it is answered).
pub const IN_ASSESSMENT: i8 = -1;

/// A parameter that broke its rule: `ErrorParameters` in the API.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {message}")]
pub struct ParamError {
    /// The parameter's name as the caller sent it (`PageSize`).
    pub param: &'static str,
    /// What was wrong and what would be right.
    pub message: String,
}

impl ParamError {
    fn new(param: &'static str, message: impl Into<String>) -> Self {
        ParamError {
            param,
            message: message.into(),
        }
    }
}

/// A request parameter some Action reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    SourceIp,
    Lang,
    ServiceName,
    ServiceNameFuzzy,
    RiskLevel,
    SuggestLevel,
    Port,
    PublicIp,
    /// `AssetsInstanceId`, `AssetsInstanceName`, `AssetsType`, `RegionNo`:
    /// Alibaba Cloud inventory this service does not have.
    Inventory,
    StartTime,
    EndTime,
    CurrentPage,
    PageSize,
    SortList,
    /// `DescribeExposureChanges`: `opened`, `closed` or `changed`.
    Kind,
    /// `DescribeExposureChanges`: `true` or `false`.
    Expected,
}

/// The inventory parameters, all compared with the empty inventory fields.
const INVENTORY: [&str; 4] = [
    "AssetsInstanceId",
    "AssetsInstanceName",
    "AssetsType",
    "RegionNo",
];

/// A `SortList` key of `DescribeInternetOpenDetail`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    ServiceName,
    PublicIp,
    Port,
}

/// One `SortList` entry: a key and whether it sorts descending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sort {
    pub key: SortKey,
    pub descending: bool,
}

/// The validated parameters of one `DescribeInternetOpen*` call. Fields of
/// parameters the Action does not read stay at their defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The caller's address: validated and logged, not a filter.
    pub source_ip: Option<IpAddr>,
    /// Language of the risk texts.
    pub lang: Lang,
    /// Exact service name, compared case-insensitively.
    pub service_name: Option<String>,
    /// Case-insensitive substring of a service name (stored lowercased).
    pub service_name_fuzzy: Option<String>,
    /// 0 to 3, or [`IN_ASSESSMENT`].
    pub risk_level: Option<i8>,
    /// 0, 10, 20, 30, or [`IN_ASSESSMENT`].
    pub suggest_level: Option<i8>,
    pub port: Option<u16>,
    /// Exact asset address (IPv4-mapped IPv6 compares as IPv4).
    pub public_ip: Option<IpAddr>,
    /// An inventory parameter (`AssetsInstanceId`, ...) was given: this
    /// service knows no cloud inventory, so no row matches.
    pub inventory_filter: bool,
    /// Range start, UNIX seconds (default: 7 days before now).
    pub start_time: Option<i64>,
    /// Range end, UNIX seconds, exclusive (default: just after now).
    pub end_time: Option<i64>,
    /// 1-based page number.
    pub current_page: u32,
    pub page_size: u32,
    /// `DescribeInternetOpenDetail`'s `SortList`, applied before the
    /// default order.
    pub sort_list: Vec<Sort>,
    /// `DescribeExposureChanges`: only events of this kind.
    pub kind: Option<Kind>,
    /// `DescribeExposureChanges`: only events of exposures that are (or are
    /// not) expected after the change.
    pub expected: Option<bool>,
}

/// The parameters of `DescribeInternetOpenPort`: the name callers know.
pub type PortQuery = Query;

impl Default for Query {
    fn default() -> Self {
        Query {
            source_ip: None,
            lang: Lang::default(),
            service_name: None,
            service_name_fuzzy: None,
            risk_level: None,
            suggest_level: None,
            port: None,
            public_ip: None,
            inventory_filter: false,
            start_time: None,
            end_time: None,
            current_page: 1,
            page_size: 10,
            sort_list: Vec::new(),
            kind: None,
            expected: None,
        }
    }
}

/// What a row offers to the filters.
pub struct Facts<'r> {
    pub services: &'r [String],
    pub risk_level: u8,
    /// `None` for rows without a SuggestLevel (DescribeInternetOpenIp).
    pub suggest_level: Option<u8>,
    /// The ports of the row's endpoints.
    pub ports: &'r [u16],
    /// The row's asset address, for rows of one address.
    pub public_ip: Option<IpAddr>,
}

impl Query {
    /// Reads the parameters of `DescribeInternetOpenPort` through `get` (a
    /// query string or form body); `max_page_size` is `api.max_page_size`.
    pub fn parse<'a>(
        get: impl Fn(&str) -> Option<&'a str>,
        max_page_size: u32,
    ) -> Result<Self, ParamError> {
        Query::parse_for(Action::Port, get, max_page_size)
    }

    /// Reads the parameters `action` has.
    pub fn parse_for<'a>(
        action: Action,
        get: impl Fn(&str) -> Option<&'a str>,
        max_page_size: u32,
    ) -> Result<Self, ParamError> {
        let r = Reader { get: &get };
        let mut q = Query::default();
        for param in action.params() {
            match param {
                Param::SourceIp => q.source_ip = r.ip("SourceIp")?,
                Param::Lang => {
                    if let Some(v) = r.text("Lang")? {
                        q.lang = v.parse().map_err(|_| {
                            ParamError::new(
                                "Lang",
                                format!("{v:?} is not a language; use zh or en"),
                            )
                        })?;
                    }
                }
                Param::ServiceName => q.service_name = r.text("ServiceName")?.map(str::to_owned),
                Param::ServiceNameFuzzy => {
                    q.service_name_fuzzy = r.text("ServiceNameFuzzy")?.map(str::to_lowercase)
                }
                Param::RiskLevel => q.risk_level = r.choice("RiskLevel", &[-1, 0, 1, 2, 3])?,
                Param::SuggestLevel => {
                    q.suggest_level = r.choice("SuggestLevel", &[-1, 0, 10, 20, 30])?
                }
                Param::Port => q.port = r.int("Port", 0, 65535)?.map(|p| p as u16),
                Param::PublicIp => q.public_ip = r.ip("PublicIp")?,
                Param::Inventory => {
                    for name in INVENTORY {
                        q.inventory_filter |= r.text(name)?.is_some();
                    }
                }
                // 253402300799 is 9999-12-31T23:59:59Z: far enough, and
                // safe to turn into milliseconds.
                Param::StartTime => q.start_time = r.int("StartTime", 0, 253_402_300_799)?,
                Param::EndTime => q.end_time = r.int("EndTime", 0, 253_402_300_799)?,
                Param::CurrentPage => {
                    if let Some(n) = r.int("CurrentPage", 1, i64::from(u32::MAX))? {
                        q.current_page = n as u32;
                    }
                }
                Param::PageSize => {
                    if let Some(n) = r.int("PageSize", 1, i64::from(max_page_size))? {
                        q.page_size = n as u32;
                    }
                }
                Param::SortList => q.sort_list = r.sort_list()?,
                Param::Kind => q.kind = r.kind()?,
                Param::Expected => q.expected = r.boolean("Expected")?,
            }
        }
        if let (Some(start), Some(end)) = (q.start_time, q.end_time) {
            if start >= end {
                return Err(ParamError::new(
                    "EndTime",
                    format!(
                        "{end} is not after StartTime {start}; the range is [StartTime, EndTime)"
                    ),
                ));
            }
        }
        Ok(q)
    }

    /// Whether a row with these facts passes every filter given (AND).
    pub fn matches(&self, row: &Facts<'_>) -> bool {
        !self.inventory_filter
            && self
                .risk_level
                .is_none_or(|r| i16::from(r) == i16::from(row.risk_level))
            && self.suggest_level.is_none_or(|s| {
                row.suggest_level
                    .is_some_and(|level| i16::from(s) == i16::from(level))
            })
            && self.port.is_none_or(|p| row.ports.contains(&p))
            && self.public_ip.is_none_or(|ip| row.public_ip == Some(ip))
            && self.service_name.as_deref().is_none_or(|want| {
                let want = want.to_lowercase();
                row.services.iter().any(|n| n.to_lowercase() == want)
            })
            && self
                .service_name_fuzzy
                .as_deref()
                .is_none_or(|part| row.services.iter().any(|n| n.to_lowercase().contains(part)))
    }
}

/// Reads single parameters through the caller's `get`.
struct Reader<'g, F> {
    get: &'g F,
}

impl<'a, F: Fn(&str) -> Option<&'a str>> Reader<'_, F> {
    /// A trimmed text value; empty means absent; long values are refused.
    fn text(&self, name: &'static str) -> Result<Option<&'a str>, ParamError> {
        match (self.get)(name).map(str::trim) {
            None | Some("") => Ok(None),
            Some(v) if v.len() > MAX_TEXT_LEN => Err(ParamError::new(
                name,
                format!(
                    "is {} bytes long; at most {MAX_TEXT_LEN} are accepted",
                    v.len()
                ),
            )),
            Some(v) => Ok(Some(v)),
        }
    }

    fn int(&self, name: &'static str, min: i64, max: i64) -> Result<Option<i64>, ParamError> {
        let Some(value) = self.text(name)? else {
            return Ok(None);
        };
        let rule = || format!("{value:?} is not an integer from {min} to {max}");
        let n: i64 = value.parse().map_err(|_| ParamError::new(name, rule()))?;
        if !(min..=max).contains(&n) {
            return Err(ParamError::new(name, rule()));
        }
        Ok(Some(n))
    }

    fn choice(&self, name: &'static str, allowed: &[i8]) -> Result<Option<i8>, ParamError> {
        let Some(value) = self.text(name)? else {
            return Ok(None);
        };
        let rule = || {
            let list: Vec<String> = allowed.iter().map(i8::to_string).collect();
            format!("{value:?} is not one of {}", list.join(", "))
        };
        let n: i8 = value.parse().map_err(|_| ParamError::new(name, rule()))?;
        if !allowed.contains(&n) {
            return Err(ParamError::new(name, rule()));
        }
        Ok(Some(n))
    }

    /// An event kind, any case (`opened`, `closed`, `changed`).
    fn kind(&self) -> Result<Option<Kind>, ParamError> {
        let Some(value) = self.text("Kind")? else {
            return Ok(None);
        };
        let kind = value.to_ascii_lowercase().parse().map_err(|()| {
            let names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
            ParamError::new(
                "Kind",
                format!("{value:?} is not one of {}", names.join(", ")),
            )
        })?;
        Ok(Some(kind))
    }

    /// `true` or `false`, any case (Python's `str(True)` is `True`).
    fn boolean(&self, name: &'static str) -> Result<Option<bool>, ParamError> {
        let Some(value) = self.text(name)? else {
            return Ok(None);
        };
        if value.eq_ignore_ascii_case("true") {
            Ok(Some(true))
        } else if value.eq_ignore_ascii_case("false") {
            Ok(Some(false))
        } else {
            Err(ParamError::new(
                name,
                format!("{value:?} is not one of true, false"),
            ))
        }
    }

    /// An IPv4 or IPv6 address; IPv4-mapped IPv6 becomes IPv4.
    fn ip(&self, name: &'static str) -> Result<Option<IpAddr>, ParamError> {
        let Some(v) = self.text(name)? else {
            return Ok(None);
        };
        let ip: IpAddr = v
            .parse()
            .map_err(|_| ParamError::new(name, format!("{v:?} is not an IPv4 or IPv6 address")))?;
        Ok(Some(ip.to_canonical()))
    }

    /// `SortList` as the SDK flattens it (`SortList.1.SortKey=Port&
    /// SortList.1.Dir=desc`), or as one JSON array
    /// (`SortList=[{"SortKey":"Port","Dir":"desc"}]`).
    fn sort_list(&self) -> Result<Vec<Sort>, ParamError> {
        if let Some(json) = self.text("SortList")? {
            return parse_sort_json(json);
        }
        let mut list = Vec::new();
        for (n, (key_name, dir_name)) in SORT_NAMES.iter().enumerate() {
            let key = self.text(key_name)?;
            let dir = self.text(dir_name)?;
            match (key, dir) {
                (None, None) => continue,
                (None, Some(_)) => {
                    return Err(ParamError::new(
                        key_name,
                        format!("is missing while {dir_name} is given; give both"),
                    ))
                }
                (Some(key), dir) => {
                    debug_assert!(n < MAX_SORT_KEYS);
                    list.push(sort(key_name, key, dir_name, dir)?);
                }
            }
        }
        Ok(list)
    }
}

/// `SortList.N.SortKey` and `SortList.N.Dir` for N = 1 to [`MAX_SORT_KEYS`].
const SORT_NAMES: [(&str, &str); MAX_SORT_KEYS] = [
    ("SortList.1.SortKey", "SortList.1.Dir"),
    ("SortList.2.SortKey", "SortList.2.Dir"),
    ("SortList.3.SortKey", "SortList.3.Dir"),
    ("SortList.4.SortKey", "SortList.4.Dir"),
    ("SortList.5.SortKey", "SortList.5.Dir"),
    ("SortList.6.SortKey", "SortList.6.Dir"),
    ("SortList.7.SortKey", "SortList.7.Dir"),
    ("SortList.8.SortKey", "SortList.8.Dir"),
    ("SortList.9.SortKey", "SortList.9.Dir"),
    ("SortList.10.SortKey", "SortList.10.Dir"),
];

fn sort(
    key_name: &'static str,
    key: &str,
    dir_name: &'static str,
    dir: Option<&str>,
) -> Result<Sort, ParamError> {
    let key = if key.eq_ignore_ascii_case("ServiceName") {
        SortKey::ServiceName
    } else if key.eq_ignore_ascii_case("PublicIp") {
        SortKey::PublicIp
    } else if key.eq_ignore_ascii_case("Port") {
        SortKey::Port
    } else {
        return Err(ParamError::new(
            key_name,
            format!("{key:?} is not one of ServiceName, PublicIp, Port"),
        ));
    };
    let descending = match dir {
        None => false,
        Some(d) if d.eq_ignore_ascii_case("asc") => false,
        Some(d) if d.eq_ignore_ascii_case("desc") => true,
        Some(d) => {
            return Err(ParamError::new(
                dir_name,
                format!("{d:?} is not one of asc, desc"),
            ))
        }
    };
    Ok(Sort { key, descending })
}

fn parse_sort_json(json: &str) -> Result<Vec<Sort>, ParamError> {
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(rename = "SortKey")]
        sort_key: String,
        #[serde(rename = "Dir")]
        dir: Option<String>,
    }
    let rule = "is not a JSON list like [{\"SortKey\":\"Port\",\"Dir\":\"desc\"}]";
    let entries: Vec<Entry> =
        serde_json::from_str(json).map_err(|_| ParamError::new("SortList", rule))?;
    if entries.len() > MAX_SORT_KEYS {
        return Err(ParamError::new(
            "SortList",
            format!(
                "has {} entries; at most {MAX_SORT_KEYS} are accepted",
                entries.len()
            ),
        ));
    }
    entries
        .iter()
        .map(|e| sort("SortList", &e.sort_key, "SortList", e.dir.as_deref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse_as(action: Action, pairs: &[(&str, &str)]) -> Result<Query, ParamError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Query::parse_for(action, |k| map.get(k).map(String::as_str), 1000)
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<Query, ParamError> {
        parse_as(Action::Port, pairs)
    }

    #[test]
    fn defaults_are_page_one_of_ten_in_chinese() {
        let q = parse(&[]).unwrap();
        assert_eq!((q.current_page, q.page_size, q.lang), (1, 10, Lang::Zh));
    }

    #[test]
    fn every_parameter_is_read() {
        let q = parse(&[
            ("SourceIp", "114.242.33.1"),
            ("Lang", "en"),
            ("ServiceName", "SMB"),
            ("ServiceNameFuzzy", "Sm"),
            ("RiskLevel", "3"),
            ("SuggestLevel", "30"),
            ("Port", "445"),
            ("StartTime", "1735264800"),
            ("EndTime", "1748358644"),
            ("CurrentPage", "2"),
            ("PageSize", "50"),
        ])
        .unwrap();
        assert_eq!(q.source_ip, Some("114.242.33.1".parse().unwrap()));
        assert_eq!(q.lang, Lang::En);
        assert_eq!(q.service_name.as_deref(), Some("SMB"));
        assert_eq!(q.service_name_fuzzy.as_deref(), Some("sm"));
        assert_eq!(
            (q.risk_level, q.suggest_level, q.port),
            (Some(3), Some(30), Some(445))
        );
        assert_eq!(
            (q.start_time, q.end_time),
            (Some(1_735_264_800), Some(1_748_358_644))
        );
        assert_eq!((q.current_page, q.page_size), (2, 50));
    }

    #[test]
    fn page_size_above_the_maximum_is_refused_with_the_rule() {
        let err = parse(&[("PageSize", "1001")]).unwrap_err();
        assert_eq!(err.param, "PageSize");
        assert!(err.message.contains("1 to 1000"), "{}", err.message);
    }

    #[test]
    fn hostile_values_are_refused_by_name() {
        for (param, value) in [
            ("Port", "65536"),
            ("Port", "-1"),
            ("Port", "80 OR 1=1"),
            ("CurrentPage", "0"),
            ("CurrentPage", "99999999999999999999"),
            ("RiskLevel", "4"),
            ("RiskLevel", "-2"),
            ("SuggestLevel", "15"),
            ("StartTime", "1e9"),
            ("EndTime", "-5"),
            ("Lang", "fr"),
            ("SourceIp", "not-an-ip"),
        ] {
            let err = parse(&[(param, value)]).unwrap_err();
            assert_eq!(err.param, param, "{param}={value}");
        }
        let long = "x".repeat(MAX_TEXT_LEN + 1);
        assert_eq!(
            parse(&[("ServiceName", &long)]).unwrap_err().param,
            "ServiceName"
        );
    }

    #[test]
    fn in_assessment_is_accepted() {
        let q = parse(&[("RiskLevel", "-1"), ("SuggestLevel", "-1")]).unwrap();
        assert_eq!((q.risk_level, q.suggest_level), (Some(-1), Some(-1)));
    }

    #[test]
    fn empty_range_is_refused() {
        let err = parse(&[("StartTime", "100"), ("EndTime", "100")]).unwrap_err();
        assert_eq!(err.param, "EndTime");
    }

    #[test]
    fn empty_values_mean_absent() {
        let q = parse(&[("Port", ""), ("ServiceName", "  ")]).unwrap();
        assert_eq!((q.port, q.service_name), (None, None));
    }

    #[test]
    fn each_action_reads_only_the_parameters_of_its_sdk_model() {
        // DescribeInternetOpenIp has no SuggestLevel, ServiceNameFuzzy or
        // SourceIp: bad values of them are ignored, not refused.
        let q = parse_as(
            Action::Ip,
            &[
                ("SuggestLevel", "x"),
                ("ServiceNameFuzzy", "sql"),
                ("SourceIp", "bad"),
                ("PublicIp", "203.0.113.9"),
            ],
        )
        .unwrap();
        assert_eq!(q.suggest_level, None);
        assert_eq!(q.service_name_fuzzy, None);
        assert_eq!(q.public_ip, Some("203.0.113.9".parse().unwrap()));
        // DescribeInternetOpenPort has no PublicIp.
        assert_eq!(parse(&[("PublicIp", "x")]).unwrap().public_ip, None);
        let err = parse_as(Action::Detail, &[("PublicIp", "203.0.113.0/24")]).unwrap_err();
        assert_eq!(err.param, "PublicIp");
        // Statistic reads the range and the language only.
        let q = parse_as(Action::Statistic, &[("Port", "x"), ("Lang", "en")]).unwrap();
        assert_eq!((q.port, q.lang), (None, Lang::En));
    }

    #[test]
    fn exposure_changes_read_kind_expected_and_the_shared_filters() {
        let q = parse_as(
            Action::Changes,
            &[
                ("Kind", "Opened"),
                ("Expected", "false"),
                ("RiskLevel", "3"),
                ("Port", "6379"),
                ("ServiceName", "Redis"),
                ("Lang", "en"),
                ("StartTime", "100"),
                ("EndTime", "200"),
                ("CurrentPage", "2"),
                ("PageSize", "5"),
                // Not a parameter of this Action: ignored.
                ("SuggestLevel", "x"),
            ],
        )
        .unwrap();
        assert_eq!((q.kind, q.expected), (Some(Kind::Opened), Some(false)));
        assert_eq!((q.risk_level, q.port), (Some(3), Some(6379)));
        assert_eq!(q.service_name.as_deref(), Some("Redis"));
        assert_eq!((q.start_time, q.end_time), (Some(100), Some(200)));
        assert_eq!((q.current_page, q.page_size, q.lang), (2, 5, Lang::En));
        assert_eq!(q.suggest_level, None);
        let q = parse_as(Action::Changes, &[("Expected", "TRUE")]).unwrap();
        assert_eq!(q.expected, Some(true));
    }

    #[test]
    fn exposure_changes_refuse_bad_values_by_name() {
        for (param, value, named) in [
            ("Kind", "bogus", "Kind"),
            ("Expected", "maybe", "Expected"),
            ("StartTime", "abc", "StartTime"),
            ("RiskLevel", "4", "RiskLevel"),
            ("Port", "70000", "Port"),
            ("Lang", "fr", "Lang"),
            ("PageSize", "1001", "PageSize"),
        ] {
            let err = parse_as(Action::Changes, &[(param, value)]).unwrap_err();
            assert_eq!(err.param, named, "{param}={value}");
            assert!(err.message.contains(value), "{}", err.message);
        }
        let err =
            parse_as(Action::Changes, &[("StartTime", "300"), ("EndTime", "200")]).unwrap_err();
        assert_eq!(err.param, "EndTime");
        let err = parse_as(Action::Changes, &[("Kind", "bogus")]).unwrap_err();
        assert!(
            err.message.contains("opened, closed, changed"),
            "{}",
            err.message
        );
        // The other Actions do not read Kind or Expected.
        let q = parse_as(Action::Port, &[("Kind", "bogus"), ("Expected", "maybe")]).unwrap();
        assert_eq!((q.kind, q.expected), (None, None));
    }

    #[test]
    fn mapped_ipv6_public_ip_compares_as_ipv4() {
        let q = parse_as(Action::Detail, &[("PublicIp", "::ffff:203.0.113.9")]).unwrap();
        assert_eq!(q.public_ip, Some("203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn inventory_parameters_set_the_inventory_filter() {
        for name in INVENTORY {
            let q = parse_as(Action::Detail, &[(name, "i-123")]).unwrap();
            assert!(q.inventory_filter, "{name}");
        }
        assert!(
            !parse_as(Action::Detail, &[("RegionNo", " ")])
                .unwrap()
                .inventory_filter
        );
    }

    #[test]
    fn sort_list_is_read_flat_or_as_json() {
        let q = parse_as(
            Action::Detail,
            &[
                ("SortList.1.SortKey", "Port"),
                ("SortList.1.Dir", "desc"),
                ("SortList.2.SortKey", "publicip"),
            ],
        )
        .unwrap();
        assert_eq!(
            q.sort_list,
            [
                Sort {
                    key: SortKey::Port,
                    descending: true
                },
                Sort {
                    key: SortKey::PublicIp,
                    descending: false
                }
            ]
        );
        let q = parse_as(
            Action::Detail,
            &[("SortList", r#"[{"SortKey":"ServiceName","Dir":"DESC"}]"#)],
        )
        .unwrap();
        assert_eq!(q.sort_list[0].key, SortKey::ServiceName);
        assert!(q.sort_list[0].descending);
        for (k, v, param) in [
            ("SortList.1.SortKey", "Bytes", "SortList.1.SortKey"),
            ("SortList.1.Dir", "desc", "SortList.1.SortKey"),
            ("SortList", "{nope", "SortList"),
        ] {
            let err = parse_as(Action::Detail, &[(k, v)]).unwrap_err();
            assert_eq!(err.param, param, "{k}={v}");
        }
        let err = parse_as(
            Action::Detail,
            &[("SortList.3.SortKey", "Port"), ("SortList.3.Dir", "up")],
        )
        .unwrap_err();
        assert_eq!(err.param, "SortList.3.Dir");
    }
}

/// Hostile parameter values: whatever arrives, parsing answers (an answer or
/// an error naming a parameter), never panics.
#[cfg(test)]
mod hostile {
    use super::*;
    use proptest::prelude::*;

    const NAMES: &[&str] = &[
        "SourceIp",
        "Lang",
        "ServiceName",
        "ServiceNameFuzzy",
        "RiskLevel",
        "SuggestLevel",
        "Port",
        "StartTime",
        "EndTime",
        "CurrentPage",
        "PageSize",
        "PublicIp",
        "SortList",
        "SortList.1.Key",
        "SortList.1.Dir",
        "AssetsInstanceId",
        "RegionNo",
        "Protocol",
        "Kind",
        "Expected",
    ];

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[0-9-]{0,40}",
            Just("18446744073709551616".to_owned()),
            Just("-9223372036854775809".to_owned()),
            Just("NaN".to_owned()),
            Just("1e309".to_owned()),
            Just("\u{0}".to_owned()),
            Just("[{\"Key\":\"Port\",\"Dir\":\"asc\"}]".to_owned()),
        ]
    }

    proptest! {
        #[test]
        fn any_values_for_any_action_never_panic(
            action in 0usize..Action::ALL.len(),
            pairs in prop::collection::vec((prop::sample::select(NAMES), value()), 0..8),
        ) {
            let map: std::collections::HashMap<&str, String> = pairs.into_iter().collect();
            let result = Query::parse_for(Action::ALL[action], |k| map.get(k).map(String::as_str), 1000);
            if let Err(e) = result {
                prop_assert!(!e.param.is_empty() && !e.message.is_empty());
                prop_assert!(e.param.starts_with(|c: char| c.is_ascii_uppercase()), "{}", e.param);
            }
        }
    }
}
