//! The produce queue, without I/O: every replicated partition's entries in
//! source order, which batches the next Produce request to a broker carries,
//! and what an answer does to them ([`verdict`], the decision table).
//!
//! Rules it keeps (docs/design.md): one batch per partition per request (Produce
//! v3+), at most `max_in_flight_per_partition` batches of a partition in flight
//! (the broker's idempotence window is 5) and only one until the destination
//! acknowledged one since the last error (a broker with no state for the
//! producer id accepts any first sequence, so a later batch could land first);
//! sequence numbers assigned once per batch, so a resend of a batch the broker
//! has is answered as a duplicate; after an error the partition waits for its
//! in-flight batches and resends from its first unacknowledged one; its source
//! position advances only over acknowledged entries. What an answer means is
//! [`super::decide`]'s table; merging small batches is [`super::merge`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use tracing::{error, warn};
use uuid::Uuid;

use super::super::budget::Held;
use super::super::metrics::{BatchTimes, Metrics};
use super::super::offset_map::MapEntry;
use super::decide::{verdict, Answer, Verdict};
use super::merge::{coalesce_run, deep_below, COALESCE_MAX_BYTES};
use super::txn::TxnState;
use super::{Item, Position, Route};
use crate::batch::{patch_for_produce, PatchedBatch, ProducerStamp, RawBatch};
use crate::client::{code, error_name};
use crate::config::ProduceSettings;
use crate::protocol::ProducePartition;

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(super) enum State {
    Queued,
    InFlight,
    Acked,
}

#[derive(Debug)]
pub(super) struct Entry {
    /// Unique per producer: responses are matched by it, never by sequence number.
    pub(super) id: u64,
    pub(super) src_base: i64,
    pub(super) src_last: i64,
    pub(super) state: State,
    pub(super) seq: i32,
    pub(super) records: i32,
    pub(super) batch: Option<(RawBatch, PatchedBatch)>,
    pub(super) deltas: Option<Vec<i32>>,
    /// Sent at least once: the broker may have it, so it is never merged again.
    pub(super) sent_once: bool,
    /// Decompresses past `max_decompressed_batch_bytes`: never merged, goes raw.
    pub(super) oversized: bool,
    /// Exactly-once: the transaction it was first sent in (0: not sent yet).
    pub(super) txn: u64,
    /// Once acknowledged: the destination offset after its last record (-1: unknown).
    pub(super) dst_end: i64,
    /// Index of the origin (and producer id) it is written under (0: the flow's source).
    pub(super) origin: usize,
    pub(super) held: Vec<Arc<Held>>,
    /// When the Fetch response carrying it was received (a merged entry: its
    /// first batch's); `None` for skips.
    pub(super) fetched: Option<Instant>,
    /// When its Produce request was last sent.
    pub(super) sent: Option<Instant>,
}

impl Entry {
    pub(super) fn batch(
        id: u64,
        src_base: i64,
        src_last: i64,
        seq: i32,
        batch: RawBatch,
        patched: PatchedBatch,
        fetched: Instant,
    ) -> Self {
        Self {
            id,
            src_base,
            src_last,
            state: State::Queued,
            seq,
            records: batch.record_count(),
            batch: Some((batch, patched)),
            deltas: None,
            sent_once: false,
            oversized: false,
            txn: 0,
            dst_end: -1,
            origin: 0,
            held: Vec::new(),
            fetched: Some(fetched),
            sent: None,
        }
    }

    fn skip(src_last: i64) -> Self {
        Self {
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
            origin: 0,
            held: Vec::new(),
            fetched: None,
            sent: None,
        }
    }
}

#[derive(Debug)]
pub(super) struct Part {
    pub(super) route: Route,
    pub(super) leader: i32,
    pub(super) entries: VecDeque<Entry>,
    /// Next sequence number, per origin's producer id.
    pub(super) next_seq: Vec<i32>,
    pub(super) inflight: usize,
    pub(super) resend: bool,
    /// Per origin's producer id: the destination acknowledged a batch of it
    /// since the last error, so up to `max_in_flight_per_partition` may be in
    /// flight; until then one at a time (a broker with no state for a producer
    /// id accepts any first sequence: a later batch could land first).
    pub(super) confirmed: Vec<bool>,
    pub(super) acked_next: i64,
    /// The destination offset right after the last record strait wrote for the
    /// source offsets before `acked_next` (-1: unknown).
    pub(super) dst_next: i64,
    pub(super) failed: Option<String>,
    pub(super) map: Vec<MapEntry>,
    /// Nothing new is sent (its member lost its group and waits to learn
    /// whether it keeps the partition); batches in flight complete.
    pub(super) held: bool,
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

