//! Exposure changes end to end, against `exposure run` in its own process
//! fed through a broker (librdkafka's mock cluster), over real sockets on
//! 127.0.0.1: an endpoint answering for the first time arrives on an open
//! `GET /events` stream; a reconnect with `Last-Event-ID` gets exactly what
//! it missed; `DescribeExposureChanges` answers the same events (same
//! `EventId`), filtered and paged, and names a bad parameter; an open stream
//! does not hold up the service's stop.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    conversation, goflow2_pb, produce, producer, rand_name, wait_until, MockBroker, Service,
    SseStream,
};

/// How long an event may take from the broker to a client.
const WITHIN: Duration = Duration::from_secs(30);

/// A service consuming a fresh topic of its own mock broker.
fn service() -> (MockBroker, Service, String) {
    let topic = rand_name("flows");
    let broker = MockBroker::start(&topic, 1);
    let service = Service::start(&broker.bootstrap, &[&topic], &rand_name("group"), "");
    (broker, service, topic)
}

/// A client talking to `server:port` a minute ago, and the server answering.
fn answer(broker: &MockBroker, topic: &str, server: &str, port: u16) {
    let at = exposure::state::wall_now_ms() - 60_000;
    let records: Vec<(String, Vec<u8>)> = conversation(server, port, "198.51.100.1", 100, 200, at)
        .iter()
        .map(|f| (f.dst_addr.to_string(), goflow2_pb(f)))
        .collect();
    produce(&producer(&broker.bootstrap), topic, &records);
}

/// An open stream, checked to be one.
fn open_stream(service: &Service, headers: &[(&str, &str)]) -> SseStream {
    let stream = SseStream::connect(service.api, "/events", headers);
    assert_eq!(stream.status, 200, "{:?}", stream.headers);
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    assert_eq!(stream.header("cache-control"), Some("no-cache"));
    stream
}

/// The next event of `stream`, an event object with its Seq as `id`.
fn next_event(stream: &mut SseStream, service: &Service) -> Value {
    let m = stream
        .next_event(WITHIN)
        .unwrap_or_else(|| panic!("the stream ended\n{}", service.log()));
    assert_eq!(m.event, None, "{m:?}");
    let event = m.json();
    assert_eq!(m.id.as_deref(), Some(event["Seq"].to_string().as_str()));
    event
}

fn event_ids(answer: &Value) -> Vec<String> {
    answer["DataList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["EventId"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn opened_events_stream_resume_and_match_describe_exposure_changes() {
    let (broker, service, topic) = service();
    let mut stream = open_stream(&service, &[]);

    // Redis answers for the first time: opened, on the open stream.
    answer(&broker, &topic, "203.0.113.10", 6379);
    let redis = next_event(&mut stream, &service);
    assert_eq!(redis["Kind"], "opened");
    assert_eq!(redis["Ip"], "203.0.113.10");
    assert_eq!(
        (redis["Port"].as_u64(), redis["Protocol"].as_str()),
        (Some(6379), Some("tcp"))
    );
    assert_eq!(redis["ServiceNameList"], serde_json::json!(["Redis"]));
    assert_eq!(redis["Expected"], false);
    drop(stream);

    // Two more while no client listens.
    answer(&broker, &topic, "203.0.113.11", 22);
    answer(&broker, &topic, "203.0.113.12", 3306);
    let all = wait_until(
        WITHIN,
        Duration::from_millis(50),
        || match service.exposure_changes("") {
            v if v["PageInfo"]["TotalCount"] == 3 => Ok(v),
            v => Err(v),
        },
        |v| format!("not three events: {v}\n{}", service.log()),
    );

    // A reconnect from the last id seen gets exactly the two it missed.
    let seen = redis["Seq"].to_string();
    let mut stream = open_stream(&service, &[("Last-Event-ID", &seen)]);
    let missed = [
        next_event(&mut stream, &service),
        next_event(&mut stream, &service),
    ];
    assert!(
        stream.quiet_for(Duration::from_millis(500)),
        "more than the missed events were replayed"
    );
    let seq = |e: &Value| e["Seq"].as_u64().unwrap();
    assert_eq!(
        [seq(&missed[0]), seq(&missed[1])],
        [seq(&redis) + 1, seq(&redis) + 2]
    );

    // The Action lists the same events, newest first, with the same ids.
    let streamed: Vec<String> = [&missed[1], &missed[0], &redis]
        .iter()
        .map(|e| e["EventId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(event_ids(&all), streamed);
    assert_eq!(all["DataList"][2], redis);
    assert_eq!(all["DataList"][0], missed[1]);
    // Filtered and paged.
    let only_redis = service.exposure_changes("Port=6379&Kind=opened");
    assert_eq!(event_ids(&only_redis), [streamed[2].clone()]);
    assert_eq!(
        service.exposure_changes("Kind=closed")["PageInfo"]["TotalCount"],
        0
    );
    let page = service.exposure_changes("PageSize=1&CurrentPage=2");
    assert_eq!(event_ids(&page), [streamed[1].clone()]);
    assert_eq!(
        page["PageInfo"],
        serde_json::json!({"CurrentPage": 2, "PageSize": 1, "TotalCount": 3})
    );
    // A new event reaches the resumed stream too.
    answer(&broker, &topic, "203.0.113.13", 443);
    let https = next_event(&mut stream, &service);
    assert_eq!(
        (seq(&https), &https["Port"]),
        (seq(&redis) + 3, &Value::from(443))
    );
}

#[test]
fn bad_parameters_are_named_and_an_open_stream_does_not_hold_up_the_stop() {
    let (_broker, mut service, _topic) = service();
    for (query, named) in [
        ("StartTime=abc", "StartTime"),
        ("Kind=bogus", "Kind"),
        ("Expected=maybe", "Expected"),
        ("StartTime=200&EndTime=100", "EndTime"),
    ] {
        let (status, body) = service.get(&format!("/?Action=DescribeExposureChanges&{query}"));
        assert_eq!(status, 400, "{query}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["Code"], "ErrorParameters", "{query}");
        let message = v["Message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("invalid {named}:")),
            "{query}: {message}"
        );
    }
    let refused = SseStream::connect(service.api, "/events", &[("Last-Event-ID", "abc")]);
    assert_eq!(refused.status, 400);
    let v = refused.error_body();
    assert_eq!(v["Code"], "ErrorParameters");
    assert!(
        v["Message"].as_str().unwrap().contains("Last-Event-ID"),
        "{v}"
    );

    // SIGTERM with a stream open: the stream ends, so the API server stops
    // by itself (no need for the stop's deadline) and the process exits.
    let mut stream = open_stream(&service, &[]);
    let started = Instant::now();
    let (code, _) = service.terminate();
    let log = service.log();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the stop took {:?}",
        started.elapsed()
    );
    assert!(
        log.contains("api stopped"),
        "the API did not stop by itself:\n{log}"
    );
    assert!(!log.contains("api server:"), "{log}");
    assert_eq!(stream.next_event(Duration::from_secs(5)), None);
}
