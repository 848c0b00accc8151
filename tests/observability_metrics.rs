//! The metrics as Prometheus and Grafana see them: a live scrape of a fed
//! service passes `promtool check metrics`, every family has HELP text, the
//! exposure gauges follow the state, the per-port series cap holds, the
//! ingest recorder reports per batch, and every PromQL expression shipped
//! (alerting rules, dashboard) names only metrics and labels the service
//! exposes.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use exposure::config::ApiConfig;
use exposure::flow::tcp_flags::{ACK, PSH, SYN};
use exposure::flow::{Flow, Format, PROTO_TCP, PROTO_UDP};
use exposure::metrics::{Metrics, MetricsOptions};
use exposure::state::{wall_now_ms, Engine};
use support::{http_get, over, repo, tool, ApiServer};

const CLIENT: &str = "192.0.2.9";

/// A request of 1,000 bytes in ten packets from the Internet client to
/// `server:port` at `time_ms`.
fn request(server: &str, port: u16, time_ms: i64) -> Flow {
    let [request, _] = support::conversation(server, port, CLIENT, 1_000, 1_000, time_ms);
    Flow {
        packets: 10,
        ..request
    }
}

/// A request from the Internet and the asset's reply a minute ago, of
/// 1,000 bytes in ten packets each: one open endpoint.
fn open(engine: &Engine, server: &str, port: u16, proto: u8) {
    let now = wall_now_ms();
    for f in support::conversation(server, port, CLIENT, 1_000, 1_000, now - 60_000) {
        engine.apply(
            &Flow {
                packets: 10,
                ..over(proto, f)
            },
            now,
        );
    }
}

fn empty_engine() -> Arc<Engine> {
    Arc::new(support::engine())
}

/// SSH open on two assets, Telnet (high risk) on one, HTTPS on one, DNS
/// over UDP on one; one endpoint pending; one flow ignored, one record and
/// one flow rejected.
fn fed_engine() -> Arc<Engine> {
    let engine = empty_engine();
    open(&engine, "203.0.113.10", 22, PROTO_TCP);
    open(&engine, "203.0.113.11", 22, PROTO_TCP);
    open(&engine, "203.0.113.12", 23, PROTO_TCP);
    open(&engine, "203.0.113.13", 443, PROTO_TCP);
    open(&engine, "203.0.113.14", 53, PROTO_UDP);
    let now = wall_now_ms();
    engine.apply(&request("203.0.113.20", 8081, now), now);
    let internal = Flow {
        tcp_flags: SYN | ACK | PSH,
        bytes: 1_000,
        packets: 10,
        time_ms: now,
        ..support::flow("10.0.0.1", 5000, "10.0.0.2", 22)
    };
    engine.apply(&internal, now);
    engine.apply(&request("203.0.113.10", 22, now - 40 * 86_400_000), now);
    let mut scratch = Vec::new();
    assert!(engine
        .ingest(
            Format::Goflow2Json,
            b"not json",
            Some(now),
            now,
            &mut scratch
        )
        .is_err());
    engine
}

/// Metrics of a fed engine with every family given a sample: the API,
/// Kafka, ingest and checkpoint metrics are recorded as their owners do.
fn fed_metrics(engine: Arc<Engine>, options: MetricsOptions) -> Arc<Metrics> {
    let metrics = Arc::new(Metrics::with_options(engine, options));
    metrics
        .api_throttled
        .with_label_values(&["anonymous"])
        .inc();
    metrics.kafka_lag.with_label_values(&["flows", "0"]).set(12);
    metrics
        .kafka_next_offset
        .with_label_values(&["flows", "0"])
        .set(345);
    metrics.kafka_connected.set(1);
    metrics.kafka_assigned_partitions.set(1);
    metrics.dead_letters.inc();
    metrics.set_checkpoint_interval(Duration::from_secs(10));
    metrics.record_checkpoint_success(Duration::from_millis(120), 4096);
    metrics.record_checkpoint_failure();
    let now = wall_now_ms();
    let mut recorder = metrics.ingest_recorder(Format::Goflow2Pb);
    let flows = [request("203.0.113.10", 22, now - 2_000)];
    recorder.record(120, Some(now - 500), &flows);
    recorder.flush_at(now);
    metrics
}

