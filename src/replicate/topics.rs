//! Topic mirroring: find matching source topics, create or grow their
//! destination twins, and keep their configs in step.
//!
//! Destination topics get the source's partition count and its explicitly set
//! topic configs, minus [`EXCLUDED_CONFIGS`], plus `compression.type=producer`
//! so the destination stores each batch in the codec it arrived in.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tracing::{error, info, warn};
use uuid::Uuid;

use crate::client::{Client, ClientError, ConfigEntry, NewTopic};
use crate::config::TopicSettings;

/// Topic configs never copied: they describe the source brokers, not the data,
/// or strait sets them itself (`compression.type`). The list follows MirrorMaker
/// 2's default config property filter, plus tiered-storage settings.
pub const EXCLUDED_CONFIGS: &[&str] = &[
    "compression.type",
    "follower.replication.throttled.replicas",
    "leader.replication.throttled.replicas",
    "message.timestamp.difference.max.ms",
    "message.timestamp.type",
    "unclean.leader.election.enable",
    "min.insync.replicas",
    "remote.storage.enable",
    "local.retention.ms",
    "local.retention.bytes",
    "message.format.version",
];

/// True when a topic seen with id `old` now has id `new`: it was deleted and
/// created again under the same name. A nil id (not known, or a broker that
/// has no topic ids) is never a change.
pub fn created_again(old: Uuid, new: Uuid) -> bool {
    !old.is_nil() && !new.is_nil() && old != new
}

/// One source topic to replicate.
#[derive(Debug, Clone)]
pub struct MirroredTopic {
    /// Source name.
    pub src: Arc<str>,
    /// Source topic id.
    pub src_id: Uuid,
    /// Destination name.
    pub dst: Arc<str>,
    /// Destination topic id.
    pub dst_id: Uuid,
    /// Partition count (same on both sides once reconciled).
    pub partitions: i32,
}

fn copyable(entries: &[ConfigEntry]) -> HashMap<String, String> {
    entries
        .iter()
        .filter(|e| e.is_explicit() && !e.sensitive && !EXCLUDED_CONFIGS.contains(&e.name.as_str()))
        .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v)))
        .collect()
}

/// Lists matching source topics and, with `manage` (the replication group's
/// leader: this work is done once, not by every member), makes the
/// destination match them. Returns every mirrored topic whose destination is
/// ready. With `same_cluster` (source and destination share a cluster id) a
/// topic whose renamed copy the selection matches too is refused, so a copy is
/// never copied again.
pub async fn reconcile(
    cfg: &TopicSettings,
    src: &Client,
    dst: &Client,
    same_cluster: bool,
    manage: bool,
) -> Result<Vec<MirroredTopic>, ClientError> {
    let smd = src.refresh_metadata(None).await?;
    let mut wanted: Vec<(&str, Uuid, i32)> = smd
        .topics
        .values()
        .filter(|t| t.error_code == 0 && cfg.wants(&t.name, t.is_internal))
        .map(|t| (t.name.as_str(), t.id, t.partitions.len() as i32))
        .collect();
    wanted.sort();
    if same_cluster {
        wanted.retain(|(name, _, _)| match cfg.self_copy_problem([*name]) {
            Some(problem) => {
                error!(topic = name, "{problem}; this topic is not replicated");
                false
            }
            None => true,
        });
    }
    // Two source topics must not land in one destination topic.
    let mut seen: HashMap<String, &str> = HashMap::new();
    let mut skip: HashSet<&str> = HashSet::new();
    for (name, _, _) in &wanted {
        let d = cfg.destination(name);
        if let Some(other) = seen.insert(d.clone(), name) {
            warn!(topic = name, other, destination = %d, "two source topics map to one destination topic; neither is replicated (change `rename`)");
            skip.insert(name);
            skip.insert(other);
        }
    }
    wanted.retain(|(n, _, _)| !skip.contains(n));
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<String> = wanted.iter().map(|(n, _, _)| n.to_string()).collect();
    if !manage {
        return ready(cfg, dst, &wanted).await;
    }
    let src_cfg = if cfg.sync_topic_configs {
        src.describe_topic_configs(&names).await?
    } else {
        HashMap::new()
    };
    let dst_names: Vec<String> = names.iter().map(|n| cfg.destination(n)).collect();
    let dmd = dst.refresh_metadata(Some(&dst_names)).await?;
    // Create what is missing.
    let mut create = Vec::new();
    for (name, _, parts) in &wanted {
        let d = cfg.destination(name);
        let exists = dmd.topics.get(&d).is_some_and(|t| t.error_code == 0);
        if !exists {
            let mut configs: Vec<(String, String)> = src_cfg
                .get(*name)
                .map(|e| copyable(e).into_iter().collect())
                .unwrap_or_default();
            configs.sort();
            configs.push(("compression.type".into(), "producer".into()));
            info!(source = name, destination = %d, partitions = parts, "creating destination topic");
            create.push(NewTopic {
                name: d,
                partitions: *parts,
                replication_factor: cfg.replication_factor,
                configs,
            });
        }
    }
    if !create.is_empty() {
        dst.create_topics(&create, 60_000, true).await?;
    }
    // Grow partitions and sync configs of existing ones.
    let dst_cfg = if cfg.sync_topic_configs {
        dst.describe_topic_configs(&dst_names).await?
    } else {
        HashMap::new()
    };
    for (name, _, parts) in &wanted {
        let d = cfg.destination(name);
        if let Some(t) = dmd.topics.get(&d) {
            if t.error_code == 0 && (t.partitions.len() as i32) < *parts {
                info!(source = name, destination = %d, from = t.partitions.len(), to = parts, "adding partitions to destination topic");
                dst.create_partitions(&d, *parts, 60_000).await?;
            }
        }
        if cfg.sync_topic_configs {
            let want = src_cfg.get(*name).map(|e| copyable(e)).unwrap_or_default();
            let have = dst_cfg.get(&d).map(|e| copyable(e)).unwrap_or_default();
            let mut changes: Vec<(String, Option<String>)> = want
                .iter()
                .filter(|(k, v)| have.get(*k) != Some(v))
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect();
            let compression_ok = dst_cfg
                .get(&d)
                .and_then(|e| e.iter().find(|c| c.name == "compression.type"))
                .is_none_or(|c| c.value.as_deref() == Some("producer"));
            if !compression_ok {
                changes.push(("compression.type".into(), Some("producer".into())));
            }
            if !changes.is_empty() {
                changes.sort();
                info!(destination = %d, changes = ?changes, "syncing topic configs");
                dst.alter_topic_configs(&d, &changes).await?;
            }
        }
    }
    ready(cfg, dst, &wanted).await
}

/// The topics of `wanted` whose destination twin exists with enough partitions.
async fn ready(
    cfg: &TopicSettings,
    dst: &Client,
    wanted: &[(&str, Uuid, i32)],
) -> Result<Vec<MirroredTopic>, ClientError> {
    let dst_names: Vec<String> = wanted.iter().map(|(n, _, _)| cfg.destination(n)).collect();
    let dmd = dst.refresh_metadata(Some(&dst_names)).await?;
    Ok(wanted
        .iter()
        .filter_map(|(name, id, parts)| {
            let d = cfg.destination(name);
            let t = dmd.topics.get(&d)?;
            (t.error_code == 0 && t.partitions.len() as i32 >= *parts).then(|| MirroredTopic {
                src: Arc::from(*name),
                src_id: *id,
                dst: Arc::from(d.as_str()),
                dst_id: t.id,
                partitions: *parts,
            })
        })
        .collect())
}
