//! PromQL functions: dispatch by name, element-wise functions, label manipulation, sorting,
//! absent(), histogram_quantile() and the date functions. Range-vector functions
//! (rate, *_over_time, …) live in `range_functions`.

use super::error::{QueryError, Result};
use super::eval::{Evaluator, unwrap_parens};
use super::range_functions;
use super::value::{Series, Steps, Value, VectorBuilder, go_max, go_min, merge_same_labels};
use chrono::{DateTime, Datelike, Timelike, Utc};
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{Call, Expr};
use std::collections::HashMap;
use tingzhen_core::Labels;
use tingzhen_core::labels::{METRIC_NAME, is_valid_label_name};

pub(crate) fn eval(ev: &mut Evaluator<'_>, call: &Call, steps: &Steps) -> Result<Value> {
    let name = call.func.name;
    let args: Vec<&Expr> = call.args.args.iter().map(|a| unwrap_parens(a)).collect();
    if let Some(v) = range_functions::eval(ev, name, &args, steps)? {
        return Ok(v);
    }
    let n = steps.len();
    match name {
        "time" => Ok(Value::Scalar(steps.iter().map(|(_, t)| t as f64 / 1000.0).collect())),
        "pi" => Ok(Value::Scalar(vec![std::f64::consts::PI; n])),
        "vector" => {
            let v = ev.eval_scalar(args[0], steps)?;
            Ok(Value::Vector(vec![Series { labels: Labels::new(), vals: v.into_iter().map(Some).collect() }]))
        }
        "scalar" => {
            let series = ev.eval_vector(args[0], steps)?;
            let mut out = vec![f64::NAN; n];
            for (i, slot) in out.iter_mut().enumerate() {
                let mut present = series.iter().filter_map(|s| s.vals[i]);
                if let (Some(v), None) = (present.next(), present.next()) {
                    *slot = v;
                }
            }
            Ok(Value::Scalar(out))
        }
        "timestamp" => {
            let series = if let Expr::VectorSelector(vs) = args[0] {
                ev.vector_selector(vs, steps, true)?
            } else {
                let mut s = ev.eval_vector(args[0], steps)?;
                for s in &mut s {
                    for (i, v) in s.vals.iter_mut().enumerate() {
                        if v.is_some() {
                            *v = Some(steps.ts(i) as f64 / 1000.0);
                        }
                    }
                }
                s
            };
            let out = series.into_iter().map(|s| Series { labels: s.labels.without_metric_name(), vals: s.vals });
            Ok(Value::Vector(merge_same_labels(out.collect())?))
        }
        "absent" => absent(ev, args[0], steps),
        "sort" | "sort_desc" => sort(ev, args[0], steps, name == "sort_desc"),
        "label_replace" => label_replace(ev, &args, steps),
        "label_join" => label_join(ev, &args, steps),
        "histogram_quantile" => histogram_quantile(ev, &args, steps),
        "round" => {
            let to_nearest = if args.len() > 1 { Some(ev.eval_scalar(args[1], steps)?) } else { None };
            elementwise(ev, args[0], steps, |v, i| {
                let inv = 1.0 / to_nearest.as_ref().map_or(1.0, |t| t[i]);
                Some((v * inv + 0.5).floor() / inv)
            })
        }
        "clamp" => {
            let (lo, hi) = (ev.eval_scalar(args[1], steps)?, ev.eval_scalar(args[2], steps)?);
            elementwise(ev, args[0], steps, |v, i| (hi[i] >= lo[i]).then(|| go_max(lo[i], go_min(hi[i], v))))
        }
        "clamp_min" => {
            let lo = ev.eval_scalar(args[1], steps)?;
            elementwise(ev, args[0], steps, |v, i| Some(go_max(v, lo[i])))
        }
        "clamp_max" => {
            let hi = ev.eval_scalar(args[1], steps)?;
            elementwise(ev, args[0], steps, |v, i| Some(go_min(v, hi[i])))
        }
        "minute" | "hour" | "day_of_week" | "day_of_month" | "day_of_year" | "days_in_month" | "month" | "year" => {
            date_function(ev, name, &args, steps)
        }
        _ => match math_function(name) {
            Some(f) => elementwise(ev, args[0], steps, |v, _| Some(f(v))),
            None => Err(QueryError::Parse(format!("function {name:?} is not supported"))),
        },
    }
}

