//! MM2 keys resolved as `MirrorMakerConfig` resolves them, into strait's
//! clusters, flows and engine keys. Global keys are defaults, `A->B.` keys
//! override them for one flow (`connectorBaseConfig`), `A.` keys configure
//! cluster `A`'s clients (`clusterProps`). Every key ends up in the report.

use std::collections::BTreeMap;

use super::engine::Settings;
use super::keys::classify;
use super::security::{self, Security};
use super::{properties, ImportError, ReportKind, ReportLine};

/// One input key.
#[derive(Debug, Clone)]
pub(crate) struct Prop {
    pub key: String,
    pub value: String,
    pub line: usize,
    /// How the report names it when not `key` (a Strimzi resource path).
    pub name: Option<String>,
}

/// An MM2 config as keys, plus what a Strimzi resource states directly.
#[derive(Debug, Default)]
pub(crate) struct Input {
    pub props: Vec<Prop>,
    pub report: Vec<ReportLine>,
    /// Strimzi: each cluster's TLS and authentication.
    pub security: BTreeMap<String, Security>,
    /// Strimzi: the Connect cluster's offsets topic.
    pub offsets_topic: Option<String>,
    /// Strimzi: per flow (`A->B`), whether a heartbeat / checkpoint connector runs.
    pub heartbeats: BTreeMap<String, bool>,
    pub checkpoints: BTreeMap<String, bool>,
    /// Secrets are Kubernetes secrets mounted under /run/secrets.
    pub secrets_note: bool,
}

impl Input {
    pub(crate) fn from_properties(text: &str) -> Self {
        let (entries, replaced) = properties::parse(text);
        let mut report = Vec::new();
        for e in &replaced {
            report.push(ReportLine {
                kind: ReportKind::NotNeeded,
                line: Some(e.line),
                key: e.key.clone(),
                message: "set again further down; Java properties keep the last value".into(),
            });
        }
        let mut props = Vec::new();
        for e in entries {
            if let Some(c) = &e.trailing_comment {
                report.push(ReportLine {
                    kind: ReportKind::Unsupported,
                    line: Some(e.line),
                    key: e.key.clone(),
                    message: format!("`{c}` read as a comment, but Java properties have no trailing comments: MM2 reads it as part of the value; remove it from the MM2 file"),
                });
            }
            props.push(Prop {
                key: e.key,
                value: e.value,
                line: e.line,
                name: None,
            });
        }
        Self {
            props,
            report,
            ..Self::default()
        }
    }
}

/// A strait config value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Val {
    Str(String),
    List(Vec<String>),
    Int(i64),
    Bool(bool),
}

/// One engine key to write, with a comment saying where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub key: &'static str,
    pub value: Val,
    pub comment: Option<String>,
}

/// A cluster as strait will hold it.
#[derive(Debug, Clone)]
pub(crate) struct ClusterOut {
    pub alias: String,
    pub bootstrap: String,
    pub client_id: Option<String>,
    pub request_timeout_ms: Option<i64>,
    pub security: Security,
}

/// A flow and its own engine keys (those differing from the top level).
#[derive(Debug, Clone)]
pub(crate) struct FlowOut {
    pub source: String,
    pub destination: String,
    pub entries: Vec<Entry>,
}

/// The converted config.
#[derive(Debug)]
pub(crate) struct Model {
    pub top: Vec<Entry>,
    pub clusters: Vec<ClusterOut>,
    pub flows: Vec<FlowOut>,
    pub report: Vec<ReportLine>,
    pub secrets_note: bool,
}

/// The keys of the input, each marked once it is accounted for.
pub(crate) struct Conv<'a> {
    pub file: &'a str,
    pub props: Vec<Prop>,
    /// Per prop: the index of its report line.
    marked: Vec<Option<usize>>,
    pub report: Vec<ReportLine>,
    pub aliases: Vec<String>,
    pub input: Input,
}

impl<'a> Conv<'a> {
    pub(crate) fn find(&self, key: &str) -> Option<usize> {
        self.props.iter().position(|p| p.key == key)
    }

    pub(crate) fn value(&self, i: usize) -> &str {
        &self.props[i].value
    }

