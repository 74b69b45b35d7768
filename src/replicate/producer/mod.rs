//! The destination side: idempotent (or transactional), pipelined, ordered Produce.
//!
//! [`Producer`] owns the [`queue`] (every partition's entries in source order
//! and the decision table, no I/O), one [`sender`] task per destination broker,
//! and a task that looks leaders up again and installs a new producer id when
//! the destination lost strait's producer state. [`txn`] keeps the open
//! transaction's bookkeeping for exactly-once mode.

mod decide;
mod merge;
mod queue;
mod rtt;
mod sender;
mod txn;
mod types;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use super::budget::Budget;
use super::metrics::Metrics;
use super::offset_map::MapEntry;
use super::provenance::{Origin, Registry};
use crate::batch::ProducerStamp;
use crate::client::{Client, ClientError};
use crate::config::ProduceSettings;
use crate::sync::lock;
use decide::Answer;
use queue::{Outgoing, PartKey, Queue};
pub use txn::TxnStatus;
pub use types::{Item, Position, Route};

/// A destination broker this far (round trip) or farther is far: batches queued
/// past a partition's in-flight window merge up to 512 KiB, not 64 KiB
/// ([`merge::deep_below`]). The fetch side opens a second lane at the same round trip.
const FAR_RTT: Duration = super::fetcher::RTT_PER_LANE;

/// The destination producer of one flow.
#[derive(Debug)]
pub struct Producer {
    dst: Arc<Client>,
    settings: ProduceSettings,
    metrics: Arc<Metrics>,
    queue: Mutex<Queue>,
    senders: Mutex<HashSet<i32>>,
    /// Woken when there may be something to send.
    wake: Notify,
    needs_refresh: Notify,
    /// The destination lost producer state: a new producer id is due.
    reinit: AtomicBool,
    stopping: AtomicBool,
    /// Exactly-once: woken when partitions wait to join the transaction.
    txn_wake: Notify,
    /// Provenance: where a new producer id is recorded before its first batch,
    /// the origin it carries, and whether failing to record it stops sending.
    registry: std::sync::OnceLock<(Arc<Registry>, Origin, bool)>,
    /// One forwarded origin's producer id set up at a time.
    origin_setup: tokio::sync::Mutex<()>,
    /// Nothing is sent while this says no (a group member that lost contact
    /// with its coordinator for a session timeout).
    gate: std::sync::OnceLock<Gate>,
    /// Notified when a destination topic is missing or came back under a new
    /// id: the flow's topic refresh recreates it or starts it over.
    on_topic_change: std::sync::OnceLock<Arc<Notify>>,
    /// The memory budget, grown by a far destination broker's round trip
    /// ([`rtt`]): fetched data is held until the destination acknowledges it.
    budget: std::sync::OnceLock<Arc<Budget>>,
}

/// Whether the producer may send now: only while the last contact with the
/// group coordinator (milliseconds since the UNIX epoch) is younger than `limit_ms`.
#[derive(Debug, Clone)]
pub struct Gate {
    /// Last contact, shared with the membership.
    pub last_contact_ms: Arc<std::sync::atomic::AtomicU64>,
    /// The session timeout.
    pub limit_ms: u64,
}

impl Gate {
    /// True while sending is allowed.
    pub fn open(&self) -> bool {
        let last = self.last_contact_ms.load(Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        last > 0 && now.saturating_sub(last) < self.limit_ms
    }
}

impl Producer {
    /// A producer writing with `stamp` (transactional when `settings` carry a
    /// transactional id).
    pub fn new(dst: Arc<Client>, settings: ProduceSettings, metrics: Arc<Metrics>, stamp: ProducerStamp) -> Arc<Self> {
        let p = Arc::new(Self {
            dst,
            settings,
            metrics,
            queue: Mutex::new(Queue::new(stamp)),
            senders: Mutex::new(HashSet::new()),
            wake: Notify::new(),
            needs_refresh: Notify::new(),
            reinit: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            txn_wake: Notify::new(),
            registry: std::sync::OnceLock::new(),
            origin_setup: tokio::sync::Mutex::new(()),
            gate: std::sync::OnceLock::new(),
            on_topic_change: std::sync::OnceLock::new(),
            budget: std::sync::OnceLock::new(),
        });
        tokio::spawn(leader_watch(p.clone()));
        p
    }

    /// Records every producer id this producer takes from now on in `registry`
    /// (origin `origin`) before its first batch; `essential`: failing to record
    /// it stops sending until it succeeds.
    pub fn register_new_ids_with(&self, registry: Arc<Registry>, origin: Origin, essential: bool) {
        let _ = self.registry.set((registry, origin, essential));
    }

