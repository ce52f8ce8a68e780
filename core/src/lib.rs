//! tingzhen-core: the model every tingzhen crate shares — labels, samples, series matchers,
//! wire codecs (Prometheus remote write, Influx line protocol, Prometheus text exposition),
//! agent inventory, config primitives and, behind the `db` feature, the relational store.
//!
//! Nothing here does I/O except `db` and the test-only `testing`; codecs are pure functions over
//! bytes so that both the agent and the collector (and tests) use exactly one implementation of
//! each wire format.

pub mod batch;
pub mod config;
pub mod exposition;
pub mod inventory;
pub mod labels;
pub mod line_protocol;
pub mod matcher;
pub mod phone;
pub mod query;
pub mod remote_write;
pub mod sample;
pub mod spool;
pub mod token;
pub mod topsql;

#[cfg(feature = "db")]
pub mod db;
pub mod testing;

pub use batch::SeriesBatch;
pub use labels::{Label, LabelError, Labels};
pub use matcher::{MatchOp, Matcher, MatcherError};
pub use sample::{STALE_NAN_BITS, Sample, TimeSeries, is_stale_nan, now_ms, stale_nan};