    pub(crate) fn key(&self, i: usize) -> &str {
        self.props[i].name.as_deref().unwrap_or(&self.props[i].key)
    }

    /// Records what became of prop `i`. A key used by one cluster or flow
    /// (converted) outranks what another said of it; otherwise the first word stays.
    pub(crate) fn mark(&mut self, i: usize, kind: ReportKind, message: impl Into<String>) {
        let line = ReportLine {
            kind,
            line: Some(self.props[i].line),
            key: self.key(i).to_string(),
            message: message.into(),
        };
        match self.marked[i] {
            None => {
                self.marked[i] = Some(self.report.len());
                self.report.push(line);
            }
            Some(r) if kind == ReportKind::Converted && self.report[r].kind != ReportKind::Converted => {
                self.report[r] = line;
            }
            Some(_) => {}
        }
    }

    pub(crate) fn is_marked(&self, i: usize) -> bool {
        self.marked[i].is_some()
    }

    /// A report line about no key of the input (an MM2 default, a Strimzi fact).
    pub(crate) fn note(&mut self, kind: ReportKind, key: &str, message: impl Into<String>) {
        self.report.push(ReportLine {
            kind,
            line: None,
            key: key.to_string(),
            message: message.into(),
        });
    }

    pub(crate) fn invalid(&self, i: usize, problem: impl Into<String>) -> ImportError {
        ImportError::Invalid {
            file: self.file.to_string(),
            line: self.props[i].line,
            key: self.key(i).to_string(),
            problem: problem.into(),
        }
    }

    /// A connector setting of `flow` (`A->B`): the flow's own, else the global one.
    pub(crate) fn setting(&self, flow: Option<&str>, key: &str) -> Option<usize> {
        flow.and_then(|f| self.find(&format!("{f}.{key}")))
            .or_else(|| self.find(key))
    }

