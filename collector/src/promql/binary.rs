//! Binary operators: arithmetic, comparison (with and without `bool`) and set operators
//! between scalars and vectors, with `on`/`ignoring` and `group_left`/`group_right`
//! matching, and Prometheus's errors for ambiguous matches.

use super::error::{QueryError, Result};
use super::eval::Evaluator;
use super::value::{Series, Steps, Value, VectorBuilder, merge_same_labels};
use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD, T_MUL, T_NEQ, T_POW,
    T_SUB,
};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};
use std::collections::{HashMap, HashSet};
use tingzhen_core::Labels;
use tingzhen_core::labels::METRIC_NAME;

pub(crate) fn eval(ev: &mut Evaluator<'_>, b: &BinaryExpr, steps: &Steps) -> Result<Value> {
    let op = b.op.id();
    let return_bool = b.return_bool();
    if b.modifier.as_ref().is_some_and(|m| m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some()) {
        return Err(QueryError::Parse("fill modifiers are not supported".into()));
    }
    let lhs = ev.eval(&b.lhs, steps)?;
    let rhs = ev.eval(&b.rhs, steps)?;
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => Ok(Value::Scalar(
            l.iter()
                .zip(&r)
                .map(|(&a, &b)| {
                    let (v, keep) = elem_op(op, a, b);
                    if is_comparison(op) { if keep { 1.0 } else { 0.0 } } else { v }
                })
                .collect(),
        )),
        (Value::Vector(l), Value::Scalar(r)) => vector_scalar(l, &r, op, return_bool, false),
        (Value::Scalar(l), Value::Vector(r)) => vector_scalar(r, &l, op, return_bool, true),
        (Value::Vector(l), Value::Vector(r)) => {
            let m = Matching::of(b);
            match op {
                T_LAND | T_LUNLESS => Ok(Value::Vector(and_unless(l, &r, &m, op == T_LAND, steps.len()))),
                T_LOR => Ok(Value::Vector(or(l, r, &m, steps.len())?)),
                _ => Ok(Value::Vector(vector_vector(&l, &r, &m, op, return_bool, steps.len())?)),
            }
        }
        (l, r) => Err(QueryError::Parse(format!(
            "binary expression must contain only scalar and instant vector types, got {} and {}",
            l.type_name(),
            r.type_name()
        ))),
    }
}

fn is_comparison(op: u16) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

fn drops_metric_name(op: u16) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_POW | T_MOD)
}

/// Prometheus's `vectorElemBinop`: the value and whether a comparison keeps the element.
fn elem_op(op: u16, l: f64, r: f64) -> (f64, bool) {
    match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_POW => (l.powf(r), true),
        T_MOD => (l % r, true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => (f64::NAN, false),
    }
}

fn vector_scalar(series: Vec<Series>, scalar: &[f64], op: u16, return_bool: bool, swap: bool) -> Result<Value> {
    let drop = drops_metric_name(op) || return_bool;
    let out = series
        .into_iter()
        .map(|s| {
            let vals = s
                .vals
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let v = (*v)?;
                    let (l, r) = if swap { (scalar[i], v) } else { (v, scalar[i]) };
                    let (mut value, keep) = elem_op(op, l, r);
                    // A comparison keeps the vector's value even when the scalar is on the left.
                    if is_comparison(op) && swap {
                        value = r;
                    }
                    if return_bool {
                        return Some(if keep { 1.0 } else { 0.0 });
                    }
                    keep.then_some(value)
                })
                .collect();
            Series { labels: if drop { s.labels.without_metric_name() } else { s.labels }, vals }
        })
        .collect();
    Ok(Value::Vector(merge_same_labels(out)?))
}

struct Matching {
    on: bool,
    labels: Vec<String>,
    card: VectorMatchCardinality,
}

