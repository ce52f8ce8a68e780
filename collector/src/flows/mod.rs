//! Business message flows (MON-6, MON-17) and interface services (MON-5): every step of every
//! order, watched. `model` (flow models, validation), `hours` (the built-in working-hours
//! rule), `event` (one event and its checks), `engine` (per-key state), `store` (SQLite),
//! `ingest` (batches with per-event answers), `otlp` (OTLP/HTTP traces → events), `metrics`
//! (`tingzhen_flow_*` series), `query` (timeline, funnel, overdue, map, interfaces),
//! `interfaces` (the registry, liveness from probes), `table` (open keys packed in memory),
//! `demo` (the traffic generator). [`Flows`] ties them together;
//! the collector opens one and ticks it from its background loop.

pub mod demo;
pub mod engine;
pub mod event;
pub mod hours;
mod ingest;
pub mod interfaces;
mod metrics;
pub mod model;
pub mod otlp;
mod query;
mod store;
mod table;

pub use ingest::IngestReport;
pub use query::{TimeRange, shanghai as query_time};

use crate::backend::Backend;
use interfaces::{InterfaceDef, Registry};
use metrics::FlowMetrics;
use model::{Compiled, FlowModel, ModelError};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use table::{Interner, KeyTable, Packed};
use tingzhen_core::config::HumanDuration;
use tingzhen_core::db::{Db, DbError};

/// The `[flows]` section of the server config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowsConfig {
    /// Directory of `*.toml` files with `[[flow]]` models and `[[interface]]` entries, loaded
    /// at start (a changed model becomes a new version). None: models come from the API only.
    pub models_dir: Option<String>,
    /// Open keys with no event for this long expire (a model's `horizon` overrides). Default 7 days.
    pub horizon: HumanDuration,
    /// How often overdue/open gauges and counters are written and keys expired. Default 15 s.
    pub tick: HumanDuration,
    /// An interface with no message for this long during clinic hours is zero volume. Default 15 min.
    pub interface_silence: HumanDuration,
    /// How long events of closed keys, traffic and volume buckets are kept. Default 30 days.
    pub retention: HumanDuration,
}

impl Default for FlowsConfig {
    fn default() -> Self {
        Self {
            models_dir: None,
            horizon: HumanDuration::from_secs(7 * 86_400),
            tick: HumanDuration::from_secs(15),
            interface_silence: HumanDuration::from_secs(15 * 60),
            retention: HumanDuration::from_secs(30 * 86_400),
        }
    }
}

impl FlowsConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (key, d) in [
            ("flows.horizon", &self.horizon),
            ("flows.tick", &self.tick),
            ("flows.interface_silence", &self.interface_silence),
            ("flows.retention", &self.retention),
        ] {
            if d.0 < Duration::from_secs(1) {
                return Err(format!("{key}: must be at least 1s"));
            }
        }
        if let Some(dir) = &self.models_dir {
            if !Path::new(dir).is_dir() {
                return Err(format!("flows.models_dir: {dir:?} is not a directory"));
            }
            // Parsed here too, so `tingzhen config check` names a bad model before a start does.
            for path in model_files(Path::new(dir)).map_err(|e| format!("flows.models_dir: {dir:?}: {e}"))? {
                let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                parse_models_file(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        Ok(())
    }
}

/// A models file: any number of flows and interfaces.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelsFile {
    #[serde(default)]
    flow: Vec<FlowModel>,
    #[serde(default)]
    interface: Vec<InterfaceDef>,
}

/// The `*.toml` files of a models directory, sorted by name.
fn model_files(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    Ok(paths)
}

/// Parses and validates a models file: its `[[flow]]` models and `[[interface]]` entries.
pub fn parse_models_file(text: &str) -> Result<(Vec<FlowModel>, Vec<InterfaceDef>), FlowError> {
    let file: ModelsFile = toml::from_str(text).map_err(|e| FlowError::Invalid(e.to_string()))?;
    for m in &file.flow {
        m.validate()?;
    }
    for i in &file.interface {
        i.validate().map_err(FlowError::Invalid)?;
    }
    Ok((file.flow, file.interface))
}

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{0}")]
    Invalid(String),
    #[error("{what} {name:?} not found")]
    NotFound { what: &'static str, name: String },
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("flow store: {0}")]
    Db(#[from] DbError),
}

/// A probe result older than this says nothing about an interface (the agent stopped probing).
pub const PROBE_LOOKBACK_MS: i64 = 5 * 60_000;

/// Clock in Unix milliseconds; tests inject their own.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// In-memory state guarded by one lock: ingest batches and ticks are short and serialised.
#[derive(Default)]
struct State {
    /// flow → open keys, packed.
    keys: HashMap<String, KeyTable>,
    metrics: FlowMetrics,
    /// Campus, system, flow, step and attribute names are few; keys hold their ids.
    names: Interner,
    registry: Registry,
    last_prune_ms: i64,
}

impl State {
    fn intern(&mut self, s: &str) -> Arc<str> {
        self.names.arc(s)
    }
}

