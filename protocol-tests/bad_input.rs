//! Bad input through the `strait` binary, no Kafka needed: a malformed config,
//! an unresolvable host, a closed port, servers that are not Kafka (garbage, an
//! HTTP server), a broker too old for the APIs strait needs, an oversized and a
//! truncated frame. Each run exits non-zero with exactly one `error:` line that
//! says what went wrong and where: the message an operator sees.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, BrokerId, MetadataResponse, ResponseHeader};
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};

/// Runs `strait args...` (killed after 30 s); returns (exit code, stdout, stderr).
fn strait(args: &[&str], mem_limit_kib: Option<u64>) -> (i32, String, String) {
    let bin = env!("CARGO_BIN_EXE_strait");
    let mut cmd = match mem_limit_kib {
        // `ulimit -v`: an allocation of an announced size would fail and abort.
        Some(kib) => {
            let mut c = Command::new("sh");
            c.args(["-c", &format!("ulimit -v {kib} && exec \"$0\" \"$@\""), bin]);
            c
        }
        None => Command::new(bin),
    };
    let mut child = cmd
        .args(args)
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("strait {args:?} still running after 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The run failed (exit 1) and stderr is one error: it starts with `error: `
/// and no other line does (a config error may quote the offending line below).
fn one_error(run: (i32, String, String)) -> String {
    let (code, _, stderr) = run;
    assert_eq!(code, 1, "exit code; stderr:\n{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(stderr.matches("error:").count(), 1, "one error on stderr:\n{stderr}");
    stderr
}

fn config_file(name: &str, text: &str) -> String {
    let path = std::env::temp_dir().join(format!("strait-bad-input-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn config_for(name: &str, source: &str, destination: &str) -> String {
    config_file(
        name,
        &format!(
            "name = \"{name}\"\ntopics = [\"t\"]\n[source]\nbootstrap_servers = \"{source}\"\nconnect_timeout_ms = 3000\n\
             [destination]\nbootstrap_servers = \"{destination}\"\nconnect_timeout_ms = 3000\n"
        ),
    )
}

/// What a fake server does after accepting a connection.
#[derive(Clone, Copy)]
enum Fake {
    /// Reads the request, then writes these bytes and closes.
    Answer(&'static [u8]),
    /// A Kafka 0.10.2 broker: ApiVersions v0 only, Metadata 0..=2, Produce 0..=2, Fetch 0..=3.
    OldBroker,
    /// A broker that dropped the Produce and Fetch versions strait speaks (as
    /// Kafka 4.0 dropped old ones, KIP-896).
    FutureBroker,
    /// A current broker whose Metadata response announces 2 GiB.
    OversizedMetadata,
    /// A current broker that closes the connection 10 bytes into its Metadata response.
    TruncatedMetadata,
}

/// Starts a fake server on 127.0.0.1; returns its address.
fn fake(kind: Fake) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || serve(kind, s, addr.port()));
        }
    });
    addr.to_string()
}

fn read_request(s: &mut TcpStream) -> Option<(i16, i16, i32)> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len).clamp(0, 1 << 20) as usize];
    s.read_exact(&mut body).ok()?;
    let key = i16::from_be_bytes([body[0], body[1]]);
    let version = i16::from_be_bytes([body[2], body[3]]);
    let correlation = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
    Some((key, version, correlation))
}

fn frame<T: Encodable + HeaderVersion>(correlation: i32, version: i16, body: &T) -> Vec<u8> {
    let mut b = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation)
        .encode(&mut b, T::header_version(version))
        .unwrap();
    body.encode(&mut b, version).unwrap();
    let mut out = (b.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&b);
    out
}

