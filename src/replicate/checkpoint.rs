//! Progress: source positions and the offset map, stored in the destination cluster.
//!
//! A partition's position is the next source offset after the last batch the
//! destination acknowledged (acks=all), with every earlier batch acknowledged
//! too ([`super::producer`] advances it only over acknowledged entries). It is
//! committed as the offset of the destination partition in the consumer group
//! `strait-{name}` on the destination, so a failover site has it without the
//! source. The offset-map records for the same batches are written first.
//!
//! Each committed position carries, in the commit's metadata string
//! (`strait:dst=<offset>`), the destination offset right after the last record
//! written for the source offsets before it. That pair translates a consumer
//! offset at or past the last replicated record even where the offset map has
//! no run (an empty or idle partition, records expired before they were
//! copied, map records aged out). An idle replication re-commits its positions
//! every [`keepalive`] period, so the checkpoint age measures the last successful
//! round trip to the destination and the group's offsets never expire.
//!
//! The metadata also names the topic ids of the source and destination topic
//! the position belongs to (`,src=<uuid>,dst_id=<uuid>`): a topic deleted and
//! created again under the same name has a new id, and a position of the old
//! topic must not be resumed in the new one ([`super::owner`] resets it).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tracing::debug;
use uuid::Uuid;

use super::metrics::Metrics;
use super::offset_map::{encode_value, merge, MapEntry};
use super::producer::{Producer, Route};
use crate::client::{Client, ClientError, GroupMember, GroupOffset, NewTopic, TxnId};
use crate::config::Config;
use crate::sync::lock;

/// An idle replication re-commits its positions at least this often: the
/// commit is the proof that the destination answers (readiness, checkpoint
/// age), and it keeps the checkpoint group's offsets from expiring
/// (`offsets.retention.minutes`).
pub const KEEPALIVE: Duration = Duration::from_secs(5);

/// Where and how a flow's checkpoints are written.
#[derive(Debug, Clone)]
pub struct CheckpointTarget {
    /// The consumer group on the destination holding the positions.
    pub group: String,
    /// The offset-map topic on the destination.
    pub map_topic: String,
    /// Replication factor of the offset-map topic when strait creates it.
    pub replication_factor: i16,
    /// How often an idle replication re-commits its positions: [`KEEPALIVE`],
    /// or a third of the readiness timeout when that is shorter, so an idle,
    /// healthy replication stays ready.
    pub keepalive: Duration,
    /// Exactly-once: how long a transaction's position commit may wait for a
    /// rebalance to give this member its next generation.
    pub txn_wait: Duration,
}

impl CheckpointTarget {
    /// The checkpoint target of flow `cfg`.
    pub fn of(cfg: &Config) -> Self {
        Self {
            group: cfg.checkpoint_group(),
            map_topic: cfg.offset_map_topic(),
            replication_factor: cfg.topics.replication_factor,
            keepalive: KEEPALIVE.min(cfg.ops.readiness_timeout / 3),
            txn_wait: cfg.exactly_once.as_ref().map_or(Duration::from_secs(30), |e| {
                Duration::from_millis(e.transaction_timeout_ms as u64 * 3 / 4).saturating_sub(e.transaction_interval)
            }),
        }
    }
}

/// A committed position: the next source offset, and the destination offset
/// where the record at that source offset will land (-1: unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Next source offset.
    pub src_next: i64,
    /// Destination offset right after the last record written before `src_next`.
    pub dst_next: i64,
    /// The topics the position belongs to (none: committed by a version that
    /// did not record them).
    pub ids: Option<TopicIds>,
}

/// The ids of a mirrored topic on both sides: a topic deleted and created
/// again under the same name gets a new id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TopicIds {
    /// Source topic id.
    pub src: Uuid,
    /// Destination topic id.
    pub dst: Uuid,
}

/// The metadata string committed with a position.
fn encode_meta(dst_next: i64, ids: Option<TopicIds>) -> String {
    let mut out = if dst_next >= 0 {
        format!("strait:dst={dst_next}")
    } else {
        "strait:dst=-1".to_string()
    };
    match ids {
        Some(i) => {
            use std::fmt::Write;
            let _ = write!(out, ",src={},dst_id={}", i.src, i.dst);
        }
        None if dst_next < 0 => out.clear(),
        None => {}
    }
    out
}

