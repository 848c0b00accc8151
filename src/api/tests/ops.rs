//! `/healthz`, `/readyz`, `/metrics`, and the request metric.

use super::*;

#[tokio::test]
async fn healthz_answers_ok() {
    let h = harness(0);
    h.health.set_restored(false);
    let reply = h.get("/healthz").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text().trim(), "ok");
}

#[tokio::test]
async fn readyz_is_503_until_restored_and_assigned() {
    let h = harness(0);
    h.health.set_restored(false);
    h.health.set_assigned(false);
    let reply = h.get("/readyz").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        reply.json(),
        serde_json::json!({"ready": false, "restored": false,
            "partitions_assigned": false, "kafka_connected": false,
            "tasks_down": [], "checkpoint_failing": false, "missing_partitions": []})
    );
    h.health.set_restored(true);
    assert_eq!(
        h.get("/readyz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    h.health.set_assigned(true);
    h.health.set_connected(true);
    let reply = h.get("/readyz").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json(),
        serde_json::json!({"ready": true, "restored": true,
            "partitions_assigned": true, "kafka_connected": true,
            "tasks_down": [], "checkpoint_failing": false, "missing_partitions": []})
    );
}

#[tokio::test]
async fn until_every_partition_is_read_queries_are_503_naming_the_partitions() {
    let h = harness(0);
    h.health.set_assigned(true);
    h.health.set_missing_partitions(vec![3, 1]);
    let reply = h.get("/readyz").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        reply.json()["missing_partitions"],
        serde_json::json!([1, 3])
    );
    let reply = h.get("/?Action=DescribeInternetOpenPort").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = reply.json();
    assert_eq!(body["Code"], "ServiceUnavailable");
    assert!(
        body["Message"].as_str().unwrap().contains("[1, 3]"),
        "{body}"
    );
    h.health.set_missing_partitions(Vec::new());
    assert_eq!(
        h.get("/?Action=DescribeInternetOpenPort").await.status,
        StatusCode::OK
    );
    assert_eq!(h.get("/readyz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_counts_requests_by_action_and_code() {
    let h = harness(0);
    h.get(PORT_QUERY).await;
    h.get("/?Action=Evil%7Bx%3D%22y%22%7D").await;
    h.get("/").await;
    let reply = h.get("/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = reply.text();
    for line in [
        r#"exposure_api_requests_total{action="DescribeInternetOpenPort",code="Success"} 1"#,
        r#"exposure_api_requests_total{action="unknown",code="InvalidAction.NotFound"} 1"#,
        r#"exposure_api_requests_total{action="unknown",code="MissingParameter"} 1"#,
    ] {
        assert!(text.contains(line), "{line} missing in:\n{text}");
    }
    assert!(!text.contains("Evil"), "{text}");
    assert!(text.contains("exposure_open_endpoints 5"), "{text}");
}
