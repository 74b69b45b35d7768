//! Coalescing in the queue: a run of small, never-sent batches of one
//! partition becomes one batch before it is first sent ([`crate::batch::coalesce`]
//! does the merging). It happens only when batches queue up, so it adds no latency.

use tracing::warn;

use super::queue::{Entry, Part, State};
use crate::batch::coalesce::{can_coalesce, coalesce};
use crate::batch::{patch_for_produce, BatchError, ProducerStamp, RawBatch};
use crate::config::ProduceSettings;

/// Largest batch built by coalescing.
const COALESCE_MAX_BYTES: usize = 512 * 1024;

/// Merges the run of small, never-sent batches starting at entry `i` into one
/// entry (see [`crate::batch::coalesce`]). Returns how many batches were merged.
/// A run whose records would decompress past the cap is not merged: its
/// batches go raw, and the batch where it passed the cap is never tried again.
pub(super) fn coalesce_run(
    part: &mut Part,
    i: usize,
    s: &ProduceSettings,
    stamps: &[ProducerStamp],
    next_id: &mut u64,
) -> Option<usize> {
    let below = s.coalesce_below_bytes;
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
    // One batch has one producer id: only batches of one origin merge.
    let origin = part.entries[i].origin;
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
            Some(raw) if raw.codec() == codec && e.origin == origin => {
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
