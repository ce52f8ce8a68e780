//! Charts as SVG drawn on the server: no chart library, no script, nothing fetched from the
//! network, readable on a phone and across a room. Every text that reaches the SVG is escaped
//! here, which is what lets templates insert the result raw.

use std::fmt::Write;

/// One line of a line chart: points are (Unix ms, value); NaN/inf points are gaps.
#[derive(Debug, Clone)]
pub struct Line {
    pub name: String,
    pub points: Vec<(i64, f64)>,
}

const PALETTE: [&str; 8] = ["#2f7ed8", "#e4572e", "#17a673", "#f3a712", "#8e44ad", "#16a2b8", "#c0392b", "#7f8c8d"];
const W: f64 = 640.0;
const H: f64 = 220.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 42.0;

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Tick label for a value axis: `unit` is `%` (values are ratios 0..1), `B` (bytes),
/// `B/s`, or empty.
pub fn axis_label(v: f64, unit: &str) -> String {
    match unit {
        "%" => {
            // Small ranges (a quiet host's 0–2% CPU) need a decimal to tell the ticks apart.
            let p = v * 100.0;
            if p.abs() >= 10.0 || p.fract().abs() < 0.05 { format!("{p:.0}%") } else { format!("{p:.1}%") }
        }
        "B" | "B/s" => {
            let (mut x, mut i) = (v.abs(), 0);
            let units = ["B", "KiB", "MiB", "GiB", "TiB"];
            while x >= 1024.0 && i < units.len() - 1 {
                x /= 1024.0;
                i += 1;
            }
            let sign = if v < 0.0 { "-" } else { "" };
            let per = if unit == "B/s" { "/s" } else { "" };
            if x >= 10.0 || x.fract() == 0.0 {
                format!("{sign}{x:.0}{}{per}", units[i])
            } else {
                format!("{sign}{x:.1}{}{per}", units[i])
            }
        }
        _ => crate::render::human_number(v),
    }
}

