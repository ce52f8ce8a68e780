//! Processes: one pass over `/proc/[pid]/stat` gives node_exporter's processes counts (pids,
//! threads, states) and the agent's bounded top-N lists by CPU (over the last interval) and by
//! resident memory.

use super::out::Out;
use std::collections::HashMap;

/// The fields of `/proc/[pid]/stat` the agent uses.
#[derive(Debug, Clone, PartialEq)]
pub struct PidStat {
    pub pid: u32,
    pub comm: String,
    pub state: char,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    pub threads: u64,
    /// Start time after boot, in clock ticks: with the pid, it identifies a process across
    /// pid reuse.
    pub start_ticks: u64,
    pub rss_pages: u64,
}

/// Parses one stat line. `comm` may contain spaces and parentheses, so it is cut at the last
/// `)`.
pub fn parse_pid_stat(text: &str) -> Option<PidStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = text[..open].trim().parse().ok()?;
    let comm = text[open + 1..close].to_string();
    let rest: Vec<&str> = text[close + 1..].split_ascii_whitespace().collect();
    // rest[0] is field 3 (state); field N is rest[N - 3].
    let f = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(PidStat {
        pid,
        comm,
        state: rest.first()?.chars().next()?,
        cpu_ticks: f(14)?.saturating_add(f(15)?),
        threads: f(20).unwrap_or(1),
        start_ticks: f(22).unwrap_or(0),
        rss_pages: f(24).unwrap_or(0),
    })
}

/// Reads every process's stat file. Processes that exit while we read are skipped.
pub fn scan_proc(proc_root: &str) -> Vec<PidStat> {
    let Ok(dir) = std::fs::read_dir(proc_root) else { return Vec::new() };
    let mut out = Vec::new();
    let mut buf = String::with_capacity(512);
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        buf.clear();
        let path = format!("{proc_root}/{name}/stat");
        if super::read_into(&path, &mut buf).is_ok()
            && let Some(s) = parse_pid_stat(&buf)
        {
            out.push(s);
        }
    }
    out
}

/// Remembers CPU ticks per process between collections, to rank by recent CPU use rather than
/// by lifetime total (a long-running idle daemon should not crowd out today's busy process).
#[derive(Debug, Default)]
pub struct TopProcesses {
    previous: HashMap<(u32, u64), u64>,
}

impl TopProcesses {
    /// Returns the union of the top `n` by CPU delta and the top `n` by RSS, ordered by pid.
    pub fn select<'a>(&mut self, procs: &'a [PidStat], n: usize) -> Vec<&'a PidStat> {
        let delta = |p: &PidStat| -> u64 {
            match self.previous.get(&(p.pid, p.start_ticks)) {
                Some(&prev) => p.cpu_ticks.saturating_sub(prev),
                None => p.cpu_ticks,
            }
        };
        let mut by_cpu: Vec<(u64, &PidStat)> = procs.iter().map(|p| (delta(p), p)).collect();
        by_cpu.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.pid.cmp(&b.1.pid)));
        let mut by_mem: Vec<&PidStat> = procs.iter().collect();
        by_mem.sort_by(|a, b| b.rss_pages.cmp(&a.rss_pages).then(a.pid.cmp(&b.pid)));
        let mut chosen: Vec<&PidStat> = by_cpu.iter().take(n).map(|(_, p)| *p).collect();
        for p in by_mem.into_iter().take(n) {
            if !chosen.iter().any(|c| c.pid == p.pid) {
                chosen.push(p);
            }
        }
        chosen.sort_by_key(|p| p.pid);
        self.previous = procs.iter().map(|p| ((p.pid, p.start_ticks), p.cpu_ticks)).collect();
        chosen
    }
}

pub fn emit_processes(procs: &[PidStat], top: &[&PidStat], ticks_per_sec: f64, page_size: f64, out: &mut Out) {
    out.gauge("node_processes_pids", "Number of PIDs", &[], procs.len() as f64);
    out.gauge(
        "node_processes_threads",
        "Allocated threads in system",
        &[],
        procs.iter().map(|p| p.threads).sum::<u64>() as f64,
    );
    let mut states: Vec<(char, u64)> = Vec::new();
    for p in procs {
        match states.iter_mut().find(|(s, _)| *s == p.state) {
            Some((_, n)) => *n += 1,
            None => states.push((p.state, 1)),
        }
    }
    states.sort();
    for (s, n) in states {
        if s.is_ascii_alphabetic() {
            let mut b = [0u8; 4];
            out.gauge(
                "node_processes_state",
                "Number of processes in each state.",
                &[("state", s.encode_utf8(&mut b))],
                n as f64,
            );
        }
    }
    for p in top {
        let pid = p.pid.to_string();
        let l = [("pid", pid.as_str()), ("comm", p.comm.as_str())];
        out.counter(
            "tingzhen_process_cpu_seconds_total",
            "CPU time (user + system) of the top processes by CPU or memory.",
            &l,
            p.cpu_ticks as f64 / ticks_per_sec,
        );
        out.gauge(
            "tingzhen_process_resident_memory_bytes",
            "Resident memory of the top processes by CPU or memory.",
            &l,
            p.rss_pages as f64 * page_size,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(pid: u32, ticks: u64, rss: u64) -> PidStat {
        PidStat {
            pid,
            comm: format!("p{pid}"),
            state: 'S',
            cpu_ticks: ticks,
            threads: 1,
            start_ticks: 5,
            rss_pages: rss,
        }
    }

    #[test]
    fn parses_comm_with_spaces_and_parens() {
        let line = "1234 (my (odd) proc) R 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 9999 123456789 2048 18446744073709551615";
        let s = parse_pid_stat(line).unwrap();
        assert_eq!(s.pid, 1234);
        assert_eq!(s.comm, "my (odd) proc");
        assert_eq!(s.state, 'R');
        assert_eq!(s.cpu_ticks, 300);
        assert_eq!(s.threads, 7);
        assert_eq!(s.start_ticks, 9999);
        assert_eq!(s.rss_pages, 2048);
        assert_eq!(parse_pid_stat("12 (x"), None);
        assert_eq!(parse_pid_stat("x) (y"), None);
        assert_eq!(parse_pid_stat("12 (x) R 1 2"), None);
    }

    #[test]
    fn top_is_bounded_union_and_uses_recent_cpu() {
        let mut top = TopProcesses::default();
        let first = vec![stat(1, 1000, 1), stat(2, 10, 500), stat(3, 20, 2), stat(4, 30, 3)];
        let chosen: Vec<u32> = top.select(&first, 1).iter().map(|p| p.pid).collect();
        assert_eq!(chosen, [1, 2]);
        // pid 1 is now idle, pid 3 is busy: recent use wins.
        let second = vec![stat(1, 1000, 1), stat(2, 10, 500), stat(3, 90, 2), stat(4, 31, 3)];
        let chosen: Vec<u32> = top.select(&second, 1).iter().map(|p| p.pid).collect();
        assert_eq!(chosen, [2, 3]);
        assert!(top.select(&second, 10).len() <= 4);
    }

    #[test]
    fn scans_this_host() {
        let procs = scan_proc("/proc");
        let me = std::process::id();
        assert!(procs.iter().any(|p| p.pid == me), "own pid {me} not found");
    }
}
