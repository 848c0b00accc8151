use super::*;

/// 2027-02-01T00:00:00Z, the first instant after 2027-01-31 in UTC.
const FEB_1_2027_MS: i64 = 1_801_440_000_000;
/// 2026-01-01T00:00:00Z, a time before every expiry used here.
const JAN_1_2026_MS: i64 = 1_767_225_600_000;

fn parse(text: &str) -> Expected {
    Expected::parse(text).unwrap_or_else(|p| panic!("problems: {p:?}"))
}

fn problems(text: &str) -> Vec<Problem> {
    match Expected::parse(text) {
        Err(problems) => problems,
        Ok(e) => panic!("expected problems, parsed {e:?}"),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn covers(e: &Expected, addr: &str, port: u16, protocol: Protocol) -> bool {
    e.covering(ip(addr), port, protocol, JAN_1_2026_MS)
        .is_some()
}

#[test]
fn a_full_entry_parses_to_the_values_written() {
    let e = parse(
        r#"
[[expected]]
ip = "203.0.113.0/24"
port = "8000-8100"
protocol = "udp"
owner = "web team"
reason = "public website"
expires = 2027-01-31
"#,
    );
    assert_eq!(
        e.entries(),
        [Entry {
            net: "203.0.113.0/24".parse().unwrap(),
            ports: 8000..=8100,
            protocol: Some(Protocol::Udp),
            owner: Some("web team".to_owned()),
            reason: Some("public website".to_owned()),
            expires_ms: Some(FEB_1_2027_MS),
            line: 2,
        }]
    );
}

#[test]
fn a_minimal_entry_parses_to_the_values_written() {
    let e = parse("[[expected]]\nip = \"2001:db8::1\"\nport = 443\n");
    assert_eq!(
        e.entries(),
        [Entry {
            net: "2001:db8::1/128".parse().unwrap(),
            ports: 443..=443,
            protocol: None,
            owner: None,
            reason: None,
            expires_ms: None,
            line: 1,
        }]
    );
    assert_eq!(e.len(), 1);
}

#[test]
fn protocol_in_any_case_is_accepted_and_absent_covers_both() {
    let e = parse(
        r#"
[[expected]]
ip = "203.0.113.1"
port = 53
[[expected]]
ip = "203.0.113.2"
port = 53
protocol = "TCP"
"#,
    );
    assert!(covers(&e, "203.0.113.1", 53, Protocol::Tcp));
    assert!(covers(&e, "203.0.113.1", 53, Protocol::Udp));
    assert!(covers(&e, "203.0.113.2", 53, Protocol::Tcp));
    assert!(!covers(&e, "203.0.113.2", 53, Protocol::Udp));
}

#[test]
fn a_cidr_covers_inside_addresses_and_not_the_next_one_outside() {
    let e = parse("[[expected]]\nip = \"203.0.113.0/24\"\nport = 443\n");
    assert!(covers(&e, "203.0.113.0", 443, Protocol::Tcp));
    assert!(covers(&e, "203.0.113.77", 443, Protocol::Tcp));
    assert!(covers(&e, "203.0.113.255", 443, Protocol::Tcp));
    assert!(!covers(&e, "203.0.114.0", 443, Protocol::Tcp));
    assert!(!covers(&e, "203.0.112.255", 443, Protocol::Tcp));
}

#[test]
fn a_port_range_covers_its_ends_and_not_one_beyond() {
    let e = parse("[[expected]]\nip = \"203.0.113.1\"\nport = \"8000-8100\"\n");
    assert!(covers(&e, "203.0.113.1", 8000, Protocol::Tcp));
    assert!(covers(&e, "203.0.113.1", 8100, Protocol::Udp));
    assert!(!covers(&e, "203.0.113.1", 7999, Protocol::Tcp));
    assert!(!covers(&e, "203.0.113.1", 8101, Protocol::Tcp));
}

#[test]
fn an_ipv4_entry_does_not_cover_ipv6_nor_the_other_way() {
    let e = parse(
        r#"
[[expected]]
ip = "0.0.0.0/0"
port = 443
[[expected]]
ip = "2001:db8::/32"
port = 22
"#,
    );
    assert!(covers(&e, "198.51.100.1", 443, Protocol::Tcp));
    assert!(!covers(&e, "2001:db8::1", 443, Protocol::Tcp));
    assert!(!covers(&e, "::ffff:198.51.100.1", 443, Protocol::Tcp));
    assert!(covers(&e, "2001:db8::1", 22, Protocol::Tcp));
    assert!(!covers(&e, "198.51.100.1", 22, Protocol::Tcp));
}

#[test]
fn a_bare_date_holds_through_the_end_of_that_day_utc_and_not_a_ms_after() {
    let e = parse("[[expected]]\nip = \"203.0.113.1\"\nport = 443\nexpires = 2027-01-31\n");
    let at = |now_ms| e.covering(ip("203.0.113.1"), 443, Protocol::Tcp, now_ms);
    assert!(at(FEB_1_2027_MS - DAY_MS).is_some(), "the day's start");
    assert!(at(FEB_1_2027_MS - 1).is_some(), "the day's last ms");
    assert!(at(FEB_1_2027_MS).is_none(), "the next day");
}

#[test]
fn an_offset_date_time_expires_at_its_utc_instant() {
    // 12:00 at +08:00 is 04:00Z.
    let four_z_ms = 1_801_368_000_000;
    for expires in [
        "2027-01-31T12:00:00+08:00",
        "\"2027-01-31T12:00:00+08:00\"",
        "\"2027-01-31T04:00:00Z\"",
    ] {
        let e = parse(&format!(
            "[[expected]]\nip = \"203.0.113.1\"\nport = 443\nexpires = {expires}\n"
        ));
        assert_eq!(e.entries()[0].expires_ms, Some(four_z_ms), "{expires}");
        let at = |now_ms| e.covering(ip("203.0.113.1"), 443, Protocol::Tcp, now_ms);
        assert!(at(four_z_ms - 1).is_some(), "{expires}");
        assert!(at(four_z_ms).is_none(), "{expires}");
    }
}

#[test]
fn a_native_date_and_the_same_date_as_a_string_behave_alike() {
    let native = parse("[[expected]]\nip = \"203.0.113.1\"\nport = 1\nexpires = 2027-01-31\n");
    let string = parse("[[expected]]\nip = \"203.0.113.1\"\nport = 1\nexpires = \"2027-01-31\"\n");
    assert_eq!(native, string);
    assert_eq!(native.entries()[0].expires_ms, Some(FEB_1_2027_MS));
}

#[test]
fn a_local_date_time_without_offset_is_a_problem_naming_expires() {
    for expires in ["2027-01-31T12:00:00", "\"2027-01-31T12:00:00\""] {
        let p = problems(&format!(
            "[[expected]]\nip = \"203.0.113.1\"\nport = 443\nexpires = {expires}\n"
        ));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!((p[0].line, p[0].key.as_str()), (4, "expected[0].expires"));
        assert!(p[0].message.contains("2027-01-31T12:00:00"), "{}", p[0]);
        assert!(p[0].message.contains("offset"), "{}", p[0]);
    }
}

#[test]
fn the_first_unexpired_covering_entry_in_file_order_wins() {
    let e = parse(
        r#"
[[expected]]
ip = "203.0.113.0/24"
port = "1-65535"
owner = "expired team"
expires = "2025-12-31"

[[expected]]
ip = "203.0.113.10"
port = 443
owner = "web team"

[[expected]]
ip = "203.0.113.0/24"
port = 443
owner = "network team"
"#,
    );
    let found = e.covering(ip("203.0.113.10"), 443, Protocol::Tcp, JAN_1_2026_MS);
    assert_eq!(found.and_then(|e| e.owner.as_deref()), Some("web team"));
    assert_eq!(found.map(|e| e.line), Some(8));
    let found = e.covering(ip("203.0.113.11"), 443, Protocol::Tcp, JAN_1_2026_MS);
    assert_eq!(found.and_then(|e| e.owner.as_deref()), Some("network team"));
    // Before its expiry, the first entry wins.
    let found = e.covering(ip("203.0.113.10"), 443, Protocol::Tcp, JAN_1_2026_MS - 1);
    assert_eq!(found.and_then(|e| e.owner.as_deref()), Some("expired team"));
}

#[test]
fn every_problem_in_the_file_is_reported_at_once() {
    let text = r#"[[expected]]
ip = "203.0.113.300"
port = 443

[[expected]]
ip = "203.0.113.1"
port = "80-70"

[[expected]]
ip = "203.0.113.2"
port = 0

[[expected]]
ip = "203.0.113.3"
port = 443
prot = "tcp"

[[expected]]
ip = "203.0.113.4"
protocol = "icmp"
"#;
    let p = problems(text);
    let at: Vec<(usize, &str)> = p.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(
        at,
        [
            (2, "expected[0].ip"),
            (7, "expected[1].port"),
            (11, "expected[2].port"),
            (16, "expected[3].prot"),
            (18, "expected[4]"),
            (20, "expected[4].protocol"),
        ]
    );
    let messages: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "line 2: expected[0].ip: \"203.0.113.300\" is not an IP address or CIDR",
            "line 7: expected[1].port: \"80-70\" is not a port range (the start is above the end)",
            "line 11: expected[2].port: 0 is not a port (ports are 1 to 65535)",
            "line 16: expected[3].prot: unknown key \
             (known: ip, port, protocol, owner, reason, expires)",
            "line 18: expected[4]: missing key \"port\"",
            "line 20: expected[4].protocol: \"icmp\" is not a protocol (tcp or udp)",
        ]
    );
}