impl Matching {
    fn of(b: &BinaryExpr) -> Self {
        let (on, labels) = match b.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
            Some(LabelModifier::Include(l)) => (true, l.labels.clone()),
            Some(LabelModifier::Exclude(l)) => (false, l.labels.clone()),
            None => (false, Vec::new()),
        };
        let card = b.modifier.as_ref().map_or(VectorMatchCardinality::OneToOne, |m| m.card.clone());
        Matching { on, labels, card }
    }

    /// The labels two series must agree on to match.
    fn match_labels(&self, l: &Labels) -> Labels {
        if self.on {
            Labels::from_pairs(self.labels.iter().filter_map(|n| l.get(n).map(|v| (n.clone(), v.to_string()))))
        } else {
            let mut out = l.without_metric_name();
            for n in &self.labels {
                out.remove(n);
            }
            out
        }
    }

    fn signatures(&self, series: &[Series]) -> Vec<Labels> {
        series.iter().map(|s| self.match_labels(&s.labels)).collect()
    }

    fn include(&self) -> &[String] {
        match &self.card {
            VectorMatchCardinality::ManyToOne(l) | VectorMatchCardinality::OneToMany(l) => &l.labels,
            _ => &[],
        }
    }
}

/// Prometheus's `labels.String()`: every label inside the braces, the name included.
fn prom_string(l: &Labels) -> String {
    let inner: Vec<String> = l.iter().map(|l| format!("{}={:?}", l.name, l.value)).collect();
    format!("{{{}}}", inner.join(", "))
}

fn vector_vector(
    lhs: &[Series],
    rhs: &[Series],
    m: &Matching,
    op: u16,
    return_bool: bool,
    n: usize,
) -> Result<Vec<Series>> {
    let one_to_many = matches!(m.card, VectorMatchCardinality::OneToMany(_));
    // Like Prometheus, treat group_right as group_left with the sides swapped.
    let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    let (many_sigs, one_sigs) = (m.signatures(many), m.signatures(one));
    // Signatures and output label sets are resolved to integers once; each step then works on
    // plain arrays. (Hashing and cloning label sets at every step made a day-long range query
    // of `a / b` several times slower than the selectors feeding it.)
    let mut sig_ids: HashMap<&Labels, usize> = HashMap::new();
    let mut intern = |l| {
        let next = sig_ids.len();
        *sig_ids.entry(l).or_insert(next)
    };
    let many_sig: Vec<usize> = many_sigs.iter().map(&mut intern).collect();
    let one_sig: Vec<usize> = one_sigs.iter().map(&mut intern).collect();
    let nsig = sig_ids.len();
    let mut out_index: HashMap<(usize, usize), usize> = HashMap::new();
    let mut out = VectorBuilder::new(n);
    // Per step: the one-side series holding each signature (usize::MAX = none yet), and for
    // each output series the (step + 1, signature) that last produced it.
    let mut one_by_sig = vec![usize::MAX; nsig];
    let mut touched: Vec<usize> = Vec::new();
    let mut sig_matched_at = vec![0usize; nsig];
    let mut produced_at: Vec<(usize, usize)> = Vec::new();
    for i in 0..n {
        for &sig in &touched {
            one_by_sig[sig] = usize::MAX;
        }
        touched.clear();
        for (oi, s) in one.iter().enumerate() {
            if s.vals[i].is_none() {
                continue;
            }
            let sig = one_sig[oi];
            let prev = one_by_sig[sig];
            if prev != usize::MAX {
                let side = if one_to_many { "left" } else { "right" };
                return Err(QueryError::exec(format!(
                    "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                    prom_string(&one_sigs[oi]),
                    prom_string(&s.labels),
                    prom_string(&one[prev].labels)
                )));
            }
            one_by_sig[sig] = oi;
            touched.push(sig);
        }
        for (mi, s) in many.iter().enumerate() {
            let Some(mv) = s.vals[i] else { continue };
            let sig = many_sig[mi];
            let oi = one_by_sig[sig];
            if oi == usize::MAX {
                continue;
            }
            let Some(ov) = one[oi].vals[i] else { continue };
            let (l, r) = if one_to_many { (ov, mv) } else { (mv, ov) };
            let (mut value, keep) = elem_op(op, l, r);
            if return_bool {
                value = if keep { 1.0 } else { 0.0 };
            } else if !keep {
                continue;
            }
            let idx = *out_index.entry((mi, oi)).or_insert_with(|| {
                let mut l = result_labels(&s.labels, &one[oi].labels, op, m);
                if return_bool {
                    l.remove(METRIC_NAME);
                }
                out.series_index(l)
            });
            if matches!(m.card, VectorMatchCardinality::OneToOne) {
                if sig_matched_at[sig] == i + 1 {
                    return Err(QueryError::exec(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                    ));
                }
                sig_matched_at[sig] = i + 1;
            } else {
                if produced_at.len() <= idx {
                    produced_at.resize(idx + 1, (0, 0));
                }
                if produced_at[idx] == (i + 1, sig) {
                    return Err(QueryError::exec(
                        "multiple matches for labels: grouping labels must ensure unique matches",
                    ));
                }
                produced_at[idx] = (i + 1, sig);
            }
            out.push_at(i, idx, value)?;
        }
    }
    Ok(out.finish())
}

