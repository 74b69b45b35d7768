//! Rust side of the real-broker harness: starts Apache Kafka KRaft clusters with
//! `protocol-tests/harness/kafka.sh` (jars resolved from Maven Central by `mvn`,
//! cached in `~/.cache/strait`) and stops them when dropped, or, for clusters
//! shared by every test of a binary, when the test process exits (the script's
//! owner-pid watchdog). Cluster directories with broker logs live under
//! `target/test-clusters/`; those of failed tests are kept and their path printed.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Kafka 4.x version the acceptance tests run against.
pub const KAFKA_4: &str = "4.1.1";
/// Kafka 3.9.x version for cross-version tests.
pub const KAFKA_3: &str = "3.9.1";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn script() -> PathBuf {
    repo().join("protocol-tests/harness/kafka.sh")
}

/// A running cluster.
#[derive(Debug)]
pub struct KafkaCluster {
    /// Directory holding configs, data and logs of every node.
    pub dir: PathBuf,
    /// `host:port,...` of every node.
    pub bootstrap: String,
    /// Kafka version.
    pub version: String,
    /// Number of nodes.
    pub nodes: usize,
    shared: bool,
}

/// Extra settings for [`KafkaCluster::start_with`] (see `kafka.sh start`).
#[derive(Debug, Default, Clone)]
pub struct StartOptions {
    /// `NAME:PROTOCOL[:proxied]` listeners besides PLAINTEXT.
    pub listeners: Vec<String>,
    /// Lines appended to every node's server.properties (`{node}`, `{nodedir}`, `{dir}` replaced).
    pub props: String,
    /// `SCRAM-SHA-256=[name=U,password=P]` credentials created at format time.
    pub scram: Vec<String>,
}

/// One node's extra listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerPorts {
    /// 1-based node id.
    pub node: usize,
    pub name: String,
    /// Port the broker binds.
    pub bound: u16,
    /// Port the broker advertises (differs from `bound` for proxied listeners).
    pub advertised: u16,
}

impl KafkaCluster {
    /// Starts a cluster of `nodes` combined broker+controller nodes.
    pub fn start(version: &str, nodes: usize) -> Result<Self, String> {
        Self::start_with(version, nodes, &StartOptions::default())
    }

