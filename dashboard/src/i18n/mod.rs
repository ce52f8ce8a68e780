//! UI strings, one folder per language (`zh_cn/`, `en/`), one file per area of the console
//! inside it. Templates read them as `{{t.key}}`; a test keeps both languages' key sets equal so
//! no page shows a raw key in one language.

mod en;
mod zh_cn;

use serde_json::{Map, Value};
use std::sync::OnceLock;
pub use tingzhen_identity::Lang;

type Table = &'static [(&'static str, &'static str)];

fn build(areas: &[Table]) -> Map<String, Value> {
    areas.iter().flat_map(|a| a.iter()).map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect()
}

/// Every string of `lang`, as the `t` object templates see.
pub fn table(lang: Lang) -> &'static Map<String, Value> {
    static ZH: OnceLock<Map<String, Value>> = OnceLock::new();
    static EN: OnceLock<Map<String, Value>> = OnceLock::new();
    match lang {
        Lang::ZhCn => ZH.get_or_init(|| build(zh_cn::AREAS)),
        Lang::En => EN.get_or_init(|| build(en::AREAS)),
    }
}

/// One string for Rust code (chart titles, error pages); the key itself if it is missing.
pub fn text(lang: Lang, key: &str) -> String {
    table(lang).get(key).and_then(Value::as_str).unwrap_or(key).to_string()
}

/// The language tag for `<html lang>` and the `tz_lang` cookie.
pub fn tag(lang: Lang) -> &'static str {
    match lang {
        Lang::ZhCn => "zh-CN",
        Lang::En => "en",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn keys(areas: &[Table]) -> BTreeSet<&'static str> {
        let mut seen = BTreeSet::new();
        for (k, _) in areas.iter().flat_map(|a| a.iter()) {
            assert!(seen.insert(*k), "key {k:?} defined twice");
        }
        seen
    }

    #[test]
    fn both_languages_have_the_same_keys() {
        let (zh, en) = (keys(zh_cn::AREAS), keys(en::AREAS));
        let only_zh: Vec<_> = zh.difference(&en).collect();
        let only_en: Vec<_> = en.difference(&zh).collect();
        assert!(only_zh.is_empty() && only_en.is_empty(), "only in zh-CN: {only_zh:?}; only in en: {only_en:?}");
        for (k, v) in zh_cn::AREAS.iter().flat_map(|a| a.iter()) {
            assert!(!v.trim().is_empty(), "zh-CN {k} is empty");
            assert!(!k.contains('.') && !k.contains('-'), "{k}: keys are identifiers (templates read t.key)");
        }
    }
}
