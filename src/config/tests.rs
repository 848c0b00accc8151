use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::*;

const SHIPPED: &str = include_str!("../../config/exposure.toml");

/// The smallest valid config: assets, and no authentication.
const MINIMAL: &str = r#"
[network]
assets = ["203.0.113.0/24"]

[api]
auth = "none"
"#;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_toml_str(text, &no_env)
}

fn problems(text: &str) -> Vec<ConfigProblem> {
    match parse(text) {
        Ok(config) => panic!("expected problems, got {config:?}"),
        Err(ConfigErrors(problems)) => problems,
    }
}

/// The single problem at `key`; fails when there is none.
fn problem_at<'p>(problems: &'p [ConfigProblem], key: &str) -> &'p str {
    problems
        .iter()
        .find(|problem| problem.key == key)
        .map(|problem| problem.message.as_str())
        .unwrap_or_else(|| panic!("no problem at {key}: {problems:#?}"))
}

fn overrides(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

/// The shipped example's commented [[api.users]] block, uncommented, with
/// `auth = "acs"`.
fn shipped_with_acs_user() -> String {
    let mut text = String::new();
    let mut in_users = false;
    for line in SHIPPED.lines() {
        if line == "# [[api.users]]" {
            in_users = true;
        }
        if in_users && line.is_empty() {
            in_users = false;
        }
        let line = match line.strip_prefix("# ") {
            Some(uncommented) if in_users => uncommented,
            _ => line,
        };
        text.push_str(&line.replace("auth = \"none\"", "auth = \"acs\""));
        text.push('\n');
    }
    text
}

#[test]
fn shipped_example_loads_without_any_variable() {
    let config = parse(SHIPPED).expect("the shipped example is valid");
    let assets: Vec<String> = config
        .network
        .assets
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(assets, ["203.0.113.0/24", "2001:db8:100::/48"]);
    assert_eq!(config.api.auth, Auth::None);
}

#[test]
fn shipped_example_loads_from_its_path() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/exposure.toml");
    let config = Config::load(&path).expect("the shipped example is valid");
    assert_eq!(config.network.assets.len(), 2);
}

#[test]
fn shipped_example_spells_out_every_default() {
    let config = parse(SHIPPED).unwrap();
    let defaults = Config::default();
    assert_eq!(config.kafka, defaults.kafka);
    assert_eq!(config.window, defaults.window);
    assert_eq!(config.state, defaults.state);
    assert_eq!(config.services, defaults.services);
    assert_eq!(config.changes, defaults.changes);
    assert_eq!(config.cluster, defaults.cluster);
    let api = ApiConfig {
        auth: Auth::None,
        ..defaults.api
    };
    assert_eq!(config.api, api);
    assert!(config.network.internal.is_empty());
}

#[test]
fn shipped_example_user_block_loads_with_acs() {
    let env = |name: &str| (name == "EXPOSURE_SECOPS_SECRET").then(|| "s3cr3t".to_owned());
    let config = Config::from_toml_str(&shipped_with_acs_user(), &env).unwrap();
    assert_eq!(config.api.auth, Auth::Acs);
    let user = &config.api.users[0];
    assert_eq!(user.name, "secops");
    assert_eq!(user.access_key_secret.expose(), "s3cr3t");
    assert_eq!(user.qps, Some(10));
    assert_eq!(user.actions, ["*"]);
}

#[test]
fn shipped_example_names_changes_expected_in_a_comment_that_loads_uncommented() {
    let text = SHIPPED.replace(
        "# expected = \"config/expected.toml\"",
        "expected = \"config/expected.toml\"",
    );
    assert_ne!(text, SHIPPED, "the shipped example lists changes.expected");
    let config = parse(&text).unwrap();
    assert_eq!(
        config.changes.expected.as_deref(),
        Some(Path::new("config/expected.toml"))
    );
    assert_eq!(parse(SHIPPED).unwrap().changes.expected, None);
}

