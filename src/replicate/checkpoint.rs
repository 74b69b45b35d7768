//! Progress: source positions and the offset map, stored in the destination cluster.
//!
//! A partition's position is the next source offset after the last batch the
//! destination acknowledged (acks=all), with every earlier batch acknowledged
//! too ([`super::producer`] advances it only over acknowledged entries). It is
//! committed as the offset of the destination partition in the consumer group
//! `strait-{name}` on the destination, so a failover site has it without the
//! source. The offset-map records for the same batches are written first.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions};
use tracing::debug;

use super::metrics::Metrics;
use super::offset_map::{encode_value, merge, MapEntry};
use super::producer::{Producer, Route};
use crate::batch::build::simple_record;
use crate::batch::{patch_for_produce, RawBatch};
use crate::client::txn::produce_version;
use crate::client::{Client, ClientError, NewTopic, TxnId};
use crate::config::Config;
use crate::protocol::{ProducePartition, ProduceTopic};

/// Writes checkpoints for one replication.
#[derive(Debug)]
pub struct Checkpointer {
    dst: Arc<Client>,
    cfg: Arc<Config>,
    producer: Arc<Producer>,
    metrics: Arc<Metrics>,
    committed: Mutex<HashMap<(Arc<str>, i32), i64>>,
    /// The offset map written so far (loaded at start, extended by every
    /// checkpoint): (destination topic, partition) → runs sorted by source offset.
    index: Mutex<HashMap<(String, i32), Vec<MapEntry>>>,
}

impl Checkpointer {
    /// A checkpointer over `producer`'s positions.
    pub fn new(dst: Arc<Client>, cfg: Arc<Config>, producer: Arc<Producer>, metrics: Arc<Metrics>) -> Self {
        Self {
            dst,
            cfg,
            producer,
            metrics,
            committed: Mutex::new(HashMap::new()),
            index: Mutex::new(HashMap::new()),
        }
    }

    /// Loads the offset map already in the destination (for group offset sync).
    pub async fn load_index(&self) -> Result<(), ClientError> {
        let map = super::translate::load_map(&self.cfg, &self.dst).await?;
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        for (k, runs) in map {
            let e = index.entry(k).or_default();
            e.extend(runs);
            e.sort_by_key(|r| r.src_base);
        }
        Ok(())
    }

    /// The destination offset of the first record at or after source `offset`
    /// of destination topic `dst_topic`'s partition, if strait replicated that far.
    pub fn translate(&self, dst_topic: &str, partition: i32, offset: i64) -> Option<i64> {
        let index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        super::offset_map::translate(index.get(&(dst_topic.to_string(), partition))?, offset)
    }

    /// Creates the offset-map topic if it does not exist.
    pub async fn ensure_map_topic(&self) -> Result<(), ClientError> {
        self.dst
            .create_topics(
                &[NewTopic {
                    name: self.cfg.offset_map_topic(),
                    partitions: 1,
                    replication_factor: self.cfg.replication_factor,
                    configs: vec![
                        ("cleanup.policy".into(), "delete".into()),
                        ("retention.ms".into(), (7 * 24 * 3600 * 1000i64).to_string()),
                    ],
                }],
                30_000,
                true,
            )
            .await
    }

    /// Committed source positions of `partitions` of destination topic `dst_topic` (-1: none).
    pub async fn load(&self, dst_topic: &str, partitions: &[i32]) -> Result<HashMap<i32, i64>, ClientError> {
        let got = self
            .dst
            .fetch_offsets(
                &self.cfg.checkpoint_group(),
                &[(dst_topic.to_string(), partitions.to_vec())],
            )
            .await?;
        let mut out = HashMap::new();
        let mut committed = self.committed.lock().unwrap_or_else(|e| e.into_inner());
        for (t, p, o) in got {
            if t == dst_topic {
                out.insert(p, o);
                if o >= 0 {
                    committed.insert((Arc::from(t.as_str()), p), o);
                }
            }
        }
        Ok(out)
    }

    /// Writes offset-map records and commits every position that moved. Returns
    /// the number of partitions committed.
    pub async fn checkpoint(&self) -> Result<usize, ClientError> {
        let entries = self.producer.take_map_entries();
        if !entries.is_empty() {
            if let Err(e) = self.write_map(&entries, None).await {
                self.producer.restore_map_entries(entries);
                return Err(e);
            }
            self.extend_index(&entries);
        }
        let moved = self.moved();
        if moved.is_empty() {
            // Every position is committed already: the checkpoint is current.
            self.touch();
            return Ok(0);
        }
        self.dst.commit_offsets(&self.cfg.checkpoint_group(), &moved).await?;
        self.committed_now(&moved);
        debug!(partitions = moved.len(), "checkpoint committed");
        Ok(moved.len())
    }

