//! One-time verification codes by SMS (password reset, MLPS 1.2/1.5/1.6), sent through an SMS
//! provider configured in `[alerting.notify]`. The providers' own code signs and sends the
//! request (Aliyun's RPC signature, Tencent's TC3, the HTTP gateway's configured body); only the
//! template and its variables differ from a notification.
//!
//! The code is a secret: it is never logged, never in a `Receipt`, and any provider answer that
//! echoes it has it masked before it is returned in a `NotifyError`.

use super::sms_aliyun::AliyunSms;
use super::sms_http::HttpSms;
use super::sms_tencent::TencentSms;
use super::{BuildError, Language, NotifyConfig, NotifyError, Receipt};
use crate::templates::{Templates, truncate_chars};
use serde_json::json;

const PROVIDER_KEY: &str = "identity.password_reset.sms_provider";
const TEMPLATE_KEY: &str = "identity.password_reset.sms_template";

const DEFAULT_ZH_CN: &str = "您的听诊密码重置验证码为 {{code}}，{{minutes}} 分钟内有效。如非本人操作，请忽略本短信。";
const DEFAULT_EN: &str = "Your tingzhen password reset code is {{code}}, valid for {{minutes}} minutes. \
    If you did not ask for it, ignore this message.";

/// What replaces the code in error messages.
const MASK: &str = "******";

/// Which configured provider sends codes.
pub struct CodeSms {
    inner: Inner,
}

enum Inner {
    Aliyun { sms: AliyunSms, template_code: String },
    Tencent { sms: TencentSms, template_id: String },
    Http { sms: HttpSms, text: Option<String>, templates: Templates },
}

impl std::fmt::Debug for CodeSms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let provider = match &self.inner {
            Inner::Aliyun { .. } => "aliyun_sms",
            Inner::Tencent { .. } => "tencent_sms",
            Inner::Http { .. } => "http_sms",
        };
        f.debug_struct("CodeSms").field("provider", &provider).finish_non_exhaustive()
    }
}

fn setting(key: &str, message: impl Into<String>) -> BuildError {
    BuildError::Setting { key: key.to_string(), message: message.into() }
}

fn default_text(language: Language) -> &'static str {
    match language {
        Language::ZhCn => DEFAULT_ZH_CN,
        Language::En => DEFAULT_EN,
    }
}

