use std::net::IpAddr;

use proptest::prelude::*;

use super::*;
use crate::flow::strategies;
use crate::testkit;

fn source() -> SourcePosition {
    SourcePosition {
        topic: "flows".into(),
        partition: 7,
        offset: 123_456_789,
        index: 2,
    }
}

fn encoded(flow: &Flow, source: &SourcePosition) -> Vec<u8> {
    let mut out = Vec::new();
    encode(flow, source, &mut out);
    out
}

#[test]
fn a_flow_and_its_source_come_back_as_they_went() {
    let flow = Flow {
        tcp_flags: 0x1b,
        bytes: 1_500_000,
        packets: 1_000,
        time_ms: testkit::T0 + 1,
        label: Some("TLS".into()),
        ..testkit::flow("198.51.100.7", 50000, "203.0.113.5", 443)
    };
    assert_eq!(decode(&encoded(&flow, &source())), Ok((flow, source())));
}

#[test]
fn an_ipv4_flow_without_a_label_takes_under_40_bytes() {
    let flow = testkit::flow("198.51.100.7", 50000, "203.0.113.5", 443);
    let value = encoded(&flow, &source());
    assert!(value.len() < 40, "{} bytes", value.len());
}

#[test]
fn the_key_is_the_asset_address() {
    let v4: IpAddr = "203.0.113.5".parse().unwrap();
    let v6: IpAddr = "2001:db8:100::5".parse().unwrap();
    assert_eq!(key(v4), vec![203, 0, 113, 5]);
    assert_eq!(key(v6).len(), 16);
    assert_eq!(key(v6)[..4], [0x20, 0x01, 0x0d, 0xb8]);
}

#[test]
fn every_truncation_is_refused_and_names_the_field() {
    let flow = Flow {
        label: Some("HTTP".into()),
        ..testkit::flow("2001:db8::1", 50000, "2001:db8:100::5", 80)
    };
    let value = encoded(&flow, &source());
    for len in 0..value.len() {
        match decode(&value[..len]) {
            Err(RoutedError::Truncated(at, what)) => {
                assert_eq!(at, len);
                assert!(!what.is_empty());
            }
            other => panic!("{len} bytes of {}: {other:?}", value.len()),
        }
    }
}

#[test]
fn another_version_trailing_bytes_and_bad_text_are_refused() {
    let flow = Flow {
        label: Some("HTTP".into()),
        ..testkit::flow("198.51.100.7", 50000, "203.0.113.5", 80)
    };
    let value = encoded(&flow, &source());

    let mut newer = value.clone();
    newer[0] = 2;
    assert_eq!(decode(&newer), Err(RoutedError::Version(2)));
    assert!(RoutedError::Version(2).to_string().contains("version 2"));

    let mut longer = value.clone();
    longer.extend_from_slice(&[0, 0]);
    assert_eq!(decode(&longer), Err(RoutedError::Trailing(2)));

    // The label's first byte, made invalid UTF-8.
    let label_at = value
        .windows(4)
        .position(|w| w == b"HTTP")
        .expect("the label is in the value");
    let mut bad = value.clone();
    bad[label_at] = 0xff;
    assert_eq!(decode(&bad), Err(RoutedError::NotUtf8("label")));
}

#[test]
fn a_negative_partition_or_offset_does_not_come_back_as_another_number() {
    let flow = testkit::flow("198.51.100.7", 50000, "203.0.113.5", 80);
    for source in [
        SourcePosition {
            partition: -1,
            ..source()
        },
        SourcePosition {
            offset: -1,
            ..source()
        },
    ] {
        assert!(matches!(
            decode(&encoded(&flow, &source)),
            Err(RoutedError::OutOfRange(_))
        ));
    }
}

proptest! {
    #[test]
    fn any_flow_round_trips(
        flow in strategies::flow(i64::MIN / 2..=i64::MAX / 2, proptest::option::of("[a-zA-Z0-9 ._-]{0,40}")),
        topic in "[a-z0-9._-]{1,60}",
        partition in 0..=i32::MAX,
        offset in 0..=i64::MAX,
        index in any::<u32>(),
    ) {
        let source = SourcePosition { topic, partition, offset, index };
        prop_assert_eq!(decode(&encoded(&flow, &source)), Ok((flow, source)));
    }

    #[test]
    fn any_bytes_are_read_or_refused_without_a_panic(value in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(&value);
    }
}
