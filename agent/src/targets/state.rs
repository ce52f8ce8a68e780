//! What every target thread publishes: its latest families and status, read by `/metrics`,
//! the heartbeat (inventory) and the host loop's watchdog for hung collections.

use super::TargetConfig;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tingzhen_core::Labels;
use tingzhen_core::exposition::{MetricFamily, MetricType};
use tingzhen_core::inventory::WatchedTarget;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Up,
    Down,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Up => "up",
            Self::Down => "down",
        }
    }
}

#[derive(Debug)]
struct SlotState {
    families: Arc<Vec<MetricFamily>>,
    status: Status,
    last_error: String,
    last_collect_ms: i64,
    running_since: Option<Instant>,
}

/// One target's published state.
#[derive(Debug)]
pub struct Slot {
    pub config: TargetConfig,
    /// Labels on every sample of this target (the agent's, campus/system overridden, `target`).
    pub base: Labels,
    state: Mutex<SlotState>,
}

impl Slot {
    pub fn new(config: TargetConfig, base: Labels) -> Self {
        Self {
            config,
            base,
            state: Mutex::new(SlotState {
                families: Arc::new(Vec::new()),
                status: Status::Pending,
                last_error: String::new(),
                last_collect_ms: 0,
                running_since: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn begin(&self) {
        self.lock().running_since = Some(Instant::now());
    }

    pub fn finish(&self, families: Vec<MetricFamily>, status: Status, error: String, ts_ms: i64) {
        let mut s = self.lock();
        s.families = Arc::new(families);
        s.status = status;
        s.last_error = error;
        s.last_collect_ms = ts_ms;
        s.running_since = None;
    }

    /// A collection still running well past its timeout (a driver ignoring its own timeouts):
    /// the reason to report, or `None`.
    fn hung(&self, s: &SlotState, now: Instant) -> Option<String> {
        let limit = self.config.timeout * 2 + Duration::from_secs(1);
        let since = s.running_since?;
        (now.duration_since(since) > limit).then(|| {
            format!(
                "collection still running after {}s (timeout {:?})",
                now.duration_since(since).as_secs(),
                self.config.timeout
            )
        })
    }

    /// `<kind>_up 0` alone, for a target whose collection hangs.
    pub fn down_families(&self) -> Vec<MetricFamily> {
        let mut up = MetricFamily::new(self.config.kind.up_metric(), up_help(self.config.kind), MetricType::Gauge);
        up.push(self.base.clone(), 0.0);
        vec![up]
    }

    /// Families to show and ship now; a hung collection shows as down.
    pub fn current(&self, now: Instant) -> (Arc<Vec<MetricFamily>>, Option<String>) {
        let s = self.lock();
        match self.hung(&s, now) {
            Some(why) => (Arc::new(self.down_families()), Some(why)),
            None => (s.families.clone(), None),
        }
    }

    pub fn watched(&self, now: Instant) -> WatchedTarget {
        let s = self.lock();
        let (status, last_error) = match self.hung(&s, now) {
            Some(why) => (Status::Down, why),
            None => (s.status, s.last_error.clone()),
        };
        let c = &self.config;
        WatchedTarget {
            name: c.name.clone(),
            kind: c.kind.as_str().into(),
            address: c.address.clone(),
            campus: self.base.get("campus").unwrap_or("").into(),
            system: self.base.get("system").unwrap_or("").into(),
            status: status.as_str().into(),
            last_error: truncate(&last_error, 1024),
            last_collect_ms: s.last_collect_ms,
        }
    }
}

pub fn up_help(kind: super::TargetKind) -> String {
    format!("Whether the last collection of the {} target succeeded (1) or not (0).", kind.as_str())
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// All targets of one agent.
#[derive(Debug, Default, Clone)]
pub struct Targets {
    pub slots: Vec<Arc<Slot>>,
}

impl Targets {
    /// Every target's families merged by name, so two targets of one kind give one family
    /// (the text format allows each name once).
    pub fn families(&self) -> Vec<MetricFamily> {
        let now = Instant::now();
        let mut out: Vec<MetricFamily> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for slot in &self.slots {
            let (fams, _) = slot.current(now);
            for f in fams.iter() {
                match index.get(&f.name) {
                    Some(&i) => out[i].samples.extend(f.samples.iter().cloned()),
                    None => {
                        index.insert(f.name.clone(), out.len());
                        out.push(f.clone());
                    }
                }
            }
        }
        out
    }

    pub fn watched(&self) -> Vec<WatchedTarget> {
        let now = Instant::now();
        self.slots.iter().map(|s| s.watched(now)).collect()
    }

    /// Slots whose collection hangs, with the reason (the host loop ships their `up 0`).
    pub fn hung(&self) -> Vec<(Arc<Slot>, String)> {
        let now = Instant::now();
        self.slots.iter().filter_map(|s| s.current(now).1.map(|why| (s.clone(), why))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::TargetKind;

    #[test]
    fn a_hung_collection_reports_down_with_a_reason() {
        let mut cfg = TargetConfig::new("slow-db", TargetKind::Postgres, "127.0.0.1:5432");
        cfg.timeout = Duration::from_millis(1);
        let slot = Slot::new(cfg, Labels::from_pairs([("target", "slow-db")]));
        let targets = Targets { slots: vec![Arc::new(slot)] };
        assert_eq!(targets.watched()[0].status, "pending");
        let s = &targets.slots[0];
        let mut up = MetricFamily::new("pg_up", "h", MetricType::Gauge);
        up.push(s.base.clone(), 1.0);
        s.finish(vec![up], Status::Up, String::new(), 1);
        assert_eq!(targets.watched()[0].status, "up");
        s.begin();
        assert!(targets.hung().is_empty(), "just started");
        // The limit is twice the timeout plus a second.
        std::thread::sleep(Duration::from_millis(1100));
        let hung = targets.hung();
        assert_eq!(hung.len(), 1);
        assert!(hung[0].1.contains("still running"), "{}", hung[0].1);
        let w = &targets.watched()[0];
        assert_eq!((w.status.as_str(), w.last_error.contains("still running")), ("down", true));
        let fams = targets.families();
        assert_eq!((fams[0].name.as_str(), fams[0].samples[0].1), ("pg_up", 0.0));
    }

    #[test]
    fn families_of_one_kind_merge_into_one() {
        let mk = |name: &str, v: f64| {
            let slot = Slot::new(
                TargetConfig::new(name, TargetKind::Redis, "127.0.0.1:6379"),
                Labels::from_pairs([("target", name)]),
            );
            let mut up = MetricFamily::new("redis_up", "h", MetricType::Gauge);
            up.push(slot.base.clone(), v);
            slot.finish(vec![up], Status::Up, String::new(), 1);
            Arc::new(slot)
        };
        let t = Targets { slots: vec![mk("a", 1.0), mk("b", 0.0)] };
        let fams = t.families();
        assert_eq!(fams.len(), 1);
        assert_eq!(fams[0].samples.len(), 2);
        assert_eq!(truncate("ééé", 3), "é");
    }
}
