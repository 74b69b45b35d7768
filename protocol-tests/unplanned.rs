//! Unplanned failover and a failback that loses nothing, the way an operator
//! meets them, with the `strait` binary: the destination stalls (fault
//! proxy) while records keep arriving on the source, strait is killed, then
//! the source; `strait failover --unplanned` runs with the source down; once
//! the source is back, `strait run` of the old direction refuses, `strait
//! failback --dry-run` reports exactly the records the destination lacks, and
//! `strait failback` keeps them in `<topic>.diverged` and copies back what
//! producers wrote on the destination meanwhile. Every record is counted by
//! the independent client.

mod harness;
#[path = "harness/proxy.rs"]
mod proxy;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::{b64, stop_process as stop, within};
use harness::{unique_topic, KafkaCluster};
use proxy::ClusterProxy;
use serde_json::Value;

fn tool(args: &[&str]) -> String {
    harness::kafka_tool(args)
}

/// (partition, loader index) of every record of `topic` that carries an
/// index, read by the independent client.
fn records(bootstrap: &str, topic: &str) -> BTreeSet<(i64, u64)> {
    tool(&["dump", "--bootstrap", bootstrap, "--topic", topic])
        .lines()
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            let b = v["h"].as_array()?.iter().find(|kv| kv[0] == "idx")?[1]
                .as_str()?
                .to_string();
            Some((v["p"].as_i64()?, String::from_utf8(b64(&b)).ok()?.parse().ok()?))
        })
        .collect()
}

/// Records of `topic` (`None`: no such topic).
fn count(bootstrap: &str, topic: &str) -> Option<u64> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/protocol-tests/tools/kafka_tool.py");
    let out = Command::new("python3")
        .args([
            script,
            "count",
            "--bootstrap",
            bootstrap,
            "--topic",
            topic,
            "--timeout",
            "10",
        ])
        .output()
        .ok()?;
    let v: Value = serde_json::from_slice(out.stdout.trim_ascii()).ok()?;
    v["total"].as_u64()
}

fn strait(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_strait"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strait runs")
}

/// Runs `strait` to its end; (success, stdout + stderr).
fn strait_done(args: &[&str]) -> (bool, String) {
    let out = strait(args).wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

type Replication = tokio::task::JoinHandle<Result<strait::replicate::Summary, strait::replicate::EngineError>>;

/// strait running in this process: its handle, its stop switch and its task.
async fn in_process(
    cfg: strait::config::Config,
) -> (strait::replicate::Handle, tokio::sync::oneshot::Sender<()>, Replication) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (h_tx, h_rx) = tokio::sync::oneshot::channel();
    let run = tokio::spawn(strait::replicate::run(
        cfg,
        async {
            let _ = stop_rx.await;
        },
        None,
        move |h| {
            let _ = h_tx.send(h);
        },
    ));
    (h_rx.await.expect("replication started"), stop_tx, run)
}

