//! TCP socket buffers across long round trips (WAN).
//!
//! A connection moves at most one window of bytes per round trip, and the
//! window is bounded by the socket's buffer. Linux sizes buffers itself
//! (autotuning) up to the third value of `net.ipv4.tcp_rmem` / `tcp_wmem`;
//! setting `SO_RCVBUF` / `SO_SNDBUF` turns autotuning off for that socket and
//! is capped by `net.core.rmem_max` / `wmem_max` (see `tcp(7)`, `socket(7)`).
//! So strait leaves autotuning on unless a cluster sets
//! `socket_receive_buffer_bytes` / `socket_send_buffer_bytes`, and says so when
//! the kernel's limits are below what a measured round trip needs:
//!
//! - a configured size the kernel clamped: one warning per cluster and
//!   direction ([`connect`]);
//! - an autotuning ceiling (or configured size) below the bytes a source
//!   broker's fetch connections hold in flight: one warning per broker, from the
//!   fetcher's round-trip watch ([`warn_short_window`]); `strait check` reports
//!   the same ([`shortfall`]).
//!
//! Linux doubles a requested `SO_RCVBUF` to leave room for its bookkeeping and
//! reports the doubled value; an autotuned buffer is not doubled, and about
//! half of it holds data (`net.ipv4.tcp_adv_win_scale`), so a window of `W`
//! bytes needs an autotuning ceiling of about `2 W` ([`BUFFER_PER_WINDOW`]).
//! The `/proc` parsers are pure functions over the file text.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tracing::warn;

/// Largest configurable buffer: the kernel takes an `int` (2 GiB - 1).
pub const MAX_BUFFER_BYTES: u64 = i32::MAX as u64;
/// Autotuned buffer bytes per byte of TCP window (see the module doc).
pub const BUFFER_PER_WINDOW: u64 = 2;

/// Requested socket buffer sizes of one cluster's connections (none: autotuning).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketBuffers {
    /// `SO_RCVBUF` in bytes.
    pub receive: Option<u32>,
    /// `SO_SNDBUF` in bytes.
    pub send: Option<u32>,
}

/// Which buffer of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    /// The receive buffer (`rmem`): what a fetch response streams into.
    Receive,
    /// The send buffer (`wmem`): what a produce request streams out of.
    Send,
}

impl Direction {
    /// The cluster config key that sets this buffer.
    pub fn key(self) -> &'static str {
        match self {
            Self::Receive => "socket_receive_buffer_bytes",
            Self::Send => "socket_send_buffer_bytes",
        }
    }
    /// The autotuning sysctl (`min default max`).
    pub fn tcp_sysctl(self) -> &'static str {
        match self {
            Self::Receive => "net.ipv4.tcp_rmem",
            Self::Send => "net.ipv4.tcp_wmem",
        }
    }
    /// The sysctl capping `SO_RCVBUF` / `SO_SNDBUF`.
    pub fn core_sysctl(self) -> &'static str {
        match self {
            Self::Receive => "net.core.rmem_max",
            Self::Send => "net.core.wmem_max",
        }
    }
    fn proc_path(sysctl: &str) -> String {
        format!("/proc/sys/{}", sysctl.replace('.', "/"))
    }
}

/// The three values of `net.ipv4.tcp_rmem` / `tcp_wmem`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpMem {
    /// Smallest buffer under memory pressure.
    pub min: u64,
    /// A new socket's buffer.
    pub default: u64,
    /// Autotuning ceiling.
    pub max: u64,
}

/// Parses the text of `/proc/sys/net/ipv4/tcp_rmem` (three integers).
pub fn parse_tcp_mem(text: &str) -> Option<TcpMem> {
    let mut it = text.split_whitespace().map(|v| v.parse::<u64>().ok());
    let mem = TcpMem {
        min: it.next()??,
        default: it.next()??,
        max: it.next()??,
    };
    it.next().is_none().then_some(mem)
}

