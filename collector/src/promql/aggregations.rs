//! Aggregation operators (sum, avg, count, group, min, max, stddev, stdvar, quantile, topk,
//! bottomk, count_values) with `by`/`without`, step by step as Prometheus computes them.

use super::error::{QueryError, Result};
use super::eval::Evaluator;
use super::value::{Series, Steps, Value, VectorBuilder, format_float, quantile};
use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_MAX, T_MIN, T_QUANTILE, T_STDDEV, T_STDVAR, T_SUM, T_TOPK,
};
use promql_parser::parser::{AggregateExpr, LabelModifier};
use std::collections::HashMap;
use tingzhen_core::Labels;
use tingzhen_core::labels::{METRIC_NAME, is_valid_label_name};

struct Grouping {
    without: bool,
    labels: Vec<String>,
}

impl Grouping {
    fn apply(&self, l: &Labels) -> Labels {
        if self.without {
            let mut out = l.clone();
            out.remove(METRIC_NAME);
            for g in &self.labels {
                out.remove(g);
            }
            out
        } else {
            Labels::from_pairs(self.labels.iter().filter_map(|g| l.get(g).map(|v| (g.clone(), v.to_string()))))
        }
    }
}

pub(crate) fn eval(ev: &mut Evaluator<'_>, a: &AggregateExpr, steps: &Steps) -> Result<Value> {
    let op = a.op.id();
    let n = steps.len();
    let mut grouping = match &a.modifier {
        None => Grouping { without: false, labels: Vec::new() },
        Some(LabelModifier::Include(l)) => Grouping { without: false, labels: l.labels.clone() },
        Some(LabelModifier::Exclude(l)) => Grouping { without: true, labels: l.labels.clone() },
    };
    let param = match (&a.param, op) {
        (Some(p), T_TOPK | T_BOTTOMK | T_QUANTILE) => Some(ev.eval_scalar(p, steps)?),
        (_, T_TOPK | T_BOTTOMK | T_QUANTILE) => return Err(QueryError::Parse("aggregation needs a parameter".into())),
        _ => None,
    };
    let value_label = match (&a.param, op) {
        (Some(p), T_COUNT_VALUES) => {
            let l = ev.eval_string(p, steps)?;
            if !is_valid_label_name(&l) {
                return Err(QueryError::exec(format!("invalid label name {l:?}")));
            }
            if !grouping.without {
                grouping.labels.push(l.clone());
            }
            Some(l)
        }
        _ => None,
    };
    let series = ev.eval_vector(&a.expr, steps)?;
    let mut out = VectorBuilder::new(n);
    match op {
        T_TOPK | T_BOTTOMK => top_bottom(&series, &grouping, param.as_deref().unwrap_or(&[]), op == T_TOPK, &mut out)?,
        T_COUNT_VALUES => count_values(&series, &grouping, value_label.as_deref().unwrap_or(""), n, &mut out)?,
        _ => simple(&series, &grouping, op, param.as_deref(), n, &mut out)?,
    }
    Ok(Value::Vector(out.finish()))
}

/// Groups series once (labels do not change between steps); returns each series' group and
/// the groups' labels.
fn group_series(series: &[Series], grouping: &Grouping) -> (Vec<usize>, Vec<Labels>) {
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups = Vec::new();
    let of = series
        .iter()
        .map(|s| {
            let g = grouping.apply(&s.labels);
            *index.entry(g.clone()).or_insert_with(|| {
                groups.push(g);
                groups.len() - 1
            })
        })
        .collect();
    (of, groups)
}

