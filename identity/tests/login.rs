//! Login, captcha, lockout, sessions, CSRF, anti-replay and TOTP through the HTTP router.

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use serde_json::json;
use std::time::Duration;
use tingzhen_identity::IdentityConfig;
use tingzhen_identity::totp::{TotpAlgorithm, base32_decode, totp};

#[test]
fn captcha_required_after_one_failure_and_single_use() {
    let e = env();
    e.user("alice", json!([{"role": "viewer", "campus": "A"}]));
    let mut c = e.client();
    // First attempt needs no captcha; the wrong password makes the next one need it.
    let r = c.login("alice", "Wrong-pass-123!");
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "login_invalid");
    assert_eq!(r.body["captcha_required"], json!(true));
    // Right password without captcha: refused.
    let r = c.login("alice", GOOD_PW);
    assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "captcha_required"));
    // A captcha image, then a wrong answer: refused and the captcha is used up.
    let cap = c.get("/api/v1/auth/captcha");
    assert_eq!(cap.status, StatusCode::OK);
    assert!(cap.body["data"]["image"].as_str().unwrap().starts_with("data:image/png;base64,iVBORw0KGgo"));
    let id = cap.body["data"]["id"].as_str().unwrap().to_string();
    let answer = e.captcha_answer(&id);
    let r =
        c.login_with(json!({"username": "alice", "password": GOOD_PW, "captcha_id": id, "captcha_answer": "XXXXX"}));
    assert_eq!(r.code(), "captcha_wrong");
    let r = c.login_with(json!({"username": "alice", "password": GOOD_PW, "captcha_id": id, "captcha_answer": answer}));
    assert_eq!(r.code(), "captcha_wrong", "a captcha is single-use even after a wrong guess");
    // A fresh captcha answered right (case-insensitive) lets the right password in, once.
    let id2 = c.get("/api/v1/auth/captcha").body["data"]["id"].as_str().unwrap().to_string();
    let answer2 = e.captcha_answer(&id2).to_lowercase();
    let body = json!({"username": "alice", "password": GOOD_PW, "captcha_id": id2, "captcha_answer": answer2});
    let r = c.login_with(body.clone());
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // After a success the counter resets: no captcha needed, and the used one is gone anyway.
    let mut c2 = e.client();
    assert_eq!(c2.login("alice", GOOD_PW).status, StatusCode::OK);
    let mut c3 = e.client();
    c3.login("alice", "Wrong-pass-123!");
    assert_eq!(c3.login_with(body).code(), "captcha_wrong", "replaying a used captcha fails");
}

#[test]
fn lockout_after_n_failures_and_automatic_unlock_after_m_minutes() {
    let cfg = IdentityConfig {
        lockout_threshold: 3,
        lockout_duration: "10m".parse().unwrap(),
        captcha_after_failures: 100,
        ..fast_config()
    };
    let e = env_with(cfg);
    e.user("bob", json!([{"role": "viewer"}]));
    let mut c = e.client();
    for _ in 0..2 {
        assert_eq!(c.login("bob", "Wrong-pass-123!").code(), "login_invalid");
    }
    let r = c.login("bob", "Wrong-pass-123!");
    assert_eq!(r.code(), "account_locked");
    assert!(r.body["message"].as_str().unwrap().contains("10 分钟"), "{}", r.body);
    // Locked: even the right password is refused.
    assert_eq!(c.login("bob", GOOD_PW).code(), "account_locked");
    e.advance(Duration::from_secs(9 * 60));
    let r = c.login("bob", GOOD_PW);
    assert_eq!(r.code(), "account_locked");
    assert!(r.body["message"].as_str().unwrap().contains("1 分钟"), "{}", r.body);
    e.advance(Duration::from_secs(61));
    assert_eq!(c.login("bob", GOOD_PW).status, StatusCode::OK);
    // Lockout and unlock are audited.
    let log = e.id.audit_log().query(&Default::default()).unwrap();
    assert!(log.iter().any(|r| r.event == "lockout" && r.actor == "bob"));
    assert!(log.iter().any(|r| r.event == "unlock" && r.detail.contains("automatic")));
    assert!(log.iter().any(|r| r.event == "login" && r.outcome == "refused" && r.detail == "account locked"));
}

