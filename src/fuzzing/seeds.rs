//! The seed corpus, generated so it can be checked and rebuilt: the response
//! frames captured from a real broker (`protocol-tests/golden`), a default
//! response of every decoded API at every version, the captured batches in
//! every codec, and structured inputs for the builder-driven targets.

use std::path::Path;

use bytes::BytesMut;
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, ApiVersionsRequest, CreatePartitionsRequest,
    CreateTopicsRequest, DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest, DescribeGroupsRequest,
    EndTxnRequest, FetchRequest, FindCoordinatorRequest, IncrementalAlterConfigsRequest, InitProducerIdRequest,
    ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest, OffsetFetchRequest, ProduceRequest,
    ResponseHeader, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::{Encodable, HeaderVersion, Message, Request};

use super::responses::version_selector;
use crate::batch::{split_batches, V2_HEADER_LEN};
use crate::protocol::decode_response;

/// One seed: `(target, file name, bytes)`.
pub type Seed = (&'static str, String, Vec<u8>);

/// `[api selector][version selector][frame]` for a default `R` response at every version.
fn defaults<R: Request>(api: u8, name: &str, out: &mut Vec<Seed>)
where
    R::Response: Default,
{
    let range = <R as Message>::VERSIONS;
    for v in range.min..=range.max {
        let mut buf = BytesMut::new();
        let header = ResponseHeader::default().with_correlation_id(7);
        let hv = <R::Response as HeaderVersion>::header_version(v);
        if header.encode(&mut buf, hv).is_err() || R::Response::default().encode(&mut buf, v).is_err() {
            continue;
        }
        let mut seed = vec![api, version_selector::<R>(v)];
        seed.extend_from_slice(&buf);
        out.push(("response", format!("{name}-v{v}-default"), seed));
    }
}

/// Every seed, from the golden frames in `golden_dir` and generated inputs.
pub fn all(golden_dir: &Path) -> Vec<Seed> {
    let mut out = Vec::new();
    defaults::<ProduceRequest>(0, "produce", &mut out);
    defaults::<FetchRequest>(1, "fetch", &mut out);
    defaults::<ListOffsetsRequest>(2, "list_offsets", &mut out);
    defaults::<MetadataRequest>(3, "metadata", &mut out);
    defaults::<OffsetCommitRequest>(4, "offset_commit", &mut out);
    defaults::<OffsetFetchRequest>(5, "offset_fetch", &mut out);
    defaults::<FindCoordinatorRequest>(6, "find_coordinator", &mut out);
    defaults::<ApiVersionsRequest>(7, "api_versions", &mut out);
    defaults::<CreateTopicsRequest>(8, "create_topics", &mut out);
    defaults::<InitProducerIdRequest>(9, "init_producer_id", &mut out);
    defaults::<DescribeConfigsRequest>(10, "describe_configs", &mut out);
    defaults::<IncrementalAlterConfigsRequest>(11, "incremental_alter_configs", &mut out);
    defaults::<CreatePartitionsRequest>(12, "create_partitions", &mut out);
    defaults::<DescribeGroupsRequest>(13, "describe_groups", &mut out);
    defaults::<ListGroupsRequest>(14, "list_groups", &mut out);
    defaults::<DescribeClusterRequest>(15, "describe_cluster", &mut out);
    defaults::<DeleteTopicsRequest>(16, "delete_topics", &mut out);
    defaults::<AddPartitionsToTxnRequest>(17, "add_partitions_to_txn", &mut out);
    defaults::<AddOffsetsToTxnRequest>(18, "add_offsets_to_txn", &mut out);
    defaults::<EndTxnRequest>(19, "end_txn", &mut out);
    defaults::<TxnOffsetCommitRequest>(20, "txn_offset_commit", &mut out);

    // Golden frames: as responses, and back to back as a framed stream.
    let golden = |name: &str| std::fs::read(golden_dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let api_versions = golden("api_versions-v3.bin");
    let metadata = golden("metadata-v13.bin");
    let fetch = golden("fetch-v18.bin");
    for (api, sel, name, frame) in [
        (
            7u8,
            version_selector::<ApiVersionsRequest>(3),
            "api_versions-v3-golden",
            &api_versions,
        ),
        (
            3,
            version_selector::<MetadataRequest>(13),
            "metadata-v13-golden",
            &metadata,
        ),
        (1, version_selector::<FetchRequest>(18), "fetch-v18-golden", &fetch),
    ] {
        let mut seed = vec![api, sel];
        seed.extend_from_slice(frame);
        out.push(("response", name.to_string(), seed));
    }
    let mut stream = vec![5u8]; // cap selector: 64 KiB
    for f in [&api_versions, &metadata, &fetch] {
        stream.extend_from_slice(&(f.len() as i32).to_be_bytes());
        stream.extend_from_slice(f);
    }
    out.push(("frames", "golden-stream".into(), stream));
    out.push((
        "frames",
        "oversized".into(),
        vec![2, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8],
    ));

    // The golden Fetch response's batches: the blob, each batch, each payload.
    let (_, resp) = decode_response::<FetchRequest>(fetch.into(), 18).expect("golden fetch decodes");
    let blob = resp.responses[0].partitions[0].records.clone().expect("records");
    out.push(("batches", "golden-fetch-records".into(), blob.to_vec()));
    let (batches, _) = split_batches(&blob).expect("golden batches split");
    for (i, b) in batches.iter().enumerate() {
        let mut patch = vec![0x80 | 21];
        patch.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 42, 1, 1, 0, 0, 0, 5]);
        patch.extend_from_slice(b.bytes());
        out.push(("patch", format!("golden-batch-{i}"), patch));
        // reencode mode 2: [mode, codec, min selector, base, count flag, count, lastOffsetDelta, payload]
        let mut re = vec![2, b.codec(), 0, 1, 0, b.record_count() as u8];
        re.extend_from_slice(&b.last_offset_delta().to_be_bytes());
        re.extend_from_slice(&b.bytes()[V2_HEADER_LEN..]);
        out.push(("reencode", format!("golden-payload-{i}"), re));
    }

    // Builder-driven targets: a few structured inputs per codec.
    for codec in 0..5u8 {
        let mut re = vec![0, codec, 200, 3, 6];
        for i in 0..6u8 {
            re.extend_from_slice(&[
                i % 3,
                i,
                2,
                b'k',
                i,
                5,
                b'v',
                b'a',
                b'l',
                b'u',
                b'e',
                2,
                0,
                1,
                b'1',
                0,
                1,
                b'2',
            ]);
        }
        out.push(("reencode", format!("gaps-codec{codec}"), re));
    }
    for (name, input) in [
        ("v0-single", vec![0u8, 0, 0, 3, 1, 2, b'k', b'x', 3, b'v', b'a', b'l']),
        ("v1-single", vec![0, 1, 0, 3, 1, 2, b'k', b'x', 255]),
        (
            "v1-gzip",
            vec![0, 1, 1, 3, 2, 1, 1, b'a', 1, b'b', 2, 255, 0, 3, 1, b'c', 1, b'd'],
        ),
        ("v0-snappy", vec![0, 0, 2, 4, 1, 9, 1, b'a', 1, b'b', 2, 255, 0]),
        ("v1-lz4", vec![0, 1, 3, 4, 1, 9, 1, b'a', 1, b'b', 2, 255, 0]),
    ] {
        out.push(("upconvert", name.into(), input));
    }
    out.push(("config", "example".into(), crate::config::EXAMPLE.as_bytes().to_vec()));
    out.push((
        "config",
        "minimal".into(),
        b"name = \"dr\"\ntopics = [\"orders.*\"]\n[source]\nbootstrap_servers = \"a:9092\"\n[destination]\nbootstrap_servers = \"b:9092\"\n".to_vec(),
    ));
    out
}
