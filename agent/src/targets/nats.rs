//! NATS through its HTTP monitoring endpoint (`nats-server -m PORT`): `/varz` for connections,
//! message and byte rates, subscriptions, slow consumers, memory and CPU, and `/jsz` for
//! JetStream usage when it is enabled — prometheus-nats-exporter's `gnatsd_varz_*` and
//! `jetstream_*` names.

use super::{Collect, Ctx, TargetConfig, TargetError};
use crate::host::Out;
use serde_json::Value;
use std::io::Read;

/// Monitoring answers are small; a bigger one is not a NATS server.
const MAX_BODY: u64 = 4 << 20;

pub struct Nats {
    base: String,
    agent: ureq::Agent,
}

const VARZ_COUNTERS: &[&str] = &["in_msgs", "out_msgs", "in_bytes", "out_bytes", "total_connections", "slow_consumers"];
const VARZ_GAUGES: &[&str] = &["connections", "subscriptions", "mem", "cpu", "routes", "remotes", "max_connections"];

pub fn emit_varz(v: &Value, out: &mut Out<'_>) {
    out.gauge(
        "gnatsd_varz_info",
        "NATS server information",
        &[
            ("server_id", v["server_id"].as_str().unwrap_or("")),
            ("server_name", v["server_name"].as_str().unwrap_or("")),
            ("version", v["version"].as_str().unwrap_or("")),
        ],
        1.0,
    );
    for k in VARZ_COUNTERS {
        if let Some(x) = v[*k].as_f64() {
            out.counter(&format!("gnatsd_varz_{k}"), &format!("varz field {k}"), &[], x);
        }
    }
    for k in VARZ_GAUGES {
        if let Some(x) = v[*k].as_f64() {
            out.gauge(&format!("gnatsd_varz_{k}"), &format!("varz field {k}"), &[], x);
        }
    }
    if let Some(start) = v["start"].as_str().and_then(parse_rfc3339_secs) {
        out.gauge("gnatsd_varz_start_time_seconds", "When the server started", &[], start);
    }
}

pub fn emit_jsz(v: &Value, out: &mut Out<'_>) {
    let pairs = [
        ("streams", "jetstream_server_total_streams"),
        ("consumers", "jetstream_server_total_consumers"),
        ("messages", "jetstream_server_total_messages"),
        ("bytes", "jetstream_server_total_message_bytes"),
        ("memory", "jetstream_server_jetstream_memory_used_bytes"),
        ("storage", "jetstream_server_jetstream_storage_used_bytes"),
    ];
    for (k, name) in pairs {
        if let Some(x) = v[k].as_f64() {
            out.gauge(name, &format!("jsz field {k}"), &[], x);
        }
    }
    for (k, name) in [("max_memory", "jetstream_server_max_memory"), ("max_storage", "jetstream_server_max_storage")] {
        if let Some(x) = v["config"][k].as_f64() {
            out.gauge(name, &format!("jsz config field {k}"), &[], x);
        }
    }
}

/// `2026-11-26T01:02:03.123Z` (what /varz writes) to Unix seconds; `None` for other shapes.
fn parse_rfc3339_secs(s: &str) -> Option<f64> {
    let date = s.get(0..10)?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let t = s.get(11..19)?;
    let mut tp = t.split(':').map(|x| x.parse::<i64>().ok());
    let (h, mi, sec) = (tp.next()??, tp.next()??, tp.next()??);
    let rest = s.get(19..)?;
    let frac: f64 = rest
        .strip_prefix('.')
        .map(|r| r.trim_end_matches(|c: char| !c.is_ascii_digit()))
        .and_then(|r| format!("0.{}", r.split(|c: char| !c.is_ascii_digit()).next().unwrap_or("0")).parse().ok())
        .unwrap_or(0.0);
    // Only UTC ("Z") is converted exactly; NATS writes UTC.
    let days = super::probe::days_from_civil(y, m, day);
    Some((days * 86400 + h * 3600 + mi * 60 + sec) as f64 + frac)
}

impl Nats {
    pub fn new(cfg: &TargetConfig) -> Self {
        let base = if cfg.address.starts_with("http://") || cfg.address.starts_with("https://") {
            cfg.address.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", cfg.address)
        };
        let agent: ureq::Agent =
            ureq::Agent::config_builder().timeout_global(Some(cfg.timeout)).http_status_as_error(false).build().into();
        Self { base, agent }
    }

    fn get(&self, path: &str) -> Result<Option<Value>, TargetError> {
        let url = format!("{}{path}", self.base);
        let mut resp = self.agent.get(&url).call().map_err(|e| match e {
            ureq::Error::Io(io) => TargetError::Connect { address: self.base.clone(), message: io.to_string() },
            other => TargetError::Probe(format!("{url}: {other}")),
        })?;
        if resp.status() == 404 {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(TargetError::Probe(format!("{url}: HTTP {}", resp.status())));
        }
        let mut body = String::new();
        resp.body_mut()
            .as_reader()
            .take(MAX_BODY)
            .read_to_string(&mut body)
            .map_err(|e| TargetError::Probe(format!("{url}: {e}")))?;
        serde_json::from_str(&body).map(Some).map_err(|e| TargetError::Protocol(format!("{url}: not JSON: {e}")))
    }
}

impl Collect for Nats {
    fn collect(&mut self, cx: &mut Ctx<'_>) -> Result<(), TargetError> {
        let varz = self.get("/varz")?.ok_or_else(|| TargetError::Probe(format!("{}/varz: HTTP 404", self.base)))?;
        emit_varz(&varz, &mut cx.out);
        // JetStream disabled: the endpoint answers without a config, which adds nothing.
        match self.get("/jsz") {
            Ok(Some(jsz)) => emit_jsz(&jsz, &mut cx.out),
            Ok(None) => {}
            Err(e) => cx.partial_errors.push(format!("jsz: {e}")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tingzhen_core::Labels;

    #[test]
    fn varz_and_jsz_map_to_exporter_names() {
        let varz: Value = serde_json::from_str(
            r#"{"server_id":"N1","version":"2.9.10","connections":3,"in_msgs":10,"out_msgs":7,
                "in_bytes":100,"out_bytes":70,"mem":1048576,"cpu":1.5,"subscriptions":4,"slow_consumers":0,
                "start":"2026-11-26T01:02:03.5Z","total_connections":9}"#,
        )
        .unwrap();
        let jsz: Value = serde_json::from_str(
            r#"{"streams":2,"consumers":1,"messages":5,"bytes":512,"memory":0,"storage":512,
                "config":{"max_memory":1000,"max_storage":2000}}"#,
        )
        .unwrap();
        let base = Labels::new();
        let mut out = Out::new(&base);
        emit_varz(&varz, &mut out);
        emit_jsz(&jsz, &mut out);
        let fams = out.finish();
        let get = |n: &str| fams.iter().find(|f| f.name == n).map(|f| f.samples[0].1);
        assert_eq!(get("gnatsd_varz_connections"), Some(3.0));
        assert_eq!(get("gnatsd_varz_in_msgs"), Some(10.0));
        assert_eq!(get("jetstream_server_total_streams"), Some(2.0));
        assert_eq!(get("jetstream_server_max_storage"), Some(2000.0));
        assert_eq!(get("gnatsd_varz_start_time_seconds"), Some(1_795_654_923.5));
        assert_eq!(get("gnatsd_varz_routes"), None, "absent fields are left out");
    }
}
