//! Failover and failback.
//!
//! `failover` drains the replication (every partition acknowledged up to the
//! source's last stable offset), commits a last checkpoint and a last exact
//! group-offset sync, and records, for failback, where the destination's logs
//! end: records after that point are new on the destination. `failback` then
//! replicates destination → source from exactly there, so nothing the source
//! already has is copied back.

use std::time::Duration;

use regex::Regex;
use tracing::info;

use super::translate::{Translation, Translator};
use super::{dst_err, run, src_err, EngineError};
use crate::client::admin::LATEST;
use crate::client::{Client, ClientError};
use crate::config::Config;

/// What a failover did.
#[derive(Debug, Clone)]
pub struct FailoverReport {
    /// Source topics replicated, with their destination names.
    pub topics: Vec<(String, String)>,
    /// Per group, its translated offsets.
    pub groups: Vec<(String, Vec<Translation>)>,
    /// Records replicated during the drain.
    pub drained_records: u64,
    /// Write permissions restored on the destination (ACL sync had copied them as READ).
    pub acls_restored: Vec<String>,
    /// Unplanned: each synced group's offsets on the destination, as group
    /// sync last wrote them: (group, destination topic, partition, offset).
    pub synced_groups: Vec<(String, String, i32, i64)>,
    /// What was recorded on the destination for failback.
    pub record: Option<super::failover_record::FailoverRecord>,
}

impl FailoverReport {
    /// Partitions of moved groups whose offset has no destination equivalent:
    /// (group, source topic, partition, committed source offset).
    pub fn untranslated(&self) -> Vec<(String, String, i32, i64)> {
        self.groups
            .iter()
            .flat_map(|(g, rows)| {
                rows.iter()
                    .filter(|r| r.translated.is_none())
                    .map(move |r| (g.clone(), r.src_topic.clone(), r.partition, r.committed))
            })
            .collect()
    }
}

/// Source topics a config replicates (as they exist now).
pub async fn replicated_topics(cfg: &Config, src: &Client) -> Result<Vec<String>, ClientError> {
    let md = src.refresh_metadata(None).await?;
    let mut t: Vec<String> = md
        .topics
        .values()
        .filter(|t| t.error_code == 0 && cfg.wants_topic(&t.name, t.is_internal))
        .map(|t| t.name.clone())
        .collect();
    t.sort();
    Ok(t)
}

/// Drains, syncs `groups` (all of the config's groups when empty), stops, and
/// prepares failback.
pub async fn failover(mut cfg: Config, groups: Vec<String>) -> Result<FailoverReport, EngineError> {
    if !groups.is_empty() {
        cfg.groups.groups = groups
            .iter()
            .map(|g| Regex::new(&format!("^{}$", regex::escape(g))).expect("escaped regex is valid"))
            .collect();
    }
    wait_for_no_members(&cfg).await?;
    // The drain writes no heartbeats of its own (it still copies those written).
    cfg.heartbeats = None;
    let (h_tx, h_rx) = tokio::sync::oneshot::channel::<super::Handle>();
    let drained = async move {
        let Ok(h) = h_rx.await else { return };
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let lag = h.partition_lag();
            if !lag.is_empty() && lag.iter().all(|(_, _, l)| *l == 0) && h.pending() == 0 {
                info!(partitions = lag.len(), "replication drained");
                return;
            }
        }
    };
    let summary = run(cfg.clone(), drained, Some(Duration::from_secs(2)), move |h| {
        let _ = h_tx.send(h);
    })
    .await?;
    let src = Client::connect(cfg.source.client_config())
        .await
        .map_err(src_err(&cfg))?;
    let dst = Client::connect(cfg.destination.client_config())
        .await
        .map_err(dst_err(&cfg))?;
    // Failback starts at today's end of every destination partition.
    let topics = replicated_topics(&cfg, &src).await.map_err(src_err(&cfg))?;
    let reverse_group = format!("strait-{}-failback", cfg.name);
    let mut starts = Vec::new();
    for t in &topics {
        let d = cfg.destination_topic(t);
        let parts = dst
            .refresh_metadata(Some(std::slice::from_ref(&d)))
            .await
            .map_err(dst_err(&cfg))?;
        let n = parts.topics.get(&d).map(|x| x.partitions.len() as i32).unwrap_or(0);
        let ends = dst
            .list_offsets(&d, &(0..n).collect::<Vec<_>>(), LATEST, false)
            .await
            .map_err(dst_err(&cfg))?;
        // The reverse replication commits its positions under the reverse
        // destination topic, which is the original source topic.
        starts.extend(ends.into_iter().map(|(p, o)| (t.clone(), p, o)));
    }
    if !starts.is_empty() {
        src.commit_offsets(&reverse_group, &starts)
            .await
            .map_err(src_err(&cfg))?;
    }
    // Every group moved is reported with its translations: the ones named on
    // the command line, else the source groups the config's `groups` select.
    let mut names = groups.clone();
    if names.is_empty() && cfg.groups.enabled() {
        names = super::groups::list_groups(&src)
            .await
            .map_err(src_err(&cfg))?
            .into_iter()
            .filter(|g| cfg.wants_group(g))
            .collect();
        names.sort();
    }
    let mut report_groups = Vec::new();
    if !names.is_empty() {
        let translator = Translator::load(&cfg, &dst).await.map_err(dst_err(&cfg))?;
        for g in names {
            let rows = translator.group(&cfg, &src, &g, None).await.map_err(src_err(&cfg))?;
            report_groups.push((g, rows));
        }
    }
    // Producers authorised on the source may write on the destination now.
    let acls_restored = restore_acls(&cfg, &dst).await?;
    // The record failback reads first (the source-side group above is kept
    // for failbacks by older versions).
    let record = record_positions(&cfg, &dst, "planned", false)
        .await
        .map_err(dst_err(&cfg))?;
    Ok(FailoverReport {
        topics: topics.iter().map(|t| (t.clone(), cfg.destination_topic(t))).collect(),
        groups: report_groups,
        drained_records: summary.records,
        acls_restored,
        synced_groups: Vec::new(),
        record: Some(record),
    })
}

