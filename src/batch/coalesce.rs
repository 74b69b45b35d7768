//! Coalescing: merge runs of small batches of one partition into one batch.
//!
//! Produce carries one batch per partition per request and a broker serves one
//! request per connection at a time, so a source written with tiny batches (one
//! record each, `linger.ms=0`) would be replicated at one request round trip per
//! batch. When such batches queue up, the producer merges them: records are
//! copied byte for byte except their offset and timestamp deltas, which are
//! rebased onto the merged batch, and the codec is kept. Source CRCs are checked
//! first. This is a slow path, taken only when it wins (configurable:
//! `coalesce_below_bytes`). The merged records may take at most
//! `max_decompressed_batch_bytes`: a run that would inflate past it is refused
//! with [`BatchError::TooLargeDecompressed`] naming the batch where it did, and
//! its batches travel raw instead.

use bytes::Bytes;

use super::inflate::decompress_records;
use super::patch::crc_is_valid;
use super::reencode::compress;
use super::varint::{put_varint, put_varlong, read_varint, read_varlong};
use super::{BatchError, RawBatch, Reencoded, V2_HEADER_LEN};

fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// True when `b` may be merged with its neighbours: a plain v2 data batch.
pub fn can_coalesce(b: &RawBatch) -> bool {
    b.magic() == 2 && !b.is_control() && !b.is_transactional() && b.record_count() > 0
}

