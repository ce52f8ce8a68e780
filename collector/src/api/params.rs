//! Query-string and form parameters the way Prometheus reads them: times as Unix seconds
//! (fractions allowed) or RFC 3339; durations as seconds or `1h30m`-style strings; repeated
//! `match[]`. Errors name the parameter.

use super::error::ApiError;
pub use tingzhen_core::now_ms;

/// Earliest and latest times Prometheus accepts for open-ended series/label lookups.
pub const MIN_TIME_MS: i64 = -9_223_372_036_854;
pub const MAX_TIME_MS: i64 = 9_223_372_036_854;

/// The parameters of one request, from the query string (GET) or the form body (POST).
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name).filter(|v| !v.is_empty()).ok_or_else(|| ApiError::BadData(format!("missing parameter {name:?}")))
    }

    pub fn time_or(&self, name: &str, default_ms: i64) -> Result<i64, ApiError> {
        match self.get(name) {
            None | Some("") => Ok(default_ms),
            Some(v) => parse_time(v).map_err(|e| ApiError::BadData(format!("invalid parameter {name:?}: {e}"))),
        }
    }

    pub fn duration_ms(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) => parse_duration_ms(v)
                .map(Some)
                .map_err(|e| ApiError::BadData(format!("invalid parameter {name:?}: {e}"))),
        }
    }
}

pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() {
            return Err(format!("cannot parse {s:?} to a valid timestamp"));
        }
        let ms = (secs * 1000.0).round();
        return Ok(ms.clamp(MIN_TIME_MS as f64, MAX_TIME_MS as f64) as i64);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| format!("cannot parse {s:?} to a valid timestamp"))
}

/// Seconds (`15`, `0.5`) or a Prometheus duration (`1h30m`, `5m`, `250ms`, `1d`, `1w`, `1y`).
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 || secs * 1000.0 > i64::MAX as f64 {
            return Err(format!("cannot parse {s:?} to a valid duration"));
        }
        return Ok((secs * 1000.0).round() as i64);
    }
    let bad = || format!("cannot parse {s:?} to a valid duration");
    let mut total: i64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit_ms = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return Err(bad()),
        };
        total = n.checked_mul(unit_ms).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations() {
        assert_eq!(parse_time("1700000000.5").unwrap(), 1_700_000_000_500);
        assert_eq!(parse_time("2023-11-14T22:13:20Z").unwrap(), 1_700_000_000_000);
        assert!(parse_time("yesterday").is_err());
        assert_eq!(parse_duration_ms("15").unwrap(), 15_000);
        assert_eq!(parse_duration_ms("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration_ms("250ms").unwrap(), 250);
        assert!(parse_duration_ms("5x").is_err());
        assert!(parse_duration_ms("-1").is_err());
        assert!(parse_duration_ms("").is_err());
    }
}
