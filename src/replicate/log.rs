//! strait's own single-partition topics (the offset map, the provenance
//! registry): [`append`] writes keyed records (acks=all, idempotent or in the
//! open transaction), [`read`] reads them back from one offset to the last
//! stable offset. Exactly-once mode writes them in transactions: records of
//! aborted transactions and markers are dropped.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions};
use uuid::Uuid;

use crate::batch::writer::simple_record;
use crate::batch::{patch_for_produce, split_batches, BatchFilter, Disposition, RawBatch};
use crate::client::admin::{EARLIEST, LATEST};
use crate::client::txn::produce_version;
use crate::client::{code, Client, ClientError, TxnId};
use crate::protocol::{ProducePartition, ProduceTopic};

/// One keyed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Its offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Bytes,
    /// Value bytes (None: a tombstone).
    pub value: Option<Bytes>,
}

/// What [`read`] found.
#[derive(Debug, Clone, Default)]
pub struct LogRead {
    /// The records read, in offset order (keyless ones are left out).
    pub records: Vec<LogRecord>,
    /// The offset to continue from next time.
    pub next: i64,
    /// The topic's id (changes when it is deleted and created again).
    pub topic_id: Uuid,
}

/// Reads partition 0 of `topic` from `from` up to its last stable offset.
/// Records retention already removed are skipped (the read continues at the
/// log start). An unknown topic is `UNKNOWN_TOPIC_OR_PARTITION`, at once;
/// transient errors (a topic just created without its leader yet:
/// NOT_LEADER_OR_FOLLOWER, UNKNOWN_LEADER_EPOCH) are retried for 5 s.
pub async fn read(client: &Client, topic: &str, from: i64) -> Result<LogRead, ClientError> {
    let mut tries = 0;
    loop {
        match read_once(client, topic, from).await {
            Err(e)
                if tries < 25
                    && e.code() != Some(code::UNKNOWN_TOPIC_OR_PARTITION)
                    && e.class() != crate::client::ErrorClass::Fatal =>
            {
                tries += 1;
                client.invalidate_metadata();
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            r => return r,
        }
    }
}

async fn read_once(client: &Client, topic: &str, from: i64) -> Result<LogRead, ClientError> {
    let end = client.list_offset(topic, 0, LATEST, true).await?;
    let mut records = Vec::new();
    let (next, topic_id) = scan(client, topic, 0, from, end, |r| {
        if let Some(key) = r.key {
            records.push(LogRecord {
                offset: r.offset,
                key,
                value: r.value,
            });
        }
    })
    .await?;
    Ok(LogRead {
        records,
        next,
        topic_id,
    })
}

/// Calls `f` with every record of `topic`'s `partition` from `from`, fetching
/// until the position reaches `to` (the last fetch may return records past
/// it), read_committed (records of aborted transactions and markers left out).
/// Records retention already removed are skipped (the scan continues at the
/// log start). Returns the offset to continue from and the topic's id.
pub async fn scan(
    client: &Client,
    topic: &str,
    partition: i32,
    from: i64,
    to: i64,
    mut f: impl FnMut(Record),
) -> Result<(i64, Uuid), ClientError> {
    let md = client.refresh_metadata(Some(&[topic.to_string()])).await?;
    let meta = md.topics.get(topic);
    if let Some(t) = meta.filter(|t| t.error_code != 0) {
        return Err(ClientError::kafka("Metadata", "cluster", topic, t.error_code, None));
    }
    let topic_id = meta.map(|t| t.id).unwrap_or_default();
    let mut next = from;
    while next < to {
        let (leader, _) = client.leader(topic, partition).await?;
        let conn = client.broker(leader).await?;
        let req = crate::client::fetch::single_fetch_request(topic, topic_id, partition, next, 100, 8 << 20);
        let resp = conn.request(&req).await?;
        let p = resp
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| ClientError::Invalid {
                what: "fetch",
                reason: format!("empty Fetch response for {topic}[{partition}]"),
            })?;
        if p.error_code == code::OFFSET_OUT_OF_RANGE {
            // Retention removed the oldest records: continue from the log start.
            next = client.list_offset(topic, partition, EARLIEST, false).await?;
            continue;
        }
        if p.error_code != code::NONE {
            return Err(ClientError::kafka(
                "Fetch",
                conn.broker(),
                format!("{topic}[{partition}]"),
                p.error_code,
                None,
            ));
        }
        let records = p.records.clone().unwrap_or_default();
        let before = next;
        let aborted = p
            .aborted_transactions
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|a| (a.producer_id.0, a.first_offset))
            .collect();
        let mut filter = BatchFilter::new(aborted);
        let (batches, _) = split_batches(&records).map_err(|e| ClientError::Invalid {
            what: "fetched batch",
            reason: format!("{topic}[{partition}]: {e}"),
        })?;
        for b in batches {
            let keep = matches!(filter.classify(&b), Disposition::Forward | Disposition::Reencode);
            next = next.max(b.last_offset() + 1);
            if !keep {
                continue;
            }
            let mut bytes = b.into_bytes();
            let Ok(set) = RecordBatchDecoder::decode(&mut bytes) else {
                continue;
            };
            for r in set.records {
                next = next.max(r.offset + 1);
                if r.offset >= from {
                    f(r);
                }
            }
        }
        if next == before {
            break; // nothing decodable: do not spin
        }
    }
    Ok((next, topic_id))
}

