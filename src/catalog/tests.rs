use super::file::compress;
use super::*;
use proptest::prelude::*;

/// A valid one-service catalog entry with the given name, ports and risk.
fn entry(name: &str, ports: &str, protocols: &str, risk_level: i64) -> String {
    format!(
        r#"
[[service]]
name = "{name}"
aliases = ["{name}-alias"]
ports = {ports}
protocols = {protocols}
risk_level = {risk_level}
suggest_level = 20
[service.en]
prob_risk = "threat"
prob_risk_desc = "what an attacker does"
risk_reason = "why"
[service.zh]
prob_risk = "威胁"
prob_risk_desc = "攻击者的做法"
risk_reason = "原因"
"#
    )
}

const UNKNOWN: &str = r#"
[unknown]
risk_level = 1
suggest_level = 20
[unknown.en]
prob_risk = "unknown"
prob_risk_desc = "unknown service"
risk_reason = "identify it"
[unknown.zh]
prob_risk = "未知"
prob_risk_desc = "未知服务"
risk_reason = "请确认"
"#;

fn problems(toml: &str) -> Vec<String> {
    match Catalog::from_toml_str(toml) {
        Err(CatalogError::Invalid { problems, .. }) => problems,
        other => panic!("expected validation problems, got {other:?}"),
    }
}

fn name_of(cat: &Catalog, port: u16, proto: Protocol) -> Option<&str> {
    cat.service_for_port(port, proto)
        .map(|id| cat.get(id).name.as_str())
}

fn has_cjk(s: &str) -> bool {
    s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}

#[test]
fn builtin_catalog_parses_with_at_least_40_services() {
    let cat = Catalog::builtin();
    assert!(cat.len() >= 40, "only {} services", cat.len());
    assert!(!cat.is_empty());
}

#[test]
fn every_builtin_service_has_zh_and_en_texts() {
    let cat = Catalog::builtin();
    for service in cat.services().iter().chain([cat.unknown()]) {
        for lang in [Lang::Zh, Lang::En] {
            let t = service.text(lang);
            for s in [&t.prob_risk, &t.prob_risk_desc, &t.risk_reason] {
                assert!(
                    !s.trim().is_empty(),
                    "{} {lang:?} has an empty text",
                    service.name
                );
                assert_eq!(
                    has_cjk(s),
                    lang == Lang::Zh,
                    "{} {lang:?} text in the wrong language: {s}",
                    service.name
                );
            }
        }
    }
}

#[test]
fn builtin_unknown_is_low_risk_and_check() {
    let unknown = Catalog::builtin().unknown().clone();
    assert_eq!(unknown.name, UNKNOWN_NAME);
    assert_eq!((unknown.risk_level, unknown.suggest_level), (1, 20));
}

#[test]
fn builtin_levels_follow_the_exposure_policy() {
    let cat = Catalog::builtin();
    let levels = |name: &str| {
        let s = cat.get(
            cat.service_by_name(name)
                .unwrap_or_else(|| panic!("{name} missing")),
        );
        (s.risk_level, s.suggest_level)
    };
    for high in [
        "Telnet",
        "SMB",
        "RDP",
        "MySQL",
        "Redis",
        "Docker API",
        "etcd",
        "kubelet",
        "Memcached",
    ] {
        assert_eq!(levels(high), (3, 30), "{high}");
    }
    for medium in ["SSH", "FTP", "SNMP", "DNS", "NTP"] {
        assert_eq!(levels(medium).0, 2, "{medium}");
    }
    for web in ["HTTP", "HTTPS"] {
        let (risk, suggest) = levels(web);
        assert!(risk <= 1 && suggest == 10, "{web}: {risk}/{suggest}");
    }
}

#[test]
fn well_known_ports_map_to_their_services() {
    let cat = Catalog::builtin();
    assert_eq!(name_of(&cat, 22, Protocol::Tcp), Some("SSH"));
    assert_eq!(name_of(&cat, 53, Protocol::Udp), Some("DNS"));
    assert_eq!(name_of(&cat, 53, Protocol::Tcp), Some("DNS"));
    assert_eq!(name_of(&cat, 11211, Protocol::Udp), Some("Memcached"));
    assert_eq!(name_of(&cat, 443, Protocol::Tcp), Some("HTTPS"));
    assert_eq!(name_of(&cat, 3389, Protocol::Tcp), Some("RDP"));
    assert_eq!(name_of(&cat, 2375, Protocol::Tcp), Some("Docker API"));
}

#[test]
fn unclaimed_ports_and_protocols_are_unknown() {
    let cat = Catalog::builtin();
    assert_eq!(cat.service_for_port(50123, Protocol::Tcp), None);
    assert!(!cat.is_known(50123, Protocol::Tcp));
    assert!(!cat.is_known(0, Protocol::Tcp), "port 0 is never a service");
    assert!(!cat.is_known(22, Protocol::Udp), "ssh is tcp only");
    assert!(!cat.is_known(123, Protocol::Tcp), "ntp is udp only");
    assert!(cat.is_known(123, Protocol::Udp));
}

