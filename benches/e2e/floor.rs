// Bare floor for the end-to-end benchmark: move BYTES bytes from one loopback
// TCP socket to another through a relay with no Kafka logic at all.
//
//   generator thread --TCP--> relay thread --TCP--> sink thread   (127.0.0.1)
//
// The relay is what a replicator minimally has to do: read from one socket,
// write to another (here with a 1 MiB user-space buffer, read + write_all per
// chunk). Only the relay thread's CPU (utime+stime of its own task, from
// /proc/thread-self/stat) is reported; the generator and sink stand in for the
// two brokers.
//
// Build: rustc -O --edition 2021 benches/e2e/floor.rs -o target/e2e/floor
// Usage: floor BYTES [CHUNK]
// Prints one JSON line: {"bytes":..,"secs":..,"mb_per_s":..,"relay_cpu_s":..,
//                        "peak_rss_mb":..}
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

fn clk_tck() -> f64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux ABI this runs on; no libc crate.
    100.0
}

/// utime + stime (seconds) of the calling thread.
fn thread_cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Fields after the ")" of comm: state is field 3; utime/stime are 14/15.
    let rest = match s.rfind(')') {
        Some(i) => &s[i + 2..],
        None => return 0.0,
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ut: f64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0.0);
    let st: f64 = f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0.0);
    (ut + st) / clk_tck()
}

fn vm_hwm_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for l in s.lines() {
        if let Some(v) = l.strip_prefix("VmHWM:") {
            let kb: f64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0.0);
            return kb / 1024.0;
        }
    }
    0.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 2 {
        eprintln!("usage: floor BYTES [CHUNK]");
        std::process::exit(2);
    }
    let total: u64 = args[1].parse().expect("BYTES");
    let chunk: usize = args.get(2).map(|c| c.parse().expect("CHUNK")).unwrap_or(1 << 20);

    let relay_in = TcpListener::bind("127.0.0.1:0").unwrap();
    let sink_l = TcpListener::bind("127.0.0.1:0").unwrap();
    let in_addr = relay_in.local_addr().unwrap();
    let sink_addr = sink_l.local_addr().unwrap();

    // Sink: read until EOF, count bytes.
    let sink = std::thread::spawn(move || {
        let (mut s, _) = sink_l.accept().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut n: u64 = 0;
        loop {
            let r = s.read(&mut buf).unwrap();
            if r == 0 {
                break;
            }
            n += r as u64;
        }
        n
    });

    // Generator: a fixed pseudo-random pattern, written until `total` bytes.
    let generator = std::thread::spawn(move || {
        let mut s = TcpStream::connect(in_addr).unwrap();
        let mut pat = vec![0u8; chunk];
        let mut x: u32 = 0x9e37_79b9;
        for b in pat.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        let mut left = total;
        while left > 0 {
            let n = left.min(chunk as u64) as usize;
            s.write_all(&pat[..n]).unwrap();
            left -= n as u64;
        }
    });

    // Relay (the measured part), on its own thread so its CPU is separable.
    let relay = std::thread::spawn(move || {
        let (mut src, _) = relay_in.accept().unwrap();
        let mut dst = TcpStream::connect(sink_addr).unwrap();
        let t0 = Instant::now();
        let c0 = thread_cpu_secs();
        let mut buf = vec![0u8; chunk];
        let mut moved: u64 = 0;
        loop {
            let r = src.read(&mut buf).unwrap();
            if r == 0 {
                break;
            }
            dst.write_all(&buf[..r]).unwrap();
            moved += r as u64;
        }
        drop(dst);
        (moved, t0, thread_cpu_secs() - c0)
    });

    generator.join().unwrap();
    let (moved, t0, cpu) = relay.join().unwrap();
    let got = sink.join().unwrap();
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(moved, total);
    assert_eq!(got, total);
    println!(
        "{{\"bytes\":{},\"secs\":{:.3},\"mb_per_s\":{:.1},\"relay_cpu_s\":{:.2},\"peak_rss_mb\":{:.1}}}",
        total,
        secs,
        total as f64 / 1e6 / secs,
        cpu,
        vm_hwm_mb()
    );
}
