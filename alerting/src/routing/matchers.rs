//! Label matchers over alert label maps, parsed from Alertmanager's string form
//! (`team="db"`, `severity=~"critical|warning"`) with core's `Matcher` semantics (anchored
//! regexes; an absent label matches as "").

use crate::model::LabelMap;
use tingzhen_core::matcher::{MatchOp, Matcher};

/// Parses one matcher; the error says what is wrong, the caller adds where.
pub fn parse_matcher(s: &str) -> Result<Matcher, String> {
    let s = s.trim();
    let name_end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    let name = &s[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("{s:?}: expected a label name first, e.g. severity=\"critical\""));
    }
    let rest = s[name_end..].trim_start();
    let (op, rest) = if let Some(r) = rest.strip_prefix("=~") {
        (MatchOp::RegexMatch, r)
    } else if let Some(r) = rest.strip_prefix("!~") {
        (MatchOp::RegexNoMatch, r)
    } else if let Some(r) = rest.strip_prefix("!=") {
        (MatchOp::NotEqual, r)
    } else if let Some(r) = rest.strip_prefix('=') {
        (MatchOp::Equal, r)
    } else {
        return Err(format!("{s:?}: expected one of = != =~ !~ after the label name"));
    };
    let rest = rest.trim();
    let value = if rest.starts_with('"') {
        // A JSON string literal gives the usual escapes (\" \\ \n \u…) exactly.
        serde_json::from_str::<String>(rest).map_err(|e| format!("{s:?}: bad quoted value: {e}"))?
    } else {
        if rest.contains(char::is_whitespace) || rest.contains('"') {
            return Err(format!("{s:?}: quote values that contain spaces or quotes"));
        }
        rest.to_string()
    };
    Matcher::new(op, name, value).map_err(|e| e.to_string())
}

pub fn parse_all(list: &[String], field: &str) -> Result<Vec<Matcher>, super::RoutingError> {
    list.iter()
        .enumerate()
        .map(|(i, m)| parse_matcher(m).map_err(|e| super::RoutingError::config(format!("{field}[{i}]"), e)))
        .collect()
}

pub fn matches(m: &Matcher, labels: &LabelMap) -> bool {
    m.matches_value(labels.get(&m.name).map(String::as_str))
}

pub fn matches_all(ms: &[Matcher], labels: &LabelMap) -> bool {
    ms.iter().all(|m| matches(m, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> LabelMap {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parses_the_four_operators_and_quoting() {
        let l = labels(&[("severity", "critical"), ("campus", "east"), ("system", "his")]);
        assert!(matches(&parse_matcher(r#"severity="critical""#).unwrap(), &l));
        assert!(matches(&parse_matcher("campus != west").unwrap(), &l));
        assert!(matches(&parse_matcher(r#"system=~"his|lis""#).unwrap(), &l));
        assert!(!matches(&parse_matcher(r#"system!~"h.*""#).unwrap(), &l));
        assert!(matches(&parse_matcher(r#"team="""#).unwrap(), &l), "absent label matches empty");
        assert_eq!(parse_matcher(r#"a="x \"y\"""#).unwrap().value, "x \"y\"");
    }

    #[test]
    fn bad_matchers_say_why() {
        assert!(parse_matcher("severity").unwrap_err().contains("= != =~ !~"));
        assert!(parse_matcher("=x").unwrap_err().contains("label name"));
        assert!(parse_matcher("a=~\"(\"").unwrap_err().contains("regex"));
        assert!(parse_matcher("a=b c").unwrap_err().contains("quote"));
    }
}
