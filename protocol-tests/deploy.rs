//! The deployment files checked against strait. The Kubernetes deployment
//! (`deploy/kubernetes/`), no Kafka and no cluster needed:
//!
//! - the plain manifests, read as text (no YAML parser among the
//!   dependencies): the Deployment runs several replicas with the readiness
//!   and liveness probes on the metrics port, the instance id from the pod's
//!   name, as non-root with a read-only root file system; the StatefulSet's
//!   pod template is the Deployment's; the ConfigMap's `strait.toml` is a valid
//!   strait config (its commented-out TLS lines too) that serves the probes'
//!   port and reads its secrets from files the Secret provides;
//! - the Helm chart's default `config` is a valid strait config; and, only
//!   when `helm` is installed (`$HELM`, `PATH` or `~/go/bin/helm`; otherwise
//!   that part is skipped and says so), `helm lint --strict` passes and
//!   `helm template` renders, as Deployment and as StatefulSet, the same
//!   probes, instance id and security settings, a config strait accepts, and
//!   the Secret of `secretFiles` where the config looks for it.
//!
//! The Grafana dashboard and the Prometheus alert rules (`deploy/grafana/`,
//! `deploy/prometheus/`): see [`monitoring`]; one of its tests replicates
//! between real brokers to scrape strait's metrics.

mod common;
mod harness;
#[path = "deploy/monitoring.rs"]
mod monitoring;
#[path = "harness/pki.rs"]
mod pki;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use strait::config::Document;

const DIR: &str = "deploy/kubernetes";
const CHART: &str = "deploy/kubernetes/helm/strait";
/// Where the pods mount the Secret, and where the config looks for its files.
const SECRETS: &str = "/etc/strait/secrets";
const METRICS_PORT: &str = "9464";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let p = root().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// A CA, and a client certificate and key signed by it, for the TLS tables
/// (PEM texts; generated once, their directory removed).
struct Pem {
    ca: String,
    client_cert: String,
    client_key: String,
}

fn pem() -> &'static Pem {
    static PEM: OnceLock<Pem> = OnceLock::new();
    PEM.get_or_init(|| {
        let p = pki::make_pki("deploy");
        let pem = Pem {
            ca: read_path(&p.path("ca.pem")),
            client_cert: read_path(&p.path("client.pem")),
            client_key: read_path(&p.path("client.key")),
        };
        let _ = std::fs::remove_dir_all(&p.dir);
        pem
    })
}

// ---- YAML read as text -----------------------------------------------------

/// The documents of a multi-document YAML text.
fn documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line == "---" || line.starts_with("--- ") {
            docs.push(String::new());
        } else {
            let d = docs.last_mut().unwrap();
            d.push_str(line);
            d.push('\n');
        }
    }
    docs.retain(|d| d.lines().any(|l| l.starts_with("kind:")));
    docs
}

/// The one document of `kind` (and, when given, `name`).
fn object<'a>(docs: &'a [String], kind: &str, name: Option<&str>) -> &'a str {
    let found: Vec<&String> = docs
        .iter()
        .filter(|d| d.lines().any(|l| l.trim_end() == format!("kind: {kind}")))
        .filter(|d| name.is_none_or(|n| metadata_name(d) == n))
        .collect();
    assert_eq!(found.len(), 1, "expected one {kind} {name:?}, found {}", found.len());
    found[0]
}

fn metadata_name(doc: &str) -> String {
    value(&section(doc, "metadata"), "name").unwrap_or_default()
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// A line's content without its indentation and list dash.
fn content(line: &str) -> &str {
    let t = line.trim_start();
    t.strip_prefix("- ").unwrap_or(t)
}

/// The lines nested under every line `key:` (in order), each block up to the
/// next line indented no deeper than its key.
fn sections(text: &str, key: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let head = format!("{key}:");
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let c = content(line);
        if c != head && !c.starts_with(&format!("{head} #")) {
            continue;
        }
        // A list item's keys are indented past its dash.
        let depth = indent(line) + if line.trim_start().starts_with("- ") { 2 } else { 0 };
        let mut s = String::new();
        for l in &lines[i + 1..] {
            let t = l.trim_start();
            if !t.is_empty() && !t.starts_with('#') && indent(l) <= depth {
                break;
            }
            s.push_str(l);
            s.push('\n');
        }
        out.push(s);
    }
    out
}

