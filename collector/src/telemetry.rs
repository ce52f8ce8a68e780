//! The collector's own metrics (`/metrics`): what it ingested, refused and answered, and the
//! state of its storage, so the appliance monitors itself with the same tools it offers.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use tingzhen_core::Labels;
use tingzhen_core::exposition::MetricFamily;

#[derive(Default)]
pub struct Telemetry {
    http_requests: Mutex<BTreeMap<(String, u16), u64>>,
    http_seconds: Mutex<BTreeMap<String, f64>>,
    ingested_samples: Mutex<BTreeMap<&'static str, u64>>,
    rejected_requests: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    auth_refusals: Mutex<BTreeMap<&'static str, u64>>,
    heartbeats: AtomicU64,
    queries: AtomicU64,
}

impl Telemetry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn http_request(&self, route: &str, status: u16, seconds: f64) {
        *self.http_requests.lock().entry((route.to_string(), status)).or_default() += 1;
        let mut t = self.http_seconds.lock();
        *t.entry(route.to_string()).or_default() += seconds;
    }

    pub fn ingested(&self, protocol: &'static str, samples: u64) {
        *self.ingested_samples.lock().entry(protocol).or_default() += samples;
    }

    pub fn rejected(&self, protocol: &'static str, reason: &'static str) {
        *self.rejected_requests.lock().entry((protocol, reason)).or_default() += 1;
    }

    pub fn auth_refused(&self, reason: &'static str) {
        *self.auth_refusals.lock().entry(reason).or_default() += 1;
    }

    pub fn heartbeat(&self) {
        self.heartbeats.fetch_add(1, Ordering::Relaxed);
    }

    pub fn query(&self) {
        self.queries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn families(&self) -> Vec<MetricFamily> {
        let mut reqs =
            MetricFamily::counter("tingzhen_http_requests_total", "HTTP requests answered, by route and status code.");
        for ((route, code), n) in self.http_requests.lock().iter() {
            reqs.push(Labels::from_pairs([("route", route.as_str()), ("code", &code.to_string())]), *n as f64);
        }
        let mut secs = MetricFamily::counter(
            "tingzhen_http_request_duration_seconds_total",
            "Total time spent answering requests, by route; divide by tingzhen_http_requests_total for the mean.",
        );
        for (route, sum) in self.http_seconds.lock().iter() {
            secs.push(Labels::from_pairs([("route", route.as_str())]), *sum);
        }
        let mut ingested = MetricFamily::counter("tingzhen_ingested_samples_total", "Samples accepted, by protocol.");
        for (proto, n) in self.ingested_samples.lock().iter() {
            ingested.push(Labels::from_pairs([("protocol", *proto)]), *n as f64);
        }
        let mut rejected = MetricFamily::counter(
            "tingzhen_ingest_rejected_requests_total",
            "Ingest requests refused, by protocol and reason.",
        );
        for ((proto, reason), n) in self.rejected_requests.lock().iter() {
            rejected.push(Labels::from_pairs([("protocol", *proto), ("reason", *reason)]), *n as f64);
        }
        let mut refusals = MetricFamily::counter("tingzhen_auth_refusals_total", "Requests refused by access control.");
        for (reason, n) in self.auth_refusals.lock().iter() {
            refusals.push(Labels::from_pairs([("reason", *reason)]), *n as f64);
        }
        vec![
            reqs,
            secs,
            ingested,
            rejected,
            refusals,
            MetricFamily::counter("tingzhen_heartbeats_total", "Agent heartbeats accepted.")
                .with(Labels::new(), self.heartbeats.load(Ordering::Relaxed) as f64),
            MetricFamily::counter("tingzhen_queries_total", "PromQL queries evaluated.")
                .with(Labels::new(), self.queries.load(Ordering::Relaxed) as f64),
        ]
    }
}
