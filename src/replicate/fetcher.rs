//! The source side: one fetcher per source broker, with an incremental fetch
//! session (KIP-227) over all partitions it leads, `isolation_level =
//! READ_COMMITTED`.
//!
//! A response's records blob is split into batches without copying; a truncated
//! last batch is simply fetched again from its offset. Each batch is filtered
//! ([`crate::batch::BatchFilter`]), its CRC checked (a corrupted batch is fetched
//! again, never blessed with a fresh CRC), re-encoded if compaction left offset
//! gaps, and handed to the producer in order. Fetch returns whole batches, so the
//! first can start before the fetch offset: progress is tracked per batch.
//! Records the splitter refuses (a corrupted batch length) are fetched again
//! like a CRC failure; after [`MAX_REFETCHES`] failed fetches of one offset in a
//! row the partition stops there.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::{FetchRequest, FetchResponse};
use tokio::sync::Notify;
use tracing::{debug, error, warn};
use uuid::Uuid;

use super::budget::Share;
use super::metrics::Metrics;
use super::producer::{Item, Producer, Route};
use super::provenance::{Decision, Filter};
use crate::batch::{reencode_from, split_batches, up_convert, BatchError, BatchFilter, Disposition, SkipReason};
use crate::client::admin::{EARLIEST, LATEST};
use crate::client::fetch::{fetch_request, FetchAt, FetchLimits, SessionRequest};
use crate::client::{classify, code, error_name, Client, ErrorClass};
use crate::config::{FetchSettings, StartFrom};

type Key = (Arc<str>, i32);

#[derive(Debug)]
struct SrcPart {
    route: Route,
    topic_id: Uuid,
    next_offset: i64,
    leader: i32,
    high_watermark: i64,
    stopped: Option<String>,
    /// Offset being fetched again after corruption, and how many fetches of it failed in a row.
    refetching: Option<(i64, u32)>,
    /// Not fetched for now (its member lost its group and waits to learn whether it keeps it).
    held: bool,
    /// Record bytes fetched since it was added, and when it was added (its rate, for the assignor).
    bytes: u64,
    since: std::time::Instant,
}

/// Lag report of one partition.
#[derive(Debug, Clone)]
pub struct SourceLag {
    /// Source topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Last stable offset (read_committed end) seen in the last fetch.
    pub end_offset: i64,
    /// Next offset to fetch.
    pub next_offset: i64,
}

/// All fetchers of one source cluster.
#[derive(Debug)]
pub struct Fetchers {
    src: Arc<Client>,
    settings: FetchSettings,
    metrics: Arc<Metrics>,
    budget: Arc<Share>,
    producer: Arc<Producer>,
    /// Skips batches strait replicated into the source (none: forwards all).
    provenance: Option<Filter>,
    parts: Mutex<HashMap<Key, SrcPart>>,
    /// Fetch loops running: (broker, lane).
    running: Mutex<HashSet<(i32, usize)>>,
    /// Fetch requests in flight per source broker.
    in_flight: Mutex<HashMap<i32, usize>>,
    /// Per source broker: its lanes and measured round trip ([`rtt_watch`]).
    lanes: Mutex<HashMap<i32, Lanes>>,
    refresh: Notify,
    stopping: AtomicBool,
    /// Notified when a source topic came back under a new id: the flow's
    /// topic refresh starts it over.
    on_topic_change: std::sync::OnceLock<Arc<Notify>>,
}

#[derive(Debug, Default)]
struct Session {
    id: i32,
    epoch: i32,
    sent: HashMap<Key, i64>,
    /// Topic ids of the partitions in the session (to forget one that is gone).
    ids: HashMap<Key, Uuid>,
}

impl Fetchers {
    /// Fetchers feeding `producer`.
    pub fn new(
        src: Arc<Client>,
        settings: FetchSettings,
        metrics: Arc<Metrics>,
        budget: Arc<Share>,
        producer: Arc<Producer>,
        provenance: Option<Filter>,
    ) -> Arc<Self> {
        let f = Arc::new(Self {
            src,
            settings,
            metrics,
            budget,
            producer,
            provenance,
            parts: Mutex::new(HashMap::new()),
            running: Mutex::new(HashSet::new()),
            lanes: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            refresh: Notify::new(),
            stopping: AtomicBool::new(false),
            on_topic_change: std::sync::OnceLock::new(),
        });
        tokio::spawn(leader_watch(f.clone()));
        f
    }

