//! One sender task per destination broker: takes the next request from the
//! queue, submits it in order on the broker's connection (pipelined, up to 8
//! requests in flight: the broker answers one connection's requests in
//! order), and hands each answer back to the queue.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use tokio::sync::Semaphore;

use super::decide::Answer;
use super::queue::{Outgoing, PartKey};
use super::Producer;
use crate::client::txn::produce_version;
use crate::protocol::ProduceTopic;

/// Produce requests pipelined on one connection.
const PIPELINE: usize = 8;

/// The sender of broker `node`; ends when the producer stops.
pub(super) async fn run(p: Arc<Producer>, node: i32) {
    let slots = Arc::new(Semaphore::new(PIPELINE));
    let txn_id = p.settings.transactional_id.clone();
    loop {
        let wake = p.wake.notified();
        if p.stopping.load(Ordering::SeqCst) {
            return;
        }
        let batch = p.next_request(node);
        if batch.is_empty() {
            tokio::select! {
                _ = wake => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            continue;
        }
        let permit = slots.clone().acquire_owned().await.expect("semaphore never closed");
        let sent: Vec<(PartKey, u64)> = batch.iter().map(|o| (o.key.clone(), o.entry)).collect();
        if !p.open() {
            // The member lost its group while waiting for a slot: these go back.
            p.complete(&sent, Err("not a live member of the replication group".into()));
            drop(permit);
            continue;
        }
        let topics = by_topic(batch);
        let conn = match p.dst.broker(node).await {
            Ok(c) => c,
            Err(e) => {
                p.complete(&sent, Err(e.to_string()));
                drop(permit);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        // Submit here, in order; only the wait for the answer runs concurrently.
        let submitted = match conn.version_of::<ProduceRequest>() {
            Ok(version) => {
                let version = produce_version(version, txn_id.as_deref());
                conn.submit_produce(version, txn_id.as_deref(), -1, p.settings.timeout_ms, &topics)
                    .await
            }
            Err(e) => Err(e),
        };
        let pending = match submitted {
            Ok(pending) => pending,
            Err(e) => {
                p.complete(&sent, Err(e.to_string()));
                drop(permit);
                continue;
            }
        };
        let p2 = p.clone();
        tokio::spawn(async move {
            let result = pending
                .response()
                .await
                .map(|resp| answers(&p2, resp))
                .map_err(|e| e.to_string());
            p2.complete(&sent, result);
            drop(permit);
        });
    }
}

/// Groups a request's batches by destination topic.
fn by_topic(batch: Vec<Outgoing>) -> Vec<ProduceTopic> {
    let mut topics: Vec<ProduceTopic> = Vec::new();
    for o in batch {
        match topics.iter_mut().find(|t| t.name == *o.key.0) {
            Some(t) => t.partitions.push(o.batch),
            None => topics.push(ProduceTopic {
                name: o.key.0.to_string(),
                topic_id: o.topic_id,
                partitions: vec![o.batch],
            }),
        }
    }
    topics
}

/// A Produce response as answers by partition.
fn answers(p: &Producer, resp: ProduceResponse) -> HashMap<PartKey, Answer> {
    let mut map = HashMap::new();
    for t in resp.responses {
        let name: Arc<str> = if t.name.0.is_empty() {
            // Produce v13 answers by topic id.
            p.topic_name(t.topic_id).unwrap_or_else(|| Arc::from(""))
        } else {
            Arc::from(t.name.0.as_str())
        };
        for pr in t.partition_responses {
            map.insert(
                (name.clone(), pr.index),
                Answer {
                    code: pr.error_code,
                    base_offset: pr.base_offset,
                    message: pr.error_message.map(|m| m.to_string()),
                },
            );
        }
    }
    map
}
