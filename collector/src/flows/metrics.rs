//! The flows' series for the time-series store (`tingzhen_flow_*`, `tingzhen_interface_*`):
//! counters kept since start (a restart resets them, which `rate`/`increase` handle; events
//! are idempotent so nothing is counted twice), step-duration histograms, and gauges
//! recomputed from the open keys at every tick. A gauge label set seen once keeps being written
//! (as 0 when empty) so a cleared overdue drops to 0 at once instead of lingering for the
//! lookback window.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tingzhen_core::{Labels, Sample, TimeSeries};

/// Upper bounds (seconds) of the step-duration histogram.
pub const DURATION_BUCKETS: [f64; 10] =
    [60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0, 259200.0];

type S = Arc<str>;

#[derive(Default)]
struct Histogram {
    counts: [u64; DURATION_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Cumulative counters and histograms; gauges come from the engine at each tick.
#[derive(Default)]
pub struct FlowMetrics {
    /// (flow, step, campus, system, status)
    events: BTreeMap<(S, S, S, S, &'static str), u64>,
    /// (flow, step, campus)
    completions: BTreeMap<(S, S, S), u64>,
    /// (flow, campus)
    expired: BTreeMap<(S, S), u64>,
    /// (flow, step, campus, kind)
    anomalies: BTreeMap<(S, S, S, &'static str), u64>,
    /// (flow, step, campus)
    durations: BTreeMap<(S, S, S), Histogram>,
    /// (interface, system, campus)
    interface_messages: BTreeMap<(S, S, S), u64>,
    /// Gauge label sets ever written, so an emptied one is written as 0.
    gauge_keys: BTreeSet<(&'static str, Labels)>,
}

/// Gauge values for one tick: (flow, step, campus, system) → count.
pub type GaugeCounts = BTreeMap<(S, S, S, S), u64>;

impl FlowMetrics {
    pub fn event(&mut self, flow: &S, step: &S, campus: &S, system: &S, ok: bool) {
        let status = if ok { "ok" } else { "error" };
        *self.events.entry((flow.clone(), step.clone(), campus.clone(), system.clone(), status)).or_default() += 1;
    }

    pub fn completion(&mut self, flow: &S, step: &S, campus: &S) {
        *self.completions.entry((flow.clone(), step.clone(), campus.clone())).or_default() += 1;
    }

    pub fn expired(&mut self, flow: &S, campus: &S) {
        *self.expired.entry((flow.clone(), campus.clone())).or_default() += 1;
    }

    pub fn anomaly(&mut self, flow: &S, step: &S, campus: &S, kind: &'static str) {
        *self.anomalies.entry((flow.clone(), step.clone(), campus.clone(), kind)).or_default() += 1;
    }

    pub fn duration(&mut self, flow: &S, step: &S, campus: &S, ms: i64) {
        let h = self.durations.entry((flow.clone(), step.clone(), campus.clone())).or_default();
        let secs = ms as f64 / 1000.0;
        for (i, le) in DURATION_BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    pub fn interface_messages(&mut self, interface: &S, system: &S, campus: &S, n: u64) {
        *self.interface_messages.entry((interface.clone(), system.clone(), campus.clone())).or_default() += n;
    }

    /// Every series at `now_ms`: the counters, the histograms and the given gauges.
    pub fn series(
        &mut self,
        now_ms: i64,
        gauges: &[(&'static str, &GaugeCounts)],
        interface_gauges: &[(&'static str, Vec<(Labels, f64)>)],
    ) -> Vec<TimeSeries> {
        let mut out = Vec::new();
        let mut push = |name: &str, pairs: &[(&str, &str)], v: f64| {
            let mut l: Vec<(&str, &str)> = vec![("__name__", name)];
            l.extend(pairs.iter().filter(|(_, v)| !v.is_empty()));
            out.push(TimeSeries::new(Labels::from_pairs(l), vec![Sample::new(now_ms, v)]));
        };
        for ((flow, step, campus, system, status), n) in &self.events {
            let l = [("flow", &**flow), ("step", step), ("campus", campus), ("system", system), ("status", status)];
            push("tingzhen_flow_events_total", &l, *n as f64);
        }
        for ((flow, step, campus), n) in &self.completions {
            push("tingzhen_flow_completions_total", &[("flow", flow), ("step", step), ("campus", campus)], *n as f64);
        }
        for ((flow, campus), n) in &self.expired {
            push("tingzhen_flow_expired_total", &[("flow", flow), ("campus", campus)], *n as f64);
        }
        for ((flow, step, campus, kind), n) in &self.anomalies {
            let l = [("flow", &**flow), ("step", step), ("campus", campus), ("kind", kind)];
            push("tingzhen_flow_anomalies_total", &l, *n as f64);
        }
        for ((flow, step, campus), h) in &self.durations {
            let base = [("flow", &**flow), ("step", &**step), ("campus", &**campus)];
            for (i, le) in DURATION_BUCKETS.iter().enumerate() {
                let le = le.to_string();
                let mut l = base.to_vec();
                l.push(("le", &le));
                push("tingzhen_flow_step_duration_seconds_bucket", &l, h.counts[i] as f64);
            }
            let mut l = base.to_vec();
            l.push(("le", "+Inf"));
            push("tingzhen_flow_step_duration_seconds_bucket", &l, h.count as f64);
            push("tingzhen_flow_step_duration_seconds_count", &base, h.count as f64);
            push("tingzhen_flow_step_duration_seconds_sum", &base, h.sum);
        }
        for ((iface, system, campus), n) in &self.interface_messages {
            let l = [("interface", &**iface), ("system", system), ("campus", campus)];
            push("tingzhen_interface_messages_total", &l, *n as f64);
        }
        // Gauges: this tick's values, then a 0 for every label set seen before and absent now.
        let mut now_keys = BTreeSet::new();
        for (name, counts) in gauges {
            for ((flow, step, campus, system), n) in counts.iter() {
                let l = Labels::from_pairs([
                    ("__name__", *name),
                    ("flow", flow),
                    ("step", step),
                    ("campus", campus),
                    ("system", system),
                ]);
                now_keys.insert((*name, l.clone()));
                out.push(TimeSeries::new(l, vec![Sample::new(now_ms, *n as f64)]));
            }
        }
        for (name, values) in interface_gauges {
            for (labels, v) in values {
                let mut l = labels.clone();
                l.set("__name__", *name);
                now_keys.insert((*name, l.clone()));
                out.push(TimeSeries::new(l, vec![Sample::new(now_ms, *v)]));
            }
        }
        for key in self.gauge_keys.difference(&now_keys) {
            out.push(TimeSeries::new(key.1.clone(), vec![Sample::new(now_ms, 0.0)]));
        }
        self.gauge_keys.extend(now_keys);
        out
    }
}