pub struct Flows {
    db: Arc<Db>,
    backend: Backend,
    config: RwLock<FlowsConfig>,
    models: RwLock<HashMap<String, Arc<Compiled>>>,
    state: Mutex<State>,
    clock: Clock,
}

impl Flows {
    /// Opens the flow store, loads models, interfaces and every open key. Blocking.
    pub fn open(db: Arc<Db>, backend: Backend, config: FlowsConfig, clock: Clock) -> Result<Self, FlowError> {
        db.migrate_component(store::COMPONENT, store::MIGRATIONS)?;
        let flows = Self {
            db,
            backend,
            config: RwLock::new(FlowsConfig::default()),
            models: RwLock::new(HashMap::new()),
            state: Mutex::new(State::default()),
            clock,
        };
        let now = (flows.clock)();
        let (models, interfaces) =
            flows.db.with_conn(|c| Ok::<_, FlowError>((store::current_models(c)?, store::interfaces(c)?)))?;
        {
            let mut m = flows.models.write();
            for s in models {
                m.insert(s.model.name.clone(), Arc::new(Compiled::new(s.model, s.version)?));
            }
        }
        {
            let mut st = flows.state.lock();
            for (json, _) in interfaces {
                let def: InterfaceDef =
                    serde_json::from_str(&json).map_err(|e| FlowError::Invalid(format!("stored interface: {e}")))?;
                st.registry.put(def, now);
            }
            let volumes = flows.db.with_conn(|c| store::volumes(c, now, now))?;
            for (name, _, last_bucket) in volumes {
                st.registry.saw(&name, last_bucket);
            }
        }
        flows.reload_open_keys()?;
        flows.configure(config)?;
        Ok(flows)
    }

    fn reload_open_keys(&self) -> Result<(), FlowError> {
        let rows = self.db.with_conn(store::open_keys)?;
        let models = self.models.read();
        let mut st = self.state.lock();
        st.keys.clear();
        let State { keys, names, .. } = &mut *st;
        for row in rows {
            let mut ks = row.key_state;
            if let Some(m) = models.get(&row.flow) {
                ks.recompute_due(m);
            }
            keys.entry(row.flow).or_default().insert(&row.key, Packed::pack(&ks, names));
        }
        Ok(())
    }

    /// Applies a `[flows]` section: settings, then the models directory. Blocking.
    pub fn configure(&self, config: FlowsConfig) -> Result<(), FlowError> {
        config.validate().map_err(FlowError::Invalid)?;
        if let Some(dir) = &config.models_dir {
            self.load_dir(Path::new(dir))?;
        }
        *self.config.write() = config;
        Ok(())
    }

    /// Loads every `*.toml` in `dir` (sorted by name). A file's error names the file and field.
    pub fn load_dir(&self, dir: &Path) -> Result<(), FlowError> {
        let file_err = |p: &Path, reason: String| FlowError::File { path: p.display().to_string(), reason };
        for p in model_files(dir).map_err(|e| file_err(dir, e.to_string()))? {
            let text = std::fs::read_to_string(&p).map_err(|e| file_err(&p, e.to_string()))?;
            self.load_toml(&text, &p.display().to_string()).map_err(|e| file_err(&p, e.to_string()))?;
        }
        Ok(())
    }

    /// Loads one models file's text; `source` is recorded with each new version.
    pub fn load_toml(&self, text: &str, source: &str) -> Result<(), FlowError> {
        let (flows, interfaces) = parse_models_file(text)?;
        for m in flows {
            self.put_model(m, source)?;
        }
        for i in interfaces {
            self.put_interface(i, source)?;
        }
        Ok(())
    }

    /// Stores a model as a new version unless it equals the current one. Returns the current
    /// version and whether it is new.
    pub fn put_model(&self, model: FlowModel, source: &str) -> Result<(u32, bool), FlowError> {
        model.validate()?;
        if let Some(cur) = self.models.read().get(&model.name)
            && cur.model == model
        {
            return Ok((cur.version, false));
        }
        let now = (self.clock)();
        let version = self.db.with_conn(|c| c.transaction(|tx| store::insert_model(tx, &model, source, now)))?;
        let compiled = Arc::new(Compiled::new(model, version)?);
        self.models.write().insert(compiled.name().to_string(), compiled.clone());
        // Open keys' due times follow the new deadlines.
        let mut st = self.state.lock();
        let State { keys, names, .. } = &mut *st;
        if let Some(keys) = keys.get_mut(compiled.name()) {
            for p in keys.values_mut() {
                let mut k = p.unpack(names);
                k.recompute_due(&compiled);
                *p = Packed::pack(&k, names);
            }
        }
        Ok((version, true))
    }

    pub fn delete_model(&self, name: &str) -> Result<(), FlowError> {
        let now = (self.clock)();
        if !self.db.with_conn(|c| store::delete_model(c, name, now))? {
            return Err(FlowError::NotFound { what: "flow model", name: name.into() });
        }
        self.models.write().remove(name);
        Ok(())
    }

