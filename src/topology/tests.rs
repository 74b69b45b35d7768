use super::*;
use crate::config::Document;

/// A config of clusters `names` and flows (source, destination, extra keys).
fn doc(names: &[&str], flows: &[(&str, &str, &str)]) -> Document {
    let mut text = String::new();
    for (i, n) in names.iter().enumerate() {
        text += &format!("[clusters.\"{n}\"]\nbootstrap_servers = \"127.0.0.1:{}\"\n", 9092 + i);
    }
    for (s, d, extra) in flows {
        text += &format!("[[flows]]\nsource = \"{s}\"\ndestination = \"{d}\"\n{extra}\n");
    }
    Document::parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn a_two_way_pair_and_a_full_mesh_with_identity_names_are_sound() {
    let pair = doc(&["east", "west"], &[("east", "west", ""), ("west", "east", "")]);
    assert!(problems(&pair).is_empty(), "{:?}", problems(&pair));
    let r = routes_from(&pair, "east");
    assert_eq!(r["west"], vec![vec!["east-to-west".to_string()]]);
    assert!(!r.contains_key("east"), "records never return to their origin");
    let names = ["a", "b", "c"];
    let mut flows = Vec::new();
    for s in names {
        for d in names {
            if s != d {
                flows.push((s, d, ""));
            }
        }
    }
    let mesh = doc(&names, &flows);
    assert!(problems(&mesh).is_empty(), "{:?}", problems(&mesh));
    for o in names {
        let r = routes_from(&mesh, o);
        assert_eq!(r.len(), 2, "every other cluster, once each: {r:?}");
        assert!(r.values().all(|routes| routes.len() == 1));
    }
}

#[test]
fn hub_and_spoke_forwards_explicitly_and_a_second_route_is_refused() {
    let hub = doc(
        &["east", "hub", "west"],
        &[
            ("east", "hub", ""),
            ("hub", "east", "forward_from = [\"west\"]"),
            ("west", "hub", ""),
            ("hub", "west", "forward_from = [\"east\"]"),
        ],
    );
    assert!(problems(&hub).is_empty(), "{:?}", problems(&hub));
    assert_eq!(
        routes_from(&hub, "east")["west"],
        vec![vec!["east-to-hub".to_string(), "hub-to-west".to_string()]]
    );
    // A direct east -> west flow as well: east's records would reach west twice.
    let twice = doc(
        &["east", "hub", "west"],
        &[
            ("east", "hub", ""),
            ("hub", "west", "forward_from = [\"east\"]"),
            ("east", "west", ""),
        ],
    );
    let p = problems(&twice);
    let route = p
        .iter()
        .find(|x| x.contains("produced on cluster east would reach cluster west over 2 routes"))
        .unwrap_or_else(|| panic!("{p:?}"));
    assert!(
        route.contains("[east-to-hub -> hub-to-west]") && route.contains("[east-to-west]"),
        "{route}"
    );
}

#[test]
fn aggregation_needs_merge_for_identity_names_but_not_for_prefixes() {
    let same = doc(
        &["eu", "us", "central"],
        &[("eu", "central", ""), ("us", "central", "")],
    );
    let p = problems(&same);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].contains("eu-to-central and us-to-central") && p[0].contains("merge = true"),
        "{}",
        p[0]
    );
    let merged = doc(
        &["eu", "us", "central"],
        &[("eu", "central", "merge = true"), ("us", "central", "merge = true")],
    );
    assert!(problems(&merged).is_empty());
    let prefixed = doc(
        &["eu", "us", "central"],
        &[
            ("eu", "central", "rename = \"prefix\""),
            ("us", "central", "rename = \"prefix\""),
        ],
    );
    assert!(problems(&prefixed).is_empty());
    // Disjoint literal topic lists cannot collide.
    let disjoint = doc(
        &["eu", "us", "central"],
        &[
            ("eu", "central", "topics = [\"orders\"]"),
            ("us", "central", "topics = [\"payments\"]"),
        ],
    );
    assert!(problems(&disjoint).is_empty());
}

#[test]
fn prefix_renames_follow_mirrormaker_2s_cycle_rule() {
    let d = doc(
        &["east", "west", "north"],
        &[
            ("east", "west", "rename = \"prefix\""),
            ("west", "east", "rename = \"prefix\""),
        ],
    );
    let ew = &d.flows[0].topics;
    assert!(ew.wants("orders", false));
    assert!(!ew.wants("west.orders", false), "came from west: never back");
    assert!(!ew.wants("north.west.orders", false), "west is in its chain");
    assert!(ew.wants("north.orders", false), "a chain from north goes on");
    assert_eq!(ew.destination("north.orders"), "east.north.orders");
    let lines = describe(&d);
    assert!(
        lines[0].contains("prefixed names (east.<topic>)") && lines[0].contains("MirrorMaker 2"),
        "{lines:?}"
    );
}

