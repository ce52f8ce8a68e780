//! Agent inventory and liveness (MON-2 alive, MON-8 search fields). Each heartbeat updates the
//! host's entry, including the databases and middleware its agent watches; a host is down once
//! it misses `missed_heartbeats` of its own intervals. The state is written as the series
//! `tingzhen_agent_up{host, ip, campus, role, system}` so that screens and alert rules use plain
//! PromQL for it. [`Inventory::search`] answers the quick search by IP, server, target name,
//! campus, system and type. The inventory also owns the top-SQL store ([`crate::topsql`]):
//! both are what agents report about the things they watch, on the same relational store.

use crate::config::InventoryConfig;
use crate::topsql::TopSqlStore;
use parking_lot::RwLock;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use tingzhen_core::db::{AgentRecord, Db, DbError};
use tingzhen_core::inventory::{Heartbeat, WatchedTarget};
use tingzhen_core::{Labels, Sample, TimeSeries};

/// A persisted copy older than this is refreshed even if nothing changed, so `last_seen`
/// survives a restart with at most this much error.
const PERSIST_EVERY_MS: i64 = 60_000;

pub const UP_METRIC: &str = "tingzhen_agent_up";

struct HostState {
    record: AgentRecord,
    persisted_at_ms: i64,
}

pub struct Inventory {
    db: Arc<Db>,
    config: InventoryConfig,
    hosts: RwLock<HashMap<String, HostState>>,
    top_sql: TopSqlStore,
}

/// One host as the inventory API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct HostView {
    #[serde(flatten)]
    pub heartbeat: Heartbeat,
    pub remote_addr: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub up: bool,
}

/// A watched target with the host whose agent watches it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetView {
    #[serde(flatten)]
    pub target: WatchedTarget,
    pub host: String,
    pub host_ips: Vec<String>,
    /// Whether that agent is heartbeating; when it is not, `status` is its last report.
    pub agent_up: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SearchResult {
    pub hosts: Vec<HostView>,
    pub targets: Vec<TargetView>,
}

impl Inventory {
    /// Loads the persisted inventory so hosts known before a restart are still listed (and
    /// reported down if they do not come back).
    pub fn load(db: Arc<Db>, config: InventoryConfig) -> Result<Self, DbError> {
        let hosts = db
            .list_agents()?
            .into_iter()
            .map(|r| (r.heartbeat.host.clone(), HostState { persisted_at_ms: r.last_seen_ms, record: r }))
            .collect();
        let top_sql = TopSqlStore::open(db.clone())?;
        Ok(Self { db, config, hosts: RwLock::new(hosts), top_sql })
    }

    pub fn top_sql(&self) -> &TopSqlStore {
        &self.top_sql
    }

    /// Records a heartbeat. Blocking: it may write the SQLite store.
    pub fn heartbeat(&self, hb: Heartbeat, remote_addr: String, now_ms: i64) -> Result<(), DbError> {
        let to_persist = {
            let mut hosts = self.hosts.write();
            match hosts.get_mut(&hb.host) {
                Some(state) => {
                    let changed = state.record.heartbeat != hb || state.record.remote_addr != remote_addr;
                    state.record.heartbeat = hb;
                    state.record.remote_addr = remote_addr;
                    state.record.last_seen_ms = now_ms;
                    if changed || now_ms - state.persisted_at_ms >= PERSIST_EVERY_MS {
                        state.persisted_at_ms = now_ms;
                        Some(state.record.clone())
                    } else {
                        None
                    }
                }
                None => {
                    let record =
                        AgentRecord { heartbeat: hb.clone(), remote_addr, first_seen_ms: now_ms, last_seen_ms: now_ms };
                    hosts.insert(hb.host.clone(), HostState { record: record.clone(), persisted_at_ms: now_ms });
                    Some(record)
                }
            }
        };
        if let Some(rec) = to_persist {
            self.db.upsert_agent(&rec)?;
        }
        Ok(())
    }

    fn is_up(&self, rec: &AgentRecord, now_ms: i64) -> bool {
        let allowed = rec.heartbeat.interval_ms as i64 * self.config.missed_heartbeats as i64;
        now_ms - rec.last_seen_ms <= allowed
    }

    pub fn hosts(&self, now_ms: i64) -> Vec<HostView> {
        let hosts = self.hosts.read();
        let mut out: Vec<HostView> = hosts
            .values()
            .map(|s| HostView {
                heartbeat: s.record.heartbeat.clone(),
                remote_addr: s.record.remote_addr.clone(),
                first_seen_ms: s.record.first_seen_ms,
                last_seen_ms: s.record.last_seen_ms,
                up: self.is_up(&s.record, now_ms),
            })
            .collect();
        out.sort_by(|a, b| a.heartbeat.host.cmp(&b.heartbeat.host));
        out
    }

