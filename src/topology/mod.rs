//! The shape of a config's flows: which clusters records travel between, over
//! which routes, and what would go wrong.
//!
//! Loops are broken two ways:
//! - **prefix renames** follow MirrorMaker 2's rule: a topic whose prefixes
//!   name the flow's destination is never replicated
//!   ([`crate::config::TopicSettings::is_cycle`]); chains in meshes get MM2's
//!   names (`b.a.orders`);
//! - **every other rename** (identity names above all) relies on provenance:
//!   a flow forwards the records produced on its source, plus those of the
//!   origins in its `forward_from`, and never sends a record back to its
//!   origin (see `replicate::provenance`).
//!
//! With provenance a record produced on cluster O reaches cluster T along
//! every chain of flows that carry O's records. More than one such route means
//! the record would arrive twice: [`problems`] refuses that, and two flows
//! writing one destination topic unless both say `merge = true` (aggregation)
//! or the destination replicates back to both sources (active-active: its
//! topics are meant to hold every cluster's records).

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{Config, Document, Rename};

/// True when `flow` skips batches by provenance (every rename but `prefix`).
pub fn uses_provenance(flow: &Config) -> bool {
    flow.topics.rename != Rename::Prefix
}

/// True when `flow` carries records that were first produced on `origin`.
pub fn carries(flow: &Config, origin: &str) -> bool {
    flow.source.alias == origin || flow.forward_from.iter().any(|o| o == origin)
}

/// Every route (a chain of flow names) by which records produced on `origin`
/// reach each other cluster, over provenance flows.
pub fn routes_from(doc: &Document, origin: &str) -> BTreeMap<String, Vec<Vec<String>>> {
    fn walk(
        doc: &Document,
        origin: &str,
        at: &str,
        path: &mut Vec<String>,
        visited: &mut BTreeSet<String>,
        out: &mut BTreeMap<String, Vec<Vec<String>>>,
    ) {
        for f in doc.flows.iter().filter(|f| uses_provenance(f) && f.source.alias == at) {
            let to = f.destination.alias.as_str();
            // A record never goes back to its origin, nor around a loop.
            if to == origin || visited.contains(to) || !carries(f, origin) {
                continue;
            }
            path.push(f.name.clone());
            out.entry(to.to_string()).or_default().push(path.clone());
            visited.insert(to.to_string());
            walk(doc, origin, to, path, visited, out);
            visited.remove(to);
            path.pop();
        }
    }
    let mut out = BTreeMap::new();
    let mut visited = BTreeSet::from([origin.to_string()]);
    walk(doc, origin, origin, &mut Vec::new(), &mut visited, &mut out);
    out
}

/// What is wrong with a config's topology: each entry names the clusters,
/// flows and routes involved.
pub fn problems(doc: &Document) -> Vec<String> {
    let mut out = Vec::new();
    for origin in doc.clusters.keys() {
        for (target, routes) in routes_from(doc, origin) {
            // Parallel direct flows (topics split across flows with different
            // settings, or one topic copied under two names) are not a second
            // route of one record: the same-names check below covers them.
            if routes.len() > 1 && routes.iter().any(|r| r.len() > 1) {
                let shown: Vec<String> = routes.iter().map(|r| format!("[{}]", r.join(" -> "))).collect();
                out.push(format!(
                    "records produced on cluster {origin} would reach cluster {target} over {} routes ({}), so each would arrive {} times: remove a flow or a forward_from",
                    routes.len(),
                    shown.join(", "),
                    routes.len()
                ));
            }
        }
    }
    out.extend(mixed_cycles(doc));
    if doc.flows.iter().any(|f| f.topics.rename == Rename::Prefix) {
        for alias in doc.clusters.keys().filter(|a| a.contains('.')) {
            out.push(format!(
                "cluster alias {alias:?} contains '.', the separator of prefixed names: with rename = \"prefix\" a name such as {alias}.orders could not be told apart from a chain of two clusters; use '-' or '_'"
            ));
        }
    }
    let two_way = |a: &str, b: &str| {
        let flow = |s: &str, d: &str| {
            doc.flows
                .iter()
                .any(|f| f.source.alias == s && f.destination.alias == d)
        };
        flow(a, b) && flow(b, a)
    };
    for (i, a) in doc.flows.iter().enumerate() {
        for b in &doc.flows[i + 1..] {
            let to = a.destination.alias.as_str();
            if to != b.destination.alias || (a.merge && b.merge) {
                continue;
            }
            // Active-active: the destination writes back to both sources, so its
            // topics are meant to hold every cluster's records.
            if two_way(to, &a.source.alias) && two_way(to, &b.source.alias) {
                continue;
            }
            if let Some(name) = same_names(a, b) {
                out.push(format!(
                    "flows {} and {} both write into cluster {} under {name}: a topic both select would get records of both; set `merge = true` on both flows if that is what you want (aggregation), or use rename = \"prefix\"",
                    a.name, b.name, a.destination.alias
                ));
            }
        }
    }
    out
}

