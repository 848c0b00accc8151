//! The fast path of [`super::parse`]: a scanner for the records collectors
//! write (one object of strings without escapes, non-negative integers,
//! `true`, `false`, `null`, and arrays or objects under keys nobody reads).
//!
//! It never decides a record's fate on its own: anything it does not read
//! exactly as serde_json would (an escape, a control character, a fraction,
//! a negative or 20-digit number under a key that is kept, a syntax error)
//! makes it give up, and the record is read again by serde_json, which reads
//! it or names its error. So for every record it either fills the same
//! [`Record`] serde_json would, or returns `false`.
//!
//! Unused values are checked against JSON's grammar as serde_json checks the
//! values it skips (numbers by their shape, strings up to their quote,
//! nesting to a depth), without building anything.

use std::borrow::Cow;
use std::cell::RefCell;

use super::{key_of, tcp_flag_bit, Key, Raw, Record};

/// Nesting deeper than this is left to serde_json (its own limit is 128).
const MAX_DEPTH: usize = 64;

/// Keys remembered of a record ([`Shape`]), and the longest remembered.
const SHAPE_KEYS: usize = 64;
const SHAPE_KEY_BYTES: usize = 64;

/// The keys of the last record scanned on a thread, in their order.
/// Collectors write every record's keys in the same order, so the key at a
/// place is most likely the one the last record had there: when the
/// record's bytes there are that key's followed by its closing quote, it
/// is that key, found without scanning for the quote or looking it up.
/// Any other key is scanned and looked up, and remembered in its place.
#[derive(Default)]
struct Shape {
    /// The keys' text, one after another.
    text: Vec<u8>,
    /// Each key's end in `text`, and what it is.
    keys: Vec<(usize, Key)>,
}

thread_local! {
    static SHAPE: RefCell<Shape> = RefCell::new(Shape::default());
}

/// Fills `record` from `text` and returns `true`, or returns `false` with
/// `record` partly filled (the caller resets it).
pub(super) fn record<'a>(text: &'a str, record: &mut Record<'a>) -> bool {
    SHAPE.with_borrow_mut(|shape| {
        let mut scanner = Scanner {
            text,
            bytes: text.as_bytes(),
            at: 0,
            shape,
        };
        scanner.object(record).is_some() && {
            scanner.whitespace();
            scanner.at == scanner.bytes.len()
        }
    })
}

/// A cursor over one record. Every method returns `None` to give up.
struct Scanner<'a, 's> {
    text: &'a str,
    bytes: &'a [u8],
    /// The next byte to read.
    at: usize,
    shape: &'s mut Shape,
}

