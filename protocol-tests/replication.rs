//! Replication engine acceptance tests against real Apache Kafka clusters.
//!
//! Data is written to the source and read back from both sides by an
//! independent client (`protocol-tests/tools/kafka_tool.py`, librdkafka via
//! confluent-kafka) and Kafka's own `DumpLogSegments`; strait never grades its
//! own output.

mod common;
mod harness;

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use harness::{b64, group_offset};
use harness::{unique_topic, KafkaCluster};
use kafka_protocol::messages::ProduceRequest;
use serde_json::Value;
use strait::batch::testdata as records;
use strait::batch::writer::{write_batch, BatchSpec, RecordSpec};
use strait::client::{Client, ClientConfig};
use strait::protocol::{ProducePartition, ProduceTopic};

/// A transactional load of `transactions` × `per_txn` records, aborting every
/// `abort_every`-th transaction; returns the tool's summary.
fn txn(c: &KafkaCluster, topic: &str, transactions: u32, per_txn: u32, abort_every: u32, extra: &[&str]) -> Value {
    let (t, n, a) = (transactions.to_string(), per_txn.to_string(), abort_every.to_string());
    let mut args = vec![
        "txn",
        "--bootstrap",
        &c.bootstrap,
        "--topic",
        topic,
        "--transactions",
        &t,
        "--per-txn",
        &n,
        "--abort-every",
        &a,
    ];
    args.extend(extra);
    json(&tool(&args))
}

/// Every record of `topic`, read by the independent client.
fn dump(bootstrap: &str, topic: &str, isolation: &str) -> Vec<Value> {
    tool(&[
        "dump",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--isolation",
        isolation,
    ])
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}

/// A record's identity, independent of its offset.
fn record_id(v: &Value) -> String {
    format!("{}|{}|{}|{}", v["k"], v["v"], v["h"], v["ts"])
}

