//! The `strait` command line. Parsing lives here only; the work is in the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use strait::client::{Client, ClientConfig};

/// strait: a pure-Rust replicator for Apache Kafka.
#[derive(Debug, Parser)]
#[command(name = "strait", version, about, long_about = None)]
struct Cli {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Run { .. }) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_level.into()))
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
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

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
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