/// The block under the first line `key:`.
fn section(text: &str, key: &str) -> String {
    sections(text, key)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no `{key}:` in\n{text}"))
}

/// The value of the first `key: value` line (quotes and comments removed).
fn value(text: &str, key: &str) -> Option<String> {
    let head = format!("{key}: ");
    text.lines().find_map(|l| {
        let v = content(l).strip_prefix(&head)?;
        let v = v.split(" #").next().unwrap_or(v).trim();
        Some(v.trim_matches('"').trim_matches('\'').to_string())
    })
}

/// The literal block scalar of the first `key: |` line, its indentation removed.
fn block(text: &str, key: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| content(l) == format!("{key}: |"))
        .unwrap_or_else(|| panic!("no `{key}: |` block in\n{text}"));
    let depth = lines[start + 1..]
        .iter()
        .find(|l| !l.trim().is_empty())
        .map(|l| indent(l))
        .expect("a non-empty block");
    let mut out = String::new();
    for l in &lines[start + 1..] {
        if !l.trim().is_empty() && indent(l) < depth {
            break;
        }
        out.push_str(l.get(depth..).unwrap_or(""));
        out.push('\n');
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// The items of a YAML list (`- ...` lines at the shallowest dash depth).
fn items(list: &str) -> Vec<String> {
    let depth = list
        .lines()
        .filter(|l| l.trim_start().starts_with("- "))
        .map(indent)
        .min()
        .unwrap_or(0);
    let mut out: Vec<String> = Vec::new();
    for l in list.lines() {
        if l.trim_start().starts_with("- ") && indent(l) == depth {
            out.push(String::new());
        }
        if let Some(item) = out.last_mut() {
            item.push_str(l);
            item.push('\n');
        }
    }
    out
}

/// The pod template of a workload: everything from `  template:` on.
fn pod_template(workload: &str) -> String {
    let i = workload
        .find("\n  template:\n")
        .unwrap_or_else(|| panic!("no pod template in\n{workload}"));
    workload[i + 1..].to_string()
}

// ---- what a strait workload must hold --------------------------------------

/// The checks every workload (plain or rendered, Deployment or StatefulSet)
/// passes. Returns the name of the ConfigMap and of the Secret it mounts.
fn check_workload(what: &str, workload: &str) -> (String, Option<String>) {
    let replicas: u32 = value(workload, "replicas")
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("{what}: no replicas"));
    assert!(replicas >= 2, "{what}: replicas {replicas}: run several members");
    let grace: u32 = value(workload, "terminationGracePeriodSeconds")
        .and_then(|r| r.parse().ok())
        .unwrap_or(30);
    assert!(
        grace > 30,
        "{what}: terminationGracePeriodSeconds {grace}: strait waits up to 30 s for in-flight produces, then commits and leaves the group"
    );

    let pod = pod_template(workload);
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let p = section(&pod, probe);
        let get = section(&p, "httpGet");
        assert_eq!(value(&get, "path").as_deref(), Some(path), "{what}: {probe}:\n{p}");
        assert_eq!(
            value(&get, "port").as_deref(),
            Some(METRICS_PORT),
            "{what}: {probe}:\n{p}"
        );
    }
    assert_eq!(
        value(&pod, "containerPort").as_deref(),
        Some(METRICS_PORT),
        "{what}: container port"
    );

    let env = section(&pod, "env");
    let id = items(&env)
        .into_iter()
        .find(|i| value(i, "name").as_deref() == Some("STRAIT_INSTANCE_ID"))
        .unwrap_or_else(|| panic!("{what}: no STRAIT_INSTANCE_ID in env:\n{env}"));
    assert_eq!(
        value(&id, "fieldPath").as_deref(),
        Some("metadata.name"),
        "{what}: STRAIT_INSTANCE_ID must come from the pod's name:\n{id}"
    );

    let security = sections(&pod, "securityContext").join("");
    for (key, want) in [
        ("runAsNonRoot", "true"),
        ("readOnlyRootFilesystem", "true"),
        ("allowPrivilegeEscalation", "false"),
    ] {
        assert_eq!(
            value(&security, key).as_deref(),
            Some(want),
            "{what}: {key}:\n{security}"
        );
    }
    let caps = section(&security, "capabilities");
    assert!(
        caps.contains("ALL") && caps.contains("drop"),
        "{what}: capabilities must drop ALL:\n{caps}"
    );
    let limits = section(&section(&pod, "resources"), "limits");
    assert!(value(&limits, "memory").is_some(), "{what}: no memory limit");

    // `args:` as a block list, or inline (`args: ["run", ...]`).
    let args: Vec<String> = match sections(&pod, "args").into_iter().next() {
        Some(list) => items(&list)
            .iter()
            .map(|a| content(a.trim_end()).trim_matches('"').to_string())
            .collect(),
        None => value(&pod, "args")
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .split(',')
            .map(|a| a.trim().trim_matches('"').to_string())
            .collect(),
    };
    assert!(
        args.windows(3)
            .any(|w| w == ["run", "--config", "/etc/strait/strait.toml"]),
        "{what}: args {args:?}"
    );

    // The config file from the ConfigMap, the Secret as a directory.
    let mounts = items(&section(&pod, "volumeMounts"));
    let volumes = items(&section(&pod, "volumes"));
    let mount = |path: &str| {
        mounts
            .iter()
            .find(|m| value(m, "mountPath").as_deref() == Some(path))
            .and_then(|m| value(m, "name"))
    };
    let volume = |name: &str| {
        volumes
            .iter()
            .find(|v| value(v, "name").as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{what}: no volume {name}"))
            .clone()
    };
    let config_volume = mount("/etc/strait/strait.toml").unwrap_or_else(|| panic!("{what}: no config mount"));
    let config_map = value(&section(&volume(&config_volume), "configMap"), "name").expect("a ConfigMap volume");
    let secret =
        mount(SECRETS).map(|name| value(&section(&volume(&name), "secret"), "secretName").expect("a Secret volume"));
    (config_map, secret)
}

