//! Fewer wake-ups while a large response arrives: the receive low-watermark
//! (`SO_RCVLOWAT`) of a plain TCP connection follows the frame being read.
//!
//! A Fetch response of several MiB arrives at the source broker's pace. Without
//! a low-watermark the kernel wakes strait for every few dozen KiB that land,
//! and each wake-up is an `epoll_wait` return, a `recv` and a context switch.
//! While a frame is in progress strait knows how many bytes it still needs, so
//! it asks the kernel not to report the socket readable before
//! `min(needed, 2 MiB)` bytes are queued. The watermark never exceeds what the
//! broker still has to send for the current frame, so it cannot wait for bytes
//! that never come; a closed or reset connection wakes the reader anyway, and
//! the kernel also wakes it when its receive window is nearly full. Between
//! frames it is back at 1 byte.
//!
//! It cut the wake-ups several-fold and CPU per GB measurably (figures in
//! `docs/design.md`, "Performance notes"): that measured gain is why this
//! module holds one small `unsafe` call.

use std::os::fd::RawFd;

/// Largest watermark asked for: big enough to cut the wake-ups several-fold
/// (512 KiB saved less; `docs/design.md`), small enough that the kernel can grow
/// the receive buffer to twice it (`tcp_rmem` allows 32 MiB by default).
const MAX_LOWAT: usize = 2 * 1024 * 1024;
/// Below this many missing bytes the default watermark (1) is kept: small
/// frames (every response but Fetch) never pay for a `setsockopt`.
const MIN_LOWAT: usize = 64 * 1024;

/// The low-watermark state of one connection's socket.
#[derive(Debug)]
pub struct LowWatermark {
    fd: RawFd,
    current: usize,
}

impl LowWatermark {
    /// Tracks the watermark of `fd`, which must stay open as long as this value
    /// is used (the connection's reader owns the socket for its whole life).
    pub fn new(fd: RawFd) -> Self {
        Self { fd, current: 1 }
    }

    /// Sets the watermark for a read that still needs `needed` bytes of the
    /// current frame. Best effort: a refused `setsockopt` only costs wake-ups.
    pub fn expect(&mut self, needed: usize) {
        let want = if needed >= MIN_LOWAT { needed.min(MAX_LOWAT) } else { 1 };
        if want != self.current && set_rcvlowat(self.fd, want) {
            self.current = want;
        }
    }
}

/// `setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, bytes)`; true when the kernel took it.
#[allow(unsafe_code)]
fn set_rcvlowat(fd: RawFd, bytes: usize) -> bool {
    let value: libc::c_int = bytes.min(libc::c_int::MAX as usize) as libc::c_int;
    // SAFETY: `value` is a live c_int on this stack frame and the length passed
    // is its size, so the kernel reads exactly that memory. `fd` is the socket
    // of a connection whose reader is running (see `LowWatermark::new`); a
    // stale descriptor would make the call fail with EBADF, not touch memory.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    #[test]
    fn watermark_follows_the_missing_bytes() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let get = |s: &std::net::TcpStream| {
            let mut v: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            #[allow(unsafe_code)]
            // SAFETY: v and len are live locals of the sizes passed.
            let rc = unsafe {
                libc::getsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVLOWAT,
                    (&mut v as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            assert_eq!(rc, 0);
            v as usize
        };
        let mut w = LowWatermark::new(a.as_raw_fd());
        w.expect(10 << 20);
        assert_eq!(get(&a), MAX_LOWAT);
        w.expect(200_000);
        assert_eq!(get(&a), 200_000);
        w.expect(100);
        assert_eq!(get(&a), 1);
        // With a watermark above what is queued, a non-blocking read still returns
        // what is there: the watermark only delays readiness.
        let (mut b, _) = l.accept().unwrap();
        w.expect(300_000);
        b.write_all(&[7u8; 1000]).unwrap();
        let mut a = a;
        a.set_read_timeout(Some(std::time::Duration::from_millis(200))).unwrap();
        a.set_nonblocking(true).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut got = [0u8; 4096];
        assert_eq!(a.read(&mut got).unwrap(), 1000);
    }
}
