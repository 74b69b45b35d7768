//! The memory budget: bytes held between fetch and destination acknowledgement,
//! one budget for the process, shared fairly by its flows.
//!
//! A fetcher reserves its Fetch `max_bytes` before sending, keeps what the
//! response's record data actually takes, and gives the rest back. The batches
//! of one response are slices of one buffer, which lives until the last of them
//! is acknowledged: they share one [`Held`] (an `Arc`), so the budget counts
//! the memory really in use, not the sum of the batches still queued. When the
//! budget is spent, fetchers wait: a slow destination slows fetching instead of
//! growing memory.
//!
//! Each flow reserves through its own [`Share`]. A share has a floor (half the
//! budget split evenly between the flows): no other flow may take budget that
//! would leave a share's unused floor short, so a busy flow never starves a
//! quiet one, while the other half, and every unused byte above the floors,
//! goes to whoever asks.
//!
//! A reservation for a fetch still waiting for its response holds budget but no
//! data: [`Share::data`] counts only bytes of responses that arrived, which is
//! what `strait_buffered_bytes` reports (an idle replication holds 0), and
//! [`Share::reserved`] the rest.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::sync::lock;

/// A byte budget shared by every flow's fetchers and producer.
#[derive(Debug)]
pub struct Budget {
    /// The current cap: `base` on a LAN; up to `ceiling` while fetchers across
    /// a long round trip want more bytes in flight ([`Budget::want`]).
    limit: AtomicUsize,
    base: usize,
    ceiling: usize,
    /// Bytes in flight each fetcher wants (by its key), summed into `limit`.
    wants: Mutex<std::collections::HashMap<String, usize>>,
    /// Bytes of the limit kept for merged batches, by key: fetches leave
    /// what merged batches do not hold of it free ([`Budget::keep_for_merging`]).
    merge_room: Mutex<std::collections::HashMap<String, usize>>,
    state: Mutex<State>,
    peak: AtomicUsize,
    freed: Notify,
}

#[derive(Debug, Default)]
struct State {
    used: usize,
    /// Bytes of merged batches held ([`Share::try_hold`]), part of `used`.
    merged: usize,
    /// Per share: (floor, bytes used).
    shares: Vec<(usize, usize)>,
}

impl State {
    /// Bytes that other shares' unused floors keep free.
    fn kept_for_others(&self, me: usize) -> usize {
        self.shares
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != me)
            .map(|(_, (floor, used))| floor.saturating_sub(*used))
            .sum()
    }
}

/// One flow's account on a [`Budget`].
#[derive(Debug)]
pub struct Share {
    budget: Arc<Budget>,
    index: usize,
    /// Bytes of responses that arrived (a part of what this share uses).
    data: AtomicUsize,
    peak: AtomicUsize,
}

/// Bytes of a share held by one fetch response (or one pending fetch, or one
/// merged batch); returned on drop.
#[derive(Debug)]
pub struct Held {
    share: Arc<Share>,
    bytes: usize,
    /// True once the bytes hold response data ([`Held::shrink_to`]), not a reservation.
    data: bool,
    /// Held by a merged batch ([`Share::try_hold`]).
    merged: bool,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Self> {
        Self::adaptive(limit, limit)
    }

    /// A budget of `base` bytes that grows up to `ceiling` while fetchers
    /// want more in flight (the bandwidth-delay product of a long round trip).
    pub fn adaptive(base: usize, ceiling: usize) -> Arc<Self> {
        Arc::new(Self {
            limit: AtomicUsize::new(base),
            base,
            ceiling: ceiling.max(base),
            wants: Mutex::new(std::collections::HashMap::new()),
            merge_room: Mutex::new(std::collections::HashMap::new()),
            state: Mutex::new(State::default()),
            peak: AtomicUsize::new(0),
            freed: Notify::new(),
        })
    }

    /// `flows` shares, each with a floor of `limit / (2 × flows)`.
    pub fn split(self: &Arc<Self>, flows: usize) -> Vec<Arc<Share>> {
        let floor = if flows > 1 { self.base / (2 * flows) } else { 0 };
        (0..flows).map(|_| self.share(floor)).collect()
    }

    /// A new share with `floor` bytes kept for it.
    pub fn share(self: &Arc<Self>, floor: usize) -> Arc<Share> {
        let mut st = lock(&self.state);
        st.shares.push((floor, 0));
        Arc::new(Share {
            budget: self.clone(),
            index: st.shares.len() - 1,
            data: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        })
    }

    /// Bytes held by every share.
    pub fn used(&self) -> usize {
        lock(&self.state).used
    }

