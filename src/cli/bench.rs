//! `strait bench` and `strait load`: measure a replication between two clusters.
//!
//! `load` writes synthetic records to a topic through the zero-copy Produce path
//! (one task per partition, acks=all). `bench` creates a fresh source topic,
//! starts `strait load` as a separate process (so the replicator's own CPU and
//! memory can be read from `/proc/self`), replicates with the real engine, and
//! reports throughput, replication latency (source record timestamp →
//! destination acknowledgement), CPU seconds per GB and peak RSS.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions};

use strait::batch::writer::simple_record;

use strait::client::{Client, ClientConfig, ClientError, NewTopic};
use strait::config::Config;
use strait::protocol::{ProducePartition, ProduceTopic};
use strait::replicate::metrics::{Histogram, Metrics, Stage};

use super::pace::{Pacer, Rate, TICK};

/// What to load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The cluster to write to (bootstrap servers, TLS, SASL).
    pub client: ClientConfig,
    /// Topic (created if missing with `partitions` partitions).
    pub topic: String,
    /// Records to write in total.
    pub records: u64,
    /// Value size of each record in bytes.
    pub record_size: usize,
    /// Codec: none, gzip, snappy, lz4, zstd.
    pub codec: String,
    /// Partition count.
    pub partitions: i32,
    /// Distinct keys (0: null keys).
    pub keys: u64,
    /// Records per produced batch (1 makes 1-record batches); with `rate`, the
    /// most records one batch carries.
    pub batch_records: usize,
    /// Write at this steady rate instead of as fast as possible.
    pub rate: Option<Rate>,
}

