//! The replication engine: topic mirroring, fetchers, producer, checkpoints.
//!
//! [`run`] wires the pieces together and runs until `shutdown` resolves, then
//! stops fetching, lets in-flight produces finish, and commits a last checkpoint.

pub mod acls;
pub mod assign;
pub mod autofail;
pub mod budget;
pub mod checkpoint;
pub mod diverged;
mod engine;
pub mod eos;
pub mod exposition;
pub mod failover;
pub mod failover_record;
pub mod fetcher;
pub mod groups;
pub mod heartbeat;
pub mod log;
pub mod membership;
pub mod metrics;
pub mod mm2;
pub mod offset_map;
pub mod owner;
pub mod producer;
pub mod provenance;
pub mod topics;
pub mod translate;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::client::{Client, ClientError};
use crate::config::{Config, Document};
use budget::Share;
use fetcher::Fetchers;
use metrics::Metrics;
use producer::Producer;

/// Errors that stop a replication.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A cluster could not be reached or refused a setup step.
    #[error("{cluster}: {source}")]
    Cluster {
        /// The cluster's role and alias (`source cluster "east"`).
        cluster: String,
        /// What went wrong.
        #[source]
        source: ClientError,
    },
    /// Exactly-once mode: a transaction failed; nothing after the last committed
    /// one is visible to read_committed consumers, and a restart resumes there.
    #[error("{0}")]
    Transaction(#[from] eos::TxnError),
    /// Provenance could not be recorded or read where a wrong answer would loop.
    #[error("{0}")]
    Provenance(Box<provenance::ProvenanceError>),
    /// The flows of the config would deliver records twice or loop.
    #[error("refusing the topology: {0}")]
    Topology(String),
    /// Source and destination are one cluster and the copy would feed itself.
    #[error("refusing to replicate: {0}")]
    SelfCopy(String),
    /// This process may not (or no longer) take part in the replication group.
    #[error("{0}")]
    Membership(String),
    /// The flow was failed over: this direction must not resume.
    #[error("refusing to start: {0}")]
    FailedOver(String),
    /// `start_from = "mm2"`: MirrorMaker 2's positions cannot be read.
    #[error("cannot take over from MirrorMaker 2: {0}")]
    Mm2(#[from] mm2::Mm2Error),
}

/// Totals at the end of a run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Records acknowledged by the destination.
    pub records: u64,
    /// Batch bytes acknowledged by the destination.
    pub bytes: u64,
    /// Batches forwarded raw.
    pub batches_fast: u64,
    /// Batches re-encoded (compaction gaps).
    pub batches_slow: u64,
    /// Partitions stopped on errors, with the reason.
    pub stopped: Vec<String>,
}

/// A running replication's handles, for progress reports, the metrics
/// endpoint ([`exposition`]) and tests.
#[derive(Debug, Clone)]
pub struct Handle {
    /// The flow's name (label of its metrics).
    pub flow: Arc<str>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    producer: Arc<Producer>,
    fetchers: Arc<Fetchers>,
    budget: Arc<Share>,
    membership: Arc<membership::Membership>,
    /// Readiness: the longest a checkpoint, and an answer from the source, may be old.
    pub stale_after: Duration,
    /// Why the flow stopped while the process runs on (none: running).
    pub failed: Arc<std::sync::Mutex<Option<String>>>,
}

/// Replication lag of one source topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicLag {
    /// Records in the source (up to the last stable offset) not yet acknowledged by the destination.
    pub records: i64,
    /// Partitions.
    pub partitions: usize,
}

impl Handle {
    /// Lag per source topic.
    pub fn lag(&self) -> BTreeMap<String, TopicLag> {
        let mut out: BTreeMap<String, TopicLag> = BTreeMap::new();
        for (topic, _, lag) in self.partition_lag() {
            let e = out.entry(topic).or_insert(TopicLag {
                records: 0,
                partitions: 0,
            });
            e.partitions += 1;
            e.records += lag.max(0);
        }
        out
    }

