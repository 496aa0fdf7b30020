//! What the benchmark reads from the system: CPU clocks, resident memory, UDP datagram
//! counters and the machine it runs on. Linux only (`/proc`); where a file is missing the
//! value reads as zero and the report says `null`.

use std::time::Duration;

use serde_json::{Value, json};

/// CPU time of a clock (`CLOCK_THREAD_CPUTIME_ID`, `CLOCK_PROCESS_CPUTIME_ID`).
fn cpu(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and the clock ids are the constants libc
    // defines; clock_gettime writes nothing else.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time the calling thread has used.
pub fn thread_cpu() -> Duration {
    cpu(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time the whole process has used (every thread).
pub fn process_cpu() -> Duration {
    cpu(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// A field of `/proc/self/status` in kB (0 where there is no procfs).
pub fn status_kb(field: &str) -> u64 {
    proc_kb("/proc/self/status", field)
}

/// A `Field:   123 kB` line of a procfs file, in kB.
fn proc_kb(path: &str, field: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Resident memory of this process, in bytes.
pub fn rss_bytes() -> u64 {
    status_kb("VmRSS:") * 1024
}

/// Memory the kernel says is available for new allocations, in bytes.
pub fn mem_available_bytes() -> u64 {
    proc_kb("/proc/meminfo", "MemAvailable:") * 1024
}

/// The machine-wide UDP counters of `/proc/net/snmp` (this network namespace).
#[derive(Debug, Clone, Copy, Default)]
pub struct UdpCounters {
    pub in_datagrams: u64,
    pub out_datagrams: u64,
    pub receive_errors: u64,
    pub rcvbuf_errors: u64,
    pub sndbuf_errors: u64,
}

impl UdpCounters {
    /// The counters now (all zero without procfs).
    pub fn read() -> Self {
        let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
        let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
        let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
            return Self::default();
        };
        let pairs: Vec<(&str, u64)> = names
            .split_whitespace()
            .zip(values.split_whitespace())
            .skip(1)
            .map(|(n, v)| (n, v.parse().unwrap_or(0)))
            .collect();
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0, |(_, v)| *v)
        };
        Self {
            in_datagrams: get("InDatagrams"),
            out_datagrams: get("OutDatagrams"),
            receive_errors: get("InErrors"),
            rcvbuf_errors: get("RcvbufErrors"),
            sndbuf_errors: get("SndbufErrors"),
        }
    }

    /// The counts between `self` (earlier) and `later`.
    pub fn delta(&self, later: &Self) -> Self {
        Self {
            in_datagrams: later.in_datagrams.saturating_sub(self.in_datagrams),
            out_datagrams: later.out_datagrams.saturating_sub(self.out_datagrams),
            receive_errors: later.receive_errors.saturating_sub(self.receive_errors),
            rcvbuf_errors: later.rcvbuf_errors.saturating_sub(self.rcvbuf_errors),
            sndbuf_errors: later.sndbuf_errors.saturating_sub(self.sndbuf_errors),
        }
    }
}

/// CPU time every process of the machine has used since boot (user, nice, system, irq,
/// softirq and steal of `/proc/stat`).
pub fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else {
        return Duration::ZERO;
    };
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|i| fields.get(*i))
        .sum();
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Duration::from_secs_f64(busy as f64 / ticks)
}

/// A number of `/proc/sys`, if readable.
fn sysctl(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The machine: logical CPUs, CPU model, memory, kernel.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_owned());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_owned());
    json!({
        "nproc": nproc,
        "cpu_model": model,
        "mem_total_mb": proc_kb("/proc/meminfo", "MemTotal:") / 1024,
        "kernel": kernel,
        "udp_receive_buffer_default_bytes": sysctl("/proc/sys/net/core/rmem_default"),
        "udp_receive_buffer_max_bytes": sysctl("/proc/sys/net/core/rmem_max"),
    })
}

/// Milliseconds, with microsecond precision.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Rounds to 3 significant decimals for the report.
pub fn round3(x: f64) -> f64 {
    if !x.is_finite() {
        return 0.0;
    }
    (x * 1000.0).round() / 1000.0
}

/// Nearest-rank percentiles (p50, p90, p99, max) of durations, in ms.
pub fn percentiles_ms(samples: &mut [Duration]) -> Value {
    samples.sort_unstable();
    let at = |q: f64| {
        ms(bevy_atomic_matchmaking::atomic::core::stats::nearest_rank(
            samples, q,
        ))
    };
    json!({
        "count": samples.len(),
        "p50": at(0.5),
        "p90": at(0.9),
        "p99": at(0.99),
        "max": at(1.0),
    })
}
