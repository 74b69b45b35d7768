//! Heartbeats: a small record written to the flow's **source** every
//! `heartbeats_interval_ms`, into a topic the flow replicates like any other
//! (MirrorMaker 2's `heartbeats` topic, KIP-382 `MirrorHeartbeatConnector`).
//! An idle topic then no longer looks like a broken replication: the
//! destination's acknowledgement of each heartbeat moves
//! `strait_heartbeat_age_seconds` and `strait_heartbeat_latency_seconds`
//! (see [`super::metrics::Metrics::acked_batch`]).
//!
//! The record is written by a plain producer (no producer id, acks=all), so
//! provenance treats it as produced on the source: a flow forwards it, and a
//! two-way pair's reverse flow skips the copy (it carries strait's registered
//! producer id). The topic name is a normal one (strait never replicates
//! `__` names). Only the replication group's leader writes. A source that
//! refuses (no CREATE or WRITE, a create policy) turns heartbeats off with one
//! warning; replication goes on.

use std::sync::Arc;

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::log;
use super::membership::Membership;
use crate::client::{code, Client, ClientError, NewTopic};
use crate::config::Config;

/// `retention.ms` of a heartbeat topic strait creates: one day (heartbeats
/// only matter while fresh).
pub const RETENTION_MS: &str = "86400000";

/// What one heartbeat says: key and value of the record.
pub fn record(flow: &str, source_alias: &str, now_ms: u64) -> (Bytes, Bytes) {
    let value = serde_json::json!({
        "source": source_alias,
        "flow": flow,
        "timestamp_ms": now_ms,
    });
    (Bytes::from(flow.to_string()), Bytes::from(value.to_string()))
}

/// Why heartbeats cannot go on, when the source refused `op` (`DESCRIBE`,
/// `CREATE` or `WRITE`) for good: the permission or setting a human must
/// change. `None`: try again next time.
pub fn refusal(e: &ClientError, op: &str) -> Option<String> {
    const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
    const INVALID_REPLICATION_FACTOR: i16 = 38;
    const INVALID_CONFIG: i16 = 40;
    const POLICY_VIOLATION: i16 = 44;
    let c = e.code()?;
    let creating = op == "CREATE";
    match c {
        TOPIC_AUTHORIZATION_FAILED | CLUSTER_AUTHORIZATION_FAILED => Some(format!(
            "the source denies {op} on the heartbeat topic ({}); heartbeats need DESCRIBE, CREATE and WRITE on it: grant {op}{}",
            crate::client::error_name(c),
            if creating { " (on the topic or the cluster), or create the topic yourself" } else { " on the topic" }
        )),
        POLICY_VIOLATION | INVALID_REPLICATION_FACTOR | INVALID_CONFIG if creating => Some(format!(
            "the source refuses to create the heartbeat topic ({}): create it yourself (1 partition) or set replication_factor",
            crate::client::error_name(c)
        )),
        _ => None,
    }
}

/// Makes sure `topic` exists on the source (1 partition, short retention);
/// true when it was created. An error comes with the operation refused.
async fn ensure_topic(src: &Client, topic: &str, replication_factor: i16) -> Result<bool, (ClientError, &'static str)> {
    let name = topic.to_string();
    let md = src
        .refresh_metadata(Some(std::slice::from_ref(&name)))
        .await
        .map_err(|e| (e, "DESCRIBE"))?;
    match md.topics.get(topic).map(|t| t.error_code) {
        Some(code::NONE) => return Ok(false),
        Some(code::UNKNOWN_TOPIC_OR_PARTITION) | None => {}
        Some(c) => return Err((ClientError::kafka("Metadata", "source", topic, c, None), "DESCRIBE")),
    }
    info!(topic, "creating the heartbeat topic on the source");
    src.create_topics(
        &[NewTopic {
            name,
            partitions: 1,
            replication_factor,
            configs: vec![("retention.ms".into(), RETENTION_MS.into())],
        }],
        30_000,
        true,
    )
    .await
    .map_err(|e| (e, "CREATE"))?;
    Ok(true)
}

/// Writes a heartbeat of flow `cfg` every `heartbeats_interval_ms` while this
/// process leads the flow's replication group, until `stop` turns true or the
/// source refuses. `created` is notified when the topic was created (a topic
/// refresh picks it up at once).
pub async fn run(
    cfg: Arc<Config>,
    src: Arc<Client>,
    membership: Arc<Membership>,
    created: Arc<tokio::sync::Notify>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Some(settings) = cfg.heartbeats.clone() else {
        return;
    };
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut topic_ready = false;
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if !membership.is_leader() {
            topic_ready = false; // a new leader checks again
            continue;
        }
        if !topic_ready {
            match ensure_topic(&src, &settings.topic, cfg.topics.replication_factor).await {
                Ok(new) => {
                    topic_ready = true;
                    if new {
                        created.notify_one();
                    }
                }
                Err((e, op)) => {
                    if let Some(why) = refusal(&e, op) {
                        warn!(topic = %settings.topic, error = %e, "heartbeats are off: {why}; replication goes on");
                        return;
                    }
                    if !std::mem::replace(&mut failing, true) {
                        warn!(topic = %settings.topic, error = %e, "cannot create the heartbeat topic on the source; will retry");
                    }
                    continue;
                }
            }
        }
        let now = super::metrics::now_ms();
        let rec = record(&cfg.name, &cfg.source.alias, now);
        match log::append(&src, &settings.topic, &[rec], None).await {
            Ok(_) => {
                if std::mem::replace(&mut failing, false) {
                    info!(topic = %settings.topic, "heartbeats written again");
                }
                debug!(topic = %settings.topic, "heartbeat written");
            }
            Err(e) => {
                if let Some(why) = refusal(&e, "WRITE") {
                    warn!(topic = %settings.topic, error = %e, "heartbeats are off: {why}; replication goes on");
                    return;
                }
                if e.code() == Some(code::UNKNOWN_TOPIC_OR_PARTITION) {
                    topic_ready = false; // deleted under strait: create it again
                }
                if !std::mem::replace(&mut failing, true) {
                    warn!(topic = %settings.topic, error = %e, "cannot write a heartbeat to the source; will retry");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_names_flow_source_and_time() {
        let (k, v) = record("east-to-west", "east", 1_700_000_000_123);
        assert_eq!(&k[..], b"east-to-west");
        let v: serde_json::Value = serde_json::from_slice(&v).unwrap();
        assert_eq!(v["source"], "east");
        assert_eq!(v["flow"], "east-to-west");
        assert_eq!(v["timestamp_ms"], 1_700_000_000_123u64);
    }

    #[test]
    fn refusals_name_the_missing_permission() {
        let e = |c| ClientError::kafka("CreateTopics", "b", "topic heartbeats", c, None);
        assert!(refusal(&e(29), "CREATE").unwrap().contains("grant CREATE"));
        assert!(refusal(&e(31), "CREATE").unwrap().contains("grant CREATE"));
        assert!(refusal(&e(29), "WRITE").unwrap().contains("grant WRITE"));
        assert!(refusal(&e(29), "DESCRIBE").unwrap().contains("grant DESCRIBE"));
        assert!(refusal(&e(44), "CREATE").unwrap().contains("refuses to create"));
        assert_eq!(refusal(&e(44), "WRITE"), None);
        assert_eq!(refusal(&e(7), "CREATE"), None, "a timeout is retried");
        assert_eq!(refusal(&ClientError::Closed { broker: "b".into() }, "WRITE"), None);
    }
}
