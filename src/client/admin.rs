//! Admin and coordination calls the replicator needs: topics, partitions,
//! configs, offsets, coordinators and producer ids. Each call checks every
//! per-resource error code and reports the first failure with the resource name.

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreateTopicsRequest, DescribeConfigsRequest, FindCoordinatorRequest, GroupId,
    IncrementalAlterConfigsRequest, InitProducerIdRequest, ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest,
    ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::conn::Connection;
use super::pool::Client;
use super::{code, ClientError, Result};

/// `ListOffsets` timestamp meaning "the earliest offset".
pub const EARLIEST: i64 = -2;
/// `ListOffsets` timestamp meaning "the latest offset" (the high watermark).
pub const LATEST: i64 = -1;
/// Config resource type of a topic (`ConfigResource.Type.TOPIC`).
const RESOURCE_TOPIC: i8 = 2;

/// A group's committed offset of one partition, with the metadata string
/// committed beside it (OffsetCommit's `committed_metadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Next offset to consume (-1: none committed).
    pub offset: i64,
    /// Metadata committed with the offset ("" when none).
    pub metadata: String,
}

impl GroupOffset {
    /// An offset without metadata.
    pub fn new(topic: impl Into<String>, partition: i32, offset: i64) -> Self {
        Self {
            topic: topic.into(),
            partition,
            offset,
            metadata: String::new(),
        }
    }
}

/// A topic to create.
#[derive(Debug, Clone)]
pub struct NewTopic {
    /// Name.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
    /// Replication factor; -1 for the broker default.
    pub replication_factor: i16,
    /// Topic configs (`cleanup.policy`, `compression.type`, ...).
    pub configs: Vec<(String, String)>,
}

/// One described config entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Config name.
    pub name: String,
    /// Value (None for sensitive or unset values).
    pub value: Option<String>,
    /// Where the value comes from (`DescribeConfigsResponse` source: 1 = topic, 4 = static broker, 5 = default, ...).
    pub source: i8,
    /// True when the value cannot be altered.
    pub read_only: bool,
    /// True for passwords and other secrets.
    pub sensitive: bool,
}

