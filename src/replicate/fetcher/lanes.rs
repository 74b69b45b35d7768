//! Fetch lanes: several connections per source broker, each with its own
//! fetch session and its share of the broker's partitions, sized from the
//! measured round trip, so a long round trip does not cap throughput at one
//! fetch response per round trip (a broker answers one request per connection
//! at a time).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tracing::debug;

use super::{Fetchers, Key};

/// At most this many fetch connections (lanes) per source broker.
pub const MAX_LANES: usize = 8;
/// One lane per this much round trip: a LAN (a few ms) keeps one.
pub(in crate::replicate) const RTT_PER_LANE: Duration = Duration::from_millis(15);
/// How often a broker's round trip is measured.
pub(in crate::replicate) const PROBE_EVERY: Duration = Duration::from_secs(5);
/// The connection (lane number) round trips are measured on: idle otherwise,
/// so nothing queued ahead of the probe inflates it.
pub(in crate::replicate) const PROBE_LANE: usize = 64;
/// Bytes per second a broker's fetches are sized for across a long round
/// trip: the budget grows to this rate times the round trip (up to its
/// ceiling), enough for a 10 Gbit/s-class link's share per broker.
pub(in crate::replicate) const WAN_RATE: f64 = 400e6;
/// Round trips a fetched byte holds budget for: one as its fetch's
/// reservation, about one more buffered until the destination acknowledged it
/// (the lanes' responses arrive together and are written one after another).
/// At 150 ms, 400 MB/s × one round trip (74 MiB) kept the budget full at
/// about 200 MB/s; with 128 MiB the destination was the bound (250 MB/s).
const HELD_TRIPS: f64 = 2.0;

/// A source broker's lanes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lanes {
    pub(super) count: usize,
    pub(super) rtt: Duration,
}

/// The fetch lanes (connections) of a broker at round trip `rtt`: one per
/// [`RTT_PER_LANE`], up to [`MAX_LANES`].
pub fn lanes_for(rtt: Duration) -> usize {
    ((rtt.as_secs_f64() / RTT_PER_LANE.as_secs_f64()).ceil() as usize).clamp(1, MAX_LANES)
}

/// The most one of `loops` fetch loops asks of a `limit`-byte budget when
/// `idle` of them (`me_idle`: this one among them) had an empty last
/// response: an idle loop one partition's worth (`partition_max`), at most an
/// equal part; a busy one an equal part of what the idle ones leave, at least
/// an equal part of the whole.
pub(super) fn share(limit: usize, loops: usize, idle: usize, me_idle: bool, partition_max: usize) -> usize {
    let loops = loops.max(1);
    let equal = (limit / loops).max(1);
    let idle_ask = partition_max.min(equal);
    if me_idle {
        return idle_ask;
    }
    let busy = loops.saturating_sub(idle).max(1);
    (limit.saturating_sub(idle * idle_ask) / busy).max(equal)
}

/// The partitions of one broker that lane `lane` of `count` fetches: dealt in
/// turn, in key order, so every lane gets its share (a hash left some lanes
/// with two or three partitions and others with none: 8 partitions on 8
/// lanes kept about 5 busy). A partition is fetched by one lane at a time
/// (order holds) while the broker's partitions and lane count stay the same.
/// When either changes a partition may move; a response to its old lane's
/// fetch then no longer matches its fetch offset and is dropped.
pub(super) fn dealt<T>(mut of_broker: Vec<(Key, T)>, count: usize, lane: usize) -> Vec<(Key, T)> {
    if count <= 1 {
        return of_broker;
    }
    of_broker.sort_by(|a, b| a.0.cmp(&b.0));
    of_broker
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % count == lane)
        .map(|(_, x)| x)
        .collect()
}

