//! One classification of every Kafka error code, in the manner of franz-go's `kerr`.
//!
//! The question a replicator asks of an error code is what to do next: retry the
//! same request (after a backoff), refresh metadata first (the leader or the
//! coordinator moved), or stop and tell a human. Codes follow
//! `org.apache.kafka.common.protocol.Errors`.

use kafka_protocol::error::ResponseError;

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
pub fn classify(code: i16) -> ErrorClass {
    use ErrorClass::*;
    match code {
        // The partition's leader, its epoch, the topic id or the coordinator are not
        // where we thought: ask the cluster again.
        3   // UNKNOWN_TOPIC_OR_PARTITION
        | 5 // LEADER_NOT_AVAILABLE
        | 6 // NOT_LEADER_OR_FOLLOWER
        | 9 // REPLICA_NOT_AVAILABLE
        | 13 // NETWORK_EXCEPTION
        | 15 // COORDINATOR_NOT_AVAILABLE
        | 16 // NOT_COORDINATOR
        | 41 // NOT_CONTROLLER
        | 56 // KAFKA_STORAGE_ERROR: the log dir went offline, leadership moves
        | 72 // LISTENER_NOT_FOUND
        | 74 // FENCED_LEADER_EPOCH
        | 75 // UNKNOWN_LEADER_EPOCH
        | 100 // UNKNOWN_TOPIC_ID
        | 103 // INCONSISTENT_TOPIC_ID
        | 106 // FETCH_SESSION_TOPIC_ID_ERROR
        => RefreshMetadata,
        // Transient on the broker side: same request, later.
        7   // REQUEST_TIMED_OUT
        | 8 // BROKER_NOT_AVAILABLE
        | 14 // COORDINATOR_LOAD_IN_PROGRESS
        | 19 // NOT_ENOUGH_REPLICAS
        | 20 // NOT_ENOUGH_REPLICAS_AFTER_APPEND
        | 51 // CONCURRENT_TRANSACTIONS
        | 70 // FETCH_SESSION_ID_NOT_FOUND: start a new fetch session
        | 71 // INVALID_FETCH_SESSION_EPOCH: start a new fetch session
        | 78 // OFFSET_NOT_AVAILABLE: the high watermark has not caught up yet
        | 80 // PREFERRED_LEADER_NOT_AVAILABLE
        | 89 // THROTTLING_QUOTA_EXCEEDED
        => Retriable,
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