fn wait(what: &str, timeout: Duration, done: impl FnMut() -> bool) {
    assert!(within(timeout, done), "{what} within {timeout:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unplanned_failover_then_failback_keeps_every_diverged_record() {
    // The source is this test's own (it is killed); the destination is
    // reached through the fault proxy (it is stalled).
    let src = KafkaCluster::start(harness::KAFKA_4, 1).expect("source starts");
    let dst = harness::kafka4_proxied_dest();
    let dp = ClusterProxy::start(dst, harness::PROXIED).await;
    let t = unique_topic("unplanned");
    tool(&[
        "create",
        "--bootstrap",
        &src.bootstrap,
        "--topic",
        &t,
        "--partitions",
        "2",
        "--config",
        "retention.ms=-1",
    ]);
    tool(&["load", "--bootstrap", &src.bootstrap, "--topic", &t, "--count", "2000"]);
    let name = unique_topic("unplanned");
    let path = std::env::temp_dir().join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "name = \"{name}\"\ntopics = [\"{t}\"]\nrefresh_interval_ms = 1000\ncheckpoint_interval_ms = 500\n\
             session_timeout_ms = 6000\nheartbeat_interval_ms = 1000\n\
             [source]\nbootstrap_servers = \"{}\"\nrequest_timeout_ms = 5000\n\
             [destination]\nbootstrap_servers = \"{}\"\nrequest_timeout_ms = 5000\n",
            src.bootstrap, dp.bootstrap
        ),
    )
    .unwrap();
    let cfg = path.to_str().unwrap();

    tokio::task::block_in_place(|| {
        let run = strait(&["run", "--config", cfg]);
        wait("2,000 records replicated", Duration::from_secs(60), || {
            count(&dst.bootstrap, &t) == Some(2000)
        });
        // The destination stops answering; 1,000 more records reach the
        // source's partition 0 (partition 1 has nothing to diverge: failback
        // must not copy it into .diverged).
        dp.each(|f| f.stall(Duration::from_secs(3600)));
        tool(&[
            "load",
            "--bootstrap",
            &src.bootstrap,
            "--topic",
            &t,
            "--count",
            "1000",
            "--start-index",
            "2000",
            "--partition",
            "0",
        ]);
        std::thread::sleep(Duration::from_secs(2)); // strait fetches some of them
        stop(run, "-KILL");
        src.kill_node(1).expect("source killed");
    });
    // The source's records, for the independent comparison later (read when it is back).
    dp.each(|f| f.unstall());

    // Unplanned failover with the source down.
    let (ok, out) = tokio::task::block_in_place(|| strait_done(&["failover", "--unplanned", "--config", cfg]));
    assert!(ok, "failover --unplanned with the source down: {out}");
    assert!(out.contains("unplanned failover complete"), "{out}");
    eprintln!("{out}");
    // Producers move to the destination.
    tool(&[
        "load",
        "--bootstrap",
        &dst.bootstrap,
        "--topic",
        &t,
        "--count",
        "100",
        "--start-index",
        "10000",
    ]);

    // The source comes back: the old direction refuses to start.
    src.start_node(1).expect("source restarts");
    let (ok, out) = tokio::task::block_in_place(|| strait_done(&["run", "--config", cfg]));
    assert!(!ok, "strait run of the failed-over direction must refuse: {out}");
    assert!(
        out.contains("was failed over") && out.contains(&format!("__strait.{name}.failover")),
        "the refusal names the failover record: {out}"
    );

    // What the destination lacks, by the independent client, once the
    // restarted source serves all 3,000 records again (a read right after a
    // restart on a busy machine can end before its leaders are back).
    tokio::task::block_in_place(|| {
        wait(
            "the restarted source serves its 3,000 records",
            Duration::from_secs(60),
            || count(&src.bootstrap, &t) == Some(3000),
        )
    });
    let on_src = records(&src.bootstrap, &t);
    let on_dst = records(&dst.bootstrap, &t);
    let lacking: BTreeSet<(i64, u64)> = on_src.difference(&on_dst).cloned().collect();
    assert!(!lacking.is_empty(), "the stall left records on the source only");
    let mut per_partition: BTreeMap<i64, u64> = BTreeMap::new();
    for (p, _) in &lacking {
        *per_partition.entry(*p).or_default() += 1;
    }
    // Records without an index (the loader writes some) count too: compare totals.
    let src_total = count(&src.bootstrap, &t).unwrap();

    // failback --dry-run reports exactly those, per partition.
    let (ok, out) = tokio::task::block_in_place(|| strait_done(&["failback", "--dry-run", "--config", cfg]));
    assert!(ok, "{out}");
    let reported: BTreeMap<i64, u64> = out
        .lines()
        .filter(|l| l.starts_with("diverged: "))
        .filter_map(|l| {
            let p = l.split_once(&format!("{t}["))?.1.split_once(']')?.0.parse().ok()?;
            let n = l.split_once("]: ")?.1.split_once(" record")?.0.parse().ok()?;
            Some((p, n))
        })
        .collect();
    let reported_total: u64 = reported.values().sum();
    let dst_before = count(&dst.bootstrap, &t).unwrap() - 100; // less what producers wrote there
    assert_eq!(
        reported_total,
        src_total - dst_before,
        "every record the destination lacks, and only those: {out}"
    );
    for (p, n) in &per_partition {
        assert!(reported.get(p).is_some_and(|r| r >= n), "partition {p}: {out}");
    }
    assert_eq!(
        count(&dst.bootstrap, &format!("{t}.diverged")),
        None,
        "a dry run copies nothing"
    );

    // failback keeps them in <topic>.diverged and copies the new records back.
    let diverged = format!("{t}.diverged");
    tokio::task::block_in_place(|| {
        let fb = strait(&["failback", "--config", cfg]);
        if !within(Duration::from_secs(90), || {
            count(&dst.bootstrap, &diverged) == Some(reported_total)
        }) {
            let held = count(&dst.bootstrap, &diverged);
            panic!(
                "the diverged records copied within 90 s ({held:?} of {reported_total}): {}",
                stop(fb, "-TERM")
            );
        }
        let deadline = Instant::now() + Duration::from_secs(90);
        let back = || records(&src.bootstrap, &t).iter().filter(|(_, i)| *i >= 10_000).count();
        // The loader leaves the index out of some records: compare those with one.
        let written = on_dst.iter().filter(|(_, i)| *i >= 10_000).count();
        while back() < written && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
        }
        let log = stop(fb, "-TERM");
        assert_eq!(
            back(),
            written,
            "the destination's new records back on the source: {log}"
        );
        assert!(log.contains("stopped: 100 records"), "all 100 copied back once: {log}");
        assert!(log.contains("diverged: "), "{log}");
    });
    let kept = records(&dst.bootstrap, &diverged);
    assert_eq!(
        kept, lacking,
        "<topic>.diverged holds exactly what the destination lacked"
    );
    // 0 lost: every source record is on the destination or in .diverged.
    let everywhere: BTreeSet<(i64, u64)> = records(&dst.bootstrap, &t).union(&kept).cloned().collect();
    assert!(on_src.is_subset(&everywhere), "records lost");
    // The mark stays until cleared; then the old direction may run again.
    let (ok, out) = tokio::task::block_in_place(|| strait_done(&["failover", "--reset", "--config", cfg]));
    assert!(ok && out.contains("cleared"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automated_failover_waits_for_the_witness_then_fails_over_once() {
    // The source is reached only through the proxy, which is then cut.
    let src = harness::kafka4_proxied();
    let sp = ClusterProxy::start(src, harness::PROXIED).await;
    let dst = harness::kafka4_proxied_dest();
    let t = unique_topic("autofail");
    tool(&[
        "create",
        "--bootstrap",
        &src.bootstrap,
        "--topic",
        &t,
        "--partitions",
        "2",
        "--config",
        "retention.ms=-1",
    ]);
    tool(&["load", "--bootstrap", &src.bootstrap, "--topic", &t, "--count", "500"]);
    let dir = std::env::temp_dir().join(unique_topic("autofail-files"));
    std::fs::create_dir_all(&dir).unwrap();
    let (asked, witness, hook) = (dir.join("asked"), dir.join("source-is-down"), dir.join("hook"));
    let name = unique_topic("autofail");
    let text = format!(
        "name = \"{name}\"\ntopics = [\"{t}\"]\nrefresh_interval_ms = 1000\ncheckpoint_interval_ms = 300\n\
         session_timeout_ms = 6000\nheartbeat_interval_ms = 1000\nheartbeats = false\n\
         [failover]\nauto = true\nsource_unavailable_s = 5\n\
         confirm = [\"/bin/sh\", \"-c\", \"echo asked >> {}; test -e {}\"]\n\
         on_failover = [\"/bin/sh\", \"-c\", \"echo {{destination}} {{flow}} > {}\"]\n\
         [source]\nbootstrap_servers = \"{}\"\nrequest_timeout_ms = 3000\nconnect_timeout_ms = 2000\n\
         [destination]\nbootstrap_servers = \"{}\"\n",
        asked.display(),
        witness.display(),
        hook.display(),
        sp.bootstrap,
        dst.bootstrap
    );
    let cfg = strait::config::Config::parse(&text, "autofail.toml").unwrap();
    let (h, stop_tx, run) = in_process(cfg).await;
    let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    tokio::task::block_in_place(|| {
        wait("500 records replicated", Duration::from_secs(60), || {
            get(&h.metrics.records) >= 500
        });
        // A stall shorter than source_unavailable_s: the witness is never asked.
        sp.each(|f| f.stall(Duration::from_secs(4)));
        std::thread::sleep(Duration::from_secs(4 + 5));
        assert!(!asked.exists(), "a 4 s stall is not a dead source");
        // The source goes away: every connection cut, new ones refused.
        sp.each(|f| f.refuse(true));
        sp.each(|f| f.reset_all());
        // The witness is asked once the source has been gone for 5 s, and says no.
        wait("the witness is asked", Duration::from_secs(60), || asked.exists());
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(get(&h.metrics.failed_over), 0, "no failover without the witness");
        // The witness confirms: one failover, then the hook once.
        std::fs::write(&witness, "down").unwrap();
        wait("the automated failover", Duration::from_secs(60), || {
            get(&h.metrics.failed_over) == 1
        });
        wait("the hook ran", Duration::from_secs(30), || {
            std::fs::read_to_string(&hook).is_ok_and(|s| s.contains(&dst.bootstrap) && s.contains(&name))
        });
    });
    assert!(
        h.failed
            .lock()
            .unwrap()
            .as_deref()
            .is_some_and(|f| f.contains("failed over")),
        "/status names the failover"
    );
    // The failover record on the destination, read by the independent client.
    let dump = tool(&[
        "dump",
        "--bootstrap",
        &dst.bootstrap,
        "--topic",
        &format!("__strait.{name}.failover"),
    ]);
    let record: Value = dump
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| String::from_utf8(b64(v["v"].as_str()?)).ok())
        .filter_map(|s| serde_json::from_str(&s).ok())
        .next()
        .expect("a failover record");
    assert_eq!(record["kind"], "unplanned", "{record}");
    assert_eq!(record["active"], true, "{record}");
    assert_eq!(record["partitions"].as_array().map(Vec::len), Some(2), "{record}");
    let _ = stop_tx.send(());
    run.await
        .unwrap()
        .expect("the process stops cleanly after failing over");
    sp.each(|f| f.refuse(false));
    // The hook ran once.
    assert_eq!(std::fs::read_to_string(&hook).unwrap().lines().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automated_failover_ignores_one_broker_of_three() {
    // strait's log, shown if the test fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("TEST_LOG").unwrap_or_else(|_| "strait=info".into()),
        ))
        .with_test_writer()
        .try_init();
    // A three-node source of its own, each node behind its proxy.
    let opts = harness::StartOptions {
        listeners: vec![format!("{}:PLAINTEXT:proxied", harness::PROXIED)],
        ..Default::default()
    };
    let src = KafkaCluster::start_with(harness::KAFKA_4, 3, &opts).expect("three-node source");
    let sp = ClusterProxy::start(&src, harness::PROXIED).await;
    let dst = harness::kafka4_proxied_dest();
    let t = unique_topic("autofail3");
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
        "retention.ms=-1", // the loader's timestamps are years old
    ]);
    tool(&["load", "--bootstrap", &src.bootstrap, "--topic", &t, "--count", "300"]);
    let dir = std::env::temp_dir().join(unique_topic("autofail3-files"));
    std::fs::create_dir_all(&dir).unwrap();
    let asked = dir.join("asked");
    let name = unique_topic("autofail3");
    let text = format!(
        "name = \"{name}\"\ntopics = [\"{t}\"]\nrefresh_interval_ms = 1000\nheartbeats = false\n\
         [failover]\nauto = true\nsource_unavailable_s = 5\n\
         confirm = [\"/bin/sh\", \"-c\", \"echo asked >> {}\"]\n\
         [source]\nbootstrap_servers = \"{}\"\n[destination]\nbootstrap_servers = \"{}\"\n",
        asked.display(),
        sp.bootstrap,
        dst.bootstrap
    );
    let cfg = strait::config::Config::parse(&text, "autofail3.toml").unwrap();
    let (h, stop_tx, run) = in_process(cfg).await;
    let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    tokio::task::block_in_place(|| {
        wait("300 records replicated", Duration::from_secs(60), || {
            get(&h.metrics.records) >= 300
        });
        // One broker of three goes away: the source is not gone.
        sp.nodes[0].faults.refuse(true);
        sp.nodes[0].faults.reset_all();
        std::thread::sleep(Duration::from_secs(5 + 5));
    });
    assert!(!asked.exists(), "one broker of three down is not a dead source");
    assert_eq!(get(&h.metrics.failed_over), 0);
    let _ = stop_tx.send(());
    run.await.unwrap().expect("clean stop");
    sp.nodes[0].faults.refuse(false);
}
