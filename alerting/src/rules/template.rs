//! Label and annotation templates, the subset of Prometheus's Go templates that alert texts
//! use: `{{ $labels.host }}`, `{{ $value }}`, `{{ .Labels.x }}` / `{{ .Value }}`, trim markers
//! (`{{-`, `-}}`), and the formatting functions `humanize`, `humanize1024`,
//! `humanizePercentage`, `humanizeDuration`, `toUpper`, `toLower`, `title` and `printf`, called
//! either way (`humanize $value` or `$value | humanize`). Anything else is refused when the
//! rule is validated, so a rule never fails to render at 3 a.m.

use crate::model::LabelMap;

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Value,
    Label(String),
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
struct Call {
    func: Func,
    args: Vec<Operand>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Func {
    Humanize,
    Humanize1024,
    HumanizePercentage,
    HumanizeDuration,
    ToUpper,
    ToLower,
    Title,
    Printf,
}

impl Func {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "humanize" => Self::Humanize,
            "humanize1024" => Self::Humanize1024,
            "humanizePercentage" => Self::HumanizePercentage,
            "humanizeDuration" => Self::HumanizeDuration,
            "toUpper" => Self::ToUpper,
            "toLower" => Self::ToLower,
            "title" => Self::Title,
            "printf" => Self::Printf,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Text(String),
    /// A first operand or call, then the functions it is piped through.
    Action {
        head: Result<Operand, Call>,
        pipe: Vec<Call>,
    },
}

/// A parsed template; render it with an alert's labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    segments: Vec<Segment>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut segments = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            let mut literal = rest[..open].to_string();
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| format!("unclosed action at {:?}", clip(&rest[open..])))?;
            let mut inner = &after[..close];
            if let Some(s) = inner.strip_prefix('-') {
                literal.truncate(literal.trim_end().len());
                inner = s;
            }
            let trim_right = inner.ends_with('-') && inner.len() > 1 && inner[..inner.len() - 1].ends_with(' ');
            if trim_right {
                inner = &inner[..inner.len() - 1];
            }
            if !literal.is_empty() {
                segments.push(Segment::Text(literal));
            }
            segments.push(parse_action(inner.trim())?);
            rest = &after[close + 2..];
            if trim_right {
                rest = rest.trim_start();
            }
        }
        if rest.contains("}}") {
            return Err(format!("unexpected \"}}}}\" in {:?}", clip(rest)));
        }
        if !rest.is_empty() {
            segments.push(Segment::Text(rest.to_string()));
        }
        Ok(Self { segments })
    }

    pub fn render(&self, labels: &LabelMap, value: f64) -> String {
        let mut out = String::new();
        for s in &self.segments {
            match s {
                Segment::Text(t) => out.push_str(t),
                Segment::Action { head, pipe } => {
                    let mut v = match head {
                        Ok(op) => eval_operand(op, labels, value),
                        Err(call) => apply(call, None, labels, value),
                    };
                    for call in pipe {
                        v = apply(call, Some(v), labels, value);
                    }
                    out.push_str(&v.to_text());
                }
            }
        }
        out
    }
}

/// Renders `text` once (parse and render); used where the text was validated before.
pub fn expand(text: &str, labels: &LabelMap, value: f64) -> String {
    match Template::parse(text) {
        Ok(t) => t.render(labels, value),
        Err(_) => text.to_string(),
    }
}

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

fn tokens(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '|' {
            chars.next();
            out.push("|".into());
        } else if c == '"' {
            chars.next();
            let mut lit = String::from("\"");
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some('n') => lit.push('\n'),
                        Some('t') => lit.push('\t'),
                        Some(o) => lit.push(o),
                        None => break,
                    },
                    '"' => {
                        closed = true;
                        break;
                    }
                    o => lit.push(o),
                }
            }
            if !closed {
                return Err(format!("unterminated string in {{{{ {s} }}}}"));
            }
            out.push(lit);
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '|' || c == '"' {
                    break;
                }
                word.push(c);
                chars.next();
            }
            out.push(word);
        }
    }
    Ok(out)
}

fn parse_operand(tok: &str) -> Result<Operand, String> {
    if let Some(lit) = tok.strip_prefix('"') {
        return Ok(Operand::Str(lit.to_string()));
    }
    match tok {
        "$value" | ".Value" => return Ok(Operand::Value),
        _ => {}
    }
    let label = tok.strip_prefix("$labels.").or_else(|| tok.strip_prefix(".Labels."));
    match label {
        Some(name) if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            Ok(Operand::Label(name.to_string()))
        }
        _ => Err(format!(
            "unsupported template term {tok:?}: use $value, $labels.<name>, a \"string\" or one of humanize, \
             humanize1024, humanizePercentage, humanizeDuration, toUpper, toLower, title, printf"
        )),
    }
}

