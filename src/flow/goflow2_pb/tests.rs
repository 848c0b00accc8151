//! goflow2 protobuf decoding checked against prost, an independent encoder.

use super::*;
use crate::flow::{decode, Format, PROTO_TCP};
use proptest::prelude::*;
use prost::Message;

/// `flowpb.FlowMessage` with goflow2 v2's field numbers and types (the
/// fields used and some others), plus custom fields of the wire types
/// goflow2 does not use: prost encodes it, independently of our encoder.
#[derive(Clone, PartialEq, prost::Message)]
struct FlowMessage {
    #[prost(int32, tag = "1")]
    r#type: i32,
    #[prost(uint64, tag = "110")]
    time_received_ns: u64,
    #[prost(uint32, tag = "4")]
    sequence_num: u32,
    #[prost(uint64, tag = "3")]
    sampling_rate: u64,
    #[prost(bytes = "vec", tag = "11")]
    sampler_address: Vec<u8>,
    #[prost(uint64, tag = "111")]
    time_flow_start_ns: u64,
    #[prost(uint64, tag = "112")]
    time_flow_end_ns: u64,
    #[prost(uint64, tag = "9")]
    bytes: u64,
    #[prost(uint64, tag = "10")]
    packets: u64,
    #[prost(bytes = "vec", tag = "6")]
    src_addr: Vec<u8>,
    #[prost(bytes = "vec", tag = "7")]
    dst_addr: Vec<u8>,
    #[prost(uint32, tag = "30")]
    etype: u32,
    #[prost(uint32, tag = "20")]
    proto: u32,
    #[prost(uint32, tag = "21")]
    src_port: u32,
    #[prost(uint32, tag = "22")]
    dst_port: u32,
    #[prost(uint32, tag = "26")]
    tcp_flags: u32,
    #[prost(uint64, tag = "27")]
    src_mac: u64,
    #[prost(uint32, repeated, tag = "102")]
    as_path: Vec<u32>,
    #[prost(bytes = "vec", repeated, tag = "82")]
    mpls_ip: Vec<Vec<u8>>,
    #[prost(fixed64, tag = "98")]
    custom_fixed64: u64,
    #[prost(sfixed32, tag = "99")]
    custom_fixed32: i32,
    #[prost(string, tag = "1001")]
    custom_text: String,
}

const END_NS: u64 = 1_700_000_000_123_456_789;

fn tcp_v4() -> FlowMessage {
    FlowMessage {
        sampling_rate: 1,
        src_addr: vec![198, 51, 100, 7],
        dst_addr: vec![203, 0, 113, 10],
        bytes: 1500,
        packets: 3,
        proto: 6,
        src_port: 51000,
        dst_port: 443,
        tcp_flags: 0x12,
        etype: 0x800,
        time_flow_end_ns: END_NS,
        time_flow_start_ns: END_NS - 1_000_000_000,
        time_received_ns: END_NS + 2_000_000_000,
        ..FlowMessage::default()
    }
}

fn record(messages: &[FlowMessage]) -> Vec<u8> {
    let mut buf = Vec::new();
    for message in messages {
        message.encode_length_delimited(&mut buf).unwrap();
    }
    buf
}

fn flows(payload: &[u8], fallback_time_ms: Option<i64>) -> Result<Vec<Flow>, DecodeError> {
    let mut out = Vec::new();
    decode(Format::Goflow2Pb, payload, fallback_time_ms, &mut out)?;
    Ok(out)
}

fn reason(payload: &[u8]) -> &'static str {
    flows(payload, Some(1)).unwrap_err().reason()
}

