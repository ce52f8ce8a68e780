//! What the flows answer: one key's timeline by its order number, the funnel of a flow, the
//! overdue keys, the data-flow map (systems and message volumes between them), the interface
//! list with counts, and the gauges written at each tick.

use super::engine::NOT_REACHED;
use super::interfaces::Registry;
use super::metrics::GaugeCounts;
use super::model::Compiled;
use super::{FlowError, Flows, State, store};
use chrono::{FixedOffset, TimeZone};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tingzhen_core::{Labels, TimeSeries};

/// A closed time range in Unix milliseconds, optionally narrowed to a campus.
#[derive(Debug, Clone)]
pub struct TimeRange {
    pub from_ms: i64,
    pub to_ms: i64,
    pub campus: Option<String>,
    pub flow: Option<String>,
}

/// RFC 3339 in Asia/Shanghai, the hospitals' wall clock.
pub fn shanghai(ms: i64) -> String {
    let tz = FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset");
    tz.timestamp_millis_opt(ms).single().map(|t| t.to_rfc3339()).unwrap_or_default()
}

fn opt_time(ms: i64) -> Value {
    if ms == 0 || ms == NOT_REACHED { Value::Null } else { Value::String(shanghai(ms)) }
}

pub(super) fn tick_series(
    st: &mut State,
    models: &HashMap<String, Arc<Compiled>>,
    now_ms: i64,
    silence_ms: i64,
    probes: &super::interfaces::Probes,
) -> Vec<TimeSeries> {
    let mut open = GaugeCounts::new();
    let mut overdue = GaugeCounts::new();
    let mut failed = GaugeCounts::new();
    // Counted by ids first (no string or refcount work per key), named once per label set.
    let mut by_id: [HashMap<(u8, u32, u32), u64>; 3] = Default::default();
    for (flow, keys) in &st.keys {
        let Some(model) = models.get(flow).filter(|_| !keys.is_empty()) else { continue };
        for c in &mut by_id {
            c.clear();
        }
        for k in keys.values() {
            let last = k.furthest().unwrap_or(0);
            *by_id[0].entry((last, k.campus, k.system)).or_default() += 1;
            if k.is_overdue(now_ms)
                && let Some(a) = k.awaiting()
            {
                *by_id[1].entry((a, k.campus, k.system)).or_default() += 1;
            }
            if k.errors != 0 {
                let e = (31 - k.errors.leading_zeros()) as u8;
                let step = if (e as usize) < model.steps().len() { e } else { last };
                *by_id[2].entry((step, k.campus, k.system)).or_default() += 1;
            }
        }
        let f: Arc<str> = st.names.arc(flow);
        for (counts, out) in by_id.iter().zip([&mut open, &mut overdue, &mut failed]) {
            for ((step, campus, system), n) in counts {
                let step_name = model.steps().get(*step as usize).map(|s| s.name.as_str()).unwrap_or("");
                let label =
                    (f.clone(), st.names.arc(step_name), st.names.get(*campus).clone(), st.names.get(*system).clone());
                *out.entry(label).or_default() += n;
            }
        }
    }
    let mut zero = Vec::new();
    let mut last_seen = Vec::new();
    let mut up = Vec::new();
    for def in st.registry.defs.values() {
        let l = Labels::from_pairs([
            ("interface", def.name.as_str()),
            ("system", def.system.as_str()),
            ("campus", def.campus.as_str()),
        ]);
        let z = st.registry.zero_volume(def, now_ms, silence_ms);
        zero.push((l.clone(), if z { 1.0 } else { 0.0 }));
        if let Some((alive, _)) = Registry::alive(def, probes) {
            up.push((l.clone(), if alive { 1.0 } else { 0.0 }));
        }
        if let Some(t) = st.registry.last_ms.get(&def.name) {
            last_seen.push((l, *t as f64 / 1000.0));
        }
    }
    st.metrics.series(
        now_ms,
        &[("tingzhen_flow_open", &open), ("tingzhen_flow_overdue", &overdue), ("tingzhen_flow_failed", &failed)],
        &[
            ("tingzhen_interface_zero_volume", zero),
            ("tingzhen_interface_last_message_timestamp_seconds", last_seen),
            ("tingzhen_interface_up", up),
        ],
    )
}

