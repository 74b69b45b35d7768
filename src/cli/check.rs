//! `strait check --config`: will a run work? Connects to both clusters and
//! reports broker versions, the topics that match, and missing permissions
//! (from the authorized-operations bitfields of Metadata and DescribeCluster,
//! KIP-430). Every problem found is listed; none is fatal to the check itself.

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{DescribeClusterRequest, FetchRequest, MetadataRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use strait::client::sockbuf::{self, Direction};
use strait::client::{code, Client, ClientError, SocketBuffers};
use strait::config::Config;

/// ACL operation bits (`AclOperation` codes).
const READ: i32 = 3;
const WRITE: i32 = 4;
const CREATE: i32 = 5;
const DESCRIBE: i32 = 8;
const DESCRIBE_CONFIGS: i32 = 10;
const ALTER_CONFIGS: i32 = 11;
/// The broker did not compute the operations (old broker or not requested).
const UNKNOWN_OPS: i32 = i32::MIN;

/// What `check` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Informational lines, in order.
    pub lines: Vec<String>,
    /// Problems that would make a run fail.
    pub problems: Vec<String>,
    /// Things that would not fail a run but are probably not what was meant.
    pub warnings: Vec<String>,
}

fn missing(ops: i32, needed: &[(i32, &'static str)]) -> Vec<&'static str> {
    if ops == UNKNOWN_OPS {
        return Vec::new();
    }
    needed
        .iter()
        .filter(|(bit, _)| ops & (1 << bit) == 0)
        .map(|(_, name)| *name)
        .collect()
}

/// Heartbeats need DESCRIBE, CREATE (unless the topic exists) and WRITE on
/// the source's heartbeat topic. A refusal turns them off, not the run: warnings.
/// A heartbeat topic still to be created is added to `mapped` (its destination twin is checked too).
fn heartbeat_lines(
    cfg: &Config,
    hb: &strait::config::HeartbeatSettings,
    topics: &[kafka_protocol::messages::metadata_response::MetadataResponseTopic],
    source_cluster_ops: i32,
    mapped: &mut Vec<(String, String)>,
    report: &mut CheckReport,
) {
    let every = format!("one record every {} ms", hb.interval.as_millis());
    let found = topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == hb.topic));
    match found {
        Some(t) if t.error_code == code::NONE => {
            let lacking = missing(t.topic_authorized_operations, &[(WRITE, "WRITE")]);
            if lacking.is_empty() {
                report
                    .lines
                    .push(format!("heartbeats: source topic {} exists; {every}", hb.topic));
            } else {
                report.warnings.push(format!(
                    "heartbeats: the source denies WRITE on topic {}: heartbeats would be off (replication goes on); grant WRITE, or set heartbeats = false",
                    hb.topic
                ));
            }
        }
        _ => {
            if missing(source_cluster_ops, &[(CREATE, "CREATE")]).is_empty() {
                report.lines.push(format!(
                    "heartbeats: source topic {} will be created (1 partition, retention.ms {}); {every} (needs CREATE and WRITE on it)",
                    hb.topic,
                    strait::replicate::heartbeat::RETENTION_MS
                ));
            } else {
                report.warnings.push(format!(
                    "heartbeats: source topic {} is missing and the source cluster denies CREATE: heartbeats would be off (replication goes on); create it (1 partition) and grant WRITE on it, or set heartbeats = false",
                    hb.topic
                ));
            }
            if !mapped.iter().any(|(s, _)| *s == hb.topic) {
                mapped.push((hb.topic.clone(), cfg.destination_topic(&hb.topic)));
            }
        }
    }
}

/// The cluster-level authorized operations of this client's principal.
async fn cluster_ops(client: &Client) -> i32 {
    match client.any_broker().await {
        Ok(conn) => conn
            .request(&DescribeClusterRequest::default().with_include_cluster_authorized_operations(true))
            .await
            .map(|r| r.cluster_authorized_operations)
            .unwrap_or(UNKNOWN_OPS),
        Err(_) => UNKNOWN_OPS,
    }
}

/// What one round trip means for throughput: the bytes in flight `rate`
/// (bytes/s) needs at `rtt`, against the memory budget and what one
/// connection's socket buffer may hold (the source side receives over its
/// fetch lanes, the destination side sends over one connection per broker):
/// the configured `socket_*_buffer_bytes`, else the kernel's autotuning ceiling.
fn in_flight_lines(
    side: &str,
    rtt: std::time::Duration,
    rate_mb: u64,
    budget: usize,
    buffers: SocketBuffers,
    report: &mut CheckReport,
) {
    let secs = rtt.as_secs_f64();
    let need = (rate_mb as f64 * 1e6 * secs) as u64;
    report.lines.push(format!(
        "  {side} round trip {:.1} ms: {rate_mb} MB/s needs {:.1} MB in flight (bandwidth x round trip); max_buffered_bytes ({:.1} MB) allows {:.0} MB/s",
        secs * 1e3,
        need as f64 / 1e6,
        budget as f64 / 1e6,
        if secs > 0.0 { budget as f64 / secs / 1e6 } else { f64::INFINITY }
    ));
    let (dir, configured, connections) = if side == "source" {
        (
            Direction::Receive,
            buffers.receive,
            strait::replicate::fetcher::lanes_for(rtt),
        )
    } else {
        (Direction::Send, buffers.send, 1)
    };
    let per_connection = need / connections as u64;
    if let Some(s) = sockbuf::shortfall(
        dir,
        per_connection,
        configured,
        sockbuf::tcp_mem(dir),
        sockbuf::core_max(dir),
    ) {
        let limit = match configured {
            Some(_) => format!("{} as granted ({} bytes)", dir.key(), s.ceiling),
            None => format!(
                "the kernel's TCP autotuning ceiling {} (max {} bytes, about half of it for data)",
                dir.tcp_sysctl(),
                s.ceiling
            ),
        };
        report.warnings.push(format!(
            "{side}: {limit} is below the {} bytes each of {connections} connection(s) per broker holds in flight for {rate_mb} MB/s at {:.1} ms; {}",
            s.needed,
            secs * 1e3,
            s.advice
        ));
    }
}

/// Configured socket buffers the kernel would clamp (`rmem_max` / `wmem_max`).
fn clamped_overrides(label: &str, buffers: SocketBuffers, report: &mut CheckReport) {
    for (dir, size) in [(Direction::Receive, buffers.receive), (Direction::Send, buffers.send)] {
        if let Some(m) = size.and_then(|v| sockbuf::clamped_override(dir, v, sockbuf::core_max(dir))) {
            report.warnings.push(format!("{label}: {m}"));
        }
    }
}

async fn versions(
    side: &str,
    client: &Client,
    report: &mut CheckReport,
    rate_mb: u64,
    budget: usize,
) -> Result<(), ClientError> {
    let md = client.refresh_metadata(Some(&[])).await?;
    report.lines.push(format!(
        "{side} cluster {}: {} broker(s)",
        md.cluster_id.as_deref().unwrap_or("?"),
        md.brokers.len()
    ));
    let mut ids: Vec<i32> = md.brokers.keys().copied().collect();
    ids.sort();
    for id in ids {
        match client.broker(id).await {
            Ok(conn) => {
                let produce = conn.version_of::<ProduceRequest>();
                let fetch = conn.version_of::<FetchRequest>();
                // The source must serve Fetch, the destination Produce.
                let needed = if side == "source" { &fetch } else { &produce };
                if let Err(e) = needed {
                    report.problems.push(format!("{side} broker {id}: {e}"));
                }
                let show = |r: &Result<i16, ClientError>| match r {
                    Ok(v) => format!("v{v}"),
                    Err(e) => e.to_string(),
                };
                let (p, f) = (show(&produce), show(&fetch));
                report
                    .lines
                    .push(format!("  broker {id} {}: Produce {p}, Fetch {f}", conn.broker()));
                if let Some(rtt) = conn.round_trip(5).await {
                    in_flight_lines(side, rtt, rate_mb, budget, client.config().socket_buffers, report);
                }
            }
            Err(e) => report.problems.push(format!("{side} broker {id}: {e}")),
        }
    }
    Ok(())
}

/// Internal topics other replicators keep on the clusters they write to.
const OTHER_REPLICATORS: &[(&str, &str)] = &[
    ("heartbeats", "MirrorMaker 2"),
    ("mm2-offset-syncs.", "MirrorMaker 2"),
    (".checkpoints.internal", "MirrorMaker 2"),
    ("mm2-offsets.", "MirrorMaker 2"),
    ("_confluent-replicator", "Confluent Replicator"),
];

/// A warning when `topics` of cluster `alias` show another replicator at work:
/// provenance cannot tell the batches it wrote from local ones.
fn other_replicator(alias: &str, topics: &[String]) -> Option<String> {
    let seen: Vec<String> = topics
        .iter()
        .filter_map(|t| {
            OTHER_REPLICATORS
                .iter()
                .find(|(marker, _)| t == marker || t.starts_with(marker) || t.ends_with(marker))
                .map(|(_, who)| format!("{t} ({who})"))
        })
        .collect();
    (!seen.is_empty()).then(|| {
        format!(
            "cluster {alias} holds topics of another replicator ({}): provenance cannot tell the batches another replicator wrote from local ones, so records it copied into {alias} would be copied on again; do not run both on the same topics",
            seen.join(", ")
        )
    })
}

/// Runs every check of every flow of `doc`, and the topology's.
/// `rate_mb`: the throughput (MB/s) whose bytes in flight are reported per broker.
pub async fn check_document(doc: &strait::config::Document, rate_mb: u64) -> CheckReport {
    let mut report = CheckReport::default();
    let several = doc.flows.len() > 1;
    if several {
        report.lines.extend(strait::topology::describe(doc));
    }
    report.problems.extend(strait::topology::problems(doc));
    for f in &doc.flows {
        let r = check(f, rate_mb).await;
        let tag = |l: String| if several { format!("flow {}: {l}", f.name) } else { l };
        report.lines.extend(r.lines.into_iter().map(tag));
        report.problems.extend(r.problems.into_iter().map(tag));
        for w in r.warnings.into_iter().map(tag) {
            if !report.warnings.contains(&w) {
                report.warnings.push(w);
            }
        }
    }
    report
}

/// Runs every check of `cfg`.
pub async fn check(cfg: &Config, rate_mb: u64) -> CheckReport {
    let mut report = CheckReport::default();
    let (src_label, dst_label) = (cfg.source.label("source"), cfg.destination.label("destination"));
    clamped_overrides(&src_label, cfg.source.socket_buffers(), &mut report);
    clamped_overrides(&dst_label, cfg.destination.socket_buffers(), &mut report);
    let src = match Client::connect(cfg.source.client_config()).await {
        Ok(c) => Some(c),
        Err(e) => {
            report.problems.push(format!("{src_label}: {e}"));
            None
        }
    };
    let dst = match Client::connect(cfg.destination.client_config()).await {
        Ok(c) => Some(c),
        Err(e) => {
            report.problems.push(format!("{dst_label}: {e}"));
            None
        }
    };
    if let (Some(s), Some(d)) = (&src, &dst) {
        if strait::replicate::same_cluster(s, d) {
            match s.refresh_metadata(None).await {
                Ok(md) => match cfg.self_copy_problem(md.topics.keys().map(String::as_str)) {
                    Some(problem) => report.problems.push(problem),
                    None => report.lines.push(
                        "source and destination are the same cluster: topics are copied inside it under their renamed names"
                            .into(),
                    ),
                },
                Err(e) => report.problems.push(format!("{src_label}: {e}")),
            }
        }
    }
    let mut mapped: Vec<(String, String)> = Vec::new();
    if let Some(src) = &src {
        if let Err(e) = versions("source", src, &mut report, rate_mb, cfg.ops.max_buffered_bytes).await {
            report.problems.push(format!("{src_label}: {e}"));
        }
        let req = MetadataRequest::default()
            .with_topics(None)
            .with_include_topic_authorized_operations(true);
        match src.any_broker().await {
            Ok(conn) => match conn.request(&req).await {
                Ok(resp) => {
                    let all: Vec<String> = resp
                        .topics
                        .iter()
                        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                        .collect();
                    if strait::topology::uses_provenance(cfg) {
                        if let Some(w) = other_replicator(&cfg.source.alias, &all) {
                            report.warnings.push(w);
                        }
                    }
                    for t in &resp.topics {
                        let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) else {
                            continue;
                        };
                        if t.error_code != 0 || !cfg.wants_topic(&name, t.is_internal) {
                            continue;
                        }
                        let mut needed = vec![(READ, "READ"), (DESCRIBE, "DESCRIBE")];
                        if cfg.topics.sync_topic_configs {
                            needed.push((DESCRIBE_CONFIGS, "DESCRIBE_CONFIGS"));
                        }
                        let lacking = missing(t.topic_authorized_operations, &needed);
                        if !lacking.is_empty() {
                            report.problems.push(format!(
                                "source topic {name}: missing permission {}",
                                lacking.join(", ")
                            ));
                        }
                        mapped.push((name.clone(), cfg.destination_topic(&name)));
                    }
                    mapped.sort();
                    report.lines.push(format!("source topics matched: {}", mapped.len()));
                    for (s, d) in &mapped {
                        report.lines.push(format!("  {s} -> {d}"));
                    }
                    let heartbeat_topic = cfg.heartbeats.as_ref().map(|h| h.topic.as_str());
                    if mapped.iter().all(|(s, _)| Some(s.as_str()) == heartbeat_topic) {
                        report.warnings.push(format!(
                            "no source topic matches topics = {:?}{}: `strait run` would replicate nothing until one appears",
                            cfg.topics.topics.iter().map(strait::config::pattern_text).collect::<Vec<_>>(),
                            if cfg.topics.topics_exclude.is_empty() { String::new() } else {
                                format!(" minus topics_exclude = {:?}", cfg.topics.topics_exclude.iter().map(strait::config::pattern_text).collect::<Vec<_>>())
                            }
                        ));
                    }
                    if let Some(hb) = &cfg.heartbeats {
                        let ops = cluster_ops(src).await;
                        heartbeat_lines(cfg, hb, &resp.topics, ops, &mut mapped, &mut report);
                    }
                }
                Err(e) => report.problems.push(format!("{src_label}: {e}")),
            },
            Err(e) => report.problems.push(format!("{src_label}: {e}")),
        }
    }
    if let Some(dst) = &dst {
        if let Err(e) = versions("destination", dst, &mut report, rate_mb, cfg.ops.max_buffered_bytes).await {
            report.problems.push(format!("{dst_label}: {e}"));
        }
        let cluster_ops = cluster_ops(dst).await;
        let names: Vec<MetadataRequestTopic> = mapped
            .iter()
            .map(|(_, d)| MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(d.clone())))))
            .collect();
        let req = MetadataRequest::default()
            .with_topics(Some(names))
            .with_allow_auto_topic_creation(false)
            .with_include_topic_authorized_operations(true);
        match dst.any_broker().await {
            Ok(conn) => match conn.request(&req).await {
                Ok(resp) => {
                    for t in &resp.topics {
                        let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) else {
                            continue;
                        };
                        if t.error_code == code::UNKNOWN_TOPIC_OR_PARTITION {
                            let lacking = missing(cluster_ops, &[(CREATE, "CREATE")]);
                            if lacking.is_empty() {
                                report.lines.push(format!("destination topic {name}: will be created"));
                            } else {
                                report.problems.push(format!(
                                    "destination topic {name} is missing and the cluster denies CREATE"
                                ));
                            }
                            continue;
                        }
                        let mut needed = vec![(WRITE, "WRITE"), (DESCRIBE, "DESCRIBE")];
                        if cfg.topics.sync_topic_configs {
                            needed.extend([(DESCRIBE_CONFIGS, "DESCRIBE_CONFIGS"), (ALTER_CONFIGS, "ALTER_CONFIGS")]);
                        }
                        let lacking = missing(t.topic_authorized_operations, &needed);
                        if t.error_code != code::NONE && t.error_code != code::UNKNOWN_TOPIC_OR_PARTITION {
                            report.problems.push(format!(
                                "destination topic {name}: {}",
                                strait::client::error_name(t.error_code)
                            ));
                        } else if !lacking.is_empty() {
                            report.problems.push(format!(
                                "destination topic {name}: missing permission {}",
                                lacking.join(", ")
                            ));
                        }
                    }
                }
                Err(e) => report.problems.push(format!("{dst_label}: {e}")),
            },
            Err(e) => report.problems.push(format!("{dst_label}: {e}")),
        }
    }
    if let (Some(src), Some(dst), true) = (&src, &dst, cfg.topics.sync_acls) {
        let mirrors: Vec<String> = mapped.iter().map(|(_, d)| d.clone()).collect();
        check_acls(src, dst, &mirrors, &mut report).await;
    }
    report
}

