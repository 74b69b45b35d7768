//! ACL sync against two real Kafka 4.1 clusters with the KRaft
//! `StandardAuthorizer` (their own clusters, so their ACLs reach no other
//! test). Clients authenticate with SASL/PLAIN on a SASL_PLAINTEXT listener;
//! the PLAINTEXT listener (the brokers' own, and the harness's) is
//! `User:ANONYMOUS`, a super user, as are `admin` and `strait`. What the ACLs
//! allow is checked with other clients: `kcat` as each user, and Kafka's own
//! `AclCommand`.

mod harness;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::{unique_topic, KafkaCluster, StartOptions};
use strait::client::acl::{op, pattern, permission, resource, AclBinding};
use strait::client::{Client, ClientConfig};
use strait::config::Config;

const USERS: &[(&str, &str)] = &[
    ("admin", "admin-pw-31"),
    ("strait", "strait-pw-47"),
    ("alice", "alice-pw-12"),
    ("bob", "bob-pw-88"),
    ("carol", "carol-pw-05"),
    ("dave", "dave-pw-64"),
    ("mallory", "mallory-pw-99"),
    ("erin", "erin-pw-23"),
];

fn password(user: &str) -> &'static str {
    USERS
        .iter()
        .find(|(u, _)| *u == user)
        .map(|(_, p)| *p)
        .expect("known user")
}

/// The two authorizer clusters every test here shares (source, destination).
fn clusters() -> &'static (KafkaCluster, KafkaCluster) {
    static C: std::sync::OnceLock<(KafkaCluster, KafkaCluster)> = std::sync::OnceLock::new();
    C.get_or_init(|| (acl_cluster(), acl_cluster()))
}

fn acl_cluster() -> KafkaCluster {
    let users: Vec<String> = USERS.iter().map(|(u, p)| format!("user_{u}=\"{p}\"")).collect();
    let opts = StartOptions {
        listeners: vec!["SASL:SASL_PLAINTEXT".into()],
        props: format!(
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n\
             super.users=User:ANONYMOUS;User:admin;User:strait\n\
             listener.name.sasl.sasl.enabled.mechanisms=PLAIN\n\
             listener.name.sasl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required {};\n",
            users.join(" ")
        ),
        scram: vec![],
    };
    KafkaCluster::start_with(harness::KAFKA_4, 1, &opts).expect("an authorizer cluster starts")
}

fn sasl(side: &str, user: &str) -> String {
    format!(
        "[{side}.sasl]\nmechanism = \"PLAIN\"\nusername = \"{user}\"\npassword = \"{}\"\n",
        password(user)
    )
}

fn config_text(name: &str, topic: &str, src: &KafkaCluster, dst: &KafkaCluster, user: &str) -> String {
    format!(
        "name = \"{name}\"\ntopics = [\"{topic}\"]\ngroups = [\"{topic}-billing\"]\n\
         refresh_interval_ms = 500\ncheckpoint_interval_ms = 200\ngroup_sync_interval_ms = 500\n\
         [source]\nbootstrap_servers = \"{}\"\n{}\n[destination]\nbootstrap_servers = \"{}\"\n{}\n",
        src.listener_bootstrap("SASL"),
        sasl("source", user),
        dst.listener_bootstrap("SASL"),
        sasl("destination", user),
    )
}

