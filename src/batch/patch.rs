//! Header rewrite for producing a fetched batch to another cluster.
//!
//! Only the 61-byte header is copied and changed; the records stay a slice of
//! the fetch buffer. The CRC is carried forward by linearity ([`super::crc`]):
//! no fresh CRC is ever computed over bytes whose old CRC was not checked, so a
//! corrupted payload still fails the destination broker's CRC check.

use bytes::{BufMut, Bytes, BytesMut};

use super::crc::fix_crc;
use super::{RawBatch, V2_HEADER_LEN};

/// Attribute bit: timestamps are LogAppendTime (rejected when producing to such topics).
pub const ATTR_LOG_APPEND_TIME: i16 = 0x08;
/// Attribute bit: the batch is part of a transaction.
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
/// Attribute bit: control batch (transaction marker).
pub const ATTR_CONTROL: i16 = 0x20;

pub use crate::protocol::ProducerStamp;

/// A batch ready for Produce: a new header and the untouched records.
#[derive(Debug, Clone)]
pub struct PatchedBatch {
    /// The rewritten 61-byte header.
    pub header: Bytes,
    /// Records bytes (a slice of the fetch response on the fast path).
    pub body: Bytes,
}

impl PatchedBatch {
    /// Total length.
    pub fn len(&self) -> usize {
        self.header.len() + self.body.len()
    }
    /// Never true for a real batch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Rewrites a v2 batch's header for producing with `stamp` at `base_sequence`:
/// baseOffset 0 (rule: a produced batch must start at 0), partitionLeaderEpoch -1
/// (the broker stamps its own), producer id/epoch/sequence replaced (source
/// producer ids collide with destination ones), LogAppendTime and transactional
/// bits cleared (transactional set only for strait's own transactions).
///
/// Panics only if `batch` is not magic 2 (callers split magic 0/1 off first).
pub fn patch_for_produce(batch: &RawBatch, stamp: ProducerStamp, base_sequence: i32) -> PatchedBatch {
    assert_eq!(batch.magic(), 2, "patch_for_produce takes v2 batches only");
    let old = &batch.bytes()[..V2_HEADER_LEN];
    let mut h = BytesMut::with_capacity(V2_HEADER_LEN);
    h.put_i64(0); // baseOffset
    h.put_slice(&old[8..12]); // length
    h.put_i32(-1); // partitionLeaderEpoch
    h.put_u8(2); // magic
    h.put_u32(0); // crc, set below
    let mut attrs = i16::from_be_bytes([old[21], old[22]]) & !(ATTR_LOG_APPEND_TIME | ATTR_TRANSACTIONAL);
    if stamp.transactional {
        attrs |= ATTR_TRANSACTIONAL;
    }
    h.put_i16(attrs);
    h.put_slice(&old[23..43]); // lastOffsetDelta, baseTimestamp, maxTimestamp
    h.put_i64(stamp.producer_id);
    h.put_i16(stamp.producer_epoch);
    h.put_i32(base_sequence);
    h.put_slice(&old[57..61]); // recordCount
    let crc = fix_crc(batch.crc(), &old[21..61], &h[21..61], batch.len() - 21);
    h[17..21].copy_from_slice(&crc.to_be_bytes());
    PatchedBatch {
        header: h.freeze(),
        body: batch.bytes().slice(V2_HEADER_LEN..),
    }
}

/// True when the stored CRC-32C matches the batch (one pass over the batch).
pub fn crc_is_valid(batch: &RawBatch) -> bool {
    batch.magic() == 2 && crc32c::crc32c(&batch.bytes()[21..]) == batch.crc()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::split_batches;
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

    pub(crate) fn batch_with(n: usize, pid: i64, transactional: bool, codec: Compression, seed: u64) -> RawBatch {
        let mut rng = fastrand::Rng::with_seed(seed);
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 7,
                producer_id: pid,
                producer_epoch: 3,
                timestamp_type: TimestampType::Creation,
                offset: 1000 + i as i64,
                sequence: 50 + i as i32,
                timestamp: 1_700_000_000_000 + rng.i64(0..1000),
                key: Some(Bytes::from(
                    (0..rng.usize(0..50)).map(|_| rng.u8(..)).collect::<Vec<u8>>(),
                )),
                value: Some(Bytes::from(
                    (0..rng.usize(0..500)).map(|_| rng.u8(..)).collect::<Vec<u8>>(),
                )),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: codec,
            },
        )
        .unwrap();
        let (mut b, rest) = split_batches(&buf.freeze()).unwrap();
        assert_eq!((b.len(), rest), (1, 0));
        b.remove(0)
    }

    #[test]
    fn patch_matches_full_recompute_on_random_batches() {
        for seed in 0..200u64 {
            let codec = [Compression::None, Compression::Lz4, Compression::Gzip][seed as usize % 3];
            let b = batch_with(1 + (seed as usize % 20), 4242, seed % 2 == 0, codec, seed);
            assert!(crc_is_valid(&b));
            let stamp = ProducerStamp {
                producer_id: 77 + seed as i64,
                producer_epoch: 2,
                transactional: seed % 4 == 1,
            };
            let p = patch_for_produce(&b, stamp, seed as i32 * 10);
            let mut whole = p.header.to_vec();
            whole.extend_from_slice(&p.body);
            let stored = u32::from_be_bytes(whole[17..21].try_into().unwrap());
            assert_eq!(stored, crc32c::crc32c(&whole[21..]), "seed {seed}");
            let v = RawBatch {
                bytes: Bytes::from(whole),
            };
            assert_eq!(v.base_offset(), 0);
            assert_eq!(v.producer_id(), 77 + seed as i64);
            assert_eq!(v.is_transactional(), seed % 4 == 1);
            assert_eq!(v.record_count(), b.record_count());
            assert_eq!(&v.bytes()[61..], &b.bytes()[61..]);
            assert_eq!(p.body.as_ptr(), b.bytes()[61..].as_ptr(), "records are not copied");
        }
    }

    #[test]
    fn log_append_time_bit_is_cleared() {
        let b = batch_with(3, -1, false, Compression::None, 1);
        let mut raw = b.bytes().to_vec();
        raw[22] |= ATTR_LOG_APPEND_TIME as u8;
        let crc = crc32c::crc32c(&raw[21..]);
        raw[17..21].copy_from_slice(&crc.to_be_bytes());
        let b = RawBatch {
            bytes: Bytes::from(raw),
        };
        let p = patch_for_produce(
            &b,
            ProducerStamp {
                producer_id: 1,
                producer_epoch: 0,
                transactional: false,
            },
            0,
        );
        assert_eq!(
            i16::from_be_bytes([p.header[21], p.header[22]]) & ATTR_LOG_APPEND_TIME,
            0
        );
    }

    #[test]
    fn corrupted_payload_stays_detectably_corrupt() {
        let b = batch_with(5, -1, false, Compression::None, 9);
        let mut raw = b.bytes().to_vec();
        let last = raw.len() - 3;
        raw[last] ^= 0x40;
        let bad = RawBatch {
            bytes: Bytes::from(raw),
        };
        assert!(!crc_is_valid(&bad));
        let p = patch_for_produce(
            &bad,
            ProducerStamp {
                producer_id: 1,
                producer_epoch: 0,
                transactional: false,
            },
            0,
        );
        let mut whole = p.header.to_vec();
        whole.extend_from_slice(&p.body);
        assert_ne!(
            u32::from_be_bytes(whole[17..21].try_into().unwrap()),
            crc32c::crc32c(&whole[21..])
        );
    }
}
