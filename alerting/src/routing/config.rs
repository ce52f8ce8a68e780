//! The routing configuration as written (serde, unknown keys are errors). Alertmanager's
//! shape: a `route` tree, `inhibit_rules`, named `time_windows`, plus tingzhen's escalation
//! steps, per-receiver windows and calendar overrides. `tree::compile` validates it.

use crate::calendar::{CalendarConfig, TimeWindowConfig};
use serde::{Deserialize, Serialize};
use tingzhen_core::config::HumanDuration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// The root route: it must name a receiver and has no matchers (it catches everything).
    pub route: RouteConfig,
    #[serde(default)]
    pub inhibit_rules: Vec<InhibitRuleConfig>,
    /// Named windows that routes and receivers refer to.
    #[serde(default)]
    pub time_windows: Vec<TimeWindowConfig>,
    /// Windows that apply to a receiver wherever it is used (e.g. SMS to the director only
    /// on workdays).
    #[serde(default)]
    pub receiver_windows: Vec<ReceiverWindowsConfig>,
    #[serde(default)]
    pub calendar: CalendarConfig,
    /// How far back `Dispatcher::replay` re-hands notifications to the outbox after a restart
    /// (the outbox deduplicates by key). Default 15m.
    #[serde(default)]
    pub replay_window: Option<HumanDuration>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Inherited from the parent when absent; the root must set it.
    #[serde(default)]
    pub receiver: Option<String>,
    /// Label matchers, all of which must hold: `severity="critical"`, `campus!="east"`,
    /// `system=~"his|lis"`, `team!~"test.*"`.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// Labels to group by; `["..."]` groups by all labels (one alert per group); `[]` means one
    /// group for the whole route. Inherited when absent.
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    /// Wait before the first notification of a new group. Inherited; root default 30s.
    #[serde(default)]
    pub group_wait: Option<HumanDuration>,
    /// Wait between notifications about changes to a group. Inherited; root default 5m.
    #[serde(default)]
    pub group_interval: Option<HumanDuration>,
    /// Resend a still-firing, unchanged group after this long. Inherited; root default 4h.
    #[serde(default)]
    pub repeat_interval: Option<HumanDuration>,
    /// Keep matching later siblings after this route matched.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    /// Notify only while one of these windows is open; held notifications go out when one
    /// opens. Not inherited (as in Alertmanager).
    #[serde(default)]
    pub active_time_windows: Vec<String>,
    /// Never notify while one of these windows is open. Not inherited.
    #[serde(default)]
    pub mute_time_windows: Vec<String>,
    /// Not acknowledged after `after` (counted from the first firing notification) → notify
    /// `receiver` too, at escalation level n. Inherited when absent.
    #[serde(default)]
    pub escalation: Option<Vec<EscalationStepConfig>>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationStepConfig {
    pub after: HumanDuration,
    pub receiver: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitRuleConfig {
    /// A firing alert matching all of these …
    pub source_matchers: Vec<String>,
    /// … mutes alerts matching all of these …
    pub target_matchers: Vec<String>,
    /// … when these labels have equal values in both (absent equals absent).
    #[serde(default)]
    pub equal: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverWindowsConfig {
    pub receiver: String,
    #[serde(default)]
    pub active_time_windows: Vec<String>,
    #[serde(default)]
    pub mute_time_windows: Vec<String>,
}
