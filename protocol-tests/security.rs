//! TLS and SASL against a real Apache Kafka 4.1 broker.
//!
//! One secured broker carries every listener: SSL (certificate with an IP SAN
//! for 127.0.0.1), MTLS (client certificate required, TLS 1.2 only), SCRAM (SASL_SSL with
//! SCRAM-SHA-256 and -512), SASLPLAIN (SASL_PLAINTEXT with PLAIN and unsecured
//! OAUTHBEARER), REAUTH (SASL_SSL, sessions of 5 s: KIP-368), WRONGHOST (a
//! certificate for another name) and EXPIRED (an expired certificate). The CA
//! and certificates are generated here with rcgen; the broker reads them as PEM.
//! Replications run between it and a plain cluster, in either direction, and the
//! independent client (librdkafka) checks the result over the broker's
//! PLAINTEXT listener.

mod harness;
#[path = "harness/pki.rs"]
mod pki;

use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness::{unique_topic, KafkaCluster, StartOptions};
use kafka_protocol::messages::MetadataRequest;
use pki::{make_pki, Pki};
use serde_json::Value;
use strait::client::{Client, ClientConfig, SaslMechanism, SaslSettings, Secret, TlsSettings, TokenSource};
use strait::config::Config;

const SCRAM_PASSWORD: &str = "alice-scram-pw-7f3a";
const PLAIN_PASSWORD: &str = "alice-plain-pw-91c2";
const WRONG_PASSWORD: &str = "wrong-pw-do-not-print-5e6b";

fn broker_props(pki: &Pki) -> String {
    let mut p = String::new();
    let ks = |p: &mut String, listener: &str, file: &str| {
        p.push_str(&format!(
            "listener.name.{listener}.ssl.keystore.type=PEM\nlistener.name.{listener}.ssl.keystore.location={}\n",
            pki.p(file)
        ));
    };
    for l in ["ssl", "mtls", "scram", "reauth"] {
        ks(&mut p, l, "server.pem");
    }
    ks(&mut p, "wronghost", "wronghost.pem");
    ks(&mut p, "expired", "expired.pem");
    let scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;";
    let oauth = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub=\"admin\";";
    p.push_str(&format!(
        "listener.name.mtls.ssl.client.auth=required\n\
         listener.name.mtls.ssl.enabled.protocols=TLSv1.2\n\
         listener.name.mtls.ssl.protocol=TLSv1.2\n\
         listener.name.mtls.ssl.truststore.type=PEM\n\
         listener.name.mtls.ssl.truststore.location={ca}\n\
         listener.name.scram.sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512\n\
         listener.name.scram.scram-sha-256.sasl.jaas.config={scram}\n\
         listener.name.scram.scram-sha-512.sasl.jaas.config={scram}\n\
         listener.name.saslplain.sasl.enabled.mechanisms=PLAIN,OAUTHBEARER\n\
         listener.name.saslplain.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_alice=\"{PLAIN_PASSWORD}\";\n\
         listener.name.saslplain.oauthbearer.sasl.jaas.config={oauth}\n\
         listener.name.reauth.sasl.enabled.mechanisms=SCRAM-SHA-512,OAUTHBEARER\n\
         listener.name.reauth.scram-sha-512.sasl.jaas.config={scram}\n\
         listener.name.reauth.oauthbearer.sasl.jaas.config={oauth}\n\
         listener.name.reauth.scram-sha-512.connections.max.reauth.ms=5000\n\
         listener.name.reauth.oauthbearer.connections.max.reauth.ms=5000\n",
        ca = pki.p("ca.pem"),
    ));
    p
}

struct Secured {
    cluster: KafkaCluster,
    pki: Pki,
}

