//! The slow path: re-encode a compacted batch with contiguous offsets.
//!
//! The broker rejects produced batches whose `lastOffsetDelta + 1 != recordCount`
//! (`LogValidator`), which compaction leaves behind. Each record is copied byte
//! for byte (attributes, timestamp delta, key, value and every header, duplicate
//! keys included) except its offset delta, which becomes its index; the records
//! are compressed again with the batch's own codec. Records are never decoded
//! into `kafka-protocol` types, whose header map would merge duplicate keys.
//! Decompression is bounded ([`super::inflate`]): a batch that would inflate past
//! the cap is refused with [`BatchError::TooLargeDecompressed`].

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{self as codec, Compressor};

use super::inflate::decompress_records;
use super::patch::crc_is_valid;
use super::varint::{put_varint, read_varint, read_varlong};
use super::{BatchError, RawBatch, V2_HEADER_LEN};

/// A re-encoded batch and, for each record, its offset delta in the source batch.
#[derive(Debug, Clone)]
pub struct Reencoded {
    /// A valid v2 batch (fresh CRC) with offsets `0..recordCount`.
    pub batch: RawBatch,
    /// Source offset delta of record `i` (for the source→destination offset map).
    pub source_deltas: Vec<i32>,
}

/// Re-encodes `b` with contiguous offset deltas. The source CRC is checked first:
/// a fresh CRC is computed only over bytes whose old CRC was verified. The
/// records may decompress to at most `max_plain` bytes.
pub fn reencode_contiguous(b: &RawBatch, max_plain: usize) -> Result<Reencoded, BatchError> {
    reencode_from(b, i64::MIN, max_plain).map(|r| r.expect("no record is dropped without a minimum offset"))
}