fn simple(
    series: &[Series],
    grouping: &Grouping,
    op: u16,
    param: Option<&[f64]>,
    n: usize,
    out: &mut VectorBuilder,
) -> Result<()> {
    if op == T_QUANTILE {
        return quantiles(series, grouping, param, n, out);
    }
    if !matches!(op, T_SUM | T_AVG | T_COUNT | T_GROUP | T_MAX | T_MIN | T_STDDEV | T_STDVAR) {
        return Err(QueryError::Parse(format!("unsupported aggregation operator {op}")));
    }
    let (group_of, groups) = group_series(series, grouping);
    // Series by series rather than step by step: each input series is read once, front to
    // back, instead of one value from every series per step (the step-major walk spent most of
    // its time on cache misses). Each (group, step) still sees its series in input order, so
    // every sum, mean and variance is computed in the same order as Prometheus's.
    let mut acc: Vec<Vec<Option<f64>>> = vec![vec![None; n]; groups.len()];
    let running_mean = matches!(op, T_AVG | T_STDDEV | T_STDVAR);
    let (mut mean, mut count): (Vec<Vec<f64>>, Vec<Vec<f64>>) = if running_mean {
        (vec![vec![0.0; n]; groups.len()], vec![vec![0.0; n]; groups.len()])
    } else {
        (Vec::new(), Vec::new())
    };
    // Where each group first has a value, as (step, series): the step-major walk created the
    // output series in that order, and later operators see outputs in it.
    let mut first = vec![(usize::MAX, usize::MAX); groups.len()];
    for (si, s) in series.iter().enumerate() {
        let g = group_of[si];
        let values = &mut acc[g];
        for (i, v) in s.vals.iter().enumerate() {
            let Some(v) = *v else { continue };
            let Some(a) = &mut values[i] else {
                if i < first[g].0 {
                    first[g] = (i, si);
                }
                values[i] = Some(match op {
                    T_COUNT | T_GROUP => 1.0,
                    T_STDDEV | T_STDVAR => 0.0,
                    _ => v,
                });
                if running_mean {
                    mean[g][i] = v;
                    count[g][i] = 1.0;
                }
                continue;
            };
            match op {
                T_SUM => *a += v,
                T_AVG => {
                    let (m, c) = (&mut mean[g][i], &mut count[g][i]);
                    *c += 1.0;
                    if m.is_infinite() {
                        if v.is_infinite() && (*m > 0.0) == (v > 0.0) {
                            continue;
                        }
                        if !v.is_infinite() && !v.is_nan() {
                            continue;
                        }
                    }
                    *m += v / *c - *m / *c;
                }
                T_COUNT => *a += 1.0,
                T_GROUP => {}
                T_MAX => {
                    if *a < v || a.is_nan() {
                        *a = v;
                    }
                }
                T_MIN => {
                    if *a > v || a.is_nan() {
                        *a = v;
                    }
                }
                // T_STDDEV | T_STDVAR (checked above)
                _ => {
                    let (m, c) = (&mut mean[g][i], &mut count[g][i]);
                    *c += 1.0;
                    let delta = v - *m;
                    *m += delta / *c;
                    *a += delta * (v - *m);
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..groups.len()).filter(|&g| first[g].0 != usize::MAX).collect();
    order.sort_unstable_by_key(|&g| first[g]);
    for g in order {
        let idx = out.series_index(groups[g].clone());
        for (i, a) in acc[g].iter().enumerate() {
            let Some(a) = *a else { continue };
            let v = match op {
                T_AVG => mean[g][i],
                T_STDVAR => a / count[g][i],
                T_STDDEV => (a / count[g][i]).sqrt(),
                _ => a,
            };
            out.push_at(i, idx, v)?;
        }
    }
    Ok(())
}

/// `quantile`: every group's values at a step are collected, then ranked.
fn quantiles(
    series: &[Series],
    grouping: &Grouping,
    param: Option<&[f64]>,
    n: usize,
    out: &mut VectorBuilder,
) -> Result<()> {
    let (group_of, groups) = group_series(series, grouping);
    let mut values: Vec<Vec<f64>> = vec![Vec::new(); groups.len()];
    let mut out_idx: Vec<Option<usize>> = vec![None; groups.len()];
    let mut order = Vec::new();
    for i in 0..n {
        order.clear();
        for (si, s) in series.iter().enumerate() {
            let Some(v) = s.vals[i] else { continue };
            let g = group_of[si];
            if values[g].is_empty() {
                order.push(g);
            }
            values[g].push(v);
        }
        for &g in &order {
            let v = quantile(param.map_or(f64::NAN, |p| p[i]), &mut values[g]);
            values[g].clear();
            let idx = *out_idx[g].get_or_insert_with(|| out.series_index(groups[g].clone()));
            out.push_at(i, idx, v)?;
        }
    }
    Ok(())
}

/// Go's `container/heap` over (value, series) with topk's or bottomk's ordering, so ties
/// resolve exactly as in Prometheus.
struct GoHeap {
    items: Vec<(f64, usize)>,
    top: bool,
}

impl GoHeap {
    fn less(&self, i: usize, j: usize) -> bool {
        let (a, b) = (self.items[i].0, self.items[j].0);
        if a.is_nan() {
            return true;
        }
        if self.top { a < b } else { a > b }
    }

    fn up(&mut self, mut j: usize) {
        while j > 0 {
            let i = (j - 1) / 2;
            if !self.less(j, i) {
                break;
            }
            self.items.swap(i, j);
            j = i;
        }
    }

    fn down(&mut self, i0: usize, n: usize) {
        let mut i = i0;
        loop {
            let j1 = 2 * i + 1;
            if j1 >= n {
                break;
            }
            let mut j = j1;
            if j1 + 1 < n && self.less(j1 + 1, j1) {
                j = j1 + 1;
            }
            if !self.less(j, i) {
                break;
            }
            self.items.swap(i, j);
            i = j;
        }
    }

    fn push(&mut self, item: (f64, usize)) {
        self.items.push(item);
        self.up(self.items.len() - 1);
    }

    fn pop(&mut self) {
        let n = self.items.len() - 1;
        self.items.swap(0, n);
        self.down(0, n);
        self.items.pop();
    }
}

fn top_bottom(series: &[Series], grouping: &Grouping, ks: &[f64], top: bool, out: &mut VectorBuilder) -> Result<()> {
    let (group_of, groups) = group_series(series, grouping);
    // Each input series' output series, resolved when it first makes the cut.
    let mut out_idx: Vec<Option<usize>> = vec![None; series.len()];
    for (i, &kf) in ks.iter().enumerate() {
        if !(i64::MIN as f64..=i64::MAX as f64).contains(&kf) {
            return Err(QueryError::exec(format!("Scalar value {} overflows int64", format_float(kf))));
        }
        let k = kf as i64;
        if k < 1 {
            continue;
        }
        let mut heaps: Vec<Option<GoHeap>> = (0..groups.len()).map(|_| None).collect();
        let mut order = Vec::new();
        for (si, s) in series.iter().enumerate() {
            let Some(v) = s.vals[i] else { continue };
            let g = group_of[si];
            match &mut heaps[g] {
                slot @ None => {
                    order.push(g);
                    *slot = Some(GoHeap { items: vec![(v, si)], top });
                }
                Some(h) => {
                    // Prometheus 2.x: a full heap gives up its top when the new value beats
                    // it, or whenever the top is NaN.
                    let head = h.items[0].0;
                    let full = h.items.len() as i64 >= k;
                    if !full || (if top { head < v } else { head > v }) || head.is_nan() {
                        if full {
                            if k == 1 {
                                h.items[0] = (v, si);
                                continue;
                            }
                            h.pop();
                        }
                        h.push((v, si));
                    }
                }
            }
        }
        for g in order {
            let Some(mut h) = heaps[g].take() else { continue };
            h.items.sort_by(|a, b| {
                let o = a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal);
                if top { o.reverse() } else { o }
            });
            for (v, si) in h.items {
                let idx = *out_idx[si].get_or_insert_with(|| out.series_index(series[si].labels.clone()));
                out.push_at(i, idx, v)?;
            }
        }
    }
    Ok(())
}

fn count_values(series: &[Series], grouping: &Grouping, label: &str, n: usize, out: &mut VectorBuilder) -> Result<()> {
    for i in 0..n {
        let mut counts: Vec<(Labels, f64)> = Vec::new();
        let mut index: HashMap<Labels, usize> = HashMap::new();
        for s in series {
            let Some(v) = s.vals[i] else { continue };
            let mut l = s.labels.clone();
            l.set(label, format_float(v));
            let g = grouping.apply(&l);
            match index.get(&g) {
                Some(&idx) => counts[idx].1 += 1.0,
                None => {
                    index.insert(g.clone(), counts.len());
                    counts.push((g, 1.0));
                }
            }
        }
        for (l, c) in counts {
            out.push(i, l, c)?;
        }
    }
    Ok(())
}