#[test]
fn unknown_accounts_behave_like_known_ones() {
    let e = env();
    let mut c = e.client();
    let r = c.login("nobody", "Wrong-pass-123!");
    assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "login_invalid"));
    assert_eq!(c.login("nobody", "Wrong-pass-123!").code(), "captcha_required");
}

#[test]
fn session_idle_timeout_ends_the_session() {
    let e = env(); // default idle timeout: 15 minutes
    let mut c = e.user("carol", json!([{"role": "viewer"}]));
    e.advance(Duration::from_secs(14 * 60));
    assert_eq!(c.get("/api/v1/auth/session").status, StatusCode::OK, "activity resets the idle clock");
    e.advance(Duration::from_secs(14 * 60));
    assert_eq!(c.get("/api/v1/auth/session").status, StatusCode::OK);
    e.advance(Duration::from_secs(15 * 60 + 1));
    let r = c.get("/api/v1/auth/session");
    assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "session_expired"));
    let r = c.get("/api/v1/auth/session");
    assert_eq!(r.code(), "not_logged_in", "an expired session stays ended");
    let d = e.id.login_durations(Some("carol"), None, None).unwrap();
    let idle = d.iter().find(|d| d.end_reason.as_deref() == Some("idle timeout")).unwrap();
    assert_eq!(idle.duration_ms, Some((28 + 15) * 60_000), "ends at last activity + timeout");
}

#[test]
fn background_refreshes_do_not_keep_a_session_alive() {
    let e = env(); // default idle timeout: 15 minutes
    let _ = e.user("erin", json!([{"role": "viewer"}]));
    let req = tingzhen_identity::LoginRequest {
        username: "erin".into(),
        password: common::GOOD_PW.into(),
        ..Default::default()
    };
    let done = e.id.login(&req, "10.0.0.9").unwrap();
    for _ in 0..2 {
        e.advance(Duration::from_secs(6 * 60));
        assert!(e.id.check_session_background(&done.session_id, "10.0.0.9").is_ok(), "still within the timeout");
    }
    e.advance(Duration::from_secs(4 * 60));
    // 16 minutes of nothing but live refreshes: idle since login.
    let r = e.id.check_session(&done.session_id, "10.0.0.9");
    assert!(
        matches!(r, Err(tingzhen_identity::IdentityError::Denied(tingzhen_identity::Msg::SessionExpired))),
        "{r:?}"
    );
}

#[test]
fn csrf_token_missing_or_wrong_is_403() {
    let e = env();
    let mut c = e.user("dave", json!([{"role": "admin"}]));
    let nonce = c.fresh_nonce();
    let ts = c.clock_ms().to_string();
    let r = c.send_raw(
        Method::POST,
        "/api/v1/auth/logout",
        None,
        vec![("x-request-nonce".into(), nonce), ("x-request-timestamp".into(), ts.clone())],
    );
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "csrf_missing"));
    let nonce = c.fresh_nonce();
    let r = c.send_raw(
        Method::POST,
        "/api/v1/auth/logout",
        None,
        vec![
            ("x-csrf-token".into(), "0".repeat(64)),
            ("x-request-nonce".into(), nonce),
            ("x-request-timestamp".into(), ts),
        ],
    );
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "csrf_missing"));
    // GET needs no token; the session is still alive.
    assert_eq!(c.get("/api/v1/auth/session").status, StatusCode::OK);
    assert_eq!(c.post("/api/v1/auth/logout", json!(null)).status, StatusCode::OK);
    assert_eq!(c.get("/api/v1/auth/session").code(), "not_logged_in");
}