/// Records, on the destination, every partition with a committed position:
/// its log end now and that position ([`super::failover_record`]).
async fn record_positions(
    cfg: &Config,
    dst: &Client,
    kind: &str,
    active: bool,
) -> Result<super::failover_record::FailoverRecord, ClientError> {
    use super::failover_record::{now_ms, write, FailoverRecord, PartitionAtFailover};
    let positions = super::checkpoint::committed_positions(dst, &cfg.checkpoint_group(), &[]).await?;
    let names = source_names(cfg, dst).await?;
    // Every partition of the flow's destination topics, committed or not (a
    // crash before the first checkpoint commits nothing): the topics with
    // positions, and those whose source name the flow selects.
    let md = dst.refresh_metadata(None).await?;
    let mut partitions = Vec::new();
    for t in md.topics.values().filter(|t| t.error_code == 0) {
        let src_topic = names.get(&t.name).cloned().unwrap_or_else(|| source_name(cfg, &t.name));
        let has_positions = positions.keys().any(|(d, _)| *d == t.name);
        if !has_positions
            && (!cfg.wants_topic(&src_topic, t.is_internal) || cfg.destination_topic(&src_topic) != t.name)
        {
            continue;
        }
        let parts: Vec<i32> = (0..t.partitions.len() as i32).collect();
        let ends = dst
            .retrying(|| dst.list_offsets(&t.name, &parts, LATEST, false))
            .await?;
        for p in parts {
            let pos = positions.get(&(t.name.clone(), p));
            partitions.push(PartitionAtFailover {
                src_topic: src_topic.clone(),
                dst_topic: t.name.clone(),
                partition: p,
                dst_end: ends.get(&p).copied().unwrap_or(-1),
                src_next: pos.map_or(-1, |x| x.src_next),
                dst_next: pos.map_or(-1, |x| x.dst_next),
            });
        }
    }
    partitions.sort_by(|a, b| (&a.dst_topic, a.partition).cmp(&(&b.dst_topic, b.partition)));
    let record = FailoverRecord {
        kind: kind.to_string(),
        at_ms: now_ms(),
        flow: cfg.name.clone(),
        partitions,
        active,
        diverged_copied: false,
    };
    write(cfg, dst, &record).await?;
    Ok(record)
}

