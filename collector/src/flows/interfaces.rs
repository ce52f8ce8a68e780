//! Interface services (MON-5): the registry (name, system, campus, endpoint, type, owner
//! vendor) from TOML and the API, and in-memory message tracking. Volume comes from flow events
//! (an event's `interface`, else the registered interface of its system and campus) and from
//! counts pushed by interface engines. An interface watched during clinic hours that has seen
//! no message for its `silence` window is reported as zero volume. Liveness comes from the
//! agent's HTTP/TCP probes: an interface whose `endpoint` is a probe's `instance` (the probed
//! address or URL) or `target` (the probe's name) is alive when that probe's latest
//! `probe_success` is 1.

use super::hours;
use super::model::check_name;
use crate::storage::SeriesSamples;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use tingzhen_core::config::HumanDuration;

/// The metric the agent's HTTP and TCP probes publish (blackbox_exporter's name).
pub const PROBE_METRIC: &str = "probe_success";

/// The latest probe result for an address or probe name: (success, sample time in ms).
pub type Probes = HashMap<String, (bool, i64)>;

/// Endpoints compare without surrounding blanks or a trailing `/` (`http://h/` = `http://h`).
fn endpoint_key(s: &str) -> &str {
    let s = s.trim();
    s.strip_suffix('/').unwrap_or(s)
}

