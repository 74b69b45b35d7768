//! Kafka wire framing over the `kafka-protocol` crate.
//!
//! Sans-I/O: everything here is a plain function over `Bytes`/`BytesMut`, except
//! [`frame::write_chunks`], the one place that touches an async writer. See the
//! Kafka protocol guide (<https://kafka.apache.org/protocol>) for the frame layout:
//! a 4-byte big-endian size, then a request or response header, then the body.

pub mod frame;
pub mod produce;
pub mod versions;

pub use frame::{
    decode_response, encode_request, response_correlation_id, write_chunks, FrameDecoder, DEFAULT_MAX_FRAME_BYTES,
};
pub use produce::{ProducePartition, ProduceRequestFrame, ProduceTopic};
pub use versions::ApiVersionTable;

use kafka_protocol::messages::ApiKey;

/// The producer identity written into every batch strait produces: its
/// producer id and epoch on the destination (InitProducerId), and whether it
/// writes in its own transaction. Shared by the batch layer (which patches it
/// into headers) and the client layer (whose transactional calls carry it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerStamp {
    /// Destination producer id (-1: none).
    pub producer_id: i64,
    /// Producer epoch (-1: none).
    pub producer_epoch: i16,
    /// Set the transactional bit (strait runs its own transaction).
    pub transactional: bool,
}

/// Errors of the protocol layer: framing, encoding, decoding and version negotiation.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A frame announced a size above the configured cap; nothing was allocated for it.
    #[error("frame of {actual} bytes exceeds the limit of {limit} bytes (raise max_frame_bytes if this broker really sends frames this large)")]
    FrameTooLarge { limit: usize, actual: usize },
    /// A frame announced a negative size: the peer is not speaking the Kafka protocol.
    #[error("frame announces a negative size ({size}); the peer is not speaking the Kafka protocol")]
    NegativeFrameSize { size: i32 },
    /// A response frame too short to hold its header.
    #[error("response frame of {len} bytes is too short to hold a correlation id")]
    ShortFrame { len: usize },
    /// The `kafka-protocol` crate refused to encode a request.
    #[error("cannot encode {api} v{version} request: {reason}")]
    Encode {
        api: &'static str,
        version: i16,
        reason: String,
    },
    /// A response body could not be decoded.
    #[error("cannot decode {api} v{version} response: {reason}")]
    Decode {
        api: &'static str,
        version: i16,
        reason: String,
    },
    /// The response carried bytes after the decoded body.
    #[error("{api} v{version} response has {extra} unexpected trailing bytes")]
    TrailingBytes {
        api: &'static str,
        version: i16,
        extra: usize,
    },
    /// The broker and strait share no version of an API.
    #[error("broker supports {api} versions {broker_min}..={broker_max}, strait supports {ours_min}..={ours_max}: no common version")]
    NoCommonVersion {
        api: &'static str,
        broker_min: i16,
        broker_max: i16,
        ours_min: i16,
        ours_max: i16,
    },
    /// The broker does not offer an API at all.
    #[error("broker does not support the {api} API")]
    ApiNotSupported { api: &'static str },
}

/// Human name of an API key (`"Produce"`, `"Fetch"`, ...), for errors and logs.
pub fn api_name(key: i16) -> &'static str {
    match ApiKey::try_from(key) {
        Ok(k) => api_key_name(k),
        Err(_) => "Unknown",
    }
}

fn api_key_name(k: ApiKey) -> &'static str {
    use ApiKey::*;
    match k {
        Produce => "Produce",
        Fetch => "Fetch",
        ListOffsets => "ListOffsets",
        Metadata => "Metadata",
        OffsetCommit => "OffsetCommit",
        OffsetFetch => "OffsetFetch",
        FindCoordinator => "FindCoordinator",
        JoinGroup => "JoinGroup",
        Heartbeat => "Heartbeat",
        LeaveGroup => "LeaveGroup",
        SyncGroup => "SyncGroup",
        DescribeGroups => "DescribeGroups",
        ListGroups => "ListGroups",
        SaslHandshake => "SaslHandshake",
        ApiVersions => "ApiVersions",
        CreateTopics => "CreateTopics",
        DeleteTopics => "DeleteTopics",
        DeleteRecords => "DeleteRecords",
        InitProducerId => "InitProducerId",
        AddPartitionsToTxn => "AddPartitionsToTxn",
        AddOffsetsToTxn => "AddOffsetsToTxn",
        EndTxn => "EndTxn",
        TxnOffsetCommit => "TxnOffsetCommit",
        DescribeConfigs => "DescribeConfigs",
        AlterConfigs => "AlterConfigs",
        SaslAuthenticate => "SaslAuthenticate",
        CreatePartitions => "CreatePartitions",
        IncrementalAlterConfigs => "IncrementalAlterConfigs",
        _ => "Other",
    }
}
