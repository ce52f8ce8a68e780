//! Functions over range vectors: rate/increase/delta with Prometheus's extrapolation,
//! irate/idelta, deriv/predict_linear, resets/changes, every `*_over_time`, and
//! absent_over_time.

use super::error::{QueryError, Result};
use super::eval::{Evaluator, RangeArg, WindowCursor};
use super::functions::absent_labels;
use super::value::{RawSeries, Series, Steps, Value, check_unique_labels, kahan_inc, quantile};
use crate::storage::RollupFunc;
use promql_parser::parser::Expr;

/// What a range function sees at one step besides the window's samples.
struct Window<'r> {
    /// The step's evaluation time (Prometheus's `enh.Ts`).
    ts: i64,
    /// Window bounds `[start, end]` after offset and `@`.
    start: i64,
    end: i64,
    range_secs: f64,
    /// The step's value of the function's scalar argument, if it has one.
    param: f64,
    /// rate/increase: the value before each counter reset inside the window, in order (found
    /// once per series instead of rescanning every window at every step).
    resets: &'r [f64],
}

type RangeFn = fn(&[(i64, f64)], &Window) -> Option<f64>;

/// One series' result: its values (None when it has none), window samples, samples decoded.
type SeriesOutcome = (Option<Vec<Option<f64>>>, usize, usize);

fn lookup(name: &str) -> Option<RangeFn> {
    Some(match name {
        "rate" => |p, w| extrapolated_rate(p, w, true, true),
        "increase" => |p, w| extrapolated_rate(p, w, true, false),
        "delta" => |p, w| extrapolated_rate(p, w, false, false),
        "irate" => |p, _| instant_value(p, true),
        "idelta" => |p, _| instant_value(p, false),
        "deriv" => |p, _| (p.len() >= 2).then(|| linear_regression(p, p[0].0).0),
        "predict_linear" => |p, w| {
            (p.len() >= 2).then(|| {
                let (slope, intercept) = linear_regression(p, w.ts);
                slope * w.param + intercept
            })
        },
        "resets" => |p, _| Some(p.windows(2).filter(|x| x[1].1 < x[0].1).count() as f64),
        "changes" => |p, _| {
            Some(p.windows(2).filter(|x| x[1].1 != x[0].1 && !(x[1].1.is_nan() && x[0].1.is_nan())).count() as f64)
        },
        "avg_over_time" => |p, _| Some(avg(p)),
        "sum_over_time" => |p, _| {
            let (mut sum, mut c) = (0.0, 0.0);
            for x in p {
                (sum, c) = kahan_inc(x.1, sum, c);
            }
            Some(if sum.is_infinite() { sum } else { sum + c })
        },
        "count_over_time" => |p, _| Some(p.len() as f64),
        "min_over_time" => |p, _| Some(p.iter().fold(p[0].1, |m, x| if x.1 < m || m.is_nan() { x.1 } else { m })),
        "max_over_time" => |p, _| Some(p.iter().fold(p[0].1, |m, x| if x.1 > m || m.is_nan() { x.1 } else { m })),
        "last_over_time" => |p, _| p.last().map(|x| x.1),
        "present_over_time" => |_, _| Some(1.0),
        "stddev_over_time" => |p, _| Some(variance(p).sqrt()),
        "stdvar_over_time" => |p, _| Some(variance(p)),
        "quantile_over_time" => |p, w| {
            let mut vals: Vec<f64> = p.iter().map(|x| x.1).collect();
            Some(quantile(w.param, &mut vals))
        },
        _ => return None,
    })
}

/// The rollup aggregate on which `name` gives the same answer as on raw samples (up to the
/// rollup's time granularity). Functions that count or weigh individual samples (count, avg,
/// quantile, stddev, deriv, changes, resets…) get none and always read raw data.
pub(crate) fn rollup_for(name: &str) -> Option<RollupFunc> {
    Some(match name {
        "min_over_time" => RollupFunc::Min,
        "max_over_time" => RollupFunc::Max,
        "sum_over_time" => RollupFunc::Sum,
        "last_over_time" => RollupFunc::Last,
        "rate" | "increase" => RollupFunc::Counter,
        _ => return None,
    })
}

