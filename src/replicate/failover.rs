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
    let acls_restored = if cfg.topics.sync_acls {
        super::acls::restore_writes(&cfg, &dst)
            .await
            .map_err(dst_err(&cfg))?
            .iter()
            .map(ToString::to_string)
            .collect()
    } else {
        Vec::new()
    };
    Ok(FailoverReport {
        topics: topics.iter().map(|t| (t.clone(), cfg.destination_topic(t))).collect(),
        groups: report_groups,
        drained_records: summary.records,
        acls_restored,
    })
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
