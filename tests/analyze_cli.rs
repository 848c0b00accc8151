//! `exposure analyze` and `exposure check-config` as a user runs them: the
//! real binary, real files, stdin, bad input.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use exposure::flow::tcp_flags::{ACK, PSH, RST, SYN};
use exposure::flow::{encode_goflow2_json, encode_pmacct_json, Flow, PROTO_TCP, PROTO_UDP};
use serde_json::Value;
use support::{exposure, goflow2_pb};

const ASSETS: &str = "203.0.113.0/24,2001:db8:100::/48";
/// 2026-01-05T10:00:00Z
const T: i64 = 1_767_607_200_000;

/// What a flow of [`world`] is about: (src, sport, dst, dport, proto,
/// flags, bytes).
type Row = (&'static str, u16, &'static str, u16, u8, u16, u64);

const DATA: u16 = SYN | ACK | PSH;

/// SSH open on .10 (request + reply), Telnet refused with RST on .11,
/// a DNS server on v6, a host of ours browsing the web.
#[rustfmt::skip]
const CONVERSATIONS: [Row; 8] = [
    ("198.51.100.1", 40000, "203.0.113.10", 22, PROTO_TCP, DATA, 1200),
    ("203.0.113.10", 22, "198.51.100.1", 40000, PROTO_TCP, DATA, 3400),
    ("198.51.100.1", 40001, "203.0.113.11", 23, PROTO_TCP, SYN, 120),
    ("203.0.113.11", 23, "198.51.100.1", 40001, PROTO_TCP, RST | ACK, 80),
    ("2001:db8::1", 5353, "2001:db8:100::53", 53, PROTO_UDP, 0, 150),
    ("2001:db8:100::53", 53, "2001:db8::1", 5353, PROTO_UDP, 0, 450),
    ("203.0.113.12", 50123, "198.51.100.9", 443, PROTO_TCP, DATA, 900),
    ("198.51.100.9", 443, "203.0.113.12", 50123, PROTO_TCP, DATA, 90000),
];

/// The first SYN of a scan of ports 1000 to 1099 of .20.
#[rustfmt::skip]
const SCAN_FIRST: Row = ("198.51.100.66", 61000, "203.0.113.20", 1000, PROTO_TCP, SYN, 44);

/// [`CONVERSATIONS`] and the scan, two packets a flow, at [`T`].
fn world() -> Vec<Flow> {
    let scan = (0..100).map(|i| {
        let mut probe = SCAN_FIRST;
        probe.3 += i;
        probe
    });
    CONVERSATIONS
        .into_iter()
        .chain(scan)
        .map(|(src, sport, dst, dport, proto, tcp_flags, bytes)| Flow {
            proto,
            tcp_flags,
            bytes,
            packets: 2,
            time_ms: T,
            ..support::flow(src, sport, dst, dport)
        })
        .collect()
}

