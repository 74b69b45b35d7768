//! A v2 batch writer: records byte for byte as specified. Unlike the
//! `kafka-protocol` encoder it writes duplicate header keys, offset gaps,
//! control batches and empty batches (the shapes real logs contain). Up-converting
//! legacy messages writes their batch with it; the offset map and the load
//! generator write their records with [`simple_record`]; tests and benchmarks
//! build every batch shape with it.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::{Record, TimestampType};

use super::varint::{put_varint, put_varlong};
use super::RawBatch;

/// One record to write.
#[derive(Debug, Clone, Default)]
pub struct RecordSpec {
    /// Offset delta within the batch.
    pub offset_delta: i32,
    /// Key bytes (None: null key).
    pub key: Option<Vec<u8>>,
    /// Value bytes (None: null value).
    pub value: Option<Vec<u8>>,
    /// Headers in order; duplicate keys allowed.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl RecordSpec {
    /// A record with a key derived from its delta and the given value.
    pub fn simple(offset_delta: i32, value: &[u8]) -> Self {
        Self {
            offset_delta,
            key: Some(format!("k{offset_delta}").into_bytes()),
            value: Some(value.to_vec()),
            headers: vec![],
        }
    }
}

/// Batch header fields to write.
#[derive(Debug, Clone)]
pub struct BatchSpec {
    /// baseOffset.
    pub base_offset: i64,
    /// producerId (-1: none).
    pub producer_id: i64,
    /// Transactional bit.
    pub transactional: bool,
    /// Control bit.
    pub control: bool,
    /// Codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub codec: u8,
    /// lastOffsetDelta (default: the last record's delta).
    pub last_offset_delta: Option<i32>,
    /// baseTimestamp; record i has timestamp delta `i * 10` unless `timestamps` is set.
    pub base_timestamp: i64,
    /// Absolute timestamp of each record (then baseTimestamp is their minimum).
    pub timestamps: Option<Vec<i64>>,
}

impl Default for BatchSpec {
    fn default() -> Self {
        Self {
            base_offset: 0,
            producer_id: -1,
            transactional: false,
            control: false,
            codec: 0,
            last_offset_delta: None,
            base_timestamp: 1_700_000_000_000,
            timestamps: None,
        }
    }
}

/// Encodes the records section (uncompressed); record i's timestamp delta is `i * 10`.
pub fn encode_records(records: &[RecordSpec]) -> Vec<u8> {
    let deltas: Vec<i64> = (0..records.len() as i64).map(|i| i * 10).collect();
    encode_records_at(records, &deltas)
}

fn encode_records_at(records: &[RecordSpec], ts_deltas: &[i64]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let mut body = vec![0u8]; // attributes
        put_varlong(&mut body, ts_deltas[i]);
        put_varint(&mut body, r.offset_delta);
        let put_bytes = |b: &mut Vec<u8>, v: &Option<Vec<u8>>| match v {
            None => put_varint(b, -1),
            Some(v) => {
                put_varint(b, v.len() as i32);
                b.extend_from_slice(v);
            }
        };
        put_bytes(&mut body, &r.key);
        put_bytes(&mut body, &r.value);
        put_varint(&mut body, r.headers.len() as i32);
        for (k, v) in &r.headers {
            put_varint(&mut body, k.len() as i32);
            body.extend_from_slice(k.as_bytes());
            put_bytes(&mut body, v);
        }
        put_varint(&mut out, body.len() as i32);
        out.extend_from_slice(&body);
    }
    out
}

/// Builds one v2 batch with a valid CRC.
pub fn write_batch(o: &BatchSpec, records: &[RecordSpec]) -> RawBatch {
    let (base_ts, max_ts, deltas) = match &o.timestamps {
        Some(ts) => {
            let base = ts.iter().copied().min().unwrap_or(-1);
            let max = ts.iter().copied().max().unwrap_or(-1);
            (
                base,
                max,
                ts.iter()
                    .map(|t| if *t >= 0 && base >= 0 { t - base } else { 0 })
                    .collect::<Vec<_>>(),
            )
        }
        None => {
            let n = records.len().max(1) as i64;
            (
                o.base_timestamp,
                o.base_timestamp + (n - 1) * 10,
                (0..records.len() as i64).map(|i| i * 10).collect(),
            )
        }
    };
    let plain = encode_records_at(records, &deltas);
    let payload = super::reencode::compress(o.codec, &plain).expect("compress");
    let last_delta = o
        .last_offset_delta
        .unwrap_or_else(|| records.last().map(|r| r.offset_delta).unwrap_or(0));
    let mut b = BytesMut::with_capacity(61 + payload.len());
    b.put_i64(o.base_offset);
    b.put_i32((49 + payload.len()) as i32);
    b.put_i32(0); // partitionLeaderEpoch
    b.put_u8(2);
    b.put_u32(0); // crc
    let mut attrs = o.codec as i16;
    if o.transactional {
        attrs |= 0x10;
    }
    if o.control {
        attrs |= 0x20;
    }
    b.put_i16(attrs);
    b.put_i32(last_delta);
    b.put_i64(base_ts);
    b.put_i64(max_ts);
    b.put_i64(o.producer_id);
    b.put_i16(if o.producer_id >= 0 { 0 } else { -1 });
    b.put_i32(if o.producer_id >= 0 { 0 } else { -1 });
    b.put_i32(records.len() as i32);
    b.put_slice(&payload);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    RawBatch { bytes: Bytes::from(b) }
}

/// A `kafka-protocol` record with no producer or transaction state, for the
/// crate's `RecordBatchEncoder` (which starts a new batch whenever
/// `offset - sequence` changes, so the sequence follows the offset).
pub fn simple_record(offset: i64, timestamp: i64, key: Option<Bytes>, value: Option<Bytes>) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: offset as i32,
        timestamp,
        key,
        value,
        headers: Default::default(),
    }
}
