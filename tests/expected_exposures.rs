//! `changes.expected` end to end, against `exposure run` in its own process
//! fed through a broker (librdkafka's mock cluster): the list shapes
//! `InternetUnprotectedPortNum` and `exposure_unexpected_endpoints`; SIGHUP
//! and a changed file re-read it; a broken file keeps the previous list and
//! is reported with its file, line and key; a broken or missing file stops
//! `check-config` and `run`.

mod support;

use std::path::Path;
use std::time::Duration;

use support::{
    conversation, exposure, goflow2_pb, produce, producer, rand_name, wait_until, MockBroker,
    Service,
};

const WITHIN: Duration = Duration::from_secs(30);

/// MySQL on .10 and .11 expected, nothing else.
const BOTH_MYSQL: &str = r#"[[expected]]
ip = "203.0.113.10"
port = 3306
owner = "db team"

[[expected]]
ip = "203.0.113.11"
port = 3306
owner = "db team"
"#;

/// [`BOTH_MYSQL`] with the second entry's port broken (line 8), same length.
const BROKEN: &str = r#"[[expected]]
ip = "203.0.113.10"
port = 3306
owner = "db team"

[[expected]]
ip = "203.0.113.11"
port = -443
owner = "db team"
"#;

/// Only MySQL on .10 expected.
const ONE_MYSQL: &str = "[[expected]]\nip = \"203.0.113.10\"\nport = 3306\n";

/// The Statistic answer's (InternetPortNum, InternetUnprotectedPortNum).
fn ports_and_unprotected(service: &Service) -> (u64, u64) {
    let (status, body) = service.get("/?Action=DescribeInternetOpenStatistic");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let n = |key: &str| v[key].as_u64().unwrap_or_else(|| panic!("{key} in {body}"));
    (n("InternetPortNum"), n("InternetUnprotectedPortNum"))
}

/// Polls until the Statistic answer's pair is `want`.
fn wait_for_statistic(service: &Service, want: (u64, u64), what: &str) {
    wait_until(
        WITHIN,
        Duration::from_millis(50),
        || match ports_and_unprotected(service) {
            got if got == want => Ok(()),
            got => Err(got),
        },
        |got| {
            format!(
                "{what}: Statistic reads {got:?}, not {want:?}\n{}",
                service.log()
            )
        },
    );
}

