//! `MetricsQuery` in process: other targets in the same process (alerting) evaluate PromQL
//! through the collector's engine and storage directly, with no HTTP in between. A split
//! deployment uses an HTTP client over `/api/v1/query` instead; both answer the same way.

use crate::backend::Backend;
use crate::promql::{Engine, QueryError, QueryResult};
use std::sync::Arc;
use tingzhen_core::Labels;
use tingzhen_core::query::{InstantSample, MetricsQuery, MetricsQueryError};

pub struct CollectorQuery {
    engine: Arc<Engine>,
    backend: Backend,
}

impl CollectorQuery {
    pub fn new(engine: Arc<Engine>, backend: Backend) -> Self {
        Self { engine, backend }
    }
}

impl MetricsQuery for CollectorQuery {
    fn instant(&self, expr: &str, at_ms: i64) -> Result<Vec<InstantSample>, MetricsQueryError> {
        let store = self.backend.queryable();
        match self.engine.instant(store.as_ref(), expr, at_ms) {
            Ok(QueryResult::Vector(v)) => {
                Ok(v.into_iter().map(|s| InstantSample { labels: s.labels, value: s.v }).collect())
            }
            Ok(QueryResult::Scalar { v, .. }) => Ok(vec![InstantSample { labels: Labels::new(), value: v }]),
            Ok(QueryResult::String { .. }) => {
                Err(MetricsQueryError::BadQuery("expression returns a string, expected a vector or scalar".into()))
            }
            Ok(QueryResult::Matrix(_)) => Err(MetricsQueryError::BadQuery(
                "expression returns a range vector, expected a vector or scalar".into(),
            )),
            Err(e @ (QueryError::Parse(_) | QueryError::BadData(_) | QueryError::Execution(_))) => {
                Err(MetricsQueryError::BadQuery(e.to_string()))
            }
            Err(e) => Err(MetricsQueryError::Unavailable(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Store;
    use crate::tsdb::{Tsdb, TsdbOptions};
    use tingzhen_core::{Sample, TimeSeries};

    #[test]
    fn answers_vectors_scalars_and_classifies_errors() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Backend::new(Store::Embedded(Arc::new(Tsdb::open(dir.path(), TsdbOptions::default()).unwrap())));
        let now = tingzhen_core::now_ms();
        let labels = Labels::from_pairs([("__name__", "temp"), ("room", "icu")]);
        backend.write(&[TimeSeries::new(labels, vec![Sample::new(now, 41.5)])]).unwrap();
        let q = CollectorQuery::new(Arc::new(Engine::default()), backend);
        let v = q.instant("temp > 40", now).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].value, 41.5);
        assert_eq!(v[0].labels.get("room"), Some("icu"));
        assert!(q.instant("temp > 50", now).unwrap().is_empty());
        assert_eq!(q.instant("1 + 1", now).unwrap()[0].value, 2.0);
        assert!(matches!(q.instant("temp[5m]", now), Err(MetricsQueryError::BadQuery(_))));
        assert!(matches!(q.instant("sum(", now), Err(MetricsQueryError::BadQuery(_))));
    }
}
