//! Every refusal: its status, its Code, a Message naming what was wrong,
//! and never a 500.

use super::*;

async fn post_form(h: &Harness, body: impl Into<Body>) -> Reply {
    let req = Request::post("/")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.into())
        .unwrap();
    h.send(req).await
}

#[tokio::test]
async fn a_bad_parameter_is_error_parameters_naming_it_and_the_rule() {
    let h = harness(0);
    for (query, param, rule) in [
        ("PageSize=0", "PageSize", "1 to 100"),
        ("PageSize=101", "PageSize", "1 to 100"),
        ("Port=70000", "Port", "0 to 65535"),
        ("RiskLevel=9", "RiskLevel", "0, 1, 2, 3"),
        ("Lang=fr", "Lang", "zh or en"),
        ("SourceIp=nope", "SourceIp", "IPv4 or IPv6"),
        ("StartTime=20&EndTime=10", "EndTime", "StartTime"),
    ] {
        let reply = h.get(&format!("{PORT_QUERY}&{query}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(reply.error_code(), "ErrorParameters", "{query}");
        let message = reply.message();
        assert!(message.contains(param), "{query}: {message}");
        assert!(message.contains(rule), "{query}: {message}");
    }
}

#[tokio::test]
async fn a_wrong_version_is_error_parameters_naming_version() {
    let h = harness(0);
    let reply = h
        .get("/?Action=DescribeInternetOpenPort&Version=2099-01-01")
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_code(), "ErrorParameters");
    assert!(reply.message().contains("Version"), "{}", reply.message());
    let req = Request::get("/?Action=DescribeInternetOpenPort")
        .header("x-acs-version", "2016-01-01")
        .body(Body::empty())
        .unwrap();
    let reply = h.send(req).await;
    assert_eq!(reply.error_code(), "ErrorParameters");
    assert!(
        reply.message().contains("2017-12-07"),
        "{}",
        reply.message()
    );
}

#[tokio::test]
async fn no_action_is_missing_parameter() {
    let h = harness(0);
    for uri in ["/", "/?Action=", "/?Version=2017-12-07&PageSize=5"] {
        let reply = h.get(uri).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(reply.error_code(), "MissingParameter", "{uri}");
        assert!(reply.message().contains("Action"), "{}", reply.message());
    }
}

#[tokio::test]
async fn unknown_actions_are_not_found_with_the_supported_list() {
    let h = harness(0);
    for action in [
        "describeinternetopenport",
        "DescribeInternetOpenPorts",
        "DeleteEverything",
        "*",
    ] {
        let reply = h.get(&format!("/?Action={action}")).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{action}");
        assert_eq!(reply.error_code(), "InvalidAction.NotFound");
        let message = reply.message();
        assert!(message.contains(action), "{message}");
        for supported in crate::query::Action::NAMES {
            assert!(message.contains(supported), "{message}");
        }
    }
}

#[tokio::test]
async fn queries_before_the_state_is_restored_are_db_select_errors() {
    let h = harness(0);
    h.health.set_restored(false);
    let reply = h.get(PORT_QUERY).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_code(), "ErrorDBSelectError");
    h.health.set_restored(true);
    assert_eq!(h.get(PORT_QUERY).await.status, StatusCode::OK);
}

#[tokio::test]
async fn host_id_is_the_host_header_else_the_listen_address() {
    let h = harness(0);
    let req = Request::get("/")
        .header("host", "exposure.example:8080")
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(req).await.json()["HostId"], "exposure.example:8080");
    assert_eq!(h.get("/").await.json()["HostId"], "127.0.0.1:8080");
}

#[tokio::test]
async fn oversized_bodies_are_refused_as_error_parameters() {
    let h = harness(0);
    let mut body = String::from("Action=DescribeInternetOpenPort&Pad=");
    body.push_str(&"x".repeat(super::super::rpc::MAX_BODY_BYTES));
    let reply = post_form(&h, body).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_code(), "ErrorParameters");
    assert!(
        reply.message().contains("request body"),
        "{}",
        reply.message()
    );
}

#[tokio::test]
async fn malformed_bodies_are_refused_by_name() {
    let h = harness(0);
    let reply = post_form(
        &h,
        &b"Action=DescribeInternetOpenPort&ServiceName=\xff\xfe"[..],
    )
    .await;
    assert_eq!(reply.error_code(), "ErrorParameters");
    assert!(
        reply.message().contains("ServiceName"),
        "{}",
        reply.message()
    );
    let reply = post_form(&h, "Action=DescribeInternetOpenPort&Lang=%E4%B8").await;
    assert_eq!(reply.error_code(), "ErrorParameters");
    assert!(reply.message().contains("Lang"), "{}", reply.message());
    let req = Request::post("/")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"Action":"DescribeInternetOpenPort"}"#))
        .unwrap();
    let reply = h.send(req).await;
    assert_eq!(reply.error_code(), "ErrorParameters");
    assert!(
        reply.message().contains("Content-Type"),
        "{}",
        reply.message()
    );
}

#[tokio::test]
async fn a_parameter_repeated_with_another_value_is_refused() {
    let h = harness(0);
    let req = Request::post(format!("{PORT_QUERY}&Port=22"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("Port=443"))
        .unwrap();
    let reply = h.send(req).await;
    assert_eq!(reply.error_code(), "ErrorParameters");
    assert!(reply.message().contains("Port"), "{}", reply.message());
    let same = h.get(&format!("{PORT_QUERY}&Port=22&Port=22")).await;
    assert_eq!(same.status, StatusCode::OK);
}

#[tokio::test]
async fn other_methods_are_refused_with_allow() {
    let h = harness(0);
    let req = Request::put(PORT_QUERY).body(Body::empty()).unwrap();
    let reply = h.send(req).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.error_code(), "UnsupportedHTTPMethod");
    assert_eq!(reply.headers["allow"], "GET, HEAD, POST");
}

#[tokio::test]
async fn hostile_requests_never_get_a_500() {
    let h = harness(0);
    let long = "A".repeat(10_000);
    let uris = [
        format!("/?Action={long}"),
        format!("{PORT_QUERY}&ServiceName={long}"),
        format!("{PORT_QUERY}&CurrentPage=18446744073709551616"),
        format!("{PORT_QUERY}&StartTime=-9223372036854775808"),
        format!("{PORT_QUERY}&EndTime=9223372036854775807"),
        format!("{PORT_QUERY}&Port=%00"),
        format!("{PORT_QUERY}&%=%&&&==&Port=%2"),
        "/?Action=%F0%9F%92%A9".to_owned(),
        format!("{PORT_QUERY}&CurrentPage=4294967295&PageSize=100"),
    ];
    for uri in uris {
        let reply = h.get(&uri).await;
        assert!(
            reply.status.is_success() || reply.status.is_client_error(),
            "{}: {}",
            &uri[..uri.len().min(80)],
            reply.status
        );
        if !reply.status.is_success() {
            assert!(reply.message().len() < 400, "{}", reply.message());
            reply.error_code();
        }
    }
}
