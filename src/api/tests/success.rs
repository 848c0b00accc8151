//! Answers of `DescribeInternetOpenPort`, however the request is sent.

use super::*;

/// The row fields of docs/api.md, each with its JSON type.
const ROW_FIELDS: [(&str, &str); 17] = [
    ("RiskLevel", "int"),
    ("ProbRiskDesc", "string"),
    ("TrafficPercent1Day", "string"),
    ("Protocol", "string"),
    ("PublicIpNum", "int"),
    ("SuggestLevel", "int"),
    ("DetailNum", "int"),
    ("Port", "int"),
    ("TrafficPercent7Day", "string"),
    ("TrafficPercent30Day", "string"),
    ("ProbRisk", "string"),
    ("RiskReason", "string"),
    ("ServiceNameList", "list"),
    ("InBytes", "int"),
    ("OutBytes", "int"),
    ("TotalBytes", "int"),
    ("UnknownReason", "list"),
];

fn assert_seed_shape(reply: &Reply) -> Value {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.headers["content-type"],
        "application/json;charset=utf-8"
    );
    let v = reply.json();
    let mut top: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    top.sort_unstable();
    assert_eq!(top, ["DataList", "PageInfo", "RequestId"]);
    assert_eq!(
        reply.headers["x-acs-request-id"],
        v["RequestId"].as_str().unwrap()
    );
    for key in ["CurrentPage", "PageSize", "TotalCount"] {
        assert!(
            v["PageInfo"][key].is_u64(),
            "PageInfo.{key}: {}",
            v["PageInfo"]
        );
    }
    assert_eq!(v["PageInfo"].as_object().unwrap().len(), 3);
    for row in v["DataList"].as_array().unwrap() {
        let obj = row.as_object().unwrap();
        assert_eq!(obj.len(), ROW_FIELDS.len(), "{row}");
        for (key, kind) in ROW_FIELDS {
            let value = &row[key];
            let ok = match kind {
                "int" => value.is_u64(),
                "string" => value.is_string(),
                _ => value
                    .as_array()
                    .is_some_and(|items| items.iter().all(Value::is_string)),
            };
            assert!(ok, "{key} should be {kind}: {value}");
        }
    }
    v
}

#[tokio::test]
async fn get_with_query_answers_in_the_seed_shape() {
    let h = harness(0);
    let reply = h.get(&format!("{PORT_QUERY}&Lang=en")).await;
    let v = assert_seed_shape(&reply);
    assert_eq!(v["PageInfo"]["TotalCount"], 4);
    assert_eq!(v["PageInfo"]["CurrentPage"], 1);
    assert_eq!(v["PageInfo"]["PageSize"], 10);
    let rows = v["DataList"].as_array().unwrap();
    let https = rows.iter().find(|r| r["Port"] == 443).expect("https row");
    assert_eq!(https["PublicIpNum"], 2);
    assert_eq!(https["InBytes"], 11_000);
    assert_eq!(https["OutBytes"], 99_000);
    assert_eq!(https["TotalBytes"], 110_000);
    assert_eq!(https["Protocol"], "tcp");
    let unknown = rows
        .iter()
        .find(|r| r["Port"] == 40000)
        .expect("unknown row");
    assert_eq!(unknown["ServiceNameList"], serde_json::json!(["Unknown"]));
    assert_eq!(unknown["UnknownReason"], serde_json::json!(["no_payload"]));
}

#[tokio::test]
async fn post_with_a_form_body_is_read_like_a_query() {
    let h = harness(0);
    let req = Request::post("/")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(
            "Action=DescribeInternetOpenPort&Version=2017-12-07&Port=443&PageSize=1",
        ))
        .unwrap();
    let v = assert_seed_shape(&h.send(req).await);
    assert_eq!(v["PageInfo"]["TotalCount"], 1);
    assert_eq!(v["PageInfo"]["PageSize"], 1);
    assert_eq!(v["DataList"][0]["Port"], 443);
}

#[tokio::test]
async fn post_with_query_and_empty_body_as_the_sdk_sends_it() {
    let h = harness(0);
    let req = Request::post(format!(
        "{PORT_QUERY}&ServiceName=ssh&SourceIp=114.242.33.1"
    ))
    .header("content-type", "application/x-www-form-urlencoded")
    .header("content-length", "0")
    .body(Body::empty())
    .unwrap();
    let v = assert_seed_shape(&h.send(req).await);
    let ports: Vec<&Value> = v["DataList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["Port"])
        .collect();
    assert_eq!(ports, [&Value::from(22)]);
}

#[tokio::test]
async fn action_and_version_from_acs_headers() {
    let h = harness(0);
    let req = Request::post("/?PageSize=2&CurrentPage=2")
        .header("x-acs-action", "DescribeInternetOpenPort")
        .header("x-acs-version", "2017-12-07")
        .body(Body::empty())
        .unwrap();
    let v = assert_seed_shape(&h.send(req).await);
    assert_eq!(v["PageInfo"]["CurrentPage"], 2);
    assert_eq!(v["DataList"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn version_may_be_left_out_and_unknown_parameters_are_ignored() {
    let h = harness(0);
    let reply = h
        .get("/?Action=DescribeInternetOpenPort&RegionId=cn-hangzhou&Format=JSON")
        .await;
    assert_seed_shape(&reply);
}

#[tokio::test]
async fn every_supported_action_is_dispatched() {
    let h = harness(0);
    for action in crate::api::actions::SUPPORTED {
        let reply = h.get(&format!("/?Action={action}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{action}: {}", reply.text());
    }
}

#[tokio::test]
async fn each_request_gets_its_own_request_id_in_body_and_header() {
    let h = harness(0);
    let a = h.get(PORT_QUERY).await;
    let b = h.get(PORT_QUERY).await;
    let (ia, ib) = (a.json()["RequestId"].clone(), b.json()["RequestId"].clone());
    assert_ne!(ia, ib);
    assert_eq!(a.headers["x-acs-request-id"], ia.as_str().unwrap());
    assert_eq!(ia.as_str().unwrap().len(), 36);
}