/// Prometheus's `resultMetric`: the many side's labels, trimmed for one-to-one matching,
/// plus the `group_x` labels copied from the one side.
fn result_labels(many: &Labels, one: &Labels, op: u16, m: &Matching) -> Labels {
    let mut l = many.clone();
    if drops_metric_name(op) {
        l.remove(METRIC_NAME);
    }
    if matches!(m.card, VectorMatchCardinality::OneToOne) {
        if m.on {
            l = Labels::from_pairs(m.labels.iter().filter_map(|n| l.get(n).map(|v| (n.clone(), v.to_string()))));
        } else {
            for n in &m.labels {
                l.remove(n);
            }
        }
    }
    for n in m.include() {
        match one.get(n) {
            Some(v) => l.set(n, v.to_string()),
            None => l.remove(n),
        }
    }
    l
}

fn and_unless(lhs: Vec<Series>, rhs: &[Series], m: &Matching, and: bool, n: usize) -> Vec<Series> {
    let (lsigs, rsigs) = (m.signatures(&lhs), m.signatures(rhs));
    let present: Vec<HashSet<&Labels>> = (0..n)
        .map(|i| rhs.iter().zip(&rsigs).filter(|(s, _)| s.vals[i].is_some()).map(|(_, sig)| sig).collect())
        .collect();
    lhs.into_iter()
        .zip(lsigs.iter())
        .map(|(mut s, sig)| {
            for (i, v) in s.vals.iter_mut().enumerate() {
                if v.is_some() && present[i].contains(sig) != and {
                    *v = None;
                }
            }
            s
        })
        .filter(|s| s.vals.iter().any(Option::is_some))
        .collect()
}

fn or(lhs: Vec<Series>, rhs: Vec<Series>, m: &Matching, n: usize) -> Result<Vec<Series>> {
    let (lsigs, rsigs) = (m.signatures(&lhs), m.signatures(&rhs));
    let present: Vec<HashSet<&Labels>> = (0..n)
        .map(|i| lhs.iter().zip(&lsigs).filter(|(s, _)| s.vals[i].is_some()).map(|(_, sig)| sig).collect())
        .collect();
    let mut out_rhs = Vec::with_capacity(rhs.len());
    for (mut s, sig) in rhs.into_iter().zip(rsigs.iter()) {
        for (i, v) in s.vals.iter_mut().enumerate() {
            if v.is_some() && present[i].contains(sig) {
                *v = None;
            }
        }
        if s.vals.iter().any(Option::is_some) {
            out_rhs.push(s);
        }
    }
    drop(present);
    let mut out = lhs;
    out.extend(out_rhs);
    merge_same_labels(out)
}
