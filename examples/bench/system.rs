//! What the operating system says about this process: open-file limit, memory, CPU time.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Memory and CPU time of this process so far.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Peak resident set (VmHWM), KiB.
    pub peak_rss_kib: u64,
    /// Resident set now (VmRSS), KiB.
    pub rss_kib: u64,
    /// User plus system CPU time, microseconds.
    pub cpu_us: u64,
}

impl Usage {
    pub fn now() -> std::io::Result<Usage> {
        let status = std::fs::read_to_string("/proc/self/status")?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
                .unwrap_or(0)
        };
        // SAFETY: getrusage fills the zeroed struct it is given.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
        Ok(Usage {
            peak_rss_kib: field("VmHWM:"),
            rss_kib: field("VmRSS:"),
            cpu_us: micros(ru.ru_utime) + micros(ru.ru_stime),
        })
    }

    pub fn cpu_since(&self, earlier: &Usage) -> Duration {
        Duration::from_micros(self.cpu_us.saturating_sub(earlier.cpu_us))
    }
}

/// The 1, 5 and 15 minute load averages: other work on the machine skews every figure.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
