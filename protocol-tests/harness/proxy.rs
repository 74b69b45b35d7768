//! A fault-injecting TCP proxy for real-broker tests: one [`Proxy`] per broker
//! listens on the port the broker advertises on a `:proxied` listener and
//! forwards to the port it binds (see `kafka.sh start --listener`), so every
//! connection strait makes to that cluster goes through it.
//!
//! Included by the test binaries that use it (`#[path]`), beside `mod harness`.
//!
//! Faults are switched at runtime through the proxy's [`Faults`]: added latency,
//! a bandwidth cap, connection resets (all at once, or at random frames), stalls
//! (frames are still read, nothing is forwarded), truncated frames (half a frame
//! forwarded, then a reset) and corrupted record bytes. The proxy forwards whole
//! Kafka frames (`i32` size prefix), so it can cut one mid-frame and find the
//! record batches inside a response: a batch is recognised by magic 2 and a
//! CRC-32C that matches, and corruption flips one byte of its records section,
//! which that CRC covers, so a client that checks CRCs detects every flip. A
//! batch's `length` field, which no CRC covers, can be corrupted too, in every
//! Nth response frame holding batches (deterministic, not by chance).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::harness::KafkaCluster;

/// Largest frame the proxy forwards (both brokers and strait cap lower).
const MAX_FRAME: usize = 256 << 20;

/// Direction of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client to broker (requests).
    Up,
    /// Broker to client (responses).
    Down,
}

/// Runtime switches of one proxy, and what it did. Chances are per forwarded
/// frame, in parts per million.
#[derive(Debug, Default)]
pub struct Faults {
    /// Added one-way latency per frame, ms (both directions).
    pub latency_ms: AtomicU64,
    /// Bandwidth cap per direction and connection, bytes/s (0: none).
    pub bandwidth: AtomicU64,
    /// Chance that a frame resets its connection instead of being forwarded.
    pub reset_ppm: AtomicU32,
    /// Chance that a frame is cut in half, then its connection reset.
    pub truncate_ppm: AtomicU32,
    /// Chance that a response frame holding record batches gets one record byte flipped.
    pub corrupt_ppm: AtomicU32,
    /// Only responses of at least this many bytes are corrupted.
    pub corrupt_min_frame: AtomicU64,
    /// Corrupt the batch header instead: set the control bit of the attributes
    /// (also covered by the CRC), which makes a data batch look like a transaction marker.
    pub corrupt_control_bit: AtomicBool,
    /// Corrupt the `length` field of the last batch with records in every Nth
    /// response frame holding batches (0: off). Corruptions cycle through a
    /// length below the minimum, a negative one and one pointing past the frame.
    pub corrupt_length_every: AtomicU32,
    /// Response frames holding batches seen while `corrupt_length_every` was set.
    batch_frames: AtomicU64,
    stall_until: Mutex<Option<Instant>>,
    refuse: AtomicBool,
    epoch: Mutex<Option<watch::Sender<u64>>>,
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections reset by a fault.
    pub resets: AtomicU64,
    /// Frames cut mid-frame.
    pub truncated: AtomicU64,
    /// Frames with a flipped record byte.
    pub corrupted: AtomicU64,
    /// Frames with a corrupted batch length.
    pub length_corrupted: AtomicU64,
    /// Frames forwarded.
    pub frames: AtomicU64,
}

impl Faults {
    /// Stops forwarding for `d` (connections are still accepted and read).
    pub fn stall(&self, d: Duration) {
        *self.stall_until.lock().unwrap() = Some(Instant::now() + d);
    }

    /// Ends a stall now.
    pub fn unstall(&self) {
        *self.stall_until.lock().unwrap() = None;
    }

