//! Exact consumer-offset translation from the offset map (`strait offsets translate`).
//!
//! A consumer group's committed source offset `o` (the next record it would
//! read) translates to the destination offset of the first record at or after
//! `o`, read from the map strait wrote while replicating
//! ([`super::offset_map`]). Offsets at or past the last replicated record
//! translate to the destination position right after it; where the map has no
//! run for a partition, the checkpoint's committed position and the
//! destination offset recorded with it say where that is
//! ([`super::checkpoint::translate_at`]).

use std::collections::HashMap;

use super::checkpoint::{committed_positions, translate_at, Position};
use super::offset_map::{decode_value, MapEntry};
use crate::client::admin::LATEST;
use crate::client::{Client, ClientError};
use crate::config::Config;

/// One translated partition of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    /// Source topic.
    pub src_topic: String,
    /// Partition.
    pub partition: i32,
    /// The group's committed offset on the source.
    pub committed: i64,
    /// Destination topic.
    pub dst_topic: String,
    /// The equivalent destination offset; `None` when neither the offset map
    /// nor the checkpoint can place it (the group is behind what the map still
    /// covers, or strait never replicated the partition).
    pub translated: Option<i64>,
    /// Records between the committed offset and the source's end.
    pub lag: i64,
}

/// Reads a whole offset map (`topic`) from the destination: runs per
/// (destination topic, partition), sorted by source offset.
pub async fn load_map(topic: &str, dst: &Client) -> Result<HashMap<(String, i32), Vec<MapEntry>>, ClientError> {
    let mut out: HashMap<(String, i32), Vec<MapEntry>> = HashMap::new();
    for r in super::log::read(dst, topic, 0).await?.records {
        let key = String::from_utf8_lossy(&r.key).to_string();
        let Some((t, part)) = key.rsplit_once(':') else {
            continue;
        };
        let Ok(part) = part.parse::<i32>() else { continue };
        match r.value.as_deref().and_then(decode_value) {
            // A reset: the runs before it map a topic deleted since.
            Some((_, runs)) if runs.is_empty() => {
                out.remove(&(t.to_string(), part));
            }
            Some((_, runs)) => out.entry((t.to_string(), part)).or_default().extend(runs),
            None => {}
        }
    }
    for runs in out.values_mut() {
        runs.sort_by_key(|r| r.src_base);
    }
    Ok(out)
}

/// Translates the committed offsets of `group` (optionally only `topic`).
pub async fn translate_group(
    cfg: &Config,
    src: &Client,
    dst: &Client,
    group: &str,
    topic: Option<&str>,
) -> Result<Vec<Translation>, ClientError> {
    Translator::load(cfg, dst).await?.group(cfg, src, group, topic).await
}

/// The offset map and checkpoint of one replication, read once for translating
/// any number of groups.
#[derive(Debug)]
pub struct Translator {
    map: HashMap<(String, i32), Vec<MapEntry>>,
    positions: HashMap<(String, i32), Position>,
}

impl Translator {
    /// Reads the offset map and the committed positions from the destination.
    pub async fn load(cfg: &Config, dst: &Client) -> Result<Self, ClientError> {
        Ok(Self {
            map: load_map(&cfg.offset_map_topic(), dst).await?,
            positions: committed_positions(dst, &cfg.checkpoint_group(), &[]).await?,
        })
    }

    /// Translates the committed offsets of `group` (optionally only `topic`).
    pub async fn group(
        &self,
        cfg: &Config,
        src: &Client,
        group: &str,
        topic: Option<&str>,
    ) -> Result<Vec<Translation>, ClientError> {
        let committed = src.fetch_offsets(group, &[]).await?;
        let mut out = Vec::new();
        for (t, p, o) in committed {
            if o < 0 || topic.is_some_and(|x| x != t) || !cfg.wants_topic(&t, false) {
                continue;
            }
            let dst_topic = cfg.destination_topic(&t);
            let end = src.list_offset(&t, p, LATEST, true).await.unwrap_or(o);
            let key = (dst_topic.clone(), p);
            let translated = translate_at(
                self.map.get(&key).map(Vec::as_slice),
                self.positions.get(&key).copied(),
                o,
            );
            out.push(Translation {
                src_topic: t,
                partition: p,
                committed: o,
                dst_topic,
                translated,
                lag: (end - o).max(0),
            });
        }
        out.sort_by(|a, b| (&a.src_topic, a.partition).cmp(&(&b.src_topic, b.partition)));
        Ok(out)
    }
}