fn serve(kind: Fake, mut s: TcpStream, port: u16) {
    if let Fake::Answer(bytes) = kind {
        let _ = read_request(&mut s);
        let _ = s.write_all(bytes);
        return;
    }
    let old = matches!(kind, Fake::OldBroker);
    while let Some((key, version, correlation)) = read_request(&mut s) {
        let out = match ApiKey::try_from(key) {
            Ok(ApiKey::ApiVersions) => {
                let range = |k: ApiKey, lo, hi| {
                    ApiVersion::default()
                        .with_api_key(k as i16)
                        .with_min_version(lo)
                        .with_max_version(hi)
                };
                let ranges = if old {
                    vec![
                        range(ApiKey::Produce, 0, 2),
                        range(ApiKey::Fetch, 0, 3),
                        range(ApiKey::ListOffsets, 0, 1),
                        range(ApiKey::Metadata, 0, 2),
                        range(ApiKey::ApiVersions, 0, 0),
                    ]
                } else if matches!(kind, Fake::FutureBroker) {
                    vec![
                        range(ApiKey::Produce, 30, 31),
                        range(ApiKey::Fetch, 30, 31),
                        range(ApiKey::Metadata, 0, 12),
                        range(ApiKey::ApiVersions, 0, 3),
                    ]
                } else {
                    vec![
                        range(ApiKey::Produce, 3, 11),
                        range(ApiKey::Fetch, 4, 16),
                        range(ApiKey::Metadata, 0, 12),
                        range(ApiKey::ApiVersions, 0, 3),
                    ]
                };
                let mut resp = ApiVersionsResponse::default().with_api_keys(ranges);
                // An old broker answers a version it does not know in v0, with UNSUPPORTED_VERSION.
                let v = if old && version > 0 {
                    resp.error_code = 35;
                    0
                } else {
                    version
                };
                frame(correlation, v, &resp)
            }
            Ok(ApiKey::Metadata) => match kind {
                Fake::OversizedMetadata => {
                    let mut f = i32::MAX.to_be_bytes().to_vec();
                    f.extend_from_slice(&correlation.to_be_bytes());
                    f
                }
                Fake::TruncatedMetadata => {
                    let mut f = 1000i32.to_be_bytes().to_vec();
                    f.extend_from_slice(&correlation.to_be_bytes());
                    f.extend_from_slice(&[0; 6]);
                    let _ = s.write_all(&f);
                    return;
                }
                _ => {
                    let broker = MetadataResponseBroker::default()
                        .with_node_id(BrokerId(1))
                        .with_host(StrBytes::from_static_str("127.0.0.1"))
                        .with_port(port as i32);
                    frame(
                        correlation,
                        version,
                        &MetadataResponse::default().with_brokers(vec![broker]),
                    )
                }
            },
            _ => return,
        };
        if s.write_all(&out).is_err() {
            return;
        }
    }
}

#[test]
fn malformed_config_names_file_key_and_line() {
    let path = config_file(
        "malformed",
        "name = \"x\"\ntopics = [\"t\"]\n[source]\nbootstrap_servers = \"a:9092\"\nmax_frame_bytes = \"big\"\n[destination]\nbootstrap_servers = \"b:9092\"\n",
    );
    let err = one_error(strait(&["check-config", "--config", &path], None));
    assert!(
        err.starts_with(&format!("error: config {path}: TOML parse error at line 5")),
        "{err}"
    );
    assert!(
        err.contains("max_frame_bytes = \"big\"") && err.contains("expected usize"),
        "{err}"
    );
    // A value of the right type that is not allowed: the key and its line.
    let path = config_file(
        "invalid",
        "name = \"x\"\ntopics = [\"t\"]\n[source]\nbootstrap_servers = \"nohostport\"\n[destination]\nbootstrap_servers = \"b:9092\"\n",
    );
    let err = one_error(strait(&["check-config", "--config", &path], None));
    assert!(
        err.starts_with(&format!("error: config {path}, line 4: `source.bootstrap_servers`")),
        "{err}"
    );
    assert!(err.contains("nohostport"), "{err}");
}

#[test]
fn thread_count_out_of_range_is_refused_by_name() {
    let path = config_file(
        "threads",
        "name = \"x\"\ntopics = [\"t\"]\n[source]\nbootstrap_servers = \"a:9092\"\n[destination]\nbootstrap_servers = \"b:9092\"\n",
    );
    for bad in ["0", "many", "100000"] {
        let (code, _, stderr) = strait(&["--threads", bad, "check-config", "--config", &path], None);
        assert_eq!(code, 2, "usage error for --threads {bad}: {stderr}");
        assert!(
            stderr.contains("--threads") && stderr.contains(&format!("'{bad}'")),
            "names the flag and the value: {stderr}"
        );
    }
    // In range, on either kind of runtime, the same config is fine.
    for good in ["1", "3"] {
        let (code, _, stderr) = strait(&["--threads", good, "check-config", "--config", &path], None);
        assert_eq!(code, 0, "--threads {good}: {stderr}");
    }
}

#[test]
fn unresolvable_host_is_named() {
    let err = one_error(strait(&["describe", "--bootstrap", "no-such-host.invalid:9092"], None));
    assert!(
        err.contains("no-such-host.invalid:9092") && err.contains("cannot connect"),
        "{err}"
    );
    assert!(err.contains("lookup") || err.contains("resolve"), "{err}");
}

#[test]
fn closed_port_is_connection_refused() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = l.local_addr().unwrap().to_string();
    drop(l);
    let path = config_for("refused", &dead, &dead);
    let err = one_error(strait(&["run", "--config", &path], None));
    assert!(err.contains("source cluster") && err.contains(&dead), "{err}");
    assert!(err.contains("Connection refused"), "{err}");
}