/// Parses the text of `/proc/sys/net/core/rmem_max` (one integer).
pub fn parse_core_max(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// This machine's `tcp_rmem` / `tcp_wmem` (none: not Linux, or unreadable).
pub fn tcp_mem(dir: Direction) -> Option<TcpMem> {
    parse_tcp_mem(&std::fs::read_to_string(Direction::proc_path(dir.tcp_sysctl())).ok()?)
}

/// This machine's `rmem_max` / `wmem_max` (none: not Linux, or unreadable).
pub fn core_max(dir: Direction) -> Option<u64> {
    parse_core_max(&std::fs::read_to_string(Direction::proc_path(dir.core_sysctl())).ok()?)
}

/// The buffer the kernel granted, from what `getsockopt` reports: Linux
/// reports twice the granted size (its bookkeeping share).
pub fn granted(reported: u32) -> u32 {
    if cfg!(target_os = "linux") {
        reported / 2
    } else {
        reported
    }
}

/// A buffer size set on a socket and what the kernel made of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Bytes asked for.
    pub requested: u32,
    /// Bytes granted (see [`granted`]).
    pub effective: u32,
}

impl Applied {
    /// The kernel granted less than asked (`rmem_max` / `wmem_max` too low).
    pub fn clamped(&self) -> bool {
        self.effective < self.requested
    }
}

/// Sets one buffer of `socket` and reads back what was granted.
pub fn apply(socket: &TcpSocket, dir: Direction, requested: u32) -> std::io::Result<Applied> {
    let reported = match dir {
        Direction::Receive => {
            socket.set_recv_buffer_size(requested)?;
            socket.recv_buffer_size()?
        }
        Direction::Send => {
            socket.set_send_buffer_size(requested)?;
            socket.send_buffer_size()?
        }
    };
    Ok(Applied {
        requested,
        effective: granted(reported),
    })
}

/// Keys already warned about in this process (cluster and direction, or broker).
static WARNED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// True the first time `key` is seen in this process.
fn first_time(key: String) -> bool {
    crate::sync::lock(&WARNED).insert(key)
}

/// Connects to `addr` (`host:port`, every resolved address in turn) with the
/// buffers set before connecting (window scaling is agreed in the handshake).
/// A buffer the kernel clamped is reported once per `cluster` and direction.
pub async fn connect(addr: &str, buffers: SocketBuffers, cluster: &str) -> std::io::Result<TcpStream> {
    if buffers == SocketBuffers::default() {
        return TcpStream::connect(addr).await;
    }
    let mut last = None;
    for sa in tokio::net::lookup_host(addr).await? {
        match connect_one(sa, buffers, cluster).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{addr} resolves to no address"))))
}

async fn connect_one(sa: SocketAddr, buffers: SocketBuffers, cluster: &str) -> std::io::Result<TcpStream> {
    let socket = if sa.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    for (dir, size) in [(Direction::Receive, buffers.receive), (Direction::Send, buffers.send)] {
        let Some(size) = size else { continue };
        let a = apply(&socket, dir, size)?;
        if a.clamped() && first_time(format!("clamp {cluster} {dir:?}")) {
            warn!(
                cluster,
                key = dir.key(),
                requested_bytes = a.requested,
                effective_bytes = a.effective,
                sysctl = %format!("sysctl -w {}={}", dir.core_sysctl(), a.requested),
                "the kernel granted a smaller socket buffer than configured ({} caps it); raise it with the sysctl shown",
                dir.core_sysctl()
            );
        }
    }
    socket.connect(sa).await
}

/// A socket buffer ceiling below the bytes one connection must hold in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    /// Bytes one connection holds in flight.
    pub needed: u64,
    /// The buffer limit: the autotuning ceiling, or the configured size as granted.
    pub ceiling: u64,
    /// What to change, e.g. `sysctl -w net.ipv4.tcp_rmem="4096 131072 67108864"`.
    pub advice: String,
}

