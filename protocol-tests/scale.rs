//! Several `strait run` processes sharing one replication through the
//! destination's group coordinator, against real clusters: three members over
//! 24 partitions, then a SIGKILL, a SIGSTOP longer than the session timeout, a
//! fourth member added under load, and a rolling restart of every member;
//! two members in the default mode; exactly-once members with a paused
//! zombie; a member whose config differs. The destination is read back by the
//! independent client and checked record by record.
//!
//! The CI versions load 60,000 records (exactly-once: 24,000);
//! `STRAIT_SCALE_RECORDS=500000` runs the full size.

mod common;
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use harness::{unique_topic, KafkaCluster};
use serde_json::Value;

/// Records of the three-member scenario.
fn records() -> u64 {
    std::env::var("STRAIT_SCALE_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000)
}

/// The loader's record numbers come back as timestamps (`BASE_TS + i × 1000`).
const BASE_TS: i64 = 1_700_000_000_000;
const SESSION_MS: u64 = 6_000;

fn load_range(cluster: &KafkaCluster, topic: &str, range: std::ops::Range<u64>) {
    tool(&[
        "load",
        "--bootstrap",
        &cluster.bootstrap,
        "--topic",
        topic,
        "--count",
        &(range.end - range.start).to_string(),
        "--codec",
        "lz4",
        "--start-index",
        &range.start.to_string(),
        "--keys",
        "1000",
    ]);
}

fn count(cluster: &KafkaCluster, topic: &str, isolation: &str) -> u64 {
    let v = json(&tool(&[
        "count",
        "--bootstrap",
        &cluster.bootstrap,
        "--topic",
        topic,
        "--isolation",
        isolation,
    ]));
    v["total"].as_u64().unwrap_or(0)
}

/// Waits until the destination holds at least `want` records.
fn wait_count(cluster: &KafkaCluster, topic: &str, want: u64, isolation: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let have = count(cluster, topic, isolation);
        if have >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {have} of {want} records after 240 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// How often each record number is in `topic` (read by the independent client).
fn copies(cluster: &KafkaCluster, topic: &str, isolation: &str) -> BTreeMap<u64, usize> {
    let mut seen = BTreeMap::new();
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
        let i = ((v["ts"].as_i64().unwrap() - BASE_TS) / 1000) as u64;
        *seen.entry(i).or_default() += 1;
    }
    seen
}

/// Asserts every record of `0..n` is there and nothing else; returns the repeats.
fn check_all(cluster: &KafkaCluster, topic: &str, n: u64, isolation: &str) -> usize {
    let seen = copies(cluster, topic, isolation);
    let missing: Vec<u64> = (0..n).filter(|i| !seen.contains_key(i)).take(5).collect();
    assert!(missing.is_empty(), "{topic}: records lost, e.g. {missing:?}");
    let extra: Vec<&u64> = seen.keys().filter(|i| **i >= n).take(5).collect();
    assert!(extra.is_empty(), "{topic}: records from elsewhere, e.g. {extra:?}");
    seen.values().map(|c| c - 1).sum()
}

/// One `strait run` member with its own instance id; its log goes to a file.
struct Member {
    id: String,
    child: Child,
    log: PathBuf,
}

impl Member {
    fn start(config: &Path, id: &str) -> Self {
        let log = std::env::temp_dir().join(format!("{}-{id}.log", config.file_stem().unwrap().to_string_lossy()));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_strait"))
            .args([
                "run",
                "--config",
                config.to_str().unwrap(),
                "--progress",
                "0",
                "--instance-id",
                id,
            ])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Member {
            id: id.to_string(),
            child,
            log,
        }
    }

    fn signal(&self, sig: &str) {
        assert!(Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success());
    }

    /// SIGTERM and wait: a clean stop (last checkpoint, LeaveGroup).
    fn stop(mut self) {
        self.signal("-TERM");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "member {} exited with {status}", self.id);
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `strait status --json`: instance id → assigned partitions, for the flow.
fn status(config: &Path) -> BTreeMap<String, BTreeSet<(String, i64)>> {
    let (ok, out) = strait_cmd(&["status", "--config", config.to_str().unwrap(), "--json"]);
    assert!(ok, "strait status failed: {out}");
    let line = out
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("{out}"));
    let v: Value = serde_json::from_str(line).unwrap();
    let mut out = BTreeMap::new();
    for m in v["flows"][0]["members"].as_array().unwrap() {
        let mut set = BTreeSet::new();
        for (t, ps) in m["partitions"].as_object().unwrap() {
            for p in ps.as_array().unwrap() {
                set.insert((t.clone(), p.as_i64().unwrap()));
            }
        }
        out.insert(m["instance_id"].as_str().unwrap().to_string(), set);
    }
    out
}

/// Waits until exactly `members` are in the group, sharing all `partitions`
/// evenly (each once); returns the assignment.
fn wait_balanced(config: &Path, members: &[&str], partitions: usize) -> BTreeMap<String, BTreeSet<(String, i64)>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = status(config);
        let names: Vec<&str> = s.keys().map(String::as_str).collect();
        let total: usize = s.values().map(BTreeSet::len).sum();
        let union: BTreeSet<&(String, i64)> = s.values().flatten().collect();
        let even = s
            .values()
            .all(|p| p.len() == partitions / members.len() || p.len() == partitions.div_ceil(members.len()));
        if names == members && total == partitions && union.len() == partitions && even {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "group not balanced over {members:?} after 120 s: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn scale_config(name: &str, topic: &str, src: &KafkaCluster, dst: &KafkaCluster, extra: &str) -> PathBuf {
    config_file(
        name,
        &src.bootstrap,
        &dst.bootstrap,
        topic,
        &format!("session_timeout_ms = {SESSION_MS}\nheartbeat_interval_ms = 500\n{extra}"),
        "",
    )
}

#[test]
fn three_members_share_24_partitions_through_kill_pause_growth_and_rolling_restart() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic("scale");
    create(src, &t, 24, &["retention.ms=-1"]);
    let n = records();
    let phase = |i: u64| i * n / 5..(i + 1) * n / 5;
    let cfg = scale_config(&t, &t, src, dst, "");
    let mut members: BTreeMap<&str, Member> = ["m1", "m2", "m3"]
        .into_iter()
        .map(|id| (id, Member::start(&cfg, id)))
        .collect();
    load_range(src, &t, phase(0));
    let before = wait_balanced(&cfg, &["m1", "m2", "m3"], 24);
    wait_count(dst, &t, phase(0).end, "read_uncommitted", "three members");

    // SIGKILL a member: its partitions resume on the others.
    let killed_at = Instant::now();
    members.remove("m2").unwrap().kill();
    load_range(src, &t, phase(1));
    let after = wait_balanced(&cfg, &["m1", "m3"], 24);
    eprintln!(
        "RESULT kill: partitions of m2 reassigned after {:.1} s (session timeout {} s)",
        killed_at.elapsed().as_secs_f64(),
        SESSION_MS / 1000
    );
    for m in ["m1", "m3"] {
        assert!(before[m].is_subset(&after[m]), "{m} kept its partitions");
    }
    wait_count(dst, &t, phase(1).end, "read_uncommitted", "after the kill");

    // SIGSTOP a member past the session timeout: it is expelled, its late
    // commits are refused, and it rejoins when it runs again.
    members.insert("m2", Member::start(&cfg, "m2"));
    wait_balanced(&cfg, &["m1", "m2", "m3"], 24);
    members["m3"].signal("-STOP");
    load_range(src, &t, phase(2));
    wait_balanced(&cfg, &["m1", "m2"], 24);
    members["m3"].signal("-CONT");
    wait_balanced(&cfg, &["m1", "m2", "m3"], 24);
    wait_count(dst, &t, phase(2).end, "read_uncommitted", "after the pause");
    let zombie = members["m3"].log();
    assert!(
        zombie.contains("no longer a member of the current generation"),
        "the paused member noticed it was expelled:\n{zombie}"
    );

    // A fourth member under load takes only its share.
    let three = wait_balanced(&cfg, &["m1", "m2", "m3"], 24);
    members.insert("m4", Member::start(&cfg, "m4"));
    load_range(src, &t, phase(3));
    let four = wait_balanced(&cfg, &["m1", "m2", "m3", "m4"], 24);
    let moved: usize = three.iter().map(|(m, ps)| ps.difference(&four[m]).count()).sum();
    eprintln!("RESULT fourth member: {moved} of 24 partitions moved");
    assert_eq!(moved, 6, "only the newcomer's share moves");
    wait_count(dst, &t, phase(3).end, "read_uncommitted", "after growth");

    // Rolling restart, one member at a time.
    for id in ["m1", "m2", "m3", "m4"] {
        members.remove(id).unwrap().stop();
        members.insert(id, Member::start(&cfg, id));
        wait_balanced(&cfg, &["m1", "m2", "m3", "m4"], 24);
    }
    load_range(src, &t, phase(4));
    wait_count(dst, &t, n, "read_uncommitted", "after the rolling restart");
    // Lag back to 0: every member's committed position at the source end.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, out) = strait_cmd(&["status", "--config", cfg.to_str().unwrap(), "--json"]);
        assert!(ok, "{out}");
        let v: Value = serde_json::from_str(out.lines().find(|l| l.starts_with('{')).unwrap()).unwrap();
        let lag: i64 = v["flows"][0]["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["lag_records"].as_i64().unwrap())
            .sum();
        if lag == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "lag {lag} after 60 s");
        std::thread::sleep(Duration::from_millis(500));
    }
    for (_, m) in std::mem::take(&mut members) {
        m.stop();
    }
    let repeats = check_all(dst, &t, n, "read_uncommitted");
    eprintln!("RESULT three members, {n} records over 24 partitions, kill + pause + growth + rolling restart: 0 lost, {repeats} repeated (at-least-once handoffs)");
}

