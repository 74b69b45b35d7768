//! Taking over a running MirrorMaker 2 replication, as an operator does it:
//! a real MM2 (dedicated mode, the jars benches/e2e resolves) replicates a
//! topic, commits its positions, copies more without committing them (its
//! uncommitted window, as after any crash), is SIGKILLed, and `strait run` with
//! `start_from = "mm2"` continues every partition after the last offset MM2
//! committed. The independent client checks that the destination holds every
//! record and that the only duplicates are MM2's uncommitted window, counted
//! exactly from the positions MM2 committed (read by the test itself) and what
//! MM2 had written.
//!
//! The window is made without racing MM2: its first run commits every second
//! and is killed once its committed positions reach the end of the first load;
//! its second run commits only once an hour, so what it copies of the second
//! load (all in partition 0) stays uncommitted when it is killed; a third load
//! (partition 1) arrives after the kill, for strait alone. Partitions 2 and 3
//! are the quiet ones MM2 copied and committed to their end.

mod common;
mod harness;
#[path = "harness/proxy.rs"]
mod proxy;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::tool;
use harness::{b64, group_offset, stop_process as stop, within};
use harness::{unique_topic, KafkaCluster};
use proxy::ClusterProxy;
use serde_json::Value;

/// Records the source gets: MM2 copies and commits the first load (every
/// partition), copies the second (partition 0) without committing it, and
/// never sees the third (partition 1).
const LOADS: [u64; 3] = [4_000, 2_000, 2_000];
const RECORDS: u64 = LOADS[0] + LOADS[1] + LOADS[2];

/// Every record of `topic` as (partition, timestamp): the loader gives each
/// record its own timestamp, which MM2 and strait both keep.
fn records(bootstrap: &str, topic: &str) -> Vec<(i64, i64)> {
    tool(&["dump", "--bootstrap", bootstrap, "--topic", topic, "--timeout", "10"])
        .lines()
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            Some((v["p"].as_i64()?, v["ts"].as_i64()?))
        })
        .collect()
}

/// MM2's committed positions, read here from its Connect offsets topic (not
/// with strait's reader): source partition → last offset copied.
fn mm2_positions(bootstrap: &str, offsets_topic: &str, topic: &str) -> BTreeMap<i64, i64> {
    let mut newest: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
    let dump = harness::try_kafka_tool(&[
        "dump",
        "--bootstrap",
        bootstrap,
        "--topic",
        offsets_topic,
        "--timeout",
        "10",
    ]);
    for l in dump.unwrap_or_default().lines() {
        let Ok(v) = serde_json::from_str::<Value>(l) else {
            continue;
        };
        let Some(k) = v["k"].as_str() else { continue };
        newest.insert(b64(k), v["v"].as_str().map(b64));
    }
    let mut out = BTreeMap::new();
    for (k, v) in newest {
        let key: Value = serde_json::from_slice(&k).unwrap();
        if key[0] != "MirrorSourceConnector" || key[1]["topic"] != topic {
            continue;
        }
        if let Some(v) = v {
            let value: Value = serde_json::from_slice(&v).unwrap();
            out.insert(key[1]["partition"].as_i64().unwrap(), value["offset"].as_i64().unwrap());
        }
    }
    out
}

fn count(bootstrap: &str, topic: &str) -> u64 {
    let Ok(out) = harness::try_kafka_tool(&["count", "--bootstrap", bootstrap, "--topic", topic, "--timeout", "10"])
    else {
        return 0; // not created yet
    };
    serde_json::from_str::<Value>(out.trim())
        .ok()
        .and_then(|v| v["total"].as_u64())
        .unwrap_or(0)
}

