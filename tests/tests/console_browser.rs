//! The ops console in a real browser (headless Debian Chromium over WebDriver) against the real
//! `tingzhen` binary: the newcomer's first login from `tingzhen up`, the login rules the
//! hospital's assessors test (captcha after a failure, lockout, idle expiry, CSRF), campus
//! scoping and escaping, the auditor's read-only role, TOTP enrolment and login, and the
//! language and theme switches.
//! Screenshots of the main pages land in `target/console-screenshots/` as test artifacts.

use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;
use tingzhen_tests::agent::AgentOpts;
use tingzhen_tests::browser::Browser;
use tingzhen_tests::process::Proc;
use tingzhen_tests::{Agent, Collector, CollectorOpts, bins, ports, wait};

/// Passes the password policy (≥ 10 characters, 3 classes, no account name, not a weak one).
const NEW_PASSWORD: &str = "Tz-Console#2026q";
const XSS: &str = "<img src=x onerror=alert(1)>";

/// `tingzhen serve --target all` with the console on plain HTTP (so `cookie_secure = false`),
/// the `[identity]` keys in `identity`, two named campuses and a fast live refresh.
fn console_server(identity: &str) -> Collector {
    console_server_with(identity, "")
}

/// [`console_server`] plus more sections (`more` is TOML appended as is).
fn console_server_with(identity: &str, more: &str) -> Collector {
    let extra_toml = format!(
        "\n[identity]\ncookie_secure = false\n{identity}\n\n[dashboard]\nrefresh_seconds = 2\n\
         campuses = [{{ id = \"east\", name = \"东院\" }}, {{ id = \"west\", name = \"西院\" }}]\n{more}"
    );
    Collector::start_with(CollectorOpts { extra_toml, all_targets: true, ..Default::default() })
}

/// `tingzhen user create`: the initial password it prints (to be changed at first login).
fn create_user(server: &Collector, name: &str, role: &str, display_name: &str) -> String {
    let out = server.cli(&["user", "create", "--name", name, "--role", role, "--display-name", display_name]);
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && !stdout.is_empty(),
        "user create {name} failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A first login in the browser: the one-time password, the forced change, then the console.
fn first_login(b: &Browser, name: &str, initial: &str) {
    b.goto("/ui/login");
    b.login(name, initial);
    b.wait_for_path("/ui/password");
    change_password_in_page(b, initial, NEW_PASSWORD);
}

fn change_password_in_page(b: &Browser, old: &str, new: &str) {
    b.type_into("#old-password", old);
    b.type_into("#new-password", new);
    b.type_into("#repeat-password", new);
    b.click("#password-form button[type=submit]");
    b.wait_until("the password change to land on the console", |b, last| {
        let p = b.path();
        let err = b.try_text("#password-error").unwrap_or_default();
        *last = format!("{p} error={err:?}");
        (!p.starts_with("/ui/password")).then_some(())
    });
}

/// Sends a heartbeat as an agent would, for a host that is not this machine.
fn heartbeat(server: &Collector, token: &str, host: &str, ip: &str, campus: &str, interval_ms: u64) {
    let hb = json!({
        "host": host, "hostname": host, "ips": [ip], "os": "Debian 12", "kernel": "6.1.0", "cpus": 4,
        "memory_bytes": 8u64 << 30, "agent_version": "0.1.0", "campus": campus, "role": "app", "system": "HIS",
        "interval_ms": interval_ms, "boot_time": 1_700_000_000u64
    });
    let r = server
        .http()
        .post(
            &server.url("/api/v1/agents/heartbeat"),
            Some(token),
            &[("Content-Type", "application/json")],
            hb.to_string().as_bytes(),
        )
        .expect("POST heartbeat");
    assert!(r.is_success(), "heartbeat for {host} refused: {} {}", r.status, r.body);
}

/// The console's identity API over plain HTTP with a session cookie, as a script (or an
/// attacker's page) would call it.
struct ApiSession {
    base: String,
    agent: ureq::Agent,
    cookie: String,
    csrf: String,
}

fn api_agent() -> ureq::Agent {
    let config =
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(60))).build();
    ureq::Agent::new_with_config(config)
}

fn nonce() -> String {
    format!("{:032x}", rand_u128())
}

fn rand_u128() -> u128 {
    // Identity only needs nonces it has not seen: time, pid and a per-process counter suffice.
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    t ^ ((std::process::id() as u128) << 64) ^ ((N.fetch_add(1, Ordering::Relaxed) as u128) << 96)
}

