//! Latency histograms: powers of two of microseconds, updated lock-free by the thread that
//! measures, read by the control socket and the exit summary. One kind for every latency popvmm
//! reports (page faults, migrations), so that they are summed, split into quantiles and printed
//! the same way.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Buckets: bucket b counts latencies in [2^b, 2^(b+1)) microseconds, from 1 us to ~1 s; the last
/// one holds everything slower.
pub const BUCKETS: usize = 21;

/// A latency histogram, updated from any thread.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    count: AtomicU64,
    sum_ns: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

impl LatencyHistogram {
    pub fn record(&self, ns: u64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        let us = (ns / 1000).max(1);
        let bucket = (63 - us.leading_zeros() as usize).min(BUCKETS - 1);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now (each read on its own: a measurement in flight may be half counted).
    pub fn snapshot(&self) -> Latencies {
        let mut l = Latencies {
            count: self.count.load(Ordering::Relaxed),
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
            ..Latencies::default()
        };
        for (b, c) in l.buckets.iter_mut().zip(&self.buckets) {
            *b = c.load(Ordering::Relaxed);
        }
        l
    }
}

/// A histogram's counts, to add up (over islands) and summarize.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latencies {
    pub count: u64,
    pub sum_ns: u64,
    pub buckets: [u64; BUCKETS],
}

impl Latencies {
    pub fn add(&mut self, other: &Latencies) {
        self.count += other.count;
        self.sum_ns += other.sum_ns;
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
    }

    pub fn mean_us(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_ns as f64 / self.count as f64 / 1000.0)
    }

    /// The bucket below which a fraction `q` of the measurements fall. None: none measured.
    pub fn quantile(&self, q: f64) -> Option<Quantile> {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let target = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= target {
                return Some(if b + 1 < BUCKETS {
                    Quantile::Below(1u64 << (b + 1))
                } else {
                    Quantile::AtLeast(1u64 << b)
                });
            }
        }
        None
    }
}

/// Where a latency quantile falls in the histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantile {
    /// Below this many microseconds (a bucket's upper bound).
    Below(u64),
    /// In the last, open-ended bucket: at least this many microseconds.
    AtLeast(u64),
}

impl Quantile {
    /// The upper bound in microseconds, if the histogram has one.
    pub fn upper_us(self) -> Option<u64> {
        match self {
            Quantile::Below(us) => Some(us),
            Quantile::AtLeast(_) => None,
        }
    }
}

impl fmt::Display for Quantile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quantile::Below(us) => write!(f, "< {us} us"),
            Quantile::AtLeast(us) => write!(f, ">= {us} us"),
        }
    }
}

/// Nanoseconds of CLOCK_MONOTONIC, the clock every island of the host shares (a migrating thread
/// carries its departure time in it).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_means_and_the_open_last_bucket() {
        let h = LatencyHistogram::default();
        assert_eq!(h.snapshot().quantile(0.5), None);
        for us in [3, 5, 6, 100] {
            h.record(us * 1000);
        }
        let l = h.snapshot();
        assert_eq!(l.count, 4);
        assert_eq!(l.mean_us(), Some(28.5));
        assert_eq!(l.quantile(0.5), Some(Quantile::Below(8)));
        assert_eq!(l.quantile(0.99), Some(Quantile::Below(128)));
        let slow = LatencyHistogram::default();
        slow.record(5_000_000_000);
        let mut sum = l;
        sum.add(&slow.snapshot());
        assert_eq!(sum.count, 5);
        assert_eq!(sum.quantile(1.0), Some(Quantile::AtLeast(1 << 20)));
        assert_eq!(Quantile::AtLeast(1 << 20).to_string(), ">= 1048576 us");
        assert_eq!(Quantile::Below(8).upper_us(), Some(8));
    }
}