    /// The most bytes ever held at once, over every share.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// The configured cap.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Fetcher `key` wants `bytes` in flight (0: nothing beyond the base): the
    /// limit becomes the base plus every want, up to the ceiling (the base
    /// keeps holding what was fetched while the producer writes it, so the
    /// fetches of the next round trip are not waiting for it). Returns the
    /// new limit.
    pub fn want(&self, key: &str, bytes: usize) -> usize {
        let mut wants = lock(&self.wants);
        if bytes == 0 {
            wants.remove(key);
        } else {
            wants.insert(key.to_string(), bytes);
        }
        let sum: usize = wants.values().sum();
        drop(wants);
        let limit = self.base.saturating_add(sum).min(self.ceiling).max(self.base);
        let old = self.limit.swap(limit, Ordering::Relaxed);
        if limit > old {
            self.freed.notify_waiters();
        }
        limit
    }

    /// Bytes of the limit kept for merged batches by `key` (0: none): a far
    /// destination's producer, whose window's bytes per round trip are its
    /// throughput. Fetches leave what merged batches do not hold of it free.
    pub fn keep_for_merging(&self, key: &str, bytes: usize) {
        let mut room = lock(&self.merge_room);
        if bytes == 0 {
            room.remove(key);
        } else {
            room.insert(key.to_string(), bytes);
        }
    }

    fn merge_room(&self) -> usize {
        lock(&self.merge_room).values().sum()
    }

    fn release(&self, index: usize, bytes: usize, merged: bool) {
        let mut st = lock(&self.state);
        if merged {
            st.merged = st.merged.saturating_sub(bytes);
        }
        st.used = st.used.saturating_sub(bytes);
        if let Some(s) = st.shares.get_mut(index) {
            s.1 = s.1.saturating_sub(bytes);
        }
        drop(st);
        self.freed.notify_waiters();
    }
}

impl Share {
    /// A budget of `limit` bytes with this one share (a flow on its own).
    pub fn alone(limit: usize) -> Arc<Self> {
        Budget::new(limit).share(0)
    }

    /// Waits until at least `min` bytes fit, then holds as much as is free, up to
    /// `max` (at least `min`). A fetcher sizes its request by what it got, so a
    /// small budget still lets the next fetch overlap with producing the last one.
    /// What is free leaves the other shares' unused floors alone. A share
    /// holding nothing always gets at least its floor (or `min`, if smaller),
    /// and a request larger than the whole budget is granted when nothing at
    /// all is held, so progress never stops.
    pub async fn reserve_up_to(self: &Arc<Self>, min: usize, max: usize) -> Held {
        let b = &self.budget;
        loop {
            let notified = b.freed.notified();
            {
                let mut st = lock(&b.state);
                let (floor, mine) = st.shares[self.index];
                let mut min = min.min(max);
                if mine == 0 && floor > 0 {
                    min = min.min(floor); // its floor is always there for it
                }
                let free = b
                    .limit()
                    .saturating_sub(st.used)
                    .saturating_sub(st.kept_for_others(self.index))
                    .saturating_sub(b.merge_room().saturating_sub(st.merged));
                if min <= free || st.used == 0 {
                    let bytes = free.clamp(min, max.max(min));
                    return self.take(&mut st, bytes, false, false);
                }
            }
            notified.await;
        }
    }

    /// Holds `bytes` now, even past the limit, without waiting: data strait
    /// made itself (a merged batch) while the fetched bytes it came from are
    /// still held. Fetches wait until the total is back under the limit, so
    /// memory stays near `max_buffered_bytes` instead of holding both uncounted.
    pub fn hold_now(self: &Arc<Self>, bytes: usize) -> Held {
        let mut st = lock(&self.budget.state);
        self.take(&mut st, bytes, true, false)
    }

    /// Holds `bytes` for a merged batch if they fit under the limit now
    /// (leaving other shares' unused floors alone; the room kept for merging
    /// is theirs to use), without waiting; `None` when they do not fit: the
    /// batches then go as they are, so a hard `max_buffered_bytes` stays hard.
    pub fn try_hold(self: &Arc<Self>, bytes: usize) -> Option<Held> {
        let b = &self.budget;
        let mut st = lock(&b.state);
        let free = b
            .limit()
            .saturating_sub(st.used)
            .saturating_sub(st.kept_for_others(self.index));
        (bytes <= free).then(|| self.take(&mut st, bytes, true, true))
    }

    /// Counts `bytes` as this share's (under the budget's lock, `st`) and
    /// returns them held: response `data` or a reservation, `merged` or not.
    fn take(self: &Arc<Self>, st: &mut State, bytes: usize, data: bool, merged: bool) -> Held {
        st.used += bytes;
        if merged {
            st.merged += bytes;
        }
        st.shares[self.index].1 += bytes;
        self.budget.peak.fetch_max(st.used, Ordering::Relaxed);
        self.peak.fetch_max(st.shares[self.index].1, Ordering::Relaxed);
        if data {
            self.data.fetch_add(bytes, Ordering::Relaxed);
        }
        Held {
            share: self.clone(),
            bytes,
            data,
            merged,
        }
    }

