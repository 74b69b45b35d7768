//! Counters of the replication, shared by every task (atomics, no locks).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Replication counters. All values are totals since start.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Fetch requests waiting for their response now, over every source broker.
    pub fetches_in_flight: AtomicU64,
    /// The most fetch requests ever in flight at once to one source broker.
    pub fetches_in_flight_peak: AtomicU64,
    /// Records acknowledged by the destination.
    pub records: AtomicU64,
    /// Record-batch bytes acknowledged by the destination.
    pub bytes: AtomicU64,
    /// Batches forwarded raw, header patched (the fast path).
    pub batches_fast: AtomicU64,
    /// Batches re-encoded because compaction left offset gaps (the slow path).
    pub batches_slow: AtomicU64,
    /// Small source batches merged into larger ones (coalescing).
    pub batches_coalesced: AtomicU64,
    /// Transaction marker batches dropped.
    pub batches_control: AtomicU64,
    /// Batches of aborted transactions dropped.
    pub batches_aborted: AtomicU64,
    /// Empty batches dropped.
    pub batches_empty: AtomicU64,
    /// Batches skipped because strait replicated them into the source
    /// (provenance: they are not this flow's to copy).
    pub batches_replicated: AtomicU64,
    /// Source offsets skipped because retention deleted them before strait read them.
    pub offsets_skipped: AtomicU64,
    /// Topics started over because their source or destination topic was deleted and created again.
    pub topic_resets: AtomicU64,
    /// 1 once this flow failed over by itself (`[failover] auto = true`).
    pub failed_over: AtomicU64,
    /// Fetched batches whose CRC failed and were fetched again.
    pub crc_refetches: AtomicU64,
    /// Fetched records the splitter refused (a corrupted batch length, magic or
    /// offsets) and that were fetched again.
    pub malformed_refetches: AtomicU64,
    /// Produce retries (per batch).
    pub produce_retries: AtomicU64,
    /// Checkpoints committed.
    pub checkpoints: AtomicU64,
    /// Group offsets (partitions) written on the destination.
    pub group_offsets_synced: AtomicU64,
    /// When the last checkpoint was committed, ms since the Unix epoch (0: never).
    pub last_checkpoint_ms: AtomicU64,
    /// When the source last answered (a fetch response or a metadata refresh),
    /// ms since the Unix epoch (0: never).
    pub last_source_ok_ms: AtomicU64,
    /// When the destination last acknowledged a batch of the heartbeat topic,
    /// ms since the Unix epoch (0: never).
    pub last_heartbeat_ack_ms: AtomicU64,
    /// The last acknowledged heartbeat's latency: its record timestamp (write
    /// time on the source) to the destination's acknowledgement, µs.
    pub heartbeat_latency_us: AtomicU64,
    /// The source topic whose acknowledgements are heartbeats (none: off).
    heartbeat_topic: Option<Box<str>>,
    errors: Mutex<BTreeMap<i16, u64>>,
    latency: Mutex<Latencies>,
}

/// The replication latency and its stages, behind one lock (taken once per
/// acknowledged batch).
#[derive(Debug, Default)]
struct Latencies {
    total: Histogram,
    stages: [Histogram; 3],
}

/// A stage of a record's way from source to destination; together they make
/// up the replication latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Source record timestamp → the Fetch response that carried it was received.
    Fetch,
    /// Fetch response received → the Produce request carrying it was sent (queueing,
    /// waiting for an in-flight slot, resends after errors).
    Queue,
    /// Produce request sent (the last time) → the destination acknowledged it.
    Produce,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 3] = [Stage::Fetch, Stage::Queue, Stage::Produce];

    /// Its name, the `stage` label of `strait_replication_latency_stage_seconds`.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Fetch => "fetch",
            Stage::Queue => "queue",
            Stage::Produce => "produce",
        }
    }
}

/// When a batch was fetched (its Fetch response received) and when its
/// Produce request was last sent: one pair per batch, not per record.
#[derive(Debug, Clone, Copy)]
pub struct BatchTimes {
    /// The Fetch response carrying it was received.
    pub fetched: Instant,
    /// The Produce request carrying it was (last) sent.
    pub sent: Instant,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Log-bucketed histogram of microseconds (16 buckets per power of two, ~4 % resolution).
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    /// Sum of all samples, µs.
    sum: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; 64 * 16],
            total: 0,
            sum: 0,
        }
    }
}

impl Histogram {
    fn bucket(us: u64) -> usize {
        let v = us.max(1) as f64;
        ((v.log2() * 16.0) as usize).min(64 * 16 - 1)
    }