impl ApiSession {
    /// Logs in with the identity API (no captcha: the account has no failures).
    fn login(base: &str, name: &str, password: &str) -> ApiSession {
        let agent = api_agent();
        let mut r = agent
            .post(&format!("{base}/api/v1/auth/login"))
            .send_json(json!({"username": name, "password": password}))
            .expect("POST login");
        let cookie = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| c.split(';').next().filter(|kv| kv.starts_with("tz_session=")).map(str::to_string))
            .unwrap_or_default();
        let status = r.status().as_u16();
        let body: Value = r.body_mut().read_json().unwrap_or(Value::Null);
        assert!(status == 200 && !cookie.is_empty(), "login {name}: {status} {body}");
        let csrf = body["data"]["csrf_token"].as_str().unwrap_or_default().to_string();
        ApiSession { base: base.to_string(), agent, cookie, csrf }
    }

    /// A session whose cookie came from somewhere else (the browser).
    fn with_cookie(base: &str, session_cookie: &str, csrf: &str) -> ApiSession {
        ApiSession {
            base: base.to_string(),
            agent: api_agent(),
            cookie: format!("tz_session={session_cookie}"),
            csrf: csrf.to_string(),
        }
    }

    /// `method path` with the cookie, the anti-replay headers, and the CSRF token when `csrf`.
    fn send(&self, method: &str, path: &str, body: Option<Value>, csrf: bool) -> (u16, Value) {
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("Cookie", &self.cookie)
            .header("Accept-Language", "en")
            .header("X-Request-Nonce", nonce())
            .header("X-Request-Timestamp", tingzhen_tests::now_ms().to_string());
        if csrf {
            req = req.header("X-CSRF-Token", &self.csrf);
        }
        let bytes = match &body {
            Some(b) => {
                req = req.header("Content-Type", "application/json");
                b.to_string().into_bytes()
            }
            None => Vec::new(),
        };
        let mut r =
            self.agent.run(req.body(bytes).expect("request")).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    fn change_password(&self, old: &str, new: &str) {
        let (st, body) =
            self.send("POST", "/api/v1/auth/password", Some(json!({"old_password": old, "new_password": new})), true);
        assert_eq!(st, 200, "password change: {body}");
    }
}

/// `tingzhen up` on a fresh data dir (built-in agent every second), as a newcomer runs it.
struct Up {
    proc: Proc,
    url: String,
    user: String,
    password: String,
    _dir: tempfile::TempDir,
}

fn tingzhen_up() -> Up {
    let dir = tempfile::tempdir().unwrap();
    let addr = ports::free_addr();
    let mut cmd = Command::new(bins::tingzhen());
    cmd.current_dir(dir.path())
        .args(["up", "--listen", &addr.to_string(), "--interval", "1s", "--data"])
        .arg(dir.path().join("data"));
    let mut proc = Proc::spawn("tingzhen-up", cmd, &dir.path().join("logs"));
    let (user, password) = wait::until_60s("`tingzhen up` to print the console credential", |last| {
        proc.assert_running();
        let out = proc.stdout();
        *last = out.clone();
        let find = |key: &str| {
            out.lines().find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string())).filter(|s| !s.is_empty())
        };
        Some((find("Console user:")?, find("Console password:")?))
    });
    Up { proc, url: format!("http://{addr}"), user, password, _dir: dir }
}

#[test]
fn newcomer_logs_in_changes_the_password_and_sees_this_host() {
    let mut up = tingzhen_up();
    let (url, user, password) = (up.url.clone(), up.user.clone(), up.password.clone());
    assert_eq!(user, "admin");

    let b = Browser::start(&url);
    // Not logged in: the console sends the newcomer to the login page, in Chinese.
    b.goto("/ui/");
    assert!(b.wait_for_path("/ui/login").contains("next="), "login keeps where the user was going");
    b.find("#login-form");
    assert_eq!(b.attr("html", "lang").as_deref(), Some("zh-CN"));
    b.screenshot("login");

    b.login(&user, &password);
    b.wait_for_path("/ui/password");
    assert!(b.visible(".banner.warn"), "the forced-change notice is shown");
    b.screenshot("password-forced");
    // Nothing else is reachable before the change.
    b.goto("/ui/screen");
    b.wait_for_path("/ui/password");
    // A new password against the policy is refused with the rule, the old one stays valid.
    b.type_into("#old-password", &password);
    b.type_into("#new-password", "admin123");
    b.type_into("#repeat-password", "admin123");
    b.click("#password-form button[type=submit]");
    let refusal = b.wait_until("the policy refusal", |b, last| {
        let t = b.try_text("#password-error").unwrap_or_default();
        *last = b.path();
        (!t.is_empty()).then_some(t)
    });
    assert!(b.path().starts_with("/ui/password"), "still on the password page after {refusal:?}");
    change_password_in_page(&b, &password, NEW_PASSWORD);
    b.wait_for_page("/ui/");

    // The built-in agent's host shows up (live refresh, or a reload) once it heartbeats.
    b.wait_until("this host counted up on the overview", |b, last| {
        let hosts = b.try_text("#kpi-hosts .value").unwrap_or_default();
        let up_text = b.try_text("#kpi-hosts .ok").unwrap_or_default();
        *last = format!("hosts={hosts:?} up={up_text:?}");
        if hosts == "1" && up_text.ends_with(" 1") {
            return Some(());
        }
        b.reload();
        None
    });
    b.screenshot("overview");
    // The hosts list names it.
    let host = tingzhen_tests::hostname();
    b.goto("/ui/hosts");
    b.wait_text(&host);
    b.screenshot("hosts");

    b.goto("/ui/screen");
    b.find("#kpi-hosts");
    assert_eq!(b.attr("html", "data-theme").as_deref(), Some("screen"), "the big screen uses its own theme");
    b.wait_until("the big screen counts this host", |b, last| {
        let v = b.try_text("#kpi-hosts .value").unwrap_or_default();
        *last = v.clone();
        (v == "1").then_some(())
    });
    b.screenshot("big-screen");

    // The one-time password is gone: logging out and in again takes the new one.
    b.goto("/ui/account");
    b.click("[data-logout]");
    b.wait_for_path("/ui/login");
    b.login(&user, NEW_PASSWORD);
    b.wait_for_page("/ui/");
    drop(b);
    let st = up.proc.terminate(Duration::from_secs(30)).expect("`tingzhen up` exits on SIGTERM");
    assert!(st.success(), "`tingzhen up` exit status: {st}\n{}", up.proc.logs());
}

