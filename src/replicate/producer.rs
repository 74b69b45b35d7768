//! The destination side: idempotent, pipelined, ordered Produce.
//!
//! Every replicated partition has a queue of entries in source order. A sender
//! task per destination broker packs one batch per partition into each Produce
//! request (Produce v3+ takes exactly one batch per partition entry), many
//! partitions per request, with up to `max_in_flight_per_partition` batches of a
//! partition in flight (the broker's idempotence window is 5). Sequence numbers
//! are assigned once per batch, so a resent batch that the broker already has is
//! answered as a duplicate, never written twice. On an error the partition stops
//! sending, waits for its in-flight batches, and resends from its first
//! unacknowledged batch (to the new leader after a metadata refresh). A
//! partition's source position advances only over acknowledged entries.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::ProduceRequest;
use tokio::sync::{Notify, Semaphore};
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use super::budget::Held;
use super::metrics::Metrics;
use super::offset_map::MapEntry;
use crate::batch::coalesce::{can_coalesce, coalesce};
use crate::batch::{patch_for_produce, BatchError, PatchedBatch, ProducerStamp, RawBatch};
use crate::client::txn::produce_version;
use crate::client::{classify, error_name, Client, ClientError, ErrorClass};
use crate::config::Config;
use crate::protocol::{ProducePartition, ProduceTopic};

/// Identity of one replicated partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    /// Source topic.
    pub src_topic: Arc<str>,
    /// Partition index (same on both sides).
    pub partition: i32,
    /// Destination topic.
    pub dst_topic: Arc<str>,
}

/// One unit handed over by a fetcher, in source offset order.
#[derive(Debug)]
pub enum Item {
    /// A v2 batch to produce (already re-encoded if it needed the slow path).
    Batch {
        /// The batch as fetched (or re-encoded); its header is patched here.
        batch: RawBatch,
        /// Source offsets it covers.
        src_base: i64,
        /// Last source offset it covers.
        src_last: i64,
        /// For re-encoded batches: source offset delta of each record.
        deltas: Option<Vec<i32>>,
        /// The memory-budget holding of the fetch response it came from (shared by
        /// every batch of that response).
        held: Arc<Held>,
    },
    /// Source offsets consumed without producing (markers, aborted, empty).
    Skip {
        /// Last source offset covered.
        src_last: i64,
    },
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum State {
    Queued,
    InFlight,
    Acked,
}

#[derive(Debug)]
struct Entry {
    /// Unique per producer: responses are matched by it, never by sequence number.
    id: u64,
    src_base: i64,
    src_last: i64,
    state: State,
    seq: i32,
    records: i32,
    batch: Option<(RawBatch, PatchedBatch)>,
    deltas: Option<Vec<i32>>,
    /// Sent at least once: the broker may have it, so it is never merged again.
    sent_once: bool,
    /// Decompressing it passed `max_decompressed_batch_bytes`: never merged, sent raw.
    oversized: bool,
    /// Exactly-once: the transaction it was first sent in (0: not sent yet).
    txn: u64,
    /// Once acknowledged: the destination offset after its last record (-1: unknown).
    dst_end: i64,
    _held: Vec<Arc<Held>>,
}

#[derive(Debug)]
struct Part {
    route: Route,
    leader: i32,
    entries: VecDeque<Entry>,
    next_seq: i32,
    inflight: usize,
    resend: bool,
    /// The destination acknowledged a batch of ours since the last error: up to
    /// `max_in_flight_per_partition` may be in flight. Until then one at a time,
    /// because a broker with no state for (producer id, partition) accepts any
    /// first sequence: a later batch could land before an earlier one that failed.
    confirmed: bool,
    acked_next: i64,
    /// The destination offset right after the last record strait wrote for the
    /// source offsets before `acked_next` (-1: unknown). With `acked_next` it
    /// translates a consumer offset at or past the last replicated record.
    dst_next: i64,
    failed: Option<String>,
    map: Vec<MapEntry>,
}

impl Part {
    /// Pops acknowledged entries off the front, advancing the source position.
    fn advance(&mut self) {
        while let Some(e) = self.entries.front() {
            if e.state != State::Acked {
                break;
            }
            self.acked_next = e.src_last + 1;
            if e.dst_end >= 0 {
                self.dst_next = e.dst_end;
            }
            self.entries.pop_front();
        }
    }

    fn first_queued(&self) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.state == State::Queued && e.batch.is_some())
    }
}

