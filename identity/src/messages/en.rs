//! English texts for `Msg`.

use super::Msg;

pub(super) fn text(m: &Msg) -> String {
    match m {
        Msg::PasswordTooShort { min } => format!("The password must be at least {min} characters long."),
        Msg::PasswordClasses => {
            "The password must contain at least 3 of: digits, letters (upper or lower case), special characters.".into()
        }
        Msg::PasswordContainsUsername => "The password must not contain the account name (in any case).".into(),
        Msg::PasswordWeak => "This is a commonly used weak password; choose another.".into(),
        Msg::PasswordReused { history } => {
            format!("The new password must differ from the current one and the last {history} passwords.")
        }
        Msg::PasswordRules { min } => format!(
            "Password rules: at least {min} characters; at least 3 of digits, letters (upper or lower case) and special characters; must not contain the account name; must not be a common weak password; must not repeat a recent password."
        ),
        Msg::LoginInvalid => "Wrong user name or password.".into(),
        Msg::CaptchaRequired => "Enter the image captcha.".into(),
        Msg::CaptchaWrong => "The captcha is wrong or has expired; refresh it and try again.".into(),
        Msg::AccountLocked { minutes } => {
            format!("Too many failed logins: the account is locked. Try again in {minutes} minutes.")
        }
        Msg::AccountDisabled => "The account is disabled or cancelled.".into(),
        Msg::AccountExpired => "The account's validity period has ended.".into(),
        Msg::OutsideAccessHours => "This account may not sign in at this time.".into(),
        Msg::TotpRequired => "Enter the one-time code (two-factor authentication).".into(),
        Msg::TotpWrong => "Wrong one-time code.".into(),
        Msg::TotpNotPending => "No pending one-time-code enrolment; start one first.".into(),
        Msg::SessionExpired => "The session has expired; sign in again.".into(),
        Msg::SessionLimitReached => {
            "The console has reached its limit of concurrent sessions; try again later or ask an administrator.".into()
        }
        Msg::NotLoggedIn => "Sign in first.".into(),
        Msg::CsrfMissing => "Missing or wrong CSRF token.".into(),
        Msg::ReplayRefused => "The request is stale or a replay; refused.".into(),
        Msg::Forbidden => "You are not allowed to do this.".into(),
        Msg::PasswordChangeRequired => "Change your password first.".into(),
        Msg::TotpEnrolmentRequired => {
            "Your role requires two-factor authentication; enrol a one-time-code app first.".into()
        }
        Msg::PasswordExpiresSoon { days } => format!("Your password expires in {days} days; change it soon."),
        Msg::AccountExpiresSoon { days } => {
            format!("Your account expires in {days} days; ask an administrator to extend it.")
        }
        Msg::WrongOldPassword => "The current password is wrong.".into(),
        Msg::ResetUnavailable => {
            "Password reset by SMS is not enabled here; ask an administrator to reset your password.".into()
        }
        Msg::ResetCodeSent { minutes } => format!(
            "If the account and the phone number match, a verification code has been sent; it is valid for {minutes} minutes."
        ),
        Msg::ResetTooSoon { seconds } => format!("Wait {seconds} seconds before asking for another code."),
        Msg::ResetTooMany => "Too many codes asked for this account in the last hour; try again later.".into(),
        Msg::ResetCodeInvalid => "The verification code is wrong or no longer valid; ask for a new one.".into(),
        Msg::SmsSendFailed => "The text message could not be sent; try again later or ask an administrator.".into(),
        Msg::PasswordResetDone => "The password has been reset; sign in with the new password.".into(),
    }
}
