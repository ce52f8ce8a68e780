//! Password reset by SMS verification code (MLPS 1.2, 1.5, 1.6) through the HTTP router, with a
//! code sender that records what it would have texted (the SMS providers themselves are tested
//! against local fake providers in the alerting crate, and end to end in `tests/`).

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tingzhen_identity::config::PasswordResetConfig;
use tingzhen_identity::{CodeSender, IdentityConfig, Lang};

const PHONE: &str = "13812345678";
const NEW_PW: &str = "Harbour-lamp-9051";

#[derive(Default)]
struct Texts {
    sent: Mutex<Vec<(String, String, u32, Lang)>>,
    fail: Mutex<bool>,
}

impl CodeSender for Texts {
    fn send_code(&self, phone: &str, code: &str, minutes: u32, lang: Lang) -> Result<(), String> {
        if *self.fail.lock().unwrap() {
            return Err("gateway answered 502".into());
        }
        self.sent.lock().unwrap().push((phone.into(), code.into(), minutes, lang));
        Ok(())
    }
}

impl Texts {
    fn count(&self) -> usize {
        self.sent.lock().unwrap().len()
    }
    fn last_code(&self) -> String {
        self.sent.lock().unwrap().last().unwrap().1.clone()
    }
}

fn reset_config() -> PasswordResetConfig {
    PasswordResetConfig { max_attempts: 3, max_per_hour: 3, ..PasswordResetConfig::new("http_sms", "") }
}

fn setup() -> (Env, Arc<Texts>) {
    let texts = Arc::new(Texts::default());
    // No captcha at login here: these tests are about the reset, and a failed login must not
    // change what the next one needs.
    let cfg = IdentityConfig { password_reset: Some(reset_config()), captcha_after_failures: 100, ..fast_config() };
    let e = env_with_sender(cfg, Some(texts.clone()));
    let mut admin = e.user("root", json!([{"role": "admin"}]));
    let u = json!({"username": "nina", "password": ADMIN_PW, "roles": [{"role": "viewer"}], "phone": "138 1234-5678"});
    let r = admin.post("/api/v1/users", u);
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // nina changes the initial password, so she has a usable one to forget.
    let mut c = e.client();
    assert_eq!(c.login("nina", ADMIN_PW).status, StatusCode::OK);
    let r = c.post("/api/v1/auth/password", json!({"old_password": ADMIN_PW, "new_password": GOOD_PW}));
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    (e, texts)
}

/// A code request with a freshly solved captcha.
fn ask(e: &Env, c: &mut Client, user: &str, phone: &str) -> Resp {
    let id = c.get("/api/v1/auth/captcha").body["data"]["id"].as_str().unwrap().to_string();
    let answer = e.captcha_answer(&id);
    let body = json!({"username": user, "phone": phone, "captcha_id": id, "captcha_answer": answer});
    c.send(axum::http::Method::POST, "/api/v1/auth/reset/request", Some(body), false)
}

fn confirm(c: &mut Client, user: &str, code: &str, pw: &str) -> Resp {
    let body = json!({"username": user, "code": code, "new_password": pw});
    c.send(axum::http::Method::POST, "/api/v1/auth/reset/confirm", Some(body), false)
}

fn resets(e: &Env) -> Vec<tingzhen_identity::audit::AuditRecord> {
    let q = tingzhen_identity::audit::AuditQuery {
        event: Some("password_reset".into()),
        limit: Some(1000),
        ..Default::default()
    };
    e.id.audit_log().query(&q).unwrap()
}

