//! A local HTTP server standing in for WeChat Work, Aliyun SMS, Tencent Cloud SMS, a webhook
//! receiver and an HTTP SMS gateway. It checks each request against the documented format and
//! recomputes signatures with code written here from the documents (not the crate's code), so
//! a wrong signature fails the test. Any violation is recorded and answered with HTTP 400.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

pub const ROBOT_KEY: &str = "robot-key-7f3a";
pub const CORP_ID: &str = "ww0123456789";
pub const CORP_SECRET: &str = "corp-secret-xyz";
pub const AGENT_ID: i64 = 1000002;
pub const ALI_ID: &str = "LTAI5tTestKeyId";
pub const ALI_SECRET: &str = "ali/secret+key=";
pub const TC_ID: &str = "AKIDtestSecretId";
pub const TC_KEY: &str = "tc-secret-key";
pub const TC_APP: &str = "1400123456";
pub const HOOK_TOKEN: &str = "hook-bearer-token";
pub const SMS_GATEWAY_TOKEN: &str = "Token gw-123";

/// One accepted request.
#[derive(Debug, Clone)]
pub struct Received {
    pub route: &'static str,
    pub headers: HashMap<String, String>,
    pub query: BTreeMap<String, String>,
    pub body: Value,
}

#[derive(Default)]
pub struct FakeState {
    pub received: Mutex<Vec<Received>>,
    pub violations: Mutex<Vec<String>>,
    /// Answer this many webhook requests with 500 before accepting.
    pub webhook_failures: AtomicUsize,
    /// Webhook answers 500 forever while this is 1; 2 means 400 forever.
    pub webhook_broken: AtomicUsize,
    /// Milliseconds to wait before answering a webhook.
    pub webhook_delay_ms: AtomicU64,
    pub gettoken_calls: AtomicUsize,
    /// `expires_in` of issued tokens (seconds); 0 means the documented 7200.
    pub token_ttl_s: AtomicU64,
    /// Answer the robot request with this 1-based number with errcode -1 (system busy).
    pub robot_busy_at: AtomicUsize,
    robot_requests: AtomicUsize,
    pub tokens_issued: AtomicUsize,
    valid_token: Mutex<Option<String>>,
    nonces: Mutex<HashSet<String>>,
    pub ali_max_chars: AtomicUsize,
    pub tc_max_chars: AtomicUsize,
}

impl FakeState {
    /// Expires the current access_token server-side (the next use gets errcode 42001).
    pub fn expire_token(&self) {
        *self.valid_token.lock() = None;
    }

    pub fn of(&self, route: &str) -> Vec<Received> {
        self.received.lock().iter().filter(|r| r.route == route).cloned().collect()
    }

    pub fn assert_clean(&self) {
        let v = self.violations.lock();
        assert!(v.is_empty(), "fake server saw malformed requests: {v:#?}");
    }

    fn violation(&self, route: &str, msg: String) -> Response {
        self.violations.lock().push(format!("{route}: {msg}"));
        (StatusCode::BAD_REQUEST, msg).into_response()
    }
}

pub struct Fake {
    pub addr: SocketAddr,
    pub state: Arc<FakeState>,
}

impl Fake {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

pub async fn start() -> Fake {
    let state = Arc::new(FakeState::default());
    state.ali_max_chars.store(35, Ordering::SeqCst);
    state.tc_max_chars.store(12, Ordering::SeqCst);
    let app = Router::new()
        .route("/cgi-bin/webhook/send", post(robot))
        .route("/cgi-bin/gettoken", get(gettoken))
        .route("/cgi-bin/message/send", post(app_send))
        .route("/", get(aliyun).post(tencent))
        .route("/hook", post(webhook))
        .route("/sms", post(http_sms))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Fake { addr, state }
}

fn headers(h: &HeaderMap) -> HashMap<String, String> {
    h.iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect()
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_default()
}

fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (pct_decode(k), pct_decode(v))
        })
        .collect()
}

fn record(st: &FakeState, route: &'static str, h: &HeaderMap, query: BTreeMap<String, String>, body: Value) {
    st.received.lock().push(Received { route, headers: headers(h), query, body });
}

// ---- WeChat Work group robot (developer.work.weixin.qq.com/document/path/91770) ----

