//! goflow2 `-format=json`: one `flowpb.FlowMessage` per line with the proto's
//! snake_case names. goflow2 renders addresses as text, `proto` and `etype`
//! as names (`"TCP"`, `"IPv4"`; `""` when it has no name) and times as
//! nanosecond numbers, or as RFC 3339 text with the `datetimenano` renderer.

use super::json::Record;
use super::value;
use super::{DecodeError, Flow, Parts};

/// Reads a goflow2 flow from a parsed record. `proto` is required (without it
/// a flow cannot be classified); ports, flags and counters default to 0.
pub(super) fn interpret(
    record: &Record<'_>,
    fallback_time_ms: Option<i64>,
) -> Result<Flow, DecodeError> {
    Parts {
        src_addr: value::address(&record.src_addr, "src_addr")?,
        dst_addr: value::address(&record.dst_addr, "dst_addr")?,
        src_port: value::port(&record.src_port, "src_port")?,
        dst_port: value::port(&record.dst_port, "dst_port")?,
        proto: value::proto(&record.proto, "proto")?,
        tcp_flags: value::flags(&record.tcp_flags, "tcp_flags")?,
        bytes: value::counter(&record.bytes, "bytes")?,
        packets: value::counter(&record.packets, "packets")?,
        sampling_rate: value::counter(&record.sampling_rate, "sampling_rate")?,
        end_ms: value::goflow2_time(&record.time_flow_end_ns, "time_flow_end_ns")?,
        start_ms: value::goflow2_time(&record.time_flow_start_ns, "time_flow_start_ns")?,
        received_ms: value::goflow2_time(&record.time_received_ns, "time_received_ns")?,
        label: None,
    }
    .into_flow(fallback_time_ms)
}

/// goflow2's names for protocols (`protoName` in its renderer).
fn proto_name(proto: u8) -> Option<&'static str> {
    match proto {
        1 => Some("ICMP"),
        6 => Some("TCP"),
        17 => Some("UDP"),
        58 => Some("ICMPv6"),
        132 => Some("SCTP"),
        _ => None,
    }
}

