//! Silences: matchers plus a validity period, optionally recurring (weekdays and time-of-day
//! ranges in Asia/Shanghai, e.g. every Tuesday 02:00–04:00 maintenance). Validation here;
//! storage in `store`; muting in the dispatcher.

use super::RoutingError;
use super::matchers::{matches_all, parse_matcher};
use crate::calendar::{Calendar, IntervalConfig, TimeWindow, TimeWindowConfig};
use crate::model::LabelMap;
use serde::{Deserialize, Serialize};
use tingzhen_core::config::HumanDuration;
use tingzhen_core::matcher::Matcher;

/// A silence as created or edited through the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceSpec {
    /// Alertmanager-style matchers, all of which must hold: `host="his-db1"`.
    pub matchers: Vec<String>,
    /// Defaults to now.
    #[serde(default)]
    pub starts_at_ms: Option<i64>,
    /// Either `ends_at_ms` or `duration`; a recurring silence may omit both (until expired).
    #[serde(default)]
    pub ends_at_ms: Option<i64>,
    #[serde(default)]
    pub duration: Option<HumanDuration>,
    pub created_by: String,
    pub comment: String,
    /// Only mute inside this weekly pattern, e.g. `{ weekdays = ["tue"], times = ["02:00-04:00"] }`.
    #[serde(default)]
    pub recurrence: Option<IntervalConfig>,
}

/// A stored silence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<String>,
    pub starts_at_ms: i64,
    pub ends_at_ms: Option<i64>,
    pub created_by: String,
    pub comment: String,
    pub recurrence: Option<IntervalConfig>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceStatus {
    Pending,
    /// Within its validity period and (if recurring) inside its weekly pattern now.
    Active,
    /// Recurring, within its validity period, outside its weekly pattern now.
    Waiting,
    Expired,
}

/// A silence with its matchers and recurrence compiled.
#[derive(Debug, Clone)]
pub(crate) struct CompiledSilence {
    pub silence: Silence,
    matchers: Vec<Matcher>,
    recurrence: Option<TimeWindow>,
}

impl SilenceSpec {
    /// Validates and turns the spec into a silence with `id`, created (or edited) at `now_ms`.
    pub(crate) fn build(&self, id: String, created_at_ms: i64, now_ms: i64) -> Result<CompiledSilence, RoutingError> {
        if self.created_by.trim().is_empty() {
            return Err(RoutingError::invalid("created_by", "say who creates the silence"));
        }
        if self.comment.trim().is_empty() {
            return Err(RoutingError::invalid("comment", "say why (e.g. the change ticket)"));
        }
        let starts_at_ms = self.starts_at_ms.unwrap_or(now_ms);
        let ends_at_ms = match (self.ends_at_ms, &self.duration) {
            (Some(_), Some(_)) => {
                return Err(RoutingError::invalid("duration", "give ends_at_ms or duration, not both"));
            }
            (Some(e), None) => Some(e),
            (None, Some(d)) => Some(starts_at_ms.saturating_add(i64::try_from(d.0.as_millis()).unwrap_or(i64::MAX))),
            (None, None) if self.recurrence.is_some() => None,
            (None, None) => return Err(RoutingError::invalid("ends_at_ms", "a one-off silence needs an end")),
        };
        if let Some(e) = ends_at_ms {
            if e <= starts_at_ms {
                return Err(RoutingError::invalid("ends_at_ms", "must be after starts_at_ms"));
            }
            if e <= now_ms {
                return Err(RoutingError::invalid("ends_at_ms", "is in the past"));
            }
        }
        let silence = Silence {
            id,
            matchers: self.matchers.clone(),
            starts_at_ms,
            ends_at_ms,
            created_by: self.created_by.trim().to_string(),
            comment: self.comment.clone(),
            recurrence: self.recurrence.clone(),
            created_at_ms,
            updated_at_ms: now_ms,
        };
        CompiledSilence::compile(silence)
    }
}

impl CompiledSilence {
    pub fn compile(silence: Silence) -> Result<Self, RoutingError> {
        if silence.matchers.is_empty() {
            return Err(RoutingError::invalid("matchers", "a silence needs at least one matcher"));
        }
        let matchers = silence
            .matchers
            .iter()
            .enumerate()
            .map(|(i, m)| parse_matcher(m).map_err(|e| RoutingError::invalid(format!("matchers[{i}]"), e)))
            .collect::<Result<Vec<_>, _>>()?;
        if matchers.iter().all(|m| m.matches_empty()) {
            return Err(RoutingError::invalid(
                "matchers",
                "at least one matcher must require a non-empty value, or the silence would mute everything",
            ));
        }
        let recurrence = match &silence.recurrence {
            None => None,
            Some(iv) => Some(
                TimeWindow::compile(
                    &TimeWindowConfig { name: silence.id.clone(), intervals: vec![iv.clone()] },
                    "recurrence",
                )
                .map_err(|e| RoutingError::invalid("recurrence", e.to_string()))?,
            ),
        };
        Ok(Self { silence, matchers, recurrence })
    }

