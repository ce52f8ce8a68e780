//! The compiled route tree: validated matchers, inherited timing and grouping, window and
//! escalation references resolved. Matching follows Alertmanager: depth first; a child that
//! matches ends the search among its siblings unless it says `continue`; a node none of whose
//! children match handles the alert itself.

use super::RoutingError;
use super::config::{RouteConfig, RoutingConfig};
use super::inhibit::InhibitRule;
use super::matchers::{matches_all, parse_all};
use crate::calendar::{Calendar, TimeWindow};
use crate::model::LabelMap;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tingzhen_core::matcher::Matcher;

const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(300);
const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);
const DEFAULT_REPLAY_WINDOW: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GroupBy {
    /// `...`: every label, so each alert is its own group.
    All,
    Labels(Vec<String>),
}

#[derive(Debug, Clone)]
pub(crate) struct EscalationStep {
    pub after_ms: i64,
    pub receiver: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Route {
    /// Stable identity from the matcher path (`{}/{team="db"}`), part of every group key.
    pub key: String,
    pub receiver: String,
    matchers: Vec<Matcher>,
    pub group_by: GroupBy,
    pub group_wait_ms: i64,
    pub group_interval_ms: i64,
    pub repeat_interval_ms: i64,
    continue_matching: bool,
    pub active_windows: Vec<String>,
    pub mute_windows: Vec<String>,
    pub escalation: Vec<EscalationStep>,
    children: Vec<Route>,
}

/// Everything the dispatcher needs from the configuration, validated.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub root: Route,
    pub inhibit: Vec<InhibitRule>,
    pub windows: BTreeMap<String, TimeWindow>,
    /// receiver → (active, mute) window names.
    pub receiver_windows: BTreeMap<String, (Vec<String>, Vec<String>)>,
    pub calendar: Calendar,
    pub replay_window_ms: i64,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn matcher_key(ms: &[Matcher]) -> String {
    let parts: Vec<String> = ms.iter().map(|m| m.to_string()).collect();
    format!("{{{}}}", parts.join(","))
}

struct Ctx<'a> {
    windows: &'a BTreeMap<String, TimeWindow>,
}

