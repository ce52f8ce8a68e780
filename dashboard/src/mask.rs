//! Server-side masking of sensitive fields (SEC data: sensitive fields masked server-side).
//! A page shows the masked form unless the viewer has `ViewSensitive` and asked for the
//! original, and the page audits every such view; the original never reaches the browser
//! otherwise.

const STARS: &str = "******";

/// Only the statement's verb is shown to those who may not read SQL text (literals are
/// normalised away by the databases, but table and column names still say what a hospital
/// system stores).
pub fn sql(q: &str) -> String {
    let verb: String = q.split_whitespace().next().unwrap_or("").chars().take(12).collect();
    if verb.chars().all(|c| c.is_ascii_alphabetic()) && !verb.is_empty() {
        format!("{} {STARS}", verb.to_ascii_uppercase())
    } else {
        STARS.to_string()
    }
}

/// A phone number keeps its first three and last four characters, the way Chinese services
/// print a mobile (`138****5678`); anything shorter keeps only its last two.
pub fn phone(p: &str) -> String {
    tingzhen_core::phone::mask(p)
}

/// An e-mail address keeps the first character of its mailbox and its domain
/// (`z***@hospital.cn`): enough to tell the ward's list from a person, not who the person is.
pub fn email(addr: &str) -> String {
    match addr.rsplit_once('@') {
        Some((local, domain)) => format!("{}***@{domain}", local.chars().next().unwrap_or('*')),
        None => name(addr),
    }
}

/// A personal identifier (a WeCom user id, often the person's name in pinyin) keeps its
/// first character.
pub fn name(id: &str) -> String {
    format!("{}***", id.chars().next().unwrap_or('*'))
}

/// One entry of a notification channel's "who it reaches" list, as the alerting API reports
/// it for a channel of `kind`. Group names (a robot, a WeCom party, `@all`, a webhook) are
/// not personal and stay; people's addresses, numbers and ids are masked.
pub fn contact(kind: &str, entry: &str) -> String {
    if entry == "@all" || entry.starts_with("party:") {
        return entry.to_string();
    }
    if let Some(mobile) = entry.strip_prefix('@') {
        return format!("@{}", phone(mobile));
    }
    match kind {
        "email" => email(entry),
        "wecom_app" => name(entry),
        k if k.starts_with("sms") => phone(entry),
        _ => entry.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_keeps_only_the_verb() {
        assert_eq!(sql("select * from patients"), "SELECT ******");
        assert_eq!(sql("/* x */ select 1"), "******");
        assert_eq!(sql(""), "******");
    }

    #[test]
    fn phones_emails_and_ids_lose_what_identifies_a_person() {
        assert_eq!(phone("13812345678"), "138****5678");
        assert_eq!(phone("+8613812345678"), "+86*******5678");
        assert_eq!(phone("1234567"), "*****67");
        assert_eq!(phone("1"), "*");
        assert_eq!(email("zhang.san@hospital.cn"), "z***@hospital.cn");
        assert_eq!(email("张三@医院.cn"), "张***@医院.cn");
        assert_eq!(email("@x"), "****@x");
        assert_eq!(name("ZhangSan"), "Z***");
        assert_eq!(name(""), "****");
    }

    #[test]
    fn contacts_are_masked_by_what_the_channel_reaches() {
        assert_eq!(contact("email", "ops@hospital.cn"), "o***@hospital.cn");
        assert_eq!(contact("sms_aliyun", "13900000000"), "139****0000");
        assert_eq!(contact("sms_http", "13900000000"), "139****0000");
        assert_eq!(contact("wecom_app", "ZhangSan"), "Z***");
        assert_eq!(contact("wecom_app", "party:12"), "party:12");
        assert_eq!(contact("wecom_robot", "infra"), "infra", "a robot is a group, not a person");
        assert_eq!(contact("wecom_robot", "@13812345678"), "@138****5678");
        assert_eq!(contact("wecom_robot", "@all"), "@all");
        assert_eq!(contact("webhook", "his-bridge"), "his-bridge");
    }
}