impl Flows {
    /// Every flow's record of one key (an order number may appear in several flows).
    pub fn timeline(&self, key: &str) -> Result<Value, FlowError> {
        let now = (self.clock)();
        let (rows, events) =
            self.db.with_conn(|c| Ok::<_, FlowError>((store::keys_named(c, key)?, store::events_of(c, key)?)))?;
        if rows.is_empty() {
            return Err(FlowError::NotFound { what: "flow key", name: key.into() });
        }
        let live: HashMap<String, _> = {
            let st = self.state.lock();
            rows.iter()
                .filter_map(|r| {
                    st.keys.get(&r.flow).and_then(|m| m.get(key)).map(|k| (r.flow.clone(), k.unpack(&st.names)))
                })
                .collect()
        };
        let mut out = Vec::new();
        for row in rows {
            let Some(model) = self.model(&row.flow) else { continue };
            let k = live.get(&row.flow).cloned().unwrap_or_else(|| {
                let mut k = row.key_state.clone();
                k.recompute_due(&model);
                k
            });
            let furthest = k.furthest().map(usize::from);
            let mut steps = Vec::new();
            let mut prev: Option<i64> = None;
            let mut out_of_order = Vec::new();
            let mut skipped = Vec::new();
            for (i, s) in model.steps().iter().enumerate() {
                let t = k.times.get(i).copied().unwrap_or(NOT_REACHED);
                let reached = t != NOT_REACHED;
                let mut state = if reached { "reached" } else { "pending" };
                if reached && prev.is_some_and(|p| t < p) {
                    out_of_order.push(s.name.clone());
                }
                if !reached && !s.optional && furthest.is_some_and(|f| i < f) {
                    state = "skipped";
                    skipped.push(s.name.clone());
                }
                if k.errors & (1 << i) != 0 {
                    state = "error";
                }
                let awaited = row.state == "open" && k.awaiting == Some(i as u8);
                if awaited && k.is_overdue(now) {
                    state = "overdue";
                } else if awaited && state == "pending" {
                    state = "awaited";
                }
                steps.push(json!({
                    "step": s.name,
                    "state": state,
                    "time": opt_time(t),
                    "duration_seconds": if reached { prev.map(|p| (t - p) as f64 / 1000.0) } else { None },
                    "due": if awaited { opt_time(k.due_ms) } else { Value::Null },
                }));
                if reached {
                    prev = Some(prev.map_or(t, |p| p.max(t)));
                }
            }
            let flow_events: Vec<&store::EventRow> = events.iter().filter(|e| e.flow == row.flow).collect();
            out.push(json!({
                "flow": row.flow,
                "key": row.key,
                "model_version": k.version,
                "state": row.state,
                "closed_step": row.closed_step,
                "campus": &*k.campus,
                "system": &*k.system,
                "first": opt_time(k.first_ms),
                "last": opt_time(k.last_ms),
                "overdue": row.state == "open" && k.is_overdue(now),
                "steps": steps,
                "anomalies": { "out_of_order": out_of_order, "skipped": skipped },
                "events": flow_events.iter().map(|e| json!({
                    "step": e.step, "time": shanghai(e.time_ms), "status": if e.ok { "ok" } else { "error" },
                    "campus": e.campus, "system": e.system, "attributes": e.attributes,
                })).collect::<Vec<_>>(),
            }));
        }
        Ok(Value::Array(out))
    }

    /// Keys of `flow` opened in the range: how many reached each step, failed at it, and how
    /// many are open, completed or expired.
    pub fn funnel(&self, flow: &str, range: &TimeRange) -> Result<Value, FlowError> {
        let model = self.model(flow).ok_or_else(|| FlowError::NotFound { what: "flow model", name: flow.into() })?;
        let rows =
            self.db.with_conn(|c| store::funnel_rows(c, flow, range.from_ms, range.to_ms, range.campus.as_deref()))?;
        let n = model.steps().len();
        let (mut reached, mut errors) = (vec![0u64; n], vec![0u64; n]);
        let mut states: BTreeMap<String, u64> = BTreeMap::new();
        for (r, e, s) in &rows {
            for i in 0..n {
                reached[i] += u64::from(r & (1 << i) != 0);
                errors[i] += u64::from(e & (1 << i) != 0);
            }
            *states.entry(s.clone()).or_default() += 1;
        }
        let total = rows.len() as u64;
        let steps: Vec<Value> = model
            .steps()
            .iter()
            .enumerate()
            .map(|(i, s)| {
                json!({
                    "step": s.name,
                    "optional": s.optional,
                    "reached": reached[i],
                    "errors": errors[i],
                    "ratio": if total == 0 { 0.0 } else { reached[i] as f64 / total as f64 },
                })
            })
            .collect();
        Ok(json!({
            "flow": flow, "version": model.version, "from": shanghai(range.from_ms), "to": shanghai(range.to_ms),
            "campus": range.campus, "keys": total, "states": states, "steps": steps,
        }))
    }

