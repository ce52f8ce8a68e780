//! Inhibition: a firing source alert mutes target alerts that share its `equal` labels (a
//! host down mutes that host's service alerts). An alert never inhibits itself.

use super::RoutingError;
use super::config::InhibitRuleConfig;
use super::matchers::{matches_all, parse_all};
use crate::model::{Alert, AlertState};
use tingzhen_core::matcher::Matcher;

#[derive(Debug, Clone)]
pub(crate) struct InhibitRule {
    source: Vec<Matcher>,
    target: Vec<Matcher>,
    equal: Vec<String>,
}

impl InhibitRule {
    pub fn compile(c: &InhibitRuleConfig, field: &str) -> Result<Self, RoutingError> {
        if c.source_matchers.is_empty() {
            return Err(RoutingError::config(format!("{field}.source_matchers"), "needs at least one matcher"));
        }
        if c.target_matchers.is_empty() {
            return Err(RoutingError::config(format!("{field}.target_matchers"), "needs at least one matcher"));
        }
        Ok(Self {
            source: parse_all(&c.source_matchers, &format!("{field}.source_matchers"))?,
            target: parse_all(&c.target_matchers, &format!("{field}.target_matchers"))?,
            equal: c.equal.clone(),
        })
    }

    fn inhibits(&self, source: &Alert, target: &Alert) -> bool {
        source.state == AlertState::Firing
            && matches_all(&self.source, &source.labels)
            && matches_all(&self.target, &target.labels)
            && self.equal.iter().all(|l| {
                source.labels.get(l).map(String::as_str).unwrap_or("")
                    == target.labels.get(l).map(String::as_str).unwrap_or("")
            })
    }
}

/// Whether any firing alert in `firing` inhibits `target` under any rule.
pub(crate) fn is_inhibited<'a>(
    rules: &[InhibitRule],
    firing: impl IntoIterator<Item = &'a Alert> + Clone,
    target: &Alert,
) -> bool {
    rules.iter().any(|r| firing.clone().into_iter().any(|s| s.labels != target.labels && r.inhibits(s, target)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AlertSource, LabelMap};

    fn alert(pairs: &[(&str, &str)], state: AlertState) -> Alert {
        Alert {
            labels: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<LabelMap>(),
            annotations: LabelMap::new(),
            state,
            starts_at_ms: 0,
            ends_at_ms: None,
            value: 1.0,
            source: AlertSource::Rule("r".into()),
        }
    }

    #[test]
    fn host_down_mutes_that_hosts_service_alerts_only() {
        let rule = InhibitRule::compile(
            &InhibitRuleConfig {
                source_matchers: vec![r#"alertname="HostDown""#.into()],
                target_matchers: vec![r#"alertname!="HostDown""#.into()],
                equal: vec!["host".into()],
            },
            "inhibit_rules[0]",
        )
        .unwrap();
        let down = alert(&[("alertname", "HostDown"), ("host", "his-db1")], AlertState::Firing);
        let svc = alert(&[("alertname", "PgDown"), ("host", "his-db1")], AlertState::Firing);
        let other = alert(&[("alertname", "PgDown"), ("host", "lis-db1")], AlertState::Firing);
        let rules = [rule];
        assert!(is_inhibited(&rules, [&down], &svc));
        assert!(!is_inhibited(&rules, [&down], &other));
        assert!(!is_inhibited(&rules, [&down], &down), "never inhibits itself");
        let resolved = alert(&[("alertname", "HostDown"), ("host", "his-db1")], AlertState::Resolved);
        assert!(!is_inhibited(&rules, [&resolved], &svc), "only a firing source inhibits");
    }

    #[test]
    fn rules_need_both_sides() {
        let err = InhibitRule::compile(
            &InhibitRuleConfig { source_matchers: vec![], target_matchers: vec!["a=b".into()], equal: vec![] },
            "inhibit_rules[2]",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("inhibit_rules[2].source_matchers"), "{err}");
    }
}