fn unexpected_high_risk(service: &Service) -> Option<f64> {
    service.metric(r#"exposure_unexpected_endpoints{risk_level="3"}"#)
}

#[test]
fn the_expected_list_is_used_reloaded_on_sighup_and_on_change_and_kept_when_broken() {
    let files = tempfile::tempdir().unwrap();
    let list = files.path().join("expected.toml");
    std::fs::write(&list, BOTH_MYSQL).unwrap();
    let topic = rand_name("flows");
    let broker = MockBroker::start(&topic, 1);
    let extra = format!("[changes]\nexpected = {:?}\n", list.display().to_string());
    let mut service = Service::start(&broker.bootstrap, &[&topic], &rand_name("group"), &extra);
    let now = exposure::state::wall_now_ms();
    let records: Vec<(String, Vec<u8>)> = [
        ("203.0.113.10", 3306),
        ("203.0.113.11", 3306),
        ("203.0.113.10", 443),
    ]
    .into_iter()
    .flat_map(|(server, port)| conversation(server, port, "198.51.100.1", 100, 200, now - 60_000))
    .map(|f| (f.dst_addr.to_string(), goflow2_pb(&f)))
    .collect();
    produce(&producer(&broker.bootstrap), &topic, &records);

    // Both MySQL endpoints are expected: only 443/tcp is unprotected.
    wait_for_statistic(&service, (2, 1), "with both MySQL endpoints expected");
    service.wait_for_metric(
        WITHIN,
        r#"exposure_unexpected_endpoints{risk_level="0"}"#,
        1.0,
    );
    assert_eq!(unexpected_high_risk(&service), Some(0.0));
    assert_eq!(service.metric("exposure_expected_entries"), Some(2.0));

    // A broken entry, at the same length and modified time so that only the
    // signal can make the service read it.
    assert_eq!(BROKEN.len(), BOTH_MYSQL.len());
    let modified = std::fs::metadata(&list).unwrap().modified().unwrap();
    std::fs::write(&list, BROKEN).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&list)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    service.hangup();
    service.wait_for_metric(
        WITHIN,
        r#"exposure_expected_reloads_total{result="error"}"#,
        1.0,
    );
    assert!(
        service.running(),
        "SIGHUP stopped the service:\n{}",
        service.log()
    );
    let log = service.log();
    let named = format!(
        "{} line 8: expected[1].port: -443 is not a port",
        list.display()
    );
    assert!(log.contains(&named), "no {named:?} in the log:\n{log}");
    // The previous list stays in use, and the broken file is read once.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(ports_and_unprotected(&service), (2, 1));
    assert_eq!(unexpected_high_risk(&service), Some(0.0));
    assert_eq!(service.metric("exposure_expected_entries"), Some(2.0));
    assert_eq!(
        service.metric(r#"exposure_expected_reloads_total{result="error"}"#),
        Some(1.0)
    );

    // A good file, no signal: in effect within a few seconds.
    let tmp = files.path().join("expected.toml.new");
    std::fs::write(&tmp, ONE_MYSQL).unwrap();
    std::fs::rename(&tmp, &list).unwrap();
    wait_until(
        Duration::from_secs(6),
        Duration::from_millis(50),
        || match ports_and_unprotected(&service) {
            (2, 2) => Ok(()),
            got => Err(got),
        },
        |got| format!("the new file is not in effect: {got:?}\n{}", service.log()),
    );
    assert_eq!(unexpected_high_risk(&service), Some(1.0));
    assert_eq!(service.metric("exposure_expected_entries"), Some(1.0));
    assert_eq!(
        service.metric(r#"exposure_expected_reloads_total{result="ok"}"#),
        Some(1.0)
    );
    assert!(service.running());
}

/// A config of the test assets naming `expected`.
fn config_naming(dir: &Path, expected: &Path) -> std::path::PathBuf {
    let config = dir.join("exposure.toml");
    let text = format!(
        "[network]\nassets = [\"203.0.113.0/24\"]\n\n[api]\nauth = \"none\"\n\n\
         [changes]\nexpected = {:?}\n",
        expected.display().to_string()
    );
    std::fs::write(&config, text).unwrap();
    config
}

#[test]
fn check_config_and_run_refuse_a_broken_expected_file_listing_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("expected.toml");
    std::fs::write(
        &list,
        "[[expected]]\nip = \"203.0.113.300\"\nport = 0\n\n[[expected]]\nport = 22\nprot = \"tcp\"\n",
    )
    .unwrap();
    let config = config_naming(dir.path(), &list);
    let shown = list.display();
    let want = [
        format!("{shown} line 2: expected[0].ip: \"203.0.113.300\" is not an IP address or CIDR"),
        format!("{shown} line 3: expected[0].port: 0 is not a port (ports are 1 to 65535)"),
        format!("{shown} line 5: expected[1]: missing key \"ip\""),
        format!("{shown} line 7: expected[1].prot: unknown key"),
    ];
    for command in ["check-config", "run"] {
        let out = exposure(&[command, "--config", config.to_str().unwrap()], None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
        for line in &want {
            assert!(
                stderr.contains(line.as_str()),
                "{command}: no {line:?} in:\n{stderr}"
            );
        }
    }
}

#[test]
fn run_refuses_to_start_when_the_expected_file_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("absent.toml");
    let config = config_naming(dir.path(), &list);
    let out = exposure(&["run", "--config", config.to_str().unwrap()], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}: cannot read: ", list.display())),
        "{stderr}"
    );
}