    /// The alias `key` starts with (`A.` of `A.bootstrap.servers`; the longest
    /// when one alias is a prefix of another) and the rest of the key.
    pub(crate) fn split_alias<'k>(&self, key: &'k str) -> Option<(String, &'k str)> {
        self.aliases
            .iter()
            .filter(|a| key.len() > a.len() + 1 && key.starts_with(a.as_str()) && key.as_bytes()[a.len()] == b'.')
            .max_by_key(|a| a.len())
            .map(|a| (a.clone(), &key[a.len() + 1..]))
    }

    /// A client setting `k` of cluster `alias`, as `clusterProps` resolves it:
    /// `A.k`, `A.admin.k`/`A.consumer.k`/`A.producer.k`, then the global forms.
    /// strait has one client per cluster: the others are reported against it.
    pub(crate) fn client(&mut self, alias: &str, k: &str) -> Option<usize> {
        let candidates = [
            format!("{alias}.{k}"),
            format!("{alias}.admin.{k}"),
            format!("{alias}.consumer.{k}"),
            format!("{alias}.producer.{k}"),
            k.to_string(),
            format!("admin.{k}"),
            format!("consumer.{k}"),
            format!("producer.{k}"),
        ];
        let found: Vec<(usize, usize)> = candidates
            .iter()
            .enumerate()
            .filter_map(|(rank, c)| self.find(c).map(|i| (rank, i)))
            .collect();
        let &(_, first) = found.first()?;
        for &(rank, other) in &found[1..] {
            let (first_key, first_line) = (self.key(first).to_string(), self.props[first].line);
            if self.props[other].value == self.props[first].value {
                self.mark(
                    other,
                    ReportKind::Converted,
                    format!("same as `{first_key}` (line {first_line})"),
                );
            } else if rank >= 4 {
                self.mark(
                    other,
                    ReportKind::NotNeeded,
                    format!("cluster {alias} sets its own `{first_key}` (line {first_line})"),
                );
            } else {
                self.mark(other, ReportKind::Unsupported, format!("differs from `{first_key}` (line {first_line}), which strait uses: strait has one client per cluster"));
            }
        }
        Some(first)
    }
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Converts the keys into the model, or fails with what cannot be converted.
pub(crate) fn convert(input: Input, file: &str) -> Result<Model, ImportError> {
    let props = input.props.clone();
    let marked = vec![None; props.len()];
    let mut conv = Conv {
        file,
        props,
        marked,
        report: Vec::new(),
        aliases: Vec::new(),
        input,
    };
    conv.aliases = cluster_aliases(&mut conv)?;
    let flows = enabled_flows(&mut conv)?;
    let mut used: Vec<String> = Vec::new();
    for (s, d) in &flows {
        for a in [s, d] {
            if !used.contains(a) {
                used.push(a.clone());
            }
        }
    }
    used.sort_by_key(|a| conv.aliases.iter().position(|x| x == a));
    let mut clusters = Vec::new();
    for a in &used {
        clusters.push(cluster(&mut conv, a, &flows)?);
    }
    let mut settings = Settings::new(&mut conv);
    let (top, flow_outs) = if flows.len() == 1 {
        let f = format!("{}->{}", flows[0].0, flows[0].1);
        let mut top = settings.engine(Some(&f))?;
        top.insert(0, name_entry(&flows[0]));
        settings.takeover(&mut top, &flows[0], true);
        (
            top,
            vec![FlowOut {
                source: flows[0].0.clone(),
                destination: flows[0].1.clone(),
                entries: vec![],
            }],
        )
    } else {
        let mut top = settings.engine(None)?;
        let mut outs = Vec::new();
        for (s, d) in &flows {
            let full = settings.engine(Some(&format!("{s}->{d}")))?;
            let mut own: Vec<Entry> = full
                .into_iter()
                .filter(|e| !top.iter().any(|t| t.key == e.key && t.value == e.value))
                .collect();
            settings.takeover(&mut own, &(s.clone(), d.clone()), false);
            outs.push(FlowOut {
                source: s.clone(),
                destination: d.clone(),
                entries: own,
            });
        }
        settings.takeover_top(&mut top);
        merge_identity(&top, &mut outs);
        (top, outs)
    };
    let enabled: Vec<String> = flows.iter().map(|(s, d)| format!("{s}->{d}")).collect();
    for i in 0..conv.props.len() {
        if !conv.is_marked(i) {
            let (kind, why) = classify(&conv, i, &enabled, &used);
            conv.mark(i, kind, why);
        }
    }
    let mut report = std::mem::take(&mut conv.input.report);
    report.extend(conv.report);
    // Input order; MM2 defaults (no line) last.
    report.sort_by_key(|r| r.line.unwrap_or(usize::MAX));
    Ok(Model {
        top,
        clusters,
        flows: flow_outs,
        report,
        secrets_note: conv.input.secrets_note,
    })
}

/// MM2 writes every source of an identity-named aggregation into the same
/// topics: strait wants `merge = true` on each such flow to do the same.
fn merge_identity(top: &[Entry], flows: &mut [FlowOut]) {
    let rename = |f: &FlowOut| {
        f.entries
            .iter()
            .chain(top)
            .find(|e| e.key == "rename")
            .map(|e| e.value.clone())
    };
    let merging: Vec<bool> = flows
        .iter()
        .map(|f| {
            let own = matches!(rename(f), Some(Val::Str(r)) if !r.contains("{source}") && r != "prefix");
            own && flows.iter().filter(|g| g.destination == f.destination).count() > 1
        })
        .collect();
    for (f, m) in flows.iter_mut().zip(merging) {
        if m {
            f.entries.push(Entry {
                key: "merge",
                value: Val::Bool(true),
                comment: Some(format!(
                    "MM2 writes every flow into {} under the same topic names",
                    f.destination
                )),
            });
        }
    }
}

fn name_entry((s, d): &(String, String)) -> Entry {
    let name = format!("{s}-to-{d}");
    let ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    Entry {
        key: "name",
        value: Val::Str(if ok { name } else { "strait".into() }),
        comment: None,
    }
}

