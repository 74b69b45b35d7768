//! One flow's engine: the producer, the fetchers, checkpoints, group sync and
//! the periodic work around them, on the clients, budget share and provenance
//! registries the runner gives it ([`FlowResources`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{FetchRequest, ProduceRequest};
use tracing::{error, info, warn};

use super::budget::Share;
use super::checkpoint::{self, Checkpointer};
use super::fetcher::Fetchers;
use super::membership::Membership;
use super::metrics::Metrics;
use super::owner::FlowOwner;
use super::producer::Producer;
use super::provenance::{Filter, Origin, Registry};
use super::{dst_err, eos, groups, same_cluster, src_err, topics, EngineError, Handle, Summary};
use crate::batch::ProducerStamp;
use crate::client::{Client, ClientError};
use crate::config::Config;

/// What a flow runs on, shared with the other flows of the process.
#[derive(Debug, Clone)]
pub struct FlowResources {
    /// The source cluster's client.
    pub src: Arc<Client>,
    /// The destination cluster's client.
    pub dst: Arc<Client>,
    /// The flow's share of the memory budget.
    pub budget: Arc<Share>,
    /// The source cluster's provenance registry (none: forward every batch).
    pub src_registry: Option<Arc<Registry>>,
    /// The destination cluster's provenance registry, where the flow's producer ids are recorded.
    pub dst_registry: Option<Arc<Registry>>,
    /// Some flow writes into this flow's source: a provenance error would loop,
    /// so it stops the flow.
    pub provenance_essential: bool,
    /// Some flow reads this flow's destination by provenance: registering the
    /// producer id must succeed.
    pub registration_essential: bool,
    /// Every flow's checkpointer, by flow name (two-way group sync reads the
    /// other flow's offset map).
    pub checkpointers: Arc<std::sync::Mutex<HashMap<String, Arc<Checkpointer>>>>,
    /// The flow replicating the other way with identity names, if any.
    pub reverse_flow: Option<String>,
    /// Another flow's group sync reads this flow's offset map: load it at start.
    pub keep_index: bool,
}

