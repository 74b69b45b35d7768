//! The round trip to each destination broker, measured like the fetch side's
//! ([`crate::replicate::fetcher`] lanes): the best of three ApiVersions
//! requests on a connection of its own, every few seconds. A broker at
//! [`super::FAR_RTT`] or more is far: its partitions' queues merge larger
//! batches ([`super::merge::deep_below`]), and the memory budget grows by
//! [`WAN_RATE`] × round trip, since fetched data is held until the far
//! destination acknowledges it (16 MiB held capped a 150 ms destination at
//! 36 MB/s); half of that growth is kept for merged batches.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::info;

use super::{Producer, FAR_RTT};
use crate::replicate::fetcher::{PROBE_EVERY, PROBE_LANE, WAN_RATE};

/// Measures broker `node`'s round trip until the producer stops, marking the
/// broker far or near in the queue; logs when that changes.
pub(super) async fn watch(p: Arc<Producer>, node: i32) {
    let key = format!("produce-{:p}-{node}", Arc::as_ptr(&p));
    // Of what a far broker adds to the budget, half is kept for merged batches.
    let want = |bytes: usize| {
        p.budget.get().map(|b| {
            b.keep_for_merging(&key, bytes / 2);
            b.want(&key, bytes)
        })
    };
    loop {
        if p.stopping.load(Ordering::SeqCst) {
            want(0);
            return;
        }
        if let Some(rtt) = async { p.dst.broker_lane(node, PROBE_LANE).await.ok()?.round_trip(3).await }.await {
            let far = rtt >= FAR_RTT;
            let limit = want(if far {
                (WAN_RATE * rtt.as_secs_f64()) as usize
            } else {
                0
            });
            let changed = {
                let mut q = p.queue();
                if far {
                    q.far.insert(node)
                } else {
                    q.far.remove(&node)
                }
            };
            if changed {
                info!(
                    broker = node,
                    rtt_ms = (rtt.as_secs_f64() * 1e4).round() / 10.0,
                    far,
                    buffered_limit_mib = limit.unwrap_or(0) / (1024 * 1024),
                    "round trip to a destination broker: batches queued past the in-flight window merge {}",
                    if far { "up to 512 KiB" } else { "when below 64 KiB each" }
                );
            }
        }
        let deadline = Instant::now() + PROBE_EVERY;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if p.stopping.load(Ordering::SeqCst) {
                want(0);
                return;
            }
        }
    }
}
