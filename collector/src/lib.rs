//! tingzhen-collector: receives samples (remote write, Influx line protocol) and agent
//! heartbeats, stores them in the embedded time-series engine, and answers PromQL over the
//! Prometheus HTTP API.
//!
//! Shape: `api` (axum routes, auth, error mapping) → `promql` (query engine) → `storage`
//! (the `Queryable` trait) ← `tsdb` (the embedded engine). `inventory` tracks agents.

pub mod config;
pub mod inventory;
pub mod promql;
pub mod storage;
pub mod telemetry;
pub mod tsdb;
