//! The documentation checked against the code, no Kafka needed:
//! `docs/configuration.md` holds the annotated example config byte for byte as
//! `strait example-config` prints it, and lists every key the example sets (or
//! shows in its commented-out TLS and SASL tables) in the reference table of
//! that key's table; the active-active and aggregation examples
//! (`--topology`) are there byte for byte too, their keys documented; and every relative link of `README.md`, `docs/` and
//! `benches/e2e/README.md` resolves, `#anchors` included.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// What `strait example-config` prints.
fn example_config() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_strait"))
        .arg("example-config")
        .output()
        .expect("strait runs");
    assert!(out.status.success(), "strait example-config failed");
    String::from_utf8(out.stdout).expect("UTF-8")
}

const REFERENCE: &str = "docs/configuration.md";
const EXAMPLE_HEADING: &str = "\n## Annotated example\n";

#[test]
fn configuration_md_holds_the_example_config_byte_for_byte() {
    let example = example_config();
    let doc = read(&root().join(REFERENCE));
    let section = doc
        .find(EXAMPLE_HEADING)
        .map(|i| &doc[i..])
        .unwrap_or_else(|| panic!("{REFERENCE} has no {EXAMPLE_HEADING:?} section"));
    let start = section
        .find("\n```toml\n")
        .map(|i| i + "\n```toml\n".len())
        .unwrap_or_else(|| panic!("{REFERENCE}: no ```toml block under the annotated example heading"));
    let end = section[start..]
        .find("\n```\n")
        .map(|i| start + i + 1)
        .unwrap_or_else(|| panic!("{REFERENCE}: the annotated example's ```toml block is not closed"));
    let block = &section[start..end];
    if block != example {
        let line = block
            .lines()
            .zip(example.lines())
            .position(|(d, e)| d != e)
            .unwrap_or_else(|| block.lines().count().min(example.lines().count()));
        panic!(
            "{REFERENCE}'s annotated example differs from `strait example-config` from its line {} on:\n  docs:   {:?}\n  binary: {:?}\nPaste the output of `strait example-config` into the block.",
            line + 1,
            block.lines().nth(line).unwrap_or("<end>"),
            example.lines().nth(line).unwrap_or("<end>"),
        );
    }
    assert!(
        doc.contains(&format!("```toml\n{example}```\n")),
        "{REFERENCE} holds the example byte for byte"
    );
}

/// What `strait example-config --topology NAME` prints.
fn topology_example(name: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_strait"))
        .args(["example-config", "--topology", name])
        .output()
        .expect("strait runs");
    assert!(out.status.success(), "strait example-config --topology {name} failed");
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn configuration_md_holds_every_topology_example_and_documents_its_keys() {
    let doc = read(&root().join(REFERENCE));
    let documented = documented_keys(&doc);
    let has = |heading: &str, key: &str| documented.iter().any(|(h, k)| h.contains(heading) && k == key);
    // The active-passive topology is the annotated example, checked above.
    assert_eq!(topology_example("active-passive"), example_config());
    for name in ["active-active", "aggregation"] {
        let example = topology_example(name);
        assert!(
            doc.contains(&format!("```toml\n{example}```\n")),
            "{REFERENCE} does not hold `strait example-config --topology {name}` byte for byte: paste its output into the block under the heading of that design"
        );
        let parsed: toml::Table = example.parse().expect("the example is valid TOML");
        let mut missing = Vec::new();
        for (key, value) in &parsed {
            match (key.as_str(), value) {
                ("clusters", toml::Value::Table(clusters)) => {
                    for cluster in clusters.values() {
                        for k in cluster.as_table().expect("a cluster table").keys() {
                            if !has("`[clusters.<alias>]`", k) {
                                missing.push(format!("[clusters.<alias>] {k}"));
                            }
                        }
                    }
                }
                ("flows", toml::Value::Array(flows)) => {
                    for flow in flows {
                        for k in flow.as_table().expect("a flow table").keys() {
                            // A flow's own keys, or a top-level key it overrides.
                            if !has("`[[flows]]`", k) && !has("Top-level keys", k) {
                                missing.push(format!("[[flows]] {k}"));
                            }
                        }
                    }
                }
                (k, _) => {
                    if !has("Top-level keys", k) {
                        missing.push(k.to_string());
                    }
                }
            }
        }
        assert!(
            missing.is_empty(),
            "{REFERENCE} does not document these keys of the {name} example: {missing:?}"
        );
    }
}

/// `(table, key)` for every key the example sets ("" for the top level), and
/// for every `# key = value` line of its commented-out tables (`# [source.tls]`).
fn example_keys(example: &str) -> BTreeSet<(String, String)> {
    let mut keys = BTreeSet::new();
    let doc: toml::Table = example.parse().expect("the example is valid TOML");
    for (key, value) in &doc {
        match value {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    match v {
                        toml::Value::Table(inner) => {
                            keys.extend(inner.keys().map(|k2| (format!("{key}.{k}"), k2.clone())));
                        }
                        _ => {
                            keys.insert((key.clone(), k.clone()));
                        }
                    }
                }
            }
            _ => {
                keys.insert((String::new(), key.clone()));
            }
        }
    }
    let mut table: Option<String> = None;
    for line in example.lines() {
        if let Some(t) = line.strip_prefix("# [").and_then(|l| l.strip_suffix(']')) {
            table = Some(t.to_string());
            continue;
        }
        let key = line
            .strip_prefix("# ")
            .and_then(|l| l.split_once(" = "))
            .map(|(k, _)| k);
        match (key, &table) {
            (Some(k), Some(t)) if !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_') => {
                keys.insert((t.clone(), k.to_string()));
            }
            _ if !line.starts_with('#') || line.trim() == "#" => table = None,
            _ => {}
        }
    }
    keys
}

