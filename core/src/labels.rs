//! Label sets: the identity of a series. Kept sorted by name so equality, hashing and the
//! on-disk form are canonical; validated with Prometheus's rules so anything we accept a
//! real Prometheus would accept too.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The label that carries the metric name.
pub const METRIC_NAME: &str = "__name__";

/// Limits applied to every label set that enters the system (ingest, config).
pub const MAX_LABEL_NAME_LEN: usize = 256;
pub const MAX_LABEL_VALUE_LEN: usize = 4096;
pub const MAX_LABELS_PER_SERIES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self { name: name.into(), value: value.into() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("invalid label name {0:?}: must match [a-zA-Z_][a-zA-Z0-9_]*")]
    InvalidName(String),
    #[error("invalid metric name {0:?}: must match [a-zA-Z_:][a-zA-Z0-9_:]*")]
    InvalidMetricName(String),
    #[error("label name {name:?} is longer than {max} bytes")]
    NameTooLong { name: String, max: usize },
    #[error("value of label {name:?} is longer than {max} bytes")]
    ValueTooLong { name: String, max: usize },
    #[error("series has {count} labels, more than the limit of {max}")]
    TooManyLabels { count: usize, max: usize },
    #[error("label {0:?} appears twice")]
    Duplicate(String),
    #[error("series has no metric name (__name__)")]
    MissingName,
}

/// A canonical (sorted, de-duplicated, no empty values) label set.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(from = "Vec<Label>", into = "Vec<Label>")]
pub struct Labels(Vec<Label>);

impl From<Vec<Label>> for Labels {
    fn from(v: Vec<Label>) -> Self {
        Labels::from_unsorted(v)
    }
}

impl From<Labels> for Vec<Label> {
    fn from(l: Labels) -> Self {
        l.0
    }
}

impl Labels {
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// Sorts, drops empty values (Prometheus treats `a=""` as absent) and keeps the last of
    /// duplicate names. Use [`Labels::validated`] for untrusted input instead.
    pub fn from_unsorted(mut v: Vec<Label>) -> Self {
        v.retain(|l| !l.value.is_empty());
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v.dedup_by(|later, earlier| {
            if later.name == earlier.name {
                std::mem::swap(&mut earlier.value, &mut later.value);
                true
            } else {
                false
            }
        });
        Self(v)
    }

    /// Builds a label set from untrusted input: rejects invalid names, over-long names or
    /// values, duplicate names and too many labels. Empty values are dropped, as Prometheus does.
    pub fn validated(v: Vec<Label>) -> Result<Self, LabelError> {
        Self::validate_keeping(v, false).map_err(|(e, _)| e)
    }

    /// Like [`Labels::validated`] and also requires a valid metric name.
    pub fn validated_series(v: Vec<Label>) -> Result<Self, LabelError> {
        Self::validate_keeping(v, true).map_err(|(e, _)| e)
    }

