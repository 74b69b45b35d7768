//! The `strait` command line. Parsing lives here only; the work is in the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use strait::client::{Client, ClientConfig};

/// strait: a pure-Rust replicator for Apache Kafka.
#[derive(Debug, Parser)]
#[command(name = "strait", version, about, long_about = None)]
struct Cli {
    /// Log format on stderr: human or json. Level from RUST_LOG (default info for run, warn otherwise).
    #[arg(long, global = true, default_value = "human", env = "STRAIT_LOG_FORMAT", value_parser = ["human", "json"])]
    log_format: String,
    /// Threads that run replication. 1 (the default for every command but `bench` and
    /// `load`) runs everything on one thread: no cross-thread wake-ups, 4-12 % less CPU
    /// per GB and about half the memory of two threads in the benchmarks. More threads
    /// help only when strait saturates one core (see the README).
    #[arg(long, global = true, env = "STRAIT_THREADS", value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replicates topics from the source to the destination cluster until SIGINT/SIGTERM.
    Run {
        /// Path of the TOML config (see strait.example.toml).
        #[arg(long)]
        config: std::path::PathBuf,
        /// Seconds between progress lines (records/s, MB/s, lag per topic); 0 turns them off.
        #[arg(long, default_value_t = 5)]
        progress: u64,
    },
    /// Prints the annotated example configuration.
    ExampleConfig,
    /// Drains replication, syncs the groups' offsets exactly, stops, prepares
    /// failback, and prints what consumers must change.
    Failover {
        /// Path of the TOML config.
        #[arg(long)]
        config: std::path::PathBuf,
        /// Consumer groups to move (repeatable; default: the config's `groups`).
        #[arg(long = "group")]
        groups: Vec<String>,
    },
    /// Replicates destination → source from where failover left off (new records
    /// only) until SIGINT/SIGTERM.
    Failback {
        /// Path of the TOML config of the original replication.
        #[arg(long)]
        config: std::path::PathBuf,
        /// Seconds between progress lines; 0 turns them off.
        #[arg(long, default_value_t = 5)]
        progress: u64,
    },
    /// Consumer-offset tools.
    Offsets {
        #[command(subcommand)]
        command: OffsetsCommand,
    },
    /// Connects to both clusters of a config and reports broker versions, matched
    /// topics and missing permissions; exits non-zero if a run would fail.
    Check {
        /// Path of the TOML config.
        #[arg(long)]
        config: std::path::PathBuf,
    },
    /// Measures a replication: loads a fresh source topic (in a separate process)
    /// while replicating it, then reports throughput, latency, CPU and memory.
    Bench {
        /// Source cluster bootstrap servers.
        #[arg(long)]
        source: String,
        /// Destination cluster bootstrap servers.
        #[arg(long)]
        destination: String,
        #[command(flatten)]
        load: LoadArgs,
        /// Replicate in exactly-once mode (transactions on the destination).
        #[arg(long)]
        exactly_once: bool,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Writes synthetic records to a topic (used by `bench`; handy for tests).
    Load {
        /// Bootstrap servers.
        #[arg(long)]
        bootstrap: String,
        /// Topic (created if missing).
        #[arg(long)]
        topic: String,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Checks a config file and prints the replication it describes.
    CheckConfig {
        /// Path of the TOML config.
        #[arg(long)]
        config: std::path::PathBuf,
    },
    /// Connects to a cluster and prints its brokers, negotiated API versions and topics.
    Describe {
        /// Comma-separated bootstrap servers (host:port).
        #[arg(long)]
        bootstrap: String,
    },
}

#[derive(Debug, Subcommand)]
enum OffsetsCommand {
    /// Shows a source consumer group's committed offsets and their exact
    /// destination equivalents (from strait's offset map), with lag.
    Translate {
        /// Path of the TOML config of the replication.
        #[arg(long)]
        config: std::path::PathBuf,
        /// Consumer group on the source.
        #[arg(long)]
        group: String,
        /// Only this source topic.
        #[arg(long)]
        topic: Option<String>,
    },
}

#[derive(Debug, Clone, clap::Args)]
struct LoadArgs {
    /// Records to write.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Value size of each record, bytes.
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Codec: none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "lz4")]
    codec: String,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Distinct keys (0: null keys).
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    /// Records per produced batch (like the producer's batch.size / record size; 1 = 1-record batches).
    #[arg(long, default_value_t = 256)]
    batch_records: usize,
}

