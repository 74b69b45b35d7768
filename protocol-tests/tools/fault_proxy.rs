//! The test harness's fault-injecting proxy (`protocol-tests/harness/proxy.rs`)
//! as a process, for scripts such as `protocol-tests/soak.sh`.
//!
//! ```text
//! cargo run --release --example fault_proxy -- LISTEN:TARGET [LISTEN:TARGET...]
//! ```
//!
//! Forwards 127.0.0.1:LISTEN to 127.0.0.1:TARGET for every pair, and reads one
//! command per line on stdin, applied to every pair:
//!
//! ```text
//! latency MS | bandwidth BYTES_PER_S | reset | reset_ppm N | truncate_ppm N
//! corrupt_ppm N | stall SECONDS | clear | stats
//! ```
//!
//! `stats` prints one line of counters on stdout; other commands print `ok`.
//! The proxy exits when stdin closes.

#[path = "../harness/mod.rs"]
mod harness;
#[path = "../harness/proxy.rs"]
mod proxy;

use std::sync::atomic::Ordering;
use std::time::Duration;

use proxy::{Faults, Proxy};
use tokio::io::AsyncBufReadExt;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut proxies = Vec::new();
    for arg in std::env::args().skip(1) {
        let Some((l, t)) = arg
            .split_once(':')
            .and_then(|(l, t)| Some((l.parse().ok()?, t.parse().ok()?)))
        else {
            eprintln!("fault_proxy: bad pair {arg:?} (want LISTEN:TARGET)");
            std::process::exit(2);
        };
        match Proxy::start(l, t).await {
            Ok(p) => proxies.push(p),
            Err(e) => {
                eprintln!("fault_proxy: cannot listen on {l}: {e}");
                std::process::exit(1);
            }
        }
    }
    if proxies.is_empty() {
        eprintln!("usage: fault_proxy LISTEN:TARGET [LISTEN:TARGET...] (commands on stdin)");
        std::process::exit(2);
    }
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut w = line.split_whitespace();
        let (cmd, arg) = (w.next().unwrap_or(""), w.next().and_then(|a| a.parse::<u64>().ok()));
        let each = |f: &dyn Fn(&Faults)| proxies.iter().for_each(|p| f(&p.faults));
        let n = arg.unwrap_or(0);
        match cmd {
            "latency" => each(&|f| f.latency_ms.store(n, Ordering::Relaxed)),
            "bandwidth" => each(&|f| f.bandwidth.store(n, Ordering::Relaxed)),
            "reset" => each(&|f| f.reset_all()),
            "reset_ppm" => each(&|f| f.reset_ppm.store(n as u32, Ordering::Relaxed)),
            "truncate_ppm" => each(&|f| f.truncate_ppm.store(n as u32, Ordering::Relaxed)),
            "corrupt_ppm" => each(&|f| f.corrupt_ppm.store(n as u32, Ordering::Relaxed)),
            "stall" => each(&|f| f.stall(Duration::from_secs(n))),
            "clear" => each(&|f| f.clear()),
            "stats" => {
                let sum = |c: fn(&Faults) -> &std::sync::atomic::AtomicU64| -> u64 {
                    proxies.iter().map(|p| c(&p.faults).load(Ordering::Relaxed)).sum()
                };
                println!(
                    "connections={} frames={} resets={} truncated={} corrupted={}",
                    sum(|f| &f.connections),
                    sum(|f| &f.frames),
                    sum(|f| &f.resets),
                    sum(|f| &f.truncated),
                    sum(|f| &f.corrupted)
                );
                continue;
            }
            "" => continue,
            other => {
                eprintln!("fault_proxy: unknown command {other:?}");
                continue;
            }
        }
        println!("ok");
    }
}