/// Measures broker `node`'s round trip every [`PROBE_EVERY`] and sizes its
/// lanes and its share of the memory budget to it: one lane per
/// [`RTT_PER_LANE`] (up to [`MAX_LANES`]), and [`WAN_RATE`] × [`HELD_TRIPS`]
/// round trips of bytes in flight; warns once when the socket receive buffers cannot hold
/// them ([`crate::client::sockbuf::warn_short_window`]). Runs while lane 0 of
/// the broker runs.
pub(super) async fn rtt_watch(f: Arc<Fetchers>, node: i32) {
    let key = format!("fetch-{:p}-{node}", Arc::as_ptr(&f));
    let mut first = true;
    loop {
        if f.stopping.load(Ordering::SeqCst) || !crate::sync::lock(&f.running).contains(&(node, 0)) {
            f.budget.budget().want(&key, 0);
            return;
        }
        // The first estimate is the probe connection's handshake, so a far
        // broker gets its lanes one round trip after the start instead of
        // four (three probes after the handshake took 0.45 s at 150 ms, a
        // tenth of a 1 GB catch-up on one lane); later ones take the least of
        // three probes.
        let probe = async {
            let conn = f.src.broker_lane(node, PROBE_LANE).await.ok()?;
            if std::mem::take(&mut first) {
                Some(conn.handshake_round_trip())
            } else {
                conn.round_trip(3).await
            }
        };
        if let Some(rtt) = probe.await {
            let count = lanes_for(rtt);
            let before = crate::sync::lock(&f.lanes).insert(node, Lanes { count, rtt });
            let want = if count > 1 {
                (WAN_RATE * HELD_TRIPS * rtt.as_secs_f64()) as usize
            } else {
                0
            };
            let limit = f.budget.budget().want(&key, want);
            if count > 1 {
                let c = f.src.config();
                let configured = c.socket_buffers.receive;
                crate::client::sockbuf::warn_short_window(&c.cluster, node, rtt, limit as u64, count, configured);
            }
            if before.is_none_or(|b| b.count != count) {
                debug!(
                    broker = node,
                    rtt_ms = rtt.as_secs_f64() * 1e3,
                    lanes = count,
                    budget = limit,
                    "fetch lanes sized to the round trip"
                );
                if count > 1 {
                    tracing::info!(
                        broker = node,
                        rtt_ms = (rtt.as_secs_f64() * 1e4).round() / 10.0,
                        lanes = count,
                        buffered_limit_mib = limit / (1024 * 1024),
                        "long round trip to a source broker: fetching over several connections"
                    );
                }
            }
            f.start_lanes(node);
        }
        let stopped = async {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if f.stopping.load(Ordering::SeqCst) {
                    return;
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(PROBE_EVERY) => {}
            _ = stopped => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caught_up_lanes_ask_little_and_leave_the_budget_to_busy_ones() {
        const MIB: usize = 1 << 20;
        // 128 MiB over 8 lanes, none idle: an equal part each.
        assert_eq!(share(128 * MIB, 8, 0, false, 4 * MIB), 16 * MIB);
        // 7 caught up: they ask 4 MiB each, the last busy lane the other 100 MiB.
        assert_eq!(share(128 * MIB, 8, 7, true, 4 * MIB), 4 * MIB);
        assert_eq!(share(128 * MIB, 8, 7, false, 4 * MIB), 100 * MIB);
        // A small budget: an idle lane asks at most an equal part.
        assert_eq!(share(16 * MIB, 8, 4, true, 4 * MIB), 2 * MIB);
        assert_eq!(share(16 * MIB, 8, 4, false, 4 * MIB), 2 * MIB);
        // One lane (a LAN): the whole budget while busy, one partition's worth idle.
        assert_eq!(share(16 * MIB, 1, 0, false, 4 * MIB), 16 * MIB);
        assert_eq!(share(16 * MIB, 1, 1, true, 4 * MIB), 4 * MIB);
        assert_eq!(share(16 * MIB, 0, 0, false, 4 * MIB), 16 * MIB);
    }

    #[test]
    fn partitions_are_dealt_evenly_and_each_to_one_lane() {
        let keys: Vec<(Key, ())> = (0..8).rev().map(|p| ((Arc::from("t"), p), ())).collect();
        let mut seen = Vec::new();
        for lane in 0..8 {
            let mine = dealt(keys.clone(), 8, lane);
            assert_eq!(mine.len(), 1, "lane {lane}");
            seen.extend(mine.into_iter().map(|(k, _)| k.1));
        }
        seen.sort();
        assert_eq!(seen, (0..8).collect::<Vec<_>>());
        let three: Vec<usize> = (0..3).map(|l| dealt(keys.clone(), 3, l).len()).collect();
        assert_eq!(three, vec![3, 3, 2]);
        assert_eq!(dealt(keys.clone(), 1, 0).len(), 8);
    }
}
