//! The flows' tables (component `flows`): model versions, every accepted event (the
//! primary key makes duplicates idempotent), one row per key with its compact state (open keys
//! are reloaded at start, so state survives a restart), hourly traffic between systems for the
//! data-flow map, and the interface registry with 5-minute message volumes.

use super::engine::{KeyState, NOT_REACHED};
use super::event::Event;
use super::model::FlowModel;
use std::sync::Arc;
use tingzhen_core::db::{Conn, DbError, Dialect, Row};
use tingzhen_core::params;

pub const COMPONENT: &str = "flows";

pub const MIGRATIONS: &[&str] = &["CREATE TABLE flow_models (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        definition TEXT NOT NULL,
        source TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        deleted_ms INTEGER,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE flow_events (
        flow TEXT NOT NULL,
        key TEXT NOT NULL,
        step TEXT NOT NULL,
        time_ms INTEGER NOT NULL,
        ok INTEGER NOT NULL,
        campus TEXT NOT NULL,
        system TEXT NOT NULL,
        attrs TEXT NOT NULL,
        received_ms INTEGER NOT NULL,
        PRIMARY KEY (flow, key, step, time_ms, ok)
    ) WITHOUT ROWID;
    CREATE INDEX flow_events_key ON flow_events(key);
    CREATE TABLE flow_keys (
        flow TEXT NOT NULL,
        key TEXT NOT NULL,
        state TEXT NOT NULL,
        version INTEGER NOT NULL,
        campus TEXT NOT NULL,
        system TEXT NOT NULL,
        first_ms INTEGER NOT NULL,
        last_ms INTEGER NOT NULL,
        reached INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        times TEXT NOT NULL,
        attrs TEXT NOT NULL,
        closed_step TEXT,
        PRIMARY KEY (flow, key)
    ) WITHOUT ROWID;
    CREATE INDEX flow_keys_open ON flow_keys(flow) WHERE state = 'open';
    CREATE INDEX flow_keys_first ON flow_keys(flow, first_ms);
    CREATE INDEX flow_keys_key ON flow_keys(key);
    CREATE TABLE flow_traffic (
        hour_ms INTEGER NOT NULL,
        flow TEXT NOT NULL,
        campus TEXT NOT NULL,
        src TEXT NOT NULL,
        dst TEXT NOT NULL,
        events INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        PRIMARY KEY (hour_ms, flow, campus, src, dst)
    ) WITHOUT ROWID;
    CREATE TABLE interfaces (
        name TEXT PRIMARY KEY,
        definition TEXT NOT NULL,
        source TEXT NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE TABLE interface_volume (
        interface TEXT NOT NULL,
        bucket_ms INTEGER NOT NULL,
        messages INTEGER NOT NULL,
        PRIMARY KEY (interface, bucket_ms)
    ) WITHOUT ROWID;",
    // Fewer B-trees per event: the order number leads both primary keys, so a timeline lookup
    // by key needs no separate index; open keys are found by one scan at start instead of a
    // partial index every key write had to maintain. One event is now one B-tree insert and one
    // key write two (row + first_ms index), where they were two and four.
    "CREATE TABLE flow_events_new (
        flow TEXT NOT NULL,
        key TEXT NOT NULL,
        step TEXT NOT NULL,
        time_ms INTEGER NOT NULL,
        ok INTEGER NOT NULL,
        campus TEXT NOT NULL,
        system TEXT NOT NULL,
        attrs TEXT NOT NULL,
        received_ms INTEGER NOT NULL,
        PRIMARY KEY (key, flow, step, time_ms, ok)
    ) WITHOUT ROWID;
    INSERT INTO flow_events_new SELECT flow, key, step, time_ms, ok, campus, system, attrs, received_ms FROM flow_events;
    DROP TABLE flow_events;
    ALTER TABLE flow_events_new RENAME TO flow_events;
    CREATE TABLE flow_keys_new (
        flow TEXT NOT NULL,
        key TEXT NOT NULL,
        state TEXT NOT NULL,
        version INTEGER NOT NULL,
        campus TEXT NOT NULL,
        system TEXT NOT NULL,
        first_ms INTEGER NOT NULL,
        last_ms INTEGER NOT NULL,
        reached INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        times TEXT NOT NULL,
        attrs TEXT NOT NULL,
        closed_step TEXT,
        PRIMARY KEY (key, flow)
    ) WITHOUT ROWID;
    INSERT INTO flow_keys_new SELECT flow, key, state, version, campus, system, first_ms, last_ms, reached, errors,
        times, attrs, closed_step FROM flow_keys;
    DROP TABLE flow_keys;
    ALTER TABLE flow_keys_new RENAME TO flow_keys;
    CREATE INDEX flow_keys_first ON flow_keys(flow, first_ms);"];

pub const HOUR_MS: i64 = 3_600_000;
pub const VOLUME_BUCKET_MS: i64 = 300_000;

pub struct StoredModel {
    pub model: FlowModel,
    pub version: u32,
    pub source: String,
    pub created_ms: i64,
}

fn decode_model(definition: &str) -> Result<FlowModel, DbError> {
    serde_json::from_str(definition).map_err(|e| DbError::Invalid(format!("stored flow model: {e}")))
}

fn stored_model(r: &Row<'_>) -> Result<StoredModel, DbError> {
    Ok(StoredModel {
        model: decode_model(&r.get::<String>(0)?)?,
        version: r.get(1)?,
        source: r.get(2)?,
        created_ms: r.get(3)?,
    })
}

/// The current (latest, not deleted) version of every model.
pub fn current_models(c: &Conn<'_>) -> Result<Vec<StoredModel>, DbError> {
    c.query_map(
        "SELECT m.definition, m.version, m.source, m.created_ms FROM flow_models m
         WHERE m.deleted_ms IS NULL AND m.version = (SELECT MAX(version) FROM flow_models WHERE name = m.name)
         ORDER BY m.name",
        &(),
        stored_model,
    )
}

pub fn model_versions(c: &Conn<'_>, name: &str) -> Result<Vec<StoredModel>, DbError> {
    c.query_map(
        "SELECT definition, version, source, created_ms FROM flow_models WHERE name = ?1 ORDER BY version",
        &[name],
        stored_model,
    )
}

/// Stores `model` as the next version of its name (un-deleting it). Returns the version.
pub fn insert_model(c: &Conn<'_>, model: &FlowModel, source: &str, now_ms: i64) -> Result<u32, DbError> {
    if c.dialect() == Dialect::Postgres {
        // Two writers of one model must not both pick the same next version.
        c.execute_batch("LOCK TABLE flow_models IN SHARE ROW EXCLUSIVE MODE")?;
    }
    let next: u32 =
        c.query_row("SELECT COALESCE(MAX(version), 0) + 1 FROM flow_models WHERE name = ?1", &[&model.name], |r| {
            r.get(0)
        })?;
    let json = serde_json::to_string(model).expect("a flow model always serialises");
    c.execute(
        "INSERT INTO flow_models (name, version, definition, source, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        &params![model.name, next, json, source, now_ms],
    )?;
    Ok(next)
}

/// Marks every version of `name` deleted; false when there was no live model.
pub fn delete_model(c: &Conn<'_>, name: &str, now_ms: i64) -> Result<bool, DbError> {
    let n = c.execute(
        "UPDATE flow_models SET deleted_ms = ?2 WHERE name = ?1 AND deleted_ms IS NULL",
        &params![name, now_ms],
    )?;
    Ok(n > 0)
}

/// Records an event; false when the same event (flow, key, step, time, status) is already there.
pub fn insert_event(c: &Conn<'_>, e: &Event, now_ms: i64) -> Result<bool, DbError> {
    let attrs = serde_json::to_string(&e.attrs).expect("string maps always serialise");
    let n = c.execute(
        "INSERT INTO flow_events (flow, key, step, time_ms, ok, campus, system, attrs, received_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING",
        &params![e.flow, e.key, e.step, e.time_ms, e.ok, e.campus, e.system, attrs, now_ms],
    )?;
    Ok(n == 1)
}

fn times_json(t: &[i64]) -> String {
    let v: Vec<Option<i64>> = t.iter().map(|&x| (x != NOT_REACHED).then_some(x)).collect();
    serde_json::to_string(&v).expect("numbers always serialise")
}

fn attrs_json(a: &[(Arc<str>, Arc<str>)]) -> String {
    let m: std::collections::BTreeMap<&str, &str> = a.iter().map(|(k, v)| (&**k, &**v)).collect();
    serde_json::to_string(&m).expect("string maps always serialise")
}

/// One key's stored row.
pub struct KeyRow {
    pub flow: String,
    pub key: String,
    pub state: String,
    pub closed_step: Option<String>,
    pub key_state: KeyState,
}

/// Reads a row of [`KEY_COLUMNS`], in that order.
fn key_row(r: &Row<'_>) -> Result<KeyRow, DbError> {
    let conv = |e: serde_json::Error| DbError::Invalid(format!("stored flow key: {e}"));
    let times: Vec<Option<i64>> = serde_json::from_str(&r.get::<String>(10)?).map_err(conv)?;
    let attrs: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&r.get::<String>(11)?).map_err(conv)?;
    let campus: String = r.get(4)?;
    let system: String = r.get(5)?;
    Ok(KeyRow {
        flow: r.get(0)?,
        key: r.get(1)?,
        state: r.get(2)?,
        closed_step: r.get(12)?,
        key_state: KeyState {
            version: r.get(3)?,
            first_ms: r.get(6)?,
            last_ms: r.get(7)?,
            reached: r.get::<i64>(8)? as u32,
            errors: r.get::<i64>(9)? as u32,
            times: times.into_iter().map(|t| t.unwrap_or(NOT_REACHED)).collect(),
            campus: Arc::from(campus.as_str()),
            system: Arc::from(system.as_str()),
            due_ms: 0,
            awaiting: None,
            attrs: attrs.into_iter().map(|(k, v)| (Arc::from(k.as_str()), Arc::from(v.as_str()))).collect(),
        },
    })
}