#[test]
fn a_code_to_the_phone_on_record_resets_the_password_and_ends_sessions() {
    let (e, texts) = setup();
    let mut browser = e.client();
    assert_eq!(browser.login("nina", GOOD_PW).status, StatusCode::OK);
    let mut c = e.client();
    let r = ask(&e, &mut c, "NINA", "");
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "an empty number is refused by name: {}", r.body);
    assert!(r.body["message"].as_str().unwrap().contains("phone"), "{}", r.body);
    let r = ask(&e, &mut c, "NINA", "138-1234-5678");
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body["data"]["message"].as_str().unwrap().contains("5 分钟"), "{}", r.body);
    let sent = texts.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    let (phone, code, minutes, lang) = &sent[0];
    assert_eq!((phone.as_str(), *minutes, *lang), (PHONE, 5, Lang::ZhCn));
    assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()), "{code}");
    // The code is not stored in the clear.
    let stored = e.text("SELECT code_sha256 FROM identity_reset_codes");
    assert!(!stored.contains(code.as_str()) && stored.len() == 64);
    // A password the policy refuses does not use the code up.
    let r = confirm(&mut c, "nina", code, "short");
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = confirm(&mut c, "nina", code, NEW_PW);
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body["data"]["message"].as_str().unwrap().contains("密码已重置"));
    // Single use.
    assert_eq!(confirm(&mut c, "nina", code, "Another-lamp-9052").code(), "reset_code_invalid");
    // The old password is gone, the new one works without a forced change, old sessions ended.
    assert_eq!(e.client().login("nina", GOOD_PW).code(), "login_invalid");
    let mut fresh = e.client();
    let r = fresh.login("nina", NEW_PW);
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["data"]["restriction"], Value::Null);
    assert_eq!(browser.get("/api/v1/auth/session").code(), "not_logged_in");
    let log = resets(&e);
    assert!(log.iter().any(|r| r.outcome == "success" && r.detail.contains("code sent to 138****5678")), "{log:?}");
    assert!(log.iter().any(|r| r.outcome == "success" && r.detail.contains("2 session(s) ended")), "{log:?}");
    assert!(log.iter().all(|r| !r.detail.contains(PHONE) && !r.detail.contains(code.as_str())), "{log:?}");
}

#[test]
fn no_text_goes_out_unless_the_number_matches_and_the_answer_does_not_tell() {
    let (e, texts) = setup();
    let mut c = e.client();
    let matched = ask(&e, &mut c, "nina", PHONE);
    e.advance(Duration::from_secs(61));
    let wrong_number = ask(&e, &mut c, "nina", "13900000000");
    let no_account = ask(&e, &mut c, "nobody", PHONE);
    for r in [&matched, &wrong_number, &no_account] {
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["data"], matched.body["data"], "every answer is the same");
    }
    assert_eq!(texts.count(), 1, "only the matching request was texted");
    let refused: Vec<_> = resets(&e).into_iter().filter(|r| r.outcome == "refused").collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused.iter().any(|r| r.detail.contains("139****0000")), "{refused:?}");
    // A captcha is always needed.
    let body = json!({"username": "nina", "phone": PHONE});
    let r = c.send(axum::http::Method::POST, "/api/v1/auth/reset/request", Some(body), false);
    assert_eq!(r.code(), "captcha_required");
    // A disabled account gets no text either.
    e.id.bulk(&cli(), tingzhen_identity::BulkAction::Disable, &["nina".into()]).unwrap();
    e.advance(Duration::from_secs(61));
    assert_eq!(ask(&e, &mut c, "nina", PHONE).status, StatusCode::OK);
    assert_eq!(texts.count(), 1);
}

#[test]
fn code_requests_are_limited_per_account_and_hour() {
    let (e, texts) = setup();
    let mut c = e.client();
    assert_eq!(ask(&e, &mut c, "nina", PHONE).status, StatusCode::OK);
    let r = ask(&e, &mut c, "nina", PHONE);
    assert_eq!((r.status, r.code()), (StatusCode::TOO_MANY_REQUESTS, "reset_too_soon"), "{}", r.body);
    assert!(r.body["message"].as_str().unwrap().contains("60 秒"), "{}", r.body);
    // The limits count requests by name whether or not they match, so they reveal nothing.
    e.advance(Duration::from_secs(61));
    assert_eq!(ask(&e, &mut c, "nina", "13900000000").status, StatusCode::OK);
    e.advance(Duration::from_secs(61));
    assert_eq!(ask(&e, &mut c, "nina", PHONE).status, StatusCode::OK);
    e.advance(Duration::from_secs(61));
    let r = ask(&e, &mut c, "nina", PHONE);
    assert_eq!((r.status, r.code()), (StatusCode::TOO_MANY_REQUESTS, "reset_too_many"), "{}", r.body);
    assert_eq!(texts.count(), 2);
    // Another account is not affected; the hour passing lifts the limit.
    assert_eq!(ask(&e, &mut c, "nobody", PHONE).status, StatusCode::OK);
    e.advance(Duration::from_secs(3600));
    assert_eq!(ask(&e, &mut c, "nina", PHONE).status, StatusCode::OK);
    assert_eq!(texts.count(), 3);
    assert!(resets(&e).iter().any(|r| r.outcome == "refused" && r.detail.contains("in the last hour")));
}