/// The destination offset (-1: none) and topic ids of a committed position's metadata.
fn decode_meta(meta: &str) -> (i64, Option<TopicIds>) {
    let Some(rest) = meta.strip_prefix("strait:dst=") else {
        return (-1, None);
    };
    let mut fields = rest.split(',');
    let dst_next = fields
        .next()
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|v| *v >= 0)
        .unwrap_or(-1);
    let (mut src, mut dst) = (None, None);
    for f in fields {
        match f.split_once('=') {
            Some(("src", v)) => src = Uuid::parse_str(v).ok(),
            Some(("dst_id", v)) => dst = Uuid::parse_str(v).ok(),
            _ => {}
        }
    }
    (dst_next, src.zip(dst).map(|(src, dst)| TopicIds { src, dst }))
}

/// Translates source offset `offset` with one partition's map runs and its
/// committed position: exact through the runs; an offset at or past the last
/// replicated record maps to the destination position right after it (the
/// consumer may re-read records replicated later, never skip one).
pub fn translate_at(runs: Option<&[MapEntry]>, position: Option<Position>, offset: i64) -> Option<i64> {
    if let Some(d) = runs.and_then(|r| super::offset_map::translate(r, offset)) {
        return Some(d);
    }
    // No run: only the checkpoint knows where the destination stands.
    position
        .filter(|p| p.dst_next >= 0 && offset >= p.src_next)
        .map(|p| p.dst_next)
}

/// Reads the committed positions of `group` on `dst` for the given topics' partitions
/// (all of the group's partitions when `topics` is empty).
pub async fn committed_positions(
    dst: &Client,
    group: &str,
    topics: &[(String, Vec<i32>)],
) -> Result<HashMap<(String, i32), Position>, ClientError> {
    Ok(dst
        .fetch_group_offsets(group, topics)
        .await?
        .into_iter()
        .filter(|o| o.offset >= 0)
        .map(|o| {
            let (dst_next, ids) = decode_meta(&o.metadata);
            (
                (o.topic, o.partition),
                Position {
                    src_next: o.offset,
                    dst_next,
                    ids,
                },
            )
        })
        .collect())
}

/// Commit entries of positions, each with its destination offset as metadata.
fn offsets(positions: &[(Arc<str>, i32, Position)]) -> Vec<GroupOffset> {
    positions
        .iter()
        .map(|(t, p, pos)| GroupOffset {
            topic: t.to_string(),
            partition: *p,
            offset: pos.src_next,
            metadata: encode_meta(pos.dst_next, pos.ids),
        })
        .collect()
}

/// Writes checkpoints for one replication.
#[derive(Debug)]
pub struct Checkpointer {
    dst: Arc<Client>,
    target: CheckpointTarget,
    producer: Arc<Producer>,
    metrics: Arc<Metrics>,
    /// Last committed position per destination partition.
    committed: Mutex<HashMap<(Arc<str>, i32), Position>>,
    /// The offset map written so far (loaded at start, extended by every
    /// checkpoint): (destination topic, partition) → runs sorted by source offset.
    index: Mutex<HashMap<(String, i32), Vec<MapEntry>>>,
    /// Where the next read of the offset-map topic starts (records the other
    /// members of the replication group wrote).
    map_next: Mutex<i64>,
    /// The replication group membership commits go under (none: commits
    /// with generation -1, for a group nobody joined).
    member: Option<Arc<RwLock<Option<GroupMember>>>>,
    /// Exactly-once: this member was expelled from its group with a
    /// transaction open; that transaction must never commit.
    poisoned: std::sync::atomic::AtomicBool,
    /// Topic ids of each destination topic replicated here, committed with its positions.
    ids: Mutex<HashMap<Arc<str>, TopicIds>>,
}

/// Why a checkpoint was not committed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Credentials {
    /// Commit as this member.
    Member(GroupMember),
    /// No group membership: a plain commit.
    Plain,
    /// A member between generations: nothing may be committed now.
    NotNow,
}