    /// The next sequence number of `origin`'s producer id, advanced by `records`.
    pub(super) fn take_seq(&mut self, origin: usize, records: i32) -> i32 {
        if self.next_seq.len() <= origin {
            self.next_seq.resize(origin + 1, 0);
        }
        let seq = self.next_seq[origin];
        self.next_seq[origin] = seq.wrapping_add(records) & i32::MAX;
        seq
    }

    fn is_confirmed(&self, origin: usize) -> bool {
        self.confirmed.get(origin).copied().unwrap_or(false)
    }

    /// Batches of `origin` that may be in flight: `max` once the destination
    /// acknowledged one since the last error, 1 until then.
    fn window(&self, origin: usize, max: usize) -> usize {
        if self.is_confirmed(origin) {
            max
        } else {
            1
        }
    }

    fn set_confirmed(&mut self, origin: usize, yes: bool) {
        if self.confirmed.len() <= origin {
            self.confirmed.resize(origin + 1, false);
        }
        self.confirmed[origin] = yes;
    }

    fn first_queued(&self) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.state == State::Queued && e.batch.is_some())
    }
}

/// A partition's key: (destination topic, partition).
pub(super) type PartKey = (Arc<str>, i32);

/// One batch of a Produce request.
#[derive(Debug)]
pub(super) struct Outgoing {
    /// The partition.
    pub(super) key: PartKey,
    /// The entry, to match the answer.
    pub(super) entry: u64,
    /// The batch as the request carries it.
    pub(super) batch: ProducePartition,
    /// The destination topic's id (Produce v13 addresses topics by id).
    pub(super) topic_id: Uuid,
}

/// What applying answers asks of the producer's tasks.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Effects {
    /// Look destination leaders up again.
    pub(super) refresh: bool,
    /// Get a new producer id and renumber every unacknowledged batch.
    pub(super) new_producer_id: bool,
    /// Exactly-once: why the open transaction cannot commit.
    pub(super) fatal_txn: Option<String>,
}

/// Every partition's queue.
#[derive(Debug, Default)]
pub(super) struct Queue {
    /// The producer id of each origin batches are written under: 0 is the
    /// flow's source, then each forwarded origin in the order it showed up.
    pub(super) stamps: Vec<ProducerStamp>,
    /// The forwarded origins, in the order of `stamps` (0: `None`, the source).
    pub(super) origins: Vec<Option<Arc<str>>>,
    pub(super) parts: HashMap<PartKey, Part>,
    pub(super) topic_ids: HashMap<Arc<str>, Uuid>,
    rotate: usize,
    next_id: u64,
    /// Set while a new producer id is being installed: nothing is sent.
    pub(super) paused: bool,
    /// Next sequence numbers of partitions handed to another member, kept
    /// for when one comes back (the broker remembers the producer id's last
    /// sequence there).
    pub(super) retired: HashMap<PartKey, Vec<i32>>,
    pub(super) txn: TxnState,
    /// Destination brokers at a round trip of [`super::FAR_RTT`] or more
    /// (measured by [`super::rtt`]): their partitions' queues merge larger batches.
    pub(super) far: HashSet<i32>,
    /// Destination topics' `max.message.bytes`, looked up once each (`None`:
    /// the lookup failed; retried every minute): bounds merged batches, and
    /// only batches of topics whose limit is known merge past the tiny ones.
    pub(super) max_message: HashMap<Arc<str>, Option<usize>>,
}

impl Queue {
    /// A queue writing the source's records under `stamp`.
    pub(super) fn new(stamp: ProducerStamp) -> Self {
        Self {
            stamps: vec![stamp],
            origins: vec![None],
            ..Self::default()
        }
    }

    /// The index of `origin` (`None`: the flow's source), if it has a producer id.
    pub(super) fn origin_index(&self, origin: &Option<Arc<str>>) -> Option<usize> {
        self.origins.iter().position(|o| o == origin)
    }

