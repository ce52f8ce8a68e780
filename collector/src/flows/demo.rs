//! The demo traffic generator: realistic orders of the three hospital flows for four campuses
//! (本院, 黄埔, 东院, 南沙), most on time, some slow (past a deadline, then done), some stuck
//! (stopping after "charged"), some failing (an error step, retried or not). It first backfills
//! the last two hours so overdue keys exist at once, then emits events as their time comes.
//! `tingzhen demo traffic` sends them over HTTP; `tingzhen up` feeds them in process.

use super::event::Event;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// The example models and interfaces the generator's events fit.
pub const DEMO_MODELS: &str = include_str!("../../../deploy/flows/hospital.toml");

const CAMPUSES: [(&str, u32); 4] = [("本院", 40), ("黄埔", 20), ("东院", 25), ("南沙", 15)];
const MIN: i64 = 60_000;

/// One flow's steps: (step, system, typical minutes after the previous step, deadline minutes).
struct FlowPlan {
    name: &'static str,
    weight: u32,
    steps: &'static [(&'static str, &'static str, i64, i64)],
}

const PLANS: [FlowPlan; 3] = [
    FlowPlan {
        name: "检查申请单",
        weight: 50,
        steps: &[
            ("ordered", "HIS", 0, 0),
            ("charged", "收费系统", 8, 30),
            ("scheduled", "预约平台", 20, 120),
            ("executed", "RIS", 40, 1440),
            ("reported", "RIS", 60, 1440),
            ("delivered", "集成平台", 3, 30),
        ],
    },
    FlowPlan {
        name: "检验申请单",
        weight: 35,
        steps: &[
            ("ordered", "HIS", 0, 0),
            ("charged", "收费系统", 6, 30),
            ("collected", "护士站", 25, 120),
            ("received", "LIS", 15, 60),
            ("reported", "LIS", 70, 240),
            ("delivered", "集成平台", 2, 30),
        ],
    },
    FlowPlan {
        name: "住院医嘱",
        weight: 15,
        steps: &[
            ("prescribed", "HIS", 0, 0),
            ("verified", "护士站", 10, 30),
            ("dispensed", "PIVAS", 45, 120),
            ("administered", "护理系统", 60, 240),
        ],
    },
];

/// What happens to an order; shares follow what integration teams report as typical.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Fate {
    Normal,
    /// One step takes 1.5–3× its deadline, then the order completes.
    Slow,
    /// The order stops after its second step and never moves again.
    Stuck,
    /// One step first fails; two of three are retried successfully.
    Failing,
}

pub struct Generator {
    rng: fastrand::Rng,
    /// Events waiting for their time, earliest first.
    queue: BinaryHeap<Reverse<(i64, u64, EventBox)>>,
    seq: u64,
    next_order_ms: i64,
    /// Orders per minute across all campuses.
    pub rate_per_min: f64,
}

#[derive(Debug, Clone, PartialEq)]
struct EventBox(Event);

impl Eq for EventBox {}
impl PartialOrd for EventBox {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for EventBox {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

fn pick<'a, T>(rng: &mut fastrand::Rng, items: &'a [(T, u32)]) -> &'a T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut r = rng.u32(0..total);
    for (item, w) in items {
        if r < *w {
            return item;
        }
        r -= w;
    }
    &items[items.len() - 1].0
}

