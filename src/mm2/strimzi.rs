//! A Strimzi `KafkaMirrorMaker2` resource restated as MM2 keys, the way
//! Strimzi's operator configures the connectors (`KafkaMirrorMaker2Connectors`):
//! each mirror is a flow `source->target`, `topicsPattern` its `topics`,
//! `topicsExcludePattern` (`topicsBlacklistPattern`) its `topics.exclude`,
//! the connectors' `config` its settings. Both API shapes are read:
//! `v1beta2` (`spec.clusters[]`, `spec.connectCluster`) and `v1`
//! (`spec.target`, `spec.mirrors[].source`). TLS and authentication come from
//! Kubernetes secrets, written as files under `/run/secrets/<secret>/<key>`.
//! The offsets topic is the Connect cluster's `offset.storage.topic`
//! (Strimzi's default `mirrormaker2-cluster-offsets`, `KafkaMirrorMaker2Cluster`).

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

use super::convert::{Input, Prop};
use super::security::{Sasl, Security, Tls};
use super::{ImportError, ReportKind, ReportLine};

/// YAML naming itself a Strimzi resource.
pub(crate) fn looks_like(text: &str) -> bool {
    text.lines().map(str::trim).any(|l| {
        (l.starts_with("kind:") && l.contains("KafkaMirrorMaker2"))
            || (l.starts_with("apiVersion:") && l.contains("kafka.strimzi.io"))
    })
}

const DEPLOYMENT: &str = "how Kubernetes runs MM2: strait's own deployment is in deploy/ (manifests, Helm chart)";

struct Reader<'t> {
    lines: Vec<&'t str>,
    input: Input,
}

impl Reader<'_> {
    /// The first line at or after `from` (0-based) holding `key:`.
    fn line_of(&self, key: &str, from: usize) -> usize {
        let forms = [format!("{key}:"), format!("\"{key}\":"), format!("'{key}':")];
        (from..self.lines.len())
            .find(|&i| {
                let l = self.lines[i].trim_start().trim_start_matches("- ").trim_start();
                forms.iter().any(|f| l.starts_with(f.as_str()))
            })
            .unwrap_or(from)
    }

    fn report(&mut self, kind: ReportKind, line: usize, key: &str, message: impl Into<String>) {
        self.input.report.push(ReportLine {
            kind,
            line: Some(line + 1),
            key: key.to_string(),
            message: message.into(),
        });
    }

    fn prop(&mut self, key: String, value: &Value, line: usize, name: String) {
        let value = match value {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::Null => String::new(),
            other => serde_yaml_ng::to_string(other).unwrap_or_default().trim().to_string(),
        };
        self.input.props.push(Prop {
            key,
            value,
            line: line + 1,
            name: Some(name),
        });
    }
}

fn str_of<'v>(m: &'v Mapping, k: &str) -> Option<&'v str> {
    m.get(k).and_then(Value::as_str)
}

