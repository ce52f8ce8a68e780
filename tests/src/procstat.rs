//! Resource use of a process read from /proc, for the benchmarks: resident memory (now and
//! peak) and CPU time (user + system).

use std::time::Duration;

#[derive(Debug, Clone, Copy, Default)]
pub struct ProcUsage {
    /// VmRSS, bytes.
    pub rss: u64,
    /// VmHWM (peak RSS), bytes.
    pub hwm: u64,
    /// utime + stime.
    pub cpu: Duration,
}

/// Clock ticks per second for /proc/<pid>/stat (`getconf CLK_TCK`, 100 on Linux x86_64).
fn clk_tck() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// Reads /proc/<pid>/status and /proc/<pid>/stat; `None` if the process is gone.
pub fn usage(pid: u32) -> Option<ProcUsage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let tck = clk_tck();
    Some(ProcUsage { rss: kb("VmRSS:"), hwm: kb("VmHWM:"), cpu: Duration::from_millis(ticks * 1000 / tck) })
}
