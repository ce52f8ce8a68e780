//! tingzhen-alerting: turns metrics into the right message on the right phone, once.
//!
//! Pipeline: `rules` (Prometheus rule files and the rules API) → `eval` (evaluates a rule as
//! soon as samples of the metrics it reads arrive, with a timer as the floor) → `state`
//! (inactive → pending → firing → resolved, persisted) → `routing` (route tree, grouping,
//! inhibition, silences, time windows over `calendar`, escalation, acknowledgement) →
//! `outbox` (stored before sent, retried, deduplicated, fallback chains, receipts and dead
//! letters) → `notify` (email, WeChat Work, SMS, webhook) with `templates`. `intake` takes
//! alerts from an existing Prometheus (`POST /api/v2/alerts`); `summary` reports.
//! The shared vocabulary is in `model`.

pub mod api;
pub mod calendar;
pub mod config;
pub mod eval;
pub mod intake;
pub mod model;
pub mod notify;
pub mod outbox;
pub mod query_client;
pub mod routing;
pub mod rules;
pub mod service;
pub mod state;
pub mod summary;
pub mod templates;

pub use config::AlertingConfig;
pub use service::{Alerting, AlertingError};
