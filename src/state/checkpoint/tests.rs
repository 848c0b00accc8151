use super::*;
use crate::config::Clock;
use crate::flow::tcp_flags::{ACK, RST, SYN};
use crate::flow::{Flow, PROTO_UDP};
use crate::query::{describe_internet_open_port, PortQuery};
use crate::state::Settings;
use crate::testkit::{self, HOUR, T0};

/// An empty engine on the event clock.
fn engine() -> Engine {
    testkit::engine_with(Settings {
        clock: Clock::Event,
        ..testkit::settings()
    })
}

/// An engine with open ports (v4, v6, labelled), a refused port, a scan
/// and history over several days.
fn filled() -> Engine {
    let e = engine();
    let wall = T0 + 40 * 24 * HOUR;
    for day in 0..5 {
        let t = T0 + day * 24 * HOUR + 3 * HOUR;
        let labelled = Flow {
            tcp_flags: SYN | ACK,
            bytes: 700,
            label: Some("ssh".into()),
            ..testkit::flow("198.51.100.1", 61000, "203.0.113.10", 8443)
        };
        let ssh = testkit::conversation(
            "203.0.113.10",
            22,
            "198.51.100.1",
            100 + day as u64,
            1000,
            t,
        );
        for f in ssh.into_iter().chain([
            Flow {
                proto: PROTO_UDP,
                bytes: 80,
                ..testkit::flow("2001:db8::1", 5353, "2001:db8:100::53", 53)
            },
            Flow {
                proto: PROTO_UDP,
                bytes: 300,
                ..testkit::flow("2001:db8:100::53", 53, "2001:db8::1", 5353)
            },
            Flow {
                tcp_flags: SYN,
                bytes: 60,
                ..testkit::flow("198.51.100.1", 61000, "203.0.113.11", 23)
            },
            Flow {
                tcp_flags: RST | ACK,
                bytes: 40,
                ..testkit::flow("203.0.113.11", 23, "198.51.100.1", 61000)
            },
            Flow {
                tcp_flags: SYN,
                bytes: 44,
                ..testkit::flow("198.51.100.66", 61000, "203.0.113.12", 3389)
            },
            labelled.clone(),
            Flow {
                src_addr: labelled.dst_addr,
                dst_addr: labelled.src_addr,
                src_port: 8443,
                dst_port: 61000,
                ..labelled
            },
        ]) {
            e.apply(&Flow { time_ms: t, ..f }, wall);
        }
    }
    e
}

fn answer(e: &Engine) -> serde_json::Value {
    let q = PortQuery {
        page_size: 1000,
        start_time: Some(T0 / 1000),
        end_time: Some((T0 + 10 * 24 * HOUR) / 1000),
        ..PortQuery::default()
    };
    let mut v = serde_json::to_value(describe_internet_open_port(
        e,
        &q,
        T0 + 40 * 24 * HOUR,
        "ID".into(),
    ))
    .unwrap();
    v.as_object_mut().unwrap().remove("RequestId");
    v
}

fn offsets() -> Vec<PartitionOffset> {
    vec![
        PartitionOffset {
            topic: Arc::from("flows"),
            partition: 0,
            next_offset: 1234,
        },
        PartitionOffset {
            topic: Arc::from("flows"),
            partition: 7,
            next_offset: 0,
        },
    ]
}

#[test]
fn restore_gives_back_every_answer_and_the_offsets() {
    let e = filled();
    let bytes = encode(&e, &offsets(), 42);
    let decoded = decode(Path::new("mem"), &bytes).unwrap();
    assert_eq!(decoded.offsets, offsets());
    let back = engine();
    back.restore(decoded);
    assert_eq!(answer(&back), answer(&e));
    assert_eq!(back.open_endpoints(), e.open_endpoints());
    assert_eq!(back.pending_endpoints(), e.pending_endpoints());
    assert_eq!(
        back.probes(3389, Protocol::Tcp),
        e.probes(3389, Protocol::Tcp)
    );
    assert_eq!(back.now_ms(0), e.now_ms(0), "the event clock survives");
    assert!(answer(&e)["DataList"].as_array().unwrap().len() >= 3);
}

