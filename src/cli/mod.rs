//! The `strait` command line: argument parsing and one function per command.
//! The replication itself is in the library; this module only wires it to
//! arguments, files, signals and the terminal.

mod bench;
mod check;
mod failover;
mod import_mm2;
mod pace;
mod status;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use strait::client::{Client, ClientConfig};

/// Exit statuses, listed in every help that has them.
const EXIT_CODES: &str = "\
Exit status:
  0  success
  1  failure: the error names the cluster and the reason (a partition stopped
     for `run`, a problem found for `check`, a consumer-group partition left
     untranslated for `failover`)
  2  command-line usage error";

/// Exit statuses of `import-mm2`.
const IMPORT_EXIT_CODES: &str = "\
Exit status:
  0  a config was written (report lines marked unsupported or unknown need action)
  1  nothing written: the file cannot be read, is not a MirrorMaker 2 config, or
     holds what cannot be converted faithfully (a flow naming an undefined
     cluster, a custom replication policy, an exclude regex Rust cannot run)
  2  command-line usage error";

/// What `--threads` does, in the top-level help only (the measurements behind
/// it: `docs/design.md`, "Performance notes").
const THREADS_HELP: &str = "\
Threads: strait runs on one thread by default (every command but `bench` and
`load`): no cross-thread wake-ups, less CPU per GB and less memory than two
threads in the benchmarks. Add threads (--threads N or STRAIT_THREADS) only
when strait saturates one core.";

