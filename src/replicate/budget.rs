//! The memory budget: bytes held between fetch and destination acknowledgement.
//!
//! A fetcher reserves its Fetch `max_bytes` before sending, keeps what the
//! response's record data actually takes, and gives the rest back. The batches
//! of one response are slices of one buffer, which lives until the last of them
//! is acknowledged: they share one [`Held`] (an `Arc`), so the budget counts
//! the memory really in use, not the sum of the batches still queued. When the
//! budget is spent, fetchers wait: a slow destination slows fetching instead of
//! growing memory.
//!
//! A reservation for a fetch still waiting for its response holds budget but no
//! data: [`Budget::data`] counts only bytes of responses that arrived, which is
//! what `strait_buffered_bytes` reports (an idle replication holds 0), and
//! [`Budget::reserved`] the rest.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// A byte budget shared by fetchers and the producer.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: Mutex<usize>,
    /// Bytes of responses that arrived (a part of `used`).
    data: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
    freed: Notify,
}

/// Bytes of the budget held by one batch (or one pending fetch); returned on drop.
#[derive(Debug)]
pub struct Held {
    budget: Arc<Budget>,
    bytes: usize,
    /// True once the bytes hold response data ([`Held::shrink_to`]), not a reservation.
    data: bool,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: Mutex::new(0),
            data: std::sync::atomic::AtomicUsize::new(0),
            peak: std::sync::atomic::AtomicUsize::new(0),
            freed: Notify::new(),
        })
    }

    /// Bytes currently held: response data and reservations of waiting fetches.
    pub fn used(&self) -> usize {
        *crate::sync::lock(&self.used)
    }

    /// Bytes of fetched data currently held (fetch responses not yet fully
    /// acknowledged by the destination).
    pub fn data(&self) -> usize {
        self.data.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes reserved by fetches still waiting for their response.
    pub fn reserved(&self) -> usize {
        self.used().saturating_sub(self.data())
    }

    /// The most bytes ever held at once.
    pub fn peak(&self) -> usize {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The configured cap.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Waits until at least `min` bytes fit, then holds as much as is free, up to
    /// `max` (at least `min`). A fetcher sizes its request by what it got, so a
    /// small budget still lets the next fetch overlap with producing the last one.
    /// A request larger than the whole budget is granted when nothing else is
    /// held, so progress never stops.
    pub async fn reserve_up_to(self: &Arc<Self>, min: usize, max: usize) -> Held {
        let min = min.min(max);
        loop {
            let notified = self.freed.notified();
            {
                let mut used = crate::sync::lock(&self.used);
                if *used + min <= self.limit || *used == 0 {
                    let bytes = self.limit.saturating_sub(*used).clamp(min, max);
                    *used += bytes;
                    self.peak.fetch_max(*used, std::sync::atomic::Ordering::Relaxed);
                    return Held {
                        budget: self.clone(),
                        bytes,
                        data: false,
                    };
                }
            }
            notified.await;
        }
    }

    fn release(&self, bytes: usize) {
        let mut used = crate::sync::lock(&self.used);
        *used = used.saturating_sub(bytes);
        drop(used);
        self.freed.notify_waiters();
    }
}

impl Held {
    /// The fetch was answered with `bytes` of data: gives back everything above
    /// that, and counts the rest as data held.
    pub fn shrink_to(&mut self, bytes: usize) {
        if bytes < self.bytes {
            let extra = self.bytes - bytes;
            self.bytes = bytes;
            self.budget.release(extra);
        }
        if !self.data {
            self.data = true;
            self.budget
                .data
                .fetch_add(self.bytes, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.data {
            self.budget
                .data
                .fetch_sub(self.bytes, std::sync::atomic::Ordering::Relaxed);
        }
        if self.bytes > 0 {
            self.budget.release(self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn reserve_waits_for_release() {
        let b = Budget::new(100);
        let a = b.reserve_up_to(50, 50).await;
        let part = b.reserve_up_to(30, 30).await;
        assert_eq!(b.used(), 80);
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.reserve_up_to(50, 50).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "80 + 50 > 100");
        drop(a); // returns 50
        let got = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.used(), 80);
        drop(part);
        drop(got);
        assert_eq!(b.used(), 0);
        // Oversized requests pass when nothing is held.
        let big = b.reserve_up_to(1000, 1000).await;
        assert_eq!(big.bytes(), 1000);
    }

    #[tokio::test]
    async fn a_waiting_fetch_reserves_but_holds_no_data() {
        let b = Budget::new(100);
        let mut fetch = b.reserve_up_to(20, 60).await;
        assert_eq!((b.used(), b.data(), b.reserved()), (60, 0, 60), "idle: nothing held");
        fetch.shrink_to(25); // the response brought 25 bytes
        assert_eq!((b.used(), b.data(), b.reserved()), (25, 25, 0));
        let other = b.reserve_up_to(20, 60).await;
        assert_eq!((b.used(), b.data(), b.reserved()), (85, 25, 60));
        drop(fetch);
        assert_eq!((b.used(), b.data(), b.reserved()), (60, 0, 60));
        drop(other);
        assert_eq!((b.used(), b.data()), (0, 0));
    }

    #[tokio::test]
    async fn reserve_up_to_takes_what_is_free() {
        let b = Budget::new(100);
        let first = b.reserve_up_to(20, 60).await;
        assert_eq!(first.bytes(), 60, "all it asked for");
        let second = b.reserve_up_to(20, 60).await;
        assert_eq!(second.bytes(), 40, "what was left");
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.reserve_up_to(20, 60).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "nothing free");
        drop(second);
        let third = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(third.bytes(), 40);
        drop((first, third));
        assert_eq!(b.used(), 0);
    }
}
