//! The per-client rate limit of `auth = "none"`.

use super::*;

#[tokio::test]
async fn a_burst_beyond_default_qps_is_throttled_with_retry_headers() {
    let h = harness(2);
    for i in 0..2 {
        let reply = h.get(PORT_QUERY).await;
        assert_eq!(reply.status, StatusCode::OK, "request {i}");
    }
    let reply = h.get(PORT_QUERY).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_code(), "Throttling.User");
    let ms: u64 = reply.headers["x-acs-retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=500).contains(&ms), "x-acs-retry-after {ms}");
    let seconds: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(seconds >= 1);

    // Another client address is not held back meanwhile.
    let other = h
        .send_from(
            CLIENT_B,
            Request::get(PORT_QUERY).body(Body::empty()).unwrap(),
        )
        .await;
    assert_eq!(other.status, StatusCode::OK);

    let text = h.metrics_text();
    assert!(
        text.contains(r#"exposure_api_throttled_total{user="anonymous"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"exposure_api_requests_total{action="DescribeInternetOpenPort",code="Throttling.User"} 1"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn the_limit_is_per_address_not_per_connection() {
    let h = harness(1);
    let first = h
        .send_from(
            "198.51.100.9:1111",
            Request::get(PORT_QUERY).body(Body::empty()).unwrap(),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let second = h
        .send_from(
            "198.51.100.9:2222",
            Request::get(PORT_QUERY).body(Body::empty()).unwrap(),
        )
        .await;
    assert_eq!(second.error_code(), "Throttling.User");
    // The same address over IPv4-mapped IPv6 is the same client.
    let mapped = h
        .send_from(
            "[::ffff:198.51.100.9]:3333",
            Request::get(PORT_QUERY).body(Body::empty()).unwrap(),
        )
        .await;
    assert_eq!(mapped.error_code(), "Throttling.User");
}

#[tokio::test]
async fn zero_qps_means_no_limit() {
    let h = harness(0);
    for _ in 0..50 {
        assert_eq!(h.get(PORT_QUERY).await.status, StatusCode::OK);
    }
}

/// Answers are computed at most one per core at a time; requests beyond
/// that wait for their turn and are all answered, none refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_beyond_the_cores_all_get_answers() {
    let h = std::sync::Arc::new(harness(0));
    let calls: Vec<_> = (0..64)
        .map(|_| {
            let h = std::sync::Arc::clone(&h);
            tokio::spawn(async move { h.get(PORT_QUERY).await })
        })
        .collect();
    for call in calls {
        let reply = call.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.json()["PageInfo"]["TotalCount"], 4);
    }
}