/// Parses `toml` as strait does in a pod, with the files it names under
/// /etc/strait/secrets written to a temporary directory: passwords from
/// `secrets` (file name → content), certificates and keys from [`pem`].
fn parse_config(what: &str, toml: &str, secrets: &[(String, String)]) -> Document {
    // `SSL_CERT_FILE` (for TLS tables without `ca_file`: the image's CA bundle
    // is not on the test host) is process-wide: one parse at a time.
    static ONE: Mutex<()> = Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let pem = pem();
    let dir = std::env::temp_dir().join(format!("strait-deploy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let needle = format!("\"{SECRETS}/");
    for line in toml.lines().filter(|l| l.contains(&needle)) {
        let file = line.split(&needle).nth(1).and_then(|r| r.split('"').next()).unwrap();
        let content = if let Some((_, c)) = secrets.iter().find(|(k, _)| k == file) {
            c.as_str()
        } else if file.ends_with(".key") {
            &pem.client_key
        } else if file.contains("client") {
            &pem.client_cert
        } else if file.ends_with(".pem") {
            &pem.ca
        } else {
            panic!("{what}: the config reads {SECRETS}/{file}, which the Secret does not hold")
        };
        std::fs::write(dir.join(file), content).unwrap();
    }
    let bundle = dir.join("system-ca-bundle.pem");
    std::fs::write(&bundle, &pem.ca).unwrap();
    std::env::set_var("SSL_CERT_FILE", &bundle);
    let text = toml.replace(SECRETS, &dir.display().to_string());
    let parsed = Document::parse(&text, what);
    std::env::remove_var("SSL_CERT_FILE");
    let _ = std::fs::remove_dir_all(&dir);
    parsed.unwrap_or_else(|e| panic!("{what} is not a valid strait config: {e}"))
}

fn read_path(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// What every strait.toml of the deployment must say.
fn check_config(what: &str, toml: &str, doc: &Document) {
    assert_eq!(
        doc.ops.metrics_address.map(|a| a.to_string()).as_deref(),
        Some("0.0.0.0:9464"),
        "{what}: metrics_address must serve the probes' port on every interface"
    );
    assert!(
        !toml.lines().any(|l| l.trim_start().starts_with("instance_id")),
        "{what}: every pod runs this file; instance_id must come from STRAIT_INSTANCE_ID"
    );
}

// ---- the plain manifests ---------------------------------------------------

#[test]
fn plain_manifests_run_a_valid_config_with_probes_and_stable_ids() {
    let common = documents(&read(&format!("{DIR}/common.yaml")));
    let deployment_file = documents(&read(&format!("{DIR}/deployment.yaml")));
    let statefulset_file = documents(&read(&format!("{DIR}/statefulset.yaml")));
    let deployment = object(&deployment_file, "Deployment", None);
    let statefulset = object(&statefulset_file, "StatefulSet", None);

    let (config_map, secret) = check_workload("deployment.yaml", deployment);
    assert_eq!(
        check_workload("statefulset.yaml", statefulset),
        (config_map.clone(), secret.clone())
    );
    assert_eq!(
        pod_template(deployment),
        pod_template(statefulset),
        "the StatefulSet's pod template must be the Deployment's"
    );
    let service = object(&common, "Service", None);
    assert_eq!(
        value(statefulset, "serviceName"),
        Some(metadata_name(service)),
        "the StatefulSet's governing Service"
    );

    // The Secret's keys, as files.
    let secret = secret.expect("the Secret mounted at /etc/strait/secrets");
    let secret_doc = object(&common, "Secret", Some(&secret));
    let files: Vec<(String, String)> = section(secret_doc, "stringData")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains(": "))
        .map(|l| {
            let (k, v) = l.trim().split_once(": ").unwrap();
            (k.to_string(), v.trim_matches('"').to_string())
        })
        .collect();
    assert!(!files.is_empty(), "the Secret holds no files");

    let toml = block(object(&common, "ConfigMap", Some(&config_map)), "strait.toml");
    let what = "deploy/kubernetes/common.yaml strait.toml";
    let doc = parse_config(what, &toml, &files);
    check_config(what, &toml, &doc);
    let flow = &doc.flows[0];
    for (side, cluster) in [("source", &flow.source), ("destination", &flow.destination)] {
        let c = cluster.client_config();
        let sasl = c.sasl.unwrap_or_else(|| panic!("{what}: {side} without SASL"));
        let file = format!("{side}-password");
        let want = &files
            .iter()
            .find(|(k, _)| *k == file)
            .expect("the password in the Secret")
            .1;
        assert_eq!(
            sasl.password.expose(),
            want,
            "{what}: {side} password from {SECRETS}/{file}"
        );
        assert!(c.tls.is_some(), "{what}: {side} without TLS");
    }

    // The commented-out TLS files are real keys, and fit the layout.
    let uncommented: String = toml
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.contains(&format!("\"{SECRETS}/")) => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(uncommented, toml, "{what}: expected commented-out TLS files");
    let doc = parse_config(&format!("{what} (TLS lines uncommented)"), &uncommented, &files);
    let tls = doc.flows[0].source.client_config().tls.expect("source TLS");
    assert!(tls.ca_file.is_some() && tls.cert_file.is_some() && tls.key_file.is_some());

    // Prometheus finds the pods; a drain takes one at a time.
    assert_eq!(
        value(&section(service, "annotations"), "prometheus.io/scrape").as_deref(),
        Some("true")
    );
    assert_eq!(
        value(&section(service, "annotations"), "prometheus.io/port").as_deref(),
        Some(METRICS_PORT)
    );
    assert_eq!(value(&section(service, "ports"), "port").as_deref(), Some(METRICS_PORT));
    let pdb = object(&common, "PodDisruptionBudget", None);
    assert_eq!(value(pdb, "maxUnavailable").as_deref(), Some("1"));
}

// ---- the Helm chart --------------------------------------------------------

#[test]
fn chart_default_config_is_valid() {
    let toml = block(&read(&format!("{CHART}/values.yaml")), "config");
    let what = "deploy/kubernetes/helm/strait/values.yaml config";
    let doc = parse_config(what, &toml, &[]);
    check_config(what, &toml, &doc);
}

fn helm() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("HELM").map(PathBuf::from).into_iter().collect();
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("helm")));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join("go/bin/helm"));
    }
    candidates.into_iter().find(|p| p.is_file())
}

