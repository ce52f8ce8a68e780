//! Top SQL snapshots (MON-4 "expensive SQL"): what an agent sends the collector after each
//! collection of a database target — the statements that cost the most during the interval,
//! as deltas of the database's cumulative statistics. Query text is unbounded, so this is
//! never a metric; the collector keeps snapshots in its relational store for screens.

use serde::{Deserialize, Serialize};

/// Longest query text kept; longer text is cut at a character boundary and marked with `…`.
pub const MAX_QUERY_CHARS: usize = 2000;
/// Most statements in one snapshot.
pub const MAX_STATEMENTS: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopSqlReport {
    /// The agent's `host` label.
    pub host: String,
    /// The target's name from the agent config.
    pub target: String,
    /// `postgres`, `mysql` or `oracle`.
    pub kind: String,
    #[serde(default)]
    pub address: String,
    /// End of the interval the deltas cover (ms since the epoch).
    pub ts_ms: i64,
    /// Length of that interval in milliseconds.
    pub interval_ms: u64,
    /// Most expensive first (by total time spent during the interval).
    pub statements: Vec<TopSqlEntry>,
}

/// One statement's cost during the interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopSqlEntry {
    /// The database's own id of the normalised statement (queryid, digest, sql_id).
    pub query_id: String,
    /// Normalised text (literals replaced by the database), whitespace collapsed, truncated.
    pub query: String,
    #[serde(default)]
    pub database: String,
    #[serde(default)]
    pub user: String,
    /// Executions during the interval.
    pub calls: u64,
    /// Time spent during the interval, milliseconds.
    pub total_time_ms: f64,
    /// `total_time_ms / calls` (0 without calls).
    pub mean_time_ms: f64,
    /// Rows returned or affected during the interval.
    pub rows: u64,
}

/// Collapses runs of whitespace and truncates to [`MAX_QUERY_CHARS`] characters.
pub fn normalise_query(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_QUERY_CHARS + 4));
    let mut chars = 0usize;
    for word in text.split_whitespace() {
        if chars > 0 {
            out.push(' ');
            chars += 1;
        }
        for c in word.chars() {
            if chars >= MAX_QUERY_CHARS {
                out.push('…');
                return out;
            }
            out.push(c);
            chars += 1;
        }
    }
    out
}

impl TopSqlReport {
    /// Checks bounds; names the first bad field.
    pub fn validate(&self) -> Result<(), String> {
        if self.host.is_empty() || self.host.len() > 253 {
            return Err("host: must be 1..=253 characters".into());
        }
        if self.target.is_empty() || self.target.len() > 128 {
            return Err("target: must be 1..=128 characters".into());
        }
        if self.kind.is_empty() || self.kind.len() > 32 {
            return Err("kind: must be 1..=32 characters".into());
        }
        if self.address.len() > 512 {
            return Err("address: longer than 512 characters".into());
        }
        if self.ts_ms <= 0 {
            return Err("ts_ms: must be a positive epoch time in milliseconds".into());
        }
        if self.statements.len() > MAX_STATEMENTS {
            return Err(format!("statements: more than {MAX_STATEMENTS}"));
        }
        for (i, s) in self.statements.iter().enumerate() {
            if s.query.chars().count() > MAX_QUERY_CHARS + 1 {
                return Err(format!("statements[{i}].query: longer than {MAX_QUERY_CHARS} characters"));
            }
            if s.query_id.len() > 128 || s.database.len() > 256 || s.user.len() > 256 {
                return Err(format!("statements[{i}]: query_id, database or user too long"));
            }
            if !(s.total_time_ms.is_finite() && s.total_time_ms >= 0.0 && s.mean_time_ms.is_finite()) {
                return Err(format!("statements[{i}].total_time_ms: must be a finite non-negative number"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_collapsed_and_cut() {
        assert_eq!(normalise_query("SELECT  *\n\tFROM t  WHERE a = $1 "), "SELECT * FROM t WHERE a = $1");
        let long = "x".repeat(MAX_QUERY_CHARS + 50);
        let n = normalise_query(&long);
        assert_eq!(n.chars().count(), MAX_QUERY_CHARS + 1);
        assert!(n.ends_with('…'));
        assert_eq!(normalise_query("选择 一"), "选择 一");
    }

    #[test]
    fn reports_are_checked() {
        let mut r = TopSqlReport {
            host: "db01".into(),
            target: "his-pg".into(),
            kind: "postgres".into(),
            address: "127.0.0.1:5432".into(),
            ts_ms: 1,
            interval_ms: 10_000,
            statements: vec![TopSqlEntry {
                query_id: "1".into(),
                query: "SELECT 1".into(),
                database: "test".into(),
                user: "u".into(),
                calls: 1,
                total_time_ms: 1.0,
                mean_time_ms: 1.0,
                rows: 1,
            }],
        };
        r.validate().unwrap();
        r.statements[0].total_time_ms = f64::NAN;
        assert!(r.validate().unwrap_err().contains("total_time_ms"));
        r.statements[0].total_time_ms = 1.0;
        r.target.clear();
        assert!(r.validate().unwrap_err().starts_with("target"));
    }
}