#[test]
fn shipped_example_cluster_block_loads_enabled_with_its_advertise_uncommented() {
    let text = SHIPPED
        .replace("enabled = false", "enabled = true")
        .replace(
            "# advertise = \"http://10.0.0.5:8080\"",
            "advertise = \"http://10.0.0.5:8080\"",
        );
    assert_ne!(text, SHIPPED, "the shipped example lists cluster.advertise");
    let config = parse(&text).unwrap();
    assert!(config.cluster.enabled);
    assert_eq!(
        config.cluster.advertise.as_deref(),
        Some("http://10.0.0.5:8080")
    );
    let found = problems(&SHIPPED.replace("enabled = false", "enabled = true"));
    assert!(problem_at(&found, "cluster.advertise").contains("http://10.0.0.5:8080"));
}

#[test]
fn an_empty_changes_expected_is_refused_with_its_key() {
    let problems = problems(&format!("{MINIMAL}\n[changes]\nexpected = \"\"\n"));
    assert!(!problem_at(&problems, "changes.expected").is_empty());
}

#[test]
fn defaults_follow_the_spec() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.kafka.brokers, "127.0.0.1:9092");
    assert_eq!(config.kafka.topics, ["flows"]);
    assert_eq!(config.kafka.group_id, "exposure");
    assert_eq!(config.kafka.format, crate::flow::Format::Auto);
    assert_eq!(config.kafka.auto_offset_reset, OffsetReset::Earliest);
    assert_eq!(config.kafka.dead_letter_topic, "");
    assert_eq!(config.kafka.librdkafka["fetch.wait.max.ms"], "100");
    assert_eq!(config.kafka.librdkafka["fetch.queue.backoff.ms"], "10");
    assert_eq!(config.window.retention_days, 30);
    assert_eq!(config.window.clock, Clock::Wall);
    assert_eq!(config.window.max_future_skew, Duration::from_secs(300));
    assert_eq!(config.state.dir, Path::new("data"));
    assert_eq!(config.state.checkpoint_interval, Duration::from_secs(10));
    assert_eq!(config.state.max_endpoints, 5_000_000);
    assert_eq!(config.state.max_pending, 1_000_000);
    assert_eq!(
        config.api.listen,
        "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(config.api.default_qps, 10);
    assert_eq!(config.api.max_page_size, 1000);
    assert_eq!(config.services.catalog, Path::new("config/services.toml"));
    assert_eq!(Config::default().api.auth, Auth::Acs);
}

#[test]
fn unknown_keys_are_all_reported_with_their_paths() {
    let found = problems(
        r#"
        [kafak]
        brokers = "k:9092"
        [kafka]
        brokerz = "k:9092"
        [network]
        assets = ["203.0.113.0/24"]
        [api]
        auth = "acs"
        [[api.users]]
        nmae = "secops"
        name = "secops"
        access_key_id = "AK"
        access_key_secret = "literal"
        actions = ["*"]
        "#,
    );
    let keys: Vec<&str> = found.iter().map(|problem| problem.key.as_str()).collect();
    assert_eq!(keys, ["kafka.brokerz", "api.users[0].nmae", "kafak"]);
    assert!(problem_at(&found, "kafka.brokerz")
        .starts_with("unknown key (did you mean brokers?) in kafka; known keys: brokers, topics"));
    assert!(problem_at(&found, "kafak").starts_with(
        "unknown key (did you mean kafka?) at the top level; known sections: kafka, network"
    ));
    assert!(problem_at(&found, "api.users[0].nmae").contains("did you mean name?"));
}

#[test]
fn several_problems_are_reported_together() {
    let found = problems(
        r#"
        [kafka]
        format = "netflow"
        topics = []
        [network]
        assets = ["203.0.113.0/24", "10.0.0.300/8"]
        [window]
        retention_days = 0
        max_future_skew = "10 parsecs"
        [api]
        listen = "localhost:8080"
        max_page_size = 0
        "#,
    );
    let keys: Vec<&str> = found.iter().map(|problem| problem.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "kafka.topics",
            "kafka.format",
            "network.assets[1]",
            "window.retention_days",
            "window.max_future_skew",
            "api.listen",
            "api.max_page_size",
            "api.users",
        ]
    );
    assert!(problem_at(&found, "kafka.format").contains("\"goflow2-pb\", \"goflow2-json\""));
    assert!(problem_at(&found, "api.listen").contains("127.0.0.1:8080"));
}

