//! WeChat Work group robot (`/cgi-bin/webhook/send?key=…`): markdown messages, split on line
//! boundaries when over the 4,096-byte limit (never inside a UTF-8 character), and an optional
//! text message that @-mentions phone numbers (markdown cannot mention by phone).

use super::http::{HttpClient, percent_encode};
use super::{BuildError, Message, Notifier, NotifyError, Receipt, WecomRobotConfig, secret};
use crate::templates::TemplateKind;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// The documented limit of a robot markdown `content`, in bytes of UTF-8.
pub const MARKDOWN_MAX_BYTES: usize = 4096;

pub struct WecomRobot {
    url: String,
    http: HttpClient,
}

impl WecomRobot {
    pub fn new(name: &str, c: &WecomRobotConfig, timeout: Duration) -> Result<Self, BuildError> {
        let key = secret(&format!("wecom_robots.{name}.key"), &c.key)?;
        let http = HttpClient::new(timeout, c.ca_file.as_deref(), &format!("wecom_robots.{name}.ca_file"))?;
        let url = format!("{}/cgi-bin/webhook/send?key={}", c.api_base.trim_end_matches('/'), percent_encode(&key));
        Ok(Self { url, http })
    }

    fn post(&self, body: &Value) -> Result<String, NotifyError> {
        let v = self.http.post_json(&self.url, &[], body)?.json()?;
        check_errcode(&v)
    }
}

/// WeChat Work answers 200 with `errcode`; 0 is success. -1 (busy) and 45009 (rate limit)
/// pass with time; anything else is a configuration or content problem.
pub(crate) fn check_errcode(v: &Value) -> Result<String, NotifyError> {
    let code = v.get("errcode").and_then(Value::as_i64).unwrap_or(-1);
    let msg = v.get("errmsg").and_then(Value::as_str).unwrap_or("");
    match code {
        0 => Ok(msg.to_string()),
        -1 | 45009 | 45033 => Err(NotifyError::Transient(format!("errcode {code}: {msg}"))),
        _ => Err(NotifyError::Permanent(format!("errcode {code}: {msg}"))),
    }
}

pub struct RobotChannel {
    robot: Arc<WecomRobot>,
    mention_mobiles: Vec<String>,
}

impl RobotChannel {
    pub fn new(robot: Arc<WecomRobot>, mention_mobiles: Vec<String>) -> Self {
        Self { robot, mention_mobiles }
    }
}

impl Notifier for RobotChannel {
    fn send(&self, msg: &Message<'_>) -> Result<Receipt, NotifyError> {
        let text = msg
            .templates
            .render(TemplateKind::Markdown, msg.notification, msg.language)
            .map_err(|e| NotifyError::Permanent(e.to_string()))?;
        let mut bodies: Vec<Value> = split_utf8_lines(&text, MARKDOWN_MAX_BYTES)
            .into_iter()
            .map(|part| json!({"msgtype": "markdown", "markdown": {"content": part}}))
            .collect();
        let markdown_parts = bodies.len();
        if !self.mention_mobiles.is_empty() {
            let ctx = msg.templates.context(msg.notification, msg.language);
            let line = msg
                .templates
                .render_kind(TemplateKind::Sms, msg.language, &ctx)
                .map_err(|e| NotifyError::Permanent(e.to_string()))?;
            let content = split_utf8_lines(&line, 2048).into_iter().next().unwrap_or_default();
            bodies.push(json!({
                "msgtype": "text",
                "text": {"content": content, "mentioned_mobile_list": self.mention_mobiles},
            }));
        }
        // The robot cannot deduplicate, so each accepted piece is remembered across retries.
        msg.for_each_part(&bodies, |b| self.robot.post(b).map(|_| ()))?;
        Ok(Receipt(format!("{markdown_parts} markdown part(s)")))
    }
}

/// Splits `text` into pieces of at most `max` bytes, cutting after a newline where possible
/// and otherwise at a character boundary, so each piece is valid UTF-8 and reads naturally.
pub fn split_utf8_lines(text: &str, max: usize) -> Vec<String> {
    assert!(max >= 4, "a piece must hold at least one UTF-8 character");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.split_inclusive('\n') {
        if current.len() + line.len() <= max {
            current.push_str(line);
            continue;
        }
        if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
        let mut rest = line;
        while rest.len() > max {
            let mut cut = max;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            out.push(rest[..cut].to_string());
            rest = &rest[cut..];
        }
        current.push_str(rest);
    }
    if !current.is_empty() {
        out.push(current);
    }
    // Trailing newlines are noise in a chat message.
    out.iter_mut().for_each(|p| {
        let t = p.trim_end_matches('\n').len();
        p.truncate(t);
    });
    out.retain(|p| !p.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_respects_limit_lines_and_utf8() {
        let line = "磁盘使用率过高 host=his-db-01\n"; // 3-byte characters
        let text = line.repeat(300);
        let parts = split_utf8_lines(&text, 4096);
        assert!(parts.len() > 1);
        for p in &parts {
            assert!(p.len() <= 4096);
            assert!(p.ends_with("his-db-01"), "cut on a line boundary");
        }
        assert_eq!(parts.join("\n") + "\n", text);
        // One line longer than the limit: cut at character boundaries.
        let long = "警".repeat(2000); // 6000 bytes
        let parts = split_utf8_lines(&long, 4096);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.len() <= 4096));
        assert_eq!(parts.concat(), long);
        assert_eq!(split_utf8_lines("short", 4096), vec!["short".to_string()]);
    }
}
