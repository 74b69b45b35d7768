//! The failover record: what a failover found, kept **on the destination**
//! (compacted topic `__strait.<name>.failover`, one record), where it is
//! readable after an unplanned failover, when the source is gone.
//!
//! Per destination partition it holds the destination's log end (failback
//! copies back only what producers wrote after it) and the last committed
//! position (the first source offset the checkpoint does not vouch for, and
//! where on the destination it would have landed), from which failback finds
//! the records the source holds and the destination never received
//! ([`super::diverged`]).
//!
//! An unplanned failover also marks the replication as failed over: `strait
//! run` of the old direction refuses to start ([`refuse_if_failed_over`])
//! until `strait failover --reset` clears the mark, so a restarted process
//! cannot copy the old source's stale records over what producers now write
//! on the destination.

use serde::{Deserialize, Serialize};

use crate::client::{Client, ClientError};
use crate::config::Config;

const KEY: &str = "failover";

/// One destination partition at failover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionAtFailover {
    /// Source topic.
    pub src_topic: String,
    /// Destination topic.
    pub dst_topic: String,
    /// Partition.
    pub partition: i32,
    /// The destination's log end at failover.
    pub dst_end: i64,
    /// The last committed position: the next source offset (-1: none).
    pub src_next: i64,
    /// Where that source offset would land on the destination (-1: unknown).
    pub dst_next: i64,
}

/// What a failover recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverRecord {
    /// `planned` (the source answered) or `unplanned`.
    pub kind: String,
    /// When, in ms since the epoch.
    pub at_ms: i64,
    /// The flow failed over.
    pub flow: String,
    /// Every replicated destination partition.
    pub partitions: Vec<PartitionAtFailover>,
    /// Still in force: `strait run` of the old direction refuses (unplanned
    /// failovers), until `strait failover --reset`.
    pub active: bool,
    /// Failback found and copied the diverged records already.
    #[serde(default)]
    pub diverged_copied: bool,
}

impl FailoverRecord {
    /// The record of one partition.
    pub fn partition(&self, dst_topic: &str, partition: i32) -> Option<&PartitionAtFailover> {
        self.partitions
            .iter()
            .find(|p| p.dst_topic == dst_topic && p.partition == partition)
    }
}

/// The failover record of flow `cfg` on its destination, if any.
pub async fn read(cfg: &Config, dst: &Client) -> Result<Option<FailoverRecord>, ClientError> {
    Ok(super::log::read_single(dst, &cfg.failover_topic(), KEY)
        .await?
        .and_then(|v| serde_json::from_slice(&v).ok()))
}

/// Writes the failover record of flow `cfg` on its destination.
pub async fn write(cfg: &Config, dst: &Client, record: &FailoverRecord) -> Result<(), ClientError> {
    let value = serde_json::to_vec(record).map_err(|e| ClientError::Invalid {
        what: "failover record",
        reason: e.to_string(),
    })?;
    super::log::write_single(dst, &cfg.failover_topic(), cfg.topics.replication_factor, KEY, value).await
}

/// The error `strait run` stops with when flow `cfg` was failed over
/// (unplanned) and not reset since.
pub async fn refuse_if_failed_over(cfg: &Config, dst: &Client) -> Result<(), String> {
    match read(cfg, dst).await {
        Ok(Some(r)) if r.active => Err(format!(
            "flow {} was failed over ({}, {} UTC; recorded in topic {} on the destination): the destination is where producers write now, so this direction must not resume. Fail back with `strait failback`, then clear the mark with `strait failover --reset --config ...` to replicate this way again",
            cfg.name,
            r.kind,
            utc(r.at_ms),
            cfg.failover_topic()
        )),
        _ => Ok(()),
    }
}

/// `YYYY-MM-DD HH:MM:SS` of ms since the epoch.
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Now, in ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc(1_796_643_296_000), "2026-12-07 11:34:56");
    }

    #[test]
    fn record_round_trips_through_json() {
        let r = FailoverRecord {
            kind: "unplanned".into(),
            at_ms: 1,
            flow: "f".into(),
            partitions: vec![PartitionAtFailover {
                src_topic: "a".into(),
                dst_topic: "b".into(),
                partition: 2,
                dst_end: 10,
                src_next: 7,
                dst_next: 9,
            }],
            active: true,
            diverged_copied: false,
        };
        let back: FailoverRecord = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.partition("b", 2).map(|p| p.dst_end), Some(10));
        assert!(back.partition("b", 1).is_none());
    }
}