type PartKey = (Arc<str>, i32);

/// Per-partition outcome of one Produce request: error code, base offset, message.
type ProduceOutcome = HashMap<PartKey, (i16, i64, Option<String>)>;

#[derive(Debug, Default)]
struct Inner {
    parts: HashMap<PartKey, Part>,
    senders: HashMap<i32, ()>,
    topic_ids: HashMap<Arc<str>, Uuid>,
    rotate: usize,
    next_id: u64,
    /// Set while a new producer id is being installed: nothing is sent.
    paused: bool,
    txn: TxnState,
}

/// Exactly-once bookkeeping: which partitions the current transaction holds and
/// whether it is closing. Entries are tagged with the transaction they were
/// first sent in; while a commit is pending (`closing`), only entries of the
/// current transaction are (re)sent, so it commits exactly what was acknowledged.
#[derive(Debug, Default)]
struct TxnState {
    /// Number of the open transaction (starts at 1).
    current: u64,
    /// Partitions added to the open transaction (AddPartitionsToTxn answered).
    added: HashSet<PartKey>,
    /// Partitions with batches waiting to be added.
    wanted: HashSet<PartKey>,
    closing: bool,
    /// Batch bytes sent in the open transaction.
    bytes: usize,
    /// Set when the transaction cannot commit (fenced, producer state lost).
    fatal: Option<String>,
}

/// Position report of one partition.
#[derive(Debug, Clone)]
pub struct Position {
    /// The route.
    pub route: Route,
    /// Next source offset not yet acknowledged by the destination.
    pub acked_next: i64,
    /// Destination offset right after the last record written for the source
    /// offsets before `acked_next` (-1: unknown).
    pub dst_next: i64,
    /// Entries held (queued or in flight).
    pub pending: usize,
    /// Set when the partition stopped on an unrecoverable error.
    pub failed: Option<String>,
}

/// The destination producer.
#[derive(Debug)]
pub struct Producer {
    dst: Arc<Client>,
    cfg: Arc<Config>,
    metrics: Arc<Metrics>,
    inner: Mutex<Inner>,
    wake: Notify,
    stamp: Mutex<ProducerStamp>,
    needs_refresh: Notify,
    reinit: AtomicBool,
    stopping: AtomicBool,
    /// Exactly-once: woken when partitions wait to join the transaction.
    txn_wake: Notify,
}

