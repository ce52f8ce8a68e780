//! Host collectors: read `/proc` and `/sys` directly (no sysinfo, no shelling out) and emit
//! node_exporter's metric names and labels where the meaning is the same, so the Grafana
//! "Node Exporter Full" dashboard works on the agent's data.

pub mod disk;
pub mod fs;
pub mod memory;
pub mod net;
mod out;
pub mod process;
pub mod stat;
pub mod system;

pub use out::Out;

use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};
use tingzhen_core::Labels;
use tingzhen_core::exposition::MetricFamily;

/// Reads a whole (small) file into a reused buffer; /proc files report size 0, so
/// `read_to_string` is the way.
pub(crate) fn read_into(path: &str, buf: &mut String) -> std::io::Result<()> {
    std::fs::File::open(path)?.read_to_string(buf).map(|_| ())
}

/// Facts about the host learnt during a collection, for the inventory heartbeat.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostFacts {
    pub boot_time: u64,
    pub cpus: u32,
    pub memory_bytes: u64,
}

/// Collects host metrics. Keeps the little state that needs remembering between collections
/// (previous process CPU, a stuck-filesystem guard) and reused buffers.
#[derive(Debug)]
pub struct HostCollector {
    base: Labels,
    top_n: usize,
    process_interval: std::time::Duration,
    /// When processes were last scanned, and what that scan produced (for `/metrics`, which
    /// shows the latest of everything).
    last_process_scan: Option<std::time::Instant>,
    process_families: Vec<MetricFamily>,
    processes_fresh: bool,
    ticks_per_sec: f64,
    page_size: f64,
    top: process::TopProcesses,
    fs: fs::FsCollector,
    uname: system::Uname,
    os: Vec<(String, String)>,
    buf: String,
    facts: HostFacts,
}

impl HostCollector {
    /// `base` are the static labels stamped on every sample; `top_n` bounds each top list;
    /// processes are scanned at most once per `process_interval`.
    pub fn new(base: Labels, top_n: usize, process_interval: std::time::Duration) -> Self {
        Self {
            base,
            top_n,
            process_interval,
            last_process_scan: None,
            process_families: Vec::new(),
            processes_fresh: false,
            ticks_per_sec: (rustix::param::clock_ticks_per_second() as f64).max(1.0),
            page_size: rustix::param::page_size() as f64,
            top: process::TopProcesses::default(),
            fs: fs::FsCollector::default(),
            uname: system::uname(),
            os: system::read_os_release(),
            buf: String::with_capacity(16 * 1024),
            facts: HostFacts::default(),
        }
    }

    pub fn uname(&self) -> &system::Uname {
        &self.uname
    }

    pub fn os_pretty_name(&self) -> String {
        let p = system::os_get(&self.os, "PRETTY_NAME");
        if p.is_empty() { self.uname.sysname.clone() } else { p.to_string() }
    }

    pub fn facts(&self) -> &HostFacts {
        &self.facts
    }

    fn read(&mut self, path: &str) -> bool {
        self.buf.clear();
        read_into(path, &mut self.buf).is_ok()
    }