/// Like [`reencode_contiguous`], dropping the records below `min_offset` (a batch
/// that straddles the fetch position, e.g. after the log start moved into it).
/// The new batch's base offset is its first kept record's; `source_deltas` are
/// relative to it. `None` when no record is kept.
pub fn reencode_from(b: &RawBatch, min_offset: i64, max_plain: usize) -> Result<Option<Reencoded>, BatchError> {
    let at = b.base_offset();
    let bad = |reason: String| BatchError::Malformed {
        base_offset: at,
        reason,
    };
    if !crc_is_valid(b) {
        return Err(BatchError::CrcMismatch { base_offset: at });
    }
    let codec_id = b.codec();
    let plain = decompress_records(codec_id, b.bytes().slice(V2_HEADER_LEN..), max_plain, at)?;
    let mut input = &plain[..];
    let mut out = Vec::with_capacity(plain.len());
    // recordCount comes from the wire: every record takes at least one byte.
    let mut deltas: Vec<i32> = Vec::with_capacity((b.record_count().max(0) as usize).min(plain.len()));
    let mut scratch = Vec::new();
    let mut seen = 0i64;
    let mut first_kept: Option<i32> = None;
    while !input.is_empty() {
        let len = read_varint(&mut input).ok_or_else(|| bad("bad record length".into()))?;
        if len < 0 || len as usize > input.len() {
            return Err(bad(format!("record length {len} exceeds the batch")));
        }
        let (mut rec, rest) = input.split_at(len as usize);
        input = rest;
        let attributes = *rec.first().ok_or_else(|| bad("empty record".into()))?;
        rec = &rec[1..];
        let ts_start = rec;
        read_varlong(&mut rec).ok_or_else(|| bad("bad timestamp delta".into()))?;
        let ts_bytes = &ts_start[..ts_start.len() - rec.len()];
        let delta = read_varint(&mut rec).ok_or_else(|| bad("bad offset delta".into()))?;
        seen += 1;
        if at.saturating_add(delta as i64) < min_offset {
            continue;
        }
        let first = *first_kept.get_or_insert(delta);
        // Offset deltas only grow within a batch; anything else is malformed.
        let rel = delta
            .checked_sub(first)
            .filter(|d| *d >= 0)
            .ok_or_else(|| bad(format!("offset delta {delta} below the first kept one ({first})")))?;
        deltas.push(rel);
        scratch.clear();
        scratch.push(attributes);
        scratch.extend_from_slice(ts_bytes);
        put_varint(&mut scratch, (deltas.len() - 1) as i32);
        scratch.extend_from_slice(rec); // key, value, headers: untouched
        put_varint(&mut out, scratch.len() as i32);
        out.extend_from_slice(&scratch);
    }
    if seen != b.record_count() as i64 {
        return Err(bad(format!("header says {} records, found {seen}", b.record_count())));
    }
    drop(plain); // before compressing, which copies `out` once more
    let Some(first) = first_kept else { return Ok(None) };
    let body = compress(codec_id, &out).map_err(|e| bad(format!("cannot compress: {e:#}")))?;
    let mut h = BytesMut::with_capacity(V2_HEADER_LEN + body.len());
    h.put_slice(&b.bytes()[..V2_HEADER_LEN]);
    let new_base = at
        .checked_add(first as i64)
        .ok_or_else(|| bad(format!("offset delta {first} overflows the base offset")))?;
    h[0..8].copy_from_slice(&new_base.to_be_bytes());
    h[57..61].copy_from_slice(&(deltas.len() as i32).to_be_bytes());
    let length = (V2_HEADER_LEN - 12 + body.len()) as i32;
    h[8..12].copy_from_slice(&length.to_be_bytes());
    h[23..27].copy_from_slice(&((deltas.len() as i32) - 1).to_be_bytes());
    h.put_slice(&body);
    let crc = crc32c::crc32c(&h[21..]);
    h[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(Some(Reencoded {
        batch: RawBatch { bytes: h.freeze() },
        source_deltas: deltas,
    }))
}

/// Compresses `plain` with codec `codec_id` (0 none, 1 gzip, 2 snappy, 3 lz4,
/// 4 zstd) as Kafka's Java client does (`kafka-protocol`'s compressors).
pub fn compress(codec_id: u8, plain: &[u8]) -> anyhow::Result<Bytes> {
    let mut out = BytesMut::with_capacity(plain.len() / 2 + 64);
    match codec_id {
        0 => out.put_slice(plain),
        1 => codec::Gzip::compress(&mut out, |b| {
            b.put_slice(plain);
            Ok(())
        })?,
        2 => codec::Snappy::compress(&mut out, |b| {
            b.put_slice(plain);
            Ok(())
        })?,
        3 => {
            // LZ4's fast mode (level 0), in the frame format Kafka reads
            // (independent blocks). kafka-protocol's compressor asks for level
            // 4, which is LZ4HC: merging a far destination's queue spent 85 %
            // of strait's CPU there, 14.8 CPU s per GB replicated.
            let mut enc = lz4::EncoderBuilder::new()
                .level(0)
                .block_mode(lz4::BlockMode::Independent)
                .build((&mut out).writer())?;
            std::io::Write::write_all(&mut enc, plain)?;
            enc.finish().1?;
        }
        4 => codec::Zstd::compress(&mut out, |b| {
            b.put_slice(plain);
            Ok(())
        })?,
        c => anyhow::bail!("unknown compression codec {c}"),
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::writer::{encode_records, write_batch, BatchSpec, RecordSpec};

    fn compacted(codec: u8) -> (RawBatch, Vec<RecordSpec>) {
        // Survivors of compaction at deltas 0, 3 and 7 (of 0..=7), with duplicate
        // header keys, a null key, a null value and a null header value.
        let records = vec![
            RecordSpec {
                offset_delta: 0,
                key: Some(b"a".to_vec()),
                value: Some(vec![1; 300]),
                headers: vec![("h".into(), Some(b"1".to_vec())), ("h".into(), Some(b"2".to_vec()))],
            },
            RecordSpec {
                offset_delta: 3,
                key: None,
                value: Some(b"x".to_vec()),
                headers: vec![("h".into(), None)],
            },
            RecordSpec {
                offset_delta: 7,
                key: Some(b"c".to_vec()),
                value: None,
                headers: vec![
                    ("h".into(), Some(b"1".to_vec())),
                    ("h".into(), Some(b"1".to_vec())),
                    ("z".into(), Some(vec![])),
                ],
            },
        ];
        let b = write_batch(
            &BatchSpec {
                base_offset: 100,
                codec,
                last_offset_delta: Some(7),
                ..Default::default()
            },
            &records,
        );
        (b, records)
    }

    #[test]
    fn reencode_keeps_every_record_byte_for_byte_in_every_codec() {
        for codec in 0..=4u8 {
            let (b, mut records) = compacted(codec);
            assert_eq!(
                b.last_offset_delta() + 1 - b.record_count(),
                5,
                "three records, gaps of five"
            );
            let r = reencode_contiguous(&b, 1 << 20).unwrap();
            assert_eq!(r.source_deltas, vec![0, 3, 7]);
            let nb = &r.batch;
            assert!(crate::batch::crc_is_valid(nb));
            assert_eq!(nb.codec(), codec);
            assert_eq!(nb.base_offset(), 100);
            assert_eq!(nb.record_count(), 3);
            assert_eq!(nb.last_offset_delta(), 2);
            assert_eq!(&nb.bytes()[27..43], &b.bytes()[27..43], "timestamps kept");
            // Expected records: the same with offset deltas 0, 1, 2.
            for (i, rec) in records.iter_mut().enumerate() {
                rec.offset_delta = i as i32;
            }
            let plain = crate::batch::inflate::decompress(codec, nb.bytes().slice(61..), 1 << 20).unwrap();
            assert_eq!(&plain[..], &encode_records(&records)[..], "codec {codec}");
        }
    }

    #[test]
    fn records_below_the_fetch_position_are_dropped() {
        let (b, _) = compacted(2);
        let r = reencode_from(&b, 103, 1 << 20).unwrap().unwrap();
        assert_eq!(r.batch.base_offset(), 103);
        assert_eq!(r.batch.record_count(), 2);
        assert_eq!(r.source_deltas, vec![0, 4]);
        assert!(crate::batch::crc_is_valid(&r.batch));
        assert!(reencode_from(&b, 108, 1 << 20).unwrap().is_none());
    }

    #[test]
    fn batch_inflating_past_the_cap_is_refused_with_its_offset() {
        use crate::batch::testdata::{v2_batch, zstd_zero_records, Header};
        let header = Header {
            base_offset: 40,
            attributes: 4, // zstd
            last_offset_delta: 5,
            base_timestamp: 1_700_000_000_000,
            producer_id: -1,
            record_count: 2,
        };
        // Two records of 1 GiB of zeros each: 64 KiB on the wire.
        let bomb = v2_batch(header, &zstd_zero_records(&[1 << 30, 1 << 30]));
        assert!(bomb.len() < 100 * 1024);
        for min_offset in [i64::MIN, 41] {
            assert_eq!(
                reencode_from(&bomb, min_offset, 1 << 20).unwrap_err(),
                BatchError::TooLargeDecompressed {
                    base_offset: 40,
                    limit: 1 << 20
                }
            );
        }
        // The same shape within the cap re-encodes.
        let small = v2_batch(header, &zstd_zero_records(&[1000, 2000]));
        let r = reencode_from(&small, 41, 1 << 20).unwrap().unwrap();
        assert_eq!(
            (r.batch.base_offset(), r.batch.record_count(), r.batch.codec()),
            (41, 1, 4)
        );
        let plain = crate::batch::inflate::decompress(4, r.batch.bytes().slice(61..), 1 << 20).unwrap();
        assert_eq!(plain.len(), 2011, "length, 9 bytes of fields, 2000 zeros, no headers");
    }

    #[test]
    fn corrupt_source_is_refused_not_blessed() {
        let (b, _) = compacted(3);
        let mut raw = b.bytes().to_vec();
        let n = raw.len();
        raw[n - 2] ^= 0xff;
        let bad = RawBatch {
            bytes: Bytes::from(raw),
        };
        assert!(matches!(
            reencode_contiguous(&bad, 1 << 20),
            Err(BatchError::CrcMismatch { base_offset: 100 })
        ));
    }

    #[test]
    fn record_count_mismatch_is_an_error() {
        let (b, _) = compacted(0);
        let mut raw = b.bytes().to_vec();
        raw[57..61].copy_from_slice(&5i32.to_be_bytes());
        let crc = crc32c::crc32c(&raw[21..]);
        raw[17..21].copy_from_slice(&crc.to_be_bytes());
        let e = reencode_contiguous(
            &RawBatch {
                bytes: Bytes::from(raw),
            },
            1 << 20,
        )
        .unwrap_err();
        assert!(e.to_string().contains("header says 5 records, found 3"), "{e}");
    }
}
