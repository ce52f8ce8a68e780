//! The `data` object of Prometheus's query API responses, byte-for-byte in shape: values as
//! strings in Go's shortest 'f' formatting, timestamps as seconds.

use super::value::format_float;
use super::{QueryResult, RangeSeries, VectorSample};
use serde_json::{Map, Value as Json, json};
use tingzhen_core::Labels;

/// Seconds as a JSON number: integral when whole (Go prints `1700000000`, not `…0.0`).
fn seconds(t_ms: i64) -> Json {
    if t_ms % 1000 == 0 { Json::from(t_ms / 1000) } else { json!(t_ms as f64 / 1000.0) }
}

fn point(t_ms: i64, v: f64) -> Json {
    Json::Array(vec![seconds(t_ms), Json::String(format_float(v))])
}

fn metric(l: &Labels) -> Json {
    Json::Object(l.iter().map(|l| (l.name.clone(), Json::String(l.value.clone()))).collect::<Map<_, _>>())
}

pub(crate) fn to_json(r: &QueryResult) -> Json {
    match r {
        QueryResult::Scalar { t_ms, v } => json!({"resultType": "scalar", "result": point(*t_ms, *v)}),
        QueryResult::String { t_ms, v } => json!({"resultType": "string", "result": [seconds(*t_ms), v]}),
        QueryResult::Vector(samples) => {
            let result: Vec<Json> = samples
                .iter()
                .map(|s: &VectorSample| json!({"metric": metric(&s.labels), "value": point(s.t_ms, s.v)}))
                .collect();
            json!({"resultType": "vector", "result": result})
        }
        QueryResult::Matrix(series) => {
            let result: Vec<Json> = series
                .iter()
                .map(|s: &RangeSeries| {
                    let values: Vec<Json> = s.samples.iter().map(|p| point(p.timestamp_ms, p.value)).collect();
                    json!({"metric": metric(&s.labels), "values": values})
                })
                .collect();
            json!({"resultType": "matrix", "result": result})
        }
    }
}
