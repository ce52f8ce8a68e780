//! Deterministic synthetic data shaped like real host metrics (node_exporter names and labels,
//! counters that only grow by plausible steps, gauges that wander), for the differential test
//! and the ingest benchmark. Same seed, same data: both peers always get identical input.

use tingzhen_core::{Labels, Sample, TimeSeries};

/// splitmix64: tiny, seedable, good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Shape of a synthetic fleet.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub hosts: usize,
    pub cpus: usize,
    pub start_ms: i64,
    pub step_ms: i64,
    pub samples: usize,
    /// Scrape timestamps wander by 1..this many ms, as real scrapes do; never 0, so a query time
    /// on a whole second never sits exactly on a sample, where Prometheus 2 and 3 differ
    /// (closed vs left-open windows).
    pub jitter_ms: i64,
    pub seed: u64,
}

const CPU_MODES: [&str; 8] = ["idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"];
const CAMPUSES: [&str; 3] = ["huangpu", "pudong", "minhang"];
const ROLES: [&str; 4] = ["his-app", "his-db", "pacs", "lis"];

/// How a series' values evolve.
#[derive(Clone, Copy)]
enum Kind {
    /// Monotonic counter: each step adds `rate * step_s * U(0.5, 1.5)`, rounded to `quantum`.
    Counter {
        start: f64,
        rate: f64,
        quantum: f64,
    },
    /// Gauge doing a bounded random walk around `mid`, rounded to `quantum`.
    Gauge {
        mid: f64,
        spread: f64,
        quantum: f64,
    },
    Constant(f64),
}

impl Fleet {
    fn host_labels(&self, h: usize) -> Vec<(&'static str, String)> {
        let role = ROLES[h % ROLES.len()];
        vec![
            ("job", "node".to_string()),
            ("instance", format!("10.{}.{}.{}:9100", 1 + h / 65_536, (h / 256) % 256, h % 256)),
            ("host", format!("{role}-{h:03}")),
            ("campus", CAMPUSES[h % CAMPUSES.len()].to_string()),
            ("role", role.to_string()),
        ]
    }

    fn series_of_host(&self, h: usize, rng: &mut Rng) -> Vec<(Labels, Kind)> {
        let base = self.host_labels(h);
        let mut out = Vec::new();
        let mut add = |name: &str, extra: &[(&str, &str)], kind: Kind| {
            let mut pairs: Vec<(String, String)> = base.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
            pairs.push(("__name__".into(), name.into()));
            pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            out.push((Labels::from_pairs(pairs), kind));
        };
        for cpu in 0..self.cpus {
            let c = cpu.to_string();
            let busy = 0.05 + 0.4 * rng.f64();
            for mode in CPU_MODES {
                let share = match mode {
                    "idle" => 1.0 - busy,
                    "user" => busy * 0.6,
                    "system" => busy * 0.25,
                    "iowait" => busy * 0.08,
                    _ => busy * 0.07 / 4.0 * rng.f64(),
                };
                let start = (1.0e5 * share * (1.0 + rng.f64())).round() / 100.0;
                add(
                    "node_cpu_seconds_total",
                    &[("cpu", &c), ("mode", mode)],
                    Kind::Counter { start, rate: share, quantum: 0.01 },
                );
            }
        }
        let load = 0.2 + 6.0 * rng.f64();
        for (name, spread) in [("node_load1", 0.5), ("node_load5", 0.25), ("node_load15", 0.1)] {
            add(name, &[], Kind::Gauge { mid: load, spread: load * spread, quantum: 0.01 });
        }
        let mem = (8 + 8 * rng.below(16)) as f64 * 1024.0 * 1024.0 * 1024.0;
        add("node_memory_MemTotal_bytes", &[], Kind::Constant(mem));
        for (name, frac) in [
            ("node_memory_MemAvailable_bytes", 0.55),
            ("node_memory_MemFree_bytes", 0.2),
            ("node_memory_Buffers_bytes", 0.02),
            ("node_memory_Cached_bytes", 0.3),
            ("node_memory_SwapFree_bytes", 0.1),
        ] {
            add(name, &[], Kind::Gauge { mid: mem * frac, spread: mem * frac * 0.05, quantum: 4096.0 });
        }
        for (dev, fstype, mount, gib) in [
            ("/dev/sda1", "ext4", "/", 100.0),
            ("/dev/sda2", "ext4", "/boot", 1.0),
            ("/dev/sdb1", "xfs", "/data", 2000.0),
        ] {
            let size = gib * 1024.0 * 1024.0 * 1024.0;
            let labels = [("device", dev), ("fstype", fstype), ("mountpoint", mount)];
            add("node_filesystem_size_bytes", &labels, Kind::Constant(size));
            let used = 0.2 + 0.6 * rng.f64();
            for name in ["node_filesystem_avail_bytes", "node_filesystem_free_bytes"] {
                add(name, &labels, Kind::Gauge { mid: size * (1.0 - used), spread: size * 0.001, quantum: 4096.0 });
            }
        }
        for (dev, scale) in [("eth0", 1.0), ("lo", 0.1)] {
            let d = [("device", dev)];
            let bps = scale * 1.0e6 * (1.0 + 20.0 * rng.f64());
            for (name, rate) in [
                ("node_network_receive_bytes_total", bps),
                ("node_network_transmit_bytes_total", bps * 0.7),
                ("node_network_receive_packets_total", bps / 800.0),
                ("node_network_transmit_packets_total", bps / 900.0),
                ("node_network_receive_errs_total", 0.01),
                ("node_network_receive_drop_total", 0.05),
            ] {
                let start = (rate * 1.0e5 * rng.f64()).round();
                add(name, &d, Kind::Counter { start, rate, quantum: 1.0 });
            }
        }
        for dev in ["sda", "sdb"] {
            let d = [("device", dev)];
            let bps = 1.0e5 * (1.0 + 50.0 * rng.f64());
            for (name, rate) in [
                ("node_disk_read_bytes_total", bps),
                ("node_disk_written_bytes_total", bps * 2.0),
                ("node_disk_reads_completed_total", bps / 16384.0),
                ("node_disk_writes_completed_total", bps / 8192.0),
            ] {
                let start = (rate * 1.0e5 * rng.f64()).round();
                add(name, &d, Kind::Counter { start, rate, quantum: 1.0 });
            }
        }
        add("node_boot_time_seconds", &[], Kind::Constant((self.start_ms / 1000 - 86_400 * 30) as f64));
        add("node_procs_running", &[], Kind::Gauge { mid: 4.0, spread: 3.0, quantum: 1.0 });
        add("node_filefd_allocated", &[], Kind::Gauge { mid: 4000.0, spread: 300.0, quantum: 1.0 });
        out
    }

