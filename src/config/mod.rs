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
    AutoFailover, Config, ExactlyOnce, FetchSettings, GroupSettings, HeartbeatSettings, MemberSettings, OpsSettings,
    ProduceSettings, Rename, StartFrom, TopicSettings,
};
use raw::{RawEngine, RawFile, ENGINE_KEYS, TOP_LEVEL_KEYS};
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

/// Resolves a [`RawFile`] into a [`Document`], naming file and line in errors.
struct Resolver<'a> {
    text: &'a str,
    path: &'a str,
}

/// A key's value, or its default; with the key's span (0..0 for a default).
fn or<T: Clone>(v: &Option<Spanned<T>>, default: T) -> (T, Range<usize>) {
    match v {
        Some(s) => (s.get_ref().clone(), s.span()),
        None => (default, 0..0),
    }
}

impl Resolver<'_> {
    fn invalid(&self, span: Range<usize>, key: &str, problem: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_string(),
            line: line_of(self.text, span.start),
            key: key.to_string(),
            problem,
        }
    }

    fn parse_error(&self, message: String) -> ConfigError {
        ConfigError::Parse {
            path: self.path.to_string(),
            message,
        }
    }

    fn document(&self, raw: RawFile) -> Result<Document, ConfigError> {
        let ops = self.ops(&raw)?;
        let top = raw.engine();
        let one_flow = raw.source.is_some() || raw.destination.is_some();
        let many = !raw.clusters.is_empty() || !raw.flows.is_empty();
        let mut clusters = BTreeMap::new();
        let mut flows = Vec::new();
        if one_flow && many {
            return Err(self.parse_error(
                "use either [source] and [destination] (one flow) or [clusters.<alias>] and [[flows]] (many flows), not both"
                    .into(),
            ));
        }
        if one_flow {
            let (Some(source), Some(destination)) = (raw.source, raw.destination) else {
                return Err(self.parse_error(
                    "a one-flow config needs both a [source] and a [destination] table with bootstrap_servers".into(),
                ));
            };
            let source = self.cluster("source", source.into_inner(), "source")?;
            let destination = self.cluster("destination", destination.into_inner(), "destination")?;
            let name = raw
                .name
                .clone()
                .unwrap_or_else(|| Spanned::new(0..0, defaults::NAME.to_string()));
            flows.push(self.flow(name, source.clone(), destination.clone(), &top, &ops)?);
            clusters.insert(source.alias.clone(), source);
            clusters.insert(destination.alias.clone(), destination);
        } else if many {
            if let Some(name) = &raw.name {
                return Err(self.invalid(
                    name.span(),
                    "name",
                    "names the flow of a one-flow config; with [[flows]], give each flow its own `name`".into(),
                ));
            }
            for (alias, c) in raw.clusters {
                let span = c.span();
                let mut c = c.into_inner();
                if !c.alias.is_empty() && c.alias != alias {
                    return Err(self.invalid(
                        span,
                        &format!("clusters.{alias}.alias"),
                        format!(
                            "is {:?}; a [clusters.<alias>] table takes its alias from its name",
                            c.alias
                        ),
                    ));
                }
                c.alias = alias.clone();
                valid_name(&alias).map_err(|p| self.invalid(span.clone(), &format!("clusters.{alias}"), p))?;
                clusters.insert(alias.clone(), self.cluster(&format!("clusters.{alias}"), c, &alias)?);
            }
            if raw.flows.is_empty() {
                return Err(self.parse_error(
                    "[clusters.*] tables but no [[flows]]: add a [[flows]] table with `source` and `destination` aliases"
                        .into(),
                ));
            }
            for f in raw.flows {
                let f = f.into_inner();
                let lookup = |key: &str, alias: &Spanned<String>| {
                    clusters.get(alias.get_ref()).cloned().ok_or_else(|| {
                        self.invalid(
                            alias.span(),
                            key,
                            format!(
                                "is {:?}, which no [clusters.<alias>] table defines; defined: {}",
                                alias.get_ref(),
                                clusters.keys().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        )
                    })
                };
                let source = lookup("source", &f.source)?;
                let destination = lookup("destination", &f.destination)?;
                if source.alias == destination.alias {
                    return Err(self.invalid(
                        f.destination.span(),
                        "destination",
                        format!(
                            "is the flow's source too ({:?}); a flow copies between two clusters",
                            source.alias
                        ),
                    ));
                }
                let name = f.name.clone().unwrap_or_else(|| {
                    Spanned::new(f.source.span(), format!("{}-to-{}", source.alias, destination.alias))
                });
                let engine = top.overlaid(&f.engine());
                let mut flow = self.flow(name.clone(), source, destination, &engine, &ops)?;
                for origin in &f.forward_from {
                    if !clusters.contains_key(origin.get_ref()) {
                        return Err(self.invalid(
                            origin.span(),
                            "forward_from",
                            format!(
                                "names {:?}, which no [clusters.<alias>] table defines; defined: {}",
                                origin.get_ref(),
                                clusters.keys().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        ));
                    }
                    if *origin.get_ref() == flow.source.alias || *origin.get_ref() == flow.destination.alias {
                        return Err(self.invalid(
                            origin.span(),
                            "forward_from",
                            format!(
                                "names {:?}, the flow's own {}: a flow always forwards its source's records and never sends records back to their origin",
                                origin.get_ref(),
                                if *origin.get_ref() == flow.source.alias { "source" } else { "destination" }
                            ),
                        ));
                    }
                    if flow.exactly_once.is_some() {
                        return Err(self.invalid(
                            origin.span(),
                            "forward_from",
                            "cannot be used with exactly_once = true: forwarding records of several origins needs one producer id per origin, and one transaction has one producer id".into(),
                        ));
                    }
                    flow.forward_from.push(origin.get_ref().clone());
                }
                flow.merge = f.merge;
                if flows.iter().any(|x: &Config| x.name == flow.name) {
                    return Err(self.invalid(
                        name.span(),
                        "name",
                        format!(
                            "{:?} names two flows; each flow needs its own name (its checkpoints and offset map are kept under it)",
                            flow.name
                        ),
                    ));
                }
                flows.push(flow);
            }
        } else {
            return Err(self.parse_error(
                "no clusters: add [source] and [destination] tables (one flow), or [clusters.<alias>] and [[flows]] tables"
                    .into(),
            ));
        }
        let aliases: Vec<String> = clusters.keys().cloned().collect();
        for f in &mut flows {
            f.topics.cluster_aliases = aliases.clone();
        }
        Ok(Document { clusters, flows, ops })
    }

    /// Checks a cluster table: its bootstrap list, TLS and SASL (`key` names it in errors).
    fn cluster(&self, key: &str, mut c: ClusterConfig, alias: &str) -> Result<ClusterConfig, ConfigError> {
        ClientConfig::new(c.bootstrap_servers.get_ref())
            .validate()
            .map_err(|e| {
                self.invalid(
                    c.bootstrap_servers.span(),
                    &format!("{key}.bootstrap_servers"),
                    format!("is invalid: {e}"),
                )
            })?;
        let invalid = |span: Range<usize>, key: &str, problem: String| self.invalid(span, key, problem);
        security::validate(key, c.tls.as_ref(), c.sasl.as_mut(), &invalid)?;
        for (name, v) in [
            ("socket_receive_buffer_bytes", &c.socket_receive_buffer_bytes),
            ("socket_send_buffer_bytes", &c.socket_send_buffer_bytes),
        ] {
            if let Some(v) = v {
                let max = crate::client::sockbuf::MAX_BUFFER_BYTES;
                if !(1..=max as i64).contains(v.get_ref()) {
                    return Err(self.invalid(
                        v.span(),
                        &format!("{key}.{name}"),
                        format!(
                            "is {}; allowed: 1 to {max} bytes (unset: the kernel's autotuning)",
                            v.get_ref()
                        ),
                    ));
                }
            }
        }
        if c.alias.is_empty() {
            c.alias = alias.to_string();
        }
        Ok(c)
    }

    fn ops(&self, raw: &RawFile) -> Result<OpsSettings, ConfigError> {
        let (buffered, span) = or(&raw.max_buffered_bytes, defaults::MAX_BUFFERED_BYTES);
        if buffered < 1024 * 1024 {
            return Err(self.invalid(
                span,
                "max_buffered_bytes",
                format!("is {buffered}; allowed: at least 1048576"),
            ));
        }
        let metrics_address = match &raw.metrics_address {
            None => None,
            Some(a) => Some(a.get_ref().parse::<std::net::SocketAddr>().map_err(|_| {
                self.invalid(
                    a.span(),
                    "metrics_address",
                    format!(
                        "is {:?}; allowed: an IP address and port such as \"0.0.0.0:9464\"",
                        a.get_ref()
                    ),
                )
            })?),
        };
        let (readiness, span) = or(&raw.readiness_timeout_ms, defaults::READINESS_TIMEOUT_MS);
        if readiness < 1_000 {
            return Err(self.invalid(
                span,
                "readiness_timeout_ms",
                format!("is {readiness}; allowed: at least 1000"),
            ));
        }
        let instance_id = match &raw.instance_id {
            None => defaults::instance_id(),
            Some(i) => {
                let id = i.get_ref();
                valid_name(id).map_err(|p| self.invalid(i.span(), "instance_id", p))?;
                id.clone()
            }
        };
        let auto_failover = match &raw.failover {
            Some(f) if f.get_ref().auto => {
                let r = f.get_ref();
                if r.confirm.is_empty() {
                    return Err(self.invalid(
                        f.span(),
                        "failover.confirm",
                        "is required with auto = true: strait alone cannot tell a dead source from a cut link, so a witness command (exit 0 = the source is down) must confirm".into(),
                    ));
                }
                let (secs, span) = or(&r.source_unavailable_s, 60);
                if secs < 5 {
                    return Err(self.invalid(
                        span,
                        "failover.source_unavailable_s",
                        format!("is {secs}; allowed: at least 5"),
                    ));
                }
                let (confirm_s, span) = or(&r.confirm_timeout_s, 30);
                if confirm_s == 0 {
                    return Err(self.invalid(span, "failover.confirm_timeout_s", "is 0; allowed: at least 1".into()));
                }
                Some(crate::config::flow::AutoFailover {
                    source_unavailable: Duration::from_secs(secs),
                    confirm: r.confirm.clone(),
                    confirm_timeout: Duration::from_secs(confirm_s),
                    on_failover: r.on_failover.clone(),
                })
            }
            _ => None,
        };
        Ok(OpsSettings {
            auto_failover,
            max_buffered_bytes: buffered,
            max_buffered_bytes_ceiling: if raw.max_buffered_bytes.is_some() {
                buffered
            } else {
                defaults::MAX_BUFFERED_BYTES_CEILING
            },
            metrics_address,
            readiness_timeout: Duration::from_millis(readiness),
            instance_id,
        })
    }

    fn regexes(
        &self,
        list: &Option<Spanned<Vec<Spanned<String>>>>,
        default: &[&str],
        key: &str,
    ) -> Result<Vec<Regex>, ConfigError> {
        let owned: Vec<Spanned<String>>;
        let items: &[Spanned<String>] = match list {
            Some(l) => l.get_ref(),
            None => {
                owned = default.iter().map(|d| Spanned::new(0..0, d.to_string())).collect();
                &owned
            }
        };
        items
            .iter()
            .map(|s| {
                Regex::new(&format!("^(?:{})$", s.get_ref()))
                    .map_err(|e| self.invalid(s.span(), key, format!("has an invalid regex {:?}: {e}", s.get_ref())))
            })
            .collect()
    }

    /// Resolves one flow's engine keys into its sections.
    fn flow(
        &self,
        name: Spanned<String>,
        source: ClusterConfig,
        destination: ClusterConfig,
        e: &RawEngine,
        ops: &OpsSettings,
    ) -> Result<Config, ConfigError> {
        valid_name(name.get_ref()).map_err(|p| self.invalid(name.span(), "name", p))?;
        let (rename, span) = or(&e.rename, "identity".to_string());
        let rename = match rename.as_str() {
            "identity" => Rename::Identity,
            "prefix" => Rename::Prefix,
            t if t.contains("{topic}") => Rename::Template(t.to_string()),
            other => {
                return Err(self.invalid(
                    span,
                    "rename",
                    format!("is {other:?}; allowed: \"identity\", \"prefix\", or a template containing {{topic}} (and optionally {{source}})"),
                ))
            }
        };
        let (start, span) = or(&e.start_from, "earliest".to_string());
        let start_from = match start.as_str() {
            "earliest" => StartFrom::Earliest,
            "latest" => StartFrom::Latest,
            other => {
                return Err(self.invalid(
                    span,
                    "start_from",
                    format!("is {other:?}; allowed: \"earliest\", \"latest\""),
                ))
            }
        };
        let (in_flight, span) = or(&e.max_in_flight_per_partition, defaults::MAX_IN_FLIGHT);
        if !(1..=5).contains(&in_flight) {
            return Err(self.invalid(
                span,
                "max_in_flight_per_partition",
                format!("is {in_flight}; allowed: 1 to 5 (the broker's idempotent-producer window)"),
            ));
        }
        let (fetch, span) = or(&e.fetch_max_bytes, defaults::FETCH_MAX_BYTES);
        if fetch > ops.max_buffered_bytes {
            return Err(self.invalid(
                span,
                "fetch_max_bytes",
                format!(
                    "is {fetch}, above max_buffered_bytes ({}); allowed: at most max_buffered_bytes",
                    ops.max_buffered_bytes
                ),
            ));
        }
        let (max_plain, span) = or(&e.max_decompressed_batch_bytes, defaults::MAX_DECOMPRESSED_BATCH_BYTES);
        if max_plain < 1024 * 1024 {
            return Err(self.invalid(
                span,
                "max_decompressed_batch_bytes",
                format!("is {max_plain}; allowed: at least 1048576 (a default broker's largest batch)"),
            ));
        }
        let (txn_interval, _) = or(&e.transaction_interval_ms, defaults::TRANSACTION_INTERVAL_MS);
        let (txn_timeout, span) = or(&e.transaction_timeout_ms, defaults::TRANSACTION_TIMEOUT_MS);
        if !(1_000..=900_000).contains(&txn_timeout) || txn_timeout <= txn_interval.saturating_mul(2) {
            return Err(self.invalid(
                span,
                "transaction_timeout_ms",
                format!(
                    "is {txn_timeout}; allowed: 1000 to 900000 (the broker's default transaction.max.timeout.ms) \
                     and more than twice transaction_interval_ms ({txn_interval})"
                ),
            ));
        }
        let ms =
            |v: &Option<Spanned<u64>>, default: u64, floor: u64| Duration::from_millis(or(v, default).0.max(floor));
        let (session, span) = or(&e.session_timeout_ms, defaults::SESSION_TIMEOUT_MS);
        if !(1_000..=1_800_000).contains(&session) {
            return Err(self.invalid(
                span,
                "session_timeout_ms",
                format!("is {session}; allowed: 1000 to 1800000 (and within the broker's group.min/max.session.timeout.ms, 6000 to 1800000 by default)"),
            ));
        }
        let (heartbeat, span) = or(&e.heartbeat_interval_ms, defaults::HEARTBEAT_INTERVAL_MS);
        if heartbeat < 10 || heartbeat.saturating_mul(2) > session {
            return Err(self.invalid(
                span,
                "heartbeat_interval_ms",
                format!("is {heartbeat}; allowed: 10 to half of session_timeout_ms ({session})"),
            ));
        }
        let (rebalance, span) = or(&e.rebalance_timeout_ms, defaults::REBALANCE_TIMEOUT_MS);
        if !(1_000..=3_600_000).contains(&rebalance) {
            return Err(self.invalid(
                span,
                "rebalance_timeout_ms",
                format!("is {rebalance}; allowed: 1000 to 3600000"),
            ));
        }
        let member = MemberSettings {
            instance_id: ops.instance_id.clone(),
            session_timeout: Duration::from_millis(session),
            heartbeat_interval: Duration::from_millis(heartbeat),
            rebalance_timeout: Duration::from_millis(rebalance),
        };
        let heartbeats = self.heartbeats(e)?;
        let exactly_once = or(&e.exactly_once, false).0.then(|| ExactlyOnce {
            transaction_interval: Duration::from_millis(txn_interval.max(10)),
            transaction_max_bytes: or(&e.transaction_max_bytes, defaults::TRANSACTION_MAX_BYTES)
                .0
                .max(64 * 1024),
            transaction_timeout_ms: txn_timeout as i32,
        });
        let mut cfg = Config {
            name: name.get_ref().clone(),
            topics: TopicSettings {
                source_alias: source.alias.clone(),
                destination_alias: destination.alias.clone(),
                cluster_aliases: vec![source.alias.clone(), destination.alias.clone()],
                topics: self.regexes(&e.topics, &[defaults::TOPICS], "topics")?,
                topics_exclude: self.regexes(&e.topics_exclude, &[], "topics_exclude")?,
                rename,
                refresh_interval: ms(&e.refresh_interval_ms, defaults::REFRESH_INTERVAL_MS, 100),
                replication_factor: or(&e.replication_factor, defaults::REPLICATION_FACTOR).0,
                sync_topic_configs: or(&e.sync_topic_configs, true).0,
                sync_acls: or(&e.sync_acls, true).0,
                heartbeats_topic: heartbeats.as_ref().map(|h| h.topic.clone()),
            },
            fetch: FetchSettings {
                start_from,
                max_bytes: fetch,
                partition_max_bytes: or(&e.fetch_partition_max_bytes, defaults::FETCH_PARTITION_MAX_BYTES)
                    .0
                    .min(fetch),
                max_wait: ms(&e.fetch_max_wait_ms, defaults::FETCH_MAX_WAIT_MS, 0),
                max_decompressed_batch_bytes: max_plain,
            },
            produce: ProduceSettings {
                max_in_flight_per_partition: in_flight,
                max_request_bytes: or(&e.max_request_bytes, defaults::MAX_REQUEST_BYTES).0.max(64 * 1024),
                coalesce_below_bytes: or(&e.coalesce_below_bytes, defaults::COALESCE_BELOW_BYTES).0,
                max_decompressed_batch_bytes: max_plain,
                timeout_ms: produce_timeout_ms(&destination),
                transactional_id: None,
            },
            checkpoint_interval: ms(&e.checkpoint_interval_ms, defaults::CHECKPOINT_INTERVAL_MS, 10),
            groups: GroupSettings {
                groups: self.regexes(&e.groups, &[], "groups")?,
                groups_exclude: self.regexes(&e.groups_exclude, &[], "groups_exclude")?,
                interval: ms(&e.group_sync_interval_ms, defaults::GROUP_SYNC_INTERVAL_MS, 100),
            },
            exactly_once: None,
            forward_from: Vec::new(),
            merge: false,
            member,
            heartbeats,
            ops: ops.clone(),
            source,
            destination,
        };
        cfg.set_exactly_once(exactly_once);
        Ok(cfg)
    }
}

impl Resolver<'_> {
    /// The heartbeat keys of one flow (none: `heartbeats = false`).
    fn heartbeats(&self, e: &RawEngine) -> Result<Option<HeartbeatSettings>, ConfigError> {
        let (topic, span) = or(&e.heartbeats_topic, defaults::HEARTBEATS_TOPIC.to_string());
        valid_name(&topic).map_err(|p| self.invalid(span.clone(), "heartbeats_topic", p))?;
        if topic.starts_with("__") || topic.len() > 249 {
            return Err(self.invalid(
                span,
                "heartbeats_topic",
                format!("is {topic:?}; allowed: a topic name of at most 249 characters not starting with \"__\" (strait never replicates those)"),
            ));
        }
        let (interval, span) = or(&e.heartbeats_interval_ms, defaults::HEARTBEATS_INTERVAL_MS);
        if !(100..=3_600_000).contains(&interval) {
            return Err(self.invalid(
                span,
                "heartbeats_interval_ms",
                format!("is {interval}; allowed: 100 to 3600000"),
            ));
        }
        Ok(or(&e.heartbeats, defaults::HEARTBEATS).0.then(|| HeartbeatSettings {
            topic,
            interval: Duration::from_millis(interval),
        }))
    }
}