const KEY_COLUMNS: &str =
    "flow, key, state, version, campus, system, first_ms, last_ms, reached, errors, times, attrs, closed_step";

pub fn open_keys(c: &Conn<'_>) -> Result<Vec<KeyRow>, DbError> {
    c.query_map(&format!("SELECT {KEY_COLUMNS} FROM flow_keys WHERE state = 'open'"), &(), key_row)
}

pub fn load_key(c: &Conn<'_>, flow: &str, key: &str) -> Result<Option<KeyRow>, DbError> {
    c.query_opt(&format!("SELECT {KEY_COLUMNS} FROM flow_keys WHERE key = ?1 AND flow = ?2"), &[key, flow], key_row)
}

pub fn keys_named(c: &Conn<'_>, key: &str) -> Result<Vec<KeyRow>, DbError> {
    c.query_map(&format!("SELECT {KEY_COLUMNS} FROM flow_keys WHERE key = ?1 ORDER BY flow"), &[key], key_row)
}

pub fn save_key(
    c: &Conn<'_>,
    flow: &str,
    key: &str,
    state: &str,
    closed_step: Option<&str>,
    k: &KeyState,
) -> Result<(), DbError> {
    c.execute(
        "INSERT INTO flow_keys (flow, key, state, version, campus, system, first_ms, last_ms, reached, errors, times, attrs, closed_step)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT(key, flow) DO UPDATE SET state = excluded.state, version = excluded.version,
           campus = excluded.campus, system = excluded.system, first_ms = excluded.first_ms,
           last_ms = excluded.last_ms, reached = excluded.reached, errors = excluded.errors,
           times = excluded.times, attrs = excluded.attrs, closed_step = excluded.closed_step",
        &params![
        flow,
        key,
        state,
        k.version,
        &*k.campus,
        &*k.system,
        k.first_ms,
        k.last_ms,
        i64::from(k.reached),
        i64::from(k.errors),
        times_json(&k.times),
        attrs_json(&k.attrs),
            closed_step
        ],
    )?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub fn add_traffic(
    c: &Conn<'_>,
    hour_ms: i64,
    flow: &str,
    campus: &str,
    src: &str,
    dst: &str,
    events: i64,
    errors: i64,
) -> Result<(), DbError> {
    c.execute(
        "INSERT INTO flow_traffic (hour_ms, flow, campus, src, dst, events, errors) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (hour_ms, flow, campus, src, dst) DO UPDATE
           SET events = flow_traffic.events + excluded.events, errors = flow_traffic.errors + excluded.errors",
        &params![hour_ms, flow, campus, src, dst, events, errors],
    )?;
    Ok(())
}

pub fn add_volume(c: &Conn<'_>, interface: &str, time_ms: i64, messages: u64) -> Result<(), DbError> {
    c.execute(
        "INSERT INTO interface_volume (interface, bucket_ms, messages) VALUES (?1, ?2, ?3)
         ON CONFLICT (interface, bucket_ms) DO UPDATE SET messages = interface_volume.messages + excluded.messages",
        &params![interface, time_ms - time_ms.rem_euclid(VOLUME_BUCKET_MS), messages as i64],
    )?;
    Ok(())
}

/// One event of a key's timeline.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventRow {
    pub flow: String,
    pub step: String,
    pub time_ms: i64,
    pub ok: bool,
    pub campus: String,
    pub system: String,
    pub attributes: serde_json::Value,
}