pub(crate) fn read(text: &str, file: &str) -> Result<Input, ImportError> {
    let not = |reason: String| ImportError::NotMm2 {
        file: file.to_string(),
        reason,
    };
    let mut doc = None;
    for d in serde_yaml_ng::Deserializer::from_str(text) {
        let v = Value::deserialize(d).map_err(|e| not(format!("invalid YAML: {e}")))?;
        if v.get("kind").and_then(Value::as_str) == Some("KafkaMirrorMaker2") {
            doc = Some(v);
            break;
        }
    }
    let doc = doc.ok_or_else(|| not("no `kind: KafkaMirrorMaker2` resource in it".into()))?;
    let spec = doc
        .get("spec")
        .and_then(Value::as_mapping)
        .ok_or_else(|| not("the KafkaMirrorMaker2 has no spec".into()))?;
    let mut r = Reader {
        lines: text.lines().collect(),
        input: Input {
            secrets_note: true,
            ..Input::default()
        },
    };
    let spec_line = r.line_of("spec", 0);
    let mut aliases = Vec::new();
    let mut connect = None;
    for (k, v) in spec {
        let k = k.as_str().unwrap_or_default();
        let line = r.line_of(k, spec_line);
        match k {
            "clusters" => {
                let mut from = line;
                for c in v.as_sequence().into_iter().flatten() {
                    if let Some(a) = cluster(&mut r, c, from, None) {
                        let first = c
                            .as_mapping()
                            .and_then(|m| m.keys().next())
                            .and_then(Value::as_str)
                            .unwrap_or("alias");
                        from = r.line_of(first, from) + 1;
                        aliases.push(a);
                    }
                }
            }
            "target" => {
                let a = cluster(&mut r, v, line, Some("target"));
                connect = a.clone();
                aliases.extend(a);
            }
            "connectCluster" => {
                connect = v.as_str().map(String::from);
                r.report(
                    ReportKind::Converted,
                    line,
                    "spec.connectCluster",
                    "where the offsets topic lives",
                );
            }
            "mirrors" => {}
            _ => r.report(ReportKind::NotNeeded, line, &format!("spec.{k}"), DEPLOYMENT),
        }
    }
    // The offsets topic of the Connect cluster (MM2's connectors run there).
    let connect_cfg = spec
        .get("clusters")
        .and_then(Value::as_sequence)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("alias").and_then(Value::as_str) == connect.as_deref())
        })
        .or_else(|| spec.get("target"))
        .and_then(Value::as_mapping);
    let offsets = connect_cfg.and_then(|c| {
        str_of(c, "offsetStorageTopic").or_else(|| {
            c.get("config")
                .and_then(|cfg| cfg.get("offset.storage.topic"))
                .and_then(Value::as_str)
        })
    });
    r.input.offsets_topic = Some(offsets.unwrap_or("mirrormaker2-cluster-offsets").to_string());
    let mirrors_line = r.line_of("mirrors", spec_line);
    let mut from = mirrors_line;
    for (n, m) in spec
        .get("mirrors")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Some(m) = m.as_mapping() else { continue };
        let first = m.keys().next().and_then(Value::as_str).unwrap_or("sourceCluster");
        let at = r.line_of(first, from);
        from = at + 1;
        mirror(&mut r, m, n, at, &mut aliases, connect.as_deref())?;
    }
    r.input.props.insert(
        0,
        Prop {
            key: "clusters".into(),
            value: aliases.join(", "),
            line: r.line_of("clusters", spec_line) + 1,
            name: Some("spec.clusters".into()),
        },
    );
    Ok(r.input)
}

