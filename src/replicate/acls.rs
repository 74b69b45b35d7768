//! ACL sync: the ACLs of replicated topics and synced consumer groups follow
//! them to the destination, so consumers and producers authorised on the
//! source are authorised there after a failover (MirrorMaker 2's
//! `sync.topic.acls.enabled`, `MirrorSourceConnector.syncTopicAcls`, extended
//! to groups and prefixed patterns).
//!
//! Rules ([`mirror`]):
//! - Topic ACLs, literal or prefixed, whose topic (or prefix) the flow
//!   replicates, with the name mapped through `rename`. A wildcard (`*`) or a
//!   prefix that `rename` cannot map is not copied.
//! - `ALLOW WRITE` and `ALLOW ALL` on a topic become `ALLOW READ` while strait
//!   owns the mirror (MM2's rule), so nobody writes into it by mistake;
//!   [`restore_writes`] (`strait failover`) grants the originals.
//! - Group ACLs of groups whose offsets are synced, unchanged (groups keep their names).
//! - DENY entries unchanged; strait's own principals are never touched.
//!
//! The source's originals, as last synced, are recorded on the destination
//! (compacted topic `__strait.<name>.acls`, one record): the failover needs
//! them when the source is gone, and the next sync deletes exactly the
//! destination ACLs strait created for originals that are gone since. Other
//! ACLs on the destination are never deleted.

use std::collections::BTreeSet;

use tracing::{info, warn};

use crate::client::acl::{op, pattern, permission, resource, AclBinding};
use crate::client::{Client, ClientError};
use crate::config::Config;

/// Record key of the one record in the ACL topic.
const KEY: &str = "acls";

/// The destination form of source ACL `b` for flow `cfg`, or `None` when it is
/// not the flow's to copy. `own` are strait's principals (`User:<name>`).
pub fn mirror(cfg: &Config, own: &[String], b: &AclBinding) -> Option<AclBinding> {
    if own.contains(&b.principal) {
        return None;
    }
    let mut out = b.clone();
    match b.resource_type {
        resource::TOPIC => {
            out.name = match b.pattern {
                pattern::LITERAL if b.name != "*" && cfg.wants_topic(&b.name, false) => cfg.destination_topic(&b.name),
                pattern::PREFIXED => mapped_prefix(cfg, &b.name)?,
                _ => return None,
            };
            if b.permission == permission::ALLOW && (b.operation == op::WRITE || b.operation == op::ALL) {
                out.operation = op::READ;
            }
        }
        resource::GROUP => {
            let ok = match b.pattern {
                pattern::LITERAL => b.name != "*" && cfg.wants_group(&b.name),
                pattern::PREFIXED => cfg.groups.enabled(),
                _ => false,
            };
            if !ok {
                return None;
            }
        }
        _ => return None,
    }
    Some(out)
}

/// The destination prefix of source topic prefix `p`, when `rename` maps
/// every name starting with `p` to one starting with the result (identity,
/// `prefix`, a template ending in `{topic}`), and `p` is not all internal.
fn mapped_prefix(cfg: &Config, p: &str) -> Option<String> {
    if p.starts_with("__") {
        return None;
    }
    let head = cfg.destination_topic("");
    let probe = format!("{p}x");
    (cfg.destination_topic(&probe) == format!("{head}{probe}")).then(|| format!("{head}{p}"))
}

/// strait's own principals on both clusters (SASL user names), never synced.
pub fn own_principals(cfg: &Config) -> Vec<String> {
    [&cfg.source, &cfg.destination]
        .iter()
        .filter_map(|c| c.client_config().sasl.map(|s| format!("User:{}", s.username)))
        .collect()
}

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// ACLs created on the destination.
    pub created: usize,
    /// ACLs strait had created and deleted since their originals are gone.
    pub deleted: usize,
}

/// The recorded originals (source ACLs as last synced); empty when none.
pub async fn recorded(cfg: &Config, dst: &Client) -> Result<Vec<AclBinding>, ClientError> {
    Ok(super::log::read_single(dst, &cfg.acl_topic(), KEY)
        .await?
        .and_then(|v| serde_json::from_slice(&v).ok())
        .unwrap_or_default())
}

async fn record(cfg: &Config, dst: &Client, originals: &[AclBinding]) -> Result<(), ClientError> {
    let value = serde_json::to_vec(originals).map_err(|e| ClientError::Invalid {
        what: "ACL record",
        reason: e.to_string(),
    })?;
    super::log::write_single(dst, &cfg.acl_topic(), cfg.topics.replication_factor, KEY, value).await
}

/// Source ACLs of topics and groups; `None` when the source has no authorizer.
async fn source_acls(src: &Client) -> Result<Option<Vec<AclBinding>>, ClientError> {
    let Some(mut all) = src.describe_acls(resource::TOPIC).await? else {
        return Ok(None);
    };
    all.extend(src.describe_acls(resource::GROUP).await?.unwrap_or_default());
    Ok(Some(all))
}