pub fn events_of(c: &Conn<'_>, key: &str) -> Result<Vec<EventRow>, DbError> {
    c.query_map(
        "SELECT flow, step, time_ms, ok, campus, system, attrs FROM flow_events WHERE key = ?1
         ORDER BY time_ms, step, flow, ok",
        &[key],
        |r| {
            Ok(EventRow {
                flow: r.get(0)?,
                step: r.get(1)?,
                time_ms: r.get(2)?,
                ok: r.get(3)?,
                campus: r.get(4)?,
                system: r.get(5)?,
                attributes: serde_json::from_str(&r.get::<String>(6)?).unwrap_or_default(),
            })
        },
    )
}

/// (reached, errors, state) of keys of `flow` opened in `[from, to]`, optionally one campus.
pub fn funnel_rows(
    c: &Conn<'_>,
    flow: &str,
    from_ms: i64,
    to_ms: i64,
    campus: Option<&str>,
) -> Result<Vec<(u32, u32, String)>, DbError> {
    c.query_map(
        "SELECT reached, errors, state FROM flow_keys
         WHERE flow = ?1 AND first_ms BETWEEN ?2 AND ?3 AND (?4 IS NULL OR campus = ?4)",
        &params![flow, from_ms, to_ms, campus],
        |r| Ok((r.get::<i64>(0)? as u32, r.get::<i64>(1)? as u32, r.get(2)?)),
    )
}

