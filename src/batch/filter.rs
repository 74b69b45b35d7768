//! Which fetched batches are forwarded: the read_committed rules of the Java
//! consumer (`CompletedFetch.nextFetchedRecord`), applied per batch.
//!
//! Control batches (transaction markers) cannot be produced by a client and are
//! dropped. A transactional batch whose producer has an aborted transaction
//! starting at or before it (`aborted_transactions` of the Fetch response) is
//! dropped until that producer's ABORT marker is seen. Empty batches (left by
//! compaction to keep producer state) are rejected by the broker and dropped.
//! Batches with offset gaps (compaction) take the slow path.

use std::collections::{HashSet, VecDeque};

use super::varint::{read_varint, read_varlong};
use super::RawBatch;

/// What to do with one fetched batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Forward as is (header patched).
    Forward,
    /// Offsets have gaps (`lastOffsetDelta + 1 != recordCount`): re-encode first.
    Reencode,
    /// Magic 0/1: up-convert to v2 first.
    UpConvert,
    /// Not produced.
    Skip(SkipReason),
}

/// Why a batch is not produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// A transaction marker.
    Control,
    /// Part of an aborted transaction.
    Aborted,
    /// No records.
    Empty,
}

/// Per-partition, per-Fetch-response state of aborted transactions.
#[derive(Debug, Default)]
pub struct BatchFilter {
    pending: VecDeque<(i64, i64)>,
    active: HashSet<i64>,
}

impl BatchFilter {
    /// From the `(producer_id, first_offset)` list of one partition of a Fetch response.
    pub fn new(mut aborted: Vec<(i64, i64)>) -> Self {
        aborted.sort_by_key(|&(_, first)| first);
        Self {
            pending: aborted.into(),
            active: HashSet::new(),
        }
    }

    /// Decides for the next batch of the partition, in offset order.
    pub fn classify(&mut self, b: &RawBatch) -> Disposition {
        if b.magic() < 2 {
            return Disposition::UpConvert;
        }
        if b.producer_id() >= 0 {
            while let Some(&(pid, first)) = self.pending.front() {
                if first > b.last_offset() {
                    break;
                }
                self.active.insert(pid);
                self.pending.pop_front();
            }
            if b.is_control() {
                if is_abort_marker(b) {
                    self.active.remove(&b.producer_id());
                }
            } else if b.is_transactional() && self.active.contains(&b.producer_id()) {
                return Disposition::Skip(SkipReason::Aborted);
            }
        }
        if b.is_control() {
            return Disposition::Skip(SkipReason::Control);
        }
        if b.record_count() == 0 {
            return Disposition::Skip(SkipReason::Empty);
        }
        if b.last_offset_delta() as i64 + 1 != b.record_count() as i64 {
            return Disposition::Reencode;
        }
        Disposition::Forward
    }
}

/// A control batch whose first record's key says ABORT (type 0).
fn is_abort_marker(b: &RawBatch) -> bool {
    let mut buf = &b.bytes()[super::V2_HEADER_LEN..];
    let parse = |buf: &mut &[u8]| -> Option<i16> {
        read_varint(buf)?; // record length
        if buf.is_empty() {
            return None;
        }
        *buf = &buf[1..]; // attributes
        read_varlong(buf)?; // timestamp delta
        read_varint(buf)?; // offset delta
        let klen = read_varint(buf)?;
        if klen < 4 || buf.len() < 4 {
            return None;
        }
        Some(i16::from_be_bytes([buf[2], buf[3]])) // version i16, type i16
    };
    parse(&mut buf) == Some(0)
}
