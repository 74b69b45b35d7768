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
//! like a CRC failure; after `MAX_REFETCHES` ([`response`]) failed fetches of one offset in a
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
use super::producer::{Producer, Route};
use super::provenance::Filter;
use crate::client::admin::{EARLIEST, LATEST};
use crate::client::fetch::{fetch_request, FetchAt, FetchLimits, SessionRequest};
use crate::client::{classify, error_name, Client, ErrorClass};
use crate::config::{FetchSettings, StartFrom};

mod lanes;
mod response;

use lanes::{dealt, rtt_watch, Lanes};
pub use lanes::{lanes_for, MAX_LANES};
pub(super) use lanes::{PROBE_EVERY, PROBE_LANE, RTT_PER_LANE, WAN_RATE};
use response::process_partition;

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
    /// Fetch loops whose last response carried no records (caught up, long
    /// polling): they ask for little, so the busy ones get the budget.
    idle: Mutex<HashSet<(i32, usize)>>,
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
            idle: Mutex::new(HashSet::new()),
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
    pub fn add(self: &Arc<Self>, route: Route, topic_id: Uuid, offset: i64) {
        let key = (route.src_topic.clone(), route.partition);
        // The leader the topic listing just read, if the cache has it: the
        // first fetch goes out without another metadata round trip (150 ms
        // across a WAN). A stale one answers NOT_LEADER and is looked up again.
        let leader = self.src.cached_leader(&route.src_topic, route.partition, topic_id);
        self.lock().entry(key).or_insert(SrcPart {
            route,
            topic_id,
            next_offset: offset,
            leader: leader.unwrap_or(-1),
            high_watermark: -1,
            stopped: None,
            refetching: None,
            held: false,
            bytes: 0,
            since: std::time::Instant::now(),
        });
        match leader {
            Some(node) => self.start_lanes(node),
            None => self.refresh.notify_one(),
        }
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

    /// The most lane `lane` of `node` asks for: an idle lane (its last
    /// response was empty) one partition's worth, at most an equal part of the
    /// budget; a busy lane an equal part of what the idle ones leave, so the
    /// partitions still catching up get the window (at the end of a catch-up
    /// the last partitions ran at a seventh of the rate while seven caught-up
    /// lanes held reservations for their long polls).
    fn lane_share(&self, node: i32, lane: usize) -> usize {
        let limit = self.budget.budget().limit();
        let loops = crate::sync::lock(&self.running).len();
        let idle = crate::sync::lock(&self.idle);
        lanes::share(
            limit,
            loops,
            idle.len(),
            idle.contains(&(node, lane)),
            self.settings.partition_max_bytes,
        )
    }

    fn set_idle(&self, node: i32, lane: usize, idle: bool) {
        let mut set = crate::sync::lock(&self.idle);
        if idle {
            set.insert((node, lane));
        } else {
            set.remove(&(node, lane));
        }
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

/// A partition a lane may fetch now: its topic id, fetch offset and destination topic.
type Fetchable = (Uuid, i64, Arc<str>);

/// Fetch loop of one lane (connection) of one source broker: the broker's
/// partitions [`dealt`] to this lane, in one fetch session. Ends when
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
        // The broker's partitions are dealt to its lanes (stopped and held
        // ones keep their turn, so the others do not move), then this lane's
        // fetchable ones taken.
        let of_broker: Vec<(Key, Option<Fetchable>)> = f
            .lock()
            .iter()
            .filter(|(_, p)| p.leader == node)
            .map(|(k, p)| {
                let fetchable = p.stopped.is_none() && !p.held;
                let this = fetchable.then(|| (p.topic_id, p.next_offset, p.route.dst_topic.clone()));
                (k.clone(), this)
            })
            .collect();
        let candidates: Vec<(Key, Uuid, i64, Arc<str>)> = dealt(of_broker, lanes, lane)
            .into_iter()
            .filter_map(|(k, this)| this.map(|(id, o, dst)| (k, id, o, dst)))
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
        // partition's worth), at most an equal part of the budget for each
        // fetch loop running (every lane of every broker), so the loops have
        // their fetches in flight together: a long poll waiting for data never
        // holds what another broker's fetch needs (one that took all that was
        // free starved a broker's partitions for 20 s on a busy machine).
        let most = f.settings.max_bytes.min(f.lane_share(node, lane));
        let mut held = f
            .budget
            .reserve_up_to(f.settings.partition_max_bytes.min(most), most)
            .await;
        let max_bytes = held.bytes();
        // Across a long round trip (several lanes) a lane holding few
        // partitions asks for its whole share from them: one 4 MiB partition
        // per lane left half of a 150 ms link's window unused.
        let partition_max = if lanes > 1 {
            f.settings.partition_max_bytes.max(max_bytes / mine.len())
        } else {
            f.settings.partition_max_bytes
        };
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
        let req = build_request(
            &f.settings,
            version,
            &session,
            full,
            &include,
            &forgotten,
            (max_bytes, partition_max),
        );
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
        f.set_idle(node, lane, record_bytes == 0);
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
    f.set_idle(node, lane, false);
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
    (max_bytes, partition_max_bytes): (usize, usize),
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
            partition_max_bytes: partition_max_bytes.min(i32::MAX as usize) as i32,
        },
        session,
        &include,
        &forgotten,
    )
}