#[test]
fn two_processes_with_one_config_split_the_partitions() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic("split");
    create(src, &t, 12, &["retention.ms=-1"]);
    let n = 20_000;
    let cfg = scale_config(&t, &t, src, dst, "");
    let a = Member::start(&cfg, "host-a");
    let b = Member::start(&cfg, "host-b");
    load_range(src, &t, 0..n);
    let s = wait_balanced(&cfg, &["host-a", "host-b"], 12);
    assert_eq!(s["host-a"].len(), 6);
    wait_count(dst, &t, n, "read_uncommitted", "two processes");
    a.stop();
    b.stop();
    let repeats = check_all(dst, &t, n, "read_uncommitted");
    eprintln!("RESULT two processes, one config: {n} records, {repeats} repeated (the at-least-once window of the start-up handoff)");
    assert!(
        repeats < n as usize / 10,
        "{repeats} repeats: both processes replicated the same partitions"
    );
}

#[test]
fn exactly_once_members_fence_a_paused_zombie_and_survive_a_kill() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic("scaleeos");
    create(src, &t, 12, &["retention.ms=-1"]);
    let n = records() * 2 / 5;
    let part = |i: u64| i * n / 4..(i + 1) * n / 4;
    let cfg = scale_config(
        &t,
        &t,
        src,
        dst,
        "exactly_once = true\ntransaction_interval_ms = 300\ntransaction_timeout_ms = 10000",
    );
    let mut members: BTreeMap<&str, Member> = ["e1", "e2", "e3"]
        .into_iter()
        .map(|id| (id, Member::start(&cfg, id)))
        .collect();
    load_range(src, &t, part(0));
    wait_balanced(&cfg, &["e1", "e2", "e3"], 12);
    wait_count(dst, &t, part(0).end, "read_committed", "exactly-once members");
    // Pause one mid-stream past the session timeout.
    members["e2"].signal("-STOP");
    load_range(src, &t, part(1));
    wait_balanced(&cfg, &["e1", "e3"], 12);
    members["e2"].signal("-CONT");
    wait_count(dst, &t, part(1).end, "read_committed", "after the pause");
    // The zombie noticed it was expelled: a transaction it had open cannot
    // commit (it stops, exit 1: a restart rejoins); expelled between
    // transactions, it drops its partitions and rejoins.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut zombie = members.remove("e2").unwrap();
    let status = loop {
        if let Some(status) = zombie.child.try_wait().unwrap() {
            break status;
        }
        if zombie.log().contains("no longer a member") {
            zombie.signal("-TERM");
            break zombie.child.wait().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the zombie neither stopped nor noticed its expulsion"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let log = zombie.log();
    assert!(
        log.contains("no longer a member") || log.contains("FencedInstanceId") || log.contains("UnknownMemberId"),
        "the zombie was fenced:\n{log}"
    );
    eprintln!("RESULT exactly-once zombie fenced, exited with {status}");
    members.insert("e2", Member::start(&cfg, "e2"));
    wait_balanced(&cfg, &["e1", "e2", "e3"], 12);
    // SIGKILL one while loading.
    load_range(src, &t, part(2));
    members.remove("e3").unwrap().kill();
    wait_balanced(&cfg, &["e1", "e2"], 12);
    members.insert("e3", Member::start(&cfg, "e3"));
    load_range(src, &t, part(3));
    wait_count(dst, &t, n, "read_committed", "after the kill");
    for (_, m) in std::mem::take(&mut members) {
        m.stop();
    }
    let repeats = check_all(dst, &t, n, "read_committed");
    assert_eq!(repeats, 0, "read_committed consumers see every record once");
    eprintln!("RESULT exactly-once members, {n} records, pause + kill: 0 lost, 0 repeated read_committed");
}

#[test]
fn a_member_with_a_different_config_is_refused_naming_the_difference() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic("odd");
    create(src, &t, 4, &["retention.ms=-1"]);
    let good = scale_config(&t, &t, src, dst, "");
    let odd_path = std::env::temp_dir().join(format!("{t}-odd.toml"));
    std::fs::write(
        &odd_path,
        std::fs::read_to_string(&good)
            .unwrap()
            .replace("refresh_interval_ms", "rename = \"copy.{topic}\"\nrefresh_interval_ms"),
    )
    .unwrap();
    let a = Member::start(&good, "ok-1");
    let b = Member::start(&good, "ok-2");
    wait_balanced(&good, &["ok-1", "ok-2"], 4);
    let mut odd = Member::start(&odd_path, "odd-1");
    let status = odd.child.wait().unwrap();
    assert!(!status.success(), "the odd member must not run");
    let log = odd.log();
    assert!(
        log.contains("settings differ from the replication group's")
            && log.contains("rename = copy.{topic} here, identity in the group"),
        "{log}"
    );
    wait_balanced(&good, &["ok-1", "ok-2"], 4);
    a.stop();
    b.stop();
}