    /// Grows `budget` by what a far destination broker's round trip needs in
    /// flight (see [`rtt`]).
    pub fn size_budget_with(&self, budget: Arc<Budget>) {
        let _ = self.budget.set(budget);
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        lock(&self.queue)
    }

    fn exactly_once(&self) -> bool {
        self.settings.transactional_id.is_some()
    }

    /// Starts tracking a partition whose next source offset is `start`;
    /// `dst_next` is the destination offset where its next record will land (-1: unknown).
    pub fn add_route(&self, route: Route, start: i64, dst_next: i64, dst_topic_id: Uuid) {
        self.queue().add_route(route, start, dst_next, dst_topic_id);
        self.needs_refresh.notify_one();
    }

    /// True when the partition stopped on an unrecoverable error (or is unknown).
    pub fn is_failed(&self, dst_topic: &Arc<str>, partition: i32) -> bool {
        self.queue()
            .parts
            .get(&(dst_topic.clone(), partition))
            .is_none_or(|p| p.failed.is_some())
    }

    /// Sends only while `gate` says yes (checked before each request is taken
    /// and again right before it goes out).
    pub fn set_gate(&self, gate: Gate) {
        let _ = self.gate.set(gate);
    }

    /// Notifies `n` when a destination topic is missing or has a new id.
    pub fn on_topic_change(&self, n: Arc<Notify>) {
        let _ = self.on_topic_change.set(n);
    }

    pub(super) fn open(&self) -> bool {
        self.gate.get().is_none_or(Gate::open)
    }

    /// Stops tracking partitions another member replicates from now on.
    pub fn remove_routes(&self, keys: &[(Arc<str>, i32)]) {
        self.queue().remove_routes(keys);
        self.wake.notify_waiters();
    }

    /// Stops (`hold`) or resumes sending new batches of these partitions.
    pub fn hold(&self, keys: &[(Arc<str>, i32)], hold: bool) {
        self.queue().hold(keys, hold);
        self.wake.notify_waiters();
    }

    /// Entries of these partitions still queued or in flight.
    pub fn pending_of(&self, keys: &[(Arc<str>, i32)]) -> usize {
        self.queue().pending_of(keys)
    }

    /// Hands over fetched items of one partition, in source order.
    pub fn enqueue(&self, dst_topic: &Arc<str>, partition: i32, items: Vec<Item>) {
        if items.is_empty() {
            return;
        }
        if self.queue().enqueue(&(dst_topic.clone(), partition), items) {
            self.wake.notify_waiters();
        }
    }

    /// Positions of every partition.
    pub fn positions(&self) -> Vec<Position> {
        self.queue().positions()
    }

    /// Takes the offset-map entries acknowledged since the last call.
    pub fn take_map_entries(&self) -> Vec<(Route, Vec<MapEntry>)> {
        self.queue().take_map_entries()
    }

    /// Puts back map entries whose checkpoint failed (they are written next time).
    pub fn restore_map_entries(&self, entries: Vec<(Route, Vec<MapEntry>)>) {
        self.queue().restore_map_entries(entries)
    }

    /// Total entries still queued or in flight.
    pub fn pending(&self) -> usize {
        self.queue().pending()
    }

    /// Waits until nothing is queued or in flight, or `limit` has passed.
    pub async fn drain(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.pending() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops starting new requests (in-flight ones complete).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
    }

    fn topic_name(&self, id: Uuid) -> Option<Arc<str>> {
        self.queue()
            .topic_ids
            .iter()
            .find(|(_, i)| **i == id)
            .map(|(n, _)| n.clone())
    }

    /// The batches of the next request to broker `node`.
    fn next_request(&self, node: i32) -> Vec<Outgoing> {
        if !self.open() {
            return Vec::new();
        }
        let mut q = self.queue();
        let out = q.next_request(node, &self.settings, &self.metrics);
        if q.txn.has_wanted() {
            self.txn_wake.notify_one();
        }
        out
    }

