//! Alerting rules: the Prometheus rule-file format (`groups:` of `alert:` rules, the YAML that
//! `promtool check rules` accepts), validated into [`RuleGroup`]s before anything uses them.
//! Groups come from `rule_files` (read-only) or from the rules API (stored in the relational
//! store, see `store`); built-in kinds (`builtin`) expand to ordinary PromQL rules.
//!
//! Recording rules (`record:`) are refused with a clear error: tingzhen evaluates alerts only,
//! and writing derived series back would need the collector's ingest path from here.

pub mod builtin;
pub mod duration;
pub mod store;
pub mod template;
mod validate;

pub use validate::{compile_group, read_set};

use crate::model::LabelMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

/// The default evaluation interval of a group that names none (issue 5: 5 s).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// A rule file as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    pub groups: Vec<GroupSpec>,
}

/// A rule group as written (file or API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_offset: Option<String>,
    /// Most alerts one rule may produce; more makes the evaluation fail (0 = no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Added to every alert of the group (rule labels win).
    #[serde(default, skip_serializing_if = "LabelMap::is_empty")]
    pub labels: LabelMap,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

/// One rule as written. `record` is read only to refuse it with a clear message.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    #[serde(default)]
    pub expr: String,
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_firing_for: Option<String>,
    #[serde(default, skip_serializing_if = "LabelMap::is_empty")]
    pub labels: LabelMap,
    #[serde(default, skip_serializing_if = "LabelMap::is_empty")]
    pub annotations: LabelMap,
}

/// Where a group came from; file groups cannot be changed through the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "path", rename_all = "lowercase")]
pub enum RuleSource {
    File(String),
    Api,
}

/// Which metrics a rule reads: evaluation wakes the rule when any of them is written. A
/// selector without a fixed metric name (`{job="x"}`, `{__name__=~"a|b"}`) makes it `Any`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadSet {
    Names(BTreeSet<String>),
    Any,
}

/// A validated alerting rule.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    /// Stable identity for alert state: `group/alertname#n` (n counts same-named rules).
    pub key: String,
    pub name: String,
    pub expr: String,
    pub for_: Duration,
    pub keep_firing_for: Duration,
    /// Group labels merged with the rule's (rule wins); values may be templates.
    pub labels: LabelMap,
    pub annotations: LabelMap,
    pub reads: ReadSet,
}

/// A validated group, ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleGroup {
    pub name: String,
    pub source: RuleSource,
    pub interval: Duration,
    pub query_offset: Duration,
    pub limit: usize,
    pub rules: Vec<AlertRule>,
    /// What was written, for the API to show back.
    pub spec: GroupSpec,
}

/// One problem with a rule, naming where it is and which field is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{location}: {field}: {message}")]
pub struct RuleError {
    /// e.g. `deploy/rules/host.yml: group "host", rule 2 (alert "HostDown")`.
    pub location: String,
    pub field: String,
    pub message: String,
}

/// Every problem found in one submission; nothing of it is used or saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
pub struct RuleErrors(pub Vec<RuleError>);

/// Expands `rule_files` entries: a `*` in the file name (not in directories) matches any run
/// of characters, as in Prometheus's globs. A pattern matching nothing is an error, so a typo
/// never silently loads no rules.
pub fn expand_files(patterns: &[String]) -> Result<Vec<std::path::PathBuf>, RuleError> {
    let mut out = Vec::new();
    for p in patterns {
        let path = Path::new(p);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.contains('*') {
            out.push(path.to_path_buf());
            continue;
        }
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let bad = |m: String| RuleError { location: p.clone(), field: "rules.files".into(), message: m };
        let mut matched: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| bad(format!("cannot list {}: {e}", dir.display())))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_str().is_some_and(|n| wildcard(name, n)))
            .map(|e| e.path())
            .collect();
        if matched.is_empty() {
            return Err(bad("matches no file".into()));
        }
        matched.sort();
        out.extend(matched);
    }
    Ok(out)
}

fn wildcard(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Expands and validates every rule file (as `tingzhen config check` does); returns how many
/// groups they hold.
pub fn check_files(patterns: &[String], default_interval: Duration) -> Result<usize, RuleErrors> {
    let files = expand_files(patterns).map_err(|e| RuleErrors(vec![e]))?;
    let mut errors = Vec::new();
    let mut groups = 0;
    for f in files {
        match load_file(&f, default_interval) {
            Ok(g) => groups += g.len(),
            Err(RuleErrors(mut e)) => errors.append(&mut e),
        }
    }
    if errors.is_empty() { Ok(groups) } else { Err(RuleErrors(errors)) }
}

/// Reads and validates one rule file; `default_interval` applies to groups without one.
pub fn load_file(path: &Path, default_interval: Duration) -> Result<Vec<RuleGroup>, RuleErrors> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        RuleErrors(vec![RuleError { location: shown.clone(), field: "file".into(), message: e.to_string() }])
    })?;
    parse_file(&text, &shown, default_interval)
}

/// Parses rule-file YAML (`source` names it in errors) and validates every group.
pub fn parse_file(text: &str, source: &str, default_interval: Duration) -> Result<Vec<RuleGroup>, RuleErrors> {
    let file: RuleFile = serde_norway::from_str(text).map_err(|e| {
        RuleErrors(vec![RuleError { location: source.to_string(), field: "yaml".into(), message: e.to_string() }])
    })?;
    let mut errors = Vec::new();
    let mut groups = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, spec) in file.groups.into_iter().enumerate() {
        if !seen.insert(spec.name.clone()) {
            errors.push(RuleError {
                location: format!("{source}: groups[{i}]"),
                field: "name".into(),
                message: format!("group name {:?} is used twice in this file", spec.name),
            });
            continue;
        }
        match compile_group(spec, RuleSource::File(source.to_string()), default_interval) {
            Ok(g) => groups.push(g),
            Err(RuleErrors(mut e)) => errors.append(&mut e),
        }
    }
    if errors.is_empty() { Ok(groups) } else { Err(RuleErrors(errors)) }
}

#[cfg(test)]
mod tests;