#[test]
fn replayed_or_stale_requests_are_refused() {
    let e = env();
    let mut c = e.user("erin", json!([{"role": "admin"}]));
    let csrf = c.csrf.clone().unwrap();
    let headers = vec![
        ("x-csrf-token".to_string(), csrf.clone()),
        ("x-request-nonce".to_string(), "replay-test-nonce-0001".to_string()),
        ("x-request-timestamp".to_string(), c.clock_ms().to_string()),
    ];
    let body = json!({"username": "frank", "password": ADMIN_PW, "roles": [{"role": "viewer"}]});
    let r = c.send_raw(Method::POST, "/api/v1/users", Some(body.clone()), headers.clone());
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = c.send_raw(Method::POST, "/api/v1/users", Some(body.clone()), headers);
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "replay_refused"));
    // A timestamp outside the 5-minute window is refused even with a new nonce.
    let stale = vec![
        ("x-csrf-token".to_string(), csrf.clone()),
        ("x-request-nonce".to_string(), "replay-test-nonce-0002".to_string()),
        ("x-request-timestamp".to_string(), (c.clock_ms() - 6 * 60_000).to_string()),
    ];
    assert_eq!(c.send_raw(Method::POST, "/api/v1/users", Some(body.clone()), stale).code(), "replay_refused");
    let none = vec![("x-csrf-token".to_string(), csrf)];
    assert_eq!(c.send_raw(Method::POST, "/api/v1/users", Some(body), none).code(), "replay_refused");
}

fn code_at(secret: &str, ms: i64) -> String {
    format!("{:06}", totp(TotpAlgorithm::Sha1, &base32_decode(secret).unwrap(), ms / 1000, 30, 6))
}

#[test]
fn totp_required_per_role_enrolment_and_login() {
    let cfg = IdentityConfig { totp_required_roles: vec![tingzhen_identity::Role::Ops], ..fast_config() };
    let e = env_with(cfg);
    let mut ops = e.user("grace", json!([{"role": "ops"}]));
    // Until enrolled the session can do nothing but enrol.
    let s = ops.get("/api/v1/auth/session");
    assert_eq!(s.body["data"]["restriction"], json!("totp_enrolment"));
    let en = ops.post("/api/v1/auth/totp/enroll", json!(null));
    assert_eq!(en.status, StatusCode::OK, "{}", en.body);
    let secret = en.body["data"]["secret"].as_str().unwrap().to_string();
    assert!(en.body["data"]["otpauth_uri"].as_str().unwrap().starts_with("otpauth://totp/tingzhen:grace?secret="));
    assert!(en.body["data"]["qr_svg"].as_str().unwrap().contains("<svg"), "the QR code comes with the secret");
    let wrong = ops.post("/api/v1/auth/totp/confirm", json!({"code": "000000"}));
    assert_eq!(wrong.code(), "totp_wrong");
    let ok = ops.post("/api/v1/auth/totp/confirm", json!({"code": code_at(&secret, ops.clock_ms())}));
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    // The secret is never shown again.
    assert_eq!(ops.post("/api/v1/auth/totp/enroll", json!(null)).status, StatusCode::BAD_REQUEST);
    assert!(
        !e.id.search(&Default::default()).unwrap().iter().any(|u| serde_json::to_string(u).unwrap().contains(&secret))
    );
    e.advance(Duration::from_secs(60));
    let mut c = e.client();
    assert_eq!(c.login("grace", GOOD_PW).code(), "totp_required");
    let now = c.clock_ms();
    let mut c = e.client();
    let body = json!({"username": "grace", "password": GOOD_PW, "totp": code_at(&secret, now), "captcha_id": null});
    // The refusal above counted as no failure (password was right), so no captcha is needed.
    let r = c.login_with(body.clone());
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["restriction"], json!(null));
    // The same code cannot be used twice.
    let mut c2 = e.client();
    assert_eq!(c2.login_with(body).code(), "totp_wrong");
}

#[test]
fn totp_secrets_are_encrypted_at_rest_with_a_totp_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("totp.key");
    std::fs::write(&key, "totp-key-for-tests\n").unwrap();
    let cfg = IdentityConfig {
        totp_key: Some(tingzhen_core::config::SecretRef::file(key.to_str().unwrap())),
        ..fast_config()
    };
    let e = env_with(cfg);
    let mut c = e.user("quinn", json!([{"role": "viewer"}]));
    let secret = c.post("/api/v1/auth/totp/enroll", json!(null)).body["data"]["secret"].as_str().unwrap().to_string();
    let r = c.post("/api/v1/auth/totp/confirm", json!({"code": code_at(&secret, c.clock_ms())}));
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let stored = e.text("SELECT totp_secret FROM identity_users WHERE username = 'quinn'");
    assert!(stored.starts_with("enc1:") && !stored.contains(&secret), "{stored}");
    e.advance(Duration::from_secs(60));
    let mut c = e.client();
    let now = c.clock_ms();
    let r = c.login_with(json!({"username": "quinn", "password": GOOD_PW, "totp": code_at(&secret, now)}));
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

