//! The config file as written: every key optional and spanned (for errors that
//! name the line), unknown keys refused. Engine keys are listed once, in
//! [`with_engine_keys`]: they may stand at the top level (defaults for every
//! flow) and in a `[[flows]]` table (that flow's overrides).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::cluster::ClusterConfig;

/// Calls `$callback!` with the engine keys (`key: type`) appended after `;`.
macro_rules! with_engine_keys {
    ($callback:ident ! { $($args:tt)* }) => {
        $callback! { $($args)* ;
            topics: Vec<Spanned<String>>,
            topics_exclude: Vec<Spanned<String>>,
            rename: String,
            start_from: String,
            mm2_offsets_topic: String,
            mm2_connector: String,
            mm2_fallback: String,
            refresh_interval_ms: u64,
            checkpoint_interval_ms: u64,
            fetch_max_bytes: usize,
            fetch_partition_max_bytes: usize,
            fetch_max_wait_ms: u64,
            max_in_flight_per_partition: usize,
            max_request_bytes: usize,
            coalesce_below_bytes: usize,
            max_decompressed_batch_bytes: usize,
            replication_factor: i16,
            sync_topic_configs: bool,
            sync_acls: bool,
            groups: Vec<Spanned<String>>,
            groups_exclude: Vec<Spanned<String>>,
            group_sync_interval_ms: u64,
            exactly_once: bool,
            transaction_interval_ms: u64,
            transaction_max_bytes: usize,
            transaction_timeout_ms: u64,
            session_timeout_ms: u64,
            heartbeat_interval_ms: u64,
            rebalance_timeout_ms: u64,
            heartbeats: bool,
            heartbeats_topic: String,
            heartbeats_interval_ms: u64,
        }
    };
}

/// Declares the engine keys as one struct, [`RawEngine`].
macro_rules! raw_engine {
    (; $($key:ident : $ty:ty),* $(,)?) => {
        /// The engine keys of one level (top level or one flow); `None` where unset.
        #[derive(Debug, Default, Clone)]
        pub(super) struct RawEngine {
            $( pub(super) $key: Option<Spanned<$ty>>, )*
        }

        impl RawEngine {
            /// These keys, with `over`'s set keys taking precedence.
            pub(super) fn overlaid(&self, over: &RawEngine) -> RawEngine {
                RawEngine { $( $key: over.$key.clone().or_else(|| self.$key.clone()), )* }
            }
        }

        /// Every engine key's name.
        pub(super) const ENGINE_KEYS: &[&str] = &[$(stringify!($key)),*];
    };
}

/// Declares a table struct with its own fields plus every engine key, and its
/// [`RawEngine`] view.
macro_rules! raw_table {
    ($(#[$meta:meta])* struct $name:ident { $($field:tt)* } ; $($key:ident : $ty:ty),* $(,)?) => {
        $(#[$meta])*
        pub(super) struct $name {
            $($field)*
            $( #[serde(default)] pub(super) $key: Option<Spanned<$ty>>, )*
        }

        impl $name {
            /// The engine keys set in this table.
            pub(super) fn engine(&self) -> RawEngine {
                RawEngine { $( $key: self.$key.clone(), )* }
            }
        }
    };
}

with_engine_keys!(raw_engine! {});

with_engine_keys!(raw_table! {
    /// The whole file.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawFile {
        /// One-flow form: the replication's name.
        #[serde(default)]
        pub(super) name: Option<Spanned<String>>,
        /// One-flow form: the source cluster.
        #[serde(default)]
        pub(super) source: Option<Spanned<ClusterConfig>>,
        /// One-flow form: the destination cluster.
        #[serde(default)]
        pub(super) destination: Option<Spanned<ClusterConfig>>,
        /// Many-flow form: clusters by alias.
        #[serde(default)]
        pub(super) clusters: BTreeMap<String, Spanned<ClusterConfig>>,
        /// Many-flow form: the flows.
        #[serde(default)]
        pub(super) flows: Vec<Spanned<RawFlow>>,
        /// Process: the memory budget shared by every flow.
        #[serde(default)]
        pub(super) max_buffered_bytes: Option<Spanned<usize>>,
        /// Process: the HTTP endpoint.
        #[serde(default)]
        pub(super) metrics_address: Option<Spanned<String>>,
        /// Process: readiness.
        #[serde(default)]
        pub(super) readiness_timeout_ms: Option<Spanned<u64>>,
        /// Process: the static membership id in replication groups.
        #[serde(default)]
        pub(super) instance_id: Option<Spanned<String>>,
        /// Process: `[failover]`, automated failover.
        #[serde(default)]
        pub(super) failover: Option<Spanned<RawFailover>>,
    }
});

/// `[failover]`: automated failover with a witness.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFailover {
    #[serde(default)]
    pub(super) auto: bool,
    #[serde(default)]
    pub(super) source_unavailable_s: Option<Spanned<u64>>,
    #[serde(default)]
    pub(super) confirm: Vec<String>,
    #[serde(default)]
    pub(super) confirm_timeout_s: Option<Spanned<u64>>,
    #[serde(default)]
    pub(super) on_failover: Vec<String>,
}

with_engine_keys!(raw_table! {
    /// One `[[flows]]` table.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawFlow {
        /// The flow's name (default `<source>-to-<destination>`).
        #[serde(default)]
        pub(super) name: Option<Spanned<String>>,
        /// Alias of the source cluster.
        pub(super) source: Spanned<String>,
        /// Alias of the destination cluster.
        pub(super) destination: Spanned<String>,
        /// Origins (cluster aliases) whose records this flow forwards besides
        /// its source's own (hub-and-spoke chains with identity names).
        #[serde(default)]
        pub(super) forward_from: Vec<Spanned<String>>,
        /// Several flows may write one destination topic (aggregation with
        /// identity names) when each of them says so.
        #[serde(default)]
        pub(super) merge: bool,
    }
});

/// Keys of the top level that are not engine keys (one-flow and process keys).
pub(super) const TOP_LEVEL_KEYS: &[&str] = &[
    "name",
    "max_buffered_bytes",
    "metrics_address",
    "readiness_timeout_ms",
    "instance_id",
];
