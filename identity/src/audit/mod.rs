//! The tamper-evident audit log. Records are append-only: each carries the SHA-256 (or, with
//! `audit_key`, HMAC-SHA256) of its fields and of the previous record's hash, so `verify`
//! finds an edited, deleted or inserted record and names it. Triggers refuse UPDATE and DELETE
//! on the table (SQLite's in the original migration, PostgreSQL's in [`migration`]), the crate
//! has no code path that modifies it, and a head row (last seq and hash, written in the same
//! transaction) exposes truncation of the tail. Appends are serialized on both engines (see
//! [`AuditLog::append`]), so concurrent writers still build one unbroken chain. Records are
//! also forwarded to syslog when configured, which keeps a copy outside the appliance's disk.

pub mod syslog;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tingzhen_core::db::{Db, DbError, Dialect, Row, Value};
use tingzhen_core::params;

/// The previous hash of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Event names (stable; auditors filter on them).
pub mod events {
    pub const LOGIN: &str = "login";
    pub const LOGOUT: &str = "logout";
    pub const SESSION_EXPIRED: &str = "session_expired";
    pub const LOCKOUT: &str = "lockout";
    pub const UNLOCK: &str = "unlock";
    pub const ACCESS_REFUSED: &str = "access_refused";
    pub const PASSWORD_CHANGE: &str = "password_change";
    /// Self-service reset by SMS code: the code asked for (or refused), and the reset itself.
    pub const PASSWORD_RESET: &str = "password_reset";
    pub const USER_CREATE: &str = "user_create";
    pub const USER_UPDATE: &str = "user_update";
    pub const USER_STATUS: &str = "user_status";
    pub const PERMISSION_CHANGE: &str = "permission_change";
    pub const TOTP_ENROL: &str = "totp_enrol";
    pub const AUDIT_VIEW: &str = "audit_view";
    pub const REPORT_VIEW: &str = "report_view";
    pub const CONFIG_CHANGE: &str = "config_change";
    pub const START: &str = "start";
    pub const STOP: &str = "stop";
    pub const SENSITIVE_VIEW: &str = "sensitive_view";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    Refused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Refused => "refused",
        }
    }
}

/// What a caller records; the log adds sequence, time and hashes.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub actor: String,
    pub source_ip: String,
    pub event: String,
    pub outcome: Outcome,
    pub detail: String,
}

