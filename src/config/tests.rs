use super::*;

const GOOD: &str = r#"
name = "dr"
topics = ["orders\\..*", "payments"]
topics_exclude = ["orders\\.tmp"]
rename = "prefix"
start_from = "latest"

[source]
alias = "east"
bootstrap_servers = "127.0.0.1:9092"

[destination]
bootstrap_servers = "127.0.0.1:9093,127.0.0.1:9094"
"#;

#[test]
fn parses_and_applies_defaults() {
    let c = Config::parse(GOOD, "t.toml").unwrap();
    assert_eq!(c.name, "dr");
    assert!(c.wants_topic("orders.eu", false));
    assert!(c.wants_topic("payments", false));
    assert!(!c.wants_topic("payments2", false), "regexes match whole names");
    assert!(!c.wants_topic("orders.tmp", false));
    assert!(!c.wants_topic("__consumer_offsets", true));
    assert!(!c.wants_topic("__strait.dr.offsets", false));
    assert_eq!(c.destination_topic("orders.eu"), "east.orders.eu");
    assert_eq!(c.fetch.start_from, StartFrom::Latest);
    assert_eq!(c.ops.max_buffered_bytes, 16 * 1024 * 1024);
    assert_eq!(c.fetch.max_decompressed_batch_bytes, 256 * 1024 * 1024);
    assert_eq!(c.topics.refresh_interval, Duration::from_secs(10));
    assert_eq!(c.checkpoint_group(), "strait-dr");
}

#[test]
fn unknown_key_names_key_and_line() {
    let text = GOOD.replace("start_from = \"latest\"", "start_form = \"latest\"");
    let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
    assert!(
        e.contains("start_form") && e.contains("line 6") && e.contains("start_from"),
        "{e}"
    );
}

#[test]
fn socket_buffer_keys_default_to_autotuning_and_are_checked() {
    let c = Config::parse(GOOD, "t.toml").unwrap();
    assert_eq!(
        c.source.client_config().socket_buffers,
        crate::client::SocketBuffers::default()
    );
    let text = GOOD.replace(
        "bootstrap_servers = \"127.0.0.1:9092\"",
        "bootstrap_servers = \"127.0.0.1:9092\"\nsocket_receive_buffer_bytes = 33554432\nsocket_send_buffer_bytes = 2147483647",
    );
    let c = Config::parse(&text, "t.toml").unwrap();
    let cc = c.source.client_config();
    assert_eq!(
        (cc.socket_buffers.receive, cc.socket_buffers.send),
        (Some(33554432), Some(i32::MAX as u32))
    );
    assert_eq!(cc.cluster, "east");
    assert_eq!(
        c.destination.client_config().socket_buffers,
        crate::client::SocketBuffers::default()
    );
    for (bad, key) in [
        ("socket_receive_buffer_bytes = 0", "source.socket_receive_buffer_bytes"),
        ("socket_send_buffer_bytes = -4096", "source.socket_send_buffer_bytes"),
        (
            "socket_send_buffer_bytes = 2147483648",
            "source.socket_send_buffer_bytes",
        ),
    ] {
        let text = GOOD.replace(
            "bootstrap_servers = \"127.0.0.1:9092\"",
            &format!("bootstrap_servers = \"127.0.0.1:9092\"\n{bad}"),
        );
        let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(
            e.contains(key) && e.contains("line 11") && e.contains("allowed: 1 to 2147483647"),
            "{bad}: {e}"
        );
    }
    let e = Config::parse(
        &GOOD.replace("[destination]", "[destination]\nsocket_recv_buffer = 1"),
        "t.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("socket_recv_buffer") && e.contains("socket_receive_buffer_bytes"),
        "{e}"
    );
}