    /// Notifies `n` when a source topic has a new id.
    pub fn on_topic_change(&self, n: Arc<Notify>) {
        let _ = self.on_topic_change.set(n);
    }

    /// Asks the flow's topic refresh to run now (a topic has a new id or its
    /// log ends before the fetch position).
    fn topic_changed(&self) {
        if let Some(n) = self.on_topic_change.get() {
            n.notify_one();
        }
    }

    /// The flow's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, SrcPart>> {
        crate::sync::lock(&self.parts)
    }

    /// Starts fetching a partition at `offset`.
    pub fn add(&self, route: Route, topic_id: Uuid, offset: i64) {
        let key = (route.src_topic.clone(), route.partition);
        self.lock().entry(key).or_insert(SrcPart {
            route,
            topic_id,
            next_offset: offset,
            leader: -1,
            high_watermark: -1,
            stopped: None,
            refetching: None,
            held: false,
            bytes: 0,
            since: std::time::Instant::now(),
        });
        self.refresh.notify_one();
    }

    /// Stops fetching partitions (handed to another member). A response in
    /// flight for one of them is dropped when it arrives.
    pub fn remove(&self, keys: &[(Arc<str>, i32)]) {
        let mut parts = self.lock();
        for k in keys {
            parts.remove(k);
        }
    }

    /// Stops (`hold`) or resumes fetching partitions, keeping their positions.
    pub fn hold(&self, keys: &[(Arc<str>, i32)], hold: bool) {
        let mut parts = self.lock();
        for k in keys {
            if let Some(p) = parts.get_mut(k) {
                p.held = hold;
            }
        }
        drop(parts);
        self.refresh.notify_one();
    }

    /// Every partition fetched, with its record bytes per second since it was added.
    pub fn rates(&self) -> Vec<(Arc<str>, i32, u64)> {
        self.lock()
            .values()
            .map(|p| {
                let secs = p.since.elapsed().as_secs_f64().max(1.0);
                (
                    p.route.src_topic.clone(),
                    p.route.partition,
                    (p.bytes as f64 / secs) as u64,
                )
            })
            .collect()
    }

    /// True when any partition is being replicated.
    pub fn any(&self) -> bool {
        !self.lock().is_empty()
    }

    /// True when the partition is known.
    pub fn has(&self, topic: &str, partition: i32) -> bool {
        self.lock().contains_key(&(Arc::from(topic), partition))
    }

    /// Stops all fetchers (in-flight fetches are discarded).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Per-partition source end offsets and fetch positions.
    pub fn lags(&self) -> Vec<SourceLag> {
        self.lock()
            .values()
            .map(|p| SourceLag {
                topic: p.route.src_topic.clone(),
                partition: p.route.partition,
                end_offset: p.high_watermark,
                next_offset: p.next_offset,
            })
            .collect()
    }

    /// Partitions stopped on an error, with the reason.
    pub fn stopped(&self) -> Vec<(Route, String)> {
        self.lock()
            .values()
            .filter_map(|p| p.stopped.clone().map(|s| (p.route.clone(), s)))
            .collect()
    }

    fn stop_partition(&self, key: &Key, reason: String) {
        error!(topic = %key.0, partition = key.1, "{reason}; replication of this partition stopped");
        if let Some(p) = self.lock().get_mut(key) {
            p.stopped = Some(reason);
        }
    }

    async fn refresh_leaders(self: &Arc<Self>) {
        let topics: Vec<String> = {
            let parts = self.lock();
            let mut t: Vec<String> = parts
                .values()
                .filter(|p| p.leader < 0 && p.stopped.is_none())
                .map(|p| p.route.src_topic.to_string())
                .collect();
            t.sort();
            t.dedup();
            t
        };
        if topics.is_empty() {
            return;
        }
        match self.src.refresh_metadata(Some(&topics)).await {
            Ok(md) => {
                let mut leaders = Vec::new();
                let mut changed = false;
                {
                    let mut parts = self.lock();
                    for p in parts.values_mut().filter(|p| p.leader < 0) {
                        if let Some(t) = md.topics.get(p.route.src_topic.as_ref()) {
                            if super::topics::created_again(p.topic_id, t.id) {
                                // Deleted and created again: its offsets start over,
                                // so its position means nothing there. The flow
                                // starts it over (FlowOwner::set_topics).
                                changed = true;
                                continue;
                            }
                            p.topic_id = t.id;
                        }
                        if let Some(pm) = md.partition(&p.route.src_topic, p.route.partition) {
                            if pm.leader >= 0 && pm.error_code == 0 {
                                p.leader = pm.leader;
                                leaders.push(pm.leader);
                            }
                        }
                    }
                }
                if changed {
                    self.topic_changed();
                }
                for l in leaders {
                    self.start_lanes(l);
                }
            }
            Err(e) => warn!(error = %e, "source metadata refresh failed; retrying"),
        }
    }

    /// Per source broker: its measured round trip and its fetch lanes.
    pub fn round_trips(&self) -> Vec<(i32, Duration, usize)> {
        let mut out: Vec<(i32, Duration, usize)> = crate::sync::lock(&self.lanes)
            .iter()
            .map(|(n, l)| (*n, l.rtt, l.count))
            .collect();
        out.sort_by_key(|x| x.0);
        out
    }

    /// Lanes of broker `node` (1 until its round trip was measured).
    fn lane_count(&self, node: i32) -> usize {
        crate::sync::lock(&self.lanes).get(&node).map_or(1, |l| l.count)
    }

    /// Starts every lane of `node` not running yet (and, with lane 0, the
    /// broker's round-trip watch).
    fn start_lanes(self: &Arc<Self>, node: i32) {
        let count = self.lane_count(node);
        let mut running = crate::sync::lock(&self.running);
        for lane in 0..count {
            if running.insert((node, lane)) {
                tokio::spawn(fetch_loop(self.clone(), node, lane));
                if lane == 0 {
                    tokio::spawn(rtt_watch(self.clone(), node));
                }
            }
        }
    }

    /// Moves a partition whose fetch offset fell out of the retained range.
    async fn reset_out_of_range(&self, key: &Key, fetch_offset: i64) {
        // A topic deleted and created again answers OFFSET_OUT_OF_RANGE too
        // (fetched by name): that is not retention, and the flow starts it over.
        if let Ok(md) = self.src.refresh_metadata(Some(&[key.0.to_string()])).await {
            let now = md.topics.get(key.0.as_ref()).map(|t| t.id).unwrap_or_default();
            let mut parts = self.lock();
            if let Some(p) = parts.get_mut(key) {
                if super::topics::created_again(p.topic_id, now) {
                    p.leader = -1;
                    drop(parts);
                    self.topic_changed();
                    return;
                }
            }
        }
        let earliest = self.src.list_offset(&key.0, key.1, EARLIEST, true).await;
        let latest = self.src.list_offset(&key.0, key.1, LATEST, true).await;
        let (Ok(earliest), Ok(latest)) = (earliest, latest) else {
            warn!(topic = %key.0, partition = key.1, "cannot list offsets after OFFSET_OUT_OF_RANGE; will retry");
            return;
        };
        if fetch_offset > latest {
            // Retention removes records from the start only: a log that ends
            // before the position was truncated (an unclean leader election)
            // or created again (the flow's topic refresh starts a new topic
            // over from its log start). Nothing was skipped.
            warn!(
                topic = %key.0, partition = key.1, fetch_offset, log_end = latest,
                "the source partition's log ends before the fetch position (truncated, or the topic was created again); continuing from its end"
            );
            if let Some(p) = self.lock().get_mut(key) {
                if p.next_offset == fetch_offset {
                    p.next_offset = latest;
                }
            }
            self.topic_changed();
            return;
        }
        let target = match self.settings.start_from {
            StartFrom::Earliest if fetch_offset < earliest => earliest,
            _ => latest,
        };
        let skipped = (target - fetch_offset).max(0) as u64;
        error!(
            topic = %key.0, partition = key.1, fetch_offset, log_start = earliest, log_end = latest, new_offset = target, skipped,
            "source offset out of range (retention removed records before they were replicated); continuing per start_from"
        );
        Metrics::add(&self.metrics.offsets_skipped, skipped);
        if let Some(p) = self.lock().get_mut(key) {
            if p.next_offset == fetch_offset {
                p.next_offset = target;
            }
        }
    }
}