impl<'a> Scanner<'a, '_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// Skips whitespace and consumes `byte`, or gives up.
    fn expect(&mut self, byte: u8) -> Option<()> {
        self.whitespace();
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// The top-level object, into `record`.
    fn object(&mut self, record: &mut Record<'a>) -> Option<()> {
        self.expect(b'{')?;
        self.whitespace();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        let mut place = 0;
        loop {
            self.expect(b'"')?;
            let key = match self.remembered_key(place) {
                Some(key) => key,
                None => {
                    let text = self.string_bytes()?;
                    let key = key_of(text);
                    self.remember(place, text, key);
                    key
                }
            };
            self.expect(b':')?;
            self.whitespace();
            self.member(key, record)?;
            self.whitespace();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
            place += 1;
        }
    }

    /// After the opening quote of the key at `place`: the key the last
    /// record had there, consumed with its closing quote, if the bytes here
    /// are that key's ([`Shape`]).
    fn remembered_key(&mut self, place: usize) -> Option<Key> {
        let &(end, key) = self.shape.keys.get(place)?;
        let start = place.checked_sub(1).map_or(0, |p| self.shape.keys[p].0);
        let expected = &self.shape.text[start..end];
        let rest = &self.bytes[self.at..];
        // The remembered key holds no quote, backslash or control
        // character, so a scan would stop exactly at the quote after it.
        (rest.starts_with(expected) && rest.get(expected.len()) == Some(&b'"')).then(|| {
            self.at += expected.len() + 1;
            key
        })
    }

    /// Remembers `text` as the key at `place`, forgetting the keys after it.
    fn remember(&mut self, place: usize, text: &[u8], key: Key) {
        let shape = &mut *self.shape;
        shape.keys.truncate(place);
        shape
            .text
            .truncate(shape.keys.last().map_or(0, |&(end, _)| end));
        if place == shape.keys.len() && place < SHAPE_KEYS && text.len() <= SHAPE_KEY_BYTES {
            shape.text.extend_from_slice(text);
            shape.keys.push((shape.text.len(), key));
        }
    }

    /// The value of `key`, stored in its slot of `record` or skipped.
    fn member(&mut self, key: Key, record: &mut Record<'a>) -> Option<()> {
        let Some(slot) = record.slot(key) else {
            return self.skip(0);
        };
        *slot = match self.value()? {
            Raw::Null => None,
            raw => Some(raw),
        };
        Some(())
    }

    /// A value under a kept key, as [`Raw`]'s `Deserialize` reads it.
    fn value(&mut self) -> Option<Raw<'a>> {
        match self.peek()? {
            b'"' => {
                self.at += 1;
                Some(Raw::Str(Cow::Borrowed(self.string_body()?)))
            }
            b'0'..=b'9' => self.uint().map(Raw::Uint),
            b'[' => self.flag_names().map(Raw::Flags),
            b'n' => self.literal(b"null").map(|()| Raw::Null),
            b't' => self.literal(b"true").map(|()| Raw::Other),
            b'f' => self.literal(b"false").map(|()| Raw::Other),
            // Negative numbers, objects, and whatever is not JSON.
            _ => None,
        }
    }

    /// After an opening quote: the text up to the closing quote, consumed.
    /// Gives up at an escape or a control character.
    fn string_body(&mut self) -> Option<&'a str> {
        let start = self.at;
        let body = self.string_bytes()?;
        // The quotes are ASCII, so both ends are character boundaries.
        Some(&self.text[start..start + body.len()])
    }

    /// [`Self::string_body`] as bytes, for keys and skipped values: no
    /// character boundaries to check.
    fn string_bytes(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        let end = start + self.until_string_stop(start);
        if self.bytes.get(end) != Some(&b'"') {
            return None;
        }
        self.at = end + 1;
        Some(&self.bytes[start..end])
    }

    /// How many bytes from `from` on are neither a quote, a backslash nor a
    /// control character; eight at a time.
    fn until_string_stop(&self, from: usize) -> usize {
        let mut at = from;
        while let Some(chunk) = self.bytes.get(at..at + 8) {
            let stops = string_stops(word(chunk));
            if stops != 0 {
                return at - from + first_flagged(stops);
            }
            at += 8;
        }
        let tail = self.bytes[at..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20);
        at - from + tail.unwrap_or(self.bytes.len() - at)
    }

    /// How many ASCII digits follow from `from` on; eight at a time.
    fn digit_run(&self, from: usize) -> usize {
        let mut at = from;
        while let Some(chunk) = self.bytes.get(at..at + 8) {
            let others = non_digits(word(chunk));
            if others != 0 {
                return at - from + first_flagged(others);
            }
            at += 8;
        }
        at - from
            + self.bytes[at..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count()
    }

    /// A non-negative integer without fraction or exponent, of at most 19
    /// digits (so it always fits a u64); gives up otherwise.
    fn uint(&mut self) -> Option<u64> {
        let start = self.at;
        let digits = self.digit_run(start);
        let leading_zero = digits > 1 && self.bytes[start] == b'0';
        if digits > 19 || leading_zero {
            return None;
        }
        self.at = start + digits;
        if let Some(b'.' | b'e' | b'E') = self.peek() {
            return None;
        }
        Some(decimal(&self.bytes[start..self.at]))
    }

    /// An array of strings, read as TCP flag names; gives up at anything
    /// else in it.
    fn flag_names(&mut self) -> Option<u16> {
        self.at += 1;
        let mut bits = 0;
        self.whitespace();
        if self.peek()? == b']' {
            self.at += 1;
            return Some(bits);
        }
        loop {
            self.expect(b'"')?;
            bits |= tcp_flag_bit(self.string_body()?);
            self.whitespace();
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(bits);
                }
                _ => return None,
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.bytes[self.at..].starts_with(word).then(|| {
            self.at += word.len();
        })
    }

    /// Skips any JSON value, checking its syntax; `depth` is the nesting
    /// of the array or object it is in (0 for a member of the record).
    fn skip(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => {
                self.at += 1;
                self.string_bytes().map(drop)
            }
            b'-' | b'0'..=b'9' => self.skip_number(),
            b'n' => self.literal(b"null"),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'[' if depth < MAX_DEPTH => self.skip_sequence(b']', depth, Self::skip),
            b'{' if depth < MAX_DEPTH => self.skip_sequence(b'}', depth, |scanner, depth| {
                scanner.expect(b'"')?;
                scanner.string_bytes()?;
                scanner.expect(b':')?;
                scanner.whitespace();
                scanner.skip(depth)
            }),
            _ => None,
        }
    }

    /// Skips an array or object (at its opening bracket) whose items, each
    /// read by `item`, are separated by commas and end at `close`.
    fn skip_sequence(
        &mut self,
        close: u8,
        depth: usize,
        item: fn(&mut Self, usize) -> Option<()>,
    ) -> Option<()> {
        self.at += 1;
        self.whitespace();
        if self.peek()? == close {
            self.at += 1;
            return Some(());
        }
        loop {
            self.whitespace();
            item(self, depth + 1)?;
            self.whitespace();
            match self.peek()? {
                b',' => self.at += 1,
                b if b == close => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Skips a number of JSON's grammar:
    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn skip_number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek()? {
            b'0' => {
                self.at += 1;
                if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    return None;
                }
            }
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        self.at += self.digit_run(self.at);
    }

    /// At least one digit, consumed.
    fn some_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }
}