/// Evaluates `name` when it is a range-vector function; `Ok(None)` otherwise.
pub(crate) fn eval(ev: &mut Evaluator<'_>, name: &str, args: &[&Expr], steps: &Steps) -> Result<Option<Value>> {
    if name == "absent_over_time" {
        let arg = ev.range_arg(args[0], steps)?;
        let series = arg.to_series(ev)?;
        return Ok(Some(absent_over_time(&arg, &series, args[0], steps)));
    }
    let Some(f) = lookup(name) else { return Ok(None) };
    // quantile_over_time takes its scalar first; predict_linear takes it second.
    let (range_idx, param_idx) = match name {
        "quantile_over_time" => (1, Some(0)),
        "predict_linear" => (0, Some(1)),
        _ => (0, None),
    };
    let params = match param_idx {
        Some(i) => Some(ev.eval_scalar(args[i], steps)?),
        None => None,
    };
    let arg = ev.range_arg_hinted(args[range_idx], steps, rollup_for(name))?;
    let range_secs = arg.range as f64 / 1000.0;
    let deadline = ev.deadline;
    let params = params.as_deref();
    let counter = matches!(name, "rate" | "increase");
    // Each series is decoded and evaluated on its own — on all cores when the selection is
    // large — so only the series in flight are held in memory; results come back in input
    // order and are accounted in that order.
    let per_series = super::parallel::map_ranges(arg.len(), arg.is_large(), |r| {
        let mut done: Vec<Result<SeriesOutcome>> = Vec::with_capacity(r.len());
        let (mut reset_at, mut reset_val) = (Vec::new(), Vec::new());
        let walked = arg.for_each(r, &mut |_, points, decoded| {
            if std::time::Instant::now() > deadline {
                return Err(QueryError::Timeout);
            }
            reset_at.clear();
            reset_val.clear();
            if counter {
                for (k, w) in points.windows(2).enumerate() {
                    if w[1].1 < w[0].1 {
                        reset_at.push(k + 1);
                        reset_val.push(w[0].1);
                    }
                }
            }
            let mut vals = vec![None; steps.len()];
            let mut any = false;
            let mut window_samples = 0usize;
            let mut cursor = WindowCursor::default();
            // Resets strictly inside the window, `reset_at[ra..rb]`; both ends only advance.
            let (mut ra, mut rb, mut prev_lo) = (0usize, 0usize, 0usize);
            for (i, ts) in steps.iter() {
                let w = arg.window_at(points, ts, &mut cursor);
                if w.is_empty() {
                    continue;
                }
                window_samples += w.len();
                let b = cursor.bounds();
                if b.start < prev_lo {
                    (ra, rb) = (0, 0);
                }
                prev_lo = b.start;
                while ra < reset_at.len() && reset_at[ra] <= b.start {
                    ra += 1;
                }
                rb = rb.max(ra);
                while rb < reset_at.len() && reset_at[rb] < b.end {
                    rb += 1;
                }
                let end = arg.ref_time(ts);
                let ctx = Window {
                    ts,
                    start: end - arg.range,
                    end,
                    range_secs,
                    param: params.map_or(0.0, |p| p[i]),
                    resets: &reset_val[ra..rb],
                };
                vals[i] = f(w, &ctx);
                any |= vals[i].is_some();
            }
            done.push(Ok((any.then_some(vals), window_samples, decoded)));
            Ok(())
        });
        if let Err(e) = walked {
            done.push(Err(e));
        }
        done
    });
    // The first error in input order is the one a sequential walk would have met.
    let mut results = Vec::with_capacity(per_series.len());
    let mut decoded = 0usize;
    for r in per_series {
        let (vals, window_samples, n) = r?;
        decoded += n;
        results.push((vals, window_samples));
    }
    ev.account(decoded)?;
    let mut out = Vec::new();
    for (i, (vals, window_samples)) in results.into_iter().enumerate() {
        // Prometheus holds each step's window in memory; count them against the limit.
        ev.account(window_samples)?;
        if let Some(vals) = vals {
            // Every range function drops the metric name except last_over_time.
            let l = arg.labels(i);
            let labels = if name == "last_over_time" { l.clone() } else { l.without_metric_name() };
            out.push(Series { labels, vals });
        }
    }
    check_unique_labels(&out)?;
    Ok(Some(Value::Vector(out)))
}

