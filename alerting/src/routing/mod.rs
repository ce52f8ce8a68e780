//! Routing: from alert state changes to the notifications due now. The route tree picks
//! receivers and groups (`tree`), groups wait and batch (`group`), inhibition and silences
//! mute (`inhibit`, `silence`), time windows hold or mute (over `crate::calendar`),
//! unacknowledged groups escalate, and everything a restart must remember is in the
//! relational store (`store`). `Dispatcher` is the one entry point; `api` is its HTTP surface.
//!
//! Every function that depends on time takes `now_ms`; nothing here reads the wall clock
//! except the API edge (through the dispatcher's replaceable clock).

mod api;
mod config;
mod dispatcher;
mod group;
mod inhibit;
mod manage;
mod matchers;
mod silence;
mod store;
mod tree;

pub use api::api_router;
pub use config::{EscalationStepConfig, InhibitRuleConfig, ReceiverWindowsConfig, RouteConfig, RoutingConfig};
pub use dispatcher::{AckRecord, AckTarget, AlertView, Dispatcher, GroupView};
pub use matchers::parse_matcher;
pub use silence::{Silence, SilenceSpec, SilenceStatus};

use crate::calendar::CalendarError;
use tingzhen_core::db::DbError;

#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    /// The configuration is wrong; `field` is its path, e.g. `route.routes[1].matchers[0]`.
    #[error("routing config: {field}: {message}")]
    Config { field: String, message: String },
    /// An API request is wrong; `field` names the offending field.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{what} {id:?} not found")]
    NotFound { what: &'static str, id: String },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("routing store holds an unreadable {what}: {message}")]
    Corrupt { what: &'static str, message: String },
}

impl RoutingError {
    pub(crate) fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config { field: field.into(), message: message.into() }
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), message: message.into() }
    }

    pub(crate) fn from_calendar(e: CalendarError) -> Self {
        match e {
            CalendarError::Invalid { field, message } => Self::Config { field, message },
        }
    }
}
