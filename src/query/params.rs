//! Request parameters of `DescribeInternetOpenPort`, validated (SPEC §6).
//!
//! Every parameter arrives as a string. A bad one is refused with an error
//! that names it and the rule it broke; parameters this API does not know
//! are ignored, as Alibaba Cloud does.

use std::net::IpAddr;

use crate::catalog::Lang;

/// Longest string accepted for a text parameter (service names).
pub const MAX_TEXT_LEN: usize = 256;

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

/// The validated parameters of one `DescribeInternetOpenPort` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortQuery {
    /// The caller's address: validated and logged, not a filter.
    pub source_ip: Option<IpAddr>,
    /// Language of the risk texts.
    pub lang: Lang,
    /// Exact service name, compared case-insensitively.
    pub service_name: Option<String>,
    /// Case-insensitive substring of a service name (stored lowercased).
    pub service_name_fuzzy: Option<String>,
    pub risk_level: Option<u8>,
    pub suggest_level: Option<u8>,
    pub port: Option<u16>,
    /// Range start, UNIX seconds (default: 7 days before now).
    pub start_time: Option<i64>,
    /// Range end, UNIX seconds, exclusive (default: just after now).
    pub end_time: Option<i64>,
    /// 1-based page number.
    pub current_page: u32,
    pub page_size: u32,
}

impl Default for PortQuery {
    fn default() -> Self {
        PortQuery {
            source_ip: None,
            lang: Lang::default(),
            service_name: None,
            service_name_fuzzy: None,
            risk_level: None,
            suggest_level: None,
            port: None,
            start_time: None,
            end_time: None,
            current_page: 1,
            page_size: 10,
        }
    }
}

impl PortQuery {
    /// Reads the parameters through `get` (a query string or form body);
    /// `max_page_size` is `api.max_page_size`.
    pub fn parse<'a>(
        get: impl Fn(&str) -> Option<&'a str>,
        max_page_size: u32,
    ) -> Result<Self, ParamError> {
        let text = |name: &'static str| -> Result<Option<&'a str>, ParamError> {
            match get(name).map(str::trim) {
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
        };
        let mut q = PortQuery::default();
        if let Some(v) = text("SourceIp")? {
            q.source_ip = Some(v.parse().map_err(|_| {
                ParamError::new("SourceIp", format!("{v:?} is not an IPv4 or IPv6 address"))
            })?);
        }
        if let Some(v) = text("Lang")? {
            q.lang = v.parse().map_err(|_| {
                ParamError::new("Lang", format!("{v:?} is not a language; use zh or en"))
            })?;
        }
        q.service_name = text("ServiceName")?.map(str::to_owned);
        q.service_name_fuzzy = text("ServiceNameFuzzy")?.map(str::to_lowercase);
        if let Some(v) = text("RiskLevel")? {
            q.risk_level = Some(parse_choice("RiskLevel", v, &[0, 1, 2, 3])?);
        }
        if let Some(v) = text("SuggestLevel")? {
            q.suggest_level = Some(parse_choice("SuggestLevel", v, &[0, 10, 20, 30])?);
        }
        if let Some(v) = text("Port")? {
            q.port = Some(parse_int("Port", v, 0, 65535)? as u16);
        }
        // 253402300799 is 9999-12-31T23:59:59Z: far enough, and safe to
        // turn into milliseconds.
        if let Some(v) = text("StartTime")? {
            q.start_time = Some(parse_int("StartTime", v, 0, 253_402_300_799)?);
        }
        if let Some(v) = text("EndTime")? {
            q.end_time = Some(parse_int("EndTime", v, 0, 253_402_300_799)?);
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
        if let Some(v) = text("CurrentPage")? {
            q.current_page = parse_int("CurrentPage", v, 1, i64::from(u32::MAX))? as u32;
        }
        if let Some(v) = text("PageSize")? {
            q.page_size = parse_int("PageSize", v, 1, i64::from(max_page_size))? as u32;
        }
        Ok(q)
    }
}

fn parse_int(param: &'static str, value: &str, min: i64, max: i64) -> Result<i64, ParamError> {
    let rule = || format!("{value:?} is not an integer from {min} to {max}");
    let n: i64 = value.parse().map_err(|_| ParamError::new(param, rule()))?;
    if !(min..=max).contains(&n) {
        return Err(ParamError::new(param, rule()));
    }
    Ok(n)
}

fn parse_choice(param: &'static str, value: &str, allowed: &[u8]) -> Result<u8, ParamError> {
    let rule = || {
        let list: Vec<String> = allowed.iter().map(u8::to_string).collect();
        format!("{value:?} is not one of {}", list.join(", "))
    };
    let n: u8 = value.parse().map_err(|_| ParamError::new(param, rule()))?;
    if !allowed.contains(&n) {
        return Err(ParamError::new(param, rule()));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(pairs: &[(&str, &str)]) -> Result<PortQuery, ParamError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        PortQuery::parse(|k| map.get(k).map(String::as_str), 1000)
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
    fn empty_range_is_refused() {
        let err = parse(&[("StartTime", "100"), ("EndTime", "100")]).unwrap_err();
        assert_eq!(err.param, "EndTime");
    }

    #[test]
    fn empty_values_mean_absent() {
        let q = parse(&[("Port", ""), ("ServiceName", "  ")]).unwrap();
        assert_eq!((q.port, q.service_name), (None, None));
    }
}
