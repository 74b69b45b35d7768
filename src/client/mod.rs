//! Kafka client core: pipelined connections, a broker pool, a metadata cache,
//! error classification and the admin calls the replicator needs.

pub mod acl;
pub mod admin;
pub mod conn;
pub mod errors;
#[cfg(test)]
pub(crate) mod fake;
pub mod fetch;
pub mod group;
pub mod lowat;
pub mod metadata;
pub mod pool;
pub mod sasl;
pub mod secret;
pub mod sockbuf;
pub mod tls;
pub mod txn;

pub use admin::{ConfigEntry, GroupOffset, NewTopic};
pub use conn::{Connection, ConnectionConfig, PendingProduce, Throttled};
pub use errors::{classify, code, error_name, ErrorClass};
pub use group::{GroupDescription, GroupMember, JoinSpec, Joined};
pub use metadata::{BrokerInfo, Metadata, PartitionMetadata, TopicMetadata};
pub use pool::{Backoff, Client, ClientConfig};
pub use sasl::{SaslMechanism, SaslSettings, TokenSource};
pub use secret::Secret;
pub use sockbuf::SocketBuffers;
pub use tls::TlsSettings;
pub use txn::TxnId;

use crate::protocol::ProtocolError;

/// Errors of the client layer. Every variant names the broker (or cluster) involved.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// TCP connect failed or timed out.
    #[error("cannot connect to broker {broker}: {reason}")]
    Connect { broker: String, reason: String },
    /// Reading or writing the connection failed; every request in flight on it failed too.
    #[error("connection to broker {broker} failed: {reason}")]
    Io {
        broker: String,
        kind: std::io::ErrorKind,
        reason: String,
    },
    /// The TLS handshake failed (untrusted or expired certificate, wrong host name, ...).
    #[error("TLS handshake with broker {broker} failed: {reason}")]
    Tls { broker: String, reason: String },
    /// SASL authentication failed (wrong credentials, mechanism not enabled, ...).
    /// The reason never holds a secret.
    #[error("SASL {mechanism} authentication to broker {broker} failed: {reason}")]
    Auth {
        broker: String,
        mechanism: &'static str,
        reason: String,
    },
    /// The broker closed the connection.
    #[error("broker {broker} closed the connection")]
    Closed { broker: String },
    /// No response within the request timeout; the connection is closed (as the Java client does).
    #[error("{api} request to broker {broker} got no response within {timeout_ms} ms")]
    Timeout {
        broker: String,
        api: &'static str,
        timeout_ms: u64,
    },
    /// Framing, encoding, decoding or version negotiation failed.
    #[error("protocol error talking to broker {broker}: {source}")]
    Protocol {
        broker: String,
        #[source]
        source: ProtocolError,
    },
    /// The broker answered with a Kafka error code.
    #[error("{api} for {resource} on broker {broker} failed: {name} ({code}){message}")]
    Kafka {
        api: &'static str,
        broker: String,
        resource: String,
        code: i16,
        name: String,
        message: String,
    },
    /// No bootstrap server could be reached.
    #[error("none of the bootstrap servers {servers} answered: {last_error}")]
    NoBrokerReachable { servers: String, last_error: String },
    /// A broker id not present in the latest metadata.
    #[error("broker id {node} is not in the cluster metadata")]
    UnknownBroker { node: i32 },
    /// A topic or partition not present in the latest metadata.
    #[error("topic {topic} partition {partition} is not in the cluster metadata")]
    UnknownPartition { topic: String, partition: i32 },
    /// A partition without a leader right now.
    #[error("topic {topic} partition {partition} has no leader")]
    NoLeader { topic: String, partition: i32 },
    /// A bad client-side argument (e.g. a malformed bootstrap address).
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
}

impl ClientError {
    /// Builds a [`ClientError::Kafka`] from an error code; `message` is the broker's error message, if any.
    pub fn kafka(
        api: &'static str,
        broker: &str,
        resource: impl Into<String>,
        code: i16,
        message: Option<&str>,
    ) -> Self {
        ClientError::Kafka {
            api,
            broker: broker.to_string(),
            resource: resource.into(),
            code,
            name: error_name(code),
            message: message
                .filter(|m| !m.is_empty())
                .map(|m| format!(": {m}"))
                .unwrap_or_default(),
        }
    }

    /// The Kafka error code, for [`ClientError::Kafka`].
    pub fn code(&self) -> Option<i16> {
        match self {
            ClientError::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True for TLS and authentication failures: settings a human must fix, not an
    /// unreachable broker.
    pub fn is_security(&self) -> bool {
        matches!(self, ClientError::Tls { .. } | ClientError::Auth { .. })
    }

    /// What to do about this error: connection-level failures are retriable after a
    /// metadata refresh (the broker may be gone), Kafka codes follow [`classify`].
    pub fn class(&self) -> ErrorClass {
        match self {
            ClientError::Kafka { code, .. } => classify(*code),
            // While running, a broker that refuses TLS or credentials is retried with
            // the pool's backoff (certificates and passwords get fixed); at startup
            // `Client::connect` fails at once.
            ClientError::Connect { .. }
            | ClientError::Tls { .. }
            | ClientError::Auth { .. }
            | ClientError::Io { .. }
            | ClientError::Closed { .. }
            | ClientError::Timeout { .. }
            | ClientError::NoBrokerReachable { .. }
            | ClientError::UnknownBroker { .. }
            | ClientError::UnknownPartition { .. }
            | ClientError::NoLeader { .. } => ErrorClass::RefreshMetadata,
            ClientError::Protocol { .. } | ClientError::Invalid { .. } => ErrorClass::Fatal,
        }
    }
}

/// Result alias of the client layer.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
