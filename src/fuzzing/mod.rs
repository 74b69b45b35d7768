//! Fuzz target bodies, shared by the cargo-fuzz targets in `fuzz/` (nightly,
//! coverage-guided) and the stable `fuzz_regressions` test, which runs each body
//! over the committed seeds, every regression input and thousands of
//! deterministic mutations.
//!
//! Each body takes arbitrary bytes and panics only when strait is wrong: a
//! decoder may refuse input, but must do so with an error, and every transform
//! is checked against an independent computation (a full CRC-32C, a strict
//! record parser). Not part of strait's API.

use bytes::Bytes;

use crate::batch::crc::fix_crc;
use crate::batch::patch::{ATTR_LOG_APPEND_TIME, ATTR_TRANSACTIONAL};
use crate::batch::reencode::compress;
use crate::batch::{
    crc_is_valid, patch_for_produce, reencode_from, split_batches, up_convert, BatchError, BatchFilter, Disposition,
    ProducerStamp, RawBatch, Reencoded,
};
use crate::config::{Config, ConfigError};
use crate::protocol::{FrameDecoder, ProtocolError};

pub mod records;
mod responses;
pub mod seeds;

use crate::batch::testdata::{bytes_of, legacy_entry, legacy_message, v2_batch, Header};
use records::{records_of, Cursor};
pub use responses::{response, version_selector, RESPONSE_APIS};

/// A fuzz target body.
pub type Target = fn(&[u8]);

/// Every target: `(name, body)`. The names are the cargo-fuzz target names.
pub const TARGETS: &[(&str, Target)] = &[
    ("response", response),
    ("frames", frames),
    ("batches", batches),
    ("patch", patch),
    ("reencode", reencode),
    ("upconvert", upconvert),
    ("config", config),
];

/// Input: `[cap selector][stream]`. The stream is fed in reads of a size picked
/// by the selector; the decoder must return exactly the frames a reference
/// parse of the whole stream finds, then the reference's error or nothing, and
/// never hold more memory than the bytes fed plus one frame under the cap.
pub fn frames(data: &[u8]) {
    let [sel, stream @ ..] = data else { return };
    let cap = [0usize, 1, 7, 64, 300, 1 << 16][*sel as usize % 6];
    let step = 1 + (*sel as usize / 6) % 41;
    // Reference: walk the size prefixes of the whole stream.
    let mut expected = Vec::new();
    let mut expected_err = None;
    let mut pos = 0;
    while stream.len() - pos >= 4 {
        let size = i32::from_be_bytes(stream[pos..pos + 4].try_into().expect("4 bytes"));
        if size < 0 {
            expected_err = Some(ProtocolError::NegativeFrameSize { size });
            break;
        }
        if size as usize > cap {
            expected_err = Some(ProtocolError::FrameTooLarge {
                limit: cap,
                actual: size as usize,
            });
            break;
        }
        if stream.len() - pos - 4 < size as usize {
            break;
        }
        expected.push(&stream[pos + 4..pos + 4 + size as usize]);
        pos += 4 + size as usize;
    }
    let mut dec = FrameDecoder::new(cap);
    let mut buf = bytes::BytesMut::new();
    let mut got = Vec::new();
    let mut err = None;
    'feed: for chunk in stream.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(f)) => got.push(f),
                Ok(None) => break,
                Err(e) => {
                    err = Some(e);
                    break 'feed;
                }
            }
        }
        assert!(
            buf.capacity() <= 2 * (stream.len() + 8) + cap + 8,
            "buffer of {} bytes for a {}-byte stream and a cap of {cap}",
            buf.capacity(),
            stream.len()
        );
    }
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(&g[..], *e);
    }
    assert_eq!(err, expected_err);
}

