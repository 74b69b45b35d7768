//! Up-conversion of legacy (magic 0 and 1, pre-0.11) messages to a v2 batch.
//!
//! A cluster upgraded from old Kafka versions can still hold such messages, and
//! Produce v3+ accepts magic 2 only. A legacy entry is either one message or a
//! compressed wrapper whose value is a message set of inner messages
//! (`AbstractLegacyRecordBatch` in Kafka). Key, value and timestamp are kept;
//! legacy messages have no headers. The v2 batch uses the same codec. The
//! legacy CRC-32 (IEEE) is verified first: nothing unverified gets a fresh CRC.
//! A wrapper's message set may decompress to at most `max_plain` bytes
//! ([`super::inflate`]).

use bytes::{Buf, Bytes};

use super::inflate::decompress_records;
use super::writer::{write_batch, BatchSpec, RecordSpec};
use super::{BatchError, RawBatch, Reencoded};

struct Legacy {
    offset: i64,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    codec: u8,
}

fn parse_message(offset: i64, msg: &[u8], at: i64) -> Result<Legacy, BatchError> {
    let bad = |reason: &str| BatchError::Malformed {
        base_offset: at,
        reason: format!("legacy message: {reason}"),
    };
    if msg.len() < 14 {
        return Err(bad("too short"));
    }
    let crc = u32::from_be_bytes(msg[0..4].try_into().expect("4 bytes"));
    if crc32fast::hash(&msg[4..]) != crc {
        return Err(BatchError::CrcMismatch { base_offset: at });
    }
    let magic = msg[4];
    let attributes = msg[5];
    let mut rest = &msg[6..];
    let timestamp = if magic == 1 {
        if rest.len() < 8 {
            return Err(bad("truncated timestamp"));
        }
        rest.get_i64()
    } else {
        -1
    };
    let mut bytes = |what: &str| -> Result<Option<Vec<u8>>, BatchError> {
        if rest.len() < 4 {
            return Err(bad(what));
        }
        let n = rest.get_i32();
        if n < 0 {
            return Ok(None);
        }
        if n as usize > rest.len() {
            return Err(bad(what));
        }
        let v = rest[..n as usize].to_vec();
        rest.advance(n as usize);
        Ok(Some(v))
    };
    let key = bytes("truncated key")?;
    let value = bytes("truncated value")?;
    Ok(Legacy {
        offset,
        timestamp,
        key,
        value,
        codec: attributes & 0x07,
    })
}

/// Parses `[offset i64][size i32][message]` entries.
fn parse_set(mut set: &[u8], at: i64) -> Result<Vec<(i64, Vec<u8>)>, BatchError> {
    let mut out = Vec::new();
    while set.len() >= 12 {
        let offset = set.get_i64();
        let size = set.get_i32();
        if size < 0 || size as usize > set.len() {
            return Err(BatchError::Malformed {
                base_offset: at,
                reason: format!("legacy message size {size} exceeds the set"),
            });
        }
        out.push((offset, set[..size as usize].to_vec()));
        set.advance(size as usize);
    }
    Ok(out)
}

