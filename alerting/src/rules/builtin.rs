//! Built-in rule kinds — host down, no data, target down — as templates that expand to
//! ordinary PromQL alerting rules, so they are evaluated, shown and stored like any other.
//! The default texts are Chinese first (the appliance's users read Chinese); they live here,
//! in one table, and a request may override them.

use super::{RuleSpec, duration};
use crate::model::{LabelMap, SEVERITY};
use serde::{Deserialize, Serialize};

/// Default annotation texts, zh-CN. `{{ ... }}` are rule templates.
mod zh {
    pub const HOST_DOWN_SUMMARY: &str = "主机 {{ $labels.host }} 失联（无心跳）";
    pub const HOST_DOWN_DESCRIPTION: &str = "采集端 {{ $labels.host }} 的心跳已中断，主机可能宕机或网络不通。";
    pub const NO_DATA_SUMMARY: &str = "无数据：{{ $labels.__selector }}";
    pub const NO_DATA_DESCRIPTION: &str =
        "在最近 {{ $labels.__window }} 内没有收到 {{ $labels.__selector }} 的任何样本。";
    pub const TARGET_DOWN_SUMMARY: &str = "监控目标不可用：{{ $labels.instance }}{{ $labels.host }}";
    pub const TARGET_DOWN_DESCRIPTION: &str = "{{ $labels.job }} 目标的 up 指标为 0，采集失败或服务已停止。";
}

/// A built-in rule as the API accepts it: `{"builtin": {"kind": "host_down", …}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Builtin {
    /// The agent's heartbeat stopped: `tingzhen_agent_up == 0`.
    HostDown {
        #[serde(flatten)]
        common: Common,
        /// Extra label matchers, e.g. `campus="east"`.
        #[serde(default)]
        matchers: Option<String>,
    },
    /// No sample of `selector` within `window`: `absent_over_time(selector[window])`.
    NoData {
        #[serde(flatten)]
        common: Common,
        selector: String,
        /// Default 5m.
        #[serde(default)]
        window: Option<String>,
    },
    /// A target's `*_up` metric is 0 (exporters, the agent's database and middleware probes).
    TargetDown {
        #[serde(flatten)]
        common: Common,
        /// One `_up` metric (e.g. `pg_up`); by default every metric whose name ends in `_up`.
        #[serde(default)]
        metric: Option<String>,
        #[serde(default)]
        matchers: Option<String>,
    },
}

/// What every built-in kind accepts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Common {
    /// The alert name; defaults to `HostDown`, `NoData`, `TargetDown`.
    #[serde(default)]
    pub alert: Option<String>,
    #[serde(default, rename = "for")]
    pub for_: Option<String>,
    #[serde(default)]
    pub keep_firing_for: Option<String>,
    /// Defaults: host down and target down `critical`, no data `warning`.
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub labels: LabelMap,
    #[serde(default)]
    pub annotations: LabelMap,
}

fn matcher_suffix(m: &Option<String>) -> Result<String, String> {
    match m.as_deref().map(str::trim) {
        None | Some("") => Ok(String::new()),
        Some(m) if m.starts_with('{') => {
            Err(format!("matchers {m:?}: write them without braces, e.g. campus=\"east\""))
        }
        Some(m) => Ok(m.to_string()),
    }
}

fn braces(m: &str) -> String {
    if m.is_empty() { String::new() } else { format!("{{{m}}}") }
}

fn annotate(common: &Common, summary: &str, description: &str) -> LabelMap {
    let mut a: LabelMap =
        [("summary", summary), ("description", description)].into_iter().map(|(k, v)| (k.into(), v.into())).collect();
    a.extend(common.annotations.clone());
    a
}

impl Builtin {
    /// The PromQL rule this built-in stands for. Errors name the field.
    pub fn expand(&self) -> Result<RuleSpec, String> {
        let (common, default_name, default_severity, default_for, expr, annotations) = match self {
            Builtin::HostDown { common, matchers } => {
                let m = matcher_suffix(matchers)?;
                let expr = format!("tingzhen_agent_up{} == 0", braces(&m));
                let ann = annotate(common, zh::HOST_DOWN_SUMMARY, zh::HOST_DOWN_DESCRIPTION);
                (common, "HostDown", "critical", "1m", expr, ann)
            }
            Builtin::NoData { common, selector, window } => {
                let window = window.clone().unwrap_or_else(|| "5m".into());
                duration::parse(&window).map_err(|e| format!("window: {e}"))?;
                let sel = selector.trim();
                if sel.is_empty() {
                    return Err("selector: required, e.g. node_load1{host=\"db-1\"}".into());
                }
                let expr = format!("absent_over_time({sel}[{window}])");
                let ann = annotate(common, zh::NO_DATA_SUMMARY, zh::NO_DATA_DESCRIPTION);
                // The texts name the selector and window; rendered now, they need no labels.
                let labels: LabelMap = [("__selector", sel), ("__window", window.as_str())]
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect();
                let ann = ann.into_iter().map(|(k, v)| (k, super::template::expand(&v, &labels, 0.0))).collect();
                (common, "NoData", "warning", "0s", expr, ann)
            }
            Builtin::TargetDown { common, metric, matchers } => {
                let m = matcher_suffix(matchers)?;
                let expr = match metric.as_deref().map(str::trim) {
                    Some(name) if !name.is_empty() => {
                        if !name.ends_with("_up") && name != "up" {
                            return Err(format!(
                                "metric {name:?}: a target-down rule reads an up metric (name ending in _up)"
                            ));
                        }
                        format!("{name}{} == 0", braces(&m))
                    }
                    _ => {
                        let sep = if m.is_empty() { "" } else { ", " };
                        format!("{{__name__=~\"up|.+_up\", __name__!=\"tingzhen_agent_up\"{sep}{m}}} == 0")
                    }
                };
                let ann = annotate(common, zh::TARGET_DOWN_SUMMARY, zh::TARGET_DOWN_DESCRIPTION);
                (common, "TargetDown", "critical", "1m", expr, ann)
            }
        };
        let mut labels = common.labels.clone();
        labels.insert(SEVERITY.into(), common.severity.clone().unwrap_or_else(|| default_severity.into()));
        Ok(RuleSpec {
            alert: Some(common.alert.clone().unwrap_or_else(|| default_name.into())),
            record: None,
            expr,
            for_: Some(common.for_.clone().unwrap_or_else(|| default_for.into())),
            keep_firing_for: common.keep_firing_for.clone(),
            labels,
            annotations,
        })
    }
}
