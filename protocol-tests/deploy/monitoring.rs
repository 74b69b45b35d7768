//! The Grafana dashboard (`deploy/grafana/strait.json`) and the Prometheus
//! alert rules (`deploy/prometheus/strait-alerts.yml`) checked against
//! strait:
//!
//! - the dashboard is valid JSON with the `datasource`, `flow` and `instance`
//!   variables and the panels operators look for;
//! - every rule has an expression, a `for:`, a severity and a summary and
//!   description (read as text: no YAML parser among the dependencies), and,
//!   only when `promtool` or the `deploy/prometheus/check` program is
//!   installed (otherwise that part is skipped and says so), Prometheus's
//!   own rule loader accepts the file;
//! - against a real replication: every metric name in the dashboard's and the
//!   rules' PromQL is in what strait's `/metrics` serves.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::harness::{self, unique_topic};
use crate::{read, root};

const DASHBOARD: &str = "deploy/grafana/strait.json";
const ALERTS: &str = "deploy/prometheus/strait-alerts.yml";

/// The panels operators look for (issue 17), by title.
const PANELS: &[&str] = &[
    "Ready",
    "Partitions stopped",
    "Records/s",
    "Bytes/s",
    "Slow-path share",
    "Lag by topic",
    "Lag by flow",
    "Checkpoint age",
    "Replication latency p50 / p99",
    "Errors by code",
    "Buffered bytes",
    "Process memory",
    "Process CPU",
    "Heartbeats",
    "Failed over",
];

/// The alerts the runbook in docs/operations.md explains.
const ALERT_NAMES: &[&str] = &[
    "StraitDown",
    "StraitNotReady",
    "StraitPartitionsStopped",
    "StraitCheckpointTooOld",
    "StraitLagGrowing",
    "StraitNotReplicating",
    "StraitOffsetsSkipped",
    "StraitTopicReset",
    "StraitErrors",
    "StraitGroupLeader",
    "StraitFileDescriptorsExhausted",
    "StraitHeartbeatStale",
    "StraitFailedOver",
];

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

/// The panels, those inside collapsed rows too.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// Every PromQL expression of the dashboard: the panels' targets and the
/// template variables' queries.
fn dashboard_exprs(d: &Value) -> Vec<String> {
    let mut out: Vec<String> = panels(d)
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect();
    for v in d["templating"]["list"].as_array().expect("templating") {
        if v["type"] == "query" {
            // label_values(SELECTOR, LABEL): the selector is PromQL, the label a name.
            let def = v["definition"].as_str().expect("a query variable's definition");
            let args = def.strip_prefix("label_values(").and_then(|a| a.strip_suffix(')'));
            let selector = args.and_then(|a| a.rsplit_once(',')).map_or(def, |(s, _)| s);
            out.push(selector.to_string());
        }
    }
    out
}

/// One alerting rule, read as text.
#[derive(Debug)]
struct Rule {
    alert: String,
    expr: String,
    for_: Option<String>,
    severity: Option<String>,
    summary: Option<String>,
    description: Option<String>,
}

/// The value of `key:` in a rule: a plain scalar on its line, or the folded
/// (`>-`, `>`) or literal (`|`) block under it, lines joined with spaces.
fn scalar(rule: &str, key: &str) -> Option<String> {
    let lines: Vec<&str> = rule.lines().collect();
    let head = format!("{key}:");
    let i = lines.iter().position(|l| {
        let t = l.trim_start().trim_start_matches("- ");
        t == head || t.starts_with(&format!("{head} "))
    })?;
    let depth = lines[i].len() - lines[i].trim_start().len();
    let rest = lines[i].trim_start().trim_start_matches("- ")[head.len()..].trim();
    if !rest.is_empty() && !rest.starts_with(['>', '|']) {
        return Some(rest.trim_matches('"').trim_matches('\'').to_string());
    }
    let body: Vec<&str> = lines[i + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > depth)
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    (!body.is_empty()).then(|| body.join(" "))
}