#[test]
fn captcha_appears_after_one_failure_and_a_wrong_answer_is_refused() {
    let server = console_server("");
    let initial = create_user(&server, "capy", "ops", "");
    let b = Browser::start(&server.base_url());
    b.goto("/ui/login");
    assert!(!b.visible("#captcha-box"), "no captcha before any failure");
    b.submit_login("capy", "Wrong-password-1");
    let err = b.wait_until("the login error", |b, last| {
        let t = b.try_text("#login-error").unwrap_or_default();
        *last = t.clone();
        (!t.is_empty()).then_some(t)
    });
    assert!(err.contains("用户名或密码错误"), "a wrong password says so (in Chinese): {err}");
    b.wait_visible("#captcha-box");
    b.wait_until("the captcha image to load", |b, last| {
        let v = b.script(
            "var i = document.getElementById('captcha-img'); return [i.src.slice(0, 22), i.complete, i.naturalWidth];",
            vec![],
        );
        *last = v.to_string();
        (v[0] == "data:image/png;base64," && v[1] == true && v[2].as_u64().unwrap_or(0) > 0).then_some(())
    });
    b.screenshot("login-captcha");

    // The right password with a wrong captcha is still refused (no answer contains a 0).
    b.type_into("#password", &initial);
    b.type_into("#captcha", "00000");
    b.click("#login-submit");
    b.wait_until("the wrong-captcha refusal", |b, last| {
        let t = b.try_text("#login-error").unwrap_or_default();
        *last = format!("{} {t}", b.path());
        t.contains("验证码").then_some(())
    });
    assert!(b.path().starts_with("/ui/login"), "still on the login page");
    assert!(b.cookie("tz_session").is_none(), "no session after a refused captcha");
    b.wait_visible("#captcha-box");
}

#[test]
fn lockout_after_n_failures_refuses_even_the_right_password() {
    // The captcha comes after the lockout here so the browser can reach the threshold alone.
    let server = console_server("lockout_threshold = 3\ncaptcha_after_failures = 10\n");
    let initial = create_user(&server, "locky", "ops", "");
    let b = Browser::start(&server.base_url());
    b.goto("/ui/login");
    let mut last_err = String::new();
    for i in 1..=3 {
        b.submit_login("locky", &format!("Wrong-password-{i}"));
        last_err = b.wait_until(&format!("the error of failure {i}"), |b, last| {
            let t = b.try_text("#login-error").unwrap_or_default();
            *last = t.clone();
            (!t.is_empty()).then_some(t)
        });
        if i < 3 {
            assert!(last_err.contains("用户名或密码错误"), "failure {i}: {last_err}");
            // Clear it so the next message is the next answer, not this one.
            b.script("document.getElementById('login-error').textContent = '';", vec![]);
        }
    }
    assert!(last_err.contains("锁定"), "the third failure locks the account: {last_err}");
    b.script("document.getElementById('login-error').textContent = '';", vec![]);
    b.submit_login("locky", &initial);
    let err = b.wait_until("the locked refusal", |b, last| {
        let t = b.try_text("#login-error").unwrap_or_default();
        *last = t.clone();
        (!t.is_empty()).then_some(t)
    });
    assert!(err.contains("锁定"), "the right password is refused while locked: {err}");
    assert!(b.path().starts_with("/ui/login") && b.cookie("tz_session").is_none());
    b.screenshot("login-locked");
    let list = server.cli(&["user", "list", "--q", "locky"]);
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.lines().any(|l| l.starts_with("locky") && l.contains("locked")), "user list shows the lock: {list}");
}

/// The 6-digit code an authenticator app shows for `secret_b32` at `unix_secs`.
fn authenticator_code(secret_b32: &str, unix_secs: i64) -> String {
    use tingzhen_identity::totp;
    let key =
        totp::base32_decode(secret_b32).unwrap_or_else(|| panic!("the page shows no base32 secret: {secret_b32:?}"));
    format!("{:06}", totp::totp(totp::TotpAlgorithm::Sha1, &key, unix_secs, 30, 6))
}

