//! The layering rule, checked: no module imports one that imports it back.
//!
//! Every `crate::<module>` path in a top-level module's files (tests included)
//! is an edge of the module graph; the graph must have no cycle, so each
//! layer can be read, tested and changed with only the layers below it in mind.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules its files name as `crate::<module>`.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(src).expect("src/ is readable") {
        let path = entry.expect("directory entry").path();
        let name = match path.file_stem().and_then(|s| s.to_str()) {
            Some(n) if path.is_dir() || path.extension().is_some_and(|e| e == "rs") => n.to_string(),
            _ => continue,
        };
        if matches!(name.as_str(), "lib" | "main" | "cli") {
            continue;
        }
        let mut deps = BTreeSet::new();
        let mut files = vec![path];
        while let Some(p) = files.pop() {
            if p.is_dir() {
                files.extend(
                    std::fs::read_dir(&p)
                        .expect("readable")
                        .map(|e| e.expect("entry").path()),
                );
                continue;
            }
            if p.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).expect("readable source");
            for (i, _) in text.match_indices("crate::") {
                let rest = &text[i + 7..];
                let m: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !m.is_empty() && m != name {
                    deps.insert(m);
                }
            }
        }
        graph.insert(name, deps);
    }
    graph
}

/// A cycle through `start`, if any (as the list of modules on it).
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(graph, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    assert!(
        graph.contains_key("replicate") && graph.contains_key("client"),
        "{graph:?}"
    );
    for m in graph.keys() {
        if let Some(cycle) = cycle_from(&graph, m) {
            panic!("module cycle: {} -> {m}\nwhole graph: {graph:#?}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_checker_finds_a_cycle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.insert("a".into(), ["b".to_string()].into());
    g.insert("b".into(), ["c".to_string()].into());
    g.insert("c".into(), ["a".to_string()].into());
    g.insert("d".into(), ["a".to_string()].into());
    assert_eq!(cycle_from(&g, "a"), Some(vec!["a".into(), "b".into(), "c".into()]));
    assert_eq!(cycle_from(&g, "d"), None);
}