impl ConfigEntry {
    /// True when set on the resource itself (not inherited from broker or default).
    pub fn is_explicit(&self) -> bool {
        self.source == 1
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn topic_name(v: &str) -> TopicName {
    TopicName(s(v))
}

impl Client {
    /// Runs `op` until it succeeds, fails with a fatal error, or the request timeout
    /// passes; retriable errors back off, routing errors also refresh metadata.
    /// Coordinators answer COORDINATOR_NOT_AVAILABLE / LOAD_IN_PROGRESS for a while
    /// after a cluster starts or a coordinator moves.
    pub async fn retrying<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let deadline = tokio::time::Instant::now() + self.config().connection.request_timeout;
        let mut failures = 0;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let class = self.note_error(&e);
                    if class == super::ErrorClass::Fatal || tokio::time::Instant::now() >= deadline {
                        return Err(e);
                    }
                    failures += 1;
                    tracing::debug!(error = %e, failures, "retrying");
                    tokio::time::sleep(
                        self.config()
                            .backoff
                            .delay(failures)
                            .min(std::time::Duration::from_secs(1)),
                    )
                    .await;
                }
            }
        }
    }

    /// Creates topics. A topic that already exists is not an error when `if_not_exists`.
    pub async fn create_topics(&self, topics: &[NewTopic], timeout_ms: i32, if_not_exists: bool) -> Result<()> {
        let req = CreateTopicsRequest::default().with_timeout_ms(timeout_ms).with_topics(
            topics
                .iter()
                .map(|t| {
                    CreatableTopic::default()
                        .with_name(topic_name(&t.name))
                        .with_num_partitions(t.partitions)
                        .with_replication_factor(t.replication_factor)
                        .with_configs(
                            t.configs
                                .iter()
                                .map(|(k, v)| CreatableTopicConfig::default().with_name(s(k)).with_value(Some(s(v))))
                                .collect(),
                        )
                })
                .collect(),
        );
        let conn = self.any_broker().await?;
        let resp = conn.request(&req).await?;
        for r in &resp.topics {
            if r.error_code != 0 && !(if_not_exists && r.error_code == code::TOPIC_ALREADY_EXISTS) {
                return Err(ClientError::kafka(
                    "CreateTopics",
                    conn.broker(),
                    format!("topic {}", r.name.0),
                    r.error_code,
                    r.error_message.as_deref(),
                ));
            }
        }
        let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
        self.wait_for_partitions(&names, None, timeout_ms).await
    }

    /// Waits until every partition of `topics` has a leader in the metadata (and, with
    /// `count`, until there are that many partitions): topic creation and partition
    /// increases return before the new partitions are served.
    pub async fn wait_for_partitions(&self, topics: &[String], count: Option<usize>, timeout_ms: i32) -> Result<()> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(timeout_ms.max(0) as u64);
        loop {
            let md = self.refresh_metadata(Some(topics)).await?;
            let pending = topics.iter().find(|t| match md.topics.get(*t) {
                Some(tm) => {
                    tm.error_code != 0
                        || tm.partitions.is_empty()
                        || count.is_some_and(|n| tm.partitions.len() < n)
                        || tm.partitions.iter().any(|p| p.leader < 0 || p.error_code != 0)
                }
                None => true,
            });
            let Some(t) = pending else { return Ok(()) };
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::Invalid {
                    what: "topic state",
                    reason: format!("partitions of topic {t} have no leader {timeout_ms} ms after the request"),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Raises the partition count of `topic` to `total`.
    pub async fn create_partitions(&self, topic: &str, total: i32, timeout_ms: i32) -> Result<()> {
        let req = CreatePartitionsRequest::default()
            .with_timeout_ms(timeout_ms)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name(topic))
                .with_count(total)
                .with_assignments(None)]);
        let conn = self.any_broker().await?;
        let resp = conn.request(&req).await?;
        for r in &resp.results {
            if r.error_code != 0 {
                return Err(ClientError::kafka(
                    "CreatePartitions",
                    conn.broker(),
                    format!("topic {topic}"),
                    r.error_code,
                    r.error_message.as_deref(),
                ));
            }
        }
        self.wait_for_partitions(&[topic.to_string()], Some(total as usize), timeout_ms)
            .await
    }

    /// Describes the configs of topics.
    pub async fn describe_topic_configs(&self, topics: &[String]) -> Result<HashMap<String, Vec<ConfigEntry>>> {
        let req = DescribeConfigsRequest::default().with_resources(
            topics
                .iter()
                .map(|t| {
                    DescribeConfigsResource::default()
                        .with_resource_type(RESOURCE_TOPIC)
                        .with_resource_name(s(t))
                })
                .collect(),
        );
        let conn = self.any_broker().await?;
        let resp = conn.request(&req).await?;
        let mut out = HashMap::new();
        for r in resp.results {
            if r.error_code != 0 {
                return Err(ClientError::kafka(
                    "DescribeConfigs",
                    conn.broker(),
                    format!("topic {}", r.resource_name),
                    r.error_code,
                    r.error_message.as_deref(),
                ));
            }
            let entries = r
                .configs
                .into_iter()
                .map(|c| ConfigEntry {
                    name: c.name.to_string(),
                    value: c.value.map(|v| v.to_string()),
                    source: c.config_source,
                    read_only: c.read_only,
                    sensitive: c.is_sensitive,
                })
                .collect();
            out.insert(r.resource_name.to_string(), entries);
        }
        Ok(out)
    }

    /// Sets (`Some`) or deletes (`None`) topic configs with IncrementalAlterConfigs.
    pub async fn alter_topic_configs(&self, topic: &str, changes: &[(String, Option<String>)]) -> Result<()> {
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(s(topic))
            .with_configs(
                changes
                    .iter()
                    .map(|(k, v)| {
                        AlterableConfig::default()
                            .with_name(s(k))
                            // 0 = SET, 1 = DELETE
                            .with_config_operation(if v.is_some() { 0 } else { 1 })
                            .with_value(v.as_deref().map(s))
                    })
                    .collect(),
            )]);
        let conn = self.any_broker().await?;
        let resp = conn.request(&req).await?;
        for r in &resp.responses {
            if r.error_code != 0 {
                return Err(ClientError::kafka(
                    "IncrementalAlterConfigs",
                    conn.broker(),
                    format!("topic {topic}"),
                    r.error_code,
                    r.error_message.as_deref(),
                ));
            }
        }
        Ok(())
    }

    /// The offset of `topic`/`partition` at `timestamp` ([`EARLIEST`], [`LATEST`] or a time),
    /// asked of the partition leader. `read_committed` gives the last stable offset for LATEST.
    pub async fn list_offset(&self, topic: &str, partition: i32, timestamp: i64, read_committed: bool) -> Result<i64> {
        let (leader, epoch) = self.leader(topic, partition).await?;
        let conn = self.broker(leader).await?;
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(read_committed as i8)
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_current_leader_epoch(epoch)
                    .with_timestamp(timestamp)])]);
        let resp = conn.request(&req).await?;
        let p = resp
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| ClientError::UnknownPartition {
                topic: topic.into(),
                partition,
            })?;
        if p.error_code != 0 {
            self.note_error_code(p.error_code);
            return Err(ClientError::kafka(
                "ListOffsets",
                conn.broker(),
                format!("{topic}-{partition}"),
                p.error_code,
                None,
            ));
        }
        Ok(p.offset)
    }

    /// Offsets of many partitions of `topic` at `timestamp`: one ListOffsets
    /// request per partition leader instead of one per partition.
    pub async fn list_offsets(
        &self,
        topic: &str,
        partitions: &[i32],
        timestamp: i64,
        read_committed: bool,
    ) -> Result<HashMap<i32, i64>> {
        let mut by_leader: HashMap<i32, Vec<(i32, i32)>> = HashMap::new();
        for &p in partitions {
            let (leader, epoch) = self.leader(topic, p).await?;
            by_leader.entry(leader).or_default().push((p, epoch));
        }
        let mut out = HashMap::new();
        for (leader, parts) in by_leader {
            let conn = self.broker(leader).await?;
            let req = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_isolation_level(read_committed as i8)
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(
                        parts
                            .iter()
                            .map(|(p, epoch)| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(*p)
                                    .with_current_leader_epoch(*epoch)
                                    .with_timestamp(timestamp)
                            })
                            .collect(),
                    )]);
            let resp = conn.request(&req).await?;
            for p in resp.topics.iter().flat_map(|t| t.partitions.iter()) {
                if p.error_code != 0 {
                    self.note_error_code(p.error_code);
                    return Err(ClientError::kafka(
                        "ListOffsets",
                        conn.broker(),
                        format!("{topic}-{}", p.partition_index),
                        p.error_code,
                        None,
                    ));
                }
                out.insert(p.partition_index, p.offset);
            }
        }
        for p in partitions {
            if !out.contains_key(p) {
                return Err(ClientError::UnknownPartition {
                    topic: topic.into(),
                    partition: *p,
                });
            }
        }
        Ok(out)
    }

    /// The coordinator of a group (`key_type` 0) or transactional id (`key_type` 1).
    pub async fn find_coordinator(&self, key: &str, key_type: i8) -> Result<Arc<Connection>> {
        self.retrying(|| self.find_coordinator_once(key, key_type)).await
    }

    async fn find_coordinator_once(&self, key: &str, key_type: i8) -> Result<Arc<Connection>> {
        let conn = self.any_broker().await?;
        let version = conn.version_of::<FindCoordinatorRequest>()?;
        let mut req = FindCoordinatorRequest::default().with_key_type(key_type);
        if version >= 4 {
            req = req.with_coordinator_keys(vec![s(key)]);
        } else {
            req = req.with_key(s(key));
        }
        let resp = conn.request_at(version, &req).await?;
        let (code, msg, node, host, port) = if version >= 4 {
            let c = resp
                .coordinators
                .first()
                .ok_or_else(|| ClientError::kafka("FindCoordinator", conn.broker(), key, -1, Some("empty response")))?;
            (
                c.error_code,
                c.error_message.clone(),
                c.node_id.0,
                c.host.to_string(),
                c.port,
            )
        } else {
            (
                resp.error_code,
                resp.error_message.clone(),
                resp.node_id.0,
                resp.host.to_string(),
                resp.port,
            )
        };
        if code != 0 {
            return Err(ClientError::kafka(
                "FindCoordinator",
                conn.broker(),
                format!("coordinator of {key}"),
                code,
                msg.as_deref(),
            ));
        }
        let _ = node;
        self.connection(&format!("{host}:{port}")).await
    }

    /// Commits offsets for a group with no active members (generation -1), as admin tools do.
    /// `offsets`: (topic, partition, next offset to consume).
    pub async fn commit_offsets(&self, group: &str, offsets: &[(String, i32, i64)]) -> Result<()> {
        let offsets: Vec<GroupOffset> = offsets
            .iter()
            .map(|(t, p, o)| GroupOffset::new(t.as_str(), *p, *o))
            .collect();
        self.commit_group_offsets(group, &offsets).await
    }

    /// Like [`commit_offsets`](Self::commit_offsets), with each offset's metadata string.
    pub async fn commit_group_offsets(&self, group: &str, offsets: &[GroupOffset]) -> Result<()> {
        self.retrying(|| self.commit_offsets_once(group, offsets, None)).await
    }

    /// Commits offsets as `member` of the group's current generation: the
    /// coordinator refuses them (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID,
    /// FENCED_INSTANCE_ID) once the member was expelled or the generation moved on.
    pub async fn commit_group_offsets_as(
        &self,
        group: &str,
        offsets: &[GroupOffset],
        member: &super::group::GroupMember,
    ) -> Result<()> {
        self.retrying(|| self.commit_offsets_once(group, offsets, Some(member)))
            .await
    }

    async fn commit_offsets_once(
        &self,
        group: &str,
        offsets: &[GroupOffset],
        member: Option<&super::group::GroupMember>,
    ) -> Result<()> {
        let mut by_topic: HashMap<&str, Vec<OffsetCommitRequestPartition>> = HashMap::new();
        for o in offsets {
            by_topic.entry(o.topic.as_str()).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(o.partition)
                    .with_committed_offset(o.offset)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata((!o.metadata.is_empty()).then(|| s(&o.metadata))),
            );
        }
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id_or_member_epoch(member.map_or(-1, |m| m.generation))
            .with_member_id(s(member.map_or("", |m| m.member_id.as_str())))
            .with_group_instance_id(member.and_then(|m| m.instance_id.as_deref()).map(s))
            .with_retention_time_ms(-1)
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(t, ps)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(topic_name(t))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let conn = self.find_coordinator(group, 0).await?;
        let resp = conn.request(&req).await?;
        for t in &resp.topics {
            for p in &t.partitions {
                if p.error_code != 0 {
                    self.note_error_code(p.error_code);
                    return Err(ClientError::kafka(
                        "OffsetCommit",
                        conn.broker(),
                        format!("group {group} {}-{}", t.name.0, p.partition_index),
                        p.error_code,
                        None,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Committed offsets of a group for the given topics' partitions (all of the
    /// group's partitions when `topics` is empty); -1 where none.
    pub async fn fetch_offsets(&self, group: &str, topics: &[(String, Vec<i32>)]) -> Result<Vec<(String, i32, i64)>> {
        Ok(self
            .fetch_group_offsets(group, topics)
            .await?
            .into_iter()
            .map(|o| (o.topic, o.partition, o.offset))
            .collect())
    }

    /// Like [`fetch_offsets`](Self::fetch_offsets), with each offset's metadata string.
    pub async fn fetch_group_offsets(&self, group: &str, topics: &[(String, Vec<i32>)]) -> Result<Vec<GroupOffset>> {
        self.retrying(|| self.fetch_offsets_once(group, topics)).await
    }

    async fn fetch_offsets_once(&self, group: &str, topics: &[(String, Vec<i32>)]) -> Result<Vec<GroupOffset>> {
        let conn = self.find_coordinator(group, 0).await?;
        let version = conn.version_of::<OffsetFetchRequest>()?;
        let mut req = OffsetFetchRequest::default();
        let all = topics.is_empty();
        if version >= 8 {
            let list = topics
                .iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopics::default()
                        .with_name(topic_name(t))
                        .with_partition_indexes(ps.clone())
                })
                .collect();
            req = req.with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s(group)))
                .with_topics((!all).then_some(list))]);
        } else {
            let list = topics
                .iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(topic_name(t))
                        .with_partition_indexes(ps.clone())
                })
                .collect();
            req = req.with_group_id(GroupId(s(group))).with_topics((!all).then_some(list));
        }
        if version >= 7 {
            // Wait out offsets pending in an open transaction (exactly-once mode)
            // instead of reading around them: UNSTABLE_OFFSET_COMMIT is retried.
            req = req.with_require_stable(true);
        }
        let resp = conn.request_at(version, &req).await?;
        let fail = |code: i16, what: String| ClientError::kafka("OffsetFetch", conn.broker(), what, code, None);
        // v8+ answers per group, older versions flat: reduce both to one list of
        // (group error, [(topic, partition, error, offset, metadata)]).
        type Row = (String, i32, i16, i64, String);
        let (group_error, partitions): (i16, Vec<Row>) = if version >= 8 {
            let g = resp.groups.first();
            (
                g.map(|g| g.error_code).unwrap_or(0),
                g.into_iter()
                    .flat_map(|g| &g.topics)
                    .flat_map(|t| {
                        t.partitions.iter().map(move |p| {
                            (
                                t.name.0.to_string(),
                                p.partition_index,
                                p.error_code,
                                p.committed_offset,
                                p.metadata.as_ref().map(|m| m.to_string()).unwrap_or_default(),
                            )
                        })
                    })
                    .collect(),
            )
        } else {
            (
                resp.error_code,
                resp.topics
                    .iter()
                    .flat_map(|t| {
                        t.partitions.iter().map(move |p| {
                            (
                                t.name.0.to_string(),
                                p.partition_index,
                                p.error_code,
                                p.committed_offset,
                                p.metadata.as_ref().map(|m| m.to_string()).unwrap_or_default(),
                            )
                        })
                    })
                    .collect(),
            )
        };
        if group_error != 0 {
            return Err(fail(group_error, format!("group {group}")));
        }
        let mut out = Vec::with_capacity(partitions.len());
        for (topic, partition, code, offset, metadata) in partitions {
            if code != 0 {
                return Err(fail(code, format!("group {group} {topic}-{partition}")));
            }
            out.push(GroupOffset {
                topic,
                partition,
                offset,
                metadata,
            });
        }
        Ok(out)
    }

    /// Gets a producer id and epoch: idempotent (`transactional_id` None, any broker)
    /// or transactional (sent to the transaction coordinator).
    pub async fn init_producer_id(&self, transactional_id: Option<&str>, txn_timeout_ms: i32) -> Result<(i64, i16)> {
        self.retrying(|| self.init_producer_id_once(transactional_id, txn_timeout_ms))
            .await
    }

    async fn init_producer_id_once(&self, transactional_id: Option<&str>, txn_timeout_ms: i32) -> Result<(i64, i16)> {
        let conn = match transactional_id {
            Some(t) => self.find_coordinator(t, 1).await?,
            None => self.any_broker().await?,
        };
        let req = InitProducerIdRequest::default()
            .with_transactional_id(transactional_id.map(|t| TransactionalId(s(t))))
            .with_transaction_timeout_ms(txn_timeout_ms)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let resp = conn.request(&req).await?;
        if resp.error_code != 0 {
            return Err(ClientError::kafka(
                "InitProducerId",
                conn.broker(),
                transactional_id.unwrap_or("idempotent producer"),
                resp.error_code,
                None,
            ));
        }
        Ok((resp.producer_id.0, resp.producer_epoch))
    }
}