    /// Validates and canonicalises; on error hands the labels back so the caller can describe
    /// the offending series without having copied every good one in advance (ingest hot path).
    pub fn validate_keeping(v: Vec<Label>, require_name: bool) -> Result<Self, (LabelError, Vec<Label>)> {
        if v.len() > MAX_LABELS_PER_SERIES {
            return Err((LabelError::TooManyLabels { count: v.len(), max: MAX_LABELS_PER_SERIES }, v));
        }
        for l in &v {
            if let Err(e) = validate_label(&l.name, &l.value) {
                return Err((e, v));
            }
        }
        let mut v = v;
        v.retain(|l| !l.value.is_empty());
        // Senders almost always send sorted labels; checking first skips the sort's moves.
        if !v.is_sorted_by(|a, b| a.name <= b.name) {
            v.sort_by(|a, b| a.name.cmp(&b.name));
        }
        if let Some(w) = v.windows(2).find(|w| w[0].name == w[1].name) {
            let e = LabelError::Duplicate(w[0].name.clone());
            return Err((e, v));
        }
        if require_name {
            let err = match v.binary_search_by(|l| l.name.as_str().cmp(METRIC_NAME)) {
                Err(_) => Some(LabelError::MissingName),
                Ok(i) if !is_valid_metric_name(&v[i].value) => Some(LabelError::InvalidMetricName(v[i].value.clone())),
                Ok(_) => None,
            };
            if let Some(e) = err {
                return Err((e, v));
            }
        }
        Ok(Self(v))
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self::from_unsorted(pairs.into_iter().map(|(k, v)| Label::new(k, v)).collect())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.binary_search_by(|l| l.name.as_str().cmp(name)).ok().map(|i| self.0[i].value.as_str())
    }

    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// Sets (or with an empty value, removes) a label, keeping the set canonical.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.0.binary_search_by(|l| l.name.as_str().cmp(name)) {
            Ok(i) if value.is_empty() => {
                self.0.remove(i);
            }
            Ok(i) => self.0[i].value = value,
            Err(_) if value.is_empty() => {}
            Err(i) => self.0.insert(i, Label::new(name, value)),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.set(name, "");
    }

    pub fn without_metric_name(&self) -> Labels {
        Labels(self.0.iter().filter(|l| l.name != METRIC_NAME).cloned().collect())
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }

    /// A stable 64-bit FNV-1a hash of the canonical form; used for sharding and maps.
    pub fn stable_hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for l in &self.0 {
            for b in l.name.as_bytes().iter().chain([0xffu8].iter()).chain(l.value.as_bytes()).chain([0xfeu8].iter()) {
                h ^= *b as u64;
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        h
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Prometheus's rendering: `name{a="1", b="2"}`.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.metric_name() {
            f.write_str(n)?;
        }
        f.write_str("{")?;
        let mut first = true;
        for l in self.0.iter().filter(|l| l.name != METRIC_NAME) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        f.write_str("}")
    }
}

pub fn is_valid_label_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

pub fn is_valid_metric_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

fn validate_label(name: &str, value: &str) -> Result<(), LabelError> {
    if name.len() > MAX_LABEL_NAME_LEN {
        return Err(LabelError::NameTooLong { name: truncate(name), max: MAX_LABEL_NAME_LEN });
    }
    if !is_valid_label_name(name) {
        return Err(LabelError::InvalidName(truncate(name)));
    }
    if value.len() > MAX_LABEL_VALUE_LEN {
        return Err(LabelError::ValueTooLong { name: name.into(), max: MAX_LABEL_VALUE_LEN });
    }
    Ok(())
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_order_and_empty_values() {
        let l = Labels::from_pairs([("b", "2"), ("__name__", "up"), ("a", "1"), ("z", "")]);
        assert_eq!(l.to_string(), r#"up{a="1", b="2"}"#);
        assert_eq!(l.len(), 3);
    }

    #[test]
    fn validation_names_the_problem() {
        let err = Labels::validated_series(vec![Label::new("__name__", "up"), Label::new("1x", "a")]).unwrap_err();
        assert_eq!(err, LabelError::InvalidName("1x".into()));
        let err =
            Labels::validated_series(vec![Label::new("a", "1"), Label::new("a", "2"), Label::new("__name__", "x")])
                .unwrap_err();
        assert_eq!(err, LabelError::Duplicate("a".into()));
        assert_eq!(Labels::validated_series(vec![Label::new("a", "1")]).unwrap_err(), LabelError::MissingName);
        assert!(matches!(
            Labels::validated_series(vec![Label::new("__name__", "bad-name")]),
            Err(LabelError::InvalidMetricName(_))
        ));
    }

    #[test]
    fn set_and_remove_keep_sorted() {
        let mut l = Labels::from_pairs([("b", "2")]);
        l.set("a", "1");
        l.set("c", "3");
        assert_eq!(l.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        l.remove("b");
        assert_eq!(l.get("b"), None);
        assert_eq!(l.stable_hash(), Labels::from_pairs([("c", "3"), ("a", "1")]).stable_hash());
    }
}