fn math_function(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sgn" => |v: f64| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        "acos" => f64::acos,
        "acosh" => f64::acosh,
        "asin" => f64::asin,
        "asinh" => f64::asinh,
        "atan" => f64::atan,
        "atanh" => f64::atanh,
        "cos" => f64::cos,
        "cosh" => f64::cosh,
        "sin" => f64::sin,
        "sinh" => f64::sinh,
        "tan" => f64::tan,
        "tanh" => f64::tanh,
        "deg" => |v: f64| v * 180.0 / std::f64::consts::PI,
        "rad" => |v: f64| v * std::f64::consts::PI / 180.0,
        _ => return None,
    })
}

/// Applies `f(value, step)` to every sample, dropping the metric name as Prometheus does
/// for every function that changes values.
fn elementwise(
    ev: &mut Evaluator<'_>,
    arg: &Expr,
    steps: &Steps,
    f: impl Fn(f64, usize) -> Option<f64>,
) -> Result<Value> {
    let series = ev.eval_vector(arg, steps)?;
    let out = series
        .into_iter()
        .map(|s| Series {
            labels: s.labels.without_metric_name(),
            vals: s.vals.iter().enumerate().map(|(i, v)| v.and_then(|v| f(v, i))).collect(),
        })
        .collect();
    Ok(Value::Vector(merge_same_labels(out)?))
}

/// The labels `absent()` gives its output: the equality matchers of a plain selector, minus
/// any label that is also matched another way.
pub(crate) fn absent_labels(arg: &Expr) -> Labels {
    let vs = match unwrap_parens(arg) {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::new(),
    };
    let mut out = Labels::new();
    let mut has = std::collections::HashSet::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, PMatchOp::Equal) && !has.contains(&m.name) {
            out.set(&m.name, m.value.clone());
            has.insert(m.name.clone());
        } else {
            out.remove(&m.name);
        }
    }
    out
}

fn absent(ev: &mut Evaluator<'_>, arg: &Expr, steps: &Steps) -> Result<Value> {
    let series = ev.eval_vector(arg, steps)?;
    let vals: Vec<Option<f64>> =
        (0..steps.len()).map(|i| (!series.iter().any(|s| s.vals[i].is_some())).then_some(1.0)).collect();
    if vals.iter().all(Option::is_none) {
        return Ok(Value::Vector(Vec::new()));
    }
    Ok(Value::Vector(vec![Series { labels: absent_labels(arg), vals }]))
}

/// Orders series by their value at the first step; only an instant query's order is
/// visible (range results are sorted by labels). NaN goes last either way.
fn sort(ev: &mut Evaluator<'_>, arg: &Expr, steps: &Steps, desc: bool) -> Result<Value> {
    let mut series = ev.eval_vector(arg, steps)?;
    if steps.len() == 1 {
        series.sort_by(|a, b| {
            let (x, y) = (a.vals[0].unwrap_or(f64::NAN), b.vals[0].unwrap_or(f64::NAN));
            match (x.is_nan(), y.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ if desc => y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal),
                _ => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
            }
        });
    }
    Ok(Value::Vector(series))
}

fn label_replace(ev: &mut Evaluator<'_>, args: &[&Expr], steps: &Steps) -> Result<Value> {
    let dst = ev.eval_string(args[1], steps)?;
    let repl = ev.eval_string(args[2], steps)?;
    let src = ev.eval_string(args[3], steps)?;
    let regex_str = ev.eval_string(args[4], steps)?;
    let re = regex::Regex::new(&format!("^(?s:{regex_str})$"))
        .map_err(|_| QueryError::exec(format!("invalid regular expression in label_replace(): {regex_str}")))?;
    if !is_valid_label_name(&dst) {
        return Err(QueryError::exec(format!("invalid destination label name in label_replace(): {dst}")));
    }
    let series = ev.eval_vector(args[0], steps)?;
    let out = series
        .into_iter()
        .map(|mut s| {
            let src_val = s.labels.get(&src).unwrap_or("").to_string();
            if let Some(caps) = re.captures(&src_val) {
                let mut res = String::new();
                caps.expand(&repl, &mut res);
                s.labels.set(&dst, res);
            }
            s
        })
        .collect();
    Ok(Value::Vector(merge_same_labels(out)?))
}

