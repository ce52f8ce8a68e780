//! What an agent tells the collector about its host in every heartbeat (MON-2, MON-8): enough
//! to list, search and group hosts by IP, name, campus, role and system — and, since agents
//! also watch databases and middleware (MON-3, MON-4), each watched target with its type,
//! address, campus, system and last status. `targets` defaults to empty, so heartbeats of
//! agents that predate it still parse.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// The `host` label the agent puts on its series; the inventory key.
    pub host: String,
    pub hostname: String,
    #[serde(default)]
    pub ips: Vec<String>,
    pub os: String,
    #[serde(default)]
    pub kernel: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub agent_version: String,
    #[serde(default)]
    pub campus: String,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub system: String,
    /// How often the agent intends to report; the collector declares it down after a few misses.
    pub interval_ms: u64,
    pub boot_time: u64,
    /// Databases, middleware, probes and processes this agent watches.
    #[serde(default)]
    pub targets: Vec<WatchedTarget>,
}

/// Most targets one heartbeat may list (an agent watching more is misconfigured).
pub const MAX_TARGETS: usize = 256;

/// One target an agent watches, as the inventory lists and searches it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchedTarget {
    /// The target's name from the agent config (the `target` label on its series).
    pub name: String,
    /// `postgres`, `mysql`, `redis`, `rabbitmq`, `nats`, `mqtt`, `http`, `tcp`, `process`, `oracle`.
    pub kind: String,
    /// Where it is: `host:port`, a URL, or a process name.
    pub address: String,
    #[serde(default)]
    pub campus: String,
    #[serde(default)]
    pub system: String,
    /// `up`, `down`, or `pending` (not collected yet).
    pub status: String,
    /// Why the last collection failed; empty when it succeeded.
    #[serde(default)]
    pub last_error: String,
    /// When the last collection finished (ms since the epoch; 0 = never).
    #[serde(default)]
    pub last_collect_ms: i64,
}

impl WatchedTarget {
    fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.len() > 128 {
            return Err("targets.name: must be 1..=128 characters".into());
        }
        if !matches!(self.status.as_str(), "up" | "down" | "pending") {
            return Err(format!("targets.status: {:?} is not up, down or pending", self.status));
        }
        for (name, v, max) in [
            ("targets.kind", &self.kind, 32),
            ("targets.address", &self.address, 512),
            ("targets.campus", &self.campus, 256),
            ("targets.system", &self.system, 256),
            ("targets.last_error", &self.last_error, 1024),
        ] {
            if v.len() > max {
                return Err(format!("{name}: longer than {max} characters"));
            }
        }
        Ok(())
    }
}

impl Heartbeat {
    /// Checks what the inventory relies on; returns the name of the first bad field.
    pub fn validate(&self) -> Result<(), String> {
        if self.host.is_empty() || self.host.len() > 253 {
            return Err("host: must be 1..=253 characters".into());
        }
        if self.hostname.len() > 253 {
            return Err("hostname: longer than 253 characters".into());
        }
        if self.ips.len() > 256 {
            return Err("ips: more than 256 addresses".into());
        }
        for ip in &self.ips {
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err(format!("ips: {ip:?} is not an IP address"));
            }
        }
        if !(1_000..=3_600_000).contains(&self.interval_ms) {
            return Err("interval_ms: must be between 1000 and 3600000".into());
        }
        for (name, v) in [
            ("os", &self.os),
            ("kernel", &self.kernel),
            ("campus", &self.campus),
            ("role", &self.role),
            ("system", &self.system),
            ("agent_version", &self.agent_version),
        ] {
            if v.len() > 256 {
                return Err(format!("{name}: longer than 256 characters"));
            }
        }
        if self.targets.len() > MAX_TARGETS {
            return Err(format!("targets: more than {MAX_TARGETS} entries"));
        }
        for t in &self.targets {
            t.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_without_targets_still_parse_and_targets_are_checked() {
        let old = r#"{"host":"h","hostname":"h","os":"Linux","cpus":1,"memory_bytes":1,
            "agent_version":"0.1.0","interval_ms":10000,"boot_time":1}"#;
        let mut hb: Heartbeat = serde_json::from_str(old).unwrap();
        assert!(hb.targets.is_empty());
        hb.validate().unwrap();
        hb.targets.push(WatchedTarget {
            name: "his-pg".into(),
            kind: "postgres".into(),
            address: "10.0.0.9:5432".into(),
            campus: "east".into(),
            system: "HIS".into(),
            status: "down".into(),
            last_error: "connection refused".into(),
            last_collect_ms: 5,
        });
        hb.validate().unwrap();
        hb.targets[0].status = "sleepy".into();
        assert!(hb.validate().unwrap_err().starts_with("targets.status"));
        hb.targets[0].status = "up".into();
        hb.targets[0].name.clear();
        assert!(hb.validate().unwrap_err().starts_with("targets.name"));
    }
}
