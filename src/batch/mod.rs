//! Views over Kafka record batches held in `Bytes`, without copying them.
//!
//! Batch v2 header layout (`DefaultRecordBatch.java`):
//! `0 baseOffset i64 | 8 length i32 | 12 partitionLeaderEpoch i32 | 16 magic i8 |
//! 17 crc u32 | 21 attributes i16 | 23 lastOffsetDelta i32 | 27 baseTimestamp i64 |
//! 35 maxTimestamp i64 | 43 producerId i64 | 51 producerEpoch i16 |
//! 53 baseSequence i32 | 57 recordCount i32 | 61 records`.
//! `length` counts the bytes after itself; CRC-32C covers byte 21 to the end.

use bytes::Bytes;

pub mod coalesce;
pub mod crc;
pub mod filter;
pub mod inflate;
pub mod patch;
pub mod reencode;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod testdata;
pub mod upconvert;
pub mod varint;
pub mod writer;

pub use filter::{BatchFilter, Disposition, SkipReason};
pub use patch::{crc_is_valid, patch_for_produce, PatchedBatch, ProducerStamp};
pub use reencode::{reencode_contiguous, reencode_from, Reencoded};
pub use upconvert::up_convert;

/// Size of the v2 batch header.
pub const V2_HEADER_LEN: usize = 61;
/// Offset of the `length` field; a batch occupies `12 + length` bytes.
const LOG_OVERHEAD: usize = 12;

/// Errors reading a records blob.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchError {
    /// A batch announced a length that cannot hold its header.
    #[error("record batch at byte {position} announces length {length}, below the minimum for magic {magic}")]
    BadLength { position: usize, length: i32, magic: i8 },
    /// Offsets no broker writes: a negative base or last offset, or a last offset
    /// past `i64::MAX - 1` (the next fetch offset would overflow).
    #[error("record batch at byte {position} has impossible offsets: base {base_offset}, last offset delta {last_offset_delta}")]
    BadOffsets {
        position: usize,
        base_offset: i64,
        last_offset_delta: i32,
    },
    /// A batch with an unknown magic byte.
    #[error("record batch at byte {position} has unknown magic {magic}")]
    BadMagic { position: usize, magic: i8 },
    /// The stored CRC-32C does not match the batch bytes.
    #[error("record batch at offset {base_offset} fails its CRC-32C check (corrupted in transit or on disk)")]
    CrcMismatch { base_offset: i64 },
    /// The records inside a batch cannot be parsed.
    #[error("record batch at offset {base_offset} is malformed: {reason}")]
    Malformed { base_offset: i64, reason: String },
    /// A slow path would decompress the batch past the cap
    /// (`max_decompressed_batch_bytes`); decompression stopped there.
    #[error(
        "record batch at offset {base_offset} decompresses to more than {limit} bytes (max_decompressed_batch_bytes)"
    )]
    TooLargeDecompressed { base_offset: i64, limit: usize },
}

impl BatchError {
    /// Byte position of the batch [`split_batches`] refused (bad length, magic or
    /// offsets) in its records blob: the batches before it are whole.
    pub fn position(&self) -> Option<usize> {
        match self {
            BatchError::BadLength { position, .. }
            | BatchError::BadOffsets { position, .. }
            | BatchError::BadMagic { position, .. } => Some(*position),
            _ => None,
        }
    }
}

/// One record batch (any magic) as a zero-copy slice of a Fetch response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawBatch {
    pub(crate) bytes: Bytes,
}

impl RawBatch {
    /// Wraps bytes already known to hold exactly one batch (e.g. from [`split_batches`]).
    pub fn from_single(bytes: Bytes) -> Result<Self, BatchError> {
        let (mut v, rest) = split_batches(&bytes)?;
        if v.len() != 1 || rest != 0 {
            return Err(BatchError::Malformed {
                base_offset: -1,
                reason: "not exactly one batch".into(),
            });
        }
        Ok(v.remove(0))
    }