#[test]
fn garbage_server_is_not_a_kafka_listener() {
    let addr = fake(Fake::Answer(b"garbage, not Kafka\n"));
    let err = one_error(strait(&["describe", "--bootstrap", &addr], None));
    assert!(err.contains(&addr), "{err}");
    assert!(
        err.contains("answered \"garb\", not a Kafka frame: is this a Kafka listener?"),
        "{err}"
    );
    assert!(
        !err.contains("max_frame_bytes"),
        "no advice to raise the frame cap: {err}"
    );
}

#[test]
fn http_server_is_not_a_kafka_listener() {
    let addr = fake(Fake::Answer(
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ));
    let path = config_for("http", &addr, &addr);
    let err = one_error(strait(&["run", "--config", &path], None));
    assert!(err.contains("source cluster") && err.contains(&addr), "{err}");
    assert!(err.contains("answered \"HTTP\", not a Kafka frame"), "{err}");
}

#[test]
fn broker_too_old_is_refused_by_name_and_versions() {
    let addr = fake(Fake::OldBroker);
    // The ApiVersions v3 request gets a v0-format UNSUPPORTED_VERSION answer; the
    // v0 retry shows Metadata tops out at v2.
    let err = one_error(strait(&["describe", "--bootstrap", &addr], None));
    assert!(err.contains(&addr), "{err}");
    assert!(
        err.contains("broker supports Metadata versions 0..=2, strait supports 4..=")
            && err.contains("no common version"),
        "{err}"
    );
    let path = config_for("old", &addr, &addr);
    let err = one_error(strait(&["run", "--config", &path], None));
    assert!(
        err.contains("source cluster") && err.contains("Metadata versions 0..=2"),
        "{err}"
    );
}

#[test]
fn broker_without_strait_produce_and_fetch_versions() {
    let addr = fake(Fake::FutureBroker);
    // describe: Produce is the first API it needs from each broker.
    let err = one_error(strait(&["describe", "--bootstrap", &addr], None));
    assert!(err.contains(&addr), "{err}");
    assert!(
        err.contains("broker supports Produce versions 30..=31, strait supports 3..="),
        "{err}"
    );
    assert!(err.contains("no common version"), "{err}");
    // run: the source must serve Fetch; one error, before anything else starts.
    let path = config_for("future", &addr, &addr);
    let err = one_error(strait(&["run", "--config", &path], None));
    assert!(err.contains("source cluster") && err.contains(&addr), "{err}");
    assert!(
        err.contains("broker supports Fetch versions 30..=31, strait supports 4..="),
        "{err}"
    );
    // check lists it as a problem on each side (Fetch for the source, Produce for the destination).
    let (code, stdout, stderr) = strait(&["check", "--config", &path], None);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let problems: Vec<&str> = stdout.lines().filter(|l| l.starts_with("problem: ")).collect();
    assert_eq!(problems.len(), 2, "{stdout}");
    assert!(
        problems[0].contains("source broker 1: ") && problems[0].contains("Fetch versions 30..=31"),
        "{stdout}"
    );
    assert!(
        problems[1].contains("destination broker 1: ") && problems[1].contains("Produce versions 30..=31"),
        "{stdout}"
    );
    assert_eq!(stderr.trim(), "error: 2 problem(s) found");
}

#[test]
fn oversized_frame_is_refused_before_allocating() {
    let addr = fake(Fake::OversizedMetadata);
    // 1.5 GiB of address space (room for a runtime thread per core): the 2 GiB
    // the frame announces cannot be allocated, so trying would abort.
    let err = one_error(strait(&["describe", "--bootstrap", &addr], Some(1536 * 1024)));
    assert!(err.contains(&addr), "{err}");
    assert!(
        err.contains("frame of 2147483647 bytes exceeds the limit of 134217728 bytes"),
        "{err}"
    );
}

#[test]
fn truncated_frame_says_how_much_arrived() {
    let addr = fake(Fake::TruncatedMetadata);
    let err = one_error(strait(&["describe", "--bootstrap", &addr], None));
    assert!(err.contains(&addr), "{err}");
    assert!(
        err.contains("closed the connection in the middle of a response: 10 of its 1000 bytes arrived"),
        "{err}"
    );
}

#[test]
fn errors_name_the_cluster_by_its_alias() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = l.local_addr().unwrap().to_string();
    drop(l);
    let path = config_file(
        "alias",
        &format!(
            "name = \"alias\"\n[source]\nalias = \"east\"\nbootstrap_servers = \"{dead}\"\nconnect_timeout_ms = 3000\n\
             [destination]\nalias = \"west\"\nbootstrap_servers = \"{dead}\"\nconnect_timeout_ms = 3000\n"
        ),
    );
    let err = one_error(strait(&["run", "--config", &path], None));
    assert!(err.contains("source cluster \"east\"") && err.contains(&dead), "{err}");
    // `describe` takes a cluster of a config file (its TLS and SASL too), by alias.
    let err = one_error(strait(&["describe", "--config", &path, "--cluster", "west"], None));
    assert!(err.contains(&dead), "{err}");
    let err = one_error(strait(&["describe", "--config", &path, "--cluster", "north"], None));
    assert!(
        err.contains("no cluster \"north\"") && err.contains("\"east\""),
        "{err}"
    );
}

