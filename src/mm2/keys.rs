//! What the report says of the keys no conversion used: MM2 and Kafka Connect
//! settings strait has no need for (with why), settings it cannot honour, and
//! keys neither MM2 nor a Kafka client knows.

use super::convert::Conv;
use super::ReportKind;

const CONNECT: &str = "Kafka Connect worker setting: strait runs no Connect worker; it keeps its positions in group strait-<name> on the destination";
const CLIENT: &str = "Kafka client tuning: strait forwards batches raw with its own fetch and produce settings (fetch_max_bytes, max_request_bytes, ...)";

/// MM2 keys strait does not need, by exact key or by a prefix ending in `.`.
const NOT_NEEDED: &[(&str, &str)] = &[
    ("tasks.max", "strait spreads partitions over every `strait run` process of a flow (its replication group): run more processes instead"),
    ("offset.storage.", CONNECT),
    ("config.storage.", CONNECT),
    ("status.storage.", CONNECT),
    ("key.converter", CONNECT),
    ("value.converter", CONNECT),
    ("header.converter", CONNECT),
    ("group.id", CONNECT),
    ("plugin.path", CONNECT),
    ("plugin.discovery", CONNECT),
    ("rest.", CONNECT),
    ("listeners", CONNECT),
    ("task.", CONNECT),
    ("worker.", CONNECT),
    ("offset.flush.", CONNECT),
    ("scheduled.rebalance.max.delay.ms", CONNECT),
    ("connector.client.config.override.policy", CONNECT),
    ("config.action.reload", CONNECT),
    ("name", CONNECT),
    ("connector.class", CONNECT),
    ("source.cluster.alias", "strait names the clusters by their [clusters] tables"),
    ("target.cluster.alias", "strait names the clusters by their [clusters] tables"),
    ("config.providers", "config provider: strait reads secrets with password_env and password_file"),
    ("checkpoints.topic.", "strait translates group offsets exactly from its offset map and commits them on the destination (`groups`): no checkpoints topic"),
    ("emit.checkpoints.", "strait translates group offsets exactly from its offset map and commits them on the destination (`groups`): no checkpoints topic"),
    ("heartbeats.topic.replication.factor", "strait creates its heartbeat topic with replication_factor"),
    ("offset-syncs.", "strait keeps an exact offset map; MM2's offset-syncs topic is not needed"),
    ("emit.offset-syncs.enabled", "strait keeps an exact offset map; MM2's offset-syncs topic is not needed"),
    ("dedicated.mode.", "MM2 dedicated mode's internal REST: strait's processes coordinate through their replication group"),
    ("consumer.poll.timeout.ms", "strait's fetch long-poll is fetch_max_wait_ms (default 200 ms)"),
    ("offset.lag.max", "strait records every batch in its exact offset map: no offset-sync lag to bound"),
    ("sync.topic.configs.interval.seconds", "strait syncs topic configs at every topic refresh (refresh_interval_ms)"),
    ("sync.topic.acls.interval.seconds", "strait syncs ACLs at every topic refresh (refresh_interval_ms)"),
    ("refresh.groups.enabled", "strait lists groups at every group sync (group_sync_interval_ms)"),
    ("refresh.groups.interval.seconds", "strait lists groups at every group sync (group_sync_interval_ms)"),
    ("admin.timeout.ms", "strait's request_timeout_ms of each cluster bounds admin requests"),
    ("replication.policy.internal.topic.separator.enabled", "names MM2's internal topics; strait has none of them"),
    ("metric.reporters", "strait serves Prometheus metrics at metrics_address"),
    ("metrics.", "strait serves Prometheus metrics at metrics_address"),
    ("enabled", "connector switch: strait runs every flow of its file"),
];

/// Kafka client keys that tune MM2's producer and consumer.
const CLIENT_TUNING: &[&str] = &[
    "acks",
    "batch.size",
    "linger.ms",
    "compression.type",
    "compression.",
    "buffer.memory",
    "max.request.size",
    "max.in.flight.requests.per.connection",
    "enable.idempotence",
    "retries",
    "retry.backoff.",
    "delivery.timeout.ms",
    "max.poll.records",
    "max.poll.interval.ms",
    "fetch.min.bytes",
    "fetch.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.max.wait.ms",
    "auto.offset.reset",
    "isolation.level",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "receive.buffer.bytes",
    "send.buffer.bytes",
    "reconnect.backoff.",
    "metadata.max.age.ms",
    "connections.max.idle.ms",
    "client.dns.lookup",
    "default.api.timeout.ms",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "partition.assignment.strategy",
    "interceptor.classes",
    "key.serializer",
    "value.serializer",
    "key.deserializer",
    "value.deserializer",
    "transaction.timeout.ms",
    "socket.connection.setup.timeout.",
];