fn secured() -> &'static Secured {
    static S: OnceLock<Result<Secured, String>> = OnceLock::new();
    let r = S.get_or_init(|| {
        let t = Instant::now();
        let pki = make_pki("security");
        let opts = StartOptions {
            listeners: [
                "SSL:SSL",
                "MTLS:SSL",
                "SCRAM:SASL_SSL",
                "SASLPLAIN:SASL_PLAINTEXT",
                "REAUTH:SASL_SSL",
                "WRONGHOST:SSL",
                "EXPIRED:SSL",
            ]
            .map(String::from)
            .to_vec(),
            props: broker_props(&pki),
            scram: vec![
                format!("SCRAM-SHA-256=[name=alice,password={SCRAM_PASSWORD}]"),
                format!("SCRAM-SHA-512=[name=alice,password={SCRAM_PASSWORD}]"),
            ],
        };
        let cluster = KafkaCluster::start_with(harness::KAFKA_4, 1, &opts)?;
        eprintln!(
            "secured Kafka up in {:.1} s ({})",
            t.elapsed().as_secs_f64(),
            cluster.dir.display()
        );
        Ok(Secured { cluster, pki })
    });
    match r {
        Ok(s) => s,
        Err(e) => panic!("cannot start the secured Kafka: {e}"),
    }
}

fn tool(args: &[&str]) -> String {
    harness::kafka_tool(args)
}

fn create_and_load(bootstrap: &str, topic: &str, count: usize, start: usize) {
    if start == 0 {
        // The loader's record timestamps are from 2023: keep them from retention.
        tool(&[
            "create",
            "--bootstrap",
            bootstrap,
            "--topic",
            topic,
            "--partitions",
            "2",
            "--config",
            "retention.ms=-1",
        ]);
    }
    let (n, s) = (count.to_string(), start.to_string());
    tool(&[
        "load",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--count",
        &n,
        "--codec",
        "lz4",
        "--start-index",
        &s,
    ]);
}

/// Checks with the independent client that `dst` holds exactly `src`'s records.
fn assert_same(src: &str, dst: &str, topic: &str, records: u64) {
    let out = tool(&[
        "compare",
        "--source",
        src,
        "--source-topic",
        topic,
        "--dest",
        dst,
        "--dest-topic",
        topic,
        // Only committed records count (the re-auth test runs exactly-once).
        "--isolation",
        "read_committed",
    ]);
    let v: Value = serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
    eprintln!("compare {topic}: {v}");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["duplicates"], 0, "{v}");
    assert_eq!(v["source_records"], records, "{v}");
}

/// A replication config text; `*_extra` go after each cluster's keys (sub-tables).
fn config_text(name: &str, topic: &str, src: &str, src_extra: &str, dst: &str, dst_extra: &str) -> String {
    format!(
        "name = \"{name}\"\ntopics = [\"{topic}\"]\nrefresh_interval_ms = 1000\ncheckpoint_interval_ms = 200\nheartbeats = false\n\
         [source]\nbootstrap_servers = \"{src}\"\n{src_extra}\n\
         [destination]\nbootstrap_servers = \"{dst}\"\nconnect_timeout_ms = 5000\n{dst_extra}\n"
    )
}

