//! Inhibition: a firing source alert mutes target alerts that share its `equal` labels (a
//! host down mutes that host's service alerts). An alert never inhibits itself.

use super::RoutingError;
use super::config::InhibitRuleConfig;
use super::matchers::{matches_all, parse_all};
use crate::model::{Alert, AlertState};
use std::collections::{BTreeSet, HashMap};
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

    /// The `equal` labels' values (absent = "") — equal tuples mean "same host".
    fn equal_values<'a>(&self, a: &'a Alert) -> Vec<&'a str> {
        self.equal.iter().map(|l| a.labels.get(l).map(String::as_str).unwrap_or("")).collect()
    }
}

/// The firing sources of every rule, indexed by their `equal` label values, so deciding
/// whether a target is inhibited costs one lookup per rule instead of a scan of all alerts.
pub(crate) struct InhibitIndex<'a> {
    rules: &'a [InhibitRule],
    /// Per rule: `equal` values → fingerprints of the firing sources that have them.
    sources: Vec<HashMap<Vec<&'a str>, BTreeSet<String>>>,
}

impl<'a> InhibitIndex<'a> {
    pub fn build(rules: &'a [InhibitRule], firing: &'a [Alert]) -> Self {
        let sources = rules
            .iter()
            .map(|r| {
                let mut m: HashMap<Vec<&'a str>, BTreeSet<String>> = HashMap::new();
                for s in firing.iter().filter(|s| s.state == AlertState::Firing && matches_all(&r.source, &s.labels)) {
                    m.entry(r.equal_values(s)).or_default().insert(s.fingerprint());
                }
                m
            })
            .collect();
        Self { rules, sources }
    }

    /// Whether some firing alert other than `target` itself inhibits it.
    pub fn inhibits(&self, target: &Alert) -> bool {
        let fp = target.fingerprint();
        self.rules.iter().zip(&self.sources).any(|(r, m)| {
            matches_all(&r.target, &target.labels)
                && m.get(&r.equal_values(target)).is_some_and(|fps| fps.iter().any(|f| *f != fp))
        })
    }
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
        let firing = [down.clone(), svc.clone(), other.clone()];
        let idx = InhibitIndex::build(&rules, &firing);
        assert!(idx.inhibits(&svc));
        assert!(!idx.inhibits(&other));
        assert!(!idx.inhibits(&down), "never inhibits itself");
        let resolved = [alert(&[("alertname", "HostDown"), ("host", "his-db1")], AlertState::Resolved)];
        assert!(!InhibitIndex::build(&rules, &resolved).inhibits(&svc), "only a firing source inhibits");
        // A rule whose source and target overlap: one alert cannot mute itself, but a second
        // alert with the same equal labels mutes it.
        let both = InhibitRule::compile(
            &InhibitRuleConfig {
                source_matchers: vec![r#"severity="critical""#.into()],
                target_matchers: vec![r#"severity=~"critical|warning""#.into()],
                equal: vec!["host".into()],
            },
            "inhibit_rules[1]",
        )
        .unwrap();
        let c1 = alert(&[("alertname", "A"), ("severity", "critical"), ("host", "h")], AlertState::Firing);
        let rules = [both];
        let alone = [c1.clone()];
        assert!(!InhibitIndex::build(&rules, &alone).inhibits(&c1));
        let w = alert(&[("alertname", "B"), ("severity", "warning"), ("host", "h")], AlertState::Firing);
        assert!(InhibitIndex::build(&rules, &alone).inhibits(&w));
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