/// One cluster: its keys as `alias.` props, its security as a preset.
fn cluster(r: &mut Reader, c: &Value, from: usize, path: Option<&str>) -> Option<String> {
    let m = c.as_mapping()?;
    let alias = str_of(m, "alias")?.to_string();
    let base = path.map_or(format!("spec.clusters[{alias}]"), |p| format!("spec.{p}"));
    let first = m.keys().next().and_then(Value::as_str).unwrap_or("alias");
    let item = r.line_of(first, from);
    let start = r.line_of("alias", item);
    let mut sec = Security::default();
    for (k, v) in m {
        let k = k.as_str().unwrap_or_default();
        let line = if k == "alias" { start } else { r.line_of(k, item) };
        let name = format!("{base}.{k}");
        match k {
            "alias" => r.report(ReportKind::Converted, line, &name, "cluster alias"),
            "bootstrapServers" => r.prop(format!("{alias}.bootstrap.servers"), v, line, name),
            "config" => {
                for (ck, cv) in v.as_mapping().into_iter().flatten() {
                    let ck = ck.as_str().unwrap_or_default();
                    let l = r.line_of(ck, line);
                    r.prop(format!("{alias}.{ck}"), cv, l, format!("{name}.{ck}"));
                }
            }
            "tls" => {
                let mut tls = Tls::default();
                let certs = v
                    .get("trustedCertificates")
                    .and_then(Value::as_sequence)
                    .cloned()
                    .unwrap_or_default();
                for (i, cert) in certs.iter().enumerate() {
                    let secret = cert.get("secretName").and_then(Value::as_str).unwrap_or("SECRET");
                    let file = cert.get("certificate").and_then(Value::as_str).unwrap_or("ca.crt");
                    let path = format!("/run/secrets/{secret}/{file}");
                    if i == 0 {
                        if let Some(p) = cert.get("pattern").and_then(Value::as_str) {
                            tls.notes.push(format!(
                                "Strimzi took every {p} of secret {secret}; this is the cluster CA's"
                            ));
                        }
                        tls.ca_file = Some(path);
                    } else {
                        r.report(
                            ReportKind::Unsupported,
                            line,
                            &format!("{name}.trustedCertificates[{i}]"),
                            format!(
                                "strait takes one ca_file: concatenate {path} into {}",
                                tls.ca_file.clone().unwrap_or_default()
                            ),
                        );
                    }
                }
                r.report(
                    ReportKind::Converted,
                    line,
                    &name,
                    format!("tls table of {alias} (CA files from Kubernetes secrets under /run/secrets)"),
                );
                sec.tls = Some(tls);
            }
            "authentication" => sec.sasl = authentication(r, v, line, &name, &alias, &mut sec.tls),
            "offsetStorageTopic" => r.report(ReportKind::Converted, line, &name, "mm2_offsets_topic"),
            "groupId" | "configStorageTopic" | "statusStorageTopic" => r.report(
                ReportKind::NotNeeded,
                line,
                &name,
                "Kafka Connect worker setting: strait runs no Connect worker",
            ),
            _ => r.report(ReportKind::Unknown, line, &name, "not a Strimzi cluster field"),
        }
    }
    r.input.security.insert(alias.clone(), sec);
    Some(alias)
}

fn authentication(
    r: &mut Reader,
    v: &Value,
    line: usize,
    name: &str,
    alias: &str,
    tls: &mut Option<Tls>,
) -> Option<Sasl> {
    let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
    let secret_file = |s: Option<&Value>, key: &str| {
        s.map(|s| {
            format!(
                "/run/secrets/{}/{}",
                s.get("secretName").and_then(Value::as_str).unwrap_or("SECRET"),
                s.get(key).and_then(Value::as_str).unwrap_or(key)
            )
        })
    };
    let mechanism = match kind {
        "tls" => {
            let ck = v.get("certificateAndKey");
            let t = tls.get_or_insert_with(Tls::default);
            t.cert_file = secret_file(ck, "certificate");
            t.key_file = secret_file(ck, "key");
            r.report(
                ReportKind::Converted,
                line,
                name,
                format!("mTLS: cert_file and key_file of {alias} from a Kubernetes secret"),
            );
            return None;
        }
        "scram-sha-256" => "SCRAM-SHA-256",
        "scram-sha-512" => "SCRAM-SHA-512",
        "plain" => "PLAIN",
        "oauth" if v.get("accessToken").is_some() => {
            let token_file = secret_file(v.get("accessToken"), "key");
            r.report(
                ReportKind::Converted,
                line,
                name,
                format!("OAUTHBEARER token_file of {alias} (a static access token: refresh the file yourself)"),
            );
            return Some(Sasl {
                mechanism: "OAUTHBEARER".into(),
                token_file,
                ..Sasl::default()
            });
        }
        other => {
            r.report(ReportKind::Unsupported, line, name, format!("authentication type {other}: strait supports tls, scram-sha-256, scram-sha-512, plain, and oauth with an accessToken"));
            return None;
        }
    };
    let username = v.get("username").and_then(Value::as_str).map(String::from);
    let password_file = secret_file(v.get("passwordSecret"), "password");
    r.report(
        ReportKind::Converted,
        line,
        name,
        format!(
            "sasl table of {alias} ({mechanism}); password_file is the Kubernetes secret mounted under /run/secrets"
        ),
    );
    Some(Sasl {
        mechanism: mechanism.into(),
        username,
        password_file,
        ..Sasl::default()
    })
}

