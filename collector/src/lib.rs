//! tingzhen-collector: receives samples (remote write, Influx line protocol) and agent
//! heartbeats, stores them in the embedded time-series engine, and answers PromQL over the
//! Prometheus HTTP API.
//!
//! Shape: `api` (axum routes, auth, error mapping) → `promql` (query engine) → `storage`
//! (the `Queryable` trait) ← `backend` (the embedded engine `tsdb`, or `remote`: a spool
//! forwarding to VictoriaMetrics / InfluxDB 2). `inventory` tracks agents; `telemetry` is the
//! collector's own metrics. [`Collector`] wires them and runs the background loops (storage
//! maintenance, liveness).

pub mod api;
pub mod backend;
pub mod backup;
pub mod config;
pub mod flows;
pub mod inventory;
pub mod promql;
pub mod query_service;
pub mod remote;
pub mod storage;
pub mod telemetry;
pub mod topsql;
pub mod tsdb;

use api::auth::Auth;
use api::{AppState, Services};
use backend::{Backend, Store};
use config::{InventoryConfig, QueryConfig, StorageConfig, StorageMode};
use inventory::Inventory;
use promql::{Engine, EngineOptions};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use telemetry::Telemetry;
use tingzhen_core::db::Db;
use tingzhen_core::now_ms;
use tokio::sync::watch;
use tsdb::{Tsdb, TsdbOptions};