/// [`read`] from the start, `None` when `topic` does not exist.
pub async fn read_if_exists(client: &Client, topic: &str) -> Result<Option<LogRead>, ClientError> {
    match read(client, topic, 0).await {
        Ok(r) => Ok(Some(r)),
        Err(e) if e.code() == Some(code::UNKNOWN_TOPIC_OR_PARTITION) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `value` as the one record under `key` of strait's compacted
/// single-record topic `topic` (created if missing, with `replication_factor`).
pub async fn write_single(
    client: &Client,
    topic: &str,
    replication_factor: i16,
    key: &'static str,
    value: Vec<u8>,
) -> Result<(), ClientError> {
    client
        .create_topics(
            &[crate::client::NewTopic {
                name: topic.to_string(),
                partitions: 1,
                replication_factor,
                configs: vec![("cleanup.policy".into(), "compact".into())],
            }],
            30_000,
            true,
        )
        .await?;
    append(
        client,
        topic,
        &[(Bytes::from_static(key.as_bytes()), Bytes::from(value))],
        None,
    )
    .await?;
    Ok(())
}

/// The value of the newest record under `key` of `topic` (`None`: no topic or no such record).
pub async fn read_single(client: &Client, topic: &str, key: &str) -> Result<Option<Bytes>, ClientError> {
    Ok(read_if_exists(client, topic).await?.and_then(|r| {
        r.records
            .into_iter()
            .rev()
            .find(|x| &x.key[..] == key.as_bytes())
            .and_then(|x| x.value)
    }))
}

/// Appends `records` (key, value) to partition 0 of `topic` in one lz4 batch,
/// acks=all; in the transaction `txn` (with that producer's sequence number)
/// when given. Returns the number of records. A resend of a batch that landed
/// is answered DUPLICATE_SEQUENCE_NUMBER and counts as written.
pub async fn append(
    client: &Client,
    topic: &str,
    records: &[(Bytes, Bytes)],
    txn: Option<(&TxnId, i32)>,
) -> Result<i32, ClientError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| simple_record(i as i64, now, Some(k.clone()), Some(v.clone())))
        .collect();
    let bad = |reason: String| ClientError::Invalid {
        what: "batch of strait's own topic",
        reason: format!("{topic}: {reason}"),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::Lz4,
        },
    )
    .map_err(|e| bad(format!("{e:#}")))?;
    let raw = RawBatch::from_single(buf.freeze()).map_err(|e| bad(e.to_string()))?;
    let count = raw.record_count();
    let part = match txn {
        Some((txn, seq)) => {
            let patched = patch_for_produce(&raw, txn.stamp(), seq);
            ProducePartition {
                partition: 0,
                header: patched.header,
                records: patched.body,
            }
        }
        None => ProducePartition::whole(0, raw.into_bytes()),
    };
    let txn_id = txn.map(|(t, _)| t.transactional_id.as_str());
    client
        .retrying(|| async {
            let (leader, _) = client.leader(topic, 0).await?;
            let conn = client.broker(leader).await?;
            let id = client
                .cached_metadata()
                .topics
                .get(topic)
                .map(|t| t.id)
                .unwrap_or_default();
            let version = produce_version(conn.version_of::<ProduceRequest>()?, txn_id);
            let resp = conn
                .produce(
                    version,
                    txn_id,
                    -1,
                    30_000,
                    &[ProduceTopic {
                        name: topic.to_string(),
                        topic_id: id,
                        partitions: vec![part.clone()],
                    }],
                )
                .await?;
            let c = resp
                .responses
                .first()
                .and_then(|t| t.partition_responses.first())
                .map(|p| p.error_code)
                .unwrap_or(code::UNKNOWN_SERVER_ERROR);
            if c != code::NONE && c != code::DUPLICATE_SEQUENCE_NUMBER {
                return Err(ClientError::kafka("Produce", conn.broker(), topic, c, None));
            }
            Ok(())
        })
        .await?;
    Ok(count)
}