impl Generator {
    /// A generator whose first orders start `backfill_ms` before `now_ms`.
    pub fn new(seed: u64, rate_per_min: f64, now_ms: i64, backfill_ms: i64) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed),
            queue: BinaryHeap::new(),
            seq: 0,
            next_order_ms: now_ms - backfill_ms,
            rate_per_min: rate_per_min.max(0.1),
        }
    }

    fn fate(&mut self) -> Fate {
        *pick(&mut self.rng, &[(Fate::Normal, 86), (Fate::Slow, 7), (Fate::Stuck, 4), (Fate::Failing, 3)])
    }

    fn plan_order(&mut self, start_ms: i64) {
        let plans: Vec<(usize, u32)> = PLANS.iter().enumerate().map(|(i, p)| (i, p.weight)).collect();
        let plan = &PLANS[*pick(&mut self.rng, &plans)];
        let campus = *pick(&mut self.rng, &CAMPUSES);
        let urgent = self.rng.u32(0..100) < 15;
        let fate = self.fate();
        self.seq += 1;
        let key = format!("{}{:08}", if plan.name == "住院医嘱" { "YZ" } else { "SQ" }, 20_000_000 + self.seq);
        let mut attrs = BTreeMap::new();
        attrs.insert("urgency".to_string(), if urgent { "急" } else { "平" }.to_string());
        if plan.name == "检查申请单" {
            let exam = *pick(&mut self.rng, &[("CT", 45), ("DR", 30), ("MR", 15), ("US", 10)]);
            attrs.insert("exam_type".into(), exam.to_string());
        }
        let special = self.rng.usize(1..plan.steps.len());
        let skip_dispense = plan.name == "住院医嘱" && self.rng.bool();
        let mut t = start_ms;
        for (i, (step, system, typical, deadline)) in plan.steps.iter().enumerate() {
            if fate == Fate::Stuck && i >= 2 {
                break;
            }
            if skip_dispense && *step == "dispensed" {
                continue;
            }
            let scale = if urgent { 0.25 } else { 1.0 };
            let mut gap = (*typical as f64 * scale * (0.4 + self.rng.f64() * 1.2) * MIN as f64) as i64;
            if fate == Fate::Slow && i == special {
                gap = (*deadline as f64 * scale * (1.5 + self.rng.f64() * 1.5) * MIN as f64) as i64;
            }
            t += gap.max(5_000);
            if fate == Fate::Failing && i == special {
                self.push(plan.name, &key, step, system, campus, t, false, &attrs);
                if self.rng.u32(0..3) == 0 {
                    break;
                }
                t += (3 + self.rng.i64(0..10)) * MIN;
            }
            self.push(plan.name, &key, step, system, campus, t, true, &attrs);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        flow: &str,
        key: &str,
        step: &str,
        system: &str,
        campus: &str,
        time_ms: i64,
        ok: bool,
        attrs: &BTreeMap<String, String>,
    ) {
        let e = Event {
            flow: flow.into(),
            key: key.into(),
            step: step.into(),
            time_ms,
            campus: campus.into(),
            system: system.into(),
            ok,
            interface: None,
            attrs: attrs.clone(),
        };
        self.seq += 1;
        self.queue.push(Reverse((time_ms, self.seq, EventBox(e))));
    }

    /// Every event due by `now_ms`, after starting the orders due by then.
    pub fn due(&mut self, now_ms: i64) -> Vec<Event> {
        let gap = (60_000.0 / self.rate_per_min) as i64;
        while self.next_order_ms <= now_ms {
            let start = self.next_order_ms;
            self.plan_order(start);
            self.next_order_ms += (gap as f64 * (0.5 + self.rng.f64())) as i64 + 1;
        }
        let mut out = Vec::new();
        while let Some(Reverse((t, _, _))) = self.queue.peek() {
            if *t > now_ms {
                break;
            }
            let Some(Reverse((_, _, EventBox(e)))) = self.queue.pop() else { break };
            out.push(e);
        }
        out
    }
}

/// An event as the `POST /api/v1/flows/events` JSON the generator sends.
pub fn to_json(e: &Event) -> serde_json::Value {
    serde_json::json!({
        "flow": e.flow, "key": e.key, "step": e.step, "time": e.time_ms as f64 / 1000.0,
        "campus": e.campus, "system": e.system, "status": if e.ok { "ok" } else { "error" },
        "attributes": e.attrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backfill_produces_every_fate_and_only_past_events() {
        let now = 1_800_000_000_000;
        let mut g = Generator::new(7, 60.0, now, 2 * 3_600_000);
        let events = g.due(now);
        assert!(events.len() > 300, "{}", events.len());
        assert!(events.iter().all(|e| e.time_ms <= now));
        assert!(events.iter().any(|e| !e.ok), "some orders fail");
        let campuses: std::collections::BTreeSet<&str> = events.iter().map(|e| e.campus.as_str()).collect();
        assert_eq!(campuses.len(), 4);
        // Keys that stopped after "charged" (stuck) exist among orders old enough to be overdue.
        let mut furthest: BTreeMap<&str, usize> = BTreeMap::new();
        for e in &events {
            let n = furthest.entry(e.key.as_str()).or_default();
            *n += 1;
        }
        assert!(furthest.values().any(|n| *n == 2));
    }
}