fn rules() -> Vec<Rule> {
    let text = read(ALERTS);
    // Each rule runs from its `- alert:` line to the next list item at its
    // depth or shallower (the next rule, or the next group).
    let mut chunks: Vec<(usize, String)> = Vec::new();
    for l in text.lines() {
        let (t, depth) = (l.trim_start(), l.len() - l.trim_start().len());
        let ends_the_last = chunks.last().is_some_and(|(d, _)| depth <= *d);
        if t.starts_with("- alert:") || (t.starts_with("- ") && ends_the_last) {
            chunks.push((depth, String::new()));
        }
        if let Some((_, c)) = chunks.last_mut() {
            c.push_str(l);
            c.push('\n');
        }
    }
    chunks
        .iter()
        .map(|(_, c)| c)
        .filter(|c| c.trim_start().starts_with("- alert:"))
        .map(|c| Rule {
            alert: scalar(c, "alert").expect("alert"),
            expr: scalar(c, "expr").unwrap_or_default(),
            for_: scalar(c, "for"),
            severity: scalar(c, "severity"),
            summary: scalar(c, "summary"),
            description: scalar(c, "description"),
        })
        .collect()
}

// ---- metric names in PromQL ------------------------------------------------

/// PromQL words that are not metric names: keywords, modifiers, and the
/// aggregation operators (`sum by (flow) (...)`: not followed by `(`).
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "limitk",
    "limit_ratio",
];

/// The metric names a PromQL expression selects: identifiers that are not
/// functions (followed by `(`), keywords, label names (inside `{}`, or in the
/// `(...)` of `by`/`without`/`on`/`ignoring`/`group_*`), strings, durations
/// (inside `[]`), numbers, or Grafana variables (`$flow`, `${datasource}`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let c: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let (mut braces, mut brackets) = (0, 0);
    let mut label_list = false; // inside the parentheses after `by` and the like
    let mut last_word = String::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        match ch {
            '"' | '\'' | '`' => {
                i += 1;
                while i < c.len() && c[i] != ch {
                    i += if c[i] == '\\' { 2 } else { 1 };
                }
            }
            '{' => braces += 1,
            '}' => braces -= 1,
            '[' => brackets += 1,
            ']' => brackets -= 1,
            '(' if ["by", "without", "on", "ignoring", "group_left", "group_right"].contains(&last_word.as_str()) => {
                label_list = true;
            }
            ')' => label_list = false,
            '$' => {
                // A Grafana variable: $name or ${name}.
                i += 1;
                if c.get(i) == Some(&'{') {
                    while i < c.len() && c[i] != '}' {
                        i += 1;
                    }
                } else {
                    while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                        i += 1;
                    }
                    continue;
                }
            }
            _ if ch.is_ascii_alphabetic() || ch == '_' || ch == ':' => {
                let start = i;
                while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_' || c[i] == ':') {
                    i += 1;
                }
                let word: String = c[start..i].iter().collect();
                let next = c[i..].iter().find(|c| !c.is_whitespace());
                let is_function = next == Some(&'(');
                let is_number = start > 0 && (c[start - 1].is_ascii_digit() || c[start - 1] == '.');
                if braces == 0
                    && brackets == 0
                    && !label_list
                    && !is_function
                    && !is_number
                    && !KEYWORDS.contains(&word.to_lowercase().as_str())
                {
                    names.insert(word.clone());
                }
                last_word = word;
                continue;
            }
            _ => {}
        }
        if !ch.is_whitespace() {
            last_word.clear();
        }
        i += 1;
    }
    names
}

