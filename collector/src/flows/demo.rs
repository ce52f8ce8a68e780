//! The demo traffic generator: realistic orders of the three hospital flows for four campuses
//! (本院, 黄埔, 东院, 南沙), most on time, some slow (past a deadline, then done), some stuck
//! (stopping after "charged"), some failing (an error step, retried or not). It first backfills
//! the last two hours so overdue keys exist at once, then emits events as their time comes.
//! `tingzhen demo traffic` sends them over HTTP; `tingzhen up` feeds them in process.

use super::event::Event;
use super::{Flows, parse_models_file};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tingzhen_core::now_ms;

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

/// How the generator runs.
#[derive(Debug, Clone)]
pub struct TrafficOptions {
    /// New orders per minute across the four campuses.
    pub rate_per_min: f64,
    /// How far back the first orders start (so overdue keys exist at once).
    pub backfill: Duration,
    pub seed: u64,
}

impl Default for TrafficOptions {
    fn default() -> Self {
        Self { rate_per_min: 60.0, backfill: Duration::from_secs(2 * 3600), seed: 20_260_101 }
    }
}

/// Feeds generated events straight into `flows` each second until `stop` (for `tingzhen up`).
/// Installs the demo models and interfaces first.
pub fn run_in_process(flows: Arc<Flows>, opts: TrafficOptions, stop: Arc<AtomicBool>) -> Result<(), String> {
    flows.load_toml(DEMO_MODELS, "demo").map_err(|e| format!("cannot install the demo models: {e}"))?;
    let mut generator = Generator::new(opts.seed, opts.rate_per_min, now_ms(), opts.backfill.as_millis() as i64);
    while !stop.load(Ordering::Relaxed) {
        let batch: Vec<_> = generator.due(now_ms()).into_iter().map(Ok).collect();
        for chunk in batch.chunks(1000) {
            if let Err(e) = flows.ingest(chunk.to_vec()) {
                tracing::warn!(error = %e, "demo traffic: ingest failed");
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(())
}

/// Sends generated events to a collector over HTTP each second until `stop` (for
/// `tingzhen demo traffic`). With `install_models`, first creates the demo models and
/// interfaces (needs an admin token); events need an ingest token.
pub fn run_http(
    url: &str,
    token: &str,
    opts: TrafficOptions,
    install_models: bool,
    stop: &AtomicBool,
) -> Result<(), String> {
    let base = url.trim_end_matches('/');
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let auth = format!("Bearer {token}");
    let send = |method: &str, path: &str, body: &serde_json::Value| -> Result<(u16, String), String> {
        let url = format!("{base}{path}");
        let req = match method {
            "PUT" => agent.put(&url).header("Authorization", &auth).send_json(body),
            _ => agent.post(&url).header("Authorization", &auth).send_json(body),
        };
        let mut resp = req.map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status().as_u16();
        Ok((status, resp.body_mut().read_to_string().unwrap_or_default()))
    };
    if install_models {
        let (models, interfaces) = parse_models_file(DEMO_MODELS).map_err(|e| e.to_string())?;
        for m in models {
            let body = serde_json::to_value(&m).map_err(|e| e.to_string())?;
            match send("POST", "/api/v1/flows/models", &body)? {
                (200 | 201, _) => {}
                (403, _) => return Err("installing the demo models needs an admin token (or use --no-models)".into()),
                (s, text) => return Err(format!("model {:?}: HTTP {s}: {text}", m.name)),
            }
        }
        for i in interfaces {
            let body = serde_json::to_value(&i).map_err(|e| e.to_string())?;
            let path = format!("/api/v1/interfaces/{}", urlencode(&i.name));
            if let (s, text) = send("PUT", &path, &body)?
                && s >= 300
            {
                return Err(format!("interface {:?}: HTTP {s}: {text}", i.name));
            }
        }
    }
    let mut generator = Generator::new(opts.seed, opts.rate_per_min, now_ms(), opts.backfill.as_millis() as i64);
    let (mut sent, mut refused) = (0usize, 0usize);
    let mut last_report = now_ms();
    while !stop.load(Ordering::Relaxed) {
        let events = generator.due(now_ms());
        for chunk in events.chunks(1000) {
            let body = serde_json::Value::Array(chunk.iter().map(to_json).collect());
            match send("POST", "/api/v1/flows/events", &body) {
                Ok((200, _)) => sent += chunk.len(),
                Ok((207, text)) => {
                    sent += chunk.len();
                    refused += text.matches("\"index\"").count();
                }
                Ok((s, text)) => return Err(format!("events: HTTP {s}: {text}")),
                Err(e) => eprintln!("demo traffic: {e}; retrying"),
            }
        }
        if now_ms() - last_report > 30_000 {
            eprintln!("demo traffic: {sent} events sent, {refused} refused");
            last_report = now_ms();
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(())
}

/// Percent-encodes a path segment (interface names are Chinese).
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
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
