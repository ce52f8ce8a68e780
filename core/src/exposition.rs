//! The Prometheus text exposition format (0.0.4), written by the agent's `/metrics` and
//! `once`, and by every target's self-metrics. Metric families keep HELP and TYPE so that
//! `promtool check metrics` is satisfied.

use crate::labels::{Label, Labels, METRIC_NAME};
use crate::sample::{Sample, TimeSeries};
use std::fmt::Write;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Untyped,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Untyped => "untyped",
        }
    }
}

/// One metric family: a name, its help and type, and its samples (labels exclude `__name__`).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFamily {
    pub name: String,
    pub help: String,
    pub kind: MetricType,
    pub samples: Vec<(Labels, f64)>,
}

impl MetricFamily {
    pub fn new(name: impl Into<String>, help: impl Into<String>, kind: MetricType) -> Self {
        Self { name: name.into(), help: help.into(), kind, samples: Vec::new() }
    }

    pub fn gauge(name: impl Into<String>, help: impl Into<String>) -> Self {
        Self::new(name, help, MetricType::Gauge)
    }

    pub fn counter(name: impl Into<String>, help: impl Into<String>) -> Self {
        Self::new(name, help, MetricType::Counter)
    }

    pub fn push(&mut self, labels: Labels, value: f64) -> &mut Self {
        self.samples.push((labels, value));
        self
    }

    pub fn with(mut self, labels: Labels, value: f64) -> Self {
        self.samples.push((labels, value));
        self
    }
}

/// Renders families in the text format. Families are written in the order given.
pub fn render(families: &[MetricFamily]) -> String {
    let mut out = String::with_capacity(families.len() * 128);
    for f in families {
        if f.samples.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(&f.help));
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.as_str());
        for (labels, value) in &f.samples {
            out.push_str(&f.name);
            let mut first = true;
            for l in labels.iter().filter(|l| l.name != METRIC_NAME) {
                out.push(if first { '{' } else { ',' });
                first = false;
                out.push_str(&l.name);
                out.push_str("=\"");
                escape_label_value(&l.value, &mut out);
                out.push('"');
            }
            if !first {
                out.push('}');
            }
            out.push(' ');
            out.push_str(&format_value(*value));
            out.push('\n');
        }
    }
    out
}

/// Turns families into series with one sample each at `timestamp_ms`, adding `extra` labels
/// (the agent's static host labels) to every series.
pub fn to_series(families: &[MetricFamily], extra: &Labels, timestamp_ms: i64) -> Vec<TimeSeries> {
    let mut out = Vec::new();
    for f in families {
        for (labels, value) in &f.samples {
            let mut v: Vec<Label> = extra.iter().cloned().collect();
            v.extend(labels.iter().cloned());
            v.push(Label::new(METRIC_NAME, f.name.clone()));
            out.push(TimeSeries::new(Labels::from_unsorted(v), vec![Sample::new(timestamp_ms, *value)]));
        }
    }
    out
}

pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        // Rust's shortest round-trip form; Prometheus parses it back exactly.
        format!("{v}")
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label_value(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_help_type_and_escapes() {
        let f = MetricFamily::gauge("node_load1", "1m load average.")
            .with(Labels::from_pairs([("host", "a\"b\\c\n")]), 0.25)
            .with(Labels::new(), f64::INFINITY);
        let text = render(&[f]);
        assert_eq!(
            text,
            "# HELP node_load1 1m load average.\n# TYPE node_load1 gauge\nnode_load1{host=\"a\\\"b\\\\c\\n\"} 0.25\nnode_load1 +Inf\n"
        );
    }

    #[test]
    fn series_carry_extra_labels() {
        let f = MetricFamily::counter("x_total", "x").with(Labels::from_pairs([("mode", "idle")]), 3.0);
        let s = to_series(&[f], &Labels::from_pairs([("host", "h1")]), 7);
        assert_eq!(s[0].labels.to_string(), r#"x_total{host="h1", mode="idle"}"#);
        assert_eq!(s[0].samples, vec![Sample::new(7, 3.0)]);
    }
}