/// Runs one flow on `res` until `shutdown` turns true. `on_start` receives its
/// [`Handle`] once it is set up; `progress` sets how often a progress line is logged.
pub async fn run_flow<F>(
    cfg: Arc<Config>,
    res: FlowResources,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    progress: Option<Duration>,
    on_start: F,
) -> Result<Summary, EngineError>
where
    F: FnOnce(Handle),
{
    let (src, dst) = (res.src.clone(), res.dst.clone());
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
    // After an unplanned failover producers write on the destination: the old
    // direction must not resume until the mark is cleared.
    super::failover_record::refuse_if_failed_over(&cfg, &dst)
        .await
        .map_err(EngineError::FailedOver)?;
    // Taking over from MirrorMaker 2: its positions, read once before any
    // partition starts (MM2 must be stopped by now).
    let mm2 = match &cfg.fetch.mm2 {
        Some(m) => {
            let positions = super::mm2::read_positions(&dst, m).await?;
            info!(
                offsets_topic = %m.offsets_topic,
                connector = %m.connector,
                partitions = positions.len(),
                "taking over from MirrorMaker 2: partitions without a checkpoint continue after MM2's last committed offset"
            );
            Some(Arc::new(positions))
        }
        None => None,
    };
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
    // Provenance: the producer id is on record before the first batch with it.
    let origin = Origin {
        origin: cfg.source.alias.clone(),
        flow: cfg.name.clone(),
    };
    if let Some(registry) = &res.dst_registry {
        match registry.register(pid, &origin).await {
            Ok(()) => {}
            Err(e) if res.registration_essential => return Err(EngineError::Provenance(Box::new(e))),
            Err(e) => {
                warn!(error = %e, "cannot register the producer id for provenance: a flow reading this destination later (a failback) would copy these records back; grant CREATE and WRITE on topic __strait.provenance")
            }
        }
    }
    let metrics = Arc::new(Metrics::with_heartbeats(
        cfg.heartbeats.as_ref().map(|h| h.topic.as_str()),
    ));
    let budget = res.budget.clone();
    let producer = Producer::new(dst.clone(), cfg.produce.clone(), metrics.clone(), stamp);
    producer.size_budget_with(budget.budget().clone());
    if let Some(registry) = &res.dst_registry {
        producer.register_new_ids_with(registry.clone(), origin.clone(), res.registration_essential);
    }
    let fetchers = Fetchers::new(
        src.clone(),
        cfg.fetch.clone(),
        metrics.clone(),
        budget.clone(),
        producer.clone(),
        res.src_registry.clone().map(|r| {
            Filter::new(
                r,
                cfg.forward_from.clone(),
                &cfg.destination.alias,
                res.provenance_essential,
            )
        }),
    );
    // Membership of the flow's replication group, on a client of its own.
    let membership = {
        let mut mc = cfg.destination.client_config();
        let need = cfg.member.rebalance_timeout + Duration::from_secs(5);
        if mc.connection.request_timeout < need {
            mc.connection.request_timeout = need;
        }
        Membership::new(
            Client::new(mc).map_err(&dst_err)?,
            cfg.checkpoint_group(),
            cfg.member.clone(),
            cfg.shared_settings(),
        )
    };
    producer.set_gate(membership.gate());
    let ckpt = Arc::new(
        Checkpointer::new(
            dst.clone(),
            checkpoint::CheckpointTarget::of(&cfg),
            producer.clone(),
            metrics.clone(),
        )
        .with_member(membership.credentials()),
    );
    let owner = FlowOwner::new(
        cfg.clone(),
        src.clone(),
        dst.clone(),
        ckpt.clone(),
        producer.clone(),
        fetchers.clone(),
        mm2,
    );
    // A topic deleted or created again under strait: refresh now.
    fetchers.on_topic_change(owner.refresh_now());
    producer.on_topic_change(owner.refresh_now());
    ckpt.ensure_map_topic().await.map_err(&dst_err)?;
    if cfg.groups.enabled() || res.keep_index {
        ckpt.load_index().await.map_err(&dst_err)?;
    }
    crate::sync::lock(&res.checkpointers).insert(cfg.name.clone(), ckpt.clone());
    let reverse = {
        let (all, name) = (res.checkpointers.clone(), res.reverse_flow.clone());
        move || name.as_ref().and_then(|n| crate::sync::lock(&all).get(n).cloned())
    };
    let group_sync = groups::GroupSync::counted_in(metrics.clone());
    let handle = Handle {
        flow: Arc::from(cfg.name.as_str()),
        metrics: metrics.clone(),
        producer: producer.clone(),
        fetchers: fetchers.clone(),
        budget: budget.clone(),
        membership: membership.clone(),
        stale_after: readiness_limit(&cfg),
        failed: Arc::new(std::sync::Mutex::new(None)),
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
    // The first member to start (the group has nobody yet) creates the
    // destination topics before joining; from then on only the leader manages
    // them.
    let first_member = match membership_client_group_empty(&dst, &cfg.checkpoint_group()).await {
        Ok(empty) => empty,
        Err(e) => {
            warn!(error = %e, "cannot describe the replication group; leaving topic creation to its leader");
            false
        }
    };
    let (first_refresh_tx, mut first_refresh) = tokio::sync::watch::channel(false);
    let refresh_task = {
        let (cfg, src, dst) = (cfg.clone(), src.clone(), dst.clone());
        let (owner, membership, fetchers, metrics) =
            (owner.clone(), membership.clone(), fetchers.clone(), metrics.clone());
        let mut warned_no_topics = false;
        let mut first = true;
        let now = owner.refresh_now();
        tokio::spawn(every_or_now(
            cfg.topics.refresh_interval,
            now,
            stop_rx.clone(),
            move || {
                let (cfg, src, dst) = (cfg.clone(), src.clone(), dst.clone());
                let (owner, membership, fetchers, metrics) =
                    (owner.clone(), membership.clone(), fetchers.clone(), metrics.clone());
                let manage = membership.is_leader() || std::mem::replace(&mut first, false) && first_member;
                let warn_no_topics = manage && !std::mem::replace(&mut warned_no_topics, true);
                let first_tx = first_refresh_tx.clone();
                async move {
                    match topics::reconcile(&cfg.topics, &src, &dst, same_cluster, manage).await {
                        Ok(topics) => {
                            Metrics::stamp_now(&metrics.last_source_ok_ms);
                            // Only a member that manages topics sees every match (the
                            // others see those whose destination is ready).
                            if manage && topics.is_empty() && !fetchers.any() && warn_no_topics {
                                let wanted: Vec<&str> =
                                    cfg.topics.topics.iter().map(crate::config::pattern_text).collect();
                                warn!(topics = ?wanted, "no source topic matches the topic selection: nothing to replicate until one appears");
                            }
                            if owner.set_topics(topics) && membership.is_leader() {
                                // New topics or partitions: a new generation assigns them.
                                membership.request_rejoin();
                            }
                            owner.start_assigned().await;
                        }
                        Err(e) => warn!(error = %e, "topic refresh failed; will retry"),
                    }
                    let _ = first_tx.send(true);
                }
            },
        ))
    };
    // Heartbeats: written by the group's leader into the source.
    let heartbeat_task = cfg.heartbeats.is_some().then(|| {
        tokio::spawn(super::heartbeat::run(
            cfg.clone(),
            src.clone(),
            membership.clone(),
            owner.refresh_now(),
            stop_rx.clone(),
        ))
    });
    // Joins the group once the first topic refresh is done (so a leader knows
    // what to assign).
    let mut member_task = {
        let (membership, owner, stop) = (membership.clone(), owner.clone(), stop_rx.clone());
        Some(tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(60), first_refresh.wait_for(|d| *d)).await;
            membership.run(owner, stop).await
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
    // ACL sync, on the group's leader, at the topic refresh interval.
    let acl_task = cfg.topics.sync_acls.then(|| {
        let (cfg, src, dst, membership) = (cfg.clone(), src.clone(), dst.clone(), membership.clone());
        let sync = Arc::new(super::acls::AclSync::default());
        tokio::spawn(every(cfg.topics.refresh_interval, stop_rx.clone(), move || {
            let (cfg, src, dst, sync) = (cfg.clone(), src.clone(), dst.clone(), sync.clone());
            let leader = membership.is_leader();
            async move {
                if leader {
                    sync.run(&cfg, &src, &dst).await;
                }
            }
        }))
    });
    let group_sync = Arc::new(group_sync);
    let group_task = cfg.groups.enabled().then(|| {
        let (cfg, src, dst, ckpt, sync, reverse, membership) = (
            cfg.clone(),
            src.clone(),
            dst.clone(),
            ckpt.clone(),
            group_sync.clone(),
            reverse.clone(),
            membership.clone(),
        );
        tokio::spawn(every(cfg.groups.interval, stop_rx.clone(), move || {
            let (cfg, src, dst, ckpt, sync, reverse, membership) = (
                cfg.clone(),
                src.clone(),
                dst.clone(),
                ckpt.clone(),
                sync.clone(),
                reverse(),
                membership.clone(),
            );
            let leader = membership.is_leader();
            async move {
                if !leader {
                    return; // the group's leader syncs group offsets
                }
                if let Err(e) = ckpt.catch_up().await {
                    warn!(error = %e, "cannot read the other members' positions; group offset sync waits");
                    return;
                }
                // The flow coming back (two-way) may run in other processes too.
                if let Some(r) = &reverse {
                    if let Err(e) = r.catch_up().await {
                        warn!(error = %e, "cannot read the reverse flow's positions; group offset sync waits");
                        return;
                    }
                }
                match sync
                    .sync_once(&cfg.groups, &cfg.topics, &src, &dst, &ckpt, reverse.as_deref())
                    .await
                {
                    Ok(_) => {} // counted as written (GroupSync::counted_in)
                    Err(e) => warn!(error = %e, "group offset sync failed; will retry"),
                }
            }
        }))
    });

    // Automated failover: waits for the source to be gone and a witness to agree.
    let mut auto_task = cfg.ops.auto_failover.clone().map(|auto| {
        let (cfg, dst) = (cfg.clone(), dst.clone());
        tokio::spawn(async move { super::autofail::watch(&cfg, &auto, &dst).await })
    });
    let shutdown = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    tokio::pin!(shutdown);
    let mut report = tokio::time::interval(progress.unwrap_or(Duration::from_secs(3600)));
    report.tick().await;
    let mut last = (Instant::now(), 0u64, 0u64);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            r = async { member_task.as_mut().expect("guarded").await }, if member_task.is_some() => {
                member_task = None;
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => { failed = Some(EngineError::Membership(e.to_string())); break; }
                    Err(e) => { failed = Some(EngineError::Membership(format!("membership task panicked: {e}"))); break; }
                }
            }
            r = async { auto_task.as_mut().expect("guarded").await }, if auto_task.is_some() => {
                auto_task = None;
                let Ok(reason) = r else { continue };
                fail_over_now(&cfg, &dst, &handle, &reason).await;
                // Stopped replicating; the endpoint keeps showing the failover.
                let _ = (&mut shutdown).await;
                break;
            }
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
                    flow = %cfg.name,
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
    if let Some(t) = heartbeat_task {
        t.abort();
    }
    if let Some(t) = group_task {
        t.abort();
    }
    if let Some(t) = acl_task {
        t.abort();
    }
    if let Some(t) = checkpoint_task {
        let _ = t.await;
    }
    if failed.is_none() {
        producer.drain(Duration::from_secs(30)).await;
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
        membership.leave().await;
        return Err(e);
    }
    if let Some(t) = member_task.take() {
        let _ = t.await;
    }
    if cfg.exactly_once.is_none() {
        if let Err(e) = ckpt.checkpoint().await {
            warn!(error = %e, "final checkpoint failed; a restart re-sends from the previous one");
        }
    }
    if cfg.groups.enabled() && membership.is_leader() {
        // A last group sync, so a failover site has the newest translated offsets.
        let reverse = reverse();
        match group_sync
            .sync_once(&cfg.groups, &cfg.topics, &src, &dst, &ckpt, reverse.as_deref())
            .await
        {
            Ok(_) => {}
            Err(e) => warn!(error = %e, "final group offset sync failed"),
        }
    }
    // Committed as a member; now the others may take the partitions at once.
    membership.leave().await;
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

/// Automated failover, once the source is gone and the witness agreed: stops
/// replicating, leaves the replication group, performs the unplanned
/// failover on the destination, and runs the `on_failover` hook once.
async fn fail_over_now(cfg: &Config, dst: &Client, handle: &Handle, reason: &str) {
    let metrics = &handle.metrics;
    warn!(flow = %cfg.name, %reason, "automated failover: the source is gone");
    handle.fetchers.stop();
    // What was fetched before the source went away still reaches the destination.
    handle.producer.drain(Duration::from_secs(10)).await;
    handle.producer.stop();
    handle.membership.leave().await;
    // Another process of the replication got there first: its record stands,
    // and its hook ran.
    if let Ok(Some(r)) = super::failover_record::read(cfg, dst).await {
        if r.active {
            Metrics::add(&metrics.failed_over, 1);
            *crate::sync::lock(&handle.failed) =
                Some(format!("failed over to the destination (by another process): {reason}"));
            warn!(flow = %cfg.name, "automated failover: already done by another process of the replication");
            return;
        }
    }
    match super::failover::unplanned_on(cfg, dst).await {
        Ok(r) => {
            Metrics::add(&metrics.failed_over, 1);
            let parts = r.record.as_ref().map_or(0, |x| x.partitions.len());
            warn!(flow = %cfg.name, partitions = parts, record = %cfg.failover_topic(), acls_restored = r.acls_restored.len(), "automated failover done: clients may use the destination; `strait run` of this direction refuses until `strait failover --reset`");
            *crate::sync::lock(&handle.failed) = Some(format!("failed over to the destination: {reason}"));
            if let Some(auto) = &cfg.ops.auto_failover {
                if !auto.on_failover.is_empty()
                    && super::autofail::run_command(&auto.on_failover, cfg, Duration::from_secs(60), "on_failover hook")
                        .await
                {
                    info!(flow = %cfg.name, "on_failover hook ran");
                }
            }
        }
        Err(e) => {
            error!(flow = %cfg.name, error = %e, "automated failover failed: run `strait failover --unplanned` by hand");
            *crate::sync::lock(&handle.failed) = Some(format!("automated failover failed: {e}"));
        }
    }
}

/// Runs `work` every `period` (the first time at once; late ticks are delayed,
/// not bunched) until `stop` turns true; a run in progress finishes first.
async fn every<F, Fut>(period: Duration, stop: tokio::sync::watch::Receiver<bool>, work: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    every_or_now(period, Arc::new(tokio::sync::Notify::new()), stop, work).await
}

/// Like [`every`], and also at once whenever `now` is notified.
async fn every_or_now<F, Fut>(
    period: Duration,
    now: Arc<tokio::sync::Notify>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    mut work: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopped = async { stop.wait_for(|s| *s).await.is_ok() };
        tokio::select! {
            _ = tick.tick() => work().await,
            _ = now.notified() => work().await,
            _ = stopped => return,
        }
    }
}

/// True when nobody is a member of `group` (or it does not exist).
async fn membership_client_group_empty(dst: &Client, group: &str) -> Result<bool, ClientError> {
    let g = dst.describe_group(group).await?;
    Ok(g.members.is_empty())
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