/// The API served on a real loopback socket for the duration of `f`.
fn with_service<T>(
    metrics_options: MetricsOptions,
    f: impl FnOnce(SocketAddr, &Metrics) -> T,
) -> T {
    let runtime = support::runtime();
    let engine = fed_engine();
    let metrics = fed_metrics(Arc::clone(&engine), metrics_options);
    let config = ApiConfig {
        default_qps: 0,
        ..support::no_auth()
    };
    let server = runtime.block_on(ApiServer::start(
        engine,
        Arc::clone(&metrics),
        support::ready(),
        config,
        wall_now_ms,
    ));
    let out = f(server.addr, &metrics);
    let _ = runtime.block_on(server.stop());
    out
}

/// `/metrics` of a fed service after one API request, over a real socket,
/// with a webhook's series (the service starts them for each webhook
/// configured).
fn live_scrape() -> String {
    with_service(MetricsOptions::default(), |addr, metrics| {
        metrics.webhooks.start("receiver");
        let (status, body) = http_get(
            addr,
            "/?Action=DescribeInternetOpenPort&Version=2017-12-07&Lang=en",
        );
        assert_eq!(status, 200, "{body}");
        let (status, body) = http_get(addr, "/metrics");
        assert_eq!(status, 200, "{body}");
        body
    })
}

/// Sample lines of a text exposition: name -> label names seen, and the
/// value of each `name{labels}` as written.
struct Exposition {
    labels: BTreeMap<String, BTreeSet<String>>,
    values: BTreeMap<String, f64>,
    help: BTreeMap<String, String>,
}

fn parse_exposition(text: &str) -> Exposition {
    let mut out = Exposition {
        labels: BTreeMap::new(),
        values: BTreeMap::new(),
        help: BTreeMap::new(),
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.help.insert(name.to_owned(), help.to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let name = series.split('{').next().unwrap().to_owned();
        let labels = out.labels.entry(name).or_default();
        if let Some((_, rest)) = series.split_once('{') {
            for pair in rest.trim_end_matches('}').split("\",") {
                if let Some((label, _)) = pair.split_once('=') {
                    labels.insert(label.trim_start_matches(',').to_owned());
                }
            }
        }
        out.values
            .insert(series.to_owned(), value.parse().expect("a number"));
    }
    out
}

#[test]
fn a_live_scrape_passes_promtool_check_metrics() {
    let text = live_scrape();
    let mut child = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics:\n{report}\n{text}"
    );
    assert!(report.trim().is_empty(), "lint problems:\n{report}");
}

#[test]
fn every_family_has_help_text_and_the_promised_names() {
    let scrape = parse_exposition(&live_scrape());
    for (name, help) in &scrape.help {
        assert!(help.len() > 10, "{name} has no real HELP: {help:?}");
    }
    for family in [
        "exposure_records_consumed_total",
        "exposure_records_rejected_total",
        "exposure_records_ignored_total",
        "exposure_ingest_records_total",
        "exposure_ingest_bytes_total",
        "exposure_kafka_consumer_lag",
        "exposure_kafka_next_offset",
        "exposure_kafka_connected",
        "exposure_open_endpoints",
        "exposure_open_ports",
        "exposure_port_public_ips",
        "exposure_new_exposures_total",
        "exposure_api_requests_total",
        "exposure_api_throttled_total",
        "exposure_api_request_duration_seconds",
        "exposure_ingest_latency_seconds",
        "exposure_ingest_freshness_seconds",
        "exposure_state_endpoints",
        "exposure_state_bytes",
        "exposure_checkpoint_age_seconds",
        "exposure_checkpoint_duration_seconds",
        "exposure_checkpoint_last_success_timestamp_seconds",
        "exposure_start_time_seconds",
    ] {
        assert!(scrape.help.contains_key(family), "{family} is not exported");
    }
    assert_eq!(
        scrape.labels["exposure_port_public_ips"],
        ["port", "protocol", "risk_level", "service"]
            .map(String::from)
            .into()
    );
}