impl Ctx<'_> {
    fn check_windows(&self, names: &[String], field: &str) -> Result<(), RoutingError> {
        for (i, n) in names.iter().enumerate() {
            if !self.windows.contains_key(n) {
                return Err(RoutingError::config(format!("{field}[{i}]"), format!("no time window named {n:?}")));
            }
        }
        Ok(())
    }

    fn route(&self, c: &RouteConfig, parent: Option<&Route>, key: String, field: &str) -> Result<Route, RoutingError> {
        let matchers = parse_all(&c.matchers, &format!("{field}.matchers"))?;
        let receiver = match (&c.receiver, parent) {
            (Some(r), _) if !r.trim().is_empty() => r.clone(),
            (Some(_), _) => return Err(RoutingError::config(format!("{field}.receiver"), "must not be empty")),
            (None, Some(p)) => p.receiver.clone(),
            (None, None) => {
                return Err(RoutingError::config(format!("{field}.receiver"), "the root route needs a receiver"));
            }
        };
        let group_by = match &c.group_by {
            None => parent.map(|p| p.group_by.clone()).unwrap_or(GroupBy::Labels(Vec::new())),
            Some(list) if list.iter().any(|l| l == "...") => {
                if list.len() != 1 {
                    return Err(RoutingError::config(format!("{field}.group_by"), "\"...\" must be the only entry"));
                }
                GroupBy::All
            }
            Some(list) => {
                let mut seen = BTreeSet::new();
                for (i, l) in list.iter().enumerate() {
                    let valid = !l.is_empty()
                        && !l.starts_with(|ch: char| ch.is_ascii_digit())
                        && l.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
                    if !valid {
                        return Err(RoutingError::config(
                            format!("{field}.group_by[{i}]"),
                            format!("{l:?} is not a label name"),
                        ));
                    }
                    if !seen.insert(l) {
                        return Err(RoutingError::config(
                            format!("{field}.group_by[{i}]"),
                            format!("{l:?} is listed twice"),
                        ));
                    }
                }
                GroupBy::Labels(list.clone())
            }
        };
        let inherit = |own: &Option<tingzhen_core::config::HumanDuration>, from: Option<i64>, default: Duration| {
            own.as_ref().map(|d| ms(d.0)).or(from).unwrap_or(ms(default))
        };
        let group_wait_ms = inherit(&c.group_wait, parent.map(|p| p.group_wait_ms), DEFAULT_GROUP_WAIT);
        let group_interval_ms = inherit(&c.group_interval, parent.map(|p| p.group_interval_ms), DEFAULT_GROUP_INTERVAL);
        let repeat_interval_ms =
            inherit(&c.repeat_interval, parent.map(|p| p.repeat_interval_ms), DEFAULT_REPEAT_INTERVAL);
        if group_interval_ms <= 0 {
            return Err(RoutingError::config(format!("{field}.group_interval"), "must be greater than zero"));
        }
        if repeat_interval_ms <= 0 {
            return Err(RoutingError::config(format!("{field}.repeat_interval"), "must be greater than zero"));
        }
        self.check_windows(&c.active_time_windows, &format!("{field}.active_time_windows"))?;
        self.check_windows(&c.mute_time_windows, &format!("{field}.mute_time_windows"))?;
        let escalation = match &c.escalation {
            None => parent.map(|p| p.escalation.clone()).unwrap_or_default(),
            Some(steps) => {
                let mut out: Vec<EscalationStep> = Vec::new();
                for (i, s) in steps.iter().enumerate() {
                    let f = format!("{field}.escalation[{i}]");
                    let after_ms = ms(s.after.0);
                    if after_ms <= 0 {
                        return Err(RoutingError::config(format!("{f}.after"), "must be greater than zero"));
                    }
                    if out.last().is_some_and(|p| p.after_ms >= after_ms) {
                        return Err(RoutingError::config(
                            format!("{f}.after"),
                            "escalation steps must come later than the step before",
                        ));
                    }
                    if s.receiver.trim().is_empty() {
                        return Err(RoutingError::config(format!("{f}.receiver"), "must not be empty"));
                    }
                    out.push(EscalationStep { after_ms, receiver: s.receiver.clone() });
                }
                out
            }
        };
        let mut route = Route {
            key,
            receiver,
            matchers,
            group_by,
            group_wait_ms,
            group_interval_ms,
            repeat_interval_ms,
            continue_matching: c.continue_matching,
            active_windows: c.active_time_windows.clone(),
            mute_windows: c.mute_time_windows.clone(),
            escalation,
            children: Vec::new(),
        };
        let mut keys = BTreeSet::new();
        for (i, child) in c.routes.iter().enumerate() {
            let cf = format!("{field}.routes[{i}]");
            let ck = parse_all(&child.matchers, &format!("{cf}.matchers"))?;
            // Siblings with identical matchers still need distinct group keys.
            let mut k = format!("{}/{}", route.key, matcher_key(&ck));
            if !keys.insert(k.clone()) {
                k = format!("{k}#{i}");
                keys.insert(k.clone());
            }
            let compiled = self.route(child, Some(&route), k, &cf)?;
            route.children.push(compiled);
        }
        Ok(route)
    }
}