    /// Exactly-once: writes the offset map and the positions of every batch the
    /// open transaction holds into that transaction, then commits it. `added`: the
    /// transaction already holds partitions (else there may be nothing to commit).
    /// `map_seq` is the transactional producer's next sequence on the map partition.
    pub async fn commit_txn(&self, txn: &TxnId, map_seq: &mut i32, added: bool) -> Result<usize, ClientError> {
        let entries = self.producer.take_map_entries();
        let moved = self.moved();
        if !added && entries.is_empty() && moved.is_empty() {
            self.touch();
            return Ok(0);
        }
        let result = async {
            if !entries.is_empty() {
                let map = BTreeMap::from([(self.cfg.offset_map_topic(), vec![0])]);
                self.dst.add_partitions_to_txn(txn, &map).await?;
                let records = self.write_map(&entries, Some((txn, *map_seq))).await?;
                *map_seq = map_seq.wrapping_add(records) & i32::MAX;
            }
            if !moved.is_empty() {
                let group = self.cfg.checkpoint_group();
                self.dst.add_offsets_to_txn(txn, &group).await?;
                self.dst.txn_offset_commit(txn, &group, &moved).await?;
            }
            self.dst.end_txn(txn, true).await
        }
        .await;
        if let Err(e) = result {
            self.producer.restore_map_entries(entries);
            return Err(e);
        }
        self.extend_index(&entries);
        self.committed_now(&moved);
        debug!(partitions = moved.len(), "transaction committed");
        Ok(moved.len())
    }

    fn extend_index(&self, entries: &[(Route, Vec<MapEntry>)]) {
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        for (route, runs) in entries {
            let e = index.entry((route.dst_topic.to_string(), route.partition)).or_default();
            e.extend(merge(runs.clone()));
            e.sort_by_key(|r| r.src_base);
            let merged = merge(std::mem::take(e));
            *e = merged;
        }
    }

    fn committed_now(&self, moved: &[(String, i32, i64)]) {
        let mut committed = self.committed.lock().unwrap_or_else(|e| e.into_inner());
        for (t, p, o) in moved {
            committed.insert((Arc::from(t.as_str()), *p), *o);
        }
        drop(committed);
        Metrics::add(&self.metrics.checkpoints, 1);
        self.touch();
    }

    /// Positions that differ from the last committed ones.
    fn moved(&self) -> Vec<(String, i32, i64)> {
        let committed = self.committed.lock().unwrap_or_else(|e| e.into_inner());
        self.producer
            .positions()
            .into_iter()
            .filter(|p| p.acked_next >= 0)
            .filter(|p| committed.get(&(p.route.dst_topic.clone(), p.route.partition)) != Some(&p.acked_next))
            .map(|p| (p.route.dst_topic.to_string(), p.route.partition, p.acked_next))
            .collect()
    }

    fn touch(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.metrics
            .last_checkpoint_ms
            .store(now, std::sync::atomic::Ordering::Relaxed);
    }

    /// Produces one offset-map batch; transactional when `txn` is given (then with
    /// that producer's stamp and the given sequence). Returns the number of records.
    async fn write_map(
        &self,
        entries: &[(Route, Vec<MapEntry>)],
        txn: Option<(&TxnId, i32)>,
    ) -> Result<i32, ClientError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let records: Vec<Record> = entries
            .iter()
            .enumerate()
            .map(|(i, (route, runs))| {
                simple_record(
                    i as i64,
                    now,
                    Some(Bytes::from(format!("{}:{}", route.dst_topic, route.partition))),
                    Some(Bytes::from(encode_value(&route.src_topic, &merge(runs.clone())))),
                )
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::Lz4,
            },
        )
        .map_err(|e| ClientError::Invalid {
            what: "offset map batch",
            reason: format!("{e:#}"),
        })?;
        let raw = RawBatch::from_single(buf.freeze()).map_err(|e| ClientError::Invalid {
            what: "offset map batch",
            reason: e.to_string(),
        })?;
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
        let topic = self.cfg.offset_map_topic();
        self.dst
            .retrying(|| async {
                let (leader, _) = self.dst.leader(&topic, 0).await?;
                let conn = self.dst.broker(leader).await?;
                let md = self.dst.cached_metadata();
                let id = md.topics.get(&topic).map(|t| t.id).unwrap_or_default();
                let version = produce_version(conn.version_of::<ProduceRequest>()?, txn_id);
                let resp = conn
                    .produce(
                        version,
                        txn_id,
                        -1,
                        30_000,
                        &[ProduceTopic {
                            name: topic.clone(),
                            topic_id: id,
                            partitions: vec![part.clone()],
                        }],
                    )
                    .await?;
                let code = resp
                    .responses
                    .first()
                    .and_then(|t| t.partition_responses.first())
                    .map(|p| p.error_code)
                    .unwrap_or(-1);
                // DUPLICATE_SEQUENCE_NUMBER: a retry of a write that landed.
                if code != 0 && code != 46 {
                    return Err(ClientError::kafka("Produce", conn.broker(), topic.as_str(), code, None));
                }
                Ok(())
            })
            .await?;
        Ok(count)
    }
}
