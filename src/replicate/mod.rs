//! The replication engine: topic mirroring, fetchers, producer, checkpoints.
//!
//! [`run`] wires the pieces together and runs until `shutdown` resolves, then
//! stops fetching, lets in-flight produces finish, and commits a last checkpoint.

pub mod budget;
pub mod checkpoint;
pub mod eos;
pub mod exposition;
pub mod failover;
pub mod fetcher;
pub mod groups;
pub mod log;
pub mod metrics;
pub mod offset_map;
pub mod producer;
pub mod provenance;
pub mod topics;
pub mod translate;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{FetchRequest, ProduceRequest};
use tracing::{debug, info, warn};

use crate::batch::ProducerStamp;
use crate::client::admin::{EARLIEST, LATEST};
use crate::client::{Client, ClientError};
use crate::config::{Config, StartFrom};
use budget::Share;
use checkpoint::Checkpointer;
use fetcher::Fetchers;
use metrics::Metrics;
use producer::{Producer, Route};

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
    /// Source and destination are one cluster and the copy would feed itself.
    #[error("refusing to replicate: {0}")]
    SelfCopy(String),
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
    /// Readiness: the longest a checkpoint, and an answer from the source, may be old.
    pub stale_after: Duration,
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
            "checkpoint_age_seconds": Metrics::age_ms(&self.metrics.last_checkpoint_ms).map(|ms| ms as f64 / 1000.0),
        })
    }
}