/// Parses a codec name.
pub fn codec(name: &str) -> Result<Compression, String> {
    Ok(match name {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        other => {
            return Err(format!(
                "unknown codec {other:?}; allowed: none, gzip, snappy, lz4, zstd"
            ))
        }
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn batch(first: u64, n: usize, o: &LoadOptions, codec: Compression) -> Result<Bytes, ClientError> {
    let ts = now_ms();
    let records: Vec<Record> = (0..n as u64)
        .map(|i| {
            let idx = first + i;
            let mut value = vec![0u8; o.record_size];
            // About 2:1 compressible, like typical JSON payloads: repeated text,
            // then pseudo-random bytes.
            let text = format!("{{\"id\":{idx},\"v\":\"{}\"}}", idx.wrapping_mul(2654435761) % 100_000);
            let mut x = idx.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            for (j, b) in value.iter_mut().enumerate() {
                if j < o.record_size / 2 {
                    *b = text.as_bytes()[j % text.len()];
                } else {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = x as u8;
                }
            }
            simple_record(
                i as i64,
                ts,
                (o.keys > 0).then(|| Bytes::from(format!("key-{}", idx % o.keys))),
                Some(Bytes::from(value)),
            )
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: codec,
        },
    )
    .map_err(|e| ClientError::Invalid {
        what: "load batch",
        reason: format!("{e:#}"),
    })?;
    Ok(buf.freeze())
}

/// Writes `o.records` records; returns the bytes written.
pub async fn load(o: &LoadOptions) -> Result<u64, ClientError> {
    let codec = codec(&o.codec).map_err(|reason| ClientError::Invalid { what: "codec", reason })?;
    let client = Arc::new(Client::connect(o.client.clone()).await?);
    client
        .create_topics(
            &[NewTopic {
                name: o.topic.clone(),
                partitions: o.partitions,
                replication_factor: -1,
                configs: vec![],
            }],
            30_000,
            true,
        )
        .await?;
    let md = client.refresh_metadata(Some(std::slice::from_ref(&o.topic))).await?;
    let id = md.topics.get(&o.topic).map(|t| t.id).unwrap_or_default();
    let partitions = md
        .topics
        .get(&o.topic)
        .map(|t| t.partitions.len() as i32)
        .unwrap_or(o.partitions);
    let bytes = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for p in 0..partitions {
        let share = o.records / partitions as u64 + u64::from((p as u64) < o.records % partitions as u64);
        let (client, o, bytes) = (client.clone(), o.clone(), bytes.clone());
        let pacer = o.rate.map(|r| Pacer::new(r, o.record_size, partitions as u32));
        tasks.push(tokio::spawn(async move {
            let mut written = 0u64;
            let start = Instant::now();
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            while written < share {
                let mut n = (o.batch_records as u64).min(share - written) as usize;
                if let Some(pacer) = pacer {
                    // Paced: every tick, one batch of the records due by now (a
                    // fresh timestamp each), the fraction of a record carried on.
                    let ticks = (start.elapsed().as_micros() / TICK.as_micros()) as u64;
                    let due = pacer.due(ticks).min(share);
                    if due <= written {
                        tick.tick().await;
                        continue;
                    }
                    n = n.min((due - written) as usize);
                }
                let b = batch(written, n, &o, codec)?;
                client
                    .retrying(|| async {
                        let (leader, _) = client.leader(&o.topic, p).await?;
                        let conn = client.broker(leader).await?;
                        let v = conn.version_of::<ProduceRequest>()?;
                        let topic = ProduceTopic {
                            name: o.topic.clone(),
                            topic_id: id,
                            partitions: vec![ProducePartition::whole(p, b.clone())],
                        };
                        let resp = conn.produce(v, None, -1, 30_000, &[topic]).await?;
                        match resp
                            .responses
                            .first()
                            .and_then(|t| t.partition_responses.first())
                            .map(|r| r.error_code)
                        {
                            Some(0) => Ok(()),
                            code => Err(ClientError::kafka(
                                "Produce",
                                conn.broker(),
                                o.topic.as_str(),
                                code.unwrap_or(-1),
                                None,
                            )),
                        }
                    })
                    .await?;
                bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
                written += n as u64;
            }
            Ok::<(), ClientError>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| ClientError::Invalid {
            what: "load task",
            reason: e.to_string(),
        })??;
    }
    Ok(bytes.load(Ordering::Relaxed))
}

/// Latency quantiles of a histogram, milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quantiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample (upper edge of its bucket, within ~4 %).
    pub max: f64,
}

impl Quantiles {
    fn of(h: &Histogram) -> Self {
        let q = |x: f64| h.quantile(x) as f64 / 1000.0;
        Self {
            p50: q(0.5),
            p99: q(0.99),
            p999: q(0.999),
            max: q(1.0),
        }
    }
}

/// The steady rate a `--rate` bench asked for and what it achieved.
#[derive(Debug, Clone)]
pub struct RateReport {
    /// The asked rate in its unit.
    pub asked: f64,
    /// The rate replicated over the measured window, same unit.
    pub achieved: f64,
    /// `MB/s` or `records/s`.
    pub unit: &'static str,
    /// Seconds left out at the start (latency and rate), from the first acknowledged record.
    pub warmup_seconds: f64,
}

/// Results of `strait bench`.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// Records replicated.
    pub records: u64,
    /// Batch bytes replicated.
    pub bytes: u64,
    /// Seconds from start until the last record was acknowledged.
    pub seconds: f64,
    /// Seconds from start until the first record was acknowledged.
    pub first_batch_seconds: f64,
    /// Replication latency (source record timestamp → destination
    /// acknowledgement), after the warm-up in rate mode.
    pub latency_ms: Quantiles,
    /// The same by stage: fetch, queue, produce ([`Stage::ALL`] order).
    pub stage_ms: [Quantiles; 3],
    /// In rate mode: the rate asked and achieved.
    pub rate: Option<RateReport>,
    /// CPU seconds used by the replicator process.
    pub cpu_seconds: f64,
    /// Peak resident memory of the replicator process, MiB.
    pub peak_rss_mib: f64,
    /// Share of batches that took the slow path, %.
    pub slow_path_percent: f64,
}

impl BenchReport {
    /// Human summary.
    pub fn text(&self) -> String {
        let gb = self.bytes as f64 / 1e9;
        let l = &self.latency_ms;
        let stages: Vec<String> = Stage::ALL
            .iter()
            .zip(&self.stage_ms)
            .map(|(s, q)| format!("{} p50 {:.1} ms, p99 {:.1} ms", s.name(), q.p50, q.p99))
            .collect();
        let rate = self.rate.as_ref().map_or(String::new(), |r| {
            format!(
                "rate asked {:.2} {unit}, achieved {:.2} {unit} (after a {:.0} s warm-up, left out of the latency)\n",
                r.asked,
                r.achieved,
                r.warmup_seconds,
                unit = r.unit
            )
        });
        format!(
            "replicated {} records, {:.1} MB in {:.2} s: {:.0} records/s, {:.1} MB/s\n\
             {rate}first batch after {:.3} s; latency p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms\n\
             stages: {}\n\
             replicator CPU {:.2} s ({:.2} CPU-s/GB), peak RSS {:.1} MiB, slow path {:.1}%",
            self.records,
            self.bytes as f64 / 1e6,
            self.seconds,
            self.records as f64 / self.seconds,
            self.bytes as f64 / 1e6 / self.seconds,
            self.first_batch_seconds,
            l.p50,
            l.p99,
            l.p999,
            l.max,
            stages.join("; "),
            self.cpu_seconds,
            if gb > 0.0 { self.cpu_seconds / gb } else { 0.0 },
            self.peak_rss_mib,
            self.slow_path_percent
        )
    }

    /// Machine-readable summary (one JSON object).
    pub fn json(&self) -> String {
        let l = &self.latency_ms;
        let stages: Vec<String> = Stage::ALL
            .iter()
            .zip(&self.stage_ms)
            .map(|(s, q)| format!("\"{}\":{{\"p50\":{:.2},\"p99\":{:.2}}}", s.name(), q.p50, q.p99))
            .collect();
        let rate = self.rate.as_ref().map_or(String::new(), |r| {
            format!(
                ",\"rate\":{{\"asked\":{:.3},\"achieved\":{:.3},\"unit\":\"{}\",\"warmup_s\":{:.1}}}",
                r.asked, r.achieved, r.unit, r.warmup_seconds
            )
        });
        format!(
            "{{\"records\":{},\"bytes\":{},\"seconds\":{:.3},\"records_per_s\":{:.0},\"mb_per_s\":{:.2},\"first_batch_s\":{:.3},\
             \"latency_ms\":{{\"p50\":{:.2},\"p99\":{:.2},\"p999\":{:.2},\"max\":{:.2}}},\"stage_latency_ms\":{{{}}}{rate},\
             \"cpu_s\":{:.3},\"cpu_s_per_gb\":{:.3},\"peak_rss_mib\":{:.1},\"slow_path_percent\":{:.2}}}",
            self.records,
            self.bytes,
            self.seconds,
            self.records as f64 / self.seconds,
            self.bytes as f64 / 1e6 / self.seconds,
            self.first_batch_seconds,
            l.p50,
            l.p99,
            l.p999,
            l.max,
            stages.join(","),
            self.cpu_seconds,
            if self.bytes > 0 { self.cpu_seconds / (self.bytes as f64 / 1e9) } else { 0.0 },
            self.peak_rss_mib,
            self.slow_path_percent
        )
    }
}

/// CPU seconds (user + system) of this process (0 without `/proc`).
fn cpu_seconds() -> f64 {
    strait::ops::cpu_seconds().unwrap_or(0.0)
}

/// Peak resident set size of this process in MiB (0 without `/proc`).
fn peak_rss_mib() -> f64 {
    strait::ops::peak_resident_bytes().map_or(0.0, |b| b / (1024.0 * 1024.0))
}

/// What a `--rate` bench leaves out of its latency and rate: the first seconds
/// after the first record was acknowledged (connections, metadata, the first
/// fetch sessions).
pub const WARMUP: Duration = Duration::from_secs(3);

/// A flow's latency histograms: the total, then each stage's.
fn histograms(m: &Metrics) -> [Histogram; 4] {
    let [a, b, c] = Stage::ALL.map(|s| m.stage_histogram(s));
    [m.latency_histogram(), a, b, c]
}

/// Replicates `records` records that a `loader` process writes into the source
/// topic named in `cfg.topics`, and measures it. With `rate` (the loader's
/// steady rate, records of `record_size` bytes) the latency and achieved rate
/// leave the [`WARMUP`] out.
pub async fn bench(
    cfg: Config,
    records: u64,
    rate: Option<Rate>,
    record_size: usize,
    mut loader: std::process::Child,
) -> Result<BenchReport, String> {
    let start = Instant::now();
    let cpu0 = cpu_seconds();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (h_tx, h_rx) = tokio::sync::oneshot::channel();
    let engine = tokio::spawn(strait::replicate::run(
        cfg,
        async {
            let _ = stop_rx.await;
        },
        None,
        move |h| {
            let _ = h_tx.send(h);
        },
    ));
    let handle = h_rx.await.map_err(|_| "the replication did not start".to_string())?;
    let tty = std::io::stderr().is_terminal();
    let mut first: Option<Instant> = None;
    // Rate mode, once the warm-up is over: when, records done, histograms then.
    let mut warm: Option<(Instant, u64, [Histogram; 4])> = None;
    let mut last_print = Instant::now();
    loop {
        let done = Metrics::get(&handle.metrics.records);
        if done > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if rate.is_some() && warm.is_none() && first.is_some_and(|t| t.elapsed() >= WARMUP) {
            warm = Some((Instant::now(), done, histograms(&handle.metrics)));
        }
        if done >= records {
            break;
        }
        if let Ok(Some(status)) = loader.try_wait() {
            if !status.success() {
                let _ = stop_tx.send(());
                return Err(format!("the load process failed ({status})"));
            }
        }
        if tty && last_print.elapsed() >= Duration::from_millis(500) {
            let s = start.elapsed().as_secs_f64();
            let mb = Metrics::get(&handle.metrics.bytes) as f64 / 1e6;
            eprint!(
                "\r{done}/{records} records, {:.1} MB/s, {:.0} records/s   ",
                mb / s,
                done as f64 / s
            );
            let _ = std::io::stderr().flush();
            last_print = Instant::now();
        }
        if start.elapsed() > Duration::from_secs(3600) {
            return Err("gave up after an hour".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let end = Instant::now();
    let seconds = end.duration_since(start).as_secs_f64();
    if tty {
        eprintln!();
    }
    let cpu = cpu_seconds() - cpu0;
    let _ = loader.wait();
    let done = Metrics::get(&handle.metrics.records);
    let mut h = histograms(&handle.metrics);
    let first_at = first.unwrap_or(end);
    // The measured window: from the warm-up's end, or (a run shorter than its
    // warm-up) from the first acknowledged record.
    let (from, done_before) = match &warm {
        Some((t, n, earlier)) => {
            for (now, then) in h.iter_mut().zip(earlier) {
                *now = now.since(then);
            }
            (*t, *n)
        }
        None => (first_at, 0),
    };
    let rate = rate.map(|r| {
        let window = end.duration_since(from).as_secs_f64().max(1e-3);
        let (achieved, unit) = r.in_unit((done - done_before) as f64 / window, record_size);
        RateReport {
            asked: r.value(),
            achieved,
            unit,
            warmup_seconds: from.duration_since(first_at).as_secs_f64(),
        }
    });
    let [total, stages @ ..] = &h;
    let report = BenchReport {
        records: done,
        bytes: Metrics::get(&handle.metrics.bytes),
        seconds,
        first_batch_seconds: first_at.duration_since(start).as_secs_f64(),
        latency_ms: Quantiles::of(total),
        stage_ms: [0, 1, 2].map(|i| Quantiles::of(&stages[i])),
        rate,
        cpu_seconds: cpu,
        peak_rss_mib: peak_rss_mib(),
        slow_path_percent: handle.metrics.slow_path_percent(),
    };
    let _ = stop_tx.send(());
    let _ = engine.await;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(rate: Option<RateReport>) -> BenchReport {
        let q = |p50: f64| Quantiles {
            p50,
            p99: p50 * 2.0,
            p999: p50 * 3.0,
            max: p50 * 4.0,
        };
        BenchReport {
            records: 12_000,
            bytes: 6_000_000,
            seconds: 6.0,
            first_batch_seconds: 1.5,
            latency_ms: q(10.0),
            stage_ms: [q(4.0), q(1.0), q(5.0)],
            rate,
            cpu_seconds: 1.0,
            peak_rss_mib: 30.0,
            slow_path_percent: 0.0,
        }
    }

    #[test]
    fn reports_quantiles_stages_and_the_rate() {
        let r = report(Some(RateReport {
            asked: 2.0,
            achieved: 1.98,
            unit: "MB/s",
            warmup_seconds: 3.0,
        }));
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(v["latency_ms"]["max"], 40.0);
        assert_eq!(v["latency_ms"]["p999"], 30.0);
        assert_eq!(v["stage_latency_ms"]["queue"]["p99"], 2.0);
        assert_eq!(v["stage_latency_ms"]["produce"]["p50"], 5.0);
        assert_eq!(v["rate"]["achieved"], 1.98);
        assert_eq!(v["rate"]["unit"], "MB/s");
        let text = r.text();
        assert!(text.contains("p99.9 30.0 ms, max 40.0 ms"), "{text}");
        assert!(text.contains("fetch p50 4.0 ms, p99 8.0 ms; queue"), "{text}");
        assert!(text.contains("rate asked 2.00 MB/s, achieved 1.98 MB/s"), "{text}");
        // Without --rate: no rate in either form.
        let r = report(None);
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert!(v.get("rate").is_none(), "{v}");
        assert!(!r.text().contains("rate asked"));
    }
}
