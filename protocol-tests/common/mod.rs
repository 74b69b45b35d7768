//! Helpers shared by the real-broker test binaries: the independent client
//! (`protocol-tests/tools/kafka_tool.py`), replication configs, and strait run
//! in-process with a [`Handle`] on its counters.
#![allow(dead_code)]

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::KafkaCluster;
use serde_json::Value;
use strait::config::Config;
use strait::replicate::{run, Handle, Summary};

pub fn tool(args: &[&str]) -> String {
    crate::harness::kafka_tool(args)
}

pub fn json(s: &str) -> Value {
    serde_json::from_str(s.trim().lines().last().unwrap_or("null")).unwrap_or_else(|e| panic!("bad JSON {s:?}: {e}"))
}

pub fn create(c: &KafkaCluster, topic: &str, partitions: u32, configs: &[&str]) {
    let p = partitions.to_string();
    let mut args = vec![
        "create",
        "--bootstrap",
        &c.bootstrap,
        "--topic",
        topic,
        "--partitions",
        &p,
    ];
    for kv in configs {
        args.extend(["--config", kv]);
    }
    tool(&args);
}

pub fn load(c: &KafkaCluster, topic: &str, count: usize, codec: &str, extra: &[&str]) {
    let n = count.to_string();
    let mut args = vec![
        "load",
        "--bootstrap",
        &c.bootstrap,
        "--topic",
        topic,
        "--count",
        &n,
        "--codec",
        codec,
    ];
    args.extend(extra);
    tool(&args);
}

/// Compares source and destination with the independent client; returns its report.
pub fn compare(src: &KafkaCluster, st: &str, dst: &KafkaCluster, dt: &str, extra: &[&str]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/protocol-tests/tools/kafka_tool.py");
    let mut args = vec![
        "compare",
        "--source",
        &src.bootstrap,
        "--source-topic",
        st,
        "--dest",
        &dst.bootstrap,
        "--dest-topic",
        dt,
    ];
    args.extend(extra);
    let out = Command::new("python3").arg(script).args(&args).output().unwrap();
    let v = json(&String::from_utf8_lossy(&out.stdout));
    eprintln!("compare {st} -> {dt}: {v}");
    v
}

pub fn assert_same(src: &KafkaCluster, st: &str, dst: &KafkaCluster, dt: &str, extra: &[&str]) -> Value {
    let v = compare(src, st, dst, dt, extra);
    assert_eq!(v["missing"], 0, "{st}: records lost: {v}");
    assert_eq!(v["order_violations"], 0, "{st}: order broken: {v}");
    assert_eq!(v["mismatched"], 0, "{st}: records changed: {v}");
    assert_eq!(v["ok"], true, "{st}: {v}");
    v
}

/// `heartbeats = false` unless `extra` sets a heartbeat key: tests that count
/// records or topics see only their own (the heartbeat tests turn them on).
pub fn heartbeats_off_unless(extra: &str) -> &'static str {
    if extra.lines().any(|l| l.trim_start().starts_with("heartbeats")) {
        ""
    } else {
        "heartbeats = false"
    }
}

/// A replication config; `extra` goes at the top level, `dst_extra` into `[destination]`.
/// Heartbeats are off unless `extra` sets a heartbeat key.
pub fn config_text(name: &str, src: &str, dst: &str, topics: &str, extra: &str, dst_extra: &str) -> String {
    let heartbeats = heartbeats_off_unless(extra);
    format!(
        r#"name = "{name}"
topics = ["{topics}"]
refresh_interval_ms = 1000
checkpoint_interval_ms = 200
{heartbeats}
{extra}
[source]
bootstrap_servers = "{src}"
[destination]
bootstrap_servers = "{dst}"
{dst_extra}
"#
    )
}

pub fn config(name: &str, src: &KafkaCluster, dst: &KafkaCluster, topics: &str, extra: &str) -> Config {
    Config::parse(
        &config_text(name, &src.bootstrap, &dst.bootstrap, topics, extra, ""),
        "test",
    )
    .unwrap()
}

/// The same config written to a file, for tests of the `strait` binary.
pub fn config_file(name: &str, src: &str, dst: &str, topics: &str, extra: &str, dst_extra: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("{name}.toml"));
    std::fs::write(&path, config_text(name, src, dst, topics, extra, dst_extra)).unwrap();
    path
}

/// strait running in-process.
pub struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    join: tokio::task::JoinHandle<Result<Summary, strait::replicate::EngineError>>,
    pub handle: Handle,
    endpoint: Option<tokio::task::JoinHandle<()>>,
}

pub async fn start(cfg: Config) -> Running {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (h_tx, h_rx) = tokio::sync::oneshot::channel();
    // The metrics endpoint, as `strait run` serves it.
    let listener = match cfg.ops.metrics_address {
        Some(a) => Some(tokio::net::TcpListener::bind(a).await.expect("metrics address free")),
        None => None,
    };
    let join = tokio::spawn(async move {
        run(
            cfg,
            async {
                let _ = stop_rx.await;
            },
            Some(Duration::from_secs(2)),
            move |h| {
                let endpoint = listener.map(|l| strait::replicate::exposition::spawn_endpoint(l, vec![h.clone()]));
                let _ = h_tx.send((h, endpoint));
            },
        )
        .await
    });
    let (handle, endpoint) = match h_rx.await {
        Ok(h) => h,
        // run() returned before it started: show why.
        Err(_) => panic!("replication did not start: {:?}", join.await),
    };
    Running {
        stop: Some(stop_tx),
        join,
        handle,
        endpoint,
    }
}

