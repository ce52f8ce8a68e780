//! What an agent tells the collector about its host in every heartbeat (MON-2, MON-8): enough
//! to list, search and group hosts by IP, name, campus, role and system.

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
        Ok(())
    }
}