#[test]
fn out_of_range_and_malformed_values_are_problems_naming_the_value() {
    let cases = [
        (
            "ip = \"203.0.113.1/24\"\nport = 1",
            "expected[0].ip",
            "203.0.113.0/24",
        ),
        ("ip = 5\nport = 1", "expected[0].ip", "5 is an integer"),
        ("ip = \"::1\"\nport = 65536", "expected[0].port", "65536"),
        (
            "ip = \"::1\"\nport = \"1-70000\"",
            "expected[0].port",
            "70000",
        ),
        (
            "ip = \"::1\"\nport = \"http\"",
            "expected[0].port",
            "\"http\"",
        ),
        (
            "ip = \"::1\"\nport = 1\nowner = 3",
            "expected[0].owner",
            "3 is an integer",
        ),
        (
            "ip = \"::1\"\nport = 1\nexpires = \"soon\"",
            "expected[0].expires",
            "\"soon\"",
        ),
        (
            "ip = \"::1\"\nport = 1\nexpires = 12:00:00",
            "expected[0].expires",
            "12:00:00",
        ),
    ];
    for (body, key, named) in cases {
        let p = problems(&format!("[[expected]]\n{body}\n"));
        assert_eq!(p.len(), 1, "{body}: {p:?}");
        assert_eq!(p[0].key, key, "{body}");
        assert!(p[0].message.contains(named), "{body}: {}", p[0]);
    }
}

