//! Transactional producer calls (exactly-once mode): AddPartitionsToTxn,
//! AddOffsetsToTxn, TxnOffsetCommit and EndTxn.
//!
//! strait speaks the classic transaction protocol (KIP-98; "transaction
//! version 1"): partitions are added explicitly before batches are produced to
//! them, and the producer epoch stays the same from one transaction to the
//! next. Kafka 4.x brokers still serve it, and it is the only protocol 3.x
//! brokers know. The version caps below keep newer brokers on it: Produce v12+
//! and EndTxn v5+ switch a transaction to KIP-890's implicit partition adds and
//! per-transaction epoch bumps, and AddPartitionsToTxn v4+ is broker-to-broker.

use std::collections::BTreeMap;

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, EndTxnRequest, GroupId, ProducerId, TopicName, TransactionalId,
    TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::{Client, ClientError, GroupOffset, Result};
use crate::protocol::ProducerStamp;

/// Highest Produce version of the classic transaction protocol.
const TXN_PRODUCE_MAX_VERSION: i16 = 11;

/// The Produce version to use: the negotiated one, capped for transactional
/// requests (`transactional_id` set) to the classic transaction protocol.
pub fn produce_version(negotiated: i16, transactional_id: Option<&str>) -> i16 {
    if transactional_id.is_some() {
        negotiated.min(TXN_PRODUCE_MAX_VERSION)
    } else {
        negotiated
    }
}
const ADD_PARTITIONS_MAX_VERSION: i16 = 3;
const END_TXN_MAX_VERSION: i16 = 4;

/// A transactional producer's identity, as the coordinator knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnId {
    /// `transactional.id`.
    pub transactional_id: String,
    /// Producer id from InitProducerId.
    pub producer_id: i64,
    /// Producer epoch from InitProducerId.
    pub producer_epoch: i16,
}