    fn in_period(&self, now_ms: i64) -> bool {
        self.silence.starts_at_ms <= now_ms && self.silence.ends_at_ms.is_none_or(|e| now_ms < e)
    }

    pub fn status(&self, cal: &Calendar, now_ms: i64) -> SilenceStatus {
        if self.silence.ends_at_ms.is_some_and(|e| now_ms >= e) {
            SilenceStatus::Expired
        } else if now_ms < self.silence.starts_at_ms {
            SilenceStatus::Pending
        } else if self.recurrence.as_ref().is_some_and(|w| !w.contains(cal, now_ms)) {
            SilenceStatus::Waiting
        } else {
            SilenceStatus::Active
        }
    }

    pub fn mutes(&self, cal: &Calendar, labels: &LabelMap, now_ms: i64) -> bool {
        self.in_period(now_ms)
            && self.recurrence.as_ref().is_none_or(|w| w.contains(cal, now_ms))
            && matches_all(&self.matchers, labels)
    }

    /// The next instant after `now_ms` at which this silence starts or stops muting.
    pub fn next_change(&self, cal: &Calendar, now_ms: i64) -> Option<i64> {
        let s = &self.silence;
        if s.ends_at_ms.is_some_and(|e| now_ms >= e) {
            return None;
        }
        if now_ms < s.starts_at_ms {
            return Some(s.starts_at_ms);
        }
        let window = self.recurrence.as_ref().and_then(|w| w.next_change(cal, now_ms));
        match (window, s.ends_at_ms) {
            (Some(w), Some(e)) => Some(w.min(e)),
            (w, e) => w.or(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{CalendarConfig, local_to_ms, parse_date};

    fn spec() -> SilenceSpec {
        SilenceSpec {
            matchers: vec![r#"host="his-db1""#.into()],
            starts_at_ms: None,
            ends_at_ms: None,
            duration: Some("2h".parse().unwrap()),
            created_by: "zhang.wei".into(),
            comment: "CHG-1024 disk swap".into(),
            recurrence: None,
        }
    }

    #[test]
    fn validation_names_the_field() {
        let err = |s: SilenceSpec| s.build("x".into(), 0, 1_000).unwrap_err().to_string();
        assert!(err(SilenceSpec { matchers: vec![], ..spec() }).contains("matchers"));
        assert!(err(SilenceSpec { matchers: vec![r#"host=~".*""#.into()], ..spec() }).contains("mute everything"));
        assert!(err(SilenceSpec { matchers: vec!["host".into()], ..spec() }).contains("matchers[0]"));
        assert!(err(SilenceSpec { created_by: " ".into(), ..spec() }).contains("created_by"));
        assert!(err(SilenceSpec { duration: None, ..spec() }).contains("ends_at_ms"));
        assert!(err(SilenceSpec { duration: None, ends_at_ms: Some(500), ..spec() }).contains("ends_at_ms"));
        let bad_rec =
            IntervalConfig { days: Default::default(), weekdays: vec!["tue".into()], times: vec!["4-2".into()] };
        assert!(err(SilenceSpec { recurrence: Some(bad_rec), ..spec() }).contains("recurrence"));
    }

    #[test]
    fn recurring_maintenance_every_tuesday_night() {
        let cal = Calendar::new(&CalendarConfig::default()).unwrap();
        let at = |d: &str, h: u32| local_to_ms(parse_date("t", d).unwrap(), h * 60);
        let s = SilenceSpec {
            duration: None,
            recurrence: Some(IntervalConfig {
                days: Default::default(),
                weekdays: vec!["tue".into()],
                times: vec!["02:00-04:00".into()],
            }),
            ..spec()
        }
        .build("s1".into(), 0, at("2025-03-03", 12))
        .unwrap();
        let l: LabelMap = [("host".to_string(), "his-db1".to_string())].into_iter().collect();
        // 2025-03-04 is a Tuesday.
        assert!(s.mutes(&cal, &l, at("2025-03-04", 3)));
        assert!(!s.mutes(&cal, &l, at("2025-03-04", 4)));
        assert!(!s.mutes(&cal, &l, at("2025-03-05", 3)));
        assert_eq!(s.status(&cal, at("2025-03-05", 3)), SilenceStatus::Waiting);
        assert_eq!(s.next_change(&cal, at("2025-03-04", 5)), Some(at("2025-03-11", 2)));
    }
}
