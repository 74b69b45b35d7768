//! One cluster's connection settings (`[source]`, `[destination]` or
//! `[clusters.<alias>]`): bootstrap servers, client settings, TLS and SASL.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::security::{SaslConfig, TlsConfig};
use crate::client::{Backoff, ClientConfig, ConnectionConfig, SocketBuffers};

/// Connection settings of one cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Short name of the cluster, used by `rename = "prefix"` (MM2's cluster
    /// alias) and in messages. `[clusters.<alias>]` sets it from the table
    /// name; `[source]`/`[destination]` default to "source"/"destination".
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
    /// `SO_RCVBUF` of every connection to this cluster, in bytes (1 to
    /// 2147483647). Unset (the default): Linux sizes the buffer itself
    /// (autotuning, up to the third value of `net.ipv4.tcp_rmem`). Setting it
    /// turns autotuning off for these connections and is capped by
    /// `net.core.rmem_max` (strait warns when the kernel granted less). Set it
    /// only when autotuning cannot be raised for the whole host.
    #[serde(default)]
    pub socket_receive_buffer_bytes: Option<Spanned<i64>>,
    /// `SO_SNDBUF` of every connection to this cluster, in bytes (1 to
    /// 2147483647). Unset (the default): autotuning, up to the third value of
    /// `net.ipv4.tcp_wmem`; set, capped by `net.core.wmem_max`.
    #[serde(default)]
    pub socket_send_buffer_bytes: Option<Spanned<i64>>,
    /// `[<cluster>.tls]`: TLS to the brokers (absent: plaintext).
    #[serde(default)]
    pub tls: Option<Spanned<TlsConfig>>,
    /// `[<cluster>.sasl]`: SASL authentication (absent: none).
    #[serde(default)]
    pub sasl: Option<SaslConfig>,
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
        c.socket_buffers = self.socket_buffers();
        if !self.alias.is_empty() {
            c.cluster = self.alias.clone();
        }
        c
    }

    /// The socket buffer sizes (validated by the config loader: 1 to 2 GiB - 1).
    pub fn socket_buffers(&self) -> SocketBuffers {
        let size = |v: &Option<Spanned<i64>>| v.as_ref().and_then(|v| u32::try_from(*v.get_ref()).ok());
        SocketBuffers {
            receive: size(&self.socket_receive_buffer_bytes),
            send: size(&self.socket_send_buffer_bytes),
        }
    }

    /// The bootstrap servers as a sorted, lower-cased set (to compare clusters).
    pub fn bootstrap_set(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .bootstrap_servers
            .get_ref()
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}