/// Cycles of flows that mix the two ways of breaking loops: a prefix flow
/// does not consult provenance, and a provenance flow does not apply
/// MirrorMaker 2's naming rule, so around such a cycle a record comes back to
/// the cluster it was produced on (under a prefixed name). Each is named once.
fn mixed_cycles(doc: &Document) -> Vec<String> {
    fn paths<'a>(
        doc: &'a Document,
        at: &str,
        to: &str,
        path: &mut Vec<&'a Config>,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<Vec<&'a Config>>,
    ) {
        for f in doc.flows.iter().filter(|f| f.source.alias == at) {
            let next = f.destination.alias.as_str();
            if next == to {
                path.push(f);
                out.push(path.clone());
                path.pop();
            } else if seen.insert(next.to_string()) {
                path.push(f);
                paths(doc, next, to, path, seen, out);
                path.pop();
                seen.remove(next);
            }
        }
    }
    let mut named = BTreeSet::new();
    let mut out = Vec::new();
    for f in doc.flows.iter().filter(|f| !uses_provenance(f)) {
        let mut found = Vec::new();
        let mut seen = BTreeSet::from([f.source.alias.clone(), f.destination.alias.clone()]);
        paths(
            doc,
            &f.destination.alias,
            &f.source.alias,
            &mut vec![f],
            &mut seen,
            &mut found,
        );
        for cycle in found.into_iter().filter(|c| c.iter().any(|g| uses_provenance(g))) {
            let mut key: Vec<&str> = cycle.iter().map(|g| g.name.as_str()).collect();
            key.sort_unstable();
            if !named.insert(key.join(",")) {
                continue;
            }
            let shown: Vec<String> = cycle
                .iter()
                .map(|g| {
                    format!(
                        "{} ({})",
                        g.name,
                        if uses_provenance(g) { "provenance" } else { "prefix" }
                    )
                })
                .collect();
            out.push(format!(
                "the cycle {} mixes rename = \"prefix\" with other renames: neither MirrorMaker 2's naming rule nor provenance covers the whole cycle, so records would come back to the cluster they were produced on; use rename = \"prefix\" on every flow of the cycle, or on none",
                shown.join(" -> ")
            ));
        }
    }
    out
}

/// When two flows could give the same destination name to different source
/// topics' records: a description of how, else `None`.
fn same_names(a: &Config, b: &Config) -> Option<String> {
    let literal = |f: &Config| -> Option<BTreeSet<String>> {
        f.topics
            .topics
            .iter()
            .map(|r| {
                let t = crate::config::pattern_text(r);
                (!t.chars().any(|c| "\\.+*?()|[]{}^$".contains(c))).then(|| t.to_string())
            })
            .collect()
    };
    let template = |f: &Config| match &f.topics.rename {
        Rename::Identity => Some("{topic}".to_string()),
        Rename::Template(t) if !t.contains("{source}") => Some(t.clone()),
        _ => None,
    };
    let (ta, tb) = (template(a)?, template(b)?);
    if ta != tb {
        return None;
    }
    if let (Some(la), Some(lb)) = (literal(a), literal(b)) {
        let both: Vec<String> = la.intersection(&lb).cloned().collect();
        if both.is_empty() {
            return None;
        }
        return Some(format!("the same names for topics {}", both.join(", ")));
    }
    Some(if ta == "{topic}" {
        "identity names".to_string()
    } else {
        format!("the template {ta:?}")
    })
}

/// One line per flow, for `strait check` and `check-config`.
pub fn describe(doc: &Document) -> Vec<String> {
    doc.flows
        .iter()
        .map(|f| {
            let rename = match &f.topics.rename {
                Rename::Identity => "identity names".to_string(),
                Rename::Prefix => format!("prefixed names ({}.<topic>)", f.source.alias),
                Rename::Template(t) => format!("names {t:?}"),
                Rename::StripPrefix(p) => format!("names without the {p}. prefix"),
            };
            let carried = if !uses_provenance(f) {
                "every record (MirrorMaker 2's rule stops cycles by name)".to_string()
            } else if f.forward_from.is_empty() {
                format!("records produced on {}", f.source.alias)
            } else {
                format!(
                    "records produced on {} and on {}",
                    f.source.alias,
                    f.forward_from.join(", ")
                )
            };
            format!(
                "flow {}: {} -> {}, {rename}, {carried}{}{}",
                f.name,
                f.source.alias,
                f.destination.alias,
                if f.exactly_once.is_some() { ", exactly-once" } else { "" },
                if f.merge { ", merging" } else { "" }
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
