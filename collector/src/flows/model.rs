//! Flow models: the named, ordered steps of a business message flow (检查申请单, 检验申请单, 住院医嘱 …),
//! which steps may be skipped (optional), which event names stand for a step (alternatives),
//! which step closes a key early (terminal), and each step's deadline, counted from the step
//! before and chosen by the first matching rule over the key's attributes. Validation names the
//! field at fault (`steps[2].deadline_rules[0].when`).

use super::hours;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use tingzhen_core::config::HumanDuration;

/// Most steps a flow may have: reached steps are kept as a bitmask per key.
pub const MAX_STEPS: usize = 32;
/// Longest deadline or horizon accepted (business-hour arithmetic walks days).
const MAX_DURATION_SECS: u64 = 366 * 86_400;

/// A flow model as written in TOML or sent to the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowModel {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Open keys with no event for this long are expired. Default: the `[flows] horizon`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizon: Option<HumanDuration>,
    pub steps: Vec<StepModel>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepModel {
    pub name: String,
    /// A key may pass this step without reaching it, and it is never awaited.
    #[serde(default)]
    pub optional: bool,
    /// Other event step names that count as this step (e.g. `free_of_charge` for `charged`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alternatives: Vec<String>,
    /// Reaching this step closes the key even if later steps remain (e.g. `cancelled`).
    #[serde(default)]
    pub terminal: bool,
    /// Time allowed since the previous reached step. None: never overdue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<HumanDuration>,
    /// Count the deadline in working hours (Asia/Shanghai, Mon–Fri 08:00–18:00) only.
    #[serde(default)]
    pub business_hours: bool,
    /// Checked in order; the first whose `when` all match the key's attributes wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deadline_rules: Vec<DeadlineRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadlineRule {
    /// Attribute name → required value. `campus` and `system` are attributes too.
    pub when: BTreeMap<String, String>,
    pub deadline: HumanDuration,
    /// Overrides the step's `business_hours` for this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_hours: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("flow model {flow:?}: {field}: {reason}")]
pub struct ModelError {
    pub flow: String,
    pub field: String,
    pub reason: String,
}

/// Checks a name used as a flow, step or interface name: non-empty, short, printable, no `/`
/// (names appear in URL paths and label values).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if name.chars().count() > 64 {
        return Err("must be at most 64 characters".into());
    }
    if name.chars().any(|c| c.is_control() || c == '/') || name.trim() != name {
        return Err("must not contain '/', control characters or surrounding spaces".into());
    }
    Ok(())
}

impl FlowModel {
    pub fn validate(&self) -> Result<(), ModelError> {
        let err = |field: String, reason: String| ModelError { flow: self.name.clone(), field, reason };
        check_name(&self.name).map_err(|r| err("name".into(), r))?;
        if self.steps.is_empty() {
            return Err(err("steps".into(), "a flow needs at least one step".into()));
        }
        if self.steps.len() > MAX_STEPS {
            return Err(err("steps".into(), format!("at most {MAX_STEPS} steps are allowed")));
        }
        if let Some(h) = &self.horizon {
            check_duration(h).map_err(|r| err("horizon".into(), r))?;
        }
        let mut seen = HashSet::new();
        for (i, step) in self.steps.iter().enumerate() {
            check_name(&step.name).map_err(|r| err(format!("steps[{i}].name"), r))?;
            for (j, alt) in step.alternatives.iter().enumerate() {
                check_name(alt).map_err(|r| err(format!("steps[{i}].alternatives[{j}]"), r))?;
            }
            for n in std::iter::once(&step.name).chain(&step.alternatives) {
                if !seen.insert(n.as_str()) {
                    return Err(err(format!("steps[{i}]"), format!("step name {n:?} is used twice")));
                }
            }
            let has_deadline = step.deadline.is_some() || !step.deadline_rules.is_empty();
            if i == 0 && has_deadline {
                return Err(err(
                    format!("steps[{i}].deadline"),
                    "the first step has no previous step to count a deadline from".into(),
                ));
            }
            if let Some(d) = &step.deadline {
                check_duration(d).map_err(|r| err(format!("steps[{i}].deadline"), r))?;
            }
            for (j, rule) in step.deadline_rules.iter().enumerate() {
                if rule.when.is_empty() {
                    return Err(err(
                        format!("steps[{i}].deadline_rules[{j}].when"),
                        "must name at least one attribute".into(),
                    ));
                }
                if let Some((k, _)) = rule.when.iter().find(|(k, v)| k.is_empty() || v.is_empty()) {
                    return Err(err(
                        format!("steps[{i}].deadline_rules[{j}].when"),
                        format!("attribute {k:?}: names and values must not be empty"),
                    ));
                }
                check_duration(&rule.deadline)
                    .map_err(|r| err(format!("steps[{i}].deadline_rules[{j}].deadline"), r))?;
            }
        }
        if self.steps.iter().all(|s| s.optional) {
            return Err(err("steps".into(), "at least one step must be required (not optional)".into()));
        }
        Ok(())
    }
}

fn check_duration(d: &HumanDuration) -> Result<(), String> {
    if d.0.is_zero() {
        return Err("must be longer than zero".into());
    }
    if d.0.as_secs() > MAX_DURATION_SECS {
        return Err("must be at most 366 days".into());
    }
    Ok(())
}

