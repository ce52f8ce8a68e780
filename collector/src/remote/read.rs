//! Reading back from the remote store through its Prometheus-compatible HTTP API. Raw samples
//! come from VictoriaMetrics' `/api/v1/export` (JSON lines, exact timestamps), so PromQL is
//! still evaluated by our own engine and answers match embedded mode; series and label
//! lookups use `/api/v1/series`, `/api/v1/labels` and `/api/v1/label/{name}/values`.

use super::sink::encode_query;
use crate::storage::{SeriesSamples, StorageError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use tingzhen_core::{Label, Labels, MatchOp, Matcher, Sample};

/// An export larger than this is refused rather than read into memory.
const MAX_EXPORT_BYTES: u64 = 2 << 30;

pub struct PromReader {
    base: String,
    auth: Option<String>,
    agent: ureq::Agent,
}

#[derive(Deserialize)]
struct ExportLine {
    metric: BTreeMap<String, String>,
    values: Vec<Option<f64>>,
    timestamps: Vec<i64>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
struct ApiAnswer<T> {
    status: String,
    #[serde(default = "none")]
    data: Option<T>,
    #[serde(default)]
    error: Option<String>,
}

fn none<T>() -> Option<T> {
    None
}

/// Renders matchers as a PromQL selector: `{__name__="x",job=~"a|b"}`.
pub fn selector(matchers: &[Matcher]) -> String {
    let mut out = String::from("{");
    for (i, m) in matchers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&m.name);
        out.push_str(match m.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::RegexMatch => "=~",
            MatchOp::RegexNoMatch => "!~",
        });
        out.push('"');
        for c in m.value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}

fn seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
}

/// Open-ended lookups arrive with Prometheus's extreme times; VictoriaMetrics wants times it
/// can store (not before 1970, not absurdly far ahead), so clamp to what can hold data.
fn clamp_range(start_ms: i64, end_ms: i64) -> (i64, i64) {
    let latest = tingzhen_core::now_ms() + 2 * 86_400_000;
    (start_ms.clamp(0, latest), end_ms.clamp(0, latest))
}

fn remote_err(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Other(format!("remote store {what}: {e}"))
}

impl PromReader {
    pub fn new(base: &str, token: Option<String>, agent: ureq::Agent) -> Self {
        Self { base: base.trim_end_matches('/').to_string(), auth: token.map(|t| format!("Bearer {t}")), agent }
    }

    fn get(&self, path: &str, params: &[(String, String)]) -> Result<ureq::http::Response<ureq::Body>, StorageError> {
        let query: Vec<String> =
            params.iter().map(|(k, v)| format!("{}={}", encode_query(k), encode_query(v))).collect();
        let url = format!("{}{}?{}", self.base, path, query.join("&"));
        let mut req = self.agent.get(&url);
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        let mut resp = req.call().map_err(|e| remote_err("unreachable", e))?;
        if !resp.status().is_success() {
            let mut text = String::new();
            let _ = resp.body_mut().as_reader().take(512).read_to_string(&mut text);
            return Err(remote_err("answered", format!("HTTP {} for {path}: {}", resp.status().as_u16(), text.trim())));
        }
        Ok(resp)
    }

    fn api<T: for<'de> Deserialize<'de>>(&self, path: &str, params: &[(String, String)]) -> Result<T, StorageError> {
        let mut resp = self.get(path, params)?;
        let answer: ApiAnswer<T> = resp
            .body_mut()
            .with_config()
            .limit(MAX_EXPORT_BYTES)
            .read_json()
            .map_err(|e| remote_err("answer unreadable", e))?;
        if answer.status != "success" {
            return Err(remote_err("error", answer.error.unwrap_or_default()));
        }
        answer.data.ok_or_else(|| remote_err("answer", "no data"))
    }

    fn range_params(sets: &[Vec<Matcher>], start_ms: i64, end_ms: i64) -> Vec<(String, String)> {
        let (start_ms, end_ms) = clamp_range(start_ms, end_ms);
        let mut p: Vec<(String, String)> = sets.iter().map(|m| ("match[]".to_string(), selector(m))).collect();
        p.push(("start".into(), seconds(start_ms)));
        p.push(("end".into(), seconds(end_ms)));
        p
    }

    pub fn select(&self, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Result<Vec<SeriesSamples>, StorageError> {
        let params = Self::range_params(&[matchers.to_vec()], start_ms, end_ms);
        let resp = self.get("/api/v1/export", &params)?;
        let reader = BufReader::new(resp.into_body().into_with_config().limit(MAX_EXPORT_BYTES).reader());
        let mut out = Vec::new();
        for line in reader.lines() {
            let line = line.map_err(|e| remote_err("export interrupted", e))?;
            if line.trim().is_empty() {
                continue;
            }
            let row: ExportLine = serde_json::from_str(&line).map_err(|e| remote_err("export line unreadable", e))?;
            let labels = Labels::from_unsorted(row.metric.into_iter().map(|(k, v)| Label::new(k, v)).collect());
            let mut samples: Vec<Sample> = row
                .timestamps
                .iter()
                .zip(row.values)
                .filter(|(t, _)| **t >= start_ms && **t <= end_ms)
                .map(|(t, v)| Sample::new(*t, v.unwrap_or(f64::NAN)))
                .collect();
            samples.sort_by_key(|s| s.timestamp_ms);
            samples.dedup_by_key(|s| s.timestamp_ms);
            if !samples.is_empty() {
                out.push(SeriesSamples { labels, samples });
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    pub fn series(&self, sets: &[Vec<Matcher>], start_ms: i64, end_ms: i64) -> Result<Vec<Labels>, StorageError> {
        let rows: Vec<BTreeMap<String, String>> =
            self.api("/api/v1/series", &Self::range_params(sets, start_ms, end_ms))?;
        let mut out: Vec<Labels> = rows
            .into_iter()
            .map(|m| Labels::from_unsorted(m.into_iter().map(|(k, v)| Label::new(k, v)).collect()))
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    pub fn label_names(&self, sets: &[Vec<Matcher>], start_ms: i64, end_ms: i64) -> Result<Vec<String>, StorageError> {
        let mut names: Vec<String> = self.api("/api/v1/labels", &Self::range_params(sets, start_ms, end_ms))?;
        names.sort();
        Ok(names)
    }

    pub fn label_values(
        &self,
        name: &str,
        sets: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, StorageError> {
        let path = format!("/api/v1/label/{}/values", encode_query(name));
        let mut values: Vec<String> = self.api(&path, &Self::range_params(sets, start_ms, end_ms))?;
        values.sort();
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_render_and_escape() {
        let m = vec![
            Matcher::equal("__name__", "node_load1"),
            Matcher::new(MatchOp::RegexMatch, "host", "his-.*").unwrap(),
            Matcher::new(MatchOp::NotEqual, "path", "C:\\\"x\"").unwrap(),
        ];
        assert_eq!(selector(&m), r#"{__name__="node_load1",host=~"his-.*",path!="C:\\\"x\""}"#);
        assert_eq!(seconds(1_500), "1.500");
        assert_eq!(seconds(-1), "-0.001");
    }
}
