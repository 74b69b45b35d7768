//! What one member of a replication group replicates: the source partitions
//! its group's leader assigned it ([`super::membership`]), started from their
//! committed positions once their destination topics are ready, and handed
//! over cleanly when the leader moves them (fetching stops, in-flight produces
//! finish, the positions are committed, then the partitions are dropped).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::assign::Tp;
use super::checkpoint::{Checkpointer, Position, TopicIds};
use super::fetcher::Fetchers;
use super::membership::Owner;
use super::metrics::Metrics;
use super::producer::{Producer, Route};
use super::topics::MirroredTopic;
use crate::client::admin::{EARLIEST, LATEST};
use crate::client::{Client, ClientError};
use crate::config::{Config, StartFrom};
use crate::sync::lock;

/// One flow's partitions on this member.
#[derive(Debug)]
pub struct FlowOwner {
    cfg: Arc<Config>,
    src: Arc<Client>,
    dst: Arc<Client>,
    ckpt: Arc<Checkpointer>,
    producer: Arc<Producer>,
    fetchers: Arc<Fetchers>,
    /// The flow's topics whose destinations are ready, by source name (the last refresh).
    topics: Mutex<BTreeMap<Arc<str>, MirroredTopic>>,
    /// What the leader assigned this member.
    assigned: Mutex<BTreeSet<Tp>>,
    /// One start or handover at a time.
    busy: tokio::sync::Mutex<()>,
    /// Asks the flow's topic refresh to run now.
    refresh: Arc<tokio::sync::Notify>,
    /// Partitions held since this member lost its group: kept if the next
    /// generation gives them back and nobody committed them meanwhile.
    suspended: Mutex<BTreeSet<Tp>>,
    /// The topic ids last seen of each source topic (kept while a topic is
    /// missing, so one that comes back under a new id is noticed).
    ids: Mutex<HashMap<Arc<str>, TopicIds>>,
    /// Topics created again under strait, to start over (under `busy`).
    recreated: Mutex<BTreeMap<Arc<str>, Recreated>>,
    /// `start_from = "mm2"`: MirrorMaker 2's next offset per source partition.
    mm2: Option<Arc<super::mm2::Positions>>,
}

/// Which side of a mirrored topic was deleted and created again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recreated {
    /// The source topic (its old records are gone; the new topic starts at its log start).
    Source,
    /// The destination topic (what strait had written there is gone).
    Destination,
    /// Both.
    Both,
}

impl Recreated {
    /// What changed between the ids `old` and `new` (none: the same topics).
    /// A nil id (unknown: an old broker) never counts as a change.
    pub fn between(old: TopicIds, new: TopicIds) -> Option<Self> {
        use super::topics::created_again;
        match (created_again(old.src, new.src), created_again(old.dst, new.dst)) {
            (true, true) => Some(Self::Both),
            (true, false) => Some(Self::Source),
            (false, true) => Some(Self::Destination),
            (false, false) => None,
        }
    }

    fn says(self) -> &'static str {
        match self {
            Self::Source => "the source topic was deleted and created again (new topic id): replicating the new topic from its log start",
            Self::Destination => "the destination topic was deleted or created again (new topic id) under strait: what it held is gone; replicating again everything the source still holds",
            Self::Both => "the source and destination topics were both created again (new topic ids): replicating the new source topic from its log start",
        }
    }
}

