//! Query errors and their mapping onto Prometheus's `errorType` values.

use crate::storage::StorageError;

/// Everything a query can fail with. Messages follow Prometheus's wording so clients that
/// match on them (Grafana, promtool) behave the same against us.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query text does not parse or does not type-check.
    #[error("{0}")]
    Parse(String),
    /// Request parameters are invalid (step, range, expression type for a range query).
    #[error("{0}")]
    BadData(String),
    /// The query is well-formed but cannot be evaluated on this data.
    #[error("{0}")]
    Execution(String),
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
    #[error("query timed out in query execution")]
    Timeout,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl QueryError {
    /// Prometheus's `errorType` for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            QueryError::Parse(_) | QueryError::BadData(_) => "bad_data",
            QueryError::Execution(_) | QueryError::TooManySamples => "execution",
            QueryError::Timeout => "timeout",
            QueryError::Storage(_) => "internal",
        }
    }

    pub(crate) fn exec(msg: impl Into<String>) -> Self {
        QueryError::Execution(msg.into())
    }
}

pub(crate) type Result<T> = std::result::Result<T, QueryError>;

pub(crate) const DUPLICATE_LABELSET: &str = "vector cannot contain metrics with the same labelset";