#[test]
fn truncated_checkpoint_is_refused() {
    let bytes = encode(&filled(), &offsets(), 42);
    for cut in [
        0,
        5,
        HEADER_LEN - 1,
        HEADER_LEN,
        bytes.len() / 2,
        bytes.len() - 1,
    ] {
        let err = decode(Path::new("/data/checkpoint-1.bin"), &bytes[..cut])
            .err()
            .unwrap_or_else(|| panic!("cut at {cut} accepted"));
        assert!(
            err.to_string().starts_with("/data/checkpoint-1.bin: "),
            "{err}"
        );
    }
}

#[test]
fn any_flipped_bit_is_caught() {
    let bytes = encode(&filled(), &offsets(), 42);
    for position in (0..bytes.len()).step_by(7) {
        let mut bad = bytes.clone();
        bad[position] ^= 0x10;
        assert!(
            decode(Path::new("x"), &bad).is_err(),
            "flip at byte {position} accepted"
        );
    }
}

#[test]
fn another_format_version_is_refused_by_name() {
    let mut bytes = encode(&filled(), &offsets(), 42);
    bytes[8..12].copy_from_slice(&3u32.to_le_bytes());
    let err = decode(Path::new("x"), &bytes).err().unwrap();
    assert!(
        matches!(err, CheckpointError::Version { found: 3, .. }),
        "{err}"
    );
    let err = decode(Path::new("x"), b"PK\x03\x04 a zip file, not ours")
        .err()
        .unwrap();
    assert!(matches!(err, CheckpointError::BadMagic { .. }), "{err}");
}

#[test]
fn store_keeps_the_newest_files_and_loads_the_latest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(
        store.load_latest().unwrap().is_none(),
        "empty dir: nothing to restore"
    );
    let e = filled();
    for i in 0..5 {
        let offsets = vec![PartitionOffset {
            topic: Arc::from("flows"),
            partition: 0,
            next_offset: i,
        }];
        store.write(&encode(&e, &offsets, i)).unwrap();
    }
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), KEEP, "{names:?}");
    assert!(names.iter().all(|n| !n.ends_with(".tmp")));
    let (path, decoded, skipped) = store.load_latest().unwrap().unwrap();
    assert!(
        path.ends_with("checkpoint-00000000000000000005.bin"),
        "{path:?}"
    );
    assert_eq!(decoded.offsets[0].next_offset, 4);
    assert!(skipped.is_empty());
}

#[test]
fn corrupt_newest_falls_back_to_the_previous_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let e = filled();
    store.write(&encode(&e, &offsets(), 1)).unwrap();
    let newest = store.write(&encode(&e, &offsets(), 2)).unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    let len = bytes.len();
    bytes.truncate(len - 10);
    std::fs::write(&newest, bytes).unwrap();
    let (path, _, skipped) = store.load_latest().unwrap().unwrap();
    assert!(path.ends_with("checkpoint-00000000000000000001.bin"));
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0]
        .to_string()
        .contains("checkpoint-00000000000000000002.bin"));
}

#[test]
fn no_usable_checkpoint_is_an_error_naming_every_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("checkpoint-00000000000000000001.bin"),
        b"garbage",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("checkpoint-00000000000000000002.bin"),
        b"EXPOSCKP\x09\x00\x00\x00",
    )
    .unwrap();
    let err = Store::open(dir.path())
        .unwrap()
        .load_latest()
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(
        text.contains("checkpoint-00000000000000000001.bin") && text.contains("bad magic"),
        "{text}"
    );
    assert!(
        text.contains("checkpoint-00000000000000000002.bin") && text.contains("truncated"),
        "{text}"
    );
}
