//! Templates and their helpers. Every `.hbs` under `templates/` is embedded at build time and
//! registered by its path without the extension (`layout`, `pages/overview`, `partials/…`);
//! handlebars escapes every `{{value}}`, so user data cannot become markup. Only SVG drawn by
//! `charts` (which escapes its own text) is inserted raw, with `{{{…}}}`.

use chrono::{FixedOffset, TimeZone};
use handlebars::{Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderErrorReason};
use rust_embed::RustEmbed;
use serde::Serialize;

#[derive(RustEmbed)]
#[folder = "src/templates/"]
struct Templates;

#[derive(Debug, thiserror::Error)]
#[error("dashboard template {name}: {reason}")]
pub struct RenderSetupError {
    name: String,
    reason: String,
}

#[derive(Debug, thiserror::Error)]
#[error("rendering {name}: {reason}")]
pub struct RenderError {
    pub name: String,
    pub reason: String,
}

pub struct Views {
    hb: Handlebars<'static>,
}

impl std::fmt::Debug for Views {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Views")
    }
}

/// China Standard Time: the console shows every time in Asia/Shanghai (no daylight saving).
pub fn shanghai() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset")
}

/// `2026-11-26 13:05:01` in Asia/Shanghai; empty for a missing or zero time.
pub fn format_ms(ms: i64) -> String {
    if ms <= 0 {
        return String::new();
    }
    match shanghai().timestamp_millis_opt(ms).single() {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => String::new(),
    }
}

impl Views {
    pub fn load() -> Result<Self, RenderSetupError> {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(false);
        for file in Templates::iter() {
            let Some(name) = file.strip_suffix(".hbs") else { continue };
            let body = Templates::get(&file).expect("listed template exists");
            let text = std::str::from_utf8(&body.data)
                .map_err(|e| RenderSetupError { name: name.to_string(), reason: e.to_string() })?;
            hb.register_template_string(name, text)
                .map_err(|e| RenderSetupError { name: name.to_string(), reason: e.to_string() })?;
        }
        hb.register_helper("time", Box::new(time_helper));
        hb.register_helper("pct", Box::new(pct_helper));
        hb.register_helper("num", Box::new(num_helper));
        Ok(Self { hb })
    }

    pub fn render(&self, name: &str, data: &impl Serialize) -> Result<String, RenderError> {
        self.hb.render(name, data).map_err(|e| RenderError { name: name.to_string(), reason: e.to_string() })
    }

    pub fn has(&self, name: &str) -> bool {
        self.hb.has_template(name)
    }
}

fn param_f64(h: &Helper) -> Option<f64> {
    let v = h.param(0)?.value();
    v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// `{{time ms}}`: Unix milliseconds as local time.
fn time_helper(h: &Helper, _: &Handlebars, _: &Context, _: &mut RenderContext, out: &mut dyn Output) -> HelperResult {
    let ms = h.param(0).and_then(|p| p.value().as_i64()).unwrap_or(0);
    out.write(&format_ms(ms))?;
    Ok(())
}

/// `{{pct ratio}}`: 0.123 → `12.3%`; empty when the value is missing.
fn pct_helper(h: &Helper, _: &Handlebars, _: &Context, _: &mut RenderContext, out: &mut dyn Output) -> HelperResult {
    if let Some(v) = param_f64(h).filter(|v| v.is_finite()) {
        out.write(&format!("{:.1}%", v * 100.0))?;
    }
    Ok(())
}

/// `{{num value}}`: a readable number (integers as is, others with up to 2 decimals, large
/// ones with K/M/G suffixes).
fn num_helper(h: &Helper, _: &Handlebars, _: &Context, _: &mut RenderContext, out: &mut dyn Output) -> HelperResult {
    let v = param_f64(h).ok_or_else(|| RenderErrorReason::ParamNotFoundForIndex("num", 0))?;
    out.write(&human_number(v))?;
    Ok(())
}

pub fn human_number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let a = v.abs();
    let (scaled, suffix) = match a {
        a if a >= 1e9 => (v / 1e9, "G"),
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e4 => (v / 1e3, "K"),
        _ => (v, ""),
    };
    if scaled.fract() == 0.0 {
        format!("{scaled:.0}{suffix}")
    } else {
        let s = format!("{scaled:.2}");
        format!("{}{suffix}", s.trim_end_matches('0').trim_end_matches('.'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles_and_values_are_escaped() {
        let v = Views::load().expect("templates compile");
        assert!(v.has("layout"), "layout template is embedded");
        let html = v.render("partials/text", &serde_json::json!({"text": "<script>alert(1)</script>"})).unwrap();
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"), "{html}");
    }

    #[test]
    fn times_are_shown_in_shanghai_and_numbers_readably() {
        assert_eq!(format_ms(0), "");
        assert_eq!(format_ms(1_764_115_200_000), "2025-11-26 08:00:00");
        assert_eq!(human_number(12.0), "12");
        assert_eq!(human_number(0.126), "0.13");
        assert_eq!(human_number(25_300.0), "25.3K");
        assert_eq!(human_number(3.2e9), "3.2G");
    }
}
