//! Golden tests: response frames captured from a real Kafka 4.x broker (see
//! `golden_frames_match_live_broker` in `protocol.rs`) decoded without any broker.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, FetchRequest, MetadataRequest, ProduceRequest};
use kafka_protocol::records::RecordBatchDecoder;
use strait::batch::split_batches;
use strait::protocol::{decode_response, response_correlation_id, ApiVersionTable, FrameDecoder};

fn golden(prefix: &str) -> (Bytes, i16) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol-tests/golden");
    for f in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = f.file_name().to_string_lossy().to_string();
        if let Some(rest) = name.strip_prefix(&format!("{prefix}-v")) {
            let version = rest.trim_end_matches(".bin").parse().unwrap();
            return (Bytes::from(std::fs::read(f.path()).unwrap()), version);
        }
    }
    panic!("no golden file {prefix}-v*.bin in {}", dir.display());
}

#[test]
fn api_versions_frame_decodes_and_negotiates() {
    let (frame, version) = golden("api_versions");
    assert!(response_correlation_id(&frame).unwrap() > 0);
    let (_, resp) = decode_response::<ApiVersionsRequest>(frame, version).unwrap();
    assert_eq!(resp.error_code, 0);
    let table = ApiVersionTable::from_response(&resp);
    let (lo, hi) = table.broker_range(ApiKey::Produce as i16).unwrap();
    assert!(lo <= 3 && hi >= 9, "Kafka 4.x Produce range {lo}..={hi}");
    assert!(table.negotiate::<ProduceRequest>().unwrap() >= 9);
    assert!(table.negotiate::<FetchRequest>().unwrap() >= 12);
    // KIP-584 finalized features are present on a KRaft broker.
    assert!(resp
        .finalized_features
        .iter()
        .any(|f| f.name.as_str() == "metadata.version"));
}

#[test]
fn metadata_frame_decodes() {
    let (frame, version) = golden("metadata");
    let (_, resp) = decode_response::<MetadataRequest>(frame, version).unwrap();
    assert_eq!(resp.brokers.len(), 1);
    assert!(resp.brokers[0].port > 0);
    assert_eq!(resp.brokers[0].host.as_str(), "127.0.0.1");
    let t = &resp.topics[0];
    assert_eq!(t.name.as_ref().unwrap().0.as_str(), "golden-mixed");
    assert_eq!(t.error_code, 0);
    assert!(!t.topic_id.is_nil());
    assert_eq!(t.partitions.len(), 1);
    assert_eq!(t.partitions[0].leader_id, resp.brokers[0].node_id);
}

#[test]
fn fetch_frame_holds_five_batches_of_mixed_codecs() {
    let (frame, version) = golden("fetch");
    let (_, resp) = decode_response::<FetchRequest>(frame.clone(), version).unwrap();
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert_eq!(p.high_watermark, 20);
    let records = p.records.clone().unwrap();
    // Zero-copy: the records blob is a slice of the frame itself.
    let frame_range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
    assert!(frame_range.contains(&(records.as_ptr() as usize)));
    let (batches, rest) = split_batches(&records).unwrap();
    assert_eq!(rest, 0);
    let codecs: Vec<u8> = batches.iter().map(|b| b.codec()).collect();
    assert_eq!(codecs, vec![0, 1, 2, 3, 4], "none, gzip, snappy, lz4, zstd");
    let names = ["none", "gzip", "snappy", "lz4", "zstd"];
    for (i, b) in batches.iter().enumerate() {
        assert_eq!(b.base_offset(), 4 * i as i64);
        assert_eq!(b.record_count(), 4);
        assert_eq!(b.last_offset_delta(), 3);
        assert!(!b.is_control());
        assert_eq!(crc32c::crc32c(&b.bytes()[21..]), b.crc(), "stored CRC-32C is valid");
        let set = RecordBatchDecoder::decode(&mut b.bytes().clone()).unwrap();
        let values: Vec<String> = set
            .records
            .iter()
            .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
            .collect();
        for (n, v) in values.iter().enumerate() {
            assert!(v.starts_with(&format!("{}-value-{n}-", names[i])), "{v}");
        }
    }
}

#[test]
fn golden_frames_survive_arbitrary_read_boundaries() {
    // Re-frame the three captures back to back and feed them in odd-sized reads.
    let mut wire = Vec::new();
    let frames: Vec<Bytes> = ["api_versions", "metadata", "fetch"]
        .iter()
        .map(|p| golden(p).0)
        .collect();
    for f in &frames {
        wire.extend_from_slice(&(f.len() as i32).to_be_bytes());
        wire.extend_from_slice(f);
    }
    let mut dec = FrameDecoder::new(1 << 20);
    let mut buf = bytes::BytesMut::new();
    let mut out = Vec::new();
    for chunk in wire.chunks(37) {
        buf.extend_from_slice(chunk);
        while let Some(f) = dec.decode(&mut buf).unwrap() {
            out.push(f);
        }
    }
    assert_eq!(out, frames);
    // A cap below the largest frame refuses it with the announced size.
    let mut small = FrameDecoder::new(500);
    let mut buf = bytes::BytesMut::from(&wire[..]);
    assert!(small.decode(&mut buf).is_err());
}