async fn robot(State(st): State<Arc<FakeState>>, RawQuery(q): RawQuery, h: HeaderMap, body: Bytes) -> Response {
    let query = parse_query(&q.unwrap_or_default());
    let n = st.robot_requests.fetch_add(1, Ordering::SeqCst) + 1;
    if n == st.robot_busy_at.load(Ordering::SeqCst) {
        return axum::Json(json!({"errcode": -1, "errmsg": "system busy"})).into_response();
    }
    if query.get("key").map(String::as_str) != Some(ROBOT_KEY) {
        return (StatusCode::OK, axum::Json(json!({"errcode": 93000, "errmsg": "invalid webhook url"})))
            .into_response();
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else { return st.violation("robot", "body is not JSON".into()) };
    match v["msgtype"].as_str() {
        Some("markdown") => {
            let Some(content) = v["markdown"]["content"].as_str() else {
                return st.violation("robot", "markdown.content missing".into());
            };
            if content.len() > 4096 {
                return st.violation("robot", format!("markdown.content is {} bytes (> 4096)", content.len()));
            }
        }
        Some("text") => {
            let Some(content) = v["text"]["content"].as_str() else {
                return st.violation("robot", "text.content missing".into());
            };
            if content.len() > 2048 {
                return st.violation("robot", "text.content over 2048 bytes".into());
            }
        }
        other => return st.violation("robot", format!("unexpected msgtype {other:?}")),
    }
    record(&st, "robot", &h, query, v);
    axum::Json(json!({"errcode": 0, "errmsg": "ok"})).into_response()
}

// ---- WeChat Work app: gettoken (path/91039) and message/send (path/90236) ----

async fn gettoken(State(st): State<Arc<FakeState>>, RawQuery(q): RawQuery) -> Response {
    st.gettoken_calls.fetch_add(1, Ordering::SeqCst);
    let query = parse_query(&q.unwrap_or_default());
    if query.get("corpid").map(String::as_str) != Some(CORP_ID)
        || query.get("corpsecret").map(String::as_str) != Some(CORP_SECRET)
    {
        return axum::Json(json!({"errcode": 40013, "errmsg": "invalid corpid or secret"})).into_response();
    }
    let n = st.tokens_issued.fetch_add(1, Ordering::SeqCst) + 1;
    let token = format!("token-{n}");
    *st.valid_token.lock() = Some(token.clone());
    let ttl = match st.token_ttl_s.load(Ordering::SeqCst) {
        0 => 7200,
        t => t,
    };
    axum::Json(json!({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": ttl})).into_response()
}

async fn app_send(State(st): State<Arc<FakeState>>, RawQuery(q): RawQuery, h: HeaderMap, body: Bytes) -> Response {
    let query = parse_query(&q.unwrap_or_default());
    let token = query.get("access_token").cloned().unwrap_or_default();
    let valid = st.valid_token.lock().clone();
    if valid.as_deref() != Some(token.as_str()) {
        // The documented answer for an expired token.
        return axum::Json(json!({"errcode": 42001, "errmsg": "access_token expired"})).into_response();
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else { return st.violation("app", "body is not JSON".into()) };
    if v["agentid"].as_i64() != Some(AGENT_ID) {
        return st.violation("app", format!("agentid {:?}", v["agentid"]));
    }
    if v["msgtype"] != "markdown" {
        return st.violation("app", format!("msgtype {:?}", v["msgtype"]));
    }
    if v["touser"].as_str().is_none() && v["toparty"].as_str().is_none() {
        return st.violation("app", "neither touser nor toparty".into());
    }
    match v["markdown"]["content"].as_str() {
        Some(c) if c.len() <= 2048 => {}
        other => return st.violation("app", format!("markdown.content bad: {:?}", other.map(str::len))),
    }
    record(&st, "app", &h, query, v);
    axum::Json(json!({"errcode": 0, "errmsg": "ok", "invaliduser": "", "msgid": "msg-1"})).into_response()
}

// ---- Aliyun SendSms with the RPC signature (help.aliyun.com/document_detail/315526) ----

/// The document's recipe: encode as application/x-www-form-urlencoded (Java's URLEncoder),
/// then `+` → `%20`, `*` → `%2A`, `%7E` → `~`.
fn ali_encode(s: &str) -> String {
    let mut form = String::new();
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => form.push(b as char),
            b' ' => form.push('+'),
            _ => form.push_str(&format!("%{b:02X}")),
        }
    }
    form.replace('+', "%20").replace('*', "%2A").replace("%7E", "~")
}

async fn aliyun(State(st): State<Arc<FakeState>>, RawQuery(q): RawQuery, h: HeaderMap) -> Response {
    let mut p = parse_query(&q.unwrap_or_default());
    let Some(sig) = p.remove("Signature") else { return st.violation("aliyun", "no Signature".into()) };
    for (k, want) in [
        ("Action", Some("SendSms")),
        ("Version", Some("2017-05-25")),
        ("SignatureMethod", Some("HMAC-SHA1")),
        ("SignatureVersion", Some("1.0")),
        ("AccessKeyId", Some(ALI_ID)),
        ("Format", Some("JSON")),
        ("SignatureNonce", None),
        ("Timestamp", None),
        ("PhoneNumbers", None),
        ("SignName", None),
        ("TemplateCode", None),
        ("TemplateParam", None),
    ] {
        match (p.get(k), want) {
            (None, _) => return st.violation("aliyun", format!("{k} missing")),
            (Some(v), Some(w)) if v != w => return st.violation("aliyun", format!("{k}={v}, expected {w}")),
            _ => {}
        }
    }
    if !st.nonces.lock().insert(p["SignatureNonce"].clone()) {
        return st.violation("aliyun", "SignatureNonce reused".into());
    }
    let ts = &p["Timestamp"];
    match chrono::NaiveDateTime::parse_from_str(ts, "%Y-%m-%dT%H:%M:%SZ") {
        Ok(t) if (chrono::Utc::now().naive_utc() - t).num_minutes().abs() <= 15 => {}
        _ => return st.violation("aliyun", format!("Timestamp {ts:?} not ISO 8601 UTC within 15 minutes")),
    }
    let canonical: Vec<String> = p.iter().map(|(k, v)| format!("{}={}", ali_encode(k), ali_encode(v))).collect();
    let to_sign = format!("GET&{}&{}", ali_encode("/"), ali_encode(&canonical.join("&")));
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(format!("{ALI_SECRET}&").as_bytes()).unwrap();
    mac.update(to_sign.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    if expected != sig {
        st.violations.lock().push(format!("aliyun: signature {sig} != {expected}"));
        let answer = json!({"Code": "SignatureDoesNotMatch", "Message": "bad signature"});
        return (StatusCode::BAD_REQUEST, axum::Json(answer)).into_response();
    }
    let Ok(params) = serde_json::from_str::<BTreeMap<String, String>>(&p["TemplateParam"]) else {
        return st.violation("aliyun", "TemplateParam is not a JSON object of strings".into());
    };
    let max = st.ali_max_chars.load(Ordering::SeqCst);
    for (k, v) in &params {
        if v.chars().count() > max {
            return st.violation("aliyun", format!("TemplateParam.{k} has {} chars (> {max})", v.chars().count()));
        }
    }
    record(&st, "aliyun", &h, p, json!(params));
    axum::Json(json!({"Code": "OK", "Message": "OK", "BizId": "900619746936498440^0", "RequestId": "F655A8D5"}))
        .into_response()
}

// ---- Tencent Cloud SendSms with TC3-HMAC-SHA256 (cloud.tencent.com/document/api/382/52072) ----

fn hmac256(key: &[u8], msg: &str) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(msg.as_bytes());
    m.finalize().into_bytes().to_vec()
}

async fn tencent(State(st): State<Arc<FakeState>>, h: HeaderMap, body: Bytes) -> Response {
    let hv = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    if hv("x-tc-action") != "SendSms" || hv("x-tc-version") != "2021-01-11" {
        return st.violation("tencent", format!("action/version {:?} {:?}", hv("x-tc-action"), hv("x-tc-version")));
    }
    let Ok(ts) = hv("x-tc-timestamp").parse::<i64>() else { return st.violation("tencent", "X-TC-Timestamp".into()) };
    if (chrono::Utc::now().timestamp() - ts).abs() > 300 {
        return st.violation("tencent", "timestamp more than 5 minutes off".into());
    }
    let auth = hv("authorization");
    let Some(rest) = auth.strip_prefix("TC3-HMAC-SHA256 ") else {
        return st.violation("tencent", format!("auth {auth}"));
    };
    let fields: HashMap<&str, &str> = rest.split(", ").filter_map(|kv| kv.split_once('=')).collect();
    let credential = fields.get("Credential").copied().unwrap_or("");
    let signed_headers = fields.get("SignedHeaders").copied().unwrap_or("");
    let signature = fields.get("Signature").copied().unwrap_or("");
    let date = chrono::DateTime::from_timestamp(ts, 0).unwrap().format("%Y-%m-%d").to_string();
    if credential != format!("{TC_ID}/{date}/sms/tc3_request") {
        return st.violation("tencent", format!("Credential {credential}"));
    }
    // Canonical headers from what actually arrived, in SignedHeaders order, values lowercased.
    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        canonical_headers.push_str(&format!("{name}:{}\n", hv(name).trim().to_lowercase()));
    }
    let canonical = format!("POST\n/\n\n{canonical_headers}\n{signed_headers}\n{}", hex::encode(Sha256::digest(&body)));
    let to_sign =
        format!("TC3-HMAC-SHA256\n{ts}\n{date}/sms/tc3_request\n{}", hex::encode(Sha256::digest(canonical.as_bytes())));
    let k = hmac256(&hmac256(&hmac256(format!("TC3{TC_KEY}").as_bytes(), &date), "sms"), "tc3_request");
    let expected = hex::encode(hmac256(&k, &to_sign));
    if !signed_headers.contains("host") || !signed_headers.contains("content-type") {
        return st.violation("tencent", format!("SignedHeaders {signed_headers}"));
    }
    if expected != signature {
        st.violations.lock().push(format!("tencent: signature {signature} != {expected}"));
        return axum::Json(json!({"Response": {"Error": {"Code": "AuthFailure.SignatureFailure", "Message": "bad"}}}))
            .into_response();
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else { return st.violation("tencent", "body not JSON".into()) };
    if v["SmsSdkAppId"] != TC_APP || v["SignName"].as_str().is_none() || v["TemplateId"].as_str().is_none() {
        return st.violation("tencent", format!("body fields {v}"));
    }
    let max = st.tc_max_chars.load(Ordering::SeqCst);
    for p in v["TemplateParamSet"].as_array().cloned().unwrap_or_default() {
        let n = p.as_str().map(|s| s.chars().count()).unwrap_or(usize::MAX);
        if n > max {
            return st.violation("tencent", format!("template parameter {p} has {n} chars (> {max})"));
        }
    }
    let phones = v["PhoneNumberSet"].as_array().cloned().unwrap_or_default();
    if phones.is_empty() || phones.iter().any(|p| !p.as_str().unwrap_or("").starts_with('+')) {
        return st.violation("tencent", format!("PhoneNumberSet {phones:?} not E.164"));
    }
    let set: Vec<Value> = phones
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"SerialNo": format!("2028:{i}"), "PhoneNumber": p, "Fee": 1, "Code": "Ok", "Message": "send success"}))
        .collect();
    record(&st, "tencent", &h, BTreeMap::new(), v);
    axum::Json(json!({"Response": {"SendStatusSet": set, "RequestId": "a0aabda6"}})).into_response()
}