#[test]
fn a_second_process_with_the_same_instance_id_replaces_the_first() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic("sameid");
    create(src, &t, 4, &["retention.ms=-1"]);
    let cfg = scale_config(&t, &t, src, dst, "");
    let mut first = Member::start(&cfg, "host-1");
    load_range(src, &t, 0..2_000);
    wait_balanced(&cfg, &["host-1"], 4);
    wait_count(dst, &t, 2_000, "read_uncommitted", "first process");
    // The same id by mistake (a second start on one host): the newer one takes over.
    // (Both write the same log file: the assertion below is on a line only
    // the replaced process writes.)
    let second = Member::start(&cfg, "host-1");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = first.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the replaced process kept running");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(!status.success(), "the replaced process exits 1");
    let log = first.log();
    assert!(
        log.contains("another strait process joined with instance id \"host-1\""),
        "{log}"
    );
    load_range(src, &t, 2_000..4_000);
    wait_count(dst, &t, 4_000, "read_uncommitted", "after the replacement");
    second.stop();
    let repeats = check_all(dst, &t, 4_000, "read_uncommitted");
    eprintln!("RESULT same instance id twice: the first exited with {status}, 0 lost, {repeats} repeated");
}

#[test]
fn failover_refuses_while_a_member_is_alive_and_runs_once_it_left() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic("fomember");
    create(src, &t, 2, &["retention.ms=-1"]);
    let cfg = scale_config(&t, &t, src, dst, "");
    let member = Member::start(&cfg, "dc-a-1");
    load_range(src, &t, 0..1_000);
    wait_balanced(&cfg, &["dc-a-1"], 2);
    wait_count(dst, &t, 1_000, "read_uncommitted", "before failover");
    let started = Instant::now();
    let (ok, out) = strait_cmd(&["failover", "--config", cfg.to_str().unwrap()]);
    assert!(!ok, "failover must refuse while a member runs:\n{out}");
    assert!(
        out.contains("still has live members (dc-a-1 on 127.0.0.1)") && out.contains("stop every `strait run`"),
        "{out}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(SESSION_MS),
        "it waited a session timeout for the member to leave"
    );
    member.stop();
    let (ok, out) = strait_cmd(&["failover", "--config", cfg.to_str().unwrap()]);
    assert!(ok, "failover after the member left:\n{out}");
}
