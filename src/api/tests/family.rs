//! The sibling Actions over HTTP: each answers with the field names and
//! JSON types of its SDK response model, from the same state as
//! `DescribeInternetOpenPort`.

use super::*;

/// JSON type of a field, as the SDK model declares it.
#[derive(Clone, Copy)]
enum Kind {
    Int,
    Str,
    Bool,
    StrList,
}

use Kind::*;

/// `DescribeInternetOpenIpResponseBodyDataList`, less `SrcIpCnt`.
const IP_FIELDS: &[(&str, Kind)] = &[
    ("AclRecommendDetail", Str),
    ("AssetsInstanceId", Str),
    ("AssetsName", Str),
    ("AssetsType", Str),
    ("DetailNum", Int),
    ("HasAclRecommend", Bool),
    ("InBytes", Int),
    ("MemberUid", Int),
    ("OutBytes", Int),
    ("PortList", StrList),
    ("PublicIp", Str),
    ("RegionNo", Str),
    ("RiskLevel", Int),
    ("RiskReason", Str),
    ("ServiceNameList", StrList),
    ("SrcIpCnt", Int),
    ("TotalBytes", Int),
    ("TotalReplyBytes", Int),
    ("TrafficPercent1Day", Str),
    ("TrafficPercent30Day", Str),
    ("TrafficPercent7Day", Str),
    ("UnknownReason", StrList),
];

/// `DescribeInternetOpenServiceResponseBodyDataList` (ServiceName as a string).
const SERVICE_FIELDS: &[(&str, Kind)] = &[
    ("DetailNum", Int),
    ("InBytes", Int),
    ("OutBytes", Int),
    ("PortList", StrList),
    ("ProbRisk", Str),
    ("ProbRiskDesc", Str),
    ("Protocol", Str),
    ("PublicIpNum", Int),
    ("RiskLevel", Int),
    ("RiskReason", Str),
    ("ServiceName", Str),
    ("SuggestLevel", Int),
    ("TotalBytes", Int),
    ("TrafficPercent1Day", Str),
    ("TrafficPercent30Day", Str),
    ("TrafficPercent7Day", Str),
    ("UnknownReason", StrList),
];

/// `DescribeInternetOpenDetailResponseBodyDataList`.
const DETAIL_FIELDS: &[(&str, Kind)] = &[
    ("AssetsInstanceId", Str),
    ("AssetsName", Str),
    ("AssetsType", Str),
    ("Id", Str),
    ("InBytes", Int),
    ("OutBytes", Int),
    ("Port", Int),
    ("ProbRisk", Str),
    ("ProbRiskDesc", Str),
    ("Protocol", Str),
    ("PublicIp", Str),
    ("RegionNo", Str),
    ("RiskLevel", Int),
    ("RiskReason", Str),
    ("ServiceName", Str),
    ("SuggestLevel", Int),
    ("TotalBytes", Int),
    ("TrafficPercent1Day", Str),
    ("TrafficPercent30Day", Str),
    ("TrafficPercent7Day", Str),
    ("UnknownReason", StrList),
];

/// `DescribeInternetOpenStatisticResponseBody`.
const STATISTIC_FIELDS: &[(&str, Kind)] = &[
    ("InternetIpNum", Int),
    ("InternetPortNum", Int),
    ("InternetRiskIpNum", Int),
    ("InternetRiskPortNum", Int),
    ("InternetRiskServiceNum", Int),
    ("InternetServiceNum", Int),
    ("InternetSlbIpNum", Int),
    ("InternetSlbIpPortNum", Int),
    ("InternetUnprotectedPortNum", Int),
    ("RequestId", Str),
];

fn assert_fields(obj: &Value, fields: &[(&str, Kind)]) {
    let map = obj.as_object().unwrap();
    let mut keys: Vec<&str> = map.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
    want.sort_unstable();
    assert_eq!(keys, want, "{obj}");
    for (key, kind) in fields {
        let v = &obj[*key];
        let ok = match kind {
            Int => v.is_u64(),
            Str => v.is_string(),
            Bool => v.is_boolean(),
            StrList => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        };
        assert!(ok, "{key}: {v}");
    }
}

