//! Which member of a replication group replicates which source partitions:
//! what members tell the leader when they join ([`MemberMeta`]), what the
//! leader answers ([`Assignment`]), and the assignor ([`assign`]), without I/O.
//!
//! The assignor is deterministic (the same members and partitions give the
//! same answer on any leader), sticky (a member keeps what it owns while that
//! stays within its share), balanced by partition count (shares differ by at
//! most one), and places the partitions that move by recent bytes per second
//! (the busiest first, each to the member with the least traffic). It is
//! cooperative: a partition owned by one member is never given to another in
//! the same generation; the owner first gets an assignment without it, stops
//! it, commits its position and rejoins, and the next generation gives it to
//! its new owner. Partitions that do not move keep replicating throughout.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A source partition: (topic, partition).
pub type Tp = (String, i32);

/// The protocol type strait's members join with (the classic group protocol
/// accepts any; consumers use `consumer`, Kafka Connect `connect`).
pub const PROTOCOL_TYPE: &str = "strait";
/// The one protocol name (its metadata's version is inside).
pub const PROTOCOL: &str = "strait-v1";

/// What a member tells the leader when it joins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberMeta {
    /// Its static membership id (or host name).
    pub instance: String,
    /// The settings every member of one replication must share, by key.
    pub settings: BTreeMap<String, String>,
    /// Partitions it replicates now, with their recent bytes per second.
    pub owned: BTreeMap<String, Vec<(i32, u64)>>,
}

impl MemberMeta {
    /// Encodes for JoinGroup.
    pub fn encode(&self) -> bytes::Bytes {
        bytes::Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decodes a member's JoinGroup metadata (`None`: not strait's, or garbled).
    pub fn decode(b: &[u8]) -> Option<Self> {
        serde_json::from_slice(b).ok()
    }

    fn owned_set(&self) -> impl Iterator<Item = (Tp, u64)> + '_ {
        self.owned
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |(p, r)| ((t.clone(), *p), *r)))
    }
}

/// The leader's answer to one member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// Partitions to replicate, by source topic.
    pub partitions: BTreeMap<String, Vec<i32>>,
    /// Set when the member may not take part (its settings differ from the group's).
    pub error: Option<String>,
    /// Partitions withheld this generation because another member still owns
    /// them (they come with the next generation).
    pub pending: usize,
    /// Members in the generation.
    pub members: usize,
}

impl Assignment {
    /// Encodes for SyncGroup.
    pub fn encode(&self) -> bytes::Bytes {
        bytes::Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decodes SyncGroup's answer; empty bytes (no assignment yet) is an empty one.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        if b.is_empty() {
            return Ok(Self::default());
        }
        serde_json::from_slice(b).map_err(|e| format!("cannot read the leader's assignment: {e}"))
    }

    /// Every assigned partition.
    pub fn set(&self) -> BTreeSet<Tp> {
        self.partitions
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
            .collect()
    }

    fn from_set(set: &BTreeSet<Tp>) -> BTreeMap<String, Vec<i32>> {
        let mut out: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (t, p) in set {
            out.entry(t.clone()).or_default().push(*p);
        }
        out
    }
}

/// One member as the leader sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The coordinator's member id.
    pub member_id: String,
    /// Its metadata (`None`: unreadable; it is refused).
    pub meta: Option<MemberMeta>,
}

impl Candidate {
    /// Sort key: the instance id where known (stable across restarts), else the member id.
    fn key(&self) -> String {
        match &self.meta {
            Some(m) if !m.instance.is_empty() => format!("0{}", m.instance),
            _ => format!("1{}", self.member_id),
        }
    }
}

/// How `mine` differs from `group`'s settings, one phrase per key.
pub fn differences(mine: &BTreeMap<String, String>, group: &BTreeMap<String, String>) -> Vec<String> {
    let keys: BTreeSet<&String> = mine.keys().chain(group.keys()).collect();
    keys.into_iter()
        .filter(|k| mine.get(*k) != group.get(*k))
        .map(|k| {
            let show = |v: Option<&String>| v.map_or_else(|| "unset".to_string(), |v| v.clone());
            format!("{k} = {} here, {} in the group", show(mine.get(k)), show(group.get(k)))
        })
        .collect()
}