/// `kcat` as `user` over the SASL listener; (success, stdout + stderr).
fn kcat_as(user: &str, bootstrap: &str, args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new("kcat")
        .args([
            "-b",
            bootstrap,
            "-X",
            "security.protocol=SASL_PLAINTEXT",
            "-X",
            "sasl.mechanisms=PLAIN",
        ])
        .args([
            "-X",
            &format!("sasl.username={user}"),
            "-X",
            &format!("sasl.password={}", password(user)),
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kcat runs");
    {
        use std::io::Write;
        let mut i = child.stdin.take().unwrap();
        let _ = i.write_all(stdin.as_bytes());
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && !text.contains("failed"), text)
}

/// Records of `topic` that `user` can read (kcat, from the beginning to the end).
fn readable(user: &str, bootstrap: &str, topic: &str) -> Result<usize, String> {
    let (ok, out) = kcat_as(
        user,
        bootstrap,
        &["-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%o\\n"],
        "",
    );
    if !ok || out.contains("rror") {
        return Err(out);
    }
    Ok(out.lines().filter(|l| l.trim().parse::<i64>().is_ok()).count())
}

/// `user` produces one record to `topic`.
fn write(user: &str, bootstrap: &str, topic: &str) -> Result<(), String> {
    let (ok, out) = kcat_as(user, bootstrap, &["-P", "-t", topic], "one record\n");
    if ok {
        Ok(())
    } else {
        Err(out)
    }
}

/// Kafka's own `AclCommand` on `c` (PLAINTEXT: a super user).
fn c_tool(c: &KafkaCluster, args: &[&str]) -> String {
    let mut all = vec!["--bootstrap-server", &c.bootstrap];
    all.extend(args);
    c.tool("org.apache.kafka.tools.AclCommand", &all).unwrap_or_else(|e| e)
}

/// The literal ACLs `AclCommand` lists for one resource.
fn listed(c: &KafkaCluster, resource_flag: &str, name: &str) -> String {
    c_tool(c, &["--list", resource_flag, name])
}

/// Records of `topic` counted by the independent client (`None`: no such topic yet).
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
    let v: serde_json::Value = serde_json::from_slice(out.stdout.trim_ascii()).ok()?;
    v["total"].as_u64()
}

fn wait(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn acl(rt: i8, name: &str, pat: i8, user: &str, o: i8) -> AclBinding {
    AclBinding {
        resource_type: rt,
        name: name.into(),
        pattern: pat,
        principal: format!("User:{user}"),
        host: "*".into(),
        operation: o,
        permission: permission::ALLOW,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_follow_the_topics_writes_wait_for_failover_and_check_reports_broad_grants() {
    let (src, dst) = clusters();
    let t = unique_topic("acl");
    let group = format!("{t}-billing");
    harness::kafka_tool(&[
        "create",
        "--bootstrap",
        &src.bootstrap,
        "--topic",
        &t,
        "--partitions",
        "2",
    ]);
    harness::kafka_tool(&["load", "--bootstrap", &src.bootstrap, "--topic", &t, "--count", "100"]);
    // The source's ACLs, set up over the PLAINTEXT listener (a super user).
    let admin = Client::connect(ClientConfig::new(&src.bootstrap)).await.unwrap();
    admin
        .create_acls(&[
            acl(resource::TOPIC, &t, pattern::LITERAL, "alice", op::READ),
            acl(resource::GROUP, &group, pattern::LITERAL, "alice", op::READ),
            acl(resource::TOPIC, &t, pattern::LITERAL, "bob", op::WRITE),
            acl(resource::TOPIC, &t[..6], pattern::PREFIXED, "carol", op::ALL),
            acl(resource::TOPIC, &t, pattern::LITERAL, "strait", op::READ),
            acl(resource::TOPIC, "unrelated", pattern::LITERAL, "alice", op::READ),
        ])
        .await
        .unwrap();
    // Bob writes to the source topic: the grant works there.
    write("bob", &src.listener_bootstrap("SASL"), &t).expect("bob writes on the source");

    let name = unique_topic("aclsync");
    let text = config_text(&name, &t, src, dst, "strait");
    let cfg = Config::parse(&text, "acls.toml").unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(strait::replicate::run(
        cfg.clone(),
        async {
            let _ = stop_rx.await;
        },
        None,
        |_| {},
    ));
    let dsasl = dst.listener_bootstrap("SASL");
    // The independent clients and Kafka's tools block: off the runtime's workers.
    // Alice reads the mirror with her source grant; Bob's WRITE arrived as READ.
    tokio::task::block_in_place(|| {
        wait("alice reads the destination topic", Duration::from_secs(60), || {
            readable("alice", &dsasl, &t).is_ok_and(|n| n == 101)
        })
    });
    tokio::task::block_in_place(|| {
        let err = write("bob", &dsasl, &t).expect_err("bob must not write into the mirror before failover");
        assert!(err.contains("uthoriz"), "refused for authorization: {err}");
        let topic_acls = listed(dst, "--topic", &t);
        assert!(
            topic_acls.contains("principal=User:bob") && topic_acls.contains("operation=READ"),
            "{topic_acls}"
        );
        assert!(
            !topic_acls.contains("User:strait"),
            "strait's own ACL is never copied: {topic_acls}"
        );
        let prefixed = c_tool(
            dst,
            &["--list", "--topic", &t[..6], "--resource-pattern-type", "prefixed"],
        );
        assert!(
            prefixed.contains("PREFIXED") && prefixed.contains("User:carol"),
            "{prefixed}"
        );
        assert!(
            listed(dst, "--group", &group).contains("User:alice"),
            "group ACL copied"
        );
        assert!(
            !listed(dst, "--topic", "unrelated").contains("User:alice"),
            "only the flow's topics"
        );
    });

    // Changes on the source follow: a new grant appears, a revoked one goes.
    let dave = acl(resource::TOPIC, &t, pattern::LITERAL, "dave", op::DESCRIBE);
    admin.create_acls(std::slice::from_ref(&dave)).await.unwrap();
    tokio::task::block_in_place(|| {
        wait(
            "dave's new grant reaches the destination",
            Duration::from_secs(30),
            || listed(dst, "--topic", &t).contains("User:dave"),
        )
    });
    admin.delete_acls(std::slice::from_ref(&dave)).await.unwrap();
    tokio::task::block_in_place(|| {
        wait(
            "dave's revoked grant leaves the destination",
            Duration::from_secs(30),
            || !listed(dst, "--topic", &t).contains("User:dave"),
        )
    });

    // `strait check` reports a wildcard WRITE grant on the destination.
    let dadmin = Client::connect(ClientConfig::new(&dst.bootstrap)).await.unwrap();
    let wildcard = acl(resource::TOPIC, "*", pattern::LITERAL, "mallory", op::WRITE);
    dadmin.create_acls(std::slice::from_ref(&wildcard)).await.unwrap();
    let out = tokio::task::block_in_place(|| strait_check(&text));
    assert!(
        out.contains("lets User:mallory write into mirrored topics") && out.contains(&t),
        "{out}"
    );
    dadmin.delete_acls(std::slice::from_ref(&wildcard)).await.unwrap();
    // As a user without cluster permissions, check says what ACL sync lacks.
    let out = tokio::task::block_in_place(|| strait_check(&config_text(&name, &t, src, dst, "carol")));
    assert!(out.contains("ACL sync: cannot read the source's ACLs"), "{out}");

    // Failover: Bob may write on the destination, Alice still reads.
    let _ = stop_tx.send(());
    run.await.unwrap().expect("replication ran");
    let report = strait::replicate::failover::failover(cfg, vec![])
        .await
        .expect("failover");
    assert!(
        report
            .acls_restored
            .iter()
            .any(|a| a.contains("User:bob") && a.contains("WRITE")),
        "{:?}",
        report.acls_restored
    );
    tokio::task::block_in_place(|| {
        write("bob", &dsasl, &t).expect("bob writes on the destination after failover");
        // One read can end early while a leader settles (the wait before
        // failover retries too); every record must be readable within the deadline.
        let mut last = Ok(0);
        let deadline = Instant::now() + Duration::from_secs(30);
        while last != Ok(102) && Instant::now() < deadline {
            last = readable("alice", &dsasl, &t);
            if last != Ok(102) {
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        assert_eq!(last, Ok(102), "alice reads every record");
        let after = listed(dst, "--topic", &t);
        assert!(after.contains("operation=WRITE"), "{after}");
    });
}

/// `strait check` (the binary) on a config, as text.
fn strait_check(text: &str) -> String {
    let path = std::env::temp_dir().join(format!(
        "acl-check-{}-{}.toml",
        std::process::id(),
        harness::unique_topic("c")
    ));
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strait"))
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_sync_without_permission_warns_once_and_replication_goes_on() {
    let (src, dst) = clusters();
    let t = unique_topic("aclnoperm");
    harness::kafka_tool(&[
        "create",
        "--bootstrap",
        &src.bootstrap,
        "--topic",
        &t,
        "--partitions",
        "2",
    ]);
    harness::kafka_tool(&["load", "--bootstrap", &src.bootstrap, "--topic", &t, "--count", "200"]);
    // Erin may replicate (every topic and group, CREATE and IDEMPOTENT_WRITE
    // on the cluster) but not read or write ACLs (no DESCRIBE or ALTER there).
    let erin = [
        acl(resource::TOPIC, "*", pattern::LITERAL, "erin", op::ALL),
        acl(resource::GROUP, "*", pattern::LITERAL, "erin", op::ALL),
        acl(resource::CLUSTER, "kafka-cluster", pattern::LITERAL, "erin", op::CREATE),
        acl(resource::CLUSTER, "kafka-cluster", pattern::LITERAL, "erin", 12), // IDEMPOTENT_WRITE
    ];
    for c in [src, dst] {
        let admin = Client::connect(ClientConfig::new(&c.bootstrap)).await.unwrap();
        admin.create_acls(&erin).await.unwrap();
    }
    let path = std::env::temp_dir().join(format!("{t}.toml"));
    // Nor write heartbeats: her heartbeat topic denies her WRITE.
    let hb = format!("hb-{t}");
    let deny = AclBinding {
        permission: permission::DENY,
        ..acl(resource::TOPIC, &hb, pattern::LITERAL, "erin", op::WRITE)
    };
    Client::connect(ClientConfig::new(&src.bootstrap))
        .await
        .unwrap()
        .create_acls(std::slice::from_ref(&deny))
        .await
        .unwrap();
    let text = config_text(&t, &t, src, dst, "erin").replace(
        "[source]",
        &format!("heartbeats_topic = \"{hb}\"\nheartbeats_interval_ms = 300\n[source]"),
    );
    std::fs::write(&path, text).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_strait"))
        .args(["run", "--config", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    tokio::task::block_in_place(|| {
        wait(
            "every record replicated without ACL permissions",
            Duration::from_secs(60),
            || count(&dst.bootstrap, &t) == Some(200),
        );
        // A few more refreshes (500 ms each) that fail the same way.
        std::thread::sleep(Duration::from_secs(2));
    });
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "a clean stop: {log}");
    let heartbeat_warnings = log.lines().filter(|l| l.contains("heartbeats are off")).count();
    assert_eq!(
        heartbeat_warnings, 1,
        "one warning when heartbeats may not be written: {log}"
    );
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("ACL sync failed")).collect();
    assert_eq!(warnings.len(), 1, "one warning, not one per refresh: {log}");
    assert!(
        warnings[0].contains("ClusterAuthorizationFailed") && warnings[0].contains("DESCRIBE on the source cluster"),
        "it says what is missing: {}",
        warnings[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automated_failover_does_not_take_a_refused_login_for_a_dead_source() {
    let (src, dst) = clusters();
    let dir = std::env::temp_dir().join(unique_topic("autofail-auth"));
    std::fs::create_dir_all(&dir).unwrap();
    let asked = dir.join("asked");
    // The source answers, but refuses the password.
    let text = format!(
        "name = \"autofail-auth\"\ntopics = [\"x\"]\n\
         [failover]\nauto = true\nsource_unavailable_s = 5\n\
         confirm = [\"/bin/sh\", \"-c\", \"echo asked >> {}\"]\n\
         [source]\nbootstrap_servers = \"{}\"\n[source.sasl]\nmechanism = \"PLAIN\"\nusername = \"alice\"\npassword = \"wrong-password\"\n\
         [destination]\nbootstrap_servers = \"{}\"\n",
        asked.display(),
        src.listener_bootstrap("SASL"),
        dst.bootstrap
    );
    let cfg = Config::parse(&text, "autofail-auth.toml").unwrap();
    let auto = cfg.ops.auto_failover.clone().expect("auto failover configured");
    let dclient = Client::connect(ClientConfig::new(&dst.bootstrap)).await.unwrap();
    let watched = tokio::time::timeout(
        Duration::from_secs(5 + 5),
        strait::replicate::autofail::watch(&cfg, &auto, &dclient),
    )
    .await;
    assert!(watched.is_err(), "an authentication refusal is an answer: {watched:?}");
    assert!(!asked.exists(), "the witness was never asked");
}
