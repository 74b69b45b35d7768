//! One fetched partition's response: its batches filtered, checked and
//! handed to the producer in order, or fetched again (a CRC failure, malformed
//! records), up to [`MAX_REFETCHES`] times in a row.

use std::sync::Arc;

use tracing::{debug, error, warn};

use super::{lose_leadership, Fetchers, Key};
use crate::batch::{reencode_from, split_batches, up_convert, BatchError, BatchFilter, Disposition, SkipReason};
use crate::client::{classify, code, error_name, ErrorClass};
use crate::replicate::metrics::Metrics;
use crate::replicate::producer::Item;
use crate::replicate::provenance::Decision;

pub(super) async fn process_partition(
    f: &Arc<Fetchers>,
    node: i32,
    key: &Key,
    fetch_offset: i64,
    p: kafka_protocol::messages::fetch_response::PartitionData,
    held: &Arc<crate::replicate::budget::Held>,
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