fn parse_call(words: &[String], piped: bool) -> Result<Call, String> {
    let name = &words[0];
    let func = Func::parse(name).ok_or_else(|| format!("unknown template function {name:?}"))?;
    let args = words[1..].iter().map(|w| parse_operand(w)).collect::<Result<Vec<_>, _>>()?;
    let given = args.len() + usize::from(piped);
    match func {
        Func::Printf if given < 1 || !matches!(args.first(), Some(Operand::Str(_))) => {
            Err("printf needs a \"format\" string first".into())
        }
        Func::Printf => Ok(Call { func, args }),
        _ if given != 1 => Err(format!("{name} takes one argument, got {given}")),
        _ => Ok(Call { func, args }),
    }
}

fn parse_action(inner: &str) -> Result<Segment, String> {
    let toks = tokens(inner)?;
    if toks.is_empty() {
        return Err("empty action {{ }}".into());
    }
    let mut stages: Vec<Vec<String>> = vec![Vec::new()];
    for t in toks {
        if t == "|" {
            stages.push(Vec::new());
        } else if let Some(last) = stages.last_mut() {
            last.push(t);
        }
    }
    if stages.iter().any(Vec::is_empty) {
        return Err(format!("empty pipeline stage in {{{{ {inner} }}}}"));
    }
    let first = &stages[0];
    let head = if Func::parse(&first[0]).is_some() {
        Err(parse_call(first, false)?)
    } else if first.len() == 1 {
        Ok(parse_operand(&first[0])?)
    } else {
        return Err(format!("cannot read {{{{ {inner} }}}}: {:?} is not a function", first[0]));
    };
    let pipe = stages[1..].iter().map(|s| parse_call(s, true)).collect::<Result<Vec<_>, _>>()?;
    Ok(Segment::Action { head, pipe })
}

#[derive(Debug, Clone)]
enum Val {
    Num(f64),
    Text(String),
}

impl Val {
    fn to_text(&self) -> String {
        match self {
            Val::Num(v) => format_float(*v),
            Val::Text(s) => s.clone(),
        }
    }

    fn num(&self) -> Option<f64> {
        match self {
            Val::Num(v) => Some(*v),
            Val::Text(s) => s.trim().parse().ok(),
        }
    }
}

fn eval_operand(op: &Operand, labels: &LabelMap, value: f64) -> Val {
    match op {
        Operand::Value => Val::Num(value),
        Operand::Label(n) => Val::Text(labels.get(n).cloned().unwrap_or_default()),
        Operand::Str(s) => Val::Text(s.clone()),
    }
}

fn apply(call: &Call, piped: Option<Val>, labels: &LabelMap, value: f64) -> Val {
    let mut args: Vec<Val> = call.args.iter().map(|a| eval_operand(a, labels, value)).collect();
    if let Some(p) = piped {
        args.push(p);
    }
    let first = args.first().cloned().unwrap_or(Val::Text(String::new()));
    let numeric = |f: fn(f64) -> String| match first.num() {
        Some(v) => Val::Text(f(v)),
        None => first.clone(),
    };
    match call.func {
        Func::Humanize => numeric(humanize),
        Func::Humanize1024 => numeric(humanize1024),
        Func::HumanizePercentage => numeric(|v| format!("{}%", sig4(v * 100.0))),
        Func::HumanizeDuration => numeric(humanize_duration),
        Func::ToUpper => Val::Text(first.to_text().to_uppercase()),
        Func::ToLower => Val::Text(first.to_text().to_lowercase()),
        Func::Title => Val::Text(title(&first.to_text())),
        Func::Printf => Val::Text(printf(&first.to_text(), &args[1..])),
    }
}

/// Go's `%v` for a float: shortest representation.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{v}")
    }
}

/// `%.4g`: four significant digits, trailing zeros dropped.
fn sig4(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format_float(v);
    }
    let exp = v.abs().log10().floor() as i32;
    if !(-4..4).contains(&exp) {
        let mantissa = v / 10f64.powi(exp);
        let m = trim_zeros(format!("{mantissa:.3}"));
        return format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    let decimals = (3 - exp).max(0) as usize;
    trim_zeros(format!("{v:.decimals$}"))
}

