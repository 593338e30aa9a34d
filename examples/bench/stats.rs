//! Percentiles and the units the report prints.

use std::time::Duration;

/// Median and 99th percentile (nearest rank) of a sample.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spread {
    pub median: Duration,
    pub p99: Duration,
}

impl Spread {
    pub fn of(mut sample: Vec<Duration>) -> Spread {
        if sample.is_empty() {
            return Spread::default();
        }
        sample.sort();
        let rank = |p: f64| {
            let i = (p * sample.len() as f64).ceil() as usize;
            sample[i.clamp(1, sample.len()) - 1]
        };
        Spread {
            median: rank(0.5),
            p99: rank(0.99),
        }
    }

    /// `median / p99` in milliseconds.
    pub fn ms(&self) -> String {
        format!("{} / {}", ms(self.median), ms(self.p99))
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub fn kib_each(kib: u64, count: usize) -> String {
    format!("{:.1} KiB", kib as f64 / count.max(1) as f64)
}
