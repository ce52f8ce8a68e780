//! Translation of parsed selectors into storage matchers, `offset`/`@` in milliseconds, and
//! the series-selector parser used by `/api/v1/series`.

use super::error::{QueryError, Result};
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};
use std::time::{SystemTime, UNIX_EPOCH};
use tingzhen_core::{MatchOp, Matcher};

/// The storage matchers of a vector selector, the metric name included.
pub(crate) fn matchers(vs: &VectorSelector) -> Result<Vec<Matcher>> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(QueryError::Parse("'or' inside label matchers is not supported".into()));
    }
    let mut out = Vec::with_capacity(vs.matchers.matchers.len() + 1);
    if let Some(name) = &vs.name {
        out.push(Matcher::equal(tingzhen_core::labels::METRIC_NAME, name.clone()));
    }
    for m in &vs.matchers.matchers {
        let op = match m.op {
            PMatchOp::Equal => MatchOp::Equal,
            PMatchOp::NotEqual => MatchOp::NotEqual,
            PMatchOp::Re(_) => MatchOp::RegexMatch,
            PMatchOp::NotRe(_) => MatchOp::RegexNoMatch,
        };
        out.push(Matcher::new(op, m.name.clone(), m.value.clone()).map_err(|e| QueryError::Parse(e.to_string()))?);
    }
    Ok(out)
}

pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
    }
}

/// Resolves `@` to absolute milliseconds; `start()`/`end()` are the top-level query's bounds.
pub(crate) fn at_ms(at: &Option<AtModifier>, query_start: i64, query_end: i64) -> Option<i64> {
    match at {
        None => None,
        Some(AtModifier::Start) => Some(query_start),
        Some(AtModifier::End) => Some(query_end),
        Some(AtModifier::At(t)) => Some(system_time_ms(*t)),
    }
}

fn system_time_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// Parses a series selector such as `up{job="node"}` into matchers, as Prometheus's
/// `parser.ParseMetricSelector` does for `match[]` parameters.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>> {
    let expr = promql_parser::parser::parse(s).map_err(QueryError::Parse)?;
    match expr {
        Expr::VectorSelector(vs) if vs.offset.is_none() && vs.at.is_none() => matchers(&vs),
        _ => Err(QueryError::Parse(format!("invalid series selector {s:?}: expected a vector selector"))),
    }
}