/// Whether one connection can hold `needed` bytes in flight in direction `dir`,
/// given the configured size (if any) and the kernel's limits (none: unknown).
/// Pure: the caller reads `/proc` ([`tcp_mem`], [`core_max`]).
pub fn shortfall(
    dir: Direction,
    needed: u64,
    configured: Option<u32>,
    tcp: Option<TcpMem>,
    core: Option<u64>,
) -> Option<Shortfall> {
    match configured {
        Some(requested) => {
            let requested = u64::from(requested);
            let ceiling = core.map_or(requested, |c| requested.min(c));
            if needed <= ceiling {
                return None;
            }
            let want = needed.next_power_of_two().max(requested);
            let mut advice = if requested < needed {
                format!("raise {} to {want}", dir.key())
            } else {
                String::new()
            };
            if core.is_some_and(|c| c < want) {
                if !advice.is_empty() {
                    advice.push_str(" and run ");
                }
                advice.push_str(&format!("`sysctl -w {}={want}`", dir.core_sysctl()));
            }
            Some(Shortfall {
                needed,
                ceiling,
                advice,
            })
        }
        None => {
            let tcp = tcp?;
            if needed.saturating_mul(BUFFER_PER_WINDOW) <= tcp.max {
                return None;
            }
            let want = needed.saturating_mul(BUFFER_PER_WINDOW).next_power_of_two();
            Some(Shortfall {
                needed,
                ceiling: tcp.max,
                advice: format!(
                    "`sysctl -w {}=\"{} {} {want}\"`",
                    dir.tcp_sysctl(),
                    tcp.min,
                    tcp.default
                ),
            })
        }
    }
}

/// A configured size above `rmem_max` / `wmem_max`: what the kernel would
/// grant instead, and the sysctl that lets the configured size through.
pub fn clamped_override(dir: Direction, requested: u32, core: Option<u64>) -> Option<String> {
    let core = core?;
    (u64::from(requested) > core).then(|| {
        format!(
            "{} = {requested} is above {} ({core}): the kernel grants {core}; run `sysctl -w {}={requested}`",
            dir.key(),
            dir.core_sysctl(),
            dir.core_sysctl()
        )
    })
}