#[test]
fn errors_display_one_problem_per_line() {
    let errors = parse("[window]\nretention_days = 0\nclock = \"sundial\"\n").unwrap_err();
    let text = errors.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), errors.0.len());
    assert!(lines[0].starts_with("network.assets: missing; "));
    assert!(lines[1].starts_with("window.retention_days: must be an integer from 1 to 366"));
    assert!(lines[2].starts_with(
        "window.clock: \"sundial\" is not valid; expected one of \"wall\", \"event\""
    ));
}

#[test]
fn bad_cidr_is_reported_with_its_index_and_an_example() {
    let found =
        problems(r#"network.assets = ["203.0.113.0/24", "198.51.100.0/24", "10.0.0.300/8"]"#);
    assert_eq!(
        problem_at(&found, "network.assets[2]"),
        "\"10.0.0.300/8\" is not a CIDR (e.g. 203.0.113.0/24)"
    );
}

#[test]
fn cidr_with_host_bits_is_rejected_with_the_network() {
    let found = problems(r#"network.assets = ["203.0.113.7/24"]"#);
    assert_eq!(
        problem_at(&found, "network.assets[0]"),
        "\"203.0.113.7/24\" has host bits set; write the network 203.0.113.0/24 \
         (or 203.0.113.7/32 for that one address)"
    );
}

#[test]
fn bare_address_is_a_one_address_network() {
    let text = "[network]\nassets = [\"198.51.100.7\", \"2001:db8::1\"]\n[api]\nauth = \"none\"\n";
    let config = parse(text).unwrap();
    let assets: Vec<String> = config
        .network
        .assets
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(assets, ["198.51.100.7/32", "2001:db8::1/128"]);
}

#[test]
fn asset_in_a_builtin_internal_range_is_rejected() {
    let found = problems(r#"network.assets = ["10.1.0.0/16", "0.0.0.0/0", "fd00::/8"]"#);
    assert!(problem_at(&found, "network.assets[0]")
        .contains("lies in the built-in internal range 10.0.0.0/8"));
    assert!(problem_at(&found, "network.assets[1]")
        .contains("includes the built-in internal range 0.0.0.0/8"));
    assert!(problem_at(&found, "network.assets[2]").contains("fc00::/7"));
}

#[test]
fn asset_overlapping_network_internal_is_rejected() {
    let found =
        problems("[network]\nassets = [\"203.0.113.0/24\"]\ninternal = [\"203.0.113.128/25\"]\n");
    assert!(problem_at(&found, "network.assets[0]")
        .contains("overlaps network.internal[0] (203.0.113.128/25)"));
}

#[test]
fn bad_duration_is_reported() {
    let found =
        problems("[window]\nmax_future_skew = \"10 parsecs\"\n[state]\ncheckpoint_interval = 10\n");
    let skew = problem_at(&found, "window.max_future_skew");
    assert!(
        skew.starts_with("\"10 parsecs\" is not a duration ("),
        "{skew}"
    );
    assert!(skew.ends_with("e.g. \"10s\", \"5m\", \"1h\""), "{skew}");
    assert_eq!(
        problem_at(&found, "state.checkpoint_interval"),
        "expected a duration with a unit, e.g. \"10s\", found the integer 10"
    );
}

#[test]
fn durations_are_typed() {
    let text = format!("{MINIMAL}\n[window]\nmax_future_skew = \"1h 30m\"\n");
    let config = parse(&text).unwrap();
    assert_eq!(config.window.max_future_skew, Duration::from_secs(5400));
}

#[test]
fn missing_assets_are_reported() {
    let found = problems("[api]\nauth = \"none\"\n");
    assert!(problem_at(&found, "network.assets")
        .starts_with("missing; list your public address ranges"));
    let found = problems("[network]\nassets = []\n[api]\nauth = \"none\"\n");
    assert!(problem_at(&found, "network.assets").starts_with("must not be empty"));
}

#[test]
fn wrong_types_name_their_key_path() {
    let found = problems(
        "[network]\nassets = \"203.0.113.0/24\"\n[window]\nretention_days = \"30\"\n[kafka]\ntopics = [\"flows\", 7]\n",
    );
    assert_eq!(
        problem_at(&found, "network.assets"),
        "expected an array of strings, e.g. [\"a\", \"b\"], found a string"
    );
    assert_eq!(
        problem_at(&found, "window.retention_days"),
        "expected an integer from 1 to 366, found the string \"30\"; remove the quotes"
    );
    assert_eq!(
        problem_at(&found, "kafka.topics[1]"),
        "expected a string, found an integer"
    );
}

#[test]
fn retention_days_must_be_within_a_year() {
    for days in [0, 367, -1] {
        let found = problems(&format!("{MINIMAL}\n[window]\nretention_days = {days}\n"));
        assert_eq!(
            problem_at(&found, "window.retention_days"),
            format!("must be an integer from 1 to 366, found {days}")
        );
    }
    let config = parse(&format!("{MINIMAL}\n[window]\nretention_days = 366\n")).unwrap();
    assert_eq!(config.window.retention_days, 366);
}

#[test]
fn env_override_applies() {
    let text = format!("{MINIMAL}\n[kafka]\nbrokers = \"file:9092\"\n");
    let env = overrides(&[
        ("EXPOSURE__KAFKA__BROKERS", "env-1:9092,env-2:9092"),
        ("EXPOSURE__KAFKA__TOPICS", "flows,flows-dc2"),
        ("EXPOSURE__KAFKA__GROUP_ID", "123"),
        ("EXPOSURE__KAFKA__LIBRDKAFKA__FETCH.WAIT.MAX.MS", "10"),
        ("EXPOSURE__WINDOW__RETENTION_DAYS", "7"),
        ("EXPOSURE__WINDOW__CLOCK", "event"),
        ("EXPOSURE__NETWORK__INTERNAL", "[\"198.51.100.0/24\"]"),
    ]);
    let config = Config::from_toml_str_with_overrides(&text, &env, &no_env).unwrap();
    assert_eq!(config.kafka.brokers, "env-1:9092,env-2:9092");
    assert_eq!(config.kafka.topics, ["flows", "flows-dc2"]);
    assert_eq!(config.kafka.group_id, "123");
    assert_eq!(config.kafka.librdkafka["fetch.wait.max.ms"], "10");
    assert_eq!(config.window.retention_days, 7);
    assert_eq!(config.window.clock, Clock::Event);
    assert_eq!(
        config.network.internal,
        ["198.51.100.0/24".parse::<IpNet>().unwrap()]
    );
}

#[test]
fn env_override_of_unknown_key_is_rejected_naming_the_variable() {
    let env = overrides(&[
        ("EXPOSURE__KAFKA__BROKERZ", "k:9092"),
        ("EXPOSURE__NOPE__KEY", "1"),
        ("EXPOSURE__KAFKA", "k:9092"),
    ]);
    let found = Config::from_toml_str_with_overrides(MINIMAL, &env, &no_env)
        .unwrap_err()
        .0;
    assert!(problem_at(&found, "kafka.brokerz").ends_with("(set by EXPOSURE__KAFKA__BROKERZ)"));
    assert!(problem_at(&found, "nope").ends_with("(set by EXPOSURE__NOPE__KEY)"));
    assert!(problem_at(&found, "")
        .starts_with("EXPOSURE__KAFKA: an override names a section and a key"));
}

#[test]
fn env_override_with_a_bad_value_names_the_variable() {
    let env = overrides(&[("EXPOSURE__WINDOW__RETENTION_DAYS", "a week")]);
    let found = Config::from_toml_str_with_overrides(MINIMAL, &env, &no_env)
        .unwrap_err()
        .0;
    assert_eq!(
        problem_at(&found, "window.retention_days"),
        "expected an integer from 1 to 366, found a string (set by EXPOSURE__WINDOW__RETENTION_DAYS)"
    );
}

#[test]
fn env_secret_is_resolved_and_never_shown() {
    let text = r#"
        network.assets = ["203.0.113.0/24"]
        [[api.users]]
        name = "secops"
        access_key_id = "AK1"
        access_key_secret = "env:SECOPS_SECRET"
        actions = ["DescribeInternetOpenPort"]
    "#;
    let env = |name: &str| (name == "SECOPS_SECRET").then(|| "hunter2-value".to_owned());
    let config = Config::from_toml_str(text, &env).unwrap();
    let secret = &config.api.users[0].access_key_secret;
    assert_eq!(secret.expose(), "hunter2-value");
    assert_eq!(format!("{secret}"), "***");
    assert_eq!(format!("{secret:?}"), "***");
    assert!(!format!("{config:?}").contains("hunter2"));
    assert!(!format!("{config:#?}").contains("hunter2"));
}

#[test]
fn unset_env_secret_is_named() {
    let text = r#"
        network.assets = ["203.0.113.0/24"]
        [[api.users]]
        name = "secops"
        access_key_id = "AK1"
        access_key_secret = "env:SECOPS_SECRET"
        actions = ["*"]
    "#;
    let found = problems(text);
    assert_eq!(
        problem_at(&found, "api.users[0].access_key_secret"),
        "environment variable SECOPS_SECRET is not set; export it or change this key"
    );
    let empty = |_: &str| Some(String::new());
    let found = Config::from_toml_str(text, &empty).unwrap_err().0;
    assert_eq!(
        problem_at(&found, "api.users[0].access_key_secret"),
        "environment variable SECOPS_SECRET is set but empty"
    );
}

#[test]
fn problems_never_quote_a_literal_secret() {
    let found = problems(
        r#"
        network.assets = ["203.0.113.0/24"]
        [[api.users]]
        name = "secops"
        access_key_id = "AK1"
        access_key_secret = "literal-hunter2"
        actions = ["describeinternetopenport", "Everything"]
        "#,
    );
    assert_eq!(
        problem_at(&found, "api.users[0].actions[0]"),
        "\"describeinternetopenport\" is not an Action; did you mean \"DescribeInternetOpenPort\"?"
    );
    assert!(problem_at(&found, "api.users[0].actions[1]").contains("expected one of \"*\""));
    assert!(!ConfigErrors(found).to_string().contains("hunter2"));
}

#[test]
fn acs_without_users_is_rejected() {
    let found = problems("network.assets = [\"203.0.113.0/24\"]\n");
    assert!(problem_at(&found, "api.users")
        .starts_with("auth = \"acs\" needs at least one [[api.users]] entry"));
}

#[test]
fn duplicate_user_names_and_access_keys_are_rejected() {
    let user = |name: &str, key: &str| {
        format!(
            "[[api.users]]\nname = \"{name}\"\naccess_key_id = \"{key}\"\n\
             access_key_secret = \"s\"\nactions = [\"*\"]\n"
        )
    };
    let text = format!(
        "network.assets = [\"203.0.113.0/24\"]\n{}{}{}",
        user("a", "K1"),
        user("b", "K1"),
        user("a", "K2"),
    );
    let found = problems(&text);
    assert_eq!(
        problem_at(&found, "api.users[1].access_key_id"),
        "\"K1\" is also the AccessKeyId of api.users[0]; each user needs its own"
    );
    assert_eq!(
        problem_at(&found, "api.users[2].name"),
        "\"a\" is also the name of api.users[0]; each user needs its own"
    );
    assert_eq!(found.len(), 2);
}

#[test]
fn user_without_required_keys_is_reported_key_by_key() {
    let found = problems("network.assets = [\"203.0.113.0/24\"]\n[[api.users]]\nname = \"x\"\n");
    let keys: Vec<&str> = found.iter().map(|problem| problem.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "api.users[0].access_key_id",
            "api.users[0].access_key_secret",
            "api.users[0].actions",
        ]
    );
}

#[test]
fn librdkafka_numbers_are_stringified_and_managed_keys_rejected() {
    let text = format!(
        "{MINIMAL}\n[kafka.librdkafka]\n\"fetch.wait.max.ms\" = 10\n\"enable.partition.eof\" = false\n\
         \"group.id\" = \"x\"\n\"enable.auto.commit\" = \"true\"\n\"socket.timeout\" = [1]\n"
    );
    let found = problems(&text);
    assert_eq!(
        problem_at(&found, "kafka.librdkafka.\"group.id\""),
        "may not be set here: set kafka.group_id instead"
    );
    assert!(
        problem_at(&found, "kafka.librdkafka.\"enable.auto.commit\"")
            .starts_with("may not be set here")
    );
    assert!(problem_at(&found, "kafka.librdkafka.\"socket.timeout\"").ends_with("found an array"));
    assert_eq!(found.len(), 3);

    let config = parse(&format!(
        "{MINIMAL}\n[kafka.librdkafka]\n\"fetch.wait.max.ms\" = 10\n\"enable.partition.eof\" = false\n"
    ))
    .unwrap();
    assert_eq!(config.kafka.librdkafka["fetch.wait.max.ms"], "10");
    assert_eq!(config.kafka.librdkafka["enable.partition.eof"], "false");
    // The service's other defaults stay beside the keys set.
    assert_eq!(config.kafka.librdkafka["fetch.queue.backoff.ms"], "10");
}

#[test]
fn dead_letter_topic_must_not_be_consumed() {
    let found = problems(&format!(
        "{MINIMAL}\n[kafka]\ndead_letter_topic = \"flows\"\n"
    ));
    assert!(problem_at(&found, "kafka.dead_letter_topic").contains("also in kafka.topics"));
}

#[test]
fn invalid_toml_reports_line_and_column() {
    let found = problems("[kafka]\nbrokers = \n");
    assert_eq!(found.len(), 1);
    assert!(
        found[0]
            .message
            .starts_with("invalid TOML at line 2, column 11:"),
        "{}",
        found[0].message
    );
    assert!(!found[0].message.contains('\n'));
}

#[test]
fn check_config_exits_0_for_a_valid_file_and_2_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, MINIMAL).unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[window]\nretention_days = 0\n").unwrap();
    let code = |path: &Path| format!("{:?}", check_config(path));
    assert_eq!(code(&good), format!("{:?}", ExitCode::SUCCESS));
    assert_eq!(code(&bad), format!("{:?}", ExitCode::from(2)));
    assert_eq!(
        code(&dir.path().join("missing.toml")),
        format!("{:?}", ExitCode::from(2))
    );
}

