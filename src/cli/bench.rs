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
use strait::replicate::metrics::Metrics;

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
    /// Records per produced batch (1 makes 1-record batches).
    pub batch_records: usize,
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
        tasks.push(tokio::spawn(async move {
            let mut written = 0u64;
            while written < share {
                let n = (o.batch_records as u64).min(share - written) as usize;
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
    /// Replication latency quantiles in milliseconds: p50, p99, p99.9.
    pub latency_ms: [f64; 3],
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
        format!(
            "replicated {} records, {:.1} MB in {:.2} s: {:.0} records/s, {:.1} MB/s\n\
             first batch after {:.3} s; latency p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms\n\
             replicator CPU {:.2} s ({:.2} CPU-s/GB), peak RSS {:.1} MiB, slow path {:.1}%",
            self.records,
            self.bytes as f64 / 1e6,
            self.seconds,
            self.records as f64 / self.seconds,
            self.bytes as f64 / 1e6 / self.seconds,
            self.first_batch_seconds,
            self.latency_ms[0],
            self.latency_ms[1],
            self.latency_ms[2],
            self.cpu_seconds,
            if gb > 0.0 { self.cpu_seconds / gb } else { 0.0 },
            self.peak_rss_mib,
            self.slow_path_percent
        )
    }

    /// Machine-readable summary (one JSON object).
    pub fn json(&self) -> String {
        format!(
            "{{\"records\":{},\"bytes\":{},\"seconds\":{:.3},\"records_per_s\":{:.0},\"mb_per_s\":{:.2},\"first_batch_s\":{:.3},\
             \"latency_ms\":{{\"p50\":{:.2},\"p99\":{:.2},\"p999\":{:.2}}},\"cpu_s\":{:.3},\"cpu_s_per_gb\":{:.3},\"peak_rss_mib\":{:.1},\"slow_path_percent\":{:.2}}}",
            self.records,
            self.bytes,
            self.seconds,
            self.records as f64 / self.seconds,
            self.bytes as f64 / 1e6 / self.seconds,
            self.first_batch_seconds,
            self.latency_ms[0],
            self.latency_ms[1],
            self.latency_ms[2],
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

/// Replicates `records` records that a `loader` process writes into the source
/// topic named in `cfg.topics`, and measures it.
pub async fn bench(cfg: Config, records: u64, mut loader: std::process::Child) -> Result<BenchReport, String> {
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
    let mut first = None;
    let mut last_print = Instant::now();
    loop {
        let done = Metrics::get(&handle.metrics.records);
        if done > 0 && first.is_none() {
            first = Some(start.elapsed().as_secs_f64());
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
    let seconds = start.elapsed().as_secs_f64();
    if tty {
        eprintln!();
    }
    let cpu = cpu_seconds() - cpu0;
    let _ = loader.wait();
    let h = handle.metrics.latency_histogram();
    let q = |x: f64| h.quantile(x) as f64 / 1000.0;
    let report = BenchReport {
        records: Metrics::get(&handle.metrics.records),
        bytes: Metrics::get(&handle.metrics.bytes),
        seconds,
        first_batch_seconds: first.unwrap_or(seconds),
        latency_ms: [q(0.5), q(0.99), q(0.999)],
        cpu_seconds: cpu,
        peak_rss_mib: peak_rss_mib(),
        slow_path_percent: handle.metrics.slow_path_percent(),
    };
    let _ = stop_tx.send(());
    let _ = engine.await;
    Ok(report)
}
