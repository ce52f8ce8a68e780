//! Samples and series as they travel between agent, collector and storage.

use crate::labels::Labels;
use serde::{Deserialize, Serialize};

/// Prometheus's staleness marker: a specific NaN that means "this series ended here".
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// One value at one instant; timestamps are Unix milliseconds, as in remote write.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub timestamp_ms: i64,
    pub value: f64,
}

impl Sample {
    pub fn new(timestamp_ms: i64, value: f64) -> Self {
        Self { timestamp_ms, value }
    }
}

/// A label set and its samples, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeSeries {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

impl TimeSeries {
    pub fn new(labels: Labels, samples: Vec<Sample>) -> Self {
        Self { labels, samples }
    }
}

/// The wall clock in Unix milliseconds, the unit of every timestamp in the system.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