/// Runs a replication until `shutdown` resolves. `on_start` receives a [`Handle`]
/// once both clusters are connected; `progress` sets how often a progress line is logged.
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
    let cfg = Arc::new(cfg);
    let src = Arc::new(
        Client::connect(cfg.source.client_config())
            .await
            .map_err(src_err(&cfg))?,
    );
    let dst = Arc::new(
        Client::connect(cfg.destination.client_config())
            .await
            .map_err(dst_err(&cfg))?,
    );
    let dst_err = dst_err(&cfg);
    // A broker too old for Fetch (source) or Produce (destination) at any version
    // strait speaks is one clear error now, not a loop that logs it forever.
    src.any_broker()
        .await
        .and_then(|c| c.version_of::<FetchRequest>())
        .map_err(src_err(&cfg))?;
    dst.any_broker()
        .await
        .and_then(|c| c.version_of::<ProduceRequest>())
        .map_err(&dst_err)?;
    let same_cluster = same_cluster(&src, &dst);
    if same_cluster {
        let md = src.refresh_metadata(None).await.map_err(src_err(&cfg))?;
        if let Some(problem) = cfg.self_copy_problem(md.topics.keys().map(String::as_str)) {
            return Err(EngineError::SelfCopy(problem));
        }
        warn!("source and destination are the same cluster: copying topics inside it under their renamed names");
    }
    let txn_id = cfg.produce.transactional_id.clone();
    let txn_timeout_ms = cfg.exactly_once.as_ref().map_or(60_000, |e| e.transaction_timeout_ms);
    // Transactional: fences an older instance and aborts its open transaction.
    let (pid, epoch) = dst
        .init_producer_id(txn_id.as_deref(), txn_timeout_ms)
        .await
        .map_err(&dst_err)?;
    match &txn_id {
        Some(t) => {
            info!(producer_id = pid, epoch, transactional_id = %t, "exactly-once: transactional producer ready on the destination")
        }
        None => info!(producer_id = pid, epoch, "idempotent producer ready on the destination"),
    }
    let stamp = ProducerStamp {
        producer_id: pid,
        producer_epoch: epoch,
        transactional: txn_id.is_some(),
    };
    let metrics = Arc::new(Metrics::default());
    let budget = Share::alone(cfg.ops.max_buffered_bytes);
    let producer = Producer::new(dst.clone(), cfg.produce.clone(), metrics.clone(), stamp);
    let fetchers = Fetchers::new(
        src.clone(),
        cfg.fetch.clone(),
        metrics.clone(),
        budget.clone(),
        producer.clone(),
    );
    let ckpt = Arc::new(Checkpointer::new(
        dst.clone(),
        checkpoint::CheckpointTarget::of(&cfg),
        producer.clone(),
        metrics.clone(),
    ));
    ckpt.ensure_map_topic().await.map_err(&dst_err)?;
    if cfg.groups.enabled() {
        ckpt.load_index().await.map_err(&dst_err)?;
    }
    let group_sync = groups::GroupSync::default();
    let handle = Handle {
        flow: Arc::from(cfg.name.as_str()),
        metrics: metrics.clone(),
        producer: producer.clone(),
        fetchers: fetchers.clone(),
        budget: budget.clone(),
        stale_after: readiness_limit(&cfg),
    };
    // Exactly-once: the transaction loop replaces the checkpoint timer.
    let (finish_txn, finish_rx) = tokio::sync::watch::channel(false);
    let mut txn_task = txn_id.zip(cfg.exactly_once.clone()).map(|(t, settings)| {
        tokio::spawn(eos::run(
            settings,
            dst.clone(),
            producer.clone(),
            ckpt.clone(),
            crate::client::TxnId {
                transactional_id: t,
                producer_id: pid,
                producer_epoch: epoch,
            },
            finish_rx,
        ))
    });
    let mut failed: Option<EngineError> = None;
    on_start(handle.clone());

    // The periodic work runs beside the data path, each part on its own
    // schedule: a topic refresh stuck on an unreachable source delays neither
    // checkpoints nor group sync.
    let (stop_periodic, stop_rx) = tokio::sync::watch::channel(false);
    let refresh_task = {
        let (cfg, src, dst) = (cfg.clone(), src.clone(), dst.clone());
        let (ckpt, producer, fetchers, metrics) = (ckpt.clone(), producer.clone(), fetchers.clone(), metrics.clone());
        let mut warned_no_topics = false;
        tokio::spawn(every(cfg.topics.refresh_interval, stop_rx.clone(), move || {
            let (cfg, src, dst) = (cfg.clone(), src.clone(), dst.clone());
            let (ckpt, producer, fetchers, metrics) =
                (ckpt.clone(), producer.clone(), fetchers.clone(), metrics.clone());
            let warn_no_topics = !std::mem::replace(&mut warned_no_topics, true);
            async move {
                match topics::reconcile(&cfg.topics, &src, &dst, same_cluster).await {
                    Ok(topics) => {
                        Metrics::stamp_now(&metrics.last_source_ok_ms);
                        if topics.is_empty() && !fetchers.any() && warn_no_topics {
                            let wanted: Vec<&str> = cfg.topics.topics.iter().map(crate::config::pattern_text).collect();
                            warn!(topics = ?wanted, "no source topic matches the topic selection: nothing to replicate until one appears");
                        }
                        for t in topics {
                            if let Err(e) = add_partitions(&cfg, &src, &dst, &ckpt, &producer, &fetchers, &t).await {
                                warn!(topic = %t.src, error = %e, "cannot start replicating; will retry");
                            }
                        }
                    }
                    Err(e) => warn!(error = %e, "topic refresh failed; will retry"),
                }
            }
        }))
    };
    // Exactly-once: the transaction loop commits positions instead.
    let checkpoint_task = cfg.exactly_once.is_none().then(|| {
        let ckpt = ckpt.clone();
        tokio::spawn(every(cfg.checkpoint_interval, stop_rx.clone(), move || {
            let ckpt = ckpt.clone();
            async move {
                if let Err(e) = ckpt.checkpoint().await {
                    warn!(error = %e, "checkpoint failed; will retry");
                }
            }
        }))
    });
    let group_sync = Arc::new(group_sync);
    let group_task = cfg.groups.enabled().then(|| {
        let (cfg, src, dst, ckpt, metrics, sync) = (
            cfg.clone(),
            src.clone(),
            dst.clone(),
            ckpt.clone(),
            metrics.clone(),
            group_sync.clone(),
        );
        tokio::spawn(every(cfg.groups.interval, stop_rx.clone(), move || {
            let (cfg, src, dst, ckpt, metrics, sync) = (
                cfg.clone(),
                src.clone(),
                dst.clone(),
                ckpt.clone(),
                metrics.clone(),
                sync.clone(),
            );
            async move {
                match sync.sync_once(&cfg.groups, &cfg.topics, &src, &dst, &ckpt).await {
                    Ok(n) => Metrics::add(&metrics.group_offsets_synced, n as u64),
                    Err(e) => warn!(error = %e, "group offset sync failed; will retry"),
                }
            }
        }))
    });

    tokio::pin!(shutdown);
    let mut report = tokio::time::interval(progress.unwrap_or(Duration::from_secs(3600)));
    report.tick().await;
    let mut last = (Instant::now(), 0u64, 0u64);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            r = async { txn_task.as_mut().expect("guarded").await }, if txn_task.is_some() => {
                txn_task = None;
                failed = Some(match r {
                    Ok(Err(e)) => e.into(),
                    Ok(Ok(())) => eos::TxnError::Producer("transaction loop ended".into()).into(),
                    Err(e) => eos::TxnError::Producer(format!("transaction loop panicked: {e}")).into(),
                });
                break;
            }
            _ = report.tick(), if progress.is_some() => {
                let now = Instant::now();
                let (r, b) = (Metrics::get(&metrics.records), Metrics::get(&metrics.bytes));
                let secs = now.duration_since(last.0).as_secs_f64().max(1e-3);
                let lags = handle.lag();
                let lag: Vec<String> = lags.iter().map(|(t, l)| format!("{t}={}", l.records)).collect();
                let records_per_s = ((r - last.1) as f64 / secs).round();
                let mb_per_s = ((b - last.2) as f64 / secs / 1e6 * 100.0).round() / 100.0;
                // Numbers as fields, so `--log-format json` gives them typed.
                info!(
                    records_per_s,
                    mb_per_s,
                    records_total = r,
                    lag_records = lags.values().map(|l| l.records).sum::<i64>(),
                    lag_by_topic = %if lag.is_empty() { "-".to_string() } else { lag.join(" ") },
                    buffered_mib = (budget.data() as f64 / (1024.0 * 1024.0) * 10.0).round() / 10.0,
                    slow_path_pct = (metrics.slow_path_percent() * 10.0).round() / 10.0,
                    batches_coalesced = Metrics::get(&metrics.batches_coalesced),
                    "progress"
                );
                last = (now, r, b);
            }
        }
    }
    info!("stopping: no more fetches; finishing in-flight produces");
    fetchers.stop();
    // Topic refresh and group sync are dropped mid-way; a checkpoint is let
    // finish (it may hold map entries taken from the producer).
    let _ = stop_periodic.send(true);
    refresh_task.abort();
    if let Some(t) = group_task {
        t.abort();
    }
    if let Some(t) = checkpoint_task {
        let _ = t.await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while failed.is_none() && producer.pending() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(task) = txn_task.take() {
        // The last transaction commits what was acknowledged; anything still
        // queued is not in it and is fetched again by the next run.
        let _ = finish_txn.send(true);
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed = Some(e.into()),
            Err(e) => failed = Some(eos::TxnError::Producer(format!("transaction loop panicked: {e}")).into()),
        }
    }
    producer.stop();
    if let Some(e) = failed {
        fetchers.stop();
        return Err(e);
    }
    if cfg.exactly_once.is_none() {
        if let Err(e) = ckpt.checkpoint().await {
            warn!(error = %e, "final checkpoint failed; a restart re-sends from the previous one");
        }
    }
    if cfg.groups.enabled() {
        // A last group sync, so a failover site has the newest translated offsets.
        match group_sync.sync_once(&cfg.groups, &cfg.topics, &src, &dst, &ckpt).await {
            Ok(n) => Metrics::add(&metrics.group_offsets_synced, n as u64),
            Err(e) => warn!(error = %e, "final group offset sync failed"),
        }
    }
    let mut stopped: Vec<String> = fetchers.stopped().into_iter().map(|(_, r)| r).collect();
    stopped.extend(producer.positions().into_iter().filter_map(|p| p.failed));
    Ok(Summary {
        records: Metrics::get(&metrics.records),
        bytes: Metrics::get(&metrics.bytes),
        batches_fast: Metrics::get(&metrics.batches_fast),
        batches_slow: Metrics::get(&metrics.batches_slow),
        stopped,
    })
}