/// Called when the fetcher learns source `broker`'s round trip: warns once per
/// cluster and broker when the receive buffer limit is below the bytes one of
/// its fetch connections holds in flight (`in_flight` over `lanes`).
pub fn warn_short_window(
    cluster: &str,
    broker: i32,
    rtt: Duration,
    in_flight: u64,
    lanes: usize,
    configured: Option<u32>,
) {
    let dir = Direction::Receive;
    let per_connection = in_flight / lanes.max(1) as u64;
    let Some(s) = shortfall(dir, per_connection, configured, tcp_mem(dir), core_max(dir)) else {
        return;
    };
    if !first_time(format!("window {cluster} {broker}")) {
        return;
    }
    warn!(
        cluster,
        broker,
        rtt_ms = (rtt.as_secs_f64() * 1e4).round() / 10.0,
        lanes,
        needed_bytes = s.needed,
        ceiling_bytes = s.ceiling,
        setting = if configured.is_some() { dir.key() } else { dir.tcp_sysctl() },
        advice = %s.advice,
        "the socket receive buffer limit is below the bytes a fetch connection to this source broker holds in flight at its round trip: throughput is capped there; apply the advice"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT_RMEM: TcpMem = TcpMem {
        min: 4096,
        default: 131072,
        max: 6291456,
    };

    #[test]
    fn parses_proc_text() {
        assert_eq!(parse_tcp_mem("4096\t131072\t6291456\n"), Some(DEFAULT_RMEM));
        assert_eq!(parse_core_max("212992\n"), Some(212992));
    }

    #[test]
    fn malformed_proc_text_is_none() {
        for bad in [
            "",
            "4096 131072",
            "4096 131072 x",
            "4096 131072 6291456 7",
            "-1 2 3",
            "a b c",
        ] {
            assert_eq!(parse_tcp_mem(bad), None, "{bad:?}");
        }
        for bad in ["", "abc", "-5", "1 2", "99999999999999999999999"] {
            assert_eq!(parse_core_max(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn autotuning_ceiling_against_the_bytes_in_flight() {
        let r = Direction::Receive;
        // Half of the autotuned buffer holds data: 3 MiB fits 6 MiB, a byte more does not.
        assert_eq!(shortfall(r, 3 * 1024 * 1024, None, Some(DEFAULT_RMEM), None), None);
        let s = shortfall(r, 10_000_000, None, Some(DEFAULT_RMEM), None).unwrap();
        assert_eq!(s.ceiling, 6291456);
        assert_eq!(s.needed, 10_000_000);
        assert_eq!(s.advice, "`sysctl -w net.ipv4.tcp_rmem=\"4096 131072 33554432\"`");
        // Unknown limits: nothing to say.
        assert_eq!(shortfall(r, u64::MAX, None, None, Some(1)), None);
        let w = TcpMem {
            min: 4096,
            default: 16384,
            max: 4194304,
        };
        let s = shortfall(Direction::Send, 4_000_000, None, Some(w), None).unwrap();
        assert_eq!(s.advice, "`sysctl -w net.ipv4.tcp_wmem=\"4096 16384 8388608\"`");
    }

    #[test]
    fn configured_size_against_the_bytes_in_flight() {
        let r = Direction::Receive;
        let tcp = Some(DEFAULT_RMEM);
        // Configured: autotuning no longer applies; the granted size is the window.
        assert_eq!(shortfall(r, 8_000_000, Some(8_000_000), tcp, Some(16_000_000)), None);
        let s = shortfall(r, 8_000_000, Some(4_000_000), tcp, Some(16_000_000)).unwrap();
        assert_eq!(
            (s.ceiling, s.advice.as_str()),
            (4_000_000, "raise socket_receive_buffer_bytes to 8388608")
        );
        // Large enough, but clamped by rmem_max.
        let s = shortfall(r, 8_000_000, Some(16_000_000), tcp, Some(4_194_304)).unwrap();
        assert_eq!(s.ceiling, 4_194_304);
        assert_eq!(s.advice, "`sysctl -w net.core.rmem_max=16000000`");
        // Both too small.
        let s = shortfall(r, 8_000_000, Some(1_000_000), tcp, Some(4_194_304)).unwrap();
        assert_eq!(
            s.advice,
            "raise socket_receive_buffer_bytes to 8388608 and run `sysctl -w net.core.rmem_max=8388608`"
        );
    }

    #[test]
    fn clamped_override_names_the_sysctl() {
        let r = Direction::Receive;
        assert_eq!(clamped_override(r, 1_000_000, Some(4_194_304)), None);
        assert_eq!(clamped_override(r, 1_000_000, None), None);
        let m = clamped_override(Direction::Send, 8_388_608, Some(4_194_304)).unwrap();
        assert!(
            m.contains("socket_send_buffer_bytes = 8388608") && m.contains("`sysctl -w net.core.wmem_max=8388608`"),
            "{m}"
        );
    }

    #[test]
    fn applied_is_clamped_when_less_was_granted() {
        assert!(Applied {
            requested: 10,
            effective: 5
        }
        .clamped());
        assert!(!Applied {
            requested: 10,
            effective: 10
        }
        .clamped());
        // The kernel's minimum can exceed a tiny request.
        assert!(!Applied {
            requested: 1,
            effective: 1152
        }
        .clamped());
    }

    #[test]
    fn warnings_are_once_per_key() {
        assert!(first_time("test once a".into()));
        assert!(!first_time("test once a".into()));
        assert!(first_time("test once b".into()));
    }

    /// A real socket: 1 GiB is above any usual `rmem_max`; the granted size
    /// read back is what the kernel reports, and the clamp is detected.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_huge_request_on_a_real_socket_is_detected_as_clamped() {
        const GIB: u32 = 1 << 30;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        for dir in [Direction::Receive, Direction::Send] {
            let socket = TcpSocket::new_v4().unwrap();
            let a = apply(&socket, dir, GIB).unwrap();
            let reported = match dir {
                Direction::Receive => socket.recv_buffer_size().unwrap(),
                Direction::Send => socket.send_buffer_size().unwrap(),
            };
            assert_eq!(a.effective, reported / 2, "{dir:?}");
            let max = core_max(dir).expect("/proc/sys/net/core/*mem_max");
            if max < u64::from(GIB) {
                assert!(a.clamped(), "{dir:?}: {a:?}, max {max}");
                assert_eq!(u64::from(a.effective), max, "{dir:?}: granted = {}", dir.core_sysctl());
            }
            // The clamped socket still connects.
            socket.connect(addr).await.unwrap();
        }
        // connect() applies both buffers and connects.
        let buffers = SocketBuffers {
            receive: Some(GIB),
            send: Some(65536),
        };
        let s = connect(&addr.to_string(), buffers, "test").await.unwrap();
        assert_eq!(s.peer_addr().unwrap(), addr);
    }
}
