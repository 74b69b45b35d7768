//! Typed configuration, read from TOML.
//!
//! A file describes clusters and the flows between them. Two forms:
//! - **one flow**: `[source]` and `[destination]` tables, the flow's keys at
//!   the top level (the form every earlier release read);
//! - **many flows**: `[clusters.<alias>]` tables and `[[flows]]` tables naming
//!   a source and a destination alias; engine keys at the top level are
//!   defaults for every flow, the same keys in a flow override them.
//!
//! Either way the result is a [`Document`]: the clusters, every flow resolved
//! into a [`Config`] of sections ([`flow`]), and the process-wide settings.
//! Vocabulary follows MirrorMaker 2 where it has a word for the thing
//! (`topics`, `topics_exclude`, cluster aliases, replication policy). Defaults
//! live in one place ([`defaults`]). Unknown keys and bad values are refused
//! with the key, the line and what is allowed.

mod cluster;
mod flow;
mod raw;
mod resolve;
mod security;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use regex::Regex;
use toml::Spanned;

use crate::client::ClientConfig;
pub use cluster::ClusterConfig;
pub use flow::{
    AutoFailover, Config, ExactlyOnce, FetchSettings, GroupSettings, HeartbeatSettings, MemberSettings, Mm2Takeover,
    OpsSettings, ProduceSettings, Rename, StartFrom, TopicSettings,
};
use raw::{RawEngine, RawFile, ENGINE_KEYS, TOP_LEVEL_KEYS};
use resolve::{valid_name, Resolver};
pub use security::{SaslConfig, TlsConfig};

/// Errors reading or validating a config file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {reason}")]
    Read { path: String, reason: String },
    /// TOML syntax, an unknown key or a value of the wrong type (the message names key and line).
    #[error("config {path}: {message}")]
    Parse { path: String, message: String },
    /// A value that parses but is not allowed.
    #[error("config {path}, line {line}: `{key}` {problem}")]
    Invalid {
        path: String,
        line: usize,
        key: String,
        problem: String,
    },
}

/// Every default, in one place.
pub mod defaults {
    /// `name` of the one-flow form.
    pub const NAME: &str = "strait";
    /// `topics`: every topic.
    pub const TOPICS: &str = ".*";
    /// `refresh_interval_ms`.
    pub const REFRESH_INTERVAL_MS: u64 = 10_000;
    /// `checkpoint_interval_ms`.
    pub const CHECKPOINT_INTERVAL_MS: u64 = 1_000;
    /// `max_buffered_bytes`: 16 MiB (measured peak RSS: `docs/design.md`).
    pub const MAX_BUFFERED_BYTES: usize = 16 * 1024 * 1024;
    /// How far an unset `max_buffered_bytes` grows with the measured
    /// bandwidth-delay product (a WAN): 128 MiB.
    pub const MAX_BUFFERED_BYTES_CEILING: usize = 128 * 1024 * 1024;
    /// `fetch_max_bytes`.
    pub const FETCH_MAX_BYTES: usize = 16 * 1024 * 1024;
    /// `fetch_partition_max_bytes`.
    pub const FETCH_PARTITION_MAX_BYTES: usize = 4 * 1024 * 1024;
    /// `fetch_max_wait_ms`.
    pub const FETCH_MAX_WAIT_MS: u64 = 200;
    /// `max_in_flight_per_partition`: the broker's idempotence window.
    pub const MAX_IN_FLIGHT: usize = 5;
    /// `max_request_bytes`.
    pub const MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;
    /// `coalesce_below_bytes`: one-record batches of ~1 KiB records, not the
    /// 16 KiB batches of a default Java producer, which stay on the raw fast path.
    pub const COALESCE_BELOW_BYTES: usize = 2048;
    /// `max_decompressed_batch_bytes`.
    pub const MAX_DECOMPRESSED_BATCH_BYTES: usize = crate::batch::inflate::DEFAULT_MAX_DECOMPRESSED_BYTES;
    /// `replication_factor`: the destination's default.
    pub const REPLICATION_FACTOR: i16 = -1;
    /// `group_sync_interval_ms`.
    pub const GROUP_SYNC_INTERVAL_MS: u64 = 10_000;
    /// `transaction_interval_ms`.
    pub const TRANSACTION_INTERVAL_MS: u64 = 1_000;
    /// `transaction_max_bytes`.
    pub const TRANSACTION_MAX_BYTES: usize = 32 * 1024 * 1024;
    /// `transaction_timeout_ms`.
    pub const TRANSACTION_TIMEOUT_MS: u64 = 60_000;
    /// `readiness_timeout_ms`.
    pub const READINESS_TIMEOUT_MS: u64 = 30_000;
    /// `session_timeout_ms`: a killed member's partitions move after this long.
    pub const SESSION_TIMEOUT_MS: u64 = 10_000;
    /// `heartbeat_interval_ms`.
    pub const HEARTBEAT_INTERVAL_MS: u64 = 1_000;
    /// `rebalance_timeout_ms`.
    pub const REBALANCE_TIMEOUT_MS: u64 = 30_000;
    /// `heartbeats`: on, as MirrorMaker 2's `emit.heartbeats.enabled`.
    pub const HEARTBEATS: bool = true;
    /// `heartbeats_topic`: MirrorMaker 2's name.
    pub const HEARTBEATS_TOPIC: &str = "heartbeats";
    /// `heartbeats_interval_ms`: MirrorMaker 2's `emit.heartbeats.interval.seconds`
    /// (1 s). One tiny record a second per flow; the age gauge resolves a stall
    /// within seconds.
    pub const HEARTBEATS_INTERVAL_MS: u64 = 1_000;

