//! The embedded time-series engine (being written).