    /// Applies the answer to one request (or why it failed as a whole).
    fn complete(&self, sent: &[(PartKey, u64)], result: Result<HashMap<PartKey, Answer>, String>) {
        let answers = match result {
            Ok(a) => a,
            Err(why) => {
                debug!(error = %why, "produce request failed");
                sent.iter()
                    .map(|(k, _)| (k.clone(), Answer::request_failed(why.clone())))
                    .collect()
            }
        };
        let fx = self
            .queue()
            .complete(sent, &answers, self.exactly_once(), &self.metrics);
        if let Some(reason) = fx.fatal_txn {
            error!("{reason}");
            self.queue().txn.fatal.get_or_insert(reason);
            self.txn_wake.notify_one();
        }
        if fx.new_producer_id {
            // Nothing goes out under the old producer id any more: the batches
            // wait to be renumbered under the new one.
            self.queue().paused = true;
            self.reinit.store(true, Ordering::SeqCst);
        }
        if fx.refresh {
            self.dst.invalidate_metadata();
            self.needs_refresh.notify_one();
        }
        self.wake.notify_waiters();
    }

    fn ensure_senders(self: &Arc<Self>) {
        let leaders: Vec<i32> = self
            .queue()
            .parts
            .values()
            .map(|p| p.leader)
            .filter(|l| *l >= 0)
            .collect();
        let mut senders = lock(&self.senders);
        for l in leaders {
            if senders.insert(l) {
                tokio::spawn(sender::run(self.clone(), l));
                tokio::spawn(rtt::watch(self.clone(), l));
            }
        }
    }

    /// Looks up `max.message.bytes` of the destination topics not looked up
    /// yet, for the merged batches' cap (see [`queue::Queue::max_message`]).
    async fn look_up_max_message(&self) {
        let topics: Vec<String> = {
            let q = self.queue();
            let unknown: HashSet<&Arc<str>> = q
                .parts
                .keys()
                .map(|k| &k.0)
                .filter(|t| !q.max_message.contains_key(*t))
                .collect();
            unknown.into_iter().map(|t| t.to_string()).collect()
        };
        if topics.is_empty() {
            return;
        }
        let found = self.dst.describe_topic_configs(&topics).await;
        if let Err(e) = &found {
            debug!(error = %e, topics = topics.len(), "max.message.bytes of destination topics unknown: only tiny batches merge; retried in a minute");
        }
        let mut q = self.queue();
        for t in topics {
            let max = found
                .as_ref()
                .ok()
                .and_then(|m| m.get(&t))
                .and_then(|entries| entries.iter().find(|c| c.name == "max.message.bytes"))
                .and_then(|c| c.value.as_deref()?.parse::<usize>().ok());
            q.max_message.insert(Arc::from(t.as_str()), max);
        }
    }

    /// A new idempotent producer id, recorded (for provenance) as carrying
    /// records of `origin` (`None`: the flow's source).
    async fn fresh_id(&self, origin: Option<&str>) -> Result<ProducerStamp, ClientError> {
        let (pid, epoch) = self.dst.init_producer_id(None, 60_000).await?;
        if let Some((registry, source, essential)) = self.registry.get() {
            let carried = Origin {
                origin: origin.map_or_else(|| source.origin.clone(), str::to_string),
                flow: source.flow.clone(),
            };
            match registry.register(pid, &carried).await {
                Ok(()) => {}
                Err(e) if *essential => {
                    return Err(ClientError::Invalid {
                        what: "provenance registration",
                        reason: e.to_string(),
                    })
                }
                Err(e) => warn!(error = %e, "cannot register the new producer id for provenance"),
            }
        }
        info!(
            producer_id = pid,
            epoch,
            origin = origin.unwrap_or("source"),
            "new idempotent producer id on the destination"
        );
        Ok(ProducerStamp {
            producer_id: pid,
            producer_epoch: epoch,
            transactional: false,
        })
    }

    /// Makes sure records first produced on `origin` (a forwarded origin) have
    /// a producer id of their own, recorded with that origin, before the
    /// fetcher hands their batches over.
    pub async fn ensure_origin(&self, origin: &Arc<str>) -> Result<(), ClientError> {
        let key = Some(origin.clone());
        if self.queue().origin_index(&key).is_some() {
            return Ok(());
        }
        let _one = self.origin_setup.lock().await;
        if self.queue().origin_index(&key).is_some() {
            return Ok(());
        }
        let stamp = self.fresh_id(Some(origin)).await?;
        let mut q = self.queue();
        q.stamps.push(stamp);
        q.origins.push(key);
        Ok(())
    }

    /// Installs new idempotent producer ids (one per origin): stops sending,
    /// waits for the requests in flight, renumbers every unacknowledged batch.
    async fn new_producer_id(&self) -> Result<(), ClientError> {
        let origins = self.queue().origins.clone();
        let mut stamps = Vec::with_capacity(origins.len());
        for o in &origins {
            stamps.push(self.fresh_id(o.as_deref()).await?);
        }
        self.queue().paused = true;
        while self.queue().in_flight() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut q = self.queue();
        q.renumber(stamps);
        q.paused = false;
        Ok(())
    }

