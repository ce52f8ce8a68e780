//! The evaluator: walks the parsed expression and evaluates every node over all steps of the
//! query at once (Prometheus's range evaluation), loading data through `Queryable`.

use super::error::{QueryError, Result};
use super::selector::{at_ms, matchers, offset_ms};
use super::value::{RawSeries, Series, Steps, Value, check_unique_labels};
use super::{aggregations, binary, functions};
use crate::storage::{Queryable, RollupFunc, SelectHints, SeriesSet, StorageError};
use promql_parser::parser::{Expr, MatrixSelector, SubqueryExpr, VectorSelector};
use std::ops::Range;
use std::time::Instant;
use tingzhen_core::{Labels, Sample, is_stale_nan};

/// Prometheus's default `evaluation_interval`, the step of subqueries that do not give one.
pub(crate) const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

pub(crate) struct Evaluator<'a> {
    pub store: &'a dyn Queryable,
    pub lookback: i64,
    pub max_samples: usize,
    pub deadline: Instant,
    /// Bounds of the top-level query: what `@ start()` and `@ end()` mean.
    pub query_start: i64,
    pub query_end: i64,
    /// Samples currently held by live intermediate results.
    current: usize,
}

/// A range-vector argument: its series plus how to place each step's window on them.
pub(crate) struct RangeArg<'s> {
    pub data: RangeData<'s>,
    pub range: i64,
    pub offset: i64,
    pub at: Option<i64>,
}

/// What [`RangeArg::for_each`] calls with each series' index, points and decoded count.
pub(crate) type PointsVisitor<'f> = dyn FnMut(usize, &[(i64, f64)], usize) -> Result<()> + 'f;

/// The series of a range-vector argument.
pub(crate) enum RangeData<'s> {
    /// A subquery's points, already in memory.
    Points(Vec<RawSeries>),
    /// A selection the storage decodes on demand, a run of series at a time, so range
    /// functions consume each series as it is decoded instead of holding all of them.
    Lazy(Box<dyn SeriesSet + 's>),
}

impl RangeArg<'_> {
    pub fn len(&self) -> usize {
        match &self.data {
            RangeData::Points(s) => s.len(),
            RangeData::Lazy(set) => set.labels().len(),
        }
    }

    pub fn labels(&self, i: usize) -> &Labels {
        match &self.data {
            RangeData::Points(s) => &s[i].labels,
            RangeData::Lazy(set) => &set.labels()[i],
        }
    }

    /// Whether walking the series is worth more than one thread.
    pub fn is_large(&self) -> bool {
        match &self.data {
            RangeData::Points(s) => s.len() >= 64,
            RangeData::Lazy(set) => set.is_large(),
        }
    }

    /// Calls `f(i, points, decoded)` for each series `i` in `range`, in order: its points with
    /// staleness markers removed, and how many samples storage decoded for it (0 for points
    /// already in memory, which were accounted when they were evaluated). Decoding on
    /// several threads at once for disjoint ranges is fine.
    pub fn for_each(&self, range: Range<usize>, f: &mut PointsVisitor<'_>) -> Result<()> {
        match &self.data {
            RangeData::Points(s) => {
                for i in range {
                    f(i, &s[i].points, 0)?;
                }
                Ok(())
            }
            RangeData::Lazy(set) => {
                let mut buf: Vec<(i64, f64)> = Vec::new();
                let mut failed = None;
                let r = set.for_each(range, &mut |i, samples| {
                    buf.clear();
                    // Staleness markers are rare: test for one first, so the common copy is a
                    // plain (vectorised) one rather than a filter.
                    if samples.iter().any(|x| is_stale_nan(x.value)) {
                        buf.extend(
                            samples.iter().filter(|x| !is_stale_nan(x.value)).map(|x| (x.timestamp_ms, x.value)),
                        );
                    } else {
                        buf.extend(samples.iter().map(|x| (x.timestamp_ms, x.value)));
                    }
                    f(i, &buf, samples.len()).map_err(|e| {
                        failed = Some(e);
                        // Stops the walk; the engine's own error is returned below.
                        StorageError::Other(String::new())
                    })
                });
                match failed {
                    Some(e) => Err(e),
                    None => r.map_err(QueryError::from),
                }
            }
        }
    }

    /// Every series with its points in memory (staleness markers removed), accounting the
    /// samples decoded for them against the query's limit.
    pub fn to_series(&self, ev: &mut Evaluator<'_>) -> Result<Vec<RawSeries>> {
        let mut out = Vec::with_capacity(self.len());
        let mut decoded = 0usize;
        self.for_each(0..self.len(), &mut |i, points, n| {
            decoded += n;
            out.push(RawSeries { labels: self.labels(i).clone(), points: points.to_vec() });
            Ok(())
        })?;
        ev.account(decoded)?;
        Ok(out)
    }

    /// The end of the window evaluated at step time `ts`.
    pub fn ref_time(&self, ts: i64) -> i64 {
        self.at.unwrap_or(ts).saturating_sub(self.offset)
    }

    /// Points in `[ref - range, ref]` (Prometheus 2.x selects both ends inclusive).
    pub fn window<'p>(&self, points: &'p [(i64, f64)], ts: i64) -> &'p [(i64, f64)] {
        let r = self.ref_time(ts);
        let lo = points.partition_point(|p| p.0 < r.saturating_sub(self.range));
        let hi = points.partition_point(|p| p.0 <= r);
        if lo >= hi { &[] } else { &points[lo..hi] }
    }

    /// Like [`RangeArg::window`] for steps visited in ascending order: both window edges only
    /// move forward, so a whole range query walks each series once instead of binary-searching
    /// it twice per step (the searches were the largest cost of `rate` over a day of data).
    pub fn window_at<'p>(&self, p: &'p [(i64, f64)], ts: i64, cursor: &mut WindowCursor) -> &'p [(i64, f64)] {
        let r = self.ref_time(ts);
        let start = r.saturating_sub(self.range);
        if r < cursor.last_ref {
            // Not ascending (never the case for `Steps`): start over from a search.
            *cursor = WindowCursor::default();
            cursor.lo = p.partition_point(|x| x.0 < start);
            cursor.hi = cursor.lo;
        }
        cursor.last_ref = r;
        while cursor.lo < p.len() && p[cursor.lo].0 < start {
            cursor.lo += 1;
        }
        cursor.hi = cursor.hi.max(cursor.lo);
        while cursor.hi < p.len() && p[cursor.hi].0 <= r {
            cursor.hi += 1;
        }
        &p[cursor.lo..cursor.hi]
    }
}