    /// Lag per source partition: records up to the source's last stable offset not
    /// yet acknowledged by the destination (-1 before the first fetch answered).
    pub fn partition_lag(&self) -> Vec<(String, i32, i64)> {
        let acked: HashMap<(Arc<str>, i32), i64> = self
            .producer
            .positions()
            .into_iter()
            .map(|p| ((p.route.src_topic.clone(), p.route.partition), p.acked_next))
            .collect();
        let mut out: Vec<(String, i32, i64)> = self
            .fetchers
            .lags()
            .into_iter()
            .map(|l| {
                let a = acked
                    .get(&(l.topic.clone(), l.partition))
                    .copied()
                    .unwrap_or(l.next_offset);
                let lag = if l.end_offset >= 0 {
                    (l.end_offset - a).max(0)
                } else {
                    -1
                };
                (l.topic.to_string(), l.partition, lag)
            })
            .collect();
        out.sort();
        out
    }

    /// The most fetch requests that were in flight at once to one source broker.
    pub fn fetches_in_flight_peak(&self) -> u64 {
        Metrics::get(&self.metrics.fetches_in_flight_peak)
    }

    /// This process's membership in the flow's replication group.
    pub fn member(&self) -> serde_json::Value {
        self.membership.status()
    }

    /// Source partitions assigned to this process.
    pub fn member_partitions(&self) -> usize {
        self.membership.assigned_count()
    }

    /// This process's instance id in the replication group (the `member` label).
    pub fn instance_id(&self) -> &str {
        self.membership.instance_id()
    }

    /// Batches fetched but not yet acknowledged by the destination.
    pub fn pending(&self) -> usize {
        self.producer.pending()
    }

    /// Partitions stopped on an unrecoverable error.
    pub fn stopped_partitions(&self) -> usize {
        self.fetchers.stopped().len() + self.producer.positions().iter().filter(|p| p.failed.is_some()).count()
    }

    /// Bytes of fetched data currently held between fetch and acknowledgement.
    pub fn buffered_bytes(&self) -> usize {
        self.budget.data()
    }

    /// Bytes of the budget reserved by fetches still waiting for their response.
    pub fn reserved_bytes(&self) -> usize {
        self.budget.reserved()
    }

    /// The most bytes ever held between fetch and acknowledgement.
    pub fn peak_buffered_bytes(&self) -> usize {
        self.budget.peak()
    }

    /// Ready when both clusters answered recently, idle or not: a checkpoint was
    /// committed on the destination (an idle replication re-commits its
    /// positions) and the source answered a fetch or a metadata request, each
    /// within `stale_after` (`readiness_timeout_ms`); and no partition is stopped.
    pub fn readiness(&self) -> Result<(), String> {
        let limit = self.stale_after.as_millis() as u64;
        let mut why = Vec::new();
        if let Some(e) = crate::sync::lock(&self.failed).as_ref() {
            why.push(format!("flow stopped: {e}"));
        }
        match Metrics::age_ms(&self.metrics.last_checkpoint_ms) {
            None => why.push("no checkpoint committed yet".to_string()),
            Some(age) if age > limit => why.push(format!(
                "last checkpoint committed {} s ago: the destination does not answer",
                age / 1000
            )),
            Some(_) => {}
        }
        match Metrics::age_ms(&self.metrics.last_source_ok_ms) {
            None => why.push("the source has not answered yet".to_string()),
            Some(age) if age > limit => why.push(format!("the source last answered {} s ago", age / 1000)),
            Some(_) => {}
        }
        if !self.membership.alive() {
            why.push("not a live member of the replication group (joining, or no answer from its coordinator for session_timeout_ms)".to_string());
        }
        match self.stopped_partitions() {
            0 => {}
            n => why.push(format!("{n} partition(s) stopped on errors")),
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(why.join("; "))
        }
    }

    /// The flow's state for `/status`: totals, lag per topic, readiness.
    pub fn status(&self) -> serde_json::Value {
        let lag: serde_json::Map<String, serde_json::Value> = self
            .lag()
            .into_iter()
            .map(|(t, l)| (t, serde_json::json!({"records": l.records, "partitions": l.partitions})))
            .collect();
        let ready = self.readiness();
        serde_json::json!({
            "flow": &*self.flow,
            "ready": ready.is_ok(),
            "not_ready_because": ready.err(),
            "records": Metrics::get(&self.metrics.records),
            "bytes": Metrics::get(&self.metrics.bytes),
            "lag": lag,
            "partitions_stopped": self.stopped_partitions(),
            "member": self.membership.status(),
            "source_brokers": self.fetchers.round_trips().into_iter().map(|(n, rtt, lanes)| serde_json::json!({
                "broker": n,
                "round_trip_ms": (rtt.as_secs_f64() * 1e4).round() / 10.0,
                "fetch_lanes": lanes,
            })).collect::<Vec<_>>(),
            "fetches_in_flight_peak": Metrics::get(&self.metrics.fetches_in_flight_peak),
            "checkpoint_age_seconds": Metrics::age_ms(&self.metrics.last_checkpoint_ms).map(|ms| ms as f64 / 1000.0),
            "failed_over": Metrics::get(&self.metrics.failed_over) == 1,
            "heartbeat": {
                "age_seconds": self.metrics.heartbeat_age_seconds(),
                "latency_seconds": self.metrics.heartbeat_latency_seconds(),
            },
        })
    }
}