    /// Starts a cluster with extra listeners, properties and SCRAM users.
    pub fn start_with(version: &str, nodes: usize, opts: &StartOptions) -> Result<Self, String> {
        let root = repo().join("target/test-clusters");
        std::fs::create_dir_all(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
        remove_stale_dirs(&root);
        let pid = std::process::id();
        let name = format!("kafka-{version}-{nodes}n-{pid}-{}", unique());
        let dir = root.join(name);
        run(Command::new("bash").arg(script()).args(["fetch", version]))?;
        let mut cmd = Command::new("bash");
        cmd.arg(script()).arg("start").arg(&dir).args([
            "--version",
            version,
            "--nodes",
            &nodes.to_string(),
            "--owner-pid",
            &pid.to_string(),
        ]);
        for l in &opts.listeners {
            cmd.args(["--listener", l]);
        }
        for u in &opts.scram {
            cmd.args(["--scram", u]);
        }
        if !opts.props.is_empty() {
            let f = root.join(format!("props-{pid}-{}", unique()));
            std::fs::write(&f, &opts.props).map_err(|e| format!("cannot write {}: {e}", f.display()))?;
            cmd.arg("--props").arg(&f);
        }
        let out = run(&mut cmd)?;
        let bootstrap = out.trim().to_string();
        if bootstrap.is_empty() {
            return Err(format!(
                "kafka.sh start printed no bootstrap servers; see {}",
                dir.display()
            ));
        }
        Ok(Self {
            dir,
            bootstrap,
            version: version.to_string(),
            nodes,
            shared: false,
        })
    }

    /// SIGKILLs node `i` (0-based).
    pub fn kill_node(&self, i: usize) -> Result<(), String> {
        run(Command::new("bash")
            .arg(script())
            .arg("kill-node")
            .arg(&self.dir)
            .arg(i.to_string()))
        .map(|_| ())
    }

    /// Restarts node `i` and waits until it serves again.
    pub fn start_node(&self, i: usize) -> Result<(), String> {
        run(Command::new("bash")
            .arg(script())
            .arg("start-node")
            .arg(&self.dir)
            .arg(i.to_string()))
        .map(|_| ())
    }

    /// Runs a Kafka Java tool class against this cluster's classpath; returns stdout.
    pub fn tool(&self, class: &str, args: &[&str]) -> Result<String, String> {
        run(Command::new("bash")
            .arg(script())
            .arg("tool")
            .arg(&self.dir)
            .arg(class)
            .args(args))
    }

    /// Ports of the extra listener `name` on every node, in node order.
    pub fn listener(&self, name: &str) -> Vec<ListenerPorts> {
        let text = std::fs::read_to_string(self.dir.join("listeners")).unwrap_or_default();
        let mut v: Vec<ListenerPorts> = text
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 4 && f[1] == name).then(|| ListenerPorts {
                    node: f[0].parse().unwrap_or(0),
                    name: f[1].to_string(),
                    bound: f[2].parse().unwrap_or(0),
                    advertised: f[3].parse().unwrap_or(0),
                })
            })
            .collect();
        v.sort_by_key(|p| p.node);
        v
    }

    /// `127.0.0.1:port,...` of the advertised addresses of listener `name`.
    pub fn listener_bootstrap(&self, name: &str) -> String {
        self.listener(name)
            .iter()
            .map(|p| format!("127.0.0.1:{}", p.advertised))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Bootstrap address of node `i`.
    pub fn node_address(&self, i: usize) -> String {
        self.bootstrap.split(',').nth(i).unwrap_or_default().to_string()
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        if self.shared {
            return;
        }
        let _ = Command::new("bash").arg(script()).arg("stop").arg(&self.dir).output();
        if std::thread::panicking() || std::env::var_os("STRAIT_KEEP_CLUSTERS").is_some() {
            eprintln!("broker logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Deletes cluster directories of earlier test processes that are gone, except
/// the newest few (the logs of the last failed run stay readable).
fn remove_stale_dirs(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let mut stale: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let pid: u32 = name.split('-').nth(3)?.parse().ok()?;
            let alive = Path::new(&format!("/proc/{pid}")).exists();
            (!alive).then(|| {
                (
                    e.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH),
                    e.path(),
                )
            })
        })
        .collect();
    stale.sort();
    let keep = 4;
    let n = stale.len().saturating_sub(keep);
    for (_, p) in stale.into_iter().take(n) {
        let _ = std::fs::remove_dir_all(p);
    }
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed with {}:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

fn shared(cell: &'static OnceLock<Result<KafkaCluster, String>>, version: &str, nodes: usize) -> &'static KafkaCluster {
    shared_with(cell, version, nodes, &StartOptions::default())
}

fn shared_with(
    cell: &'static OnceLock<Result<KafkaCluster, String>>,
    version: &str,
    nodes: usize,
    opts: &StartOptions,
) -> &'static KafkaCluster {
    let r = cell.get_or_init(|| {
        let t = std::time::Instant::now();
        let c = KafkaCluster::start_with(version, nodes, opts).map(|mut c| {
            c.shared = true;
            c
        });
        if let Ok(c) = &c {
            eprintln!(
                "Kafka {version} ({nodes} node) up in {:.1} s at {} ({})",
                t.elapsed().as_secs_f64(),
                c.bootstrap,
                c.dir.display()
            );
        }
        c
    });
    match r {
        Ok(c) => c,
        // Never skip: without brokers the acceptance tests fail, loudly.
        Err(e) => panic!("cannot start Kafka {version} ({nodes} node): {e}"),
    }
}

/// The single-node Kafka 4.x cluster shared by the tests of this binary.
pub fn kafka4() -> &'static KafkaCluster {
    static C: OnceLock<Result<KafkaCluster, String>> = OnceLock::new();
    shared(&C, KAFKA_4, 1)
}

/// The single-node Kafka 3.9.x cluster shared by the tests of this binary.
pub fn kafka3() -> &'static KafkaCluster {
    static C: OnceLock<Result<KafkaCluster, String>> = OnceLock::new();
    shared(&C, KAFKA_3, 1)
}

/// A second single-node Kafka 4.x cluster (the destination of replication tests).
/// A third single-node 4.x cluster (topologies of three clusters).
pub fn kafka4_third() -> &'static KafkaCluster {
    static C: OnceLock<Result<KafkaCluster, String>> = OnceLock::new();
    shared(&C, KAFKA_4, 1)
}

