//! pmacct's JSON (kafka and print plugins of nfacctd, sfacctd and pmacctd):
//! one aggregate per line, keys named after pmacct's primitives.

use super::json::Record;
use super::{time, value};
use super::{DecodeError, Flow, Outcome, Parts};

/// Reads a pmacct record. `event_type` other than `purge` (`purge_init`,
/// `purge_close`, ...) is a marker; a missing `event_type` is a flow.
///
/// Times: end is `timestamp_end`; start is `timestamp_start`, else
/// `stamp_inserted` (the start of the record's time bin); received is
/// `timestamp_arrival`, else `stamp_updated` (when the bin was last
/// written). `ip_proto` is required; `flows` is checked but not kept (a
/// [`Flow`] is one record whatever it aggregates). `class` (an L7 label) is
/// kept unless empty or `unknown`. pmacct's own `label` (a pre_tag_map
/// result, often an object) is not an L7 label and is skipped.
pub(super) fn interpret(
    record: &Record<'_>,
    fallback_time_ms: Option<i64>,
    out: &mut Vec<Flow>,
) -> Result<Outcome, DecodeError> {
    if let Some(event) = value::text(&record.event_type, "event_type")? {
        if !event.eq_ignore_ascii_case("purge") {
            return Ok(Outcome::Marker);
        }
    }
    value::counter(&record.flows, "flows")?;
    let label = value::text(&record.class, "class")?
        .filter(|class| !class.is_empty() && !class.eq_ignore_ascii_case("unknown"))
        .map(Box::from);
    let start_ms = value::pmacct_time(&record.timestamp_start, "timestamp_start")?;
    let bin_start_ms = value::pmacct_time(&record.stamp_inserted, "stamp_inserted")?;
    let arrival_ms = value::pmacct_time(&record.timestamp_arrival, "timestamp_arrival")?;
    let bin_updated_ms = value::pmacct_time(&record.stamp_updated, "stamp_updated")?;
    let flow = Parts {
        src_addr: value::address(&record.ip_src, "ip_src")?,
        dst_addr: value::address(&record.ip_dst, "ip_dst")?,
        src_port: value::port(&record.port_src, "port_src")?,
        dst_port: value::port(&record.port_dst, "port_dst")?,
        proto: value::proto(&record.ip_proto, "ip_proto")?,
        tcp_flags: value::flags(&record.tcp_flags, "tcp_flags")?,
        bytes: value::counter(&record.bytes, "bytes")?,
        packets: value::counter(&record.packets, "packets")?,
        sampling_rate: value::counter(&record.sampling_rate, "sampling_rate")?,
        end_ms: value::pmacct_time(&record.timestamp_end, "timestamp_end")?,
        start_ms: start_ms.or(bin_start_ms),
        received_ms: arrival_ms.or(bin_updated_ms),
        label,
    }
    .into_flow(fallback_time_ms)?;
    out.push(flow);
    Ok(Outcome::Flows)
}