#[test]
fn forward_from_mistakes_are_config_errors() {
    let base = "[clusters.a]\nbootstrap_servers = \"h:1\"\n[clusters.b]\nbootstrap_servers = \"h:2\"\n[clusters.c]\nbootstrap_servers = \"h:3\"\n";
    let err = |flow: &str| {
        Document::parse(&format!("{base}[[flows]]\n{flow}"), "t.toml")
            .unwrap_err()
            .to_string()
    };
    let e = err("source = \"a\"\ndestination = \"b\"\nforward_from = [\"z\"]\n");
    assert!(
        e.contains("forward_from") && e.contains("\"z\"") && e.contains("line 10"),
        "{e}"
    );
    let e = err("source = \"a\"\ndestination = \"b\"\nforward_from = [\"b\"]\n");
    assert!(e.contains("the flow's own destination"), "{e}");
    let e = err("source = \"a\"\ndestination = \"b\"\nforward_from = [\"c\"]\nexactly_once = true\n");
    assert!(e.contains("one transaction has one producer id"), "{e}");
    let e = err("source = \"a\"\ndestination = \"x\"\n");
    assert!(
        e.contains("`destination`") && e.contains("\"x\"") && e.contains("defined: a, b, c"),
        "{e}"
    );
}

#[test]
fn every_shipped_example_is_valid_and_sound() {
    for (name, text) in crate::config::EXAMPLES {
        let doc = Document::parse(text, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(problems(&doc).is_empty(), "{name}: {:?}", problems(&doc));
    }
    let aa = Document::parse(crate::config::example("active-active").unwrap(), "aa").unwrap();
    assert_eq!(aa.flows.len(), 2);
    assert_eq!(
        aa.flows[1].groups.groups.len(),
        1,
        "top-level keys are every flow's defaults"
    );
    let agg = Document::parse(crate::config::example("aggregation").unwrap(), "agg").unwrap();
    assert_eq!(agg.flows.len(), 3);
    assert_eq!(
        agg.flows[2].fetch.max_wait,
        std::time::Duration::from_millis(500),
        "a flow's override"
    );
    assert_eq!(agg.flows[0].fetch.max_wait, std::time::Duration::from_millis(200));
    assert_eq!(agg.flows[0].name, "eu-to-central");
    assert_eq!(agg.flows[0].destination_topic("orders"), "eu.orders");
}

#[test]
fn a_cycle_mixing_prefix_and_provenance_is_refused_naming_it() {
    let pair = doc(
        &["east", "west"],
        &[("east", "west", "rename = \"prefix\""), ("west", "east", "")],
    );
    let p = problems(&pair);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].contains("east-to-west (prefix) -> west-to-east (provenance)"),
        "{p:?}"
    );
    // A longer cycle through a third cluster, named once.
    let ring = doc(
        &["a", "b", "c"],
        &[("a", "b", "rename = \"prefix\""), ("b", "c", ""), ("c", "a", "")],
    );
    let p = problems(&ring);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].contains("a-to-b (prefix) -> b-to-c (provenance) -> c-to-a (provenance)"),
        "{p:?}"
    );
    // All prefix, or none: sound.
    let prefixes = doc(
        &["east", "west"],
        &[
            ("east", "west", "rename = \"prefix\""),
            ("west", "east", "rename = \"prefix\""),
        ],
    );
    assert!(problems(&prefixes).is_empty(), "{:?}", problems(&prefixes));
    // One-way chains mix freely: no cycle.
    let chain = doc(&["a", "b", "c"], &[("a", "b", "rename = \"prefix\""), ("b", "c", "")]);
    assert!(problems(&chain).is_empty(), "{:?}", problems(&chain));
}

#[test]
fn a_dotted_alias_with_prefix_renames_is_refused() {
    let d = doc(&["us.east", "west"], &[("us.east", "west", "rename = \"prefix\"")]);
    let p = problems(&d);
    assert!(p.len() == 1 && p[0].contains("\"us.east\" contains '.'"), "{p:?}");
    let ok = doc(&["us.east", "west"], &[("us.east", "west", "")]);
    assert!(problems(&ok).is_empty());
}

#[test]
fn parallel_direct_flows_are_judged_by_their_destination_names() {
    let split = doc(
        &["a", "b"],
        &[
            (
                "a",
                "b",
                "name = \"orders\"\ntopics = [\"orders\"]\nexactly_once = true",
            ),
            ("a", "b", "name = \"rest\"\ntopics = [\"payments\"]"),
        ],
    );
    assert!(problems(&split).is_empty(), "{:?}", problems(&split));
    let two_names = doc(
        &["a", "b"],
        &[
            (
                "a",
                "b",
                "name = \"one\"\ntopics = [\"orders\"]\nrename = \"one.{topic}\"",
            ),
            (
                "a",
                "b",
                "name = \"two\"\ntopics = [\"orders\"]\nrename = \"two.{topic}\"",
            ),
        ],
    );
    assert!(problems(&two_names).is_empty(), "{:?}", problems(&two_names));
    let same = doc(
        &["a", "b"],
        &[
            ("a", "b", "name = \"one\"\ntopics = [\"orders\"]"),
            ("a", "b", "name = \"two\"\ntopics = [\"orders\"]"),
        ],
    );
    let p = problems(&same);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("flows one and two both write into cluster b"), "{}", p[0]);
}