#[test]
fn prost_encoded_ipv4_message_decodes() {
    let flow = flows(&record(&[tcp_v4()]), None).unwrap().remove(0);
    assert_eq!(flow.src_addr, IpAddr::from([198, 51, 100, 7]));
    assert_eq!(flow.dst_addr, IpAddr::from([203, 0, 113, 10]));
    assert_eq!(
        (flow.src_port, flow.dst_port, flow.proto, flow.tcp_flags),
        (51000, 443, PROTO_TCP, 0x12)
    );
    assert_eq!((flow.bytes, flow.packets), (1500, 3));
    assert_eq!(flow.time_ms, 1_700_000_000_123);
    assert_eq!(flow.label, None);
}

#[test]
fn ipv6_addresses_decode() {
    let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let dst: Ipv6Addr = "2001:db8:100::443".parse().unwrap();
    let message = FlowMessage {
        src_addr: src.octets().to_vec(),
        dst_addr: dst.octets().to_vec(),
        etype: 0x86dd,
        ..tcp_v4()
    };
    let flow = flows(&record(&[message]), None).unwrap().remove(0);
    assert_eq!(
        (flow.src_addr, flow.dst_addr),
        (IpAddr::V6(src), IpAddr::V6(dst))
    );
}

#[test]
fn ipv4_mapped_ipv6_addresses_become_ipv4() {
    let mapped = Ipv4Addr::new(198, 51, 100, 7).to_ipv6_mapped();
    let message = FlowMessage {
        src_addr: mapped.octets().to_vec(),
        ..tcp_v4()
    };
    let flow = flows(&record(&[message]), None).unwrap().remove(0);
    assert_eq!(flow.src_addr, IpAddr::from([198, 51, 100, 7]));
}

#[test]
fn unknown_fields_of_every_wire_type_are_skipped() {
    let noisy = FlowMessage {
        r#type: 4,
        sequence_num: 65361,
        sampler_address: vec![192, 0, 2, 1],
        src_mac: 0x4261_6455_5342,
        as_path: vec![64500, 64501, 4_200_000_000],
        mpls_ip: vec![vec![10, 0, 0, 1], vec![]],
        custom_fixed64: u64::MAX,
        custom_fixed32: -7,
        custom_text: "edge-1".into(),
        ..tcp_v4()
    };
    assert_eq!(
        flows(&record(&[noisy]), None).unwrap(),
        flows(&record(&[tcp_v4()]), None).unwrap()
    );
}

#[test]
fn several_messages_in_one_record_decode_in_order() {
    let second = FlowMessage {
        src_port: 1,
        proto: 17,
        ..tcp_v4()
    };
    let third = FlowMessage {
        src_port: 2,
        ..tcp_v4()
    };
    let got = flows(&record(&[tcp_v4(), second, third]), None).unwrap();
    let ports: Vec<(u16, u8)> = got.iter().map(|f| (f.src_port, f.proto)).collect();
    assert_eq!(ports, [(51000, 6), (1, 17), (2, 6)]);
}

#[test]
fn truncated_protobuf_is_rejected() {
    let whole = record(&[tcp_v4()]);
    for cut in 0..whole.len() {
        assert_eq!(reason(&whole[..cut]), "malformed_protobuf", "cut at {cut}");
    }
}

#[test]
fn error_in_a_later_message_leaves_out_as_it_was() {
    let mut payload = record(&[tcp_v4(), tcp_v4()]);
    payload.extend_from_slice(&[3, 0x48, 0xff, 0xff]); // bytes: truncated varint
    let mut out = flows(&record(&[tcp_v4()]), None).unwrap();
    assert!(decode(Format::Goflow2Pb, &payload, None, &mut out).is_err());
    assert_eq!(out.len(), 1);
}

/// A message of the base flow followed by `extra` raw field bytes.
fn with_raw_fields(extra: &[u8]) -> Vec<u8> {
    let mut message = tcp_v4().encode_to_vec();
    message.extend_from_slice(extra);
    let mut payload = Vec::new();
    put_varint(&mut payload, message.len() as u64);
    payload.extend_from_slice(&message);
    payload
}