impl Checkpointer {
    /// A checkpointer over `producer`'s positions.
    pub fn new(dst: Arc<Client>, target: CheckpointTarget, producer: Arc<Producer>, metrics: Arc<Metrics>) -> Self {
        Self {
            dst,
            target,
            producer,
            metrics,
            committed: Mutex::new(HashMap::new()),
            index: Mutex::new(HashMap::new()),
            map_next: Mutex::new(0),
            member: None,
            poisoned: std::sync::atomic::AtomicBool::new(false),
            ids: Mutex::new(HashMap::new()),
        }
    }

    /// Exactly-once: the member was expelled with a transaction open (another
    /// member may replicate its partitions already): the transaction may not
    /// commit, the flow stops and a restart resumes from the last commit.
    pub fn poison(&self) {
        self.poisoned.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Commits go under the member id and generation `member` holds (none
    /// while between generations: nothing is committed then).
    pub fn with_member(mut self, member: Arc<RwLock<Option<GroupMember>>>) -> Self {
        self.member = Some(member);
        self
    }

    fn credentials(&self) -> Credentials {
        match &self.member {
            None => Credentials::Plain,
            Some(cell) => match cell.read().unwrap_or_else(|e| e.into_inner()).clone() {
                Some(m) => Credentials::Member(m),
                None => Credentials::NotNow,
            },
        }
    }

    /// Records the topic ids of destination topic `dst_topic`; its positions
    /// are committed with them.
    pub fn set_ids(&self, dst_topic: Arc<str>, ids: TopicIds) {
        lock(&self.ids).insert(dst_topic, ids);
    }

    /// The topic ids destination topic `dst_topic`'s partitions were started with.
    pub fn ids_of(&self, dst_topic: &str) -> Option<TopicIds> {
        lock(&self.ids).get(dst_topic).copied()
    }

    /// Starts partitions over after their source or destination topic was
    /// created again: writes an empty offset-map record for each (readers drop
    /// the runs before it: they map offsets of the old topic), forgets their
    /// runs here, and commits `positions` at once, so neither a restart nor
    /// another member resumes the old topic's position.
    pub async fn reset(&self, positions: &[(Route, Position)]) -> Result<(), ClientError> {
        if positions.is_empty() {
            return Ok(());
        }
        let voids: Vec<(Route, Vec<MapEntry>)> = positions.iter().map(|(r, _)| (r.clone(), Vec::new())).collect();
        self.write_map(&voids, None).await?;
        {
            let mut index = lock(&self.index);
            for (r, _) in positions {
                index.remove(&(r.dst_topic.to_string(), r.partition));
            }
        }
        let moved: Vec<(Arc<str>, i32, Position)> = positions
            .iter()
            .map(|(r, pos)| (r.dst_topic.clone(), r.partition, *pos))
            .collect();
        match self.credentials() {
            Credentials::Member(m) => {
                self.dst
                    .commit_group_offsets_as(&self.target.group, &offsets(&moved), &m)
                    .await?
            }
            _ => {
                self.dst
                    .commit_group_offsets(&self.target.group, &offsets(&moved))
                    .await?
            }
        }
        self.committed_now(&moved);
        Ok(())
    }

    /// Forgets the positions of partitions this process stopped replicating.
    pub fn forget(&self, dst_partitions: &[(Arc<str>, i32)]) {
        let mut committed = lock(&self.committed);
        for k in dst_partitions {
            committed.remove(k);
        }
    }

    /// Reads what the other members of the replication group committed since
    /// the last call: their positions, and the offset-map records they
    /// wrote (for group offset sync, which only the leader runs).
    pub async fn catch_up(&self) -> Result<(), ClientError> {
        let from = *lock(&self.map_next);
        let read = super::log::read(&self.dst, &self.target.map_topic, from).await?;
        {
            let mut index = lock(&self.index);
            for r in &read.records {
                let key = String::from_utf8_lossy(&r.key).to_string();
                let Some((t, part)) = key.rsplit_once(':') else {
                    continue;
                };
                let Ok(part) = part.parse::<i32>() else { continue };
                let Some((_, runs)) = r.value.as_deref().and_then(super::offset_map::decode_value) else {
                    continue;
                };
                if runs.is_empty() {
                    // A reset: the runs before it map a topic that is gone.
                    index.remove(&(t.to_string(), part));
                    continue;
                }
                let e = index.entry((t.to_string(), part)).or_default();
                for run in runs {
                    // This process's own records are in the index already.
                    if !e
                        .iter()
                        .any(|x| x.src_base <= run.src_base && run.src_base <= x.src_last)
                    {
                        e.push(run);
                    }
                }
                e.sort_by_key(|r| r.src_base);
            }
        }
        *lock(&self.map_next) = read.next;
        let mine: std::collections::HashSet<(Arc<str>, i32)> = self
            .producer
            .positions()
            .into_iter()
            .map(|p| (p.route.dst_topic, p.route.partition))
            .collect();
        let theirs = committed_positions(&self.dst, &self.target.group, &[]).await?;
        let mut committed = lock(&self.committed);
        for ((t, p), pos) in theirs {
            let k = (Arc::from(t.as_str()), p);
            if !mine.contains(&k) {
                committed.insert(k, pos);
            }
        }
        Ok(())
    }

    /// Loads the offset map already in the destination (for group offset sync).
    pub async fn load_index(&self) -> Result<(), ClientError> {
        let end = self
            .dst
            .retrying(|| {
                self.dst
                    .list_offset(&self.target.map_topic, 0, crate::client::admin::LATEST, true)
            })
            .await?;
        let map = super::translate::load_map(&self.target.map_topic, &self.dst).await?;
        *lock(&self.map_next) = end;
        let mut index = lock(&self.index);
        for (k, runs) in map {
            let e = index.entry(k).or_default();
            e.extend(runs);
            e.sort_by_key(|r| r.src_base);
        }
        Ok(())
    }

    /// The destination offset of the first record at or after source `offset`
    /// of destination topic `dst_topic`'s partition ([`translate_at`] over the
    /// offset map and the last committed position), for group offset sync.
    /// `None` until the committed position has reached `offset`: a live sync
    /// writes only exact offsets, never one the consumer would re-read from.
    /// The first source offset of `dst_topic`'s `partition` in the offset map
    /// (since its last reset): where strait's copy of the partition begins.
    pub fn first_mapped(&self, dst_topic: &str, partition: i32) -> Option<i64> {
        lock(&self.index)
            .get(&(dst_topic.to_string(), partition))
            .and_then(|runs| runs.first())
            .map(|r| r.src_base)
    }

    /// Where strait's own copy of a partition begins (the source offset): the
    /// first one in its offset map or, while it has copied nothing there, its
    /// committed position (a takeover of a partition MirrorMaker 2 had copied
    /// and committed to its end). `None` before either exists.
    pub fn copy_begins(&self, dst_topic: &str, partition: i32) -> Option<i64> {
        self.first_mapped(dst_topic, partition).or_else(|| {
            lock(&self.committed)
                .get(&(Arc::from(dst_topic), partition))
                .map(|p| p.src_next)
        })
    }

    pub fn translate(&self, dst_topic: &str, partition: i32, offset: i64) -> Option<i64> {
        let position = lock(&self.committed).get(&(Arc::from(dst_topic), partition)).copied()?;
        if offset > position.src_next {
            return None; // not replicated that far yet
        }
        let index = lock(&self.index);
        translate_at(
            index.get(&(dst_topic.to_string(), partition)).map(Vec::as_slice),
            Some(position),
            offset,
        )
    }

    /// Two-way replication with identity names, asked of the flow coming back
    /// (this one copies the other cluster's records into the cluster where a
    /// group consumed up to `consumed_below` of `topic`'s `partition`): the
    /// first record produced on this flow's source that the group has not
    /// consumed yet, as a source offset. That is the first of its records
    /// whose copy lands at or after `consumed_below`, or, when every copied
    /// record lies below it, the first record not copied yet (this flow's
    /// committed position). `None` until this flow committed a position there.
    pub fn first_unconsumed(&self, topic: &str, partition: i32, consumed_below: i64) -> Option<i64> {
        let position = lock(&self.committed).get(&(Arc::from(topic), partition)).copied()?;
        let index = lock(&self.index);
        let runs = index.get(&(topic.to_string(), partition));
        for r in runs.into_iter().flatten() {
            let end = r.dst_base + r.dst_count as i64;
            if end <= consumed_below {
                continue;
            }
            let i = (consumed_below - r.dst_base).max(0);
            return Some(match &r.deltas {
                None => r.src_base + i,
                Some(d) => r.src_base + d.get(i as usize).copied().unwrap_or(0) as i64,
            });
        }
        Some(position.src_next)
    }

    /// Creates the offset-map topic if it does not exist.
    pub async fn ensure_map_topic(&self) -> Result<(), ClientError> {
        self.dst
            .create_topics(
                &[NewTopic {
                    name: self.target.map_topic.clone(),
                    partitions: 1,
                    replication_factor: self.target.replication_factor,
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

    /// Committed positions of `partitions` of destination topic `dst_topic`
    /// (absent: none committed yet).
    pub async fn load(&self, dst_topic: &str, partitions: &[i32]) -> Result<HashMap<i32, Position>, ClientError> {
        let got = committed_positions(
            &self.dst,
            &self.target.group,
            &[(dst_topic.to_string(), partitions.to_vec())],
        )
        .await?;
        let mut out = HashMap::new();
        let mut committed = lock(&self.committed);
        for ((t, p), pos) in got {
            if t == dst_topic {
                out.insert(p, pos);
                committed.insert((Arc::from(t.as_str()), p), pos);
            }
        }
        Ok(out)
    }

    /// Writes offset-map records and commits every position that moved. Returns
    /// the number of partitions committed.
    pub async fn checkpoint(&self) -> Result<usize, ClientError> {
        let credentials = self.credentials();
        if credentials == Credentials::NotNow {
            return Ok(0);
        }
        let entries = self.producer.take_map_entries();
        if !entries.is_empty() {
            if let Err(e) = self.write_map(&entries, None).await {
                self.producer.restore_map_entries(entries);
                return Err(e);
            }
            self.extend_index(&entries);
        }
        let moved = self.due();
        if moved.is_empty() {
            if self.idle_probe_due() {
                // Nothing to commit at all (no partitions yet): the round trip
                // still proves the destination answers.
                self.dst.refresh_metadata(Some(&[])).await?;
                self.touch();
            }
            return Ok(0);
        }
        match &credentials {
            Credentials::Member(m) => {
                self.dst
                    .commit_group_offsets_as(&self.target.group, &offsets(&moved), m)
                    .await?
            }
            _ => {
                self.dst
                    .commit_group_offsets(&self.target.group, &offsets(&moved))
                    .await?
            }
        }
        self.committed_now(&moved);
        debug!(partitions = moved.len(), "checkpoint committed");
        Ok(moved.len())
    }

    /// Exactly-once: writes the offset map and the positions of every batch the
    /// open transaction holds into that transaction, then commits it. `added`: the
    /// transaction already holds partitions (else there may be nothing to commit).
    /// `map_seq` is the transactional producer's next sequence on the map partition.
    pub async fn commit_txn(&self, txn: &TxnId, map_seq: &mut i32, added: bool) -> Result<usize, ClientError> {
        let credentials = self.credentials();
        let entries = self.producer.take_map_entries();
        let mut moved = self.due();
        if let Credentials::Member(_) = credentials {
            // Every transaction carries the member's positions, so the
            // coordinator checks its generation before the data can commit: an
            // expelled member's transaction fails here instead of committing
            // batches the new owner of those partitions writes again.
            if added && moved.is_empty() {
                moved = self.current();
            }
        }
        if self.poisoned.load(std::sync::atomic::Ordering::SeqCst) && (added || !entries.is_empty()) {
            self.producer.restore_map_entries(entries);
            return Err(ClientError::kafka(
                "TxnOffsetCommit",
                "coordinator",
                format!("group {}", self.target.group),
                crate::client::group::codes::UNKNOWN_MEMBER_ID,
                Some("expelled from the replication group with this transaction open: it cannot commit (a restart resumes from the last committed transaction)"),
            ));
        }
        if !added && entries.is_empty() && moved.is_empty() {
            if self.idle_probe_due() {
                self.dst.refresh_metadata(Some(&[])).await?;
                self.touch();
            }
            return Ok(0);
        }
        let result = async {
            if !entries.is_empty() {
                let map = BTreeMap::from([(self.target.map_topic.clone(), vec![0])]);
                self.dst.add_partitions_to_txn(txn, &map).await?;
                let records = self.write_map(&entries, Some((txn, *map_seq))).await?;
                *map_seq = map_seq.wrapping_add(records) & i32::MAX;
            }
            if !moved.is_empty() {
                let group = self.target.group.clone();
                self.dst.add_offsets_to_txn(txn, &group).await?;
                self.txn_offset_commit_as_member(txn, &group, &offsets(&moved)).await?;
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

    /// TxnOffsetCommit under this member's current generation. Across a
    /// rebalance (the coordinator moved to a generation whose credentials this
    /// member has not received yet) it waits for them, up to `txn_wait`; an
    /// expelled member's transaction fails (poisoned, or UNKNOWN_MEMBER_ID).
    async fn txn_offset_commit_as_member(
        &self,
        txn: &TxnId,
        group: &str,
        offsets: &[GroupOffset],
    ) -> Result<(), ClientError> {
        use crate::client::group::codes::{ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID};
        let deadline = tokio::time::Instant::now() + self.target.txn_wait;
        loop {
            let expired = tokio::time::Instant::now() >= deadline;
            if self.poisoned.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(ClientError::kafka(
                    "TxnOffsetCommit",
                    "coordinator",
                    format!("group {group}"),
                    UNKNOWN_MEMBER_ID,
                    Some("expelled from the replication group with this transaction open: it cannot commit (a restart resumes from the last committed transaction)"),
                ));
            }
            let member = match self.credentials() {
                Credentials::Member(m) => Some(m),
                Credentials::Plain => None,
                Credentials::NotNow if !expired => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Credentials::NotNow => {
                    return Err(ClientError::kafka(
                        "TxnOffsetCommit",
                        "coordinator",
                        format!("group {group}"),
                        REBALANCE_IN_PROGRESS,
                        Some("no generation of the replication group to commit under"),
                    ))
                }
            };
            match self.dst.txn_offset_commit(txn, group, offsets, member.as_ref()).await {
                Err(e) if !expired && matches!(e.code(), Some(ILLEGAL_GENERATION | REBALANCE_IN_PROGRESS)) => {
                    debug!(error = %e, "transactional position commit waits for the next generation");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                r => return r,
            }
        }
    }

    fn extend_index(&self, entries: &[(Route, Vec<MapEntry>)]) {
        let mut index = lock(&self.index);
        for (route, runs) in entries {
            let e = index.entry((route.dst_topic.to_string(), route.partition)).or_default();
            e.extend(merge(runs.clone()));
            e.sort_by_key(|r| r.src_base);
            let merged = merge(std::mem::take(e));
            *e = merged;
        }
    }

    fn committed_now(&self, moved: &[(Arc<str>, i32, Position)]) {
        let mut committed = lock(&self.committed);
        for (t, p, pos) in moved {
            committed.insert((t.clone(), *p), *pos);
        }
        drop(committed);
        Metrics::add(&self.metrics.checkpoints, 1);
        self.touch();
    }

    /// Every partition's acknowledged position.
    fn current(&self) -> Vec<(Arc<str>, i32, Position)> {
        let ids = lock(&self.ids).clone();
        self.producer
            .positions()
            .into_iter()
            .filter(|p| p.acked_next >= 0)
            .map(|p| {
                let pos = Position {
                    src_next: p.acked_next,
                    dst_next: p.dst_next,
                    ids: ids.get(&p.route.dst_topic).copied(),
                };
                (p.route.dst_topic, p.route.partition, pos)
            })
            .collect()
    }

    /// The last committed position of a destination partition.
    pub fn committed(&self, dst_topic: &Arc<str>, partition: i32) -> Option<Position> {
        lock(&self.committed).get(&(dst_topic.clone(), partition)).copied()
    }

    /// Positions to commit now: those that moved since their last commit; when
    /// none moved, every position once the last commit is a [`keepalive`] period old.
    fn due(&self) -> Vec<(Arc<str>, i32, Position)> {
        let current = self.current();
        let committed = lock(&self.committed);
        let moved: Vec<_> = current
            .iter()
            .filter(|(t, p, pos)| committed.get(&(t.clone(), *p)) != Some(pos))
            .cloned()
            .collect();
        if !moved.is_empty() || !self.idle_probe_due() {
            return moved;
        }
        current
    }

    /// True when the last successful round trip to the destination is one
    /// [`keepalive`] period old.
    fn idle_probe_due(&self) -> bool {
        let period = self.target.keepalive.as_millis() as u64;
        Metrics::age_ms(&self.metrics.last_checkpoint_ms).is_none_or(|age| age >= period)
    }

    fn touch(&self) {
        Metrics::stamp_now(&self.metrics.last_checkpoint_ms);
    }

    /// Produces one offset-map batch; transactional when `txn` is given (then with
    /// that producer's stamp and the given sequence). Returns the number of records.
    async fn write_map(
        &self,
        entries: &[(Route, Vec<MapEntry>)],
        txn: Option<(&TxnId, i32)>,
    ) -> Result<i32, ClientError> {
        let records: Vec<(Bytes, Bytes)> = entries
            .iter()
            .map(|(route, runs)| {
                (
                    Bytes::from(format!("{}:{}", route.dst_topic, route.partition)),
                    Bytes::from(encode_value(&route.src_topic, &merge(runs.clone()))),
                )
            })
            .collect();
        super::log::append(&self.dst, &self.target.map_topic, &records, txn).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_through_commit_metadata() {
        assert_eq!(decode_meta(&encode_meta(1234, None)), (1234, None));
        assert_eq!(encode_meta(-1, None), "");
        assert_eq!(decode_meta(""), (-1, None));
        assert_eq!(decode_meta("written by someone else"), (-1, None));
        let ids = TopicIds {
            src: Uuid::from_u128(0x1234_5678),
            dst: Uuid::from_u128(0x9abc_def0),
        };
        assert_eq!(decode_meta(&encode_meta(77, Some(ids))), (77, Some(ids)));
        assert_eq!(decode_meta(&encode_meta(-1, Some(ids))), (-1, Some(ids)));
        // Written by the version before topic ids: the offset still reads.
        assert_eq!(decode_meta("strait:dst=5"), (5, None));
        // A damaged id is no id (never a wrong one).
        assert_eq!(decode_meta("strait:dst=5,src=zz,dst_id=zz").1, None);
    }

    #[test]
    fn caught_up_and_unmapped_offsets_translate_from_the_checkpoint() {
        let runs = vec![MapEntry {
            src_base: 0,
            src_last: 99,
            dst_base: 500,
            dst_count: 100,
            deltas: None,
        }];
        let pos = Some(Position {
            src_next: 101, // a transaction marker at 100
            dst_next: 600,
            ids: None,
        });
        assert_eq!(translate_at(Some(&runs), pos, 40), Some(540), "exact through the map");
        assert_eq!(translate_at(Some(&runs), pos, 101), Some(600), "drained group");
        // No run at all (empty partition, expired records, map aged out).
        assert_eq!(translate_at(None, pos, 101), Some(600));
        assert_eq!(
            translate_at(None, pos, 150),
            Some(600),
            "ahead of replication: may repeat"
        );
        assert_eq!(translate_at(None, pos, 50), None, "behind, with no map: unknown");
        assert_eq!(translate_at(None, None, 0), None);
        let unknown = Some(Position {
            src_next: 0,
            dst_next: -1,
            ids: None,
        });
        assert_eq!(translate_at(None, unknown, 0), None);
    }
}