fn unix_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[test]
fn a_role_that_requires_totp_enrols_in_the_page_then_logs_in_with_a_code() {
    let server = console_server("totp_required_roles = [\"ops\"]\n");
    let initial = create_user(&server, "otpuser", "ops", "");
    let b = Browser::start(&server.base_url());
    first_login(&b, "otpuser", &initial);
    b.wait_for_path("/ui/totp");
    b.goto("/ui/hosts");
    assert!(b.wait_for_path("/ui/totp").starts_with("/ui/totp"), "no console page before enrolment");

    let secret = b.wait_until("the enrolment secret", |b, last| {
        let s = b.try_text("#totp-secret").unwrap_or_default();
        *last = s.clone();
        (s.len() >= 16 && s.chars().all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c))).then_some(s)
    });
    let uri = b.text("#totp-uri");
    assert!(uri.starts_with("otpauth://totp/") && uri.contains(&format!("secret={secret}")), "{uri}");
    b.wait_until("the QR code to render", |b, last| {
        let v = b.script(
            "var i = document.getElementById('totp-qr'); return [i.hidden, i.src.slice(0, 26), i.complete, i.naturalWidth];",
            vec![],
        );
        *last = v.to_string();
        (v[0] == false && v[1] == "data:image/svg+xml;base64," && v[2] == true && v[3].as_u64().unwrap_or(0) >= 200)
            .then_some(())
    });
    b.screenshot("totp-enrol");

    // A wrong code keeps the user on the page with a reason.
    let right = authenticator_code(&secret, unix_secs());
    let wrong = format!("{:06}", (right.parse::<u32>().unwrap() + 500_000) % 1_000_000);
    b.type_into("#totp-code", &wrong);
    b.click("#totp-form button[type=submit]");
    let err = b.wait_until("the wrong-code refusal", |b, last| {
        let t = b.try_text("#totp-error").unwrap_or_default();
        *last = t.clone();
        (!t.is_empty()).then_some(t)
    });
    assert!(b.path().starts_with("/ui/totp"), "a wrong code must not enrol: {err}");

    b.type_into("#totp-code", &authenticator_code(&secret, unix_secs()));
    b.click("#totp-form button[type=submit]");
    b.wait_for_page("/ui/");
    assert!(!b.path().starts_with("/ui/totp"));
    b.goto("/ui/account");
    b.click("[data-logout]");
    b.wait_for_path("/ui/login");

    // The password alone is not enough now; the box for the code appears.
    b.submit_login("otpuser", NEW_PASSWORD);
    b.wait_visible("#totp-box");
    assert!(b.path().starts_with("/ui/login") && b.cookie("tz_session").is_none(), "no session without the code");
    // Codes are single-use and the enrolment used this step's: the authenticator's next code
    // (still inside the ±1-step window) is the one a person would type after it.
    let next = authenticator_code(&secret, unix_secs() + 30);
    b.type_into("#totp", &next);
    b.click("#login-submit");
    b.wait_until("the login with a code to reach the console", |b, last| {
        let p = b.path();
        *last = format!("{p} error={:?}", b.try_text("#login-error").unwrap_or_default());
        (!p.starts_with("/ui/login")).then_some(())
    });
    assert!(b.cookie("tz_session").is_some());

    // The same code again is a replay and is refused.
    b.goto("/ui/account");
    b.click("[data-logout]");
    b.wait_for_path("/ui/login");
    b.submit_login("otpuser", NEW_PASSWORD);
    b.wait_visible("#totp-box");
    b.script("document.getElementById('login-error').textContent = '';", vec![]);
    b.type_into("#totp", &next);
    b.click("#login-submit");
    let err = b.wait_until("the replayed code's refusal", |b, last| {
        let t = b.try_text("#login-error").unwrap_or_default();
        *last = t.clone();
        (!t.is_empty()).then_some(t)
    });
    assert!(b.path().starts_with("/ui/login") && b.cookie("tz_session").is_none(), "a replayed code got in: {err}");
}

#[test]
fn an_idle_session_expires_and_the_next_page_is_the_login() {
    // 1m is the shortest idle timeout the identity config accepts.
    let server = console_server("session_idle_timeout = \"1m\"\n");
    let initial = create_user(&server, "idler", "ops", "");
    let b = Browser::start(&server.base_url());
    first_login(&b, "idler", &initial);
    // A page without live refresh: nothing touches the session while the user is away.
    b.goto("/ui/account");
    b.find("main h1");
    let live = b.script("return document.querySelectorAll('[data-refresh]').length;", vec![]);
    assert_eq!(live, json!(0), "the account page must not refresh itself, or the session would never idle");
    std::thread::sleep(Duration::from_secs(65));
    b.goto("/ui/hosts");
    let p = b.wait_for_path("/ui/login");
    assert!(p.contains("next=%2Fui%2Fhosts"), "back to the hosts page after login: {p}");
    // Logging in again goes back where the user was going.
    b.login("idler", NEW_PASSWORD);
    assert_eq!(b.wait_for_path("/ui/hosts"), "/ui/hosts");
}

