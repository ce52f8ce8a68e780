//! InfluxDB line protocol (1.x `/write` and 2.x `/api/v2/write`) parsed into series.
//!
//! Mapping follows VictoriaMetrics, so the same Telegraf config works against either: each
//! numeric field becomes a series named `{measurement}_{field}` with the tags as labels;
//! booleans become 1/0; string fields are skipped (they are not samples). Names that are not
//! valid Prometheus names are sanitised (`-`, `.`, ` ` → `_`). The whole body is parsed before
//! anything is returned, so one bad line rejects the request, naming the line.

use crate::labels::{Label, Labels, METRIC_NAME, is_valid_label_name};
use crate::sample::{Sample, TimeSeries};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
    Minutes,
    Hours,
}

impl Precision {
    /// Accepts both the 1.x (`n`, `u`, `ms`, `s`, `m`, `h`) and 2.x (`ns`, `us`, `ms`, `s`) spellings.
    pub fn parse(s: &str) -> Result<Self, LineProtocolError> {
        Ok(match s {
            "" | "n" | "ns" => Self::Nanoseconds,
            "u" | "us" | "µ" | "µs" => Self::Microseconds,
            "ms" => Self::Milliseconds,
            "s" => Self::Seconds,
            "m" => Self::Minutes,
            "h" => Self::Hours,
            other => return Err(LineProtocolError::Precision(other.into())),
        })
    }

