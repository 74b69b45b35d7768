//! Typed configuration of a replication, read from TOML.
//!
//! Vocabulary follows MirrorMaker 2 where it has a word for the thing
//! (`topics`, `topics_exclude`, source/destination clusters, replication
//! policy). Defaults live in one place: the `default_*` functions below. Unknown
//! keys and bad values are rejected with the key, the line and what is allowed.

mod security;

use std::path::Path;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use crate::client::{Backoff, ClientConfig, ConnectionConfig};
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

/// Connection settings of one cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Short name of the cluster, used by `rename = "prefix"` (MM2's cluster alias)
    /// and in messages (default: "source" / "destination").
    #[serde(default)]
    pub alias: String,
    /// Comma-separated `host:port` list.
    pub bootstrap_servers: Spanned<String>,
    /// `client.id` sent to the brokers.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Time to wait for any response before the connection is closed and the request retried.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// TCP connect + ApiVersions handshake timeout.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Largest response frame accepted, checked before allocating.
    #[serde(default = "default_max_frame_bytes")]
    pub max_frame_bytes: usize,
    /// `[<cluster>.tls]`: TLS to the brokers (absent: plaintext).
    #[serde(default)]
    pub tls: Option<Spanned<TlsConfig>>,
    /// `[<cluster>.sasl]`: SASL authentication (absent: none).
    #[serde(default)]
    pub sasl: Option<SaslConfig>,
}

/// Where to start a partition that has no checkpoint yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    /// The oldest retained record (default).
    Earliest,
    /// Only records produced after strait starts.
    Latest,
}

/// How destination topic names derive from source names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rename {
    /// Same name (default).
    Identity,
    /// `{source alias}.{topic}` (MM2's DefaultReplicationPolicy).
    Prefix,
    /// A template with `{topic}` and optionally `{source}`.
    Template(String),
    /// The reverse of `Prefix` (failback): `{alias}.{topic}` becomes `{topic}`.
    StripPrefix(String),
}