fn mirror(
    r: &mut Reader,
    m: &Mapping,
    n: usize,
    at: usize,
    aliases: &mut Vec<String>,
    connect: Option<&str>,
) -> Result<(), ImportError> {
    let source = str_of(m, "sourceCluster").map(String::from).or_else(|| {
        let s = m.get("source")?;
        cluster(r, s, at, Some(&format!("mirrors[{n}].source")))
    });
    let target = str_of(m, "targetCluster").or(connect).map(String::from);
    let (Some(s), Some(t)) = (source, target) else {
        r.report(
            ReportKind::Unsupported,
            at,
            &format!("spec.mirrors[{n}]"),
            "no source or target cluster: left out",
        );
        return Ok(());
    };
    if m.get("source").is_some() && !aliases.contains(&s) {
        aliases.push(s.clone());
    }
    let flow = format!("{s}->{t}");
    let base = format!("spec.mirrors[{n}]");
    r.input.props.push(Prop {
        key: format!("{flow}.enabled"),
        value: "true".into(),
        line: at + 1,
        name: Some(format!("{base} ({flow})")),
    });
    r.input
        .checkpoints
        .insert(flow.clone(), m.contains_key("checkpointConnector"));
    r.input
        .heartbeats
        .insert(flow.clone(), m.contains_key("heartbeatConnector"));
    for (k, v) in m {
        let k = k.as_str().unwrap_or_default();
        let line = r.line_of(k, at);
        let name = format!("{base}.{k}");
        let key = match k {
            "topicsPattern" => "topics",
            "topicsExcludePattern" | "topicsBlacklistPattern" => "topics.exclude",
            "groupsPattern" => "groups",
            "groupsExcludePattern" | "groupsBlacklistPattern" => "groups.exclude",
            "sourceCluster" | "targetCluster" => {
                r.report(ReportKind::Converted, line, &name, format!("flow {s} -> {t}"));
                continue;
            }
            "source" => continue,
            "sourceConnector" | "checkpointConnector" | "heartbeatConnector" => {
                for (ck, cv) in v.as_mapping().into_iter().flatten() {
                    let ck = ck.as_str().unwrap_or_default();
                    let l = r.line_of(ck, line);
                    if ck == "config" {
                        for (pk, pv) in cv.as_mapping().into_iter().flatten() {
                            let pk = pk.as_str().unwrap_or_default();
                            let pl = r.line_of(pk, l);
                            r.prop(format!("{flow}.{pk}"), pv, pl, format!("{name}.config.{pk}"));
                        }
                    } else if ck == "tasksMax" {
                        r.report(ReportKind::NotNeeded, l, &format!("{name}.tasksMax"), "strait spreads partitions over every `strait run` process of a flow: run more processes instead");
                    } else {
                        r.report(
                            ReportKind::NotNeeded,
                            l,
                            &format!("{name}.{ck}"),
                            "Kafka Connect connector lifecycle: strait has no connectors",
                        );
                    }
                }
                if k == "heartbeatConnector" {
                    r.report(ReportKind::Converted, line, &name, "heartbeats = true");
                } else if k == "checkpointConnector" {
                    r.report(
                        ReportKind::Converted,
                        line,
                        &name,
                        "group offset sync follows its sync.group.offsets.enabled",
                    );
                } else {
                    r.report(ReportKind::Converted, line, &name, format!("flow {s} -> {t}"));
                }
                continue;
            }
            _ => {
                r.report(ReportKind::Unknown, line, &name, "not a field of a Strimzi mirror");
                continue;
            }
        };
        r.prop(format!("{flow}.{key}"), v, line, name);
    }
    if !m.contains_key("heartbeatConnector") {
        r.report(
            ReportKind::Converted,
            at,
            &format!("{base}.heartbeatConnector"),
            "absent: Strimzi runs no heartbeat connector, so heartbeats = false",
        );
    }
    Ok(())
}