    /// Hosts and watched targets matching every whitespace-separated term of `q` (case-folded
    /// substring of IP, host name, OS, campus, role, system; for targets also their name, type
    /// and address). A target matches on its host's fields too, so "east postgres" finds the
    /// PostgreSQL servers of campus east and a host's IP lists everything watched from it.
    pub fn search(&self, q: &str, now_ms: i64) -> SearchResult {
        let terms: Vec<String> = q.split_whitespace().map(str::to_lowercase).collect();
        let all_match =
            |fields: &[&str]| terms.iter().all(|t| fields.iter().any(|f| f.to_lowercase().contains(t.as_str())));
        let mut result = SearchResult::default();
        for h in self.hosts(now_ms) {
            let hb = &h.heartbeat;
            let mut host_fields: Vec<&str> =
                vec![&hb.host, &hb.hostname, &hb.os, &hb.campus, &hb.role, &hb.system, &h.remote_addr];
            host_fields.extend(hb.ips.iter().map(String::as_str));
            if all_match(&host_fields) {
                result.hosts.push(h.clone());
            }
            for t in &hb.targets {
                let mut fields = host_fields.clone();
                fields.extend([t.name.as_str(), &t.kind, &t.address, &t.campus, &t.system]);
                if all_match(&fields) {
                    result.targets.push(TargetView {
                        target: t.clone(),
                        host: hb.host.clone(),
                        host_ips: hb.ips.clone(),
                        agent_up: h.up,
                    });
                }
            }
        }
        result
    }

    /// One `tingzhen_agent_up` sample per known host at `now_ms`.
    pub fn liveness_series(&self, now_ms: i64) -> Vec<TimeSeries> {
        self.hosts(now_ms)
            .into_iter()
            .map(|h| {
                let hb = &h.heartbeat;
                let ip = hb.ips.first().cloned().unwrap_or_default();
                let labels = Labels::from_pairs([
                    ("__name__", UP_METRIC),
                    ("host", hb.host.as_str()),
                    ("ip", ip.as_str()),
                    ("campus", hb.campus.as_str()),
                    ("role", hb.role.as_str()),
                    ("system", hb.system.as_str()),
                ]);
                TimeSeries::new(labels, vec![Sample::new(now_ms, if h.up { 1.0 } else { 0.0 })])
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(host: &str) -> Heartbeat {
        Heartbeat {
            host: host.into(),
            hostname: host.into(),
            ips: vec!["10.0.0.5".into()],
            os: "Linux".into(),
            kernel: "6.1".into(),
            cpus: 4,
            memory_bytes: 1 << 30,
            agent_version: "0.1.0".into(),
            campus: "main".into(),
            role: "app".into(),
            system: "EMR".into(),
            interval_ms: 1_000,
            boot_time: 0,
            targets: Vec::new(),
        }
    }

    #[test]
    fn goes_down_after_missed_heartbeats_and_survives_restart() {
        let db = Arc::new(tingzhen_core::db::testing::fresh_db());
        let inv = Inventory::load(db.clone(), InventoryConfig::default()).unwrap();
        inv.heartbeat(hb("emr-app-01"), "10.0.0.5".into(), 10_000).unwrap();
        let up = inv.liveness_series(12_000);
        assert_eq!(up[0].samples[0].value, 1.0);
        assert_eq!(up[0].labels.get("campus"), Some("main"));
        assert_eq!(inv.liveness_series(13_001)[0].samples[0].value, 0.0);
        let reloaded = Inventory::load(db, InventoryConfig::default()).unwrap();
        let hosts = reloaded.hosts(13_001);
        assert_eq!(hosts.len(), 1);
        assert!(!hosts[0].up);
        assert_eq!(hosts[0].last_seen_ms, 10_000);
    }

    #[test]
    fn search_finds_hosts_and_targets_by_any_field() {
        let db = Arc::new(tingzhen_core::db::testing::fresh_db());
        let inv = Inventory::load(db, InventoryConfig::default()).unwrap();
        let mut a = hb("his-db-01");
        a.campus = "east".into();
        a.system = "HIS".into();
        a.targets.push(WatchedTarget {
            name: "his-pg".into(),
            kind: "postgres".into(),
            address: "10.0.0.5:5432".into(),
            campus: "east".into(),
            system: "HIS".into(),
            status: "up".into(),
            last_error: String::new(),
            last_collect_ms: 1,
        });
        a.targets.push(WatchedTarget {
            name: "his-redis".into(),
            kind: "redis".into(),
            address: "10.0.0.5:6379".into(),
            campus: "east".into(),
            system: "HIS".into(),
            status: "down".into(),
            last_error: "connection refused".into(),
            last_collect_ms: 1,
        });
        let mut b = hb("lis-app-01");
        b.ips = vec!["10.0.9.9".into()];
        b.campus = "west".into();
        b.system = "LIS".into();
        inv.heartbeat(a, "10.0.0.5".into(), 1_000).unwrap();
        inv.heartbeat(b, "10.0.9.9".into(), 1_000).unwrap();

        let names = |r: &SearchResult| r.targets.iter().map(|t| t.target.name.clone()).collect::<Vec<_>>();
        let all = inv.search("", 1_500);
        assert_eq!((all.hosts.len(), all.targets.len()), (2, 2));
        let r = inv.search("POSTGRES", 1_500);
        assert_eq!(names(&r), vec!["his-pg"]);
        assert!(r.hosts.is_empty());
        let r = inv.search("10.0.0.5", 1_500);
        assert_eq!(r.hosts.len(), 1);
        assert_eq!(names(&r), vec!["his-pg", "his-redis"]);
        assert_eq!(names(&inv.search("east redis", 1_500)), vec!["his-redis"]);
        let r = inv.search("lis", 1_500);
        assert_eq!(r.hosts[0].heartbeat.host, "lis-app-01");
        assert!(r.targets.is_empty());
        assert!(inv.search("west postgres", 1_500).targets.is_empty());
        assert!(inv.search("his-pg", 1_500).targets[0].agent_up);
    }
}
