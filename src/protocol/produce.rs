//! Hand-written zero-copy Produce request encoder (Produce v3..=v13).
//!
//! The `kafka-protocol` encoder would copy every record batch into one request
//! buffer. Here only the header and framing bytes are encoded; each partition's
//! record batch is handed to the socket as the original `Bytes` it arrived in
//! (a slice of a source Fetch response), through a vectored write.
//!
//! Layout follows `ProduceRequest.json` in Apache Kafka: v9+ is flexible
//! (compact strings/arrays/bytes, tagged fields, request header v2), v13 names
//! topics by id instead of by name. Produce v3+ carries exactly one record batch
//! per partition entry (`ProduceRequest.validateRecords` on the broker).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use uuid::Uuid;

use super::ProtocolError;

/// Lowest and highest Produce versions this encoder writes.
pub const PRODUCE_MIN_VERSION: i16 = 3;
/// Highest Produce version this encoder writes.
pub const PRODUCE_MAX_VERSION: i16 = 13;

/// One partition entry: the partition index and exactly one record batch, given
/// as a (possibly rewritten) header followed by the rest of the batch.
#[derive(Debug, Clone)]
pub struct ProducePartition {
    /// Partition index.
    pub partition: i32,
    /// Bytes written before `records` (a patched batch header), or empty.
    pub header: Bytes,
    /// The batch (or, after a non-empty `header`, the batch without its header),
    /// passed through untouched.
    pub records: Bytes,
}

impl ProducePartition {
    /// A partition entry whose batch is one buffer.
    pub fn whole(partition: i32, records: Bytes) -> Self {
        Self {
            partition,
            header: Bytes::new(),
            records,
        }
    }
}

/// One topic entry of a Produce request.
#[derive(Debug, Clone)]
pub struct ProduceTopic {
    /// Topic name (Produce v3..=v12).
    pub name: String,
    /// Topic id (Produce v13+); `Uuid::nil()` when unknown.
    pub topic_id: Uuid,
    /// Partition entries, at most one per partition.
    pub partitions: Vec<ProducePartition>,
}

/// An encoded Produce request: a list of chunks whose concatenation is the frame
/// (size prefix included). Record batches appear as their original `Bytes`.
#[derive(Debug, Clone)]
pub struct ProduceRequestFrame {
    /// The frame, in order; write with [`super::write_chunks`].
    pub chunks: Vec<Bytes>,
    /// Total length of all chunks.
    pub len: usize,
}

/// Encodes a Produce request without copying any record batch.
#[allow(clippy::too_many_arguments)]
pub fn encode_produce(
    correlation_id: i32,
    client_id: &str,
    version: i16,
    transactional_id: Option<&str>,
    acks: i16,
    timeout_ms: i32,
    topics: &[ProduceTopic],
) -> Result<ProduceRequestFrame, ProtocolError> {
    if !(PRODUCE_MIN_VERSION..=PRODUCE_MAX_VERSION).contains(&version) {
        return Err(ProtocolError::Encode {
            api: "Produce",
            version,
            reason: format!("strait encodes Produce v{PRODUCE_MIN_VERSION}..=v{PRODUCE_MAX_VERSION} only"),
        });
    }
    let flexible = version >= 9;
    let by_id = version >= 13;
    let batches: usize = topics.iter().map(|t| t.partitions.len()).sum();
    let mut chunks = Vec::with_capacity(2 + 2 * batches);
    // Framing bytes share one buffer; each split_to hands out a chunk of it.
    let mut head = BytesMut::with_capacity(64 + client_id.len() + topics.len() * 48 + batches * 16);

    // Request header v1 (v2 when flexible: plus an empty tagged-field section).
    head.put_i16(ApiKey::Produce as i16);
    head.put_i16(version);
    head.put_i32(correlation_id);
    put_string(&mut head, client_id, false); // client_id is never compact
    if flexible {
        put_uvarint(&mut head, 0);
    }
    // Body.
    match transactional_id {
        Some(t) => put_string(&mut head, t, flexible),
        None if flexible => put_uvarint(&mut head, 0),
        None => head.put_i16(-1),
    }
    head.put_i16(acks);
    head.put_i32(timeout_ms);
    put_array_len(&mut head, topics.len(), flexible);
    for topic in topics {
        if by_id {
            head.put_slice(topic.topic_id.as_bytes());
        } else {
            put_string(&mut head, &topic.name, flexible);
        }
        put_array_len(&mut head, topic.partitions.len(), flexible);
        for p in &topic.partitions {
            head.put_i32(p.partition);
            let len = p.header.len() + p.records.len();
            if flexible {
                put_uvarint(&mut head, len as u64 + 1);
            } else {
                let len = i32::try_from(len).map_err(|_| too_big(version, len))?;
                head.put_i32(len);
            }
            chunks.push(head.split().freeze());
            if !p.header.is_empty() {
                chunks.push(p.header.clone());
            }
            chunks.push(p.records.clone()); // refcount bump, no copy
            if flexible {
                put_uvarint(&mut head, 0); // partition tagged fields
            }
        }
        if flexible {
            put_uvarint(&mut head, 0); // topic tagged fields
        }
    }
    if flexible {
        put_uvarint(&mut head, 0); // request tagged fields
    }
    if !head.is_empty() {
        chunks.push(head.freeze());
    }
    let body_len: usize = chunks.iter().map(Bytes::len).sum();
    let size = i32::try_from(body_len).map_err(|_| too_big(version, body_len))?;
    chunks.insert(0, Bytes::copy_from_slice(&size.to_be_bytes()));
    Ok(ProduceRequestFrame {
        chunks,
        len: body_len + 4,
    })
}

