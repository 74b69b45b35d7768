//! The broker pool and metadata cache of one cluster: [`Client`].
//!
//! One connection per broker, opened lazily on first use and reopened after it
//! fails, with exponential backoff and jitter between failed attempts so a dead
//! broker is not hammered. The metadata cache is refreshed when a caller reports
//! an error that means routing went stale (see [`super::classify`]).
//!
//! Opening a connection is: TCP connect (with the configured socket buffers,
//! see [`super::sockbuf`]), the TLS handshake (when configured),
//! ApiVersions, then SASL authentication (when configured), all within the
//! connect timeout. A connection with a SASL session lifetime gets a task that
//! re-authenticates it before the session expires (KIP-368, see [`super::sasl`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::conn::{Connection, ConnectionConfig};
use super::metadata::Metadata;
use super::sasl::{self, SaslSettings};
use super::sockbuf::{self, SocketBuffers};
use super::tls::{Tls, TlsSettings};
use super::{ClientError, ErrorClass, Result};
use crate::protocol::ProtocolError;

/// Why the answer to the first request (ApiVersions) is not Kafka, for the
/// operator. A size prefix that does not fit a frame is the server's first four
/// bytes: shown as text when they are text (`"HTTP"` from a web server), since
/// "raise max_frame_bytes" would be the wrong advice.
fn not_kafka(source: &ProtocolError) -> String {
    let first = match source {
        ProtocolError::FrameTooLarge { actual, .. } => Some((*actual as u32).to_be_bytes()),
        ProtocolError::NegativeFrameSize { size } => Some(size.to_be_bytes()),
        _ => None,
    };
    match first {
        Some(b) if b.iter().all(|c| c.is_ascii_graphic() || *c == b' ') => format!(
            "the server answered {:?}, not a Kafka frame: is this a Kafka listener?",
            String::from_utf8_lossy(&b)
        ),
        Some(_) => format!("the server's answer is not a Kafka frame ({source}): is this a Kafka listener?"),
        None => format!("the server's answer to ApiVersions is not Kafka ({source}): is this a Kafka listener?"),
    }
}