    fn to_millis(self, t: i64) -> i64 {
        match self {
            Self::Nanoseconds => t.div_euclid(1_000_000),
            Self::Microseconds => t.div_euclid(1_000),
            Self::Milliseconds => t,
            Self::Seconds => t.saturating_mul(1_000),
            Self::Minutes => t.saturating_mul(60_000),
            Self::Hours => t.saturating_mul(3_600_000),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineProtocolError {
    #[error("unknown precision {0:?}: use ns, us, ms, s (or 1.x n, u, ms, s, m, h)")]
    Precision(String),
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("body is not valid UTF-8 at byte {0}")]
    Utf8(usize),
}

/// Parses a whole body. `now_ms` is used for lines without a timestamp.
pub fn parse(body: &[u8], precision: Precision, now_ms: i64) -> Result<Vec<TimeSeries>, LineProtocolError> {
    let text = std::str::from_utf8(body).map_err(|e| LineProtocolError::Utf8(e.valid_up_to()))?;
    let mut by_labels: HashMap<Labels, usize> = HashMap::new();
    let mut out: Vec<TimeSeries> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |reason: String| LineProtocolError::Line { line: i + 1, reason };
        let parsed = parse_line(line).map_err(err)?;
        let ts = match parsed.timestamp {
            Some(t) => precision.to_millis(t),
            None => now_ms,
        };
        for (field, value) in parsed.fields {
            let Some(v) = value else { continue };
            let mut labels: Vec<Label> = parsed.tags.iter().map(|(k, v)| Label::new(sanitize(k), v.clone())).collect();
            labels.push(Label::new(METRIC_NAME, format!("{}_{}", sanitize(&parsed.measurement), sanitize(&field))));
            let labels = Labels::validated_series(labels)
                .map_err(|e| LineProtocolError::Line { line: i + 1, reason: e.to_string() })?;
            let idx = *by_labels.entry(labels.clone()).or_insert_with(|| {
                out.push(TimeSeries::new(labels, Vec::new()));
                out.len() - 1
            });
            out[idx].samples.push(Sample::new(ts, v));
        }
    }
    for s in &mut out {
        s.samples.sort_by_key(|x| x.timestamp_ms);
    }
    Ok(out)
}

struct ParsedLine {
    measurement: String,
    tags: Vec<(String, String)>,
    /// `None` values are string fields, which carry no sample.
    fields: Vec<(String, Option<f64>)>,
    timestamp: Option<i64>,
}

fn sanitize(name: &str) -> String {
    if is_valid_label_name(name) {
        return name.to_string();
    }
    let mut s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.as_bytes().first().is_some_and(|b| b.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

/// Splits on an unescaped, unquoted delimiter.
fn split_unescaped(s: &str, delim: char, respect_quotes: bool) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    let mut in_quotes = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' if respect_quotes => in_quotes = !in_quotes,
            c if c == delim && !in_quotes => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                Some(',' | '=' | ' ' | '"' | '\\') => out.push(chars.next().unwrap_or('\\')),
                _ => out.push(c),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_line(line: &str) -> Result<ParsedLine, String> {
    let sections: Vec<&str> = split_unescaped(line, ' ', true).into_iter().filter(|s| !s.is_empty()).collect();
    if sections.len() < 2 {
        return Err("expected `measurement[,tags] fields [timestamp]`".into());
    }
    if sections.len() > 3 {
        return Err(format!("unexpected text after the timestamp: {:?}", sections[3]));
    }
    let mut key = split_unescaped(sections[0], ',', false).into_iter();
    let measurement = unescape(key.next().unwrap_or_default());
    if measurement.is_empty() {
        return Err("empty measurement name".into());
    }
    let mut tags = Vec::new();
    for tag in key {
        let kv = split_unescaped(tag, '=', false);
        if kv.len() != 2 || kv[0].is_empty() {
            return Err(format!("malformed tag {tag:?}: expected key=value"));
        }
        tags.push((unescape(kv[0]), unescape(kv[1])));
    }
    let mut fields = Vec::new();
    for field in split_unescaped(sections[1], ',', true) {
        let kv = split_unescaped(field, '=', true);
        if kv.len() != 2 || kv[0].is_empty() || kv[1].is_empty() {
            return Err(format!("malformed field {field:?}: expected key=value"));
        }
        fields.push((unescape(kv[0]), parse_field_value(kv[1]).map_err(|e| format!("field {:?}: {e}", kv[0]))?));
    }
    let timestamp = match sections.get(2) {
        Some(t) => Some(t.parse::<i64>().map_err(|_| format!("invalid timestamp {t:?}: expected an integer"))?),
        None => None,
    };
    Ok(ParsedLine { measurement, tags, fields, timestamp })
}

fn parse_field_value(v: &str) -> Result<Option<f64>, String> {
    if v.starts_with('"') {
        if v.len() < 2 || !v.ends_with('"') {
            return Err("unterminated string value".into());
        }
        return Ok(None);
    }
    match v {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(Some(1.0)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(Some(0.0)),
        _ => {}
    }
    if let Some(int) = v.strip_suffix('i') {
        return int.parse::<i64>().map(|x| Some(x as f64)).map_err(|_| format!("invalid integer {v:?}"));
    }
    if let Some(uint) = v.strip_suffix('u') {
        return uint.parse::<u64>().map(|x| Some(x as f64)).map_err(|_| format!("invalid unsigned integer {v:?}"));
    }
    let f = v.parse::<f64>().map_err(|_| format!("invalid number {v:?}"))?;
    if f.is_nan() || f.is_infinite() {
        return Err(format!("invalid number {v:?}"));
    }
    Ok(Some(f))
}

/// Writes series as line protocol for an InfluxDB 2 write API: measurement = metric name,
/// tags = the other labels, one field `value`, nanosecond timestamps. NaN and ±Inf (staleness
/// markers included) have no line-protocol form and are skipped; the count is returned.
pub fn write(series: &[TimeSeries], out: &mut String) -> usize {
    use std::fmt::Write as _;
    let mut skipped = 0;
    for s in series {
        let mut key = String::new();
        escape_into(s.labels.metric_name().unwrap_or("unnamed"), &[',', ' '], &mut key);
        for l in s.labels.iter().filter(|l| l.name != METRIC_NAME) {
            key.push(',');
            escape_into(&l.name, &[',', '=', ' '], &mut key);
            key.push('=');
            escape_into(&l.value, &[',', '=', ' '], &mut key);
        }
        for x in &s.samples {
            if !x.value.is_finite() {
                skipped += 1;
                continue;
            }
            let _ = writeln!(out, "{key} value={:?} {}", x.value, x.timestamp_ms.saturating_mul(1_000_000));
        }
    }
    skipped
}

fn escape_into(s: &str, special: &[char], out: &mut String) {
    for c in s.chars() {
        if special.contains(&c) || c == '\\' {
            out.push('\\');
        }
        if c == '\n' {
            out.push_str("\\n");
            continue;
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_lines_parse_back() {
        let series = vec![TimeSeries::new(
            Labels::from_pairs([("__name__", "node_load1"), ("host", "his db,01"), ("k", "a=b")]),
            vec![Sample::new(1_000, 0.5), Sample::new(2_000, f64::NAN), Sample::new(3_000, 1e21)],
        )];
        let mut text = String::new();
        assert_eq!(write(&series, &mut text), 1);
        let back = parse(text.as_bytes(), Precision::Nanoseconds, 0).unwrap();
        assert_eq!(back[0].labels.metric_name(), Some("node_load1_value"));
        assert_eq!(back[0].labels.get("host"), Some("his db,01"));
        assert_eq!(back[0].labels.get("k"), Some("a=b"));
        assert_eq!(back[0].samples, vec![Sample::new(1_000, 0.5), Sample::new(3_000, 1e21)]);
    }

    #[test]
    fn parses_fields_tags_and_precision() {
        let body =
            b"cpu,host=his-app-01,campus=huangpu usage_idle=97.5,usage_user=1i,ok=true,note=\"a b\" 1700000000\n\
                     mem,host=his-app-01 used=3u";
        let s = parse(body, Precision::Seconds, 42).unwrap();
        assert_eq!(s.len(), 4);
        let idle = s.iter().find(|s| s.labels.metric_name() == Some("cpu_usage_idle")).unwrap();
        assert_eq!(idle.labels.get("campus"), Some("huangpu"));
        assert_eq!(idle.samples, vec![Sample::new(1_700_000_000_000, 97.5)]);
        let used = s.iter().find(|s| s.labels.metric_name() == Some("mem_used")).unwrap();
        assert_eq!(used.samples[0], Sample::new(42, 3.0));
    }

    #[test]
    fn escapes_and_sanitising() {
        let s = parse(br#"disk\ io,dev=sda\,1,my-tag=x value=1 1000000"#, Precision::Nanoseconds, 0).unwrap();
        assert_eq!(s[0].labels.metric_name(), Some("disk_io_value"));
        assert_eq!(s[0].labels.get("dev"), Some("sda,1"));
        assert_eq!(s[0].labels.get("my_tag"), Some("x"));
        assert_eq!(s[0].samples[0].timestamp_ms, 1);
    }

    #[test]
    fn bad_lines_are_named() {
        let err = parse(b"ok value=1\ncpu value=abc", Precision::Nanoseconds, 0).unwrap_err();
        assert_eq!(err, LineProtocolError::Line { line: 2, reason: "field \"value\": invalid number \"abc\"".into() });
        assert!(parse(b"cpu", Precision::Nanoseconds, 0).is_err());
        assert!(parse(b"cpu value=1 notatime", Precision::Nanoseconds, 0).is_err());
        assert!(Precision::parse("weeks").is_err());
    }
}
