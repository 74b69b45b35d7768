//! `strait failover` (planned, `--unplanned`, `--reset`) and `strait
//! failback`: what the operator sees of the disaster-recovery commands
//! (`strait::replicate::failover` does the work).

use strait::config::Config;
use strait::replicate::failover::{self, FailoverReport};
use strait::replicate::failover_record::utc;

type Result = std::result::Result<(), Box<dyn std::error::Error>>;

/// Where clients go now: the destination, its renamed topics, the ACLs restored.
fn print_moved(c: &Config, who: &str, r: &FailoverReport) {
    println!(
        "Point {who} at the destination cluster: bootstrap.servers={}",
        c.destination.bootstrap_servers.get_ref()
    );
    for (s, d) in &r.topics {
        if s != d {
            println!("  topic {s} is {d} there");
        }
    }
    for a in &r.acls_restored {
        println!("  ACL restored: {a}");
    }
}

/// `strait failover`.
pub async fn failover(c: Config, groups: Vec<String>, unplanned: bool, reset: bool) -> Result {
    if reset {
        if failover::reset(&c).await? {
            println!(
                "flow {}: the failed-over mark is cleared; `strait run` may replicate this direction again",
                c.name
            );
        } else {
            println!("flow {}: not marked as failed over; nothing to clear", c.name);
        }
        return Ok(());
    }
    if unplanned {
        let r = failover::failover_unplanned(c.clone()).await?;
        let parts = r.record.as_ref().map_or(0, |x| x.partitions.len());
        println!("unplanned failover complete: recorded on the destination ({}) for {parts} partition(s); `strait run` of this direction now refuses until `strait failover --reset`.", c.failover_topic());
        print_moved(&c, "consumers and producers", &r);
        for (g, t, p, o) in &r.synced_groups {
            println!("group {g}: {t}[{p}] at destination offset {o} (as group sync last wrote it)");
        }
        println!("Records the source held but strait had not replicated are not on the destination; `strait failback` finds them once the source is back and keeps them in <topic>.diverged.");
        return Ok(());
    }
    let r = failover::failover(c.clone(), groups).await?;
    println!("failover complete: replication drained ({} records in the final drain), checkpoint and group offsets committed.", r.drained_records);
    print_moved(&c, "consumers", &r);
    for (g, rows) in &r.groups {
        println!("group {g}: its committed offsets on the destination:");
        for row in rows {
            let t = row.translated.map(|o| o.to_string()).unwrap_or_else(|| "-".into());
            println!(
                "  {}[{}] source offset {} -> destination offset {t}",
                row.dst_topic, row.partition, row.committed
            );
        }
    }
    println!(
        "Producers may now write to the destination; `strait failback --config ...` replicates those records back."
    );
    let untranslated = r.untranslated();
    if !untranslated.is_empty() {
        let list: Vec<String> = untranslated
            .iter()
            .map(|(g, t, p, o)| format!("group {g} {t}[{p}] at source offset {o}"))
            .collect();
        return Err(format!(
            "failover incomplete: {} consumer-group partition(s) have no destination offset (not replicated, or behind what the offset map still covers); their consumers will start per auto.offset.reset: {}",
            list.len(),
            list.join(", ")
        )
        .into());
    }
    Ok(())
}

/// `strait failback`: reports (and, unless `dry_run`, keeps) the diverged
/// records, then replicates the destination's new records back until `shutdown`.
pub async fn failback(
    c: Config,
    progress: u64,
    dry_run: bool,
    json: bool,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result {
    let plan = failover::prepare_failback(&c, dry_run).await?;
    if plan.record.is_some() && plan.diverged.is_empty() {
        eprintln!(
            "failback: no diverged records (the destination holds every record of the original source up to failover)"
        );
    }
    for d in &plan.diverged {
        eprintln!(
            "diverged: {}[{}]: {} record(s) never replicated, source offsets {}..={}, timestamps {} .. {} UTC{}",
            d.src_topic,
            d.partition,
            d.count,
            d.offsets.0,
            d.offsets.1,
            utc(d.timestamps.0),
            utc(d.timestamps.1),
            if dry_run {
                String::new()
            } else {
                format!(" -> copied into {} on the destination", d.diverged_topic)
            }
        );
    }
    if dry_run {
        let n: u64 = plan.diverged.iter().map(|d| d.count).sum();
        println!(
            "dry run: {n} diverged record(s) in {} partition(s); nothing copied",
            plan.diverged.len()
        );
        return Ok(());
    }
    let reverse = failover::failback_config(&c).await?;
    eprintln!(
        "failback: replicating {} back to {} as {:?}",
        c.destination.bootstrap_servers.get_ref(),
        c.source.bootstrap_servers.get_ref(),
        reverse.name
    );
    let progress = (progress > 0).then(|| std::time::Duration::from_secs(progress));
    let summary = strait::replicate::run(reverse, shutdown, progress, |_| {}).await?;
    if json {
        tracing::info!(
            records = summary.records,
            megabytes = summary.bytes as f64 / 1e6,
            "stopped: failback"
        );
    } else {
        eprintln!(
            "stopped: {} records, {:.1} MB replicated back",
            summary.records,
            summary.bytes as f64 / 1e6
        );
    }
    Ok(())
}
