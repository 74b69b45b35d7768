//! Provenance: which batches on a cluster strait wrote, and where their
//! records came from, without touching a record.
//!
//! Every batch strait writes carries a producer id the cluster it writes to
//! gave it (InitProducerId). Before its first produce with a producer id,
//! strait records the id in the cluster's compacted registry topic
//! [`REGISTRY_TOPIC`] (key: the producer id; value: the origin cluster of the
//! records it carries and the flow that writes them), with acks=all. Brokers
//! allocate producer ids once and never reuse them, and the log cleaner keeps
//! the last record of every key, so a reader tells strait's batches from local
//! producers' by one lookup of the batch's producer id: batches stay raw, CRCs
//! untouched. On a producer id it has not seen, a reader first reads the
//! registry to its end (the entry was written before the data), then decides
//! and remembers the answer: one catch-up per distinct producer id.
//!
//! What it cannot see: batches another replicator (MirrorMaker 2, Replicator)
//! wrote look local. If the registry topic is deleted, strait can no longer
//! tell its own batches apart: a reader then stops its flow (copying them
//! would loop) instead of guessing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tracing::{debug, info};
use uuid::Uuid;

use super::log;
use crate::client::{code, Client, ClientError, NewTopic};
use crate::sync::lock;

/// The registry topic on every cluster strait writes to.
pub const REGISTRY_TOPIC: &str = "__strait.provenance";

/// Where the records of a producer id's batches came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Alias of the cluster the records were first produced on.
    pub origin: String,
    /// The flow that writes them.
    pub flow: String,
}

/// Why provenance cannot be decided.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProvenanceError {
    /// The registry could not be read or written.
    #[error("provenance registry {topic} on cluster {cluster}: {source}")]
    Client {
        /// Cluster alias.
        cluster: String,
        /// The registry topic.
        topic: String,
        /// What failed.
        #[source]
        source: ClientError,
    },
    /// The registry topic was deleted (or deleted and created again) while strait ran.
    #[error(
        "provenance registry {topic} on cluster {cluster} was deleted while strait ran: batches strait wrote there \
         can no longer be told from local ones, so copying on would loop; a restart registers strait's producer ids \
         again, but batches written under the earlier ones and not yet read will look local and be copied back once \
         (docs/configuration.md, \"How loops are broken\")"
    )]
    Deleted {
        /// Cluster alias.
        cluster: String,
        /// The registry topic.
        topic: String,
    },
}

#[derive(Debug, Default)]
struct Known {
    /// Producer id → its origin (`None`: a local producer).
    origins: HashMap<i64, Option<Origin>>,
    /// Next registry offset to read.
    next: i64,
    /// The registry topic's id when first read (nil: not read yet).
    topic_id: Uuid,
}

/// What a flow does with the batches of one producer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward: records of `origin` (`None`: produced on the flow's source).
    Forward(Option<Arc<str>>),
    /// Skip: strait wrote them, and they are not this flow's to carry on.
    Skip,
}

/// A flow's rule for a batch whose producer id carries records of `origin`
/// (`None`: a local producer).
pub fn rule(origin: Option<&Origin>, forward_from: &[String], destination: &str) -> Decision {
    match origin {
        None => Decision::Forward(None),
        Some(o) if o.origin != destination && forward_from.contains(&o.origin) => {
            Decision::Forward(Some(Arc::from(o.origin.as_str())))
        }
        Some(_) => Decision::Skip,
    }
}

/// A flow's decisions by producer id, once made: the per-batch cost of
/// provenance is one lookup here (`benches/micro.rs`, `provenance_check`).
#[derive(Debug, Default)]
pub struct Decisions(Mutex<HashMap<i64, Decision>>);

impl Decisions {
    /// The decision made for `producer_id`, if any.
    pub fn get(&self, producer_id: i64) -> Option<Decision> {
        lock(&self.0).get(&producer_id).cloned()
    }

    /// Remembers `decision` for `producer_id` (a registration never changes).
    pub fn insert(&self, producer_id: i64, decision: Decision) {
        lock(&self.0).insert(producer_id, decision);
    }
}

/// A flow's rule on its source cluster's registry: forward what was produced
/// on the source, and what came from an origin in `forward_from`, never what
/// came from the flow's destination.
#[derive(Debug)]
pub struct Filter {
    registry: Arc<Registry>,
    forward_from: Vec<String>,
    destination: String,
    /// A wrong answer would loop (some flow writes into this source): errors
    /// stop the flow. Otherwise an unreadable registry only means no batch is
    /// skipped, which is said once.
    essential: bool,
    warned: std::sync::atomic::AtomicBool,
    decided: Decisions,
}

impl Filter {
    /// The rule of a flow reading from `registry`'s cluster into `destination`.
    pub fn new(registry: Arc<Registry>, forward_from: Vec<String>, destination: &str, essential: bool) -> Self {
        Self {
            registry,
            forward_from,
            destination: destination.to_string(),
            essential,
            warned: std::sync::atomic::AtomicBool::new(false),
            decided: Decisions::default(),
        }
    }

