//! Config parsing and validation of `[alerting.notify]`.

use super::*;

fn parse(s: &str) -> Result<NotifyConfig, toml::de::Error> {
    toml::from_str(s)
}

const BASE: &str = r#"
[smtp]
host = "mail.hospital.example"
from = "听诊告警 <alerts@hospital.example>"
username = "alerts"
password = { env = "TZ_SMTP_PW" }

[wecom_robots.infra]
key = { file = "/etc/tingzhen/robot-infra.key" }

[aliyun_sms]
access_key_id = { env = "ALI_ID" }
access_key_secret = { env = "ALI_SECRET" }
sign_name = "某某医院"
template_code = "SMS_123"

[[receivers]]
name = "infra"
channels = [{ type = "wecom_robot", robot = "infra" }, { type = "email", to = ["ops@hospital.example"] }]
fallback = [{ type = "sms", provider = "aliyun", phones = ["13800000000"] }]
"#;

#[test]
fn example_parses_validates_and_names_channels() {
    let c = parse(BASE).unwrap();
    c.validate().unwrap();
    let r = &c.receivers[0];
    assert_eq!(r.language, Language::ZhCn);
    let (p, f) = r.channel_names();
    assert_eq!(p, vec!["wecom_robot:infra", "email"]);
    assert_eq!(f, vec!["sms_aliyun"]);
}

#[test]
fn unknown_keys_and_inline_secrets_are_errors() {
    let e = parse(&BASE.replace("sign_name =", "sign_nmae =")).unwrap_err().to_string();
    assert!(e.contains("sign_nmae"), "{e}");
    let e = parse(&BASE.replace("{ env = \"TZ_SMTP_PW\" }", "\"hunter2\"")).unwrap_err().to_string();
    assert!(e.contains("password") || e.contains("SecretRef") || e.contains("struct"), "{e}");
    let e = parse(&BASE.replace("robot = \"infra\" }", "robot = \"infra\", colour = 1 }")).unwrap_err().to_string();
    assert!(e.contains("colour"), "{e}");
}

#[test]
fn validation_names_the_field() {
    let c = parse(&BASE.replace("robot = \"infra\"", "robot = \"nope\"")).unwrap();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("receivers[0].channels[0]") && e.contains("wecom_robots.nope"), "{e}");
    let c = parse(&BASE.replace("13800000000", "138-0000")).unwrap();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("receivers[0].fallback[0].phones"), "{e}");
    let c = parse(
        &BASE.replace("host = \"mail.hospital.example\"", "host = \"mail.hospital.example\"\nsecurity = \"plain\""),
    )
    .unwrap();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("smtp.security"), "{e}");
    let c = parse(&BASE.replace("ops@hospital.example", "not an address")).unwrap();
    assert!(c.validate().unwrap_err().to_string().contains("receivers[0].channels[1].to"));
    let c = parse(&BASE.replace(
        "template_code = \"SMS_123\"",
        "template_code = \"SMS_123\"\ntemplate_params = { a = \"{{#if x}}\" }",
    ))
    .unwrap();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("aliyun_sms.template_params.a"), "{e}");
}

#[test]
fn a_receiver_without_channels_records_only_but_a_lone_fallback_is_refused() {
    let null = parse("[[receivers]]\nname = \"console\"\nchannels = []\n").unwrap();
    null.validate().expect("a receiver with no channels is Alertmanager's null receiver");
    let c = parse(&BASE.replace(
        "channels = [{ type = \"wecom_robot\", robot = \"infra\" }, { type = \"email\", to = [\"ops@hospital.example\"] }]",
        "channels = []",
    ))
    .unwrap();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("receivers[0].fallback"), "{e}");
}

#[test]
fn backoff_grows_and_caps() {
    let r = RetryConfig::default();
    assert_eq!(r.backoff(1), std::time::Duration::from_secs(2));
    assert_eq!(r.backoff(2), std::time::Duration::from_secs(4));
    assert_eq!(r.backoff(40), std::time::Duration::from_secs(300));
}

/// The `[alerting.notify]` part of the shipped example config parses and validates.
#[test]
fn deploy_example_section_is_valid() {
    let text = include_str!("../../../deploy/tingzhen.example.toml");
    let all: toml::Table = toml::from_str(text).unwrap();
    let notify = all.get("alerting").and_then(|a| a.get("notify")).expect("[alerting.notify] in the example").clone();
    let c: NotifyConfig = notify.try_into().unwrap_or_else(|e| panic!("example [alerting.notify]: {e}"));
    c.validate().unwrap();
    assert!(c.receivers.len() >= 2 && c.smtp.is_some() && c.wecom_app.is_some());
    assert!(c.aliyun_sms.is_some() && c.tencent_sms.is_some() && !c.webhooks.is_empty());
}