#[test]
fn a_toml_syntax_error_is_a_problem_with_its_line_and_column() {
    let p = problems("[[expected]]\nip = \"203.0.113.1\"\nport = \n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].line, 3);
    assert_eq!(p[0].key, "");
    assert!(p[0].message.starts_with("column 8: "), "{}", p[0]);
    assert!(
        p[0].to_string().starts_with("line 3: column 8: "),
        "{}",
        p[0]
    );
}

#[test]
fn empty_text_expects_nothing() {
    for text in ["", "# nothing expected yet\n"] {
        let e = parse(text);
        assert!(e.is_empty());
        assert_eq!(e, Expected::empty());
        assert!(!covers(&e, "203.0.113.1", 443, Protocol::Tcp));
        assert_eq!(e.next_expiry_ms(0), None);
    }
}

#[test]
fn an_unknown_top_level_key_is_a_problem() {
    let p = problems("expectd = []\n\n[[expected]]\nip = \"203.0.113.1\"\nport = 443\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!((p[0].line, p[0].key.as_str()), (1, "expectd"));
    assert!(p[0].message.contains("unknown key"), "{}", p[0]);
}

#[test]
fn expected_that_is_not_an_array_of_tables_is_a_problem() {
    let p = problems("\nexpected = 3\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].line, 2);
}

#[test]
fn next_expiry_ms_is_the_earliest_expiry_after_now() {
    let e = parse(
        r#"
[[expected]]
ip = "203.0.113.1"
port = 1
expires = "2027-01-31"
[[expected]]
ip = "203.0.113.2"
port = 2
[[expected]]
ip = "203.0.113.3"
port = 3
expires = "2026-06-01T00:00:00Z"
"#,
    );
    let june_ms = 1_780_272_000_000;
    assert_eq!(e.next_expiry_ms(JAN_1_2026_MS), Some(june_ms));
    assert_eq!(e.next_expiry_ms(june_ms - 1), Some(june_ms));
    assert_eq!(e.next_expiry_ms(june_ms), Some(FEB_1_2027_MS));
    assert_eq!(e.next_expiry_ms(FEB_1_2027_MS), None);
}

#[test]
fn port_ranges_lists_the_unexpired_entries_ports_and_protocols() {
    let e = parse(
        r#"
[[expected]]
ip = "203.0.113.1"
port = "8000-8100"
protocol = "tcp"
[[expected]]
ip = "203.0.113.2"
port = 53
expires = "2026-06-01T00:00:00Z"
[[expected]]
ip = "203.0.113.3"
port = 443
"#,
    );
    let june_ms = 1_780_272_000_000;
    let ranges: Vec<_> = e.port_ranges(JAN_1_2026_MS).collect();
    assert_eq!(
        ranges,
        [
            (8000..=8100, Some(Protocol::Tcp)),
            (53..=53, None),
            (443..=443, None),
        ]
    );
    let ranges: Vec<_> = e.port_ranges(june_ms).collect();
    assert_eq!(
        ranges,
        [(8000..=8100, Some(Protocol::Tcp)), (443..=443, None)]
    );
}