fn run_helm(helm: &Path, args: &[&str]) -> String {
    let out = Command::new(helm)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", helm.display()));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "helm {} failed:\n{text}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Optional: skipped (with a message) when helm is not installed. The
/// textual checks above do not need it.
#[test]
fn chart_lints_and_renders_what_the_plain_manifests_hold() {
    let Some(helm) = helm() else {
        eprintln!("helm not found ($HELM, PATH, ~/go/bin/helm): the chart's lint and template checks are skipped");
        return;
    };
    let lint = run_helm(&helm, &["lint", "--strict", CHART]);
    assert!(lint.contains("0 chart(s) failed"), "{lint}");

    // The plain manifests' config and Secret files, through the chart.
    let common = documents(&read(&format!("{DIR}/common.yaml")));
    let plain = block(object(&common, "ConfigMap", None), "strait.toml");
    let config = std::env::temp_dir().join(format!("strait-deploy-{}-chart.toml", std::process::id()));
    std::fs::write(&config, &plain).unwrap();
    let set_file = format!("config={}", config.display());

    for kind in ["Deployment", "StatefulSet"] {
        let what = format!("helm template ({kind})");
        let set_kind = format!("kind={kind}");
        let rendered = documents(&run_helm(
            &helm,
            &[
                "template",
                "t",
                CHART,
                "--set",
                &set_kind,
                "--set-file",
                &set_file,
                "--set-string",
                "secretFiles.source-password=pw-east",
                "--set-string",
                "secretFiles.destination-password=pw-west",
            ],
        ));
        let workload = object(&rendered, kind, None);
        let (config_map, secret) = check_workload(&what, workload);
        let secret = secret.unwrap_or_else(|| panic!("{what}: secretFiles set, no Secret mounted"));
        let data = section(object(&rendered, "Secret", Some(&secret)), "data");
        for key in ["source-password", "destination-password"] {
            assert!(value(&data, key).is_some(), "{what}: Secret without {key}:\n{data}");
        }
        let toml = block(object(&rendered, "ConfigMap", Some(&config_map)), "strait.toml");
        assert_eq!(
            toml.trim_end(),
            plain.trim_end(),
            "{what}: the ConfigMap holds the config as given"
        );
        let files = [
            ("source-password".to_string(), "pw-east".to_string()),
            ("destination-password".to_string(), "pw-west".to_string()),
        ];
        let doc = parse_config(&what, &toml, &files);
        check_config(&what, &toml, &doc);
        let service = object(&rendered, "Service", None);
        assert_eq!(
            value(&section(service, "annotations"), "prometheus.io/port").as_deref(),
            Some(METRICS_PORT)
        );
        if kind == "StatefulSet" {
            assert_eq!(value(workload, "serviceName"), Some(metadata_name(service)));
        }
        assert!(
            rendered.iter().any(|d| d.contains("kind: PodDisruptionBudget")),
            "{what}: no PDB"
        );
    }
    let _ = std::fs::remove_file(&config);

    // The defaults render too (no Secret: the default config needs none).
    let rendered = documents(&run_helm(&helm, &["template", "t", CHART]));
    let (_, secret) = check_workload("helm template (defaults)", object(&rendered, "Deployment", None));
    assert_eq!(secret, None);
}