#[test]
fn groups_and_invalid_wire_types_are_rejected() {
    assert_eq!(
        reason(&with_raw_fields(&[5 << 3 | 3, 5 << 3 | 4])),
        "malformed_protobuf"
    );
    assert_eq!(
        reason(&with_raw_fields(&[5 << 3 | 6, 0])),
        "malformed_protobuf"
    );
    assert_eq!(
        reason(&with_raw_fields(&[5 << 3 | 7, 0])),
        "malformed_protobuf"
    );
    assert_eq!(
        reason(&with_raw_fields(&[0, 1])),
        "malformed_protobuf",
        "field 0"
    );
}

#[test]
fn known_field_with_the_wrong_wire_type_is_rejected() {
    assert_eq!(
        reason(&with_raw_fields(&[(SRC_ADDR << 3) as u8, 1])),
        "malformed_protobuf"
    );
}

#[test]
fn varint_over_64_bits_is_rejected() {
    let mut field = vec![(BYTES << 3) as u8];
    field.extend_from_slice(&[0xff; 9]);
    field.push(0x02);
    assert_eq!(reason(&with_raw_fields(&field)), "malformed_protobuf");
}

#[test]
fn address_not_4_or_16_bytes_is_invalid() {
    let message = FlowMessage {
        src_addr: vec![10, 0, 0, 0, 1],
        ..tcp_v4()
    };
    assert_eq!(reason(&record(&[message])), "invalid_address");
}

#[test]
fn missing_address_is_rejected() {
    let message = FlowMessage {
        dst_addr: vec![],
        ..tcp_v4()
    };
    assert_eq!(reason(&record(&[message])), "missing_field");
}

#[test]
fn port_above_65535_is_rejected() {
    assert_eq!(
        reason(&record(&[FlowMessage {
            dst_port: 65536,
            ..tcp_v4()
        }])),
        "invalid_value"
    );
}

#[test]
fn proto_above_255_is_rejected() {
    assert_eq!(
        reason(&record(&[FlowMessage {
            proto: 256,
            ..tcp_v4()
        }])),
        "invalid_value"
    );
}

#[test]
fn time_is_end_then_start_then_received_then_kafka() {
    let time = |message: FlowMessage, fallback: Option<i64>| {
        flows(&record(&[message]), fallback).map(|f| f[0].time_ms)
    };
    let no_end = FlowMessage {
        time_flow_end_ns: 0,
        ..tcp_v4()
    };
    let received_only = FlowMessage {
        time_flow_start_ns: 0,
        ..no_end.clone()
    };
    let none = FlowMessage {
        time_received_ns: 0,
        ..received_only.clone()
    };
    assert_eq!(time(tcp_v4(), Some(5)).unwrap(), 1_700_000_000_123);
    assert_eq!(time(no_end, Some(5)).unwrap(), 1_699_999_999_123);
    assert_eq!(time(received_only, Some(5)).unwrap(), 1_700_000_002_123);
    assert_eq!(time(none.clone(), Some(5)).unwrap(), 5);
    assert_eq!(time(none, None).unwrap_err().reason(), "no_timestamp");
}

#[test]
fn sampling_rate_multiplies_bytes_and_packets() {
    let flow = flows(
        &record(&[FlowMessage {
            sampling_rate: 1000,
            ..tcp_v4()
        }]),
        None,
    )
    .unwrap()
    .remove(0);
    assert_eq!((flow.bytes, flow.packets), (1_500_000, 3000));
    let unsampled = flows(
        &record(&[FlowMessage {
            sampling_rate: 0,
            ..tcp_v4()
        }]),
        None,
    )
    .unwrap()
    .remove(0);
    assert_eq!((unsampled.bytes, unsampled.packets), (1500, 3));
}

#[test]
fn sampling_overflow_is_rejected() {
    let message = FlowMessage {
        sampling_rate: u64::MAX / 1000,
        ..tcp_v4()
    };
    assert_eq!(reason(&record(&[message])), "invalid_value");
}