    /// One collection. Never fails as a whole: a file that cannot be read or parsed leaves
    /// its metrics out and sets `tingzhen_agent_collector_success{collector}` to 0.
    pub fn collect(&mut self) -> Vec<MetricFamily> {
        let base = self.base.clone();
        let mut out = Out::new(&base);
        let mut success: Vec<(&str, bool)> = Vec::new();

        let ok = self.read("/proc/stat");
        if ok {
            let s = stat::parse_stat(&self.buf);
            self.facts.boot_time = s.boot_time.unwrap_or(0);
            self.facts.cpus = s.cpus.len() as u32;
            stat::emit_stat(&s, self.ticks_per_sec, &mut out);
        }
        success.push(("stat", ok));

        let l = self.read("/proc/loadavg").then(|| stat::parse_loadavg(&self.buf)).flatten();
        if let Some(l) = l {
            stat::emit_loadavg(l, &mut out);
        }
        success.push(("loadavg", l.is_some()));

        let ok = self.read("/proc/meminfo");
        if ok {
            let m = memory::parse_meminfo(&self.buf);
            self.facts.memory_bytes = memory::mem_total(&m).unwrap_or(0);
            memory::emit_meminfo(&m, &mut out);
        }
        success.push(("meminfo", ok));

        let ok = self.read("/proc/vmstat");
        if ok {
            memory::emit_vmstat(&memory::parse_vmstat(&self.buf), &mut out);
        }
        success.push(("vmstat", ok));

        let f = self.read("/proc/sys/fs/file-nr").then(|| memory::parse_file_nr(&self.buf)).flatten();
        if let Some(f) = f {
            memory::emit_file_nr(f, &mut out);
        }
        success.push(("filefd", f.is_some()));

        let ok = self.read("/proc/1/mounts") || self.read("/proc/self/mounts");
        if ok {
            let mounts: Vec<fs::Mount> = fs::parse_mounts(&self.buf).into_iter().filter(|m| !fs::excluded(m)).collect();
            let stats = self.fs.stat_all(mounts);
            fs::emit_filesystems(&stats, &mut out);
        }
        success.push(("filesystem", ok));

        let ok = self.read("/proc/diskstats");
        if ok {
            disk::emit_diskstats(&disk::parse_diskstats(&self.buf), &mut out);
        }
        success.push(("diskstats", ok));

        let ok = self.read("/proc/net/dev");
        if ok {
            net::emit_net_dev(&net::parse_net_dev(&self.buf), &mut out);
        }
        success.push(("netdev", ok));

        let mut ok = self.read("/proc/net/sockstat");
        if ok {
            let f = net::parse_sockstat(&self.buf, self.page_size);
            net::emit_named_gauges(&f, "Number of IPv4 sockets in state", &mut out);
        }
        if self.read("/proc/net/sockstat6") {
            let f = net::parse_sockstat(&self.buf, self.page_size);
            net::emit_named_gauges(&f, "Number of IPv6 sockets in state", &mut out);
        }
        success.push(("sockstat", ok));

        let mut netstat = Vec::new();
        ok = false;
        for p in ["/proc/net/snmp", "/proc/net/netstat"] {
            if self.read(p) {
                ok = true;
                netstat.extend(net::parse_netstat_pairs(&self.buf));
            }
        }
        if self.read("/proc/net/snmp6") {
            netstat.extend(net::parse_snmp6(&self.buf));
        }
        net::emit_netstat(&netstat, &mut out);
        success.push(("netstat", ok));

        let mut counts = [0u64; 11];
        ok = net::count_tcp_states_netlink(&mut counts).is_ok();
        if !ok {
            counts = [0; 11];
            for p in ["/proc/net/tcp", "/proc/net/tcp6"] {
                if let Ok(f) = std::fs::File::open(p) {
                    ok = true;
                    net::count_tcp_states(std::io::BufReader::with_capacity(32 * 1024, f), &mut counts);
                }
            }
        }
        if ok {
            net::emit_tcp_states(&counts, &mut out);
        }
        success.push(("tcpstat", ok));

        // A little slack so a scan due "now" is not pushed to the next tick by jitter.
        let due = self.last_process_scan.is_none_or(|t| {
            t.elapsed() + std::time::Duration::from_millis(100).min(self.process_interval / 10) >= self.process_interval
        });
        self.processes_fresh = due;
        if due {
            self.last_process_scan = Some(std::time::Instant::now());
            let procs = process::scan_proc("/proc");
            let top = self.top.select(&procs, self.top_n);
            let mut pout = Out::new(&base);
            process::emit_processes(&procs, &top, self.ticks_per_sec, self.page_size, &mut pout);
            self.process_families = pout.finish();
            success.push(("processes", !procs.is_empty()));
        }

        system::emit_uname(&self.uname, &mut out);
        system::emit_os(&self.os, &mut out);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        out.gauge("node_time_seconds", "System time in seconds since epoch (1970).", &[], now);

        for (c, ok) in success {
            out.gauge(
                "tingzhen_agent_collector_success",
                "Whether a host collector succeeded in the last collection.",
                &[("collector", c)],
                if ok { 1.0 } else { 0.0 },
            );
        }
        let mut families = out.finish();
        if self.processes_fresh {
            families.extend(self.process_families.iter().cloned());
        }
        families
    }