    fn stalled_for(&self) -> Option<Duration> {
        let until = (*self.stall_until.lock().unwrap())?;
        until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())
    }

    /// Resets every open connection (RST to both peers).
    pub fn reset_all(&self) {
        if let Some(tx) = &*self.epoch.lock().unwrap() {
            tx.send_modify(|e| *e += 1);
        }
    }

    /// While set, new connections are reset right after accept.
    pub fn refuse(&self, on: bool) {
        self.refuse.store(on, Ordering::Relaxed);
    }

    /// Turns every fault off (counters stay).
    pub fn clear(&self) {
        self.latency_ms.store(0, Ordering::Relaxed);
        self.bandwidth.store(0, Ordering::Relaxed);
        self.reset_ppm.store(0, Ordering::Relaxed);
        self.truncate_ppm.store(0, Ordering::Relaxed);
        self.corrupt_ppm.store(0, Ordering::Relaxed);
        self.corrupt_control_bit.store(false, Ordering::Relaxed);
        self.corrupt_length_every.store(0, Ordering::Relaxed);
        self.refuse(false);
        self.unstall();
    }

    fn chance(ppm: &AtomicU32) -> bool {
        let p = ppm.load(Ordering::Relaxed);
        p > 0 && fastrand::u32(..1_000_000) < p
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.epoch
            .lock()
            .unwrap()
            .get_or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }
}

/// One broker's proxy; stops (closing every connection) when dropped.
#[derive(Debug)]
pub struct Proxy {
    /// Port the proxy listens on (the broker's advertised port).
    pub listen: u16,
    /// Port it forwards to (the broker's bound port).
    pub target: u16,
    /// Runtime switches.
    pub faults: Arc<Faults>,
    task: JoinHandle<()>,
    kill: watch::Sender<bool>,
}

impl Proxy {
    /// Listens on 127.0.0.1:`listen` and forwards to 127.0.0.1:`target`.
    pub async fn start(listen: u16, target: u16) -> std::io::Result<Self> {
        let listener = bind_retry(listen).await?;
        let faults = Arc::new(Faults::default());
        faults.corrupt_min_frame.store(1024, Ordering::Relaxed);
        let (kill, kill_rx) = watch::channel(false);
        let f = faults.clone();
        let task = tokio::spawn(async move {
            loop {
                let mut k = kill_rx.clone();
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = k.changed() => return,
                };
                let Ok((client, _)) = accepted else { continue };
                f.connections.fetch_add(1, Ordering::Relaxed);
                if f.refuse.load(Ordering::Relaxed) {
                    rst(&client);
                    f.resets.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let (f, k, epoch) = (f.clone(), kill_rx.clone(), f.subscribe());
                tokio::spawn(async move {
                    let addr: SocketAddr = ([127, 0, 0, 1], target).into();
                    let Ok(Ok(server)) = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr)).await
                    else {
                        rst(&client);
                        return;
                    };
                    connection(client, server, f, k, epoch).await;
                });
            }
        });
        Ok(Self {
            listen,
            target,
            faults,
            task,
            kill,
        })
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.kill.send(true);
        self.task.abort();
    }
}