    /// Starts tracking a partition whose next source offset is `start`.
    pub(super) fn add_route(&mut self, route: Route, start: i64, dst_next: i64, dst_topic_id: Uuid) {
        self.topic_ids.insert(route.dst_topic.clone(), dst_topic_id);
        let key = (route.dst_topic.clone(), route.partition);
        let next_seq = self.retired.remove(&key).unwrap_or_default();
        self.parts.entry(key).or_insert_with(|| Part {
            route,
            leader: -1,
            entries: VecDeque::new(),
            next_seq,
            inflight: 0,
            resend: false,
            confirmed: Vec::new(),
            acked_next: start,
            dst_next,
            failed: None,
            map: Vec::new(),
            held: false,
        });
    }

    /// Stops tracking partitions (handed to another member): their queued
    /// entries are dropped (their budget returns), their sequence numbers kept.
    pub(super) fn remove_routes(&mut self, keys: &[PartKey]) {
        for k in keys {
            if let Some(p) = self.parts.remove(k) {
                self.retired.insert(k.clone(), p.next_seq);
            }
        }
    }

    /// Holds (or releases) partitions: a held one sends nothing new.
    pub(super) fn hold(&mut self, keys: &[PartKey], hold: bool) {
        for k in keys {
            if let Some(p) = self.parts.get_mut(k) {
                p.held = hold;
            }
        }
    }

    /// Entries of `keys` still queued or in flight.
    pub(super) fn pending_of(&self, keys: &[PartKey]) -> usize {
        keys.iter()
            .filter_map(|k| self.parts.get(k))
            .filter(|p| p.failed.is_none())
            .map(|p| p.entries.len())
            .sum()
    }

    /// Appends fetched items of one partition, in source order, numbering each
    /// batch under its origin's producer id. Returns false when the partition
    /// is unknown or stopped.
    pub(super) fn enqueue(&mut self, key: &PartKey, items: Vec<Item>) -> bool {
        let origins: Vec<Option<usize>> = items
            .iter()
            .map(|i| match i {
                Item::Batch { origin, .. } => self.origin_index(origin),
                Item::Skip { .. } => Some(0),
            })
            .collect();
        let Some(part) = self.parts.get_mut(key) else {
            return false;
        };
        if part.failed.is_some() {
            return false;
        }
        for (item, origin) in items.into_iter().zip(origins) {
            match item {
                Item::Batch {
                    batch,
                    src_base,
                    src_last,
                    deltas,
                    held,
                    fetched,
                    ..
                } => {
                    // The fetcher gets an origin its producer id before handing over
                    // its batches; one without is written as the source's.
                    let origin = origin.unwrap_or(0);
                    let seq = part.take_seq(origin, batch.record_count());
                    let patched = patch_for_produce(&batch, self.stamps[origin], seq);
                    self.next_id += 1;
                    let mut e = Entry::batch(self.next_id, src_base, src_last, seq, batch, patched, fetched);
                    e.deltas = deltas;
                    e.origin = origin;
                    e.held = vec![held];
                    part.entries.push_back(e);
                }
                Item::Skip { src_last } => part.entries.push_back(Entry::skip(src_last)),
            }
        }
        part.advance();
        true
    }

