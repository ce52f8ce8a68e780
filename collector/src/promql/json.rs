//! The `data` object of Prometheus's query API responses, byte-for-byte in shape: values as
//! strings in Go's shortest 'f' formatting, timestamps as seconds. `to_json` builds a value
//! tree (tests, small answers); `write_success_body` writes the whole response straight into
//! bytes, because a day-long range answer has ~10^5 points and building a tree of them cost
//! more than evaluating the query.

use super::value::{format_float, write_float};
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

fn write_str(out: &mut Vec<u8>, s: &str) {
    // serde_json's string escaping, without building a Value.
    serde_json::to_writer(&mut *out, s).expect("writing JSON into a Vec cannot fail");
}

fn write_seconds(out: &mut Vec<u8>, t_ms: i64) {
    use std::io::Write;
    let r = if t_ms % 1000 == 0 {
        write!(out, "{}", t_ms / 1000)
    } else {
        // Same digits as serde_json prints for the f64 (shortest round-trip).
        write!(out, "{}", serde_json::Number::from_f64(t_ms as f64 / 1000.0).map(|n| n.to_string()).unwrap_or_default())
    };
    r.expect("writing into a Vec cannot fail");
}

fn write_point(out: &mut Vec<u8>, t_ms: i64, v: f64) {
    out.push(b'[');
    write_seconds(out, t_ms);
    out.extend_from_slice(b",\"");
    write_float(out, v);
    out.extend_from_slice(b"\"]");
}

fn write_metric(out: &mut Vec<u8>, l: &Labels) {
    out.push(b'{');
    for (i, l) in l.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, &l.name);
        out.push(b':');
        write_str(out, &l.value);
    }
    out.push(b'}');
}

/// `{"status":"success","data":…}` for a query result, as bytes.
pub(crate) fn write_success_body(r: &QueryResult) -> Vec<u8> {
    let points = match r {
        QueryResult::Matrix(series) => series.iter().map(|s| s.samples.len()).sum::<usize>(),
        QueryResult::Vector(v) => v.len(),
        _ => 1,
    };
    let mut out = Vec::with_capacity(64 + points * 32);
    out.extend_from_slice(b"{\"status\":\"success\",\"data\":");
    match r {
        QueryResult::Scalar { t_ms, v } => {
            out.extend_from_slice(b"{\"resultType\":\"scalar\",\"result\":");
            write_point(&mut out, *t_ms, *v);
        }
        QueryResult::String { t_ms, v } => {
            out.extend_from_slice(b"{\"resultType\":\"string\",\"result\":[");
            write_seconds(&mut out, *t_ms);
            out.push(b',');
            write_str(&mut out, v);
            out.push(b']');
        }
        QueryResult::Vector(samples) => {
            out.extend_from_slice(b"{\"resultType\":\"vector\",\"result\":[");
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"metric\":");
                write_metric(&mut out, &s.labels);
                out.extend_from_slice(b",\"value\":");
                write_point(&mut out, s.t_ms, s.v);
                out.push(b'}');
            }
            out.push(b']');
        }
        QueryResult::Matrix(series) => {
            out.extend_from_slice(b"{\"resultType\":\"matrix\",\"result\":[");
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"metric\":");
                write_metric(&mut out, &s.labels);
                out.extend_from_slice(b",\"values\":[");
                for (j, p) in s.samples.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    write_point(&mut out, p.timestamp_ms, p.value);
                }
                out.extend_from_slice(b"]}");
            }
            out.push(b']');
        }
    }
    out.extend_from_slice(b"}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tingzhen_core::Sample;

    /// The byte writer and the value tree must describe the same JSON document.
    #[test]
    fn direct_body_equals_the_value_tree() {
        let l = Labels::from_pairs([("__name__", "up"), ("host", "a\"b\\c\n中文")]);
        let results = [
            QueryResult::Scalar { t_ms: 1_500, v: 0.1 },
            QueryResult::String { t_ms: 2_000, v: "x\"y".into() },
            QueryResult::Vector(vec![VectorSample { labels: l.clone(), t_ms: 1_700_000_000_123, v: f64::NAN }]),
            QueryResult::Vector(vec![]),
            QueryResult::Matrix(vec![
                RangeSeries {
                    labels: l.clone(),
                    samples: vec![
                        Sample::new(1_000, 1.0),
                        Sample::new(16_001, f64::INFINITY),
                        Sample::new(31_000, -2.5e-7),
                    ],
                },
                RangeSeries { labels: Labels::from_pairs([("a", "1")]), samples: vec![Sample::new(3_000, 1e21)] },
            ]),
        ];
        for r in &results {
            let direct: Json = serde_json::from_slice(&write_success_body(r)).expect("valid JSON");
            assert_eq!(direct, json!({"status": "success", "data": to_json(r)}), "for {r:?}");
        }
    }
}