#[test]
fn choices_parse_from_their_names() {
    assert_eq!("event".parse::<Clock>(), Ok(Clock::Event));
    assert_eq!("latest".parse::<OffsetReset>(), Ok(OffsetReset::Latest));
    assert_eq!(Auth::None.to_string(), "none");
    let error = "sundial".parse::<Clock>().unwrap_err();
    assert_eq!(
        error.to_string(),
        "\"sundial\" is not valid; expected one of \"wall\", \"event\""
    );
}

#[test]
fn shipped_example_webhooks_load_uncommented() {
    let mut text = String::new();
    for line in SHIPPED.lines() {
        let uncommented = line
            .strip_prefix("# ")
            .filter(|rest| rest.starts_with("[[changes.webhooks]]") || rest.contains(" = "))
            .filter(|_| {
                text.contains("[[changes.webhooks]]") || line.contains("[[changes.webhooks]]")
            });
        text.push_str(uncommented.unwrap_or(line));
        text.push('\n');
    }
    let env = |name: &str| (name == "EXPOSURE_WEBHOOK_SECRET").then(|| "s3cret".to_owned());
    let config = Config::from_toml_str(&text, &env).unwrap();
    let hooks = &config.changes.webhooks;
    assert_eq!(hooks.len(), 2, "{text}");
    assert_eq!(hooks[0].name, "hooks.example.com");
    assert_eq!(hooks[0].format, WebhookFormat::Json);
    assert_eq!(hooks[0].secret.as_ref().map(Secret::expose), Some("s3cret"));
    assert_eq!(hooks[0].max_retry, Duration::from_secs(3600));
    assert_eq!(hooks[1].name, "127.0.0.1-9093");
    assert_eq!(hooks[1].format, WebhookFormat::Alertmanager);
    assert_eq!(hooks[1].min_risk_level, 3);
    assert_eq!(hooks[1].resend_interval, Duration::from_secs(60));
    assert!(hooks[1].only_unexpected);
}