/// The sample names a scrape can hold: every sample line's name, and the
/// names each `# TYPE` family may produce even with no sample yet (a counter
/// no flow has counted, a histogram's series).
fn exported_names(scrape: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for l in scrape.lines() {
        if let Some(t) = l.strip_prefix("# TYPE ") {
            let mut f = t.split_whitespace();
            let (Some(family), Some(kind)) = (f.next(), f.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                "summary" => &["", "_sum", "_count", "_created"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{family}{s}")));
        } else if !l.starts_with('#') && !l.trim().is_empty() {
            names.insert(l.split(['{', ' ']).next().unwrap_or_default().to_string());
        }
    }
    names
}

// ---- tests -------------------------------------------------------------------

#[test]
fn promql_metric_names_skip_functions_labels_and_variables() {
    let got = metric_names(
        r#"histogram_quantile(0.99, sum by (flow, le) (rate(strait_replication_latency_seconds_bucket{flow=~"$flow", path="a b"}[$__rate_interval]))) / on (flow) group_left(instance) up{job="x"} > 1e3 and time() - process_start_time_seconds offset 5m"#,
    );
    let want = [
        "process_start_time_seconds",
        "strait_replication_latency_seconds_bucket",
        "up",
    ];
    assert_eq!(got, want.iter().map(|s| s.to_string()).collect());
    let scrape = "# TYPE strait_errors counter\n# TYPE h histogram\nh_bucket{le=\"1\"} 0\nprocess_open_fds 7\n# EOF\n";
    let names = exported_names(scrape);
    for n in ["strait_errors_total", "h_bucket", "h_count", "process_open_fds"] {
        assert!(names.contains(n), "{n}: {names:?}");
    }
    assert!(!names.contains("strait_errors") && !names.contains("h"), "{names:?}");
}

#[test]
fn dashboard_has_the_variables_and_panels_operators_look_for() {
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64().unwrap_or(0) >= 36, "schemaVersion");
    assert!(d["uid"].is_string() && d["title"].is_string());
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    for name in ["flow", "instance"] {
        assert_eq!(var(name)["type"], "query");
        assert_eq!(var(name)["datasource"]["uid"], "${datasource}");
        assert_eq!(var(name)["multi"], true, "${name} selects several");
    }
    let all = panels(&d);
    let titles: Vec<&str> = all.iter().filter_map(|p| p["title"].as_str()).collect();
    for want in PANELS {
        assert!(titles.contains(want), "no panel {want:?} in {titles:?}");
    }
    let mut ids = BTreeSet::new();
    for p in &all {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id {}",
            p["id"]
        );
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no targets", p["title"]));
        assert!(!targets.is_empty(), "{}: no targets", p["title"]);
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        for t in targets {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: target without expr", p["title"]));
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{}: {expr} selects no metric", p["title"]);
            // Per-flow metrics follow the variables; process_* have no flow label.
            if names.iter().any(|n| n.starts_with("strait_")) {
                assert!(expr.contains("flow=~\"$flow\""), "{}: {expr} ignores $flow", p["title"]);
            }
            assert!(
                expr.contains("instance=~\"$instance\""),
                "{}: {expr} ignores $instance",
                p["title"]
            );
        }
    }
}

#[test]
fn alert_rules_have_severity_for_and_annotations() {
    let rules = rules();
    let names: Vec<&str> = rules.iter().map(|r| r.alert.as_str()).collect();
    for want in ALERT_NAMES {
        assert!(names.contains(want), "no alert {want} in {names:?}");
    }
    for r in &rules {
        let what = &r.alert;
        assert!(!r.expr.is_empty(), "{what}: no expr");
        let balanced = |open: char, close: char| r.expr.matches(open).count() == r.expr.matches(close).count();
        assert!(
            balanced('(', ')') && balanced('{', '}') && balanced('[', ']'),
            "{what}: unbalanced {}",
            r.expr
        );
        assert!(r.for_.is_some(), "{what}: no for:");
        assert!(
            matches!(r.severity.as_deref(), Some("critical" | "warning")),
            "{what}: severity {:?}",
            r.severity
        );
        let (summary, description) = (
            r.summary.as_deref().unwrap_or(""),
            r.description.as_deref().unwrap_or(""),
        );
        assert!(
            !summary.is_empty() && !description.is_empty(),
            "{what}: summary and description"
        );
        // An alert on a flow's metric names the flow.
        if metric_names(&r.expr).iter().any(|n| n.starts_with("strait_")) {
            assert!(
                summary.contains("{{ $labels.flow }}"),
                "{what}: the summary names no flow"
            );
        } else {
            assert!(
                summary.contains("{{ $labels.instance }}"),
                "{what}: the summary names no instance"
            );
        }
    }
}

