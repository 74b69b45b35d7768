//! One classification of every Kafka error code, in the manner of franz-go's `kerr`.
//!
//! The question a replicator asks of an error code is what to do next: retry the
//! same request (after a backoff), refresh metadata first (the leader or the
//! coordinator moved), or stop and tell a human. Codes follow
//! `org.apache.kafka.common.protocol.Errors`.

use kafka_protocol::error::ResponseError;

/// The Kafka error codes strait decides on by name
/// (`org.apache.kafka.common.protocol.Errors`).
pub mod code {
    /// The server experienced an unexpected error. strait also uses it for a
    /// partition missing from a response.
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    /// No error.
    pub const NONE: i16 = 0;
    /// The requested offset is outside the log's retained range.
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    /// This server does not host this topic-partition.
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    /// The partition has no leader right now.
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    /// This broker is not the partition's leader.
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    /// The request timed out on the broker.
    pub const REQUEST_TIMED_OUT: i16 = 7;
    /// The server disconnected before a response was received. strait also
    /// uses it for a request that failed as a whole (connection, timeout).
    pub const NETWORK_EXCEPTION: i16 = 13;
    /// The coordinator is loading its state.
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    /// The coordinator is not available.
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    /// This broker is not the coordinator.
    pub const NOT_COORDINATOR: i16 = 16;
    /// The topic already exists.
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    /// The broker lost the producer's sequence state, or a batch came out of order.
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    /// The broker already has this batch (a resend of an acknowledged one).
    pub const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
    /// A newer producer with the same transactional id exists (pre-KIP-588 fencing).
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    /// The transactional call is not valid in the transaction's state.
    pub const INVALID_TXN_STATE: i16 = 48;
    /// Not authorized to use the transactional id.
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    /// The broker has no state for this producer id.
    pub const UNKNOWN_PRODUCER_ID: i16 = 59;
    /// A replica is not available for the request.
    pub const REPLICA_NOT_AVAILABLE: i16 = 9;
    /// The broker is not available.
    pub const BROKER_NOT_AVAILABLE: i16 = 8;
    /// Fewer in-sync replicas than `min.insync.replicas`.
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
    /// The batch was written, but fewer in-sync replicas remain than required.
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
    /// The broker is not the controller.
    pub const NOT_CONTROLLER: i16 = 41;
    /// Another transaction on the same partitions is still being completed.
    pub const CONCURRENT_TRANSACTIONS: i16 = 51;
    /// A log directory of the broker went offline.
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    /// The fetch session id is unknown to the broker.
    pub const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
    /// The fetch session epoch is not the expected one.
    pub const INVALID_FETCH_SESSION_EPOCH: i16 = 71;
    /// The broker has no listener of the request's name.
    pub const LISTENER_NOT_FOUND: i16 = 72;
    /// The leader epoch in the request is older than the broker's.
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    /// The leader epoch in the request is newer than the broker's.
    pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
    /// The high watermark has not caught up yet.
    pub const OFFSET_NOT_AVAILABLE: i16 = 78;
    /// The preferred leader is not available.
    pub const PREFERRED_LEADER_NOT_AVAILABLE: i16 = 80;
    /// A quota was exceeded; the request was throttled.
    pub const THROTTLING_QUOTA_EXCEEDED: i16 = 89;
    /// The topic id is unknown to the broker.
    pub const UNKNOWN_TOPIC_ID: i16 = 100;
    /// The topic id does not match the topic name.
    pub const INCONSISTENT_TOPIC_ID: i16 = 103;
    /// A topic id in the fetch session does not match.
    pub const FETCH_SESSION_TOPIC_ID_ERROR: i16 = 106;
    /// The group id does not exist.
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    /// A newer producer with the same transactional id fenced this one.
    pub const PRODUCER_FENCED: i16 = 90;
}

/// What to do about a Kafka error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request may succeed if sent again after a backoff.
    Retriable,
    /// Routing is stale (leader, coordinator or topic id moved): refresh metadata, then retry.
    RefreshMetadata,
    /// Retrying cannot help: configuration, authorization, invalid data, fencing.
    Fatal,
}