fn label_join(ev: &mut Evaluator<'_>, args: &[&Expr], steps: &Steps) -> Result<Value> {
    let dst = ev.eval_string(args[1], steps)?;
    let sep = ev.eval_string(args[2], steps)?;
    let mut srcs = Vec::new();
    for a in &args[3..] {
        let s = ev.eval_string(a, steps)?;
        if !is_valid_label_name(&s) {
            return Err(QueryError::exec(format!("invalid source label name in label_join(): {s}")));
        }
        srcs.push(s);
    }
    if !is_valid_label_name(&dst) {
        return Err(QueryError::exec(format!("invalid destination label name in label_join(): {dst}")));
    }
    let series = ev.eval_vector(args[0], steps)?;
    let out = series
        .into_iter()
        .map(|mut s| {
            let joined = srcs.iter().map(|l| s.labels.get(l).unwrap_or("")).collect::<Vec<_>>().join(&sep);
            s.labels.set(&dst, joined);
            s
        })
        .collect();
    Ok(Value::Vector(merge_same_labels(out)?))
}

fn histogram_quantile(ev: &mut Evaluator<'_>, args: &[&Expr], steps: &Steps) -> Result<Value> {
    let q = ev.eval_scalar(args[0], steps)?;
    let series = ev.eval_vector(args[1], steps)?;
    // Buckets group by every label but `le` (the metric name included, as in Prometheus);
    // the output drops both.
    let mut groups: Vec<(Labels, Vec<(usize, f64)>)> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for (si, s) in series.iter().enumerate() {
        let Some(le) = s.labels.get("le").and_then(parse_go_float) else { continue };
        let mut key = s.labels.clone();
        key.remove("le");
        let gi = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key.without_metric_name(), Vec::new()));
            groups.len() - 1
        });
        groups[gi].1.push((si, le));
    }
    let mut b = VectorBuilder::new(steps.len());
    // Output series resolved once per group, and one bucket buffer for all steps.
    let mut out_idx: Vec<Option<usize>> = vec![None; groups.len()];
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for (i, &q) in q.iter().enumerate() {
        for (gi, (labels, members)) in groups.iter().enumerate() {
            buckets.clear();
            buckets.extend(members.iter().filter_map(|&(si, le)| series[si].vals[i].map(|v| (le, v))));
            if !buckets.is_empty() {
                let idx = *out_idx[gi].get_or_insert_with(|| b.series_index(labels.clone()));
                b.push_at(i, idx, bucket_quantile(q, &mut buckets))?;
            }
        }
    }
    Ok(Value::Vector(b.finish()))
}

/// Go's `strconv.ParseFloat` for bucket bounds: Rust's parser plus Go's `Inf`/`+Inf` spellings.
fn parse_go_float(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().or_else(|| match s.to_ascii_lowercase().as_str() {
        "+inf" | "+infinity" => Some(f64::INFINITY),
        _ => None,
    })
}

/// Prometheus's `bucketQuantile` over `(upper bound, cumulative count)` pairs.
fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Coalesce equal bounds, then force the counts to be monotonic.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(le, c) in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == le => last.1 += c,
            _ => merged.push((le, c)),
        }
    }
    let mut max = f64::NEG_INFINITY;
    for b in merged.iter_mut() {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = merged[..merged.len() - 1].partition_point(|x| x.1 < rank);
    if b == merged.len() - 1 {
        return merged[merged.len() - 2].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let (mut start, end, mut count) = (0.0, merged[b].0, merged[b].1);
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

fn date_function(ev: &mut Evaluator<'_>, name: &str, args: &[&Expr], steps: &Steps) -> Result<Value> {
    let f = |secs: f64| -> f64 {
        // Go converts with int64(v); out-of-range values give nonsense there, NaN here.
        if !secs.is_finite() {
            return f64::NAN;
        }
        let Some(t) = DateTime::<Utc>::from_timestamp(secs as i64, 0) else { return f64::NAN };
        match name {
            "minute" => t.minute() as f64,
            "hour" => t.hour() as f64,
            "day_of_week" => t.weekday().num_days_from_sunday() as f64,
            "day_of_month" => t.day() as f64,
            "day_of_year" => t.ordinal() as f64,
            "month" => t.month() as f64,
            "year" => t.year() as f64,
            _ => days_in_month(t.year(), t.month()) as f64,
        }
    };
    if args.is_empty() {
        let vals = steps.iter().map(|(_, ts)| Some(f(ts.div_euclid(1000) as f64))).collect();
        return Ok(Value::Vector(vec![Series { labels: Labels::new(), vals }]));
    }
    elementwise(ev, args[0], steps, |v, _| Some(f(v)))
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let (ny, nm) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    let first_next = chrono::NaiveDate::from_ymd_opt(ny, nm, 1);
    let first = chrono::NaiveDate::from_ymd_opt(year, month, 1);
    match (first, first_next) {
        (Some(a), Some(b)) => (b - a).num_days() as u32,
        _ => 0,
    }
}