/// Replicates `topic` with `cfg` in-process until `records` are acknowledged.
async fn replicate(cfg: Config, records: u64, during: impl std::future::Future<Output = ()>) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (h_tx, h_rx) = tokio::sync::oneshot::channel();
    let join = tokio::spawn(strait::replicate::run(
        cfg,
        async {
            let _ = stop_rx.await;
        },
        None,
        move |h| {
            let _ = h_tx.send(h);
        },
    ));
    let handle: strait::replicate::Handle = match h_rx.await {
        Ok(h) => h,
        Err(_) => panic!("replication did not start: {:?}", join.await),
    };
    during.await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while handle.metrics.records.load(std::sync::atomic::Ordering::Relaxed) < records {
        assert!(
            Instant::now() < deadline,
            "not all {records} records replicated in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(());
    let summary = join.await.unwrap().expect("replication ran");
    assert_eq!(summary.records, records);
    assert!(summary.stopped.is_empty(), "{:?}", summary.stopped);
}

fn tls_table(side: &str, pki: &Pki, client_cert: bool) -> String {
    let mut t = format!("[{side}.tls]\nca_file = \"{}\"\n", pki.p("ca.pem"));
    if client_cert {
        t.push_str(&format!(
            "cert_file = \"{}\"\nkey_file = \"{}\"\n",
            pki.p("client.pem"),
            pki.p("client.key")
        ));
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_destination_verified_by_ca_file_and_ip_san() {
    let (plain, s) = (harness::kafka4(), secured());
    let topic = unique_topic("tls");
    create_and_load(&plain.bootstrap, &topic, 2000, 0);
    let text = config_text(
        &topic,
        &topic,
        &plain.bootstrap,
        "",
        &s.cluster.listener_bootstrap("SSL"),
        &tls_table("destination", &s.pki, false),
    );
    replicate(Config::parse(&text, "test").unwrap(), 2000, async {}).await;
    assert_same(&plain.bootstrap, &s.cluster.bootstrap, &topic, 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_source_with_client_certificate_over_tls_1_2() {
    let (plain, s) = (harness::kafka4(), secured());
    let topic = unique_topic("mtls");
    create_and_load(&s.cluster.bootstrap, &topic, 2000, 0);
    let text = config_text(
        &topic,
        &topic,
        &s.cluster.listener_bootstrap("MTLS"),
        &tls_table("source", &s.pki, true),
        &plain.bootstrap,
        "",
    );
    replicate(Config::parse(&text, "test").unwrap(), 2000, async {}).await;
    assert_same(&s.cluster.bootstrap, &plain.bootstrap, &topic, 2000);
    // Without the client certificate the broker refuses the handshake.
    let mut cc = ClientConfig::new(&s.cluster.listener_bootstrap("MTLS"));
    cc.connect_timeout = Duration::from_secs(5);
    cc.tls = Some(TlsSettings {
        ca_file: Some(s.pki.path("ca.pem")),
        ..Default::default()
    });
    let e = Client::connect(cc).await.unwrap_err().to_string();
    eprintln!("without a client certificate: {e}");
    assert!(e.contains("TLS handshake") && e.contains("client certificate"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_256_and_512_over_tls_with_password_from_env_and_file() {
    let (plain, s) = (harness::kafka4(), secured());
    let topic = unique_topic("scram");
    create_and_load(&plain.bootstrap, &topic, 1000, 0);
    // SCRAM-SHA-256, password from an environment variable.
    let var = format!("STRAIT_TEST_SCRAM_PW_{}", std::process::id());
    std::env::set_var(&var, SCRAM_PASSWORD);
    let dst = format!(
        "{}[destination.sasl]\nmechanism = \"SCRAM-SHA-256\"\nusername = \"alice\"\npassword_env = \"{var}\"\n",
        tls_table("destination", &s.pki, false)
    );
    let src = &plain.bootstrap;
    let text = config_text(&topic, &topic, src, "", &s.cluster.listener_bootstrap("SCRAM"), &dst);
    replicate(Config::parse(&text, "test").unwrap(), 1000, async {}).await;
    assert_same(&plain.bootstrap, &s.cluster.bootstrap, &topic, 1000);
    // `describe` and `load` reach the same secured cluster through the config file.
    let path = s.pki.path(&format!("{topic}.toml"));
    std::fs::write(&path, &text).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_strait"))
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "strait {args:?}: {text}");
        text
    };
    let p = path.to_str().unwrap();
    let described = run(&["describe", "--config", p, "--cluster", "destination"]);
    assert!(
        described.contains("broker 1 ") && described.contains(&format!("topic {topic} ")),
        "{described}"
    );
    let loaded = format!("{topic}-loaded");
    run(&[
        "load",
        "--config",
        p,
        "--cluster",
        "destination",
        "--topic",
        &loaded,
        "--records",
        "100",
        "--partitions",
        "1",
    ]);
    let c: Value = serde_json::from_str(
        tool(&["count", "--bootstrap", &s.cluster.bootstrap, "--topic", &loaded])
            .trim()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(c["total"], 100, "{c}");
    // SCRAM-SHA-512, password from a file; the same topic again under a new replication name.
    let pw_file = s.pki.path("scram-password");
    std::fs::write(&pw_file, format!("{SCRAM_PASSWORD}\n")).unwrap();
    let topic2 = unique_topic("scram512");
    create_and_load(&plain.bootstrap, &topic2, 1000, 0);
    let dst = format!(
        "{}[destination.sasl]\nmechanism = \"SCRAM-SHA-512\"\nusername = \"alice\"\npassword_file = \"{}\"\n",
        tls_table("destination", &s.pki, false),
        pw_file.display()
    );
    let text = config_text(&topic2, &topic2, src, "", &s.cluster.listener_bootstrap("SCRAM"), &dst);
    replicate(Config::parse(&text, "test").unwrap(), 1000, async {}).await;
    assert_same(&plain.bootstrap, &s.cluster.bootstrap, &topic2, 1000);
}

/// An unsecured JWS (`"alg":"none"`), which Kafka's default OAUTHBEARER validator accepts.
fn unsecured_jwt(sub: &str, lifetime_s: u64) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    format!(
        "{}.{}.",
        b64(r#"{"alg":"none"}"#),
        b64(&format!(r#"{{"sub":"{sub}","iat":{now},"exp":{}}}"#, now + lifetime_s))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_source_and_oauthbearer_destination_over_sasl_plaintext() {
    let (plain, s) = (harness::kafka4(), secured());
    // PLAIN on the source side (inline password): secured -> plain.
    let topic = unique_topic("plainsasl");
    create_and_load(&s.cluster.bootstrap, &topic, 1000, 0);
    let src = format!("[source.sasl]\nmechanism = \"PLAIN\"\nusername = \"alice\"\npassword = \"{PLAIN_PASSWORD}\"\n");
    let text = config_text(
        &topic,
        &topic,
        &s.cluster.listener_bootstrap("SASLPLAIN"),
        &src,
        &plain.bootstrap,
        "",
    );
    replicate(Config::parse(&text, "test").unwrap(), 1000, async {}).await;
    assert_same(&s.cluster.bootstrap, &plain.bootstrap, &topic, 1000);
    // OAUTHBEARER on the destination side, token from a file: plain -> secured.
    let topic = unique_topic("oauth");
    create_and_load(&plain.bootstrap, &topic, 1000, 0);
    let token_file = s.pki.path("token-plain");
    std::fs::write(&token_file, unsecured_jwt("alice", 3600)).unwrap();
    let dst = format!(
        "[destination.sasl]\nmechanism = \"OAUTHBEARER\"\ntoken_file = \"{}\"\n",
        token_file.display()
    );
    let text = config_text(
        &topic,
        &topic,
        &plain.bootstrap,
        "",
        &s.cluster.listener_bootstrap("SASLPLAIN"),
        &dst,
    );
    replicate(Config::parse(&text, "test").unwrap(), 1000, async {}).await;
    assert_same(&plain.bootstrap, &s.cluster.bootstrap, &topic, 1000);
}

/// Keeps one connection busy with several concurrent request streams for
/// `secs`; returns it.
async fn hammer(client: &Client, secs: u64) -> Arc<strait::client::Connection> {
    let conn = client.any_broker().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let c = conn.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                c.request(&MetadataRequest::default().with_topics(Some(vec![])))
                    .await
                    .unwrap_or_else(|e| panic!("request {n} failed: {e}"));
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    eprintln!(
        "{total} requests over {secs} s, {} re-authentications",
        conn.reauthentications()
    );
    conn
}

/// KIP-368: the REAUTH listener grants 5 s sessions and closes a connection
/// whose session expired. Requests keep flowing over one connection for 12 s,
/// from 4 concurrent streams, while strait re-authenticates it (SCRAM-SHA-512,
/// and OAUTHBEARER with a token file replaced by a fresh token midway: the first
/// token expires after 8 s, so the second re-authentication must read the file again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reauthentication_keeps_one_connection_alive_past_the_session_lifetime() {
    let s = secured();
    let tls = TlsSettings {
        ca_file: Some(s.pki.path("ca.pem")),
        ..Default::default()
    };
    let mut scram = ClientConfig::new(&s.cluster.listener_bootstrap("REAUTH"));
    scram.tls = Some(tls.clone());
    scram.sasl = Some(SaslSettings {
        mechanism: SaslMechanism::ScramSha512,
        username: "alice".into(),
        password: Secret::new(SCRAM_PASSWORD),
        token: None,
    });
    let token_file = s.pki.path("token-reauth");
    std::fs::write(&token_file, unsecured_jwt("alice", 8)).unwrap();
    let mut oauth = ClientConfig::new(&s.cluster.listener_bootstrap("REAUTH"));
    oauth.tls = Some(tls);
    oauth.sasl = Some(SaslSettings {
        mechanism: SaslMechanism::OAuthBearer,
        username: String::new(),
        password: Secret::default(),
        token: Some(TokenSource::File(token_file.clone())),
    });
    let (scram, oauth) = (
        Client::connect(scram).await.unwrap(),
        Client::connect(oauth).await.unwrap(),
    );
    let refresh = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        std::fs::write(&token_file, unsecured_jwt("alice", 3600)).unwrap();
    };
    let (c1, c2, ()) = tokio::join!(hammer(&scram, 12), hammer(&oauth, 12), refresh);
    for (name, client, conn) in [("SCRAM-SHA-512", &scram, c1), ("OAUTHBEARER", &oauth, c2)] {
        assert!(!conn.is_failed(), "{name}: connection failed: {:?}", conn.failure());
        assert!(
            conn.reauthentications() >= 2,
            "{name}: only {} re-authentications in 12 s of 5 s sessions",
            conn.reauthentications()
        );
        let again = client.any_broker().await.unwrap();
        assert!(Arc::ptr_eq(&conn, &again), "{name}: the pool opened a new connection");
    }
}

/// A replication whose destination sessions last 5 s keeps going for ~12 s
/// while new records arrive, and loses nothing. It runs in exactly-once mode, so
/// transactional requests (AddPartitionsToTxn, EndTxn, TxnOffsetCommit) share
/// the re-authenticated connections too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_runs_across_reauthentications() {
    let (plain, s) = (harness::kafka4(), secured());
    let topic = unique_topic("reauth");
    create_and_load(&plain.bootstrap, &topic, 500, 0);
    let dst = format!(
        "{}[destination.sasl]\nmechanism = \"SCRAM-SHA-512\"\nusername = \"alice\"\npassword = \"{SCRAM_PASSWORD}\"\n",
        tls_table("destination", &s.pki, false)
    );
    let text = config_text(
        &topic,
        &topic,
        &plain.bootstrap,
        "",
        &s.cluster.listener_bootstrap("REAUTH"),
        &dst,
    )
    .replacen("[source]", "exactly_once = true\n[source]", 1);
    let more = async {
        for round in 1..=3 {
            tokio::time::sleep(Duration::from_secs(4)).await;
            let (b, t) = (plain.bootstrap.clone(), topic.clone());
            tokio::task::spawn_blocking(move || create_and_load(&b, &t, 500, round * 500))
                .await
                .unwrap();
        }
    };
    let t = Instant::now();
    replicate(Config::parse(&text, "test").unwrap(), 2000, more).await;
    assert!(
        t.elapsed() > Duration::from_secs(10),
        "the replication did not outlive two sessions"
    );
    assert_same(&plain.bootstrap, &s.cluster.bootstrap, &topic, 2000);
}

/// Runs the strait binary with a config whose destination is `dst` and returns
/// (success, stdout + stderr).
fn strait_cli(cmd: &str, name: &str, dst: &str, dst_extra: &str) -> (bool, String) {
    let text = config_text(name, "none-such", &harness::kafka4().bootstrap, "", dst, dst_extra);
    let path = std::env::temp_dir().join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strait"))
        .args([cmd, "--config"])
        .arg(&path)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn assert_fails(cmd: &str, dst: &str, dst_extra: &str, reason: &str) -> String {
    let t = Instant::now();
    let (ok, out) = strait_cli(cmd, &unique_topic("fail"), dst, dst_extra);
    eprintln!("strait {cmd} ({:.1} s):\n{out}", t.elapsed().as_secs_f64());
    assert!(!ok, "strait {cmd} succeeded:\n{out}");
    assert!(
        out.contains("destination cluster") && out.contains(reason),
        "strait {cmd}: expected the cluster and {reason:?}:\n{out}"
    );
    for secret in [WRONG_PASSWORD, SCRAM_PASSWORD, PLAIN_PASSWORD] {
        assert!(!out.contains(secret), "strait {cmd} printed a password:\n{out}");
    }
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "strait {cmd} took {:?}",
        t.elapsed()
    );
    out
}

#[test]
fn wrong_password_untrusted_wrong_host_and_expired_certificates_fail_at_startup() {
    // Both clusters up before the clock of each command starts.
    let (_, s) = (harness::kafka4(), secured());
    let wrong_pw = format!(
        "{}[destination.sasl]\nmechanism = \"SCRAM-SHA-256\"\nusername = \"alice\"\npassword = \"{WRONG_PASSWORD}\"\n",
        tls_table("destination", &s.pki, false)
    );
    let scram = s.cluster.listener_bootstrap("SCRAM");
    for cmd in ["check", "run"] {
        assert_fails(cmd, &scram, &wrong_pw, "invalid credentials");
    }
    let plain_pw =
        format!("[destination.sasl]\nmechanism = \"PLAIN\"\nusername = \"alice\"\npassword = \"{WRONG_PASSWORD}\"\n");
    assert_fails(
        "check",
        &s.cluster.listener_bootstrap("SASLPLAIN"),
        &plain_pw,
        "PLAIN authentication",
    );
    let other_ca = format!("[destination.tls]\nca_file = \"{}\"\n", s.pki.p("other-ca.pem"));
    let ssl = s.cluster.listener_bootstrap("SSL");
    for cmd in ["check", "run"] {
        assert_fails(cmd, &ssl, &other_ca, "certificate is not trusted");
    }
    let ca = tls_table("destination", &s.pki, false);
    assert_fails(
        "check",
        &s.cluster.listener_bootstrap("WRONGHOST"),
        &ca,
        "not valid for host \"127.0.0.1\"",
    );
    for cmd in ["check", "run"] {
        assert_fails(
            cmd,
            &s.cluster.listener_bootstrap("EXPIRED"),
            &ca,
            "certificate has expired",
        );
    }
    // A TLS client on a plaintext SASL port, and a plaintext client on a TLS port.
    assert_fails("check", &s.cluster.listener_bootstrap("SASLPLAIN"), &ca, "TLS");
}

#[test]
fn insecure_skip_verify_warns_at_start_and_connects() {
    let (_, s) = (harness::kafka4(), secured());
    let (ok, out) = strait_cli(
        "check",
        &unique_topic("insecure"),
        &s.cluster.listener_bootstrap("EXPIRED"),
        "[destination.tls]\ninsecure_skip_verify = true\n",
    );
    assert!(ok, "{out}");
    assert!(out.contains("TLS certificate verification is OFF"), "{out}");
}

#[test]
fn no_openssl_in_the_dependency_tree() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["tree", "--locked", "--edges", "normal,build", "--prefix", "none"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.contains("rustls "), "rustls missing from the tree");
    for bad in ["openssl", "aws-lc", "native-tls"] {
        assert!(!tree.contains(bad), "{bad} in the dependency tree:\n{tree}");
    }
}

/// While running, a broker that refuses our credentials is retried with the
/// pool's exponential backoff, not in a loop: six attempts take at least
/// 0.8 × (0.1 + 0.2 + 0.4 + 0.8 + 1.6) s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_are_retried_with_backoff_not_a_storm() {
    let s = secured();
    let addr = s.cluster.listener_bootstrap("SASLPLAIN");
    let mut cc = ClientConfig::new(&addr);
    cc.sasl = Some(SaslSettings {
        mechanism: SaslMechanism::Plain,
        username: "alice".into(),
        password: Secret::new(WRONG_PASSWORD),
        token: None,
    });
    let client = Client::new(cc).unwrap();
    let t = Instant::now();
    for _ in 0..6 {
        let e = client.connection(&addr).await.unwrap_err();
        assert!(e.is_security(), "{e}");
        assert!(!e.to_string().contains(WRONG_PASSWORD));
    }
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(2480),
        "6 attempts in {took:?}: no backoff"
    );
    assert!(took < Duration::from_secs(15), "6 attempts in {took:?}");
}