fn matches(key: &str, pattern: &str) -> bool {
    if pattern.ends_with('.') {
        key.starts_with(pattern)
    } else {
        key == pattern || key.starts_with(&format!("{pattern}."))
    }
}

/// A connector or global key: (kind, why).
fn setting(key: &str, value: &str) -> (ReportKind, String) {
    let v = value.trim();
    match key {
        "topic.filter.class" | "group.filter.class" | "config.property.filter.class" | "forwarding.admin.class" => {
            let default = [
                "DefaultTopicFilter",
                "DefaultGroupFilter",
                "DefaultConfigPropertyFilter",
                "ForwardingAdmin",
            ];
            return if default.iter().any(|d| v.ends_with(d)) {
                (
                    ReportKind::NotNeeded,
                    "MM2's default class; strait's own filters do the same".into(),
                )
            } else {
                (
                    ReportKind::Unsupported,
                    format!("custom class `{v}`: strait cannot run it; express it with topics/groups regexes"),
                )
            };
        }
        "config.properties.exclude" | "config.properties.blacklist" => {
            return (ReportKind::Unsupported, "strait's topic-config filter is fixed (MM2's default list plus tiered storage; docs/configuration.md, What is copied): this list is not honoured".into());
        }
        "heartbeats.replication.enabled" if v.eq_ignore_ascii_case("false") => {
            return (
                ReportKind::Unsupported,
                "strait replicates its heartbeat topic whenever heartbeats = true".into(),
            );
        }
        "heartbeats.replication.enabled" => {
            return (
                ReportKind::NotNeeded,
                "strait replicates its heartbeat topic whenever heartbeats = true".into(),
            );
        }
        _ => {}
    }
    if let Some((_, why)) = NOT_NEEDED.iter().find(|(p, _)| matches(key, p)) {
        return (ReportKind::NotNeeded, (*why).to_string());
    }
    let bare = ["producer.", "consumer.", "admin."]
        .iter()
        .find_map(|p| key.strip_prefix(p))
        .unwrap_or(key);
    if CLIENT_TUNING.iter().any(|p| matches(bare, p)) {
        return (ReportKind::NotNeeded, CLIENT.into());
    }
    if bare.starts_with("ssl.") || bare.starts_with("sasl.") || bare == "security.protocol" {
        return (
            ReportKind::Unsupported,
            "security setting with no strait equivalent".into(),
        );
    }
    if bare.starts_with("producer.override.")
        || bare.starts_with("consumer.override.")
        || bare.starts_with("admin.override.")
    {
        return (ReportKind::NotNeeded, CLIENT.into());
    }
    (
        ReportKind::Unknown,
        "not a MirrorMaker 2, Kafka Connect or Kafka client setting (a typo?)".into(),
    )
}

/// What the report says of prop `i`, which no conversion used.
pub(crate) fn classify(conv: &Conv, i: usize, flows: &[String], clusters: &[String]) -> (ReportKind, String) {
    let key = conv.props[i].key.as_str();
    let value = conv.value(i);
    if let Some((s, rest)) = key.split_once("->") {
        return match conv.split_alias(rest) {
            Some((d, k)) if conv.aliases.iter().any(|a| a == s) => {
                let flow = format!("{s}->{d}");
                if !flows.contains(&flow) {
                    (ReportKind::NotNeeded, format!("flow {flow} is not enabled"))
                } else {
                    setting(k, value)
                }
            }
            _ => (
                ReportKind::Unknown,
                format!(
                    "names no flow between the clusters {}: MM2 ignores it too (a typo?)",
                    conv.aliases.join(", ")
                ),
            ),
        };
    }
    if let Some((a, k)) = conv.split_alias(key) {
        if !clusters.contains(&a) {
            return (ReportKind::NotNeeded, format!("cluster {a} is in no enabled flow"));
        }
        let (kind, why) = setting(k, value);
        if kind == ReportKind::NotNeeded || kind == ReportKind::Unsupported {
            return (kind, why);
        }
        return (
            ReportKind::Unknown,
            format!("not a client or worker setting of cluster {a}; MM2 reads connector settings only globally or per flow (`A->B.`)"),
        );
    }
    setting(key, value)
}