#[test]
fn help_is_short_per_command_and_lists_exit_codes() {
    let (code, top, _) = strait(&["--help"], None);
    assert_eq!(code, 0);
    assert!(
        top.contains("Exit status:") && top.contains("2  command-line usage error"),
        "{top}"
    );
    assert_eq!(
        top.matches("Threads: strait runs on one thread").count(),
        1,
        "the threads paragraph once, at the top: {top}"
    );
    for cmd in ["run", "check", "failover"] {
        let (code, help, _) = strait(&[cmd, "--help"], None);
        assert_eq!(code, 0);
        assert!(help.contains("Exit status:"), "{cmd}: {help}");
        assert!(
            !help.contains("Threads: strait runs on one thread"),
            "{cmd} repeats the threads paragraph: {help}"
        );
        assert!(
            !help.contains("strait.example.toml"),
            "{cmd} refers to a file a binary user lacks: {help}"
        );
    }
    let (_, run, _) = strait(&["run", "--help"], None);
    assert!(run.contains("strait example-config"), "{run}");
    // A usage error exits 2.
    assert_eq!(strait(&["run"], None).0, 2);
}

/// `[clusters.<alias>]` tables for `names` (nothing listens: `check-config` only).
fn clusters(names: &[&str]) -> String {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("[clusters.{n}]\nbootstrap_servers = \"127.0.0.1:{}\"\n", 19092 + i))
        .collect()
}

#[test]
fn a_flow_naming_an_unknown_cluster_is_refused_with_its_line() {
    let path = config_file(
        "unknown-alias",
        &format!(
            "topics = [\"orders\"]\n{}[[flows]]\nsource = \"east\"\ndestination = \"wset\"\n",
            clusters(&["east", "west"])
        ),
    );
    let err = one_error(strait(&["check-config", "--config", &path], None));
    assert!(
        err.starts_with(&format!("error: config {path}, line 8: `destination`")),
        "{err}"
    );
    assert!(err.contains("\"wset\"") && err.contains("defined: east, west"), "{err}");
}

#[test]
fn topologies_that_would_loop_or_deliver_twice_are_refused_naming_them() {
    // Hub and spoke plus a direct east -> west flow: two routes to west.
    let path = config_file(
        "two-routes",
        &format!(
            "topics = [\"orders\"]\n{}\
             [[flows]]\nsource = \"east\"\ndestination = \"hub\"\n\
             [[flows]]\nsource = \"hub\"\ndestination = \"west\"\nforward_from = [\"east\"]\n\
             [[flows]]\nsource = \"east\"\ndestination = \"west\"\n",
            clusters(&["east", "hub", "west"])
        ),
    );
    let err = one_error(strait(&["check-config", "--config", &path], None));
    assert!(
        err.contains("records produced on cluster east would reach cluster west over 2 routes")
            && err.contains("[east-to-hub -> hub-to-west]")
            && err.contains("[east-to-west]"),
        "{err}"
    );
    // A cycle neither names nor provenance break: prefix one way, identity back.
    let path = config_file(
        "mixed-cycle",
        &format!(
            "topics = [\"orders\"]\n{}\
             [[flows]]\nsource = \"east\"\ndestination = \"west\"\nrename = \"prefix\"\n\
             [[flows]]\nsource = \"west\"\ndestination = \"east\"\n",
            clusters(&["east", "west"])
        ),
    );
    let err = one_error(strait(&["check-config", "--config", &path], None));
    assert!(
        err.contains("the cycle east-to-west (prefix) -> west-to-east (provenance)"),
        "{err}"
    );
    // Two sources merged into one topic without `merge = true`.
    let path = config_file(
        "unmerged",
        &format!(
            "topics = [\"orders\"]\n{}\
             [[flows]]\nsource = \"eu\"\ndestination = \"central\"\n\
             [[flows]]\nsource = \"us\"\ndestination = \"central\"\n",
            clusters(&["eu", "us", "central"])
        ),
    );
    let err = one_error(strait(&["check-config", "--config", &path], None));
    assert!(
        err.contains("flows eu-to-central and us-to-central both write into cluster central")
            && err.contains("merge = true"),
        "{err}"
    );
    // `run` refuses the same before connecting to anything.
    let err = one_error(strait(&["run", "--config", &path], None));
    assert!(err.contains("both write into cluster central"), "{err}");
}
