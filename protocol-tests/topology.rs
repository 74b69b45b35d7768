//! Multi-datacenter topologies against real clusters: two-way replication
//! with identity names (loops broken by provenance) and with prefix renames,
//! a three-cluster mesh, hub and spoke, aggregation, SIGKILLs of a two-way
//! process, and the registry topic deleted under a running flow. Every
//! cluster's contents are read back by the independent client and checked
//! record by record: each record exactly once, in order per origin partition.
//!
//! The CI versions load a few thousand records per cluster;
//! `STRAIT_TOPOLOGY_RECORDS=N` loads more.

mod common;
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use harness::group_offset;
use harness::{unique_topic, KafkaCluster};
use serde_json::Value;
use strait::config::Document;
use strait::replicate::{run_document, FlowOutcome, Handle};

/// Records each cluster loads.
fn records() -> u64 {
    std::env::var("STRAIT_TOPOLOGY_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

/// The loader's record numbers come back as timestamps (`BASE_TS + i × 1000`).
const BASE_TS: i64 = 1_700_000_000_000;

/// Each cluster's records get numbers from its own range.
fn range_of(origin: usize) -> std::ops::Range<u64> {
    let start = origin as u64 * 1_000_000;
    start..start + records()
}

/// Loads `range` into `topic` of `cluster` (in two halves: the second while strait runs).
fn load_range(cluster: &KafkaCluster, topic: &str, range: std::ops::Range<u64>) {
    let n = (range.end - range.start).to_string();
    let start = range.start.to_string();
    tool(&[
        "load",
        "--bootstrap",
        &cluster.bootstrap,
        "--topic",
        topic,
        "--count",
        &n,
        "--codec",
        "lz4",
        "--idempotent",
        "--start-index",
        &start,
    ]);
}

/// Record numbers per partition, in log order, read by the independent client.
fn numbers(cluster: &KafkaCluster, topic: &str, isolation: &str) -> BTreeMap<i64, Vec<u64>> {
    let mut out: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
    for line in tool(&[
        "dump",
        "--bootstrap",
        &cluster.bootstrap,
        "--topic",
        topic,
        "--isolation",
        isolation,
    ])
    .lines()
    {
        let v: Value = serde_json::from_str(line).unwrap();
        let i = (v["ts"].as_i64().unwrap() - BASE_TS) / 1000;
        out.entry(v["p"].as_i64().unwrap()).or_default().push(i as u64);
    }
    out
}

/// What a cluster's topic holds against what it should: every number of
/// `want` once (`max_copies` > 1 allows at-least-once repeats), nothing else,
/// and each origin's numbers in increasing order within a partition. Returns
/// the repeats.
fn check_union(
    cluster: &KafkaCluster,
    topic: &str,
    want: &[std::ops::Range<u64>],
    max_copies: usize,
    isolation: &str,
) -> usize {
    let got = numbers(cluster, topic, isolation);
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for (p, list) in &got {
        for r in want {
            let mine: Vec<u64> = list.iter().copied().filter(|i| r.contains(i)).collect();
            let mut last = None;
            for i in &mine {
                // Repeats (at-least-once) may step back, never skip a record.
                if let Some(l) = last {
                    assert!(
                        *i > l || max_copies > 1,
                        "{topic} partition {p}: record {i} after {l}: out of order"
                    );
                }
                last = Some(*i);
            }
        }
        for i in list {
            *seen.entry(*i).or_default() += 1;
        }
    }
    let expected: BTreeSet<u64> = want.iter().flat_map(|r| r.clone()).collect();
    let missing: Vec<&u64> = expected.iter().filter(|i| !seen.contains_key(i)).take(5).collect();
    let extra: Vec<&u64> = seen.keys().filter(|i| !expected.contains(i)).take(5).collect();
    assert!(missing.is_empty(), "{topic}: records missing, e.g. {missing:?}");
    assert!(extra.is_empty(), "{topic}: records from elsewhere, e.g. {extra:?}");
    let over: Vec<(&u64, &usize)> = seen.iter().filter(|(_, n)| **n > max_copies).take(5).collect();
    assert!(
        over.is_empty(),
        "{topic}: records more than {max_copies} times: {over:?}"
    );
    seen.values().map(|n| n - 1).sum()
}

/// Every topic of a cluster that is not Kafka's or strait's own.
fn user_topics(cluster: &KafkaCluster) -> BTreeSet<String> {
    let out = Command::new("kcat")
        .args(["-L", "-b", &cluster.bootstrap])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("topic \""))
        .filter_map(|l| l.split('"').next())
        .filter(|t| !t.starts_with("__"))
        .map(String::from)
        .collect()
}

/// A config of `clusters` (alias, cluster) and `flows` (source, destination, extra keys).
fn doc_text(top: &str, clusters: &[(&str, &KafkaCluster)], flows: &[(&str, &str, &str)]) -> String {
    // Heartbeats would add a topic and records to every cluster: off unless a test sets them.
    let heartbeats = if top.contains("heartbeats") {
        ""
    } else {
        "heartbeats = false\n"
    };
    let mut t = format!("refresh_interval_ms = 1000\ncheckpoint_interval_ms = 200\n{heartbeats}{top}\n");
    for (alias, c) in clusters {
        t += &format!("[clusters.{alias}]\nbootstrap_servers = \"{}\"\n", c.bootstrap);
    }
    for (s, d, extra) in flows {
        t += &format!(
            "[[flows]]\nname = \"{}-{s}-{d}\"\nsource = \"{s}\"\ndestination = \"{d}\"\n{extra}\n",
            unique_topic("f")
        );
    }
    t
}

/// Every flow of a document running in-process.
struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    join: tokio::task::JoinHandle<Result<Vec<FlowOutcome>, strait::replicate::EngineError>>,
    handles: Vec<Handle>,
}