    /// The batches of the next Produce request to broker `node`: at most one per
    /// partition, partitions in rotating order, up to `max_request_bytes`.
    /// Exactly-once: partitions not yet in the open transaction are marked
    /// wanted instead (the caller adds them), and a closing transaction only
    /// resends its own batches.
    pub(super) fn next_request(&mut self, node: i32, s: &ProduceSettings, metrics: &Metrics) -> Vec<Outgoing> {
        if self.paused {
            return Vec::new();
        }
        let mut keys: Vec<PartKey> = self
            .parts
            .iter()
            .filter(|(_, p)| {
                let next_origin = p.first_queued().map_or(0, |i| p.entries[i].origin);
                let window = p.window(next_origin, s.max_in_flight_per_partition);
                p.leader == node && p.failed.is_none() && !p.held && !p.resend && p.inflight < window
            })
            .map(|(k, _)| k.clone())
            .collect();
        if keys.is_empty() {
            return Vec::new();
        }
        keys.sort();
        let start = self.rotate % keys.len();
        self.rotate = self.rotate.wrapping_add(1);
        keys.rotate_left(start);
        let transactional = s.transactional_id.is_some();
        let mut out = Vec::new();
        let mut bytes = 0;
        for key in keys {
            let topic_id = self.topic_ids.get(&key.0).copied().unwrap_or_default();
            let part = self.parts.get_mut(&key).expect("key from map");
            let Some(i) = part.first_queued() else { continue };
            if transactional && !self.txn.may_send(&key, part.entries[i].txn) {
                continue;
            }
            // A merged batch stays within half the destination topic's
            // `max.message.bytes` (re-encoding may grow it a little); while
            // that is unknown, only tiny batches merge, up to 512 KiB, as always.
            let (deep, cap) = match self.max_message.get(&key.0).copied().flatten() {
                Some(max) => {
                    let window = part.window(part.entries[i].origin, s.max_in_flight_per_partition);
                    let queued = part.entries.iter().skip(i).filter(|e| e.state == State::Queued).count();
                    let cap = (max / 2).min(COALESCE_MAX_BYTES);
                    let far = self.far.contains(&node);
                    (
                        deep_below(queued, window.saturating_sub(part.inflight), far).min(cap / 2),
                        cap,
                    )
                }
                None => (0, COALESCE_MAX_BYTES),
            };
            if let Some(merged) = coalesce_run(part, i, s, &self.stamps, &mut self.next_id, deep, cap) {
                Metrics::add(&metrics.batches_coalesced, merged as u64);
            }
            let e = &mut part.entries[i];
            let (_, patched) = e.batch.as_ref().expect("queued entries hold a batch");
            if bytes > 0 && bytes + patched.len() > s.max_request_bytes {
                break;
            }
            bytes += patched.len();
            e.state = State::InFlight;
            e.sent_once = true;
            e.sent = Some(Instant::now());
            if transactional && e.txn == 0 {
                e.txn = self.txn.current;
                self.txn.bytes += patched.len();
            }
            out.push(Outgoing {
                key,
                entry: e.id,
                batch: ProducePartition {
                    partition: part.route.partition,
                    header: patched.header.clone(),
                    records: patched.body.clone(),
                },
                topic_id,
            });
            part.inflight += 1;
        }
        out
    }