impl LoadArgs {
    fn options(&self, bootstrap: &str, topic: &str) -> strait::bench::LoadOptions {
        strait::bench::LoadOptions {
            bootstrap: bootstrap.to_string(),
            topic: topic.to_string(),
            records: self.records,
            record_size: self.record_size,
            codec: self.codec.clone(),
            partitions: self.partitions,
            keys: self.keys,
            batch_records: self.batch_records.max(1),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Run { .. }) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_level.into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_format == "json" {
        logs.json().init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    // The load generator of `bench` and `load` produces from many tasks at once; it keeps
    // the multi-threaded default.
    let loads = matches!(cli.command, Command::Bench { .. } | Command::Load { .. });
    let mut builder = match cli.threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        None if !loads => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.into());
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Describe { bootstrap } => describe(&bootstrap).await,
            Command::Run { config, progress } => run(&config, progress).await,
            Command::Load { bootstrap, topic, load } => {
                let bytes = strait::bench::load(&load.options(&bootstrap, &topic)).await?;
                eprintln!(
                    "loaded {} records, {:.1} MB of batches into {topic}",
                    load.records,
                    bytes as f64 / 1e6
                );
                Ok(())
            }
            Command::Bench {
                source,
                destination,
                load,
                exactly_once,
                json,
            } => bench(&source, &destination, &load, exactly_once, json).await,
            Command::Offsets {
                command: OffsetsCommand::Translate { config, group, topic },
            } => {
                let c = strait::config::Config::load(&config)?;
                let src = Client::connect(c.source.client_config())
                    .await
                    .map_err(|e| format!("source cluster: {e}"))?;
                let dst = Client::connect(c.destination.client_config())
                    .await
                    .map_err(|e| format!("destination cluster: {e}"))?;
                let rows =
                    strait::replicate::translate::translate_group(&c, &src, &dst, &group, topic.as_deref()).await?;
                println!(
                    "{:<40} {:>9} {:>14} {:<40} {:>14} {:>10}",
                    "SOURCE TOPIC", "PARTITION", "SOURCE OFFSET", "DESTINATION TOPIC", "DEST OFFSET", "LAG"
                );
                for r in &rows {
                    let t = r.translated.map(|o| o.to_string()).unwrap_or_else(|| "-".into());
                    println!(
                        "{:<40} {:>9} {:>14} {:<40} {:>14} {:>10}",
                        r.src_topic, r.partition, r.committed, r.dst_topic, t, r.lag
                    );
                }
                if rows.is_empty() {
                    println!("group {group} has no committed offsets on replicated topics");
                }
                Ok(())
            }
            Command::Failover { config, groups } => {
                let c = strait::config::Config::load(&config)?;
                let dest = c.destination.bootstrap_servers.get_ref().clone();
                let r = strait::replicate::failover::failover(c, groups).await?;
                println!("failover complete: replication drained ({} records in the final drain), checkpoint and group offsets committed.", r.drained_records);
                println!("Point consumers at the destination cluster: bootstrap.servers={dest}");
                for (s, d) in &r.topics {
                    if s != d {
                        println!("  topic {s} is {d} there");
                    }
                }
                for (g, rows) in &r.groups {
                    println!("group {g}: its committed offsets on the destination:");
                    for row in rows {
                        let t = row.translated.map(|o| o.to_string()).unwrap_or_else(|| "-".into());
                        println!("  {}[{}] source offset {} -> destination offset {t}", row.dst_topic, row.partition, row.committed);
                    }
                }
                println!("Producers may now write to the destination; `strait failback --config ...` replicates those records back.");
                Ok(())
            }
            Command::Failback { config, progress } => {
                let c = strait::config::Config::load(&config)?;
                let reverse = strait::replicate::failover::failback_config(&c).await?;
                eprintln!("failback: replicating {} back to {} as {:?}", c.destination.bootstrap_servers.get_ref(), c.source.bootstrap_servers.get_ref(), reverse.name);
                let progress = (progress > 0).then(|| std::time::Duration::from_secs(progress));
                let summary = strait::replicate::run(reverse, shutdown_signal(), progress, |_| {}).await?;
                eprintln!("stopped: {} records, {:.1} MB replicated back", summary.records, summary.bytes as f64 / 1e6);
                Ok(())
            }
            Command::Check { config } => {
                let c = strait::config::Config::load(&config)?;
                let report = strait::check::check(&c).await;
                for l in &report.lines {
                    println!("{l}");
                }
                if report.problems.is_empty() {
                    println!("ok: a run of {:?} should work", c.name);
                    Ok(())
                } else {
                    for p in &report.problems {
                        println!("problem: {p}");
                    }
                    Err(format!("{} problem(s) found", report.problems.len()).into())
                }
            }
            Command::ExampleConfig => {
                print!("{}", strait::config::EXAMPLE);
                Ok(())
            }
            Command::CheckConfig { config } => {
                let c = strait::config::Config::load(&config)?;
                println!(
                    "replication {:?}: {} -> {}; checkpoint group {}; offset map topic {}",
                    c.name,
                    c.source.bootstrap_servers.get_ref(),
                    c.destination.bootstrap_servers.get_ref(),
                    c.checkpoint_group(),
                    c.offset_map_topic()
                );
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(path: &std::path::Path, progress: u64) -> Result<(), Box<dyn std::error::Error>> {
    let cfg = strait::config::Config::load(path)?;
    let progress = (progress > 0).then(|| std::time::Duration::from_secs(progress));
    let summary = strait::replicate::run(cfg, shutdown_signal(), progress, |_| {}).await?;
    eprintln!(
        "stopped: {} records, {:.1} MB replicated ({} batches raw, {} re-encoded)",
        summary.records,
        summary.bytes as f64 / 1e6,
        summary.batches_fast,
        summary.batches_slow
    );
    if !summary.stopped.is_empty() {
        for s in &summary.stopped {
            eprintln!("partition stopped: {s}");
        }
        return Err(format!("{} partition(s) stopped on errors", summary.stopped.len()).into());
    }
    Ok(())
}

async fn bench(
    source: &str,
    destination: &str,
    load: &LoadArgs,
    exactly_once: bool,
    json: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    strait::bench::codec(&load.codec)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let topic = format!("strait-bench-{stamp}");
    // Create the topic first, so replication finds it at once.
    let src = Client::connect(ClientConfig::new(source)).await?;
    src.create_topics(
        &[strait::client::NewTopic {
            name: topic.clone(),
            partitions: load.partitions,
            replication_factor: -1,
            configs: vec![],
        }],
        30_000,
        false,
    )
    .await?;
    let cfg = strait::config::Config::parse(
        &format!(
            "name = \"bench-{stamp}\"\ntopics = [\"{topic}\"]\nrefresh_interval_ms = 1000\nexactly_once = {exactly_once}\n[source]\nbootstrap_servers = \"{source}\"\n[destination]\nbootstrap_servers = \"{destination}\"\n"
        ),
        "bench",
    )?;
    let loader = std::process::Command::new(std::env::current_exe()?)
        .args(["load", "--bootstrap", source, "--topic", &topic])
        .args([
            "--records",
            &load.records.to_string(),
            "--record-size",
            &load.record_size.to_string(),
        ])
        .args(["--codec", &load.codec, "--partitions", &load.partitions.to_string()])
        .args([
            "--keys",
            &load.keys.to_string(),
            "--batch-records",
            &load.batch_records.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()?;
    if !json {
        eprintln!(
            "bench: loading {} records of {} B ({}) into {topic} while replicating it",
            load.records, load.record_size, load.codec
        );
    }
    let report = strait::bench::bench(cfg, load.records, loader).await?;
    if json {
        println!("{}", report.json());
    } else {
        println!("{}", report.text());
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled: the engine polls it from its main
/// loop, which can be busy (a first topic refresh) while a signal arrives, and an
/// uninstalled SIGTERM kills the process without draining or checkpointing.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = signal(SignalKind::terminate()).and_then(|t| Ok((t, signal(SignalKind::interrupt())?)));
    async move {
        match handlers {
            Ok((mut term, mut int)) => tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            },
            Err(_) => std::future::pending().await,
        }
    }
}

async fn describe(bootstrap: &str) -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::connect(ClientConfig::new(bootstrap)).await?;
    let md = client.refresh_metadata(None).await?;
    println!("cluster {}", md.cluster_id.as_deref().unwrap_or("?"));
    let mut brokers: Vec<_> = md.brokers.values().collect();
    brokers.sort_by_key(|b| b.node_id);
    for b in brokers {
        let conn = client.broker(b.node_id).await?;
        let produce = conn.version_of::<kafka_protocol::messages::ProduceRequest>()?;
        let fetch = conn.version_of::<kafka_protocol::messages::FetchRequest>()?;
        println!(
            "broker {} {} (Produce v{produce}, Fetch v{fetch})",
            b.node_id,
            b.address()
        );
    }
    let mut topics: Vec<_> = md.topics.values().filter(|t| !t.is_internal).collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    for t in topics {
        println!("topic {} partitions={}", t.name, t.partitions.len());
    }
    Ok(())
}