pub(crate) fn compile(cfg: &RoutingConfig) -> Result<Compiled, RoutingError> {
    let calendar = Calendar::new(&cfg.calendar).map_err(RoutingError::from_calendar)?;
    let mut windows = BTreeMap::new();
    for (i, w) in cfg.time_windows.iter().enumerate() {
        let field = format!("time_windows[{i}]");
        let tw = TimeWindow::compile(w, &field).map_err(RoutingError::from_calendar)?;
        if windows.insert(tw.name.clone(), tw).is_some() {
            return Err(RoutingError::config(format!("{field}.name"), format!("window {:?} is defined twice", w.name)));
        }
    }
    let ctx = Ctx { windows: &windows };
    if !cfg.route.matchers.is_empty() {
        return Err(RoutingError::config("route.matchers", "the root route matches everything and takes no matchers"));
    }
    if !cfg.route.active_time_windows.is_empty() || !cfg.route.mute_time_windows.is_empty() {
        return Err(RoutingError::config(
            "route.active_time_windows",
            "the root route cannot have time windows; put them on a child route or a receiver",
        ));
    }
    let root = ctx.route(&cfg.route, None, "{}".into(), "route")?;
    let inhibit = cfg
        .inhibit_rules
        .iter()
        .enumerate()
        .map(|(i, r)| InhibitRule::compile(r, &format!("inhibit_rules[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut receiver_windows = BTreeMap::new();
    for (i, rw) in cfg.receiver_windows.iter().enumerate() {
        let f = format!("receiver_windows[{i}]");
        if rw.receiver.trim().is_empty() {
            return Err(RoutingError::config(format!("{f}.receiver"), "must not be empty"));
        }
        ctx.check_windows(&rw.active_time_windows, &format!("{f}.active_time_windows"))?;
        ctx.check_windows(&rw.mute_time_windows, &format!("{f}.mute_time_windows"))?;
        let entry = (rw.active_time_windows.clone(), rw.mute_time_windows.clone());
        if receiver_windows.insert(rw.receiver.clone(), entry).is_some() {
            return Err(RoutingError::config(format!("{f}.receiver"), format!("{:?} is listed twice", rw.receiver)));
        }
    }
    let replay_window_ms = cfg.replay_window.as_ref().map(|d| ms(d.0)).unwrap_or(ms(DEFAULT_REPLAY_WINDOW));
    Ok(Compiled { root, inhibit, windows, receiver_windows, calendar, replay_window_ms })
}

impl Route {
    /// The routes that take an alert with these labels (at least the root).
    pub fn match_labels<'a>(&'a self, labels: &LabelMap) -> Vec<&'a Route> {
        self.match_inner(labels).unwrap_or_else(|| vec![self])
    }

    fn match_inner<'a>(&'a self, labels: &LabelMap) -> Option<Vec<&'a Route>> {
        if !matches_all(&self.matchers, labels) {
            return None;
        }
        let mut all = Vec::new();
        for child in &self.children {
            if let Some(m) = child.match_inner(labels) {
                all.extend(m);
                if !child.continue_matching {
                    break;
                }
            }
        }
        if all.is_empty() {
            all.push(self);
        }
        Some(all)
    }

    /// The labels that name an alert's group on this route.
    pub fn group_labels(&self, labels: &LabelMap) -> LabelMap {
        match &self.group_by {
            GroupBy::All => labels.clone(),
            GroupBy::Labels(names) => names
                .iter()
                .filter_map(|n| labels.get(n).filter(|v| !v.is_empty()).map(|v| (n.clone(), v.clone())))
                .collect(),
        }
    }

    pub fn group_key(&self, group_labels: &LabelMap) -> String {
        let parts: Vec<String> = group_labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        format!("{}:{{{}}}", self.key, parts.join(","))
    }

    pub fn find(&self, key: &str) -> Option<&Route> {
        if self.key == key {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(key))
    }

    pub fn walk<'a>(&'a self, out: &mut Vec<&'a Route>) {
        out.push(self);
        for c in &self.children {
            c.walk(out);
        }
    }
}

impl Compiled {
    /// Every receiver the tree, escalation steps and receiver windows name, deduplicated.
    pub fn receivers(&self) -> Vec<String> {
        let mut all = Vec::new();
        self.root.walk(&mut all);
        let mut set: BTreeSet<String> = BTreeSet::new();
        for r in all {
            set.insert(r.receiver.clone());
            for s in &r.escalation {
                set.insert(s.receiver.clone());
            }
        }
        set.extend(self.receiver_windows.keys().cloned());
        set.into_iter().collect()
    }
}