async fn leader_watch(f: Arc<Fetchers>) {
    loop {
        tokio::select! {
            _ = f.refresh.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        if f.stopping.load(Ordering::SeqCst) {
            return;
        }
        f.refresh_leaders().await;
    }
}

/// At most this many fetch connections (lanes) per source broker.
pub const MAX_LANES: usize = 8;
/// One lane per this much round trip: a LAN (a few ms) keeps one.
const RTT_PER_LANE: Duration = Duration::from_millis(15);
/// How often a broker's round trip is measured.
const PROBE_EVERY: Duration = Duration::from_secs(5);
/// The connection (lane number) round trips are measured on: idle otherwise,
/// so nothing queued ahead of the probe inflates it.
const PROBE_LANE: usize = 64;
/// Bytes per second a broker's fetches are sized for across a long round
/// trip: the budget grows to this rate times the round trip (up to its
/// ceiling), enough for a 10 Gbit/s-class link's share per broker.
const WAN_RATE: f64 = 400e6;

/// A source broker's lanes.
#[derive(Debug, Clone, Copy)]
struct Lanes {
    count: usize,
    rtt: Duration,
}

/// The fetch lanes (connections) of a broker at round trip `rtt`: one per
/// [`RTT_PER_LANE`], up to [`MAX_LANES`].
pub fn lanes_for(rtt: Duration) -> usize {
    ((rtt.as_secs_f64() / RTT_PER_LANE.as_secs_f64()).ceil() as usize).clamp(1, MAX_LANES)
}

/// Which lane fetches a partition, among `count`: a stable spread, so a
/// partition is fetched by one lane at a time (order holds) while the count
/// stays the same. When the count changes a partition may move; a response to
/// its old lane's fetch then no longer matches its fetch offset and is dropped.
fn lane_of(key: &Key, count: usize) -> usize {
    if count <= 1 {
        return 0;
    }
    let h = crc32c::crc32c_append(crc32c::crc32c(key.0.as_bytes()), &key.1.to_be_bytes());
    h as usize % count
}

/// Measures broker `node`'s round trip every [`PROBE_EVERY`] and sizes its
/// lanes and its share of the memory budget to it: one lane per
/// [`RTT_PER_LANE`] (up to [`MAX_LANES`]), and [`WAN_RATE`] × round trip of
/// bytes in flight; warns once when the socket receive buffers cannot hold
/// them ([`crate::client::sockbuf::warn_short_window`]). Runs while lane 0 of
/// the broker runs.
async fn rtt_watch(f: Arc<Fetchers>, node: i32) {
    let key = format!("fetch-{:p}-{node}", Arc::as_ptr(&f));
    loop {
        if f.stopping.load(Ordering::SeqCst) || !crate::sync::lock(&f.running).contains(&(node, 0)) {
            f.budget.budget().want(&key, 0);
            return;
        }
        let probe = async {
            let conn = f.src.broker_lane(node, PROBE_LANE).await.ok()?;
            let mut best: Option<Duration> = None;
            for _ in 0..3 {
                let t = std::time::Instant::now();
                conn.request(&kafka_protocol::messages::ApiVersionsRequest::default())
                    .await
                    .ok()?;
                best = Some(best.map_or(t.elapsed(), |b| b.min(t.elapsed())));
            }
            best
        };
        if let Some(rtt) = probe.await {
            let count = lanes_for(rtt);
            let before = crate::sync::lock(&f.lanes).insert(node, Lanes { count, rtt });
            let want = if count > 1 {
                (WAN_RATE * rtt.as_secs_f64()) as usize
            } else {
                0
            };
            let limit = f.budget.budget().want(&key, want);
            if count > 1 {
                let c = f.src.config();
                let configured = c.socket_buffers.receive;
                crate::client::sockbuf::warn_short_window(&c.cluster, node, rtt, limit as u64, count, configured);
            }
            if before.is_none_or(|b| b.count != count) {
                debug!(
                    broker = node,
                    rtt_ms = rtt.as_secs_f64() * 1e3,
                    lanes = count,
                    budget = limit,
                    "fetch lanes sized to the round trip"
                );
                if count > 1 {
                    tracing::info!(
                        broker = node,
                        rtt_ms = (rtt.as_secs_f64() * 1e4).round() / 10.0,
                        lanes = count,
                        buffered_limit_mib = limit / (1024 * 1024),
                        "long round trip to a source broker: fetching over several connections"
                    );
                }
            }
            f.start_lanes(node);
        }
        let stopped = async {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if f.stopping.load(Ordering::SeqCst) {
                    return;
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(PROBE_EVERY) => {}
            _ = stopped => {}
        }
    }
}

/// Fetch loop of one lane (connection) of one source broker: the broker's
/// partitions whose [`lane_of`] is this lane, in one fetch session. Ends when
/// the broker's lanes shrink below it.
async fn fetch_loop(f: Arc<Fetchers>, node: i32, lane: usize) {
    let mut session = Session::default();
    let mut failures = 0u32;
    debug!(broker = node, lane, "fetcher started");
    loop {
        if f.stopping.load(Ordering::SeqCst) {
            break;
        }
        let lanes = f.lane_count(node);
        if lane >= lanes {
            break;
        }
        let candidates: Vec<(Key, Uuid, i64, Arc<str>)> = f
            .lock()
            .iter()
            .filter(|(k, p)| p.leader == node && p.stopped.is_none() && !p.held && lane_of(k, lanes) == lane)
            .map(|(k, p)| (k.clone(), p.topic_id, p.next_offset, p.route.dst_topic.clone()))
            .collect();
        // Partitions the destination refused for good are not fetched any more.
        let mine: Vec<(Key, Uuid, i64)> = candidates
            .into_iter()
            .filter(|(k, _, _, dst)| !f.producer.is_failed(dst, k.1))
            .map(|(k, id, o, _)| (k, id, o))
            .collect();
        if mine.is_empty() {
            session = Session::default();
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        // The request asks for what the budget has free (at least one
        // partition's worth), at most this lane's part of the budget so the
        // broker's lanes have their fetches in flight together.
        let per_lane = (f.budget.budget().limit() / lanes).max(1);
        let most = f.settings.max_bytes.min(per_lane);
        let mut held = f
            .budget
            .reserve_up_to(f.settings.partition_max_bytes.min(most), most)
            .await;
        let max_bytes = held.bytes();
        let conn = match f.src.broker_lane(node, lane).await {
            Ok(c) => c,
            Err(e) => {
                failures += 1;
                warn!(broker = node, error = %e, "source broker unreachable; refreshing leaders");
                lose_leadership(&f, node, None);
                tokio::time::sleep(f.src.config().backoff.delay(failures)).await;
                continue;
            }
        };
        let version = match conn.version_of::<FetchRequest>() {
            Ok(v) => v,
            Err(e) => {
                error!(broker = node, error = %e, "source broker cannot serve Fetch");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        let by_id = version >= 13;
        let sessions = version >= 7;
        // Which partitions go into this request.
        let current: HashMap<Key, (Uuid, i64)> = mine.iter().map(|(k, id, o)| (k.clone(), (*id, *o))).collect();
        let full = !sessions || session.id == 0;
        let mut include: Vec<(Key, Uuid, i64)> = Vec::new();
        let mut forgotten: Vec<(Key, Uuid)> = Vec::new();
        if full {
            include = mine.clone();
        } else {
            for (k, id, o) in &mine {
                if session.sent.get(k) != Some(o) {
                    include.push((k.clone(), *id, *o));
                }
            }
            for k in session.sent.keys() {
                if !current.contains_key(k) {
                    let id = session.ids.get(k).copied().unwrap_or_default();
                    forgotten.push((k.clone(), id));
                }
            }
        }
        let req = build_request(&f.settings, version, &session, full, &include, &forgotten, max_bytes);
        f.metrics.fetches_in_flight.fetch_add(1, Ordering::Relaxed);
        let of_broker = {
            let mut in_flight = crate::sync::lock(&f.in_flight);
            let n = in_flight.entry(node).or_insert(0);
            *n += 1;
            *n
        };
        f.metrics
            .fetches_in_flight_peak
            .fetch_max(of_broker as u64, Ordering::Relaxed);
        let answered = conn.request_at(version, &req).await;
        // The end of the fetch stage of every batch it carries (one instant per response).
        let received = std::time::Instant::now();
        f.metrics.fetches_in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(n) = crate::sync::lock(&f.in_flight).get_mut(&node) {
            *n = n.saturating_sub(1);
        }
        let resp: FetchResponse = match answered {
            Ok(r) => r,
            Err(e) => {
                failures += 1;
                session = Session::default();
                if f.src.note_error(&e) == ErrorClass::RefreshMetadata {
                    lose_leadership(&f, node, None);
                }
                warn!(broker = node, error = %e, "fetch failed; retrying");
                tokio::time::sleep(f.src.config().backoff.delay(failures)).await;
                continue;
            }
        };
        failures = 0;
        Metrics::stamp_now(&f.metrics.last_source_ok_ms);
        if resp.error_code != 0 {
            f.metrics.error(resp.error_code);
            debug!(broker = node, code = error_name(resp.error_code), "fetch session reset");
            session = Session::default();
            if classify(resp.error_code) == ErrorClass::Fatal {
                error!(broker = node, code = error_name(resp.error_code), "fetch refused");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            continue;
        }
        if sessions {
            if full {
                session = Session {
                    id: resp.session_id,
                    epoch: 1,
                    ..Session::default()
                };
            } else {
                session.epoch = if session.epoch >= i32::MAX - 1 {
                    1
                } else {
                    session.epoch + 1
                };
            }
            for (k, id, o) in &include {
                session.sent.insert(k.clone(), *o);
                session.ids.insert(k.clone(), *id);
            }
            for (k, _) in &forgotten {
                session.sent.remove(k);
                session.ids.remove(k);
            }
            if resp.session_id == 0 {
                // The broker declined a session (e.g. cache full): full fetches from now on.
                session = Session::default();
            }
        }
        let names: HashMap<Uuid, Arc<str>> = mine.iter().map(|(k, id, _)| (*id, k.0.clone())).collect();
        // Every batch of this response is a slice of one buffer: they share its
        // holding, which returns to the budget when the last of them is dropped.
        let record_bytes: usize = resp
            .responses
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
            .sum();
        held.shrink_to(record_bytes);
        let held = Arc::new(held);
        for t in resp.responses {
            let topic: Arc<str> = if by_id {
                match names.get(&t.topic_id) {
                    Some(n) => n.clone(),
                    None => continue,
                }
            } else {
                Arc::from(t.topic.0.as_str())
            };
            for p in t.partitions {
                let key = (topic.clone(), p.partition_index);
                let Some((_, fetch_offset)) = current.get(&key).copied() else {
                    continue;
                };
                process_partition(&f, node, &key, fetch_offset, p, &held, received).await;
            }
        }
        drop(held);
    }
    crate::sync::lock(&f.running).remove(&(node, lane));
    debug!(broker = node, lane, "fetcher stopped");
}

/// Marks partitions led by `node` (or one of them) as needing a leader lookup.
fn lose_leadership(f: &Fetchers, node: i32, only: Option<&Key>) {
    let mut parts = f.lock();
    for (k, p) in parts.iter_mut() {
        if p.leader == node && only.is_none_or(|o| o == k) {
            p.leader = -1;
        }
    }
    drop(parts);
    f.src.invalidate_metadata();
    f.refresh.notify_one();
}

/// The next request of a fetch session ([`fetch_request`]): the partitions
/// to (re)send and those to forget; without sessions (Fetch below v7) every
/// partition, every time.
fn build_request(
    settings: &FetchSettings,
    version: i16,
    s: &Session,
    full: bool,
    include: &[(Key, Uuid, i64)],
    forgotten: &[(Key, Uuid)],
    max_bytes: usize,
) -> kafka_protocol::messages::FetchRequest {
    let session = match (version >= 7, full) {
        (false, _) => SessionRequest::None,
        (true, true) => SessionRequest::Open,
        (true, false) => SessionRequest::Continue {
            id: s.id,
            epoch: s.epoch,
        },
    };
    let include: Vec<FetchAt> = include
        .iter()
        .map(|(k, id, offset)| FetchAt {
            topic: &k.0,
            topic_id: *id,
            partition: k.1,
            offset: *offset,
        })
        .collect();
    let forgotten: Vec<(&str, Uuid, i32)> = forgotten.iter().map(|(k, id)| (&*k.0, *id, k.1)).collect();
    fetch_request(
        FetchLimits {
            max_wait_ms: settings.max_wait.as_millis().min(i32::MAX as u128) as i32,
            max_bytes: max_bytes.min(i32::MAX as usize) as i32,
            partition_max_bytes: settings.partition_max_bytes.min(i32::MAX as usize) as i32,
        },
        session,
        &include,
        &forgotten,
    )
}

async fn process_partition(
    f: &Arc<Fetchers>,
    node: i32,
    key: &Key,
    fetch_offset: i64,
    p: kafka_protocol::messages::fetch_response::PartitionData,
    held: &Arc<super::budget::Held>,
    received: std::time::Instant,
) {
    if p.error_code != 0 {
        f.metrics.error(p.error_code);
        match p.error_code {
            code::OFFSET_OUT_OF_RANGE => f.reset_out_of_range(key, fetch_offset).await,
            code => match classify(code) {
                ErrorClass::RefreshMetadata | ErrorClass::Retriable => {
                    debug!(topic = %key.0, partition = key.1, code = error_name(code), "fetch partition error; refreshing leader");
                    lose_leadership(f, node, Some(key));
                }
                ErrorClass::Fatal => f.stop_partition(
                    key,
                    format!(
                        "source refused to serve {} partition {} at offset {fetch_offset}: {} ({code})",
                        key.0,
                        key.1,
                        error_name(code)
                    ),
                ),
            },
        }
        return;
    }
    let end = if p.last_stable_offset >= 0 {
        p.last_stable_offset
    } else {
        p.high_watermark
    };
    let records = p.records.unwrap_or_default();
    let fetched_bytes = records.len() as u64;
    let mut items = Vec::new();
    let mut next = fetch_offset;
    // Why the records from `next` on must be fetched again (corrupted in transit).
    let mut refetch: Option<Refetch> = None;
    // Why the partition stops at `next` (nothing from there on is handed over).
    let mut stop: Option<String> = None;
    if !records.is_empty() {
        // A blob the splitter refuses (a corrupted batch length, magic or offsets) is
        // handled like a CRC failure: the whole batches before the refused one are
        // kept, and the rest is fetched again from the next offset not handed over
        // (the refused batch's own header cannot be trusted).
        let (batches, malformed) = match split_batches(&records) {
            Ok((b, _truncated_tail)) => (b, None),
            Err(e) => {
                let before = e
                    .position()
                    .and_then(|at| split_batches(&records.slice(..at)).ok())
                    .map_or_else(Vec::new, |(b, _)| b);
                (before, Some(e))
            }
        };
        let aborted = p
            .aborted_transactions
            .unwrap_or_default()
            .iter()
            .map(|a| (a.producer_id.0, a.first_offset))
            .collect();
        let mut filter = BatchFilter::new(aborted);
        for b in batches {
            if b.last_offset() < next {
                continue; // the first batch can start before the fetch offset
            }
            // The CRC is verified before the batch is classified (and covers the fast
            // path's one pass): a corrupted header could otherwise make a data batch
            // look like a marker or an empty batch, which would be dropped. A batch
            // failing its CRC (v2, or a legacy wrapper's) ends this partition's
            // batches: the next fetch asks for it again.
            let Some(mut disposition) = filter.classify_verified(&b) else {
                refetch = Some(Refetch::Crc);
                break;
            };
            let straddles = b.base_offset() < next;
            if straddles && matches!(disposition, Disposition::Forward | Disposition::Reencode) {
                // The batch straddles the fetch position (the log start moved into it,
                // or start_from = latest landed inside it): re-encode without the
                // records before the position, which the source no longer serves.
                disposition = Disposition::Reencode;
            }
            let mut origin: Option<Arc<str>> = None;
            if let (Some(pf), true) = (
                &f.provenance,
                b.magic() == 2 && matches!(disposition, Disposition::Forward | Disposition::Reencode),
            ) {
                match pf.decide(b.producer_id()).await {
                    Ok(Decision::Forward(None)) => {}
                    Ok(Decision::Forward(Some(o))) => {
                        // Records of another origin (forward_from) go under a
                        // producer id recorded with that origin.
                        if let Err(e) = f.producer.ensure_origin(&o).await {
                            stop = Some(format!(
                                "cannot set up a producer id for records of origin {o} ({} partition {} at offset {}): {e}",
                                key.0,
                                key.1,
                                b.base_offset()
                            ));
                            break;
                        }
                        origin = Some(o);
                    }
                    Ok(Decision::Skip) => {
                        // Replicated into the source by strait: not this flow's to copy.
                        Metrics::add(&f.metrics.batches_replicated, 1);
                        items.push(Item::Skip {
                            src_last: b.last_offset(),
                        });
                        next = b.last_offset() + 1;
                        continue;
                    }
                    Err(e) => {
                        stop = Some(format!(
                            "cannot tell whether the batch of {} partition {} at offset {} was replicated into the source: {e}",
                            key.0,
                            key.1,
                            b.base_offset()
                        ));
                        break;
                    }
                }
            }
            match disposition {
                Disposition::Forward => {
                    Metrics::add(&f.metrics.batches_fast, 1);
                    items.push(Item::Batch {
                        src_base: b.base_offset(),
                        src_last: b.last_offset(),
                        deltas: None,
                        held: held.clone(),
                        batch: b.clone(),
                        origin: origin.clone(),
                        fetched: received,
                    });
                }
                Disposition::Reencode | Disposition::UpConvert => {
                    // The slow path: re-encode (compaction gaps, straddling batch) or
                    // up-convert (magic 0/1), keeping only records at or after `next`.
                    // Decompression stops at max_decompressed_batch_bytes.
                    let max_plain = f.settings.max_decompressed_batch_bytes;
                    let converted = if disposition == Disposition::UpConvert {
                        up_convert(&b, max_plain).and_then(|r| {
                            if r.batch.base_offset() >= next {
                                Ok(Some(r))
                            } else {
                                reencode_from(&r.batch, next, max_plain)
                            }
                        })
                    } else {
                        reencode_from(&b, next, max_plain)
                    };
                    match converted {
                        Ok(Some(r)) => {
                            Metrics::add(&f.metrics.batches_slow, 1);
                            items.push(Item::Batch {
                                src_base: r.batch.base_offset(),
                                src_last: b.last_offset(),
                                deltas: Some(r.source_deltas),
                                held: held.clone(),
                                batch: r.batch,
                                origin: origin.clone(),
                                fetched: received,
                            });
                        }
                        Ok(None) => items.push(Item::Skip {
                            src_last: b.last_offset(),
                        }),
                        Err(BatchError::CrcMismatch { .. }) => {
                            refetch = Some(Refetch::Crc);
                            break;
                        }
                        Err(e) => {
                            // Nothing of this batch is handed over; the batches before it are.
                            let why = if disposition == Disposition::UpConvert {
                                format!("magic {} must be up-converted", b.magic())
                            } else if straddles {
                                format!("it starts before the fetch position {next}")
                            } else {
                                "compaction left offset gaps".to_string()
                            };
                            stop = Some(format!(
                                "cannot re-encode the batch of {} partition {} at offset {} ({why}): {e}",
                                key.0,
                                key.1,
                                b.base_offset()
                            ));
                            break;
                        }
                    }
                }
                Disposition::Skip(reason) => {
                    let c = match reason {
                        SkipReason::Control => &f.metrics.batches_control,
                        SkipReason::Aborted => &f.metrics.batches_aborted,
                        SkipReason::Empty => &f.metrics.batches_empty,
                    };
                    Metrics::add(c, 1);
                    items.push(Item::Skip {
                        src_last: b.last_offset(),
                    });
                }
            }
            next = b.last_offset() + 1;
        }
        if refetch.is_none() && stop.is_none() {
            refetch = malformed.map(Refetch::Malformed);
        }
    }
    // Apply only if nobody moved this partition meanwhile (leader change, reset).
    let mut parts = f.lock();
    let Some(sp) = parts.get_mut(key) else { return };
    sp.high_watermark = end;
    if sp.next_offset != fetch_offset || sp.leader != node || sp.stopped.is_some() {
        return;
    }
    sp.next_offset = next;
    sp.bytes += fetched_bytes;
    let dst = sp.route.dst_topic.clone();
    // Enqueue under the lock so two fetchers can never hand over the same offsets.
    f.producer.enqueue(&dst, key.1, items);
    if next > fetch_offset {
        debug!(topic = %key.0, partition = key.1, from = fetch_offset, to = next, "fetched");
    }
    match refetch {
        // Corruption in transit is rare and random: a batch that fails again and
        // again is broken at the source (or on the way, for good).
        Some(why) => {
            let failures = match sp.refetching {
                Some((at, n)) if at == next => n + 1,
                _ => 1,
            };
            sp.refetching = Some((next, failures));
            if failures > MAX_REFETCHES {
                stop = Some(format!(
                    "{} partition {} at offset {next}: fetched {failures} times in a row, corrupted every time; last: {why}",
                    key.0, key.1
                ));
            } else {
                let counter = match why {
                    Refetch::Crc => &f.metrics.crc_refetches,
                    Refetch::Malformed(_) => &f.metrics.malformed_refetches,
                };
                Metrics::add(counter, 1);
                warn!(topic = %key.0, partition = key.1, offset = next, failures, "{why}; fetching it again");
            }
        }
        None if next > fetch_offset => sp.refetching = None,
        None => {}
    }
    if let Some(reason) = stop {
        error!(topic = %key.0, partition = key.1, "{reason}; replication of this partition stopped");
        sp.stopped = Some(reason);
    }
}

/// Refetches of one offset in a row after corrupted records (a CRC failure, a
/// malformed batch length, magic or offsets); the next failure stops the partition.
const MAX_REFETCHES: u32 = 10;

/// Why fetched records are fetched again.
#[derive(Debug)]
enum Refetch {
    /// A batch fails its CRC.
    Crc,
    /// The splitter refused the records (bad batch length, magic or offsets).
    Malformed(BatchError),
}

impl std::fmt::Display for Refetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refetch::Crc => write!(f, "fetched batch fails its CRC"),
            Refetch::Malformed(e) => write!(f, "fetched records are malformed: {e}"),
        }
    }
}