const CODECS: [&str; 8] = ["none", "gzip", "snappy", "lz4", "zstd", "lz4", "zstd", "none"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_replicates_record_for_record() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let prefix = unique_topic("codecs");
    let topics: Vec<String> = CODECS
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{prefix}-{i}-{c}"))
        .collect();
    for (i, t) in topics.iter().enumerate() {
        create(src, t, 4, &["retention.ms=-1"]);
        let idempotent: &[&str] = if i >= 5 {
            &["--idempotent", "--value-size", "700"]
        } else {
            &[]
        };
        load(src, t, 12_500, CODECS[i], idempotent);
    }
    // Coalescing off: this test is about the raw path, every batch forwarded as is.
    let r = start(config(
        &unique_topic("codecs"),
        src,
        dst,
        &format!("{prefix}-.*"),
        "coalesce_below_bytes = 0",
    ))
    .await;
    r.wait_records(100_000, Duration::from_secs(120)).await;
    let s = r.stop().await;
    assert_eq!(s.records, 100_000, "no record produced twice");
    assert_eq!(s.batches_slow, 0, "no slow path without compaction");
    eprintln!(
        "codecs: {} batches raw, {} re-encoded (slow-path share 0%)",
        s.batches_fast, s.batches_slow
    );
    for (i, t) in topics.iter().enumerate() {
        let v = assert_same(src, t, dst, t, &[]);
        assert_eq!(v["source_records"], 12_500);
        assert_eq!(v["duplicates"], 0);
        // Each batch keeps its codec (librdkafka sends a batch uncompressed when
        // compression does not shrink it, so compare with the source's log).
        let codecs = log_codecs(dst, t, 0);
        assert!(!codecs.is_empty(), "no batches found for {t}");
        assert_eq!(
            codecs,
            log_codecs(src, t, 0),
            "{t}: batch codecs differ from the source's"
        );
        assert!(
            codecs.iter().any(|c| c == CODECS[i]),
            "{t}: no {} batch at all: {codecs:?}",
            CODECS[i]
        );
    }
    // The destination topic was created with compression.type=producer and the source's configs.
    let info = json(&tool(&[
        "topic-info",
        "--bootstrap",
        &dst.bootstrap,
        "--topic",
        &topics[0],
    ]));
    assert_eq!(info["configs"]["compression.type"], "producer", "{info}");
    assert_eq!(info["configs"]["retention.ms"], "-1", "{info}");
    assert_eq!(info["partitions"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_keep_only_committed_records() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic("txn");
    create(src, &t, 2, &["retention.ms=-1"]);
    load(src, &t, 1_000, "lz4", &["--idempotent"]);
    let summary = txn(src, &t, 30, 100, 3, &["--codec", "zstd"]);
    assert_eq!(summary["committed"], 20);
    let r = start(config(&unique_topic("txn"), src, dst, &t, "")).await;
    r.wait_records(3_000, Duration::from_secs(60)).await;
    // Let the trailing markers be consumed, then stop.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = r.stop().await;
    assert_eq!(s.records, 3_000);
    let m = assert_same(src, &t, dst, &t, &["--isolation", "read_committed"]);
    assert_eq!(m["source_records"], 3_000);
    // Nothing aborted and no markers reached the destination, even for a read_uncommitted reader:
    // markers would occupy offsets, so every offset holds a record.
    let dump = tool(&[
        "dump",
        "--bootstrap",
        &dst.bootstrap,
        "--topic",
        &t,
        "--isolation",
        "read_uncommitted",
    ]);
    assert_eq!(dump.lines().count(), 3_000);
    let count = json(&tool(&["count", "--bootstrap", &dst.bootstrap, "--topic", &t]));
    for p in ["0", "1"] {
        let end = count["offsets"][p][1].as_i64().unwrap();
        assert_eq!(
            count["partitions"][p].as_i64().unwrap(),
            end,
            "partition {p}: offsets without records: {count}"
        );
    }
    assert!(
        !dump.contains("QUJPUlRFRC"),
        "base64 of 'ABORTED' found on the destination"
    );
    for p in 0..2 {
        let codecs = log_codecs(dst, &t, p);
        assert!(
            codecs.iter().all(|c| c == "lz4" || c == "zstd" || c == "none"),
            "{codecs:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_topic_with_gaps_replicates_every_survivor() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic("compact");
    create(
        src,
        &t,
        2,
        &[
            "cleanup.policy=compact",
            "segment.ms=200",
            "min.cleanable.dirty.ratio=0.001",
            "retention.ms=-1",
            "delete.retention.ms=86400000",
        ],
    );
    load(
        src,
        &t,
        10_000,
        "lz4",
        &["--keys", "300", "--value-size", "50", "--no-null-keys"],
    );
    // Roll the segments and wait for the cleaner to leave offset gaps.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut round = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        round += 1;
        load(
            src,
            &t,
            10,
            "lz4",
            &[
                "--keys",
                "300",
                "--value-size",
                "50",
                "--no-null-keys",
                "--start-index",
                &(1_000_000 + round * 10).to_string(),
            ],
        );
        let c = json(&tool(&["count", "--bootstrap", &src.bootstrap, "--topic", &t]));
        let total = c["total"].as_i64().unwrap();
        let end: i64 = ["0", "1"].iter().map(|p| c["offsets"][p][1].as_i64().unwrap()).sum();
        if total < end / 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the log cleaner did not compact {t}: {c}");
    }
    // Freeze the cleaner before replicating: otherwise it keeps removing records while strait
    // reads, and neither "how many survive" nor the source/destination comparison is stable.
    // The destination topic inherits these settings, so it does not compact either. A high
    // dirty ratio is not enough there: the loaded timestamps span more than `segment.ms`, so
    // the destination rolls a segment that is 100 % dirty and cleans it (CI saw 107 records
    // go). A compaction lag longer than the records' age keeps every segment uncleanable.
    let admin = strait::client::Client::connect(strait::client::ClientConfig::new(&src.bootstrap))
        .await
        .unwrap();
    admin
        .alter_topic_configs(
            &t,
            &[
                ("segment.ms".into(), Some("604800000".into())),
                ("min.compaction.lag.ms".into(), Some(i64::MAX.to_string())),
            ],
        )
        .await
        .unwrap();
    // strait copies the configs the broker describes: wait until it describes these,
    // or the destination topic is created compacting and drops records under the comparison.
    let frozen = Instant::now() + Duration::from_secs(30);
    loop {
        let info = json(&tool(&["topic-info", "--bootstrap", &src.bootstrap, "--topic", &t]));
        if info["configs"]["segment.ms"] == "604800000"
            && info["configs"]["min.compaction.lag.ms"] == i64::MAX.to_string().as_str()
        {
            break;
        }
        assert!(
            Instant::now() < frozen,
            "config change did not reach the broker: {info}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut survivors = 0;
    let mut stable = 0;
    while stable < 4 {
        tokio::time::sleep(Duration::from_millis(750)).await;
        let c = json(&tool(&["count", "--bootstrap", &src.bootstrap, "--topic", &t]));
        let total = c["total"].as_u64().unwrap();
        stable = if total == survivors { stable + 1 } else { 0 };
        survivors = total;
        assert!(
            Instant::now() < deadline + Duration::from_secs(60),
            "{t} kept changing: {c}"
        );
    }
    let r = start(config(&unique_topic("compact"), src, dst, &t, "")).await;
    r.wait_records(survivors, Duration::from_secs(60)).await;
    let slow = strait::replicate::metrics::Metrics::get(&r.handle.metrics.batches_slow);
    let pct = r.handle.metrics.slow_path_percent();
    let s = r.stop().await;
    assert!(slow > 0, "compacted batches took the slow path");
    eprintln!(
        "compacted: {survivors} surviving records, {} batches raw, {} re-encoded, slow-path share {pct:.1}%",
        s.batches_fast, s.batches_slow
    );
    assert_same(src, &t, dst, &t, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_topics_partitions_and_configs_propagate_while_running() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let prefix = unique_topic("live");
    let a = format!("{prefix}-a");
    create(src, &a, 2, &["retention.ms=-1"]);
    load(src, &a, 2_000, "snappy", &[]);
    let r = start(config(&unique_topic("live"), src, dst, &format!("{prefix}-.*"), "")).await;
    r.wait_records(2_000, Duration::from_secs(60)).await;
    // A new matching topic is picked up within the refresh interval (1 s here).
    let b = format!("{prefix}-b");
    create(src, &b, 3, &["retention.ms=-1"]);
    load(src, &b, 1_500, "gzip", &[]);
    r.wait_records(3_500, Duration::from_secs(30)).await;
    // Partition increase and config change on the source.
    let admin = strait::client::Client::connect(strait::client::ClientConfig::new(&src.bootstrap))
        .await
        .unwrap();
    admin.create_partitions(&a, 4, 30_000).await.unwrap();
    admin
        .alter_topic_configs(
            &a,
            &[
                ("retention.ms".into(), Some("86400000".into())),
                ("max.message.bytes".into(), Some("2000000".into())),
            ],
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = json(&tool(&["topic-info", "--bootstrap", &dst.bootstrap, "--topic", &a]));
        if info["partitions"] == 4
            && info["configs"]["retention.ms"] == "86400000"
            && info["configs"]["max.message.bytes"] == "2000000"
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "changes did not reach the destination: {info}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Records written to the new partitions are replicated too.
    load(src, &a, 2_000, "snappy", &["--start-index", "2000"]);
    r.wait_records(5_500, Duration::from_secs(30)).await;
    r.stop().await;
    assert_same(src, &a, dst, &a, &[]);
    assert_same(src, &b, dst, &b, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_loses_nothing() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic("kill");
    create(src, &t, 4, &["retention.ms=-1"]);
    load(src, &t, 300_000, "lz4", &["--value-size", "300"]);
    let name = unique_topic("kill");
    let cfg_path = config_file(
        &name,
        &src.bootstrap,
        &dst.bootstrap,
        &t,
        "max_buffered_bytes = 1048576\nfetch_max_bytes = 16384\nfetch_partition_max_bytes = 4096\n\
         max_in_flight_per_partition = 1",
        "",
    );
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_strait"))
            .args(["run", "--config", cfg_path.to_str().unwrap(), "--progress", "0"])
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap()
    };
    let dest_count = || {
        json(&tool(&["count", "--bootstrap", &dst.bootstrap, "--topic", &t]))["total"]
            .as_u64()
            .unwrap_or(0)
    };
    // Kill it twice mid-stream.
    let mut at_kill = Vec::new();
    for _ in 0..2 {
        let mut child = spawn();
        let before = Instant::now();
        let seen = at_kill.last().copied().unwrap_or(0);
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let n = if dst_has_topic(dst, &t) { dest_count() } else { 0 };
            if n > seen || before.elapsed() > Duration::from_secs(30) {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        at_kill.push(dest_count());
    }
    eprintln!("destination records when strait was SIGKILLed: {at_kill:?} of 300000");
    assert!(at_kill[0] < 300_000, "first kill landed mid-stream");
    let mut child = spawn();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = compare(src, &t, dst, &t, &["--allow-duplicates"]);
        assert_eq!(v["order_violations"], 0, "{v}");
        assert_eq!(v["mismatched"], 0, "{v}");
        if v["missing"] == 0 && v["ok"] == true {
            eprintln!(
                "SIGKILL x2 then restart: 0 lost, {} duplicates of {} records",
                v["duplicates"], v["source_records"]
            );
            break;
        }
        assert!(Instant::now() < deadline, "not caught up after restart: {v}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // SIGTERM: graceful stop (final checkpoint), exit 0 within a bounded time.
    let term = |child: &mut std::process::Child| {
        let pid = child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let t = Instant::now();
        let status = child.wait().unwrap();
        assert!(status.success(), "strait exits 0 on SIGTERM");
        assert!(t.elapsed() < Duration::from_secs(35), "stopped within the drain bound");
    };
    term(&mut child);
    // A restart after SIGTERM re-sends nothing.
    let before = dest_count();
    let again = Command::new(env!("CARGO_BIN_EXE_strait"))
        .args(["run", "--config", cfg_path.to_str().unwrap(), "--progress", "0"])
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = again.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let out = again.wait_with_output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stopped: 0 records"),
        "restart after SIGTERM re-sent records: {err}"
    );
    assert_eq!(dest_count(), before, "the destination did not grow");
    let _ = std::fs::remove_file(&cfg_path);
}

/// Exactly-once mode under 20 SIGKILLs: a `read_committed` reader of the
/// destination sees every source record once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_survives_repeated_sigkills() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic("eos-kill");
    let total = 200_000u64;
    create(src, &t, 4, &["retention.ms=-1"]);
    // Batches of ~5 records, replicated one batch per partition per round trip
    // (no coalescing), keep the replication slow enough for the kills to land mid-stream.
    load(
        src,
        &t,
        total as usize,
        "lz4",
        &["--value-size", "200", "--batch-size", "1024", "--linger-ms", "0"],
    );
    let name = unique_topic("eos-kill");
    let cfg_path = config_file(
        &name,
        &src.bootstrap,
        &dst.bootstrap,
        &t,
        "exactly_once = true\ntransaction_interval_ms = 300\nmax_buffered_bytes = 1048576\n\
         fetch_max_bytes = 32768\nfetch_partition_max_bytes = 8192\ncoalesce_below_bytes = 0\n\
         max_in_flight_per_partition = 1",
        "",
    );
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_strait"))
            .args(["run", "--config", cfg_path.to_str().unwrap(), "--progress", "0"])
            .env("RUST_LOG", "warn")
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let count = |isolation: &str| {
        json(&tool(&[
            "count",
            "--bootstrap",
            &dst.bootstrap,
            "--topic",
            &t,
            "--isolation",
            isolation,
        ]))["total"]
            .as_u64()
            .unwrap_or(0)
    };
    let mut kills = Vec::new();
    let mut rng = fastrand::Rng::with_seed(std::process::id() as u64);
    // 20 kills at random moments: during start-up, mid-transaction, while committing.
    while kills.len() < 20 {
        let mut child = spawn();
        tokio::time::sleep(Duration::from_millis(rng.u64(200..1_500))).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let committed = if dst_has_topic(dst, &t) {
            count("read_committed")
        } else {
            0
        };
        kills.push(committed);
    }
    let mid_stream = kills.iter().filter(|n| **n < total).count();
    let written = count("read_uncommitted");
    eprintln!(
        "exactly-once: committed records at each of {} SIGKILLs: {kills:?}; {written} records in the \
         destination log (aborted transactions included)",
        kills.len()
    );
    assert!(mid_stream >= 10, "at least 10 kills landed mid-stream: {kills:?}");
    // A last run (same name: same transactional id and checkpoints; default fetch
    // sizes) finishes the job.
    let fast_path = std::env::temp_dir().join(format!("{name}-fast.toml"));
    std::fs::write(
        &fast_path,
        config_text(&name, &src.bootstrap, &dst.bootstrap, &t, "exactly_once = true", ""),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_strait"))
        .args(["run", "--config", fast_path.to_str().unwrap(), "--progress", "0"])
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while count("read_committed") < total {
        assert!(Instant::now() < deadline, "not caught up after the last restart");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert!(child.wait().unwrap().success(), "exits 0 on SIGTERM");
    let v = compare(src, &t, dst, &t, &["--isolation", "read_committed"]);
    assert_eq!(v["missing"], 0, "lost: {v}");
    assert_eq!(v["duplicates"], 0, "duplicated: {v}");
    assert_eq!(v["order_violations"], 0, "reordered: {v}");
    assert_eq!(v["mismatched"], 0, "changed: {v}");
    assert_eq!(v["ok"], true, "{v}");
    eprintln!(
        "exactly-once after {} SIGKILLs: {} records, 0 lost, 0 duplicated (read_committed)",
        kills.len(),
        v["dest_records"]
    );
    // The offset map, written in the same transactions, is exact too.
    assert_eq!(check_offset_map(src, dst, &t, &name, "read_committed"), total as usize);
    let _ = std::fs::remove_file(&cfg_path);
    let _ = std::fs::remove_file(&fast_path);
}

/// A second instance of the same exactly-once replication fences the first,
/// which stops with a clear error; the second finishes without duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_second_instance_fences_the_first() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic("eos-fence");
    create(src, &t, 2, &["retention.ms=-1"]);
    load(src, &t, 60_000, "none", &["--value-size", "200"]);
    let name = unique_topic("eos-fence");
    let cfg_path = config_file(
        &name,
        &src.bootstrap,
        &dst.bootstrap,
        &t,
        "exactly_once = true\ntransaction_interval_ms = 200\nmax_buffered_bytes = 1048576\n\
         fetch_max_bytes = 16384\nfetch_partition_max_bytes = 4096",
        "",
    );
    // stderr to files, never to pipes nobody reads (a full pipe blocks the process).
    let spawn = |log: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_strait"))
            .args(["run", "--config", cfg_path.to_str().unwrap(), "--progress", "0"])
            .env("RUST_LOG", "warn")
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap()
    };
    let (log1, log2) = (
        std::env::temp_dir().join(format!("{name}-1.log")),
        std::env::temp_dir().join(format!("{name}-2.log")),
    );
    let mut first = spawn(&log1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut second = spawn(&log2);
    // New source records: the first instance must write again, and so learns it
    // was fenced (an idle transactional producer talks to no broker).
    load(
        src,
        &t,
        20_000,
        "none",
        &["--value-size", "200", "--start-index", "60000"],
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = first.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = first.kill();
            let _ = second.kill();
            panic!(
                "the first instance was not fenced within 90 s: {}",
                std::fs::read_to_string(&log1).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let err = std::fs::read_to_string(&log1).unwrap_or_default();
    eprintln!("fenced instance: {}", err.lines().last().unwrap_or_default());
    assert!(!status.success(), "the fenced instance exits non-zero");
    assert!(
        err.contains("fenced by another strait instance")
            || err.contains("took over")
            || err.contains("another strait process joined with instance id"),
        "clear fencing error: {err}"
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let v = compare(src, &t, dst, &t, &["--isolation", "read_committed"]);
        assert_eq!(v["duplicates"], 0, "{v}");
        if v["ok"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "second instance did not finish: {v}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let _ = second.kill();
    let _ = second.wait();
    for f in [&cfg_path, &log1, &log2] {
        let _ = std::fs::remove_file(f);
    }
}

/// Replicates 60k records (80k in the end: the source keeps taking writes),
/// killing the leader of partition 0 on `victim` (the source or the destination)
/// mid-stream and restarting it; asserts nothing is lost and memory stayed within
/// `max_buffered_bytes`. `load_args` go to every load.
async fn leader_killed_mid_stream(
    src: &KafkaCluster,
    dst: &KafkaCluster,
    victim: &KafkaCluster,
    t: &str,
    extra: &str,
    load_args: &[&str],
) {
    let base: Vec<&str> = [&["--value-size", "300"][..], load_args].concat();
    load(src, t, 60_000, "zstd", &base);
    let cfg =
        format!("{extra}\nmax_buffered_bytes = 2097152\nfetch_max_bytes = 262144\nfetch_partition_max_bytes = 65536");
    let r = start(config(&unique_topic("failover"), src, dst, t, &cfg)).await;
    r.wait_records(5_000, Duration::from_secs(60)).await;
    let leader = leader_of(victim, t, 0);
    victim.kill_node(leader).unwrap();
    let killed_at = strait::replicate::metrics::Metrics::get(&r.handle.metrics.records);
    // Keep writing to the source while the victim cluster elects new leaders.
    let more: Vec<&str> = [&["--start-index", "60000"][..], &base].concat();
    load(src, t, 20_000, "zstd", &more);
    r.wait_records(80_000, Duration::from_secs(120)).await;
    victim.start_node(leader).unwrap();
    // While a side stalled, fetching waited: memory stayed under max_buffered_bytes.
    let peak = r.handle.peak_buffered_bytes();
    assert!(peak <= 2_097_152, "held {peak} bytes, above max_buffered_bytes");
    assert!(peak > 0);
    let s = r.stop().await;
    let side = if std::ptr::eq(victim, src) {
        "source"
    } else {
        "destination"
    };
    eprintln!(
        "{side} leader {leader} killed after {killed_at} records; {} records replicated",
        s.records
    );
    let v = assert_same(src, t, dst, t, &["--allow-duplicates"]);
    eprintln!("{side} leader kill: 0 lost, {} duplicates", v["duplicates"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_leader_killed_mid_stream_loses_nothing() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_three());
    let t = unique_topic("failover");
    create(src, &t, 3, &["retention.ms=-1"]);
    leader_killed_mid_stream(src, dst, dst, &t, "replication_factor = 3", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_3_9_source_to_kafka_4_destination() {
    let (src, dst) = (harness::kafka3(), harness::kafka4_dest());
    let prefix = unique_topic("x39");
    for (codec, n) in [("zstd", 20_000), ("gzip", 10_000)] {
        let t = format!("{prefix}-{codec}");
        create(src, &t, 3, &["retention.ms=-1"]);
        load(src, &t, n, codec, &["--idempotent"]);
    }
    let r = start(config(
        &unique_topic("x39"),
        src,
        dst,
        &format!("{prefix}-.*"),
        "coalesce_below_bytes = 0",
    ))
    .await;
    r.wait_records(30_000, Duration::from_secs(90)).await;
    r.stop().await;
    for codec in ["zstd", "gzip"] {
        let t = format!("{prefix}-{codec}");
        let v = assert_same(src, &t, dst, &t, &[]);
        assert_eq!(v["duplicates"], 0);
        assert_eq!(log_codecs(dst, &t, 0), log_codecs(src, &t, 0), "{t}: batch codecs kept");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_rejection_stops_the_partition_with_a_clear_error() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let prefix = unique_topic("reject");
    let (big, small) = (format!("{prefix}-big"), format!("{prefix}-small"));
    create(src, &big, 2, &["retention.ms=-1"]);
    create(src, &small, 2, &["retention.ms=-1"]);
    // The destination topic exists already and refuses batches over 10 kB.
    create(dst, &big, 2, &["retention.ms=-1", "max.message.bytes=10000"]);
    // Topic configs are not synced here: without retention.ms=-1 on the
    // destination, the broker's retention would delete the loader's 2023
    // timestamps while the comparison reads (it did, in CI).
    create(dst, &small, 2, &["retention.ms=-1"]);
    load(src, &big, 40, "none", &["--value-size", "20000"]);
    load(src, &small, 3_000, "lz4", &[]);
    let r = start(config(
        &unique_topic("reject"),
        src,
        dst,
        &format!("{prefix}-.*"),
        "sync_topic_configs = false",
    ))
    .await;
    r.wait_records(3_000, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = r.stop().await;
    assert_same(src, &small, dst, &small, &[]);
    assert_eq!(s.stopped.len(), 2, "both partitions of {big} stopped: {:?}", s.stopped);
    for reason in &s.stopped {
        assert!(
            reason.contains(&big) && reason.contains("partition") && reason.contains("offset"),
            "{reason}"
        );
        assert!(
            reason.contains("MessageTooLarge") || reason.contains("RecordListTooLarge"),
            "{reason}"
        );
    }
    // Nothing of the refused partitions was skipped silently: the destination has none of it.
    let c = json(&tool(&["count", "--bootstrap", &dst.bootstrap, "--topic", &big]));
    assert_eq!(c["total"], 0, "{c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_overtaking_the_checkpoint_is_skipped_and_counted() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic("oor");
    create(src, &t, 1, &["retention.ms=-1"]);
    load(src, &t, 1_000, "none", &[]);
    let name = unique_topic("oor");
    let r = start(config(&name, src, dst, &t, "")).await;
    r.wait_records(1_000, Duration::from_secs(60)).await;
    r.stop().await;
    // While strait is down, more records arrive and retention deletes past its checkpoint.
    load(src, &t, 1_000, "none", &["--start-index", "1000"]);
    let spec = std::env::temp_dir().join(format!("{t}.json"));
    std::fs::write(
        &spec,
        format!(r#"{{"version":1,"partitions":[{{"topic":"{t}","partition":0,"offset":1500}}]}}"#),
    )
    .unwrap();
    src.tool(
        "org.apache.kafka.tools.DeleteRecordsCommand",
        &[
            "--bootstrap-server",
            &src.bootstrap,
            "--offset-json-file",
            spec.to_str().unwrap(),
        ],
    )
    .unwrap();
    let r = start(config(&name, src, dst, &t, "")).await;
    r.wait_records(500, Duration::from_secs(60)).await;
    let skipped = strait::replicate::metrics::Metrics::get(&r.handle.metrics.offsets_skipped);
    let s = r.stop().await;
    assert_eq!(skipped, 500, "offsets 1000..1500 were deleted before strait read them");
    assert_eq!(
        s.records, 500,
        "the batch straddling the new log start lost its deleted records"
    );
    let c = json(&tool(&["count", "--bootstrap", &dst.bootstrap, "--topic", &t]));
    assert_eq!(c["total"], 1_500, "{c}");
    // The destination holds exactly source offsets 0..1000 and 1500..2000.
    let idx = record_indexes(dst, &t);
    assert!(
        idx.iter().all(|i| *i < 1000 || (1500..2000).contains(i)),
        "records deleted on the source reached the destination"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_map_translates_every_record_exactly() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic("map");
    create(src, &t, 2, &["retention.ms=-1"]);
    load(src, &t, 500, "lz4", &["--idempotent"]);
    txn(src, &t, 10, 50, 2, &[]);
    load(src, &t, 500, "gzip", &["--start-index", "500"]);
    let name = unique_topic("map");
    let r = start(config(&name, src, dst, &t, "")).await;
    r.wait_records(1_250, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    r.stop().await;
    let checked = check_offset_map(src, dst, &t, &name, "read_uncommitted");
    assert_eq!(checked, 1_250);
}

/// Checks, with the independent client, that the offset map of replication `name`
/// translates every committed source record of `t` to the destination offset of
/// the same record (destination read with `dst_iso`). Returns the records checked.
fn check_offset_map(src: &KafkaCluster, dst: &KafkaCluster, t: &str, name: &str, dst_iso: &str) -> usize {
    use strait::replicate::offset_map::{decode_value, translate, MapEntry};
    // The map as written to the destination (committed transactions only).
    let map_topic = format!("__strait.{name}.offsets");
    let mut runs: std::collections::HashMap<i64, Vec<MapEntry>> = Default::default();
    for line in tool(&[
        "dump",
        "--bootstrap",
        &dst.bootstrap,
        "--topic",
        &map_topic,
        "--isolation",
        "read_committed",
    ])
    .lines()
    {
        let rec: Value = serde_json::from_str(line).unwrap();
        let key = String::from_utf8(b64(rec["k"].as_str().unwrap())).unwrap();
        let (topic, part) = key.rsplit_once(':').unwrap();
        assert_eq!(topic, t);
        let (src_topic, entries) = decode_value(&b64(rec["v"].as_str().unwrap())).expect("valid map record");
        assert_eq!(src_topic, t);
        runs.entry(part.parse().unwrap()).or_default().extend(entries);
    }
    // Match every record by content: source offset → translated == destination offset.
    let index = |bootstrap: &str, iso: &str| -> std::collections::HashMap<String, (i64, i64)> {
        tool(&["dump", "--bootstrap", bootstrap, "--topic", t, "--isolation", iso])
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                let id = format!("{}|{}|{}|{}|{}", v["p"], v["k"], v["v"], v["h"], v["ts"]);
                (id, (v["p"].as_i64().unwrap(), v["o"].as_i64().unwrap()))
            })
            .collect()
    };
    let (s, d) = (index(&src.bootstrap, "read_committed"), index(&dst.bootstrap, dst_iso));
    let mut checked = 0;
    for r in runs.values_mut() {
        r.sort_by_key(|e| e.src_base);
    }
    for (id, (p, so)) in &s {
        let (dp, dof) = d[id];
        assert_eq!(dp, *p);
        assert_eq!(
            translate(&runs[p], *so),
            Some(dof),
            "source {p}@{so} should map to destination {dof}"
        );
        checked += 1;
    }
    eprintln!(
        "offset map: {checked} records translated exactly; runs per partition: {:?}",
        runs.iter().map(|(p, r)| (p, r.len())).collect::<Vec<_>>()
    );
    checked
}

/// The loader's record index (`idx` header) of every record of `topic`, read
/// by the independent client, in partition and offset order.
fn record_indexes(c: &KafkaCluster, topic: &str) -> Vec<u64> {
    tool(&["dump", "--bootstrap", &c.bootstrap, "--topic", topic])
        .lines()
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let h = v["h"].as_array()?;
            let b = h.iter().find(|kv| kv[0] == "idx")?[1].as_str()?.to_string();
            String::from_utf8(b64(&b)).ok()?.parse().ok()
        })
        .collect()
}

/// Records of `topic` on `c`, counted by the independent client (0 while
/// the topic does not exist).
fn count_of(c: &KafkaCluster, topic: &str) -> u64 {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/protocol-tests/tools/kafka_tool.py");
    Command::new("python3")
        .args([
            script,
            "count",
            "--bootstrap",
            &c.bootstrap,
            "--topic",
            topic,
            "--timeout",
            "10",
        ])
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice::<Value>(o.stdout.trim_ascii()).ok())
        .and_then(|v| v["total"].as_u64())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_deleted_and_created_again_under_strait_lose_nothing() {
    // The `strait` binary, as an operator runs it: its log is read too.
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic("recreate");
    create(src, &t, 2, &["retention.ms=-1"]);
    load(src, &t, 1_000, "lz4", &[]);
    let name = unique_topic("recreate");
    let path = config_file(&name, &src.bootstrap, &dst.bootstrap, &t, "", "");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_strait"))
            .args(["run", "--config", path.to_str().unwrap(), "--progress", "0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let stop = |child: std::process::Child| {
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "a clean stop");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < deadline, "{what} after 60 s");
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let warnings = |log: &str, says: &str| {
        log.lines()
            .filter(|l| l.contains("WARN") && l.contains(says) && l.contains(&t))
            .count()
    };
    tokio::task::block_in_place(|| {
        let child = run();
        wait("1,000 records replicated", &|| count_of(dst, &t) >= 1_000);

        // The destination topic is deleted under strait while the source grows:
        // everything the source holds comes back, each record once.
        tool(&["delete", "--bootstrap", &dst.bootstrap, "--topic", &t]);
        load(src, &t, 300, "lz4", &["--start-index", "1000"]);
        wait("the destination topic replicated again", &|| count_of(dst, &t) >= 1_300);
        let v = assert_same(src, &t, dst, &t, &[]);
        assert_eq!(v["duplicates"], 0, "{v}");
        let mut want = record_indexes(src, &t);

        // The source topic is deleted and created again with new records: they
        // are replicated from the new topic's log start (none skipped as if
        // retention had removed them).
        tool(&["delete", "--bootstrap", &src.bootstrap, "--topic", &t]);
        create(src, &t, 2, &["retention.ms=-1"]);
        load(src, &t, 200, "lz4", &["--start-index", "5000"]);
        wait("the new source topic replicated", &|| count_of(dst, &t) >= 1_500);
        want.extend(record_indexes(src, &t));
        want.sort_unstable();
        // Nothing more arrives (a second start-over would copy the new topic twice).
        std::thread::sleep(Duration::from_secs(3));
        let log = stop(child);
        assert_eq!(
            warnings(&log, "the destination topic was deleted"),
            1,
            "the log names the reset once: {log}"
        );
        assert_eq!(
            warnings(&log, "the source topic was deleted and created again"),
            1,
            "{log}"
        );
        assert!(
            !log.contains("retention removed records"),
            "not mistaken for retention: {log}"
        );
        let mut idx = record_indexes(dst, &t);
        idx.sort_unstable();
        let missing: Vec<&u64> = want.iter().filter(|i| idx.binary_search(i).is_err()).collect();
        assert_eq!(
            idx.len(),
            want.len(),
            "destination holds {} records; missing {:?}",
            idx.len(),
            &missing[..missing.len().min(20)]
        );
        assert_eq!(idx, want, "each record of the old and the new source topic once");

        // Created again while strait is stopped: the committed positions name the
        // old topic ids, so the restart starts the new topic from its log start.
        tool(&["delete", "--bootstrap", &src.bootstrap, "--topic", &t]);
        create(src, &t, 2, &["retention.ms=-1"]);
        load(src, &t, 100, "lz4", &["--start-index", "9000"]);
        want.extend(record_indexes(src, &t));
        want.sort_unstable();
        let child = run();
        wait("the new topic replicated after the restart", &|| {
            count_of(dst, &t) >= 1_600
        });
        let log = stop(child);
        assert_eq!(
            warnings(&log, "the committed positions name the old topic ids"),
            1,
            "{log}"
        );
        let mut idx = record_indexes(dst, &t);
        idx.sort_unstable();
        assert_eq!(idx, want, "each record once after the restart");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_record_batches_are_coalesced_without_changing_records() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let prefix = unique_topic("tiny");
    let mut topics = Vec::new();
    for codec in ["lz4", "none"] {
        let t = format!("{prefix}-{codec}");
        create(src, &t, 2, &["retention.ms=-1"]);
        // linger.ms=0 and a 1-byte batch.size: librdkafka writes one record per batch.
        load(
            src,
            &t,
            6_000,
            codec,
            &["--linger-ms", "0", "--batch-size", "1", "--value-size", "200"],
        );
        topics.push(t);
    }
    let r = start(config(&unique_topic("tiny"), src, dst, &format!("{prefix}-.*"), "")).await;
    r.wait_records(12_000, Duration::from_secs(60)).await;
    let coalesced = strait::replicate::metrics::Metrics::get(&r.handle.metrics.batches_coalesced);
    let s = r.stop().await;
    assert_eq!(s.records, 12_000);
    assert!(coalesced > 1_000, "only {coalesced} batches coalesced");
    for t in &topics {
        assert_same(src, t, dst, t, &[]);
        let (src_batches, dst_batches) = (log_codecs(src, t, 0).len(), log_codecs(dst, t, 0).len());
        eprintln!("{t}: {src_batches} source batches -> {dst_batches} destination batches");
        assert!(
            dst_batches * 4 < src_batches,
            "{src_batches} source batches became {dst_batches}"
        );
    }
}

/// `strait bench --rate`: the loader holds the asked rate and the report has
/// the latency at that load (warm-up left out) and its stages.
#[test]
fn bench_at_a_steady_rate_reports_latency_and_the_rate_achieved() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    // 2 MB/s of 1000-byte records for 6 s: 3 s of warm-up, 3 s measured.
    let out = Command::new(env!("CARGO_BIN_EXE_strait"))
        .args(["bench", "--source", &src.bootstrap, "--destination", &dst.bootstrap])
        .args(["--rate", "2MB/s", "--records", "12000", "--record-size", "1000"])
        .args(["--partitions", "4", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let r = json(&stdout);
    eprintln!("bench --rate 2MB/s: {r}");
    assert_eq!(r["records"], 12_000, "{r}");
    let l = &r["latency_ms"];
    let ms = |v: &Value| v.as_f64().unwrap_or_else(|| panic!("not a number: {r}"));
    assert!(ms(&l["p50"]) > 0.0 && ms(&l["p99"]) >= ms(&l["p50"]), "{r}");
    assert!(ms(&l["p99"]).is_finite() && ms(&l["max"]) >= ms(&l["p999"]), "{r}");
    for stage in ["fetch", "queue", "produce"] {
        let s = &r["stage_latency_ms"][stage];
        assert!(ms(&s["p99"]) >= ms(&s["p50"]), "{stage}: {r}");
    }
    let rate = &r["rate"];
    assert_eq!(
        (rate["asked"].as_f64(), rate["unit"].as_str()),
        (Some(2.0), Some("MB/s")),
        "{r}"
    );
    let achieved = ms(&rate["achieved"]);
    assert!((1.6..=2.4).contains(&achieved), "achieved {achieved} MB/s of 2: {r}");
    assert!(ms(&rate["warmup_s"]) >= 3.0, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_endpoints_move_with_replication() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic("metrics");
    create(src, &t, 2, &["retention.ms=-1"]);
    load(src, &t, 5_000, "lz4", &[]);
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let r = start(config(
        &unique_topic("metrics"),
        src,
        dst,
        &t,
        &format!("metrics_address = \"{addr}\""),
    ))
    .await;
    assert_eq!(http_get(&addr, "/healthz").0, 200);
    r.wait_records(5_000, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(600)).await; // a checkpoint
    let (status, first) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(metric(&first, "strait_records_total"), 5_000.0);
    assert!(
        first.contains(&format!("topic=\"{t}\",partition=\"0\"}} 0")) && first.contains("strait_lag_records{"),
        "{first}"
    );
    assert!(metric(&first, "strait_replication_latency_seconds_count") >= 5_000.0);
    // Every acknowledged record is charged to each stage of its way.
    for stage in ["fetch", "queue", "produce"] {
        let count = first
            .lines()
            .find(|l| {
                l.starts_with("strait_replication_latency_stage_seconds_count{")
                    && l.contains(&format!("stage=\"{stage}\""))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {stage} stage series in\n{first}"));
        assert!(count >= 5_000.0, "{stage}: {count}");
    }
    assert!(metric(&first, "strait_checkpoint_age_seconds") >= 0.0);
    assert_eq!(http_get(&addr, "/readyz").0, 200);
    load(src, &t, 3_000, "lz4", &["--start-index", "5000"]);
    r.wait_records(8_000, Duration::from_secs(60)).await;
    let (_, second) = http_get(&addr, "/metrics");
    assert_eq!(metric(&second, "strait_records_total"), 8_000.0, "records moved");
    assert!(metric(&second, "strait_bytes_total") > metric(&first, "strait_bytes_total"));
    assert!(second.contains("strait_batches_total{") && second.contains("path=\"fast\"}"));
    assert!(metric(&second, "process_resident_memory_bytes") > 1e6, "{second}");
    assert!(
        second.contains("strait_replication_latency_seconds_bucket{"),
        "a histogram: {second}"
    );
    let (status, body) = http_get(&addr, "/status");
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["flows"][0]["records"], 8_000, "{doc}");
    assert_eq!(doc["flows"][0]["lag"][t.as_str()]["records"], 0, "{doc}");
    assert_eq!(http_get(&addr, "/nope").0, 404);
    r.stop().await;
    // The server task is aborted with the run; its listener closes shortly after.
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(&addr).is_ok() {
        assert!(Instant::now() < deadline, "the endpoint closes with the run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_versions_topics_and_unreachable_clusters() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic("check");
    create(src, &t, 2, &["retention.ms=-1"]);
    let run_check_with = |dest: &str, extra: &str| {
        let path = config_file(
            &format!("{t}-{}", dest.replace([':', '.'], "_")),
            &src.bootstrap,
            dest,
            &t,
            extra,
            "connect_timeout_ms = 2000",
        );
        let out = Command::new(env!("CARGO_BIN_EXE_strait"))
            .args(["check", "--config", path.to_str().unwrap()])
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&path);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let run_check = |dest: &str| run_check_with(dest, "");
    let (ok, out) = run_check(&dst.bootstrap);
    assert!(ok, "{out}");
    assert!(!out.contains("heartbeats:"), "heartbeats are off in this config: {out}");
    // Heartbeats: the source topic strait would create, and its destination twin.
    let (ok, hb) = run_check_with(&dst.bootstrap, &format!("heartbeats_topic = \"{t}-hb\""));
    assert!(ok, "{hb}");
    assert!(
        hb.contains(&format!("heartbeats: source topic {t}-hb will be created"))
            && hb.contains("needs CREATE and WRITE")
            && hb.contains(&format!("destination topic {t}-hb: will be created")),
        "{hb}"
    );
    assert!(
        out.contains(&format!("{t} -> {t}")) && out.contains("will be created") && out.contains("Produce v"),
        "{out}"
    );
    // Each broker's round trip and the bytes in flight 100 MB/s needs there.
    for side in ["source", "destination"] {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("{side} round trip")))
            .unwrap_or_else(|| panic!("no {side} round trip in\n{out}"));
        assert!(
            line.contains("100 MB/s needs") && line.contains("MB in flight") && line.contains("allows"),
            "{line}"
        );
    }
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let (ok, out) = run_check(&dead);
    assert!(!ok, "an unreachable destination fails the check");
    assert!(
        out.contains("problem: destination cluster") && out.contains(&dead),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_leader_killed_mid_stream_loses_nothing() {
    let (src, dst) = (harness::kafka4_three_source(), harness::kafka4_dest());
    let t = unique_topic("srcfail");
    tool(&[
        "create",
        "--bootstrap",
        &src.bootstrap,
        "--topic",
        &t,
        "--partitions",
        "3",
        "--rf",
        "3",
        "--config",
        "retention.ms=-1",
        "--config",
        "min.insync.replicas=2",
    ]);
    leader_killed_mid_stream(src, dst, src, &t, "", &["--idempotent"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_translate_points_at_the_same_record() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic("xlate");
    create(src, &t, 2, &["retention.ms=-1"]);
    load(src, &t, 400, "lz4", &["--idempotent"]);
    txn(src, &t, 8, 40, 2, &[]);
    load(src, &t, 400, "zstd", &["--start-index", "400"]);
    let name = unique_topic("xlate");
    let r = start(config(&name, src, dst, &t, "")).await;
    r.wait_records(960, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    r.stop().await;
    // Records by (partition, offset) on both sides, read by the independent client.
    let (s, d) = (
        dump(&src.bootstrap, &t, "read_committed"),
        dump(&dst.bootstrap, &t, "read_uncommitted"),
    );
    // A group on the source that has read part of each partition (committed
    // offsets after the aborted transactions, so they sit past marker gaps).
    let group = unique_topic("group");
    let mut picks = Vec::new();
    for p in 0..2i64 {
        let recs: Vec<&Value> = s.iter().filter(|v| v["p"] == p).collect();
        let pick = recs[recs.len() * 3 / 4];
        picks.push((p, pick["o"].as_i64().unwrap(), record_id(pick)));
    }
    let admin = strait::client::Client::connect(strait::client::ClientConfig::new(&src.bootstrap))
        .await
        .unwrap();
    admin
        .commit_offsets(
            &group,
            &picks
                .iter()
                .map(|(p, o, _)| (t.clone(), *p as i32, *o))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let cfg_path = config_file(&name, &src.bootstrap, &dst.bootstrap, &t, "", "");
    let out = Command::new(env!("CARGO_BIN_EXE_strait"))
        .args([
            "offsets",
            "translate",
            "--config",
            cfg_path.to_str().unwrap(),
            "--group",
            &group,
        ])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&cfg_path);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for (p, o, want) in &picks {
        let row = text
            .lines()
            .find(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.first() == Some(&t.as_str()) && f.get(1) == Some(&p.to_string().as_str())
            })
            .unwrap_or_else(|| panic!("no row for partition {p}:\n{text}"));
        let f: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(f[2], o.to_string(), "{row}");
        let translated: i64 = f[4].parse().unwrap_or_else(|_| panic!("no translation: {row}"));
        let at = d
            .iter()
            .find(|v| v["p"] == *p && v["o"] == translated)
            .unwrap_or_else(|| panic!("no destination record at {translated}"));
        assert_eq!(
            &record_id(at),
            want,
            "partition {p}: source offset {o} translated to {translated}, a different record"
        );
        assert!(
            translated < *o,
            "markers and aborted records make the destination offsets smaller: {row}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_offsets_sync_exactly_and_never_over_a_live_consumer() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic("gsync");
    create(src, &t, 1, &["retention.ms=-1"]);
    load(src, &t, 300, "lz4", &["--idempotent"]);
    txn(src, &t, 4, 30, 2, &[]);
    load(src, &t, 300, "lz4", &["--start-index", "300"]);
    let recs = dump(&src.bootstrap, &t, "read_committed");
    let (g1, g2) = (unique_topic("dr-group"), unique_topic("live-group"));
    let admin = strait::client::Client::connect(strait::client::ClientConfig::new(&src.bootstrap))
        .await
        .unwrap();
    let at = |i: usize| recs[i]["o"].as_i64().unwrap();
    admin.commit_offsets(&g1, &[(t.clone(), 0, at(500))]).await.unwrap();
    admin.commit_offsets(&g2, &[(t.clone(), 0, at(200))]).await.unwrap();
    // g2 is live on the destination: a kcat consumer is a member of it there.
    create(dst, &t, 1, &["retention.ms=-1"]);
    let mut live = Command::new("kcat")
        .args(["-b", &dst.bootstrap, "-G", &g2, "-X", "auto.offset.reset=earliest", &t])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until kcat is a member of g2 on the destination before strait starts.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let members = dst
            .tool(
                "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
                &[
                    "--bootstrap-server",
                    &dst.bootstrap,
                    "--describe",
                    "--group",
                    &g2,
                    "--members",
                ],
            )
            .unwrap_or_default();
        if members.contains("rdkafka") {
            break;
        }
        assert!(Instant::now() < deadline, "kcat never joined {g2}: {members}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let r = start(config(
        &unique_topic("gsync"),
        src,
        dst,
        &t,
        &format!("groups = [\"{g1}\", \"{g2}\"]\ngroup_sync_interval_ms = 300"),
    ))
    .await;
    r.wait_records(660, Duration::from_secs(60)).await;
    // g1: the destination offset points at the same record the source offset does.
    let deadline = Instant::now() + Duration::from_secs(30);
    let synced = loop {
        if let Some(o) = group_offset(dst, &g1, &t, 0) {
            break o;
        }
        assert!(Instant::now() < deadline, "g1 was never synced");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let drecs = dump(&dst.bootstrap, &t, "read_uncommitted");
    let landed = drecs
        .iter()
        .find(|v| v["o"] == synced)
        .expect("a destination record at the synced offset");
    assert_eq!(
        record_id(landed),
        record_id(&recs[500]),
        "g1 resumes at exactly the next record"
    );
    // g2: never written while kcat is a member.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let g2_translated = drecs.iter().find(|v| record_id(v) == record_id(&recs[200])).unwrap()["o"]
        .as_i64()
        .unwrap();
    let g2_dst = group_offset(dst, &g2, &t, 0);
    assert_ne!(g2_dst, Some(g2_translated), "the live group's offsets were overwritten");
    // The source group moving backwards moves the destination back too.
    admin.commit_offsets(&g1, &[(t.clone(), 0, at(100))]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(o) = group_offset(dst, &g1, &t, 0) {
            if o < synced {
                let landed = drecs.iter().find(|v| v["o"] == o).unwrap();
                assert_eq!(record_id(landed), record_id(&recs[100]));
                break;
            }
        }
        assert!(Instant::now() < deadline, "g1 did not follow the source backwards");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let _ = live.kill();
    let _ = live.wait();
    let metrics = r.handle.metrics.clone();
    r.stop().await;
    let synced_total = strait::replicate::metrics::Metrics::get(&metrics.group_offsets_synced);
    // g1 written twice (forward, then back); g2 never.
    assert_eq!(synced_total, 2, "{synced_total} group offsets synced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_then_failback_moves_consumers_and_new_records_without_duplicates() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic("dr");
    create(src, &t, 2, &["retention.ms=-1"]);
    load(src, &t, 600, "lz4", &[]);
    let recs = dump(&src.bootstrap, &t, "read_uncommitted");
    let p0: Vec<&Value> = recs.iter().filter(|v| v["p"] == 0).collect();
    let next = p0[p0.len() / 2];
    let group = unique_topic("app");
    let admin = strait::client::Client::connect(strait::client::ClientConfig::new(&src.bootstrap))
        .await
        .unwrap();
    admin
        .commit_offsets(&group, &[(t.clone(), 0, next["o"].as_i64().unwrap())])
        .await
        .unwrap();
    let name = unique_topic("dr");
    let cfg_path = config_file(&name, &src.bootstrap, &dst.bootstrap, &t, "", "");
    let cfg = cfg_path.to_str().unwrap();
    // Failover: drain, sync the group, stop.
    let out = Command::new(env!("CARGO_BIN_EXE_strait"))
        .args(["failover", "--config", cfg, "--group", &group])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("failover complete") && text.contains(&dst.bootstrap),
        "{text}"
    );
    assert_same(src, &t, dst, &t, &[]);
    // The group resumes on the destination at exactly the next record.
    let synced = group_offset(dst, &group, &t, 0).expect("group offset on the destination");
    let d = dump(&dst.bootstrap, &t, "read_uncommitted");
    let landed = d.iter().find(|v| v["p"] == 0 && v["o"] == synced).unwrap();
    assert_eq!(record_id(landed), record_id(next));
    // Producers move to the destination.
    load(dst, &t, 300, "zstd", &["--start-index", "5000"]);
    // Failback: only the 300 new records go back.
    let mut back = Command::new(env!("CARGO_BIN_EXE_strait"))
        .args(["failback", "--config", cfg, "--progress", "0"])
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = json(&tool(&["count", "--bootstrap", &src.bootstrap, "--topic", &t]));
        if c["total"].as_u64().unwrap() >= 900 {
            break;
        }
        assert!(Instant::now() < deadline, "failback did not bring the new records: {c}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(Command::new("kill")
        .args(["-TERM", &back.id().to_string()])
        .status()
        .unwrap()
        .success());
    assert!(back.wait().unwrap().success());
    // Both clusters now hold the same 900 records in the same order: nothing duplicated.
    let v = assert_same(dst, &t, src, &t, &[]);
    assert_eq!(v["source_records"], 900);
    assert_eq!(v["duplicates"], 0);
    // Producers move back; the original direction resumes with the unchanged
    // config. It must not copy the failback's 300 records a second time
    // (provenance: failback registered its producer ids on the original source).
    load(src, &t, 100, "lz4", &["--start-index", "9000"]);
    let mut resumed = Command::new(env!("CARGO_BIN_EXE_strait"))
        .args(["run", "--config", cfg, "--progress", "0"])
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = json(&tool(&["count", "--bootstrap", &dst.bootstrap, "--topic", &t]));
        if c["total"].as_u64().unwrap() >= 1000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the resumed replication did not copy the new records: {c}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Long enough for the failback's records, had they been re-read, to land too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(Command::new("kill")
        .args(["-TERM", &resumed.id().to_string()])
        .status()
        .unwrap()
        .success());
    assert!(resumed.wait().unwrap().success());
    let _ = std::fs::remove_file(&cfg_path);
    let v = assert_same(src, &t, dst, &t, &[]);
    assert_eq!(v["source_records"], 1000);
    assert_eq!(v["duplicates"], 0, "the failback's records came back: {v}");
}

/// The planned-failover runbook after consumers drained: every partition of a
/// caught-up group gets its destination offset, including an empty partition
/// and partitions whose offset-map records aged out (deleted here), from the
/// checkpoint and the destination offset recorded with it. A group behind what
/// the map still covers cannot be translated: failover exits 1 naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_translates_drained_empty_and_aged_out_partitions() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic("drained");
    create(src, &t, 3, &["retention.ms=-1"]);
    load(src, &t, 200, "lz4", &["--partition", "0"]);
    load(src, &t, 100, "lz4", &["--partition", "1", "--start-index", "200"]);
    // Partition 2 stays empty. The group read everything.
    let group = unique_topic("drained-app");
    let admin = strait::client::Client::connect(strait::client::ClientConfig::new(&src.bootstrap))
        .await
        .unwrap();
    admin
        .commit_offsets(&group, &[(t.clone(), 0, 200), (t.clone(), 1, 100), (t.clone(), 2, 0)])
        .await
        .unwrap();
    let name = unique_topic("drained");
    let r = start(config(&name, src, dst, &t, "")).await;
    r.wait_records(300, Duration::from_secs(60)).await;
    r.stop().await;
    // A week later the offset map's records are gone (retention): delete them.
    delete_records(dst, &format!("__strait.{name}.offsets"), 0, -1);
    let cfg_path = config_file(&name, &src.bootstrap, &dst.bootstrap, &t, "", "");
    let cfg = cfg_path.to_str().unwrap();
    let (ok, out) = strait_cmd(&["offsets", "translate", "--config", cfg, "--group", &group]);
    assert!(ok, "{out}");
    for p in 0..3 {
        let row = out
            .lines()
            .find(|l| l.split_whitespace().take(2).eq([t.as_str(), &p.to_string()]))
            .unwrap_or_else(|| panic!("no row for partition {p}: {out}"));
        assert!(!row.contains(" - "), "partition {p} not translated: {row}");
    }
    let (ok, out) = strait_cmd(&["failover", "--config", cfg, "--group", &group]);
    assert!(ok, "{out}");
    assert!(!out.contains("destination offset -"), "{out}");
    // Consumers resume right after the last record, on every partition.
    for (p, end) in [(0, 200), (1, 100), (2, 0)] {
        assert_eq!(group_offset(dst, &group, &t, p), Some(end), "partition {p}\n{out}");
    }
    // A group still behind, on a partition whose map aged out: no exact answer.
    let behind = unique_topic("behind-app");
    admin.commit_offsets(&behind, &[(t.clone(), 0, 50)]).await.unwrap();
    let (ok, out) = strait_cmd(&["failover", "--config", cfg, "--group", &behind]);
    let _ = std::fs::remove_file(&cfg_path);
    assert!(
        !ok,
        "failover must fail when a group offset cannot be translated: {out}"
    );
    assert!(
        out.contains(&format!("group {behind} {t}[0] at source offset 50")),
        "{out}"
    );
}

/// Source and destination on one cluster: identity names, or a rename whose
/// copies the selection matches again, are refused by `run`, `check` and
/// `check-config`; a rename the selection does not match copies inside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_cluster_is_refused_unless_a_rename_makes_a_separate_copy() {
    let src = harness::kafka4();
    let t = unique_topic("self");
    create(src, &t, 1, &["retention.ms=-1"]);
    load(src, &t, 100, "none", &[]);
    let b = &src.bootstrap;
    for (label, topics, extra) in [
        ("identity", t.clone(), String::new()),
        (
            "prefix-rematched",
            format!("{t}.*|source\\\\..*"),
            "rename = \"prefix\"".to_string(),
        ),
    ] {
        let path = config_file(&format!("{t}-{label}"), b, b, &topics, &extra, "");
        let p = path.to_str().unwrap();
        let (ok, out) = strait_cmd(&["run", "--config", p]);
        assert!(!ok && out.contains("same cluster"), "{label}: run: {out}");
        let (ok, out) = strait_cmd(&["check", "--config", p]);
        assert!(!ok && out.contains("same cluster"), "{label}: check: {out}");
        if label == "identity" {
            let (ok, out) = strait_cmd(&["check-config", "--config", p]);
            assert!(!ok && out.contains("same cluster"), "{label}: check-config: {out}");
        }
        let _ = std::fs::remove_file(&path);
    }
    // A deliberate copy: `{t}` into `source.{t}`, which the selection does not match.
    let cfg = config(&unique_topic("self"), src, src, &t, "rename = \"prefix\"");
    let r = start(cfg).await;
    r.wait_records(100, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(2)).await; // two more topic refreshes
    r.stop().await;
    assert_same(src, &t, src, &format!("source.{t}"), &[]);
    assert!(
        !dst_has_topic(src, &format!("source.source.{t}")),
        "the copy was copied again"
    );
}

/// `--log-format json`: every line strait writes is JSON, the progress line
/// carries its numbers as fields, and a selection matching no topic is warned
/// about by `run` and `check`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_progress_fields_and_no_topic_warnings() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic("nomatch");
    let path = config_file(&t, &src.bootstrap, &dst.bootstrap, &format!("{t}-absent"), "", "");
    let p = path.to_str().unwrap();
    let (ok, out) = strait_cmd(&["check", "--config", p]);
    assert!(ok, "{out}");
    assert!(out.contains("warning: no source topic matches"), "{out}");
    let child = Command::new(env!("CARGO_BIN_EXE_strait"))
        .args(["run", "--config", p, "--progress", "1", "--log-format", "json"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let message = |v: &Value| v["fields"]["message"].as_str().unwrap_or_default().to_string();
    assert!(
        lines.iter().any(|v| message(v).contains("no source topic matches")),
        "{text}"
    );
    let progress = lines
        .iter()
        .find(|v| message(v) == "progress")
        .unwrap_or_else(|| panic!("no progress line: {text}"));
    assert!(progress["fields"]["records_per_s"].is_number(), "{progress}");
    assert!(progress["fields"]["records_total"].is_number(), "{progress}");
    let last = lines.last().unwrap();
    assert_eq!(message(last), "stopped", "{text}");
    assert_eq!(last["fields"]["records"], 0, "{last}");
}

/// Now, in ms since the epoch: batches in one log segment (so one fetch
/// response) need timestamps close together, or the broker rolls the segment.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A valid zstd v2 batch of `n` records whose values are 1 GiB of zeros each,
/// about 32 KiB per record on the wire: the zstd frame is hand-built from raw and
/// RLE blocks, so building it is instant.
fn gib_records_batch(n: usize) -> Bytes {
    let header = records::Header {
        base_offset: 0,
        attributes: 4, // zstd
        last_offset_delta: n as i32 - 1,
        base_timestamp: now_ms(),
        producer_id: -1,
        record_count: n as i32,
    };
    records::v2_batch(header, &records::zstd_zero_records(&vec![1 << 30; n])).into_bytes()
}

/// A small zstd batch of `n` records.
fn small_zstd_batch(n: i32) -> Bytes {
    let recs: Vec<RecordSpec> = (0..n).map(|i| RecordSpec::simple(i, b"small record")).collect();
    write_batch(
        &BatchSpec {
            codec: 4,
            base_timestamp: now_ms(),
            ..Default::default()
        },
        &recs,
    )
    .into_bytes()
}

/// Produces each batch as it is (one Produce request each, acks=all) to
/// partition 0 of `topic`, through strait's zero-copy path; the broker validates
/// every batch (streaming through compressed ones) before it answers.
async fn produce_raw(c: &KafkaCluster, topic: &str, batches: &[Bytes]) {
    let mut cc = ClientConfig::new(&c.bootstrap);
    cc.connection.request_timeout = Duration::from_secs(120);
    let client = Client::connect(cc).await.unwrap();
    let id = client
        .refresh_metadata(Some(&[topic.to_string()]))
        .await
        .unwrap()
        .topics[topic]
        .id;
    let (leader, _) = client.leader(topic, 0).await.unwrap();
    let conn = client.broker(leader).await.unwrap();
    let version = conn.version_of::<ProduceRequest>().unwrap();
    for b in batches {
        let t = Instant::now();
        let part = ProducePartition::whole(0, b.clone());
        let resp = conn
            .produce(
                version,
                None,
                -1,
                120_000,
                &[ProduceTopic {
                    name: topic.into(),
                    topic_id: id,
                    partitions: vec![part],
                }],
            )
            .await
            .unwrap();
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0, "{topic}: produce refused: {:?}", p.error_message);
        eprintln!("{topic}: produced a {}-byte batch in {:?}", b.len(), t.elapsed());
    }
}

/// `VmHWM` (peak) and `VmRSS` of process `pid`, in bytes.
fn rss_of(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|k| k * 1024)
    };
    Some((kb("VmHWM:")?, kb("VmRSS:")?))
}

/// The `/metrics` page of a running strait, or `None` while it does not answer
/// (within a bounded time: a busy strait must not stall the caller).
fn try_metrics(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let sock: std::net::SocketAddr = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// Peak RSS at which [`run_binary_until`] kills strait: a decompression bomb went off.
const RSS_KILL: u64 = 3 << 29; // 1.5 GiB

/// What a run of the strait binary left: peak RSS, exit status, stderr.
struct BinaryRun {
    peak_rss: u64,
    status: std::process::ExitStatus,
    stderr: String,
}

/// Runs the strait binary on `topic` (extra top-level config in `extra`) until
/// `done(metrics page)`, then SIGTERMs it. Its RSS is watched all along: past
/// [`RSS_KILL`] it is killed and the test fails (a decompression bomb went off).
async fn run_binary_until(
    label: &str,
    topic: &str,
    extra: &str,
    timeout: Duration,
    done: impl Fn(&str) -> bool,
) -> BinaryRun {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let name = unique_topic(label);
    let extra = format!("metrics_address = \"{addr}\"\n{extra}");
    let cfg = config_file(&name, &src.bootstrap, &dst.bootstrap, topic, &extra, "");
    let mut child = Command::new(env!("CARGO_BIN_EXE_strait"))
        .args(["run", "--config", cfg.to_str().unwrap(), "--progress", "0"])
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut pipe, &mut s);
        s
    });
    let pid = child.id();
    // The watchdog reads the peak RSS every 5 ms on its own thread (strait's
    // metrics endpoint may not answer while its workers decompress) and kills
    // strait once it passes RSS_KILL. It ends when strait exits.
    let watchdog = std::thread::spawn(move || {
        let mut peak = 0;
        while let Some((hwm, _)) = rss_of(pid) {
            peak = peak.max(hwm);
            if hwm > RSS_KILL {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                return (peak, true);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (peak, false)
    });
    let deadline = Instant::now() + timeout;
    let finished = loop {
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break false;
        }
        if try_metrics(&addr).is_some_and(|m| done(&m)) {
            break true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Read before strait exits: the watchdog sees the peak only while strait lives.
    let last_peak = rss_of(pid).map_or(0, |r| r.0);
    if finished {
        assert!(Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success());
    }
    let status = child.wait().unwrap();
    let (peak, killed) = watchdog.join().unwrap();
    let peak = peak.max(last_peak);
    let _ = std::fs::remove_file(&cfg);
    let stderr = stderr.join().unwrap();
    assert!(
        !killed,
        "{label}: strait killed at a peak RSS of {} MiB; stderr:\n{stderr}",
        peak >> 20
    );
    assert!(
        finished,
        "{label}: not done after {timeout:?} ({status}); peak RSS {} MiB; stderr:\n{stderr}",
        peak >> 20
    );
    BinaryRun {
        peak_rss: peak,
        status,
        stderr,
    }
}

/// A valid zstd batch of 4 records that inflate to 4 GiB in all (about 128 KiB
/// on the wire), made to need a re-encode: DeleteRecords moves the log start
/// into it, so strait, starting from the earliest offset, fetches a batch that
/// straddles its position. Decompression stops at the cap: the partition stops
/// with an error naming topic, partition and offset, strait's memory stays far
/// below 4 GiB, and nothing of the batch (or after it) reaches the destination.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_inflating_to_4_gib_that_needs_a_re_encode_stops_its_partition() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let t0 = Instant::now();
    let t = unique_topic("bomb-reencode");
    create(src, &t, 1, &["retention.ms=-1"]);
    let bomb = gib_records_batch(4);
    assert!(bomb.len() < 200 * 1024, "{} bytes", bomb.len());
    // Offsets 0..=3 (the bomb), then 4..=8.
    produce_raw(src, &t, &[bomb, small_zstd_batch(5)]).await;
    let spec = std::env::temp_dir().join(format!("{t}.json"));
    std::fs::write(
        &spec,
        format!(r#"{{"version":1,"partitions":[{{"topic":"{t}","partition":0,"offset":2}}]}}"#),
    )
    .unwrap();
    src.tool(
        "org.apache.kafka.tools.DeleteRecordsCommand",
        &[
            "--bootstrap-server",
            &src.bootstrap,
            "--offset-json-file",
            spec.to_str().unwrap(),
        ],
    )
    .unwrap();
    let _ = std::fs::remove_file(&spec);
    let run = run_binary_until("bomb-reencode", &t, "", Duration::from_secs(90), |m| {
        metric(m, "strait_partitions_stopped") >= 1.0
    })
    .await;
    eprintln!(
        "4 GiB batch needing a re-encode: strait peak RSS {} MiB; {:.1} s; stderr:\n{}",
        run.peak_rss >> 20,
        t0.elapsed().as_secs_f64(),
        run.stderr
    );
    assert!(!run.status.success(), "a stopped partition makes strait exit 1");
    let expected = format!(
        "partition stopped: cannot re-encode the batch of {t} partition 0 at offset 0 (it starts before the fetch \
         position 2): record batch at offset 0 decompresses to more than 268435456 bytes (max_decompressed_batch_bytes)"
    );
    assert!(
        run.stderr.contains(&expected),
        "expected {expected:?} in:\n{}",
        run.stderr
    );
    assert!(run.peak_rss < 1 << 30, "peak RSS {} MiB", run.peak_rss >> 20);
    // Nothing of the batch, and nothing after it, was written.
    let c = json(&tool(&["count", "--bootstrap", &dst.bootstrap, "--topic", &t]));
    assert_eq!(c["total"], 0, "{c}");
    assert_eq!(c["offsets"]["0"][1], 0, "{c}");
}

/// The same 4 GiB batch between small zstd batches, where it needs no re-encode:
/// it goes raw. Coalescing is on for batches of up to 1 MiB on the wire, so the
/// producer tries to merge it with its neighbours and stops at the cap; the
/// batch is forwarded raw, its neighbours are still merged, and strait's
/// memory stays far below 4 GiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_inflating_to_4_gib_is_forwarded_raw_when_coalescing() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let t0 = Instant::now();
    let t = unique_topic("bomb-raw");
    create(src, &t, 1, &["retention.ms=-1"]);
    let mut batches: Vec<Bytes> = (0..3).map(|_| small_zstd_batch(5)).collect();
    batches.push(gib_records_batch(4));
    batches.extend((0..3).map(|_| small_zstd_batch(5)));
    produce_raw(src, &t, &batches).await;
    let total = 3 * 5 + 4 + 3 * 5;
    let run = run_binary_until(
        "bomb-raw",
        &t,
        "coalesce_below_bytes = 1048576",
        Duration::from_secs(120),
        |m| metric(m, "strait_records_total") >= total as f64,
    )
    .await;
    eprintln!(
        "4 GiB batch forwarded raw: strait peak RSS {} MiB; {:.1} s; stderr:\n{}",
        run.peak_rss >> 20,
        t0.elapsed().as_secs_f64(),
        run.stderr
    );
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("batch decompresses past max_decompressed_batch_bytes; forwarded raw, not merged"),
        "{}",
        run.stderr
    );
    assert!(run.peak_rss < 1 << 30, "peak RSS {} MiB", run.peak_rss >> 20);
    // Kafka's own DumpLogSegments reads the destination's batch headers: the
    // 4-record zstd batch is there whole, every record is, and the small
    // batches around it were merged (fewer batches than on the source).
    let dst_batches = log_batches(dst, &t, 0);
    eprintln!("destination batches (records, codec): {dst_batches:?}");
    assert!(dst_batches.contains(&(4, "zstd".to_string())), "{dst_batches:?}");
    assert_eq!(dst_batches.iter().map(|b| b.0).sum::<u64>(), total);
    assert!(dst_batches.len() < batches.len(), "{dst_batches:?}");
    let out = Command::new("kcat")
        .args(["-Q", "-b", &dst.bootstrap, "-t", &format!("{t}:0:-1")])
        .output()
        .unwrap();
    let end = String::from_utf8_lossy(&out.stdout);
    assert!(
        end.contains(&format!(" offset {total}")),
        "destination end offset: {end}"
    );
}

/// Heartbeats with every user topic idle: the flow's only topic is empty, yet
/// the destination's copy of the heartbeat topic grows (read with the
/// independent client), each record keyed by the flow; the age gauge stays
/// within a few intervals, and `/metrics` and `/status` show both gauges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_flow_while_every_user_topic_is_idle() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic("hb-idle");
    create(src, &t, 1, &[]);
    let hb = format!("{t}-heartbeats");
    let name = unique_topic("hb-idle");
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let r = start(config(
        &name,
        src,
        dst,
        &t,
        &format!("heartbeats_topic = \"{hb}\"\nheartbeats_interval_ms = 500\nmetrics_address = \"{addr}\""),
    ))
    .await;
    let count = || {
        json(&tool(&["count", "--bootstrap", &dst.bootstrap, "--topic", &hb]))["total"]
            .as_u64()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    // The destination topic exists once a first heartbeat was acknowledged.
    while r.handle.metrics.heartbeat_age_seconds().is_none() {
        assert!(Instant::now() < deadline, "no heartbeat acknowledged after 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = loop {
        let n = count();
        if n >= 3 {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "{n} heartbeats on the destination after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // It keeps growing, and the age stays within a few intervals meanwhile.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let age = r
            .handle
            .metrics
            .heartbeat_age_seconds()
            .expect("a heartbeat was acknowledged");
        assert!(age < 4.0, "heartbeat age {age} s with a 0.5 s interval");
        if count() >= first + 4 {
            break;
        }
        assert!(Instant::now() < deadline, "the heartbeats stopped growing at {first}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, body) = http_get(&addr, "/metrics");
    assert!(metric(&body, "strait_heartbeat_age_seconds") < 4.0, "{body}");
    assert!(metric(&body, "strait_heartbeat_latency_seconds") >= 0.0, "{body}");
    let (_, status) = http_get(&addr, "/status");
    let doc: Value = serde_json::from_str(&status).unwrap();
    assert!(doc["flows"][0]["heartbeat"]["age_seconds"].as_f64().is_some(), "{doc}");
    assert!(
        doc["flows"][0]["heartbeat"]["latency_seconds"].as_f64().is_some(),
        "{doc}"
    );
    assert_eq!(doc["flows"][0]["lag"][t.as_str()]["records"], 0, "{doc}");
    r.stop().await;
    let dump = tool(&["dump", "--bootstrap", &dst.bootstrap, "--topic", &hb]);
    let rec: Value = dump
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| b64(r["k"].as_str().unwrap_or_default()) == name.as_bytes())
        .unwrap_or_else(|| panic!("no heartbeat keyed {name}: {dump}"));
    let value: Value = serde_json::from_slice(&b64(rec["v"].as_str().unwrap())).unwrap();
    assert_eq!(value["flow"], name.as_str(), "{value}");
    let skew = value["timestamp_ms"].as_i64().unwrap() - rec["ts"].as_i64().unwrap();
    assert!(
        skew.abs() < 1_000,
        "the record's timestamp is its write time: {value} {rec}"
    );
}