/// `(heading, key)` for every backquoted name in the first cell of a table row.
fn documented_keys(doc: &str) -> BTreeSet<(String, String)> {
    let mut keys = BTreeSet::new();
    let mut heading = String::new();
    let mut fenced = false;
    for line in doc.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        if line.starts_with('#') {
            heading = line.trim_start_matches('#').trim().to_string();
        } else if let Some(row) = line.strip_prefix('|') {
            let first = row.split('|').next().unwrap_or_default();
            for (i, part) in first.split('`').enumerate() {
                if i % 2 == 1 {
                    keys.insert((heading.clone(), part.to_string()));
                }
            }
        }
    }
    keys
}

/// The heading of the reference table that documents `table`'s keys.
fn section_of(table: &str) -> String {
    if table.is_empty() {
        "Top-level keys".into()
    } else {
        format!("`[{table}]`")
    }
}

#[test]
fn every_key_of_the_example_is_in_the_reference_tables() {
    let example = example_config();
    let keys = example_keys(&example);
    // The example's keys as this test reads them: some of every table.
    for (table, key) in [
        ("", "name"),
        ("", "max_decompressed_batch_bytes"),
        ("source", "bootstrap_servers"),
        ("source.tls", "ca_file"),
        ("source.sasl", "password_env"),
        ("destination", "client_id"),
    ] {
        assert!(
            keys.contains(&(table.to_string(), key.to_string())),
            "{table}.{key} not found in the example: {keys:?}"
        );
    }
    let documented = documented_keys(&read(&root().join(REFERENCE)));
    let missing: Vec<String> = keys
        .iter()
        .filter(|(table, key)| {
            let section = section_of(table);
            !documented.iter().any(|(h, k)| k == key && h.contains(&section))
        })
        .map(|(table, key)| {
            format!(
                "`{key}` (in the table under the heading holding {:?})",
                section_of(table)
            )
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{REFERENCE} does not document these keys of `strait example-config`:\n  {}",
        missing.join("\n  ")
    );
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces as `-`.
fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings (outside code blocks).
fn anchors(doc: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut fenced = false;
    for line in doc.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            let base = slug(line.trim_start_matches('#').trim());
            let mut anchor = base.clone();
            let mut n = 0;
            while out.contains(&anchor) {
                n += 1;
                anchor = format!("{base}-{n}");
            }
            out.insert(anchor);
        }
    }
    out
}

/// Targets of the inline links `[text](target)` outside code blocks and spans.
fn links(doc: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in doc.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, p)| p)
            .collect::<Vec<_>>()
            .join("``");
        let mut rest = prose.as_str();
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            if let Some(end) = rest.find(')') {
                out.push(rest[..end].to_string());
                rest = &rest[end..];
            }
        }
    }
    out
}

#[test]
fn relative_links_in_the_docs_resolve() {
    let root = root();
    let mut files = vec![root.join("README.md"), root.join("benches/e2e/README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    assert!(docs.len() >= 4, "docs/ holds the four documents: {docs:?}");
    files.extend(docs);
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = read(file);
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = match link.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (link.as_str(), None),
            };
            let target = if path.is_empty() {
                file.clone()
            } else {
                file.parent().expect("a file has a directory").join(path)
            };
            let shown = file.strip_prefix(&root).unwrap_or(file).display().to_string();
            if !target.exists() {
                broken.push(format!("{shown}: ({link}): no such file"));
                continue;
            }
            if let Some(a) = anchor {
                if !anchors(&read(&target)).contains(a) {
                    broken.push(format!("{shown}: ({link}): no heading with anchor #{a}"));
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} links found: is the link parser broken?");
    assert!(broken.is_empty(), "broken links:\n  {}", broken.join("\n  "));
}