#[test]
fn language_and_theme_switches_apply_and_stick() {
    let server = console_server("");
    let initial = create_user(&server, "prefs", "ops", "");
    let b = Browser::start(&server.base_url());
    first_login(&b, "prefs", &initial);
    b.wait_for_page("/ui/");
    assert!(b.text("#nav").contains("总览"), "Chinese first");
    assert_eq!(b.attr("html", "data-theme").as_deref(), Some("light"));

    b.select("select[data-pref=tz_lang]", "en");
    b.wait_until("English texts", |b, last| {
        let lang = b.try_attr("html", "lang").unwrap_or_default();
        let nav = b.try_text("#nav").unwrap_or_default();
        *last = format!("lang={lang} nav={nav:?}");
        (lang == "en" && nav.contains("Overview")).then_some(())
    });
    b.wait_text("Group overview");
    b.screenshot("overview-en");

    b.select("select[data-pref=tz_theme]", "dark");
    b.wait_until("the dark theme", |b, last| {
        let t = b.try_attr("html", "data-theme").unwrap_or_default();
        *last = t.clone();
        (t == "dark").then_some(())
    });
    b.find("html[data-theme=dark]");
    b.screenshot("overview-dark");
    // Both are remembered across pages.
    b.goto("/ui/hosts");
    b.find("html[data-theme=dark][lang=en]");
    assert!(b.text("#nav").contains("Overview"));

    // On a phone the menu folds behind its toggle.
    b.fit_viewport(390, 844);
    b.goto("/ui/");
    b.find("#kpi-hosts");
    b.wait_until("the menu folded", |b, last| {
        let (nav, toggle) = (b.visible("#nav"), b.visible(".nav-toggle"));
        *last = format!("nav visible={nav} toggle visible={toggle}");
        (!nav && toggle).then_some(())
    });
    b.screenshot("overview-phone");
    b.click(".nav-toggle");
    b.wait_visible("#nav a[href=\"/ui/hosts\"]");
    b.screenshot("overview-phone-menu");
}

#[test]
fn csrf_token_is_required_for_state_changes() {
    let server = console_server("");
    let initial = create_user(&server, "csrfadmin", "admin", "");
    let b = Browser::start(&server.base_url());
    first_login(&b, "csrfadmin", &initial);
    b.wait_for_page("/ui/");
    let cookie = b.cookie("tz_session").expect("the browser holds the session cookie");
    let csrf = b.attr("meta[name=csrf-token]", "content").unwrap_or_default();
    assert!(!csrf.is_empty(), "pages carry the CSRF token for app.js");
    let api = ApiSession::with_cookie(&server.base_url(), &cookie, &csrf);
    let new_user = json!({"username": "made-by-csrf", "display_name": "", "password": "Xq7#made-by-it-2026",
                          "roles": [{"role": "viewer", "campus": "*"}]});

    // The cookie alone, as a forged cross-site request would carry it: refused, nothing created.
    let (st, body) = api.send("POST", "/api/v1/users", Some(new_user.clone()), false);
    assert_eq!(st, 403, "no X-CSRF-Token: {body}");
    assert!(body["error"].as_str().unwrap_or("").contains("csrf"), "{body}");
    let forged = ApiSession::with_cookie(&server.base_url(), &cookie, &"0".repeat(csrf.len()));
    let (st, body) = forged.send("POST", "/api/v1/users", Some(new_user.clone()), true);
    assert_eq!(st, 403, "a wrong X-CSRF-Token: {body}");
    let (st, body) = api.send("GET", "/api/v1/users?q=made-by-csrf", None, false);
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(0), "nothing was created: {body}");
    // Logging out is a state change too.
    let (st, _) = api.send("POST", "/api/v1/auth/logout", None, false);
    assert_eq!(st, 403, "logout without the token");

    // The same request with the page's token is accepted: the refusals were about the token.
    let (st, body) = api.send("POST", "/api/v1/users", Some(new_user), true);
    assert!((200..300).contains(&st), "with the token: {st} {body}");
    let (st, body) = api.send("GET", "/api/v1/users?q=made-by-csrf", None, false);
    assert_eq!((st, body["data"].as_array().map(Vec::len)), (200, Some(1)), "{body}");
}

#[test]
fn a_campus_viewer_cannot_open_another_campus_and_names_are_escaped() {
    let server = console_server("");
    let token = server.create_token("e2e-agent", "ingest", None);
    heartbeat(&server, &token, "east-his-01", "10.1.0.5", "east", 60_000);
    // A host that stops reporting after one heartbeat is listed by name among the down hosts.
    heartbeat(&server, &token, XSS, "10.2.0.9", "west", 1_000);
    let viewer = create_user(&server, "eastviewer", "viewer@east", XSS);
    let admin = create_user(&server, "xssadmin", "admin", "");

    let b = Browser::start(&server.base_url());
    first_login(&b, "eastviewer", &viewer);
    b.goto("/ui/campus/east");
    b.find("#kpi-hosts");
    b.goto("/ui/campus/west");
    let title = b.text("main h1");
    assert_eq!(title, "无权访问", "another campus by URL is the forbidden page");
    assert!(!b.body_text().contains("10.2.0.9"), "nothing of west leaks");
    b.screenshot("forbidden-campus");
    // The overview shows east only.
    b.goto("/ui/");
    b.find("#kpi-hosts");
    assert!(!b.body_text().contains("西院"), "no west card for an east viewer");
    drop(b);

    let b = Browser::start(&server.base_url());
    first_login(&b, "xssadmin", &admin);
    b.wait_until("the hostile host name listed as text among the down hosts", |b, last| {
        let t = b.body_text();
        *last = t.chars().take(400).collect();
        if t.contains(XSS) {
            return Some(());
        }
        b.reload();
        None
    });
    let injected = b.script("return document.querySelectorAll('img[src=\"x\"], img[onerror]').length;", vec![]);
    assert_eq!(injected, json!(0), "no element was created from the host name");
    assert!(b.open_alert().is_none(), "no script ran");
    b.screenshot("overview-escaped-host");
    // A display name is user input too: the users page shows it as text.
    b.goto("/ui/users");
    b.wait_text("eastviewer");
    assert!(b.body_text().contains(XSS), "the display name shows literally");
    let injected = b.script("return document.querySelectorAll('img[src=\"x\"], img[onerror]').length;", vec![]);
    assert_eq!(injected, json!(0), "no element was created from the display name");
    assert!(b.open_alert().is_none(), "no script ran");
    b.screenshot("users-escaped-name");
}

