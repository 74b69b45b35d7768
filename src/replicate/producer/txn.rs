//! Exactly-once bookkeeping of the produce queue: which partitions the open
//! transaction holds and whether it is closing. Entries are tagged with the
//! transaction they were first sent in; while a commit is pending (`closing`),
//! only entries of the open transaction are (re)sent, so it commits exactly
//! what was acknowledged. The transaction loop itself is [`super::super::eos`].

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::queue::{PartKey, Queue, State};

/// The open transaction.
#[derive(Debug)]
pub(super) struct TxnState {
    /// Number of the open transaction (starts at 1).
    pub(super) current: u64,
    /// Partitions added to the open transaction (AddPartitionsToTxn answered).
    added: HashSet<PartKey>,
    /// Partitions with batches waiting to be added.
    wanted: HashSet<PartKey>,
    closing: bool,
    /// Batch bytes sent in the open transaction.
    pub(super) bytes: usize,
    /// Set when the transaction cannot commit (fenced, producer state lost).
    pub(super) fatal: Option<String>,
}

impl Default for TxnState {
    fn default() -> Self {
        Self {
            current: 1,
            added: HashSet::new(),
            wanted: HashSet::new(),
            closing: false,
            bytes: 0,
            fatal: None,
        }
    }
}

impl TxnState {
    /// Whether a partition's first queued entry (first sent in transaction
    /// `entry_txn`, 0 if never) may go out now. A partition not yet in the open
    /// transaction is marked wanted instead.
    pub(super) fn may_send(&mut self, key: &PartKey, entry_txn: u64) -> bool {
        if self.closing {
            // Only batches the closing transaction already holds may be resent.
            return entry_txn == self.current;
        }
        if self.added.contains(key) {
            return true;
        }
        self.wanted.insert(key.clone());
        false
    }

    /// True when partitions wait to join the transaction.
    pub(super) fn has_wanted(&self) -> bool {
        !self.wanted.is_empty()
    }
}

/// What the transaction loop reads of the open transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnStatus {
    /// Batch bytes sent in it.
    pub bytes: usize,
    /// Partitions were added to it.
    pub has_partitions: bool,
    /// Why it cannot commit, if so.
    pub fatal: Option<String>,
}

impl Queue {
    /// Takes the partitions waiting to join the open transaction, by destination topic.
    pub(super) fn txn_wanted(&mut self) -> BTreeMap<String, Vec<i32>> {
        let mut out: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        let wanted: Vec<PartKey> = self.txn.wanted.drain().collect();
        for (t, p) in wanted {
            if !self.txn.added.contains(&(t.clone(), p)) {
                out.entry(t.to_string()).or_default().push(p);
            }
        }
        out
    }

    /// The coordinator accepted these partitions into the open transaction.
    pub(super) fn txn_added(&mut self, partitions: &BTreeMap<String, Vec<i32>>) {
        for (t, ps) in partitions {
            let t: Arc<str> = Arc::from(t.as_str());
            for p in ps {
                self.txn.added.insert((t.clone(), *p));
            }
        }
    }

    pub(super) fn txn_status(&self) -> TxnStatus {
        TxnStatus {
            bytes: self.txn.bytes,
            has_partitions: !self.txn.added.is_empty(),
            fatal: self.txn.fatal.clone(),
        }
    }

    /// Stops sending batches that are not yet part of the open transaction.
    pub(super) fn txn_close(&mut self) {
        self.txn.closing = true;
    }

    /// True once every batch of the open transaction is acknowledged (or its
    /// partition stopped), so its positions can be committed with it.
    pub(super) fn txn_settled(&self) -> bool {
        let cur = self.txn.current;
        self.parts
            .values()
            .all(|p| p.failed.is_some() || p.entries.iter().all(|e| e.txn != cur || e.state == State::Acked))
    }

    /// The transaction committed; the next one starts empty.
    pub(super) fn txn_next(&mut self) {
        self.txn.current += 1;
        self.txn.added.clear();
        self.txn.closing = false;
        self.txn.bytes = 0;
    }
}