/// Destination ACLs of topics and groups; `None` when it has no authorizer.
async fn destination_acls(dst: &Client) -> Result<Option<BTreeSet<AclBinding>>, ClientError> {
    let Some(mut all) = dst.describe_acls(resource::TOPIC).await? else {
        return Ok(None);
    };
    all.extend(dst.describe_acls(resource::GROUP).await?.unwrap_or_default());
    Ok(Some(all.into_iter().collect()))
}

/// One sync: creates the destination forms of the source's ACLs that are
/// missing there, deletes those strait created whose originals are gone, and
/// records the originals. `Ok(None)`: a cluster has no authorizer (nothing to sync).
pub async fn sync_once(cfg: &Config, src: &Client, dst: &Client) -> Result<Option<SyncReport>, ClientError> {
    let own = own_principals(cfg);
    let Some(source) = source_acls(src).await? else {
        return Ok(None);
    };
    let Some(existing) = destination_acls(dst).await? else {
        return Ok(None);
    };
    let mirrored: BTreeSet<(AclBinding, AclBinding)> = source
        .into_iter()
        .filter_map(|b| mirror(cfg, &own, &b).map(|m| (b, m)))
        .collect();
    let originals: Vec<AclBinding> = mirrored.iter().map(|(b, _)| b.clone()).collect();
    let desired: BTreeSet<AclBinding> = mirrored.into_iter().map(|(_, m)| m).collect();
    let before = recorded(cfg, dst).await?;
    let had: BTreeSet<AclBinding> = before.iter().filter_map(|b| mirror(cfg, &own, b)).collect();
    let create: Vec<AclBinding> = desired.difference(&existing).cloned().collect();
    let delete: Vec<AclBinding> = had
        .difference(&desired)
        .filter(|b| existing.contains(*b))
        .cloned()
        .collect();
    if before != originals {
        // Recorded first: a failover between here and the creates still finds them.
        record(cfg, dst, &originals).await?;
    }
    for b in &create {
        info!(acl = %b, "ACL synced to the destination");
    }
    dst.create_acls(&create).await?;
    for b in &delete {
        info!(acl = %b, "ACL removed from the destination (gone from the source)");
    }
    dst.delete_acls(&delete).await?;
    Ok(Some(SyncReport {
        created: create.len(),
        deleted: delete.len(),
    }))
}

/// Failover: grants on the destination the WRITE and ALL permissions that
/// sync copied as READ, from the recorded originals, and removes the READ
/// stand-ins no original grants. Returns the ACLs granted.
pub async fn restore_writes(cfg: &Config, dst: &Client) -> Result<Vec<AclBinding>, ClientError> {
    let own = own_principals(cfg);
    let originals = recorded(cfg, dst).await?;
    let mut grant = Vec::new();
    let mut stand_ins = BTreeSet::new();
    let mut reads = BTreeSet::new();
    for b in &originals {
        let Some(m) = mirror(cfg, &own, b) else { continue };
        if b.resource_type != resource::TOPIC || b.permission != permission::ALLOW {
            continue;
        }
        if b.operation == op::WRITE || b.operation == op::ALL {
            let mut restored = m.clone();
            restored.operation = b.operation;
            grant.push(restored);
            stand_ins.insert(m);
        } else if b.operation == op::READ {
            reads.insert(m);
        }
    }
    dst.create_acls(&grant).await?;
    let remove: Vec<AclBinding> = stand_ins.difference(&reads).cloned().collect();
    dst.delete_acls(&remove).await?;
    for b in &grant {
        info!(acl = %b, "failover: write permission restored on the destination");
    }
    Ok(grant)
}

/// ALLOW WRITE or ALL grants on the destination whose pattern (a wildcard or
/// a prefix) covers one of `mirrors` (destination topic names): Kafka has no
/// "allow everyone except", so sync cannot narrow them, and their principals
/// can write into the mirrors.
pub fn broad_write_grants<'a>(dst_acls: &'a [AclBinding], mirrors: &[String]) -> Vec<&'a AclBinding> {
    dst_acls
        .iter()
        .filter(|b| {
            b.resource_type == resource::TOPIC
                && b.permission == permission::ALLOW
                && (b.operation == op::WRITE || b.operation == op::ALL)
                && match b.pattern {
                    pattern::LITERAL => b.name == "*" && !mirrors.is_empty(),
                    pattern::PREFIXED => mirrors.iter().any(|m| m.starts_with(&b.name)),
                    _ => false,
                }
        })
        .collect()
}

/// Runs [`sync_once`] and logs the outcome; warns once about a refusal.
#[derive(Debug, Default)]
pub struct AclSync {
    warned: std::sync::atomic::AtomicBool,
}