    /// All series of the fleet with `samples` samples each, oldest first.
    pub fn generate(&self) -> Vec<TimeSeries> {
        let mut rng = Rng::new(self.seed);
        let mut out = Vec::new();
        let step_s = self.step_ms as f64 / 1000.0;
        for h in 0..self.hosts {
            for (labels, kind) in self.series_of_host(h, &mut rng) {
                let mut samples = Vec::with_capacity(self.samples);
                let mut v = match kind {
                    Kind::Counter { start, .. } => start,
                    Kind::Gauge { mid, .. } => mid,
                    Kind::Constant(c) => c,
                };
                for i in 0..self.samples {
                    // Never 0: a sample exactly on a whole second could sit on a window boundary.
                    let jitter = if self.jitter_ms > 1 { 1 + rng.below(self.jitter_ms as u64 - 1) as i64 } else { 0 };
                    let t = self.start_ms + i as i64 * self.step_ms + jitter;
                    if i > 0 {
                        v = match kind {
                            Kind::Counter { rate, quantum, .. } => {
                                v + ((rate * step_s * (0.5 + rng.f64())) / quantum).round() * quantum
                            }
                            Kind::Gauge { mid, spread, quantum } => {
                                let next = v + spread * 0.2 * (rng.f64() - 0.5);
                                (next.clamp(mid - spread, mid + spread) / quantum).round() * quantum
                            }
                            Kind::Constant(c) => c,
                        };
                    }
                    samples.push(Sample::new(t, round_to_grid(v)));
                }
                out.push(TimeSeries::new(labels, samples));
            }
        }
        out
    }
}

/// Keeps values with at most two decimals exactly as a text exposition would print them.
fn round_to_grid(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Splits series into remote-write requests the way Prometheus' queue sends them: time-major
/// (all series' first `samples_per_req` samples before any later ones), at most
/// `series_per_req` series a request.
pub fn requests(series: &[TimeSeries], series_per_req: usize, samples_per_req: usize) -> Vec<Vec<TimeSeries>> {
    let max = series.iter().map(|s| s.samples.len()).max().unwrap_or(0);
    let mut out = Vec::new();
    let mut t0 = 0;
    while t0 < max {
        let t1 = (t0 + samples_per_req).min(max);
        for chunk in series.chunks(series_per_req.max(1)) {
            let req: Vec<TimeSeries> = chunk
                .iter()
                .filter(|s| s.samples.len() > t0)
                .map(|s| TimeSeries::new(s.labels.clone(), s.samples[t0..t1.min(s.samples.len())].to_vec()))
                .collect();
            if !req.is_empty() {
                out.push(req);
            }
        }
        t0 = t1;
    }
    out
}

/// Total samples in a set of series.
pub fn sample_count(series: &[TimeSeries]) -> usize {
    series.iter().map(|s| s.samples.len()).sum()
}