fn trim_zeros(s: String) -> String {
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

fn humanize(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return sig4(v);
    }
    if v.abs() >= 1.0 {
        let mut x = v;
        for prefix in ["", "k", "M", "G", "T", "P", "E", "Z"] {
            if x.abs() < 1000.0 || prefix == "Z" {
                return format!("{}{prefix}", sig4(x));
            }
            x /= 1000.0;
        }
    }
    let mut x = v;
    for prefix in ["", "m", "u", "n", "p", "f", "a", "z"] {
        if x.abs() >= 1.0 || prefix == "z" {
            return format!("{}{prefix}", sig4(x));
        }
        x *= 1000.0;
    }
    sig4(v)
}

fn humanize1024(v: f64) -> String {
    let mut x = v;
    for prefix in ["", "ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi"] {
        if x.abs() < 1024.0 || prefix == "Zi" {
            return format!("{}{prefix}", sig4(x));
        }
        x /= 1024.0;
    }
    sig4(v)
}

fn humanize_duration(v: f64) -> String {
    if !v.is_finite() {
        return format_float(v);
    }
    if v.abs() < 1.0 {
        if v == 0.0 {
            return "0s".into();
        }
        return if v.abs() >= 1e-3 {
            format!("{}ms", sig4(v * 1e3))
        } else if v.abs() >= 1e-6 {
            format!("{}us", sig4(v * 1e6))
        } else {
            format!("{}ns", sig4(v * 1e9))
        };
    }
    let sign = if v < 0.0 { "-" } else { "" };
    let secs = v.abs();
    let whole = secs.floor() as u64;
    let (d, h, m, s) = (whole / 86_400, whole / 3600 % 24, whole / 60 % 60, whole % 60);
    let frac = secs - whole as f64;
    let s_text = if frac > 0.0 { sig4(s as f64 + frac) } else { s.to_string() };
    if d > 0 {
        format!("{sign}{d}d {h}h {m}m {s_text}s")
    } else if h > 0 {
        format!("{sign}{h}h {m}m {s_text}s")
    } else if m > 0 {
        format!("{sign}{m}m {s_text}s")
    } else {
        format!("{sign}{s_text}s")
    }
}

fn title(s: &str) -> String {
    let mut out = String::new();
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    out
}

/// The verbs alert texts use: `%s %v %d %f %.Nf %g %%`.
fn printf(format: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut precision: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut digits = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(*d);
                chars.next();
            }
            precision = digits.parse().ok();
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(verb @ ('s' | 'v' | 'd' | 'f' | 'g')) => {
                let Some(arg) = args.next() else {
                    out.push_str(&format!("%!{verb}(MISSING)"));
                    continue;
                };
                match (verb, arg.num()) {
                    ('d', Some(v)) => out.push_str(&format!("{}", v.trunc() as i64)),
                    ('f', Some(v)) => out.push_str(&format!("{v:.*}", precision.unwrap_or(6))),
                    ('g', Some(v)) => out.push_str(&format_float(v)),
                    _ => out.push_str(&arg.to_text()),
                }
            }
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> LabelMap {
        [("host", "db-1"), ("campus", "east")].into_iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    fn render(t: &str, v: f64) -> String {
        Template::parse(t).unwrap().render(&labels(), v)
    }

    #[test]
    fn renders_prometheus_style_templates() {
        assert_eq!(render("{{ $labels.host }} at {{$value}}", 41.5), "db-1 at 41.5");
        assert_eq!(render("{{ .Labels.campus }}/{{ .Value }}", 2.0), "east/2");
        assert_eq!(render("{{ $value | humanize }}B", 1_234_567.0), "1.235MB");
        assert_eq!(render("{{ humanize $value }}", 0.012), "12m");
        assert_eq!(render("{{ $value | humanize1024 }}", 2048.0), "2ki");
        assert_eq!(render("{{ $value | humanizePercentage }}", 0.4567), "45.67%");
        assert_eq!(render("{{ $value | humanizeDuration }}", 3725.0), "1h 2m 5s");
        assert_eq!(render("{{ printf \"%.2f\" $value }}", 1.0 / 3.0), "0.33");
        assert_eq!(render("{{ $value | printf \"%.1f%%\" }}", 97.25), "97.2%");
        assert_eq!(render("{{ $labels.host | toUpper }}", 0.0), "DB-1");
        assert_eq!(render("{{ $labels.missing }}", 0.0), "");
        assert_eq!(render("a  {{- $labels.host -}}  b", 0.0), "adb-1b");
        assert_eq!(render("no actions", 0.0), "no actions");
    }

    #[test]
    fn refuses_what_it_cannot_render() {
        for bad in [
            "{{ $labels.host ",
            "{{ }}",
            "{{ range $labels }}",
            "{{ $foo }}",
            "{{ query \"up\" }}",
            "{{ $value | nosuch }}",
            "{{ printf $value }}",
            "{{ humanize $value $value }}",
            "x }} y",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