/// Converts one legacy entry (a message or a compressed wrapper) into a v2 batch
/// with contiguous offsets; `source_deltas[i]` is record i's source offset minus
/// the new batch's base offset. A compressed wrapper's message set may take at
/// most `max_plain` bytes uncompressed.
pub fn up_convert(b: &RawBatch, max_plain: usize) -> Result<Reencoded, BatchError> {
    let at = b.base_offset();
    let entry = &b.bytes()[12..];
    let outer = parse_message(at, entry, at)?;
    let magic = entry[4];
    let messages: Vec<Legacy> = if outer.codec == 0 {
        vec![outer]
    } else {
        let compressed = Bytes::from(outer.value.clone().unwrap_or_default());
        let plain = decompress_records(outer.codec, compressed, max_plain, at)?;
        let inner = parse_set(&plain, at)?;
        let n = inner.len() as i64;
        inner
            .into_iter()
            .enumerate()
            .map(|(i, (off, msg))| {
                // Magic 1 inner offsets are relative; the wrapper carries the last absolute one.
                let abs = if magic == 1 { at - (n - 1) + i as i64 } else { off };
                let mut m = parse_message(abs, &msg, at)?;
                if magic == 1 && entry[5] & 0x08 != 0 {
                    m.timestamp = outer.timestamp; // LogAppendTime: the wrapper's time applies
                }
                Ok(m)
            })
            .collect::<Result<_, BatchError>>()?
    };
    let Some(first) = messages.first() else {
        return Err(BatchError::Malformed {
            base_offset: at,
            reason: "empty legacy wrapper".into(),
        });
    };
    let base = first.offset;
    let source_deltas = messages
        .iter()
        .map(|m| {
            m.offset
                .checked_sub(base)
                .and_then(|d| i32::try_from(d).ok())
                .filter(|d| *d >= 0)
                .ok_or_else(|| BatchError::Malformed {
                    base_offset: at,
                    reason: format!("legacy inner offset {} is not within a batch of {base}", m.offset),
                })
        })
        .collect::<Result<Vec<i32>, BatchError>>()?;
    let records: Vec<RecordSpec> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| RecordSpec {
            offset_delta: i as i32,
            key: m.key.clone(),
            value: m.value.clone(),
            headers: vec![],
        })
        .collect();
    let batch = write_batch(
        &BatchSpec {
            base_offset: base,
            codec: entry[5] & 0x07,
            timestamps: Some(messages.iter().map(|m| m.timestamp).collect()),
            ..Default::default()
        },
        &records,
    );
    Ok(Reencoded { batch, source_deltas })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::testdata::{legacy_entry, legacy_message};

    /// (offset, key, value, timestamp) of each record.
    type Decoded = (i64, Option<Vec<u8>>, Option<Vec<u8>>, i64);

    fn decode_v2(b: &RawBatch) -> Vec<Decoded> {
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut b.bytes().clone()).unwrap();
        set.records
            .iter()
            .map(|r| {
                (
                    r.offset,
                    r.key.as_ref().map(|k| k.to_vec()),
                    r.value.as_ref().map(|v| v.to_vec()),
                    r.timestamp,
                )
            })
            .collect()
    }

    #[test]
    fn uncompressed_v0_and_v1_messages_convert() {
        let v0 = RawBatch::from_single(Bytes::from(legacy_entry(
            41,
            &legacy_message(0, 0, 0, Some(b"k"), Some(b"v0")),
        )))
        .unwrap();
        let r = up_convert(&v0, 1 << 20).unwrap();
        assert!(crate::batch::crc_is_valid(&r.batch));
        assert_eq!(
            decode_v2(&r.batch),
            vec![(41, Some(b"k".to_vec()), Some(b"v0".to_vec()), -1)]
        );
        let v1 = RawBatch::from_single(Bytes::from(legacy_entry(
            42,
            &legacy_message(1, 0, 1_600_000_000_000, None, Some(b"v1")),
        )))
        .unwrap();
        let r = up_convert(&v1, 1 << 20).unwrap();
        assert_eq!(
            decode_v2(&r.batch),
            vec![(42, None, Some(b"v1".to_vec()), 1_600_000_000_000)]
        );
        assert_eq!(r.source_deltas, vec![0]);
    }

    #[test]
    fn compressed_v1_wrapper_converts_with_its_codec() {
        let inner: Vec<u8> = (0..3)
            .flat_map(|i| {
                legacy_entry(
                    i,
                    &legacy_message(
                        1,
                        0,
                        1_600_000_000_000 + i,
                        Some(format!("k{i}").as_bytes()),
                        Some(b"val"),
                    ),
                )
            })
            .collect();
        let gz = crate::batch::reencode::compress(1, &inner).unwrap();
        // Wrapper at the absolute offset of its last inner message (102).
        let wrapper = legacy_message(1, 1, 1_600_000_000_002, None, Some(&gz));
        let b = RawBatch::from_single(Bytes::from(legacy_entry(102, &wrapper))).unwrap();
        assert_eq!(b.magic(), 1);
        let r = up_convert(&b, 1 << 20).unwrap();
        assert_eq!(r.batch.codec(), 1, "gzip kept");
        assert_eq!(r.batch.base_offset(), 100);
        assert_eq!(r.source_deltas, vec![0, 1, 2]);
        let recs = decode_v2(&r.batch);
        assert_eq!(recs.len(), 3);
        assert_eq!(
            recs[2],
            (102, Some(b"k2".to_vec()), Some(b"val".to_vec()), 1_600_000_000_002)
        );
    }

    #[test]
    fn wrapper_inflating_past_the_cap_is_refused() {
        // A gzip wrapper around 1,000 inner messages of 4 KiB of zeros each: 4 MiB inflated.
        let zeros = vec![0u8; 4096];
        let inner: Vec<u8> = (0..1000)
            .flat_map(|i| legacy_entry(i, &legacy_message(1, 0, 1_600_000_000_000, None, Some(&zeros))))
            .collect();
        let gz = crate::batch::reencode::compress(1, &inner).unwrap();
        assert!(gz.len() < 64 * 1024, "{}", gz.len());
        let wrapper = legacy_message(1, 1, 1_600_000_000_000, None, Some(&gz));
        let b = RawBatch::from_single(Bytes::from(legacy_entry(1999, &wrapper))).unwrap();
        assert_eq!(
            up_convert(&b, 1 << 20).unwrap_err(),
            BatchError::TooLargeDecompressed {
                base_offset: 1999,
                limit: 1 << 20
            }
        );
        assert_eq!(up_convert(&b, 8 << 20).unwrap().batch.record_count(), 1000);
    }

    #[test]
    fn corrupt_legacy_message_is_refused() {
        let mut m = legacy_message(1, 0, 5, Some(b"k"), Some(b"v"));
        let n = m.len();
        m[n - 1] ^= 1;
        let b = RawBatch::from_single(Bytes::from(legacy_entry(7, &m))).unwrap();
        assert!(matches!(
            up_convert(&b, 1 << 20),
            Err(BatchError::CrcMismatch { base_offset: 7 })
        ));
    }
}
