//! Password policy, forced change, expiry, reuse, account lifecycle, reports and the
//! auditor's read-only access, through the HTTP router.

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use serde_json::json;
use std::time::Duration;
use tingzhen_identity::{IdentityConfig, Permission};

fn create(c: &mut Client, name: &str, pw: &str) -> Resp {
    c.post("/api/v1/users", json!({"username": name, "password": pw, "roles": [{"role": "viewer"}]}))
}

#[test]
fn each_password_rule_is_refused_with_its_message() {
    let e = env();
    let mut admin = e.user("root1", json!([{"role": "admin"}]));
    let cases = [
        ("Sh0rt!x", "password_too_short", "密码长度至少 10 位", "at least 10 characters"),
        ("onlyletters-and-symbols", "password_classes", "至少 3 类", "at least 3 of"),
        ("xx-PATIENT01-2026", "password_contains_username", "不得包含账号名", "must not contain the account name"),
        ("Admin@123456", "password_weak", "常见弱密码", "common"),
    ];
    for (pw, code, zh, en) in cases {
        admin.lang = "zh-CN";
        let r = create(&mut admin, "patient01", pw);
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{pw}: {}", r.body);
        assert_eq!(r.code(), code, "{pw}: {}", r.body);
        assert!(r.body["message"].as_str().unwrap().contains(zh), "{}", r.body);
        assert!(r.body["rules"].as_str().unwrap().starts_with("密码规则"), "the full rule text is shown");
        admin.lang = "en-US,en;q=0.9";
        let r = create(&mut admin, "patient01", pw);
        assert!(r.body["message"].as_str().unwrap().contains(en), "{}", r.body);
        assert!(r.body["rules"].as_str().unwrap().starts_with("Password rules"));
    }
    admin.lang = "zh-CN";
    let r = create(&mut admin, "patient01", "Sh0rt");
    let codes: Vec<&str> =
        r.body["violations"].as_array().unwrap().iter().map(|v| v["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["password_too_short", "password_classes"], "every broken rule is listed");
    assert_eq!(create(&mut admin, "patient01", GOOD_PW).status, StatusCode::CREATED);
    assert_eq!(create(&mut admin, "PATIENT01", GOOD_PW).status, StatusCode::CONFLICT, "names are case-insensitive");
    let rules = admin.get("/api/v1/auth/password-rules");
    assert!(rules.body["data"]["rules"].as_str().unwrap().contains("10"));
}

#[test]
fn stored_argon2id_hash_verifies() {
    let e = env();
    e.user("hana", json!([{"role": "viewer"}]));
    let stored = e.text("SELECT password_hash FROM identity_users WHERE username = 'hana'");
    assert!(stored.starts_with("$argon2id$v=19$m=256,t=1,p=1$"), "{stored}");
    assert!(e.id.policy().verify(GOOD_PW, &stored));
    assert!(!e.id.policy().verify(ADMIN_PW, &stored));
    assert!(!stored.contains(GOOD_PW));
}

#[test]
fn first_login_forces_a_password_change() {
    let e = env();
    let mut admin = e.user("root2", json!([{"role": "admin"}]));
    assert_eq!(create(&mut admin, "ivan", ADMIN_PW).status, StatusCode::CREATED);
    let mut c = e.client();
    let r = c.login("ivan", ADMIN_PW);
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["data"]["restriction"], json!("password_change"));
    // Nothing else works until the password is changed.
    let s = c.get("/api/v1/auth/session");
    assert_eq!(s.body["data"]["restriction"], json!("password_change"));
    let sess = e.id.check_session(c.cookie.as_ref().unwrap().split('=').nth(1).unwrap(), "-").unwrap();
    let denied = e.id.authorize(&sess, Permission::ViewMonitoring, Some("A")).unwrap_err();
    assert!(matches!(denied, tingzhen_identity::IdentityError::Denied(tingzhen_identity::Msg::PasswordChangeRequired)));
    let r = c.post("/api/v1/auth/password", json!({"old_password": "Wrong-old-1!", "new_password": GOOD_PW}));
    assert_eq!(r.code(), "wrong_old_password");
    let r = c.post("/api/v1/auth/password", json!({"old_password": ADMIN_PW, "new_password": ADMIN_PW}));
    assert_eq!(r.code(), "password_reused");
    let r = c.post("/api/v1/auth/password", json!({"old_password": ADMIN_PW, "new_password": GOOD_PW}));
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(c.get("/api/v1/auth/session").body["data"]["restriction"], json!(null));
    e.id.authorize(&sess, Permission::ViewMonitoring, Some("A")).unwrap_err(); // the old snapshot stays restricted
    let fresh = e.id.check_session(c.cookie.as_ref().unwrap().split('=').nth(1).unwrap(), "-").unwrap();
    e.id.authorize(&fresh, Permission::ViewMonitoring, Some("A")).unwrap();
}

#[test]
fn a_stored_password_found_weak_forces_a_change() {
    // The account was created under a shorter minimum; raising it makes the stored password weak.
    let e = env_with(IdentityConfig { password_min_length: 8, ..fast_config() });
    let u = serde_json::from_value(json!({"username": "judy", "password": "Ab1!cdXy", "roles": []})).unwrap();
    e.id.create_user(&cli(), &u).unwrap();
    e.exec("UPDATE identity_users SET must_change = 0").unwrap();
    let id2 =
        tingzhen_identity::Identity::new(e.db.clone(), fast_config(), std::sync::Arc::new(e.clock.clone())).unwrap();
    let ok =
        id2.login(&serde_json::from_value(json!({"username": "judy", "password": "Ab1!cdXy"})).unwrap(), "-").unwrap();
    assert_eq!(ok.session.restriction, Some(tingzhen_identity::Restriction::PasswordChange));
    let log = id2.audit_log().query(&Default::default()).unwrap();
    assert!(log.iter().any(|r| r.event == "login" && r.detail.contains("weak")));
}

#[test]
fn password_expiry_reminder_from_seven_days_then_forced_change() {
    let e = env(); // default: 90 days, reminder 7 days before
    let mut c = e.user("kim", json!([{"role": "viewer"}]));
    e.advance(Duration::from_secs(82 * 86400));
    c.login("kim", GOOD_PW);
    let s = c.get("/api/v1/auth/session");
    assert_eq!(s.body["data"]["warnings"], json!([]), "8 days left: no reminder yet");
    e.advance(Duration::from_secs(86400));
    c.login("kim", GOOD_PW);
    let w = &c.get("/api/v1/auth/session").body["data"]["warnings"][0];
    assert_eq!(w["code"], json!("password_expires_soon"));
    assert!(w["message"].as_str().unwrap().contains("7 天"), "{w}");
    e.advance(Duration::from_secs(8 * 86400));
    let r = c.login("kim", GOOD_PW);
    assert_eq!(r.body["data"]["restriction"], json!("password_change"), "expired: change forced");
}

#[test]
fn reuse_of_the_last_n_passwords_is_refused() {
    let e = env_with(IdentityConfig { password_history: 2, ..fast_config() });
    let mut c = e.user("lee", json!([{"role": "viewer"}])); // history: ADMIN_PW; current GOOD_PW
    let change = |c: &mut Client, old: &str, new: &str| {
        c.post("/api/v1/auth/password", json!({"old_password": old, "new_password": new}))
    };
    let p3 = "Third-pass-9911";
    let p4 = "Fourth-pass-9922";
    assert_eq!(change(&mut c, GOOD_PW, p3).status, StatusCode::OK);
    // current p3; last 2: GOOD_PW, ADMIN_PW
    for old in [p3, GOOD_PW, ADMIN_PW] {
        let r = change(&mut c, p3, old);
        assert_eq!(r.code(), "password_reused", "{old}");
        assert!(r.body["message"].as_str().unwrap().contains("最近 2 次"));
    }
    assert_eq!(change(&mut c, p3, p4).status, StatusCode::OK);
    // current p4; last 2: p3, GOOD_PW — ADMIN_PW has left the window.
    assert_eq!(change(&mut c, p4, GOOD_PW).code(), "password_reused");
    assert_eq!(change(&mut c, p4, ADMIN_PW).status, StatusCode::OK);
}

#[test]
fn account_validity_warning_a_month_before_and_refusal_after() {
    let e = env();
    let mut admin = e.user("root3", json!([{"role": "admin"}]));
    e.user("mia", json!([{"role": "viewer"}]));
    let until = e.id.now_ms() + 40 * 86_400_000;
    assert_eq!(
        admin.send(Method::PATCH, "/api/v1/users/mia", Some(json!({"valid_until_ms": until})), true).status,
        StatusCode::OK
    );
    let mut c = e.client();
    c.login("mia", GOOD_PW);
    assert_eq!(c.get("/api/v1/auth/session").body["data"]["warnings"], json!([]));
    e.advance(Duration::from_secs(11 * 86400));
    c.login("mia", GOOD_PW);
    let w = c.get("/api/v1/auth/session").body["data"]["warnings"].clone();
    assert_eq!(w[0]["code"], json!("account_expires_soon"), "{w}");
    assert!(w[0]["message"].as_str().unwrap().contains("29 天"), "{w}");
    e.advance(Duration::from_secs(30 * 86400));
    assert_eq!(c.login("mia", GOOD_PW).code(), "account_expired");
    let mut a = e.client();
    a.login("root3", GOOD_PW);
    let rep = a.get("/api/v1/users/reports/disabled");
    assert_eq!(rep.body["data"][0]["username"], json!("mia"), "expired accounts count as stopped: {}", rep.body);
}

#[test]
fn access_time_windows_are_enforced() {
    let e = env();
    let mut admin = e.user("root4", json!([{"role": "admin"}]));
    e.user("nina", json!([{"role": "viewer"}]));
    // T0 is Monday 10:00 China time.
    let weekend = json!({"access_windows": [{"days": [6, 7], "start": "08:00", "end": "18:00"}]});
    assert_eq!(admin.send(Method::PATCH, "/api/v1/users/nina", Some(weekend), true).status, StatusCode::OK);
    let mut c = e.client();
    assert_eq!(c.login("nina", GOOD_PW).code(), "outside_access_hours");
    let office = json!({"access_windows": [{"days": [1, 2, 3, 4, 5], "start": "08:00", "end": "18:00"}]});
    admin.send(Method::PATCH, "/api/v1/users/nina", Some(office), true);
    let mut c = e.client();
    assert_eq!(c.login("nina", GOOD_PW).status, StatusCode::OK);
    e.advance(Duration::from_secs(9 * 3600)); // 19:00
    assert_eq!(c.get("/api/v1/auth/session").code(), "session_expired", "sessions end outside the window too");
    let bad = json!({"access_windows": [{"days": [9], "start": "08:00", "end": "18:00"}]});
    let mut a = e.client();
    a.login("root4", GOOD_PW);
    let r = a.send(Method::PATCH, "/api/v1/users/nina", Some(bad), true);
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body["message"].as_str().unwrap().contains("access_windows.days"), "{}", r.body);
}