impl AuditEvent {
    pub fn new(actor: &str, source_ip: &str, event: &str, outcome: Outcome, detail: impl Into<String>) -> Self {
        Self {
            actor: actor.to_string(),
            source_ip: source_ip.to_string(),
            event: event.to_string(),
            outcome,
            detail: detail.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub ts_ms: i64,
    pub actor: String,
    pub source_ip: String,
    pub event: String,
    pub outcome: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TamperKind {
    /// The record's own hash does not match its fields: it was edited.
    Modified,
    /// The record does not chain to the one before it: a record was inserted or deleted
    /// before it, or the previous record was replaced.
    ChainBroken,
    /// Sequence numbers jump: records were deleted.
    Missing,
    /// The last records are gone (the head row names a later record).
    Truncated,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub records: i64,
    pub ok: bool,
    pub problem: Option<Tamper>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tamper {
    pub seq: i64,
    pub kind: TamperKind,
    pub message: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub actor: Option<String>,
    pub event: Option<String>,
    pub outcome: Option<String>,
    /// Exact source address (as recorded, e.g. `10.1.2.3`).
    pub source_ip: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

pub(crate) const MIGRATION: &str = "
CREATE TABLE identity_audit (
    seq INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    source_ip TEXT NOT NULL,
    event TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX identity_audit_ts ON identity_audit(ts_ms);
CREATE TRIGGER identity_audit_no_update BEFORE UPDATE ON identity_audit
    BEGIN SELECT RAISE(ABORT, 'identity_audit is append-only'); END;
CREATE TRIGGER identity_audit_no_delete BEFORE DELETE ON identity_audit
    BEGIN SELECT RAISE(ABORT, 'identity_audit is append-only'); END;
CREATE TABLE identity_audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL);
";

/// The SQLite triggers of [`MIGRATION`], exactly as written there.
const SQLITE_TRIGGERS: &str = "CREATE TRIGGER identity_audit_no_update BEFORE UPDATE ON identity_audit
    BEGIN SELECT RAISE(ABORT, 'identity_audit is append-only'); END;
CREATE TRIGGER identity_audit_no_delete BEFORE DELETE ON identity_audit
    BEGIN SELECT RAISE(ABORT, 'identity_audit is append-only'); END;
";

/// The same refusal in PostgreSQL's terms: a trigger function, the two row triggers under the
/// same names, and one for TRUNCATE, which PostgreSQL runs without row triggers.
const POSTGRES_TRIGGERS: &str = "CREATE FUNCTION identity_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'identity_audit is append-only'; END $$;
CREATE TRIGGER identity_audit_no_update BEFORE UPDATE ON identity_audit
    FOR EACH ROW EXECUTE FUNCTION identity_audit_append_only();
CREATE TRIGGER identity_audit_no_delete BEFORE DELETE ON identity_audit
    FOR EACH ROW EXECUTE FUNCTION identity_audit_append_only();
CREATE TRIGGER identity_audit_no_truncate BEFORE TRUNCATE ON identity_audit
    FOR EACH STATEMENT EXECUTE FUNCTION identity_audit_append_only();
";

/// The audit migration for `dialect`. SQLite gets [`MIGRATION`] unchanged (released databases
/// applied exactly that text); PostgreSQL has no `RAISE(ABORT, …)` triggers, so it gets the
/// same tables with [`POSTGRES_TRIGGERS`] instead.
pub(crate) fn migration(dialect: Dialect) -> String {
    match dialect {
        Dialect::Sqlite => MIGRATION.to_owned(),
        Dialect::Postgres => MIGRATION.replacen(SQLITE_TRIGGERS, POSTGRES_TRIGGERS, 1),
    }
}

pub struct AuditLog {
    db: Arc<Db>,
    key: Option<Vec<u8>>,
    forwarder: Option<syslog::Forwarder>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("keyed", &self.key.is_some()).finish()
    }
}

impl AuditLog {
    pub(crate) fn new(db: Arc<Db>, key: Option<Vec<u8>>, forwarder: Option<syslog::Forwarder>) -> Self {
        Self { db, key, forwarder }
    }

    /// Appends one record at `ts_ms` and returns it (hash included).
    ///
    /// Reading the last record and writing the next one is one transaction. SQLite has one
    /// connection, so that alone serializes appends; PostgreSQL's pooled connections run at
    /// READ COMMITTED, where two appends would read the same predecessor, so the table is
    /// locked against other writers first (readers are not blocked).
    pub fn append(&self, ts_ms: i64, e: &AuditEvent) -> Result<AuditRecord, DbError> {
        let rec = self.db.with_conn(|c| {
            c.transaction(|tx| -> Result<AuditRecord, DbError> {
                if tx.dialect() == Dialect::Postgres {
                    tx.execute_batch("LOCK TABLE identity_audit IN EXCLUSIVE MODE")?;
                }
                let last =
                    tx.query_opt("SELECT seq, hash FROM identity_audit ORDER BY seq DESC LIMIT 1", &(), |r| {
                        Ok((r.get::<i64>(0)?, r.get::<String>(1)?))
                    })?;
                let (seq, prev_hash) = last.map(|(s, h)| (s + 1, h)).unwrap_or((1, GENESIS.to_string()));
                let mut rec = AuditRecord {
                    seq,
                    ts_ms,
                    actor: e.actor.clone(),
                    source_ip: e.source_ip.clone(),
                    event: e.event.clone(),
                    outcome: e.outcome.as_str().to_string(),
                    detail: e.detail.clone(),
                    prev_hash,
                    hash: String::new(),
                };
                rec.hash = self.hash_of(&rec);
                tx.execute(
                    "INSERT INTO identity_audit (seq, ts_ms, actor, source_ip, event, outcome, detail, prev_hash, hash)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    &params![
                        rec.seq,
                        rec.ts_ms,
                        rec.actor,
                        rec.source_ip,
                        rec.event,
                        rec.outcome,
                        rec.detail,
                        rec.prev_hash,
                        rec.hash
                    ],
                )?;
                tx.execute(
                    "INSERT INTO identity_audit_head (id, seq, hash) VALUES (1, ?1, ?2)
                     ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                    &params![rec.seq, rec.hash],
                )?;
                Ok(rec)
            })
        })?;
        if let Some(f) = &self.forwarder {
            f.send(&rec);
        }
        Ok(rec)
    }

    /// Hash of a record's fields and its predecessor's hash. Each field is length-prefixed so
    /// moving bytes between fields changes the hash.
    pub fn hash_of(&self, r: &AuditRecord) -> String {
        let mut input = Vec::new();
        let ts = r.ts_ms.to_string();
        let seq = r.seq.to_string();
        for f in [&seq, &ts, &r.actor, &r.source_ip, &r.event, &r.outcome, &r.detail, &r.prev_hash] {
            input.extend_from_slice(f.len().to_string().as_bytes());
            input.push(b':');
            input.extend_from_slice(f.as_bytes());
            input.push(b'\n');
        }
        match &self.key {
            Some(k) => {
                let mut m = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(k).expect("HMAC takes any key");
                m.update(&input);
                hex::encode(m.finalize().into_bytes())
            }
            None => hex::encode(Sha256::digest(&input)),
        }
    }

    /// Walks the whole chain and reports the first problem, naming the record.
    pub fn verify(&self) -> Result<VerifyReport, DbError> {
        // Records and head are read in one snapshot: an append between the two reads would
        // otherwise look like a truncated (or overlong) log. SQLite's single connection gives
        // that within a transaction; PostgreSQL needs REPEATABLE READ (READ COMMITTED takes a
        // new snapshot per statement). Appends are not blocked meanwhile.
        let (rows, head) = self.db.with_conn(|c| {
            c.transaction(|tx| -> Result<_, DbError> {
                if tx.dialect() == Dialect::Postgres {
                    tx.execute_batch("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")?;
                }
                let rows = tx.query_map(
                    "SELECT seq, ts_ms, actor, source_ip, event, outcome, detail, prev_hash, hash FROM identity_audit ORDER BY seq",
                    &(),
                    row_to_record,
                )?;
                let head = tx.query_opt("SELECT seq, hash FROM identity_audit_head WHERE id = 1", &(), |r| {
                    Ok((r.get::<i64>(0)?, r.get::<String>(1)?))
                })?;
                Ok((rows, head))
            })
        })?;
        let n = rows.len() as i64;
        let fail = |seq, kind, message: String| {
            Ok(VerifyReport { records: n, ok: false, problem: Some(Tamper { seq, kind, message }) })
        };
        let mut prev = GENESIS.to_string();
        for (expected, r) in (1i64..).zip(rows.iter()) {
            if r.seq != expected {
                return fail(
                    expected,
                    TamperKind::Missing,
                    format!("records {expected}..{} are missing (deleted)", r.seq - 1),
                );
            }
            if r.prev_hash != prev {
                return fail(
                    r.seq,
                    TamperKind::ChainBroken,
                    format!(
                        "record {} does not chain to record {}: record {} was inserted or replaced, or record {} was altered",
                        r.seq,
                        r.seq - 1,
                        r.seq - 1,
                        r.seq
                    ),
                );
            }
            if self.hash_of(r) != r.hash {
                return fail(r.seq, TamperKind::Modified, format!("record {} was modified (hash mismatch)", r.seq));
            }
            prev = r.hash.clone();
        }
        if let Some((hseq, hhash)) = head {
            if hseq != n || (n > 0 && hhash != prev) {
                return fail(
                    n + 1,
                    TamperKind::Truncated,
                    format!(
                        "the log ends at record {n} but its head names record {hseq}: trailing records were deleted"
                    ),
                );
            }
        } else if n > 0 {
            return fail(n, TamperKind::Truncated, "the head row is missing".into());
        }
        Ok(VerifyReport { records: n, ok: true, problem: None })
    }

    pub fn query(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, DbError> {
        let mut sql = String::from(
            "SELECT seq, ts_ms, actor, source_ip, event, outcome, detail, prev_hash, hash FROM identity_audit WHERE 1=1",
        );
        let mut args: Vec<Value<'_>> = Vec::new();
        let mut add = |cond: &str, v| {
            args.push(v);
            sql.push_str(&format!(" AND {cond} ?{}", args.len()));
        };
        if let Some(v) = q.from_ms {
            add("ts_ms >=", Value::Int(v));
        }
        if let Some(v) = q.to_ms {
            add("ts_ms <", Value::Int(v));
        }
        if let Some(v) = &q.actor {
            add("actor =", Value::Text(v));
        }
        if let Some(v) = &q.event {
            add("event =", Value::Text(v));
        }
        if let Some(v) = &q.outcome {
            add("outcome =", Value::Text(v));
        }
        if let Some(v) = &q.source_ip {
            add("source_ip =", Value::Text(v));
        }
        let limit = q.limit.unwrap_or(200).clamp(1, 10_000);
        let offset = q.offset.unwrap_or(0).max(0);
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT {limit} OFFSET {offset}"));
        self.db.with_conn(|c| c.query_map(&sql, &args, row_to_record))
    }
}

fn row_to_record(r: &Row<'_>) -> Result<AuditRecord, DbError> {
    Ok(AuditRecord {
        seq: r.get(0)?,
        ts_ms: r.get(1)?,
        actor: r.get(2)?,
        source_ip: r.get(3)?,
        event: r.get(4)?,
        outcome: r.get(5)?,
        detail: r.get(6)?,
        prev_hash: r.get(7)?,
        hash: r.get(8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_migration_swaps_only_the_triggers() {
        assert_eq!(migration(Dialect::Sqlite), MIGRATION);
        let pg = migration(Dialect::Postgres);
        assert!(!pg.contains("RAISE(ABORT"), "{pg}");
        assert!(pg.contains("identity_audit_no_update") && pg.contains("identity_audit_no_delete"));
        assert_eq!(pg.replacen(POSTGRES_TRIGGERS, SQLITE_TRIGGERS, 1), MIGRATION);
    }
}