async fn paged(h: &Harness, action: &str, query: &str, fields: &[(&str, Kind)]) -> Value {
    let reply = h
        .get(&format!(
            "/?Action={action}&Version=2017-12-07&Lang=en&{query}"
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let v = reply.json();
    let mut top: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    top.sort_unstable();
    assert_eq!(top, ["DataList", "PageInfo", "RequestId"]);
    for row in v["DataList"].as_array().unwrap() {
        assert_fields(row, fields);
    }
    v
}

fn column<'v>(v: &'v Value, key: &str) -> Vec<&'v Value> {
    v["DataList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r[key])
        .collect()
}

#[tokio::test]
async fn open_ip_lists_each_address_with_its_ports() {
    let h = harness(0);
    let v = paged(&h, "DescribeInternetOpenIp", "PageSize=100", IP_FIELDS).await;
    assert_eq!(v["PageInfo"]["TotalCount"], 5);
    // RiskLevel desc, TotalBytes desc: MySQL (3), SSH (2), then by bytes.
    let ips = column(&v, "PublicIp");
    assert_eq!(
        ips,
        [
            "203.0.113.13",
            "203.0.113.10",
            "203.0.113.14",
            "203.0.113.11",
            "203.0.113.12"
        ]
    );
    let https = &v["DataList"][3];
    assert_eq!(https["PortList"], serde_json::json!(["443"]));
    assert_eq!(https["ServiceNameList"], serde_json::json!(["HTTPS"]));
    assert_eq!(https["TotalBytes"], 100_000);
    assert_eq!(https["TotalReplyBytes"], 90_000);
    assert_eq!(https["DetailNum"], 1);
    assert_eq!(https["AssetsType"], "");
    assert_eq!(https["HasAclRecommend"], false);
    let unknown = &v["DataList"][2];
    assert_eq!(unknown["UnknownReason"], serde_json::json!(["no_payload"]));

    let v = paged(
        &h,
        "DescribeInternetOpenIp",
        "PublicIp=203.0.113.11",
        IP_FIELDS,
    )
    .await;
    assert_eq!(column(&v, "PublicIp"), ["203.0.113.11"]);
    let v = paged(&h, "DescribeInternetOpenIp", "Port=22", IP_FIELDS).await;
    assert_eq!(column(&v, "PublicIp"), ["203.0.113.10"]);
    let v = paged(
        &h,
        "DescribeInternetOpenIp",
        "RegionNo=cn-hangzhou",
        IP_FIELDS,
    )
    .await;
    assert_eq!(v["PageInfo"]["TotalCount"], 0, "no cloud inventory here");
}

#[tokio::test]
async fn open_service_counts_addresses_per_service() {
    let h = harness(0);
    let v = paged(
        &h,
        "DescribeInternetOpenService",
        "PageSize=100",
        SERVICE_FIELDS,
    )
    .await;
    assert_eq!(
        column(&v, "ServiceName"),
        ["MySQL", "SSH", "Unknown", "HTTPS"]
    );
    let https = &v["DataList"][3];
    assert_eq!(https["PublicIpNum"], 2);
    assert_eq!(https["DetailNum"], 2);
    assert_eq!(https["PortList"], serde_json::json!(["443"]));
    assert_eq!(https["Protocol"], "tcp");
    assert_eq!(https["TrafficPercent1Day"], "87.9");
    let v = paged(
        &h,
        "DescribeInternetOpenService",
        "ServiceNameFuzzy=sq",
        SERVICE_FIELDS,
    )
    .await;
    assert_eq!(column(&v, "ServiceName"), ["MySQL"]);
    let v = paged(
        &h,
        "DescribeInternetOpenService",
        "SuggestLevel=-1",
        SERVICE_FIELDS,
    )
    .await;
    assert_eq!(v["PageInfo"]["TotalCount"], 0, "nothing is in assessment");
}

#[tokio::test]
async fn open_detail_lists_endpoints_in_sort_list_order() {
    let h = harness(0);
    let v = paged(
        &h,
        "DescribeInternetOpenDetail",
        "PageSize=100",
        DETAIL_FIELDS,
    )
    .await;
    assert_eq!(v["PageInfo"]["TotalCount"], 5);
    assert_eq!(v["DataList"][0]["Id"], "203.0.113.13:3306/tcp");
    assert_eq!(v["DataList"][0]["ServiceName"], "MySQL");
    let v = paged(
        &h,
        "DescribeInternetOpenDetail",
        "SortList.1.SortKey=Port&SortList.1.Dir=desc&SortList.2.SortKey=PublicIp&SortList.2.Dir=desc",
        DETAIL_FIELDS,
    )
    .await;
    assert_eq!(
        column(&v, "Id"),
        [
            "203.0.113.14:40000/tcp",
            "203.0.113.13:3306/tcp",
            "203.0.113.12:443/tcp",
            "203.0.113.11:443/tcp",
            "203.0.113.10:22/tcp"
        ]
    );
    let v = paged(
        &h,
        "DescribeInternetOpenDetail",
        "PublicIp=203.0.113.12&Port=443&ServiceName=https",
        DETAIL_FIELDS,
    )
    .await;
    assert_eq!(column(&v, "Id"), ["203.0.113.12:443/tcp"]);
    let reply = h
        .get("/?Action=DescribeInternetOpenDetail&SortList.1.SortKey=Bytes")
        .await;
    assert_eq!(reply.error_code(), "ErrorParameters");
    assert!(
        reply.message().contains("SortList.1.SortKey"),
        "{}",
        reply.message()
    );
}

#[tokio::test]
async fn open_statistic_counts_what_the_siblings_list() {
    let h = harness(0);
    let reply = h
        .get("/?Action=DescribeInternetOpenStatistic&Version=2017-12-07")
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let v = reply.json();
    assert_fields(&v, STATISTIC_FIELDS);
    assert_eq!(
        reply.headers["x-acs-request-id"],
        v["RequestId"].as_str().unwrap()
    );
    assert_eq!(v["InternetIpNum"], 5);
    assert_eq!(v["InternetPortNum"], 4);
    assert_eq!(v["InternetServiceNum"], 4);
    assert_eq!(v["InternetRiskIpNum"], 1);
    assert_eq!(v["InternetRiskPortNum"], 1);
    assert_eq!(v["InternetRiskServiceNum"], 1);
    assert_eq!(v["InternetSlbIpNum"], 0);
    // A range with nothing in it.
    let reply = h
        .get("/?Action=DescribeInternetOpenStatistic&StartTime=0&EndTime=3600")
        .await;
    assert_eq!(reply.json()["InternetIpNum"], 0);
}

#[tokio::test]
async fn every_action_is_counted_under_its_own_label() {
    let h = harness(0);
    for action in crate::query::Action::NAMES {
        let reply = h.get(&format!("/?Action={action}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{action}");
    }
    let text = h.metrics_text();
    for action in crate::query::Action::NAMES {
        let line = format!(r#"exposure_api_requests_total{{action="{action}",code="Success"}} 1"#);
        assert!(text.contains(&line), "{line}");
    }
}