impl TxnId {
    /// The header stamp of this producer's batches (transactional bit set).
    pub fn stamp(&self) -> ProducerStamp {
        ProducerStamp {
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            transactional: true,
        }
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

impl Client {
    /// Adds partitions (topic → partition list) to the ongoing transaction.
    pub async fn add_partitions_to_txn(&self, txn: &TxnId, partitions: &BTreeMap<String, Vec<i32>>) -> Result<()> {
        if partitions.is_empty() {
            return Ok(());
        }
        self.retrying(|| async {
            let conn = self.find_coordinator(&txn.transactional_id, 1).await?;
            let version = conn
                .version_of::<AddPartitionsToTxnRequest>()?
                .min(ADD_PARTITIONS_MAX_VERSION);
            let req = AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(TransactionalId(s(&txn.transactional_id)))
                .with_v3_and_below_producer_id(ProducerId(txn.producer_id))
                .with_v3_and_below_producer_epoch(txn.producer_epoch)
                .with_v3_and_below_topics(
                    partitions
                        .iter()
                        .map(|(t, ps)| {
                            AddPartitionsToTxnTopic::default()
                                .with_name(TopicName(s(t)))
                                .with_partitions(ps.clone())
                        })
                        .collect(),
                );
            let resp = conn.request_at(version, &req).await?;
            for t in &resp.results_by_topic_v3_and_below {
                for p in &t.results_by_partition {
                    if p.partition_error_code != 0 {
                        self.note_error_code(p.partition_error_code);
                        return Err(ClientError::kafka(
                            "AddPartitionsToTxn",
                            conn.broker(),
                            format!("{}-{}", t.name.0, p.partition_index),
                            p.partition_error_code,
                            None,
                        ));
                    }
                }
            }
            Ok(())
        })
        .await
    }

    /// Makes the group's offset commits part of the ongoing transaction.
    pub async fn add_offsets_to_txn(&self, txn: &TxnId, group: &str) -> Result<()> {
        self.retrying(|| async {
            let conn = self.find_coordinator(&txn.transactional_id, 1).await?;
            let req = AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(s(&txn.transactional_id)))
                .with_producer_id(ProducerId(txn.producer_id))
                .with_producer_epoch(txn.producer_epoch)
                .with_group_id(GroupId(s(group)));
            let resp = conn.request(&req).await?;
            if resp.error_code != 0 {
                return Err(ClientError::kafka(
                    "AddOffsetsToTxn",
                    conn.broker(),
                    format!("group {group}"),
                    resp.error_code,
                    None,
                ));
            }
            Ok(())
        })
        .await
    }

    /// Commits offsets (topic, partition, next offset) for `group` inside the transaction;
    /// they become visible when the transaction commits.
    /// With `member`, the coordinator checks its generation and member id
    /// (KIP-447): an expelled member cannot commit positions it lost.
    pub async fn txn_offset_commit(
        &self,
        txn: &TxnId,
        group: &str,
        offsets: &[GroupOffset],
        member: Option<&super::group::GroupMember>,
    ) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut by_topic: BTreeMap<&str, Vec<TxnOffsetCommitRequestPartition>> = BTreeMap::new();
        for o in offsets {
            by_topic.entry(o.topic.as_str()).or_default().push(
                TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(o.partition)
                    .with_committed_offset(o.offset)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata((!o.metadata.is_empty()).then(|| s(&o.metadata))),
            );
        }
        let req = TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(s(&txn.transactional_id)))
            .with_group_id(GroupId(s(group)))
            .with_producer_id(ProducerId(txn.producer_id))
            .with_producer_epoch(txn.producer_epoch)
            .with_generation_id(member.map_or(-1, |m| m.generation))
            .with_member_id(s(member.map_or("", |m| m.member_id.as_str())))
            .with_group_instance_id(member.and_then(|m| m.instance_id.as_deref()).map(s))
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(t, ps)| {
                        TxnOffsetCommitRequestTopic::default()
                            .with_name(TopicName(s(t)))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        self.retrying(|| async {
            let conn = self.find_coordinator(group, 0).await?;
            let resp = conn.request(&req).await?;
            for t in &resp.topics {
                for p in &t.partitions {
                    if p.error_code != 0 {
                        self.note_error_code(p.error_code);
                        return Err(ClientError::kafka(
                            "TxnOffsetCommit",
                            conn.broker(),
                            format!("group {group} {}-{}", t.name.0, p.partition_index),
                            p.error_code,
                            None,
                        ));
                    }
                }
            }
            Ok(())
        })
        .await
    }

    /// Commits (`commit`) or aborts the ongoing transaction. A retry of a commit
    /// that already completed is answered as a success by the coordinator.
    pub async fn end_txn(&self, txn: &TxnId, commit: bool) -> Result<()> {
        // Kafka 4.1 answers UNKNOWN_SERVER_ERROR when EndTxn races a fencing
        // InitProducerId ("already a pending state PREPARE_EPOCH_FENCE"): ask again,
        // the answer then says whether this producer was fenced.
        let mut attempts = 0;
        loop {
            match self.end_txn_once(txn, commit).await {
                Err(e) if e.code() == Some(-1) && attempts < 5 => {
                    attempts += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                r => return r,
            }
        }
    }

    async fn end_txn_once(&self, txn: &TxnId, commit: bool) -> Result<()> {
        self.retrying(|| async {
            let conn = self.find_coordinator(&txn.transactional_id, 1).await?;
            let version = conn.version_of::<EndTxnRequest>()?.min(END_TXN_MAX_VERSION);
            let req = EndTxnRequest::default()
                .with_transactional_id(TransactionalId(s(&txn.transactional_id)))
                .with_producer_id(ProducerId(txn.producer_id))
                .with_producer_epoch(txn.producer_epoch)
                .with_committed(commit);
            let resp = conn.request_at(version, &req).await?;
            if resp.error_code != 0 {
                return Err(ClientError::kafka(
                    "EndTxn",
                    conn.broker(),
                    &txn.transactional_id,
                    resp.error_code,
                    None,
                ));
            }
            Ok(())
        })
        .await
    }
}