/// Flow names and cluster aliases name topics and groups: letters, digits, `.`, `_`, `-`.
fn valid_name(name: &str) -> Result<(), String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
        Err(format!("is {name:?}; allowed: letters, digits, '.', '_', '-'"))
    } else {
        Ok(())
    }
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
        assert_eq!(c.fetch.start_from, StartFrom::Latest);
        assert_eq!(c.ops.max_buffered_bytes, 16 * 1024 * 1024);
        assert_eq!(c.fetch.max_decompressed_batch_bytes, 256 * 1024 * 1024);
        assert_eq!(c.topics.refresh_interval, Duration::from_secs(10));
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
    fn socket_buffer_keys_default_to_autotuning_and_are_checked() {
        let c = Config::parse(GOOD, "t.toml").unwrap();
        assert_eq!(
            c.source.client_config().socket_buffers,
            crate::client::SocketBuffers::default()
        );
        let text = GOOD.replace(
            "bootstrap_servers = \"127.0.0.1:9092\"",
            "bootstrap_servers = \"127.0.0.1:9092\"\nsocket_receive_buffer_bytes = 33554432\nsocket_send_buffer_bytes = 2147483647",
        );
        let c = Config::parse(&text, "t.toml").unwrap();
        let cc = c.source.client_config();
        assert_eq!(
            (cc.socket_buffers.receive, cc.socket_buffers.send),
            (Some(33554432), Some(i32::MAX as u32))
        );
        assert_eq!(cc.cluster, "east");
        assert_eq!(
            c.destination.client_config().socket_buffers,
            crate::client::SocketBuffers::default()
        );
        for (bad, key) in [
            ("socket_receive_buffer_bytes = 0", "source.socket_receive_buffer_bytes"),
            ("socket_send_buffer_bytes = -4096", "source.socket_send_buffer_bytes"),
            (
                "socket_send_buffer_bytes = 2147483648",
                "source.socket_send_buffer_bytes",
            ),
        ] {
            let text = GOOD.replace(
                "bootstrap_servers = \"127.0.0.1:9092\"",
                &format!("bootstrap_servers = \"127.0.0.1:9092\"\n{bad}"),
            );
            let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
            assert!(
                e.contains(key) && e.contains("line 11") && e.contains("allowed: 1 to 2147483647"),
                "{bad}: {e}"
            );
        }
        let e = Config::parse(
            &GOOD.replace("[destination]", "[destination]\nsocket_recv_buffer = 1"),
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("socket_recv_buffer") && e.contains("socket_receive_buffer_bytes"),
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
        for key in ENGINE_KEYS.iter().chain(TOP_LEVEL_KEYS) {
            let value = match *key {
                "topics" | "topics_exclude" | "groups" | "groups_exclude" => "[\"x\"]",
                "name" | "rename" | "start_from" | "metrics_address" => "\"x\"",
                "sync_topic_configs" | "sync_acls" | "exactly_once" | "heartbeats" => "true",
                "heartbeats_topic" => "\"x\"",
                _ => "1",
            };
            let text = format!("{GOOD}{key} = {value}\n");
            let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
            assert!(
                e.contains(&format!(
                    "`{key}` is a top-level key: move it above the cluster tables ([source], [destination]"
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
    fn heartbeats_default_on_and_are_replicated_whatever_the_topic_selection() {
        let c = Config::parse(GOOD, "t.toml").unwrap();
        assert_eq!(
            c.heartbeats,
            Some(HeartbeatSettings {
                topic: "heartbeats".into(),
                interval: Duration::from_secs(1),
            })
        );
        assert!(c.wants_topic("heartbeats", false), "not in `topics`, wanted still");
        assert_eq!(c.destination_topic("heartbeats"), "east.heartbeats");
        let text = GOOD
            .replace(
                "start_from = \"latest\"",
                "heartbeats_topic = \"hb\"\nheartbeats_interval_ms = 5000",
            )
            .replace(r#"topics_exclude = ["orders\\.tmp"]"#, r#"topics_exclude = ["hb"]"#);
        let c = Config::parse(&text, "t.toml").unwrap();
        assert_eq!(
            c.heartbeats.as_ref().map(|h| (h.topic.as_str(), h.interval)),
            Some(("hb", Duration::from_secs(5)))
        );
        assert!(c.wants_topic("hb", false) && !c.wants_topic("heartbeats", false));
        let off = Config::parse(&GOOD.replace("start_from = \"latest\"", "heartbeats = false"), "t.toml").unwrap();
        assert_eq!(off.heartbeats, None);
        assert!(!off.wants_topic("heartbeats", false));
        // A failback copies the listed topics only.
        let back = c.reversed(&["payments".to_string()]).unwrap();
        assert!(back.heartbeats.is_none() && !back.wants_topic("hb", false));
    }

    #[test]
    fn bad_heartbeat_keys_are_named() {
        for (bad, key, allowed) in [
            ("heartbeats_interval_ms = 0", "heartbeats_interval_ms", "100 to 3600000"),
            (
                "heartbeats_interval_ms = 4000000",
                "heartbeats_interval_ms",
                "100 to 3600000",
            ),
            ("heartbeats_topic = \"__hb\"", "heartbeats_topic", "not starting with"),
            ("heartbeats_topic = \"a b\"", "heartbeats_topic", "letters, digits"),
        ] {
            let e = Config::parse(&GOOD.replace("start_from = \"latest\"", bad), "t.toml")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("`{key}`")) && e.contains("line 6") && e.contains(allowed),
                "{bad}: {e}"
            );
        }
        // Checked even when heartbeats are off (a typo stays a typo).
        let e = Config::parse(
            &GOOD.replace(
                "start_from = \"latest\"",
                "heartbeats = false\nheartbeats_interval_ms = 1",
            ),
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("heartbeats_interval_ms"), "{e}");
    }

    #[test]
    fn template_rename() {
        let c = Config::parse(&GOOD.replace("\"prefix\"", "\"mirror-{source}-{topic}\""), "t").unwrap();
        assert_eq!(c.destination_topic("a"), "mirror-east-a");
    }
}