/// Input: a Fetch response's records blob. Splitting yields whole batches that
/// tile a prefix of the blob, or one error; every header view, the read_committed
/// filter and the produce patch work on every batch it yields.
pub fn batches(data: &[u8]) {
    let blob = bytes_of(data);
    let (batches, rest) = match split_batches(&blob) {
        Ok(v) => v,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let mut at = 0;
    for b in &batches {
        assert_eq!(b.bytes().as_ptr(), blob[at..].as_ptr(), "batches tile the blob");
        at += b.len();
    }
    assert_eq!(at + rest, blob.len());
    // Abort the transactions of the first two producers seen.
    let aborted = batches
        .iter()
        .filter(|b| b.magic() == 2)
        .take(2)
        .map(|b| (b.producer_id(), b.base_offset()))
        .collect();
    let mut filter = BatchFilter::new(aborted);
    for b in &batches {
        let _ = (b.base_offset(), b.attributes(), b.codec(), b.is_control());
        let _ = (b.is_transactional(), b.last_offset(), b.max_timestamp());
        let _ = crc_is_valid(b);
        assert_eq!(&RawBatch::from_single(b.bytes().clone()).expect("one batch"), b);
        let d = filter.classify(b);
        assert_eq!(d == Disposition::UpConvert, b.magic() < 2);
        if b.magic() == 2 {
            let _ = (b.last_offset_delta(), b.producer_id(), b.record_count());
            check_patch(b, stamp_of(&mut Cursor::new(&data[..data.len().min(15)])));
        }
    }
}

fn stamp_of(c: &mut Cursor) -> (ProducerStamp, i32) {
    let stamp = ProducerStamp {
        producer_id: c.i64(),
        producer_epoch: c.u8() as i16 - 1,
        transactional: c.u8() & 1 == 1,
    };
    (stamp, c.i32())
}

/// Patches `b` and checks the result against a full CRC-32C pass: the new CRC is
/// wrong by exactly as much as the old one was, and only the patched fields change.
fn check_patch(b: &RawBatch, (stamp, seq): (ProducerStamp, i32)) {
    let p = patch_for_produce(b, stamp, seq);
    assert_eq!(p.header.len(), 61);
    assert_eq!(p.body.as_ptr(), b.bytes()[61..].as_ptr(), "records are not copied");
    let mut whole = p.header.to_vec();
    whole.extend_from_slice(&p.body);
    let old = b.bytes();
    let stored = u32::from_be_bytes(whole[17..21].try_into().expect("4 bytes"));
    assert_eq!(
        stored ^ crc32c::crc32c(&whole[21..]),
        b.crc() ^ crc32c::crc32c(&old[21..]),
        "the CRC fix-up must carry the old CRC's error exactly"
    );
    let n = RawBatch {
        bytes: Bytes::from(whole),
    };
    assert_eq!(crc_is_valid(&n), crc_is_valid(b));
    assert_eq!((n.base_offset(), n.len(), n.magic()), (0, b.len(), 2));
    assert_eq!(&n.bytes()[8..12], &old[8..12], "length");
    assert_eq!(&n.bytes()[12..16], &(-1i32).to_be_bytes(), "partitionLeaderEpoch");
    let mut attrs = b.attributes() & !(ATTR_LOG_APPEND_TIME | ATTR_TRANSACTIONAL);
    if stamp.transactional {
        attrs |= ATTR_TRANSACTIONAL;
    }
    assert_eq!(n.attributes(), attrs);
    assert_eq!(&n.bytes()[23..43], &old[23..43], "offset delta and timestamps");
    assert_eq!(n.producer_id(), stamp.producer_id);
    assert_eq!(&n.bytes()[51..53], &stamp.producer_epoch.to_be_bytes());
    assert_eq!(&n.bytes()[53..57], &seq.to_be_bytes());
    assert_eq!(n.record_count(), b.record_count());
}

/// Input: `[flags][stamp 14 bytes][batch bytes]`. The bytes become a v2 batch
/// (magic, length and sane offsets forced, the CRC made valid or left as is) and are patched;
/// the linearity fix-up is also checked alone on a prefix of arbitrary length.
pub fn patch(data: &[u8]) {
    let mut c = Cursor::new(data);
    let flags = c.u8();
    let stamp = stamp_of(&mut c);
    let body = c.rest();
    // The CRC fix-up alone: replace a prefix of up to 64 bytes.
    let k = (flags as usize % 65).min(body.len());
    let new: Vec<u8> = body.iter().rev().take(k).map(|b| b ^ flags).collect();
    let mut changed = body.to_vec();
    changed[..k].copy_from_slice(&new);
    assert_eq!(
        fix_crc(crc32c::crc32c(body), &body[..k], &new, body.len()),
        crc32c::crc32c(&changed)
    );
    let mut raw = body.to_vec();
    raw.resize(raw.len().max(61), 0);
    raw[16] = 2;
    raw[0] &= 0x3f; // offsets a broker could write (split_batches refuses others)
    raw[23] &= 0x3f;
    let length = (raw.len() - 12) as i32;
    raw[8..12].copy_from_slice(&length.to_be_bytes());
    if flags & 0x80 != 0 {
        let crc = crc32c::crc32c(&raw[21..]);
        raw[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    let b = RawBatch::from_single(Bytes::from(raw)).expect("a well-framed v2 batch");
    check_patch(&b, stamp);
}

/// Input: `[mode][...]`. Mode 0 builds a valid batch with offset gaps from the
/// input; mode 1 takes the rest as uncompressed records; mode 2 as the compressed
/// payload. Re-encoding (with or without a minimum offset) must succeed on valid
/// batches, and whenever it succeeds the records are the same before and after,
/// renumbered 0, 1, 2, ... and mapped back to their source offsets.
pub fn reencode(data: &[u8]) {
    let mut c = Cursor::new(data);
    let mode = c.u8();
    let codec = c.u8() % 5;
    let min_sel = c.u8();
    let base_offset = c.u8() as i64 * 1000;
    let (b, valid) = match mode % 3 {
        0 => {
            let n = c.u8() % 17;
            let mut delta = 0i32;
            let recs: Vec<records::Rec> = (0..n)
                .map(|i| {
                    delta += (c.u8() % 4) as i32 + (i > 0) as i32;
                    records::Rec {
                        attributes: 0,
                        timestamp_delta: c.u8() as i64,
                        offset_delta: delta,
                        key: c.opt_bytes(),
                        value: c.opt_bytes(),
                        headers: (0..c.u8() % 4)
                            .map(|_| (vec![b'a' + c.u8() % 3], c.opt_bytes()))
                            .collect(),
                    }
                })
                .collect();
            let payload = compress(codec, &records::encode(&recs)).expect("compress");
            let h = Header {
                base_offset,
                attributes: codec as i16,
                last_offset_delta: delta,
                base_timestamp: 1_700_000_000_000,
                producer_id: -1,
                record_count: n as i32,
            };
            (v2_batch(h, &payload), true)
        }
        m => {
            let record_count = if c.u8() & 1 == 0 { c.u8() as i32 % 20 } else { c.i32() };
            let last_offset_delta = c.i32();
            let rest = c.rest();
            let payload = if m == 1 {
                compress(codec, rest).expect("compress")
            } else {
                bytes_of(rest)
            };
            let h = Header {
                base_offset,
                attributes: codec as i16,
                last_offset_delta,
                base_timestamp: 1_700_000_000_000,
                producer_id: -1,
                record_count,
            };
            (v2_batch(h, &payload), false)
        }
    };
    let min_offset = match min_sel {
        0..=127 => i64::MIN,
        s => base_offset + (s % 32) as i64,
    };
    match reencode_from(&b, min_offset, FUZZ_MAX_PLAIN) {
        // The reference decoder is unbounded: it only reads batches that decompressed
        // within the cap.
        Ok(out) => {
            if let Some(before) = records_of(&b) {
                check_reencoded(&b, &before, min_offset, out);
            }
        }
        Err(BatchError::TooLargeDecompressed { base_offset, limit }) => {
            assert!(!valid && limit == FUZZ_MAX_PLAIN && base_offset == b.base_offset());
            // Over the cap for real: under a larger cap the records are larger (or the
            // stream turns out corrupt further on, past where the cap stopped reading).
            let larger = crate::batch::inflate::decompress(b.codec(), b.bytes().slice(61..), 64 * FUZZ_MAX_PLAIN);
            if let Ok(plain) = larger {
                assert!(plain.len() > FUZZ_MAX_PLAIN, "{} bytes refused", plain.len());
            }
        }
        Err(e) => assert!(!valid, "valid batch refused: {e}"),
    }
}

/// The decompression cap of the fuzz bodies: small, so the coverage-guided
/// fuzzer finds inputs that reach it.
const FUZZ_MAX_PLAIN: usize = 1 << 20;

fn check_reencoded(b: &RawBatch, before: &[records::Rec], min_offset: i64, out: Option<Reencoded>) {
    let kept: Vec<&records::Rec> = before
        .iter()
        .filter(|r| b.base_offset() + r.offset_delta as i64 >= min_offset)
        .collect();
    let Some(r) = out else {
        assert!(kept.is_empty(), "records dropped");
        return;
    };
    let first = kept.first().expect("kept records").offset_delta;
    let n = &r.batch;
    assert!(crc_is_valid(n));
    assert_eq!(RawBatch::from_single(n.bytes().clone()).as_ref(), Ok(n));
    assert_eq!(n.codec(), b.codec());
    assert_eq!(n.base_offset(), b.base_offset() + first as i64);
    assert_eq!(n.record_count() as usize, kept.len());
    assert_eq!(n.last_offset_delta() as usize, kept.len() - 1);
    assert_eq!(&n.bytes()[21..23], &b.bytes()[21..23], "attributes");
    assert_eq!(&n.bytes()[27..57], &b.bytes()[27..57], "timestamps and producer");
    let after = records_of(n).expect("re-encoded records parse");
    assert_eq!(after.len(), kept.len());
    for (i, (a, k)) in after.iter().zip(&kept).enumerate() {
        assert_eq!(a.offset_delta as usize, i);
        assert_eq!(r.source_deltas[i], k.offset_delta - first);
        let renumbered = records::Rec {
            offset_delta: i as i32,
            ..(*k).clone()
        };
        assert_eq!(a, &renumbered);
    }
}

/// Timestamp, key and value of one legacy message.
type Legacy = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// Input: `[mode][...]`. Mode 0 builds a legacy message or compressed wrapper
/// from the input, which must up-convert to a v2 batch holding the same keys,
/// values, timestamps and offsets; otherwise the rest is a legacy entry whose
/// CRC-32 is made valid, which must convert or fail with an error.
pub fn upconvert(data: &[u8]) {
    let mut c = Cursor::new(data);
    let mode = c.u8();
    let magic = c.u8() % 2;
    if mode % 2 == 1 {
        let offset = c.i64();
        let mut msg = c.rest().to_vec();
        if msg.len() > 4 {
            let crc = crc32fast::hash(&msg[4..]);
            msg[..4].copy_from_slice(&crc.to_be_bytes());
        }
        let Ok(b) = RawBatch::from_single(Bytes::from(legacy_entry(offset, &msg))) else {
            return;
        };
        if let Ok(r) = up_convert(&b, FUZZ_MAX_PLAIN) {
            assert!(crc_is_valid(&r.batch));
            assert_eq!(r.source_deltas.len(), r.batch.record_count() as usize);
        }
        return;
    }
    let codec = c.u8() % 4;
    let n = if codec == 0 { 1 } else { 1 + c.u8() as i64 % 8 };
    let base = c.u8() as i64 * 100 + 5;
    let msgs: Vec<Legacy> = (0..n)
        .map(|_| (1_600_000_000_000 + c.u8() as i64, c.opt_bytes(), c.opt_bytes()))
        .collect();
    let encoded = |i: usize, codec: u8| {
        let (ts, k, v) = &msgs[i];
        legacy_message(magic, codec, *ts, k.as_deref(), v.as_deref())
    };
    let entry = if codec == 0 {
        legacy_entry(base, &encoded(0, 0))
    } else {
        // Inner offsets: absolute for magic 0, relative for magic 1; the wrapper
        // carries the last inner offset.
        let inner: Vec<u8> = (0..n as usize)
            .flat_map(|i| legacy_entry(if magic == 1 { i as i64 } else { base + i as i64 }, &encoded(i, 0)))
            .collect();
        let packed = compress(codec, &inner).expect("compress");
        let max_ts = msgs.iter().map(|m| m.0).max().unwrap_or(-1);
        legacy_entry(base + n - 1, &legacy_message(magic, codec, max_ts, None, Some(&packed)))
    };
    let b = RawBatch::from_single(Bytes::from(entry)).expect("one legacy entry");
    let r = up_convert(&b, FUZZ_MAX_PLAIN).expect("a valid legacy entry converts");
    assert!(crc_is_valid(&r.batch));
    assert_eq!(r.batch.codec(), codec);
    assert_eq!(r.batch.base_offset(), base);
    assert_eq!(r.source_deltas, (0..n as i32).collect::<Vec<_>>());
    let after = records_of(&r.batch).expect("converted records parse");
    let base_ts = i64::from_be_bytes(r.batch.bytes()[27..35].try_into().expect("8 bytes"));
    assert_eq!(after.len(), msgs.len());
    for (i, (a, (ts, k, v))) in after.iter().zip(&msgs).enumerate() {
        assert_eq!(a.offset_delta as usize, i);
        assert_eq!((&a.key, &a.value), (k, v));
        assert!(a.headers.is_empty());
        let expected_ts = if magic == 1 { *ts } else { -1 };
        let got_ts = if base_ts < 0 { -1 } else { base_ts + a.timestamp_delta };
        assert_eq!(got_ts, expected_ts);
    }
}

/// Input: config text (lossy UTF-8). Parsing returns a config or one error that
/// names the file, and a line that exists when it names one.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match Config::parse(&text, "fuzz.toml") {
        Ok(c) => {
            let _ = (c.source.client_config(), c.destination.client_config());
            let _ = (c.checkpoint_group(), c.offset_map_topic());
            let _ = (c.wants_topic("orders", false), c.destination_topic("orders"));
            let _ = c.reversed(&["orders".to_string()]);
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("fuzz.toml"), "{msg}");
            if let ConfigError::Invalid { line, .. } = e {
                assert!(
                    line >= 1 && line <= text.lines().count().max(1),
                    "line {line} of:\n{text}"
                );
            }
        }
    }
}