/// strait: a pure-Rust replicator for Apache Kafka.
#[derive(Debug, Parser)]
#[command(name = "strait", version, about, long_about = None, after_help = format!("{THREADS_HELP}\n\n{EXIT_CODES}"))]
struct Cli {
    /// Log format on stderr: human or json. Level from RUST_LOG (default info for run, warn otherwise).
    #[arg(long, global = true, default_value = "human", env = "STRAIT_LOG_FORMAT", value_parser = ["human", "json"])]
    log_format: String,
    /// Worker threads (default 1; more only when strait saturates a core, see `strait --help`).
    #[arg(long, global = true, env = "STRAIT_THREADS", value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replicates topics from the source to the destination cluster until SIGINT/SIGTERM.
    #[command(after_help = EXIT_CODES)]
    Run {
        /// Path of the TOML config (`strait example-config` prints an annotated one).
        #[arg(long)]
        config: PathBuf,
        /// Seconds between progress lines (records/s, MB/s, lag per topic); 0 turns them off.
        #[arg(long, default_value_t = 5)]
        progress: u64,
        /// This process's static member id in the replication group (default:
        /// the config's `instance_id`, else the host name). Processes of one
        /// replication need distinct ids.
        #[arg(long, env = "STRAIT_INSTANCE_ID")]
        instance_id: Option<String>,
    },
    /// Prints an annotated example configuration.
    ExampleConfig {
        /// active-passive (one flow; the default), active-active (two-way,
        /// identity names) or aggregation (several sources into one cluster).
        #[arg(long, default_value = "active-passive", value_parser = ["active-passive", "active-active", "aggregation"])]
        topology: String,
    },
    /// Drains replication, syncs the groups' offsets exactly, stops, prepares
    /// failback, and prints what consumers must change.
    #[command(after_help = EXIT_CODES)]
    Failover {
        /// Path of the TOML config.
        #[arg(long)]
        config: PathBuf,
        /// Consumer groups to move (repeatable; default: the config's `groups`).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// The flow to fail over, when the config has several.
        #[arg(long)]
        flow: Option<String>,
        /// The source is gone: fail over touching only the destination, and
        /// mark the replication failed over (`strait run` of this direction
        /// refuses until `--reset`).
        #[arg(long, conflicts_with = "reset")]
        unplanned: bool,
        /// Clears the failed-over mark of an unplanned failover (after
        /// failback), so this direction may run again.
        #[arg(long)]
        reset: bool,
    },
    /// Replicates destination → source from where failover left off (new records
    /// only) until SIGINT/SIGTERM.
    Failback {
        /// Path of the TOML config of the original replication.
        #[arg(long)]
        config: PathBuf,
        /// The flow to fail back, when the config has several.
        #[arg(long)]
        flow: Option<String>,
        /// Only report the diverged records (on the original source, never
        /// replicated); copy nothing.
        #[arg(long)]
        dry_run: bool,
        /// Seconds between progress lines; 0 turns them off.
        #[arg(long, default_value_t = 5)]
        progress: u64,
    },
    /// Shows every live member of each flow's replication group (the `strait
    /// run` processes sharing it), with their partitions and lag.
    #[command(after_help = EXIT_CODES)]
    Status {
        /// Path of the TOML config.
        #[arg(long)]
        config: PathBuf,
        /// Only this flow, when the config has several.
        #[arg(long)]
        flow: Option<String>,
        /// One JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Consumer-offset tools.
    Offsets {
        #[command(subcommand)]
        command: OffsetsCommand,
    },
    /// Connects to both clusters of a config and reports broker versions, matched
    /// topics and missing permissions; exits non-zero if a run would fail.
    #[command(after_help = EXIT_CODES)]
    Check {
        /// Path of the TOML config.
        #[arg(long)]
        config: PathBuf,
        /// The throughput (MB/s) for which to report, from each broker's
        /// measured round trip, the bytes that must be in flight.
        #[arg(long, default_value_t = 100)]
        target_mb_per_s: u64,
    },
    /// Measures a replication: loads a fresh source topic (in a separate process)
    /// while replicating it, then reports throughput, latency, CPU and memory.
    Bench {
        /// Source cluster bootstrap servers (plaintext, no authentication).
        #[arg(long, required_unless_present = "config", conflicts_with = "config")]
        source: Option<String>,
        /// Destination cluster bootstrap servers (plaintext, no authentication).
        #[arg(long, required_unless_present = "config", conflicts_with = "config")]
        destination: Option<String>,
        /// Take both clusters (with their TLS and SASL settings) from this config file instead.
        #[arg(long)]
        config: Option<PathBuf>,
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
        #[command(flatten)]
        cluster: ClusterArgs,
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
        config: PathBuf,
    },
    /// Converts a MirrorMaker 2 config (a dedicated-mode properties file or a
    /// Strimzi KafkaMirrorMaker2 resource) to a strait config on stdout; the
    /// report on stderr names every input key (converted, not needed,
    /// unsupported, unknown).
    #[command(after_help = IMPORT_EXIT_CODES)]
    ImportMm2 {
        /// The MM2 file: `connect-mirror-maker.properties` or a KafkaMirrorMaker2 YAML.
        file: PathBuf,
    },
    /// Connects to a cluster and prints its brokers, negotiated API versions and topics.
    Describe {
        #[command(flatten)]
        cluster: ClusterArgs,
    },
}

/// One cluster to talk to: a bootstrap list (plaintext, no authentication), or
/// a cluster of a config file with its TLS and SASL settings.
#[derive(Debug, Clone, clap::Args)]
struct ClusterArgs {
    /// Comma-separated bootstrap servers (host:port), plaintext without authentication.
    #[arg(long, required_unless_present = "config", conflicts_with = "config")]
    bootstrap: Option<String>,
    /// A strait config file: connect with the settings (TLS, SASL, timeouts) of one of its clusters.
    #[arg(long)]
    config: Option<PathBuf>,
    /// With --config: `source`, `destination`, or a cluster's alias.
    #[arg(long, default_value = "source", requires = "config")]
    cluster: String,
}

impl ClusterArgs {
    fn client_config(&self) -> Result<ClientConfig, Box<dyn std::error::Error>> {
        match (&self.bootstrap, &self.config) {
            (Some(b), _) => Ok(ClientConfig::new(b)),
            (None, Some(path)) => {
                let c = strait::config::Config::load(path)?;
                let cluster = match self.cluster.as_str() {
                    "source" => &c.source,
                    "destination" => &c.destination,
                    a if a == c.source.alias => &c.source,
                    a if a == c.destination.alias => &c.destination,
                    other => {
                        return Err(format!(
                            "config {} has no cluster {other:?}; allowed: source, destination, {:?}, {:?}",
                            path.display(),
                            c.source.alias,
                            c.destination.alias
                        )
                        .into())
                    }
                };
                Ok(cluster.client_config())
            }
            (None, None) => Err("give --bootstrap or --config".into()),
        }
    }
}

#[derive(Debug, Subcommand)]
enum OffsetsCommand {
    /// Shows a source consumer group's committed offsets and their exact
    /// destination equivalents (from strait's offset map), with lag.
    Translate {
        /// Path of the TOML config of the replication.
        #[arg(long)]
        config: PathBuf,
        /// Consumer group on the source.
        #[arg(long)]
        group: String,
        /// Only this source topic.
        #[arg(long)]
        topic: Option<String>,
        /// The flow whose offset map translates, when the config has several.
        #[arg(long)]
        flow: Option<String>,
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
    /// Records per produced batch (like the producer's batch.size / record size; 1 = 1-record batches);
    /// with --rate, the most one batch carries.
    #[arg(long, default_value_t = 256)]
    batch_records: usize,
    /// Write at this steady rate instead of as fast as possible: `10MB/s` (10^6
    /// bytes of record values per second) or `5000/s` (records per second).
    /// Each partition sends a batch every 5 ms; `bench` then reports the
    /// latency at that load, without its first 3 s.
    #[arg(long)]
    rate: Option<pace::Rate>,
}

impl LoadArgs {
    fn options(&self, client: ClientConfig, topic: &str) -> bench::LoadOptions {
        bench::LoadOptions {
            client,
            topic: topic.to_string(),
            records: self.records,
            record_size: self.record_size,
            codec: self.codec.clone(),
            partitions: self.partitions,
            keys: self.keys,
            batch_records: self.batch_records.max(1),
            rate: self.rate,
        }
    }
}

/// Parses the command line, runs the command, returns the exit status.
pub fn main() -> ExitCode {
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
    let json = cli.log_format == "json";
    let result = rt.block_on(async {
        match cli.command {
            Command::Describe { cluster } => describe(cluster.client_config()?).await,
            Command::Run {
                config,
                progress,
                instance_id,
            } => run(&config, progress, instance_id.as_deref(), json).await,
            Command::Load { cluster, topic, load } => {
                let bytes = bench::load(&load.options(cluster.client_config()?, &topic)).await?;
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
                config,
                load,
                exactly_once,
                json,
            } => {
                let clusters = match (source, destination, config) {
                    (Some(s), Some(d), _) => BenchClusters::Plain(s, d),
                    (_, _, Some(path)) => BenchClusters::Config(path),
                    _ => return Err("give --source and --destination, or --config".into()),
                };
                bench(clusters, &load, exactly_once, json).await
            }
            Command::Status { config, flow, json } => {
                let doc = strait::config::Document::load(&config)?;
                status::status(&doc, flow.as_deref(), json).await
            }
            Command::Offsets {
                command: OffsetsCommand::Translate { config, group, topic, flow },
            } => {
                let c = one_flow(&config, flow.as_deref())?;
                let src = Client::connect(c.source.client_config())
                    .await
                    .map_err(|e| format!("{}: {e}", c.source.label("source")))?;
                let dst = Client::connect(c.destination.client_config())
                    .await
                    .map_err(|e| format!("{}: {e}", c.destination.label("destination")))?;
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
            Command::Failover {
                config,
                groups,
                flow,
                unplanned,
                reset,
            } => {
                let c = one_flow(&config, flow.as_deref())?;
                failover::failover(c, groups, unplanned, reset).await
            }
            Command::Failback {
                config,
                progress,
                flow,
                dry_run,
            } => {
                let c = one_flow(&config, flow.as_deref())?;
                failover::failback(c, progress, dry_run, json, shutdown_signal()).await
            }
            Command::Check {
                config,
                target_mb_per_s,
            } => {
                let doc = strait::config::Document::load(&config)?;
                let report = check::check_document(&doc, target_mb_per_s).await;
                for l in &report.lines {
                    println!("{l}");
                }
                for w in &report.warnings {
                    println!("warning: {w}");
                }
                if report.problems.is_empty() {
                    let names: Vec<&str> = doc.flows.iter().map(|f| f.name.as_str()).collect();
                    println!("ok: a run of {} should work", names.join(", "));
                    Ok(())
                } else {
                    for p in &report.problems {
                        println!("problem: {p}");
                    }
                    Err(format!("{} problem(s) found", report.problems.len()).into())
                }
            }
            Command::ImportMm2 { file } => import_mm2::import_mm2(&file),
            Command::ExampleConfig { topology } => {
                print!("{}", strait::config::example(&topology).unwrap_or(strait::config::EXAMPLE));
                Ok(())
            }
            Command::CheckConfig { config } => {
                let doc = strait::config::Document::load(&config)?;
                for c in &doc.flows {
                    if c.same_bootstrap() {
                        if let Some(problem) = c.self_copy_problem(std::iter::empty()) {
                            return Err(format!("config {}: flow {}: {problem}", config.display(), c.name).into());
                        }
                        println!("note: flow {}: source and destination have the same bootstrap servers: topics are copied inside one cluster under their renamed names (`strait check` verifies the selection does not match the copies)", c.name);
                    }
                }
                let problems = strait::topology::problems(&doc);
                if doc.flows.len() > 1 {
                    for l in strait::topology::describe(&doc) {
                        println!("{l}");
                    }
                }
                for c in &doc.flows {
                    println!(
                        "replication {:?}: {} -> {}; checkpoint group {}; offset map topic {}",
                        c.name,
                        c.source.bootstrap_servers.get_ref(),
                        c.destination.bootstrap_servers.get_ref(),
                        c.checkpoint_group(),
                        c.offset_map_topic()
                    );
                }
                if problems.is_empty() {
                    Ok(())
                } else {
                    Err(format!("config {}: {}", config.display(), problems.join("; ")).into())
                }
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                tracing::error!(error = %e, "strait failed");
            } else {
                eprintln!("error: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(
    path: &Path,
    progress: u64,
    instance_id: Option<&str>,
    json: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut doc = strait::config::Document::load(path)?;
    if let Some(id) = instance_id {
        doc.set_instance_id(id)?;
    }
    let progress = (progress > 0).then(|| std::time::Duration::from_secs(progress));
    // Bind first: an address in use is a clear error before anything connects.
    let listener = match doc.ops.metrics_address {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?,
        ),
        None => None,
    };
    let several = doc.flows.len() > 1;
    let mut endpoint = None;
    let result = strait::replicate::run_document(doc, shutdown_signal(), progress, |handles| {
        endpoint = listener.map(|l| strait::replicate::exposition::spawn_endpoint(l, handles));
    })
    .await;
    if let Some(task) = endpoint {
        task.abort();
    }
    let mut failures = Vec::new();
    for outcome in result? {
        let flow = if several {
            format!("flow {}: ", outcome.flow)
        } else {
            String::new()
        };
        let summary = match outcome.result {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{flow}{e}"));
                continue;
            }
        };
        if json {
            tracing::info!(
                flow = %outcome.flow,
                records = summary.records,
                megabytes = summary.bytes as f64 / 1e6,
                batches_raw = summary.batches_fast,
                batches_reencoded = summary.batches_slow,
                partitions_stopped = summary.stopped.len(),
                "stopped"
            );
        } else {
            eprintln!(
                "{flow}stopped: {} records, {:.1} MB replicated ({} batches raw, {} re-encoded)",
                summary.records,
                summary.bytes as f64 / 1e6,
                summary.batches_fast,
                summary.batches_slow
            );
        }
        for s in &summary.stopped {
            if json {
                tracing::error!(flow = %outcome.flow, reason = %s, "partition stopped");
            } else {
                eprintln!("{flow}partition stopped: {s}");
            }
        }
        if !summary.stopped.is_empty() {
            failures.push(format!(
                "{flow}{} partition(s) stopped on errors",
                summary.stopped.len()
            ));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; ").into())
    }
}

/// The flow `name` of a config (its only flow when `None`).
fn one_flow(path: &Path, name: Option<&str>) -> Result<strait::config::Config, Box<dyn std::error::Error>> {
    let doc = strait::config::Document::load(path)?;
    Ok(doc
        .flow(name)
        .map_err(|e| format!("config {}: {e}", path.display()))?
        .clone())
}

/// Where `bench` finds its clusters.
enum BenchClusters {
    /// Plaintext bootstrap lists.
    Plain(String, String),
    /// The source and destination of a config file.
    Config(PathBuf),
}

async fn bench(
    clusters: BenchClusters,
    load: &LoadArgs,
    exactly_once: bool,
    json: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    bench::codec(&load.codec)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let topic = format!("strait-bench-{stamp}");
    let settings = format!(
        "name = \"bench-{stamp}\"\ntopics = [\"{topic}\"]\nrefresh_interval_ms = 1000\nexactly_once = {exactly_once}\nheartbeats = false\nsync_acls = false\n"
    );
    let (cfg, loader_cluster) = match &clusters {
        BenchClusters::Plain(source, destination) => (
            strait::config::Config::parse(
                &format!("{settings}[source]\nbootstrap_servers = \"{source}\"\n[destination]\nbootstrap_servers = \"{destination}\"\n"),
                "bench",
            )?,
            vec!["--bootstrap".to_string(), source.clone()],
        ),
        BenchClusters::Config(path) => {
            let file = strait::config::Config::load(path)?;
            let mut c = strait::config::Config::parse(
                &format!("{settings}[source]\nbootstrap_servers = \"127.0.0.1:1\"\n[destination]\nbootstrap_servers = \"127.0.0.1:1\"\n"),
                "bench",
            )?;
            c.source = file.source;
            c.destination = file.destination;
            (
                c,
                vec![
                    "--config".to_string(),
                    path.display().to_string(),
                    "--cluster".to_string(),
                    "source".to_string(),
                ],
            )
        }
    };
    // Create the topic first, so replication finds it at once.
    let src = Client::connect(cfg.source.client_config()).await?;
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
    let loader = std::process::Command::new(std::env::current_exe()?)
        .arg("load")
        .args(&loader_cluster)
        .args(["--topic", &topic])
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
        .args(load.rate.iter().flat_map(|r| ["--rate".to_string(), r.to_string()]))
        .stdout(std::process::Stdio::null())
        .spawn()?;
    if !json {
        eprintln!(
            "bench: loading {} records of {} B ({}) into {topic}{} while replicating it",
            load.records,
            load.record_size,
            load.codec,
            load.rate.map_or(String::new(), |r| format!(" at {r}"))
        );
    }
    let report = bench::bench(cfg, load.records, load.rate, load.record_size, loader).await?;
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

async fn describe(client: ClientConfig) -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::connect(client).await?;
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