/// The SMS text of an `http_sms` code: the template over `code` and `minutes`, on one line.
fn render_text(templates: &Templates, template: &str, code: &str, minutes: u32) -> Result<String, NotifyError> {
    let ctx = json!({ "code": code, "minutes": minutes });
    let text = templates.render_str(TEMPLATE_KEY, template, &ctx).map_err(|e| NotifyError::Permanent(e.to_string()))?;
    Ok(text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The text cut to the gateway's limit, or an error when the cut would take (part of) the code.
fn fit_text(text: &str, code: &str, max_chars: usize) -> Result<String, String> {
    let cut = truncate_chars(text, max_chars);
    if cut.contains(code) {
        Ok(cut)
    } else {
        Err(format!(
            "the text has {} characters; cut to http_sms.max_chars ({max_chars}) it loses the code",
            text.chars().count()
        ))
    }
}

/// The error with the code masked, and the phone number (its digits, in whichever form the
/// provider wrote it back) shortened to `138****0000`, so the caller can log and audit it.
fn masked(e: NotifyError, code: &str, phone_digits: &str) -> NotifyError {
    let mask = |mut s: String| {
        if phone_digits.len() >= 5 {
            s = s.replace(phone_digits, &tingzhen_core::phone::mask(phone_digits));
        }
        if !code.is_empty() {
            s = s.replace(code, MASK);
        }
        s
    };
    match e {
        NotifyError::Transient(s) => NotifyError::Transient(mask(s)),
        NotifyError::Permanent(s) => NotifyError::Permanent(mask(s)),
    }
}

/// A fresh random reference for the provider (Aliyun `OutId`, Tencent `SessionContext`, the
/// gateway's `dedup_id`): 32 hex digits.
fn reference() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Whether `provider` names an SMS provider that `notify` configures: what `tingzhen config
/// check` can tell without resolving secrets or building clients.
pub fn check_provider(notify: &NotifyConfig, provider: &str) -> Result<(), BuildError> {
    let configured = match provider {
        "aliyun_sms" => notify.aliyun_sms.is_some(),
        "tencent_sms" => notify.tencent_sms.is_some(),
        "http_sms" => notify.http_sms.is_some(),
        other => {
            return Err(setting(
                PROVIDER_KEY,
                format!("{other:?} is not an SMS provider; use http_sms, aliyun_sms or tencent_sms"),
            ));
        }
    };
    if !configured {
        return Err(setting(PROVIDER_KEY, format!("{provider} is not configured in [alerting.notify]")));
    }
    Ok(())
}

impl CodeSms {
    /// `provider` is "http_sms", "aliyun_sms" or "tencent_sms" and must be configured in `notify`;
    /// `template`: for http_sms the SMS text as a handlebars template over `{{code}}` and
    /// `{{minutes}}` (empty = a built-in default per language, zh-CN: "您的听诊密码重置验证码为
    /// {{code}}，{{minutes}} 分钟内有效。如非本人操作，请忽略本短信。", en: "Your tingzhen password
    /// reset code is {{code}}, valid for {{minutes}} minutes. If you did not ask for it, ignore
    /// this message."); for aliyun_sms the approved verification template's code (SMS_…; the
    /// template has the variable ${code}); for tencent_sms the approved template id (template
    /// "{1}" = code, "{2}" = minutes). For aliyun/tencent an empty template is an error.
    /// Errors name the bad key (e.g. "identity.password_reset.sms_provider: aliyun_sms is not
    /// configured in [alerting.notify]").
    pub fn new(notify: &NotifyConfig, provider: &str, template: &str) -> Result<Self, BuildError> {
        // The caller's own keys first, then the providers' section.
        check_provider(notify, provider)?;
        let missing = || setting(PROVIDER_KEY, format!("{provider} is not configured in [alerting.notify]"));
        let template = template.trim();
        if template.is_empty() && provider != "http_sms" {
            let what = if provider == "aliyun_sms" {
                "the code of the approved verification template (SMS_…, variable ${code})"
            } else {
                "the id of the approved verification template ({1} code, {2} minutes)"
            };
            return Err(setting(TEMPLATE_KEY, format!("{provider} needs {what}")));
        }
        notify.validate()?;
        let timeout = notify.http.timeout.0;
        let inner = match provider {
            "aliyun_sms" => {
                let c = notify.aliyun_sms.as_ref().ok_or_else(missing)?;
                Inner::Aliyun { sms: AliyunSms::new(c, timeout)?, template_code: template.to_string() }
            }
            "tencent_sms" => {
                let c = notify.tencent_sms.as_ref().ok_or_else(missing)?;
                Inner::Tencent { sms: TencentSms::new(c, timeout)?, template_id: template.to_string() }
            }
            _ => {
                let c = notify.http_sms.as_ref().ok_or_else(missing)?;
                let sms = HttpSms::new(c, timeout)?;
                let templates = Templates::new()?;
                let text = (!template.is_empty()).then(|| template.to_string());
                // Fail now rather than at the first reset: the text must compile, show the code
                // and keep it within the gateway's limit (checked with a six-digit code).
                if let Some(t) = &text {
                    Templates::check_str(TEMPLATE_KEY, t)?;
                }
                let sample = "864209";
                for language in [Language::ZhCn, Language::En] {
                    let t = text.as_deref().unwrap_or(default_text(language));
                    let rendered =
                        render_text(&templates, t, sample, 10).map_err(|e| setting(TEMPLATE_KEY, e.to_string()))?;
                    if !rendered.contains(sample) {
                        return Err(setting(TEMPLATE_KEY, "the text must show the code ({{code}})"));
                    }
                    fit_text(&rendered, sample, sms.max_chars())
                        .map_err(|m| setting(TEMPLATE_KEY, format!("{m} ({})", language.as_str())))?;
                }
                Inner::Http { sms, text, templates }
            }
        };
        Ok(Self { inner })
    }

    /// Sends `code` to one phone number; blocking (ureq). `minutes` = code validity.
    ///
    /// `language` picks the built-in http_sms text; Aliyun and Tencent texts are the approved
    /// templates. The phone is digits with an optional leading `+` (a bare mainland number gets
    /// +86 for Tencent); the code is ASCII letters and digits. Errors never contain the code,
    /// and show the phone number only masked (`138****0000`).
    pub fn send_code(&self, phone: &str, code: &str, minutes: u32, language: Language) -> Result<Receipt, NotifyError> {
        let digits = phone.strip_prefix('+').unwrap_or(phone);
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(NotifyError::Permanent("the phone number must be digits with an optional leading +".into()));
        }
        if code.is_empty() || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(NotifyError::Permanent("the verification code must be ASCII letters or digits".into()));
        }
        let phones = [phone.to_string()];
        let sent = match &self.inner {
            Inner::Aliyun { sms, template_code } => {
                let param = json!({ "code": code }).to_string();
                sms.send_sms(&phones, template_code, &param, &reference())
            }
            Inner::Tencent { sms, template_id } => {
                sms.send_sms(&phones, template_id, &[code.to_string(), minutes.to_string()], &reference())
            }
            Inner::Http { sms, text, templates } => {
                let template = text.as_deref().unwrap_or(default_text(language));
                render_text(templates, template, code, minutes)
                    .and_then(|t| {
                        fit_text(&t, code, sms.max_chars())
                            .map_err(|m| NotifyError::Permanent(format!("{TEMPLATE_KEY}: {m}")))
                    })
                    .and_then(|text| {
                        let ctx = json!({ "text": text, "phone": phone, "phones": phones, "dedup_id": reference() });
                        sms.post_rendered(templates, &ctx)
                    })
                    .map(|()| Receipt("1 number(s)".into()))
            }
        };
        sent.map_err(|e| masked(e, code, digits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_never_carry_the_code() {
        let e = NotifyError::Transient("bad uri: /?TemplateParam=%7B%22code%22%3A%22482913%22%7D".into());
        let e = masked(e, "482913", "13800000000");
        assert_eq!(e, NotifyError::Transient(format!("bad uri: /?TemplateParam=%7B%22code%22%3A%22{MASK}%22%7D")));
        let e =
            masked(NotifyError::Permanent("HTTP 400: 13800000000 您的验证码为 482913".into()), "482913", "13800000000");
        assert_eq!(e, NotifyError::Permanent(format!("HTTP 400: 138****0000 您的验证码为 {MASK}")));
        // The phone first, so a code that happens to be part of the number cannot unmask it.
        let e = masked(NotifyError::Permanent("Tencent: +8613800000000 Fail".into()), "000000", "13800000000");
        assert_eq!(e, NotifyError::Permanent("Tencent: +86138****0000 Fail".into()));
        assert_eq!(tingzhen_core::phone::mask("8613800000000"), "861******0000");
        assert_eq!(tingzhen_core::phone::mask("1234567"), "*****67");
    }

    #[test]
    fn default_texts_show_code_and_minutes_on_one_line() {
        let t = Templates::new().unwrap();
        let zh = render_text(&t, DEFAULT_ZH_CN, "482913", 5).unwrap();
        assert_eq!(zh, "您的听诊密码重置验证码为 482913，5 分钟内有效。如非本人操作，请忽略本短信。");
        let en = render_text(&t, DEFAULT_EN, "482913", 5).unwrap();
        assert!(en.starts_with("Your tingzhen password reset code is 482913, valid for 5 minutes."), "{en}");
        assert_eq!(render_text(&t, "a\n {{code}}\tb", "1", 1).unwrap(), "a 1 b");
    }

    #[test]
    fn a_cut_that_would_drop_the_code_is_refused() {
        assert_eq!(fit_text("code 123456 valid", "123456", 13).unwrap(), "code 123456 …");
        assert!(fit_text("code 123456 valid", "123456", 10).unwrap_err().contains("loses the code"));
    }
}
