//! OTLP/HTTP traces (`POST /v1/traces`, protobuf or JSON) → flow events. Only the subset of
//! `ExportTraceServiceRequest` we read is declared here as prost messages (field numbers from
//! opentelemetry-proto v1): pulling in the `opentelemetry-proto` crate would bring tonic and
//! its generated code for a dozen fields. Protobuf ignores undeclared fields, so full SDK
//! payloads decode. A span belongs to a flow when it carries `flow.name` and `flow.key`;
//! other spans are ordinary traces and are skipped, not refused.

use super::event::{Event, UNKNOWN};
use prost::Message;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Clone, PartialEq, Message)]
pub struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ResourceSpans {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_spans: Vec<ScopeSpans>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ScopeSpans {
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<Span>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Span {
    #[prost(string, tag = "5")]
    pub name: String,
    #[prost(fixed64, tag = "7")]
    pub start_time_unix_nano: u64,
    #[prost(fixed64, tag = "8")]
    pub end_time_unix_nano: u64,
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    #[prost(message, optional, tag = "15")]
    pub status: Option<Status>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Status {
    #[prost(string, tag = "2")]
    pub message: String,
    /// 0 unset, 1 ok, 2 error.
    #[prost(int32, tag = "3")]
    pub code: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct AnyValue {
    #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4")]
    pub value: Option<any_value::Value>,
}

pub mod any_value {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(string, tag = "1")]
        StringValue(String),
        #[prost(bool, tag = "2")]
        BoolValue(bool),
        #[prost(int64, tag = "3")]
        IntValue(i64),
        #[prost(double, tag = "4")]
        DoubleValue(f64),
    }
}

/// The answer's `partial_success` (field 1 of `ExportTraceServiceResponse`).
#[derive(Clone, PartialEq, Message)]
pub struct ExportTraceServiceResponse {
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<PartialSuccess>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PartialSuccess {
    #[prost(int64, tag = "1")]
    pub rejected_spans: i64,
    #[prost(string, tag = "2")]
    pub error_message: String,
}

/// A span reduced to what a flow event needs.
struct FlatSpan {
    name: String,
    end_ns: u64,
    start_ns: u64,
    error: bool,
    attrs: BTreeMap<String, String>,
    resource: BTreeMap<String, String>,
}

fn any_to_string(v: Option<any_value::Value>) -> Option<String> {
    match v? {
        any_value::Value::StringValue(s) => Some(s),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
    }
}

fn kv_map(kvs: Vec<KeyValue>) -> BTreeMap<String, String> {
    kvs.into_iter().filter_map(|kv| Some((kv.key, any_to_string(kv.value.and_then(|v| v.value))?))).collect()
}

/// Decodes an OTLP protobuf body into flow events (one `Result` per flow span).
pub fn decode_protobuf(body: &[u8]) -> Result<Vec<Result<Event, String>>, String> {
    let req = ExportTraceServiceRequest::decode(body).map_err(|e| format!("invalid OTLP protobuf: {e}"))?;
    let mut spans = Vec::new();
    for rs in req.resource_spans {
        let resource = kv_map(rs.resource.map(|r| r.attributes).unwrap_or_default());
        for ss in rs.scope_spans {
            for s in ss.spans {
                spans.push(FlatSpan {
                    name: s.name,
                    end_ns: s.end_time_unix_nano,
                    start_ns: s.start_time_unix_nano,
                    error: s.status.is_some_and(|st| st.code == 2),
                    attrs: kv_map(s.attributes),
                    resource: resource.clone(),
                });
            }
        }
    }
    Ok(spans.into_iter().filter_map(to_event).collect())
}

// OTLP/JSON: lowerCamelCase field names, 64-bit integers as strings or numbers, enums as
// integers (the spec's JSON mapping).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonRequest {
    #[serde(default)]
    resource_spans: Vec<JsonResourceSpans>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonResourceSpans {
    #[serde(default)]
    resource: Option<JsonResource>,
    #[serde(default)]
    scope_spans: Vec<JsonScopeSpans>,
}

#[derive(Deserialize)]
struct JsonResource {
    #[serde(default)]
    attributes: Vec<JsonKeyValue>,
}

#[derive(Deserialize)]
struct JsonScopeSpans {
    #[serde(default)]
    spans: Vec<JsonSpan>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSpan {
    #[serde(default)]
    name: String,
    #[serde(default)]
    start_time_unix_nano: Value,
    #[serde(default)]
    end_time_unix_nano: Value,
    #[serde(default)]
    attributes: Vec<JsonKeyValue>,
    #[serde(default)]
    status: Option<JsonStatus>,
}

#[derive(Deserialize)]
struct JsonStatus {
    #[serde(default)]
    code: Value,
}

#[derive(Deserialize)]
struct JsonKeyValue {
    key: String,
    #[serde(default)]
    value: Value,
}

fn json_u64(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

fn json_any(v: &Value) -> Option<String> {
    let o = v.as_object()?;
    if let Some(s) = o.get("stringValue").and_then(Value::as_str) {
        return Some(s.to_string());
    }
    if let Some(b) = o.get("boolValue").and_then(Value::as_bool) {
        return Some(b.to_string());
    }
    match o.get("intValue") {
        Some(Value::String(s)) => return Some(s.clone()),
        Some(Value::Number(n)) => return Some(n.to_string()),
        _ => {}
    }
    o.get("doubleValue").map(|d| d.to_string())
}

fn json_map(kvs: &[JsonKeyValue]) -> BTreeMap<String, String> {
    kvs.iter().filter_map(|kv| Some((kv.key.clone(), json_any(&kv.value)?))).collect()
}

/// Decodes an OTLP JSON body into flow events.
pub fn decode_json(body: &[u8]) -> Result<Vec<Result<Event, String>>, String> {
    let req: JsonRequest = serde_json::from_slice(body).map_err(|e| format!("invalid OTLP JSON: {e}"))?;
    let mut out = Vec::new();
    for rs in req.resource_spans {
        let resource = rs.resource.map(|r| json_map(&r.attributes)).unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                let code = match s.status.as_ref().map(|st| &st.code) {
                    Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
                    Some(Value::String(s)) if s == "STATUS_CODE_ERROR" => 2,
                    _ => 0,
                };
                let flat = FlatSpan {
                    name: s.name,
                    end_ns: json_u64(&s.end_time_unix_nano),
                    start_ns: json_u64(&s.start_time_unix_nano),
                    error: code == 2,
                    attrs: json_map(&s.attributes),
                    resource: resource.clone(),
                };
                out.extend(to_event(flat));
            }
        }
    }
    Ok(out)
}

/// `flow.name`, `flow.key` and `flow.step` (default: the span name) place the span; campus
/// and system come from `flow.campus`/`flow.system`, else the resource's `hospital.campus` and
/// `service.name`; other `flow.*` attributes become event attributes without the prefix.
fn to_event(s: FlatSpan) -> Option<Result<Event, String>> {
    let flow = s.attrs.get("flow.name")?.clone();
    let Some(key) = s.attrs.get("flow.key").cloned() else {
        return Some(Err(format!("span {:?} of flow {flow:?}: attribute flow.key: missing", s.name)));
    };
    let ns = if s.end_ns != 0 { s.end_ns } else { s.start_ns };
    if ns == 0 {
        return Some(Err(format!("span {:?} of flow {flow:?}: no start or end time", s.name)));
    }
    let pick = |own: &str, res: &str| s.attrs.get(own).or_else(|| s.resource.get(res)).cloned();
    let attrs = s
        .attrs
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("flow.").map(|k| (k.to_string(), v.clone())))
        .filter(|(k, _)| !matches!(k.as_str(), "name" | "key" | "step" | "campus" | "system" | "interface"))
        .collect();
    Some(Ok(Event {
        step: s.attrs.get("flow.step").cloned().unwrap_or_else(|| s.name.clone()),
        flow,
        key,
        time_ms: (ns / 1_000_000) as i64,
        campus: pick("flow.campus", "hospital.campus").unwrap_or_else(|| UNKNOWN.into()),
        system: pick("flow.system", "service.name").unwrap_or_else(|| UNKNOWN.into()),
        ok: !s.error,
        interface: s.attrs.get("flow.interface").cloned(),
        attrs,
    }))
}
