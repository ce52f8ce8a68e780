//! Label matchers (`=`, `!=`, `=~`, `!~`) with Prometheus semantics: regexes are fully
//! anchored, and an absent label matches as the empty string.

use crate::labels::Labels;
use regex::Regex;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    Equal,
    NotEqual,
    RegexMatch,
    RegexNoMatch,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid regex in matcher for label {name:?}: {source}")]
pub struct MatcherError {
    pub name: String,
    #[source]
    pub source: regex::Error,
}

#[derive(Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

impl Matcher {
    pub fn new(op: MatchOp, name: impl Into<String>, value: impl Into<String>) -> Result<Self, MatcherError> {
        let name = name.into();
        let value = value.into();
        let regex = match op {
            MatchOp::RegexMatch | MatchOp::RegexNoMatch => Some(
                Regex::new(&format!("^(?s:{value})$")).map_err(|source| MatcherError { name: name.clone(), source })?,
            ),
            _ => None,
        };
        Ok(Self { name, op, value, regex })
    }

    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self { name: name.into(), op: MatchOp::Equal, value: value.into(), regex: None }
    }

    /// Matches one label value; `None` means the label is absent (matched as "").
    pub fn matches_value(&self, v: Option<&str>) -> bool {
        let v = v.unwrap_or("");
        match self.op {
            MatchOp::Equal => v == self.value,
            MatchOp::NotEqual => v != self.value,
            MatchOp::RegexMatch => self.regex.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::RegexNoMatch => !self.regex.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.name))
    }

    /// True when the matcher also selects series that lack the label entirely. Index lookups
    /// use this: such matchers cannot be answered from the postings of the label alone.
    pub fn matches_empty(&self) -> bool {
        self.matches_value(None)
    }
}

pub fn matches_all(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::RegexMatch => "=~",
            MatchOp::RegexNoMatch => "!~",
        };
        write!(f, "{}{}{:?}", self.name, op, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_is_anchored_and_absent_is_empty() {
        let l = Labels::from_pairs([("job", "node"), ("__name__", "up")]);
        assert!(Matcher::new(MatchOp::RegexMatch, "job", "no.*").unwrap().matches(&l));
        assert!(!Matcher::new(MatchOp::RegexMatch, "job", "od").unwrap().matches(&l));
        assert!(Matcher::new(MatchOp::Equal, "missing", "").unwrap().matches(&l));
        assert!(Matcher::new(MatchOp::RegexNoMatch, "missing", ".+").unwrap().matches(&l));
        assert!(!Matcher::new(MatchOp::NotEqual, "job", "node").unwrap().matches(&l));
        assert!(Matcher::new(MatchOp::RegexMatch, "x", "(").is_err());
    }
}