/// One goflow2 JSON line (no trailing newline) for `flow`, keys in goflow2's
/// order. A protocol goflow2 has no name for is written as its number (goflow2
/// would write `""`), so every line decodes back to the same flow.
pub fn encode_goflow2_json(flow: &Flow) -> String {
    let ns = u64::try_from(flow.time_ms)
        .unwrap_or(0)
        .saturating_mul(1_000_000);
    let etype = if flow.src_addr.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    };
    let proto = match proto_name(flow.proto) {
        Some(name) => format!("\"{name}\""),
        None => flow.proto.to_string(),
    };
    format!(
        "{{\"type\":\"IPFIX\",\"time_received_ns\":{ns},\"sequence_num\":0,\"sampling_rate\":1,\
         \"time_flow_start_ns\":{ns},\"time_flow_end_ns\":{ns},\"bytes\":{},\"packets\":{},\
         \"src_addr\":\"{}\",\"dst_addr\":\"{}\",\"etype\":\"{etype}\",\"proto\":{proto},\
         \"src_port\":{},\"dst_port\":{},\"tcp_flags\":{}}}",
        flow.bytes,
        flow.packets,
        flow.src_addr,
        flow.dst_addr,
        flow.src_port,
        flow.dst_port,
        flow.tcp_flags,
    )
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::flow::{decode, Format, Outcome, PROTO_TCP, PROTO_UDP};
    use proptest::prelude::*;
    use std::net::IpAddr;

    /// A goflow2 v2 line with its default field list (the shape goflow2
    /// prints for an IPFIX flow), addresses from documentation ranges.
    pub(in crate::flow) const GOFLOW2_IPFIX_LINE: &str = r#"{"type":"IPFIX","time_received_ns":1767324720787460121,"sequence_num":65361,"sampling_rate":0,"sampler_address":"192.0.2.1","time_flow_start_ns":1767324719000000000,"time_flow_end_ns":1767324720000000000,"bytes":143,"packets":1,"src_addr":"198.51.100.7","dst_addr":"203.0.113.10","etype":"IPv4","proto":"UDP","src_port":53,"dst_port":55743,"in_if":11,"out_if":12,"src_mac":"42:61:64:55:53:42","dst_mac":"48:6f:73:74:50:43","src_vlan":0,"dst_vlan":0,"vlan_id":0,"ip_tos":0,"forwarding_status":0,"ip_ttl":0,"ip_flags":0,"tcp_flags":0,"icmp_type":0,"icmp_code":0,"ipv6_flow_label":0,"fragment_id":0,"fragment_offset":0,"src_as":0,"dst_as":0,"next_hop":"0.0.0.0","next_hop_as":0,"src_net":"0.0.0.0/0","dst_net":"0.0.0.0/0","bgp_next_hop":"","bgp_communities":[],"as_path":[],"mpls_ttl":[],"mpls_label":[],"mpls_ip":[],"observation_domain_id":0,"observation_point_id":0,"layer_stack":[],"layer_size":[],"ipv6_routing_header_addresses":[],"ipv6_routing_header_seg_left":0}"#;

    fn one(line: &str) -> Result<Flow, DecodeError> {
        let mut out = Vec::new();
        assert_eq!(
            decode(Format::Goflow2Json, line.as_bytes(), None, &mut out)?,
            Outcome::Flows
        );
        assert_eq!(out.len(), 1);
        Ok(out.remove(0))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn real_goflow2_v2_line_decodes() {
        let flow = one(GOFLOW2_IPFIX_LINE).unwrap();
        assert_eq!(flow.src_addr, ip("198.51.100.7"));
        assert_eq!(flow.dst_addr, ip("203.0.113.10"));
        assert_eq!(
            (flow.src_port, flow.dst_port, flow.proto),
            (53, 55743, PROTO_UDP)
        );
        assert_eq!((flow.bytes, flow.packets, flow.tcp_flags), (143, 1, 0));
        assert_eq!(flow.time_ms, 1_767_324_720_000);
        assert_eq!(flow.label, None);
    }

    #[test]
    fn proto_as_name_or_number() {
        let with = |proto: &str| {
            one(&GOFLOW2_IPFIX_LINE.replace(r#""proto":"UDP""#, &format!(r#""proto":{proto}"#)))
        };
        assert_eq!(with(r#""TCP""#).unwrap().proto, PROTO_TCP);
        assert_eq!(with(r#""tcp""#).unwrap().proto, PROTO_TCP);
        assert_eq!(with("6").unwrap().proto, PROTO_TCP);
        assert_eq!(with(r#""ICMPv6""#).unwrap().proto, 58);
        assert_eq!(with(r#""""#).unwrap().proto, value::PROTO_UNNAMED);
        assert_eq!(with("256").unwrap_err().reason(), "invalid_value");
    }

    #[test]
    fn missing_proto_is_rejected() {
        let line = GOFLOW2_IPFIX_LINE.replace(r#""proto":"UDP","#, "");
        assert_eq!(one(&line).unwrap_err().reason(), "missing_field");
    }

    #[test]
    fn ipv6_sflow_line_with_sampling_and_received_time_only() {
        let line = r#"{"type":"SFLOW_5","time_received_ns":1763848240427771809,"sampling_rate":1000,"sampler_address":"2001:db8:8:50::23","bytes":1512,"packets":1,"src_addr":"2001:db8:26::4","dst_addr":"2001:db8:20::4","etype":"IPv6","proto":"TCP","src_port":30044,"dst_port":443,"tcp_flags":18,"layer_stack":["Ethernet","MPLS","IPv6","TCP"]}"#;
        let flow = one(line).unwrap();
        assert_eq!(flow.src_addr, ip("2001:db8:26::4"));
        assert_eq!((flow.bytes, flow.packets), (1_512_000, 1000));
        assert_eq!(flow.tcp_flags, 18);
        assert_eq!(flow.time_ms, 1_763_848_240_427);
    }

    #[test]
    fn times_rendered_as_rfc3339_text_decode() {
        let line = GOFLOW2_IPFIX_LINE.replace(
            "\"time_flow_end_ns\":1767324720000000000",
            "\"time_flow_end_ns\":\"2026-01-02T03:32:00.5Z\"",
        );
        assert_eq!(one(&line).unwrap().time_ms, 1_767_324_720_500);
        let bad = GOFLOW2_IPFIX_LINE.replace(
            "\"time_flow_end_ns\":1767324720000000000",
            "\"time_flow_end_ns\":\"soon\"",
        );
        assert_eq!(one(&bad).unwrap_err().reason(), "invalid_value");
    }

    #[test]
    fn ipv4_mapped_address_text_becomes_ipv4() {
        let line = GOFLOW2_IPFIX_LINE.replace("\"198.51.100.7\"", "\"::ffff:198.51.100.7\"");
        assert_eq!(one(&line).unwrap().src_addr, ip("198.51.100.7"));
    }

    #[test]
    fn escaped_address_text_decodes() {
        let line = GOFLOW2_IPFIX_LINE.replace("\"198.51.100.7\"", "\"198.51.100.\\u0037\"");
        assert_eq!(one(&line).unwrap().src_addr, ip("198.51.100.7"));
    }

    #[test]
    fn invalid_address_text_is_rejected() {
        let line = GOFLOW2_IPFIX_LINE.replace("\"198.51.100.7\"", "\"198.51.100.300\"");
        assert_eq!(one(&line).unwrap_err().reason(), "invalid_address");
        let empty = GOFLOW2_IPFIX_LINE.replace("\"198.51.100.7\"", "\"\"");
        assert_eq!(one(&empty).unwrap_err().reason(), "missing_field");
    }

    #[test]
    fn negative_or_fractional_counters_are_rejected() {
        for (from, to) in [
            ("\"bytes\":143", "\"bytes\":-1"),
            ("\"packets\":1", "\"packets\":1.5"),
        ] {
            let line = GOFLOW2_IPFIX_LINE.replace(from, to);
            assert_eq!(one(&line).unwrap_err().reason(), "invalid_value", "{to}");
        }
    }

    #[test]
    fn numeric_strings_are_accepted() {
        let line = GOFLOW2_IPFIX_LINE
            .replace("\"bytes\":143", "\"bytes\":\"143\"")
            .replace("\"src_port\":53", "\"src_port\":\"53\"");
        let flow = one(&line).unwrap();
        assert_eq!((flow.bytes, flow.src_port), (143, 53));
    }

    #[test]
    fn port_above_65535_is_rejected() {
        let line = GOFLOW2_IPFIX_LINE.replace("\"dst_port\":55743", "\"dst_port\":65536");
        assert_eq!(one(&line).unwrap_err().reason(), "invalid_value");
    }

    #[test]
    fn truncated_json_is_malformed() {
        let cut = &GOFLOW2_IPFIX_LINE[..GOFLOW2_IPFIX_LINE.len() / 2];
        assert_eq!(one(cut).unwrap_err().reason(), "malformed_json");
    }

    fn arb_flow() -> impl Strategy<Value = Flow> {
        crate::flow::strategies::flow(1..=10_000_000_000_000, Just(None))
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut out = Vec::new();
            let result = decode(Format::Goflow2Json, &bytes, Some(1), &mut out);
            prop_assert!(result.is_ok() || out.is_empty());
        }

        #[test]
        fn arbitrary_json_objects_never_panic(line in r#"\{("(src_addr|dst_addr|proto|bytes|tcp_flags|time_flow_end_ns)":("[0-9a-zA-Z:.-]{0,12}"|-?[0-9.e]{1,22}|\[\]|null|true),?){0,8}\}"#) {
            let mut out = Vec::new();
            let _ = decode(Format::Goflow2Json, line.as_bytes(), None, &mut out);
        }

        #[test]
        fn encode_decode_round_trips(flow in arb_flow()) {
            let line = encode_goflow2_json(&flow);
            let mut out = Vec::new();
            decode(Format::Goflow2Json, line.as_bytes(), None, &mut out).unwrap();
            prop_assert_eq!(out, vec![flow.clone()]);
            let mut auto = Vec::new();
            decode(Format::Auto, line.as_bytes(), None, &mut auto).unwrap();
            prop_assert_eq!(auto, vec![flow]);
        }
    }
}