impl FlowOwner {
    /// The owner of one flow's partitions.
    pub fn new(
        cfg: Arc<Config>,
        src: Arc<Client>,
        dst: Arc<Client>,
        ckpt: Arc<Checkpointer>,
        producer: Arc<Producer>,
        fetchers: Arc<Fetchers>,
        mm2: Option<Arc<super::mm2::Positions>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            src,
            dst,
            ckpt,
            producer,
            fetchers,
            topics: Mutex::new(BTreeMap::new()),
            assigned: Mutex::new(BTreeSet::new()),
            busy: tokio::sync::Mutex::new(()),
            refresh: Arc::new(tokio::sync::Notify::new()),
            suspended: Mutex::new(BTreeSet::new()),
            ids: Mutex::new(HashMap::new()),
            recreated: Mutex::new(BTreeMap::new()),
            mm2,
        })
    }

    /// Destination keys of these source partitions (those with a route).
    fn dst_keys(&self, parts: &BTreeSet<Tp>) -> Vec<(Arc<str>, i32)> {
        self.producer
            .positions()
            .into_iter()
            .map(|p| p.route)
            .filter(|r| parts.contains(&(r.src_topic.to_string(), r.partition)))
            .map(|r| (r.dst_topic, r.partition))
            .collect()
    }

    /// True when the group's committed position of destination partition `k`
    /// is still the one this member committed last: nobody else replicated
    /// it while this member was out of the group.
    async fn untouched(&self, k: &(Arc<str>, i32)) -> bool {
        let theirs = super::checkpoint::committed_positions(
            &self.dst,
            &self.cfg.checkpoint_group(),
            &[(k.0.to_string(), vec![k.1])],
        )
        .await;
        match theirs {
            Ok(m) => {
                m.get(&(k.0.to_string(), k.1)).map(|p| p.src_next) == self.ckpt.committed(&k.0, k.1).map(|p| p.src_next)
            }
            Err(_) => false,
        }
    }

    /// Notified when assigned partitions wait for their topic to be ready.
    pub fn refresh_now(&self) -> Arc<tokio::sync::Notify> {
        self.refresh.clone()
    }

    /// Records the flow's ready topics (a topic refresh). Returns true when the
    /// set of source partitions changed.
    pub fn set_topics(&self, topics: Vec<MirroredTopic>) -> bool {
        let new: BTreeMap<Arc<str>, MirroredTopic> = topics.into_iter().map(|t| (t.src.clone(), t)).collect();
        let mut cur = lock(&self.topics);
        let shape = |m: &BTreeMap<Arc<str>, MirroredTopic>| -> Vec<(Arc<str>, i32)> {
            m.values().map(|t| (t.src.clone(), t.partitions)).collect()
        };
        let changed = shape(&cur) != shape(&new);
        {
            let mut ids = lock(&self.ids);
            let mut recreated = lock(&self.recreated);
            for t in new.values() {
                let now = TopicIds {
                    src: t.src_id,
                    dst: t.dst_id,
                };
                if let Some(what) = ids
                    .insert(t.src.clone(), now)
                    .and_then(|old| Recreated::between(old, now))
                {
                    recreated.insert(t.src.clone(), what);
                }
            }
        }
        *cur = new;
        changed
    }

    /// Stops this member's partitions of topics created again since the last
    /// refresh and commits each one's new start: the source's log start (the
    /// whole new source topic, or everything the source still holds for a new
    /// destination topic), at the destination topic's end. They start again
    /// with the next [`Self::start_locked`]; a failed commit leaves them
    /// stopped and is retried at the next refresh.
    async fn restart_recreated(&self) {
        let todo: Vec<(Arc<str>, Recreated)> = std::mem::take(&mut *lock(&self.recreated)).into_iter().collect();
        for (src_topic, what) in todo {
            let Some(t) = lock(&self.topics).get(&src_topic).cloned() else {
                continue;
            };
            let now = TopicIds {
                src: t.src_id,
                dst: t.dst_id,
            };
            if self.ckpt.ids_of(&t.dst) == Some(now) {
                continue; // started on the new topics already ([`Self::add`])
            }
            let mine: BTreeSet<Tp> = lock(&self.assigned)
                .iter()
                .filter(|(topic, _)| topic.as_str() == &*src_topic)
                .cloned()
                .collect();
            let dst_keys = self.dst_keys(&mine);
            self.fetchers.remove(&src_keys(&mine));
            self.producer.remove_routes(&dst_keys);
            self.ckpt.forget(&dst_keys);
            let parts: Vec<i32> = mine.iter().map(|(_, p)| *p).filter(|p| *p < t.partitions).collect();
            if parts.is_empty() {
                // Not replicated here now: whoever starts them finds the old
                // topic ids in their committed positions ([`Self::add`]).
                continue;
            }
            warn!(topic = %t.src, destination = %t.dst, partitions = parts.len(), "{}", what.says());
            Metrics::add(&self.metrics().topic_resets, 1);
            if let Err(e) = self.commit_fresh_start(&t, &parts).await {
                warn!(topic = %t.src, error = %e, "cannot commit the new start of a topic created again; its partitions wait for the next refresh");
                lock(&self.recreated).insert(src_topic, what);
            }
        }
    }

    /// Commits, for `parts` of `t`, the source's log start and the
    /// destination's end as their positions (with `t`'s topic ids).
    async fn commit_fresh_start(&self, t: &MirroredTopic, parts: &[i32]) -> Result<(), ClientError> {
        let (src, dst) = (&self.src, &self.dst);
        let starts = src.retrying(|| src.list_offsets(&t.src, parts, EARLIEST, true)).await?;
        let ends = dst.retrying(|| dst.list_offsets(&t.dst, parts, LATEST, false)).await?;
        let ids = TopicIds {
            src: t.src_id,
            dst: t.dst_id,
        };
        self.ckpt.set_ids(t.dst.clone(), ids);
        let positions: Vec<(Route, Position)> = parts
            .iter()
            .filter_map(|p| {
                Some((
                    Route {
                        src_topic: t.src.clone(),
                        partition: *p,
                        dst_topic: t.dst.clone(),
                    },
                    Position {
                        src_next: *starts.get(p)?,
                        dst_next: ends.get(p).copied().unwrap_or(-1),
                        ids: Some(ids),
                    },
                ))
            })
            .collect();
        self.ckpt.reset(&positions).await
    }

    fn metrics(&self) -> Arc<Metrics> {
        self.fetchers.metrics()
    }

    /// Starts every assigned partition whose topic is ready and that does not run yet.
    pub async fn start_assigned(&self) {
        let _busy = self.busy.lock().await;
        self.start_locked().await;
    }

    async fn start_locked(&self) {
        self.restart_recreated().await;
        let assigned = lock(&self.assigned).clone();
        let topics: Vec<MirroredTopic> = lock(&self.topics).values().cloned().collect();
        for t in topics {
            let wanted: Vec<i32> = assigned
                .iter()
                .filter(|(topic, p)| topic.as_str() == &*t.src && *p < t.partitions)
                .map(|(_, p)| *p)
                .filter(|p| !self.fetchers.has(&t.src, *p))
                .collect();
            if wanted.is_empty() {
                continue;
            }
            match self.add(&t, &wanted).await {
                Ok(()) => {
                    info!(topic = %t.src, destination = %t.dst, partitions = wanted.len(), "replicating partitions")
                }
                Err(e) => warn!(topic = %t.src, error = %e, "cannot start replicating; will retry"),
            }
        }
    }

    async fn add(&self, t: &MirroredTopic, new: &[i32]) -> Result<(), ClientError> {
        let (cfg, src, dst) = (&self.cfg, &self.src, &self.dst);
        let ids = TopicIds {
            src: t.src_id,
            dst: t.dst_id,
        };
        let mut saved = self.ckpt.load(&t.dst, new).await?;
        // A position committed for topics of the same names that were deleted
        // since (by another member, or before a restart) is not resumed.
        let stale: Vec<(i32, Recreated)> = saved
            .iter()
            .filter_map(|(p, pos)| Some((*p, Recreated::between(pos.ids?, ids)?)))
            .collect();
        if let Some((_, what)) = stale.first() {
            warn!(topic = %t.src, destination = %t.dst, partitions = stale.len(), "{} (the committed positions name the old topic ids)", what.says());
            Metrics::add(&self.metrics().topic_resets, 1);
            let parts: Vec<i32> = stale.iter().map(|(p, _)| *p).collect();
            self.ckpt
                .forget(&parts.iter().map(|p| (t.dst.clone(), *p)).collect::<Vec<_>>());
            self.commit_fresh_start(t, &parts).await?;
            saved = self.ckpt.load(&t.dst, new).await?;
        }
        self.ckpt.set_ids(t.dst.clone(), ids);
        // Partitions without a checkpoint continue after MirrorMaker 2's
        // position (start_from = "mm2"), else start per start_from: one
        // ListOffsets per leader.
        let mm2 = |p: &i32| self.mm2.as_ref().and_then(|m| m.get(&(t.src.to_string(), *p)).copied());
        let fresh: Vec<i32> = new
            .iter()
            .copied()
            .filter(|p| !saved.contains_key(p) && mm2(p).is_none())
            .collect();
        if self.mm2.is_some() {
            let taken = new
                .iter()
                .filter(|p| !saved.contains_key(p) && mm2(p).is_some())
                .count();
            if taken > 0 || !fresh.is_empty() {
                info!(topic = %t.src, from_mm2 = taken, from_start_from = fresh.len(), "partitions without a checkpoint: continuing after MirrorMaker 2's positions");
            }
        }
        let listed = if fresh.is_empty() {
            HashMap::new()
        } else {
            let ts = if cfg.fetch.start_from == StartFrom::Earliest {
                EARLIEST
            } else {
                LATEST
            };
            src.retrying(|| src.list_offsets(&t.src, &fresh, ts, true)).await?
        };
        // Where the next record lands on the destination, for partitions whose
        // checkpoint does not say (new ones, or checkpoints of older versions).
        let unknown: Vec<i32> = new
            .iter()
            .copied()
            .filter(|p| saved.get(p).is_none_or(|s| s.dst_next < 0))
            .collect();
        let dst_ends = if unknown.is_empty() {
            HashMap::new()
        } else {
            dst.retrying(|| dst.list_offsets(&t.dst, &unknown, LATEST, false))
                .await?
        };
        for p in new {
            let (start, dst_next) = match (saved.get(p), mm2(p)) {
                (Some(s), _) => (s.src_next, s.dst_next),
                (None, Some(next)) => (next, -1),
                (None, None) => (listed[p], -1),
            };
            let dst_next = if dst_next >= 0 {
                dst_next
            } else {
                dst_ends.get(p).copied().unwrap_or(-1)
            };
            debug!(topic = %t.src, partition = p, destination = %t.dst, offset = start, dst_next, "replicating partition");
            let route = Route {
                src_topic: t.src.clone(),
                partition: *p,
                dst_topic: t.dst.clone(),
            };
            self.producer.add_route(route.clone(), start, dst_next, t.dst_id);
            self.fetchers.add(route, t.src_id, start);
        }
        Ok(())
    }

    /// Hands partitions over: stops fetching them; with `commit`, waits for
    /// their in-flight produces and commits their positions (exactly-once: waits
    /// for the transaction holding them to commit); then drops them.
    async fn hand_over(&self, parts: BTreeSet<Tp>, commit: bool) {
        let _busy = self.busy.lock().await;
        {
            let mut assigned = lock(&self.assigned);
            for tp in &parts {
                assigned.remove(tp);
            }
        }
        let dst_keys = self.dst_keys(&parts);
        self.fetchers.remove(&src_keys(&parts));
        if commit && !dst_keys.is_empty() {
            let started = Instant::now();
            let limit = self.cfg.member.rebalance_timeout / 2;
            while self.producer.pending_of(&dst_keys) > 0 && started.elapsed() < limit {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if self.cfg.exactly_once.is_some() {
                // The transaction loop commits the positions with the batches.
                while !self.settled(&dst_keys) && started.elapsed() < limit {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            } else if let Err(e) = self.ckpt.checkpoint().await {
                warn!(error = %e, "checkpoint before handing partitions over failed: their new owner re-sends from the previous one");
            }
            info!(
                partitions = parts.len(),
                settled = self.settled(&dst_keys),
                took_ms = started.elapsed().as_millis() as u64,
                "partitions handed over"
            );
        }
        self.producer.remove_routes(&dst_keys);
        self.ckpt.forget(&dst_keys);
    }

    /// True when every one of `keys` has its acknowledged position committed.
    fn settled(&self, keys: &[(Arc<str>, i32)]) -> bool {
        let positions: HashMap<(Arc<str>, i32), i64> = self
            .producer
            .positions()
            .into_iter()
            .map(|p| ((p.route.dst_topic, p.route.partition), p.acked_next))
            .collect();
        keys.iter().all(|k| match positions.get(k) {
            None => true,
            Some(acked) => self.ckpt.committed(&k.0, k.1).is_some_and(|c| c.src_next >= *acked),
        })
    }
}

impl Owner for FlowOwner {
    async fn suspend(&self) {
        if self.cfg.exactly_once.is_some() {
            // Its open transaction may hold batches of partitions another
            // member replicates by now: it must not commit.
            self.ckpt.poison();
        }
        let _busy = self.busy.lock().await;
        let running: BTreeSet<Tp> = self
            .fetchers
            .rates()
            .into_iter()
            .map(|(t, p, _)| (t.to_string(), p))
            .collect();
        let src_keys = src_keys(&running);
        let dst_keys = self.dst_keys(&running);
        self.fetchers.hold(&src_keys, true);
        self.producer.hold(&dst_keys, true);
        lock(&self.assigned).clear();
        lock(&self.suspended).extend(running);
    }

    async fn resolve(&self, target: &BTreeSet<Tp>) {
        let suspended = std::mem::take(&mut *lock(&self.suspended));
        if suspended.is_empty() {
            return;
        }
        let mut keep = BTreeSet::new();
        let mut drop = BTreeSet::new();
        for tp in suspended {
            let k = self.dst_keys(&BTreeSet::from([tp.clone()]));
            let ok = target.contains(&tp)
                && match k.first() {
                    Some(k) => self.untouched(k).await,
                    None => false,
                };
            if ok {
                keep.insert(tp);
            } else {
                drop.insert(tp);
            }
        }
        info!(
            kept = keep.len(),
            dropped = drop.len(),
            "back in the replication group: partitions nobody else committed meanwhile are kept"
        );
        if !keep.is_empty() {
            let src_keys = src_keys(&keep);
            let dst_keys = self.dst_keys(&keep);
            self.producer.hold(&dst_keys, false);
            self.fetchers.hold(&src_keys, false);
            lock(&self.assigned).extend(keep);
        }
        if !drop.is_empty() {
            self.hand_over(drop, false).await;
        }
    }

    fn owned(&self) -> BTreeMap<String, Vec<(i32, u64)>> {
        let mut out: BTreeMap<String, Vec<(i32, u64)>> = BTreeMap::new();
        let rates: HashMap<(Arc<str>, i32), u64> =
            self.fetchers.rates().into_iter().map(|(t, p, r)| ((t, p), r)).collect();
        for (t, p) in lock(&self.assigned).iter() {
            let r = rates.get(&(Arc::from(t.as_str()), *p)).copied().unwrap_or(0);
            out.entry(t.clone()).or_default().push((*p, r));
        }
        // Partitions still running that are no longer assigned (a handover
        // under way); held ones are not claimed (another member may own them).
        let suspended = lock(&self.suspended).clone();
        for (t, p, r) in self.fetchers.rates() {
            if suspended.contains(&(t.to_string(), p)) {
                continue;
            }
            let e = out.entry(t.to_string()).or_default();
            if !e.iter().any(|(q, _)| *q == p) {
                e.push((p, r));
            }
        }
        out
    }

    fn known(&self) -> BTreeSet<Tp> {
        lock(&self.topics)
            .values()
            .flat_map(|t| (0..t.partitions).map(move |p| (t.src.to_string(), p)))
            .collect()
    }

    async fn take(&self, parts: BTreeSet<Tp>) {
        let waiting = {
            let topics = lock(&self.topics);
            parts.iter().any(|(t, _)| !topics.contains_key(t.as_str()))
        };
        lock(&self.assigned).extend(parts);
        self.start_assigned().await;
        if waiting {
            // The leader just created their topics: look again now.
            self.refresh.notify_one();
        }
    }

    async fn release(&self, parts: BTreeSet<Tp>, commit: bool) {
        self.hand_over(parts, commit).await;
    }
}

/// Source keys (the fetchers') of these partitions.
fn src_keys(parts: &BTreeSet<Tp>) -> Vec<(Arc<str>, i32)> {
    parts.iter().map(|(t, p)| (Arc::from(t.as_str()), *p)).collect()
}