/// Assigns `partitions` (every source partition of the replication) to
/// `members`. `leader_settings`: the leader's own settings, which decide a tie
/// between equally common settings. Returns each member id's assignment.
pub fn assign(
    partitions: &BTreeSet<Tp>,
    members: &[Candidate],
    leader_settings: &BTreeMap<String, String>,
) -> BTreeMap<String, Assignment> {
    let mut members: Vec<&Candidate> = members.iter().collect();
    members.sort_by_key(|c| c.key());
    // The group's settings: the most common; a tie goes to the leader's.
    let mut counts: BTreeMap<&BTreeMap<String, String>, usize> = BTreeMap::new();
    for m in members.iter().filter_map(|c| c.meta.as_ref()) {
        *counts.entry(&m.settings).or_default() += 1;
    }
    let top = counts.values().copied().max().unwrap_or(0);
    let group_settings = if counts.get(leader_settings) == Some(&top) {
        leader_settings
    } else {
        counts
            .iter()
            .find(|(_, n)| **n == top)
            .map(|(s, _)| *s)
            .unwrap_or(leader_settings)
    };
    let mut out: BTreeMap<String, Assignment> = BTreeMap::new();
    let mut eligible: Vec<(&Candidate, &MemberMeta)> = Vec::new();
    for c in &members {
        match &c.meta {
            Some(m) if &m.settings == group_settings => eligible.push((c, m)),
            Some(m) => {
                let diff = differences(&m.settings, group_settings);
                out.insert(
                    c.member_id.clone(),
                    Assignment {
                        error: Some(format!(
                            "this process's settings differ from the replication group's: {}",
                            diff.join("; ")
                        )),
                        ..Assignment::default()
                    },
                );
            }
            None => {
                out.insert(
                    c.member_id.clone(),
                    Assignment {
                        error: Some(
                            "the leader cannot read this member's join metadata (another strait version?)".into(),
                        ),
                        ..Assignment::default()
                    },
                );
            }
        }
    }
    // Who owns what now (a partition two members claim stays with the first)
    // and the recent rates.
    let mut owner: BTreeMap<Tp, usize> = BTreeMap::new();
    let mut rate: BTreeMap<Tp, u64> = BTreeMap::new();
    for (i, (_, m)) in eligible.iter().enumerate() {
        for (tp, r) in m.owned_set() {
            rate.insert(tp.clone(), r);
            if partitions.contains(&tp) {
                owner.entry(tp).or_insert(i);
            }
        }
    }
    // Every member's claims, refused members' included: what they still run
    // must not be handed to someone else in this generation.
    let mut claimed_by: BTreeMap<Tp, BTreeSet<String>> = BTreeMap::new();
    for c in &members {
        for (tp, _) in c.meta.iter().flat_map(|m| m.owned_set()) {
            claimed_by.entry(tp).or_default().insert(c.member_id.clone());
        }
    }
    let n = eligible.len();
    let mut target: Vec<BTreeSet<Tp>> = vec![BTreeSet::new(); n];
    if let (Some(base), Some(extra)) = (partitions.len().checked_div(n), partitions.len().checked_rem(n)) {
        // Shares: the members owning the most get the larger ones.
        let mut order: Vec<usize> = (0..n).collect();
        let owns = |i: usize| owner.values().filter(|o| **o == i).count();
        order.sort_by_key(|i| (std::cmp::Reverse(owns(*i)), *i));
        let mut quota = vec![base; n];
        for i in order.into_iter().take(extra) {
            quota[i] += 1;
        }
        // Sticky: keep owned partitions up to the share.
        for (tp, i) in &owner {
            if target[*i].len() < quota[*i] {
                target[*i].insert(tp.clone());
            }
        }
        // The rest, busiest first, each to the member with the least traffic.
        let taken: BTreeSet<&Tp> = target.iter().flatten().collect();
        let mut free: Vec<&Tp> = partitions.iter().filter(|tp| !taken.contains(tp)).collect();
        free.sort_by_key(|tp| (std::cmp::Reverse(rate.get(*tp).copied().unwrap_or(0)), (*tp).clone()));
        let mut load: Vec<u64> = target
            .iter()
            .map(|s| s.iter().map(|tp| rate.get(tp).copied().unwrap_or(0)).sum())
            .collect();
        for tp in free {
            let Some(i) = (0..n)
                .filter(|i| target[*i].len() < quota[*i])
                .min_by_key(|i| (load[*i], target[*i].len(), *i))
            else {
                break;
            };
            load[i] += rate.get(tp).copied().unwrap_or(0);
            target[i].insert(tp.clone());
        }
    }
    for (i, (c, _)) in eligible.iter().enumerate() {
        // Cooperative: a partition another member still runs waits for the next generation.
        let (now, pending): (BTreeSet<Tp>, BTreeSet<Tp>) = target[i].iter().cloned().partition(|tp| {
            claimed_by
                .get(tp)
                .is_none_or(|who| who.iter().all(|m| *m == c.member_id))
        });
        out.insert(
            c.member_id.clone(),
            Assignment {
                partitions: Assignment::from_set(&now),
                error: None,
                pending: pending.len(),
                members: n,
            },
        );
    }
    for a in out.values_mut() {
        a.members = n;
    }
    out
}

#[cfg(test)]
mod tests;