/// A validated model with its stored version and lookups the engine needs per event.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub model: FlowModel,
    pub version: u32,
    by_name: HashMap<String, u8>,
    /// Attribute names some deadline rule reads; only these are kept per open key.
    rule_attrs: Vec<String>,
}

impl Compiled {
    pub fn new(model: FlowModel, version: u32) -> Result<Self, ModelError> {
        model.validate()?;
        let mut by_name = HashMap::new();
        let mut rule_attrs = Vec::new();
        for (i, step) in model.steps.iter().enumerate() {
            for n in std::iter::once(&step.name).chain(&step.alternatives) {
                by_name.insert(n.clone(), i as u8);
            }
            for rule in &step.deadline_rules {
                for k in rule.when.keys() {
                    if !rule_attrs.contains(k) && k != "campus" && k != "system" {
                        rule_attrs.push(k.clone());
                    }
                }
            }
        }
        Ok(Self { model, version, by_name, rule_attrs })
    }

    pub fn name(&self) -> &str {
        &self.model.name
    }

    pub fn steps(&self) -> &[StepModel] {
        &self.model.steps
    }

    /// The step index an event step name stands for.
    pub fn step_of(&self, name: &str) -> Option<u8> {
        self.by_name.get(name).copied()
    }

    pub fn rule_attrs(&self) -> &[String] {
        &self.rule_attrs
    }

    /// The step a key waits for once `reached` (bitmask) holds its steps: the first
    /// non-optional step after the furthest one reached. None when nothing is awaited.
    pub fn awaited(&self, reached: u32) -> Option<u8> {
        let furthest = 31 - reached.leading_zeros() as usize;
        if reached == 0 {
            return None;
        }
        self.model.steps.iter().enumerate().skip(furthest + 1).find(|(_, s)| !s.optional).map(|(i, _)| i as u8)
    }

    /// When step `step` falls due for a key whose previous step was at `since_ms`.
    pub fn due_ms(&self, step: u8, since_ms: i64, attr: impl Fn(&str) -> Option<String>) -> Option<i64> {
        let s = self.model.steps.get(step as usize)?;
        let rule = s.deadline_rules.iter().find(|r| r.when.iter().all(|(k, v)| attr(k).as_deref() == Some(v)));
        let (deadline, business) = match rule {
            Some(r) => (r.deadline.0, r.business_hours.unwrap_or(s.business_hours)),
            None => (s.deadline.as_ref()?.0, s.business_hours),
        };
        let ms = deadline.as_millis() as i64;
        Some(if business { hours::add_business_ms(since_ms, ms) } else { since_ms.saturating_add(ms) })
    }

    /// A key is complete when it reached its last step or a terminal one.
    pub fn closing_step(&self, reached: u32) -> Option<u8> {
        let last = self.model.steps.len() - 1;
        if reached & (1 << last) != 0 {
            return Some(last as u8);
        }
        self.model.steps.iter().enumerate().find(|(i, s)| s.terminal && reached & (1 << i) != 0).map(|(i, _)| i as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> FlowModel {
        toml::from_str(text).unwrap()
    }

    const EXAM: &str = r#"
name = "检查申请单"
[[steps]]
name = "ordered"
[[steps]]
name = "charged"
alternatives = ["free_of_charge"]
deadline = "2h"
[[steps.deadline_rules]]
when = { urgency = "急" }
deadline = "15m"
[[steps]]
name = "scheduled"
optional = true
[[steps]]
name = "reported"
deadline = "1d"
business_hours = true
"#;

    #[test]
    fn deadlines_follow_the_first_matching_rule() {
        let c = Compiled::new(parse(EXAM), 1).unwrap();
        assert_eq!(c.step_of("free_of_charge"), Some(1));
        assert_eq!(c.awaited(0b1), Some(1));
        // scheduled is optional, so after charged the key waits for reported.
        assert_eq!(c.awaited(0b11), Some(3));
        let urgent = |k: &str| (k == "urgency").then(|| "急".to_string());
        assert_eq!(c.due_ms(1, 0, urgent), Some(15 * 60_000));
        assert_eq!(c.due_ms(1, 0, |_| None), Some(2 * 3_600_000));
        assert_eq!(c.rule_attrs(), ["urgency".to_string()]);
    }

    #[test]
    fn validation_names_the_field() {
        let mut m = parse(EXAM);
        m.steps[0].deadline = Some(HumanDuration::from_secs(60));
        assert_eq!(m.validate().unwrap_err().field, "steps[0].deadline");
        let mut m = parse(EXAM);
        m.steps[2].name = "charged".into();
        let e = m.validate().unwrap_err();
        assert_eq!(e.field, "steps[2]");
        assert!(e.reason.contains("used twice"), "{e}");
        let mut m = parse(EXAM);
        m.steps[1].deadline_rules[0].when.clear();
        assert_eq!(m.validate().unwrap_err().field, "steps[1].deadline_rules[0].when");
        let mut m = parse(EXAM);
        m.name = "a/b".into();
        assert_eq!(m.validate().unwrap_err().field, "name");
        let m = FlowModel { steps: vec![], ..parse(EXAM) };
        assert_eq!(m.validate().unwrap_err().field, "steps");
        assert!(toml::from_str::<FlowModel>("name = \"x\"\nstepz = []").is_err());
    }
}