fn nice_max(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(max.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if max <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

/// A line chart with a legend. `unit` as for `axis_label`; `empty` is shown when there is no data.
pub fn line_chart(lines: &[Line], unit: &str, empty: &str) -> String {
    let finite = || lines.iter().flat_map(|l| l.points.iter()).filter(|p| p.1.is_finite());
    let (Some(t0), Some(t1)) = (finite().map(|p| p.0).min(), finite().map(|p| p.0).max()) else {
        return format!(
            r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img"><text x="{}" y="{}" text-anchor="middle" class="chart-empty">{}</text></svg>"#,
            W / 2.0,
            H / 2.0,
            escape(empty)
        );
    };
    let vmin = finite().map(|p| p.1).fold(f64::INFINITY, f64::min).min(0.0);
    let mut vmax = nice_max(finite().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max));
    if unit == "%" && vmax > 0.5 {
        vmax = vmax.max(1.0);
    }
    let span_t = ((t1 - t0) as f64).max(1.0);
    let span_v = (vmax - vmin).max(f64::EPSILON);
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let x = |t: i64| LEFT + (t - t0) as f64 / span_t * pw;
    let y = |v: f64| TOP + ph - (v - vmin) / span_v * ph;

    let mut svg = String::new();
    let _ = write!(svg, r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" preserveAspectRatio="none">"#);
    for i in 0..=4 {
        let v = vmin + span_v * i as f64 / 4.0;
        let yy = y(v);
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}"/><text class="axis" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            W - RIGHT,
            LEFT - 4.0,
            yy + 4.0,
            escape(&axis_label(v, unit))
        );
    }
    for i in 0..=3 {
        let t = t0 + ((t1 - t0) as f64 * i as f64 / 3.0) as i64;
        let label = crate::render::format_ms(t);
        let hm = label.get(11..16).unwrap_or("");
        let _ = write!(
            svg,
            r#"<text class="axis" x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            x(t),
            TOP + ph + 14.0,
            escape(hm)
        );
    }
    for (i, line) in lines.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let mut d = String::new();
        // A point with no finite neighbour draws no line, so it gets a dot (a fresh series
        // or one sample in a long range would otherwise be invisible).
        let mut dots = String::new();
        let finite_at = |i: usize| line.points.get(i).is_some_and(|p| p.1.is_finite());
        let mut pen_down = false;
        for (i, &(t, v)) in line.points.iter().enumerate() {
            if !v.is_finite() {
                pen_down = false;
                continue;
            }
            let _ = write!(d, "{}{:.1},{:.1} ", if pen_down { "L" } else { "M" }, x(t), y(v));
            if !pen_down && !finite_at(i + 1) {
                let _ = write!(dots, r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{color}"/>"#, x(t), y(v));
            }
            pen_down = true;
        }
        let _ = write!(
            svg,
            r#"<path d="{}" fill="none" stroke="{color}" stroke-width="1.8"><title>{}</title></path>{dots}"#,
            d.trim_end(),
            escape(&line.name)
        );
    }
    let mut lx = LEFT;
    for (i, line) in lines.iter().enumerate().take(8) {
        let color = PALETTE[i % PALETTE.len()];
        let name: String = line.name.chars().take(28).collect();
        let _ = write!(
            svg,
            r#"<rect x="{lx:.1}" y="{}" width="10" height="10" fill="{color}"/><text class="legend" x="{:.1}" y="{}">{}</text>"#,
            H - 14.0,
            lx + 14.0,
            H - 5.0,
            escape(&name)
        );
        lx += 24.0 + name.chars().map(|c| if c.is_ascii() { 6.5 } else { 12.0 }).sum::<f64>();
        if lx > W - 60.0 {
            break;
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Vertical bars with a label under each (e.g. alerts per hour of today).
pub fn bar_chart(bars: &[(String, f64)], empty: &str) -> String {
    if bars.is_empty() {
        return line_chart(&[], "", empty);
    }
    let vmax = nice_max(bars.iter().map(|b| b.1).fold(0.0, f64::max));
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let slot = pw / bars.len() as f64;
    let mut svg = String::new();
    let _ = write!(svg, r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" preserveAspectRatio="none">"#);
    for i in 0..=4 {
        let v = vmax * i as f64 / 4.0;
        let yy = TOP + ph - v / vmax * ph;
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}"/><text class="axis" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            W - RIGHT,
            LEFT - 4.0,
            yy + 4.0,
            escape(&crate::render::human_number(v))
        );
    }
    let every = (bars.len() / 12).max(1);
    for (i, (label, v)) in bars.iter().enumerate() {
        let h = if v.is_finite() { v / vmax * ph } else { 0.0 };
        let bx = LEFT + slot * i as f64 + slot * 0.15;
        let _ = write!(
            svg,
            r#"<rect class="bar" x="{bx:.1}" y="{:.1}" width="{:.1}" height="{h:.1}"><title>{}: {}</title></rect>"#,
            TOP + ph - h,
            slot * 0.7,
            escape(label),
            escape(&crate::render::human_number(*v))
        );
        if i % every == 0 {
            let _ = write!(
                svg,
                r#"<text class="axis" x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
                bx + slot * 0.35,
                TOP + ph + 14.0,
                escape(label)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_gaps_break_the_line() {
        let l = Line { name: "<b>\"x\"</b>".into(), points: vec![(0, 1.0), (1000, f64::NAN), (2000, 2.0)] };
        let svg = line_chart(&[l], "", "no data");
        assert!(svg.contains("&lt;b&gt;&quot;x&quot;&lt;/b&gt;") && !svg.contains("<b>"), "{svg}");
        let path = svg.split(r#"<path d=""#).nth(1).unwrap();
        assert_eq!(path.matches('M').count(), 2, "a NaN starts a new segment: {path}");
        assert!(line_chart(&[], "", "无数据").contains("无数据"));
        assert_eq!(svg.matches("<circle").count(), 2, "both isolated points are dotted: {svg}");
        let joined = Line { name: "x".into(), points: vec![(0, 1.0), (1000, 2.0)] };
        assert!(!line_chart(&[joined], "", "").contains("<circle"), "a drawn line needs no dots");
    }

    #[test]
    fn axis_labels_read_naturally() {
        assert_eq!(axis_label(0.5, "%"), "50%");
        assert_eq!(axis_label(0.005, "%"), "0.5%");
        assert_eq!(axis_label(0.015, "%"), "1.5%");
        assert_eq!(axis_label(1536.0, "B"), "1.5KiB");
        assert_eq!(axis_label(10.0 * 1024.0 * 1024.0, "B/s"), "10MiB/s");
        assert_eq!(nice_max(7.3), 10.0);
        assert_eq!(nice_max(0.42), 0.5);
    }

    #[test]
    fn bars_have_one_rect_each() {
        let bars: Vec<(String, f64)> = (0..24).map(|h| (format!("{h:02}"), h as f64)).collect();
        let svg = bar_chart(&bars, "none");
        assert_eq!(svg.matches(r#"class="bar""#).count(), 24);
    }
}