/// The advertised port may still be in TIME_WAIT use from an earlier proxy.
async fn bind_retry(port: u16) -> std::io::Result<TcpListener> {
    let mut last = None;
    for _ in 0..50 {
        let s = tokio::net::TcpSocket::new_v4()?;
        s.set_reuseaddr(true)?;
        match s.bind(([127, 0, 0, 1], port).into()).and_then(|()| s.listen(1024)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last.unwrap())
}

/// Proxies for every node of a cluster's `:proxied` listener.
#[derive(Debug)]
pub struct ClusterProxy {
    /// One per node, in node order.
    pub nodes: Vec<Proxy>,
    /// Bootstrap string through the proxies.
    pub bootstrap: String,
}

impl ClusterProxy {
    /// Starts one proxy per node of `cluster`'s listener `name`.
    pub async fn start(cluster: &KafkaCluster, name: &str) -> Self {
        let ports = cluster.listener(name);
        assert!(!ports.is_empty(), "cluster has no listener {name}");
        let mut nodes = Vec::new();
        for p in &ports {
            assert_ne!(p.bound, p.advertised, "listener {name} is not proxied");
            nodes.push(Proxy::start(p.advertised, p.bound).await.expect("proxy binds"));
        }
        Self {
            nodes,
            bootstrap: cluster.listener_bootstrap(name),
        }
    }

    /// Applies `f` to every node's faults.
    pub fn each(&self, f: impl Fn(&Faults)) {
        for n in &self.nodes {
            f(&n.faults);
        }
    }

    /// Sums a counter over nodes.
    pub fn total(&self, c: impl Fn(&Faults) -> &AtomicU64) -> u64 {
        self.nodes.iter().map(|n| c(&n.faults).load(Ordering::Relaxed)).sum()
    }

    /// One line of what the proxies did.
    pub fn stats(&self) -> String {
        format!(
            "connections {}, frames {}, resets {}, truncated {}, corrupted {}, lengths corrupted {}",
            self.total(|f| &f.connections),
            self.total(|f| &f.frames),
            self.total(|f| &f.resets),
            self.total(|f| &f.truncated),
            self.total(|f| &f.corrupted),
            self.total(|f| &f.length_corrupted),
        )
    }
}

/// Forwards one connection until either side closes, a fault resets it, or the proxy stops.
async fn connection(
    client: TcpStream,
    server: TcpStream,
    f: Arc<Faults>,
    mut kill: watch::Receiver<bool>,
    mut epoch: watch::Receiver<u64>,
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    // Raised by a pump that injects a reset, by reset_all, or when the proxy stops;
    // each pump then closes the socket it writes to with an RST.
    let (reset_tx, reset_rx) = watch::channel(false);
    let reset_tx = Arc::new(reset_tx);
    let up = pump(cr, sw, Dir::Up, f.clone(), reset_tx.clone(), reset_rx.clone());
    let down = pump(sr, cw, Dir::Down, f.clone(), reset_tx.clone(), reset_rx);
    let both = async { tokio::join!(up, down) };
    tokio::pin!(both);
    tokio::select! {
        _ = &mut both => return,
        _ = epoch.changed() => { f.resets.fetch_add(1, Ordering::Relaxed); }
        _ = kill.wait_for(|k| *k) => {}
    }
    let _ = reset_tx.send(true);
    both.await;
}

/// One direction: a reader task queues whole frames stamped with their arrival
/// time; the pump applies faults and writes them. Returns when the reader hits
/// EOF (after passing the FIN on), on an error, or on a reset (after setting
/// SO_LINGER 0 on the socket it writes to, so closing it sends an RST, as a
/// cut connection would).
async fn pump(
    mut r: OwnedReadHalf,
    mut w: OwnedWriteHalf,
    dir: Dir,
    f: Arc<Faults>,
    reset: Arc<watch::Sender<bool>>,
    mut reset_rx: watch::Receiver<bool>,
) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>(64);
    let reader = tokio::spawn(async move {
        loop {
            let mut len = [0u8; 4];
            if r.read_exact(&mut len).await.is_err() {
                return;
            }
            let n = i32::from_be_bytes(len);
            if n < 0 || n as usize > MAX_FRAME {
                return;
            }
            let mut frame = vec![0u8; 4 + n as usize];
            frame[..4].copy_from_slice(&len);
            if r.read_exact(&mut frame[4..]).await.is_err() {
                return;
            }
            if tx.send((Instant::now(), frame)).await.is_err() {
                return;
            }
        }
    });
    let _guard = AbortOnDrop(reader.abort_handle());
    let clean = tokio::select! {
        c = forward(rx, &mut w, dir, &f) => c,
        _ = reset_rx.wait_for(|r| *r) => false,
    };
    if clean {
        let _ = w.shutdown().await;
    } else {
        rst(w.as_ref());
        let _ = reset.send(true);
    }
}