/// Exponential backoff with ±20 % jitter.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Upper bound of the delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// Delay before attempt number `failures + 1`, given `failures` consecutive failures.
    pub fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let exp = self.initial.saturating_mul(1u32 << (failures - 1).min(20));
        let base = exp.min(self.max);
        base.mul_f64(0.8 + 0.4 * fastrand::f64())
    }
}

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` addresses to bootstrap from.
    pub bootstrap: Vec<String>,
    /// Per-connection settings.
    pub connection: ConnectionConfig,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Backoff between failed connection attempts to one broker.
    pub backoff: Backoff,
    /// TLS to every broker (none: plaintext).
    pub tls: Option<TlsSettings>,
    /// SASL authentication of every connection (none: no authentication).
    pub sasl: Option<SaslSettings>,
    /// TCP buffer sizes of every connection (none: the kernel's autotuning).
    pub socket_buffers: SocketBuffers,
    /// How warnings name the cluster (its alias; default: the bootstrap list).
    pub cluster: String,
}

impl ClientConfig {
    /// Checks the bootstrap list: non-empty, every entry `host:port`.
    pub fn validate(&self) -> Result<()> {
        if self.bootstrap.is_empty() {
            return Err(ClientError::Invalid {
                what: "bootstrap servers",
                reason: "the list is empty".into(),
            });
        }
        for addr in &self.bootstrap {
            if addr.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
                return Err(ClientError::Invalid {
                    what: "bootstrap server",
                    reason: format!("{addr:?} is not host:port"),
                });
            }
        }
        Ok(())
    }

    /// Config for a comma-separated bootstrap list with defaults elsewhere.
    pub fn new(bootstrap: &str) -> Self {
        let bootstrap: Vec<String> = bootstrap
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        Self {
            cluster: bootstrap.join(","),
            bootstrap,
            connection: ConnectionConfig::default(),
            connect_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
            tls: None,
            sasl: None,
            socket_buffers: SocketBuffers::default(),
        }
    }
}

#[derive(Debug, Default)]
struct Slot {
    conn: Option<Arc<Connection>>,
    failures: u32,
    retry_at: Option<Instant>,
}

/// A handle on one Kafka cluster: broker pool plus metadata cache. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    tls: Option<Tls>,
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
    metadata: RwLock<Metadata>,
    stale: AtomicBool,
}

impl Client {
    /// A client that has not connected yet (connections open on first use).
    pub fn new(config: ClientConfig) -> Result<Self> {
        let client = Self::quiet(config)?;
        let config = &client.config;
        if config.tls.as_ref().is_some_and(|t| t.insecure_skip_verify) {
            warn!(
                brokers = %config.bootstrap.join(","),
                "TLS certificate verification is OFF (insecure_skip_verify = true): anyone on the network path can impersonate these brokers"
            );
        }
        if config.tls.is_none()
            && config
                .sasl
                .as_ref()
                .is_some_and(|s| s.mechanism == sasl::SaslMechanism::Plain)
        {
            warn!(
                brokers = %config.bootstrap.join(","),
                "SASL PLAIN without TLS: the password crosses the network in clear text"
            );
        }
        Ok(client)
    }

    /// [`Client::new`] without its warnings about insecure settings (for
    /// short-lived clients made again and again, which would repeat them).
    fn quiet(config: ClientConfig) -> Result<Self> {
        config.validate()?;
        let tls = config.tls.as_ref().map(Tls::new).transpose()?;
        Ok(Self {
            config,
            tls,
            slots: Mutex::new(HashMap::new()),
            metadata: RwLock::new(Metadata::default()),
            stale: AtomicBool::new(true),
        })
    }

    /// Whether the cluster answers a metadata request now, with a client of
    /// its own (fresh connections) and no log line: for probes repeated every
    /// second.
    pub async fn probe(config: ClientConfig) -> Result<()> {
        Self::quiet(config)?.refresh_metadata(Some(&[])).await.map(|_| ())
    }

    /// Creates a client and fetches broker metadata, proving the cluster is reachable.
    pub async fn connect(config: ClientConfig) -> Result<Self> {
        let client = Self::new(config)?;
        let md = client.refresh_metadata(Some(&[])).await?;
        info!(
            cluster_id = md.cluster_id.as_deref().unwrap_or("?"),
            brokers = md.brokers.len(),
            "connected to cluster"
        );
        Ok(client)
    }

    /// The client's settings.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The connection to `addr`, opening it (after any backoff still due) if needed.
    pub async fn connection(&self, addr: &str) -> Result<Arc<Connection>> {
        self.connection_in(addr, 0).await
    }

    /// Connection `lane` to broker `node` (lane 0 is the connection every
    /// other request uses): a broker answers one request per connection at a
    /// time, so requests that should be in flight together (fetches across a
    /// long round trip) go over lanes of their own.
    pub async fn broker_lane(&self, node: i32, lane: usize) -> Result<Arc<Connection>> {
        if lane == 0 {
            return self.broker(node).await;
        }
        let addr = match self.broker_address(node) {
            Some(a) => a,
            None => {
                self.refresh_metadata(Some(&[])).await?;
                self.broker_address(node).ok_or(ClientError::UnknownBroker { node })?
            }
        };
        self.connection_in(&addr, lane).await
    }

    async fn connection_in(&self, addr: &str, lane: usize) -> Result<Arc<Connection>> {
        let key = if lane == 0 {
            addr.to_string()
        } else {
            format!("{addr}#{lane}")
        };
        let slot = {
            let mut slots = crate::sync::lock(&self.slots);
            slots.entry(key).or_default().clone()
        };
        let mut slot = slot.lock().await;
        if let Some(conn) = &slot.conn {
            if !conn.is_failed() {
                return Ok(conn.clone());
            }
            debug!(broker = addr, "reconnecting after connection failure");
            slot.conn = None;
        }
        if let Some(at) = slot.retry_at {
            tokio::time::sleep_until(at).await;
        }
        match self.open(addr).await {
            Ok(conn) => {
                slot.conn = Some(conn.clone());
                slot.failures = 0;
                slot.retry_at = None;
                Ok(conn)
            }
            Err(e) => {
                slot.failures += 1;
                let delay = self.config.backoff.delay(slot.failures);
                slot.retry_at = Some(Instant::now() + delay);
                if slot.failures >= 3 {
                    warn!(broker = addr, failures = slot.failures, retry_in_ms = delay.as_millis() as u64, error = %e, "connection attempts keep failing");
                } else {
                    debug!(broker = addr, failures = slot.failures, retry_in_ms = delay.as_millis() as u64, error = %e, "connection attempt failed");
                }
                Err(e)
            }
        }
    }

    async fn open(&self, addr: &str) -> Result<Arc<Connection>> {
        let connect_err = |reason: String| ClientError::Connect {
            broker: addr.to_string(),
            reason,
        };
        let stream = tokio::time::timeout(
            self.config.connect_timeout,
            sockbuf::connect(addr, self.config.socket_buffers, &self.config.cluster),
        )
        .await
        .map_err(|_| {
            connect_err(format!(
                "no answer within {} ms",
                self.config.connect_timeout.as_millis()
            ))
        })?
        .map_err(|e| connect_err(e.to_string()))?;
        stream.set_nodelay(true).map_err(|e| connect_err(e.to_string()))?;
        // The TLS, ApiVersions and SASL exchanges must also finish within the
        // connect timeout: a server that accepts TCP but does not speak Kafka (or
        // TLS) must not hang us.
        let timeout = self.config.connect_timeout;
        // An answer that is not a Kafka frame: say so, not "raise max_frame_bytes".
        let not_kafka_err = |e: ClientError| match e {
            ClientError::Protocol { source, .. } => connect_err(not_kafka(&source)),
            other => other,
        };
        let conn = match &self.tls {
            Some(tls) => {
                let stream = tokio::time::timeout(timeout, tls.connect(addr, stream))
                    .await
                    .map_err(|_| ClientError::Tls {
                        broker: addr.to_string(),
                        reason: "no TLS handshake answer: is this a TLS listener?".into(),
                    })??;
                tokio::time::timeout(
                    timeout,
                    Connection::handshake(stream, addr, self.config.connection.clone()),
                )
                .await
                .map_err(|_| connect_err("no ApiVersions answer over TLS: is this a Kafka listener?".into()))?
                .map_err(not_kafka_err)?
            }
            None => tokio::time::timeout(
                timeout,
                Connection::handshake_tcp(stream, addr, self.config.connection.clone()),
            )
            .await
            .map_err(|_| connect_err("no ApiVersions answer: is this a Kafka listener?".into()))?
            .map_err(not_kafka_err)?,
        };
        // strait asks for Metadata without topic auto-creation, a field of v4+
        // (Kafka 0.11, like Produce v3 and v2 batches): an older broker is refused
        // here, by name and versions, not by a failure to encode the first request.
        conn.versions()
            .negotiate_at_least::<MetadataRequest>(4)
            .map_err(|source| ClientError::Protocol {
                broker: addr.to_string(),
                source,
            })?;
        let conn = Arc::new(conn);
        if let Some(s) = &self.config.sasl {
            let lifetime = tokio::time::timeout(timeout, sasl::authenticate(&conn, s))
                .await
                .map_err(|_| ClientError::Auth {
                    broker: addr.to_string(),
                    mechanism: s.mechanism.name(),
                    reason: format!("no answer within {} ms", timeout.as_millis()),
                })??;
            if let Some(lifetime) = lifetime {
                debug!(
                    broker = addr,
                    lifetime_ms = lifetime.as_millis() as u64,
                    "SASL session expires; re-authentication scheduled"
                );
                let task = tokio::spawn(reauthenticate(Arc::downgrade(&conn), s.clone(), lifetime));
                conn.attach_task(task.abort_handle());
            }
        }
        Ok(conn)
    }

    /// The connection to broker `node`, by its id in the metadata.
    pub async fn broker(&self, node: i32) -> Result<Arc<Connection>> {
        let addr = self.broker_address(node);
        let addr = match addr {
            Some(a) => a,
            None => {
                self.refresh_metadata(Some(&[])).await?;
                self.broker_address(node).ok_or(ClientError::UnknownBroker { node })?
            }
        };
        self.connection(&addr).await
    }

    fn broker_address(&self, node: i32) -> Option<String> {
        self.read_md().brokers.get(&node).map(|b| b.address())
    }

    /// A connection to any reachable broker: known brokers first, then bootstrap servers.
    pub async fn any_broker(&self) -> Result<Arc<Connection>> {
        let mut candidates: Vec<String> = self.read_md().brokers.values().map(|b| b.address()).collect();
        candidates.sort();
        if !candidates.is_empty() {
            let k = fastrand::usize(..candidates.len());
            candidates.rotate_left(k);
        }
        for b in &self.config.bootstrap {
            if !candidates.contains(b) {
                candidates.push(b.clone());
            }
        }
        let mut last: Option<ClientError> = None;
        let mut security: Option<ClientError> = None;
        for addr in &candidates {
            match self.connection(addr).await {
                Ok(c) => return Ok(c),
                Err(e) if e.is_security() => security = Some(e),
                Err(e) => last = Some(e),
            }
        }
        // A broker that answered but refused our TLS or credentials says more
        // than "unreachable": report that, alone.
        if let Some(e) = security {
            return Err(e);
        }
        Err(ClientError::NoBrokerReachable {
            servers: self.config.bootstrap.join(","),
            last_error: last.map(|e| e.to_string()).unwrap_or_default(),
        })
    }

    fn read_md(&self) -> std::sync::RwLockReadGuard<'_, Metadata> {
        crate::sync::read(&self.metadata)
    }

    /// The leader of a partition in the cached metadata, while the cache is
    /// not marked stale and knows topic `id` (not a topic of the same name
    /// deleted since); `None` otherwise.
    pub fn cached_leader(&self, topic: &str, partition: i32, id: uuid::Uuid) -> Option<i32> {
        self.cached_partition(topic, partition, Some(id))
            .filter(|p| p.leader >= 0 && p.error_code == 0)
            .map(|p| p.leader)
    }

    /// A partition's cached metadata while the cache is not marked stale (and,
    /// with `id`, names that topic id); `None` otherwise.
    fn cached_partition(
        &self,
        topic: &str,
        partition: i32,
        id: Option<uuid::Uuid>,
    ) -> Option<super::metadata::PartitionMetadata> {
        if self.stale.load(Ordering::Relaxed) {
            return None;
        }
        let md = self.read_md();
        if id.is_some_and(|id| md.topics.get(topic).is_none_or(|t| t.id != id)) {
            return None;
        }
        md.partition(topic, partition).cloned()
    }

    /// A copy of the cached metadata.
    pub fn cached_metadata(&self) -> Metadata {
        self.read_md().clone()
    }

    /// Asks the cluster for metadata: `None` = all topics, `Some(&[])` = brokers only.
    /// The cache is updated; the fresh snapshot is returned.
    pub async fn refresh_metadata(&self, topics: Option<&[String]>) -> Result<Metadata> {
        let req = MetadataRequest::default()
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| {
                        MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        let conn = self.any_broker().await?;
        let resp = conn.request(&req).await?;
        let fresh = Metadata::from_response(&resp);
        {
            let mut md = crate::sync::write(&self.metadata);
            md.merge(fresh.clone());
        }
        if topics.is_none() || topics.is_some_and(|t| !t.is_empty()) {
            self.stale.store(false, Ordering::Relaxed);
        }
        Ok(fresh)
    }

    /// Leader broker id and leader epoch of a partition, refreshing the cache when
    /// it is stale or does not know the partition.
    pub async fn leader(&self, topic: &str, partition: i32) -> Result<(i32, i32)> {
        let p = match self.cached_partition(topic, partition, None) {
            Some(p) if p.leader >= 0 => p,
            _ => {
                let md = self.refresh_metadata(Some(&[topic.to_string()])).await?;
                let t = md.topics.get(topic).ok_or_else(|| ClientError::UnknownPartition {
                    topic: topic.into(),
                    partition,
                })?;
                if t.error_code != 0 {
                    return Err(ClientError::kafka("Metadata", "cluster", topic, t.error_code, None));
                }
                md.partition(topic, partition)
                    .cloned()
                    .ok_or_else(|| ClientError::UnknownPartition {
                        topic: topic.into(),
                        partition,
                    })?
            }
        };
        if p.leader < 0 {
            return Err(ClientError::NoLeader {
                topic: topic.into(),
                partition,
            });
        }
        Ok((p.leader, p.leader_epoch))
    }

    /// Marks the metadata cache stale: the next [`leader`](Self::leader) asks the cluster.
    pub fn invalidate_metadata(&self) {
        self.stale.store(true, Ordering::Relaxed);
    }

    /// Reports an error seen by a caller; routing errors mark the cache stale.
    /// Returns the error's class so the caller can decide to retry.
    pub fn note_error(&self, err: &ClientError) -> ErrorClass {
        let class = err.class();
        if class == ErrorClass::RefreshMetadata {
            self.invalidate_metadata();
        }
        class
    }

    /// Like [`note_error`](Self::note_error) for a bare Kafka error code.
    pub fn note_error_code(&self, code: i16) -> ErrorClass {
        let class = super::classify(code);
        if class == ErrorClass::RefreshMetadata {
            self.invalidate_metadata();
        }
        class
    }
}

/// Re-authenticates the connection before each session expires, until the
/// connection is dropped or fails. A failed re-authentication closes the
/// connection (the broker would close it at expiry anyway); the pool reconnects.
async fn reauthenticate(conn: std::sync::Weak<Connection>, settings: SaslSettings, mut lifetime: Duration) {
    loop {
        tokio::time::sleep(sasl::reauth_delay(lifetime)).await;
        let Some(conn) = conn.upgrade() else { return };
        if conn.is_failed() {
            return;
        }
        match sasl::authenticate(&conn, &settings).await {
            Ok(Some(next)) => {
                conn.note_reauthentication();
                debug!(
                    broker = conn.broker(),
                    lifetime_ms = next.as_millis() as u64,
                    "SASL re-authentication done"
                );
                lifetime = next;
            }
            Ok(None) => {
                conn.note_reauthentication();
                return;
            }
            Err(e) => {
                warn!(broker = conn.broker(), error = %e, "SASL re-authentication failed; closing the connection");
                conn.fail(e);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        assert_eq!(b.delay(0), Duration::ZERO);
        let d1 = b.delay(1);
        assert!(
            d1 >= Duration::from_millis(80) && d1 <= Duration::from_millis(120),
            "{d1:?}"
        );
        let d3 = b.delay(3);
        assert!(
            d3 >= Duration::from_millis(320) && d3 <= Duration::from_millis(480),
            "{d3:?}"
        );
        for n in 6..40 {
            assert!(b.delay(n) <= Duration::from_millis(2400));
        }
    }

    #[test]
    fn bad_bootstrap_is_rejected_with_the_address() {
        let err = Client::new(ClientConfig::new("localhost")).unwrap_err();
        assert!(err.to_string().contains("\"localhost\" is not host:port"), "{err}");
        assert!(Client::new(ClientConfig::new(" , ")).is_err());
    }
}
