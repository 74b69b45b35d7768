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
    /// Connects to a cluster and prints its brokers, negotiated API versions and topics.
    Describe {
        /// Comma-separated bootstrap servers (host:port).
        #[arg(long)]
        bootstrap: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
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
