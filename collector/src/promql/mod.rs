//! The PromQL engine (being written).