/// `clusters`, or (MM2 refuses a file without it) the aliases of the
/// `X.bootstrap.servers` keys, reported.
fn cluster_aliases(conv: &mut Conv) -> Result<Vec<String>, ImportError> {
    if let Some(i) = conv.find("clusters") {
        let aliases = split_list(conv.value(i));
        conv.mark(
            i,
            ReportKind::Converted,
            format!("cluster aliases {}", aliases.join(", ")),
        );
        return Ok(aliases);
    }
    if !conv.props.iter().any(|p| p.key.contains("->")) {
        return Err(ImportError::NotMm2 {
            file: conv.file.to_string(),
            reason: "no `clusters` key and no `A->B.` flow keys (a MirrorMaker 2 file lists `clusters = A, B` and enables `A->B.enabled = true`)".into(),
        });
    }
    let aliases: Vec<String> = conv
        .props
        .iter()
        .filter(|p| !p.key.contains("->"))
        .filter_map(|p| p.key.strip_suffix(".bootstrap.servers").map(String::from))
        .collect();
    conv.note(
        ReportKind::Unsupported,
        "clusters",
        format!(
            "missing: MM2 refuses a file without it; took the clusters of the `*.bootstrap.servers` keys: {}",
            aliases.join(", ")
        ),
    );
    Ok(aliases)
}

/// The `A->B.enabled = true` flows, in file order. A flow naming a cluster
/// not in `clusters` is an error.
fn enabled_flows(conv: &mut Conv) -> Result<Vec<(String, String)>, ImportError> {
    let mut flows = Vec::new();
    for i in 0..conv.props.len() {
        let key = conv.props[i].key.clone();
        let Some((s, rest)) = key.split_once("->") else {
            continue;
        };
        let Some(d) = rest.strip_suffix(".enabled") else {
            continue;
        };
        if conv.aliases.iter().any(|a| a == d) || conv.split_alias(rest).is_none() {
            let on = conv.value(i).trim().eq_ignore_ascii_case("true");
            for c in [s, d] {
                if !conv.aliases.iter().any(|a| a == c) {
                    if !on {
                        break;
                    }
                    return Err(conv.invalid(
                        i,
                        format!("cluster `{c}` is not in `clusters` ({})", conv.aliases.join(", ")),
                    ));
                }
            }
            if s == d {
                return Err(conv.invalid(i, "a flow from a cluster to itself"));
            }
            if on {
                conv.mark(i, ReportKind::Converted, format!("flow {s} -> {d}"));
                flows.push((s.to_string(), d.to_string()));
            } else {
                conv.mark(i, ReportKind::NotNeeded, format!("flow {s} -> {d} is off"));
            }
        }
    }
    if flows.is_empty() {
        return Err(ImportError::Incomplete {
            file: conv.file.to_string(),
            problem: "no flow is enabled (`A->B.enabled = true`): nothing to replicate".into(),
        });
    }
    Ok(flows)
}

/// One cluster's connection: bootstrap servers, client id, timeout, security.
fn cluster(conv: &mut Conv, alias: &str, flows: &[(String, String)]) -> Result<ClusterOut, ImportError> {
    let Some(b) = conv.client(alias, "bootstrap.servers") else {
        let flow = flows
            .iter()
            .find(|(s, d)| s == alias || d == alias)
            .map(|(s, d)| format!("{s}->{d}"))
            .unwrap_or_default();
        return Err(ImportError::Incomplete {
            file: conv.file.to_string(),
            problem: format!("cluster `{alias}` of flow {flow} has no `{alias}.bootstrap.servers`"),
        });
    };
    let bootstrap = split_list(conv.value(b)).join(",");
    conv.mark(b, ReportKind::Converted, format!("bootstrap_servers of {alias}"));
    let client_id = conv.client(alias, "client.id").map(|i| {
        conv.mark(i, ReportKind::Converted, format!("client_id of {alias}"));
        conv.value(i).to_string()
    });
    let mut request_timeout_ms = None;
    if let Some(i) = conv.client(alias, "request.timeout.ms") {
        match conv.value(i).trim().parse::<i64>() {
            Ok(v) if v > 0 => {
                conv.mark(i, ReportKind::Converted, format!("request_timeout_ms of {alias}"));
                request_timeout_ms = Some(v);
            }
            _ => conv.mark(
                i,
                ReportKind::Unsupported,
                "not a positive number of milliseconds; left at strait's default",
            ),
        }
    }
    let security = match conv.input.security.get(alias) {
        Some(s) => s.clone(),
        None => security::from_props(conv, alias),
    };
    Ok(ClusterOut {
        alias: alias.to_string(),
        bootstrap,
        client_id,
        request_timeout_ms,
        security,
    })
}
