//! Independent views used by the record-batch targets: a byte cursor that
//! turns fuzz input into choices and a strict v2 record parser (duplicate
//! header keys kept, unlike `kafka-protocol`'s decoder). The batch builders
//! that give arbitrary bytes a valid header and CRC are in
//! [`crate::batch::testdata`].

use bytes::Bytes;

use crate::batch::varint::{put_varint, read_varint, read_varlong};
use crate::batch::{RawBatch, V2_HEADER_LEN};

/// Reads choices off the fuzz input; zeros once it runs out.
#[derive(Debug)]
pub struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }
    /// One byte (0 when exhausted).
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }
    /// A big-endian i32.
    pub fn i32(&mut self) -> i32 {
        i32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    /// A big-endian i64.
    pub fn i64(&mut self) -> i64 {
        ((self.i32() as i64) << 32) | (self.i32() as u32 as i64)
    }
    /// Up to `n` bytes.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.data.split_at(n.min(self.data.len()));
        self.data = b;
        a
    }
    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
    /// An optional short byte string: `None` (null) for selector 255.
    pub fn opt_bytes(&mut self) -> Option<Vec<u8>> {
        match self.u8() {
            255 => None,
            n => Some(self.bytes(n as usize % 48).to_vec()),
        }
    }
}

/// One v2 record, fully decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    /// Record attributes byte.
    pub attributes: u8,
    /// Timestamp delta from the batch's base timestamp.
    pub timestamp_delta: i64,
    /// Offset delta from the batch's base offset.
    pub offset_delta: i32,
    /// Key (None: null).
    pub key: Option<Vec<u8>>,
    /// Value (None: null).
    pub value: Option<Vec<u8>>,
    /// Headers in order, duplicates kept.
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

fn take(buf: &mut &[u8], len: i32) -> Option<Option<Vec<u8>>> {
    match len {
        -1 => Some(None),
        n if n < 0 || n as usize > buf.len() => None,
        n => {
            let (a, b) = buf.split_at(n as usize);
            *buf = b;
            Some(Some(a.to_vec()))
        }
    }
}

/// Parses an uncompressed records section; `None` unless every record is
/// well formed and ends exactly where its length says.
pub fn parse_records(mut plain: &[u8]) -> Option<Vec<Rec>> {
    let mut out = Vec::new();
    while !plain.is_empty() {
        let len = read_varint(&mut plain)?;
        if len < 0 || len as usize > plain.len() {
            return None;
        }
        let (mut r, rest) = plain.split_at(len as usize);
        plain = rest;
        let (&attributes, tail) = r.split_first()?;
        r = tail;
        let timestamp_delta = read_varlong(&mut r)?;
        let offset_delta = read_varint(&mut r)?;
        let klen = read_varint(&mut r)?;
        let key = take(&mut r, klen)?;
        let vlen = read_varint(&mut r)?;
        let value = take(&mut r, vlen)?;
        let n = read_varint(&mut r)?;
        if n < 0 {
            return None;
        }
        let mut headers = Vec::new();
        for _ in 0..n {
            let hk = read_varint(&mut r)?;
            let k = take(&mut r, hk)??;
            let hv = read_varint(&mut r)?;
            headers.push((k, take(&mut r, hv)?));
        }
        if !r.is_empty() {
            return None;
        }
        out.push(Rec {
            attributes,
            timestamp_delta,
            offset_delta,
            key,
            value,
            headers,
        });
    }
    Some(out)
}

/// The records of a v2 batch, or `None` when they do not decompress or parse.
/// Decompresses with `kafka-protocol`'s codecs, independent of strait's bounded
/// reader, and without a bound: call it on batches known to be small.
pub fn records_of(b: &RawBatch) -> Option<Vec<Rec>> {
    let plain = reference_decompress(b.codec(), b.bytes().slice(V2_HEADER_LEN..)).ok()?;
    parse_records(&plain)
}

/// `kafka-protocol`'s decompression (unbounded), the reference for strait's.
pub fn reference_decompress(codec: u8, mut payload: Bytes) -> anyhow::Result<Bytes> {
    use bytes::Buf;
    use kafka_protocol::compression::{self as codec, Decompressor};
    fn all<B: Buf>(b: &mut B) -> anyhow::Result<Bytes> {
        Ok(b.copy_to_bytes(b.remaining()))
    }
    match codec {
        0 => Ok(payload),
        1 => codec::Gzip::decompress(&mut payload, all),
        2 => codec::Snappy::decompress(&mut payload, all),
        3 => codec::Lz4::decompress(&mut payload, all),
        4 => codec::Zstd::decompress(&mut payload, all),
        c => anyhow::bail!("unknown compression codec {c}"),
    }
}

/// Encodes records (the inverse of [`parse_records`]).
pub fn encode(records: &[Rec]) -> Vec<u8> {
    let mut out = Vec::new();
    let bytes = |b: &mut Vec<u8>, v: &Option<Vec<u8>>| match v {
        None => put_varint(b, -1),
        Some(v) => {
            put_varint(b, v.len() as i32);
            b.extend_from_slice(v);
        }
    };
    for r in records {
        let mut body = vec![r.attributes];
        crate::batch::varint::put_varlong(&mut body, r.timestamp_delta);
        put_varint(&mut body, r.offset_delta);
        bytes(&mut body, &r.key);
        bytes(&mut body, &r.value);
        put_varint(&mut body, r.headers.len() as i32);
        for (k, v) in &r.headers {
            bytes(&mut body, &Some(k.clone()));
            bytes(&mut body, v);
        }
        put_varint(&mut out, body.len() as i32);
        out.extend_from_slice(&body);
    }
    out
}
