//! Counters of the replication, shared by every task (atomics, no locks).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Replication counters. All values are totals since start.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Records acknowledged by the destination.
    pub records: AtomicU64,
    /// Record-batch bytes acknowledged by the destination.
    pub bytes: AtomicU64,
    /// Batches forwarded raw, header patched (the fast path).
    pub batches_fast: AtomicU64,
    /// Batches re-encoded because compaction left offset gaps (the slow path).
    pub batches_slow: AtomicU64,
    /// Transaction marker batches dropped.
    pub batches_control: AtomicU64,
    /// Batches of aborted transactions dropped.
    pub batches_aborted: AtomicU64,
    /// Empty batches dropped.
    pub batches_empty: AtomicU64,
    /// Source offsets skipped because retention deleted them before strait read them.
    pub offsets_skipped: AtomicU64,
    /// Fetched batches whose CRC failed and were fetched again.
    pub crc_refetches: AtomicU64,
    /// Produce retries (per batch).
    pub produce_retries: AtomicU64,
    /// Checkpoints committed.
    pub checkpoints: AtomicU64,
    errors: Mutex<BTreeMap<i16, u64>>,
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Counts one Kafka error code seen in a response.
    pub fn error(&self, code: i16) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(code)
            .or_default() += 1;
    }

    /// Error counts by Kafka error code.
    pub fn errors(&self) -> BTreeMap<i16, u64> {
        self.errors.lock().unwrap_or_else(|p| p.into_inner()).clone()
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