#[test]
fn webhook_problems_name_their_entry_and_key() {
    let problems = problems(&format!(
        r#"{MINIMAL}
[changes]
lang = "fr"

[[changes.webhooks]]
url = "ftp://example.com/"

[[changes.webhooks]]
url = "http://a.example/"
format = "json"
kinds = ["opened", "bogus"]
resend_interval = "1m"
only_unexpected = "false"

[[changes.webhooks]]
url = "http://b.example/"
format = "alertmanager"
secret = "x"
kinds = ["opened"]
min_risk_level = 4

[[changes.webhooks]]
url = "http://c.example/"
format = "pager"
max_retry = "0s"

[[changes.webhooks]]
url = "http://d.example/"

[[changes.webhooks]]
url = "http://d.example/"

[[changes.webhooks]]
url = "http://am.example:9093/api/v2/alerts"
format = "alertmanager"
resend_interval = "2h"
"#
    ));
    assert!(problem_at(&problems, "changes.lang").contains("\"fr\""));
    assert!(problem_at(&problems, "changes.webhooks[0].url").contains("not http:// or https://"));
    assert!(
        problem_at(&problems, "changes.webhooks[1].kinds[1]").contains("\"bogus\" is not a kind")
    );
    assert!(problem_at(&problems, "changes.webhooks[1].resend_interval")
        .contains("format = \"alertmanager\" only"));
    assert!(
        problem_at(&problems, "changes.webhooks[1].only_unexpected").contains("remove the quotes")
    );
    assert!(problem_at(&problems, "changes.webhooks[2].secret").contains("format = \"json\" only"));
    assert!(problem_at(&problems, "changes.webhooks[2].kinds").contains("format = \"json\" only"));
    assert!(problem_at(&problems, "changes.webhooks[2].min_risk_level").contains("from 0 to 3"));
    assert!(problem_at(&problems, "changes.webhooks[3].format").contains("\"pager\""));
    assert!(problem_at(&problems, "changes.webhooks[3].max_retry").contains("at least 1s"));
    assert!(problem_at(&problems, "changes.webhooks[5].name")
        .contains("also names changes.webhooks[4]"));
    assert!(problem_at(&problems, "changes.webhooks[6].url").contains("ends in /api/v2/alerts"));
    assert!(problem_at(&problems, "changes.webhooks[6].resend_interval").contains("at most 1h"));
    assert!(
        !problems.iter().any(|p| p.message.contains("\"x\"")),
        "a secret is never quoted: {problems:#?}"
    );
}

