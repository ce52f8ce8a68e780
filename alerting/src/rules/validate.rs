//! Validation: a `GroupSpec` becomes a `RuleGroup` only if every field is right. All problems
//! of a submission are collected, each naming its group, rule and field.

use super::template::Template;
use super::{AlertRule, DEFAULT_INTERVAL, GroupSpec, ReadSet, RuleError, RuleErrors, RuleGroup, RuleSource, duration};
use crate::model::ALERTNAME;
use promql_parser::parser::Expr;
use promql_parser::parser::value::ValueType;
use promql_parser::util::{ExprVisitor, walk_expr};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

fn is_label_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

fn is_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

struct Reads(ReadSet);

impl ExprVisitor for Reads {
    type Error = ();
    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, ()> {
        let vs = match expr {
            Expr::VectorSelector(vs) => vs,
            Expr::MatrixSelector(ms) => &ms.vs,
            _ => return Ok(true),
        };
        let name = vs.name.clone().or_else(|| {
            let eq: Vec<_> = vs
                .matchers
                .matchers
                .iter()
                .filter(|m| m.name == "__name__" && matches!(m.op, promql_parser::label::MatchOp::Equal))
                .collect();
            (eq.len() == 1 && vs.matchers.or_matchers.is_empty()).then(|| eq[0].value.clone())
        });
        match (&mut self.0, name) {
            (ReadSet::Names(set), Some(n)) => {
                set.insert(n);
            }
            (ReadSet::Names(_), None) => self.0 = ReadSet::Any,
            (ReadSet::Any, _) => {}
        }
        Ok(true)
    }
}

/// The metrics an expression reads (see [`ReadSet`]).
pub fn read_set(expr: &Expr) -> ReadSet {
    let mut v = Reads(ReadSet::Names(BTreeSet::new()));
    let _ = walk_expr(&mut v, expr);
    v.0
}

/// Validates one group. `default_interval` applies when the group names none.
pub fn compile_group(spec: GroupSpec, source: RuleSource, default_interval: Duration) -> Result<RuleGroup, RuleErrors> {
    let origin = match &source {
        RuleSource::File(p) => format!("{p}: "),
        RuleSource::Api => String::new(),
    };
    let gloc = format!("{origin}group {:?}", spec.name);
    let mut errors = Vec::new();
    let mut err = |location: &str, field: &str, message: String| {
        errors.push(RuleError { location: location.to_string(), field: field.to_string(), message })
    };
    if spec.name.trim().is_empty() {
        err(&gloc, "name", "a group needs a name".into());
    } else if spec.name.contains('/') || spec.name.len() > 200 {
        err(&gloc, "name", "use at most 200 characters and no '/'".into());
    }
    let interval = match spec.interval.as_deref() {
        None => {
            if default_interval.is_zero() {
                DEFAULT_INTERVAL
            } else {
                default_interval
            }
        }
        Some(s) => match duration::parse(s) {
            Ok(d) if d.is_zero() => {
                err(&gloc, "interval", "must be greater than 0".into());
                DEFAULT_INTERVAL
            }
            Ok(d) => d,
            Err(e) => {
                err(&gloc, "interval", e);
                DEFAULT_INTERVAL
            }
        },
    };
    let query_offset = match spec.query_offset.as_deref().map(duration::parse) {
        None => Duration::ZERO,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            err(&gloc, "query_offset", e);
            Duration::ZERO
        }
    };
    for (name, value) in &spec.labels {
        check_label(&gloc, "labels", name, value, &mut err);
    }
    let mut rules = Vec::new();
    let mut same_name: BTreeMap<String, usize> = BTreeMap::new();
    for (i, r) in spec.rules.iter().enumerate() {
        let shown = r.alert.as_deref().or(r.record.as_deref()).unwrap_or("");
        let kind = if r.record.is_some() { "record" } else { "alert" };
        let rloc = if shown.is_empty() {
            format!("{gloc}, rule {}", i + 1)
        } else {
            format!("{gloc}, rule {} ({kind} {shown:?})", i + 1)
        };
        if let Some(rec) = &r.record {
            err(
                &rloc,
                "record",
                format!(
                    "recording rule {rec:?} is not supported: tingzhen evaluates alerting rules only; use the \
                     expression in an alert or query it directly"
                ),
            );
            continue;
        }
        let Some(name) = r.alert.clone() else {
            err(&rloc, "alert", "required: every rule needs an alert name".into());
            continue;
        };
        if !is_metric_name(&name) {
            err(&rloc, "alert", format!("{name:?} is not a valid alert name (letters, digits, '_' and ':')"));
        }
        let mut reads = ReadSet::Any;
        if r.expr.trim().is_empty() {
            err(&rloc, "expr", "required".into());
        } else {
            match promql_parser::parser::parse(&r.expr) {
                Ok(expr) => match expr.value_type() {
                    ValueType::Vector | ValueType::Scalar => reads = read_set(&expr),
                    other => err(&rloc, "expr", format!("must return an instant vector or a scalar, not a {other}")),
                },
                Err(e) => err(&rloc, "expr", format!("PromQL: {e}")),
            }
        }
        let mut dur = |field: &str, v: &Option<String>| match v.as_deref().map(duration::parse) {
            None => Duration::ZERO,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                err(&rloc, field, e);
                Duration::ZERO
            }
        };
        let for_ = dur("for", &r.for_);
        let keep_firing_for = dur("keep_firing_for", &r.keep_firing_for);
        let mut labels = spec.labels.clone();
        for (k, v) in &r.labels {
            check_label(&rloc, "labels", k, v, &mut err);
            labels.insert(k.clone(), v.clone());
        }
        if labels.contains_key(ALERTNAME) {
            err(&rloc, "labels", "\"alertname\" is set from the rule's alert name; remove it".into());
        }
        for (k, v) in &r.annotations {
            if !is_label_name(k) {
                err(&rloc, "annotations", format!("{k:?} is not a valid annotation name"));
            }
            if let Err(e) = Template::parse(v) {
                err(&rloc, &format!("annotations.{k}"), format!("template: {e}"));
            }
        }
        let n = same_name.entry(name.clone()).or_default();
        let key = format!("{}/{name}#{n}", spec.name);
        *n += 1;
        rules.push(AlertRule {
            key,
            name,
            expr: r.expr.clone(),
            for_,
            keep_firing_for,
            labels,
            annotations: r.annotations.clone(),
            reads,
        });
    }
    if !errors.is_empty() {
        return Err(RuleErrors(errors));
    }
    let limit = spec.limit.unwrap_or(0) as usize;
    Ok(RuleGroup { name: spec.name.clone(), source, interval, query_offset, limit, rules, spec })
}

fn check_label(loc: &str, field: &str, name: &str, value: &str, err: &mut impl FnMut(&str, &str, String)) {
    if !is_label_name(name) || name.starts_with("__") {
        err(loc, field, format!("{name:?} is not a valid label name"));
    }
    if value.is_empty() {
        err(loc, &format!("{field}.{name}"), "empty value".into());
    }
    if let Err(e) = Template::parse(value) {
        err(loc, &format!("{field}.{name}"), format!("template: {e}"));
    }
}
