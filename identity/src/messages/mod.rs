//! Every user-facing identity message, keyed by `Msg`; the text of each language lives in one
//! file (`zh_cn.rs`, `en.rs`). zh-CN is the default; English when the client asks for it.

mod en;
mod zh_cn;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Lang {
    #[default]
    #[serde(rename = "zh-CN")]
    ZhCn,
    #[serde(rename = "en")]
    En,
}

impl Lang {
    /// Picks from an `Accept-Language` header: English only when it comes before any Chinese.
    pub fn from_accept_language(header: Option<&str>) -> Self {
        let Some(h) = header else { return Self::ZhCn };
        for part in h.split(',') {
            let tag = part.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            if tag.starts_with("zh") {
                return Self::ZhCn;
            }
            if tag.starts_with("en") {
                return Self::En;
            }
        }
        Self::ZhCn
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Msg {
    PasswordTooShort { min: usize },
    PasswordClasses,
    PasswordContainsUsername,
    PasswordWeak,
    PasswordReused { history: usize },
    PasswordRules { min: usize },
    LoginInvalid,
    CaptchaRequired,
    CaptchaWrong,
    AccountLocked { minutes: i64 },
    AccountDisabled,
    AccountExpired,
    OutsideAccessHours,
    TotpRequired,
    TotpWrong,
    TotpNotPending,
    SessionExpired,
    SessionLimitReached,
    NotLoggedIn,
    CsrfMissing,
    ReplayRefused,
    Forbidden,
    PasswordChangeRequired,
    TotpEnrolmentRequired,
    PasswordExpiresSoon { days: i64 },
    AccountExpiresSoon { days: i64 },
    WrongOldPassword,
    ResetUnavailable,
    ResetCodeSent { minutes: i64 },
    ResetTooSoon { seconds: i64 },
    ResetTooMany,
    ResetCodeInvalid,
    SmsSendFailed,
    PasswordResetDone,
}

impl Msg {
    pub fn text(&self, lang: Lang) -> String {
        match lang {
            Lang::ZhCn => zh_cn::text(self),
            Lang::En => en::text(self),
        }
    }

    /// Stable machine-readable code, e.g. `password_weak`.
    pub fn code(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.get("code").and_then(|c| c.as_str()).map(str::to_string))
            .unwrap_or_default()
    }
}