/// (src, dst, flow, events, errors) summed over the hours overlapping `[from, to]`.
pub type TrafficRow = (String, String, String, i64, i64);

pub fn traffic(
    c: &Conn<'_>,
    from_ms: i64,
    to_ms: i64,
    flow: Option<&str>,
    campus: Option<&str>,
) -> Result<Vec<TrafficRow>, DbError> {
    c.query_map(
        "SELECT src, dst, flow, SUM(events), SUM(errors) FROM flow_traffic
         WHERE hour_ms BETWEEN ?1 AND ?2 AND (?3 IS NULL OR flow = ?3) AND (?4 IS NULL OR campus = ?4)
         GROUP BY src, dst, flow ORDER BY src, dst, flow",
        &params![from_ms - from_ms.rem_euclid(HOUR_MS), to_ms, flow, campus],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )
}

/// Messages per interface in `[from, to]`, and each interface's latest bucket with messages.
pub fn volumes(c: &Conn<'_>, from_ms: i64, to_ms: i64) -> Result<Vec<(String, i64, i64)>, DbError> {
    c.query_map(
        "SELECT interface,
                SUM(CASE WHEN bucket_ms BETWEEN ?1 AND ?2 THEN messages ELSE 0 END),
                MAX(bucket_ms)
         FROM interface_volume GROUP BY interface ORDER BY interface",
        &params![from_ms - from_ms.rem_euclid(VOLUME_BUCKET_MS), to_ms],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
}

/// Forgets closed keys (and their events), traffic and volume older than `before_ms`.
pub fn prune(c: &Conn<'_>, before_ms: i64) -> Result<(), DbError> {
    c.execute(
        "DELETE FROM flow_events WHERE (flow, key) IN
           (SELECT flow, key FROM flow_keys WHERE state != 'open' AND last_ms < ?1)",
        &[before_ms],
    )?;
    c.execute("DELETE FROM flow_keys WHERE state != 'open' AND last_ms < ?1", &[before_ms])?;
    c.execute("DELETE FROM interface_volume WHERE bucket_ms < ?1", &[before_ms])?;
    c.execute("DELETE FROM flow_traffic WHERE hour_ms < ?1", &[before_ms])?;
    Ok(())
}

pub fn interfaces(c: &Conn<'_>) -> Result<Vec<(String, String)>, DbError> {
    c.query_map("SELECT definition, source FROM interfaces ORDER BY name", &(), |r| Ok((r.get(0)?, r.get(1)?)))
}

pub fn put_interface(c: &Conn<'_>, name: &str, definition: &str, source: &str, now_ms: i64) -> Result<(), DbError> {
    c.execute(
        "INSERT INTO interfaces (name, definition, source, updated_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(name) DO UPDATE SET definition = excluded.definition, source = excluded.source,
           updated_ms = excluded.updated_ms",
        &params![name, definition, source, now_ms],
    )?;
    Ok(())
}

pub fn delete_interface(c: &Conn<'_>, name: &str) -> Result<bool, DbError> {
    Ok(c.execute("DELETE FROM interfaces WHERE name = ?1", &[name])? > 0)
}