impl Running {
    /// Waits until the destination acknowledged at least `n` records.
    pub async fn wait_records(&self, n: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.handle.metrics.records.load(std::sync::atomic::Ordering::Relaxed);
            if got >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {got} of {n} records replicated after {timeout:?}; lag {:?}",
                self.handle.lag()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(mut self) -> Summary {
        let _ = self.stop.take().unwrap().send(());
        let s = self.join.await.unwrap().expect("replication ran");
        if let Some(e) = self.endpoint.take() {
            e.abort();
        }
        // Give the checkpoint a moment to be visible (it was committed before return).
        s
    }
}

pub fn dst_has_topic(dst: &KafkaCluster, t: &str) -> bool {
    let out = Command::new("kcat")
        .args(["-L", "-b", &dst.bootstrap, "-t", t])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    s.contains(&format!("topic \"{t}\" with")) && !s.contains("Broker: Unknown topic")
}

/// The leader of `partition` of `topic`, as kcat sees it.
pub fn leader_of(cluster: &KafkaCluster, topic: &str, partition: u32) -> usize {
    let md = Command::new("kcat")
        .args(["-L", "-b", &cluster.bootstrap, "-t", topic])
        .output()
        .unwrap();
    let md = String::from_utf8_lossy(&md.stdout).to_string();
    md.lines()
        .find(|l| l.trim_start().starts_with(&format!("partition {partition},")))
        .and_then(|l| l.split("leader ").nth(1))
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no leader in {md}"))
}

/// A plain HTTP GET; returns the status and the body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("metrics endpoint listens");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (
        status,
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    )
}

/// The value of a Prometheus metric (its first sample, whatever its labels).
pub fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .find(|l| l.starts_with(name) && (l[name.len()..].starts_with(' ') || l[name.len()..].starts_with('{')))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{body}"))
}

/// A free loopback `ip:port` (bound, then released).
pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// Waits until `f` holds, polling every 200 ms; panics with `what` after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Moves the log start of `topic`'s `partition` to `offset` (-1: its end) with
/// Kafka's own DeleteRecords tool.
pub fn delete_records(cluster: &KafkaCluster, topic: &str, partition: i32, offset: i64) {
    let spec = std::env::temp_dir().join(format!("{topic}-{partition}-delete.json"));
    std::fs::write(
        &spec,
        format!(r#"{{"version":1,"partitions":[{{"topic":"{topic}","partition":{partition},"offset":{offset}}}]}}"#),
    )
    .unwrap();
    cluster
        .tool(
            "org.apache.kafka.tools.DeleteRecordsCommand",
            &[
                "--bootstrap-server",
                &cluster.bootstrap,
                "--offset-json-file",
                spec.to_str().unwrap(),
            ],
        )
        .unwrap();
    let _ = std::fs::remove_file(&spec);
}

/// The `strait` binary with `args`; returns (exit success, stdout + stderr).
pub fn strait_cmd(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_strait"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Batch codecs in a partition's log (in log order), read by Kafka's DumpLogSegments.
pub fn log_codecs(dst: &KafkaCluster, topic: &str, partition: u32) -> Vec<String> {
    log_batches(dst, topic, partition)
        .into_iter()
        .map(|(_, codec)| codec)
        .collect()
}

/// Record count and codec of each batch in a partition's log (in log order),
/// read by Kafka's DumpLogSegments from the batch headers (records are not read).
pub fn log_batches(dst: &KafkaCluster, topic: &str, partition: u32) -> Vec<(u64, String)> {
    log_batch_lines(dst, topic, partition)
        .iter()
        .map(|line| {
            let count = batch_field(line, "count: ")
                .parse()
                .unwrap_or_else(|_| panic!("no count in {line}"));
            (count, batch_field(line, "compresscodec: "))
        })
        .collect()
}

/// The size in bytes of each batch in a partition's log (DumpLogSegments' `size`).
pub fn log_batch_sizes(dst: &KafkaCluster, topic: &str, partition: u32) -> Vec<u64> {
    log_batch_lines(dst, topic, partition)
        .iter()
        .map(|line| {
            batch_field(line, "size: ")
                .parse()
                .unwrap_or_else(|_| panic!("no size in {line}"))
        })
        .collect()
}

/// One field of a DumpLogSegments batch line.
fn batch_field(line: &str, name: &str) -> String {
    line.split(name)
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or("?")
        .to_string()
}

/// DumpLogSegments' line for each batch of a partition's log, in log order, from
/// the first node that has the partition; asserts none is a control batch.
fn log_batch_lines(dst: &KafkaCluster, topic: &str, partition: u32) -> Vec<String> {
    let mut lines = Vec::new();
    for node in 1..=dst.nodes {
        let dir = dst.data_dir(node).join(format!("{topic}-{partition}"));
        let Ok(files) = std::fs::read_dir(&dir) else { continue };
        for f in files.flatten() {
            let path = f.path();
            if path.extension().is_some_and(|e| e == "log") {
                let out = dst
                    .tool("kafka.tools.DumpLogSegments", &["--files", path.to_str().unwrap()])
                    .unwrap();
                for line in out.lines().filter(|l| l.starts_with("baseOffset:")) {
                    assert!(
                        line.contains("isControl: false"),
                        "control batch on the destination: {line}"
                    );
                    lines.push(line.to_string());
                }
            }
        }
        if !lines.is_empty() {
            break;
        }
    }
    lines
}