#[test]
fn encoded_message_decodes_with_prost() {
    let flow = flows(&record(&[tcp_v4()]), None).unwrap().remove(0);
    let mut buf = Vec::new();
    encode_goflow2_pb(&flow, &mut buf);
    let message = FlowMessage::decode_length_delimited(&buf[..]).unwrap();
    assert_eq!(message.src_addr, [198, 51, 100, 7]);
    assert_eq!(message.dst_addr, [203, 0, 113, 10]);
    assert_eq!(
        (
            message.src_port,
            message.dst_port,
            message.proto,
            message.tcp_flags
        ),
        (51000, 443, 6, 0x12)
    );
    assert_eq!(
        (
            message.bytes,
            message.packets,
            message.sampling_rate,
            message.etype
        ),
        (1500, 3, 1, 0x800)
    );
    let ns = 1_700_000_000_123_000_000;
    assert_eq!(
        (
            message.time_flow_end_ns,
            message.time_flow_start_ns,
            message.time_received_ns
        ),
        (ns, ns, ns)
    );
}

fn arb_flow() -> impl Strategy<Value = Flow> {
    crate::flow::strategies::flow(1..=10_000_000_000_000, Just(None))
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut out = Vec::new();
        let result = decode(Format::Goflow2Pb, &bytes, Some(1), &mut out);
        prop_assert!(result.is_ok() || out.is_empty());
    }

    #[test]
    fn corrupted_records_never_panic(at in 0usize..200, byte in any::<u8>()) {
        let mut payload = record(&[tcp_v4(), FlowMessage { custom_text: "x".into(), ..tcp_v4() }]);
        let at = at % payload.len();
        payload[at] = byte;
        let _ = flows(&payload, None);
    }

    #[test]
    fn encode_decode_round_trips(batch in proptest::collection::vec(arb_flow(), 1..4)) {
        let mut payload = Vec::new();
        for flow in &batch {
            encode_goflow2_pb(flow, &mut payload);
        }
        prop_assert_eq!(flows(&payload, None).unwrap(), batch);
    }
}

/// Reads one varint from `bytes` at 0: its value and the position after it.
fn read_varint(bytes: &[u8]) -> Result<(u64, usize), DecodeError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    r.varint().map(|v| (v, r.pos))
}

proptest! {
    /// Every length from 1 to 10 bytes, as prost encodes it, decodes to its
    /// value whether it ends the buffer or bytes follow (the one-, two- and
    /// word-wide paths, and the byte loop near the end of a buffer).
    #[test]
    fn varints_of_every_length_decode_as_prost_encodes_them(
        bits in 0u32..=64,
        seed: u64,
        trailing in proptest::collection::vec(any::<u8>(), 0..12),
    ) {
        let value = if bits == 0 { 0 } else { seed >> (64 - bits) | 1 << (bits - 1) };
        let mut bytes = Vec::new();
        prost::encoding::encode_varint(value, &mut bytes);
        let len = bytes.len();
        prop_assert_eq!(read_varint(&bytes).unwrap(), (value, len));
        bytes.extend_from_slice(&trailing);
        prop_assert_eq!(read_varint(&bytes).unwrap(), (value, len));
    }
}

#[test]
fn malformed_varints_are_rejected_at_any_length_of_buffer() {
    // Ten bytes whose last carries more than the 64th bit.
    let mut overlong = vec![0xff; 9];
    overlong.push(0x02);
    // Continuation bits to the end: truncated, with 1 to 12 bytes.
    for n in 1..=12 {
        assert!(
            read_varint(&vec![0x80; n]).is_err(),
            "{n} continuation bytes"
        );
    }
    assert!(read_varint(&overlong).is_err());
    overlong.extend_from_slice(&[0, 0, 0]);
    assert!(read_varint(&overlong).is_err());
    // Eleven bytes: the tenth still continues.
    assert!(read_varint(&[0xff; 11]).is_err());
    assert!(read_varint(&[]).is_err());
}
