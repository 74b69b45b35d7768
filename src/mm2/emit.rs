//! The strait TOML config of a converted model: a header naming the input,
//! top-level keys in docs/configuration.md's order, then `[source]` and
//! `[destination]` (one flow) or `[clusters.<alias>]` and `[[flows]]`, then
//! the report lines that need action, as comments.

use std::fmt::Write;

use super::convert::{ClusterOut, Entry, Model, Val};

pub(crate) fn toml(model: &Model, file: &str) -> String {
    let mut out = String::new();
    let name = std::path::Path::new(file)
        .file_name()
        .map_or(file.into(), |n| n.to_string_lossy());
    let _ = writeln!(out, "# strait config imported from the MirrorMaker 2 config {name}");
    out.push_str("# by `strait import-mm2`. Check it with `strait check-config --config FILE`.\n");
    if model.secrets_note {
        out.push_str("# Secrets stay in Kubernetes secrets: mount secret S into the pod at\n# /run/secrets/S (password_file and ca_file below point there).\n");
    }
    out.push('\n');
    entries(&mut out, &model.top);
    if model.flows.len() == 1 {
        let f = &model.flows[0];
        for (table, alias) in [("source", &f.source), ("destination", &f.destination)] {
            if let Some(c) = model.clusters.iter().find(|c| &c.alias == alias) {
                out.push('\n');
                cluster(&mut out, table, c, true);
            }
        }
    } else {
        for c in &model.clusters {
            out.push('\n');
            cluster(&mut out, &format!("clusters.{}", key(&c.alias)), c, false);
        }
        for f in &model.flows {
            out.push_str("\n[[flows]]\n");
            let _ = writeln!(out, "source = {}", string(&f.source));
            let _ = writeln!(out, "destination = {}", string(&f.destination));
            entries(&mut out, &f.entries);
        }
    }
    let action: Vec<_> = model.report.iter().filter(|r| r.needs_action()).collect();
    if !action.is_empty() {
        out.push_str("\n# Needs action (from the import report):\n");
        for r in action {
            for (n, l) in r.to_string().lines().enumerate() {
                let _ = writeln!(out, "#{}{l}", if n == 0 { " " } else { "   " });
            }
        }
    }
    out
}

fn entries(out: &mut String, entries: &[Entry]) {
    for e in entries {
        if let Some(c) = &e.comment {
            let _ = writeln!(out, "# {c}");
        }
        let _ = writeln!(out, "{} = {}", e.key, value(&e.value));
    }
}

fn cluster(out: &mut String, table: &str, c: &ClusterOut, with_alias: bool) {
    let _ = writeln!(out, "[{table}]");
    if with_alias {
        let _ = writeln!(out, "alias = {}", string(&c.alias));
    }
    let _ = writeln!(out, "bootstrap_servers = {}", string(&c.bootstrap));
    if let Some(id) = &c.client_id {
        let _ = writeln!(out, "client_id = {}", string(id));
    }
    if let Some(t) = c.request_timeout_ms {
        let _ = writeln!(out, "request_timeout_ms = {t}");
    }
    if let Some(tls) = &c.security.tls {
        out.push('\n');
        for n in &tls.notes {
            let _ = writeln!(out, "# {n}");
        }
        let _ = writeln!(out, "[{table}.tls]");
        for (k, v) in [
            ("ca_file", &tls.ca_file),
            ("cert_file", &tls.cert_file),
            ("key_file", &tls.key_file),
        ] {
            if let Some(v) = v {
                let _ = writeln!(out, "{k} = {}", string(v));
            }
        }
    }
    if let Some(s) = &c.security.sasl {
        out.push('\n');
        let _ = writeln!(out, "[{table}.sasl]");
        let _ = writeln!(out, "mechanism = {}", string(&s.mechanism));
        let fields = [
            ("username", &s.username),
            ("password", &s.password),
            ("password_env", &s.password_env),
            ("password_file", &s.password_file),
            ("token_file", &s.token_file),
        ];
        for (k, v) in fields {
            if let Some(v) = v {
                let _ = writeln!(out, "{k} = {}", string(v));
            }
        }
    }
}

fn value(v: &Val) -> String {
    match v {
        Val::Str(s) => string(s),
        Val::Int(i) => i.to_string(),
        Val::Bool(b) => b.to_string(),
        Val::List(l) => format!("[{}]", l.iter().map(|s| string(s)).collect::<Vec<_>>().join(", ")),
    }
}

/// A TOML basic string (backslashes doubled, as docs/configuration.md writes regexes).
pub(crate) fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML key: bare when it can be, quoted otherwise.
fn key(k: &str) -> String {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        k.to_string()
    } else {
        string(k)
    }
}