pub fn kafka4_dest() -> &'static KafkaCluster {
    static C: OnceLock<Result<KafkaCluster, String>> = OnceLock::new();
    shared(&C, KAFKA_4, 1)
}

/// A three-node Kafka 4.x cluster (replication factor 3).
pub fn kafka4_three() -> &'static KafkaCluster {
    static C: OnceLock<Result<KafkaCluster, String>> = OnceLock::new();
    shared(&C, KAFKA_4, 3)
}

/// A second three-node Kafka 4.x cluster (a replicated source).
pub fn kafka4_three_source() -> &'static KafkaCluster {
    static C: OnceLock<Result<KafkaCluster, String>> = OnceLock::new();
    shared(&C, KAFKA_4, 3)
}

/// Listener name of [`kafka4_proxied`] and [`kafka4_proxied_dest`]: bound on one
/// port, advertised on another where a test's `proxy::ClusterProxy` listens.
pub const PROXIED: &str = "PROXIED";

fn proxied_options() -> StartOptions {
    StartOptions {
        listeners: vec![format!("{PROXIED}:PLAINTEXT:proxied")],
        ..Default::default()
    }
}

/// A single-node Kafka 4.x cluster with a proxied listener (fault-injection source).
pub fn kafka4_proxied() -> &'static KafkaCluster {
    static C: OnceLock<Result<KafkaCluster, String>> = OnceLock::new();
    shared_with(&C, KAFKA_4, 1, &proxied_options())
}

/// A second single-node Kafka 4.x cluster with a proxied listener (fault-injection destination).
pub fn kafka4_proxied_dest() -> &'static KafkaCluster {
    static C: OnceLock<Result<KafkaCluster, String>> = OnceLock::new();
    shared_with(&C, KAFKA_4, 1, &proxied_options())
}

impl KafkaCluster {
    /// Data directory of node `id` (node ids are 1-based, as in the cluster's `node.id`).
    pub fn data_dir(&self, id: usize) -> PathBuf {
        self.dir.join(format!("node-{id}/data"))
    }
}

/// A topic name unique to this process and call.
pub fn unique_topic(prefix: &str) -> String {
    format!("{prefix}-{}-{}-{}", std::process::id(), unique(), fastrand::u32(..))
}

/// Runs the independent test client (`protocol-tests/tools/kafka_tool.py`,
/// librdkafka via confluent-kafka) and returns its stdout; panics on failure.
pub fn kafka_tool(args: &[&str]) -> String {
    try_kafka_tool(args).unwrap_or_else(|e| panic!("{e}"))
}

/// [`kafka_tool`], with its failure (a topic that does not exist yet, say)
/// returned instead of a panic.
pub fn try_kafka_tool(args: &[&str]) -> Result<String, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/protocol-tests/tools/kafka_tool.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 runs");
    if !out.status.success() {
        return Err(format!(
            "kafka_tool {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// Decodes standard base64 (the independent client's `dump` output).
pub fn b64(s: &str) -> Vec<u8> {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (mut out, mut buf, mut bits) = (Vec::new(), 0u32, 0);
    for c in s.bytes().filter(|c| *c != b'=') {
        buf = (buf << 6) | T.iter().position(|x| *x == c).expect("base64") as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}

/// Whether `done` becomes true within `timeout` (polled every 300 ms).
pub fn within(timeout: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while !done() {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    true
}

/// Sends `signal` (`-TERM`, `-KILL`) to `child` and returns its stdout and stderr.
pub fn stop_process(child: std::process::Child, signal: &str) -> String {
    Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill runs");
    let out = child.wait_with_output().expect("the child is waited for");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A group's committed offset on `topic`/`partition` of `cluster`, read by
/// Kafka's own group tool (independent of strait).
pub fn group_offset(cluster: &KafkaCluster, group: &str, topic: &str, partition: i64) -> Option<i64> {
    let out = cluster
        .tool(
            "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
            &["--bootstrap-server", &cluster.bootstrap, "--describe", "--group", group],
        )
        .unwrap_or_default();
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[1] == topic && f[2] == partition.to_string())
        .and_then(|f| f[3].parse().ok())
}