#[test]
fn range_entries_cover_every_port_in_the_range() {
    let cat = Catalog::builtin();
    for port in 6000..=6063 {
        assert_eq!(name_of(&cat, port, Protocol::Tcp), Some("X11"), "{port}");
    }
    assert_eq!(name_of(&cat, 6064, Protocol::Tcp), None);
    assert_eq!(name_of(&cat, 27018, Protocol::Tcp), Some("MongoDB"));
}

#[test]
fn names_and_aliases_match_ignoring_case() {
    let cat = Catalog::builtin();
    let https = cat.service_by_name("HTTPS");
    assert!(https.is_some());
    assert_eq!(cat.service_by_name("tls"), https);
    assert_eq!(cat.service_by_name("SsL"), https);
    assert_eq!(
        cat.service_by_name("sSh"),
        cat.service_for_port(22, Protocol::Tcp)
    );
    assert_eq!(
        cat.service_by_name("SMBV23"),
        cat.service_for_port(445, Protocol::Tcp)
    );
    assert_eq!(cat.service_by_name("no such service"), None);
    assert_eq!(
        cat.service_by_name("Unknown"),
        None,
        "unknown is not a catalog service"
    );
}

#[test]
fn duplicate_port_across_services_names_both() {
    let toml = entry("First", "[22]", r#"["tcp"]"#, 2)
        + &entry("Second", r#"[80, "20-23"]"#, r#"["tcp", "udp"]"#, 2)
        + UNKNOWN;
    let problems = problems(&toml);
    assert_eq!(
        problems,
        vec![r#"service[1] "Second": 22/tcp already belongs to service[0] "First""#]
    );
}

#[test]
fn overlapping_range_is_reported_as_one_line() {
    let toml = entry("Low", r#"["100-200"]"#, r#"["udp"]"#, 1)
        + &entry("High", r#"["150-250", 300]"#, r#"["udp"]"#, 1)
        + UNKNOWN;
    assert_eq!(
        problems(&toml),
        vec![r#"service[1] "High": 150-200/udp already belongs to service[0] "Low""#]
    );
}

#[test]
fn risk_level_out_of_range_is_rejected() {
    let toml = entry("Redis", "[6379]", r#"["tcp"]"#, 5) + UNKNOWN;
    assert_eq!(
        problems(&toml),
        vec![r#"service[0] "Redis": risk_level 5 is not 0..=3"#]
    );
}

#[test]
fn suggest_level_must_be_a_known_step() {
    let toml = entry("Redis", "[6379]", r#"["tcp"]"#, 3)
        .replace("suggest_level = 20", "suggest_level = 15")
        + UNKNOWN;
    assert_eq!(
        problems(&toml),
        vec![r#"service[0] "Redis": suggest_level 15 is not one of 0, 10, 20, 30"#]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let toml = entry("A", "[0]", r#"["tcp"]"#, 9)
        + &entry("B", r#"["30-20", 70000, "x", true]"#, r#"["sctp"]"#, 1)
        + &entry("a", "[1]", r#"["udp"]"#, 1).replace("[service.zh]", "[service.zz]");
    let err = Catalog::from_toml_str(&toml);
    // `zz` is an unknown key, which serde reports alone; fix it to see the rest.
    assert!(matches!(err, Err(CatalogError::Syntax { .. })), "{err:?}");
    let toml = toml
        .replace("[service.zz]", "[service.zh]")
        .replace(r#"prob_risk = "威胁""#, r#"prob_risk = " ""#);
    let problems = problems(&toml);
    let expected = [
        r#"service[0] "A": port 0 in ports entry 0 is not 1..=65535"#,
        r#"service[0] "A": risk_level 9 is not 0..=3"#,
        r#"service[0] "A": zh.prob_risk is missing or empty"#,
        r#"service[1] "B": ports entry "30-20" is a range whose start is after its end"#,
        r#"service[1] "B": port 70000 in ports entry 70000 is not 1..=65535"#,
        r#"service[1] "B": ports entry "x" is neither a port number nor an "a-b" range"#,
        r#"service[1] "B": ports entry true is neither a port number nor an "a-b" range"#,
        r#"service[1] "B": unknown protocol "sctp", expected "tcp" or "udp""#,
        r#"service[2] "a": name or alias "a" is already used by service[0] "A""#,
        r#"unknown: the [unknown] table is missing"#,
    ];
    for e in expected {
        assert!(
            problems.iter().any(|p| p == e),
            "missing {e:?} in {problems:#?}"
        );
    }
    let message = Catalog::from_toml_str(&toml).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!(
            "service catalog has {} problems:\n",
            problems.len()
        )),
        "{message}"
    );
}

#[test]
fn missing_language_and_fields_are_reported() {
    let toml = r#"
[[service]]
ports = [1]
[service.en]
prob_risk = "x"
"#;
    let problems = problems(toml);
    for e in [
        "service[0]: name is missing or empty",
        "service[0]: protocols is missing or empty",
        "service[0]: risk_level is missing",
        "service[0]: suggest_level is missing",
        "service[0]: the zh texts are missing",
        "service[0]: en.prob_risk_desc is missing or empty",
        "service[0]: en.risk_reason is missing or empty",
    ] {
        assert!(
            problems.iter().any(|p| p == e),
            "missing {e:?} in {problems:#?}"
        );
    }
}

#[test]
fn alias_clashing_with_another_name_is_rejected() {
    let toml = entry("SSH", "[22]", r#"["tcp"]"#, 2)
        + &entry("Other", "[23]", r#"["tcp"]"#, 2).replace("Other-alias", "ssh")
        + UNKNOWN;
    assert_eq!(
        problems(&toml),
        vec![r#"service[1] "Other": name or alias "ssh" is already used by service[0] "SSH""#]
    );
}

#[test]
fn unknown_is_a_reserved_name() {
    let toml = entry("unknown", "[22]", r#"["tcp"]"#, 2) + UNKNOWN;
    assert_eq!(
        problems(&toml),
        vec![r#"service[0] "unknown": "unknown" is reserved for the [unknown] table"#]
    );
}

#[test]
fn port_listed_twice_in_one_service_is_rejected() {
    let toml = entry("Dup", r#"[22, "20-22"]"#, r#"["tcp"]"#, 2) + UNKNOWN;
    assert_eq!(
        problems(&toml),
        vec![r#"service[0] "Dup": 22/tcp is listed twice"#]
    );
}

#[test]
fn unknown_keys_are_rejected() {
    let toml = entry("A", "[1]", r#"["tcp"]"#, 1)
        .replace("risk_level = 1", "risk_level = 1\nrisk = 2")
        + UNKNOWN;
    let err = Catalog::from_toml_str(&toml).unwrap_err();
    assert!(matches!(err, CatalogError::Syntax { .. }));
    assert!(err.to_string().contains("unknown field `risk`"), "{err}");
}

#[test]
fn load_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let err = Catalog::load(&missing).unwrap_err();
    assert!(matches!(err, CatalogError::Read { .. }));
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );

    let bad = dir.path().join("services.toml");
    std::fs::write(&bad, entry("A", "[1]", r#"["tcp"]"#, 7) + UNKNOWN).unwrap();
    let err = Catalog::load(&bad).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("service catalog {} has 1 problem:", bad.display())),
        "{err}"
    );
    assert!(err.contains("risk_level 7"), "{err}");
}

#[test]
fn load_reads_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("services.toml");
    std::fs::write(
        &path,
        entry("Echo", r#"[7, "9-10"]"#, r#"["tcp", "UDP"]"#, 1) + UNKNOWN,
    )
    .unwrap();
    let cat = Catalog::load(&path).unwrap();
    assert_eq!(cat.len(), 1);
    assert_eq!(name_of(&cat, 10, Protocol::Udp), Some("Echo"));
    assert_eq!(cat.get(0).ports, vec![7..=7, 9..=10]);
    assert_eq!(cat.get(0).text(Lang::Zh).prob_risk, "威胁");
    assert_eq!(cat.unknown().text(Lang::En).prob_risk, "unknown");
}

#[test]
fn protocol_conversions() {
    assert_eq!(Protocol::from_number(6), Some(Protocol::Tcp));
    assert_eq!(Protocol::from_number(17), Some(Protocol::Udp));
    assert_eq!(Protocol::from_number(1), None);
    assert_eq!("TCP".parse::<Protocol>(), Ok(Protocol::Tcp));
    assert_eq!("udp".parse::<Protocol>(), Ok(Protocol::Udp));
    assert!("icmp".parse::<Protocol>().is_err());
    assert_eq!(Protocol::Udp.as_str(), "udp");
    assert_eq!(Protocol::Tcp.to_string(), "tcp");
    assert!(Protocol::Tcp < Protocol::Udp, "rows sort tcp before udp");
}

#[test]
fn lang_defaults_to_chinese_and_parses_any_case() {
    assert_eq!(Lang::default(), Lang::Zh);
    assert_eq!("EN".parse::<Lang>(), Ok(Lang::En));
    assert_eq!("zh".parse::<Lang>(), Ok(Lang::Zh));
    assert!("fr".parse::<Lang>().is_err());
}

#[test]
fn compress_joins_consecutive_ports() {
    assert_eq!(compress(&[6002, 22, 6000, 6001, 22]), "22,6000-6002");
}

proptest! {
    /// The flat table agrees with a plain scan of every service's ranges.
    #[test]
    fn port_table_agrees_with_the_service_ranges(port: u16, udp: bool) {
        let cat = Catalog::builtin();
        let proto = if udp { Protocol::Udp } else { Protocol::Tcp };
        let scanned = cat
            .services()
            .iter()
            .position(|s| s.protocols.contains(&proto) && s.ports.iter().any(|r| r.contains(&port)));
        prop_assert_eq!(cat.service_for_port(port, proto).map(usize::from), scanned);
    }
}