    /// `instance_id`: the host name (a pod's name on Kubernetes), else "strait".
    pub fn instance_id() -> String {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "strait".to_string())
    }
}

/// A whole config file: clusters, flows and the process-wide settings.
#[derive(Debug, Clone)]
pub struct Document {
    /// Clusters by alias.
    pub clusters: BTreeMap<String, ClusterConfig>,
    /// The flows, in file order.
    pub flows: Vec<Config>,
    /// Process-wide settings (also in every flow's `ops`).
    pub ops: OpsSettings,
}

impl Document {
    /// Sets this process's instance id in every flow's replication group
    /// (`--instance-id`).
    pub fn set_instance_id(&mut self, id: &str) -> Result<(), String> {
        valid_name(id).map_err(|p| format!("--instance-id {p}"))?;
        self.ops.instance_id = id.to_string();
        for f in &mut self.flows {
            f.set_instance_id(id);
        }
        Ok(())
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates config text; `path` is used in error messages.
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_string(),
            message: security::redact(&misplaced_key_hint(e.to_string().trim_end())).replace('\n', "\n  "),
        })?;
        Resolver { text, path }.document(raw)
    }

    /// A document of one flow (its two clusters, its process settings).
    pub fn of(flow: Config) -> Self {
        let clusters = BTreeMap::from([
            (flow.source.alias.clone(), flow.source.clone()),
            (flow.destination.alias.clone(), flow.destination.clone()),
        ]);
        Self {
            clusters,
            ops: flow.ops.clone(),
            flows: vec![flow],
        }
    }

    /// The flow named `name`, or the only flow when `name` is `None`.
    pub fn flow(&self, name: Option<&str>) -> Result<&Config, String> {
        let names = || {
            self.flows
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match name {
            Some(n) => self
                .flows
                .iter()
                .find(|f| f.name == n)
                .ok_or_else(|| format!("no flow {n:?}; the config has: {}", names())),
            None if self.flows.len() == 1 => Ok(&self.flows[0]),
            None => Err(format!(
                "the config has {} flows ({}): name one with --flow",
                self.flows.len(),
                names()
            )),
        }
    }
}

impl Config {
    /// Reads a config file holding one flow (see [`Document::load`] for many).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let doc = Document::load(path)?;
        Self::only(doc, &path.display().to_string())
    }

    /// Parses config text holding one flow; `path` is used in error messages.
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        Self::only(Document::parse(text, path)?, path)
    }

    fn only(doc: Document, path: &str) -> Result<Self, ConfigError> {
        match doc.flow(None) {
            Ok(f) => Ok(f.clone()),
            Err(message) => Err(ConfigError::Parse {
                path: path.to_string(),
                message,
            }),
        }
    }
}

/// A `topics`/`groups` regex as the user wrote it (parsing anchors it as `^(?:…)$`).
pub fn pattern_text(r: &Regex) -> &str {
    let r = r.as_str();
    r.strip_prefix("^(?:").and_then(|r| r.strip_suffix(")$")).unwrap_or(r)
}

/// Produce `timeout_ms` for a destination: two thirds of its request timeout.
fn produce_timeout_ms(destination: &ClusterConfig) -> i32 {
    (destination.request_timeout_ms * 2 / 3).min(i32::MAX as u64) as i32
}

/// The annotated example configuration shipped with strait (active-passive).
pub const EXAMPLE: &str = include_str!("examples/active-passive.toml");

/// The annotated examples by topology: `active-passive`, `active-active`, `aggregation`.
pub const EXAMPLES: &[(&str, &str)] = &[
    ("active-passive", EXAMPLE),
    ("active-active", include_str!("examples/active-active.toml")),
    ("aggregation", include_str!("examples/aggregation.toml")),
];

/// The annotated example of `topology`.
pub fn example(topology: &str) -> Option<&'static str> {
    EXAMPLES.iter().find(|(t, _)| *t == topology).map(|(_, text)| *text)
}

fn line_of(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].matches('\n').count() + 1
}

/// TOML puts every key after a `[table]` header into that table: a top-level
/// key written below a cluster table reads as an unknown key of that table.
/// Says so, with the fix.
fn misplaced_key_hint(message: &str) -> String {
    let key = message
        .split("unknown field `")
        .nth(1)
        .and_then(|rest| rest.split('`').next());
    match key {
        Some(k)
            if (ENGINE_KEYS.contains(&k) || TOP_LEVEL_KEYS.contains(&k)) && message.contains("`bootstrap_servers`") =>
        {
            format!(
                "{message}\n`{k}` is a top-level key: move it above the cluster tables ([source], [destination], [clusters.*]; in TOML, every key below a [table] header belongs to that table)"
            )
        }
        _ => message.to_string(),
    }
}

#[cfg(test)]
mod tests;