/// Source topic of each destination topic, from the offset map's records.
async fn source_names(cfg: &Config, dst: &Client) -> Result<std::collections::HashMap<String, String>, ClientError> {
    let Some(read) = super::log::read_if_exists(dst, &cfg.offset_map_topic()).await? else {
        return Ok(Default::default());
    };
    Ok(read
        .records
        .iter()
        .filter_map(|r| {
            let key = String::from_utf8_lossy(&r.key).to_string();
            let (dst_topic, _) = key.rsplit_once(':')?;
            let (src_topic, _) = super::offset_map::decode_value(r.value.as_deref()?)?;
            Some((dst_topic.to_string(), src_topic))
        })
        .collect())
}

/// The source name of destination topic `d` by undoing `rename` (a topic
/// the offset map does not name yet).
fn source_name(cfg: &Config, d: &str) -> String {
    match &cfg.topics.rename {
        crate::config::Rename::Prefix => d
            .strip_prefix(&format!("{}.", cfg.source.alias))
            .unwrap_or(d)
            .to_string(),
        _ => d.to_string(),
    }
}

/// Fails over with the source gone: touches only the destination. Records
/// each partition's log end and last committed position there, marks the
/// replication as failed over (`strait run` of this direction refuses until
/// [`reset`]), restores the write ACLs ACL sync held back, and reports the
/// synced groups' offsets on the destination (those group sync last wrote:
/// consumers re-read what their group consumed since).
pub async fn failover_unplanned(cfg: Config) -> Result<FailoverReport, EngineError> {
    wait_for_no_members(&cfg).await?;
    let dst = Client::connect(cfg.destination.client_config())
        .await
        .map_err(dst_err(&cfg))?;
    unplanned_on(&cfg, &dst).await
}

/// The unplanned failover's work on the destination `dst`, once no member
/// replicates any more (automated failover: this process has just stopped).
pub async fn unplanned_on(cfg: &Config, dst: &Client) -> Result<FailoverReport, EngineError> {
    let cfg = cfg.clone();
    let record = record_positions(&cfg, dst, "unplanned", true)
        .await
        .map_err(dst_err(&cfg))?;
    let mut synced_groups = Vec::new();
    if cfg.groups.enabled() {
        let mut names: Vec<String> = super::groups::list_groups(dst)
            .await
            .map_err(dst_err(&cfg))?
            .into_iter()
            .filter(|g| cfg.wants_group(g))
            .collect();
        names.sort();
        for g in names {
            for (t, p, o) in dst.fetch_offsets(&g, &[]).await.map_err(dst_err(&cfg))? {
                if o >= 0 {
                    synced_groups.push((g.clone(), t, p, o));
                }
            }
        }
    }
    let acls_restored = restore_acls(&cfg, dst).await?;
    let mut topics: Vec<(String, String)> = record
        .partitions
        .iter()
        .map(|p| (p.src_topic.clone(), p.dst_topic.clone()))
        .collect();
    topics.sort();
    topics.dedup();
    Ok(FailoverReport {
        topics,
        groups: Vec::new(),
        drained_records: 0,
        acls_restored,
        synced_groups,
        record: Some(record),
    })
}