impl AclSync {
    /// One sync, its errors logged (the first authorization error once, as a
    /// warning naming the permissions needed).
    pub async fn run(&self, cfg: &Config, src: &Client, dst: &Client) {
        match sync_once(cfg, src, dst).await {
            Ok(_) => {}
            Err(e) => {
                if !self.warned.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    warn!(error = %e, "ACL sync failed; it needs DESCRIBE on the source cluster and DESCRIBE and ALTER on the destination cluster (set sync_acls = false to turn it off); retrying every refresh");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Config {
        Config::parse(
            &format!(
                "name = \"t\"\ntopics = [\"orders.*\"]\ngroups = [\"billing\"]\n{extra}\n[source]\nbootstrap_servers = \"a:1\"\nalias = \"east\"\n[destination]\nbootstrap_servers = \"b:1\"\n"
            ),
            "t.toml",
        )
        .unwrap()
    }

    fn acl(rt: i8, name: &str, pat: i8, who: &str, o: i8, perm: i8) -> AclBinding {
        AclBinding {
            resource_type: rt,
            name: name.into(),
            pattern: pat,
            principal: who.into(),
            host: "*".into(),
            operation: o,
            permission: perm,
        }
    }

    #[test]
    fn writes_become_reads_and_names_follow_rename() {
        let c = cfg("rename = \"prefix\"");
        let own = vec!["User:strait".to_string()];
        let w = acl(
            resource::TOPIC,
            "orders.eu",
            pattern::LITERAL,
            "User:bob",
            op::WRITE,
            permission::ALLOW,
        );
        let m = mirror(&c, &own, &w).unwrap();
        assert_eq!((m.name.as_str(), m.operation), ("east.orders.eu", op::READ));
        let all = acl(
            resource::TOPIC,
            "orders.",
            pattern::PREFIXED,
            "User:bob",
            op::ALL,
            permission::ALLOW,
        );
        let m = mirror(&c, &own, &all).unwrap();
        assert_eq!(
            (m.name.as_str(), m.pattern, m.operation),
            ("east.orders.", pattern::PREFIXED, op::READ)
        );
        // DENY and READ stay as they are.
        let d = acl(
            resource::TOPIC,
            "orders.eu",
            pattern::LITERAL,
            "User:eve",
            op::WRITE,
            permission::DENY,
        );
        assert_eq!(mirror(&c, &own, &d).unwrap().operation, op::WRITE);
    }

    #[test]
    fn only_the_flows_topics_and_groups_and_never_strait_itself() {
        let c = cfg("");
        let own = vec!["User:strait".to_string()];
        let r = |name: &str, rt: i8, pat: i8, who: &str| acl(rt, name, pat, who, op::READ, permission::ALLOW);
        assert!(mirror(&c, &own, &r("payments", resource::TOPIC, pattern::LITERAL, "User:a")).is_none());
        assert!(mirror(&c, &own, &r("*", resource::TOPIC, pattern::LITERAL, "User:a")).is_none());
        assert!(mirror(
            &c,
            &own,
            &r("orders.eu", resource::TOPIC, pattern::LITERAL, "User:strait")
        )
        .is_none());
        assert!(mirror(&c, &own, &r("__strait.x", resource::TOPIC, pattern::PREFIXED, "User:a")).is_none());
        assert!(mirror(&c, &own, &r("billing", resource::GROUP, pattern::LITERAL, "User:a")).is_some());
        assert!(mirror(&c, &own, &r("other", resource::GROUP, pattern::LITERAL, "User:a")).is_none());
        assert!(mirror(
            &c,
            &own,
            &r("kafka-cluster", resource::CLUSTER, pattern::LITERAL, "User:a")
        )
        .is_none());
    }

    #[test]
    fn a_template_that_is_not_a_prefix_does_not_map_prefixes() {
        let c = cfg("rename = \"{topic}.copy\"");
        let p = acl(
            resource::TOPIC,
            "orders.",
            pattern::PREFIXED,
            "User:a",
            op::READ,
            permission::ALLOW,
        );
        assert!(mirror(&c, &[], &p).is_none());
        let l = acl(
            resource::TOPIC,
            "orders.eu",
            pattern::LITERAL,
            "User:a",
            op::READ,
            permission::ALLOW,
        );
        assert_eq!(mirror(&c, &[], &l).unwrap().name, "orders.eu.copy");
    }

    #[test]
    fn broad_write_grants_are_the_ones_covering_mirrors() {
        let dst = vec![
            acl(
                resource::TOPIC,
                "*",
                pattern::LITERAL,
                "User:w",
                op::WRITE,
                permission::ALLOW,
            ),
            acl(
                resource::TOPIC,
                "orders",
                pattern::PREFIXED,
                "User:p",
                op::ALL,
                permission::ALLOW,
            ),
            acl(
                resource::TOPIC,
                "logs",
                pattern::PREFIXED,
                "User:q",
                op::WRITE,
                permission::ALLOW,
            ),
            acl(
                resource::TOPIC,
                "orders",
                pattern::PREFIXED,
                "User:r",
                op::READ,
                permission::ALLOW,
            ),
        ];
        let found = broad_write_grants(&dst, &["orders.eu".to_string()]);
        let who: Vec<&str> = found.iter().map(|b| b.principal.as_str()).collect();
        assert_eq!(who, ["User:w", "User:p"]);
    }
}