#[test]
fn wrong_codes_use_the_code_up_and_codes_expire() {
    let (e, texts) = setup();
    let mut c = e.client();
    ask(&e, &mut c, "nina", PHONE);
    let code = texts.last_code();
    let wrong = if code == "000000" { "000001" } else { "000000" };
    for _ in 0..3 {
        assert_eq!(confirm(&mut c, "nina", wrong, NEW_PW).code(), "reset_code_invalid");
    }
    assert_eq!(confirm(&mut c, "nina", &code, NEW_PW).code(), "reset_code_invalid", "void after 3 wrong tries");
    e.advance(Duration::from_secs(61));
    ask(&e, &mut c, "nina", PHONE);
    let code = texts.last_code();
    e.advance(Duration::from_secs(5 * 60 + 1));
    assert_eq!(confirm(&mut c, "nina", &code, NEW_PW).code(), "reset_code_invalid", "expired");
    assert_eq!(e.client().login("nina", GOOD_PW).status, StatusCode::OK, "the password is unchanged");
    assert!(resets(&e).iter().any(|r| r.detail == "reset: wrong code"));
}

#[test]
fn a_reset_lifts_a_lockout_and_a_failed_text_leaves_no_usable_code() {
    let (e, texts) = setup();
    let mut c = e.client();
    for _ in 0..5 {
        c.login("nina", "Wrong-pass-123!");
    }
    assert_eq!(c.login("nina", GOOD_PW).code(), "account_locked");
    *texts.fail.lock().unwrap() = true;
    let r = ask(&e, &mut c, "nina", PHONE);
    assert_eq!((r.status, r.code()), (StatusCode::SERVICE_UNAVAILABLE, "sms_send_failed"), "{}", r.body);
    assert_eq!(e.text("SELECT CAST(COUNT(*) AS TEXT) FROM identity_reset_codes"), "0");
    assert!(resets(&e).iter().any(|r| r.outcome == "failure" && r.detail.contains("gateway answered 502")));
    *texts.fail.lock().unwrap() = false;
    e.advance(Duration::from_secs(61));
    let mut en = e.client();
    en.lang = "en";
    let r = ask(&e, &mut en, "nina", PHONE);
    assert!(r.body["data"]["message"].as_str().unwrap().contains("5 minutes"), "{}", r.body);
    assert_eq!(texts.sent.lock().unwrap().last().unwrap().3, Lang::En);
    assert_eq!(confirm(&mut c, "nina", &texts.last_code(), NEW_PW).status, StatusCode::OK);
    assert_eq!(e.client().login("nina", NEW_PW).status, StatusCode::OK, "the lockout is lifted");
}

#[test]
fn without_the_section_or_a_sender_reset_is_off() {
    let e = env();
    let _ = e.user("omar", json!([{"role": "viewer"}]));
    assert!(!e.id.password_reset_enabled());
    let mut c = e.client();
    let r = ask(&e, &mut c, "omar", PHONE);
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "reset_unavailable"), "{}", r.body);
    assert_eq!(confirm(&mut c, "omar", "123456", NEW_PW).code(), "reset_unavailable");
    let cfg = IdentityConfig { password_reset: Some(reset_config()), ..fast_config() };
    assert!(!env_with(cfg).id.password_reset_enabled(), "configured but no sender");
}

#[test]
fn phone_numbers_are_checked_stored_normalized_and_listed_masked() {
    let (e, _) = setup();
    let mut admin = e.client();
    assert_eq!(admin.login("root", GOOD_PW).status, StatusCode::OK);
    let users = admin.get("/api/v1/users?q=nina");
    assert_eq!(users.body["data"][0]["phone"], json!("138****5678"), "{}", users.body);
    assert!(!users.body.to_string().contains(PHONE));
    assert_eq!(e.text("SELECT phone FROM identity_users WHERE username = 'nina'"), PHONE);
    let r = admin.send(axum::http::Method::PATCH, "/api/v1/users/nina", Some(json!({"phone": "call me maybe"})), true);
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body["message"].as_str().unwrap().starts_with("phone:"), "{}", r.body);
    let r = admin.send(axum::http::Method::PATCH, "/api/v1/users/nina", Some(json!({"phone": null})), true);
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(admin.get("/api/v1/users?q=nina").body["data"][0]["phone"], Value::Null);
    let log = e.id.audit_log().query(&Default::default()).unwrap();
    assert!(log.iter().any(|r| r.event == "user_update" && r.detail.contains("phone removed")), "{log:?}");
}