impl Rename {
    /// Destination name of `topic`.
    pub fn apply(&self, source_alias: &str, topic: &str) -> String {
        match self {
            Rename::Identity => topic.to_string(),
            Rename::Prefix => format!("{source_alias}.{topic}"),
            Rename::Template(t) => t.replace("{source}", source_alias).replace("{topic}", topic),
            Rename::StripPrefix(p) => topic.strip_prefix(&format!("{p}.")).unwrap_or(topic).to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_name")]
    name: Spanned<String>,
    source: ClusterConfig,
    destination: ClusterConfig,
    #[serde(default = "default_topics")]
    topics: Vec<Spanned<String>>,
    #[serde(default)]
    topics_exclude: Vec<Spanned<String>>,
    #[serde(default = "default_rename")]
    rename: Spanned<String>,
    #[serde(default = "default_start_from")]
    start_from: StartFrom,
    #[serde(default = "default_refresh_interval_ms")]
    refresh_interval_ms: u64,
    #[serde(default = "default_checkpoint_interval_ms")]
    checkpoint_interval_ms: u64,
    #[serde(default = "default_max_buffered_bytes")]
    max_buffered_bytes: Spanned<usize>,
    #[serde(default = "default_fetch_max_bytes")]
    fetch_max_bytes: Spanned<usize>,
    #[serde(default = "default_fetch_partition_max_bytes")]
    fetch_partition_max_bytes: usize,
    #[serde(default = "default_fetch_max_wait_ms")]
    fetch_max_wait_ms: u64,
    #[serde(default = "default_max_in_flight")]
    max_in_flight_per_partition: Spanned<usize>,
    #[serde(default = "default_max_request_bytes")]
    max_request_bytes: usize,
    #[serde(default = "default_coalesce_below_bytes")]
    coalesce_below_bytes: usize,
    #[serde(default = "default_max_decompressed_batch_bytes")]
    max_decompressed_batch_bytes: Spanned<usize>,
    #[serde(default = "default_replication_factor")]
    replication_factor: i16,
    #[serde(default = "default_true")]
    sync_topic_configs: bool,
    #[serde(default)]
    metrics_address: Option<Spanned<String>>,
    #[serde(default = "default_readiness_timeout_ms")]
    readiness_timeout_ms: Spanned<u64>,
    #[serde(default)]
    groups: Vec<Spanned<String>>,
    #[serde(default)]
    groups_exclude: Vec<Spanned<String>>,
    #[serde(default = "default_group_sync_interval_ms")]
    group_sync_interval_ms: u64,
    #[serde(default)]
    exactly_once: bool,
    #[serde(default = "default_transaction_interval_ms")]
    transaction_interval_ms: u64,
    #[serde(default = "default_transaction_max_bytes")]
    transaction_max_bytes: usize,
    #[serde(default = "default_transaction_timeout_ms")]
    transaction_timeout_ms: Spanned<u64>,
}

/// A validated replication config.
#[derive(Debug, Clone)]
pub struct Config {
    /// Replication name: checkpoint group `strait-{name}`, offset-map topic `__strait.{name}.offsets`.
    pub name: String,
    /// Source cluster.
    pub source: ClusterConfig,
    /// Destination cluster.
    pub destination: ClusterConfig,
    /// Topics to replicate: a source topic is replicated when one regex matches its whole name.
    pub topics: Vec<Regex>,
    /// Topics never replicated, even when matched by `topics`.
    pub topics_exclude: Vec<Regex>,
    /// Destination naming.
    pub rename: Rename,
    /// Start of partitions without a checkpoint.
    pub start_from: StartFrom,
    /// How often source topics are listed and destination topics reconciled.
    pub refresh_interval: Duration,
    /// How often acknowledged positions are committed to the destination.
    pub checkpoint_interval: Duration,
    /// Cap on record bytes held between fetch and destination acknowledgement.
    pub max_buffered_bytes: usize,
    /// `max_bytes` of one Fetch request.
    pub fetch_max_bytes: usize,
    /// Per-partition `partition_max_bytes` of a Fetch request.
    pub fetch_partition_max_bytes: usize,
    /// Fetch long-poll wait.
    pub fetch_max_wait: Duration,
    /// Produce batches of one partition in flight at once (the broker's idempotence window is 5).
    pub max_in_flight_per_partition: usize,
    /// Target size of one Produce request.
    pub max_request_bytes: usize,
    /// Queued source batches smaller than this are merged into larger ones before
    /// producing (re-encoded; 0 turns coalescing off).
    pub coalesce_below_bytes: usize,
    /// Cap on the uncompressed size of one batch on the slow paths (re-encoding,
    /// coalescing, up-conversion), which decompress: a small compressed batch can
    /// inflate a thousandfold (a broken or hostile source's "memory bomb"), and
    /// decompression stops at the cap. A batch over it that must be re-encoded
    /// stops its partition; one that was only to be coalesced is forwarded raw.
    /// The default, 256 MiB, is hundreds of times a default broker's largest batch
    /// (`message.max.bytes`, 1 MiB compressed), yet a re-encode at the cap holds
    /// about three times it (records, re-encoded records, compressed output).
    pub max_decompressed_batch_bytes: usize,
    /// Replication factor of topics strait creates (-1: the destination's default).
    pub replication_factor: i16,
    /// Copy topic configs and their changes from source to destination.
    pub sync_topic_configs: bool,
    /// `host:port` of the Prometheus/health HTTP endpoint (none: off).
    pub metrics_address: Option<std::net::SocketAddr>,
    /// `/readyz` fails once the destination has not acknowledged a checkpoint,
    /// or the source has not answered, for this long (idle or not).
    pub readiness_timeout: Duration,
    /// Consumer groups whose offsets are translated onto the destination (empty: off).
    pub groups: Vec<Regex>,
    /// Groups never synced.
    pub groups_exclude: Vec<Regex>,
    /// How often group offsets are synced.
    pub group_sync_interval: Duration,
    /// Write batches and source positions in destination transactions, so
    /// `read_committed` consumers see every record exactly once, even across crashes.
    pub exactly_once: bool,
    /// Exactly-once: a transaction commits at least this often.
    pub transaction_interval: Duration,
    /// Exactly-once: a transaction commits once it holds this many batch bytes.
    pub transaction_max_bytes: usize,
    /// Exactly-once: the coordinator aborts a transaction left open this long.
    pub transaction_timeout_ms: i32,
}

fn default_client_id() -> String {
    "strait".into()
}
fn default_request_timeout_ms() -> u64 {
    30_000
}
fn default_connect_timeout_ms() -> u64 {
    10_000
}
fn default_max_frame_bytes() -> usize {
    crate::protocol::DEFAULT_MAX_FRAME_BYTES
}
fn default_name() -> Spanned<String> {
    Spanned::new(0..0, "strait".into())
}
fn default_topics() -> Vec<Spanned<String>> {
    vec![Spanned::new(0..0, ".*".into())]
}
fn default_rename() -> Spanned<String> {
    Spanned::new(0..0, "identity".into())
}
fn default_start_from() -> StartFrom {
    StartFrom::Earliest
}
fn default_refresh_interval_ms() -> u64 {
    10_000
}
fn default_checkpoint_interval_ms() -> u64 {
    1_000
}
fn default_max_buffered_bytes() -> Spanned<usize> {
    Spanned::new(0..0, 16 * 1024 * 1024)
}
fn default_fetch_max_bytes() -> Spanned<usize> {
    Spanned::new(0..0, 16 * 1024 * 1024)
}
fn default_fetch_partition_max_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_fetch_max_wait_ms() -> u64 {
    200
}
fn default_max_in_flight() -> Spanned<usize> {
    Spanned::new(0..0, 5)
}
fn default_max_request_bytes() -> usize {
    8 * 1024 * 1024
}
fn default_readiness_timeout_ms() -> Spanned<u64> {
    Spanned::new(0..0, 30_000)
}
fn default_group_sync_interval_ms() -> u64 {
    10_000
}
fn default_transaction_interval_ms() -> u64 {
    1_000
}
fn default_transaction_max_bytes() -> usize {
    32 * 1024 * 1024
}
fn default_transaction_timeout_ms() -> Spanned<u64> {
    Spanned::new(0..0, 60_000)
}
fn default_coalesce_below_bytes() -> usize {
    // One-record batches of ~1 KiB records, not the 16 KiB batches of a default
    // Java producer: those stay on the raw fast path.
    2048
}
fn default_max_decompressed_batch_bytes() -> Spanned<usize> {
    Spanned::new(0..0, crate::batch::inflate::DEFAULT_MAX_DECOMPRESSED_BYTES)
}
fn default_replication_factor() -> i16 {
    -1
}
fn default_true() -> bool {
    true
}

impl ClusterConfig {
    /// How messages name this cluster in its `role` ("source" or "destination"):
    /// `source cluster "east"`, or `source cluster` when the alias is the role.
    pub fn label(&self, role: &str) -> String {
        if self.alias.is_empty() || self.alias == role {
            format!("{role} cluster")
        } else {
            format!("{role} cluster {:?}", self.alias)
        }
    }

    /// Client settings for this cluster.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new(self.bootstrap_servers.get_ref());
        c.connection = ConnectionConfig {
            client_id: self.client_id.clone(),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            max_frame_bytes: self.max_frame_bytes,
        };
        c.connect_timeout = Duration::from_millis(self.connect_timeout_ms);
        c.backoff = Backoff::default();
        c.tls = self.tls.as_ref().and_then(|t| t.get_ref().settings());
        c.sasl = self.sasl.as_ref().and_then(|s| s.resolved.clone());
        c
    }
}

impl Config {
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
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_string(),
            message: security::redact(&misplaced_key_hint(e.to_string().trim_end())).replace('\n', "\n  "),
        })?;
        let invalid = |span: std::ops::Range<usize>, key: &str, problem: String| ConfigError::Invalid {
            path: path.to_string(),
            line: line_of(text, span.start),
            key: key.to_string(),
            problem,
        };
        let regexes = |list: &[Spanned<String>], key: &str| -> Result<Vec<Regex>, ConfigError> {
            list.iter()
                .map(|s| {
                    Regex::new(&format!("^(?:{})$", s.get_ref()))
                        .map_err(|e| invalid(s.span(), key, format!("has an invalid regex {:?}: {e}", s.get_ref())))
                })
                .collect()
        };
        let topics = regexes(&raw.topics, "topics")?;
        let topics_exclude = regexes(&raw.topics_exclude, "topics_exclude")?;
        let groups = regexes(&raw.groups, "groups")?;
        let groups_exclude = regexes(&raw.groups_exclude, "groups_exclude")?;
        let rename = match raw.rename.get_ref().as_str() {
            "identity" => Rename::Identity,
            "prefix" => Rename::Prefix,
            t if t.contains("{topic}") => Rename::Template(t.to_string()),
            other => {
                return Err(invalid(
                    raw.rename.span(),
                    "rename",
                    format!("is {other:?}; allowed: \"identity\", \"prefix\", or a template containing {{topic}} (and optionally {{source}})"),
                ))
            }
        };
        let name = raw.name.get_ref().clone();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
            return Err(invalid(
                raw.name.span(),
                "name",
                format!("is {name:?}; allowed: letters, digits, '.', '_', '-'"),
            ));
        }
        for (key, c) in [("source", &raw.source), ("destination", &raw.destination)] {
            ClientConfig::new(c.bootstrap_servers.get_ref())
                .validate()
                .map_err(|e| {
                    invalid(
                        c.bootstrap_servers.span(),
                        &format!("{key}.bootstrap_servers"),
                        format!("is invalid: {e}"),
                    )
                })?;
        }
        for (key, c) in [("source", &mut raw.source), ("destination", &mut raw.destination)] {
            security::validate(key, c.tls.as_ref(), c.sasl.as_mut(), &invalid)?;
            if c.alias.is_empty() {
                c.alias = key.to_string();
            }
        }
        if !(1..=5).contains(raw.max_in_flight_per_partition.get_ref()) {
            return Err(invalid(
                raw.max_in_flight_per_partition.span(),
                "max_in_flight_per_partition",
                format!(
                    "is {}; allowed: 1 to 5 (the broker's idempotent-producer window)",
                    raw.max_in_flight_per_partition.get_ref()
                ),
            ));
        }
        let buffered = *raw.max_buffered_bytes.get_ref();
        let fetch = *raw.fetch_max_bytes.get_ref();
        if buffered < 1024 * 1024 {
            return Err(invalid(
                raw.max_buffered_bytes.span(),
                "max_buffered_bytes",
                format!("is {buffered}; allowed: at least 1048576"),
            ));
        }
        if fetch > buffered {
            return Err(invalid(
                raw.fetch_max_bytes.span(),
                "fetch_max_bytes",
                format!("is {fetch}, above max_buffered_bytes ({buffered}); allowed: at most max_buffered_bytes"),
            ));
        }
        let max_plain = *raw.max_decompressed_batch_bytes.get_ref();
        if max_plain < 1024 * 1024 {
            return Err(invalid(
                raw.max_decompressed_batch_bytes.span(),
                "max_decompressed_batch_bytes",
                format!("is {max_plain}; allowed: at least 1048576 (a default broker's largest batch)"),
            ));
        }
        let txn_timeout = *raw.transaction_timeout_ms.get_ref();
        if !(1_000..=900_000).contains(&txn_timeout) || txn_timeout <= raw.transaction_interval_ms.saturating_mul(2) {
            return Err(invalid(
                raw.transaction_timeout_ms.span(),
                "transaction_timeout_ms",
                format!(
                    "is {txn_timeout}; allowed: 1000 to 900000 (the broker's default transaction.max.timeout.ms) \
                     and more than twice transaction_interval_ms ({})",
                    raw.transaction_interval_ms
                ),
            ));
        }
        let metrics_address = match &raw.metrics_address {
            None => None,
            Some(a) => Some(a.get_ref().parse::<std::net::SocketAddr>().map_err(|_| {
                invalid(
                    a.span(),
                    "metrics_address",
                    format!(
                        "is {:?}; allowed: an IP address and port such as \"0.0.0.0:9464\"",
                        a.get_ref()
                    ),
                )
            })?),
        };
        let readiness = *raw.readiness_timeout_ms.get_ref();
        if readiness < 1_000 {
            return Err(invalid(
                raw.readiness_timeout_ms.span(),
                "readiness_timeout_ms",
                format!("is {readiness}; allowed: at least 1000"),
            ));
        }
        Ok(Config {
            name,
            source: raw.source,
            destination: raw.destination,
            topics,
            topics_exclude,
            rename,
            start_from: raw.start_from,
            refresh_interval: Duration::from_millis(raw.refresh_interval_ms.max(100)),
            checkpoint_interval: Duration::from_millis(raw.checkpoint_interval_ms.max(10)),
            max_buffered_bytes: buffered,
            fetch_max_bytes: fetch,
            fetch_partition_max_bytes: raw.fetch_partition_max_bytes.min(fetch),
            fetch_max_wait: Duration::from_millis(raw.fetch_max_wait_ms),
            max_in_flight_per_partition: *raw.max_in_flight_per_partition.get_ref(),
            max_request_bytes: raw.max_request_bytes.max(64 * 1024),
            coalesce_below_bytes: raw.coalesce_below_bytes,
            max_decompressed_batch_bytes: max_plain,
            replication_factor: raw.replication_factor,
            sync_topic_configs: raw.sync_topic_configs,
            metrics_address,
            readiness_timeout: Duration::from_millis(readiness),
            groups,
            groups_exclude,
            group_sync_interval: Duration::from_millis(raw.group_sync_interval_ms.max(100)),
            exactly_once: raw.exactly_once,
            transaction_interval: Duration::from_millis(raw.transaction_interval_ms.max(10)),
            transaction_max_bytes: raw.transaction_max_bytes.max(64 * 1024),
            transaction_timeout_ms: txn_timeout as i32,
        })
    }

    /// The consumer group on the destination that holds strait's source positions.
    pub fn checkpoint_group(&self) -> String {
        format!("strait-{}", self.name)
    }

    /// The `transactional.id` of exactly-once mode: one per replication name, so a
    /// second instance of the same replication fences the first.
    pub fn transactional_id(&self) -> String {
        format!("strait-{}", self.name)
    }

    /// The destination topic holding the source→destination offset map.
    pub fn offset_map_topic(&self) -> String {
        format!("__strait.{}.offsets", self.name)
    }

    /// True when source topic `name` is to be replicated. Internal topics and every
    /// topic whose name starts with `__` (Kafka's and strait's own) never are.
    pub fn wants_topic(&self, name: &str, is_internal: bool) -> bool {
        !is_internal
            && !name.starts_with("__")
            && self.topics.iter().any(|r| r.is_match(name))
            && !self.topics_exclude.iter().any(|r| r.is_match(name))
    }

    /// The reverse replication for failback: source and destination swapped,
    /// replicating the destination topics of `source_topics` back under their
    /// source names. Only `identity` and `prefix` renames can be reversed.
    pub fn reversed(&self, source_topics: &[String]) -> Result<Config, String> {
        let rename = match &self.rename {
            Rename::Identity => Rename::Identity,
            Rename::Prefix => Rename::StripPrefix(self.source.alias.clone()),
            other => {
                return Err(format!(
                    "failback can reverse rename = \"identity\" or \"prefix\", not {other:?}"
                ))
            }
        };
        let topics = source_topics
            .iter()
            .map(|t| Regex::new(&format!("^{}$", regex::escape(&self.destination_topic(t)))).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut source = self.destination.clone();
        source.alias = "destination".into();
        let mut r = self.clone();
        r.name = format!("{}-failback", self.name);
        r.source = source;
        r.destination = self.source.clone();
        r.topics = topics;
        r.topics_exclude = Vec::new();
        r.rename = rename;
        r.start_from = StartFrom::Latest;
        r.groups = Vec::new();
        r.metrics_address = None;
        // The original source already has its own configs.
        r.sync_topic_configs = false;
        Ok(r)
    }

    /// True when consumer group `group`'s offsets are synced to the destination.
    /// strait's own checkpoint groups (`strait-*`) never are.
    pub fn wants_group(&self, group: &str) -> bool {
        !group.starts_with("strait-")
            && self.groups.iter().any(|r| r.is_match(group))
            && !self.groups_exclude.iter().any(|r| r.is_match(group))
    }

    /// When source and destination are one cluster: why copying `topics` into it
    /// would feed the copy back into itself, or `None` when it is a deliberate
    /// copy (a rename whose output the topic selection does not match).
    pub fn self_copy_problem<'a>(&self, topics: impl IntoIterator<Item = &'a str>) -> Option<String> {
        if self.rename == Rename::Identity {
            return Some(
                "source and destination are the same cluster and rename = \"identity\": every topic would be copied into itself"
                    .into(),
            );
        }
        let loops: Vec<String> = topics
            .into_iter()
            .filter(|t| self.wants_topic(t, false))
            .filter_map(|t| {
                let d = self.destination_topic(t);
                self.wants_topic(&d, false).then(|| format!("{t} -> {d}"))
            })
            .collect();
        (!loops.is_empty()).then(|| {
            format!(
                "source and destination are the same cluster and the topic selection matches the renamed copies too ({}): each copy would be copied again; narrow `topics` or exclude the copies with `topics_exclude`",
                loops.join(", ")
            )
        })
    }

    /// True when the two bootstrap lists name the same servers (in any order).
    pub fn same_bootstrap(&self) -> bool {
        let set = |c: &ClusterConfig| {
            let mut v: Vec<String> = c
                .bootstrap_servers
                .get_ref()
                .split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect();
            v.sort();
            v
        };
        set(&self.source) == set(&self.destination)
    }

    /// Destination name of a source topic.
    pub fn destination_topic(&self, source_topic: &str) -> String {
        self.rename.apply(&self.source.alias, source_topic)
    }
}

