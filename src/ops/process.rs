//! The standard `process_*` metrics of the Prometheus client libraries
//! (CPU seconds, resident and virtual memory, open file descriptors, start
//! time), read from `/proc/self` at each scrape. On a system without `/proc`
//! nothing is reported.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Linux reports process times in clock ticks of `USER_HZ`, which is 100 on
/// every architecture Linux supports.
const TICKS_PER_SECOND: f64 = 100.0;

/// Collects the `process_*` metrics of this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessCollector;

/// What `/proc/self` says about this process.
#[derive(Debug, Default, PartialEq)]
struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: f64,
    virtual_bytes: f64,
    start_time_seconds: f64,
    open_fds: f64,
    max_fds: f64,
}

/// Fields of `/proc/self/stat` after the command name (which may hold spaces):
/// index 11 is utime, 12 stime, 19 starttime (ticks after boot), 20 vsize, 21 rss (pages).
fn parse_stat(stat: &str) -> Option<Vec<&str>> {
    let after = stat.rsplit_once(')')?.1;
    Some(after.split_whitespace().collect())
}

/// Field `i` of [`parse_stat`]'s list as a number.
fn num(f: &[&str], i: usize) -> Option<f64> {
    f.get(i).and_then(|v| v.parse::<f64>().ok())
}

/// User and system CPU seconds from the fields of [`parse_stat`].
fn cpu_of(f: &[&str]) -> Option<f64> {
    Some((num(f, 11)? + num(f, 12)?) / TICKS_PER_SECOND)
}

/// User and system CPU seconds this process has used so far (`None` without
/// `/proc`): what `process_cpu_seconds_total` reports, and what `strait
/// bench` measures.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_of(&parse_stat(&stat)?)
}

/// The peak resident set size of this process (`VmHWM`), bytes.
pub fn peak_resident_bytes() -> Option<f64> {
    status_kib("VmHWM:").map(|kib| kib * 1024.0)
}

/// A `kB` line of `/proc/self/status`.
fn status_kib(key: &str) -> Option<f64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
}

fn read_stats() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let f = parse_stat(&stat)?;
    let num = |i: usize| num(&f, i);
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse::<f64>().ok()))?;
    let resident_kib = status_kib("VmRSS:")?;
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as f64)
        .unwrap_or(0.0);
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).and_then(|v| v.parse::<f64>().ok()))
        })
        .unwrap_or(0.0);
    Some(ProcessStats {
        cpu_seconds: cpu_of(&f)?,
        resident_bytes: resident_kib * 1024.0,
        virtual_bytes: num(20)?,
        start_time_seconds: boot + num(19)? / TICKS_PER_SECOND,
        open_fds,
        max_fds,
    })
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = read_stats() else { return Ok(()) };
        let cpu = ConstCounter::new(s.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            cpu.metric_type(),
        )?)?;
        for (name, help, v) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                s.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                s.virtual_bytes,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                s.start_time_seconds,
            ),
            ("process_open_fds", "Number of open file descriptors.", s.open_fds),
            ("process_max_fds", "Maximum number of open file descriptors.", s.max_fds),
        ] {
            let g = ConstGauge::new(v);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with spaces and a parenthesis must not shift the fields.
        let line = "4242 (my (odd) cmd) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 12345 104857600 2560 rest";
        let f = parse_stat(line).unwrap();
        assert_eq!((f[11], f[12], f[19], f[20]), ("250", "50", "12345", "104857600"));
    }

    #[test]
    fn this_process_reports_cpu_and_memory() {
        let s = read_stats().expect("/proc is mounted");
        assert!(s.resident_bytes > 1e6 && s.virtual_bytes >= s.resident_bytes, "{s:?}");
        assert!(s.start_time_seconds > 1.6e9 && s.open_fds >= 3.0, "{s:?}");
        assert!(peak_resident_bytes().unwrap() >= s.resident_bytes * 0.5, "{s:?}");
        assert!(cpu_seconds().unwrap() >= s.cpu_seconds, "{s:?}");
    }
}
