//! Test harness: an `Identity` over a test store (a SQLite file in a temp dir, or a schema of
//! its own on PostgreSQL when `TINGZHEN_TEST_DATABASE_URL` is set), a manual clock, and a
//! client that drives the router with `oneshot`, keeping the session cookie and CSRF token and
//! adding a fresh nonce and timestamp to every write (unless a test asks it not to).

#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tingzhen_core::db::testing::TestStore;
use tingzhen_core::db::{Db, DbError, Dialect};
use tingzhen_identity::config::Argon2Config;
use tingzhen_identity::{Actor, Identity, IdentityConfig, ManualClock};
use tower::ServiceExt;

/// 2026-11-23T02:00:00Z, a Monday (10:00 in China).
pub const T0: i64 = 1_795_399_200_000;
pub const ADMIN_PW: &str = "Init-Admin#2026x";
pub const GOOD_PW: &str = "Kettle-river-7342";

pub struct Env {
    pub db: Arc<Db>,
    pub clock: ManualClock,
    pub id: Arc<Identity>,
    pub app: Router,
    /// Declared last: the store outlives the handles above while they drop.
    pub store: TestStore,
}

pub fn fast_config() -> IdentityConfig {
    IdentityConfig {
        // Tiny Argon2 cost so the suite stays quick; the default cost is checked in the crate's unit tests' parameters path.
        argon2: Argon2Config { memory_kib: 256, iterations: 1, parallelism: 1 },
        cookie_secure: true,
        ..IdentityConfig::default()
    }
}

pub fn env_with(cfg: IdentityConfig) -> Env {
    env_with_sender(cfg, None)
}

/// With a code sender, for password reset by SMS code.
pub fn env_with_sender(cfg: IdentityConfig, sender: Option<Arc<dyn tingzhen_identity::CodeSender>>) -> Env {
    let store = TestStore::new();
    let db = Arc::new(store.open());
    let want = std::env::var(tingzhen_core::db::testing::TEST_DATABASE_URL).is_ok_and(|u| !u.trim().is_empty());
    assert_eq!(db.dialect() == Dialect::Postgres, want, "the run tests the engine it says it does");
    let clock = ManualClock::new(T0);
    let mut id = Identity::new(db.clone(), cfg, Arc::new(clock.clone())).unwrap();
    if let Some(s) = sender {
        id = id.with_code_sender(s);
    }
    let id = Arc::new(id);
    let app = tingzhen_identity::api::router(id.clone());
    Env { db, clock, id, app, store }
}

pub fn env() -> Env {
    env_with(fast_config())
}

pub fn cli() -> Actor {
    Actor::new("cli:test", "local")
}

pub struct Client {
    pub app: Router,
    pub clock: ManualClock,
    pub cookie: Option<String>,
    pub csrf: Option<String>,
    pub lang: &'static str,
    counter: u64,
}

pub struct Resp {
    pub status: StatusCode,
    pub body: Value,
    pub headers: HeaderMap,
}

impl Resp {
    pub fn code(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
}

impl Env {
    pub fn client(&self) -> Client {
        Client { app: self.app.clone(), clock: self.clock.clone(), cookie: None, csrf: None, lang: "zh-CN", counter: 0 }
    }

    /// The answer of a captcha, read from the store as only the server can.
    pub fn captcha_answer(&self, id: &str) -> String {
        let h = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(id.as_bytes()));
        self.db
            .with_conn(|c| c.query_row("SELECT answer FROM identity_captchas WHERE id_sha256 = ?1", &[h], |r| r.get(0)))
            .unwrap()
    }

    /// One text column of the first row `sql` selects, read directly from the store.
    pub fn text(&self, sql: &str) -> String {
        self.db.with_conn(|c| c.query_row(sql, &(), |r| r.get(0))).unwrap()
    }

    /// Runs `sql` directly on the store, as a DBA could.
    pub fn exec(&self, sql: &str) -> Result<u64, DbError> {
        self.db.with_conn(|c| c.execute(sql, &()))
    }