    /// The decision for batches of `producer_id` (one hash lookup once known).
    pub async fn decide(&self, producer_id: i64) -> Result<Decision, ProvenanceError> {
        if let Some(d) = self.decided.get(producer_id) {
            return Ok(d);
        }
        match self.registry.origin(producer_id).await {
            Ok(o) => {
                let d = rule(o.as_ref(), &self.forward_from, &self.destination);
                self.decided.insert(producer_id, d.clone());
                Ok(d)
            }
            Err(e) if self.essential => Err(e),
            Err(e) => {
                if !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::warn!(error = %e, "provenance registry unreadable: batches strait wrote on this source (a failback, another flow) cannot be skipped; grant READ and DESCRIBE on topic __strait.provenance");
                }
                Ok(Decision::Forward(None))
            }
        }
    }
}

/// The provenance registry of one cluster, shared by every flow that reads
/// from or writes to it.
#[derive(Debug)]
pub struct Registry {
    client: Arc<Client>,
    cluster: String,
    replication_factor: i16,
    known: Mutex<Known>,
    /// One catch-up read at a time.
    reading: tokio::sync::Mutex<()>,
}

impl Registry {
    /// The registry of cluster `cluster` (its alias), created on first use.
    pub fn new(client: Arc<Client>, cluster: &str, replication_factor: i16) -> Arc<Self> {
        Arc::new(Self {
            client,
            cluster: cluster.to_string(),
            replication_factor,
            known: Mutex::new(Known::default()),
            reading: tokio::sync::Mutex::new(()),
        })
    }

    fn err(&self, source: ClientError) -> ProvenanceError {
        ProvenanceError::Client {
            cluster: self.cluster.clone(),
            topic: REGISTRY_TOPIC.into(),
            source,
        }
    }

    /// Creates the registry topic if it does not exist (compacted, one partition).
    pub async fn ensure_topic(&self) -> Result<(), ProvenanceError> {
        self.client
            .create_topics(
                &[NewTopic {
                    name: REGISTRY_TOPIC.into(),
                    partitions: 1,
                    replication_factor: self.replication_factor,
                    configs: vec![
                        ("cleanup.policy".into(), "compact".into()),
                        ("min.compaction.lag.ms".into(), "0".into()),
                    ],
                }],
                30_000,
                true,
            )
            .await
            .map_err(|e| self.err(e))
    }

    /// Records that `producer_id`'s batches on this cluster carry records of
    /// `origin` (acks=all): call before the first produce with it.
    pub async fn register(&self, producer_id: i64, origin: &Origin) -> Result<(), ProvenanceError> {
        self.ensure_topic().await?;
        let value = serde_json::to_vec(origin).expect("an origin serializes");
        let key = Bytes::from(producer_id.to_string());
        log::append(&self.client, REGISTRY_TOPIC, &[(key, Bytes::from(value))], None)
            .await
            .map_err(|e| self.err(e))?;
        lock(&self.known).origins.insert(producer_id, Some(origin.clone()));
        info!(cluster = %self.cluster, producer_id, origin = %origin.origin, flow = %origin.flow, "producer id registered for provenance");
        Ok(())
    }

    /// Where the records of `producer_id`'s batches came from: `None` for a
    /// local producer (or no producer id, -1). An id not seen yet is decided
    /// after reading the registry to its end.
    pub async fn origin(&self, producer_id: i64) -> Result<Option<Origin>, ProvenanceError> {
        if producer_id < 0 {
            return Ok(None);
        }
        if let Some(o) = lock(&self.known).origins.get(&producer_id) {
            return Ok(o.clone());
        }
        let _one = self.reading.lock().await;
        if let Some(o) = lock(&self.known).origins.get(&producer_id) {
            return Ok(o.clone());
        }
        self.catch_up().await?;
        let mut k = lock(&self.known);
        // Not registered by the time the batch was written: a local producer.
        Ok(k.origins.entry(producer_id).or_insert(None).clone())
    }

    /// Reads the registry from where the last read stopped to its end.
    async fn catch_up(&self) -> Result<(), ProvenanceError> {
        let (from, seen_id) = {
            let k = lock(&self.known);
            (k.next, k.topic_id)
        };
        let read = match log::read(&self.client, REGISTRY_TOPIC, from).await {
            Ok(r) => r,
            Err(e) if e.code() == Some(code::UNKNOWN_TOPIC_OR_PARTITION) => {
                if seen_id.is_nil() {
                    // Never created: nothing was registered on this cluster.
                    return Ok(());
                }
                return Err(self.deleted());
            }
            Err(e) => return Err(self.err(e)),
        };
        if super::topics::created_again(seen_id, read.topic_id) {
            return Err(self.deleted());
        }
        let mut k = lock(&self.known);
        k.topic_id = read.topic_id;
        k.next = read.next;
        for r in read.records {
            let Some(pid) = std::str::from_utf8(&r.key).ok().and_then(|s| s.parse::<i64>().ok()) else {
                continue;
            };
            let origin = r.value.and_then(|v| serde_json::from_slice::<Origin>(&v).ok());
            // A registration never changes, and a reader's earlier "local"
            // answer for an id cannot be contradicted later (ids are registered
            // before their first batch).
            k.origins.entry(pid).or_insert(origin);
        }
        debug!(cluster = %self.cluster, next = k.next, known = k.origins.len(), "provenance registry read");
        Ok(())
    }

    fn deleted(&self) -> ProvenanceError {
        ProvenanceError::Deleted {
            cluster: self.cluster.clone(),
            topic: REGISTRY_TOPIC.into(),
        }
    }
}