/// A `topics`/`groups` regex as the user wrote it (parsing anchors it as `^(?:…)$`).
pub fn pattern_text(r: &Regex) -> &str {
    let r = r.as_str();
    r.strip_prefix("^(?:").and_then(|r| r.strip_suffix(")$")).unwrap_or(r)
}

/// The annotated example configuration shipped with strait.
pub const EXAMPLE: &str = include_str!("strait.example.toml");

/// Keys of the top level of a config file.
const TOP_LEVEL_KEYS: &[&str] = &[
    "name",
    "topics",
    "topics_exclude",
    "rename",
    "start_from",
    "refresh_interval_ms",
    "checkpoint_interval_ms",
    "max_buffered_bytes",
    "fetch_max_bytes",
    "fetch_partition_max_bytes",
    "fetch_max_wait_ms",
    "max_in_flight_per_partition",
    "max_request_bytes",
    "coalesce_below_bytes",
    "replication_factor",
    "sync_topic_configs",
    "metrics_address",
    "readiness_timeout_ms",
    "groups",
    "groups_exclude",
    "group_sync_interval_ms",
    "exactly_once",
    "transaction_interval_ms",
    "transaction_max_bytes",
    "transaction_timeout_ms",
];

/// TOML puts every key after a `[table]` header into that table: a top-level
/// key written below `[source]` or `[destination]` reads as an unknown key of
/// that table. Says so, with the fix.
fn misplaced_key_hint(message: &str) -> String {
    let key = message
        .split("unknown field `")
        .nth(1)
        .and_then(|rest| rest.split('`').next());
    match key {
        Some(k) if TOP_LEVEL_KEYS.contains(&k) && message.contains("`bootstrap_servers`") => format!(
            "{message}\n`{k}` is a top-level key: move it above the [source] and [destination] tables (in TOML, every key below a [table] header belongs to that table)"
        ),
        _ => message.to_string(),
    }
}