#[test]
fn search_bulk_actions_and_reports() {
    let e = env();
    let mut admin = e.user("root5", json!([{"role": "admin"}]));
    e.advance(Duration::from_secs(60));
    for n in ["ward-nurse1", "ward-nurse2", "lab-tech1"] {
        assert_eq!(create(&mut admin, n, ADMIN_PW).status, StatusCode::CREATED);
    }
    e.advance(Duration::from_secs(60));
    let mut c = e.client();
    c.login("ward-nurse1", ADMIN_PW);
    let names = |r: &Resp| -> Vec<String> {
        r.body["data"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(names(&admin.get("/api/v1/users?q=NURSE")), ["ward-nurse1", "ward-nurse2"], "fuzzy, case-insensitive");
    assert_eq!(names(&admin.get("/api/v1/users?q=nurse&min_logins=1")), ["ward-nurse1"]);
    let since = e.id.now_ms() - 1;
    assert_eq!(names(&admin.get(&format!("/api/v1/users?last_login_from_ms={since}"))), ["ward-nurse1"]);
    assert_eq!(names(&admin.get(&format!("/api/v1/users?created_to_ms={}", common::T0 + 1))), ["root5"]);
    let r = admin
        .post("/api/v1/users/bulk", json!({"action": "disable", "usernames": ["ward-nurse1", "ward-nurse2", "ghost"]}));
    let res = r.body["data"].as_array().unwrap();
    assert_eq!(res.iter().map(|x| x["ok"].as_bool().unwrap()).collect::<Vec<_>>(), [true, true, false]);
    assert_eq!(c.get("/api/v1/auth/session").code(), "not_logged_in", "disabling ends live sessions");
    assert_eq!(e.client().login("ward-nurse1", ADMIN_PW).code(), "account_disabled");
    assert_eq!(names(&admin.get("/api/v1/users?status=disabled")), ["ward-nurse1", "ward-nurse2"]);
    assert_eq!(
        names(&admin.get(&format!("/api/v1/users?changed_from_ms={}", e.id.now_ms()))),
        ["ward-nurse1", "ward-nurse2"]
    );
    admin.post("/api/v1/users/bulk", json!({"action": "enable", "usernames": ["ward-nurse1"]}));
    admin.post("/api/v1/users/bulk", json!({"action": "cancel", "usernames": ["ward-nurse2"]}));
    let r = admin.post("/api/v1/users/bulk", json!({"action": "enable", "usernames": ["ward-nurse2"]}));
    assert_eq!(r.body["data"][0]["ok"], json!(false), "a cancelled account cannot come back");
    let report = admin.get("/api/v1/users/reports/disabled");
    assert_eq!(names(&report), ["ward-nurse2"]);
    assert_eq!(report.body["data"][0]["status"], json!("cancelled"));
    // Lock lab-tech1 out, find it as locked, unfreeze it.
    let mut t = e.client();
    for _ in 0..5 {
        let id = t.get("/api/v1/auth/captcha").body["data"]["id"].as_str().unwrap().to_string();
        let answer = e.captcha_answer(&id);
        let r = t.login_with(
            json!({"username": "lab-tech1", "password": "Wrong-pass-123!", "captcha_id": id, "captcha_answer": answer}),
        );
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(names(&admin.get("/api/v1/users?status=locked")), ["lab-tech1"]);
    admin.post("/api/v1/users/bulk", json!({"action": "unfreeze", "usernames": ["lab-tech1"]}));
    assert_eq!(names(&admin.get("/api/v1/users?status=locked")), Vec::<String>::new());
    assert_eq!(e.client().login("lab-tech1", ADMIN_PW).status, StatusCode::OK);
    // Permission report and role change (audited with the maintainer).
    let r = admin.put("/api/v1/users/lab-tech1/roles", json!({"roles": [{"role": "ops", "campus": "east"}]}));
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let rep = admin.get("/api/v1/users/reports/permissions");
    let lab = rep.body["data"].as_array().unwrap().iter().find(|u| u["username"] == "lab-tech1").unwrap().clone();
    assert_eq!(
        lab["permissions"],
        json!([["ViewMonitoring", ["east"]], ["OperateAlerts", ["east"]], ["ManageConfig", ["east"]]])
    );
    let log = e.id.audit_log().query(&Default::default()).unwrap();
    let change = log.iter().find(|r| r.event == "permission_change").unwrap();
    assert_eq!(change.detail, "user lab-tech1: roles viewer@* -> ops@east by root5");
}

#[test]
fn campus_scoping_no_cross_campus_access() {
    let e = env();
    let mut v = e.user("olga", json!([{"role": "viewer", "campus": "north"}]));
    let raw = v.cookie.take().unwrap();
    let s = e.id.check_session(raw.split('=').nth(1).unwrap(), "10.0.0.9").unwrap();
    e.id.authorize(&s, Permission::ViewMonitoring, Some("north")).unwrap();
    assert!(e.id.authorize(&s, Permission::ViewMonitoring, Some("south")).is_err());
    assert!(e.id.authorize(&s, Permission::OperateAlerts, Some("north")).is_err());
    let log = e.id.audit_log().query(&Default::default()).unwrap();
    let refused = log.iter().find(|r| r.event == "access_refused").unwrap();
    assert_eq!((refused.actor.as_str(), refused.source_ip.as_str()), ("olga", "10.0.0.9"));
}

#[test]
fn auditor_reads_the_audit_log_but_cannot_change_anything() {
    let e = env();
    let mut admin = e.user("root6", json!([{"role": "admin"}]));
    let mut aud = e.user("audrey", json!([{"role": "auditor"}]));
    let r = aud.get("/api/v1/audit/records?event=login&limit=50");
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body["data"].as_array().unwrap().iter().any(|x| x["actor"] == "root6"));
    let v = aud.get("/api/v1/audit/verify");
    assert_eq!(v.body["data"]["ok"], json!(true), "{}", v.body);
    let d = aud.get("/api/v1/audit/login-durations?username=root6");
    assert_eq!(d.body["data"].as_array().unwrap().len(), 1);
    // Every change is refused.
    let tries = [
        (Method::POST, "/api/v1/users", json!({"username": "x1", "password": GOOD_PW})),
        (Method::POST, "/api/v1/users/bulk", json!({"action": "disable", "usernames": ["root6"]})),
        (Method::PUT, "/api/v1/users/audrey/roles", json!({"roles": [{"role": "admin"}]})),
        (Method::POST, "/api/v1/users/root6/password", json!({"password": "Hijack-pass-1234"})),
        (Method::PATCH, "/api/v1/users/root6", json!({"display_name": "x"})),
    ];
    for (m, p, b) in tries {
        let r = aud.send(m, p, Some(b), true);
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"), "{p}");
    }
    assert_eq!(aud.get("/api/v1/users").status, StatusCode::FORBIDDEN);
    assert_eq!(aud.get("/api/v1/users/reports/permissions").status, StatusCode::FORBIDDEN);
    // The audit log has no write routes at all.
    for m in [Method::DELETE, Method::PUT, Method::POST, Method::PATCH] {
        let r = aud.send(m, "/api/v1/audit/records", Some(json!({})), true);
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    }
    // Separation of duties: the admin cannot read the audit log.
    assert_eq!(admin.get("/api/v1/audit/records").status, StatusCode::FORBIDDEN);
    // The auditor's views are audited, and refusals too.
    let log = e.id.audit_log().query(&Default::default()).unwrap();
    assert!(log.iter().any(|r| r.event == "audit_view" && r.actor == "audrey"));
    assert!(log.iter().filter(|r| r.event == "access_refused" && r.actor == "audrey").count() >= 5);
}

#[test]
fn an_admin_cannot_lock_themselves_out() {
    let e = env();
    let _ = e.user("root2", json!([{"role": "admin"}]));
    let me = tingzhen_identity::Actor::new("root2", "10.0.0.1");
    let r = e.id.bulk(&me, tingzhen_identity::BulkAction::Disable, &["root2".into()]).unwrap();
    assert!(!r[0].ok && r[0].error.as_deref().unwrap_or("").contains("your own account"), "{r:?}");
    let viewer = [tingzhen_identity::RoleBinding { role: tingzhen_identity::Role::Viewer, campus: "*".into() }];
    let err = e.id.set_roles(&me, "root2", &viewer).unwrap_err().to_string();
    assert!(err.contains("your own group-wide admin role"), "{err}");
    // Another administrator, or the local CLI, may.
    e.id.set_roles(&common::cli(), "root2", &viewer).unwrap();
    let r = e.id.bulk(&common::cli(), tingzhen_identity::BulkAction::Disable, &["root2".into()]).unwrap();
    assert!(r[0].ok, "{r:?}");
}
