//! Consumer-group offset sync: source groups' committed offsets, translated
//! exactly through the offset map, written on the destination.
//!
//! Rules (as operators expect from a DR tool): a group is written only while it
//! has no active members on the destination (a live consumer there owns its
//! offsets), and an offset never moves backwards unless the source group itself
//! moved backwards.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use kafka_protocol::messages::{DescribeGroupsRequest, GroupId, ListGroupsRequest};
use kafka_protocol::protocol::StrBytes;
use tracing::{debug, info, warn};

use super::checkpoint::Checkpointer;
use super::metrics::Metrics;
use crate::client::{code, Client, ClientError, GroupOffset};
use crate::config::{GroupSettings, TopicSettings};

/// Metadata strait commits with the group offsets it writes (a consumer's own
/// commits replace it).
pub const SYNCED: &str = "strait:synced";

/// (group, destination topic, partition).
type GroupPartition = (String, String, i32);

/// Syncs group offsets of one replication.
#[derive(Debug)]
pub struct GroupSync {
    /// Last synced (source offset, destination offset) per group partition.
    last: Mutex<HashMap<GroupPartition, (i64, i64)>>,
    /// Counts every partition written in `strait_group_offsets_synced` as
    /// soon as its commit succeeded: a round stopped mid-way (the engine drops
    /// group sync at stop) keeps the count of what it wrote.
    metrics: Arc<Metrics>,
}

/// Group ids known to any broker of `client`'s cluster.
pub async fn list_groups(client: &Client) -> Result<HashSet<String>, ClientError> {
    let md = client.refresh_metadata(Some(&[])).await?;
    let mut out = HashSet::new();
    for id in md.brokers.keys() {
        let conn = client.broker(*id).await?;
        let resp = conn.request(&ListGroupsRequest::default()).await?;
        if resp.error_code != 0 {
            return Err(ClientError::kafka(
                "ListGroups",
                conn.broker(),
                "groups",
                resp.error_code,
                None,
            ));
        }
        out.extend(resp.groups.iter().map(|g| g.group_id.0.to_string()));
    }
    Ok(out)
}

/// True when `group` has no active member on `client`'s cluster (empty, dead or unknown).
async fn is_inactive(client: &Client, group: &str) -> Result<bool, ClientError> {
    let conn = client.find_coordinator(group, 0).await?;
    let resp = conn
        .request(&DescribeGroupsRequest::default().with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))]))
        .await?;
    let Some(g) = resp.groups.first() else { return Ok(true) };
    Ok(match g.error_code {
        code::NONE => g.members.is_empty() && matches!(g.group_state.as_str(), "Empty" | "Dead" | ""),
        code::GROUP_ID_NOT_FOUND => true,
        _ => false, // unknown state (e.g. a KIP-848 consumer group): leave it alone
    })
}

impl GroupSync {
    /// A group sync counting what it writes in `metrics`.
    pub fn counted_in(metrics: Arc<Metrics>) -> Self {
        Self {
            last: Mutex::default(),
            metrics,
        }
    }

