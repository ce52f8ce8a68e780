//! The state of one key (one order) and how an event changes it. Pure: no I/O, no clock. The
//! state is compact because a hospital keeps ~100k orders a day open: per step only the time it
//! was first reached, bitmasks for reached and failed steps, the attributes deadline rules read,
//! and the precomputed due time of the awaited step so overdue checks are one comparison.

use super::event::Event;
use super::model::Compiled;
use std::sync::Arc;

/// Marks a step not (yet) reached in `KeyState::times`.
pub const NOT_REACHED: i64 = i64::MIN;

#[derive(Debug, Clone, PartialEq)]
pub struct KeyState {
    pub version: u32,
    pub first_ms: i64,
    pub last_ms: i64,
    pub reached: u32,
    /// Steps with an error event and no ok event yet.
    pub errors: u32,
    pub times: Box<[i64]>,
    pub campus: Arc<str>,
    /// The system of the latest event (by event time).
    pub system: Arc<str>,
    /// When the awaited step falls due; 0 when nothing is awaited or it has no deadline.
    pub due_ms: i64,
    pub awaiting: Option<u8>,
    /// Shared with the interner: rule attributes (urgency, exam type) have few values.
    pub attrs: Box<[(Arc<str>, Arc<str>)]>,
}

/// What applying one event did, for metrics and the traffic map.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Applied {
    /// The step was reached for the first time; with the time since the previous reached step.
    pub newly_reached: bool,
    pub duration_ms: Option<i64>,
    /// An earlier (in model order) step arrived after a later one had been reached.
    pub out_of_order: bool,
    /// Required steps before this one that were never reached.
    pub skipped: Vec<u8>,
    /// The key reached its last or a terminal step with this event.
    pub closed_by: Option<u8>,
    /// The system of the event before this one (for the data-flow map).
    pub previous_system: Option<Arc<str>>,
}

impl KeyState {
    pub fn new(model: &Compiled, campus: Arc<str>, system: Arc<str>, time_ms: i64) -> Self {
        Self {
            version: model.version,
            first_ms: time_ms,
            last_ms: time_ms,
            reached: 0,
            errors: 0,
            times: vec![NOT_REACHED; model.steps().len()].into_boxed_slice(),
            campus,
            system,
            due_ms: 0,
            awaiting: None,
            attrs: Box::new([]),
        }
    }

    pub fn attr(&self, name: &str) -> Option<String> {
        match name {
            "campus" => Some(self.campus.to_string()),
            "system" => Some(self.system.to_string()),
            _ => self.attrs.iter().find(|(k, _)| &**k == name).map(|(_, v)| v.to_string()),
        }
    }

    /// The furthest step reached, in model order.
    pub fn furthest(&self) -> Option<u8> {
        (self.reached != 0).then(|| (31 - self.reached.leading_zeros()) as u8)
    }

    /// Applies `event` (already known to be new: duplicates never get here) at `step`.
    pub fn apply(&mut self, model: &Compiled, step: u8, event: &Event, system: Arc<str>) -> Applied {
        let mut out = Applied::default();
        if self.times.len() != model.steps().len() {
            // The model gained or lost steps since this key opened; steps keep their position.
            let mut t = self.times.to_vec();
            t.resize(model.steps().len(), NOT_REACHED);
            self.times = t.into_boxed_slice();
            let mask = if model.steps().len() >= 32 { u32::MAX } else { (1u32 << model.steps().len()) - 1 };
            self.reached &= mask;
            self.errors &= mask;
        }
        let bit = 1u32 << step;
        let i = step as usize;
        if event.time_ms >= self.last_ms || self.system.as_ref() == super::event::UNKNOWN {
            out.previous_system = Some(self.system.clone());
            self.system = system;
        }
        self.first_ms = self.first_ms.min(event.time_ms);
        self.last_ms = self.last_ms.max(event.time_ms);
        if self.campus.as_ref() == super::event::UNKNOWN && event.campus != super::event::UNKNOWN {
            self.campus = Arc::from(event.campus.as_str());
        }
        self.merge_attrs(model, event);
        if event.ok {
            let was = self.reached & bit != 0;
            if !was || event.time_ms < self.times[i] {
                self.times[i] = event.time_ms;
            }
            self.reached |= bit;
            self.errors &= !bit;
            if !was {
                out.newly_reached = true;
                let above = u32::MAX.checked_shl(u32::from(step) + 1).unwrap_or(0);
                out.out_of_order = self.reached & above != 0;
                let prev = (0..i).rev().find(|&j| self.reached & (1 << j) != 0);
                out.duration_ms = prev.map(|j| event.time_ms - self.times[j]).filter(|d| *d >= 0);
                out.skipped = (0..i)
                    .filter(|&j| self.reached & (1 << j) == 0 && !model.steps()[j].optional)
                    .map(|j| j as u8)
                    .collect();
                out.closed_by = model.closing_step(self.reached);
            }
        } else if self.reached & bit == 0 {
            self.errors |= bit;
        }
        self.recompute_due(model);
        out
    }

