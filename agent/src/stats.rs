//! The agent's self-metrics: lock-free counters shared by the collector, shipper and heartbeat
//! threads, rendered as `tingzhen_agent_*` families plus the standard `process_*` ones.

use crate::host::Out;
use crate::host::process::parse_pid_stat;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use tingzhen_core::Labels;
use tingzhen_core::exposition::MetricFamily;

/// A float kept in an `AtomicU64` as its bits.
#[derive(Debug, Default)]
pub struct AtomicF64(AtomicU64);

impl AtomicF64 {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Relaxed);
    }
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Relaxed))
    }
}

#[derive(Debug, Default)]
pub struct Stats {
    pub collections: AtomicU64,
    pub last_collection_seconds: AtomicF64,
    pub collection_seconds_total: AtomicF64,
    pub samples_collected: AtomicU64,
    pub samples_sent: AtomicU64,
    pub batches_sent: AtomicU64,
    pub send_failures: AtomicU64,
    pub batches_rejected: AtomicU64,
    pub samples_rejected: AtomicU64,
    pub buffer_bytes: AtomicU64,
    pub buffer_samples: AtomicU64,
    pub buffer_dropped_batches: AtomicU64,
    pub buffer_dropped_samples: AtomicU64,
    pub buffer_errors: AtomicU64,
    pub last_send_timestamp: AtomicF64,
    pub heartbeats_sent: AtomicU64,
    pub heartbeat_failures: AtomicU64,
}

impl Stats {
    /// Self-metrics with the static labels on every sample, like the host metrics.
    pub fn families(&self, base: &Labels) -> Vec<MetricFamily> {
        let mut o = Out::new(base);
        let c = |v: &AtomicU64| v.load(Relaxed) as f64;
        o.gauge(
            "tingzhen_agent_build_info",
            "A metric with a constant '1' value labeled by the agent's version.",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        );
        o.counter("tingzhen_agent_collections_total", "Host collections made.", &[], c(&self.collections));
        o.gauge(
            "tingzhen_agent_collection_duration_seconds",
            "How long the last host collection took.",
            &[],
            self.last_collection_seconds.get(),
        );
        o.counter(
            "tingzhen_agent_collection_seconds_total",
            "Time spent collecting, over all collections.",
            &[],
            self.collection_seconds_total.get(),
        );
        o.counter(
            "tingzhen_agent_samples_collected_total",
            "Samples produced by collections.",
            &[],
            c(&self.samples_collected),
        );
        o.counter(
            "tingzhen_agent_samples_sent_total",
            "Samples the collector acknowledged (2xx).",
            &[],
            c(&self.samples_sent),
        );
        o.counter(
            "tingzhen_agent_batches_sent_total",
            "Batches the collector acknowledged.",
            &[],
            c(&self.batches_sent),
        );
        o.counter(
            "tingzhen_agent_send_failures_total",
            "Send attempts that failed and will be retried (network errors, 5xx, 429).",
            &[],
            c(&self.send_failures),
        );
        o.counter(
            "tingzhen_agent_batches_dropped_total",
            "Batches the collector rejected for good (4xx other than 429); they are not retried.",
            &[],
            c(&self.batches_rejected),
        );
        o.counter(
            "tingzhen_agent_samples_rejected_total",
            "Samples in batches the collector rejected for good.",
            &[],
            c(&self.samples_rejected),
        );
        o.gauge("tingzhen_agent_buffer_bytes", "Bytes of the on-disk buffer.", &[], c(&self.buffer_bytes));
        o.gauge(
            "tingzhen_agent_buffer_samples",
            "Samples waiting in the on-disk buffer.",
            &[],
            c(&self.buffer_samples),
        );
        o.counter(
            "tingzhen_agent_buffer_dropped_batches_total",
            "Oldest batches dropped because the on-disk buffer was full.",
            &[],
            c(&self.buffer_dropped_batches),
        );
        o.counter(
            "tingzhen_agent_buffer_dropped_samples_total",
            "Samples dropped because the on-disk buffer was full.",
            &[],
            c(&self.buffer_dropped_samples),
        );
        o.counter(
            "tingzhen_agent_buffer_errors_total",
            "Disk errors of the buffer (the batch concerned is lost).",
            &[],
            c(&self.buffer_errors),
        );
        o.gauge(
            "tingzhen_agent_last_send_timestamp_seconds",
            "When the collector last acknowledged a batch, in unixtime (0: never).",
            &[],
            self.last_send_timestamp.get(),
        );
        o.counter(
            "tingzhen_agent_heartbeats_total",
            "Heartbeats the collector acknowledged.",
            &[],
            c(&self.heartbeats_sent),
        );
        o.counter(
            "tingzhen_agent_heartbeat_failures_total",
            "Heartbeats that failed; the next one is sent at the next interval.",
            &[],
            c(&self.heartbeat_failures),
        );
        own_process(&mut o);
        o.finish()
    }
}

/// The standard `process_*` metrics of the agent itself, so its own cost is visible.
fn own_process(o: &mut Out) {
    let Ok(text) = std::fs::read_to_string("/proc/self/stat") else { return };
    let Some(s) = parse_pid_stat(&text) else { return };
    let tps = (rustix::param::clock_ticks_per_second() as f64).max(1.0);
    o.counter(
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        &[],
        s.cpu_ticks as f64 / tps,
    );
    o.gauge(
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        &[],
        s.rss_pages as f64 * rustix::param::page_size() as f64,
    );
    if let Ok(d) = std::fs::read_dir("/proc/self/fd") {
        o.gauge("process_open_fds", "Number of open file descriptors.", &[], d.count() as f64);
    }
    // The start time never changes; /proc/stat is read for it once.
    static BOOT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let boot = *BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| crate::host::stat::parse_stat(&t).boot_time)
            .unwrap_or(0)
    });
    if boot > 0 {
        o.gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            &[],
            boot as f64 + s.start_ticks as f64 / tps,
        );
    }
}