/// Merges consecutive batches (same codec, in offset order) into one batch with
/// contiguous offset deltas; `source_deltas[i]` is record i's source offset minus
/// the first batch's base offset. The merged records may take at most
/// `max_plain` bytes uncompressed.
pub fn coalesce(batches: &[RawBatch], max_plain: usize) -> Result<Reencoded, BatchError> {
    let first = batches.first().ok_or(BatchError::Malformed {
        base_offset: -1,
        reason: "nothing to coalesce".into(),
    })?;
    let base = first.base_offset();
    let codec = first.codec();
    let bad = |at: i64, reason: String| BatchError::Malformed {
        base_offset: at,
        reason,
    };
    let base_ts = batches.iter().map(|b| i64_at(b.bytes(), 27)).min().unwrap_or(-1);
    let max_ts = batches.iter().map(|b| i64_at(b.bytes(), 35)).max().unwrap_or(-1);
    // Uncompressed records are written straight after the merged header, in one
    // buffer sized up front: each record is copied once. Other codecs collect the
    // plain records first and compress them behind the header.
    let input_len: usize = batches.iter().map(|b| b.len()).sum();
    let mut out = Vec::with_capacity(input_len + V2_HEADER_LEN);
    if codec == 0 {
        out.extend_from_slice(&first.bytes()[..V2_HEADER_LEN]);
    }
    let mut deltas = Vec::new();
    let mut prefix = Vec::with_capacity(16);
    for b in batches {
        let at = b.base_offset();
        if !crc_is_valid(b) {
            return Err(BatchError::CrcMismatch { base_offset: at });
        }
        if b.codec() != codec || !can_coalesce(b) {
            return Err(bad(at, "only plain v2 batches of one codec can be coalesced".into()));
        }
        let batch_ts = i64_at(b.bytes(), 27);
        // The bound covers what the merged batch holds so far: each batch may
        // inflate only into what is left of it.
        let left = max_plain.saturating_sub(out.len());
        let plain = decompress_records(codec, b.bytes().slice(V2_HEADER_LEN..), left, at).map_err(|e| match e {
            BatchError::TooLargeDecompressed { base_offset, .. } => BatchError::TooLargeDecompressed {
                base_offset,
                limit: max_plain,
            },
            e => e,
        })?;
        let mut input = &plain[..];
        while !input.is_empty() {
            let len = read_varint(&mut input).ok_or_else(|| bad(at, "bad record length".into()))?;
            if len < 1 || len as usize > input.len() {
                return Err(bad(at, format!("record length {len} exceeds the batch")));
            }
            let (rec, rest) = input.split_at(len as usize);
            input = rest;
            let attributes = rec[0];
            let mut r = &rec[1..];
            let ts_delta = read_varlong(&mut r).ok_or_else(|| bad(at, "bad timestamp delta".into()))?;
            let off_delta = read_varint(&mut r).ok_or_else(|| bad(at, "bad offset delta".into()))?;
            let delta = (at - base)
                .checked_add(off_delta as i64)
                .and_then(|d| i32::try_from(d).ok())
                .ok_or_else(|| bad(at, format!("offset delta {off_delta} does not fit the merged batch")))?;
            deltas.push(delta);
            let ts = batch_ts
                .checked_add(ts_delta)
                .and_then(|t| t.checked_sub(base_ts))
                .ok_or_else(|| bad(at, format!("timestamp delta {ts_delta} overflows")))?;
            prefix.clear();
            prefix.push(attributes);
            put_varlong(&mut prefix, ts);
            put_varint(&mut prefix, (deltas.len() - 1) as i32);
            put_varint(&mut out, (prefix.len() + r.len()) as i32);
            out.extend_from_slice(&prefix);
            out.extend_from_slice(r); // key, value, headers: untouched
        }
    }
    let mut h = if codec == 0 {
        out
    } else {
        let body = compress(codec, &out).map_err(|e| bad(base, format!("cannot compress: {e:#}")))?;
        let mut h = Vec::with_capacity(V2_HEADER_LEN + body.len());
        h.extend_from_slice(&first.bytes()[..V2_HEADER_LEN]);
        h.extend_from_slice(&body);
        h
    };
    let body_len = h.len() - V2_HEADER_LEN;
    h[8..12].copy_from_slice(&((V2_HEADER_LEN - 12 + body_len) as i32).to_be_bytes());
    h[23..27].copy_from_slice(&(deltas.len() as i32 - 1).to_be_bytes());
    h[27..35].copy_from_slice(&base_ts.to_be_bytes());
    h[35..43].copy_from_slice(&max_ts.to_be_bytes());
    h[57..61].copy_from_slice(&(deltas.len() as i32).to_be_bytes());
    let crc = crc32c::crc32c(&h[21..]);
    h[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(Reencoded {
        batch: RawBatch { bytes: Bytes::from(h) },
        source_deltas: deltas,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::writer::{write_batch, BatchSpec, RecordSpec};
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn merges_batches_keeping_records_and_timestamps() {
        for codec in [0u8, 1, 2, 3, 4] {
            let batches: Vec<RawBatch> = (0..5)
                .map(|i| {
                    write_batch(
                        &BatchSpec {
                            base_offset: 10 + i * 2,
                            codec,
                            base_timestamp: 1_700_000_000_000 + i * 1000,
                            ..Default::default()
                        },
                        &[
                            RecordSpec::simple(0, format!("a{i}").as_bytes()),
                            RecordSpec {
                                offset_delta: 1,
                                key: None,
                                value: None,
                                headers: vec![("h".into(), None), ("h".into(), Some(b"x".to_vec()))],
                            },
                        ],
                    )
                })
                .collect();
            let r = coalesce(&batches, 1 << 20).unwrap();
            assert!(crc_is_valid(&r.batch));
            assert_eq!(r.batch.codec(), codec);
            assert_eq!(r.batch.record_count(), 10);
            assert_eq!(r.batch.last_offset_delta(), 9);
            assert_eq!(r.source_deltas, (0..10).collect::<Vec<i32>>());
            let got = RecordBatchDecoder::decode(&mut r.batch.bytes().clone()).unwrap();
            let ts: Vec<i64> = got.records.iter().map(|r| r.timestamp).collect();
            let want: Vec<i64> = (0..5)
                .flat_map(|i| [1_700_000_000_000 + i * 1000, 1_700_000_000_000 + i * 1000 + 10])
                .collect();
            assert_eq!(ts, want, "codec {codec}");
            assert_eq!(got.records[4].value.as_deref(), Some(&b"a2"[..]));
        }
    }

    #[test]
    fn a_run_inflating_past_the_cap_is_refused_naming_the_batch() {
        use crate::batch::testdata::{v2_batch, zstd_zero_records, Header};
        let zeros = |base_offset: i64, lens: &[u32]| {
            v2_batch(
                Header {
                    base_offset,
                    attributes: 4, // zstd
                    last_offset_delta: lens.len() as i32 - 1,
                    base_timestamp: 1_700_000_000_000,
                    producer_id: -1,
                    record_count: lens.len() as i32,
                },
                &zstd_zero_records(lens),
            )
        };
        let (small, bomb) = (zeros(10, &[100, 100]), zeros(12, &[1 << 30, 1 << 30, 1 << 30, 1 << 30]));
        assert!(bomb.len() < 200 * 1024);
        let limit = 1 << 20;
        assert_eq!(
            coalesce(&[small.clone(), bomb], limit).unwrap_err(),
            BatchError::TooLargeDecompressed { base_offset: 12, limit }
        );
        // The cap bounds the merged batch, not only each batch: two of 600 KiB each.
        let (a, b) = (zeros(20, &[600 << 10]), zeros(21, &[600 << 10]));
        assert_eq!(
            coalesce(&[a.clone(), b.clone()], limit).unwrap_err(),
            BatchError::TooLargeDecompressed { base_offset: 21, limit }
        );
        let r = coalesce(&[small, a, b], 2 * limit).unwrap();
        assert_eq!(r.source_deltas, vec![0, 1, 10, 11]);
    }

    #[test]
    fn gaps_between_batches_are_kept_in_the_deltas() {
        // A transaction marker at offset 12 between two batches.
        let a = write_batch(
            &BatchSpec {
                base_offset: 10,
                ..Default::default()
            },
            &[RecordSpec::simple(0, b"a"), RecordSpec::simple(1, b"b")],
        );
        let b = write_batch(
            &BatchSpec {
                base_offset: 13,
                ..Default::default()
            },
            &[RecordSpec::simple(0, b"c")],
        );
        let r = coalesce(&[a, b], 1 << 20).unwrap();
        assert_eq!(r.source_deltas, vec![0, 1, 3]);
        assert_eq!(r.batch.last_offset_delta(), 2);
    }
}