/// Classifies a Kafka error code. `0` (no error) is never passed here.
pub fn classify(c: i16) -> ErrorClass {
    use code::*;
    use ErrorClass::*;
    match c {
        // The partition's leader, its epoch, the topic id or the coordinator are
        // not where we thought (a storage error moves leadership too): ask the
        // cluster again.
        UNKNOWN_TOPIC_OR_PARTITION
        | LEADER_NOT_AVAILABLE
        | NOT_LEADER_OR_FOLLOWER
        | REPLICA_NOT_AVAILABLE
        | NETWORK_EXCEPTION
        | COORDINATOR_NOT_AVAILABLE
        | NOT_COORDINATOR
        | NOT_CONTROLLER
        | KAFKA_STORAGE_ERROR
        | LISTENER_NOT_FOUND
        | FENCED_LEADER_EPOCH
        | UNKNOWN_LEADER_EPOCH
        | UNKNOWN_TOPIC_ID
        | INCONSISTENT_TOPIC_ID
        | FETCH_SESSION_TOPIC_ID_ERROR => RefreshMetadata,
        // Transient on the broker side: same request, later (a fetch session
        // error starts a new session).
        REQUEST_TIMED_OUT
        | BROKER_NOT_AVAILABLE
        | COORDINATOR_LOAD_IN_PROGRESS
        | NOT_ENOUGH_REPLICAS
        | NOT_ENOUGH_REPLICAS_AFTER_APPEND
        | CONCURRENT_TRANSACTIONS
        | FETCH_SESSION_ID_NOT_FOUND
        | INVALID_FETCH_SESSION_EPOCH
        | OFFSET_NOT_AVAILABLE
        | PREFERRED_LEADER_NOT_AVAILABLE
        | THROTTLING_QUOTA_EXCEEDED => Retriable,
        // CORRUPT_MESSAGE is retriable by Kafka's table: the same bytes are refetched
        // from the source and produced again. Everything else the crate knows to be
        // retriable (from Errors.java) is retried; the rest is fatal.
        c => match ResponseError::try_from_code(c) {
            Some(e) if e.is_retriable() => Retriable,
            _ => Fatal,
        },
    }
}

/// The symbolic name of an error code (`"NotLeaderOrFollower"`), for messages and metrics.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "None".to_string(),
        Some(ResponseError::Unknown(c)) => format!("UnknownErrorCode({c})"),
        Some(e) => format!("{e:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leadership_errors_refresh_metadata() {
        for code in [3, 5, 6, 74, 75, 100] {
            assert_eq!(classify(code), ErrorClass::RefreshMetadata, "code {code}");
        }
    }

    #[test]
    fn unfixable_errors_are_fatal() {
        // RECORD_TOO_LARGE(10), INVALID_RECORD(87), TOPIC_AUTHORIZATION_FAILED(29),
        // CLUSTER_AUTHORIZATION_FAILED(31), SASL_AUTHENTICATION_FAILED(58),
        // INVALID_PRODUCER_EPOCH(47), UNSUPPORTED_COMPRESSION_TYPE(76), PRODUCER_FENCED(90),
        // unknown codes.
        for code in [10, 87, 29, 31, 58, 47, 76, 90, -1, 9999] {
            assert_eq!(classify(code), ErrorClass::Fatal, "code {code}");
        }
    }

    #[test]
    fn every_code_kafka_calls_retriable_is_retried() {
        for code in -1..=140i16 {
            if let Some(e) = ResponseError::try_from_code(code) {
                if e.is_retriable() {
                    assert_ne!(classify(code), ErrorClass::Fatal, "{} ({code})", error_name(code));
                }
            }
        }
        assert_eq!(
            classify(2),
            ErrorClass::Retriable,
            "CORRUPT_MESSAGE is refetched and retried"
        );
        assert_eq!(error_name(6), "NotLeaderOrFollower");
    }
}
