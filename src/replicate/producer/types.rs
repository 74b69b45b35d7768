//! The types the fetcher hands the producer, and the positions it reports.

use std::sync::Arc;
use std::time::Instant;

use super::super::budget::Held;
use crate::batch::RawBatch;

/// Identity of one replicated partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    /// Source topic.
    pub src_topic: Arc<str>,
    /// Partition index (same on both sides).
    pub partition: i32,
    /// Destination topic.
    pub dst_topic: Arc<str>,
}

/// One unit handed over by a fetcher, in source offset order.
#[derive(Debug)]
pub enum Item {
    /// A v2 batch to produce (already re-encoded if it needed the slow path).
    Batch {
        /// The batch as fetched (or re-encoded); its header is patched here.
        batch: RawBatch,
        /// Source offsets it covers.
        src_base: i64,
        /// Last source offset it covers.
        src_last: i64,
        /// For re-encoded batches: source offset delta of each record.
        deltas: Option<Vec<i32>>,
        /// The memory-budget holding of the fetch response it came from (shared by
        /// every batch of that response).
        held: Arc<Held>,
        /// Where its records were first produced, when not on the flow's source
        /// (a forwarded origin, see `forward_from`): it is written under a
        /// producer id of its own, recorded with that origin.
        origin: Option<Arc<str>>,
        /// When the Fetch response carrying it was received (the start of the
        /// queue stage of `strait_replication_latency_stage_seconds`).
        fetched: Instant,
    },
    /// Source offsets consumed without producing (markers, aborted, empty).
    Skip {
        /// Last source offset covered.
        src_last: i64,
    },
}

/// Position report of one partition.
#[derive(Debug, Clone)]
pub struct Position {
    /// The route.
    pub route: Route,
    /// Next source offset not yet acknowledged by the destination.
    pub acked_next: i64,
    /// Destination offset right after the last record written for the source
    /// offsets before `acked_next` (-1: unknown).
    pub dst_next: i64,
    /// Entries held (queued or in flight).
    pub pending: usize,
    /// Set when the partition stopped on an unrecoverable error.
    pub failed: Option<String>,
}
