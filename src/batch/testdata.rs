//! Test data for the batch layer, its fuzz targets and the real-broker tests:
//! hand-built v2 batches around any payload (valid CRC-32C), legacy magic 0/1
//! messages, and zstd frames built from raw and RLE blocks (gigabytes of zeros
//! in a few hundred kilobytes, no compression work). Compiled only for tests
//! and the `fuzzing` feature.

use bytes::{BufMut, Bytes, BytesMut};

use super::varint::put_varint;
use super::{RawBatch, V2_HEADER_LEN};

/// Header fields of a v2 batch built by [`v2_batch`].
#[derive(Debug, Clone, Copy)]
pub struct Header {
    /// baseOffset.
    pub base_offset: i64,
    /// attributes (codec in the low 3 bits).
    pub attributes: i16,
    /// lastOffsetDelta.
    pub last_offset_delta: i32,
    /// baseTimestamp.
    pub base_timestamp: i64,
    /// producerId.
    pub producer_id: i64,
    /// recordCount.
    pub record_count: i32,
}

/// A v2 batch around an already compressed `payload`, with a valid CRC-32C.
pub fn v2_batch(h: Header, payload: &[u8]) -> RawBatch {
    let mut b = BytesMut::with_capacity(V2_HEADER_LEN + payload.len());
    b.put_i64(h.base_offset);
    b.put_i32((V2_HEADER_LEN - 12 + payload.len()) as i32);
    b.put_i32(5); // partitionLeaderEpoch
    b.put_u8(2);
    b.put_u32(0);
    b.put_i16(h.attributes);
    b.put_i32(h.last_offset_delta);
    b.put_i64(h.base_timestamp);
    b.put_i64(h.base_timestamp + 1000);
    b.put_i64(h.producer_id);
    b.put_i16(if h.producer_id >= 0 { 1 } else { -1 });
    b.put_i32(if h.producer_id >= 0 { 9 } else { -1 });
    b.put_i32(h.record_count);
    b.put_slice(payload);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    RawBatch { bytes: b.freeze() }
}

/// A legacy (magic 0/1) message with a valid CRC-32, without its offset/size prefix.
pub fn legacy_message(magic: u8, codec: u8, ts: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> Vec<u8> {
    let mut m = vec![magic, codec];
    if magic == 1 {
        m.extend_from_slice(&ts.to_be_bytes());
    }
    for f in [key, value] {
        match f {
            None => m.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(v) => {
                m.extend_from_slice(&(v.len() as i32).to_be_bytes());
                m.extend_from_slice(v);
            }
        }
    }
    let mut out = crc32fast::hash(&m).to_be_bytes().to_vec();
    out.extend_from_slice(&m);
    out
}

/// `[offset i64][size i32][message]`.
pub fn legacy_entry(offset: i64, msg: &[u8]) -> Vec<u8> {
    let mut e = offset.to_be_bytes().to_vec();
    e.extend_from_slice(&(msg.len() as i32).to_be_bytes());
    e.extend_from_slice(msg);
    e
}

/// One part of a hand-built zstd frame ([`zstd_frame`]).
#[derive(Debug, Clone, Copy)]
pub enum ZstdPart<'a> {
    /// Bytes stored as they are (raw blocks).
    Raw(&'a [u8]),
    /// That many zero bytes (RLE blocks: 4 bytes of frame per 128 KiB).
    Zeros(u64),
}

/// Largest zstd block (`Block_Maximum_Size` with the 128 KiB window used here).
const ZSTD_BLOCK: u64 = 128 * 1024;

/// A valid zstd frame (RFC 8878) decoding to the parts in order, built by hand
/// from raw and RLE blocks: gigabytes of zeros cost a few hundred kilobytes of
/// frame and no compression work. No content size is announced; the window is
/// 128 KiB.
pub fn zstd_frame(parts: &[ZstdPart]) -> Vec<u8> {
    // (block type 0 raw / 1 RLE, regenerated size, bytes that follow the header)
    let mut blocks: Vec<(u32, u32, &[u8])> = Vec::new();
    for part in parts {
        match *part {
            ZstdPart::Raw(b) => blocks.extend(b.chunks(ZSTD_BLOCK as usize).map(|c| (0, c.len() as u32, c))),
            ZstdPart::Zeros(mut n) => {
                while n > 0 {
                    let k = n.min(ZSTD_BLOCK);
                    blocks.push((1, k as u32, &[0u8][..]));
                    n -= k;
                }
            }
        }
    }
    if blocks.is_empty() {
        blocks.push((0, 0, &[]));
    }
    let mut out = vec![0x28, 0xb5, 0x2f, 0xfd]; // magic 0xFD2FB528, little-endian
    out.push(0x00); // frame header descriptor: no content size, not single-segment, no checksum, no dictionary
    out.push(7 << 3); // window descriptor: 2^(10 + 7) = 128 KiB
    let last = blocks.len() - 1;
    for (i, (kind, size, body)) in blocks.into_iter().enumerate() {
        let header = (i == last) as u32 | kind << 1 | size << 3;
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.extend_from_slice(body);
    }
    out
}

/// A zstd frame ([`zstd_frame`]) holding one record per entry of `value_lens`:
/// record `i` has offset delta `i`, timestamp delta 0, key `k<i>`, a value of
/// that many zero bytes and no headers. Values of a gigabyte each cost about
/// 32 KiB of frame.
pub fn zstd_zero_records(value_lens: &[u32]) -> Vec<u8> {
    let mut heads = Vec::new();
    for (i, &n) in value_lens.iter().enumerate() {
        assert!(n < i32::MAX as u32 - 64, "a record body must fit an i32");
        let key = format!("k{i}");
        let mut fields = vec![0u8, 0]; // attributes, timestamp delta 0
        put_varint(&mut fields, i as i32);
        put_varint(&mut fields, key.len() as i32);
        fields.extend_from_slice(key.as_bytes());
        put_varint(&mut fields, n as i32);
        let body_len = fields.len() + n as usize + 1; // + the header count after the value
        let mut head = Vec::new();
        put_varint(&mut head, body_len as i32);
        head.extend_from_slice(&fields);
        heads.push(head);
    }
    let parts: Vec<ZstdPart> = heads
        .iter()
        .zip(value_lens)
        .flat_map(|(head, &n)| [ZstdPart::Raw(head), ZstdPart::Zeros(n as u64), ZstdPart::Raw(&[0])])
        .collect();
    zstd_frame(&parts)
}

/// Bytes as a `Bytes`.
pub fn bytes_of(v: &[u8]) -> Bytes {
    Bytes::copy_from_slice(v)
}
