//! `/proc/stat` (CPU time by mode, boot time, forks, context switches, interrupts, running and
//! blocked processes) and `/proc/loadavg`, under node_exporter's cpu, stat and loadavg names.

use super::out::Out;

/// CPU time of one CPU in clock ticks, in /proc/stat's column order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CpuTimes {
    pub cpu: String,
    pub ticks: [u64; 8],
}

/// node_exporter's `mode` label for the first eight /proc/stat columns (guest time is already
/// included in `user` and `nice` by the kernel, so it is not a mode of its own here).
pub const MODES: [&str; 8] = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"];

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stat {
    pub cpus: Vec<CpuTimes>,
    pub boot_time: Option<u64>,
    pub context_switches: Option<u64>,
    pub forks: Option<u64>,
    pub interrupts: Option<u64>,
    pub procs_running: Option<u64>,
    pub procs_blocked: Option<u64>,
}

pub fn parse_stat(text: &str) -> Stat {
    let mut s = Stat::default();
    for line in text.lines() {
        let mut it = line.split_ascii_whitespace();
        let Some(key) = it.next() else { continue };
        let first = || line.split_ascii_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok());
        match key {
            // The aggregate "cpu" line is left out, as node_exporter does: sum() gives it.
            k if k.starts_with("cpu") && k.len() > 3 && k[3..].bytes().all(|b| b.is_ascii_digit()) => {
                let mut t = CpuTimes { cpu: k[3..].to_string(), ticks: [0; 8] };
                for (slot, v) in t.ticks.iter_mut().zip(it) {
                    *slot = v.parse().unwrap_or(0);
                }
                s.cpus.push(t);
            }
            "btime" => s.boot_time = first(),
            "ctxt" => s.context_switches = first(),
            "processes" => s.forks = first(),
            "intr" => s.interrupts = first(),
            "procs_running" => s.procs_running = first(),
            "procs_blocked" => s.procs_blocked = first(),
            _ => {}
        }
    }
    s
}

pub fn emit_stat(s: &Stat, ticks_per_sec: f64, out: &mut Out) {
    for c in &s.cpus {
        for (mode, ticks) in MODES.iter().zip(c.ticks) {
            out.counter(
                "node_cpu_seconds_total",
                "Seconds the CPUs spent in each mode.",
                &[("cpu", &c.cpu), ("mode", mode)],
                ticks as f64 / ticks_per_sec,
            );
        }
    }
    let fields: [(&str, &str, bool, Option<u64>); 6] = [
        ("node_boot_time_seconds", "Node boot time, in unixtime.", false, s.boot_time),
        ("node_context_switches_total", "Total number of context switches.", true, s.context_switches),
        ("node_forks_total", "Total number of forks.", true, s.forks),
        ("node_intr_total", "Total number of interrupts serviced.", true, s.interrupts),
        ("node_procs_running", "Number of processes in runnable state.", false, s.procs_running),
        ("node_procs_blocked", "Number of processes blocked waiting for I/O to complete.", false, s.procs_blocked),
    ];
    for (name, help, counter, v) in fields {
        if let Some(v) = v {
            if counter {
                out.counter(name, help, &[], v as f64);
            } else {
                out.gauge(name, help, &[], v as f64);
            }
        }
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut it = text.split_ascii_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

pub fn emit_loadavg(l: [f64; 3], out: &mut Out) {
    out.gauge("node_load1", "1m load average.", &[], l[0]);
    out.gauge("node_load5", "5m load average.", &[], l[1]);
    out.gauge("node_load15", "15m load average.", &[], l[2]);
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = include_str!("../../tests/fixtures/proc_stat.txt");

    #[test]
    fn parses_cpus_and_counters() {
        let s = parse_stat(STAT);
        assert_eq!(s.cpus.len(), 2);
        assert_eq!(s.cpus[1].cpu, "1");
        assert_eq!(s.cpus[0].ticks, [3141, 7, 1200, 99000, 50, 0, 12, 0]);
        assert_eq!(s.boot_time, Some(1_700_000_000));
        assert_eq!(s.context_switches, Some(123_456));
        assert_eq!(s.forks, Some(4242));
        assert_eq!(s.interrupts, Some(987_654));
        assert_eq!((s.procs_running, s.procs_blocked), (Some(3), Some(1)));
    }

    #[test]
    fn odd_content_does_not_panic() {
        let s = parse_stat("cpu\ncpuX 1 2\ncpu0 a b\nbtime\nctxt x\n\n");
        assert_eq!(s.cpus.len(), 1);
        assert_eq!(s.cpus[0].ticks, [0; 8]);
        assert_eq!(s.boot_time, None);
        assert_eq!(parse_loadavg("0.5 0.25"), None);
        assert_eq!(parse_loadavg("0.50 0.25 1.00 2/300 999\n"), Some([0.5, 0.25, 1.0]));
    }
}
