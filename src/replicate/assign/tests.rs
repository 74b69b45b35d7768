use super::*;

fn parts(topics: &[(&str, i32)]) -> BTreeSet<Tp> {
    topics
        .iter()
        .flat_map(|(t, n)| (0..*n).map(move |p| (t.to_string(), p)))
        .collect()
}

fn settings() -> BTreeMap<String, String> {
    BTreeMap::from([("rename".to_string(), "identity".to_string())])
}

fn member(id: &str, owned: &BTreeSet<Tp>) -> Candidate {
    let mut o: BTreeMap<String, Vec<(i32, u64)>> = BTreeMap::new();
    for (t, p) in owned {
        o.entry(t.clone()).or_default().push((*p, 0));
    }
    Candidate {
        member_id: format!("m-{id}"),
        meta: Some(MemberMeta {
            instance: id.to_string(),
            settings: settings(),
            owned: o,
        }),
    }
}

/// Runs generations until no partition is pending: each member then owns its
/// assignment (the cooperative protocol's second round). Returns the final
/// ownership and how many generations it took.
fn converge(all: &BTreeSet<Tp>, owned: &mut BTreeMap<String, BTreeSet<Tp>>) -> usize {
    for round in 1..=5 {
        let members: Vec<Candidate> = owned.iter().map(|(id, o)| member(id, o)).collect();
        let out = assign(all, &members, &settings());
        let mut pending = 0;
        for (id, o) in owned.iter_mut() {
            let a = &out[&format!("m-{id}")];
            pending += a.pending;
            *o = a.set();
        }
        if pending == 0 {
            return round;
        }
    }
    panic!("did not converge in 5 generations");
}

fn assert_exact_cover(all: &BTreeSet<Tp>, owned: &BTreeMap<String, BTreeSet<Tp>>) {
    let mut seen = BTreeSet::new();
    for o in owned.values() {
        for tp in o {
            assert!(seen.insert(tp.clone()), "{tp:?} assigned twice");
        }
    }
    assert_eq!(&seen, all, "every partition assigned once");
}

#[test]
fn three_members_share_24_partitions_evenly_and_deterministically() {
    let all = parts(&[("orders", 16), ("payments", 8)]);
    let mut owned: BTreeMap<String, BTreeSet<Tp>> = ["a", "b", "c"]
        .iter()
        .map(|m| (m.to_string(), BTreeSet::new()))
        .collect();
    assert_eq!(converge(&all, &mut owned), 1, "nobody owned anything: one generation");
    assert_exact_cover(&all, &owned);
    assert!(owned.values().all(|o| o.len() == 8), "{owned:?}");
    // Same inputs in another order: the same answer.
    let mut members: Vec<Candidate> = owned.keys().map(|id| member(id, &BTreeSet::new())).collect();
    let first = assign(&all, &members, &settings());
    members.reverse();
    assert_eq!(assign(&all, &members, &settings()), first);
}

#[test]
fn a_fourth_member_takes_only_its_share_from_the_others() {
    let all = parts(&[("t", 24)]);
    let mut owned: BTreeMap<String, BTreeSet<Tp>> = ["a", "b", "c"]
        .iter()
        .map(|m| (m.to_string(), BTreeSet::new()))
        .collect();
    converge(&all, &mut owned);
    let before = owned.clone();
    owned.insert("d".to_string(), BTreeSet::new());
    let rounds = converge(&all, &mut owned);
    assert_eq!(rounds, 2, "cooperative: revoke, then assign");
    assert_exact_cover(&all, &owned);
    assert!(owned.values().all(|o| o.len() == 6), "{owned:?}");
    let moved: usize = before.iter().map(|(m, o)| o.difference(&owned[m]).count()).sum();
    assert_eq!(moved, 6, "only the newcomer's share moves");
}

#[test]
fn a_leaving_member_s_partitions_go_to_the_others_and_nothing_else_moves() {
    let all = parts(&[("t", 24)]);
    let mut owned: BTreeMap<String, BTreeSet<Tp>> = ["a", "b", "c"]
        .iter()
        .map(|m| (m.to_string(), BTreeSet::new()))
        .collect();
    converge(&all, &mut owned);
    let before = owned.clone();
    owned.remove("b");
    assert_eq!(
        converge(&all, &mut owned),
        1,
        "nobody else owned b's partitions: one generation"
    );
    assert_exact_cover(&all, &owned);
    for m in ["a", "c"] {
        assert!(before[m].is_subset(&owned[m]), "{m} kept what it had");
        assert_eq!(owned[m].len(), 12);
    }
}

#[test]
fn partitions_that_move_go_busiest_first_to_the_least_loaded_member() {
    let all = parts(&[("t", 4)]);
    let mut hot = member("a", &parts(&[("t", 4)]));
    // a owns everything and reports rates; b joins.
    hot.meta
        .as_mut()
        .unwrap()
        .owned
        .insert("t".into(), vec![(0, 1000), (1, 10), (2, 900), (3, 20)]);
    let b = member("b", &BTreeSet::new());
    let out = assign(&all, &[hot.clone(), b.clone()], &settings());
    // a keeps 2 (sticky: the lowest partitions) and gives 2 up; b gets them next round.
    assert_eq!(out["m-a"].set().len(), 2);
    assert_eq!(out["m-b"].pending, 2);
    assert!(
        out["m-b"].set().is_empty(),
        "nothing a still runs is handed over at once"
    );
}

#[test]
fn a_member_with_other_settings_is_refused_naming_the_difference() {
    let all = parts(&[("t", 6)]);
    let a = member("a", &BTreeSet::new());
    let b = member("b", &BTreeSet::new());
    let mut odd = member("c", &BTreeSet::new());
    odd.meta
        .as_mut()
        .unwrap()
        .settings
        .insert("rename".into(), "prefix".into());
    let out = assign(&all, &[a, b, odd], &settings());
    let err = out["m-c"].error.as_deref().expect("refused");
    assert!(err.contains("rename = prefix here, identity in the group"), "{err}");
    assert!(out["m-c"].set().is_empty());
    assert_eq!(out["m-a"].set().len() + out["m-b"].set().len(), 6);
    // An unreadable member is refused too.
    let garbled = Candidate {
        member_id: "m-x".into(),
        meta: MemberMeta::decode(b"not json"),
    };
    let out = assign(&all, &[member("a", &BTreeSet::new()), garbled], &settings());
    assert!(out["m-x"].error.is_some());
    assert_eq!(out["m-a"].set().len(), 6);
}

#[test]
fn metadata_and_assignments_round_trip() {
    let m = member("a", &parts(&[("t", 2)])).meta.unwrap();
    assert_eq!(MemberMeta::decode(&m.encode()), Some(m));
    let a = Assignment {
        partitions: BTreeMap::from([("t".to_string(), vec![0, 3])]),
        error: None,
        pending: 1,
        members: 2,
    };
    assert_eq!(Assignment::decode(&a.encode()).unwrap(), a);
    assert_eq!(Assignment::decode(b"").unwrap(), Assignment::default());
    assert!(Assignment::decode(b"{").is_err());
}