    /// Bytes this share holds: response data and reservations of waiting fetches.
    pub fn used(&self) -> usize {
        lock(&self.budget.state).shares[self.index].1
    }

    /// Bytes of fetched data this share holds (fetch responses not yet fully
    /// acknowledged by the destination).
    pub fn data(&self) -> usize {
        self.data.load(Ordering::Relaxed)
    }

    /// Bytes this share reserved for fetches still waiting for their response.
    pub fn reserved(&self) -> usize {
        self.used().saturating_sub(self.data())
    }

    /// The most bytes this share ever held at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// The budget this share draws on.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }
}

impl Held {
    /// The fetch was answered with `bytes` of data: gives back everything above
    /// that, and counts the rest as data held.
    pub fn shrink_to(&mut self, bytes: usize) {
        if bytes < self.bytes {
            let extra = self.bytes - bytes;
            self.bytes = bytes;
            self.share.budget.release(self.share.index, extra, self.merged);
        }
        if !self.data {
            self.data = true;
            self.share.data.fetch_add(self.bytes, Ordering::Relaxed);
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The share these bytes are held in.
    pub fn share(&self) -> &Arc<Share> {
        &self.share
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.data {
            self.share.data.fetch_sub(self.bytes, Ordering::Relaxed);
        }
        if self.bytes > 0 {
            self.share.budget.release(self.share.index, self.bytes, self.merged);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn merged_batches_hold_only_what_fits_and_fetches_leave_their_room() {
        let share = Share::alone(1000);
        share.budget().keep_for_merging("far", 400);
        let mut fetched = share.reserve_up_to(1, 1000).await;
        assert_eq!(fetched.bytes(), 600, "the room kept for merging is not fetched into");
        fetched.shrink_to(600);
        let merged = share.try_hold(300).expect("fits in the room");
        assert!(share.try_hold(200).is_none(), "past a hard limit");
        assert_eq!(share.used(), 900);
        drop(merged);
        // Room unused again: fetches still leave it.
        let waiting = tokio::spawn({
            let share = share.clone();
            async move { share.reserve_up_to(100, 100).await.bytes() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "a fetch took the room kept for merging");
        share.budget().keep_for_merging("far", 0);
        share.budget().want("nudge", 0); // wakes waiters as a limit change does
        drop(fetched);
        assert_eq!(waiting.await.unwrap(), 100);
    }

    #[tokio::test]
    async fn bytes_held_now_count_past_the_limit_and_make_fetches_wait() {
        let share = Share::alone(1000);
        let mut fetched = share.reserve_up_to(1, 1000).await;
        fetched.shrink_to(900);
        let merged = share.hold_now(600);
        assert_eq!((share.used(), share.data()), (1500, 1500));
        // Over the limit: a fetch waits until the merged copy is released.
        let waiting = tokio::spawn({
            let share = share.clone();
            async move { share.reserve_up_to(100, 100).await.bytes() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "a fetch reserved past the limit");
        drop(merged);
        assert_eq!(waiting.await.unwrap(), 100);
        assert_eq!(share.data(), 900);
    }

    #[tokio::test]
    async fn reserve_waits_for_release() {
        let b = Share::alone(100);
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
        let b = Share::alone(100);
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
        let b = Share::alone(100);
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

    #[tokio::test]
    async fn a_busy_flow_cannot_take_a_quiet_flows_floor() {
        let budget = Budget::new(100);
        let shares = budget.split(2); // floors of 25 each
        let (busy, quiet) = (&shares[0], &shares[1]);
        // The busy flow takes all it can: everything but the quiet flow's floor.
        let mut held = Vec::new();
        loop {
            let h = tokio::time::timeout(Duration::from_millis(50), busy.reserve_up_to(10, 30)).await;
            match h {
                Ok(h) => held.push(h),
                Err(_) => break,
            }
        }
        assert_eq!(busy.used(), 75, "work-conserving above the floors");
        // The quiet flow still gets its floor at once.
        let q = tokio::time::timeout(Duration::from_secs(1), quiet.reserve_up_to(10, 40))
            .await
            .expect("the quiet flow is not starved");
        assert_eq!(q.bytes(), 25);
        assert_eq!(budget.used(), 100);
        drop(held);
        assert_eq!(budget.used(), 25);
        drop(q);
        assert_eq!((budget.used(), busy.used(), quiet.used()), (0, 0, 0));
    }
}