#[test]
fn bad_values_say_what_is_allowed() {
    let e = Config::parse(&GOOD.replace("\"latest\"", "\"middle\""), "t.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("middle") && e.contains("earliest") && e.contains("line 6"),
        "{e}"
    );
    let e = Config::parse(&GOOD.replace("\"prefix\"", "\"upper\""), "t.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("line 5") && e.contains("rename") && e.contains("identity"),
        "{e}"
    );
    let e = Config::parse(&GOOD.replace("\"payments\"", "\"pay(\""), "t.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 3") && e.contains("invalid regex"), "{e}");
    let e = Config::parse(&GOOD.replace("127.0.0.1:9092", "nohostport"), "t.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 10") && e.contains("source.bootstrap_servers"), "{e}");
    let e = Config::parse(
        &GOOD.replace("start_from = \"latest\"", "max_in_flight_per_partition = 9"),
        "t.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("line 6") && e.contains("1 to 5"), "{e}");
    let e = Config::parse(
        &GOOD.replace("start_from = \"latest\"", "max_decompressed_batch_bytes = 1000"),
        "t.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("line 6") && e.contains("max_decompressed_batch_bytes") && e.contains("1048576"),
        "{e}"
    );
    let e = Config::parse(&GOOD.replace("[destination]\n", ""), "t.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("bootstrap_servers"), "{e}");
}

#[test]
fn shipped_example_is_valid() {
    let c = Config::parse(EXAMPLE, "strait.example.toml").unwrap();
    assert_eq!(c.name, "dr-east");
    assert!(c.wants_topic("orders.eu", false) && !c.wants_topic("orders.tmp.x", false));
    assert_eq!(c.source.alias, "east");
}

#[test]
fn top_level_key_below_a_table_says_to_move_it() {
    for key in ENGINE_KEYS.iter().chain(TOP_LEVEL_KEYS) {
        let value = match *key {
            "topics" | "topics_exclude" | "groups" | "groups_exclude" => "[\"x\"]",
            "name" | "rename" | "start_from" | "metrics_address" => "\"x\"",
            "sync_topic_configs" | "sync_acls" | "exactly_once" | "heartbeats" => "true",
            "heartbeats_topic" => "\"x\"",
            _ => "1",
        };
        let text = format!("{GOOD}{key} = {value}\n");
        let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(
            e.contains(&format!(
                "`{key}` is a top-level key: move it above the cluster tables ([source], [destination]"
            )),
            "{e}"
        );
        // The same key at the top level is known (whatever its value's verdict).
        let top = format!("{key} = {value}\n{GOOD}");
        if let Err(e) = Config::parse(&top, "t.toml") {
            assert!(!e.to_string().contains("unknown field"), "{key}: {e}");
        }
    }
}

#[test]
fn one_cluster_needs_a_rename_whose_copies_are_not_selected() {
    let same = GOOD.replace("127.0.0.1:9093,127.0.0.1:9094", "127.0.0.1:9092");
    let c = Config::parse(&same, "t").unwrap();
    assert!(c.same_bootstrap());
    assert!(!Config::parse(GOOD, "t").unwrap().same_bootstrap());
    // prefix: "orders.eu" -> "east.orders.eu", which `orders\..*` does not match.
    assert_eq!(c.self_copy_problem(["orders.eu", "payments"]), None);
    let all = same.replace(r#"topics = ["orders\\..*", "payments"]"#, r#"topics = [".*"]"#);
    let c = Config::parse(&all, "t").unwrap();
    let p = c.self_copy_problem(["orders"]).unwrap();
    assert!(p.contains("orders -> east.orders") && p.contains("same cluster"), "{p}");
    let identity = same.replace(r#"rename = "prefix""#, r#"rename = "identity""#);
    let p = Config::parse(&identity, "t").unwrap().self_copy_problem([]).unwrap();
    assert!(p.contains("identity"), "{p}");
}

#[test]
fn heartbeats_default_on_and_are_replicated_whatever_the_topic_selection() {
    let c = Config::parse(GOOD, "t.toml").unwrap();
    assert_eq!(
        c.heartbeats,
        Some(HeartbeatSettings {
            topic: "heartbeats".into(),
            interval: Duration::from_secs(1),
        })
    );
    assert!(c.wants_topic("heartbeats", false), "not in `topics`, wanted still");
    assert_eq!(c.destination_topic("heartbeats"), "east.heartbeats");
    let text = GOOD
        .replace(
            "start_from = \"latest\"",
            "heartbeats_topic = \"hb\"\nheartbeats_interval_ms = 5000",
        )
        .replace(r#"topics_exclude = ["orders\\.tmp"]"#, r#"topics_exclude = ["hb"]"#);
    let c = Config::parse(&text, "t.toml").unwrap();
    assert_eq!(
        c.heartbeats.as_ref().map(|h| (h.topic.as_str(), h.interval)),
        Some(("hb", Duration::from_secs(5)))
    );
    assert!(c.wants_topic("hb", false) && !c.wants_topic("heartbeats", false));
    let off = Config::parse(&GOOD.replace("start_from = \"latest\"", "heartbeats = false"), "t.toml").unwrap();
    assert_eq!(off.heartbeats, None);
    assert!(!off.wants_topic("heartbeats", false));
    // A failback copies the listed topics only.
    let back = c.reversed(&["payments".to_string()]).unwrap();
    assert!(back.heartbeats.is_none() && !back.wants_topic("hb", false));
}

#[test]
fn bad_heartbeat_keys_are_named() {
    for (bad, key, allowed) in [
        ("heartbeats_interval_ms = 0", "heartbeats_interval_ms", "100 to 3600000"),
        (
            "heartbeats_interval_ms = 4000000",
            "heartbeats_interval_ms",
            "100 to 3600000",
        ),
        ("heartbeats_topic = \"__hb\"", "heartbeats_topic", "not starting with"),
        ("heartbeats_topic = \"a b\"", "heartbeats_topic", "letters, digits"),
    ] {
        let e = Config::parse(&GOOD.replace("start_from = \"latest\"", bad), "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("`{key}`")) && e.contains("line 6") && e.contains(allowed),
            "{bad}: {e}"
        );
    }
    // Checked even when heartbeats are off (a typo stays a typo).
    let e = Config::parse(
        &GOOD.replace(
            "start_from = \"latest\"",
            "heartbeats = false\nheartbeats_interval_ms = 1",
        ),
        "t.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("heartbeats_interval_ms"), "{e}");
}

#[test]
fn template_rename() {
    let c = Config::parse(&GOOD.replace("\"prefix\"", "\"mirror-{source}-{topic}\""), "t").unwrap();
    assert_eq!(c.destination_topic("a"), "mirror-east-a");
}

#[test]
fn start_from_mm2_reads_mm2_positions_with_a_fallback() {
    let c = Config::parse(&GOOD.replace("start_from = \"latest\"", "start_from = \"mm2\""), "t").unwrap();
    assert_eq!(c.fetch.start_from, StartFrom::Earliest, "partitions MM2 never copied");
    let m = c.fetch.mm2.expect("takeover");
    assert_eq!(m.offsets_topic, "mm2-offsets.east.internal", "dedicated mode's topic");
    assert_eq!(m.connector, "MirrorSourceConnector");
    let c = Config::parse(
        &GOOD.replace(
            "start_from = \"latest\"",
            "start_from = \"mm2\"\nmm2_fallback = \"latest\"\nmm2_offsets_topic = \"connect-offsets\"\nmm2_connector = \"east-source\"",
        ),
        "t",
    )
    .unwrap();
    assert_eq!(c.fetch.start_from, StartFrom::Latest);
    let m = c.fetch.mm2.unwrap();
    assert_eq!(
        (m.offsets_topic.as_str(), m.connector.as_str()),
        ("connect-offsets", "east-source")
    );
    for (bad, key, says) in [
        ("start_from = \"mm3\"", "start_from", "\"mm2\""),
        (
            "start_from = \"mm2\"\nmm2_fallback = \"never\"",
            "mm2_fallback",
            "\"latest\"",
        ),
        (
            "mm2_offsets_topic = \"x\"",
            "mm2_offsets_topic",
            "only with start_from = \"mm2\"",
        ),
    ] {
        let e = Config::parse(&GOOD.replace("start_from = \"latest\"", bad), "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("`{key}`")) && e.contains(says), "{bad}: {e}");
    }
}