    /// Adds `n` samples of `us` microseconds.
    pub fn record(&mut self, us: u64, n: u64) {
        self.counts[Self::bucket(us)] += n;
        self.total += n;
        self.sum = self.sum.saturating_add(us.saturating_mul(n));
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Sum of all samples, µs.
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// Samples in buckets whose upper edge is at most `us` (a Prometheus
    /// histogram's cumulative `le` count, within the ~4 % bucket resolution).
    pub fn count_at_most(&self, us: u64) -> u64 {
        let last = Self::bucket(us);
        // A bucket counts when its whole range lies at or below `us`.
        let full = if 2f64.powf((last + 1) as f64 / 16.0) as u64 <= us {
            last + 1
        } else {
            last
        };
        self.counts[..full.min(self.counts.len())].iter().sum()
    }

    /// The samples recorded since `earlier`, a copy of this histogram taken
    /// before (a window: a benchmark leaves its warm-up out this way).
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        Histogram {
            counts: self
                .counts
                .iter()
                .zip(&earlier.counts)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
            total: self.total.saturating_sub(earlier.total),
            sum: self.sum.saturating_sub(earlier.sum),
        }
    }

    /// The value (µs) at quantile `q` (0..=1), upper edge of its bucket; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let target = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return 2f64.powf((i + 1) as f64 / 16.0) as u64;
            }
        }
        u64::MAX
    }
}

/// Splits a total latency of `total_us` acknowledged at `acked` into the
/// fetch, queue and produce stages (µs); the fetch stage takes what is left.
fn stage_split(total_us: u64, t: BatchTimes, acked: Instant) -> [u64; 3] {
    let us = |d: std::time::Duration| d.as_micros() as u64;
    let produce = us(acked.saturating_duration_since(t.sent));
    let queue = us(t.sent.saturating_duration_since(t.fetched));
    [total_us.saturating_sub(queue + produce), queue, produce]
}