/// `n` logins at once (each thread its own connection on PostgreSQL), with their answers.
fn logins_at_once(
    e: &Env,
    n: usize,
    req: &tingzhen_identity::LoginRequest,
) -> Vec<Result<tingzhen_identity::LoginSuccess, tingzhen_identity::IdentityError>> {
    let start = std::sync::Barrier::new(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    e.id.login(req, "10.0.0.5")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn audit_events(e: &Env, event: &str) -> Vec<tingzhen_identity::audit::AuditRecord> {
    let q =
        tingzhen_identity::audit::AuditQuery { event: Some(event.into()), limit: Some(10_000), ..Default::default() };
    e.id.audit_log().query(&q).unwrap()
}

#[test]
fn concurrent_failures_are_all_counted_and_lock_once() {
    use tingzhen_identity::{IdentityError, Msg};
    let cfg = IdentityConfig { lockout_threshold: 3, captcha_after_failures: 100, ..fast_config() };
    let e = env_with(cfg);
    e.user("zoe", json!([{"role": "viewer"}]));
    let req = tingzhen_identity::LoginRequest {
        username: "zoe".into(),
        password: "Wrong-pass-123!".into(),
        ..Default::default()
    };
    for answer in logins_at_once(&e, 8, &req) {
        let err = answer.unwrap_err();
        assert!(matches!(err, IdentityError::Denied(Msg::LoginInvalid | Msg::AccountLocked { .. })), "{err:?}");
    }
    assert_eq!(audit_events(&e, "lockout").len(), 1, "one lock, audited once");
    // Every wrong password that reached the counter was counted (none lost to a race).
    let counted: i64 =
        e.db.with_conn(|c| {
            c.query_row("SELECT failures FROM identity_login_failures WHERE username_lc = 'zoe'", &(), |r| r.get(0))
        })
        .unwrap();
    let wrong = audit_events(&e, "login").iter().filter(|r| r.detail == "wrong user name or password").count();
    assert_eq!(counted, wrong as i64);
    assert!(counted >= 3);
    assert_eq!(login_code(&e, "zoe", GOOD_PW), "account_locked");
}

fn login_code(e: &Env, user: &str, pw: &str) -> String {
    e.client().login(user, pw).code().to_string()
}

#[test]
fn one_totp_code_lets_exactly_one_of_concurrent_logins_in() {
    let cfg = IdentityConfig { captcha_after_failures: 100, lockout_threshold: 100, ..fast_config() };
    let e = env_with(cfg);
    let mut c = e.user("rita", json!([{"role": "viewer"}]));
    let secret = c.post("/api/v1/auth/totp/enroll", json!(null)).body["data"]["secret"].as_str().unwrap().to_string();
    let r = c.post("/api/v1/auth/totp/confirm", json!({"code": code_at(&secret, c.clock_ms())}));
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    e.advance(Duration::from_secs(60));
    let req = tingzhen_identity::LoginRequest {
        username: "rita".into(),
        password: GOOD_PW.into(),
        totp: Some(code_at(&secret, c.clock_ms())),
        ..Default::default()
    };
    let answers = logins_at_once(&e, 6, &req);
    let ok = answers.iter().filter(|a| a.is_ok()).count();
    assert_eq!(ok, 1, "{answers:?}");
    for a in answers.iter().filter_map(|a| a.as_ref().err()) {
        assert!(matches!(a, tingzhen_identity::IdentityError::Denied(tingzhen_identity::Msg::TotpWrong)), "{a:?}");
    }
}

#[test]
fn an_expired_session_hit_by_many_requests_ends_once() {
    let e = env();
    let _ = e.user("sven", json!([{"role": "viewer"}]));
    let req =
        tingzhen_identity::LoginRequest { username: "sven".into(), password: GOOD_PW.into(), ..Default::default() };
    let done = e.id.login(&req, "10.0.0.9").unwrap();
    e.advance(Duration::from_secs(16 * 60));
    let start = std::sync::Barrier::new(6);
    let answers: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    e.id.check_session(&done.session_id, "10.0.0.9")
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(answers.iter().all(|a| a.is_err()), "{answers:?}");
    assert_eq!(audit_events(&e, "session_expired").len(), 1);
    let d = e.id.login_durations(Some("SVEN"), None, None).unwrap();
    let ended: Vec<_> = d.iter().filter(|d| d.end_reason.as_deref() == Some("idle timeout")).collect();
    assert_eq!(ended.len(), 1, "{d:?}");
    assert_eq!(ended[0].duration_ms, Some(15 * 60_000));
    let all = e.id.login_durations(None, None, None).unwrap();
    assert_eq!(all.iter().filter(|d| d.username == "sven").count(), d.len(), "{all:?}");
}

/// Live sessions (not ended, not idle, not over age) of `user`, read from the store.
fn live_sessions(e: &Env, user: &str) -> i64 {
    use tingzhen_identity::Clock;
    let idle_since = e.clock.now_ms() - 15 * 60_000;
    e.db.with_conn(|c| {
        c.query_row(
            "SELECT COUNT(*) FROM identity_sessions s JOIN identity_users u ON u.id = s.user_id
             WHERE u.username = ?1 AND s.ended_ms IS NULL AND s.last_seen_ms >= ?2",
            &tingzhen_core::params![user, idle_since],
            |r| r.get(0),
        )
    })
    .unwrap()
}

#[test]
fn a_login_beyond_the_per_account_limit_ends_the_least_recently_used_session() {
    let e = env_with(IdentityConfig { max_sessions_per_user: 2, ..fast_config() });
    let mut first = e.user("ines", json!([{"role": "viewer"}]));
    e.advance(Duration::from_secs(60));
    let mut second = e.client();
    assert_eq!(second.login("ines", GOOD_PW).status, StatusCode::OK);
    e.advance(Duration::from_secs(60));
    // The first browser is used again, so the second is now the least recently used.
    assert_eq!(first.get("/api/v1/auth/session").status, StatusCode::OK);
    e.advance(Duration::from_secs(60));
    let mut third = e.client();
    assert_eq!(third.login("ines", GOOD_PW).status, StatusCode::OK, "a full account can still sign in");
    assert_eq!(second.get("/api/v1/auth/session").code(), "not_logged_in", "the least recently used one ended");
    assert_eq!(first.get("/api/v1/auth/session").status, StatusCode::OK);
    assert_eq!(third.get("/api/v1/auth/session").status, StatusCode::OK);
    assert_eq!(live_sessions(&e, "ines"), 2);
    let displaced: Vec<_> =
        audit_events(&e, "session_expired").into_iter().filter(|r| r.detail.contains("displaced")).collect();
    assert_eq!(displaced.len(), 1, "{displaced:?}");
    assert_eq!(displaced[0].actor, "ines");
    assert!(displaced[0].detail.contains("max_sessions_per_user 2"), "{}", displaced[0].detail);
    let d = e.id.login_durations(Some("ines"), None, None).unwrap();
    let ended: Vec<_> = d.iter().filter(|d| d.end_reason.as_deref() == Some("displaced by a newer login")).collect();
    assert_eq!(ended.len(), 1, "{d:?}");
    assert_eq!(ended[0].duration_ms, Some(2 * 60_000), "ends at the newer login");
    // Sessions idle past the timeout are not live: two fresh logins push nothing out.
    e.advance(Duration::from_secs(16 * 60));
    for _ in 0..2 {
        assert_eq!(e.client().login("ines", GOOD_PW).status, StatusCode::OK);
    }
    let displaced = audit_events(&e, "session_expired").iter().filter(|r| r.detail.contains("displaced")).count();
    assert_eq!(displaced, 1);
}

#[test]
fn the_system_wide_session_limit_refuses_logins_until_a_session_ends() {
    let e = env_with(IdentityConfig { max_sessions: 3, max_sessions_per_user: 1, ..fast_config() });
    let mut a = e.user("amy", json!([{"role": "viewer"}]));
    let _b = e.user("ben", json!([{"role": "viewer"}]));
    let _c = e.user("cai", json!([{"role": "viewer"}]));
    let u = serde_json::from_value(json!({"username": "dan", "password": ADMIN_PW, "roles": [{"role": "viewer"}]}));
    e.id.create_user(&cli(), &u.unwrap()).unwrap();
    let mut d = e.client();
    let r = d.login("dan", ADMIN_PW);
    assert_eq!((r.status, r.code()), (StatusCode::SERVICE_UNAVAILABLE, "session_limit_reached"), "{}", r.body);
    assert!(r.body["message"].as_str().unwrap().contains("会话数已达上限"), "{}", r.body);
    let mut en = e.client();
    en.lang = "en";
    assert!(en.login("dan", ADMIN_PW).body["message"].as_str().unwrap().contains("concurrent sessions"));
    let refused = audit_events(&e, "login")
        .into_iter()
        .filter(|r| r.actor == "dan" && r.outcome == "refused" && r.detail.contains("concurrent session limit"))
        .count();
    assert_eq!(refused, 2);
    assert_eq!(live_sessions(&e, "dan"), 0, "a refused login writes no session");
    // An account at its own limit may sign in again: its old session makes room.
    let mut a2 = e.client();
    assert_eq!(a2.login("amy", GOOD_PW).status, StatusCode::OK);
    assert_eq!(a.get("/api/v1/auth/session").code(), "not_logged_in");
    // Signing out frees a place.
    assert_eq!(a2.post("/api/v1/auth/logout", json!(null)).status, StatusCode::OK);
    assert_eq!(d.login("dan", ADMIN_PW).status, StatusCode::OK);
    // Idle sessions free theirs too.
    e.advance(Duration::from_secs(16 * 60));
    assert_eq!(a.login("amy", GOOD_PW).status, StatusCode::OK);
}

#[test]
fn concurrent_logins_never_exceed_the_session_limits() {
    use tingzhen_identity::{IdentityError, Msg};
    // Per account: eight logins at once leave exactly the limit alive.
    let e = env_with(IdentityConfig { max_sessions_per_user: 2, captcha_after_failures: 100, ..fast_config() });
    let _ = e.user("olga", json!([{"role": "viewer"}]));
    let req =
        tingzhen_identity::LoginRequest { username: "olga".into(), password: GOOD_PW.into(), ..Default::default() };
    for answer in logins_at_once(&e, 8, &req) {
        answer.unwrap();
    }
    assert_eq!(live_sessions(&e, "olga"), 2);
    // System-wide: eight accounts at once against four places.
    let cfg =
        IdentityConfig { max_sessions: 4, max_sessions_per_user: 1, captcha_after_failures: 100, ..fast_config() };
    let e = env_with(cfg);
    let names: Vec<String> = (0..8).map(|i| format!("nurse{i}")).collect();
    for n in &names {
        let u = serde_json::from_value(json!({"username": n, "password": ADMIN_PW, "roles": [{"role": "viewer"}]}));
        e.id.create_user(&cli(), &u.unwrap()).unwrap();
    }
    let start = std::sync::Barrier::new(names.len());
    let answers: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = names
            .iter()
            .map(|n| {
                let start = &start;
                let e = &e;
                s.spawn(move || {
                    start.wait();
                    let req = tingzhen_identity::LoginRequest {
                        username: n.clone(),
                        password: ADMIN_PW.into(),
                        ..Default::default()
                    };
                    e.id.login(&req, "10.0.0.5")
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(answers.iter().filter(|a| a.is_ok()).count(), 4, "{answers:?}");
    for a in answers.iter().filter_map(|a| a.as_ref().err()) {
        assert!(matches!(a, IdentityError::Denied(Msg::SessionLimitReached)), "{a:?}");
    }
}