    fn merge_attrs(&mut self, model: &Compiled, event: &Event) {
        if model.rule_attrs().is_empty() {
            return;
        }
        let mut attrs = self.attrs.to_vec();
        for name in model.rule_attrs() {
            if let Some(v) = event.attrs.get(name) {
                match attrs.iter_mut().find(|(k, _)| &**k == name.as_str()) {
                    Some(slot) => slot.1 = v.as_str().into(),
                    None => attrs.push((name.as_str().into(), v.as_str().into())),
                }
            }
        }
        self.attrs = attrs.into_boxed_slice();
    }

    /// The awaited step and its due time follow from the furthest step reached.
    pub fn recompute_due(&mut self, model: &Compiled) {
        self.awaiting = model.awaited(self.reached);
        self.due_ms = match (self.awaiting, self.furthest()) {
            (Some(a), Some(f)) => model.due_ms(a, self.times[f as usize], |k| self.attr(k)).unwrap_or(0),
            _ => 0,
        };
    }

    pub fn is_overdue(&self, now_ms: i64) -> bool {
        self.due_ms != 0 && self.due_ms < now_ms
    }

    /// The step reported in gauges: the furthest reached, or the awaited one when overdue.
    pub fn last_step_name<'a>(&self, model: &'a Compiled) -> &'a str {
        let i = self.furthest().unwrap_or(0) as usize;
        model.steps().get(i).map(|s| s.name.as_str()).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::model::FlowModel;

    fn model() -> Compiled {
        let m: FlowModel = toml::from_str(
            r#"
name = "f"
[[steps]]
name = "ordered"
[[steps]]
name = "charged"
deadline = "30m"
[[steps]]
name = "scheduled"
deadline = "1h"
[[steps.deadline_rules]]
when = { urgency = "急" }
deadline = "10m"
[[steps]]
name = "done"
"#,
        )
        .unwrap();
        Compiled::new(m, 1).unwrap()
    }

    fn ev(step: &str, t: i64, ok: bool) -> Event {
        Event {
            flow: "f".into(),
            key: "k".into(),
            step: step.into(),
            time_ms: t,
            campus: "本院".into(),
            system: "HIS".into(),
            ok,
            interface: None,
            attrs: [("urgency".to_string(), "急".to_string())].into(),
        }
    }

    #[test]
    fn out_of_order_events_land_in_model_order_and_deadlines_follow() {
        let m = model();
        let mut k = KeyState::new(&m, "本院".into(), "HIS".into(), 1000);
        let a = k.apply(&m, 1, &ev("charged", 5_000, true), "HIS".into());
        assert!(a.newly_reached && a.duration_ms.is_none());
        assert_eq!(a.skipped, vec![0]);
        let a = k.apply(&m, 0, &ev("ordered", 1_000, true), "HIS".into());
        assert!(a.out_of_order);
        assert_eq!(k.times[0], 1_000);
        assert_eq!(k.awaiting, Some(2));
        // The urgency rule applies: 10 minutes after charged.
        assert_eq!(k.due_ms, 5_000 + 600_000);
        assert!(k.is_overdue(5_000 + 600_001) && !k.is_overdue(5_000 + 600_000));
        let a = k.apply(&m, 2, &ev("scheduled", 9_000, false), "PACS".into());
        assert!(!a.newly_reached);
        assert_eq!(k.errors, 0b100);
        let a = k.apply(&m, 2, &ev("scheduled", 10_000, true), "PACS".into());
        assert_eq!(a.duration_ms, Some(5_000));
        assert_eq!(k.errors, 0);
        assert_eq!(k.due_ms, 0, "done has no deadline");
        let a = k.apply(&m, 3, &ev("done", 12_000, true), "PACS".into());
        assert_eq!(a.closed_by, Some(3));
    }
}