    /// Open keys past their awaited step's deadline, most overdue first.
    pub fn overdue(&self, flow: Option<&str>, campus: Option<&str>, limit: usize) -> Value {
        let now = (self.clock)();
        let models = self.models.read().clone();
        let st = self.state.lock();
        let mut found = Vec::new();
        for (f, keys) in &st.keys {
            if flow.is_some_and(|x| x != f) {
                continue;
            }
            let Some(model) = models.get(f) else { continue };
            for (key, k) in keys.iter() {
                if k.is_overdue(now) && campus.is_none_or(|c| c == &**st.names.get(k.campus)) {
                    found.push((k.due_ms, f, key, k, model));
                }
            }
        }
        found.sort_by_key(|x| x.0);
        let total = found.len();
        let items: Vec<Value> = found
            .into_iter()
            .take(limit)
            .map(|(due, f, key, k, model)| {
                let awaited = k.awaiting().and_then(|a| model.steps().get(a as usize)).map(|s| s.name.as_str());
                let last_step = model.steps().get(k.furthest().unwrap_or(0) as usize).map(|s| s.name.as_str());
                json!({
                    "flow": f, "key": key, "campus": &**st.names.get(k.campus), "system": &**st.names.get(k.system),
                    "last_step": last_step.unwrap_or(""), "awaited_step": awaited,
                    "due": shanghai(due), "overdue_seconds": (now - due) as f64 / 1000.0,
                    "last_event": shanghai(k.last_ms),
                })
            })
            .collect();
        json!({ "total": total, "keys": items })
    }

    /// Systems and the message volumes between them, from observed events.
    pub fn map(&self, range: &TimeRange) -> Result<Value, FlowError> {
        let rows = self.db.with_conn(|c| {
            store::traffic(c, range.from_ms, range.to_ms, range.flow.as_deref(), range.campus.as_deref())
        })?;
        let mut nodes: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        let mut edges: BTreeMap<(String, String), (i64, i64, Vec<String>)> = BTreeMap::new();
        for (src, dst, flow, events, errors) in rows {
            let n = nodes.entry(dst.clone()).or_default();
            n.0 += events;
            n.1 += errors;
            if src.is_empty() || src == dst {
                continue;
            }
            nodes.entry(src.clone()).or_default();
            let e = edges.entry((src, dst)).or_default();
            e.0 += events;
            e.1 += errors;
            if !e.2.contains(&flow) {
                e.2.push(flow);
            }
        }
        Ok(json!({
            "from": shanghai(range.from_ms), "to": shanghai(range.to_ms),
            "nodes": nodes.iter().map(|(s, (ev, er))| json!({"system": s, "events": ev, "errors": er})).collect::<Vec<_>>(),
            "edges": edges.iter().map(|((s, d), (ev, er, fl))| json!({"from": s, "to": d, "messages": ev, "errors": er, "flows": fl})).collect::<Vec<_>>(),
        }))
    }

    /// Registered interfaces with their message counts over the range, zero-volume state, and
    /// totals per campus and per system.
    pub fn interfaces(&self, range: &TimeRange) -> Result<Value, FlowError> {
        let now = (self.clock)();
        let silence = self.config.read().interface_silence.0.as_millis() as i64;
        let volumes = self.db.with_conn(|c| store::volumes(c, range.from_ms, range.to_ms))?;
        let counts: HashMap<String, i64> = volumes.into_iter().map(|(n, c, _)| (n, c)).collect();
        let probes = self.probes(now);
        let st = self.state.lock();
        let mut by_campus: BTreeMap<&str, i64> = BTreeMap::new();
        let mut by_system: BTreeMap<&str, i64> = BTreeMap::new();
        let mut items = Vec::new();
        for def in st.registry.defs.values() {
            let n = counts.get(&def.name).copied().unwrap_or(0);
            let alive = Registry::alive(def, &probes);
            *by_campus.entry(&def.campus).or_default() += n;
            *by_system.entry(&def.system).or_default() += n;
            items.push(json!({
                "name": def.name, "system": def.system, "campus": def.campus, "endpoint": def.endpoint,
                "type": def.kind, "vendor": def.vendor, "messages": n,
                "last_message": st.registry.last_ms.get(&def.name).map(|t| shanghai(*t)),
                "zero_volume": st.registry.zero_volume(def, now, silence),
                "alive": alive.map(|a| a.0),
                "probed_at": alive.map(|a| shanghai(a.1)),
                "clinic_hours_now": super::hours::is_business_time(now),
            }));
        }
        Ok(json!({
            "from": shanghai(range.from_ms), "to": shanghai(range.to_ms),
            "interfaces": items, "by_campus": by_campus, "by_system": by_system,
        }))
    }

    pub fn interface_defs(&self) -> Vec<super::InterfaceDef> {
        self.state.lock().registry.defs.values().cloned().collect()
    }
}
