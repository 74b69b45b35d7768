//! The source→destination offset map, persisted in the destination cluster.
//!
//! For every forwarded batch strait learns, from the Produce response, where it
//! landed: source offsets `src_base..=src_last` → destination offsets
//! `dst_base..dst_base+dst_count`. Consecutive batches that continue each other
//! on both sides merge into one run, so a topic without transactions or
//! compaction needs one run per checkpoint interval.
//!
//! ## Format (topic `__strait.{name}.offsets`, one partition, `cleanup.policy=delete`)
//!
//! One record per destination partition per checkpoint.
//! - key: `"{destination topic}:{partition}"` (UTF-8; Kafka topic names cannot contain `:`)
//! - value: `u8 version = 1`, `varint source-topic length`, source topic bytes,
//!   `varint run count`, then per run: `varlong src_base`, `varlong src_last`,
//!   `varlong dst_base`, `varint dst_count`, `varint delta count` (0 for a
//!   linear run, where source offset `s` maps to `dst_base + (s - src_base)`),
//!   then that many `varint` source offset deltas, one per destination record
//!   (for re-encoded compacted batches: record `i` came from `src_base + delta[i]`).
//!
//! A record with no runs is a reset: the source or destination topic was
//! deleted and created again, so the runs before it (for the same key) map
//! offsets of a topic that is gone, and readers drop them.
//!
//! Source offsets absent from every run (transaction markers, aborted records,
//! records removed by compaction) translate to the destination offset of the
//! first record after them.

use crate::batch::varint::{put_varint, put_varlong, read_varint, read_varlong};

/// Where one forwarded batch (or a merged run of them) landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    /// First source offset covered.
    pub src_base: i64,
    /// Last source offset covered.
    pub src_last: i64,
    /// Destination offset of the first record.
    pub dst_base: i64,
    /// Number of destination records.
    pub dst_count: i32,
    /// For non-linear batches: source offset delta of each destination record.
    pub deltas: Option<Vec<i32>>,
}

impl MapEntry {
    fn is_linear(&self) -> bool {
        self.deltas.is_none() && self.src_last - self.src_base + 1 == self.dst_count as i64
    }
}

/// Merges runs that continue each other linearly on both sides.
pub fn merge(entries: Vec<MapEntry>) -> Vec<MapEntry> {
    let mut out: Vec<MapEntry> = Vec::with_capacity(entries.len());
    for e in entries {
        if let Some(last) = out.last_mut() {
            if last.is_linear()
                && e.is_linear()
                && e.src_base == last.src_last + 1
                && e.dst_base == last.dst_base + last.dst_count as i64
            {
                last.src_last = e.src_last;
                last.dst_count += e.dst_count;
                continue;
            }
        }
        out.push(e);
    }
    out
}

/// Encodes one map record value.
pub fn encode_value(src_topic: &str, runs: &[MapEntry]) -> Vec<u8> {
    let mut v = vec![1u8];
    put_varint(&mut v, src_topic.len() as i32);
    v.extend_from_slice(src_topic.as_bytes());
    put_varint(&mut v, runs.len() as i32);
    for r in runs {
        put_varlong(&mut v, r.src_base);
        put_varlong(&mut v, r.src_last);
        put_varlong(&mut v, r.dst_base);
        put_varint(&mut v, r.dst_count);
        match &r.deltas {
            None => put_varint(&mut v, 0),
            Some(d) => {
                put_varint(&mut v, d.len() as i32);
                for x in d {
                    put_varint(&mut v, *x);
                }
            }
        }
    }
    v
}

/// Decodes a map record value into (source topic, runs).
pub fn decode_value(mut b: &[u8]) -> Option<(String, Vec<MapEntry>)> {
    if b.first() != Some(&1) {
        return None;
    }
    b = &b[1..];
    let n = read_varint(&mut b)? as usize;
    if n > b.len() {
        return None;
    }
    let topic = String::from_utf8(b[..n].to_vec()).ok()?;
    b = &b[n..];
    let runs = read_varint(&mut b)?;
    let mut out = Vec::new();
    for _ in 0..runs {
        let src_base = read_varlong(&mut b)?;
        let src_last = read_varlong(&mut b)?;
        let dst_base = read_varlong(&mut b)?;
        let dst_count = read_varint(&mut b)?;
        let nd = read_varint(&mut b)?;
        let deltas = if nd == 0 {
            None
        } else {
            let mut d = Vec::with_capacity((nd as usize).min(b.len()));
            for _ in 0..nd {
                d.push(read_varint(&mut b)?);
            }
            Some(d)
        };
        out.push(MapEntry {
            src_base,
            src_last,
            dst_base,
            dst_count,
            deltas,
        });
    }
    Some((topic, out))
}

/// Translates a source offset with the runs of one partition (sorted by source
/// offset): the destination offset of the first record at or after it. An
/// offset past every run (a consumer that read everything replicated so far)
/// maps to the destination position right after the last run. `None` only
/// when there is no run.
pub fn translate(runs: &[MapEntry], src_offset: i64) -> Option<i64> {
    let last = runs.last()?;
    if src_offset > last.src_last {
        return Some(last.dst_base + last.dst_count as i64);
    }
    for r in runs {
        if src_offset > r.src_last {
            continue;
        }
        if src_offset <= r.src_base {
            return Some(r.dst_base);
        }
        return Some(match &r.deltas {
            None => r.dst_base + (src_offset - r.src_base).min(r.dst_count as i64),
            Some(d) => {
                let rel = src_offset - r.src_base;
                let i = d.iter().position(|x| *x as i64 >= rel).unwrap_or(d.len());
                r.dst_base + i as i64
            }
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lin(src_base: i64, n: i32, dst_base: i64) -> MapEntry {
        MapEntry {
            src_base,
            src_last: src_base + n as i64 - 1,
            dst_base,
            dst_count: n,
            deltas: None,
        }
    }

    #[test]
    fn merges_continuous_runs_and_round_trips() {
        let runs = merge(vec![
            lin(0, 10, 100),
            lin(10, 5, 110),
            // a transaction marker at source offset 15 left a gap
            lin(16, 4, 115),
            MapEntry {
                src_base: 20,
                src_last: 29,
                dst_base: 119,
                dst_count: 3,
                deltas: Some(vec![0, 4, 9]),
            },
        ]);
        assert_eq!(runs.len(), 3);
        assert_eq!(runs[0], lin(0, 15, 100));
        let v = encode_value("orders", &runs);
        assert_eq!(decode_value(&v), Some(("orders".to_string(), runs.clone())));
        assert_eq!(translate(&runs, 3), Some(103));
        assert_eq!(translate(&runs, 15), Some(115), "marker offset → next record");
        assert_eq!(translate(&runs, 21), Some(120), "compacted gap → next surviving record");
        assert_eq!(translate(&runs, 24), Some(120));
        assert_eq!(translate(&runs, 25), Some(121));
        assert_eq!(translate(&runs, 29), Some(121), "the last record of a sparse run");
        assert_eq!(
            translate(&runs, 30),
            Some(122),
            "caught up: right after the last record"
        );
        assert_eq!(
            translate(&runs, 5000),
            Some(122),
            "past every run: right after the last record"
        );
        assert_eq!(translate(&[], 0), None);
        assert!(decode_value(&v[..v.len() - 1]).is_none());
    }
}