/// Where the previous window of one series ended; see [`RangeArg::window_at`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct WindowCursor {
    lo: usize,
    hi: usize,
    last_ref: i64,
}

impl WindowCursor {
    /// Index range of the last window returned, in the series' points.
    pub fn bounds(&self) -> Range<usize> {
        self.lo..self.hi
    }
}

impl Default for WindowCursor {
    fn default() -> Self {
        Self { lo: 0, hi: 0, last_ref: i64::MIN }
    }
}

/// Strips redundant parentheses, as Prometheus does before looking at argument kinds.
pub(crate) fn unwrap_parens(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

impl<'a> Evaluator<'a> {
    pub fn new(
        store: &'a dyn Queryable,
        lookback: i64,
        max_samples: usize,
        deadline: Instant,
        query_start: i64,
        query_end: i64,
    ) -> Self {
        Evaluator { store, lookback, max_samples, deadline, query_start, query_end, current: 0 }
    }

    pub fn tick(&self) -> Result<()> {
        if Instant::now() > self.deadline { Err(QueryError::Timeout) } else { Ok(()) }
    }

    pub fn account(&mut self, n: usize) -> Result<()> {
        self.current = self.current.saturating_add(n);
        if self.current > self.max_samples { Err(QueryError::TooManySamples) } else { Ok(()) }
    }

    /// Evaluates `e` at every step; children's samples are released once the node is built.
    pub fn eval(&mut self, e: &Expr, steps: &Steps) -> Result<Value> {
        self.tick()?;
        let before = self.current;
        let v = self.eval_node(e, steps)?;
        self.current = before;
        self.account(v.points())?;
        Ok(v)
    }

    fn eval_node(&mut self, e: &Expr, steps: &Steps) -> Result<Value> {
        match e {
            Expr::Paren(p) => self.eval(&p.expr, steps),
            Expr::NumberLiteral(n) => Ok(Value::Scalar(vec![n.val; steps.len()])),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.vector_selector(vs, steps, false)?)),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                let arg = self.range_arg(e, steps)?;
                let ts = steps.start;
                let series = arg
                    .to_series(self)?
                    .into_iter()
                    .filter_map(|s| {
                        let w = arg.window(&s.points, ts);
                        (!w.is_empty()).then(|| RawSeries { labels: s.labels.clone(), points: w.to_vec() })
                    })
                    .collect();
                Ok(Value::Matrix(series))
            }
            Expr::Unary(u) => match self.eval(&u.expr, steps)? {
                Value::Scalar(v) => Ok(Value::Scalar(v.into_iter().map(|x| -x).collect())),
                Value::Vector(series) => {
                    let out: Vec<Series> = series
                        .into_iter()
                        .map(|s| Series {
                            labels: s.labels.without_metric_name(),
                            vals: s.vals.into_iter().map(|v| v.map(|x| -x)).collect(),
                        })
                        .collect();
                    check_unique_labels(&out)?;
                    Ok(Value::Vector(out))
                }
                other => Err(QueryError::Parse(format!(
                    "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                    other.type_name()
                ))),
            },
            Expr::Binary(b) => binary::eval(self, b, steps),
            Expr::Aggregate(a) => aggregations::eval(self, a, steps),
            Expr::Call(c) => functions::eval(self, c, steps),
            Expr::Extension(_) => Err(QueryError::Parse("extension expressions are not supported".into())),
        }
    }

    pub fn eval_vector(&mut self, e: &Expr, steps: &Steps) -> Result<Vec<Series>> {
        match self.eval(e, steps)? {
            Value::Vector(v) => Ok(v),
            other => Err(QueryError::Parse(format!("expected instant vector, got {}", other.type_name()))),
        }
    }

    pub fn eval_scalar(&mut self, e: &Expr, steps: &Steps) -> Result<Vec<f64>> {
        match self.eval(e, steps)? {
            Value::Scalar(v) => Ok(v),
            other => Err(QueryError::Parse(format!("expected scalar, got {}", other.type_name()))),
        }
    }

    pub fn eval_string(&mut self, e: &Expr, steps: &Steps) -> Result<String> {
        match self.eval(e, steps)? {
            Value::String(v) => Ok(v),
            other => Err(QueryError::Parse(format!("expected string, got {}", other.type_name()))),
        }
    }

    /// An instant vector selector: at each step the newest sample within the lookback
    /// window, unless that sample is a staleness marker. With `timestamps`, the value is
    /// the sample's own timestamp in seconds (for `timestamp()`).
    pub fn vector_selector(&mut self, vs: &VectorSelector, steps: &Steps, timestamps: bool) -> Result<Vec<Series>> {
        let m = matchers(vs)?;
        let n = steps.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let offset = offset_ms(&vs.offset);
        let at = at_ms(&vs.at, self.query_start, self.query_end);
        let (min_ref, max_ref) = self.ref_bounds(at, offset, steps);
        // Long range queries may read the `last` of each rollup window instead of raw samples:
        // the value shown at a step is then the last raw value of the newest finished window.
        // `timestamp()` needs the raw samples' own times, so it never takes rollups.
        let hints = SelectHints {
            step_ms: steps.step,
            range_ms: self.lookback,
            func: if timestamps { None } else { Some(RollupFunc::Last) },
        };
        let set = self.store.select_lazy(&m, min_ref.saturating_sub(self.lookback), max_ref, &hints)?;
        let (deadline, lookback) = (self.deadline, self.lookback);
        // Each series is decoded and reduced to its step values on its own (on all cores for a
        // large selection), so a day of raw samples is never held at once; results keep the
        // selection's order.
        let per_series = super::parallel::map_ranges(set.labels().len(), set.is_large(), |r| {
            let mut done: Vec<Result<(StepValues, usize)>> = Vec::with_capacity(r.len());
            let mut timed_out = false;
            let walked = set.for_each(r, &mut |_, pts| {
                if Instant::now() > deadline {
                    timed_out = true;
                    // Stops the walk; reported as the query's timeout below.
                    return Err(StorageError::Other(String::new()));
                }
                let vals = step_values(pts, steps, at, offset, lookback, timestamps);
                done.push(Ok((vals, pts.len())));
                Ok(())
            });
            match walked {
                Err(_) if timed_out => done.push(Err(QueryError::Timeout)),
                Err(e) => done.push(Err(e.into())),
                Ok(()) => {}
            }
            done
        });
        // The first error in selection order is the one a sequential walk would have met.
        let mut decoded = 0usize;
        let mut kept = Vec::with_capacity(per_series.len());
        for (i, r) in per_series.into_iter().enumerate() {
            let (vals, n) = r?;
            decoded += n;
            if let Some(vals) = vals {
                kept.push((i, vals));
            }
        }
        self.account(decoded)?;
        let labels = set.labels();
        Ok(kept.into_iter().map(|(i, vals)| Series { labels: labels[i].clone(), vals }).collect())
    }

    /// Evaluates a range-vector expression (matrix selector or subquery) for use by a function.
    pub fn range_arg(&mut self, e: &Expr, steps: &Steps) -> Result<RangeArg<'a>> {
        self.range_arg_hinted(e, steps, None)
    }

    /// Like [`Self::range_arg`], telling storage which rollup aggregate would serve the calling
    /// function unchanged (see `range_functions::rollup_for`), so long ranges can use rollups.
    pub fn range_arg_hinted(&mut self, e: &Expr, steps: &Steps, func: Option<RollupFunc>) -> Result<RangeArg<'a>> {
        match unwrap_parens(e) {
            Expr::MatrixSelector(ms) => self.matrix_selector(ms, steps, func),
            Expr::Subquery(sq) => self.subquery(sq, steps),
            other => Err(QueryError::Parse(format!("expected range vector, got {}", other.value_type()))),
        }
    }

    fn ref_bounds(&self, at: Option<i64>, offset: i64, steps: &Steps) -> (i64, i64) {
        match at {
            Some(a) => (a.saturating_sub(offset), a.saturating_sub(offset)),
            None => (steps.start.saturating_sub(offset), steps.end.saturating_sub(offset)),
        }
    }

    fn matrix_selector(
        &mut self,
        ms: &MatrixSelector,
        steps: &Steps,
        func: Option<RollupFunc>,
    ) -> Result<RangeArg<'a>> {
        let m = matchers(&ms.vs)?;
        let range = ms.range.as_millis() as i64;
        let offset = offset_ms(&ms.vs.offset);
        let at = at_ms(&ms.vs.at, self.query_start, self.query_end);
        let (min_ref, max_ref) = self.ref_bounds(at, offset, steps);
        let hints = SelectHints { step_ms: steps.step, range_ms: range, func };
        // Decoded lazily: the consumer accounts the samples as storage decodes them.
        let set = self.store.select_lazy(&m, min_ref.saturating_sub(range), max_ref, &hints)?;
        Ok(RangeArg { data: RangeData::Lazy(set), range, offset, at })
    }

    /// A subquery: the inner expression evaluated at steps aligned to multiples of the
    /// subquery step, covering every window the outer steps will ask for.
    fn subquery(&mut self, sq: &SubqueryExpr, steps: &Steps) -> Result<RangeArg<'a>> {
        let range = sq.range.as_millis() as i64;
        let step = sq.step.map(|d| d.as_millis() as i64).unwrap_or(DEFAULT_SUBQUERY_STEP_MS).max(1);
        let offset = offset_ms(&sq.offset);
        let at = at_ms(&sq.at, self.query_start, self.query_end);
        let (min_ref, max_ref) = self.ref_bounds(at, offset, steps);
        let lo = min_ref.saturating_sub(range);
        let mut start = lo.div_euclid(step).saturating_mul(step);
        if start < lo {
            start = start.saturating_add(step);
        }
        let inner = Steps { start, end: max_ref, step };
        if inner.len() > self.max_samples {
            return Err(QueryError::TooManySamples);
        }
        let series = self
            .eval_vector(&sq.expr, &inner)?
            .into_iter()
            .map(|s| RawSeries {
                labels: s.labels,
                points: s.vals.iter().enumerate().filter_map(|(i, v)| v.map(|v| (inner.ts(i), v))).collect(),
            })
            .collect();
        Ok(RangeArg { data: RangeData::Points(series), range, offset, at })
    }
}

/// A series' value at each step, or `None` when it has none at any step.
type StepValues = Option<Vec<Option<f64>>>;

/// One series' value at each step of an instant selector: the newest sample within the lookback
/// window, unless that sample is a staleness marker; with `timestamps`, that sample's time in
/// seconds. `None` when no step has a value.
fn step_values(
    pts: &[Sample],
    steps: &Steps,
    at: Option<i64>,
    offset: i64,
    lookback: i64,
    timestamps: bool,
) -> StepValues {
    let mut vals = vec![None; steps.len()];
    let mut any = false;
    // Steps ascend, so the newest sample at or before each step only moves forward.
    let mut hi = 0;
    for (i, ts) in steps.iter() {
        let r = at.unwrap_or(ts).saturating_sub(offset);
        while hi < pts.len() && pts[hi].timestamp_ms <= r {
            hi += 1;
        }
        if hi == 0 {
            continue;
        }
        let p = pts[hi - 1];
        if p.timestamp_ms < r.saturating_sub(lookback) || is_stale_nan(p.value) {
            continue;
        }
        vals[i] = Some(if timestamps { p.timestamp_ms as f64 / 1000.0 } else { p.value });
        any = true;
    }
    any.then_some(vals)
}
