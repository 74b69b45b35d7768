//! `strait import-mm2` through the `strait` binary, no Kafka needed: every
//! MirrorMaker 2 config of `protocol-tests/fixtures/mm2/` (Kafka's docs and
//! shipped file, KIP-382, Strimzi's examples, security variants) converts to
//! exactly its `.toml` neighbour, which `strait check-config` accepts; the
//! report on stderr holds the lines each fixture must produce and names every
//! key of the input; bad input exits 1 with one error naming what and where.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> PathBuf {
    root().join("protocol-tests/fixtures/mm2")
}

/// Runs `strait args...` in the package root: (exit code, stdout, stderr).
fn strait(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_strait"))
        .args(args)
        .envs(envs.iter().copied())
        .env("RUST_LOG", "off")
        .current_dir(root())
        .output()
        .expect("strait runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn import(name: &str) -> (i32, String, String) {
    strait(&["import-mm2", &format!("protocol-tests/fixtures/mm2/{name}")], &[])
}

/// Lines each fixture's report must hold.
const MUST_REPORT: &[(&str, &[&str])] = &[
    ("kafka-connect-mirror-maker.properties", &[
        "converted: line 30: A->B.enabled: flow A -> B",
        "not needed: line 47: offset-syncs.topic.replication.factor: strait keeps an exact offset map",
    ]),
    ("kafka-docs-geo-replication.properties", &[
        "unsupported: line 4: clusters: `# defines cluster aliases` read as a comment",
        "unknown: line 12: us-west->us.east.topics: names no flow",
        "not needed: line 15: tasks.max:",
    ]),
    ("kip-382-active-active.properties", &[
        "converted: line 13: us-west.offset.storage.topic: mm2_offsets_topic of flow us-east->us-west",
        "unknown: line 16: us-west->us-east.emit.heartbeats:",
    ]),
    ("kip-382-primary-backup.properties", &["not needed: line 6: backup->primary.enabled: flow backup -> primary is off"]),
    ("sasl-ssl-scram-pem.properties", &[
        "converted: line 9: east.sasl.jaas.config: sasl table of east (SCRAM-SHA-512); the password is inline",
        "converted: line 19: west.sasl.jaas.config: sasl table of west (SCRAM-SHA-256)",
        "converted: line 27: sync.group.offsets.enabled: groups (group offset sync on)",
    ]),
    ("ssl-jks-stores.properties", &[
        "keytool -importkeystore -srckeystore /etc/kafka/truststore.jks -srcstoretype JKS",
        "openssl pkcs12 -in /etc/kafka/mm2.p12 -nocerts -nodes -out /etc/kafka/mm2.p12.key.pem",
    ]),
    ("identity-custom-separator.properties", &[
        "not needed: line 8: replication.policy.separator: IdentityReplicationPolicy keeps topic names",
    ]),
    ("custom-separator.properties", &["converted: line 5: replication.policy.separator: rename"]),
    ("reported-security.properties", &[
        "unsupported: line 10: krb.sasl.jaas.config: login module com.sun.security.auth.module.Krb5LoginModule",
        "unsupported: line 16: oauth.sasl.jaas.config: login module org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule",
        "unsupported: line 13: krb.ssl.endpoint.identification.algorithm:",
        "unsupported: line 21: plain.ssl.fancy.option: security setting with no strait equivalent",
        "unsupported: line 24: topics: `(?=x)y.*`: lookahead",
        "unknown: line 25: plain.frobnicate:",
    ]),
    ("strimzi-kafka-mirror-maker-2.yaml", &[
        "converted: line 20: spec.mirrors[0] (cluster-a->cluster-b): flow cluster-a -> cluster-b",
        "not needed: line 23: spec.mirrors[0].sourceConnector.tasksMax:",
    ]),
    ("strimzi-tls-scram.yaml", &[
        "converted: line 16: spec.clusters[cluster-a].authentication: sasl table of cluster-a (SCRAM-SHA-512); password_file is the Kubernetes secret",
        "converted: line 56: spec.mirrors[0].checkpointConnector.config.sync.group.offsets.enabled: groups (group offset sync on)",
    ]),
    ("strimzi-v1-kafka-mirror-maker-2.yaml", &["not needed: line 11: spec.target.groupId:"]),
];

#[test]
fn every_fixture_converts_to_its_expected_toml() {
    let mut seen = 0;
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.ends_with(".properties") || name.ends_with(".yaml")) {
            continue;
        }
        seen += 1;
        let (code, stdout, stderr) = import(&name);
        assert_eq!(code, 0, "{name}: exit code; stderr:\n{stderr}");
        let expected_path = path.with_extension("toml");
        let expected =
            std::fs::read_to_string(&expected_path).unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        if stdout != expected {
            let line = stdout.lines().zip(expected.lines()).position(|(a, b)| a != b);
            panic!(
                "{name}: stdout differs from {} at line {:?}:\n{stdout}",
                expected_path.display(),
                line.map(|l| l + 1)
            );
        }
        let must = MUST_REPORT.iter().find(|(f, _)| *f == name).map(|(_, m)| *m);
        for m in must.unwrap_or_else(|| panic!("{name}: add it to MUST_REPORT")) {
            assert!(stderr.contains(m), "{name}: report lacks {m:?}:\n{stderr}");
        }
        for l in stderr.lines() {
            let ok = ["converted: ", "not needed: ", "unsupported: ", "unknown: "]
                .iter()
                .any(|p| l.starts_with(p))
                || l.ends_with("they are repeated as comments at the end of the config");
            assert!(ok, "{name}: stray stderr line {l:?}");
            if l.starts_with("unsupported: ") || l.starts_with("unknown: ") {
                assert!(
                    stdout.contains(&format!("# {l}")),
                    "{name}: {l:?} is not a comment of the config"
                );
            }
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let missing = if name.ends_with(".yaml") {
            unreported_yaml(&text, &stderr)
        } else {
            unreported_properties(&text, &stderr)
        };
        assert!(
            missing.is_empty(),
            "{name}: keys neither converted nor reported: {missing:?}\n{stderr}"
        );
    }
    assert_eq!(seen, MUST_REPORT.len(), "every fixture is checked");
}