/// Eight bytes, the first in the lowest byte of the word.
fn word(chunk: &[u8]) -> u64 {
    u64::from_le_bytes(chunk.try_into().expect("eight bytes"))
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `word` that is zero; exact up to the first
/// such byte (a borrow can flag bytes after it, never before).
fn zero_bytes(word: u64) -> u64 {
    word.wrapping_sub(ONES) & !word & HIGHS
}

/// The bytes of `word` that end a plain string: a quote, a backslash or a
/// control character (below 0x20); exact up to the first of them.
fn string_stops(word: u64) -> u64 {
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    zero_bytes(word ^ (ONES * u64::from(b'"')))
        | zero_bytes(word ^ (ONES * u64::from(b'\\')))
        | control
}

/// The bytes of `word` that are not ASCII digits; exact up to the first of
/// them.
fn non_digits(word: u64) -> u64 {
    let value = word.wrapping_sub(ONES * u64::from(b'0'));
    // A digit's value is 0 to 9: adding 0x76 leaves its high bit clear.
    (value.wrapping_add(ONES * 0x76) | value) & HIGHS
}

/// The index of the first byte flagged in `mask` (not zero).
fn first_flagged(mask: u64) -> usize {
    (mask.trailing_zeros() / 8) as usize
}

/// The value of at most 19 ASCII digits; eight at a time.
fn decimal(digits: &[u8]) -> u64 {
    let mut chunks = digits.chunks_exact(8);
    let high = (&mut chunks).fold(0, |n, chunk| n * 100_000_000 + eight_digits(word(chunk)));
    chunks
        .remainder()
        .iter()
        .fold(high, |n, &b| n * 10 + u64::from(b - b'0'))
}

/// The value of eight ASCII digits, the first the most significant: pairs,
/// then fours, then all eight, each step one multiplication.
fn eight_digits(word: u64) -> u64 {
    let digits = word & 0x0F0F_0F0F_0F0F_0F0F;
    let pairs = (digits.wrapping_mul(10 << 8 | 1) >> 8) & 0x00FF_00FF_00FF_00FF;
    let fours = (pairs.wrapping_mul(100 << 16 | 1) >> 16) & 0x0000_FFFF_0000_FFFF;
    fours.wrapping_mul(10_000 << 32 | 1) >> 32
}

#[cfg(test)]
mod tests {
    use super::super::{parse_with_serde, Record};
    use super::{decimal, record, Scanner};
    use proptest::prelude::*;

    /// What serde_json reads from `text`: the record, or `None` when it
    /// rejects it.
    fn serde_reads(text: &str) -> Option<String> {
        let mut expected = Record::default();
        parse_with_serde(text, &mut expected)
            .ok()
            .map(|()| format!("{expected:?}"))
    }

    /// Whether the scanner reads `text`, and then that it read what serde_json reads.
    fn scans_as_serde_reads(text: &str) -> bool {
        let mut scanned = Record::default();
        if !record(text, &mut scanned) {
            return false;
        }
        assert_eq!(
            Some(format!("{scanned:?}")),
            serde_reads(text),
            "the scanner read {text} otherwise than serde_json"
        );
        true
    }

    #[test]
    fn collector_records_are_read_by_the_scanner() {
        for line in [
            crate::flow::goflow2_json::tests::GOFLOW2_IPFIX_LINE,
            crate::flow::pmacct_json::tests::NFACCTD_LINE,
            crate::flow::pmacct_json::tests::PMACCTD_LINE,
            r#"{"ip_src": "198.51.100.1", "tcp_flags": ["SYN", "ACK"], "label": {"a": [1, -2.5e3, {}]}}"#,
            " {}\n",
        ] {
            assert!(scans_as_serde_reads(line), "{line}");
        }
    }

    #[test]
    fn what_the_scanner_does_not_read_is_left_to_serde_json() {
        for line in [
            r#"{"ip_src": "198.51.100.\u0031"}"#,
            r#"{"bytes": 1.5}"#,
            r#"{"bytes": -1}"#,
            r#"{"bytes": 12345678901234567890}"#,
            r#"{"tcp_flags": ["SYN", 2]}"#,
            r#"{"class": {"a": 1}}"#,
        ] {
            assert!(!scans_as_serde_reads(line), "{line}");
            assert!(serde_reads(line).is_some(), "{line}");
        }
        for bad in [
            r#"{"bytes": 01}"#,
            r#"{"x": 01}"#,
            r#"{"x": -}"#,
            r#"{"x": 1.}"#,
            r#"{"x": 1e}"#,
            r#"{"x": [1,]}"#,
            r#"{"x": 1,}"#,
            r#"{"x": 1} x"#,
            r#"{"x" 1}"#,
            r#"["x"]"#,
            r#"{"x": nul}"#,
            r#"{"x": {"y"}}"#,
            "{\"class\": \"a\tb\"}",
        ] {
            assert!(!scans_as_serde_reads(bad), "{bad}");
            assert!(serde_reads(bad).is_none(), "{bad}");
        }
    }

    /// A value of any kind: mostly well formed, some that only serde_json
    /// reads (escapes, fractions, negative numbers), some that are not JSON.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => r#""[0-9a-zA-Z:. ]{0,6}""#,
            4 => "[0-9]{1,20}",
            1 => r"-?[0-9]{1,3}(\.[0-9]{1,2})?([eE][+-]?[0-9]{1,2})?",
            1 => "true|false|null",
            2 => r#"\[("(SYN|ACK|fin|x)"(, ?"(SYN|ACK)")?)?\]"#,
            1 => r#"\[(1|\[\]|\{\}|"a")(,(-2.5|null|\{"b":\[\]\}))?\]"#,
            1 => r#"\{("[a-z]{0,2}": ?(1|"x"|\[\]))?\}"#,
            2 => r#""[a-z\\"]{0,4}"|[0-9\[\]{}",.e-]{0,3}|0[0-9]|-|1\.|1e|1e\+|\.5|-0[0-9]|nul|tru|"a\tb""#,
        ]
    }

    /// `"key": value`, the key one the record keeps, one it only notes, or
    /// another, with or without spaces.
    fn member() -> impl Strategy<Value = String> {
        // With keys that begin like others, and one spelt with an escape.
        let key = "src_addr|dst_port|bytes|tcp_flags|class|ip_proto|sampler_address|label|x|src|src_addrx|src_add\\\\u0072";
        (key, " ?", "[ \n]?", value())
            .prop_map(|(key, a, b, value)| format!(r#""{key}"{a}:{b}{value}"#))
    }

    /// A record: an object of members, now and then with a stray comma or
    /// text after it.
    fn text() -> impl Strategy<Value = String> {
        (
            "[ \t]?",
            proptest::collection::vec(member(), 0..8),
            prop_oneof![8 => Just(""), 1 => Just(","), 1 => Just(" ,")],
            prop_oneof![8 => "[ \r\n]?", 1 => "x|\\}|\\{\\}"],
        )
            .prop_map(|(before, members, comma, after)| {
                format!("{before}{{{}{comma}}}{after}", members.join(","))
            })
    }

    proptest! {
        #[test]
        fn eight_bytes_at_a_time_find_what_one_at_a_time_finds(
            bytes in proptest::collection::vec(prop_oneof![
                4 => proptest::num::u8::ANY,
                4 => b'0'..=b'9',
                1 => Just(b'"'),
                1 => Just(b'\\'),
                // Each next to a class it must not be taken for.
                1 => prop_oneof![Just(b'/'), Just(b':'), Just(0x1f), Just(b' ')],
            ], 0..40),
            from in 0usize..40,
        ) {
            let from = from.min(bytes.len());
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let mut shape = super::Shape::default();
            let scanner = Scanner { text: &text, bytes: text.as_bytes(), at: 0, shape: &mut shape };
            let rest = &text.as_bytes()[from..];
            let stop = rest.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            prop_assert_eq!(scanner.until_string_stop(from), stop.unwrap_or(rest.len()));
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            prop_assert_eq!(scanner.digit_run(from), digits);
        }

        #[test]
        fn decimal_reads_digits_as_str_parse_does(n in proptest::num::u64::ANY, width in 1usize..20) {
            let digits = (n % 10u64.pow(width as u32 - 1).saturating_mul(10)).to_string();
            prop_assert_eq!(decimal(digits.as_bytes()), digits.parse::<u64>().unwrap());
            let padded = format!("{:0>19}", digits);
            prop_assert_eq!(decimal(padded.as_bytes()), digits.parse::<u64>().unwrap());
        }
    }

    #[test]
    fn keys_are_found_whether_or_not_the_last_record_had_them_in_that_place() {
        // On one thread, one after another: the same keys, others in their
        // places, a key that begins like the remembered one, one that the
        // remembered one begins like, and one with an escape after it.
        for line in [
            r#"{"src_addr":"198.51.100.1","dst_port":22,"bytes":3}"#,
            r#"{"src_addr":"198.51.100.2","dst_port":23,"bytes":4}"#,
            r#"{"src_addr_x":"198.51.100.3","dst_port":24,"bytes":5}"#,
            r#"{"src":"198.51.100.4","dst_port":25,"bytes":6}"#,
            r#"{"src_addr":"198.51.100.5","bytes":7,"dst_port":26}"#,
            r#"{"src_addrA":"198.51.100.6","bytes":8,"dst_port":27}"#,
            r#"{"bytes":9}"#,
            r#"{"src_addr":"198.51.100.7","bytes":10,"dst_port":28,"packets":1}"#,
            r#"{"":1,"src_addr":"198.51.100.8"}"#,
            r#"{"":2,"src_addr":"198.51.100.9"}"#,
        ] {
            let scanned = scans_as_serde_reads(line);
            assert!(scanned || line.contains('\\'), "{line}");
        }
    }

    proptest! {
        #[test]
        fn records_one_after_another_are_read_as_serde_json_reads_each(
            texts in proptest::collection::vec(text(), 1..8),
        ) {
            for text in &texts {
                let mut scanned = Record::default();
                if record(text, &mut scanned) {
                    prop_assert_eq!(Some(format!("{scanned:?}")), serde_reads(text), "{}", text);
                }
            }
        }

        #[test]
        fn the_scanner_reads_what_serde_json_reads_or_nothing(text in text()) {
            let mut scanned = Record::default();
            if record(&text, &mut scanned) {
                prop_assert_eq!(Some(format!("{scanned:?}")), serde_reads(&text), "{}", text);
            }
        }
    }
}
