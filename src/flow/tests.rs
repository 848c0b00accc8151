//! Tests of what `decode` adds to the decoders: format names, reasons,
//! auto-detection and the size limit.

use super::*;
use crate::testkit;

/// The flow every format carries here: one with every field set.
fn sample() -> Flow {
    Flow {
        tcp_flags: tcp_flags::SYN | tcp_flags::ACK,
        bytes: 1500,
        packets: 3,
        time_ms: 1_700_000_000_123,
        ..testkit::flow("198.51.100.7", 51000, "203.0.113.10", 443)
    }
}

fn auto(payload: &[u8]) -> Result<(Outcome, Vec<Flow>), DecodeError> {
    let mut out = Vec::new();
    let outcome = decode(Format::Auto, payload, None, &mut out)?;
    Ok((outcome, out))
}

#[test]
fn format_names_parse_print_and_deserialize_alike() {
    for format in Format::ALL {
        assert_eq!(format.as_str().parse::<Format>(), Ok(format));
        assert_eq!(format.to_string(), format.as_str());
        let quoted = format!("\"{}\"", format.as_str());
        assert_eq!(serde_json::from_str::<Format>(&quoted).unwrap(), format);
        assert_eq!(serde_json::to_string(&format).unwrap(), quoted);
    }
}

#[test]
fn unknown_format_name_lists_the_valid_ones() {
    let message = "netflow".parse::<Format>().unwrap_err().to_string();
    for format in Format::ALL {
        assert!(message.contains(format.as_str()), "{message}");
    }
}

#[test]
fn auto_detects_each_format() {
    let mut pb = Vec::new();
    encode_goflow2_pb(&sample(), &mut pb);
    encode_goflow2_pb(&sample(), &mut pb);
    assert_eq!(
        auto(&pb).unwrap(),
        (Outcome::Flows, vec![sample(), sample()])
    );
    let goflow2 = format!("  \n{}\n", encode_goflow2_json(&sample()));
    assert_eq!(
        auto(goflow2.as_bytes()).unwrap(),
        (Outcome::Flows, vec![sample()])
    );
    let pmacct = encode_pmacct_json(&sample());
    assert_eq!(
        auto(pmacct.as_bytes()).unwrap(),
        (Outcome::Flows, vec![sample()])
    );
}

#[test]
fn auto_json_without_known_keys_is_unknown_format() {
    let err = auto(br#"{"src":"198.51.100.7","bytes":1}"#).unwrap_err();
    assert_eq!(err.reason(), "unknown_format");
    assert_eq!(auto(b"{\"src\":").unwrap_err().reason(), "malformed_json");
}

#[test]
fn auto_reads_a_123_byte_protobuf_message_whose_length_is_a_brace() {
    let mut pb = Vec::new();
    encode_goflow2_pb(&sample(), &mut pb);
    // Pad the message with an unknown string field (1001) to 123 bytes.
    let pad = 123 - (pb.len() - 1) - 3;
    pb.extend_from_slice(&[0xca, 0x3e, pad as u8]);
    pb.resize(pb.len() + pad, b'x');
    pb[0] = 123;
    assert_eq!(pb[0], b'{');
    assert_eq!(auto(&pb).unwrap(), (Outcome::Flows, vec![sample()]));
}

#[test]
fn oversized_json_is_rejected() {
    let line = encode_goflow2_json(&sample());
    let padded = format!("{}{}}}", &line[..line.len() - 1], ",\"x\":0".repeat(12_000));
    assert!(padded.len() > MAX_JSON_RECORD_BYTES);
    let mut out = Vec::new();
    for format in [Format::Goflow2Json, Format::PmacctJson, Format::Auto] {
        let err = decode(format, padded.as_bytes(), None, &mut out).unwrap_err();
        assert_eq!(err.reason(), "oversized", "{format}");
    }
}

#[test]
fn reasons_are_distinct_snake_case_labels() {
    let json_error = serde_json::from_str::<u8>("x").unwrap_err();
    let errors = [
        DecodeError::MalformedJson(json_error),
        DecodeError::MalformedProtobuf {
            offset: 0,
            what: "x",
        },
        DecodeError::MissingField { field: "x" },
        DecodeError::InvalidAddress {
            field: "x",
            what: "x",
        },
        DecodeError::InvalidValue {
            field: "x",
            what: "x",
        },
        DecodeError::NoTimestamp,
        DecodeError::UnknownFormat,
        DecodeError::Oversized { size: 2, limit: 1 },
    ];
    let mut reasons: Vec<&str> = errors.iter().map(DecodeError::reason).collect();
    assert!(reasons
        .iter()
        .all(|r| r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
    reasons.sort_unstable();
    reasons.dedup();
    assert_eq!(reasons.len(), errors.len());
    for error in &errors {
        let message = error.to_string();
        assert!(
            !message.ends_with('.') && message.starts_with(|c: char| c.is_lowercase()),
            "{message}"
        );
    }
}
