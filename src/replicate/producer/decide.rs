//! The decision table of the producer: what an answer to a batch does.

use crate::client::{classify, code, ErrorClass};

/// A partition's answer in a Produce response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Answer {
    pub(super) code: i16,
    /// Destination offset of the batch's first record (-1: unknown).
    pub(super) base_offset: i64,
    pub(super) message: Option<String>,
}

impl Answer {
    /// A request that failed as a whole (connection, timeout): every batch goes again.
    pub(super) fn request_failed(why: String) -> Self {
        Self {
            code: code::NETWORK_EXCEPTION,
            base_offset: -1,
            message: Some(why),
        }
    }
}

/// What the producer does with a partition's answer: the decision table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Written (or a duplicate of a batch the broker has): the entry is done.
    Acked,
    /// Send again, in order, after the in-flight batches came back; `refresh`
    /// first looks the leader up again.
    Retry { refresh: bool },
    /// The broker lost strait's producer state: a new producer id, every
    /// unacknowledged batch renumbered (may duplicate, never loses).
    NewProducerId,
    /// Exactly-once cannot go on (fenced, producer state lost): the run ends;
    /// a restart resumes from the last committed transaction.
    FailTransaction,
    /// The destination refuses the batch for good: the partition stops.
    Stop,
}

/// The decision table. `first_unacked`: the answer is for the partition's
/// oldest unacknowledged batch, and no resend is under way (a later batch of a
/// failed one is merely out of order, not a sign of lost state).
pub(super) fn verdict(c: i16, first_unacked: bool, exactly_once: bool) -> Verdict {
    use code::*;
    let lost_state = matches!(c, OUT_OF_ORDER_SEQUENCE_NUMBER | UNKNOWN_PRODUCER_ID) && first_unacked;
    let fenced = matches!(
        c,
        INVALID_PRODUCER_EPOCH | INVALID_TXN_STATE | TRANSACTIONAL_ID_AUTHORIZATION_FAILED | PRODUCER_FENCED
    );
    match c {
        NONE | DUPLICATE_SEQUENCE_NUMBER => Verdict::Acked,
        _ if exactly_once && (lost_state || fenced) => Verdict::FailTransaction,
        _ if lost_state => Verdict::NewProducerId,
        // Sent whole requests again; a connection failure may mean a new leader.
        NETWORK_EXCEPTION => Verdict::Retry { refresh: true },
        // A later batch of a failed (or lost-state) one, or a partition missing
        // from the answer: resent in order behind the first.
        OUT_OF_ORDER_SEQUENCE_NUMBER | UNKNOWN_PRODUCER_ID | UNKNOWN_SERVER_ERROR => Verdict::Retry { refresh: false },
        c => match classify(c) {
            ErrorClass::RefreshMetadata => Verdict::Retry { refresh: true },
            ErrorClass::Retriable => Verdict::Retry { refresh: false },
            ErrorClass::Fatal => Verdict::Stop,
        },
    }
}
