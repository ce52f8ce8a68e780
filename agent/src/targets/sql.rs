//! What the SQL targets share: rows as NULL-safe text columns (every driver's values are
//! turned into `Option<String>` once, so mapping code never panics on a NULL or a type that
//! differs between versions), and the top-SQL delta computation over cumulative statement
//! statistics (`pg_stat_statements`, performance_schema digests, `V$SQLSTATS`).

use std::collections::HashMap;

/// One row as text columns; `None` is SQL NULL.
pub type Row = Vec<Option<String>>;

pub fn col(r: &Row, i: usize) -> &str {
    r.get(i).and_then(|c| c.as_deref()).unwrap_or("")
}

/// A numeric column; NULL or unparsable gives `None`.
pub fn num(r: &Row, i: usize) -> Option<f64> {
    r.get(i).and_then(|c| c.as_deref()).and_then(|s| s.trim().parse::<f64>().ok())
}

/// A statement's identity: (the database's statement id, user or schema, database).
pub type StatementKey = (String, String, String);

/// Cumulative statistics of one statement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cumulative {
    pub calls: f64,
    pub total_ms: f64,
    pub rows: f64,
}

/// The `n` statements that cost the most time since `prev`. A statement whose counters went
/// down was reset (or evicted and re-added), so its whole current value is the delta; one not
/// seen before is new since the last collection and counts whole too — but only when there
/// was a previous collection at all (the first one only sets the baseline).
pub fn top_deltas(
    prev: Option<&HashMap<StatementKey, Cumulative>>,
    now: &HashMap<StatementKey, Cumulative>,
    n: usize,
) -> Vec<(StatementKey, Cumulative)> {
    let Some(prev) = prev else { return Vec::new() };
    let mut deltas: Vec<(StatementKey, Cumulative)> = now
        .iter()
        .filter_map(|(k, c)| {
            let d = match prev.get(k) {
                Some(p) if c.calls >= p.calls && c.total_ms >= p.total_ms => Cumulative {
                    calls: c.calls - p.calls,
                    total_ms: c.total_ms - p.total_ms,
                    rows: (c.rows - p.rows).max(0.0),
                },
                _ => *c,
            };
            (d.calls > 0.0).then(|| (k.clone(), d))
        })
        .collect();
    deltas.sort_by(|a, b| b.1.total_ms.total_cmp(&a.1.total_ms).then_with(|| a.0.cmp(&b.0)));
    deltas.truncate(n);
    deltas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_rank_by_time_and_handle_resets() {
        let k = |i: &str| (i.to_string(), "10".to_string(), "5".to_string());
        let c = |calls: f64, total_ms: f64| Cumulative { calls, total_ms, rows: calls };
        let prev: HashMap<_, _> = [(k("1"), c(10.0, 100.0)), (k("2"), c(5.0, 50.0)), (k("3"), c(9.0, 900.0))].into();
        let now: HashMap<_, _> =
            [(k("1"), c(11.0, 2100.0)), (k("2"), c(5.0, 50.0)), (k("3"), c(1.0, 30.0)), (k("4"), c(2.0, 40.0))].into();
        assert!(top_deltas(None, &now, 5).is_empty());
        let top = top_deltas(Some(&prev), &now, 5);
        let ids: Vec<&str> = top.iter().map(|t| t.0.0.as_str()).collect();
        assert_eq!(ids, vec!["1", "4", "3"], "statement 2 had no calls; 3 was reset");
        assert_eq!(top[0].1, Cumulative { calls: 1.0, total_ms: 2000.0, rows: 1.0 });
        assert_eq!(top_deltas(Some(&prev), &now, 1).len(), 1);
    }

    #[test]
    fn nulls_and_junk_are_none() {
        let r: Row = vec![None, Some("x".into()), Some(" 4.5 ".into())];
        assert_eq!((col(&r, 0), col(&r, 1), col(&r, 9)), ("", "x", ""));
        assert_eq!((num(&r, 0), num(&r, 1), num(&r, 2)), (None, None, Some(4.5)));
    }
}
