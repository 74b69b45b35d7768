//! `--rate` of `strait bench` and `strait load`: a steady write rate, and the
//! pacing arithmetic that holds the loader to it.
//!
//! A loader paced at a steady rate measures replication latency (the recovery
//! point of a disaster) instead of queueing: each partition's task sends a
//! small batch every [`TICK`], the records due by then and not yet sent.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How often a paced partition sends a batch.
pub const TICK: Duration = Duration::from_millis(5);

/// A steady write rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// Bytes of record values per second (`MB/s`: 10^6 bytes).
    Bytes(u64),
    /// Records per second.
    Records(u64),
}

/// The forms `--rate` accepts, for error messages.
const FORMS: &str = "accepted forms: <number>MB/s (10^6 bytes of record values per second, e.g. 10MB/s or 2.5MB/s) or <whole number>/s (records per second, e.g. 5000/s)";

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("--rate {s:?}: {why}; {FORMS}");
        let t = s.trim();
        if let Some(n) = t.strip_suffix("MB/s") {
            let mb: f64 = n.trim().parse().map_err(|_| bad("not a number before MB/s"))?;
            let bytes = (mb * 1e6).round();
            if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
                return Err(bad("the rate must be at least 1 byte per second"));
            }
            Ok(Rate::Bytes(bytes as u64))
        } else if let Some(n) = t.strip_suffix("/s") {
            match n.trim().parse::<u64>() {
                Ok(0) => Err(bad("the rate must be at least 1 record per second")),
                Ok(r) => Ok(Rate::Records(r)),
                Err(_) => Err(bad("not a whole number of records before /s")),
            }
        } else {
            Err(bad("unknown unit"))
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Bytes(b) => write!(f, "{}MB/s", *b as f64 / 1e6),
            Rate::Records(r) => write!(f, "{r}/s"),
        }
    }
}

impl Rate {
    /// The rate's unit and its value for `records_per_second` records of
    /// `record_size` bytes (to report an achieved rate in the asked unit).
    pub fn in_unit(&self, records_per_second: f64, record_size: usize) -> (f64, &'static str) {
        match self {
            Rate::Bytes(_) => (records_per_second * record_size as f64 / 1e6, "MB/s"),
            Rate::Records(_) => (records_per_second, "records/s"),
        }
    }

    /// The asked rate in its own unit.
    pub fn value(&self) -> f64 {
        match *self {
            Rate::Bytes(b) => b as f64 / 1e6,
            Rate::Records(r) => r as f64,
        }
    }
}

/// One partition's share of a rate, in records per [`TICK`] as an exact
/// fraction: the records due after `n` ticks are `n * num / den`, so each tick
/// sends the whole records due and carries the fraction to the next, and the
/// long-run rate is exact however the rate divides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacer {
    num: u128,
    den: u128,
}

impl Pacer {
    /// One of `partitions` equal shares of `rate`, for records of `record_size` bytes.
    pub fn new(rate: Rate, record_size: usize, partitions: u32) -> Self {
        let tick_us = TICK.as_micros();
        let parts = u128::from(partitions.max(1));
        match rate {
            // bytes/s × tick / (size × 10^6 µs/s × partitions)
            Rate::Bytes(b) => Self {
                num: u128::from(b) * tick_us,
                den: record_size.max(1) as u128 * 1_000_000 * parts,
            },
            Rate::Records(r) => Self {
                num: u128::from(r) * tick_us,
                den: 1_000_000 * parts,
            },
        }
    }

    /// Records due after `ticks` ticks, in total.
    pub fn due(&self, ticks: u64) -> u64 {
        (u128::from(ticks) * self.num / self.den).min(u128::from(u64::MAX)) as u64
    }

    /// Records to send at tick `n` (1-based): the whole records due by then
    /// beyond those due by the tick before.
    #[cfg(test)]
    pub fn at_tick(&self, n: u64) -> u64 {
        self.due(n) - self.due(n.saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bytes_and_records_per_second() {
        assert_eq!("10MB/s".parse(), Ok(Rate::Bytes(10_000_000)));
        assert_eq!("2.5MB/s".parse(), Ok(Rate::Bytes(2_500_000)));
        assert_eq!(" 0.001 MB/s".parse(), Ok(Rate::Bytes(1_000)));
        assert_eq!("5000/s".parse(), Ok(Rate::Records(5000)));
        assert_eq!(Rate::Bytes(2_500_000).to_string(), "2.5MB/s");
        assert_eq!(Rate::Records(7).to_string(), "7/s");
    }

    #[test]
    fn refuses_other_forms_naming_the_flag_and_the_forms() {
        for bad in [
            "10", "10MiB/s", "10mb/s", "MB/s", "-1MB/s", "0MB/s", "0/s", "1.5/s", "fast", "NaNMB/s", "infMB/s",
        ] {
            let e = bad.parse::<Rate>().unwrap_err();
            assert!(e.starts_with("--rate "), "{bad}: {e}");
            assert!(e.contains("MB/s") && e.contains("/s (records per second"), "{bad}: {e}");
        }
    }

    #[test]
    fn ticks_carry_remainders_so_the_rate_is_exact() {
        let per_second = (Duration::from_secs(1).as_micros() / TICK.as_micros()) as u64;
        // (rate, record size, partitions, records per second per partition)
        for (rate, size, parts, want) in [
            (Rate::Bytes(10_000_000), 1024, 8, 10_000_000.0 / 1024.0 / 8.0),
            (Rate::Bytes(2_000_000), 1000, 3, 2_000.0 / 3.0),
            (Rate::Records(7), 100, 2, 3.5),
            (Rate::Records(1_000_000), 100, 1, 1_000_000.0),
        ] {
            let p = Pacer::new(rate, size, parts);
            for seconds in [1u64, 7, 60] {
                let ticks = seconds * per_second;
                let sum: u64 = (1..=ticks).map(|n| p.at_tick(n)).sum();
                assert_eq!(sum, p.due(ticks));
                // Exact but for the fraction of a record not yet due.
                let exact = want * seconds as f64;
                assert!(
                    sum as f64 <= exact + 1e-6 && exact - (sum as f64) < 1.0,
                    "{rate} {seconds}s: {sum} vs {exact}"
                );
            }
        }
        // Whole rates sum exactly over a second, spread evenly over the ticks.
        let p = Pacer::new(Rate::Records(1_000), 10, 1);
        let ticks: Vec<u64> = (1..=per_second).map(|n| p.at_tick(n)).collect();
        assert_eq!(ticks.iter().sum::<u64>(), 1_000);
        assert!(ticks.iter().all(|&n| n == 5));
        let p = Pacer::new(Rate::Records(300), 10, 1); // 1.5 a tick
        assert_eq!((1..=4).map(|n| p.at_tick(n)).collect::<Vec<_>>(), vec![1, 2, 1, 2]);
    }
}