    async fn refresh_leaders(self: &Arc<Self>) -> Result<(), ClientError> {
        if self.reinit.load(Ordering::SeqCst) {
            self.new_producer_id().await?;
            self.reinit.store(false, Ordering::SeqCst);
        }
        let topics: Vec<String> = {
            let q = self.queue();
            let mut t: Vec<String> = q
                .parts
                .values()
                .filter(|p| p.leader < 0)
                .map(|p| p.route.dst_topic.to_string())
                .collect();
            t.sort();
            t.dedup();
            t
        };
        if !topics.is_empty() {
            let md = self.dst.refresh_metadata(Some(&topics)).await?;
            let mut q = self.queue();
            let mut ids = Vec::new();
            let mut changed = false;
            let known = q.topic_ids.clone();
            for part in q.parts.values_mut().filter(|p| p.leader < 0) {
                let t = md
                    .topics
                    .get(part.route.dst_topic.as_ref())
                    .filter(|t| t.error_code == 0);
                let Some(t) = t else {
                    changed = true; // deleted under strait
                    continue;
                };
                let was = known.get(&part.route.dst_topic).copied().unwrap_or_default();
                if crate::replicate::topics::created_again(was, t.id) {
                    // Created again: its positions belong to the old topic, and
                    // nothing may land in the new one before the flow starts it
                    // over (FlowOwner::set_topics).
                    changed = true;
                    continue;
                }
                if let Some(pm) = md.partition(&part.route.dst_topic, part.route.partition) {
                    if pm.leader >= 0 && pm.error_code == 0 {
                        part.leader = pm.leader;
                    }
                }
                ids.push((part.route.dst_topic.clone(), t.id));
            }
            q.topic_ids.extend(ids);
            drop(q);
            if changed {
                if let Some(n) = self.on_topic_change.get() {
                    n.notify_one();
                }
            }
        }
        self.ensure_senders();
        self.wake.notify_waiters();
        Ok(())
    }
}

/// Exactly-once: the transaction loop's view of the queue ([`super::eos`]).
impl Producer {
    /// Takes the partitions waiting to join the open transaction, by destination topic.
    pub fn txn_wanted(&self) -> BTreeMap<String, Vec<i32>> {
        self.queue().txn_wanted()
    }

    /// The coordinator accepted these partitions into the open transaction.
    pub fn txn_added(&self, partitions: &BTreeMap<String, Vec<i32>>) {
        self.queue().txn_added(partitions);
        self.wake.notify_waiters();
    }

    /// Waits until partitions want to join the transaction, or `timeout`.
    pub async fn txn_wait(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.txn_wake.notified()).await;
    }

    /// The open transaction's size, partitions and fatal error.
    pub fn txn_status(&self) -> TxnStatus {
        self.queue().txn_status()
    }

    /// Stops sending batches that are not yet part of the open transaction (its
    /// own batches may still be resent).
    pub fn txn_close(&self) {
        self.queue().txn_close();
        self.wake.notify_waiters();
    }

    /// True once every batch of the open transaction is acknowledged (or its
    /// partition stopped), so its positions can be committed with it.
    pub fn txn_settled(&self) -> bool {
        self.queue().txn_settled()
    }

    /// The transaction committed; the next one starts empty.
    pub fn txn_next(&self) {
        self.queue().txn_next();
        self.wake.notify_waiters();
    }
}

/// Looks destination leaders up again when a partition lost its leader, and
/// installs a new producer id when one is due.
async fn leader_watch(p: Arc<Producer>) {
    let mut failed_lookups_cleared = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = p.needs_refresh.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if p.stopping.load(Ordering::SeqCst) && p.queue().in_flight() == 0 {
            return;
        }
        if failed_lookups_cleared.elapsed() >= Duration::from_secs(60) {
            p.queue().max_message.retain(|_, v| v.is_some());
            failed_lookups_cleared = std::time::Instant::now();
        }
        p.look_up_max_message().await;
        let missing =
            p.reinit.load(Ordering::SeqCst) || p.queue().parts.values().any(|x| x.leader < 0 && x.failed.is_none());
        if !missing {
            continue;
        }
        if let Err(e) = p.refresh_leaders().await {
            warn!(error = %e, "destination metadata refresh failed; retrying");
            tokio::time::sleep(Duration::from_millis(500)).await;
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[cfg(test)]
mod tests;