#[test]
fn every_exposed_family_is_in_the_metrics_reference() {
    let scrape = parse_exposition(&live_scrape());
    let docs = std::fs::read_to_string(repo("docs/operations.md")).unwrap();
    let missing: Vec<&String> = scrape
        .help
        .keys()
        .filter(|name| !docs.contains(&format!("`{name}`")))
        .collect();
    assert!(missing.is_empty(), "not in docs/operations.md: {missing:?}");
}

#[test]
fn exposure_gauges_follow_the_state() {
    let scrape = parse_exposition(&live_scrape());
    let v = |series: &str| -> f64 {
        *scrape
            .values
            .get(series)
            .unwrap_or_else(|| panic!("{series} missing from {:#?}", scrape.values.keys()))
    };
    assert_eq!(v("exposure_open_endpoints"), 5.0);
    assert_eq!(v("exposure_pending_endpoints"), 1.0);
    assert_eq!(v("exposure_state_endpoints"), 6.0);
    assert_eq!(v(r#"exposure_open_ports{protocol="tcp"}"#), 3.0);
    assert_eq!(v(r#"exposure_open_ports{protocol="udp"}"#), 1.0);
    assert_eq!(
        v(r#"exposure_port_public_ips{port="22",protocol="tcp",risk_level="2",service="SSH"}"#),
        2.0
    );
    assert_eq!(
        v(r#"exposure_port_public_ips{port="23",protocol="tcp",risk_level="3",service="Telnet"}"#),
        1.0
    );
    assert_eq!(
        v(r#"exposure_port_traffic_bytes{port="22",protocol="tcp",risk_level="2",service="SSH"}"#),
        4_000.0
    );
    assert_eq!(v("exposure_exposed_traffic_bytes"), 10_000.0);
    assert_eq!(v(r#"exposure_exposed_ports{risk_level="3"}"#), 1.0);
    assert_eq!(v(r#"exposure_exposed_ports{risk_level="2"}"#), 2.0);
    assert_eq!(v(r#"exposure_exposed_ports{risk_level="0"}"#), 1.0);
    assert_eq!(v(r#"exposure_new_exposures_total{risk_level="3"}"#), 1.0);
    assert_eq!(v(r#"exposure_new_exposures_total{risk_level="2"}"#), 3.0);
    assert_eq!(v(r#"exposure_new_exposures_total{risk_level="1"}"#), 0.0);
    assert_eq!(v("exposure_port_series_dropped"), 0.0);
    assert_eq!(
        v(r#"exposure_records_rejected_total{reason="malformed_json"}"#),
        1.0
    );
    assert_eq!(
        v(r#"exposure_records_rejected_total{reason="too_old"}"#),
        1.0
    );
    assert!(v("exposure_state_bytes") > 0.0);
    assert_eq!(
        v(r#"exposure_api_request_duration_seconds_count{action="DescribeInternetOpenPort"}"#),
        1.0
    );
    assert!(
        v(
            r#"exposure_api_request_duration_seconds{action="DescribeInternetOpenPort",quantile="0.99"}"#
        ) > 0.0
    );
    assert!(v("exposure_checkpoint_age_seconds") < 60.0);
    assert_eq!(v(r#"exposure_checkpoints_total{result="failure"}"#), 1.0);
}

#[test]
fn port_series_are_capped_keeping_the_highest_risk() {
    let text = with_service(MetricsOptions { max_port_series: 2 }, |_, metrics| {
        metrics.render()
    });
    let scrape = parse_exposition(&text);
    let ports: Vec<&str> = scrape
        .values
        .keys()
        .filter(|k| k.starts_with("exposure_port_public_ips{"))
        .map(String::as_str)
        .collect();
    assert_eq!(ports.len(), 2, "{ports:?}");
    assert!(
        ports.iter().any(|s| s.contains(r#"port="23""#)),
        "{ports:?}"
    );
    // Of the risk-2 services, SSH (two public IPs) goes before DNS (one).
    assert!(
        ports.iter().any(|s| s.contains(r#"port="22""#)),
        "{ports:?}"
    );
    assert_eq!(scrape.values["exposure_port_series_dropped"], 2.0);
    // The uncapped totals still count every port.
    let exposed: f64 = (0..=3)
        .map(|r| scrape.values[&format!("exposure_exposed_ports{{risk_level=\"{r}\"}}")])
        .sum();
    assert_eq!(exposed, 4.0);
}

#[test]
fn labelled_endpoints_are_series_of_their_service() {
    let engine = empty_engine();
    let now = wall_now_ms();
    for (server, label) in [
        ("203.0.113.30", Some("nginx")),
        ("203.0.113.31", Some("nginx")),
        ("203.0.113.32", None),
    ] {
        for f in support::conversation(server, 40000, CLIENT, 1_000, 1_000, now - 60_000) {
            let label = label.map(Into::into);
            engine.apply(
                &Flow {
                    packets: 10,
                    label,
                    ..f
                },
                now,
            );
        }
    }
    let scrape = parse_exposition(&Metrics::new(engine).render());
    let series: BTreeMap<&str, f64> = scrape
        .values
        .iter()
        .filter(|(k, _)| k.starts_with("exposure_port_public_ips{"))
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        series,
        BTreeMap::from([
            (
                r#"exposure_port_public_ips{port="40000",protocol="tcp",risk_level="1",service="Unknown"}"#,
                1.0
            ),
            (
                r#"exposure_port_public_ips{port="40000",protocol="tcp",risk_level="1",service="nginx"}"#,
                2.0
            ),
        ])
    );
    assert_eq!(
        scrape.values[r#"exposure_exposed_ports{risk_level="1"}"#],
        1.0
    );
}

#[test]
fn the_ingest_recorder_reports_once_per_batch() {
    let metrics = Metrics::new(empty_engine());
    let now = wall_now_ms();
    let mut recorder = metrics.ingest_recorder(Format::PmacctJson);
    let flows = [
        request("203.0.113.10", 22, now - 1_000),
        request("203.0.113.10", 22, now - 3_000),
    ];
    recorder.record(100, Some(now - 250), &flows);
    recorder.record(50, None, &[]);
    let before = parse_exposition(&metrics.render());
    assert_eq!(before.values["exposure_ingest_latency_seconds_count"], 0.0);
    assert_eq!(
        before.values[r#"exposure_ingest_records_total{format="pmacct-json"}"#],
        0.0
    );
    recorder.flush_at(now);
    let after = parse_exposition(&metrics.render());
    assert_eq!(
        after.values[r#"exposure_ingest_records_total{format="pmacct-json"}"#],
        2.0
    );
    assert_eq!(
        after.values[r#"exposure_ingest_bytes_total{format="pmacct-json"}"#],
        150.0
    );
    assert_eq!(after.values["exposure_ingest_latency_seconds_count"], 2.0);
    assert!((after.values["exposure_ingest_latency_seconds_sum"] - 4.0).abs() < 1e-9);
    let p99 = after.values[r#"exposure_ingest_latency_seconds{quantile="0.99"}"#];
    assert!((p99 - 3.0).abs() < 0.05, "{p99}");
    assert_eq!(after.values["exposure_ingest_freshness_seconds_count"], 1.0);
    let p50 = after.values[r#"exposure_ingest_freshness_seconds{quantile="0.5"}"#];
    assert!((p50 - 0.25).abs() < 0.01, "{p50}");
}

// ---- PromQL shipped with the service -------------------------------------

/// Words of PromQL that are not metric names.
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];
/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// Series Prometheus makes itself.
const BUILTINS: &[&str] = &["up", "ALERTS", "ALERTS_FOR_STATE"];
/// Labels Prometheus adds to every series of a target or alert.
const TARGET_LABELS: &[&str] = &["job", "instance", "alertname", "alertstate", "__name__"];

/// What one expression refers to: metric names with the labels matched on
/// them, and the labels named in grouping and matching clauses.
#[derive(Debug, Default)]
struct References {
    metrics: Vec<(String, Vec<String>)>,
    grouping_labels: Vec<String>,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Label names in a `{...}` matcher list or `(...)` label list.
fn label_names(list: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = list.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                while let Some(d) = chars.next() {
                    if d == '\\' {
                        chars.next();
                    } else if d == c {
                        break;
                    }
                }
            }
            c if is_ident_start(c) => {
                let mut name = c.to_string();
                while let Some(&d) = chars.peek().filter(|d| is_ident(**d)) {
                    name.push(d);
                    chars.next();
                }
                names.push(name);
            }
            _ => {}
        }
    }
    names
}

/// Skips to the end of a string literal opened by `quote`.
fn skip_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, quote: char) {
    while let Some(c) = chars.next() {
        if c == '\\' {
            chars.next();
        } else if c == quote {
            return;
        }
    }
}

/// Takes the text up to the bracket closing the one just opened.
fn until_close(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    open: char,
    close: char,
) -> String {
    let mut depth = 1;
    let mut out = String::new();
    let mut quote: Option<char> = None;
    for c in chars.by_ref() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
            None if c == open => depth += 1,
            None if c == close => {
                depth -= 1;
                if depth == 0 {
                    return out;
                }
            }
            None => {}
        }
        out.push(c);
    }
    panic!("unclosed {open} in PromQL");
}

fn references(expr: &str) -> References {
    let mut refs = References::default();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => skip_string(&mut chars, c),
            '[' => {
                until_close(&mut chars, '[', ']');
            }
            '{' => {
                // A matcher without a metric name.
                until_close(&mut chars, '{', '}');
            }
            '$' => {
                // A Grafana variable: $name or ${name}.
                if chars.peek() == Some(&'{') {
                    chars.next();
                    until_close(&mut chars, '{', '}');
                } else {
                    while chars.peek().is_some_and(|d| is_ident(*d)) {
                        chars.next();
                    }
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                // Numbers, durations (5m) and exponents.
                while chars
                    .peek()
                    .is_some_and(|d| d.is_ascii_alphanumeric() || *d == '.')
                {
                    chars.next();
                }
            }
            c if is_ident_start(c) => {
                let mut word = c.to_string();
                while let Some(&d) = chars.peek().filter(|d| is_ident(**d)) {
                    word.push(d);
                    chars.next();
                }
                while chars.peek().is_some_and(|d| d.is_whitespace()) {
                    chars.next();
                }
                let next = chars.peek().copied();
                if LABEL_LISTS.contains(&word.as_str()) {
                    if next == Some('(') {
                        chars.next();
                        let list = until_close(&mut chars, '(', ')');
                        refs.grouping_labels.extend(label_names(&list));
                    }
                } else if next == Some('(') || KEYWORDS.contains(&word.as_str()) {
                    // A function or an operator.
                } else {
                    let mut matched = Vec::new();
                    if next == Some('{') {
                        chars.next();
                        let list = until_close(&mut chars, '{', '}');
                        // Label names are the words before an operator.
                        matched = list
                            .split(',')
                            .filter_map(|m| {
                                label_names(m.split(['=', '!']).next().unwrap_or("")).pop()
                            })
                            .collect();
                    }
                    refs.metrics.push((word, matched));
                }
            }
            _ => {}
        }
    }
    refs
}

/// Every problem with `expr` against what the service exposes.
fn check_expr(expr: &str, exposed: &Exposition, problems: &mut Vec<String>) {
    let refs = references(expr);
    if refs.metrics.is_empty() {
        problems.push(format!("no metric found in {expr:?}"));
    }
    let mut labels_in_expr: BTreeSet<String> =
        TARGET_LABELS.iter().map(|s| s.to_string()).collect();
    for (name, matched) in &refs.metrics {
        if BUILTINS.contains(&name.as_str()) {
            continue;
        }
        let Some(labels) = exposed.labels.get(name) else {
            problems.push(format!("{name} (in {expr:?}) is not exposed"));
            continue;
        };
        labels_in_expr.extend(labels.iter().cloned());
        for label in matched {
            if !labels.contains(label) && !TARGET_LABELS.contains(&label.as_str()) {
                problems.push(format!("{name} has no label {label} (in {expr:?})"));
            }
        }
    }
    for label in &refs.grouping_labels {
        if !labels_in_expr.contains(label) {
            problems.push(format!("no metric of {expr:?} has the label {label}"));
        }
    }
}

/// Every `expr` string in a JSON document.
fn json_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => json_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| json_exprs(v, out)),
        _ => {}
    }
}

#[test]
fn promql_references_are_parsed_as_prometheus_reads_them() {
    let refs = references(
        r#"sum by (job, instance) (rate(exposure_records_rejected_total{reason!="x", instance=~"$instance"}[$__rate_interval])) / on (job) group_left scalar(up) > 0.05 offset 5m"#,
    );
    assert_eq!(
        refs.metrics,
        [
            (
                "exposure_records_rejected_total".to_owned(),
                vec!["reason".to_owned(), "instance".to_owned()]
            ),
            ("up".to_owned(), vec![]),
        ]
    );
    assert_eq!(refs.grouping_labels, ["job", "instance", "job"]);

    let exposed = parse_exposition("exposure_a{x=\"1\"} 1\n");
    let mut problems = Vec::new();
    check_expr(r#"sum by (x) (exposure_a{x="1"})"#, &exposed, &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    check_expr(
        r#"sum by (y) (exposure_a{z="1"}) + exposure_b"#,
        &exposed,
        &mut problems,
    );
    assert_eq!(problems.len(), 3, "{problems:?}");
}

#[test]
fn the_dashboard_queries_only_metrics_the_service_exposes() {
    let exposed = parse_exposition(&live_scrape());
    let path = repo("config/grafana/dashboards/exposure.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("valid JSON");
    let mut exprs = Vec::new();
    json_exprs(&dashboard, &mut exprs);
    assert!(
        exprs.len() >= 15,
        "only {} queries in {}",
        exprs.len(),
        path.display()
    );
    let mut problems = Vec::new();
    for expr in &exprs {
        check_expr(expr, &exposed, &mut problems);
    }
    // Template variables: label_values(metric, label).
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        let Some(def) = var["definition"].as_str() else {
            continue;
        };
        let inner = def
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_else(|| panic!("unexpected variable query {def:?}"));
        let (metric, label) = inner.split_once(',').unwrap();
        check_expr(metric.trim(), &exposed, &mut problems);
        let label = label.trim();
        if !TARGET_LABELS.contains(&label) && !exposed.labels[metric.trim()].contains(label) {
            problems.push(format!("variable {def:?}: no label {label}"));
        }
    }
    // What the dashboard promises to show.
    let titles: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["title"].as_str())
        .collect();
    for wanted in [
        "Exposed ports by risk level",
        "New exposures",
        "Traffic share (last 24 h)",
        "Ingest health",
        "API latency",
    ] {
        assert!(
            titles.contains(&wanted),
            "no panel {wanted:?} in {titles:?}"
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_alerting_rules_use_only_metrics_the_service_exposes() {
    let exposed = parse_exposition(&live_scrape());
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo("config/prometheus/alerts.yml")).unwrap(),
    )
    .expect("valid YAML");
    let mut problems = Vec::new();
    let mut count = 0;
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let expr = rule["expr"].as_str().expect("every rule has an expr");
            count += 1;
            check_expr(expr, &exposed, &mut problems);
            let name = rule["alert"].as_str().unwrap_or("?");
            for key in ["summary", "description", "action"] {
                if rule["annotations"][key]
                    .as_str()
                    .is_none_or(|s| s.trim().is_empty())
                {
                    problems.push(format!("{name} has no {key} annotation"));
                }
            }
            let severity = rule["labels"]["severity"].as_str();
            if !matches!(severity, Some("critical" | "warning" | "info")) {
                problems.push(format!("{name} has severity {severity:?}"));
            }
        }
    }
    assert!(count >= 6, "only {count} rules");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