/// The first of these files that exists.
fn installed(env: &str, name: &str, go_bin: &str) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os(env).map(PathBuf::from).into_iter().collect();
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join(name)));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join("go/bin").join(go_bin));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// Optional: Prometheus's own rule loader parses the file, through
/// `promtool check rules` or the small `deploy/prometheus/check` program
/// (`install-deps.sh --rulecheck` builds it); skipped, with a message, when
/// neither is installed. The textual checks above need neither.
#[test]
fn prometheus_parses_the_rules() {
    let tool = installed("PROMTOOL", "promtool", "promtool")
        .map(|p| (p, vec!["check", "rules", ALERTS]))
        .or_else(|| installed("STRAIT_RULECHECK", "strait-rulecheck", "strait-rulecheck").map(|p| (p, vec![ALERTS])));
    let Some((tool, args)) = tool else {
        eprintln!(
            "neither promtool ($PROMTOOL, PATH, ~/go/bin) nor strait-rulecheck ($STRAIT_RULECHECK, PATH, ~/go/bin; \
             install-deps.sh --rulecheck) found: the rules' PromQL is not parsed"
        );
        return;
    };
    let run = |args: &[&str]| {
        let out = Command::new(&tool)
            .args(args)
            .current_dir(root())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{} {}:\n{text}", tool.display(), args.join(" "));
        text
    };
    let text = run(&args);
    assert!(
        text.contains(&format!("SUCCESS: {} rules found", rules().len())),
        "{text}"
    );

    // The dashboard's PromQL too, as recording rules, its variables replaced
    // by what Grafana puts there.
    let exprs = dashboard_exprs(&dashboard());
    let mut file = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let e = e
            .replace("$__rate_interval", "2m")
            .replace("$flow", ".*")
            .replace("$instance", ".*");
        file.push_str(&format!(
            "      - record: dashboard:expr_{i}\n        expr: '{}'\n",
            e.replace('\'', "''")
        ));
    }
    let path = std::env::temp_dir().join(format!("strait-dashboard-{}.yml", std::process::id()));
    std::fs::write(&path, file).unwrap();
    let path_s = path.to_str().unwrap();
    let mut args = args;
    *args.last_mut().unwrap() = path_s;
    let text = run(&args);
    let _ = std::fs::remove_file(&path);
    assert!(
        text.contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{text}"
    );
}

/// Real brokers: a short replication with a metrics endpoint, scraped; every
/// metric the dashboard and the rules select is there (`up` is Prometheus's own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_rules_select_is_exported() {
    let (src, dst) = (harness::kafka4(), harness::kafka4_dest());
    let t = unique_topic("dashboard");
    create(src, &t, 2, &["retention.ms=-1"]);
    load(src, &t, 1_000, "lz4", &[]);
    let addr = free_addr();
    let r = start(config(
        &unique_topic("dashboard"),
        src,
        dst,
        &t,
        &format!("metrics_address = \"{addr}\""),
    ))
    .await;
    r.wait_records(1_000, Duration::from_secs(60)).await;
    wait_until("a checkpoint", Duration::from_secs(30), || {
        metric(&http_get(&addr, "/metrics").1, "strait_checkpoint_age_seconds") >= 0.0
    })
    .await;
    let (status, scrape) = http_get(&addr, "/metrics");
    r.stop().await;
    assert_eq!(status, 200);
    let exported = exported_names(&scrape);

    let d = dashboard();
    let mut selected: Vec<(String, String)> = Vec::new();
    for expr in dashboard_exprs(&d) {
        selected.extend(
            metric_names(&expr)
                .into_iter()
                .map(|n| (n, format!("{DASHBOARD}: {expr}"))),
        );
    }
    for r in rules() {
        selected.extend(
            metric_names(&r.expr)
                .into_iter()
                .map(|n| (n, format!("{ALERTS} {}: {}", r.alert, r.expr))),
        );
    }
    assert!(selected.len() > 20, "{selected:?}");
    let missing: Vec<String> = selected
        .iter()
        .filter(|(name, _)| name != "up" && !exported.contains(name))
        .map(|(name, wher)| format!("{name} (in {wher})"))
        .collect();
    assert!(
        missing.is_empty(),
        "not exported:\n{}\n\nscrape:\n{scrape}",
        missing.join("\n")
    );
    // And the other way: every family is in the metrics table of
    // docs/operations.md, and each strait_* family is on a panel or in a rule.
    let shown: BTreeSet<&str> = selected.iter().map(|(n, _)| n.as_str()).collect();
    let doc = read("docs/operations.md");
    for l in scrape.lines() {
        let Some(t) = l.strip_prefix("# TYPE ") else { continue };
        let (family, kind) = t.split_once(' ').unwrap_or((t, ""));
        let documented = if kind == "counter" {
            format!("{family}_total")
        } else {
            family.to_string()
        };
        assert!(
            doc.contains(&format!("| `{documented}` | {kind} |")),
            "{documented} ({kind}) is not in docs/operations.md's metrics table"
        );
        if family.starts_with("strait_") {
            assert!(
                shown.iter().any(|n| n.starts_with(family)),
                "{family} is exported and on no panel or rule"
            );
        }
    }
}