    /// The whole batch, header included.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
    /// Consumes the view, returning the batch bytes.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }
    fn i64_at(&self, at: usize) -> i64 {
        i64::from_be_bytes(self.bytes[at..at + 8].try_into().expect("8 bytes"))
    }
    fn i32_at(&self, at: usize) -> i32 {
        i32::from_be_bytes(self.bytes[at..at + 4].try_into().expect("4 bytes"))
    }
    /// `baseOffset` (for magic 0/1: the offset of the wrapper message).
    pub fn base_offset(&self) -> i64 {
        self.i64_at(0)
    }
    /// Magic byte (0, 1 or 2).
    pub fn magic(&self) -> i8 {
        self.bytes[16] as i8
    }
    /// Length of the batch in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
    /// Never true: a batch always holds its header.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
    /// v2 `attributes` (0 for magic 0/1).
    pub fn attributes(&self) -> i16 {
        if self.magic() < 2 {
            return 0;
        }
        i16::from_be_bytes([self.bytes[21], self.bytes[22]])
    }
    /// Compression codec id: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn codec(&self) -> u8 {
        if self.magic() < 2 {
            return self.bytes[LOG_OVERHEAD + 5] & 0x07; // magic 0/1 attributes byte
        }
        (self.attributes() & 0x07) as u8
    }
    /// True for transaction control batches (commit/abort markers).
    pub fn is_control(&self) -> bool {
        self.magic() >= 2 && self.attributes() & 0x20 != 0
    }
    /// True when the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.magic() >= 2 && self.attributes() & 0x10 != 0
    }
    /// v2 `lastOffsetDelta`.
    pub fn last_offset_delta(&self) -> i32 {
        self.i32_at(23)
    }
    /// Offset of the last record (v2: base + lastOffsetDelta).
    pub fn last_offset(&self) -> i64 {
        if self.magic() < 2 {
            return self.base_offset();
        }
        // Cannot overflow for a batch from split_batches; saturate for any other.
        self.base_offset().saturating_add(self.last_offset_delta() as i64)
    }
    /// v2 `baseTimestamp`: the first record's timestamp as its producer set
    /// it (-1 for magic 0/1). See [`Self::first_timestamp`] for what readers see.
    pub fn base_timestamp(&self) -> i64 {
        if self.magic() < 2 {
            return -1;
        }
        self.i64_at(27)
    }
    /// True when the broker stamped the batch with its log-append time
    /// (attribute bit 3): every record then reads as `maxTimestamp`.
    pub fn is_log_append_time(&self) -> bool {
        self.magic() >= 2 && self.attributes() & 0x08 != 0
    }
    /// The timestamp a reader sees on the batch's first record: `baseTimestamp`,
    /// or `maxTimestamp` under log-append time (`DefaultRecordBatch.java`
    /// gives every record the batch's `maxTimestamp` then). -1 for magic 0/1.
    /// Replication latency charges every record of a batch this one: the
    /// batch's oldest record by creation order, so a large or coalesced batch is
    /// not understated the way `maxTimestamp` would understate it.
    pub fn first_timestamp(&self) -> i64 {
        if self.is_log_append_time() {
            self.max_timestamp()
        } else {
            self.base_timestamp()
        }
    }
    /// v2 `maxTimestamp` (-1 for magic 0/1).
    pub fn max_timestamp(&self) -> i64 {
        if self.magic() < 2 {
            return -1;
        }
        self.i64_at(35)
    }
    /// v2 `producerId`.
    pub fn producer_id(&self) -> i64 {
        self.i64_at(43)
    }
    /// v2 `recordCount`.
    pub fn record_count(&self) -> i32 {
        self.i32_at(57)
    }
    /// v2 stored CRC-32C.
    pub fn crc(&self) -> u32 {
        u32::from_be_bytes(self.bytes[17..21].try_into().expect("4 bytes"))
    }
}