fn line_of(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "dr"
topics = ["orders\\..*", "payments"]
topics_exclude = ["orders\\.tmp"]
rename = "prefix"
start_from = "latest"

[source]
alias = "east"
bootstrap_servers = "127.0.0.1:9092"

[destination]
bootstrap_servers = "127.0.0.1:9093,127.0.0.1:9094"
"#;

    #[test]
    fn parses_and_applies_defaults() {
        let c = Config::parse(GOOD, "t.toml").unwrap();
        assert_eq!(c.name, "dr");
        assert!(c.wants_topic("orders.eu", false));
        assert!(c.wants_topic("payments", false));
        assert!(!c.wants_topic("payments2", false), "regexes match whole names");
        assert!(!c.wants_topic("orders.tmp", false));
        assert!(!c.wants_topic("__consumer_offsets", true));
        assert!(!c.wants_topic("__strait.dr.offsets", false));
        assert_eq!(c.destination_topic("orders.eu"), "east.orders.eu");
        assert_eq!(c.start_from, StartFrom::Latest);
        assert_eq!(c.max_buffered_bytes, 16 * 1024 * 1024);
        assert_eq!(c.max_decompressed_batch_bytes, 256 * 1024 * 1024);
        assert_eq!(c.refresh_interval, Duration::from_secs(10));
        assert_eq!(c.checkpoint_group(), "strait-dr");
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = GOOD.replace("start_from = \"latest\"", "start_form = \"latest\"");
        let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(
            e.contains("start_form") && e.contains("line 6") && e.contains("start_from"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_say_what_is_allowed() {
        let e = Config::parse(&GOOD.replace("\"latest\"", "\"middle\""), "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("middle") && e.contains("earliest") && e.contains("line 6"),
            "{e}"
        );
        let e = Config::parse(&GOOD.replace("\"prefix\"", "\"upper\""), "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 5") && e.contains("rename") && e.contains("identity"),
            "{e}"
        );
        let e = Config::parse(&GOOD.replace("\"payments\"", "\"pay(\""), "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("invalid regex"), "{e}");
        let e = Config::parse(&GOOD.replace("127.0.0.1:9092", "nohostport"), "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 10") && e.contains("source.bootstrap_servers"), "{e}");
        let e = Config::parse(
            &GOOD.replace("start_from = \"latest\"", "max_in_flight_per_partition = 9"),
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 6") && e.contains("1 to 5"), "{e}");
        let e = Config::parse(
            &GOOD.replace("start_from = \"latest\"", "max_decompressed_batch_bytes = 1000"),
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("line 6") && e.contains("max_decompressed_batch_bytes") && e.contains("1048576"),
            "{e}"
        );
        let e = Config::parse(&GOOD.replace("[destination]\n", ""), "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bootstrap_servers"), "{e}");
    }

    #[test]
    fn shipped_example_is_valid() {
        let c = Config::parse(EXAMPLE, "strait.example.toml").unwrap();
        assert_eq!(c.name, "dr-east");
        assert!(c.wants_topic("orders.eu", false) && !c.wants_topic("orders.tmp.x", false));
        assert_eq!(c.source.alias, "east");
    }

    #[test]
    fn top_level_key_below_a_table_says_to_move_it() {
        for key in TOP_LEVEL_KEYS {
            let value = match *key {
                "topics" | "topics_exclude" | "groups" | "groups_exclude" => "[\"x\"]",
                "name" | "rename" | "start_from" | "metrics_address" => "\"x\"",
                "sync_topic_configs" | "exactly_once" => "true",
                _ => "1",
            };
            let text = format!("{GOOD}{key} = {value}\n");
            let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
            assert!(
                e.contains(&format!(
                    "`{key}` is a top-level key: move it above the [source] and [destination] tables"
                )),
                "{e}"
            );
            // The same key at the top level is known (whatever its value's verdict).
            let top = format!("{key} = {value}\n{GOOD}");
            if let Err(e) = Config::parse(&top, "t.toml") {
                assert!(!e.to_string().contains("unknown field"), "{key}: {e}");
            }
        }
    }

    #[test]
    fn one_cluster_needs_a_rename_whose_copies_are_not_selected() {
        let same = GOOD.replace("127.0.0.1:9093,127.0.0.1:9094", "127.0.0.1:9092");
        let c = Config::parse(&same, "t").unwrap();
        assert!(c.same_bootstrap());
        assert!(!Config::parse(GOOD, "t").unwrap().same_bootstrap());
        // prefix: "orders.eu" -> "east.orders.eu", which `orders\..*` does not match.
        assert_eq!(c.self_copy_problem(["orders.eu", "payments"]), None);
        let all = same.replace(r#"topics = ["orders\\..*", "payments"]"#, r#"topics = [".*"]"#);
        let c = Config::parse(&all, "t").unwrap();
        let p = c.self_copy_problem(["orders"]).unwrap();
        assert!(p.contains("orders -> east.orders") && p.contains("same cluster"), "{p}");
        let identity = same.replace(r#"rename = "prefix""#, r#"rename = "identity""#);
        let p = Config::parse(&identity, "t").unwrap().self_copy_problem([]).unwrap();
        assert!(p.contains("identity"), "{p}");
    }

    #[test]
    fn template_rename() {
        let c = Config::parse(&GOOD.replace("\"prefix\"", "\"mirror-{source}-{topic}\""), "t").unwrap();
        assert_eq!(c.destination_topic("a"), "mirror-east-a");
    }
}