/// ACL sync (`sync_acls`): the permissions it needs on both clusters, and
/// destination grants it cannot narrow.
async fn check_acls(src: &Client, dst: &Client, mirrors: &[String], report: &mut CheckReport) {
    use strait::client::acl::{op, resource};
    let src_acls = src.describe_acls(resource::TOPIC).await;
    let dst_acls = dst.describe_acls(resource::TOPIC).await;
    match (&src_acls, &dst_acls) {
        (Ok(None), _) | (_, Ok(None)) => {
            report
                .lines
                .push("ACL sync: a cluster has no authorizer, so there are no ACLs to sync".into());
            return;
        }
        _ => {}
    }
    if let Err(e) = &src_acls {
        report.warnings.push(format!(
            "ACL sync: cannot read the source's ACLs ({e}); grant DESCRIBE on the source cluster resource, or set sync_acls = false"
        ));
    }
    match &dst_acls {
        Err(e) => report.warnings.push(format!(
            "ACL sync: cannot read the destination's ACLs ({e}); grant DESCRIBE and ALTER on the destination cluster resource, or set sync_acls = false"
        )),
        Ok(Some(acls)) => {
            if let Ok(Some(ops)) = dst.cluster_operations().await {
                if !ops.contains(&op::ALTER) && !ops.contains(&op::ALL) {
                    report.warnings.push(
                        "ACL sync: the destination cluster denies ALTER on the cluster resource (CreateAcls, DeleteAcls); grant it, or set sync_acls = false"
                            .into(),
                    );
                }
            }
            for b in strait::replicate::acls::broad_write_grants(acls, mirrors) {
                let covered: Vec<&str> = mirrors
                    .iter()
                    .filter(|m| b.name == "*" || m.starts_with(&b.name))
                    .map(String::as_str)
                    .collect();
                report.warnings.push(format!(
                    "destination ACL \"{b}\" lets {} write into mirrored topics ({}): Kafka cannot narrow a wildcard or prefixed grant, so ACL sync cannot keep it read-only; replace it with grants on the topics that are not mirrors",
                    b.principal,
                    covered.join(", ")
                ));
            }
        }
        Ok(None) => {}
    }
    if let Ok(Some(a)) = &src_acls {
        report
            .lines
            .push(format!("ACL sync: {} topic ACLs on the source", a.len()));
    }
}