// ---- Alertmanager-style webhook receiver and an HTTP SMS gateway ----

async fn webhook(State(st): State<Arc<FakeState>>, h: HeaderMap, body: Bytes) -> Response {
    let delay = st.webhook_delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    match st.webhook_broken.load(Ordering::SeqCst) {
        1 => return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response(),
        2 => return (StatusCode::BAD_REQUEST, "no").into_response(),
        _ => {}
    }
    if st.webhook_failures.load(Ordering::SeqCst) > 0 {
        st.webhook_failures.fetch_sub(1, Ordering::SeqCst);
        return (StatusCode::INTERNAL_SERVER_ERROR, "try later").into_response();
    }
    if h.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {HOOK_TOKEN}")) {
        return st.violation("hook", "missing or wrong bearer token".into());
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else { return st.violation("hook", "body not JSON".into()) };
    record(&st, "hook", &h, BTreeMap::new(), v);
    StatusCode::OK.into_response()
}

async fn http_sms(State(st): State<Arc<FakeState>>, h: HeaderMap, body: Bytes) -> Response {
    if h.get("x-gateway-token").and_then(|v| v.to_str().ok()) != Some(SMS_GATEWAY_TOKEN) {
        return st.violation("sms", "missing gateway token".into());
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return st.violation("sms", format!("body not JSON: {}", String::from_utf8_lossy(&body)));
    };
    record(&st, "sms", &h, BTreeMap::new(), v);
    axum::Json(json!({"ok": true})).into_response()
}