/// Writes queued frames with the current faults applied; true when the queue
/// ended (the reader's peer closed), false when the connection must be reset.
async fn forward(mut rx: mpsc::Receiver<(Instant, Vec<u8>)>, w: &mut OwnedWriteHalf, dir: Dir, f: &Faults) -> bool {
    let mut link_free: Option<Instant> = None;
    while let Some((at, mut frame)) = rx.recv().await {
        while let Some(d) = f.stalled_for() {
            tokio::time::sleep(d.min(Duration::from_millis(100))).await;
        }
        let lat = f.latency_ms.load(Ordering::Relaxed);
        if lat > 0 {
            tokio::time::sleep_until((at + Duration::from_millis(lat)).into()).await;
        }
        let bw = f.bandwidth.load(Ordering::Relaxed);
        if bw > 0 {
            // Pacing: the frame is on the wire from when the link is free until
            // its bytes at `bw` have passed.
            let now = Instant::now();
            let start = link_free.filter(|t| *t > now).unwrap_or(now);
            let done = start + Duration::from_secs_f64(frame.len() as f64 / bw as f64);
            link_free = Some(done);
            tokio::time::sleep_until(done.into()).await;
        }
        if Faults::chance(&f.reset_ppm) {
            f.resets.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if Faults::chance(&f.truncate_ppm) && frame.len() > 8 {
            f.truncated.fetch_add(1, Ordering::Relaxed);
            let cut = 4 + fastrand::usize(1..frame.len() - 4);
            let _ = w.write_all(&frame[..cut]).await;
            let _ = w.flush().await;
            return false;
        }
        if dir == Dir::Down
            && frame.len() as u64 >= f.corrupt_min_frame.load(Ordering::Relaxed)
            && Faults::chance(&f.corrupt_ppm)
            && if f.corrupt_control_bit.load(Ordering::Relaxed) {
                set_control_bit(&mut frame)
            } else {
                corrupt_record_byte(&mut frame)
            }
        {
            f.corrupted.fetch_add(1, Ordering::Relaxed);
        }
        let every = f.corrupt_length_every.load(Ordering::Relaxed) as u64;
        if dir == Dir::Down && every > 0 {
            if let Some(at) = last_batch_with_records(&frame) {
                let n = f.batch_frames.fetch_add(1, Ordering::Relaxed) + 1;
                if n % every == 0 {
                    let done = f.length_corrupted.fetch_add(1, Ordering::Relaxed);
                    corrupt_batch_length(&mut frame, at, done);
                }
            }
        }
        if w.write_all(&frame).await.is_err() {
            return false;
        }
        f.frames.fetch_add(1, Ordering::Relaxed);
    }
    true
}

/// SO_LINGER 0: closing the socket sends an RST. (Deprecated in tokio because a
/// non-zero linger blocks on drop; a zero linger never does.)
#[allow(deprecated)]
fn rst(s: &TcpStream) {
    let _ = s.set_linger(Some(Duration::ZERO));
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Record batches (magic 2, CRC-32C valid) inside `frame`: `(start, len)` each.
pub fn find_batches(frame: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 61 <= frame.len() {
        let len = i32::from_be_bytes(frame[i + 8..i + 12].try_into().unwrap());
        let end = i + 12 + len.max(0) as usize;
        if frame[i + 16] == 2 && len >= 49 && end <= frame.len() {
            let crc = u32::from_be_bytes(frame[i + 17..i + 21].try_into().unwrap());
            if crc32c::crc32c(&frame[i + 21..end]) == crc {
                out.push((i, end - i));
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// Flips one byte in the records section (after the 61-byte header) of the
/// last batch with records in `frame`; false if it holds none.
pub fn corrupt_record_byte(frame: &mut [u8]) -> bool {
    let Some(&(start, len)) = find_batches(frame).iter().rev().find(|(_, len)| *len > 61) else {
        return false;
    };
    let at = start + 61 + fastrand::usize(..len - 61);
    frame[at] ^= 1 << fastrand::u8(..8);
    true
}

/// Start of the last batch with records in `frame`.
pub fn last_batch_with_records(frame: &[u8]) -> Option<usize> {
    find_batches(frame)
        .iter()
        .rev()
        .find(|(_, len)| *len > 61)
        .map(|(start, _)| *start)
}

/// Overwrites the `length` field of the batch at `start` (outside its CRC):
/// below the v2 minimum of 49, negative, or past the end of the frame, by
/// `variant % 3`.
pub fn corrupt_batch_length(frame: &mut [u8], start: usize, variant: u64) {
    let length: i32 = match variant % 3 {
        0 => 20,
        1 => -1,
        _ => i32::MAX - 16,
    };
    frame[start + 8..start + 12].copy_from_slice(&length.to_be_bytes());
}

/// Sets the control bit (attributes bit 5) of the last data batch in `frame`,
/// leaving its CRC stale; false if it holds none.
pub fn set_control_bit(frame: &mut [u8]) -> bool {
    let Some(&(start, _)) = find_batches(frame)
        .iter()
        .rev()
        .find(|(s, _)| frame[s + 22] & 0x20 == 0)
    else {
        return false;
    };
    frame[start + 22] |= 0x20;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_corrupts_a_batch_inside_a_frame() {
        // A frame: 40 bytes of "response header", one batch, 10 trailing bytes.
        let mut batch = vec![0u8; 61 + 100];
        let n = (batch.len() - 12) as i32;
        batch[8..12].copy_from_slice(&n.to_be_bytes());
        batch[16] = 2;
        for (i, b) in batch[61..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        let mut frame = vec![7u8; 40];
        frame.extend_from_slice(&batch);
        frame.extend_from_slice(&[0u8; 10]);
        assert_eq!(find_batches(&frame), vec![(40, batch.len())]);
        let before = frame.clone();
        assert!(corrupt_record_byte(&mut frame));
        let diff: Vec<usize> = (0..frame.len()).filter(|&i| frame[i] != before[i]).collect();
        assert_eq!(diff.len(), 1);
        assert!(diff[0] >= 40 + 61 && diff[0] < 40 + batch.len(), "{diff:?}");
        assert!(find_batches(&frame).is_empty(), "the CRC no longer matches");
        // A corrupted length hides the batch from the finder: its CRC span moved.
        let mut frame = before.clone();
        assert_eq!(last_batch_with_records(&frame), Some(40));
        for (variant, length) in [(0, 20), (1, -1), (2, i32::MAX - 16)] {
            corrupt_batch_length(&mut frame, 40, variant);
            assert_eq!(&frame[48..52], &i32::to_be_bytes(length));
            assert!(find_batches(&frame).is_empty());
        }
        let diff = (0..frame.len()).filter(|&i| frame[i] != before[i]).count();
        assert!(diff <= 4, "only the length field changes");
    }

    /// A server that answers every frame with the same frame.
    async fn echo_server() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 1 << 20];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    fn frame(len: usize) -> Vec<u8> {
        let mut f = (len as i32).to_be_bytes().to_vec();
        f.extend((0..len).map(|i| i as u8));
        f
    }

    /// Sends one frame through a fresh connection; returns what came back
    /// (up to the frame's length) and how long it took.
    async fn roundtrip(port: u16, len: usize) -> (Vec<u8>, Duration) {
        let mut c = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let f = frame(len);
        let t = Instant::now();
        c.write_all(&f).await.unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        while got.len() < f.len() {
            match tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        (got, t.elapsed())
    }

    #[tokio::test]
    async fn latency_bandwidth_stall_reset_and_truncation_take_effect() {
        let target = echo_server().await;
        let listen = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = Proxy::start(listen, target).await.unwrap();
        let f = &p.faults;
        let (got, t) = roundtrip(listen, 1000).await;
        assert_eq!(got, frame(1000));
        assert!(t < Duration::from_millis(200), "{t:?}");

        f.latency_ms.store(100, Ordering::Relaxed);
        let (got, t) = roundtrip(listen, 1000).await;
        assert_eq!(got, frame(1000));
        assert!(t >= Duration::from_millis(200), "latency both ways: {t:?}");
        f.clear();

        f.bandwidth.store(200_000, Ordering::Relaxed);
        let (got, t) = roundtrip(listen, 100_000).await;
        assert_eq!(got, frame(100_000));
        assert!(t >= Duration::from_millis(900), "100 kB each way at 200 kB/s: {t:?}");
        f.clear();

        f.stall(Duration::from_millis(800));
        let (got, t) = roundtrip(listen, 1000).await;
        assert_eq!(got, frame(1000), "held, then delivered");
        assert!(t >= Duration::from_millis(700), "stalled: {t:?}");

        f.truncate_ppm.store(1_000_000, Ordering::Relaxed);
        let (got, _) = roundtrip(listen, 1000).await;
        assert!(got.len() < 1004, "cut mid-frame: {} bytes", got.len());
        assert!(f.truncated.load(Ordering::Relaxed) >= 1);
        f.clear();

        // reset_all cuts an open connection.
        let mut c = TcpStream::connect(("127.0.0.1", listen)).await.unwrap();
        c.write_all(&frame(10)).await.unwrap();
        let mut buf = [0u8; 14];
        c.read_exact(&mut buf).await.unwrap();
        f.reset_all();
        let r = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .unwrap();
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        assert!(f.resets.load(Ordering::Relaxed) >= 1);
        f.corrupt_ppm.store(1_000_000, Ordering::Relaxed);
        let (got, _) = roundtrip(listen, 2000).await;
        assert_eq!(got, frame(2000), "no batch inside: nothing to corrupt");
        assert_eq!(f.corrupted.load(Ordering::Relaxed), 0);
    }
}