    /// Applies the answers to the batches of one request (`sent`: partition and
    /// entry id of each). A partition missing from `answers` is retried.
    pub(super) fn complete(
        &mut self,
        sent: &[(PartKey, u64)],
        answers: &HashMap<PartKey, Answer>,
        exactly_once: bool,
        metrics: &Metrics,
    ) -> Effects {
        let mut fx = Effects::default();
        for (key, id) in sent {
            let Some(part) = self.parts.get_mut(key) else {
                continue;
            };
            part.inflight = part.inflight.saturating_sub(1);
            let Some(idx) = part
                .entries
                .iter()
                .position(|e| e.id == *id && e.state == State::InFlight)
            else {
                continue;
            };
            let missing = Answer {
                code: code::UNKNOWN_SERVER_ERROR,
                base_offset: -1,
                message: Some("partition missing from response".into()),
            };
            let a = answers.get(key).unwrap_or(&missing);
            let first_unacked = part.entries.iter().position(|e| e.state != State::Acked) == Some(idx) && !part.resend;
            let v = verdict(a.code, first_unacked, exactly_once);
            if v != Verdict::Acked {
                let origin = part.entries[idx].origin;
                part.set_confirmed(origin, false);
                metrics.error(a.code);
                part.entries[idx].state = State::Queued;
            }
            match v {
                // An answer that comes after a failed batch of the same partition
                // still ends in the resend check below.
                Verdict::Acked => acked(part, idx, a.base_offset, metrics),
                Verdict::FailTransaction => {
                    let reason = format!(
                        "exactly-once transaction on the destination failed: {} ({}) producing {} partition {}{}",
                        error_name(a.code),
                        a.code,
                        key.0,
                        key.1,
                        if matches!(a.code, code::INVALID_PRODUCER_EPOCH | code::PRODUCER_FENCED) {
                            "; another strait instance with the same name (transactional id) took over"
                        } else {
                            ""
                        }
                    );
                    fx.fatal_txn.get_or_insert(reason);
                    part.resend = true;
                }
                Verdict::NewProducerId => {
                    warn!(topic = %key.0, partition = key.1, code = error_name(a.code), "destination lost producer state; starting a new producer id (batches may be duplicated)");
                    fx.new_producer_id = true;
                    fx.refresh = true;
                    part.resend = true;
                }
                Verdict::Retry { refresh } => {
                    Metrics::add(&metrics.produce_retries, 1);
                    part.resend = true;
                    if refresh {
                        part.leader = -1;
                        fx.refresh = true;
                    }
                }
                Verdict::Stop => {
                    let e = &part.entries[idx];
                    let reason = format!(
                        "destination rejected the batch at source offset {} of {} partition {} (destination {} partition {}): {} ({}){}",
                        e.src_base,
                        part.route.src_topic,
                        key.1,
                        key.0,
                        key.1,
                        error_name(a.code),
                        a.code,
                        a.message.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
                    );
                    error!(topic = %part.route.src_topic, partition = key.1, offset = e.src_base, "{reason}; replication of this partition stopped");
                    part.failed = Some(reason);
                    part.entries.clear();
                    continue;
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
        fx
    }

    /// Renumbers every unacknowledged batch under new producer ids (one per
    /// origin, in the order of `stamps`), from sequence 0.
    pub(super) fn renumber(&mut self, stamps: Vec<ProducerStamp>) {
        self.stamps = stamps;
        for part in self.parts.values_mut() {
            part.next_seq.clear();
            let mut entries = std::mem::take(&mut part.entries);
            for e in entries.iter_mut() {
                if let Some((raw, patched)) = e.batch.as_mut() {
                    e.seq = part.take_seq(e.origin, e.records);
                    *patched = patch_for_produce(raw, self.stamps[e.origin], e.seq);
                    e.state = State::Queued;
                }
            }
            part.entries = entries;
            part.resend = false;
            part.confirmed.clear();
        }
    }

    /// Batches in flight, over every partition.
    pub(super) fn in_flight(&self) -> usize {
        self.parts.values().map(|p| p.inflight).sum()
    }

    /// Positions of every partition.
    pub(super) fn positions(&self) -> Vec<Position> {
        self.parts
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

    /// Entries still queued or in flight, over partitions that did not stop.
    pub(super) fn pending(&self) -> usize {
        self.parts
            .values()
            .filter(|p| p.failed.is_none())
            .map(|p| p.entries.len())
            .sum()
    }

    /// Takes the offset-map entries acknowledged since the last call.
    pub(super) fn take_map_entries(&mut self) -> Vec<(Route, Vec<MapEntry>)> {
        self.parts
            .values_mut()
            .filter(|p| !p.map.is_empty())
            .map(|p| (p.route.clone(), std::mem::take(&mut p.map)))
            .collect()
    }

    /// Puts back map entries whose checkpoint failed (they are written next time).
    pub(super) fn restore_map_entries(&mut self, entries: Vec<(Route, Vec<MapEntry>)>) {
        for (route, mut v) in entries {
            if let Some(p) = self.parts.get_mut(&(route.dst_topic.clone(), route.partition)) {
                v.append(&mut p.map);
                p.map = v;
            }
        }
    }
}

/// Marks entry `idx` acknowledged at destination offset `base` (-1: unknown).
fn acked(part: &mut Part, idx: usize, base: i64, metrics: &Metrics) {
    let origin = part.entries[idx].origin;
    part.set_confirmed(origin, true);
    let e = &mut part.entries[idx];
    e.state = State::Acked;
    Metrics::add(&metrics.records, e.records as u64);
    if let Some((raw, _)) = e.batch.take() {
        Metrics::add(&metrics.bytes, raw.len() as u64);
        // Every record is charged the batch's first timestamp: the oldest by
        // creation order, so a large or coalesced batch is not understated.
        let times = e
            .fetched
            .zip(e.sent)
            .map(|(fetched, sent)| BatchTimes { fetched, sent });
        metrics.latency(raw.first_timestamp(), e.records as u64, times);
        metrics.acked_batch(&part.route.src_topic, raw.max_timestamp());
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
