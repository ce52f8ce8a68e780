//! A batch of events into the flows: each event is checked on its own (a bad one is answered
//! with its index and reason, the good ones are kept), then all new events, the touched keys'
//! states, traffic and interface volume go into SQLite in one transaction; memory and counters
//! change only after it commits, so a failed commit leaves nothing half-applied. Duplicates
//! (same flow, key, step, time and status) are recognised by the events table's primary key.

use super::engine::{Applied, KeyState};
use super::event::Event;
use super::model::Compiled;
use super::table::Packed;
use super::{FlowError, Flows, State, store};
use serde::Serialize;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use tingzhen_core::db::{Conn, DbError};

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Rejected {
    pub index: usize,
    pub error: String,
}

/// The answer to a batch.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct IngestReport {
    /// New events stored.
    pub accepted: usize,
    /// Events already stored before (idempotent repeats).
    pub duplicates: usize,
    pub rejected: Vec<Rejected>,
}

/// (hour, flow, campus, source system, destination system) of the data-flow map.
type TrafficKey = (i64, Arc<str>, Arc<str>, Arc<str>, Arc<str>);

struct Touched {
    state: KeyState,
    status: String,
    closed_step: Option<String>,
}

struct Effect {
    event: Event,
    step: u8,
    applied: Applied,
    campus: Arc<str>,
    closed_now: bool,
}

impl Flows {
    /// Ingests decoded events (or their decoding errors, which become rejections at their
    /// index). Blocking.
    pub fn ingest(&self, batch: Vec<Result<Event, String>>) -> Result<IngestReport, FlowError> {
        let now = (self.clock)();
        let models = self.models.read().clone();
        let mut report = IngestReport::default();
        let mut valid: Vec<(Event, Arc<Compiled>, u8)> = Vec::with_capacity(batch.len());
        for (index, item) in batch.into_iter().enumerate() {
            let checked = item.and_then(|e| {
                e.check_time(now)?;
                let model =
                    models.get(&e.flow).ok_or_else(|| format!("flow: {:?} is not a known flow model", e.flow))?;
                let step = model.step_of(&e.step).ok_or_else(|| {
                    let names: Vec<&str> = model.steps().iter().map(|s| s.name.as_str()).collect();
                    format!("step: {:?} is not a step of flow {:?} (steps: {})", e.step, e.flow, names.join(", "))
                })?;
                Ok((e, model.clone(), step))
            });
            match checked {
                Ok(v) => valid.push(v),
                Err(error) => report.rejected.push(Rejected { index, error }),
            }
        }
        if valid.is_empty() {
            return Ok(report);
        }
        let mut st = self.state.lock();
        let (touched, effects, duplicates) = self.db.with_conn(|c| {
            c.transaction(|tx| {
                // Keyed by the interned flow and the key moved out of its event: no copy per event.
                let mut touched: HashMap<(Arc<str>, String), Touched> = HashMap::new();
                let mut effects = Vec::new();
                let mut duplicates = 0;
                let mut traffic: HashMap<TrafficKey, (i64, i64)> = HashMap::new();
                let mut volume: HashMap<(Arc<str>, i64), u64> = HashMap::new();
                for (mut event, model, step) in valid {
                    if !store::insert_event(tx, &event, now)? {
                        duplicates += 1;
                        continue;
                    }
                    let flow = st.intern(&event.flow);
                    let t = match touched.entry((flow.clone(), std::mem::take(&mut event.key))) {
                        Entry::Occupied(o) => o.into_mut(),
                        Entry::Vacant(v) => {
                            let t = find_key(&mut st, tx, &v.key().0, &v.key().1, &event, &model)?;
                            v.insert(t)
                        }
                    };
                    let system = st.intern(&event.system);
                    let applied = t.state.apply(&model, step, &event, system.clone());
                    let mut closed_now = false;
                    if let Some(c) = applied.closed_by
                        && t.status != "completed"
                    {
                        t.status = "completed".into();
                        t.closed_step = Some(model.steps()[c as usize].name.clone());
                        closed_now = true;
                    } else if t.status == "expired" {
                        // A late event revives an expired key: it is plainly still moving.
                        t.status = "open".into();
                    }
                    let src = match &applied.previous_system {
                        Some(s) => s.clone(),
                        None => st.intern(""),
                    };
                    let hour = event.time_ms - event.time_ms.rem_euclid(store::HOUR_MS);
                    let campus = st.intern(&event.campus);
                    let slot = traffic.entry((hour, flow, campus, src, system)).or_insert((0, 0));
                    slot.0 += 1;
                    slot.1 += i64::from(!event.ok);
                    let iface = st
                        .registry
                        .resolve(event.interface.as_deref(), &event.system, &event.campus)
                        .map(|d| d.name.clone());
                    if let Some(name) = iface {
                        let bucket = event.time_ms - event.time_ms.rem_euclid(store::VOLUME_BUCKET_MS);
                        *volume.entry((st.intern(&name), bucket)).or_default() += 1;
                    }
                    effects.push(Effect { campus: t.state.campus.clone(), event, step, applied, closed_now });
                }
                for ((flow, key), t) in &touched {
                    store::save_key(tx, flow, key, &t.status, t.closed_step.as_deref(), &t.state)?;
                }
                // Summed per batch: one upsert per (hour, flow, campus, edge), not per event.
                for ((hour, flow, campus, src, dst), (events, errors)) in &traffic {
                    store::add_traffic(tx, *hour, flow, campus, src, dst, *events, *errors)?;
                }
                for ((name, bucket), n) in &volume {
                    store::add_volume(tx, name, *bucket, *n)?;
                }
                Ok::<_, DbError>((touched, effects, duplicates))
            })
        })?;
        report.duplicates = duplicates;
        report.accepted = effects.len();
        let State { keys, names, .. } = &mut *st;
        for ((flow, key), t) in touched {
            let keys = keys.entry(flow.to_string()).or_default();
            if t.status == "open" {
                keys.insert(&key, Packed::pack(&t.state, names));
            } else {
                keys.remove(&key);
            }
        }
        for fx in effects {
            record_effect(&mut st, &models, fx);
        }
        Ok(report)
    }

