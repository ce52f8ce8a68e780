//! The agent inventory: each host's latest heartbeat, so the host list and liveness survive a
//! collector restart.

use super::{Db, DbError};
use crate::inventory::Heartbeat;
use crate::params;

#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    pub heartbeat: Heartbeat,
    pub remote_addr: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

impl Db {
    pub fn upsert_agent(&self, rec: &AgentRecord) -> Result<(), DbError> {
        let json = serde_json::to_string(&rec.heartbeat).map_err(|e| DbError::Invalid(e.to_string()))?;
        self.with_conn(|c| {
            c.execute(
            "INSERT INTO agents (host, heartbeat_json, remote_addr, first_seen_ms, last_seen_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(host) DO UPDATE SET heartbeat_json = ?2, remote_addr = ?3, last_seen_ms = ?5",
            &params![rec.heartbeat.host, json, rec.remote_addr, rec.first_seen_ms, rec.last_seen_ms],
        )
        })?;
        Ok(())
    }

    pub fn list_agents(&self) -> Result<Vec<AgentRecord>, DbError> {
        let rows = self.with_conn(|c| {
            c.query_map(
                "SELECT heartbeat_json, remote_addr, first_seen_ms, last_seen_ms FROM agents ORDER BY host",
                &(),
                |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?, r.get::<i64>(2)?, r.get::<i64>(3)?)),
            )
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (json, remote_addr, first_seen_ms, last_seen_ms) = row;
            // A row we cannot read back is skipped, not fatal: the next heartbeat rewrites it.
            if let Ok(heartbeat) = serde_json::from_str(&json) {
                out.push(AgentRecord { heartbeat, remote_addr, first_seen_ms, last_seen_ms });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_keeps_first_seen() {
        let db = crate::db::testing::fresh_db();
        let hb = Heartbeat {
            host: "his-db-01".into(),
            hostname: "his-db-01".into(),
            ips: vec!["10.1.2.3".into()],
            os: "Debian 12".into(),
            kernel: "6.1".into(),
            cpus: 8,
            memory_bytes: 1 << 34,
            agent_version: "0.1.0".into(),
            campus: "huangpu".into(),
            role: "db".into(),
            system: "HIS".into(),
            interval_ms: 10_000,
            boot_time: 1,
            targets: Vec::new(),
        };
        let mut rec = AgentRecord { heartbeat: hb, remote_addr: "10.1.2.3".into(), first_seen_ms: 1, last_seen_ms: 1 };
        db.upsert_agent(&rec).unwrap();
        rec.first_seen_ms = 5;
        rec.last_seen_ms = 9;
        db.upsert_agent(&rec).unwrap();
        let all = db.list_agents().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].first_seen_ms, all[0].last_seen_ms), (1, 9));
    }
}