#[test]
fn an_auditor_cannot_change_configuration() {
    let server = console_server("");
    let initial = create_user(&server, "aud", "auditor", "");
    create_user(&server, "victim", "viewer", "");
    let api = ApiSession::login(&server.base_url(), "aud", &initial);
    api.change_password(&initial, NEW_PASSWORD);
    for (method, path, body) in [
        (
            "POST",
            "/api/v1/users",
            json!({"username": "aud-made", "display_name": "", "password": "Xq7#aud-made-2026",
                   "roles": [{"role": "admin", "campus": "*"}]}),
        ),
        ("PUT", "/api/v1/users/victim/roles", json!({"roles": [{"role": "admin", "campus": "*"}]})),
        ("PUT", "/api/v1/users/aud/roles", json!({"roles": [{"role": "admin", "campus": "*"}]})),
        ("POST", "/api/v1/users/bulk", json!({"action": "disable", "usernames": ["victim"]})),
        // The console's own configuration actions.
        (
            "POST",
            "/ui/api/config/rules",
            json!({"yaml": "groups:\n  - name: aud\n    rules:\n      - alert: AudRule\n        expr: vector(1)\n"}),
        ),
        ("POST", "/ui/api/silences", json!({"matchers": "alertname=\"X\"", "duration": "1h", "comment": "aud"})),
        ("PUT", "/ui/api/config/calendar/2026-12-25", json!({"kind": "holiday", "name": "aud"})),
        (
            "POST",
            "/ui/api/users",
            json!({"username": "aud-ui-made", "password": "Xq7#aud-made-2026", "roles": [{"role": "admin", "campus": "*"}]}),
        ),
    ] {
        let (st, resp) = api.send(method, path, Some(body), true);
        assert_eq!(st, 403, "auditor {method} {path}: {resp}");
    }
    // The auditor's own view works: the audit log, which recorded the refusals.
    let (st, body) = api.send("GET", "/api/v1/audit/records?actor=aud&outcome=refused", None, false);
    assert_eq!(st, 200, "{body}");
    let refused = body.to_string();
    assert!(refused.matches("ManageUsers").count() >= 4, "every refusal is audited: {body}");
    assert!(refused.contains("ManageConfig"), "config refusals are audited: {body}");

    // In the browser: no configuration in the menu, and the overview is not theirs.
    let b = Browser::start(&server.base_url());
    b.goto("/ui/login");
    b.login("aud", NEW_PASSWORD);
    b.find("#nav");
    let nav = b.text("#nav");
    assert!(!nav.contains("配置") && !nav.contains("用户"), "auditor menu: {nav}");
    // No monitoring for them: the console's home is not the overview.
    b.goto("/ui/");
    b.find("main h1");
    assert!(b.try_find("#kpi-hosts").is_none(), "an auditor sees no overview (at {})", b.path());
    b.goto("/ui/config");
    assert_eq!(b.text("main h1"), "无权访问");
    // Their own page: the audit log, with the refusals above in it.
    b.goto("/ui/audit");
    b.find("#audit-filter");
    b.wait_text("access_refused");
    b.screenshot("audit");
}