#[test]
fn cluster_mode_is_off_by_default_and_read_whole_when_set() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.cluster, ClusterConfig::default());
    assert!(!config.cluster.enabled);
    assert_eq!(config.cluster.partitions, 12);
    assert_eq!(config.cluster.commit_interval, Duration::from_millis(500));
    let config = parse(&format!(
        "{MINIMAL}\n[cluster]\nenabled = true\nadvertise = \"http://10.0.0.5:8080\"\npartitions = 24\ncommit_interval = \"1s\"\n"
    ))
    .unwrap();
    assert_eq!(
        config.cluster,
        ClusterConfig {
            enabled: true,
            advertise: Some("http://10.0.0.5:8080".into()),
            partitions: 24,
            commit_interval: Duration::from_secs(1),
        }
    );
    let env = overrides(&[
        ("EXPOSURE__CLUSTER__ENABLED", "true"),
        (
            "EXPOSURE__CLUSTER__ADVERTISE",
            "https://exposure-2.example:8443",
        ),
    ]);
    let config = Config::from_toml_str_with_overrides(MINIMAL, &env, &no_env).unwrap();
    assert!(config.cluster.enabled);
    assert_eq!(
        config.cluster.advertise.as_deref(),
        Some("https://exposure-2.example:8443")
    );
}

#[test]
fn a_broken_cluster_section_names_each_key() {
    let found = problems(&format!("{MINIMAL}\n[cluster]\nenabled = true\n"));
    assert!(
        problem_at(&found, "cluster.advertise").contains("required when cluster.enabled = true")
    );
    for (advertise, partitions, interval) in [
        ("10.0.0.5:8080", "0", "0s"),
        ("http://:8080", "1001", "61s"),
        ("ftp://host:21", "-1", "\"soon\""),
    ] {
        let interval = interval.trim_matches('"');
        let found = problems(&format!(
            "{MINIMAL}\n[cluster]\nenabled = true\nadvertise = \"{advertise}\"\npartitions = {partitions}\ncommit_interval = \"{interval}\"\n"
        ));
        assert!(problem_at(&found, "cluster.advertise").contains("http://10.0.0.5:8080"));
        assert!(problem_at(&found, "cluster.partitions").contains("1 to 1000"));
        problem_at(&found, "cluster.commit_interval");
    }
    let found = problems(&format!(
        "{MINIMAL}\n[cluster]\nenabled = \"yes\"\nshards = 3\n"
    ));
    problem_at(&found, "cluster.enabled");
    problem_at(&found, "cluster.shards");
}