fn json_lines(flows: &[Flow], encode: fn(&Flow) -> String) -> Vec<u8> {
    let mut out = Vec::new();
    for f in flows {
        out.extend_from_slice(encode(f).as_bytes());
        out.push(b'\n');
    }
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn rows(out: &Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let list = body["DataList"].as_array().unwrap().clone();
    assert_eq!(
        body["PageInfo"]["TotalCount"],
        list.len() as u64,
        "all rows on one page"
    );
    list
}

fn ports(rows: &[Value]) -> Vec<(u64, String)> {
    rows.iter()
        .map(|r| {
            (
                r["Port"].as_u64().unwrap(),
                r["Protocol"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn analyze_lists_served_ports_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "flows.json",
        &json_lines(&world(), encode_goflow2_json),
    );
    let out = exposure(
        &["analyze", "--assets", ASSETS, file.to_str().unwrap()],
        None,
    );
    let rows = rows(&out);
    let mut got = ports(&rows);
    got.sort();
    assert_eq!(got, vec![(22, "tcp".to_owned()), (53, "udp".to_owned())]);
    let ssh = rows.iter().find(|r| r["Port"] == 22).unwrap();
    assert_eq!(
        (
            ssh["InBytes"].as_u64(),
            ssh["OutBytes"].as_u64(),
            ssh["TotalBytes"].as_u64()
        ),
        (Some(1200), Some(3400), Some(4600))
    );
    assert_eq!(ssh["PublicIpNum"], 1);
    assert_eq!(ssh["ServiceNameList"], serde_json::json!(["SSH"]));
    assert!(ssh["TrafficPercent1Day"].is_string());
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(summary.contains("records read 108"), "{summary}");
    assert!(summary.contains("asset_is_client=2"), "{summary}");
}

#[test]
fn analyze_reads_stdin_and_every_format_alike() {
    let flows = world();
    let dir = tempfile::tempdir().unwrap();
    let pb: Vec<u8> = flows.iter().flat_map(goflow2_pb).collect();
    let pmacct = write(
        dir.path(),
        "pmacct.json",
        &json_lines(&flows, encode_pmacct_json),
    );
    let goflow_pb = write(dir.path(), "flows.bin", &pb);
    let from_stdin = exposure(
        &["analyze", "--assets", ASSETS, "-"],
        Some(&json_lines(&flows, encode_goflow2_json)),
    );
    let from_pmacct = exposure(
        &[
            "analyze",
            "--assets",
            ASSETS,
            "--format",
            "pmacct-json",
            pmacct.to_str().unwrap(),
        ],
        None,
    );
    let from_pb = exposure(
        &["analyze", "--assets", ASSETS, goflow_pb.to_str().unwrap()],
        None,
    );
    let strip = |mut r: Vec<Value>| {
        for row in &mut r {
            row.as_object_mut().unwrap().remove("RequestId");
        }
        r
    };
    let expected = strip(rows(&from_stdin));
    assert_eq!(expected.len(), 2);
    assert_eq!(strip(rows(&from_pmacct)), expected);
    assert_eq!(strip(rows(&from_pb)), expected);
}

#[test]
fn several_files_add_up() {
    let flows = world();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = flows.split_at(3);
    let fa = write(dir.path(), "a.json", &json_lines(a, encode_goflow2_json));
    let fb = write(dir.path(), "b.json", &json_lines(b, encode_pmacct_json));
    let out = exposure(
        &[
            "analyze",
            "--assets",
            ASSETS,
            fa.to_str().unwrap(),
            fb.to_str().unwrap(),
        ],
        None,
    );
    let rows = rows(&out);
    let ssh = rows.iter().find(|r| r["Port"] == 22).unwrap();
    assert_eq!(
        ssh["TotalBytes"], 4600,
        "request in one file, reply in the other"
    );
}

#[test]
fn malformed_records_are_counted_and_the_rest_still_counts() {
    let mut input = json_lines(&world()[..2], encode_goflow2_json);
    input.extend_from_slice(b"{\"src_addr\": \"not an address\"\nthis is not json\n{\"src_addr\":\"198.51.100.1\",\"dst_addr\":\"203.0.113.10\",\"bytes\":-5}\n");
    // Not UTF-8: the block it is read in is checked record by record then.
    input.extend_from_slice(b"{\"src_addr\":\"198.51.100.\xff\"}\n");
    input.extend_from_slice(&json_lines(&world()[2..], encode_goflow2_json));
    let out = exposure(
        &[
            "analyze",
            "--assets",
            ASSETS,
            "--format",
            "goflow2-json",
            "-",
        ],
        Some(&input),
    );
    let rows = rows(&out);
    assert_eq!(rows.len(), 2);
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.contains("rejected 4 (malformed_json=3, missing_field=1)"),
        "{summary}"
    );
}

#[test]
fn filters_narrow_the_answer() {
    let input = json_lines(&world(), encode_goflow2_json);
    let out = exposure(
        &["analyze", "--assets", ASSETS, "--port", "53", "-"],
        Some(&input),
    );
    assert_eq!(ports(&rows(&out)), vec![(53, "udp".to_owned())]);
    let out = exposure(
        &[
            "analyze",
            "--assets",
            ASSETS,
            "--service-name",
            "ssh",
            "--lang",
            "en",
            "-",
        ],
        Some(&input),
    );
    let rows = rows(&out);
    assert_eq!(ports(&rows), vec![(22, "tcp".to_owned())]);
    assert!(
        rows[0]["ProbRisk"].as_str().unwrap().is_ascii(),
        "English texts"
    );
}

#[test]
fn time_range_excludes_other_hours() {
    let input = json_lines(&world(), encode_goflow2_json);
    let before = (T / 1000 - 7200).to_string();
    let just_before = (T / 1000 - 3600).to_string();
    let out = exposure(
        &[
            "analyze",
            "--assets",
            ASSETS,
            "--start-time",
            &before,
            "--end-time",
            &just_before,
            "-",
        ],
        Some(&input),
    );
    assert!(rows(&out).is_empty());
}

#[test]
fn bad_filter_exits_2_naming_the_flag() {
    let out = exposure(
        &["analyze", "--assets", ASSETS, "--port", "70000", "-"],
        Some(b""),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--port") && err.contains("0 to 65535"),
        "{err}"
    );
}

#[test]
fn missing_assets_exits_2_with_a_hint() {
    let out = exposure(&["analyze", "-"], Some(b""));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--assets"));
}

#[test]
fn missing_input_file_is_a_runtime_error_naming_it() {
    let out = exposure(
        &["analyze", "--assets", ASSETS, "/nonexistent/flows.json"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/flows.json"));
}

#[test]
fn records_are_applied_in_file_order_however_many_threads_decode_them() {
    // 10,000 flows 40 days before T, then 10,000 at T, in a file of many
    // chunks for the decoding threads. "Now" is the latest flow seen so
    // far: read in order, every old flow comes before the clock reaches T
    // and is applied; any chunk of T applied before an old one would make
    // the old flows after it too old to count.
    let old = T - 40 * 24 * 3_600_000;
    let flows: Vec<Flow> = (0..20_000u32)
        .map(|i| {
            let (client, server) = (
                ("198.51.100.1", 20_000 + (i / 2 % 40_000) as u16),
                ("203.0.113.10", 22),
            );
            let f = if i % 2 == 0 {
                support::flow(client.0, client.1, server.0, server.1)
            } else {
                support::flow(server.0, server.1, client.0, client.1)
            };
            Flow {
                tcp_flags: DATA,
                time_ms: if i < 10_000 { old } else { T },
                ..f
            }
        })
        .collect();
    let input = json_lines(&flows, encode_goflow2_json);
    let out = exposure(&["analyze", "--assets", ASSETS, "-"], Some(&input));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("records read 20000, flows applied 20000, rejected 0,"),
        "{err}"
    );
    let rows = rows(&out);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["Port"], 22);
}

#[test]
fn files_of_either_kind_in_a_row_are_each_read_as_what_they_are() {
    // Enough JSON lines for several blocks on every thread, so that buffers
    // emptied of JSON lines are refilled with protobuf records and back.
    let flows: Vec<Flow> = (0..20_000u32)
        .map(|i| {
            support::flow(
                "198.51.100.1",
                20_000 + (i % 40_000) as u16,
                "203.0.113.10",
                22,
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let json = write(
        dir.path(),
        "a.json",
        &json_lines(&flows, encode_goflow2_json),
    );
    let pb: Vec<u8> = flows.iter().flat_map(goflow2_pb).collect();
    let pb = write(dir.path(), "b.bin", &pb);
    let (json, pb) = (json.to_str().unwrap(), pb.to_str().unwrap());
    for files in [[json, pb, json], [pb, json, pb]] {
        let mut args = vec!["analyze", "--assets", ASSETS];
        args.extend(files);
        let out = exposure(&args, None);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            err.contains("records read 60000, flows applied 60000, rejected 0,"),
            "{files:?}: {err}"
        );
    }
}

#[test]
fn check_config_accepts_the_shipped_example() {
    let out = exposure(&["check-config", "--config", "config/exposure.toml"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_config_reports_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.toml",
        b"[network]\nassets = [\"203.0.113.0/33\"]\n[window]\nmax_future_skew = \"5 parsecs\"\nbogus = 1\n",
    );
    let out = exposure(&["check-config", "--config", bad.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "network.assets[0]",
        "window.max_future_skew",
        "window.bogus",
    ] {
        assert!(err.contains(key), "{key} missing from:\n{err}");
    }
}

#[test]
fn check_config_reads_the_catalog_the_config_names() {
    let dir = tempfile::tempdir().unwrap();
    let config = |catalog: &Path| {
        let text = format!(
            "[network]\nassets = [\"203.0.113.0/24\"]\n[api]\nauth = \"none\"\n[services]\ncatalog = {:?}\n",
            catalog.to_str().unwrap()
        );
        write(dir.path(), "exposure.toml", text.as_bytes())
    };
    let check = |config: &Path| {
        let out = exposure(
            &["check-config", "--config", config.to_str().unwrap()],
            None,
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let missing = dir.path().join("nowhere.toml");
    let (code, err) = check(&config(&missing));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("services.catalog"), "{err}");
    assert!(err.contains("nowhere.toml"), "{err}");

    let broken = write(
        dir.path(),
        "services.toml",
        b"[[service]]\nname = \"SSH\"\nports = [\"22\"]\nrisk_level = 9\n",
    );
    let (code, err) = check(&config(&broken));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("services.catalog"), "{err}");
    assert!(err.contains("services.toml"), "{err}");

    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/services.toml");
    let (code, err) = check(&config(&shipped));
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn analyze_with_config_file_uses_its_assets() {
    let input = json_lines(&world(), encode_goflow2_json);
    let out = exposure(
        &["analyze", "--config", "config/exposure.toml", "-"],
        Some(&input),
    );
    assert_eq!(rows(&out).len(), 2);
}

#[test]
fn analyze_changes_prints_one_opened_event_per_served_endpoint_in_seq_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "flows.json",
        &json_lines(&world(), encode_goflow2_json),
    );
    let expected = write(
        dir.path(),
        "expected.toml",
        b"[[expected]]\nip = \"2001:db8:100::/48\"\nport = 53\nprotocol = \"udp\"\nowner = \"dns team\"\n",
    );
    let config = write(
        dir.path(),
        "exposure.toml",
        format!(
            "[network]\nassets = [\"203.0.113.0/24\", \"2001:db8:100::/48\"]\n[api]\nauth = \"none\"\n[changes]\nexpected = {:?}\n",
            expected.to_str().unwrap()
        )
        .as_bytes(),
    );
    let out = exposure(
        &[
            "analyze",
            "--changes",
            "--config",
            config.to_str().unwrap(),
            file.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON event a line"))
        .collect();
    let seen: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e["Seq"].as_u64().unwrap(),
                e["Kind"].as_str().unwrap().to_owned(),
                e["Ip"].as_str().unwrap().to_owned(),
                e["Port"].as_u64().unwrap(),
                e["Expected"].as_bool().unwrap(),
            )
        })
        .collect();
    // The refused Telnet port, the scan and the browsing host open nothing.
    assert_eq!(
        seen,
        vec![
            (1, "opened".into(), "203.0.113.10".into(), 22, false),
            (2, "opened".into(), "2001:db8:100::53".into(), 53, true),
        ]
    );
    assert_eq!(events[0]["Time"], T / 1000);
    assert_eq!(events[1]["Owner"], "dns team");
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(summary.contains("events 2"), "{summary}");
}

#[test]
fn analyze_changes_with_a_broken_expected_file_exits_2_naming_its_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let expected = write(
        dir.path(),
        "expected.toml",
        b"[[expected]]\nip = \"203.0.113.0/24\"\nport = 70000\n",
    );
    let config = write(
        dir.path(),
        "exposure.toml",
        format!(
            "[network]\nassets = [\"203.0.113.0/24\"]\n[api]\nauth = \"none\"\n[changes]\nexpected = {:?}\n",
            expected.to_str().unwrap()
        )
        .as_bytes(),
    );
    let out = exposure(
        &[
            "analyze",
            "--changes",
            "--config",
            config.to_str().unwrap(),
            "-",
        ],
        Some(b""),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("expected.toml line 3: expected[0].port"),
        "{err}"
    );
}