impl Producer {
    /// A producer using the producer id `stamp` (transactional, with the transactional
    /// bit in `stamp`, when the config says `exactly_once`).
    pub fn new(dst: Arc<Client>, cfg: Arc<Config>, metrics: Arc<Metrics>, stamp: ProducerStamp) -> Arc<Self> {
        let mut inner = Inner::default();
        inner.txn.current = 1;
        let p = Arc::new(Self {
            dst,
            cfg,
            metrics,
            inner: Mutex::new(inner),
            wake: Notify::new(),
            stamp: Mutex::new(stamp),
            needs_refresh: Notify::new(),
            reinit: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            txn_wake: Notify::new(),
        });
        tokio::spawn(leader_watch(p.clone()));
        p
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts tracking a partition whose next source offset is `start`;
    /// `dst_next` is the destination offset where its next record will land (-1: unknown).
    pub fn add_route(&self, route: Route, start: i64, dst_next: i64, dst_topic_id: Uuid) {
        let mut inner = self.lock();
        inner.topic_ids.insert(route.dst_topic.clone(), dst_topic_id);
        let key = (route.dst_topic.clone(), route.partition);
        inner.parts.entry(key).or_insert_with(|| Part {
            route,
            leader: -1,
            entries: VecDeque::new(),
            next_seq: 0,
            inflight: 0,
            resend: false,
            confirmed: false,
            acked_next: start,
            dst_next,
            failed: None,
            map: Vec::new(),
        });
        drop(inner);
        self.needs_refresh.notify_one();
    }

    /// True when the partition stopped on an unrecoverable error.
    pub fn is_failed(&self, dst_topic: &Arc<str>, partition: i32) -> bool {
        self.lock()
            .parts
            .get(&(dst_topic.clone(), partition))
            .is_none_or(|p| p.failed.is_some())
    }

    /// Hands over fetched items of one partition, in source order.
    pub fn enqueue(&self, dst_topic: &Arc<str>, partition: i32, items: Vec<Item>) {
        if items.is_empty() {
            return;
        }
        let stamp = *self.stamp.lock().unwrap_or_else(|e| e.into_inner());
        let mut guard = self.lock();
        let inner = &mut *guard;
        let Some(part) = inner.parts.get_mut(&(dst_topic.clone(), partition)) else {
            return;
        };
        if part.failed.is_some() {
            return;
        }
        for item in items {
            match item {
                Item::Batch {
                    batch,
                    src_base,
                    src_last,
                    deltas,
                    held,
                } => {
                    let records = batch.record_count();
                    let seq = part.next_seq;
                    part.next_seq = part.next_seq.wrapping_add(records) & i32::MAX;
                    let patched = patch_for_produce(&batch, stamp, seq);
                    inner.next_id += 1;
                    part.entries.push_back(Entry {
                        id: inner.next_id,
                        src_base,
                        src_last,
                        state: State::Queued,
                        seq,
                        records,
                        batch: Some((batch, patched)),
                        deltas,
                        sent_once: false,
                        oversized: false,
                        txn: 0,
                        dst_end: -1,
                        _held: vec![held],
                    });
                }
                Item::Skip { src_last } => part.entries.push_back(Entry {
                    id: 0,
                    src_base: src_last,
                    src_last,
                    state: State::Acked,
                    seq: -1,
                    records: 0,
                    batch: None,
                    deltas: None,
                    sent_once: false,
                    oversized: false,
                    txn: 0,
                    dst_end: -1,
                    _held: Vec::new(),
                }),
            }
        }
        part.advance();
        drop(guard);
        self.wake.notify_waiters();
    }

    /// Positions of every partition.
    pub fn positions(&self) -> Vec<Position> {
        self.lock()
            .parts
            .values()
            .map(|p| Position {
                route: p.route.clone(),
                acked_next: p.acked_next,
                dst_next: p.dst_next,
                pending: p.entries.len(),
                failed: p.failed.clone(),
            })
            .collect()
    }

    /// Takes the offset-map entries acknowledged since the last call.
    pub fn take_map_entries(&self) -> Vec<(Route, Vec<MapEntry>)> {
        self.lock()
            .parts
            .values_mut()
            .filter(|p| !p.map.is_empty())
            .map(|p| (p.route.clone(), std::mem::take(&mut p.map)))
            .collect()
    }

    /// Puts back map entries whose checkpoint failed (they are written next time).
    pub fn restore_map_entries(&self, entries: Vec<(Route, Vec<MapEntry>)>) {
        let mut inner = self.lock();
        for (route, mut v) in entries {
            if let Some(p) = inner.parts.get_mut(&(route.dst_topic.clone(), route.partition)) {
                v.append(&mut p.map);
                p.map = v;
            }
        }
    }

    /// Total entries still queued or in flight.
    pub fn pending(&self) -> usize {
        self.lock()
            .parts
            .values()
            .filter(|p| p.failed.is_none())
            .map(|p| p.entries.len())
            .sum()
    }

    /// Stops starting new requests (in-flight ones complete).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
    }

    fn ensure_senders(self: &Arc<Self>) {
        let mut inner = self.lock();
        let leaders: Vec<i32> = inner.parts.values().map(|p| p.leader).filter(|l| *l >= 0).collect();
        for l in leaders {
            if let std::collections::hash_map::Entry::Vacant(v) = inner.senders.entry(l) {
                v.insert(());
                tokio::spawn(sender(self.clone(), l));
            }
        }
    }

