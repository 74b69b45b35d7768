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

    /// [`classify`](Self::classify) after verifying a v2 batch's CRC-32C; `None`
    /// when it fails. Every header field the decision reads (attributes,
    /// producer id, record count, last offset delta) is covered by that CRC, so a
    /// corrupted batch must be caught before it is classified: a flipped control
    /// bit or record count would otherwise drop a data batch as a marker or as
    /// empty, and its records would be lost without a trace. Magic 0/1 batches
    /// are classified as is (up-conversion verifies their legacy CRC).
    pub fn classify_verified(&mut self, b: &RawBatch) -> Option<Disposition> {
        if b.magic() >= 2 && !super::crc_is_valid(b) {
            return None;
        }
        Some(self.classify(b))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::writer::{write_batch, BatchSpec, RecordSpec};

    fn txn_batch(pid: i64, base: i64, n: i32) -> RawBatch {
        write_batch(
            &BatchSpec {
                base_offset: base,
                producer_id: pid,
                transactional: true,
                ..Default::default()
            },
            &(0..n).map(|i| RecordSpec::simple(i, b"v")).collect::<Vec<_>>(),
        )
    }

    /// Regression: a data batch whose control bit flipped in transit was dropped
    /// as a transaction marker before its CRC was ever checked.
    #[test]
    fn corrupted_headers_fail_verification_before_classification() {
        let good = write_batch(
            &BatchSpec::default(),
            &(0..3).map(|i| RecordSpec::simple(i, b"v")).collect::<Vec<_>>(),
        );
        assert_eq!(
            BatchFilter::new(vec![]).classify_verified(&good),
            Some(Disposition::Forward)
        );
        // Attributes are bytes 21..23; the control bit is 0x20 of the low byte.
        // Record count is bytes 57..61.
        for (at, xor) in [(22, 0x20u8), (60, 0x03), (22, 0x10), (61, 0x01)] {
            let mut bytes = good.bytes().to_vec();
            bytes[at] ^= xor;
            let bad = RawBatch::from_single(bytes::Bytes::from(bytes)).unwrap();
            assert_eq!(
                BatchFilter::new(vec![]).classify_verified(&bad),
                None,
                "byte {at} ^ {xor:#x}"
            );
        }
        let mut bytes = good.bytes().to_vec();
        bytes[22] |= 0x20;
        let control = RawBatch::from_single(bytes::Bytes::from(bytes)).unwrap();
        assert_eq!(
            BatchFilter::new(vec![]).classify(&control),
            Disposition::Skip(SkipReason::Control),
            "unverified, the corrupted batch looks like a marker"
        );
    }

    fn marker(pid: i64, offset: i64, commit: bool) -> RawBatch {
        // Control record key: version 0, type 0 (abort) or 1 (commit).
        let key = [0u8, 0, 0, commit as u8];
        write_batch(
            &BatchSpec {
                base_offset: offset,
                producer_id: pid,
                transactional: true,
                control: true,
                ..Default::default()
            },
            &[RecordSpec {
                offset_delta: 0,
                key: Some(key.to_vec()),
                value: Some(vec![0, 0, 0, 0, 0, 0]),
                headers: vec![],
            }],
        )
    }

    #[test]
    fn aborted_transactions_and_markers_are_dropped() {
        // pid 7 aborts its transaction at 0..=2 (marker at 3); pid 8 commits 4..=5 (marker at 6);
        // pid 7 starts a new, committed transaction at 7.
        let mut f = BatchFilter::new(vec![(7, 0)]);
        assert_eq!(f.classify(&txn_batch(7, 0, 3)), Disposition::Skip(SkipReason::Aborted));
        assert_eq!(f.classify(&marker(7, 3, false)), Disposition::Skip(SkipReason::Control));
        assert_eq!(f.classify(&txn_batch(8, 4, 2)), Disposition::Forward);
        assert_eq!(f.classify(&marker(8, 6, true)), Disposition::Skip(SkipReason::Control));
        assert_eq!(
            f.classify(&txn_batch(7, 7, 2)),
            Disposition::Forward,
            "after its ABORT marker pid 7 is no longer aborted"
        );
    }

    #[test]
    fn gaps_take_the_slow_path_and_empty_batches_are_skipped() {
        let mut f = BatchFilter::default();
        let gappy = write_batch(
            &BatchSpec {
                last_offset_delta: Some(9),
                ..Default::default()
            },
            &[
                RecordSpec::simple(0, b"a"),
                RecordSpec::simple(4, b"b"),
                RecordSpec::simple(9, b"c"),
            ],
        );
        assert_eq!(f.classify(&gappy), Disposition::Reencode);
        let empty = write_batch(
            &BatchSpec {
                last_offset_delta: Some(5),
                ..Default::default()
            },
            &[],
        );
        assert_eq!(f.classify(&empty), Disposition::Skip(SkipReason::Empty));
    }
}
