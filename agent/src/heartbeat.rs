//! The inventory heartbeat: what this host is (name, addresses, OS, kernel, CPUs, memory,
//! campus, role, system), posted to the collector every heartbeat interval.

use crate::host::{memory, stat, system};
use tingzhen_core::inventory::Heartbeat;

/// Labels and timing the heartbeat repeats from the agent's configuration.
#[derive(Debug, Clone)]
pub struct Identity {
    pub host: String,
    pub campus: String,
    pub role: String,
    pub system: String,
    pub interval_ms: u64,
}

/// Builds a heartbeat from the host as it is now (addresses can change while the agent runs).
pub fn build(id: &Identity) -> Heartbeat {
    let u = system::uname();
    let os = system::read_os_release();
    let pretty = system::os_get(&os, "PRETTY_NAME");
    let st = std::fs::read_to_string("/proc/stat").map(|t| stat::parse_stat(&t)).unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| memory::mem_total(&memory::parse_meminfo(&t)));
    let (_, ips) = system::host_ips();
    Heartbeat {
        host: id.host.clone(),
        hostname: u.nodename.clone(),
        ips: ips.iter().take(256).map(|ip| ip.to_string()).collect(),
        os: if pretty.is_empty() { u.sysname.clone() } else { pretty.to_string() },
        kernel: u.release,
        cpus: st.cpus.len() as u32,
        memory_bytes: mem.unwrap_or(0),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        campus: id.campus.clone(),
        role: id.role.clone(),
        system: id.system.clone(),
        interval_ms: id.interval_ms,
        boot_time: st.boot_time.unwrap_or(0),
        targets: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_of_this_host_validates() {
        let hb = build(&Identity {
            host: "h1".into(),
            campus: "east".into(),
            role: "db".into(),
            system: "his".into(),
            interval_ms: 10_000,
        });
        hb.validate().unwrap();
        assert!(hb.cpus >= 1 && hb.memory_bytes > 0 && hb.boot_time > 0);
        assert!(!hb.kernel.is_empty() && !hb.hostname.is_empty());
    }
}
