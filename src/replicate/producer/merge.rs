//! Coalescing in the queue: a run of small, never-sent batches of one
//! partition becomes one batch before it is first sent ([`crate::batch::coalesce`]
//! does the merging). It happens only when batches queue up, so it adds no latency.
//!
//! Two kinds of run merge. Tiny batches (below `coalesce_below_bytes`)
//! whenever two or more are queued. Larger ones (below [`deep_below`]) only
//! when the partition queues more batches than its in-flight window lets go
//! now: Produce carries one batch per partition and the idempotence window
//! allows 5 in flight, so a source written in many small batches (3 KB each
//! at 10 MB/s with `linger.ms=1`) is replicated at 5 batches per produce
//! round trip. That rate is what queues them; merging the queue keeps the
//! window's bytes up with the load instead of the tail latency growing (a
//! far destination: the window's bytes per round trip are the throughput).

use tracing::warn;

use super::queue::{Entry, Part, State};
use crate::batch::coalesce::{can_coalesce, coalesce};
use crate::batch::{patch_for_produce, BatchError, ProducerStamp, RawBatch};
use crate::config::ProduceSettings;

/// Largest batch built by coalescing.
pub(super) const COALESCE_MAX_BYTES: usize = 512 * 1024;
/// Near destination: batches below this merge when they queue past the
/// window. Larger ones already fill a request well; merging them would only
/// cost CPU (a bulk catch-up of 80 KB batches stays on the raw path).
const DEEP_BELOW_NEAR: usize = 64 * 1024;
/// Far destination (a round trip of [`super::FAR_RTT`] or more): any two
/// batches that fit in one merged batch, since the window's bytes per round
/// trip bound the throughput.
const DEEP_BELOW_FAR: usize = COALESCE_MAX_BYTES / 2;

/// The size below which a partition's batches merge (`queued` batches
/// waiting, `free` of its window's slots open; 0: only tiny ones merge). To a
/// near broker only when they queue past the window; to a `far` one whenever
/// two are queued, since there every slot's bytes count (a window of raw
/// 220 KB batches moved 36 MB/s at 150 ms).
pub(super) fn deep_below(queued: usize, free: usize, far: bool) -> usize {
    match far {
        true if queued >= 2 => DEEP_BELOW_FAR,
        false if queued > free => DEEP_BELOW_NEAR,
        _ => 0,
    }
}

/// Merges the run of small, never-sent batches starting at entry `i` into one
/// entry of at most `cap` bytes (see [`crate::batch::coalesce`]): batches below
/// `coalesce_below_bytes`, or below `deep` when that is larger ([`deep_below`];
/// 0: not deep). Coalescing off (`coalesce_below_bytes = 0`) merges nothing.
/// Returns how many batches were merged.
/// A run whose records would decompress past the cap is not merged: its
/// batches go raw, and the batch where it passed the cap is never tried again.
pub(super) fn coalesce_run(
    part: &mut Part,
    i: usize,
    s: &ProduceSettings,
    stamps: &[ProducerStamp],
    next_id: &mut u64,
    deep: usize,
    cap: usize,
) -> Option<usize> {
    if s.coalesce_below_bytes == 0 {
        return None;
    }
    let below = s.coalesce_below_bytes.max(deep);
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
    // One batch has one producer id: only batches of one origin merge.
    let origin = part.entries[i].origin;
    let codec = first.codec();
    let mut raws = vec![first];
    let mut end = i; // last entry merged
    let mut size = raws[0].len();
    for (j, e) in part.entries.iter().enumerate().skip(i + 1) {
        if e.batch.is_none() && e.state == State::Acked {
            continue; // a skipped marker between batches: covered by the merged range
        }
        match small(e) {
            Some(raw) if raw.codec() == codec && e.origin == origin && size + raw.len() <= cap => {
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
    // The merged copy is memory of its own until acknowledged (the fetched
    // buffers it came from live on for their other batches), so it is held in
    // the budget. A run of larger batches merges only if that fits now; tiny
    // ones always merge (one-record batches raw would cost a round trip each).
    let share = part.entries[i].held.first().map(|h| h.share().clone());
    let deep_run = raws.iter().any(|r| r.len() >= s.coalesce_below_bytes);
    let room = match &share {
        Some(share) if deep_run => match share.try_hold(size) {
            Some(h) => Some(h),
            None => return None,
        },
        _ => None,
    };
    let merged = match coalesce(&raws, s.max_decompressed_batch_bytes) {
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
    let (seq, src_base, fetched) = (head.seq, head.src_base, head.fetched);
    let src_last = part.entries[end].src_last;
    let mut held = Vec::new();
    for e in part.entries.drain(i..=end) {
        held.extend(e.held);
    }
    match (room, share) {
        (Some(room), _) => held.push(std::sync::Arc::new(room)),
        (None, Some(share)) => held.push(std::sync::Arc::new(share.hold_now(merged.batch.len()))),
        (None, None) => {}
    }
    *next_id += 1;
    let patched = patch_for_produce(&merged.batch, stamps[origin], seq);
    // The first batch's fetch time: the merged batch is charged its first timestamp too.
    let fetched = fetched.unwrap_or_else(std::time::Instant::now);
    let mut e = Entry::batch(*next_id, src_base, src_last, seq, merged.batch, patched, fetched);
    e.origin = origin;
    e.deltas = Some(merged.source_deltas);
    e.held = held;
    part.entries.insert(i, e);
    Some(raws.len())
}