#[test]
fn search_finds_this_host_by_ip_and_a_rule_made_in_the_ui_fires_and_is_silenced() {
    // Silences live in alerting's routing, which needs a route and a receiver (`tingzhen up`
    // configures none); the SMTP port has no server, so notifications just wait to be retried.
    let routing = format!(
        "\n[alerting.routing.route]\nreceiver = \"ops\"\n\n[[alerting.notify.receivers]]\nname = \"ops\"\n\
         channels = [{{ type = \"email\", to = [\"ops@hospital.example\"] }}]\n\n[alerting.notify.smtp]\n\
         host = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nfrom = \"tingzhen <alerts@hospital.example>\"\n",
        ports::free_port()
    );
    let server = console_server_with("", &routing);
    let token = server.create_token("e2e-agent", "ingest", None);
    let _agent = Agent::start(AgentOpts {
        collector: Some(server.base_url()),
        token: Some(token),
        interval: Some("1s".into()),
        ..Default::default()
    });
    let admin_token = server.admin_token();
    let api = server.client(&admin_token);
    let host = tingzhen_tests::hostname();
    // This host's address, as its agent reported it.
    let ip = wait::until_60s("the agent's heartbeat", |last| {
        let r = api.call("/api/v1/inventory/hosts", &[]);
        *last = format!("{} {}", r.status, r.body);
        let hosts = r.json()["data"].as_array().cloned().unwrap_or_default();
        let me = hosts.iter().find(|h| h["host"] == host.as_str())?;
        me["ips"].as_array()?.iter().filter_map(Value::as_str).find(|ip| !ip.starts_with("127.")).map(str::to_string)
    });
    let initial = create_user(&server, "opsadmin", "admin", "");

    let b = Browser::start(&server.base_url());
    first_login(&b, "opsadmin", &initial);

    // Search by IP from the box in the header.
    b.type_into("form.search input[name=q]", &ip);
    b.click("form.search button[type=submit]");
    b.wait_for_path("/ui/search");
    let found = b.text("#search-hosts");
    assert!(found.contains(&host) && found.contains(&ip), "search for {ip} lists {host}: {found}");
    assert_ne!(b.attr("#search-hosts", "data-count").as_deref(), Some("0"));
    b.screenshot("search");

    // A rule written in the console's editor.
    let rule = format!(
        "groups:\n  - name: e2e-browser\n    interval: 2s\n    rules:\n      - alert: E2eBrowserRule\n        \
         expr: node_load1{{host=\"{host}\"}} >= 0\n        labels:\n          severity: warning\n        \
         annotations:\n          summary: made in the browser\n"
    );
    b.goto("/ui/config/rules/new");
    b.find("#rule-form");
    b.type_into("#rule-yaml", &rule);
    b.screenshot("rule-edit");
    b.click("#rule-save");
    b.wait_until("the saved rule listed", |b, last| {
        let p = b.path();
        let err = b.try_text("#rule-error").unwrap_or_default();
        *last = format!("{p} error={err:?}");
        (p == "/ui/config/rules" && b.try_text("#rules-table").is_some_and(|t| t.contains("E2eBrowserRule")))
            .then_some(())
    });

    // It fires, and the alerts page shows it (live refresh).
    b.goto("/ui/alerts");
    let find_row = "var r = Array.from(document.querySelectorAll('#alerts-table tr[data-fingerprint]'))\
        .find(function (r) { return r.textContent.indexOf('E2eBrowserRule') >= 0; });\
        return r ? [r.getAttribute('data-fingerprint'), r.querySelector('td.state-firing') !== null] : null;";
    let fingerprint = b.wait_until("E2eBrowserRule firing in #alerts-table", |b, last| {
        let row = b.script(find_row, vec![]);
        *last = row.to_string();
        (row[1] == true).then(|| row[0].as_str().unwrap_or_default().to_string())
    });
    b.screenshot("alerts");

    // Silence it from its row.
    b.click(&format!("#alerts-table tr[data-fingerprint=\"{fingerprint}\"] .silence-button"));
    b.wait_for_path("/ui/alerts/silence/");
    b.find("#silence-matchers");
    let prefilled = b.script("return document.getElementById('silence-matchers').value;", vec![]);
    assert!(prefilled.as_str().unwrap_or("").contains("E2eBrowserRule"), "matchers from the alert: {prefilled}");
    b.type_into("#silence-comment", "maintenance window, silenced in the browser");
    b.screenshot("silence");
    b.click("#silence-save");
    b.wait_until("the silence saved", |b, last| {
        let p = b.path();
        let err = b.try_text("#silence-error").unwrap_or_default();
        *last = format!("{p} error={err:?}");
        (p == "/ui/alerts").then_some(())
    });
    b.goto("/ui/config/silences");
    let row = b.text("#silences-table tr.silence-active");
    assert!(row.contains("silenced in the browser") && row.contains("E2eBrowserRule"), "active silence: {row}");
    // The alerting engine has it, made by the console user, matching the alert.
    let r = api.call("/api/v1/alerting/silences", &[]);
    let silences = r.json()["data"].as_array().cloned().unwrap_or_default();
    let s = silences
        .iter()
        .find(|s| s["comment"] == "maintenance window, silenced in the browser")
        .unwrap_or_else(|| panic!("silence not in the alerting API: {}", r.body));
    assert_eq!(s["status"], "active", "{s}");
    assert!(s["matchers"].to_string().contains("E2eBrowserRule"), "{s}");
}

/// Opens `path`, checks it is a real page (not the error, not-found or forbidden page) and saves
/// it as `name`.
fn page_shot(b: &Browser, path: &str, name: &str) -> String {
    b.goto(path);
    let h1 = b.text("main h1");
    assert!(!["出错了", "未找到", "无权访问"].contains(&h1.as_str()), "{path} rendered {h1:?}: {}", b.body_text());
    b.screenshot(name);
    h1
}