    /// Adds messages pushed by an interface engine. Unknown interfaces are an error naming them.
    pub fn add_interface_messages(&self, items: &[(String, u64, i64)]) -> Result<(), FlowError> {
        let mut st = self.state.lock();
        for (i, (name, _, _)) in items.iter().enumerate() {
            if !st.registry.defs.contains_key(name) {
                return Err(FlowError::Invalid(format!("[{i}].interface: {name:?} is not a registered interface")));
            }
        }
        self.db.with_conn(|c| {
            c.transaction(|tx| {
                for (name, n, t) in items {
                    store::add_volume(tx, name, *t, *n)?;
                }
                Ok::<_, DbError>(())
            })
        })?;
        for (name, n, t) in items {
            st.registry.saw(name, *t);
            let def = st.registry.defs[name].clone();
            let (i, s, c) = (st.intern(&def.name), st.intern(&def.system), st.intern(&def.campus));
            st.metrics.interface_messages(&i, &s, &c, *n);
        }
        Ok(())
    }
}

fn find_key(
    st: &mut State,
    tx: &Conn<'_>,
    flow: &str,
    key: &str,
    event: &Event,
    model: &Compiled,
) -> Result<Touched, DbError> {
    if let Some(k) = st.keys.get(flow).and_then(|m| m.get(key)) {
        return Ok(Touched { state: k.unpack(&st.names), status: "open".into(), closed_step: None });
    }
    if let Some(row) = store::load_key(tx, flow, key)? {
        return Ok(Touched { state: row.key_state, status: row.state, closed_step: row.closed_step });
    }
    let campus = st.intern(&event.campus);
    let system = st.intern(&event.system);
    Ok(Touched { state: KeyState::new(model, campus, system, event.time_ms), status: "open".into(), closed_step: None })
}

fn record_effect(st: &mut State, models: &HashMap<String, Arc<Compiled>>, fx: Effect) {
    let Some(model) = models.get(&fx.event.flow) else { return };
    let flow = st.intern(&fx.event.flow);
    let step_name = st.intern(&model.steps()[fx.step as usize].name);
    let system = st.intern(&fx.event.system);
    let campus = fx.campus;
    st.metrics.event(&flow, &step_name, &campus, &system, fx.event.ok);
    if let Some(ms) = fx.applied.duration_ms {
        st.metrics.duration(&flow, &step_name, &campus, ms);
    }
    if fx.applied.out_of_order {
        st.metrics.anomaly(&flow, &step_name, &campus, "out_of_order");
    }
    for s in &fx.applied.skipped {
        let skipped = st.intern(&model.steps()[*s as usize].name);
        st.metrics.anomaly(&flow, &skipped, &campus, "skipped");
    }
    if fx.closed_now {
        st.metrics.completion(&flow, &step_name, &campus);
    }
    let iface = st.registry.resolve(fx.event.interface.as_deref(), &fx.event.system, &fx.event.campus).cloned();
    if let Some(def) = iface {
        st.registry.saw(&def.name, fx.event.time_ms);
        let (i, s, c) = (st.intern(&def.name), st.intern(&def.system), st.intern(&def.campus));
        st.metrics.interface_messages(&i, &s, &c, 1);
    }
}