    /// Whether the last collection scanned processes (otherwise it left them out).
    pub fn processes_fresh(&self) -> bool {
        self.processes_fresh
    }

    /// The process families of the last scan, for pages that show the latest of everything.
    pub fn last_process_families(&self) -> &[MetricFamily] {
        &self.process_families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_are_scanned_at_most_once_per_process_interval() {
        let mut c = HostCollector::new(Labels::from_pairs([("host", "h")]), 3, std::time::Duration::from_secs(3600));
        let has_procs = |f: &[MetricFamily]| f.iter().any(|f| f.name == "node_processes_pids");
        let first = c.collect();
        assert!(has_procs(&first) && c.processes_fresh(), "the first collection scans");
        let second = c.collect();
        assert!(!has_procs(&second) && !c.processes_fresh(), "no rescan within the interval, no repeated values");
        assert!(!second.iter().any(|f| f.name == "tingzhen_process_resident_memory_bytes"));
        assert!(has_procs(c.last_process_families()), "the last scan is kept for /metrics");
    }

    /// Collects from this real host and checks that the key families are there.
    #[test]
    fn collects_from_this_host() {
        let base = Labels::from_pairs([("host", "test-host")]);
        let mut c = HostCollector::new(base, 5, std::time::Duration::from_secs(1));
        // Twice, a process interval apart, so the top-by-CPU list is ranked on a real interval.
        let _ = c.collect();
        std::thread::sleep(std::time::Duration::from_millis(1000));
        let fams = c.collect();
        let get = |n: &str| fams.iter().find(|f| f.name == n).unwrap_or_else(|| panic!("{n} missing"));
        for n in [
            "node_cpu_seconds_total",
            "node_load1",
            "node_memory_MemTotal_bytes",
            "node_memory_SwapTotal_bytes",
            "node_filesystem_size_bytes",
            "node_disk_reads_completed_total",
            "node_network_receive_bytes_total",
            "node_boot_time_seconds",
            "node_time_seconds",
            "node_procs_running",
            "node_context_switches_total",
            "node_filefd_allocated",
            "node_sockstat_sockets_used",
            "node_netstat_Tcp_CurrEstab",
            "node_tcp_connection_states",
            "node_uname_info",
            "node_processes_pids",
            "tingzhen_process_cpu_seconds_total",
            "tingzhen_process_resident_memory_bytes",
        ] {
            let f = get(n);
            assert!(!f.samples.is_empty(), "{n} empty");
            assert!(f.samples.iter().all(|(l, _)| l.get("host") == Some("test-host")), "{n} lacks host label");
        }
        let cpus = get("node_cpu_seconds_total");
        assert!(cpus.samples.iter().any(|(l, _)| l.get("mode") == Some("idle") && l.get("cpu") == Some("0")));
        assert!(get("node_filesystem_size_bytes").samples.iter().any(|(l, _)| l.get("mountpoint") == Some("/")));
        assert!(get("node_network_receive_bytes_total").samples.iter().any(|(l, _)| l.get("device") == Some("lo")));
        let top = get("tingzhen_process_resident_memory_bytes").samples.len();
        assert!((1..=10).contains(&top), "top list not bounded: {top}");
        assert!(c.facts().cpus >= 1 && c.facts().memory_bytes > 0 && c.facts().boot_time > 0);
        assert!(get("tingzhen_agent_collector_success").samples.iter().all(|(_, v)| *v == 1.0));
    }
}