/// Keys of a properties file whose line no report line names.
fn unreported_properties(text: &str, report: &str) -> Vec<String> {
    let mut missing = Vec::new();
    let mut continued = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        let was_continued = continued;
        continued = line.ends_with('\\');
        if was_continued || line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let key: String = line
            .chars()
            .take_while(|c| !matches!(c, '=' | ':' | ' ' | '\t'))
            .collect();
        if !report.contains(&format!("line {}: {key}:", i + 1)) {
            missing.push(format!("line {}: {key}", i + 1));
        }
    }
    missing
}

/// `key: value` lines under `spec:` whose line no report line names, unless a
/// `tls` or `authentication` block above them is reported as a whole.
fn unreported_yaml(text: &str, report: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().trim_start_matches("- ").len();
    let reported = |i: usize| report.contains(&format!("line {}: ", i + 1));
    let spec = lines.iter().position(|l| l.starts_with("spec:")).unwrap_or(0);
    let mut missing = Vec::new();
    for i in spec + 1..lines.len() {
        let l = lines[i].trim_start().trim_start_matches("- ");
        let Some((k, v)) = l.split_once(':') else { continue };
        let v = v.trim();
        if l.starts_with('#') || v.is_empty() || v.starts_with('#') || reported(i) {
            continue;
        }
        let mut covered = false;
        let mut level = indent(lines[i]);
        for j in (spec..i).rev() {
            let t = lines[j].trim_start().trim_start_matches("- ");
            if t.is_empty() || t.starts_with('#') || indent(lines[j]) >= level {
                continue;
            }
            level = indent(lines[j]);
            if ["tls:", "authentication:"].iter().any(|b| t.starts_with(b)) && reported(j) {
                covered = true;
                break;
            }
        }
        if !covered {
            missing.push(format!("line {}: {k}", i + 1));
        }
    }
    missing
}

/// A self-signed certificate and its key, standing in for every PEM file a
/// converted config names (check-config reads them).
fn pem_files(dir: &Path) -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.cert.pem()).unwrap();
    std::fs::write(&k, cert.signing_key.serialize_pem()).unwrap();
    (c.display().to_string(), k.display().to_string())
}

#[test]
fn every_expected_toml_passes_check_config() {
    let dir = std::env::temp_dir().join(format!("strait-import-mm2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = pem_files(&dir);
    let password = dir.join("password");
    std::fs::write(&password, "secret\n").unwrap();
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut out = String::new();
        for line in text.lines() {
            // The files the config names do not exist here: stand-ins.
            let line = match line.split_once(" = ") {
                Some(("ca_file" | "cert_file", _)) => format!("{} = {:?}", line.split(' ').next().unwrap(), cert),
                Some(("key_file", _)) => format!("key_file = {key:?}"),
                Some(("password_file" | "token_file", _)) => {
                    format!(
                        "{} = {:?}",
                        line.split(' ').next().unwrap(),
                        password.display().to_string()
                    )
                }
                _ => line.to_string(),
            };
            out.push_str(&line);
            out.push('\n');
        }
        let checked = dir.join(path.file_name().unwrap());
        std::fs::write(&checked, out).unwrap();
        let (code, stdout, stderr) = strait(
            &["check-config", "--config", &checked.display().to_string()],
            &[("WEST_PASSWORD", "secret")],
        );
        assert_eq!(
            code,
            0,
            "{}: check-config refused it:\n{stdout}{stderr}",
            path.display()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Exit 1, nothing on stdout, one `error:` line on stderr; returns it.
fn one_error(name: &str) -> String {
    let (code, stdout, stderr) = import(name);
    assert_eq!(code, 1, "{name}: exit code; stderr:\n{stderr}");
    assert!(stdout.is_empty(), "{name}: no config on stdout:\n{stdout}");
    assert!(
        stderr.starts_with("error: ") && stderr.lines().count() == 1,
        "{name}: one error:\n{stderr}"
    );
    stderr
}

#[test]
fn bad_input_is_one_clear_error() {
    let e = one_error("bad/not-mm2.properties");
    assert!(
        e.contains("bad/not-mm2.properties: not a MirrorMaker 2 config: no `clusters` key"),
        "{e}"
    );
    let e = one_error("bad/undefined-cluster.properties");
    assert!(
        e.contains("line 4: `A->C.enabled`: cluster `C` is not in `clusters` (A, B)"),
        "{e}"
    );
    let e = one_error("bad/custom-policy.properties");
    assert!(
        e.contains("line 5: `replication.policy.class`: replication policy `com.example.MyReplicationPolicy`"),
        "{e}"
    );
    let e = one_error("bad/exclude-lookahead.properties");
    assert!(
        e.contains("line 5: `topics.exclude`: `(?!keep).*\\.tmp`: negative lookahead"),
        "{e}"
    );
    let e = one_error("bad/missing.properties");
    assert!(
        e.contains("cannot read protocol-tests/fixtures/mm2/bad/missing.properties"),
        "{e}"
    );
}

#[test]
fn help_lists_the_exit_codes() {
    let (code, stdout, _) = strait(&["import-mm2", "--help"], &[]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("Exit status:") && stdout.contains("a config was written"),
        "{stdout}"
    );
}
