//! Exactly-once mode: the transaction loop.
//!
//! One transaction at a time, with the transactional id `strait-{name}`:
//! partitions join it (AddPartitionsToTxn) when their first batch is ready,
//! batches are produced through the normal pipelined producer with the
//! transactional bit set, and every `transaction_interval` (or once
//! `transaction_max_bytes` were sent) the transaction closes: no new batches
//! go out, the ones it holds are acknowledged (resent if needed), then the
//! offset-map records and the source positions of exactly those batches
//! (TxnOffsetCommit to the checkpoint group) are added and the transaction
//! commits. A crash at any point leaves either a committed transaction (data
//! and positions) or an open one, which the next instance's InitProducerId
//! aborts: `read_committed` consumers see each record once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info};

use super::checkpoint::Checkpointer;
use super::producer::Producer;
use crate::client::{code, Client, ClientError, TxnId};
use crate::config::ExactlyOnce;

/// Why the transaction loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    /// A transactional call failed after its retries.
    #[error("exactly-once transaction on the destination failed: {0}")]
    Client(#[from] ClientError),
    /// The producer reported a failure the transaction cannot survive.
    #[error("{0}")]
    Producer(String),
    /// Another instance initialized the same transactional id.
    #[error("exactly-once: fenced by another strait instance using transactional id {transactional_id} (this one stops; {source})")]
    Fenced {
        /// The shared transactional id.
        transactional_id: String,
        /// The broker's answer.
        source: ClientError,
    },
    /// The open transaction's batches were not acknowledged in time.
    #[error("exactly-once transaction could not settle within {0:?}: its batches were not acknowledged")]
    Stuck(Duration),
}

/// Runs transactions until `finish` turns true, then commits a last one.
pub async fn run(
    settings: ExactlyOnce,
    dst: Arc<Client>,
    producer: Arc<Producer>,
    ckpt: Arc<Checkpointer>,
    txn: TxnId,
    mut finish: watch::Receiver<bool>,
) -> Result<(), TxnError> {
    let mut map_seq = 0i32;
    let mut opened = Instant::now();
    loop {
        let finishing = *finish.borrow();
        let due = opened + settings.transaction_interval;
        tokio::select! {
            _ = producer.txn_wait(due.saturating_duration_since(Instant::now())) => {}
            _ = finish.changed(), if !finishing => {}
        }
        let finishing = *finish.borrow();
        let wanted = producer.txn_wanted();
        if !wanted.is_empty() {
            dst.add_partitions_to_txn(&txn, &wanted)
                .await
                .map_err(|e| txn_error(&txn, e))?;
            debug!(
                partitions = wanted.values().map(Vec::len).sum::<usize>(),
                "partitions joined the transaction"
            );
            producer.txn_added(&wanted);
        }
        let status = producer.txn_status();
        if let Some(reason) = status.fatal {
            return Err(TxnError::Producer(reason));
        }
        if finishing || Instant::now() >= due || status.bytes >= settings.transaction_max_bytes {
            commit(&settings, &producer, &ckpt, &txn, &mut map_seq).await?;
            opened = Instant::now();
            if finishing {
                info!("last transaction committed");
                return Ok(());
            }
        }
    }
}

/// Closes the open transaction, waits for its batches, commits it with their positions.
async fn commit(
    settings: &ExactlyOnce,
    producer: &Producer,
    ckpt: &Checkpointer,
    txn: &TxnId,
    map_seq: &mut i32,
) -> Result<(), TxnError> {
    producer.txn_close();
    // Half the transaction timeout: the coordinator must not abort it under us.
    let limit = Duration::from_millis(settings.transaction_timeout_ms as u64 / 2);
    let deadline = Instant::now() + limit;
    while !producer.txn_settled() {
        if let Some(reason) = producer.txn_status().fatal {
            return Err(TxnError::Producer(reason));
        }
        if Instant::now() >= deadline {
            return Err(TxnError::Stuck(limit));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let status = producer.txn_status();
    let (bytes, added) = (status.bytes, status.has_partitions);
    // Between two generations of the replication group the positions wait for
    // the next one (the transaction stays open).
    let partitions = loop {
        match ckpt.commit_txn(txn, map_seq, added).await {
            Err(e)
                if e.code() == Some(crate::client::group::codes::REBALANCE_IN_PROGRESS)
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            r => break r.map_err(|e| txn_error(txn, e))?,
        }
    };
    if added || partitions > 0 {
        debug!(bytes, partitions, "transaction committed");
    }
    producer.txn_next();
    Ok(())
}

/// A failed transactional call: fencing (INVALID_PRODUCER_EPOCH, PRODUCER_FENCED)
/// gets its own message, since the operator's fix is to stop one of two instances.
fn txn_error(txn: &TxnId, e: ClientError) -> TxnError {
    if matches!(e.code(), Some(code::INVALID_PRODUCER_EPOCH | code::PRODUCER_FENCED)) {
        TxnError::Fenced {
            transactional_id: txn.transactional_id.clone(),
            source: e,
        }
    } else {
        TxnError::Client(e)
    }
}
