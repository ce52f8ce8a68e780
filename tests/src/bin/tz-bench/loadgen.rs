//! The load generator: pre-encoded remote-write bodies sent by C threads (keep-alive, one
//! connection each) as fast as the server acknowledges them. Encoding happens before the clock
//! starts, so only the server's work (and loopback HTTP) is timed.

use crate::Flags;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tingzhen_core::TimeSeries;
use tingzhen_tests::Http;
use tingzhen_tests::synth::{Fleet, requests, sample_count};

/// One encoded request and how many samples it carries.
pub struct Body {
    pub bytes: Vec<u8>,
    pub samples: usize,
}

pub struct LoadResult {
    pub samples: usize,
    pub requests: usize,
    pub secs: f64,
    pub failed_requests: usize,
    pub errors: Vec<String>,
}

impl LoadResult {
    pub fn rate(&self) -> f64 {
        self.samples as f64 / self.secs
    }
}

/// The workload shape, from flags; defaults follow Prometheus' remote-write queue (up to 2000
/// samples a request, one sample per series when keeping up) over ~10k host series × 100 samples.
pub struct Workload {
    pub series: Vec<TimeSeries>,
    pub bodies: Vec<Body>,
    pub series_per_req: usize,
    pub samples_per_req: usize,
}

impl Workload {
    pub fn from_flags(flags: &Flags) -> Workload {
        let hosts = flags.get("hosts", 100usize);
        let samples = flags.get("samples", 100usize);
        let series_per_req = flags.get("series-per-req", 2000usize);
        let samples_per_req = flags.get("samples-per-req", 1usize);
        let step_ms = 15_000;
        // Ends a minute ago (VictoriaMetrics hides the last 30 s from queries by default) and
        // stays inside any out-of-order window (all of it is "recent").
        let start_ms = tingzhen_tests::now_ms() - 60_000 - samples as i64 * step_ms;
        // Scrape-aligned timestamps (jitter 0): Prometheus aligns scrape timestamps since 2.31.
        let fleet = Fleet { hosts, cpus: 8, start_ms, step_ms, samples, jitter_ms: 0, seed: 42 };
        let series = fleet.generate();
        let bodies = requests(&series, series_per_req, samples_per_req)
            .iter()
            .map(|r| Body { bytes: tingzhen_core::remote_write::encode(r), samples: sample_count(r) })
            .collect();
        Workload { series, bodies, series_per_req, samples_per_req }
    }

    pub fn samples(&self) -> usize {
        sample_count(&self.series)
    }

    pub fn describe(&self) -> String {
        let bytes: usize = self.bodies.iter().map(|b| b.bytes.len()).sum();
        format!(
            "{} series × {} samples = {} samples in {} requests ({} series × {} samples each at most, {:.1} MB snappy)",
            self.series.len(),
            self.series.first().map(|s| s.samples.len()).unwrap_or(0),
            self.samples(),
            self.bodies.len(),
            self.series_per_req,
            self.samples_per_req,
            bytes as f64 / 1e6
        )
    }
}

/// Sends every body once, `concurrency` at a time, in order of the list.
pub fn run(url: &str, token: Option<&str>, bodies: &[Body], concurrency: usize) -> LoadResult {
    let next = AtomicUsize::new(0);
    let ok_samples = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let errors = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..concurrency.max(1) {
            s.spawn(|| {
                let http = Http::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(b) = bodies.get(i) else { break };
                    match http.remote_write(url, token, &b.bytes) {
                        Ok(r) if r.is_success() => {
                            ok_samples.fetch_add(b.samples, Ordering::Relaxed);
                        }
                        other => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            let mut e = errors.lock().unwrap();
                            if e.len() < 5 {
                                e.push(match other {
                                    Ok(r) => format!("request {i}: {} {}", r.status, r.body),
                                    Err(err) => format!("request {i}: {err}"),
                                });
                            }
                        }
                    }
                }
            });
        }
    });
    LoadResult {
        samples: ok_samples.into_inner(),
        requests: bodies.len(),
        secs: started.elapsed().as_secs_f64(),
        failed_requests: failed.into_inner(),
        errors: errors.into_inner().unwrap(),
    }
}

/// `tz-bench loadgen --url URL [--token T]`: the workload against any remote-write endpoint.
pub fn standalone(flags: &Flags) {
    let url = flags.str("url").unwrap_or_else(|| crate::usage("loadgen needs --url"));
    let w = Workload::from_flags(flags);
    eprintln!("{}", w.describe());
    let r = run(url, flags.str("token"), &w.bodies, flags.get("concurrency", 4usize));
    println!(
        "{} samples acknowledged in {:.2} s: {:.0} samples/s; {} of {} requests failed {:?}",
        r.samples,
        r.secs,
        r.rate(),
        r.failed_requests,
        r.requests,
        r.errors
    );
}