/// How often the engine cuts blocks, truncates its WAL and applies retention.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Default)]
pub struct CollectorSettings {
    pub storage: StorageConfig,
    pub query: QueryConfig,
    pub inventory: InventoryConfig,
    pub max_body_bytes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error("cannot open the time-series engine in {path}: {source}")]
    Tsdb { path: String, source: tsdb::TsdbError },
    #[error("cannot start remote storage: {0}")]
    Remote(#[from] remote::RemoteError),
    #[error("storage.remote: required when storage.mode = \"remote\"")]
    RemoteMissing,
    #[error("cannot load the agent inventory: {0}")]
    Inventory(#[from] tingzhen_core::db::DbError),
    #[error("cannot open the flows: {0}")]
    Flows(#[from] flows::FlowError),
}

pub struct Collector {
    services: AppState,
    inventory_every: Duration,
}

impl Collector {
    /// Opens storage (replaying its WAL) and builds the services. Blocking.
    pub fn open(settings: &CollectorSettings, db: Arc<Db>) -> Result<Self, CollectorError> {
        let data_dir = PathBuf::from(&settings.storage.data_dir);
        let mut backups = None;
        let backend = match settings.storage.mode {
            StorageMode::Embedded => {
                let tsdb_dir = data_dir.join("tsdb");
                let opts = TsdbOptions {
                    retention: settings.storage.retention.0,
                    out_of_order_window: settings.storage.out_of_order_window.0,
                    rollup_retention: settings.storage.rollup_retention.0,
                    ..TsdbOptions::default()
                };
                let tsdb = Tsdb::open(&tsdb_dir, opts)
                    .map_err(|source| CollectorError::Tsdb { path: tsdb_dir.display().to_string(), source })?;
                let tsdb = Arc::new(tsdb);
                if let Some(b) = &settings.storage.backup {
                    backups = Some(Arc::new(backup::Backups::new(b.clone(), tsdb.clone(), db.clone())));
                }
                Backend::new(Store::Embedded(tsdb))
            }
            StorageMode::Remote => {
                let remote = settings.storage.remote.as_ref().ok_or(CollectorError::RemoteMissing)?;
                Backend::new(Store::Remote(remote::RemoteStore::open(remote, &data_dir.join("remote-spool"))?))
            }
        };
        let telemetry = Arc::new(Telemetry::new());
        let engine = Engine::new(EngineOptions {
            lookback_delta_ms: settings.query.lookback_delta.0.as_millis() as i64,
            max_samples: settings.query.max_samples,
            timeout: settings.query.timeout.0,
        });
        let flows =
            Arc::new(flows::Flows::open(db.clone(), backend.clone(), flows::FlowsConfig::default(), Arc::new(now_ms))?);
        let services = Services {
            backups,
            flows,
            backend,
            engine: Arc::new(engine),
            auth: Arc::new(Auth::new(db.clone(), telemetry.clone())),
            inventory: Arc::new(Inventory::load(db, settings.inventory.clone())?),
            telemetry,
            query_slots: Arc::new(tokio::sync::Semaphore::new(settings.query.max_concurrent)),
            query_timeout: settings.query.timeout.0,
            max_body_bytes: settings.max_body_bytes,
        };
        Ok(Self { services: Arc::new(services), inventory_every: settings.inventory.evaluate_every.0 })
    }

    pub fn router(&self) -> axum::Router {
        api::router(self.services.clone())
    }

    pub fn services(&self) -> &AppState {
        &self.services
    }

    /// The business flows and interface services (`[flows]` is applied through
    /// `flows().configure`).
    pub fn flows(&self) -> &Arc<flows::Flows> {
        &self.services.flows
    }

    /// PromQL in process for other targets (alerting), over the same engine and storage the
    /// query API uses.
    pub fn query_service(&self) -> Arc<dyn tingzhen_core::query::MetricsQuery> {
        Arc::new(query_service::CollectorQuery::new(self.services.engine.clone(), self.services.backend.clone()))
    }

    /// Tells `observer` the metric names of every acknowledged write from now on (ingest and
    /// the collector's own liveness series).
    pub fn add_ingest_observer(&self, observer: Arc<dyn tingzhen_core::query::IngestObserver>) {
        self.services.backend.add_observer(observer);
    }

    /// Runs storage maintenance, liveness evaluation and scheduled backups until `shutdown` turns true, then
    /// flushes the engine so a clean stop leaves no WAL to replay.
    pub async fn run_background(&self, mut shutdown: watch::Receiver<bool>) {
        let mut maintenance = tokio::time::interval(MAINTENANCE_EVERY);
        let mut liveness = tokio::time::interval(self.inventory_every);
        maintenance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        liveness.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let backups = self.services.backups.clone().map(|b| {
            let every = b.config().interval.0;
            tokio::spawn(backup::schedule(b, every, shutdown.clone()))
        });
        let mut flows_tick = tokio::time::interval(self.services.flows.tick_every());
        flows_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = maintenance.tick() => {
                    let backend = self.services.backend.clone();
                    let done = tokio::task::spawn_blocking(move || backend.maintain(now_ms())).await;
                    match done {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::error!(error = %e, "storage maintenance failed"),
                        Err(e) => tracing::error!(error = %e, "storage maintenance task panicked"),
                    }
                }
                _ = liveness.tick() => {
                    let series = self.services.inventory.liveness_series(now_ms());
                    if series.is_empty() {
                        continue;
                    }
                    let backend = self.services.backend.clone();
                    let done = tokio::task::spawn_blocking(move || backend.write(&series)).await;
                    if let Ok(Err(e)) = done {
                        tracing::warn!(error = %e, "could not record agent liveness");
                    }
                }
                _ = flows_tick.tick() => {
                    let flows = self.services.flows.clone();
                    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || flows.tick()).await {
                        tracing::warn!(error = %e, "flow tick failed");
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
        // A backup in progress finishes before the engine is closed under it.
        if let Some(task) = backups {
            let _ = task.await;
        }
        let backend = self.services.backend.clone();
        match tokio::task::spawn_blocking(move || backend.close()).await {
            Ok(Ok(())) => tracing::info!("storage closed cleanly"),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "flush at shutdown failed; the WAL will be replayed at next start")
            }
            Err(e) => tracing::error!(error = %e, "flush task panicked; the WAL will be replayed at next start"),
        }
    }
}