/// Runs `work` every `period` (the first time at once; late ticks are delayed,
/// not bunched) until `stop` turns true; a run in progress finishes first.
async fn every<F, Fut>(period: Duration, mut stop: tokio::sync::watch::Receiver<bool>, mut work: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopped = async { stop.wait_for(|s| *s).await.is_ok() };
        tokio::select! {
            _ = tick.tick() => work().await,
            _ = stopped => return,
        }
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

/// How old the last checkpoint and the last answer from the source may be
/// before `/readyz` says not ready: `readiness_timeout_ms`, or two intervals of
/// the work that proves each side answers when that is longer.
fn readiness_limit(cfg: &Config) -> Duration {
    cfg.ops
        .readiness_timeout
        .max(cfg.checkpoint_interval * 2)
        .max(cfg.topics.refresh_interval * 2)
        .max(cfg.fetch.max_wait * 2)
}

async fn add_partitions(
    cfg: &Config,
    src: &Client,
    dst: &Client,
    ckpt: &Checkpointer,
    producer: &Producer,
    fetchers: &Fetchers,
    t: &topics::MirroredTopic,
) -> Result<(), ClientError> {
    let new: Vec<i32> = (0..t.partitions).filter(|p| !fetchers.has(&t.src, *p)).collect();
    if new.is_empty() {
        return Ok(());
    }
    let saved = ckpt.load(&t.dst, &new).await?;
    // Partitions without a checkpoint start per start_from: one ListOffsets per leader.
    let fresh: Vec<i32> = new.iter().copied().filter(|p| !saved.contains_key(p)).collect();
    let listed = if fresh.is_empty() {
        HashMap::new()
    } else {
        let ts = if cfg.fetch.start_from == StartFrom::Earliest {
            EARLIEST
        } else {
            LATEST
        };
        src.retrying(|| src.list_offsets(&t.src, &fresh, ts, true)).await?
    };
    // Where the next record lands on the destination, for partitions whose
    // checkpoint does not say (new ones, or checkpoints of older versions).
    let unknown: Vec<i32> = new
        .iter()
        .copied()
        .filter(|p| saved.get(p).is_none_or(|s| s.dst_next < 0))
        .collect();
    let dst_ends = if unknown.is_empty() {
        HashMap::new()
    } else {
        dst.retrying(|| dst.list_offsets(&t.dst, &unknown, LATEST, false))
            .await?
    };
    for p in new {
        let (start, dst_next) = match saved.get(&p) {
            Some(s) => (s.src_next, s.dst_next),
            None => (listed[&p], -1),
        };
        let dst_next = if dst_next >= 0 {
            dst_next
        } else {
            dst_ends.get(&p).copied().unwrap_or(-1)
        };
        debug!(topic = %t.src, partition = p, destination = %t.dst, offset = start, dst_next, "replicating partition");
        let route = Route {
            src_topic: t.src.clone(),
            partition: p,
            dst_topic: t.dst.clone(),
        };
        producer.add_route(route.clone(), start, dst_next, t.dst_id);
        fetchers.add(route, t.src_id, start);
    }
    info!(topic = %t.src, destination = %t.dst, partitions = t.partitions, "replicating topic");
    Ok(())
}
