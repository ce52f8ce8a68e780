//! A named process (MON-5 alive): how many run, their CPU, memory and threads, when the
//! oldest started, and how often the group was restarted — process-exporter's
//! `namedprocess_namegroup_*` names. The name matches a process's `comm` or the base name of
//! the first word of its command line (for names longer than `comm`'s 15 characters).

use super::{Collect, Ctx, TargetConfig, TargetError};
use crate::host::process::{PidStat, scan_proc};
use std::collections::HashSet;

pub struct Process {
    name: String,
    proc_root: String,
    ticks_per_sec: f64,
    page_size: f64,
    /// (pid, start) of the group at the last collection; `None` before the first.
    seen: Option<HashSet<(u32, u64)>>,
    restarts: u64,
}

/// Base name of the first word of `/proc/<pid>/cmdline`.
fn cmdline_name(proc_root: &str, pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("{proc_root}/{pid}/cmdline")).ok()?;
    let first = raw.split(|b| *b == 0).next()?;
    let first = String::from_utf8_lossy(first);
    let word = first.split_whitespace().next()?;
    Some(word.rsplit('/').next().unwrap_or(word).to_string())
}

/// Whether `p` belongs to the group called `name`.
pub fn matches(name: &str, p: &PidStat, cmdline: impl FnOnce() -> Option<String>) -> bool {
    if p.comm == name {
        return true;
    }
    // comm is cut at 15 bytes; a longer name can only match through the command line.
    let truncated = name.len() > 15 && name.as_bytes().starts_with(p.comm.as_bytes()) && p.comm.len() == 15;
    (truncated || p.comm.len() < 15) && cmdline().is_some_and(|c| c == name)
}

/// Counts a restart when processes of the group disappeared and new ones appeared (or the
/// group came back after being empty) since the last collection.
pub fn restarted(prev: &HashSet<(u32, u64)>, now: &HashSet<(u32, u64)>) -> bool {
    let gone = prev.difference(now).next().is_some();
    let new = now.difference(prev).next().is_some();
    new && (gone || prev.is_empty())
}

impl Process {
    pub fn new(cfg: &TargetConfig) -> Self {
        Self::with_root(cfg, "/proc")
    }

    pub fn with_root(cfg: &TargetConfig, proc_root: &str) -> Self {
        Self {
            name: cfg.address.clone(),
            proc_root: proc_root.into(),
            ticks_per_sec: (rustix::param::clock_ticks_per_second() as f64).max(1.0),
            page_size: rustix::param::page_size() as f64,
            seen: None,
            restarts: 0,
        }
    }
}

impl Collect for Process {
    fn collect(&mut self, cx: &mut Ctx<'_>) -> Result<(), TargetError> {
        let procs = scan_proc(&self.proc_root);
        if procs.is_empty() {
            return Err(TargetError::Probe(format!("cannot read processes under {}", self.proc_root)));
        }
        let group: Vec<&PidStat> =
            procs.iter().filter(|p| matches(&self.name, p, || cmdline_name(&self.proc_root, p.pid))).collect();
        let ids: HashSet<(u32, u64)> = group.iter().map(|p| (p.pid, p.start_ticks)).collect();
        if let Some(prev) = &self.seen
            && restarted(prev, &ids)
        {
            self.restarts += 1;
        }
        self.seen = Some(ids);
        let g = [("groupname", self.name.as_str())];
        let out = &mut cx.out;
        out.gauge("namedprocess_namegroup_num_procs", "number of processes in this group", &g, group.len() as f64);
        out.counter(
            "namedprocess_namegroup_restarts_total",
            "Times the group's processes were replaced by new ones since the agent started",
            &g,
            self.restarts as f64,
        );
        if group.is_empty() {
            // Down, but the zero count (and the restart counter) are worth keeping.
            cx.failed = Some(TargetError::Probe(format!("no process named {:?} is running", self.name)));
            return Ok(());
        }
        let cpu: u64 = group.iter().map(|p| p.cpu_ticks).sum();
        let rss: u64 = group.iter().map(|p| p.rss_pages).sum();
        let threads: u64 = group.iter().map(|p| p.threads).sum();
        let oldest = group.iter().map(|p| p.start_ticks).min().unwrap_or(0);
        out.counter(
            "namedprocess_namegroup_cpu_seconds_total",
            "Cpu user and system usage in seconds",
            &g,
            cpu as f64 / self.ticks_per_sec,
        );
        out.gauge(
            "namedprocess_namegroup_memory_bytes",
            "number of bytes of memory in use",
            &[("groupname", self.name.as_str()), ("memtype", "resident")],
            rss as f64 * self.page_size,
        );
        out.gauge("namedprocess_namegroup_num_threads", "Number of threads", &g, threads as f64);
        let boot = std::fs::read_to_string(format!("{}/stat", self.proc_root))
            .ok()
            .and_then(|t| crate::host::stat::parse_stat(&t).boot_time);
        if let Some(boot) = boot {
            out.gauge(
                "namedprocess_namegroup_oldest_start_time_seconds",
                "start time in seconds since 1970/01/01 of oldest process in group",
                &g,
                boot as f64 + oldest as f64 / self.ticks_per_sec,
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: u32, comm: &str) -> PidStat {
        PidStat { pid, comm: comm.into(), state: 'S', cpu_ticks: 0, threads: 1, start_ticks: pid as u64, rss_pages: 1 }
    }

    #[test]
    fn names_match_comm_or_command_line() {
        assert!(matches("redis-server", &p(1, "redis-server"), || None));
        assert!(!matches("redis", &p(1, "redis-server"), || Some("redis-server".into())));
        assert!(matches("java", &p(1, "java"), || None));
        // A long name: comm holds its first 15 bytes, the command line the whole.
        assert!(matches("tingzhen-collector", &p(1, "tingzhen-collec"), || Some("tingzhen-collector".into())));
        assert!(!matches("tingzhen-collector", &p(1, "tingzhen-collec"), || Some("tingzhen-collect".into())));
        // Interpreters: comm is "python3", the script is not the first word.
        assert!(matches("python3", &p(1, "python3"), || None));
    }

    #[test]
    fn restarts_are_replacements() {
        let s = |v: &[(u32, u64)]| v.iter().copied().collect::<HashSet<_>>();
        assert!(!restarted(&s(&[(1, 1)]), &s(&[(1, 1)])));
        assert!(restarted(&s(&[(1, 1)]), &s(&[(2, 5)])), "replaced");
        assert!(restarted(&s(&[]), &s(&[(2, 5)])), "back after being down");
        assert!(!restarted(&s(&[(1, 1)]), &s(&[(1, 1), (3, 9)])), "a worker more is no restart");
        assert!(!restarted(&s(&[(1, 1), (3, 9)]), &s(&[(1, 1)])), "a worker less is no restart");
    }
}
