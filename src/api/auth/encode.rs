//! What both signature versions share: RFC 3986 percent-encoding, UTC
//! timestamps, and form decoding of a raw query string.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::super::rpc::decode_pairs_list;

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - _ . ~`)
/// is escaped, as `urllib.parse.quote(s, safe='~')` does in the SDK.
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `text` percent-encoded per RFC 3986 (space as `%20`, hex upper case).
pub fn encode(text: &str) -> String {
    utf8_percent_encode(text, RFC3986).to_string()
}

/// `name=value` pairs, each side [`encode`]d, sorted, joined with `&`.
pub fn canonical_pairs<'p>(pairs: impl Iterator<Item = (&'p str, &'p str)>) -> String {
    let mut encoded: Vec<(String, String)> = pairs.map(|(k, v)| (encode(k), encode(v))).collect();
    encoded.sort();
    let mut out = String::new();
    for (k, v) in encoded {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&k);
        out.push('=');
        out.push_str(&v);
    }
    out
}

/// The query string as the client meant it: form-decoded (`+` is a space),
/// every pair kept.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    // The request decoded once already, so this does not fail; an
    // undecodable pair would only make the signature not match.
    decode_pairs_list(query.unwrap_or("").as_bytes()).unwrap_or_default()
}

/// UNIX ms of an ISO 8601 UTC time such as `2024-03-01T12:00:00Z`
/// (fractional seconds allowed); `None` for anything else.
pub fn parse_utc(text: &str) -> Option<i64> {
    let time = humantime::parse_rfc3339(text.trim()).ok()?;
    let ms = time.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    i64::try_from(ms).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_rfc3986_like_the_sdk() {
        assert_eq!(encode("my sql*~'"), "my%20sql%2A~%27");
        assert_eq!(encode("a+b/c=d&e"), "a%2Bb%2Fc%3Dd%26e");
        assert_eq!(encode("A-z_0.9"), "A-z_0.9");
        assert_eq!(encode("数"), "%E6%95%B0");
    }

    #[test]
    fn canonical_pairs_are_sorted_after_encoding() {
        let pairs = [("b", "2"), ("a", "x y"), ("a", "1")];
        assert_eq!(
            canonical_pairs(pairs.iter().map(|(k, v)| (*k, *v))),
            "a=1&a=x%20y&b=2"
        );
    }

    #[test]
    fn query_pairs_decode_form_encoding() {
        let pairs = query_pairs(Some("ServiceNameFuzzy=my+sql%2A&Flag&Lang=en"));
        assert_eq!(
            pairs,
            [
                ("ServiceNameFuzzy".to_owned(), "my sql*".to_owned()),
                ("Flag".to_owned(), String::new()),
                ("Lang".to_owned(), "en".to_owned()),
            ]
        );
    }

    #[test]
    fn utc_timestamps_parse_to_ms() {
        assert_eq!(parse_utc("2024-03-01T12:00:00Z"), Some(1_709_294_400_000));
        assert_eq!(
            parse_utc("2024-03-01T12:00:00.250Z"),
            Some(1_709_294_400_250)
        );
        for bad in [
            "",
            "2024-03-01 12:00:00",
            "2024-03-01T12:00:00+08:00",
            "1709294400",
            "yesterday",
        ] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
    }
}