/// Indexes `probe_success` series by their `instance` and `target` labels; where several
/// series share one, the latest sample wins.
pub fn probe_index(series: &[SeriesSamples]) -> Probes {
    let mut out: Probes = HashMap::new();
    for s in series {
        let Some(last) = s.samples.last() else { continue };
        for label in ["instance", "target"] {
            if let Some(v) = s.labels.get(label).map(endpoint_key).filter(|v| !v.is_empty()) {
                let slot = out.entry(v.to_string()).or_insert((last.value == 1.0, last.timestamp_ms));
                if last.timestamp_ms > slot.1 {
                    *slot = (last.value == 1.0, last.timestamp_ms);
                }
            }
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceDef {
    pub name: String,
    pub system: String,
    pub campus: String,
    #[serde(default)]
    pub endpoint: String,
    /// HL7, HTTP, WebService, MQ, DB view …: free text for people, shown as is.
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub vendor: String,
    /// Check for zero volume during clinic hours (Mon–Fri 08:00–18:00 Asia/Shanghai). Default true.
    #[serde(default = "yes")]
    pub clinic_hours: bool,
    /// How long without a message counts as zero volume. Default: `[flows] interface_silence`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence: Option<HumanDuration>,
}

fn yes() -> bool {
    true
}

impl InterfaceDef {
    pub fn validate(&self) -> Result<(), String> {
        check_name(&self.name).map_err(|e| format!("interface name: {e}"))?;
        for (field, v) in [("system", &self.system), ("campus", &self.campus)] {
            if v.trim().is_empty() {
                return Err(format!("interface {:?}: {field}: must not be empty", self.name));
            }
        }
        if self.silence.as_ref().is_some_and(|s| s.0.is_zero()) {
            return Err(format!("interface {:?}: silence: must be longer than zero", self.name));
        }
        Ok(())
    }
}

/// Registered interfaces and when each last carried a message.
#[derive(Default)]
pub struct Registry {
    pub defs: BTreeMap<String, InterfaceDef>,
    /// Latest message time; absent ones count from `watched_since`.
    pub last_ms: HashMap<String, i64>,
    pub watched_since: HashMap<String, i64>,
}

impl Registry {
    pub fn put(&mut self, def: InterfaceDef, now_ms: i64) {
        self.watched_since.entry(def.name.clone()).or_insert(now_ms);
        self.defs.insert(def.name.clone(), def);
    }

    pub fn remove(&mut self, name: &str) {
        self.defs.remove(name);
        self.last_ms.remove(name);
        self.watched_since.remove(name);
    }

    /// The interface an event travelled through: the one it names, else the first registered
    /// for its system and campus.
    pub fn resolve(&self, named: Option<&str>, system: &str, campus: &str) -> Option<&InterfaceDef> {
        match named {
            Some(n) => self.defs.get(n),
            None => self.defs.values().find(|d| d.system == system && d.campus == campus),
        }
    }

    pub fn saw(&mut self, name: &str, time_ms: i64) {
        let slot = self.last_ms.entry(name.to_string()).or_insert(time_ms);
        *slot = (*slot).max(time_ms);
    }

    /// Whether the interface's endpoint answers its probe: None when it has no endpoint or no
    /// probe watches it (recently).
    pub fn alive(def: &InterfaceDef, probes: &Probes) -> Option<(bool, i64)> {
        let key = endpoint_key(&def.endpoint);
        if key.is_empty() {
            return None;
        }
        probes.get(key).copied()
    }

    pub fn zero_volume(&self, def: &InterfaceDef, now_ms: i64, default_silence_ms: i64) -> bool {
        if !def.clinic_hours || !hours::is_business_time(now_ms) {
            return false;
        }
        let silence = def.silence.as_ref().map(|s| s.0.as_millis() as i64).unwrap_or(default_silence_ms);
        let since =
            self.last_ms.get(&def.name).or_else(|| self.watched_since.get(&def.name)).copied().unwrap_or(now_ms);
        now_ms - since > silence
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> InterfaceDef {
        InterfaceDef {
            name: "本院-LIS".into(),
            system: "LIS".into(),
            campus: "本院".into(),
            endpoint: String::new(),
            kind: "HL7".into(),
            vendor: String::new(),
            clinic_hours: true,
            silence: None,
        }
    }

    #[test]
    fn zero_volume_only_during_clinic_hours_after_the_silence() {
        // Wednesday 2026-11-25 10:00 and 22:00 Asia/Shanghai.
        let wed_10 = chrono::DateTime::parse_from_rfc3339("2026-11-25T10:00:00+08:00").unwrap().timestamp_millis();
        let wed_22 = wed_10 + 12 * 3_600_000;
        let silence = 15 * 60_000;
        let mut r = Registry::default();
        r.put(def(), wed_10 - 3_600_000);
        assert!(r.zero_volume(&r.defs["本院-LIS"], wed_10, silence), "registered an hour ago, never a message");
        r.saw("本院-LIS", wed_10 - 60_000);
        assert!(!r.zero_volume(&r.defs["本院-LIS"], wed_10, silence));
        assert!(r.zero_volume(&r.defs["本院-LIS"], wed_10 + silence, silence));
        assert!(!r.zero_volume(&r.defs["本院-LIS"], wed_22, silence), "night is not clinic hours");
        let mut quiet = def();
        quiet.clinic_hours = false;
        assert!(!r.zero_volume(&quiet, wed_10 + silence, silence));
        assert_eq!(r.resolve(None, "LIS", "本院").map(|d| d.name.as_str()), Some("本院-LIS"));
        assert!(r.resolve(None, "LIS", "南沙").is_none());
        assert!(def().validate().is_ok());
        assert!(InterfaceDef { system: " ".into(), ..def() }.validate().unwrap_err().contains("system"));
    }

    #[test]
    fn liveness_matches_the_endpoint_to_a_probe_address_or_name() {
        use tingzhen_core::{Labels, Sample};
        let probe = |instance: &str, target: &str, points: &[(i64, f64)]| SeriesSamples {
            labels: Labels::from_pairs([("__name__", PROBE_METRIC), ("instance", instance), ("target", target)]),
            samples: points.iter().map(|(t, v)| Sample::new(*t, *v)).collect(),
        };
        let probes = probe_index(&[
            probe("10.0.0.5:2575", "lis-mllp", &[(1_000, 1.0), (2_000, 0.0)]),
            probe("http://10.0.0.6/ws/", "pacs-ws", &[(3_000, 1.0)]),
        ]);
        let with = |endpoint: &str| InterfaceDef { endpoint: endpoint.into(), ..def() };
        assert_eq!(Registry::alive(&with("10.0.0.5:2575"), &probes), Some((false, 2_000)), "the latest sample");
        assert_eq!(Registry::alive(&with("http://10.0.0.6/ws"), &probes), Some((true, 3_000)));
        assert_eq!(Registry::alive(&with("pacs-ws"), &probes), Some((true, 3_000)), "by probe name");
        assert_eq!(Registry::alive(&with("10.0.0.7:2575"), &probes), None, "no probe watches it");
        assert_eq!(Registry::alive(&with(""), &probes), None, "no endpoint");
    }
}
