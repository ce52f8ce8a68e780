//! Test support for page modules: a dashboard over a fresh test store (in-memory SQLite, or
//! PostgreSQL when `TINGZHEN_TEST_DATABASE_URL` is set) with real identity (users, sessions,
//! CSRF) and a backend router the test supplies, plus helpers that log in a user with given
//! roles and call pages through `oneshot`. `Kit::with_password_reset` turns on identity's
//! password reset by SMS code, with a sender that records the codes instead of sending them.

use crate::{Backend, Dashboard, DashboardConfig};
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use std::sync::{Arc, Mutex};
use tingzhen_core::db::Db;
use tingzhen_core::db::testing::fresh_db;
use tingzhen_identity::config::PasswordResetConfig;
use tingzhen_identity::roles::RoleBinding;
use tingzhen_identity::{Actor, CodeSender, Identity, IdentityConfig, LoginRequest, NewUser, Role, SystemClock};
use tower::ServiceExt;

pub const PASSWORD: &str = "Initial#Pass1";
pub const CHANGED: &str = "Changed#Pass2x";

pub struct Kit {
    pub dashboard: Dashboard,
    pub router: Router,
    /// The store identity runs on, for tests that must read what no API shows (a captcha's answer).
    pub db: Arc<Db>,
}

/// A code identity sent: the phone number it went to and the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentCode {
    pub phone: String,
    pub code: String,
}

/// Records the password-reset codes instead of sending SMS.
#[derive(Debug, Default)]
pub struct RecordingSender {
    pub sent: Mutex<Vec<SentCode>>,
}

impl CodeSender for RecordingSender {
    fn send_code(&self, phone: &str, code: &str, _minutes: u32, _lang: tingzhen_identity::Lang) -> Result<(), String> {
        self.sent.lock().unwrap().push(SentCode { phone: phone.into(), code: code.into() });
        Ok(())
    }
}

/// What a call answered.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub location: Option<String>,
    pub body: String,
}

/// A logged-in user: the cookie header value and the session's CSRF token.
#[derive(Debug, Clone)]
pub struct Login {
    pub cookie: String,
    pub csrf: String,
}

impl Kit {
    pub fn new(backend: Router) -> Self {
        Self::with_config(backend, DashboardConfig::default())
    }

    pub fn with_config(backend: Router, config: DashboardConfig) -> Self {
        Self::build(backend, config, None)
    }

    /// A kit whose identity offers password reset by SMS code; the sender records every code.
    pub fn with_password_reset(backend: Router) -> (Self, Arc<RecordingSender>) {
        let sender = Arc::new(RecordingSender::default());
        (Self::build(backend, DashboardConfig::default(), Some(sender.clone())), sender)
    }

    fn build(backend: Router, config: DashboardConfig, sender: Option<Arc<RecordingSender>>) -> Self {
        let db = Arc::new(fresh_db());
        let mut cfg = IdentityConfig::default();
        cfg.argon2.memory_kib = 64;
        cfg.argon2.iterations = 1;
        cfg.cookie_secure = false;
        if sender.is_some() {
            cfg.password_reset = Some(PasswordResetConfig::new("http_sms", ""));
        }
        let mut identity = Identity::new(db.clone(), cfg, Arc::new(SystemClock)).unwrap();
        if let Some(s) = sender {
            identity = identity.with_code_sender(s);
        }
        let identity = Arc::new(identity);
        let dashboard = Dashboard::new(identity, Backend::in_process(backend, "test-token".into()), config).unwrap();
        let router = crate::router(dashboard.clone()).merge(tingzhen_identity::api::router(dashboard.identity.clone()));
        Self { dashboard, router, db }
    }

    /// Fetches a captcha as the pages do and reads its answer from the store (the image is
    /// all a browser gets): `(id, answer)` for a request that needs one.
    pub async fn solved_captcha(&self) -> (String, String) {
        let r = self.get("/api/v1/auth/captcha", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let id = v["data"]["id"].as_str().expect("a captcha id").to_string();
        assert!(v["data"]["image"].as_str().unwrap_or_default().starts_with("data:image/"), "{}", r.body);
        let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(id.as_bytes()));
        let answer: String = self
            .db
            .with_conn(|c| {
                c.query_row("SELECT answer FROM identity_captchas WHERE id_sha256 = ?1", &[&hash], |r| r.get(0))
            })
            .unwrap();
        (id, answer)
    }

    /// Creates `name` with `roles` (`("viewer", "east")`), changes the initial password and
    /// logs in again, so the session is unrestricted.
    pub fn login(&self, name: &str, roles: &[(&str, &str)]) -> Login {
        let id = &self.dashboard.identity;
        let roles =
            roles.iter().map(|(r, c)| RoleBinding { role: Role::parse(r).unwrap(), campus: c.to_string() }).collect();
        let user = NewUser {
            username: name.into(),
            display_name: String::new(),
            password: PASSWORD.into(),
            roles,
            valid_until_ms: None,
            access_windows: Vec::new(),
            phone: None,
        };
        id.create_user(&Actor::new("test", "127.0.0.1"), &user).unwrap();
        let req = |p: &str| LoginRequest { username: name.into(), password: p.into(), ..Default::default() };
        let first = id.login(&req(PASSWORD), "127.0.0.1").unwrap();
        id.change_password(&first.session, PASSWORD, CHANGED).unwrap();
        let done = id.login(&req(CHANGED), "127.0.0.1").unwrap();
        assert!(done.session.restriction.is_none());
        Login { cookie: format!("tz_session={}", done.session_id), csrf: done.session.csrf_token }
    }

    pub async fn get(&self, path: &str, login: Option<&Login>) -> Answer {
        self.call(Method::GET, path, login, None).await
    }

    /// A live refresh as `app.js` sends it (does not count as the user's activity).
    pub async fn refresh(&self, path: &str, login: Option<&Login>) -> Answer {
        let mut req = Request::builder().uri(path).header(crate::web::REFRESH_HEADER, "1");
        if let Some(l) = login {
            req = req.header(header::COOKIE, &l.cookie);
        }
        let res = self.router.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 16 << 20).await.unwrap();
        Answer { status, location: None, body: String::from_utf8_lossy(&bytes).into_owned() }
    }

    /// A state-changing call with the CSRF token and a fresh nonce, as `app.js` sends it.
    pub async fn send(&self, method: Method, path: &str, login: &Login, body: Option<serde_json::Value>) -> Answer {
        self.call(method, path, Some(login), body).await
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        login: Option<&Login>,
        body: Option<serde_json::Value>,
    ) -> Answer {
        let mut req = Request::builder().method(method.clone()).uri(path);
        if let Some(l) = login {
            req = req.header(header::COOKIE, &l.cookie);
            if method != Method::GET {
                req = req
                    .header("x-csrf-token", &l.csrf)
                    .header("x-request-nonce", hex::encode(rand_bytes()))
                    .header("x-request-timestamp", tingzhen_core::now_ms().to_string());
            }
        }
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let res = self.router.clone().oneshot(req.body(body).unwrap()).await.unwrap();
        let status = res.status();
        let location = res.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_string);
        let bytes = axum::body::to_bytes(res.into_body(), 16 << 20).await.unwrap();
        Answer { status, location, body: String::from_utf8_lossy(&bytes).into_owned() }
    }
}

fn rand_bytes() -> [u8; 16] {
    use sha2::Digest;
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let h = sha2::Sha256::digest(format!("{}-{n}", tingzhen_core::now_ms()).as_bytes());
    h[..16].try_into().unwrap()
}