fn absent_over_time(arg: &RangeArg<'_>, series: &[RawSeries], expr: &Expr, steps: &Steps) -> Value {
    let vals: Vec<Option<f64>> = steps
        .iter()
        .map(|(_, ts)| (!series.iter().any(|s| !arg.window(&s.points, ts).is_empty())).then_some(1.0))
        .collect();
    if vals.iter().all(Option::is_none) {
        return Value::Vector(Vec::new());
    }
    Value::Vector(vec![Series { labels: absent_labels(expr), vals }])
}

/// Prometheus's `extrapolatedRate`: the change over the window, corrected for counter
/// resets, extrapolated towards the window edges when samples come close to them.
fn extrapolated_rate(p: &[(i64, f64)], w: &Window, is_counter: bool, is_rate: bool) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (first, last) = (p[0], p[p.len() - 1]);
    let mut result = last.1 - first.1;
    if is_counter {
        // Same additions in the same order as Prometheus's scan of the window (which also
        // compares the first sample with 0 — only a negative first value, adding 0.0).
        for &v in w.resets {
            result += v;
        }
    }
    let mut duration_to_start = (first.0 - w.start) as f64 / 1000.0;
    let duration_to_end = (w.end - last.0) as f64 / 1000.0;
    let sampled_interval = (last.0 - first.0) as f64 / 1000.0;
    let avg_between = sampled_interval / (p.len() - 1) as f64;
    if is_counter && result > 0.0 && first.1 >= 0.0 {
        // A counter cannot go below zero: do not extrapolate past the point where it would.
        let duration_to_zero = sampled_interval * (first.1 / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    let threshold = avg_between * 1.1;
    let mut extrapolate_to = sampled_interval;
    extrapolate_to += if duration_to_start < threshold { duration_to_start } else { avg_between / 2.0 };
    extrapolate_to += if duration_to_end < threshold { duration_to_end } else { avg_between / 2.0 };
    let mut factor = extrapolate_to / sampled_interval;
    if is_rate {
        factor /= w.range_secs;
    }
    Some(result * factor)
}

/// irate/idelta: the last two samples only.
fn instant_value(p: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (prev, last) = (p[p.len() - 2], p[p.len() - 1]);
    let mut result = if is_rate && last.1 < prev.1 { last.1 } else { last.1 - prev.1 };
    let interval = last.0 - prev.0;
    if interval == 0 {
        return None;
    }
    if is_rate {
        result /= interval as f64 / 1000.0;
    }
    Some(result)
}

/// Least-squares fit with x in seconds relative to `intercept_time`; returns (slope, intercept).
fn linear_regression(p: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    let (mut n, mut sum_x, mut cx, mut sum_y, mut cy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sum_xy, mut cxy, mut sum_x2, mut cx2) = (0.0, 0.0, 0.0, 0.0);
    let init_y = p[0].1;
    let mut const_y = true;
    for (i, &(t, v)) in p.iter().enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_time) as f64 / 1000.0;
        (sum_x, cx) = kahan_inc(x, sum_x, cx);
        (sum_y, cy) = kahan_inc(v, sum_y, cy);
        (sum_xy, cxy) = kahan_inc(x * v, sum_xy, cxy);
        (sum_x2, cx2) = kahan_inc(x * x, sum_x2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sum_x, sum_y, sum_xy, sum_x2) = (sum_x + cx, sum_y + cy, sum_xy + cxy, sum_x2 + cx2);
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

/// Prometheus's compensated incremental mean, which survives huge values without overflowing.
fn avg(p: &[(i64, f64)]) -> f64 {
    let (mut mean, mut count, mut c) = (0.0f64, 0.0f64, 0.0f64);
    for &(_, v) in p {
        count += 1.0;
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        (mean, c) = kahan_inc(v / count - mean / count, mean, c);
    }
    if mean.is_infinite() { mean } else { mean + c }
}

/// Population variance by Welford's method with compensated sums, as Prometheus.
fn variance(p: &[(i64, f64)]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(_, v) in p {
        count += 1.0;
        let delta = v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}
