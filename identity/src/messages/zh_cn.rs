//! Simplified Chinese texts for `Msg` (the default language).

use super::Msg;

pub(super) fn text(m: &Msg) -> String {
    match m {
        Msg::PasswordTooShort { min } => format!("密码长度至少 {min} 位。"),
        Msg::PasswordClasses => "密码须包含数字、字母（大写或小写）、特殊符号中的至少 3 类。".into(),
        Msg::PasswordContainsUsername => "密码不得包含账号名（不区分大小写）。".into(),
        Msg::PasswordWeak => "该密码为常见弱密码，请更换。".into(),
        Msg::PasswordReused { history } => format!("新密码不得与当前密码及最近 {history} 次使用过的密码相同。"),
        Msg::PasswordRules { min } => format!(
            "密码规则：至少 {min} 位；由数字、字母（大写或小写）、特殊符号中的至少 3 类组成；不得包含账号名；不得为常见弱密码；不得与最近使用过的密码重复。"
        ),
        Msg::LoginInvalid => "用户名或密码错误。".into(),
        Msg::CaptchaRequired => "请输入图形验证码。".into(),
        Msg::CaptchaWrong => "图形验证码错误或已失效，请刷新后重试。".into(),
        Msg::AccountLocked { minutes } => format!("登录失败次数过多，账号已锁定，请 {minutes} 分钟后再试。"),
        Msg::AccountDisabled => "账号已停用或注销。".into(),
        Msg::AccountExpired => "账号已超过有效期。".into(),
        Msg::OutsideAccessHours => "当前时间不在该账号允许的访问时段内。".into(),
        Msg::TotpRequired => "请输入动态口令（双因素认证）。".into(),
        Msg::TotpWrong => "动态口令错误。".into(),
        Msg::TotpNotPending => "没有待确认的动态口令绑定，请先发起绑定。".into(),
        Msg::SessionExpired => "会话已超时，请重新登录。".into(),
        Msg::SessionLimitReached => "系统在线会话数已达上限，请稍后再试或联系管理员。".into(),
        Msg::NotLoggedIn => "请先登录。".into(),
        Msg::CsrfMissing => "缺少或错误的防跨站请求令牌（CSRF）。".into(),
        Msg::ReplayRefused => "请求已过期或重复提交，已拒绝。".into(),
        Msg::Forbidden => "无权执行此操作。".into(),
        Msg::PasswordChangeRequired => "请先修改密码。".into(),
        Msg::TotpEnrolmentRequired => "您的角色要求双因素认证，请先绑定动态口令。".into(),
        Msg::PasswordExpiresSoon { days } => format!("密码将在 {days} 天后过期，请及时修改。"),
        Msg::AccountExpiresSoon { days } => format!("账号将在 {days} 天后到期，请联系管理员续期。"),
        Msg::WrongOldPassword => "原密码错误。".into(),
        Msg::ResetUnavailable => "本系统未开启短信找回密码，请联系管理员重置密码。".into(),
        Msg::ResetCodeSent { minutes } => {
            format!("如账号与手机号匹配，验证码已发送，{minutes} 分钟内有效。")
        }
        Msg::ResetTooSoon { seconds } => format!("请 {seconds} 秒后再获取验证码。"),
        Msg::ResetTooMany => "该账号一小时内获取验证码次数过多，请稍后再试。".into(),
        Msg::ResetCodeInvalid => "验证码错误或已失效，请重新获取。".into(),
        Msg::SmsSendFailed => "短信发送失败，请稍后再试或联系管理员。".into(),
        Msg::PasswordResetDone => "密码已重置，请使用新密码登录。".into(),
    }
}
