//! Diverged records: what the original source holds and the destination
//! never received, found by `strait failback` before it copies anything back.
//!
//! After an unplanned failover the source may hold records strait had not
//! replicated yet. The failover record ([`super::failover_record`]) says, per
//! partition, the last committed position (source offset `src_next`, landing
//! at destination offset `dst_next`) and the destination's log end. The
//! checkpoint trails what the destination acknowledged by up to one
//! checkpoint interval, so the destination may hold records past `dst_next`:
//! those `n` records are the next `n` data records of the source after
//! `src_next` (strait forwards every data record in order). Every source
//! record after them is diverged.
//!
//! Kafka clients cannot truncate a partition's tail (DeleteRecords only moves
//! the log start), so the diverged records are not removed from the source:
//! they are copied, raw, into `<destination topic>.diverged` on the
//! destination for an operator to reconcile, and failback then replicates the
//! destination's new records after them.

use std::collections::HashMap;
use std::time::Duration;

use regex::Regex;
use tracing::info;

use super::failover_record::{FailoverRecord, PartitionAtFailover};
use crate::client::admin::{EARLIEST, LATEST};
use crate::client::{Client, ClientError, GroupOffset, NewTopic};
use crate::config::{Config, Rename};

/// The diverged records of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diverged {
    /// Source topic (on the original source).
    pub src_topic: String,
    /// The topic on the destination they are copied into.
    pub diverged_topic: String,
    /// Partition.
    pub partition: i32,
    /// Records.
    pub count: u64,
    /// First and last source offset.
    pub offsets: (i64, i64),
    /// First and last record timestamp (ms since the epoch).
    pub timestamps: (i64, i64),
}

/// Calls `f(offset, timestamp)` for every data record of `topic`'s
/// `partition` in `[from, to)` ([`super::log::scan`]).
async fn scan(
    client: &Client,
    topic: &str,
    partition: i32,
    from: i64,
    to: i64,
    mut f: impl FnMut(i64, i64),
) -> Result<(), ClientError> {
    super::log::scan(client, topic, partition, from, to, |r| {
        if r.offset < to {
            f(r.offset, r.timestamp)
        }
    })
    .await?;
    Ok(())
}

/// Where `<destination topic>.diverged` lands for flow `cfg`: the flow's
/// rename with `.diverged` after it.
fn diverged_rename(cfg: &Config) -> Rename {
    Rename::Template(match &cfg.topics.rename {
        Rename::Prefix => "{source}.{topic}.diverged".to_string(),
        Rename::Template(t) => format!("{t}.diverged"),
        _ => "{topic}.diverged".to_string(),
    })
}

/// One partition's diverged records (none: the destination has them all).
async fn partition(
    src: &Client,
    dst: &Client,
    p: &PartitionAtFailover,
    diverged_topic: String,
) -> Result<Option<Diverged>, ClientError> {
    // No committed position (a crash before the first checkpoint): every
    // record of the destination partition came from the source's first ones.
    let (src_next, dst_next) = if p.src_next < 0 {
        (
            src.list_offset(&p.src_topic, p.partition, EARLIEST, false).await?,
            dst.list_offset(&p.dst_topic, p.partition, EARLIEST, false).await?,
        )
    } else {
        (p.src_next, p.dst_next)
    };
    // Records the destination holds past the checkpoint came from the source
    // records right after it.
    let mut past_checkpoint = 0u64;
    if dst_next >= 0 && p.dst_end > dst_next {
        scan(dst, &p.dst_topic, p.partition, dst_next, p.dst_end, |_, _| {
            past_checkpoint += 1
        })
        .await?;
    }
    let end = src.list_offset(&p.src_topic, p.partition, LATEST, true).await?;
    tracing::debug!(
        topic = %p.src_topic, partition = p.partition, src_next, dst_next,
        dst_end = p.dst_end, past_checkpoint, source_end = end, "looking for diverged records"
    );
    let mut out = Diverged {
        src_topic: p.src_topic.clone(),
        diverged_topic,
        partition: p.partition,
        count: 0,
        offsets: (-1, -1),
        timestamps: (-1, -1),
    };
    let mut skip = past_checkpoint;
    scan(src, &p.src_topic, p.partition, src_next, end, |o, ts| {
        if skip > 0 {
            skip -= 1;
            return;
        }
        if out.count == 0 {
            out.offsets.0 = o;
            out.timestamps.0 = ts;
        }
        out.count += 1;
        out.offsets.1 = o;
        out.timestamps.0 = out.timestamps.0.min(ts);
        out.timestamps.1 = out.timestamps.1.max(ts);
    })
    .await?;
    Ok((out.count > 0).then_some(out))
}