impl Metrics {
    /// Counters of a flow whose heartbeats are written to source topic
    /// `heartbeat_topic` (none: heartbeats off).
    pub fn with_heartbeats(heartbeat_topic: Option<&str>) -> Self {
        Self {
            heartbeat_topic: heartbeat_topic.map(Box::from),
            ..Self::default()
        }
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Sets a timestamp gauge to now (ms since the Unix epoch).
    pub fn stamp_now(gauge: &AtomicU64) {
        gauge.store(now_ms(), Ordering::Relaxed);
    }

    /// Milliseconds since a timestamp gauge was set (`None`: never set).
    pub fn age_ms(gauge: &AtomicU64) -> Option<u64> {
        match gauge.load(Ordering::Relaxed) {
            0 => None,
            t => Some(now_ms().saturating_sub(t)),
        }
    }

    /// Counts one Kafka error code seen in a response.
    pub fn error(&self, code: i16) {
        *crate::sync::lock(&self.errors).entry(code).or_default() += 1;
    }

    /// Records the replication latency of `records` records: from their source
    /// timestamp (ms since the epoch) to now, the destination's acknowledgement;
    /// with `times`, also its stages (the fetch stage is what the other two
    /// leave of the total: the source timestamp is wall-clock time, the
    /// instants monotonic). A negative timestamp (none set) records nothing.
    pub fn latency(&self, source_timestamp_ms: i64, records: u64, times: Option<BatchTimes>) {
        if source_timestamp_ms < 0 {
            return;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        let us = (now - source_timestamp_ms.saturating_mul(1000)).max(0) as u64;
        let stages = times.map(|t| stage_split(us, t, Instant::now()));
        let mut l = crate::sync::lock(&self.latency);
        l.total.record(us, records);
        if let Some(stages) = stages {
            for (h, v) in l.stages.iter_mut().zip(stages) {
                h.record(v, records);
            }
        }
    }

    /// Records an acknowledged batch of source topic `src_topic` whose newest
    /// record has timestamp `max_timestamp_ms`: when it is the heartbeat
    /// topic, the heartbeat gauges move. One string compare per batch.
    pub fn acked_batch(&self, src_topic: &str, max_timestamp_ms: i64) {
        if self.heartbeat_topic.as_deref() != Some(src_topic) {
            return;
        }
        let now = now_ms();
        let latency_ms = (now as i64 - max_timestamp_ms).max(0) as u64;
        self.heartbeat_latency_us.store(latency_ms * 1000, Ordering::Relaxed);
        self.last_heartbeat_ack_ms.store(now, Ordering::Relaxed);
    }

    /// The last acknowledged heartbeat's latency, seconds (none: no heartbeat yet).
    pub fn heartbeat_latency_seconds(&self) -> Option<f64> {
        (Self::get(&self.last_heartbeat_ack_ms) != 0).then(|| Self::get(&self.heartbeat_latency_us) as f64 / 1e6)
    }

    /// Seconds since the destination last acknowledged a heartbeat (none: never).
    pub fn heartbeat_age_seconds(&self) -> Option<f64> {
        Self::age_ms(&self.last_heartbeat_ack_ms).map(|ms| ms as f64 / 1000.0)
    }

    /// A copy of the replication latency histogram.
    pub fn latency_histogram(&self) -> Histogram {
        crate::sync::lock(&self.latency).total.clone()
    }

    /// A copy of one stage's latency histogram.
    pub fn stage_histogram(&self, stage: Stage) -> Histogram {
        crate::sync::lock(&self.latency).stages[stage as usize].clone()
    }

    /// Error counts by Kafka error code.
    pub fn errors(&self) -> BTreeMap<i16, u64> {
        crate::sync::lock(&self.errors).clone()
    }

    /// Share of forwarded batches that took the slow path, in percent.
    pub fn slow_path_percent(&self) -> f64 {
        let slow = Self::get(&self.batches_slow) as f64;
        let total = slow + Self::get(&self.batches_fast) as f64;
        if total == 0.0 {
            0.0
        } else {
            100.0 * slow / total
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_heartbeat_topic_batches_move_the_heartbeat_gauges() {
        let m = Metrics::with_heartbeats(Some("heartbeats"));
        assert_eq!((m.heartbeat_age_seconds(), m.heartbeat_latency_seconds()), (None, None));
        m.acked_batch("orders", now_ms() as i64 - 5_000);
        assert_eq!(m.heartbeat_latency_seconds(), None);
        m.acked_batch("heartbeats", now_ms() as i64 - 300);
        let l = m.heartbeat_latency_seconds().unwrap();
        assert!((0.3..5.0).contains(&l), "{l}");
        assert!(m.heartbeat_age_seconds().unwrap() < 5.0);
        let off = Metrics::default();
        off.acked_batch("heartbeats", 0);
        assert_eq!(off.heartbeat_age_seconds(), None);
    }

    #[test]
    fn histogram_quantiles_are_within_five_percent() {
        let mut h = Histogram::default();
        for us in 1..=10_000u64 {
            h.record(us, 1);
        }
        for (q, want) in [(0.5, 5_000.0), (0.99, 9_900.0), (0.999, 9_990.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.05, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.count(), 10_000);
        assert_eq!(h.sum(), 10_000 * 10_001 / 2);
        for (le, want) in [(1_000u64, 1_000.0), (5_000, 5_000.0), (20_000, 10_000.0)] {
            let got = h.count_at_most(le) as f64;
            assert!((got - want).abs() / want < 0.05, "le {le}: {got} vs {want}");
        }
        assert!(h.count_at_most(1_000) <= h.count_at_most(1_001));
        assert_eq!(Histogram::default().quantile(0.5), 0);
    }

    #[test]
    fn since_leaves_earlier_samples_out() {
        let mut h = Histogram::default();
        h.record(100_000, 50); // a warm-up at 100 ms
        let warm = h.clone();
        h.record(1_000, 10);
        let w = h.since(&warm);
        assert_eq!((w.count(), w.sum()), (10, 10_000));
        let max = w.quantile(1.0) as f64;
        assert!((max - 1_000.0).abs() / 1_000.0 < 0.05, "{max}");
    }

    #[test]
    fn stages_add_up_to_the_total() {
        let fetched = Instant::now();
        let sent = fetched + std::time::Duration::from_millis(3);
        let acked = sent + std::time::Duration::from_millis(7);
        assert_eq!(
            stage_split(25_000, BatchTimes { fetched, sent }, acked),
            [15_000, 3_000, 7_000]
        );
        // Clocks disagree (source timestamp in the future): nothing is negative.
        assert_eq!(
            stage_split(1_000, BatchTimes { fetched, sent }, acked),
            [0, 3_000, 7_000]
        );
        let m = Metrics::default();
        let ts = now_ms() as i64 - 20;
        m.latency(ts, 4, Some(BatchTimes { fetched, sent }));
        m.latency(-1, 4, None); // no timestamp: not counted
        assert_eq!(m.latency_histogram().count(), 4);
        for s in Stage::ALL {
            assert_eq!(m.stage_histogram(s).count(), 4, "{}", s.name());
        }
    }
}
