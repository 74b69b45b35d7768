//! Response decoding: every response strait decodes, through the same entry
//! point the connection uses ([`decode_response`]), at a version strait may
//! negotiate, then the pure code that consumes the decoded response.

use bytes::Bytes;
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, ApiVersionsRequest, CreatePartitionsRequest,
    CreateTopicsRequest, DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest, DescribeGroupsRequest,
    EndTxnRequest, FetchRequest, FindCoordinatorRequest, IncrementalAlterConfigsRequest, InitProducerIdRequest,
    ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest, OffsetFetchRequest, ProduceRequest,
    TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::{Message, Request};

use crate::batch::{split_batches, BatchFilter};
use crate::client::metadata::Metadata;
use crate::protocol::{decode_response, ApiVersionTable, ProtocolError};

/// Decodes `frame` as a response of `R` at the version picked by `pick` within
/// `R::VERSIONS`; a failure must be a decode error, never a panic.
fn decode<R: Request>(pick: u8, frame: Bytes) -> Option<R::Response> {
    let range = <R as Message>::VERSIONS;
    let span = (range.max - range.min + 1) as u8;
    let version = range.min + (pick % span) as i16;
    match decode_response::<R>(frame, version) {
        Ok((_, resp)) => Some(resp),
        Err(e) => {
            assert!(
                matches!(e, ProtocolError::Decode { .. } | ProtocolError::TrailingBytes { .. }),
                "unexpected error kind: {e}"
            );
            assert!(!e.to_string().is_empty());
            None
        }
    }
}

/// Input: `[api selector][version selector][response frame without size prefix]`.
pub fn response(data: &[u8]) {
    let [api, pick, rest @ ..] = data else { return };
    let frame = Bytes::copy_from_slice(rest);
    match api % 21 {
        0 => {
            let _ = decode::<ProduceRequest>(*pick, frame);
        }
        1 => {
            if let Some(resp) = decode::<FetchRequest>(*pick, frame) {
                fetched(&resp);
            }
        }
        2 => {
            let _ = decode::<ListOffsetsRequest>(*pick, frame);
        }
        3 => {
            if let Some(resp) = decode::<MetadataRequest>(*pick, frame) {
                let m = Metadata::from_response(&resp);
                for b in m.brokers.values() {
                    let _ = b.address();
                }
            }
        }
        4 => {
            let _ = decode::<OffsetCommitRequest>(*pick, frame);
        }
        5 => {
            let _ = decode::<OffsetFetchRequest>(*pick, frame);
        }
        6 => {
            let _ = decode::<FindCoordinatorRequest>(*pick, frame);
        }
        7 => {
            if let Some(resp) = decode::<ApiVersionsRequest>(*pick, frame) {
                let t = ApiVersionTable::from_response(&resp);
                let _ = t.negotiate::<ProduceRequest>();
                let _ = t.negotiate::<FetchRequest>();
                let _ = t.negotiate_capped::<FetchRequest>(12);
            }
        }
        8 => {
            let _ = decode::<CreateTopicsRequest>(*pick, frame);
        }
        9 => {
            let _ = decode::<InitProducerIdRequest>(*pick, frame);
        }
        10 => {
            let _ = decode::<DescribeConfigsRequest>(*pick, frame);
        }
        11 => {
            let _ = decode::<IncrementalAlterConfigsRequest>(*pick, frame);
        }
        12 => {
            let _ = decode::<CreatePartitionsRequest>(*pick, frame);
        }
        13 => {
            let _ = decode::<DescribeGroupsRequest>(*pick, frame);
        }
        14 => {
            let _ = decode::<ListGroupsRequest>(*pick, frame);
        }
        15 => {
            let _ = decode::<DescribeClusterRequest>(*pick, frame);
        }
        16 => {
            let _ = decode::<DeleteTopicsRequest>(*pick, frame);
        }
        17 => {
            let _ = decode::<AddPartitionsToTxnRequest>(*pick, frame);
        }
        18 => {
            let _ = decode::<AddOffsetsToTxnRequest>(*pick, frame);
        }
        19 => {
            let _ = decode::<EndTxnRequest>(*pick, frame);
        }
        _ => {
            let _ = decode::<TxnOffsetCommitRequest>(*pick, frame);
        }
    }
}

/// What the fetcher does with a decoded Fetch response's records: split them
/// and classify each batch against the partition's aborted transactions.
fn fetched(resp: &kafka_protocol::messages::FetchResponse) {
    for t in &resp.responses {
        for p in &t.partitions {
            let Some(records) = &p.records else { continue };
            let Ok((batches, rest)) = split_batches(records) else {
                continue;
            };
            assert_eq!(batches.iter().map(|b| b.len()).sum::<usize>() + rest, records.len());
            let aborted = p
                .aborted_transactions
                .iter()
                .flatten()
                .map(|a| (a.producer_id.0, a.first_offset))
                .collect();
            let mut filter = BatchFilter::new(aborted);
            for b in &batches {
                let _ = filter.classify(b);
            }
        }
    }
}

/// Selector bytes (api, version) under which `response` decodes each API, for
/// seeding: `(api name, api selector)`.
pub const RESPONSE_APIS: &[(&str, u8)] = &[
    ("produce", 0),
    ("fetch", 1),
    ("list_offsets", 2),
    ("metadata", 3),
    ("offset_commit", 4),
    ("offset_fetch", 5),
    ("find_coordinator", 6),
    ("api_versions", 7),
    ("create_topics", 8),
    ("init_producer_id", 9),
    ("describe_configs", 10),
    ("incremental_alter_configs", 11),
    ("create_partitions", 12),
    ("describe_groups", 13),
    ("list_groups", 14),
    ("describe_cluster", 15),
    ("delete_topics", 16),
    ("add_partitions_to_txn", 17),
    ("add_offsets_to_txn", 18),
    ("end_txn", 19),
    ("txn_offset_commit", 20),
];

/// The version selector that makes `response` decode API `api` at `version`.
pub fn version_selector<R: Request>(version: i16) -> u8 {
    (version - <R as Message>::VERSIONS.min) as u8
}