/// Every partition's diverged records, per the failover record.
pub async fn find(
    cfg: &Config,
    src: &Client,
    dst: &Client,
    record: &FailoverRecord,
) -> Result<Vec<Diverged>, ClientError> {
    let rename = diverged_rename(cfg);
    let mut out = Vec::new();
    for p in &record.partitions {
        let name = rename.apply(&cfg.source.alias, &p.src_topic);
        if let Some(d) = partition(src, dst, p, name).await? {
            out.push(d);
        }
    }
    Ok(out)
}

/// Copies `diverged` raw from the source into their `.diverged` topics on the
/// destination, with the replication engine (a flow `<name>-diverged`
/// started at each partition's first diverged offset), until it has caught
/// up. Returns the records copied.
pub async fn copy(cfg: &Config, src: &Client, dst: &Client, diverged: &[Diverged]) -> Result<u64, super::EngineError> {
    if diverged.is_empty() {
        return Ok(0);
    }
    let dst_err = super::dst_err(cfg);
    let mut c = cfg.clone();
    c.name = format!("{}-diverged", cfg.name);
    let mut topics: Vec<&str> = diverged.iter().map(|d| d.src_topic.as_str()).collect();
    topics.sort_unstable();
    topics.dedup();
    c.topics.topics = topics
        .iter()
        .map(|t| Regex::new(&format!("^{}$", regex::escape(t))).expect("escaped regex is valid"))
        .collect();
    c.topics.topics_exclude = Vec::new();
    c.topics.rename = diverged_rename(cfg);
    c.topics.sync_acls = false;
    c.heartbeats = None;
    c.topics.heartbeats_topic = None;
    c.groups.groups = Vec::new();
    c.ops.metrics_address = None;
    c.set_exactly_once(None);
    // The topics first (an offset commit names existing partitions), then each
    // partition's start as the flow's committed position.
    let smd = src
        .refresh_metadata(Some(&topics.iter().map(|t| t.to_string()).collect::<Vec<_>>()))
        .await
        .map_err(super::src_err(cfg))?;
    let mut news = Vec::new();
    for d in diverged {
        if news.iter().any(|n: &NewTopic| n.name == d.diverged_topic) {
            continue;
        }
        let parts = smd.topics.get(&d.src_topic).map_or(1, |t| t.partitions.len() as i32);
        news.push(NewTopic {
            name: d.diverged_topic.clone(),
            partitions: parts,
            replication_factor: cfg.topics.replication_factor,
            configs: vec![("compression.type".into(), "producer".into())],
        });
    }
    dst.create_topics(&news, 60_000, true).await.map_err(&dst_err)?;
    let names: Vec<String> = news.iter().map(|n| n.name.clone()).collect();
    dst.wait_for_partitions(&names, None, 30_000).await.map_err(&dst_err)?;
    let mut starts: Vec<GroupOffset> = diverged
        .iter()
        .map(|d| GroupOffset::new(d.diverged_topic.clone(), d.partition, d.offsets.0))
        .collect();
    // The flow copies whole topics: a partition without diverged records
    // starts at the source's end (one ListOffsets per topic), or it would be
    // copied from its beginning.
    for n in &news {
        let Some(d) = diverged.iter().find(|d| d.diverged_topic == n.name) else {
            continue;
        };
        let quiet: Vec<i32> = (0..n.partitions)
            .filter(|p| !diverged.iter().any(|x| x.diverged_topic == n.name && x.partition == *p))
            .collect();
        if quiet.is_empty() {
            continue;
        }
        let ends = src
            .list_offsets(&d.src_topic, &quiet, LATEST, true)
            .await
            .map_err(super::src_err(cfg))?;
        starts.extend(
            ends.into_iter()
                .map(|(p, end)| GroupOffset::new(n.name.clone(), p, end)),
        );
    }
    dst.commit_group_offsets(&c.checkpoint_group(), &starts)
        .await
        .map_err(&dst_err)?;
    let want: HashMap<(String, i32), i64> = diverged
        .iter()
        .map(|d| ((d.src_topic.clone(), d.partition), d.offsets.1 + 1))
        .collect();
    let (h_tx, h_rx) = tokio::sync::oneshot::channel::<super::Handle>();
    let copied = async move {
        let Ok(h) = h_rx.await else { return };
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let lags = h.fetchers.lags();
            let done = want.iter().all(|((t, p), end)| {
                lags.iter()
                    .any(|l| &*l.topic == t.as_str() && l.partition == *p && l.next_offset >= *end)
            });
            if done && h.pending() == 0 {
                return;
            }
        }
    };
    let summary = super::run(c, copied, None, move |h| {
        let _ = h_tx.send(h);
    })
    .await?;
    info!(records = summary.records, "diverged records copied to the destination");
    Ok(summary.records)
}