    /// One sync round; returns the number of partitions written. `reverse`:
    /// the flow replicating the other way with identity names (two-way
    /// replication), whose copies interleave with the destination's own records.
    pub async fn sync_once(
        &self,
        groups: &GroupSettings,
        topics: &TopicSettings,
        src: &Client,
        dst: &Client,
        ckpt: &Checkpointer,
        reverse: Option<&Checkpointer>,
    ) -> Result<usize, ClientError> {
        let synced_from = format!("{SYNCED}-from={}", topics.source_alias);
        let leave_earlier = groups.leave_earlier;
        let mut groups: Vec<String> = list_groups(src)
            .await?
            .into_iter()
            .filter(|g| groups.wants(g))
            .collect();
        groups.sort();
        let mut written = 0;
        // A failure on one group does not lose the count of groups already
        // written (nor stop the others): the first error is returned only
        // when nothing was written.
        let mut first_err: Option<ClientError> = None;
        for group in groups {
            match self
                .sync_group(&group, &synced_from, topics, src, dst, ckpt, reverse, leave_earlier)
                .await
            {
                Ok(n) => written += n,
                Err(e) => {
                    warn!(group, error = %e, "group offset sync failed for this group; will retry");
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) if written == 0 => Err(e),
            _ => Ok(written),
        }
    }

    /// Syncs one group; returns the partitions written.
    #[allow(clippy::too_many_arguments)]
    async fn sync_group(
        &self,
        group: &str,
        synced_from: &str,
        topics: &TopicSettings,
        src: &Client,
        dst: &Client,
        ckpt: &Checkpointer,
        reverse: Option<&Checkpointer>,
        leave_earlier: bool,
    ) -> Result<usize, ClientError> {
        let group = group.to_string();
        let synced_from = synced_from.to_string();
        {
            let committed = src.fetch_group_offsets(&group, &[]).await?;
            let mut want: Vec<(String, i32, i64, i64)> = Vec::new(); // dst topic, partition, src offset, dst offset
            for c in committed {
                let (t, p, o) = (c.topic, c.partition, c.offset);
                // An offset strait itself wrote there (the other flow of a pair)
                // is not synced back: it would bounce between the clusters.
                if o < 0 || !topics.wants(&t, false) || c.metadata.starts_with(SYNCED) {
                    continue;
                }
                let dt = topics.destination(&t);
                // After a takeover from MirrorMaker 2, a group still reading
                // what MM2 copied keeps the offsets MM2 translated for it; one
                // at or past MM2's position is strait's to translate, also where
                // MM2 had copied everything (a drained group on a quiet topic).
                if leave_earlier && ckpt.copy_begins(&dt, p).is_none_or(|first| o < first) {
                    continue;
                }
                let Some(mut d) = ckpt.translate(&dt, p, o) else {
                    continue;
                };
                if let Some(r) = reverse {
                    // The destination's own records before its first one the group
                    // has not read (as a copy on the source) may be repeated, never
                    // skipped. Until the flow coming back knows where it stands there,
                    // the bound is unknown: no sync rather than a skip.
                    let Some(first) = r.first_unconsumed(&t, p, o) else {
                        continue;
                    };
                    d = d.min(first);
                }
                want.push((dt, p, o, d));
            }
            if want.is_empty() {
                return Ok(0);
            }
            if !is_inactive(dst, &group).await? {
                debug!(
                    group,
                    "group has active members on the destination; not overwriting its offsets"
                );
                return Ok(0);
            }
            let mut topics: HashMap<String, Vec<i32>> = HashMap::new();
            for (t, p, _, _) in &want {
                topics.entry(t.clone()).or_default().push(*p);
            }
            let existing: HashMap<(String, i32), i64> = dst
                .fetch_offsets(&group, &topics.into_iter().collect::<Vec<_>>())
                .await?
                .into_iter()
                .map(|(t, p, o)| ((t, p), o))
                .collect();
            let mut commit = Vec::new();
            {
                let last = crate::sync::lock(&self.last);
                for (t, p, so, d) in &want {
                    let have = existing.get(&(t.clone(), *p)).copied().unwrap_or(-1);
                    let source_moved_back = last
                        .get(&(group.clone(), t.clone(), *p))
                        .is_some_and(|(prev, _)| so < prev);
                    if *d > have || (*d < have && source_moved_back) {
                        commit.push((t.clone(), *p, *d));
                    }
                }
            }
            if commit.is_empty() {
                return Ok(0);
            }
            let offsets: Vec<GroupOffset> = commit
                .iter()
                .map(|(t, p, o)| GroupOffset {
                    topic: t.clone(),
                    partition: *p,
                    offset: *o,
                    metadata: synced_from.clone(),
                })
                .collect();
            dst.commit_group_offsets(&group, &offsets).await?;
            let written = commit.len();
            Metrics::add(&self.metrics.group_offsets_synced, written as u64);
            info!(
                group,
                partitions = commit.len(),
                "synced group offsets to the destination"
            );
            let mut last = crate::sync::lock(&self.last);
            for (t, p, so, d) in want {
                last.insert((group.clone(), t, p), (so, d));
            }
            Ok(written)
        }
    }
}
