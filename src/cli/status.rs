//! `strait status`: the replication groups of a config as the clusters see
//! them: every live member (`strait run` process) with its partitions and lag.

use std::collections::{BTreeMap, BTreeSet};

use strait::client::admin::LATEST;
use strait::client::Client;
use strait::config::{Config, Document};
use strait::replicate::assign::Assignment;
use strait::replicate::checkpoint::committed_positions;

/// One flow's group: state and members, each with partitions and lag.
async fn flow_status(cfg: &Config) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let src = Client::connect(cfg.source.client_config())
        .await
        .map_err(|e| format!("{}: {e}", cfg.source.label("source")))?;
    let dst = Client::connect(cfg.destination.client_config())
        .await
        .map_err(|e| format!("{}: {e}", cfg.destination.label("destination")))?;
    let group = cfg.checkpoint_group();
    let g = dst.describe_group(&group).await?;
    let positions = committed_positions(&dst, &group, &[]).await?;
    // Source ends of every assigned partition, one ListOffsets per topic.
    let mut assigned: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    let members: Vec<(strait::client::group::DescribedMember, Assignment)> = g
        .members
        .iter()
        .map(|m| (m.clone(), Assignment::decode(&m.assignment).unwrap_or_default()))
        .collect();
    for (_, a) in &members {
        for (t, ps) in &a.partitions {
            assigned.entry(t.clone()).or_default().extend(ps.iter().copied());
        }
    }
    let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for (t, ps) in &assigned {
        let list: Vec<i32> = ps.iter().copied().collect();
        if let Ok(e) = src.list_offsets(t, &list, LATEST, true).await {
            for (p, o) in e {
                ends.insert((t.clone(), p), o);
            }
        }
    }
    let lag_of = |t: &str, p: i32| -> Option<i64> {
        let end = ends.get(&(t.to_string(), p))?;
        let pos = positions.get(&(cfg.destination_topic(t), p))?;
        Some((end - pos.src_next).max(0))
    };
    let mut out_members = Vec::new();
    for (m, a) in &members {
        let lag: i64 = a
            .partitions
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |p| (t, *p)))
            .filter_map(|(t, p)| lag_of(t, p))
            .sum();
        out_members.push(serde_json::json!({
            "instance_id": m.instance_id,
            "member_id": m.member_id,
            "host": m.client_host.trim_start_matches('/'),
            "partitions": a.partitions,
            "partition_count": a.partitions.values().map(Vec::len).sum::<usize>(),
            "waiting_for_handoff": a.pending,
            "lag_records": lag,
        }));
    }
    out_members.sort_by_key(|m| m["instance_id"].as_str().unwrap_or_default().to_string());
    Ok(serde_json::json!({
        "flow": cfg.name,
        "group": group,
        "state": g.state,
        "protocol_type": g.protocol_type,
        "members": out_members,
        "partitions_assigned": assigned.values().map(BTreeSet::len).sum::<usize>(),
    }))
}

/// Prints the groups of `doc`'s flows (`flow`: only that one).
pub async fn status(doc: &Document, flow: Option<&str>, json: bool) -> Result<(), Box<dyn std::error::Error>> {
    let flows: Vec<&Config> = match flow {
        Some(_) => vec![doc.flow(flow).map_err(|e| e.to_string())?],
        None => doc.flows.iter().collect(),
    };
    let mut all = Vec::new();
    for f in flows {
        all.push(flow_status(f).await?);
    }
    if json {
        println!("{}", serde_json::json!({ "flows": all }));
        return Ok(());
    }
    for f in &all {
        let members = f["members"].as_array().cloned().unwrap_or_default();
        println!(
            "flow {}: group {} {} with {} member(s), {} partition(s) assigned",
            f["flow"].as_str().unwrap_or("?"),
            f["group"].as_str().unwrap_or("?"),
            f["state"].as_str().unwrap_or("?"),
            members.len(),
            f["partitions_assigned"]
        );
        if members.is_empty() {
            println!("  no strait run of this flow is alive");
            continue;
        }
        println!(
            "  {:<28} {:<22} {:>10} {:>12} {:>9}",
            "MEMBER", "HOST", "PARTITIONS", "LAG RECORDS", "WAITING"
        );
        for m in &members {
            println!(
                "  {:<28} {:<22} {:>10} {:>12} {:>9}",
                m["instance_id"].as_str().unwrap_or("-"),
                m["host"].as_str().unwrap_or("-"),
                m["partition_count"],
                m["lag_records"],
                m["waiting_for_handoff"]
            );
        }
    }
    Ok(())
}