/// One pmacct JSON line (no trailing newline) for `flow`, as the kafka plugin
/// writes it (jansson's `", "` and `": "` separators, `tcp_flags` as a
/// numeric string, `ip_proto` as pmacct's name, times with `timestamps_utc`).
/// `class` is written only when the flow has a label.
pub fn encode_pmacct_json(flow: &Flow) -> String {
    let proto = match value::proto_name(flow.proto) {
        Some(name) => name.to_owned(),
        None => flow.proto.to_string(),
    };
    let class = match &flow.label {
        Some(label) => format!(", \"class\": {}", serde_json::Value::from(&**label)),
        None => String::new(),
    };
    let time = time::format_datetime(flow.time_ms);
    let Flow {
        src_addr,
        dst_addr,
        src_port,
        dst_port,
        tcp_flags,
        packets,
        bytes,
        ..
    } = flow;
    format!(
        "{{\"event_type\": \"purge\"{class}, \"ip_src\": \"{src_addr}\", \
         \"ip_dst\": \"{dst_addr}\", \"port_src\": {src_port}, \"port_dst\": {dst_port}, \
         \"tcp_flags\": \"{tcp_flags}\", \"ip_proto\": \"{proto}\", \"sampling_rate\": 1, \
         \"timestamp_start\": \"{time}\", \"timestamp_end\": \"{time}\", \
         \"packets\": {packets}, \"flows\": 1, \"bytes\": {bytes}, \
         \"writer_id\": \"default_kafka/1\"}}"
    )
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::flow::{decode, tcp_flags, Format, PROTO_TCP, PROTO_UDP};
    use proptest::prelude::*;
    use std::net::IpAddr;

    /// nfacctd kafka plugin with sampling and timestamps, as pmacct 1.7 writes
    /// it (`tcp_flags` a numeric string), addresses from documentation ranges.
    pub(in crate::flow) const NFACCTD_LINE: &str = r#"{"event_type": "purge", "as_src": 64500, "as_dst": 64501, "peer_ip_src": "192.0.2.1", "peer_ip_dst": "", "iface_in": 654, "iface_out": 670, "ip_src": "198.51.100.20", "net_src": "198.51.100.0", "ip_dst": "203.0.113.5", "net_dst": "203.0.113.0", "mask_src": 24, "mask_dst": 17, "port_src": 5242, "port_dst": 443, "tcp_flags": "19", "ip_proto": "tcp", "tos": 0, "sampling_rate": 1000, "timestamp_start": "2018-03-26 05:39:58.592000", "timestamp_end": "2018-03-26 05:40:36.992000", "timestamp_arrival": "2018-03-26 05:40:59.288540", "stamp_inserted": "2018-03-26 05:39:00", "stamp_updated": "2018-03-26 05:41:01", "packets": 1, "flows": 1, "bytes": 52, "writer_id": "default_kafka/23766"}"#;

    /// pmacctd with `kafka_history`: no flow timestamps, only the time bin.
    pub(in crate::flow) const PMACCTD_LINE: &str = r#"{"event_type": "purge", "label": "bdr2.example.net", "as_src": 64500, "as_dst": 64501, "ip_src": "198.51.100.6", "ip_dst": "203.0.113.138", "port_src": 443, "port_dst": 46255, "ip_proto": "tcp", "stamp_inserted": "2019-11-17 23:00:00", "stamp_updated": "2019-11-17 23:03:51", "packets": 248, "bytes": 1075281, "writer_id": "default_kafka/20567"}"#;

    fn one(line: &str) -> Result<Flow, DecodeError> {
        let mut out = Vec::new();
        assert_eq!(
            decode(Format::PmacctJson, line.as_bytes(), None, &mut out)?,
            Outcome::Flows
        );
        assert_eq!(out.len(), 1);
        Ok(out.remove(0))
    }

    fn with(line: &str, from: &str, to: &str) -> String {
        assert!(line.contains(from), "{from}");
        line.replace(from, to)
    }

    #[test]
    fn real_nfacctd_line_decodes() {
        let flow = one(NFACCTD_LINE).unwrap();
        assert_eq!(flow.src_addr, "198.51.100.20".parse::<IpAddr>().unwrap());
        assert_eq!(flow.dst_addr, "203.0.113.5".parse::<IpAddr>().unwrap());
        assert_eq!(
            (flow.src_port, flow.dst_port, flow.proto),
            (5242, 443, PROTO_TCP)
        );
        assert_eq!(
            flow.tcp_flags,
            tcp_flags::FIN | tcp_flags::SYN | tcp_flags::ACK
        );
        assert_eq!(
            (flow.bytes, flow.packets),
            (52_000, 1000),
            "sampling_rate 1000 applies"
        );
        assert_eq!(flow.time_ms, 1_522_042_836_992, "timestamp_end");
    }

    #[test]
    fn stamp_inserted_is_the_start_time_when_there_are_no_timestamps() {
        let flow = one(PMACCTD_LINE).unwrap();
        assert_eq!(
            flow.time_ms, 1_574_031_600_000,
            "stamp_inserted, not stamp_updated"
        );
        assert_eq!((flow.bytes, flow.packets), (1_075_281, 248));
        assert_eq!(
            flow.label, None,
            "pmacct's pre_tag label is not an l7 label"
        );
    }

    #[test]
    fn stamp_updated_is_used_only_without_stamp_inserted() {
        let line = with(
            PMACCTD_LINE,
            "\"stamp_inserted\": \"2019-11-17 23:00:00\", ",
            "",
        );
        assert_eq!(one(&line).unwrap().time_ms, 1_574_031_831_000);
    }

    #[test]
    fn pmacct_non_purge_event_is_marker() {
        for event in ["purge_init", "purge_close"] {
            let line = format!(
                r#"{{"event_type": "{event}", "seq": 1, "timestamp": "2023-02-28 09:46:01", "writer_id": "default_kafka/1"}}"#
            );
            let mut out = Vec::new();
            assert_eq!(
                decode(Format::PmacctJson, line.as_bytes(), None, &mut out).unwrap(),
                Outcome::Marker
            );
            assert_eq!(
                decode(Format::Auto, line.as_bytes(), None, &mut out).unwrap(),
                Outcome::Marker
            );
            assert!(out.is_empty());
        }
    }

    #[test]
    fn missing_event_type_is_a_flow() {
        let line = with(PMACCTD_LINE, "\"event_type\": \"purge\", ", "");
        assert_eq!(one(&line).unwrap().packets, 248);
    }

    #[test]
    fn pmacct_tcp_flags_as_array_of_names() {
        let line = with(
            NFACCTD_LINE,
            "\"tcp_flags\": \"19\"",
            "\"tcp_flags\": [\"SYN\", \"ACK\", \"NULL\", \"NULL\"]",
        );
        assert_eq!(
            one(&line).unwrap().tcp_flags,
            tcp_flags::SYN | tcp_flags::ACK
        );
        let bad = with(
            NFACCTD_LINE,
            "\"tcp_flags\": \"19\"",
            "\"tcp_flags\": [2, 16]",
        );
        assert_eq!(one(&bad).unwrap_err().reason(), "invalid_value");
    }

    #[test]
    fn pmacct_tcp_flags_as_number() {
        let line = with(NFACCTD_LINE, "\"tcp_flags\": \"19\"", "\"tcp_flags\": 2");
        assert_eq!(one(&line).unwrap().tcp_flags, tcp_flags::SYN);
    }

    #[test]
    fn epoch_timestamps_with_fraction_decode() {
        let line = with(
            NFACCTD_LINE,
            "\"2018-03-26 05:40:36.992000\"",
            "\"1677577561.250000\"",
        );
        assert_eq!(one(&line).unwrap().time_ms, 1_677_577_561_250);
    }

    #[test]
    fn zero_timestamp_end_falls_back_to_start() {
        for zero in [
            "0000-00-00 00:00:00.000000",
            "1970-01-01 01:00:00.000000",
            "0.000000",
        ] {
            let line = with(NFACCTD_LINE, "2018-03-26 05:40:36.992000", zero);
            assert_eq!(one(&line).unwrap().time_ms, 1_522_042_798_592, "{zero}");
        }
    }

    #[test]
    fn unparseable_timestamp_is_rejected() {
        let line = with(NFACCTD_LINE, "2018-03-26 05:40:36.992000", "yesterday");
        assert_eq!(one(&line).unwrap_err().reason(), "invalid_value");
    }

    #[test]
    fn class_becomes_the_label_unless_empty_or_unknown() {
        let labelled = with(
            NFACCTD_LINE,
            "\"event_type\": \"purge\", ",
            "\"event_type\": \"purge\", \"class\": \"ssh\", ",
        );
        assert_eq!(one(&labelled).unwrap().label.as_deref(), Some("ssh"));
        for ignored in ["", "unknown"] {
            let line = with(
                NFACCTD_LINE,
                "\"tos\": 0, ",
                &format!("\"class\": \"{ignored}\", "),
            );
            assert_eq!(one(&line).unwrap().label, None, "{ignored}");
        }
    }

    #[test]
    fn ip_proto_as_name_number_or_numeric_string() {
        for (proto, want) in [
            ("\"udp\"", PROTO_UDP),
            ("17", PROTO_UDP),
            ("\"17\"", PROTO_UDP),
            ("\"ipv6-icmp\"", 58),
        ] {
            let line = with(
                NFACCTD_LINE,
                "\"ip_proto\": \"tcp\"",
                &format!("\"ip_proto\": {proto}"),
            );
            assert_eq!(one(&line).unwrap().proto, want, "{proto}");
        }
        let missing = with(NFACCTD_LINE, "\"ip_proto\": \"tcp\", ", "");
        assert_eq!(one(&missing).unwrap_err().reason(), "missing_field");
    }

    #[test]
    fn numeric_strings_for_ports_and_counters() {
        let line = with(
            PMACCTD_LINE,
            "\"port_dst\": 46255",
            "\"port_dst\": \"46255\"",
        )
        .replace("\"bytes\": 1075281", "\"bytes\": \"1075281\"");
        let flow = one(&line).unwrap();
        assert_eq!((flow.dst_port, flow.bytes), (46255, 1_075_281));
        let bad = with(
            PMACCTD_LINE,
            "\"port_dst\": 46255",
            "\"port_dst\": \"https\"",
        );
        assert_eq!(one(&bad).unwrap_err().reason(), "invalid_value");
    }

    #[test]
    fn ports_absent_from_the_aggregate_are_zero() {
        let line = r#"{"event_type": "purge", "etype": "800", "ip_src": "198.51.100.174", "ip_dst": "203.0.113.253", "ip_proto": "udp", "stamp_inserted": "2022-04-16 13:30:00", "stamp_updated": "2022-04-16 13:35:01", "packets": 1, "bytes": 67}"#;
        let flow = one(line).unwrap();
        assert_eq!(
            (flow.src_port, flow.dst_port, flow.proto),
            (0, 0, PROTO_UDP)
        );
    }

    #[test]
    fn missing_ip_src_is_rejected() {
        let line = with(PMACCTD_LINE, "\"ip_src\": \"198.51.100.6\", ", "");
        assert_eq!(one(&line).unwrap_err().reason(), "missing_field");
    }

    #[test]
    fn negative_packets_are_rejected() {
        let line = with(PMACCTD_LINE, "\"packets\": 248", "\"packets\": -248");
        assert_eq!(one(&line).unwrap_err().reason(), "invalid_value");
    }

    fn arb_flow() -> impl Strategy<Value = Flow> {
        let labels = proptest::option::of(
            "[a-z0-9_\"\\\\é-]{1,12}".prop_filter("not unknown", |l| l != "unknown"),
        );
        crate::flow::strategies::flow(200_000_000..=250_000_000_000_000, labels)
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut out = Vec::new();
            let result = decode(Format::PmacctJson, &bytes, Some(1), &mut out);
            prop_assert!(result.is_ok() || out.is_empty());
        }

        #[test]
        fn arbitrary_timestamps_never_panic(stamp in "[0-9:. T+Z-]{0,40}") {
            let line = with(NFACCTD_LINE, "2018-03-26 05:40:36.992000", &stamp);
            let mut out = Vec::new();
            let _ = decode(Format::PmacctJson, line.as_bytes(), None, &mut out);
        }

        #[test]
        fn encode_decode_round_trips(flow in arb_flow()) {
            let line = encode_pmacct_json(&flow);
            let mut out = Vec::new();
            decode(Format::PmacctJson, line.as_bytes(), None, &mut out).unwrap();
            prop_assert_eq!(out, vec![flow.clone()]);
            let mut auto = Vec::new();
            decode(Format::Auto, line.as_bytes(), None, &mut auto).unwrap();
            prop_assert_eq!(auto, vec![flow]);
        }
    }
}