/// Clears the failed-over mark of an unplanned failover: `strait run` of the
/// original direction may start again. Returns false when there was none.
pub async fn reset(cfg: &Config) -> Result<bool, EngineError> {
    let dst = Client::connect(cfg.destination.client_config())
        .await
        .map_err(dst_err(cfg))?;
    match super::failover_record::read(cfg, &dst).await.map_err(dst_err(cfg))? {
        Some(mut r) if r.active => {
            r.active = false;
            super::failover_record::write(cfg, &dst, &r)
                .await
                .map_err(dst_err(cfg))?;
            info!(flow = %cfg.name, "failed-over mark cleared: this direction may run again");
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// What failback found before copying anything back.
#[derive(Debug, Clone, Default)]
pub struct FailbackPlan {
    /// The failover it follows (none: no record on the destination).
    pub record: Option<super::failover_record::FailoverRecord>,
    /// Records on the original source the destination never received.
    pub diverged: Vec<super::diverged::Diverged>,
    /// Of those, the records copied into `.diverged` topics now.
    pub copied: u64,
}

/// Before failback: finds the records the original source holds and the
/// destination never received (from the failover record on the destination),
/// copies them into `<topic>.diverged` there (not with `dry_run`), and sets
/// failback's starting points from the record where the failover could not
/// (an unplanned one: the source was gone).
pub async fn prepare_failback(cfg: &Config, dry_run: bool) -> Result<FailbackPlan, EngineError> {
    let src = Client::connect(cfg.source.client_config())
        .await
        .map_err(src_err(cfg))?;
    let dst = Client::connect(cfg.destination.client_config())
        .await
        .map_err(dst_err(cfg))?;
    let Some(mut record) = super::failover_record::read(cfg, &dst).await.map_err(dst_err(cfg))? else {
        return Ok(FailbackPlan::default());
    };
    let diverged = if record.diverged_copied {
        Vec::new()
    } else {
        super::diverged::find(cfg, &src, &dst, &record)
            .await
            .map_err(src_err(cfg))?
    };
    let mut plan = FailbackPlan {
        record: Some(record.clone()),
        diverged,
        copied: 0,
    };
    if dry_run {
        return Ok(plan);
    }
    plan.copied = super::diverged::copy(cfg, &src, &dst, &plan.diverged).await?;
    record.diverged_copied = true;
    super::failover_record::write(cfg, &dst, &record)
        .await
        .map_err(dst_err(cfg))?;
    // Failback's positions (on the original source) start at the
    // destination's log ends at failover, unless it has positions already.
    let reverse_group = format!("strait-{}-failback", cfg.name);
    let have: std::collections::HashSet<(String, i32)> = src
        .fetch_offsets(&reverse_group, &[])
        .await
        .map_err(src_err(cfg))?
        .into_iter()
        .filter(|(_, _, o)| *o >= 0)
        .map(|(t, p, _)| (t, p))
        .collect();
    let starts: Vec<(String, i32, i64)> = record
        .partitions
        .iter()
        .filter(|p| p.dst_end >= 0 && !have.contains(&(p.src_topic.clone(), p.partition)))
        .map(|p| (p.src_topic.clone(), p.partition, p.dst_end))
        .collect();
    if !starts.is_empty() {
        src.commit_offsets(&reverse_group, &starts)
            .await
            .map_err(src_err(cfg))?;
    }
    Ok(plan)
}

/// With `sync_acls`: grants the write permissions ACL sync held back
/// ([`super::acls::restore_writes`]); returns them as text.
async fn restore_acls(cfg: &Config, dst: &Client) -> Result<Vec<String>, EngineError> {
    if !cfg.topics.sync_acls {
        return Ok(Vec::new());
    }
    Ok(super::acls::restore_writes(cfg, dst)
        .await
        .map_err(dst_err(cfg))?
        .iter()
        .map(ToString::to_string)
        .collect())
}

/// The reverse replication of `cfg` for failback.
pub async fn failback_config(cfg: &Config) -> Result<Config, EngineError> {
    let src = Client::connect(cfg.source.client_config())
        .await
        .map_err(src_err(cfg))?;
    let topics = replicated_topics(cfg, &src).await.map_err(src_err(cfg))?;
    cfg.reversed(&topics).map_err(|reason| {
        src_err(cfg)(ClientError::Invalid {
            what: "failback",
            reason,
        })
    })
}

/// Failover acts only when no `strait run` of the replication is alive: it
/// drains the replication itself, as the one member of its group. Waits up to
/// a session timeout (plus 2 s) for members to leave (a killed process stays a
/// member that long), then refuses, naming them.
pub async fn wait_for_no_members(cfg: &Config) -> Result<(), EngineError> {
    let dst = Client::connect(cfg.destination.client_config())
        .await
        .map_err(dst_err(cfg))?;
    let group = cfg.checkpoint_group();
    let deadline = tokio::time::Instant::now() + cfg.member.session_timeout + Duration::from_secs(2);
    let mut said = false;
    loop {
        let g = dst.describe_group(&group).await.map_err(dst_err(cfg))?;
        if g.members.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = g
            .members
            .iter()
            .map(|m| {
                format!(
                    "{} on {}",
                    m.instance_id.clone().unwrap_or_else(|| m.member_id.clone()),
                    m.client_host.trim_start_matches('/')
                )
            })
            .collect();
        if tokio::time::Instant::now() >= deadline {
            return Err(EngineError::Membership(format!(
                "replication group {group} still has live members ({}): stop every `strait run` of this replication before failing over (a killed process leaves the group after session_timeout_ms, {} ms)",
                names.join(", "),
                cfg.member.session_timeout.as_millis()
            )));
        }
        if !said {
            info!(group = %group, members = %names.join(", "), "waiting for the replication's members to leave its group");
            said = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