/// Maps a client error on the source to an [`EngineError`] naming that cluster.
pub fn src_err(cfg: &Config) -> impl Fn(ClientError) -> EngineError {
    let cluster = cfg.source.label("source");
    move |source| EngineError::Cluster {
        cluster: cluster.clone(),
        source,
    }
}

/// Maps a client error on the destination to an [`EngineError`] naming that cluster.
pub fn dst_err(cfg: &Config) -> impl Fn(ClientError) -> EngineError {
    let cluster = cfg.destination.label("destination");
    move |source| EngineError::Cluster {
        cluster: cluster.clone(),
        source,
    }
}

/// True when both clients talk to the cluster with one cluster id.
pub fn same_cluster(src: &Client, dst: &Client) -> bool {
    let id = |c: &Client| c.cached_metadata().cluster_id;
    matches!((id(src), id(dst)), (Some(a), Some(b)) if a == b)
}

/// Runs one flow alone until `shutdown` resolves: connects its two clusters,
/// gives it the whole memory budget. `on_start` receives its [`Handle`] once it
/// is set up; `progress` sets how often a progress line is logged.
pub async fn run<S, F>(
    cfg: Config,
    shutdown: S,
    progress: Option<Duration>,
    on_start: F,
) -> Result<Summary, EngineError>
where
    S: Future<Output = ()>,
    F: FnOnce(Handle),
{
    let doc = Document::of(cfg);
    let mut outcomes = run_document(doc, shutdown, progress, |mut handles| on_start(handles.remove(0))).await?;
    outcomes.remove(0).result
}

/// How one flow of a document ended.
#[derive(Debug)]
pub struct FlowOutcome {
    /// The flow's name.
    pub flow: String,
    /// Its totals, or why it stopped.
    pub result: Result<Summary, EngineError>,
}

