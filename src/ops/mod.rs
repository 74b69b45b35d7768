//! Operations: the Prometheus metrics endpoint and health checks.
//!
//! A deliberately small HTTP/1.1 server (GET only, one response per connection)
//! serving `/metrics` (Prometheus text format 0.0.4), `/healthz` (the process is
//! alive) and `/readyz` (connected to both clusters, checkpoints current, no
//! partition stopped).

use std::fmt::Write as _;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::client::error_name;
use crate::replicate::metrics::Metrics;
use crate::replicate::Handle;

/// Serves the endpoints on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, handle: Handle) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "metrics endpoint listening (/metrics, /healthz, /readyz)");
    }
    loop {
        let (mut sock, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "metrics endpoint accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            // Read the request head (up to 2 KiB) before answering.
            let mut req = Vec::with_capacity(512);
            let mut chunk = [0u8; 512];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 2048 {
                match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut chunk)).await {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                    Ok(Ok(n)) => req.extend_from_slice(&chunk[..n]),
                }
            }
            let line = String::from_utf8_lossy(&req);
            let path = line.split_whitespace().nth(1).unwrap_or("/");
            let (status, ctype, body) = match path {
                "/metrics" => ("200 OK", "text/plain; version=0.0.4", render(&handle)),
                "/healthz" => ("200 OK", "text/plain", "ok\n".to_string()),
                "/readyz" => match readiness(&handle) {
                    Ok(()) => ("200 OK", "text/plain", "ready\n".to_string()),
                    Err(why) => ("503 Service Unavailable", "text/plain", format!("not ready: {why}\n")),
                },
                _ => (
                    "404 Not Found",
                    "text/plain",
                    "try /metrics, /healthz or /readyz\n".to_string(),
                ),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

/// Ready when both clusters answered recently, idle or not: a checkpoint was
/// committed on the destination (an idle replication re-commits its positions)
/// and the source answered a fetch or a metadata request, each within
/// `stale_after` (30 s by default); and no partition is stopped.
fn readiness(h: &Handle) -> Result<(), String> {
    let limit = h.stale_after.as_millis() as u64;
    match Metrics::age_ms(&h.metrics.last_checkpoint_ms) {
        None => return Err("no checkpoint committed yet".into()),
        Some(age) if age > limit => {
            return Err(format!(
                "last checkpoint committed {} s ago: the destination does not answer",
                age / 1000
            ))
        }
        Some(_) => {}
    }
    match Metrics::age_ms(&h.metrics.last_source_ok_ms) {
        None => return Err("the source has not answered yet".into()),
        Some(age) if age > limit => return Err(format!("the source last answered {} s ago", age / 1000)),
        Some(_) => {}
    }
    let stopped = h.stopped_partitions();
    if stopped > 0 {
        return Err(format!("{stopped} partition(s) stopped on errors"));
    }
    Ok(())
}

/// The Prometheus text exposition of every metric.
pub fn render(h: &Handle) -> String {
    let m = &h.metrics;
    let mut o = String::new();
    let mut counter = |name: &str, help: &str, v: u64| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
    };
    counter(
        "strait_records_total",
        "Records acknowledged by the destination.",
        Metrics::get(&m.records),
    );
    counter(
        "strait_bytes_total",
        "Record-batch bytes acknowledged by the destination.",
        Metrics::get(&m.bytes),
    );
    counter(
        "strait_offsets_skipped_total",
        "Source offsets deleted by retention before they were replicated.",
        Metrics::get(&m.offsets_skipped),
    );
    counter(
        "strait_crc_refetches_total",
        "Fetched batches that failed their CRC and were fetched again.",
        Metrics::get(&m.crc_refetches),
    );
    counter(
        "strait_malformed_refetches_total",
        "Fetched records with a corrupted batch length, magic or offsets, fetched again.",
        Metrics::get(&m.malformed_refetches),
    );
    counter(
        "strait_produce_retries_total",
        "Batches produced again after a retriable error.",
        Metrics::get(&m.produce_retries),
    );
    counter(
        "strait_checkpoints_total",
        "Checkpoints committed on the destination.",
        Metrics::get(&m.checkpoints),
    );
    let _ = writeln!(o, "# HELP strait_batches_total Source batches by path: fast (raw), slow (re-encoded or up-converted), coalesced (merged), dropped.\n# TYPE strait_batches_total counter");
    for (path, v) in [
        ("fast", &m.batches_fast),
        ("slow", &m.batches_slow),
        ("coalesced", &m.batches_coalesced),
        ("dropped_control", &m.batches_control),
        ("dropped_aborted", &m.batches_aborted),
        ("dropped_empty", &m.batches_empty),
    ] {
        let _ = writeln!(o, "strait_batches_total{{path=\"{path}\"}} {}", Metrics::get(v));
    }
    let _ = writeln!(
        o,
        "# HELP strait_errors_total Kafka error codes seen in responses.\n# TYPE strait_errors_total counter"
    );
    for (code, n) in m.errors() {
        let _ = writeln!(
            o,
            "strait_errors_total{{code=\"{code}\",name=\"{}\"}} {n}",
            error_name(code)
        );
    }
    let _ = writeln!(o, "# HELP strait_lag_records Source records (to the last stable offset) not yet acknowledged by the destination.\n# TYPE strait_lag_records gauge");
    for (topic, partition, lag) in h.partition_lag() {
        if lag >= 0 {
            let _ = writeln!(
                o,
                "strait_lag_records{{topic=\"{topic}\",partition=\"{partition}\"}} {lag}"
            );
        }
    }
    let hist = m.latency_histogram();
    let _ = writeln!(o, "# HELP strait_replication_latency_seconds Source record timestamp to destination acknowledgement.\n# TYPE strait_replication_latency_seconds summary");
    for q in [0.5, 0.9, 0.99, 0.999] {
        let _ = writeln!(
            o,
            "strait_replication_latency_seconds{{quantile=\"{q}\"}} {:.6}",
            hist.quantile(q) as f64 / 1e6
        );
    }
    let _ = writeln!(o, "strait_replication_latency_seconds_count {}", hist.count());
    let age = Metrics::age_ms(&m.last_checkpoint_ms).map_or(-1.0, |ms| ms as f64 / 1000.0);
    let _ = writeln!(o, "# HELP strait_checkpoint_age_seconds Seconds since the last checkpoint (-1: none yet).\n# TYPE strait_checkpoint_age_seconds gauge\nstrait_checkpoint_age_seconds {age:.3}");
    let _ = writeln!(o, "# HELP strait_buffered_bytes Bytes of fetched data held until the destination acknowledges them.\n# TYPE strait_buffered_bytes gauge\nstrait_buffered_bytes {}", h.buffered_bytes());
    let _ = writeln!(o, "# HELP strait_buffered_reserved_bytes Bytes of the memory budget reserved by fetches waiting for their response.\n# TYPE strait_buffered_reserved_bytes gauge\nstrait_buffered_reserved_bytes {}", h.reserved_bytes());
    let _ = writeln!(o, "# HELP strait_partitions_stopped Partitions stopped on unrecoverable errors.\n# TYPE strait_partitions_stopped gauge\nstrait_partitions_stopped {}", h.stopped_partitions());
    o
}