async fn start(text: &str) -> Running {
    let doc = Document::parse(text, "topology test").unwrap_or_else(|e| panic!("{e}\n{text}"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (h_tx, h_rx) = tokio::sync::oneshot::channel();
    let join = tokio::spawn(run_document(
        doc,
        async {
            let _ = stop_rx.await;
        },
        Some(Duration::from_secs(2)),
        move |h| {
            let _ = h_tx.send(h);
        },
    ));
    let handles = match h_rx.await {
        Ok(h) => h,
        Err(_) => panic!("the flows did not start: {:?}", join.await),
    };
    Running {
        stop: Some(stop_tx),
        join,
        handles,
    }
}

impl Running {
    /// Waits until every flow has fetched and acknowledged everything (no lag,
    /// nothing pending) for a second, or `timeout`.
    async fn settle(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut quiet_since: Option<Instant> = None;
        loop {
            // Every flow replicates its partitions (they start once the flow
            // joined its replication group) with nothing left to copy.
            let quiet = self.handles.iter().all(|h| {
                let lag = h.partition_lag();
                h.pending() == 0 && !lag.is_empty() && lag.iter().all(|(_, _, l)| *l == 0)
            });
            if quiet {
                if quiet_since.get_or_insert_with(Instant::now).elapsed() >= Duration::from_secs(1) {
                    return;
                }
            } else {
                quiet_since = None;
            }
            assert!(
                Instant::now() < deadline,
                "not settled after {timeout:?}: {:?}",
                self.handles
                    .iter()
                    .map(|h| (h.flow.clone(), h.lag()))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn stop(mut self) -> Vec<FlowOutcome> {
        let _ = self.stop.take().unwrap().send(());
        let out = self.join.await.unwrap().expect("the flows ran");
        for o in &out {
            let s = o.result.as_ref().unwrap_or_else(|e| panic!("flow {}: {e}", o.flow));
            assert!(s.stopped.is_empty(), "flow {}: {:?}", o.flow, s.stopped);
        }
        out
    }
}

fn skipped(h: &Handle) -> u64 {
    strait::replicate::metrics::Metrics::get(&h.metrics.batches_replicated)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_way_with_identity_names_holds_the_union_on_both_sides_once() {
    let (east, west) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic("orders");
    create(east, &t, 2, &["retention.ms=-1"]);
    create(west, &t, 2, &["retention.ms=-1"]);
    let (a, b) = (range_of(0), range_of(1));
    let half = |r: &std::ops::Range<u64>| r.start..r.start + (r.end - r.start) / 2;
    let rest = |r: &std::ops::Range<u64>| r.start + (r.end - r.start) / 2..r.end;
    load_range(east, &t, half(&a));
    load_range(west, &t, half(&b));
    let text = doc_text(
        &format!("topics = [\"{t}\"]"),
        &[("east", east), ("west", west)],
        &[("east", "west", ""), ("west", "east", "")],
    );
    let before = (user_topics(east), user_topics(west));
    let r = start(&text).await;
    // Producers keep writing on both sides while strait runs.
    load_range(east, &t, rest(&a));
    load_range(west, &t, rest(&b));
    r.settle(Duration::from_secs(120)).await;
    let skipped: u64 = r.handles.iter().map(skipped).sum();
    r.stop().await;
    assert!(skipped > 0, "each flow skipped the other's batches");
    assert_eq!(check_union(east, &t, &[a.clone(), b.clone()], 1, "read_uncommitted"), 0);
    assert_eq!(check_union(west, &t, &[a, b], 1, "read_uncommitted"), 0);
    assert_eq!((user_topics(east), user_topics(west)), before, "no extra topics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_way_with_prefix_renames_follows_mirrormaker_2s_names() {
    let (east, west) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic("pfx");
    create(east, &t, 2, &["retention.ms=-1"]);
    create(west, &t, 2, &["retention.ms=-1"]);
    let (a, b) = (range_of(0), range_of(1));
    load_range(east, &t, a.clone());
    load_range(west, &t, b.clone());
    let text = doc_text(
        &format!("topics = [\"{t}\", \"(east|west)\\\\.{t}\"]\nrename = \"prefix\""),
        &[("east", east), ("west", west)],
        &[("east", "west", ""), ("west", "east", "")],
    );
    let r = start(&text).await;
    r.settle(Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(2)).await; // two more topic refreshes
    r.stop().await;
    assert_eq!(
        check_union(
            west,
            &format!("east.{t}"),
            std::slice::from_ref(&a),
            1,
            "read_uncommitted"
        ),
        0
    );
    assert_eq!(
        check_union(
            east,
            &format!("west.{t}"),
            std::slice::from_ref(&b),
            1,
            "read_uncommitted"
        ),
        0
    );
    for (c, back) in [(east, format!("east.west.{t}")), (west, format!("west.east.{t}"))] {
        assert!(
            !user_topics(c).contains(&back),
            "{back}: a record went back where it came from"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mesh_of_three_puts_every_record_once_on_every_cluster() {
    let cs = [harness::kafka4(), harness::kafka4_dest(), harness::kafka4_third()];
    let names = ["a", "b", "c"];
    let t = unique_topic("mesh");
    for c in cs {
        create(c, &t, 2, &["retention.ms=-1"]);
    }
    let ranges: Vec<_> = (0..3).map(range_of).collect();
    for (c, r) in cs.iter().zip(&ranges) {
        load_range(c, &t, r.clone());
    }
    let mut flows = Vec::new();
    for s in names {
        for d in names {
            if s != d {
                flows.push((s, d, ""));
            }
        }
    }
    let clusters: Vec<(&str, &KafkaCluster)> = names.iter().copied().zip(cs).collect();
    let r = start(&doc_text(&format!("topics = [\"{t}\"]"), &clusters, &flows)).await;
    r.settle(Duration::from_secs(180)).await;
    r.stop().await;
    for c in cs {
        assert_eq!(check_union(c, &t, &ranges, 1, "read_uncommitted"), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_and_spoke_forwards_explicitly_and_delivers_each_record_once() {
    let (east, hub, west) = (harness::kafka4(), harness::kafka4_third(), harness::kafka4_dest());
    let t = unique_topic("hub");
    for c in [east, hub, west] {
        create(c, &t, 2, &["retention.ms=-1"]);
    }
    let ranges: Vec<_> = (0..3).map(range_of).collect();
    for (c, r) in [east, hub, west].iter().zip(&ranges) {
        load_range(c, &t, r.clone());
    }
    let text = doc_text(
        &format!("topics = [\"{t}\"]"),
        &[("east", east), ("hub", hub), ("west", west)],
        &[
            ("east", "hub", ""),
            ("west", "hub", ""),
            ("hub", "east", "forward_from = [\"west\"]"),
            ("hub", "west", "forward_from = [\"east\"]"),
        ],
    );
    let r = start(&text).await;
    r.settle(Duration::from_secs(180)).await;
    r.stop().await;
    for c in [east, hub, west] {
        assert_eq!(check_union(c, &t, &ranges, 1, "read_uncommitted"), 0);
    }
    // East's records reached west under a producer id recorded with their
    // origin, east, not with the hub they came through.
    let registry: Vec<Value> = tool(&["dump", "--bootstrap", &west.bootstrap, "--topic", "__strait.provenance"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let origins: Vec<String> = registry
        .iter()
        .filter_map(|v| v["v"].as_str())
        .filter_map(|b64| {
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            let o: Value = serde_json::from_slice(&raw).ok()?;
            Some(format!("{}<-{}", o["origin"].as_str()?, o["flow"].as_str()?))
        })
        .collect();
    assert!(
        origins
            .iter()
            .any(|o| o.starts_with("east<-") && o.ends_with("hub-west")),
        "{origins:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregation_with_prefixes_and_with_merge() {
    let (eu, us, central) = (harness::kafka4(), harness::kafka4_dest(), harness::kafka4_third());
    let t = unique_topic("agg");
    for c in [eu, us] {
        create(c, &t, 2, &["retention.ms=-1"]);
    }
    let (a, b) = (range_of(0), range_of(1));
    load_range(eu, &t, a.clone());
    load_range(us, &t, b.clone());
    let clusters = [("eu", eu), ("us", us), ("central", central)];
    // Prefixed names: one topic per region.
    let text = doc_text(
        &format!("topics = [\"{t}\"]\nrename = \"prefix\""),
        &clusters,
        &[("eu", "central", ""), ("us", "central", "")],
    );
    let r = start(&text).await;
    r.settle(Duration::from_secs(120)).await;
    r.stop().await;
    assert_eq!(
        check_union(
            central,
            &format!("eu.{t}"),
            std::slice::from_ref(&a),
            1,
            "read_uncommitted"
        ),
        0
    );
    assert_eq!(
        check_union(
            central,
            &format!("us.{t}"),
            std::slice::from_ref(&b),
            1,
            "read_uncommitted"
        ),
        0
    );
    // Identity names are refused without merge...
    let refused = doc_text(
        &format!("topics = [\"{t}\"]"),
        &clusters,
        &[("eu", "central", ""), ("us", "central", "")],
    );
    let doc = Document::parse(&refused, "t").unwrap();
    let p = strait::topology::problems(&doc);
    assert!(p.iter().any(|x| x.contains("merge = true")), "{p:?}");
    // ...and merged into one topic with it, ordered per source partition.
    let merged = doc_text(
        &format!("topics = [\"{t}\"]"),
        &clusters,
        &[("eu", "central", "merge = true"), ("us", "central", "merge = true")],
    );
    let r = start(&merged).await;
    r.settle(Duration::from_secs(120)).await;
    r.stop().await;
    assert_eq!(check_union(central, &t, &[a, b], 1, "read_uncommitted"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_registry_stops_the_flow_instead_of_looping() {
    let (east, west) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic("reg");
    create(east, &t, 1, &["retention.ms=-1"]);
    create(west, &t, 1, &["retention.ms=-1"]);
    load_range(east, &t, 0..500);
    load_range(west, &t, 1_000_000..1_000_500);
    let text = doc_text(
        &format!("topics = [\"{t}\"]"),
        &[("east", east), ("west", west)],
        &[("east", "west", ""), ("west", "east", "")],
    );
    let r = start(&text).await;
    r.settle(Duration::from_secs(120)).await;
    // The registry on west is deleted; then a new local producer writes on west.
    west.tool(
        "org.apache.kafka.tools.TopicCommand",
        &[
            "--bootstrap-server",
            &west.bootstrap,
            "--delete",
            "--topic",
            "__strait.provenance",
        ],
    )
    .unwrap();
    load_range(west, &t, 1_000_500..1_000_600);
    let deadline = Instant::now() + Duration::from_secs(60);
    let from_west = r
        .handles
        .iter()
        .find(|h| h.flow.ends_with("west-east"))
        .unwrap()
        .clone();
    while from_west.stopped_partitions() == 0 {
        assert!(
            Instant::now() < deadline,
            "the flow from west went on without its registry"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let readiness = from_west.readiness().unwrap_err();
    assert!(readiness.contains("stopped"), "{readiness}");
    let _ = tokio::time::timeout(Duration::from_secs(60), r.stop_quietly()).await;
    // Nothing looped: east holds its own records once and west's first 500 once.
    let got = numbers(east, &t, "read_uncommitted");
    let all: Vec<u64> = got.values().flatten().copied().collect();
    assert_eq!(all.iter().filter(|i| **i < 500).count(), 500, "east's own records once");
    assert!(all.iter().filter(|i| **i >= 1_000_000).count() <= 600);
}

impl Running {
    /// Stops the flows without asserting they ended cleanly.
    async fn stop_quietly(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = self.join.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_way_survives_sigkills_without_loss_or_loops() {
    sigkills_in_two_way(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_way_exactly_once_survives_sigkills_without_repeats() {
    sigkills_in_two_way(true).await;
}

/// Five SIGKILLs of a two-way `strait run`, loads on both sides in between:
/// nothing lost, no loop; at-least-once repeats are bounded by the kills, and
/// exactly-once repeats none for read_committed consumers.
async fn sigkills_in_two_way(exactly_once: bool) {
    let (east, west) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic(if exactly_once { "killeos" } else { "kill" });
    create(east, &t, 2, &["retention.ms=-1"]);
    create(west, &t, 2, &["retention.ms=-1"]);
    let (a, b) = (range_of(0), range_of(1));
    let path = std::env::temp_dir().join(format!("{t}.toml"));
    std::fs::write(
        &path,
        doc_text(
            &format!("topics = [\"{t}\"]\nexactly_once = {exactly_once}\ntransaction_interval_ms = 300"),
            &[("east", east), ("west", west)],
            &[("east", "west", ""), ("west", "east", "")],
        ),
    )
    .unwrap();
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_strait"))
            .args(["run", "--config", path.to_str().unwrap(), "--progress", "0"])
            .env("RUST_LOG", "warn")
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // Load in steps and kill strait between them, five times.
    let steps = 5u64;
    let step = |r: &std::ops::Range<u64>, i: u64| {
        let n = (r.end - r.start) / steps;
        r.start + i * n..if i + 1 == steps { r.end } else { r.start + (i + 1) * n }
    };
    for i in 0..steps {
        let mut child = spawn();
        load_range(east, &t, step(&a, i));
        load_range(west, &t, step(&b, i));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        child.kill().unwrap();
        child.wait().unwrap();
    }
    // A last run that catches up and stops cleanly.
    let mut child = spawn();
    let want = (a.end - a.start) + (b.end - b.start);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let have = |c: &KafkaCluster| {
            let v = json(&tool(&[
                "count",
                "--bootstrap",
                &c.bootstrap,
                "--topic",
                &t,
                "--isolation",
                "read_committed",
            ]));
            v["total"].as_u64().unwrap_or(0)
        };
        if have(east) >= want && have(west) >= want {
            break;
        }
        assert!(Instant::now() < deadline, "not caught up after the kills");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    assert!(child.wait().unwrap().success());
    let _ = std::fs::remove_file(&path);
    // At-least-once: a kill re-sends at most what followed the last checkpoint,
    // so a record may repeat (bounded by the kills), but none is lost and none
    // loops back and forth.
    let (copies, isolation) = if exactly_once {
        (1, "read_committed")
    } else {
        (1 + steps as usize, "read_uncommitted")
    };
    let repeats_east = check_union(east, &t, &[a.clone(), b.clone()], copies, isolation);
    let repeats_west = check_union(west, &t, &[a, b], copies, isolation);
    eprintln!(
        "RESULT two-way with {steps} SIGKILLs ({}): repeats east {repeats_east}, west {repeats_west}",
        if exactly_once {
            "exactly-once, read_committed"
        } else {
            "at-least-once"
        }
    );
}

/// Two-way with identity names: a group that read part of east's topic (its
/// own records and west's copies, interleaved) is synced to west at an offset
/// that skips nothing it has not read (it may repeat, counted), and west's
/// flow does not sync that offset back to east.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_way_group_offsets_repeat_but_never_skip_and_do_not_bounce() {
    let (east, west) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic("gtw");
    create(east, &t, 1, &["retention.ms=-1"]);
    create(west, &t, 1, &["retention.ms=-1"]);
    let (a, b) = (range_of(0), range_of(1));
    // Interleave the two origins on both sides: load in four rounds.
    let quarter = |r: &std::ops::Range<u64>, i: u64| {
        let n = (r.end - r.start) / 4;
        r.start + i * n..r.start + (i + 1) * n
    };
    let group = unique_topic("gtw-app");
    let text = doc_text(
        &format!("topics = [\"{t}\"]\ngroups = [\"{group}\"]\ngroup_sync_interval_ms = 300"),
        &[("east", east), ("west", west)],
        &[("east", "west", ""), ("west", "east", "")],
    );
    for i in 0..4 {
        // Each round is written on both sides while strait is stopped: each
        // cluster gets its own records first, then the copies, so the two logs
        // interleave differently.
        load_range(east, &t, quarter(&a, i));
        load_range(west, &t, quarter(&b, i));
        let r = start(&text).await;
        r.settle(Duration::from_secs(60)).await;
        r.stop().await;
    }
    let r = start(&text).await;
    // The group read east's topic up to its middle: east's own records and west's copies.
    let on_east: Vec<Value> = tool(&["dump", "--bootstrap", &east.bootstrap, "--topic", &t])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let number = |v: &Value| (v["ts"].as_i64().unwrap() - BASE_TS) / 1000;
    // Not at a round boundary: the two logs disagree there.
    let o = on_east[on_east.len() * 3 / 8]["o"].as_i64().unwrap();
    let consumed: BTreeSet<i64> = on_east
        .iter()
        .filter(|v| v["o"].as_i64().unwrap() < o)
        .map(number)
        .collect();
    let admin = strait::client::Client::connect(strait::client::ClientConfig::new(&east.bootstrap))
        .await
        .unwrap();
    admin.commit_offsets(&group, &[(t.clone(), 0, o)]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let d = loop {
        if let Some(d) = group_offset(west, &group, &t, 0) {
            break d;
        }
        assert!(Instant::now() < deadline, "the group was never synced to west");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await; // several sync rounds of both flows
    let east_after = group_offset(east, &group, &t, 0);
    r.stop().await;
    assert_eq!(east_after, Some(o), "west's flow synced the group back to east");
    let on_west: Vec<Value> = tool(&["dump", "--bootstrap", &west.bootstrap, "--topic", &t])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let before: Vec<i64> = on_west
        .iter()
        .filter(|v| v["o"].as_i64().unwrap() < d)
        .map(number)
        .collect();
    let skipped: Vec<&i64> = before.iter().filter(|i| !consumed.contains(i)).collect();
    assert!(
        skipped.is_empty(),
        "west offset {d} skips records the group never read: {skipped:?}"
    );
    let repeats = on_west
        .iter()
        .filter(|v| v["o"].as_i64().unwrap() >= d && consumed.contains(&number(v)))
        .count();
    assert!(d > 0, "translated to the very start");
    eprintln!(
        "RESULT two-way group translation: east offset {o} ({} records read) -> west offset {d}; {repeats} records would be read again, 0 skipped",
        consumed.len()
    );
}

/// Heartbeats in a two-way pair with identity names: each side's heartbeat
/// topic holds its own flow's heartbeats and the other side's copies, each
/// record once (a copy, written under strait's registered producer id, is
/// never sent back). Read with the independent client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_way_heartbeats_cross_once_and_do_not_bounce() {
    let (east, west) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic("hb2way");
    create(east, &t, 1, &[]);
    create(west, &t, 1, &[]);
    let hb = format!("{t}-heartbeats");
    let text = doc_text(
        &format!("topics = [\"{t}\"]\nheartbeats_topic = \"{hb}\"\nheartbeats_interval_ms = 200"),
        &[("east", east), ("west", west)],
        &[("east", "west", ""), ("west", "east", "")],
    );
    let r = start(&text).await;
    let flows: Vec<String> = r.handles.iter().map(|h| h.flow.to_string()).collect();
    // (key, value) of every heartbeat on a cluster. A read is cut after 20 s
    // (one CI run spent 12 minutes in these reads: the deadline below is
    // only checked between them).
    let read = |c: &KafkaCluster| -> Vec<(String, String)> {
        let out = Command::new("timeout")
            .args([
                "20",
                "kcat",
                "-C",
                "-b",
                &c.bootstrap,
                "-t",
                &hb,
                "-e",
                "-q",
                "-f",
                "%k\t%s\n",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let both = [east, west].iter().all(|c| {
            let recs = read(c);
            flows.iter().all(|f| recs.iter().filter(|(k, _)| k == f).count() >= 3)
        });
        if both {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "heartbeats of both flows on both sides after 90 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    r.stop().await;
    for c in [east, west] {
        let recs = read(c);
        let distinct: BTreeSet<&(String, String)> = recs.iter().collect();
        assert_eq!(distinct.len(), recs.len(), "a heartbeat came back: {recs:?}");
    }
}