#[test]
fn every_main_page_renders_for_an_admin_with_a_live_agent() {
    let routing = format!(
        "\n[alerting.routing.route]\nreceiver = \"ops\"\n\n[[alerting.notify.receivers]]\nname = \"ops\"\n\
         channels = [{{ type = \"email\", to = [\"ops@hospital.example\"] }}]\n\n[alerting.notify.smtp]\n\
         host = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nfrom = \"tingzhen <alerts@hospital.example>\"\n",
        ports::free_port()
    );
    let server = console_server_with("", &routing);
    let token = server.create_token("e2e-agent", "ingest", None);
    let _agent = Agent::start(AgentOpts {
        collector: Some(server.base_url()),
        token: Some(token),
        interval: Some("1s".into()),
        ..Default::default()
    });
    let initial = create_user(&server, "pageadmin", "admin", "");
    let host = tingzhen_tests::hostname();
    let b = Browser::start(&server.base_url());
    first_login(&b, "pageadmin", &initial);
    b.goto("/ui/hosts");
    b.wait_until("this host listed", |b, last| {
        let t = b.body_text();
        *last = t.chars().take(300).collect();
        if t.contains(&host) {
            return Some(());
        }
        b.reload();
        None
    });
    // The host's page draws its charts once a few samples are in.
    b.goto(&format!("/ui/hosts/{host}"));
    b.wait_until("charts on the host page", |b, last| {
        let n = b.script("return document.querySelectorAll('main svg').length;", vec![]);
        *last = n.to_string();
        if n.as_u64().unwrap_or(0) > 0 {
            return Some(());
        }
        b.reload();
        None
    });
    page_shot(&b, &format!("/ui/hosts/{host}"), "host-detail");
    for (path, name) in [
        ("/ui/targets", "targets"),
        ("/ui/interfaces", "interfaces"),
        ("/ui/alerts/history", "alerts-history"),
        ("/ui/alerts/notifications", "alerts-notifications"),
        ("/ui/config", "config"),
        ("/ui/config/rules", "config-rules"),
        ("/ui/config/silences", "config-silences"),
        ("/ui/config/receivers", "config-receivers"),
        ("/ui/config/routes", "config-routes"),
        ("/ui/config/calendar", "config-calendar"),
        ("/ui/users", "users"),
        ("/ui/users/reports", "users-reports"),
        ("/ui/account", "account"),
    ] {
        page_shot(&b, path, name);
    }
    // Separation of duties: the audit log is the auditor's, not the administrator's.
    b.goto("/ui/audit");
    assert_eq!(b.text("main h1"), "无权访问");
}

/// MLPS 1.2/1.5: "忘记密码" on the login page, a code texted to the number on record through
/// the hospital's SMS gateway (here a local HTTP receiver), and the new password signs in.
#[test]
fn a_forgotten_password_is_reset_with_a_code_texted_to_the_phone_on_record() {
    let gateway = tingzhen_tests::HttpSink::start();
    let more = format!(
        "\n[identity.password_reset]\nsms_provider = \"http_sms\"\n\n[alerting.notify.http_sms]\nurl = \"{}\"\n\
         body = '{{\"mobile\": {{{{json phone}}}}, \"content\": {{{{json text}}}}}}'\n",
        gateway.url("/sms")
    );
    let server = console_server_with("", &more);
    let out = server.cli(&["user", "create", "--name", "nina", "--role", "viewer@east", "--phone", "13812345678"]);
    assert!(out.status.success(), "user create: {}", String::from_utf8_lossy(&out.stderr));
    let b = Browser::start(&server.base_url());
    b.goto("/ui/login");
    b.click("a[href='/ui/reset']");
    b.wait_for_page("/ui/reset");
    b.wait_until("the captcha image to load", |b, last| {
        let v = b.script(
            "var i = document.getElementById('reset-captcha-img'); return [i.src.slice(0, 22), i.complete, i.naturalWidth];",
            vec![],
        );
        *last = v.to_string();
        (v[0] == "data:image/png;base64," && v[1] == true && v[2].as_u64().unwrap_or(0) > 0).then_some(())
    });
    // The page's captcha is the newest one; its answer is read from the store as only the server can.
    let db = tingzhen_core::db::Db::open(&server.data.join("tingzhen.db")).expect("open the server's store");
    let answer: String = db
        .with_conn(|c| {
            c.query_row("SELECT answer FROM identity_captchas ORDER BY expires_ms DESC LIMIT 1", &(), |r| r.get(0))
        })
        .expect("captcha answer");
    b.type_into("#reset-username", "nina");
    b.type_into("#reset-phone", "138 1234 5678");
    b.type_into("#reset-captcha", &answer);
    b.screenshot("reset-request");
    b.click("#reset-request-submit");
    b.wait_visible("#reset-step2");
    assert!(b.text("#reset-request-done").contains("验证码已发送"), "{}", b.text("#reset-request-done"));
    let texts = gateway.wait_for(1);
    let sms: serde_json::Value = serde_json::from_str(&texts[0].body).expect("gateway body is the configured JSON");
    assert_eq!(sms["mobile"], "13812345678");
    let content = sms["content"].as_str().unwrap().to_string();
    let code = content.split(|c: char| !c.is_ascii_digit()).find(|run| run.len() == 6).expect("a six-digit code");
    b.type_into("#reset-code", code);
    b.type_into("#reset-new-password", NEW_PASSWORD);
    b.type_into("#reset-repeat-password", NEW_PASSWORD);
    b.click("#reset-confirm-submit");
    b.wait_visible("#reset-done");
    assert!(b.text("#reset-done-message").contains("密码已重置"), "{}", b.text("#reset-done-message"));
    b.screenshot("reset-done");
    b.goto("/ui/login");
    b.login("nina", NEW_PASSWORD);
    b.wait_for_page("/ui/");
}