    /// Builds the next request for broker `node`: at most one batch per partition.
    fn next_request(&self, node: i32) -> Vec<(PartKey, u64, ProducePartition, Uuid)> {
        let max_inflight = self.cfg.max_in_flight_per_partition;
        let max_bytes = self.cfg.max_request_bytes;
        let stamp = *self.stamp.lock().unwrap_or_else(|e| e.into_inner());
        let mut guard = self.lock();
        let inner = &mut *guard;
        if inner.paused {
            return Vec::new();
        }
        let mut keys: Vec<PartKey> = inner
            .parts
            .iter()
            .filter(|(_, p)| {
                let window = if p.confirmed { max_inflight } else { 1 };
                p.leader == node && p.failed.is_none() && !p.resend && p.inflight < window
            })
            .map(|(k, _)| k.clone())
            .collect();
        if keys.is_empty() {
            return Vec::new();
        }
        keys.sort();
        let start = inner.rotate % keys.len();
        inner.rotate = inner.rotate.wrapping_add(1);
        keys.rotate_left(start);
        let mut out = Vec::new();
        let mut bytes = 0;
        for key in keys {
            let topic_id = inner.topic_ids.get(&key.0).copied().unwrap_or_default();
            let part = inner.parts.get_mut(&key).expect("key from map");
            let Some(i) = part.first_queued() else { continue };
            let txn = &mut inner.txn;
            if self.cfg.exactly_once {
                if txn.closing {
                    // Only batches the closing transaction already holds may be resent.
                    if part.entries[i].txn != txn.current {
                        continue;
                    }
                } else if !txn.added.contains(&key) {
                    txn.wanted.insert(key.clone());
                    self.txn_wake.notify_one();
                    continue;
                }
            }
            let (below, max_plain) = (self.cfg.coalesce_below_bytes, self.cfg.max_decompressed_batch_bytes);
            if let Some(merged) = coalesce_run(part, i, below, max_plain, stamp, &mut inner.next_id) {
                Metrics::add(&self.metrics.batches_coalesced, merged as u64);
            }
            let e = &mut part.entries[i];
            let (_, patched) = e.batch.as_ref().expect("queued entries hold a batch");
            if bytes > 0 && bytes + patched.len() > max_bytes {
                break;
            }
            bytes += patched.len();
            e.state = State::InFlight;
            e.sent_once = true;
            if self.cfg.exactly_once && e.txn == 0 {
                e.txn = inner.txn.current;
                inner.txn.bytes += patched.len();
            }
            let pp = ProducePartition {
                partition: key.1,
                header: patched.header.clone(),
                records: patched.body.clone(),
            };
            let id = e.id;
            part.inflight += 1;
            out.push((key, id, pp, topic_id));
        }
        out
    }

    /// Applies the outcome of one Produce request.
    fn complete(&self, node: i32, sent: Vec<(PartKey, u64)>, result: Result<ProduceOutcome, ClientError>) {
        let mut refresh = false;
        let mut guard = self.lock();
        let inner = &mut *guard;
        let mut fatal_txn: Option<String> = None;
        for (key, id) in sent {
            let Some(part) = inner.parts.get_mut(&key) else {
                continue;
            };
            part.inflight = part.inflight.saturating_sub(1);
            let Some(idx) = part
                .entries
                .iter()
                .position(|e| e.id == id && e.state == State::InFlight)
            else {
                continue;
            };
            let (code, base, msg) = match &result {
                Ok(map) => map
                    .get(&key)
                    .cloned()
                    .unwrap_or((-1, -1, Some("partition missing from response".into()))),
                Err(e) => {
                    // Whole request failed (connection, timeout): every batch goes again.
                    debug!(broker = node, error = %e, "produce request failed");
                    (13, -1, Some(e.to_string()))
                }
            };
            match code {
                0 | 46 => {
                    part.confirmed = true;
                    let e = &mut part.entries[idx];
                    e.state = State::Acked;
                    Metrics::add(&self.metrics.records, e.records as u64);
                    if let Some((raw, _)) = e.batch.take() {
                        Metrics::add(&self.metrics.bytes, raw.len() as u64);
                        self.metrics.latency(raw.max_timestamp(), e.records as u64);
                    }
                    if base >= 0 {
                        e.dst_end = base + e.records as i64;
                        part.map.push(MapEntry {
                            src_base: e.src_base,
                            src_last: e.src_last,
                            dst_base: base,
                            dst_count: e.records,
                            deltas: e.deltas.take(),
                        });
                    }
                    part.advance();
                }
                _ => {
                    part.confirmed = false;
                    let class = classify(code);
                    self.metrics.error(code);
                    let first_unacked = part.entries.iter().position(|e| e.state != State::Acked).unwrap_or(idx);
                    let e = &mut part.entries[idx];
                    e.state = State::Queued;
                    let lost_state = (code == 45 || code == 59) && idx == first_unacked && !part.resend;
                    if self.cfg.exactly_once && (lost_state || matches!(code, 47 | 48 | 53 | 90)) {
                        // A transaction cannot renumber its batches under a new producer id,
                        // and a fenced producer must stop: the whole run ends, and a restart
                        // resumes from the last committed transaction.
                        let reason = format!(
                            "exactly-once transaction on the destination failed: {} ({code}) producing {} partition {}{}",
                            error_name(code),
                            key.0,
                            key.1,
                            if matches!(code, 47 | 90) {
                                "; another strait instance with the same name (transactional id) took over"
                            } else {
                                ""
                            }
                        );
                        fatal_txn.get_or_insert(reason);
                        part.resend = true;
                    } else if lost_state {
                        warn!(topic = %key.0, partition = key.1, code = error_name(code), "destination lost producer state; starting a new producer id (batches may be duplicated)");
                        self.reinit.store(true, Ordering::SeqCst);
                        part.resend = true;
                        refresh = true;
                    } else if code == 45 || class != ErrorClass::Fatal || code == -1 || code == 13 {
                        Metrics::add(&self.metrics.produce_retries, 1);
                        part.resend = true;
                        if class == ErrorClass::RefreshMetadata || code == 13 {
                            part.leader = -1;
                            refresh = true;
                        }
                    } else {
                        let reason = format!(
                            "destination rejected the batch at source offset {} of {} partition {} (destination {} partition {}): {} ({code}){}",
                            e.src_base,
                            part.route.src_topic,
                            key.1,
                            key.0,
                            key.1,
                            error_name(code),
                            msg.map(|m| format!(": {m}")).unwrap_or_default()
                        );
                        error!(topic = %part.route.src_topic, partition = key.1, offset = e.src_base, "{reason}; replication of this partition stopped");
                        part.failed = Some(reason);
                        part.entries.clear();
                        continue;
                    }
                }
            }
            if part.resend && part.inflight == 0 {
                // Everything sent after the failed batch has come back: resend in order.
                for e in part.entries.iter_mut() {
                    if e.state == State::InFlight {
                        e.state = State::Queued;
                    }
                }
                part.resend = false;
            }
        }
        if let Some(reason) = fatal_txn {
            error!("{reason}");
            inner.txn.fatal.get_or_insert(reason);
            self.txn_wake.notify_one();
        }
        drop(guard);
        if refresh {
            self.dst.invalidate_metadata();
            self.needs_refresh.notify_one();
        }
        self.wake.notify_waiters();
    }