/// Splits a Fetch response's records blob into batches, zero-copy.
///
/// Returns the complete batches and the number of trailing bytes that form an
/// incomplete batch: brokers cut a response at `max_bytes`, so a truncated last
/// batch is normal and means "fetch again from its offset", not an error.
pub fn split_batches(records: &Bytes) -> Result<(Vec<RawBatch>, usize), BatchError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while records.len() - pos >= 17 {
        let length = i32::from_be_bytes(records[pos + 8..pos + 12].try_into().expect("4 bytes"));
        let magic = records[pos + 16] as i8;
        let min = match magic {
            2 => (V2_HEADER_LEN - LOG_OVERHEAD) as i32,
            0 | 1 => 14, // crc + magic + attributes + key len + value len
            _ => return Err(BatchError::BadMagic { position: pos, magic }),
        };
        if length < min {
            return Err(BatchError::BadLength {
                position: pos,
                length,
                magic,
            });
        }
        let end = pos + LOG_OVERHEAD + length as usize;
        if end > records.len() {
            break;
        }
        // Offsets are checked once here, so offset arithmetic on a RawBatch (last
        // offset, next fetch offset = last + 1) cannot overflow.
        let base_offset = i64::from_be_bytes(records[pos..pos + 8].try_into().expect("8 bytes"));
        let last_offset_delta = match magic {
            2 => i32::from_be_bytes(records[pos + 23..pos + 27].try_into().expect("4 bytes")),
            _ => 0,
        };
        if base_offset < 0 || last_offset_delta < 0 || base_offset > i64::MAX - 1 - last_offset_delta as i64 {
            return Err(BatchError::BadOffsets {
                position: pos,
                base_offset,
                last_offset_delta,
            });
        }
        out.push(RawBatch {
            bytes: records.slice(pos..end),
        });
        pos = end;
    }
    Ok((out, records.len() - pos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions};

    fn batch(n: i64, codec: Compression) -> Bytes {
        let records: Vec<Record> = (0..n)
            .map(|i| {
                writer::simple_record(
                    i,
                    1_700_000_000_000 + i,
                    Some(Bytes::from(format!("k{i}"))),
                    Some(Bytes::from(vec![b'v'; 100])),
                )
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
        buf.freeze()
    }

    #[test]
    fn splits_batches_zero_copy_and_reports_truncated_tail() {
        let a = batch(3, Compression::None);
        let b = batch(5, Compression::Lz4);
        let mut blob = BytesMut::new();
        blob.put_slice(&a);
        blob.put_slice(&b);
        blob.put_slice(&b[..30]); // truncated third batch
        let blob = blob.freeze();
        let (batches, rest) = split_batches(&blob).unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(rest, 30);
        assert_eq!(batches[0].bytes(), &a);
        assert_eq!(batches[1].bytes(), &b);
        assert_eq!(batches[1].codec(), 3);
        assert_eq!(batches[1].record_count(), 5);
        assert_eq!(batches[1].last_offset_delta(), 4);
        assert_eq!(
            batches[0].bytes().as_ptr(),
            blob.as_ptr(),
            "slices share the fetch buffer"
        );
    }

    #[test]
    fn rejects_offsets_no_broker_writes() {
        // Found by the `batches` fuzz target: baseOffset i64::MAX made last_offset()
        // overflow (a panic in debug builds, a negative next fetch offset in release).
        let good = batch(3, Compression::None);
        for (base, delta) in [(i64::MAX, 2), (i64::MAX - 2, 2), (-1, 2), (5, -1)] {
            let mut b = BytesMut::from(&good[..]);
            b[0..8].copy_from_slice(&i64::to_be_bytes(base));
            b[23..27].copy_from_slice(&i32::to_be_bytes(delta));
            assert_eq!(
                split_batches(&b.freeze()),
                Err(BatchError::BadOffsets {
                    position: 0,
                    base_offset: base,
                    last_offset_delta: delta
                })
            );
        }
        // The largest valid last offset still leaves room for the next fetch offset.
        let mut b = BytesMut::from(&good[..]);
        b[0..8].copy_from_slice(&i64::to_be_bytes(i64::MAX - 3));
        let (v, _) = split_batches(&b.freeze()).unwrap();
        assert_eq!(v[0].last_offset(), i64::MAX - 1);
    }

    #[test]
    fn base_and_first_timestamps_read_the_header() {
        // Records stamped 1_700_000_000_000 + i: base is the first, max the last.
        let (v, _) = split_batches(&batch(4, Compression::Lz4)).unwrap();
        assert_eq!(v[0].base_timestamp(), 1_700_000_000_000);
        assert_eq!(v[0].max_timestamp(), 1_700_000_000_003);
        assert!(!v[0].is_log_append_time());
        assert_eq!(v[0].first_timestamp(), 1_700_000_000_000);
        // Log-append time (attribute bit 3): every record reads as maxTimestamp.
        let mut b = BytesMut::from(&v[0].bytes()[..]);
        b[22] |= 0x08;
        b[35..43].copy_from_slice(&1_800_000_000_000i64.to_be_bytes());
        let (v, _) = split_batches(&b.freeze()).unwrap();
        assert!(v[0].is_log_append_time());
        assert_eq!(v[0].base_timestamp(), 1_700_000_000_000);
        assert_eq!(v[0].first_timestamp(), 1_800_000_000_000);
    }

    #[test]
    fn rejects_garbage_lengths_and_magic() {
        let mut a = BytesMut::from(&batch(1, Compression::None)[..]);
        a[16] = 7;
        assert!(matches!(
            split_batches(&a.clone().freeze()),
            Err(BatchError::BadMagic { position: 0, magic: 7 })
        ));
        a[16] = 2;
        a[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            split_batches(&a.freeze()),
            Err(BatchError::BadLength { length: -5, .. })
        ));
    }
}
