//! `DescribeExposureChanges` through the router: the engine's event log,
//! filtered and paged, refused and permitted like every Action.

use super::signed::{users, utc, v1_query, PORTS_KEY, PORTS_SECRET, SECOPS_KEY, SECOPS_SECRET};
use super::*;
use crate::catalog::Catalog;
use crate::changes::events::Log;
use crate::testkit::DAY;

pub(super) const CHANGES: &str = "/?Action=DescribeExposureChanges";

/// An engine recording changes (the last `keep` replayable), with the
/// endpoints of [`engine`] opened an hour before `NOW_MS`: Seq 1 to 5.
pub(super) fn tracking(keep: usize) -> Arc<Engine> {
    let log = Log::new(
        Arc::new(Catalog::builtin()),
        Arc::new(Watched::empty()),
        keep,
        30,
    );
    let engine = testkit::engine().track_changes(Arc::new(log), DAY);
    for (server, port) in [
        ("203.0.113.10", 22),
        ("203.0.113.11", 443),
        ("203.0.113.12", 443),
        ("203.0.113.13", 3306),
        ("203.0.113.14", 6379),
    ] {
        open(&engine, server, port, NOW_MS - HOUR);
    }
    Arc::new(engine)
}

/// A conversation with `server:port` at `time_ms`: it opens.
pub(super) fn open(engine: &Engine, server: &str, port: u16, time_ms: i64) {
    for f in testkit::conversation(server, port, "192.0.2.50", 100, 1_000, time_ms) {
        engine.apply(&f, NOW_MS);
    }
}

fn seqs(v: &Value) -> Vec<u64> {
    v["DataList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Seq"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn the_events_are_answered_newest_first_as_event_objects() {
    let engine = tracking(100);
    let log = Arc::clone(engine.changes().unwrap());
    let h = harness_on(engine, Auth::None, 0, Vec::new());
    let reply = h.get(&format!("{CHANGES}&Version=2017-12-07")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.headers["content-type"],
        "application/json;charset=utf-8"
    );
    // Each event's fields in the documented order, as on the stream.
    assert!(
        reply
            .text()
            .contains(r#""DataList":[{"Seq":5,"EventId":"5-"#),
        "{}",
        reply.text()
    );
    let v = reply.json();
    let mut top: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    top.sort_unstable();
    assert_eq!(top, ["DataList", "PageInfo", "RequestId"]);
    assert_eq!(
        v["RequestId"],
        reply.headers["x-acs-request-id"].to_str().unwrap()
    );
    assert_eq!(seqs(&v), [5, 4, 3, 2, 1]);
    assert_eq!(
        v["PageInfo"],
        serde_json::json!({"CurrentPage": 1, "PageSize": 10, "TotalCount": 5})
    );
    let mut recorded = log.last(5);
    recorded.reverse();
    let objects: Vec<Value> = recorded.iter().map(|e| e.to_json()).collect();
    assert_eq!(v["DataList"].as_array().unwrap(), &objects);
}

#[tokio::test]
async fn filters_and_pages_apply_to_the_events() {
    let h = harness_on(tracking(100), Auth::None, 0, Vec::new());
    let v = h
        .get(&format!("{CHANGES}&Port=443&Kind=opened"))
        .await
        .json();
    assert_eq!(seqs(&v), [3, 2]);
    let v = h.get(&format!("{CHANGES}&ServiceName=mysql")).await.json();
    assert_eq!(seqs(&v), [4]);
    let v = h.get(&format!("{CHANGES}&Kind=closed")).await.json();
    assert_eq!(v["PageInfo"]["TotalCount"], 0);
    let v = h
        .get(&format!(
            "{CHANGES}&Expected=false&PageSize=2&CurrentPage=2"
        ))
        .await
        .json();
    assert_eq!(seqs(&v), [3, 2]);
    assert_eq!(v["PageInfo"]["TotalCount"], 5);
    // The range is in seconds, [StartTime, EndTime).
    let at = (NOW_MS - HOUR) / 1000;
    let v = h
        .get(&format!("{CHANGES}&StartTime={}&EndTime={at}", at - 60))
        .await
        .json();
    assert_eq!(v["PageInfo"]["TotalCount"], 0);
    let v = h
        .get(&format!("{CHANGES}&StartTime={at}&EndTime={}", at + 60))
        .await
        .json();
    assert_eq!(v["PageInfo"]["TotalCount"], 5);
}

#[tokio::test]
async fn bad_parameters_are_error_parameters_naming_them() {
    let h = harness_on(tracking(100), Auth::None, 0, Vec::new());
    for (query, named) in [
        ("StartTime=abc", "StartTime"),
        ("Kind=bogus", "Kind"),
        ("Expected=maybe", "Expected"),
        ("StartTime=200&EndTime=100", "EndTime"),
        ("RiskLevel=7", "RiskLevel"),
        ("Lang=fr", "Lang"),
        ("PageSize=101", "PageSize"),
    ] {
        let reply = h.get(&format!("{CHANGES}&{query}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(reply.error_code(), "ErrorParameters", "{query}");
        assert!(
            reply.message().starts_with(&format!("invalid {named}:")),
            "{query}: {}",
            reply.message()
        );
    }
}

#[tokio::test]
async fn an_engine_without_an_event_log_answers_no_events() {
    let h = harness(0);
    let v = h.get(CHANGES).await.json();
    assert_eq!(v["PageInfo"]["TotalCount"], 0);
    assert_eq!(v["DataList"], serde_json::json!([]));
}

#[tokio::test]
async fn the_action_has_its_own_permission() {
    let h = harness_on(tracking(100), Auth::Acs, 0, users(None));
    let get = |key: &str, secret: &str, nonce: &str| {
        let query = v1_query(
            "GET",
            "DescribeExposureChanges",
            "",
            key,
            secret,
            nonce,
            &utc(0),
        );
        Request::get(format!("/?{query}"))
            .body(Body::empty())
            .unwrap()
    };
    let reply = h.send(get(PORTS_KEY, PORTS_SECRET, "n-1")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.error_code(), "Forbidden.RAM");
    assert!(
        reply.message().contains("DescribeExposureChanges"),
        "{}",
        reply.message()
    );
    let reply = h.send(get(SECOPS_KEY, SECOPS_SECRET, "n-2")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["PageInfo"]["TotalCount"], 5);
}