    async fn refresh_leaders(self: &Arc<Self>) -> Result<(), ClientError> {
        if self.reinit.swap(false, Ordering::SeqCst) {
            let (pid, epoch) = self.dst.init_producer_id(None, 60_000).await?;
            info!(
                producer_id = pid,
                epoch, "new idempotent producer id on the destination"
            );
            let stamp = ProducerStamp {
                producer_id: pid,
                producer_epoch: epoch,
                transactional: false,
            };
            *self.stamp.lock().unwrap_or_else(|e| e.into_inner()) = stamp;
            // Stop sending, wait for in-flight requests, then renumber every
            // unacknowledged batch under the new producer id.
            self.lock().paused = true;
            loop {
                let busy = self.lock().parts.values().any(|p| p.inflight > 0);
                if !busy {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let mut inner = self.lock();
            for part in inner.parts.values_mut() {
                part.next_seq = 0;
                for e in part.entries.iter_mut() {
                    if let Some((raw, patched)) = e.batch.as_mut() {
                        e.seq = part.next_seq;
                        part.next_seq = part.next_seq.wrapping_add(e.records) & i32::MAX;
                        *patched = patch_for_produce(raw, stamp, e.seq);
                        e.state = State::Queued;
                    }
                }
                part.resend = false;
                part.confirmed = false;
            }
            inner.paused = false;
        }
        let topics: Vec<String> = {
            let inner = self.lock();
            let mut t: Vec<String> = inner
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
            let mut inner = self.lock();
            let mut ids = Vec::new();
            for part in inner.parts.values_mut().filter(|p| p.leader < 0) {
                if let Some(pm) = md.partition(&part.route.dst_topic, part.route.partition) {
                    if pm.leader >= 0 && pm.error_code == 0 {
                        part.leader = pm.leader;
                    }
                }
                if let Some(t) = md.topics.get(part.route.dst_topic.as_ref()) {
                    ids.push((part.route.dst_topic.clone(), t.id));
                }
            }
            inner.topic_ids.extend(ids);
        }
        self.ensure_senders();
        self.wake.notify_waiters();
        Ok(())
    }
}

impl Producer {
    /// Exactly-once: takes the partitions waiting to join the open transaction,
    /// grouped by destination topic.
    pub fn txn_wanted(&self) -> BTreeMap<String, Vec<i32>> {
        let mut inner = self.lock();
        let mut out: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        let wanted: Vec<PartKey> = inner.txn.wanted.drain().collect();
        for (t, p) in wanted {
            if !inner.txn.added.contains(&(t.clone(), p)) {
                out.entry(t.to_string()).or_default().push(p);
            }
        }
        out
    }

    /// Exactly-once: the coordinator accepted these partitions into the open transaction.
    pub fn txn_added(&self, partitions: &BTreeMap<String, Vec<i32>>) {
        let mut inner = self.lock();
        for (t, ps) in partitions {
            let t: Arc<str> = Arc::from(t.as_str());
            for p in ps {
                inner.txn.added.insert((t.clone(), *p));
            }
        }
        drop(inner);
        self.wake.notify_waiters();
    }

    /// Exactly-once: waits until partitions want to join the transaction, or `timeout`.
    pub async fn txn_wait(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.txn_wake.notified()).await;
    }

    /// Exactly-once: batch bytes in the open transaction, whether partitions were
    /// added to it, and why it cannot commit (if so).
    pub fn txn_status(&self) -> (usize, bool, Option<String>) {
        let inner = self.lock();
        (inner.txn.bytes, !inner.txn.added.is_empty(), inner.txn.fatal.clone())
    }

    /// Exactly-once: stops sending batches that are not yet part of the open
    /// transaction (its own batches may still be resent).
    pub fn txn_close(&self) {
        self.lock().txn.closing = true;
        self.wake.notify_waiters();
    }

    /// Exactly-once: true once every batch of the open transaction is acknowledged
    /// (or its partition stopped), so its positions can be committed with it.
    pub fn txn_settled(&self) -> bool {
        let inner = self.lock();
        let cur = inner.txn.current;
        inner
            .parts
            .values()
            .all(|p| p.failed.is_some() || p.entries.iter().all(|e| e.txn != cur || e.state == State::Acked))
    }

    /// Exactly-once: the transaction committed; the next one starts empty.
    pub fn txn_next(&self) {
        let mut inner = self.lock();
        inner.txn.current += 1;
        inner.txn.added.clear();
        inner.txn.closing = false;
        inner.txn.bytes = 0;
        drop(inner);
        self.wake.notify_waiters();
    }
}

/// Largest batch built by coalescing.
const COALESCE_MAX_BYTES: usize = 512 * 1024;

/// Merges the run of small, never-sent batches starting at entry `i` into one
/// entry (see [`crate::batch::coalesce`]). Returns how many batches were merged.
/// A run whose records would decompress past `max_plain` is not merged: its
/// batches go raw, and the batch where it passed the cap is never tried again.
fn coalesce_run(
    part: &mut Part,
    i: usize,
    below: usize,
    max_plain: usize,
    stamp: ProducerStamp,
    next_id: &mut u64,
) -> Option<usize> {
    if below == 0 {
        return None;
    }
    let small = |e: &Entry| -> Option<RawBatch> {
        let (raw, _) = e.batch.as_ref()?;
        (e.state == State::Queued
            && !e.sent_once
            && !e.oversized
            && e.deltas.is_none()
            && raw.len() < below
            && can_coalesce(raw))
        .then(|| raw.clone())
    };
    let first = small(&part.entries[i])?;
    let codec = first.codec();
    let mut raws = vec![first];
    let mut end = i; // last entry merged
    let mut size = raws[0].len();
    for (j, e) in part.entries.iter().enumerate().skip(i + 1) {
        if size >= COALESCE_MAX_BYTES {
            break;
        }
        if e.batch.is_none() && e.state == State::Acked {
            continue; // a skipped marker between batches: covered by the merged range
        }
        match small(e) {
            Some(raw) if raw.codec() == codec => {
                size += raw.len();
                raws.push(raw);
                end = j;
            }
            _ => break,
        }
    }
    if raws.len() < 2 {
        return None;
    }
    let merged = match coalesce(&raws, max_plain) {
        Ok(m) => m,
        Err(BatchError::TooLargeDecompressed { base_offset, limit }) => {
            warn!(
                topic = %part.route.src_topic, partition = part.route.partition, offset = base_offset, limit,
                "batch decompresses past max_decompressed_batch_bytes; forwarded raw, not merged"
            );
            let big = part.entries.range_mut(i..=end).find(|e| {
                e.batch
                    .as_ref()
                    .is_some_and(|(raw, _)| raw.base_offset() == base_offset)
            });
            if let Some(e) = big {
                e.oversized = true;
            }
            return None;
        }
        Err(_) => return None,
    };
    let head = &part.entries[i];
    let (seq, src_base) = (head.seq, head.src_base);
    let src_last = part.entries[end].src_last;
    let mut held = Vec::new();
    for e in part.entries.drain(i..=end) {
        held.extend(e._held);
    }
    *next_id += 1;
    let patched = patch_for_produce(&merged.batch, stamp, seq);
    part.entries.insert(
        i,
        Entry {
            id: *next_id,
            src_base,
            src_last,
            state: State::Queued,
            seq,
            records: merged.batch.record_count(),
            batch: Some((merged.batch, patched)),
            deltas: Some(merged.source_deltas),
            sent_once: false,
            oversized: false,
            txn: 0,
            dst_end: -1,
            _held: held,
        },
    );
    Some(raws.len())
}

/// Refreshes destination leaders when a partition lost its leader.
async fn leader_watch(p: Arc<Producer>) {
    loop {
        tokio::select! {
            _ = p.needs_refresh.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let missing =
            p.reinit.load(Ordering::SeqCst) || p.lock().parts.values().any(|x| x.leader < 0 && x.failed.is_none());
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

/// One sender per destination broker: builds and pipelines Produce requests.
async fn sender(p: Arc<Producer>, node: i32) {
    // Requests in flight on the connection; the broker answers them in order.
    let slots = Arc::new(Semaphore::new(8));
    let txn_id = p.cfg.exactly_once.then(|| p.cfg.transactional_id());
    loop {
        let wake = p.wake.notified();
        if p.stopping.load(Ordering::SeqCst) {
            return;
        }
        let batch = p.next_request(node);
        if batch.is_empty() {
            tokio::select! {
                _ = wake => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            continue;
        }
        let permit = slots.clone().acquire_owned().await.expect("semaphore never closed");
        let p2 = p.clone();
        let sent: Vec<(PartKey, u64)> = batch.iter().map(|(k, id, _, _)| (k.clone(), *id)).collect();
        let mut topics: Vec<ProduceTopic> = Vec::new();
        for (key, _, pp, id) in batch {
            match topics.iter_mut().find(|t| t.name == *key.0) {
                Some(t) => t.partitions.push(pp),
                None => topics.push(ProduceTopic {
                    name: key.0.to_string(),
                    topic_id: id,
                    partitions: vec![pp],
                }),
            }
        }
        let conn = match p.dst.broker(node).await {
            Ok(c) => c,
            Err(e) => {
                p.complete(node, sent, Err(e));
                drop(permit);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        // Submit here, in order; only the wait for the answer runs concurrently.
        let submitted = match conn.version_of::<ProduceRequest>() {
            Ok(version) => {
                let version = produce_version(version, txn_id.as_deref());
                conn.submit_produce(version, txn_id.as_deref(), -1, conn_timeout_ms(&p), &topics)
                    .await
            }
            Err(e) => Err(e),
        };
        let pending = match submitted {
            Ok(pending) => pending,
            Err(e) => {
                p.complete(node, sent, Err(e));
                drop(permit);
                continue;
            }
        };
        tokio::spawn(async move {
            let result = pending.response().await.map(|resp| {
                let mut map = HashMap::new();
                for t in resp.responses {
                    let name: Arc<str> = if t.name.0.is_empty() {
                        // Produce v13 answers by topic id.
                        let inner = p2.lock();
                        inner
                            .topic_ids
                            .iter()
                            .find(|(_, id)| **id == t.topic_id)
                            .map(|(n, _)| n.clone())
                            .unwrap_or_default()
                    } else {
                        Arc::from(t.name.0.as_str())
                    };
                    for pr in t.partition_responses {
                        map.insert(
                            (name.clone(), pr.index),
                            (pr.error_code, pr.base_offset, pr.error_message.map(|m| m.to_string())),
                        );
                    }
                }
                map
            });
            p2.complete(node, sent, result);
            drop(permit);
        });
    }
}

/// Produce `timeout_ms`: two thirds of the request timeout, so the broker answers
/// (with REQUEST_TIMED_OUT) before strait gives up on the connection.
fn conn_timeout_ms(p: &Producer) -> i32 {
    (p.cfg.destination.request_timeout_ms * 2 / 3).min(i32::MAX as u64) as i32
}