    pub fn model(&self, name: &str) -> Option<Arc<Compiled>> {
        self.models.read().get(name).cloned()
    }

    /// Current models, sorted by name, as (model, version).
    pub fn models(&self) -> Vec<Arc<Compiled>> {
        let mut v: Vec<_> = self.models.read().values().cloned().collect();
        v.sort_by(|a, b| a.name().cmp(b.name()));
        v
    }

    /// Every stored version of one model (deleted ones included), oldest first.
    pub fn model_history(&self, name: &str) -> Result<Vec<(FlowModel, u32, String, i64)>, FlowError> {
        let v = self.db.with_conn(|c| store::model_versions(c, name))?;
        if v.is_empty() {
            return Err(FlowError::NotFound { what: "flow model", name: name.into() });
        }
        Ok(v.into_iter().map(|s| (s.model, s.version, s.source, s.created_ms)).collect())
    }

    pub fn put_interface(&self, def: InterfaceDef, source: &str) -> Result<(), FlowError> {
        def.validate().map_err(FlowError::Invalid)?;
        let now = (self.clock)();
        let json = serde_json::to_string(&def).expect("interfaces always serialise");
        self.db.with_conn(|c| store::put_interface(c, &def.name, &json, source, now))?;
        self.state.lock().registry.put(def, now);
        Ok(())
    }

    pub fn delete_interface(&self, name: &str) -> Result<(), FlowError> {
        if !self.db.with_conn(|c| store::delete_interface(c, name))? {
            return Err(FlowError::NotFound { what: "interface", name: name.into() });
        }
        self.state.lock().registry.remove(name);
        Ok(())
    }

    pub fn now_ms(&self) -> i64 {
        (self.clock)()
    }

    pub fn tick_every(&self) -> Duration {
        self.config.read().tick.0
    }

    fn horizon_ms(&self, model: Option<&Compiled>) -> i64 {
        model
            .and_then(|m| m.model.horizon.as_ref())
            .map(|h| h.0.as_millis() as i64)
            .unwrap_or_else(|| self.config.read().horizon.0.as_millis() as i64)
    }

    /// The latest `probe_success` of every probed address and probe name, from the last
    /// [`PROBE_LOOKBACK_MS`]; an unreadable store is logged and means "unknown" for every
    /// interface rather than a failed tick.
    fn probes(&self, now_ms: i64) -> interfaces::Probes {
        let m = [tingzhen_core::matcher::Matcher::equal("__name__", interfaces::PROBE_METRIC)];
        match self.backend.queryable().select(&m, now_ms - PROBE_LOOKBACK_MS, now_ms) {
            Ok(series) => interfaces::probe_index(&series),
            Err(e) => {
                tracing::warn!(error = %e, "flows: cannot read probe results for interface liveness");
                interfaces::Probes::new()
            }
        }
    }

    /// Expires stale keys, prunes old rows, and writes every flow series at `now`. Blocking.
    pub fn tick(&self) -> Result<usize, FlowError> {
        let now = (self.clock)();
        let probes = self.probes(now);
        let models = self.models.read().clone();
        let silence_ms = self.config.read().interface_silence.0.as_millis() as i64;
        let retention_ms = self.config.read().retention.0.as_millis() as i64;
        let mut st = self.state.lock();
        // Expiry: persisted first, then forgotten.
        let mut expired: Vec<(String, String)> = Vec::new();
        for (flow, keys) in &st.keys {
            let horizon = self.horizon_ms(models.get(flow).map(|m| &**m));
            expired.extend(
                keys.iter().filter(|(_, k)| now - k.last_ms > horizon).map(|(key, _)| (flow.clone(), key.to_string())),
            );
        }
        if !expired.is_empty() {
            self.db.with_conn(|c| {
                c.transaction(|tx| {
                    for (flow, key) in &expired {
                        if let Some(k) = st.keys.get(flow).and_then(|m| m.get(key)) {
                            store::save_key(tx, flow, key, "expired", None, &k.unpack(&st.names))?;
                        }
                    }
                    Ok::<_, DbError>(())
                })
            })?;
            for (flow, key) in &expired {
                if let Some(k) = st.keys.get_mut(flow).and_then(|m| m.remove(key)) {
                    let f = st.intern(flow);
                    let campus = st.names.get(k.campus).clone();
                    st.metrics.expired(&f, &campus);
                }
            }
        }
        if now - st.last_prune_ms > store::HOUR_MS {
            self.db.with_conn(|c| store::prune(c, now - retention_ms))?;
            st.last_prune_ms = now;
        }
        for keys in st.keys.values_mut() {
            keys.shrink_if_sparse();
        }
        let series = query::tick_series(&mut st, &models, now, silence_ms, &probes);
        drop(st);
        let n = series.len();
        self.backend.write(&series).map_err(|e| FlowError::Invalid(format!("cannot write flow metrics: {e}")))?;
        Ok(n)
    }

    /// Number of open keys (all flows).
    pub fn open_keys(&self) -> usize {
        self.state.lock().keys.values().map(KeyTable::len).sum()
    }
}

#[cfg(test)]
mod tests;