/// Runs every flow of `doc` until `shutdown` resolves: one client per cluster,
/// shared by the flows that use it; one memory budget, shared fairly; one
/// provenance registry per cluster. `on_start` receives every flow's
/// [`Handle`] once all are set up. A flow that fails while running stops
/// alone (its handle says why); a flow that cannot start stops them all.
pub async fn run_document<S, F>(
    doc: Document,
    shutdown: S,
    progress: Option<Duration>,
    on_start: F,
) -> Result<Vec<FlowOutcome>, EngineError>
where
    S: Future<Output = ()>,
    F: FnOnce(Vec<Handle>),
{
    let problems = crate::topology::problems(&doc);
    if !problems.is_empty() {
        return Err(EngineError::Topology(problems.join("; ")));
    }
    // Clusters in the order flows use them (the one-flow form: source, then destination).
    let mut order: Vec<(String, &'static str)> = Vec::new();
    for f in &doc.flows {
        for (alias, role) in [(&f.source.alias, "source"), (&f.destination.alias, "destination")] {
            if !order.iter().any(|(a, _)| a == alias) {
                order.push((alias.clone(), role));
            }
        }
    }
    let mut clients: HashMap<String, Arc<Client>> = HashMap::new();
    for (alias, role) in &order {
        let c = &doc.clusters[alias];
        let label = if doc.flows.len() == 1 {
            c.label(role)
        } else {
            format!("cluster {alias:?}")
        };
        let client = Client::connect(c.client_config())
            .await
            .map_err(|source| EngineError::Cluster { cluster: label, source })?;
        clients.insert(alias.clone(), Arc::new(client));
    }
    // Provenance: one registry per cluster a provenance flow reads or writes.
    let mut registries: HashMap<String, Arc<provenance::Registry>> = HashMap::new();
    for f in doc.flows.iter().filter(|f| crate::topology::uses_provenance(f)) {
        for alias in [&f.source.alias, &f.destination.alias] {
            registries.entry(alias.clone()).or_insert_with(|| {
                provenance::Registry::new(clients[alias].clone(), alias, f.topics.replication_factor)
            });
        }
    }
    let writes_into = |alias: &str| doc.flows.iter().any(|f| f.destination.alias == alias);
    let reads_from = |alias: &str| {
        doc.flows
            .iter()
            .any(|f| f.source.alias == alias && crate::topology::uses_provenance(f))
    };
    let shares =
        budget::Budget::adaptive(doc.ops.max_buffered_bytes, doc.ops.max_buffered_bytes_ceiling).split(doc.flows.len());
    // Two-way pairs with identity names: each flow's group sync bounds its
    // translations with the other flow's offset map.
    let reverse_of = |f: &Config| {
        doc.flows
            .iter()
            .find(|r| {
                r.source.alias == f.destination.alias
                    && r.destination.alias == f.source.alias
                    && r.topics.rename == crate::config::Rename::Identity
                    && f.topics.rename == crate::config::Rename::Identity
            })
            .map(|r| r.name.clone())
    };
    let checkpointers = Arc::new(std::sync::Mutex::new(HashMap::new()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    let mut started = Vec::new();
    for (f, share) in doc.flows.iter().zip(shares) {
        let res = engine::FlowResources {
            src: clients[&f.source.alias].clone(),
            dst: clients[&f.destination.alias].clone(),
            budget: share,
            src_registry: registries.get(&f.source.alias).cloned(),
            dst_registry: registries.get(&f.destination.alias).cloned(),
            provenance_essential: writes_into(&f.source.alias),
            registration_essential: reads_from(&f.destination.alias),
            checkpointers: checkpointers.clone(),
            reverse_flow: reverse_of(f),
            keep_index: doc
                .flows
                .iter()
                .any(|g| g.groups.enabled() && reverse_of(g).as_deref() == Some(f.name.as_str())),
        };
        let (h_tx, h_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(engine::run_flow(
            Arc::new(f.clone()),
            res,
            stop_rx.clone(),
            progress,
            move |h| {
                let _ = h_tx.send(h);
            },
        ));
        tasks.push((f.name.clone(), task));
        started.push(h_rx);
    }
    let mut handles = Vec::new();
    let mut failure = None;
    for (rx, (name, _)) in started.into_iter().zip(&tasks) {
        match rx.await {
            Ok(h) => handles.push(h),
            Err(_) => {
                failure.get_or_insert_with(|| name.clone());
            }
        }
    }
    if let Some(name) = failure {
        // A flow could not start: the others stop too, and its error is the answer.
        let _ = stop_tx.send(true);
        let mut first = None;
        for (n, task) in tasks {
            if let Ok(Err(e)) = task.await {
                if n == name || first.is_none() {
                    first = Some(e);
                }
            }
        }
        return Err(first.unwrap_or_else(|| EngineError::Topology(format!("flow {name} did not start"))));
    }
    on_start(handles.clone());
    // Flows that fail while running say so through their handles.
    let running: Vec<_> = tasks
        .into_iter()
        .zip(handles)
        .map(|((name, task), h)| {
            tokio::spawn(async move {
                let result = match task.await {
                    Ok(r) => r,
                    Err(e) => Err(EngineError::Topology(format!("flow {name} panicked: {e}"))),
                };
                if let Err(e) = &result {
                    tracing::error!(flow = %name, error = %e, "flow stopped");
                    *crate::sync::lock(&h.failed) = Some(e.to_string());
                }
                FlowOutcome { flow: name, result }
            })
        })
        .collect();
    // Runs until shut down, or until every flow has stopped on its own (a
    // fenced or failed flow does not keep an otherwise idle process alive).
    let all_stopped = async move {
        let mut out = Vec::new();
        for t in running {
            if let Ok(o) = t.await {
                out.push(o);
            }
        }
        out
    };
    tokio::pin!(all_stopped, shutdown);
    tokio::select! {
        out = &mut all_stopped => return Ok(out),
        _ = &mut shutdown => {}
    }
    let _ = stop_tx.send(true);
    Ok(all_stopped.await)
}