fn too_big(version: i16, len: usize) -> ProtocolError {
    ProtocolError::Encode {
        api: "Produce",
        version,
        reason: format!("{len} bytes do not fit a Kafka frame"),
    }
}

fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn put_string(buf: &mut BytesMut, s: &str, compact: bool) {
    if compact {
        put_uvarint(buf, s.len() as u64 + 1);
    } else {
        buf.put_i16(s.len() as i16);
    }
    buf.put_slice(s.as_bytes());
}

fn put_array_len(buf: &mut BytesMut, n: usize, compact: bool) {
    if compact {
        put_uvarint(buf, n as u64 + 1);
    } else {
        buf.put_i32(n as i32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn topics() -> Vec<ProduceTopic> {
        vec![
            ProduceTopic {
                name: "alpha".into(),
                topic_id: Uuid::from_u128(0x1234),
                partitions: vec![
                    // A patched header followed by the untouched rest of the batch.
                    ProducePartition {
                        partition: 0,
                        header: Bytes::from(vec![7u8; 61]),
                        records: Bytes::from(vec![7u8; 239]),
                    },
                    ProducePartition::whole(3, Bytes::from_static(b"xyz")),
                ],
            },
            ProduceTopic {
                name: "beta".into(),
                topic_id: Uuid::from_u128(0x5678),
                partitions: vec![ProducePartition::whole(1, Bytes::from(vec![1u8; 70_000]))],
            },
        ]
    }

    fn reference(version: i16, txn: Option<&str>) -> Bytes {
        let req = ProduceRequest::default()
            .with_transactional_id(txn.map(|t| StrBytes::from_string(t.into()).into()))
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(
                topics()
                    .into_iter()
                    .map(|t| {
                        TopicProduceData::default()
                            .with_name(TopicName(StrBytes::from_string(t.name)))
                            .with_topic_id(t.topic_id)
                            .with_partition_data(
                                t.partitions
                                    .into_iter()
                                    .map(|p| {
                                        let mut whole = p.header.to_vec();
                                        whole.extend_from_slice(&p.records);
                                        PartitionProduceData::default()
                                            .with_index(p.partition)
                                            .with_records(Some(Bytes::from(whole)))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        crate::protocol::encode_request(42, "strait-test", version, &req).unwrap()
    }

    #[test]
    fn matches_the_generic_encoder_on_every_version() {
        for version in PRODUCE_MIN_VERSION..=PRODUCE_MAX_VERSION {
            for txn in [None, Some("txn-1")] {
                let frame = encode_produce(42, "strait-test", version, txn, -1, 30_000, &topics()).unwrap();
                let joined: Vec<u8> = frame.chunks.iter().flat_map(|c| c.iter().copied()).collect();
                assert_eq!(joined.len(), frame.len);
                assert_eq!(
                    &joined[..],
                    &reference(version, txn)[..],
                    "Produce v{version} txn={txn:?}"
                );
            }
        }
    }

    #[test]
    fn record_batches_are_the_original_bytes() {
        let t = topics();
        let frame = encode_produce(1, "c", 9, None, -1, 1000, &t).unwrap();
        let originals: Vec<&Bytes> = t.iter().flat_map(|t| t.partitions.iter().map(|p| &p.records)).collect();
        for orig in originals {
            assert!(
                frame
                    .chunks
                    .iter()
                    .any(|c| c.as_ptr() == orig.as_ptr() && c.len() == orig.len()),
                "batch of {} bytes was copied",
                orig.len()
            );
        }
        // Everything other than the batches (and their patched headers) is small framing.
        let payload: usize = t
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| p.header.len() + p.records.len())
            .sum();
        let framing = frame.len - payload;
        assert!(framing < 100, "framing bytes: {framing}");
    }

    /// An AsyncWrite that records the address of every slice handed to writev.
    struct RecordingWriter {
        seen: Vec<(usize, usize)>,
    }

    impl tokio::io::AsyncWrite for RecordingWriter {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.seen.push((buf.as_ptr() as usize, buf.len()));
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[std::io::IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let mut n = 0;
            for b in bufs {
                self.seen.push((b.as_ptr() as usize, b.len()));
                n += b.len();
            }
            std::task::Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn socket_receives_the_original_batch_buffers() {
        let t = topics();
        let frame = encode_produce(1, "c", 11, None, -1, 1000, &t).unwrap();
        let mut w = RecordingWriter { seen: Vec::new() };
        crate::protocol::write_chunks(&mut w, &frame.chunks).await.unwrap();
        for p in t.iter().flat_map(|t| &t.partitions) {
            assert!(
                w.seen.contains(&(p.records.as_ptr() as usize, p.records.len())),
                "batch of {} bytes reached the socket from its original buffer",
                p.records.len()
            );
        }
        assert_eq!(w.seen.iter().map(|s| s.1).sum::<usize>(), frame.len);
    }

    #[test]
    fn unsupported_versions_are_refused() {
        assert!(encode_produce(1, "c", 2, None, -1, 1000, &topics()).is_err());
        assert!(encode_produce(1, "c", 14, None, -1, 1000, &topics()).is_err());
    }
}
