//! Automated failover (`[failover] auto = true`).
//!
//! strait alone cannot tell a dead source from a cut WAN link: from one side
//! both look the same. So it fails over only when two things agree:
//! - its own observation: every source broker has been unreachable (no TCP
//!   connection, or no answer to ApiVersions) for `source_unavailable_s`, while
//!   the destination answers. An authentication or authorization refusal is an
//!   answer: the source is there, and the clock starts again;
//! - a witness: the `confirm` command (a probe from a third site, a cloud
//!   provider's health API) exits 0.
//!
//! Then the flow stops replicating and performs the unplanned failover
//! ([`super::failover`]: the record on the destination, the failed-over mark,
//! the write ACLs), shows it in `/status` and `strait_failed_over`, and runs the
//! `on_failover` hook once (DNS, a service registry).

use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::client::{Client, ClientError};
use crate::config::{AutoFailover, Config};

/// How often the source is probed.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// What a probe of the source found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A broker answered.
    Up,
    /// A broker answered with a refusal (authentication, authorization, TLS):
    /// the source is there.
    Refusing(String),
    /// No broker could be reached.
    Unreachable(String),
}

/// Classifies a failed connection to the source.
pub fn classify(e: &ClientError) -> Probe {
    match e {
        ClientError::Connect { .. }
        | ClientError::Io { .. }
        | ClientError::Timeout { .. }
        | ClientError::Closed { .. }
        | ClientError::Protocol { .. }
        | ClientError::NoBrokerReachable { .. } => Probe::Unreachable(e.to_string()),
        other => Probe::Refusing(other.to_string()),
    }
}

async fn probe(cfg: &Config) -> Probe {
    let mut c = cfg.source.client_config();
    c.connect_timeout = c.connect_timeout.min(Duration::from_secs(3));
    c.connection.request_timeout = c.connection.request_timeout.min(Duration::from_secs(3));
    match Client::probe(c).await {
        Ok(_) => Probe::Up,
        Err(e) => classify(&e),
    }
}

/// Runs `cmd` with `{destination}` and `{flow}` replaced; true when it exits 0
/// within `timeout`.
pub async fn run_command(cmd: &[String], cfg: &Config, timeout: Duration, what: &str) -> bool {
    let args: Vec<String> = cmd
        .iter()
        .map(|a| {
            a.replace("{destination}", cfg.destination.bootstrap_servers.get_ref())
                .replace("{flow}", &cfg.name)
        })
        .collect();
    let Some((program, rest)) = args.split_first() else {
        return false;
    };
    let child = tokio::process::Command::new(program)
        .args(rest)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .status();
    match tokio::time::timeout(timeout, child).await {
        Ok(Ok(status)) if status.success() => true,
        Ok(Ok(status)) => {
            info!(command = %args.join(" "), %status, "{what} did not confirm");
            false
        }
        Ok(Err(e)) => {
            warn!(command = %args.join(" "), error = %e, "cannot run the {what}");
            false
        }
        Err(_) => {
            warn!(command = %args.join(" "), timeout_s = timeout.as_secs(), "the {what} did not finish in time");
            false
        }
    }
}

/// Waits until the source has been unreachable for `auto.source_unavailable`
/// while `dst` answers, and the witness confirms. Returns why.
pub async fn watch(cfg: &Config, auto: &AutoFailover, dst: &Client) -> String {
    let mut down_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        match probe(cfg).await {
            Probe::Up => down_since = None,
            Probe::Refusing(why) => {
                if down_since.take().is_some() {
                    info!(reason = %why, "the source answers (with a refusal): not a failover");
                }
            }
            Probe::Unreachable(why) => {
                let since = *down_since.get_or_insert_with(|| {
                    warn!(reason = %why, after_s = auto.source_unavailable.as_secs(), "every source broker is unreachable; automated failover if it stays so and the witness confirms");
                    Instant::now()
                });
                if since.elapsed() < auto.source_unavailable {
                    continue;
                }
                if let Err(e) = dst.refresh_metadata(Some(&[])).await {
                    warn!(error = %e, "the source is unreachable but so is the destination: no failover");
                    continue;
                }
                if run_command(&auto.confirm, cfg, auto.confirm_timeout, "failover witness").await {
                    return format!(
                        "every source broker unreachable for {} s ({why}); the witness confirmed",
                        since.elapsed().as_secs()
                    );
                }
                // Not confirmed: observe a full period again before asking again.
                down_since = Some(Instant::now());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_failing_or_slow_commands_do_not_confirm() {
        let cfg = Config::parse(
            "name = \"f\"\n[source]\nbootstrap_servers = \"a:1\"\n[destination]\nbootstrap_servers = \"b:2\"\n",
            "t.toml",
        )
        .unwrap();
        let t = Duration::from_secs(5);
        let cmd = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(!run_command(&cmd(&["/nonexistent/witness"]), &cfg, t, "witness").await);
        assert!(!run_command(&cmd(&["/bin/sh", "-c", "exit 3"]), &cfg, t, "witness").await);
        assert!(!run_command(&cmd(&["/bin/sleep", "5"]), &cfg, Duration::from_millis(200), "witness").await);
        assert!(!run_command(&[], &cfg, t, "witness").await);
        // Placeholders are replaced.
        assert!(
            run_command(
                &cmd(&["/bin/sh", "-c", "test \"$0 $1\" = \"b:2 f\"", "{destination}", "{flow}"]),
                &cfg,
                t,
                "witness"
            )
            .await
        );
    }

    #[test]
    fn refusals_are_not_unreachability() {
        let down = ClientError::Connect {
            broker: "b:1".into(),
            reason: "connection refused".into(),
        };
        assert!(matches!(classify(&down), Probe::Unreachable(_)));
        let auth = ClientError::Auth {
            broker: "b:1".into(),
            mechanism: "PLAIN",
            reason: "invalid credentials".into(),
        };
        assert!(matches!(classify(&auth), Probe::Refusing(_)));
    }
}