/// MirrorMaker 2 in dedicated mode replicating `topic` from `alias` (through
/// `src`) to B, its offsets in the dedicated-mode default topic
/// `mm2-offsets.<alias>.internal`, committed every `commit_ms` (Connect's
/// default is 60 s; Connect commits only on that timer and when a task stops
/// gracefully, never on SIGKILL).
fn start_mm2(dir: &std::path::Path, alias: &str, src: &str, dst: &str, topic: &str, commit_ms: u64) -> Child {
    let libs = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/e2e/mm2_fetch.sh"))
        .arg("4.1.1")
        .output()
        .expect("mm2_fetch.sh runs");
    assert!(
        libs.status.success(),
        "MirrorMaker 2 jars: {}",
        String::from_utf8_lossy(&libs.stderr)
    );
    let libs = String::from_utf8(libs.stdout).unwrap().trim().to_string();
    let props = dir.join("mm2.properties");
    std::fs::write(
        &props,
        format!(
            "clusters = {alias}, B\n{alias}.bootstrap.servers = {src}\nB.bootstrap.servers = {dst}\n\
             {alias}->B.enabled = true\nB->{alias}.enabled = false\n{alias}->B.topics = {topic}\n\
             {alias}->B.groups.exclude = .*\ntasks.max = 2\n\
             replication.factor = 1\ncheckpoints.topic.replication.factor = 1\nheartbeats.topic.replication.factor = 1\n\
             offset.storage.replication.factor = 1\nconfig.storage.replication.factor = 1\nstatus.storage.replication.factor = 1\n\
             emit.heartbeats.enabled = false\nemit.checkpoints.enabled = false\nemit.offset-syncs.enabled = false\n\
             sync.group.offsets.enabled = false\nsync.topic.acls.enabled = false\n\
             B.offset.flush.interval.ms = {commit_ms}\n{alias}.consumer.max.poll.records = 200\n"
        ),
    )
    .unwrap();
    let log4j = dir.join("log4j2.properties");
    std::fs::write(
        &log4j,
        format!(
            "status = warn\nappender.file.type = File\nappender.file.name = file\nappender.file.fileName = {}\n\
             appender.file.layout.type = PatternLayout\nappender.file.layout.pattern = [%d] %p %m (%c)%n\n\
             rootLogger.level = INFO\nrootLogger.appenderRef.file.ref = file\n",
            dir.join("mm2.log").display()
        ),
    )
    .unwrap();
    Command::new("java")
        .args([
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            &format!("-Dlog4j2.configurationFile={}", log4j.display()),
            "-cp",
            &format!("{libs}/*"),
            "org.apache.kafka.connect.mirror.MirrorMaker",
            props.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("java runs MirrorMaker 2")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strait_takes_over_from_a_killed_mirrormaker2_without_copying_again() {
    let src: &KafkaCluster = harness::kafka4_proxied();
    let sp = ClusterProxy::start(src, harness::PROXIED).await;
    let dst = harness::kafka4_dest();
    let t = unique_topic("mm2");
    let alias = format!("src{}", std::process::id());
    let mirror = format!("{alias}.{t}");
    let offsets_topic = format!("mm2-offsets.{alias}.internal");
    let dir = std::env::temp_dir().join(unique_topic("mm2-files"));
    std::fs::create_dir_all(&dir).unwrap();
    common::create(src, &t, 4, &["retention.ms=-1"]);
    let load = |from: u64, n: u64, partition: Option<i32>| {
        let (from, partition) = (from.to_string(), partition.map(|p| p.to_string()));
        let mut args = vec!["--start-index", from.as_str()];
        if let Some(p) = &partition {
            args.extend(["--partition", p.as_str()]);
        }
        common::load(src, &t, n as usize, "none", &args);
    };
    let kill = |mm2: Child| {
        let _ = stop(mm2, "-KILL");
    };
    let committed = || -> u64 {
        mm2_positions(&dst.bootstrap, &offsets_topic, &t)
            .values()
            .map(|o| (o + 1) as u64)
            .sum()
    };

    // Run 1: MM2 copies the first load and commits it (every second).
    load(0, LOADS[0], None);
    let mm2 = start_mm2(&dir, &alias, &sp.bootstrap, &dst.bootstrap, &t, 1_000);
    let first = tokio::task::block_in_place(|| within(Duration::from_secs(180), || committed() >= LOADS[0]));
    kill(mm2);
    assert!(
        first,
        "MirrorMaker 2 copied and committed the first {} records within 180 s (committed {}; log: {})",
        LOADS[0],
        committed(),
        dir.join("mm2.log").display()
    );

    // Run 2: MM2 copies the second load and commits nothing (once an hour):
    // killed with all of it copied, it leaves a window of LOADS[1] records.
    load(LOADS[0], LOADS[1], Some(0));
    let mm2 = start_mm2(&dir, &alias, &sp.bootstrap, &dst.bootstrap, &t, 3_600_000);
    let second = tokio::task::block_in_place(|| {
        within(Duration::from_secs(180), || {
            count(&dst.bootstrap, &mirror) >= LOADS[0] + LOADS[1]
        })
    });
    kill(mm2);
    assert!(
        second,
        "MirrorMaker 2 copied the second load within 180 s (log: {})",
        dir.join("mm2.log").display()
    );

    // Run 3 never happens: the third load is for strait alone.
    load(LOADS[0] + LOADS[1], LOADS[2], Some(1));
    let on_src: BTreeSet<(i64, i64)> = records(&src.bootstrap, &t).into_iter().collect();
    assert_eq!(on_src.len() as u64, RECORDS, "every record has its own timestamp");

    // What MM2 left, read by the test: its committed positions and the records
    // it wrote. Partition p's records past its position are MM2's uncommitted
    // window: strait copies them again.
    let positions = mm2_positions(&dst.bootstrap, &offsets_topic, &t);
    let before = tokio::task::block_in_place(|| records(&dst.bootstrap, &mirror));
    let mut written: BTreeMap<i64, i64> = BTreeMap::new();
    for (p, _) in &before {
        *written.entry(*p).or_default() += 1;
    }
    let window: i64 = (0..4)
        .map(|p| written.get(&p).copied().unwrap_or(0) - positions.get(&p).map_or(0, |o| o + 1))
        .sum();
    assert_eq!(
        before.len() as u64,
        LOADS[0] + LOADS[1],
        "MM2 copied the first two loads, nothing twice"
    );
    assert_eq!(
        window, LOADS[1] as i64,
        "MM2's committed positions are the end of the first load: {positions:?} {written:?}"
    );

    // Three consumer groups of the source: `behind` is still reading what MM2
    // copied, and MM2 translated its offset on the destination (simulated
    // here: MM2's checkpoints are off); `done` has read everything of a
    // partition MM2 had not finished (strait copies its rest); `drained` has
    // read everything of a quiet partition MM2 copied and committed to its end,
    // where strait copies nothing and translates from its start position.
    let (behind, done, drained) = (
        unique_topic("mm2-behind"),
        unique_topic("mm2-done"),
        unique_topic("mm2-drained"),
    );
    let src_end = |p: i64| on_src.iter().filter(|(q, _)| *q == p).count() as i64;
    let (&p, &last) = positions
        .iter()
        .filter(|(p, o)| **o >= 1 && **o + 1 < src_end(**p))
        .max_by_key(|(_, o)| **o)
        .unwrap_or_else(|| panic!("MM2 finished every partition it started: {positions:?}"));
    let q = (0..4)
        .find(|q| positions.get(q).is_some_and(|o| o + 1 == src_end(*q)))
        .unwrap_or_else(|| panic!("MM2 committed the end of partitions 2 and 3: {positions:?}"));
    // `behind` sits before MM2's position there: MM2 translated it.
    let behind_at = last.min(5);
    let admin = strait::client::Client::connect(strait::client::ClientConfig::new(&src.bootstrap))
        .await
        .unwrap();
    admin
        .commit_offsets(&behind, &[(t.clone(), p as i32, behind_at)])
        .await
        .unwrap();
    admin
        .commit_offsets(&done, &[(t.clone(), p as i32, src_end(p))])
        .await
        .unwrap();
    admin
        .commit_offsets(&drained, &[(t.clone(), q as i32, src_end(q))])
        .await
        .unwrap();
    let dst_admin = strait::client::Client::connect(strait::client::ClientConfig::new(&dst.bootstrap))
        .await
        .unwrap();
    dst_admin
        .commit_offsets(&behind, &[(mirror.clone(), p as i32, behind_at)])
        .await
        .unwrap();

    // strait takes over.
    let name = unique_topic("mm2-takeover");
    let cfg = dir.join("strait.toml");
    std::fs::write(
        &cfg,
        format!(
            "name = \"{name}\"\ntopics = [\"{t}\"]\nrename = \"prefix\"\nstart_from = \"mm2\"\nheartbeats = false\n\
             groups = [\"{behind}\", \"{done}\", \"{drained}\"]\ngroup_sync_interval_ms = 500\n\
             [source]\nalias = \"{alias}\"\nbootstrap_servers = \"{}\"\n[destination]\nbootstrap_servers = \"{}\"\n",
            src.bootstrap, dst.bootstrap
        ),
    )
    .unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_strait"))
        .args(["run", "--config", cfg.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let want = RECORDS + window as u64;
    let complete = tokio::task::block_in_place(|| {
        within(Duration::from_secs(90), || count(&dst.bootstrap, &mirror) >= want)
            && within(Duration::from_secs(30), || {
                group_offset(dst, &done, &mirror, p) == Some(written[&p] + (src_end(p) - (last + 1)))
                    && group_offset(dst, &drained, &mirror, q) == Some(written[&q])
            })
    });
    let log = stop(run, "-TERM");
    assert!(
        complete,
        "strait completed the mirror within 90 s and synced {done} and {drained} to the destination's end of \
         partitions {p} and {q} (at {:?}, {:?}; ends {}, {}): {log}",
        group_offset(dst, &done, &mirror, p),
        group_offset(dst, &drained, &mirror, q),
        written[&p] + (src_end(p) - (last + 1)),
        written[&q]
    );
    assert_eq!(
        group_offset(dst, &behind, &mirror, p),
        Some(behind_at),
        "a group still reading what MM2 copied keeps the offset MM2 translated"
    );
    assert!(log.contains("taking over from MirrorMaker 2"), "{log}");

    // Every record is there; the duplicates are exactly MM2's uncommitted window.
    let after = tokio::task::block_in_place(|| records(&dst.bootstrap, &mirror));
    let distinct: BTreeSet<(i64, i64)> = after.iter().copied().collect();
    assert_eq!(distinct, on_src, "the destination holds every source record");
    let duplicates = after.len() as i64 - distinct.len() as i64;
    eprintln!(
        "MM2 copied {} of {RECORDS} records and committed positions {positions:?}; strait copied the rest; \
         {duplicates} duplicate(s), MM2's uncommitted window was {window}",
        before.len()
    );
    assert_eq!(duplicates, window, "only MM2's uncommitted window is copied twice");
}

#[test]
fn a_missing_mm2_offsets_topic_is_one_clear_error() {
    let (src, dst) = (harness::kafka4_proxied(), harness::kafka4_dest());
    let dir = std::env::temp_dir().join(unique_topic("mm2-missing"));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("strait.toml");
    std::fs::write(
        &cfg,
        format!(
            "name = \"{}\"\nstart_from = \"mm2\"\nmm2_offsets_topic = \"no-such-offsets\"\nheartbeats = false\n\
             [source]\nbootstrap_servers = \"{}\"\n[destination]\nbootstrap_servers = \"{}\"\n",
            unique_topic("mm2-missing"),
            src.bootstrap,
            dst.bootstrap
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strait"))
        .args(["run", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot take over from MirrorMaker 2")
            && err.contains("no-such-offsets does not exist on the destination")
            && err.contains("mm2_offsets_topic"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