    /// Drops the audit log's append-only triggers, as a DBA with full rights could.
    pub fn drop_audit_triggers(&self) {
        let sql = match self.db.dialect() {
            Dialect::Sqlite => "DROP TRIGGER identity_audit_no_update; DROP TRIGGER identity_audit_no_delete;",
            Dialect::Postgres => {
                "DROP TRIGGER identity_audit_no_update ON identity_audit;
                 DROP TRIGGER identity_audit_no_delete ON identity_audit;"
            }
        };
        self.db.with_conn(|c| c.execute_batch(sql)).unwrap();
    }

    /// A user who has already changed the initial password (so no forced change).
    pub fn user(&self, name: &str, roles: Value) -> Client {
        let u = serde_json::from_value(json!({"username": name, "password": ADMIN_PW, "roles": roles})).unwrap();
        self.id.create_user(&cli(), &u).unwrap();
        let mut c = self.client();
        assert_eq!(c.login(name, ADMIN_PW).status, StatusCode::OK);
        let r = c.post("/api/v1/auth/password", json!({"old_password": ADMIN_PW, "new_password": GOOD_PW}));
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        c
    }

    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }
}

impl Client {
    pub fn login(&mut self, username: &str, password: &str) -> Resp {
        self.login_with(json!({"username": username, "password": password}))
    }

    pub fn login_with(&mut self, body: Value) -> Resp {
        let r = self.send(Method::POST, "/api/v1/auth/login", Some(body), false);
        if r.status == StatusCode::OK {
            let set = r.headers.get("set-cookie").unwrap().to_str().unwrap().to_string();
            assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Secure"), "{set}");
            let kv = set.split(';').next().unwrap().to_string();
            self.cookie = Some(kv);
            self.csrf = r.body["data"]["csrf_token"].as_str().map(str::to_string);
        }
        r
    }

    pub fn get(&mut self, path: &str) -> Resp {
        self.send(Method::GET, path, None, true)
    }

    pub fn post(&mut self, path: &str, body: Value) -> Resp {
        self.send(Method::POST, path, Some(body), true)
    }

    pub fn put(&mut self, path: &str, body: Value) -> Resp {
        self.send(Method::PUT, path, Some(body), true)
    }

    pub fn fresh_nonce(&mut self) -> String {
        self.counter += 1;
        format!("nonce-{:016x}-{}", rand_u64(), self.counter)
    }

    /// Sends with cookie; `guard` adds CSRF token, nonce and timestamp.
    pub fn send(&mut self, method: Method, path: &str, body: Option<Value>, guard: bool) -> Resp {
        let mut headers = Vec::new();
        if guard {
            if let Some(t) = &self.csrf {
                headers.push(("x-csrf-token".to_string(), t.clone()));
            }
            headers.push(("x-request-nonce".into(), self.fresh_nonce()));
            headers.push(("x-request-timestamp".into(), self.clock_ms().to_string()));
        }
        self.send_raw(method, path, body, headers)
    }

    pub fn clock_ms(&self) -> i64 {
        use tingzhen_identity::Clock;
        self.clock.now_ms()
    }

    pub fn send_raw(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: Vec<(String, String)>,
    ) -> Resp {
        let mut b = Request::builder().method(method).uri(path).header("accept-language", self.lang);
        if let Some(c) = &self.cookie {
            b = b.header("cookie", c);
        }
        for (k, v) in headers {
            b = b.header(k, v);
        }
        let req = match body {
            Some(v) => b.header("content-type", "application/json").body(Body::from(v.to_string())).unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        let app = self.app.clone();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let resp = app.oneshot(req).await.unwrap();
            let status = resp.status();
            let headers = resp.headers().clone();
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24).await.unwrap();
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            Resp { status, body, headers }
        })
    }
}

fn rand_u64() -> u64 {
    rand::random()
}
