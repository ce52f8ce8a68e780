//! Password-reset verification codes by SMS (`notify::verification::CodeSms`) against the same
//! local fake providers as the notification SMS tests, which recompute Aliyun's RPC HMAC-SHA1
//! and Tencent's TC3-HMAC-SHA256 signatures with their own code; plus a scripted stub for
//! provider errors, and the checks `CodeSms::new` makes on the caller's settings.

mod notify_common;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use notify_common::fake::{self, ALI_ID, ALI_SECRET, SMS_GATEWAY_TOKEN, TC_APP, TC_ID, TC_KEY};
use notify_common::*;
use parking_lot::Mutex;
use serde_json::json;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use tingzhen_alerting::notify::verification::CodeSms;
use tingzhen_alerting::notify::{Language, NotifyConfig, NotifyError, Receipt};

const CODE: &str = "482913";
const PROVIDER_KEY: &str = "identity.password_reset.sms_provider";
const TEMPLATE_KEY: &str = "identity.password_reset.sms_template";

/// All three providers at `base` (the gateway at `{base}/sms`), secrets in files under `dir`.
fn providers(base: &str, dir: &Path) -> String {
    let s = |n: &str, v: &str| secret(dir, n, v).file.unwrap();
    format!(
        r#"
[aliyun_sms]
access_key_id = {{ file = "{ali_id}" }}
access_key_secret = {{ file = "{ali_secret}" }}
sign_name = "某某医院"
template_code = "SMS_465123"
endpoint = "{base}"

[tencent_sms]
secret_id = {{ file = "{tc_id}" }}
secret_key = {{ file = "{tc_key}" }}
sdk_app_id = "{TC_APP}"
sign_name = "某某医院"
template_id = "1234567"
endpoint = "{base}"

[http_sms]
url = "{base}/sms"
body = '{{"mobile": {{{{json phone}}}}, "mobiles": {{{{json phones}}}}, "content": {{{{json text}}}}, "ref": {{{{json dedup_id}}}}}}'
auth_header = "X-Gateway-Token"
auth_secret = {{ file = "{gw}" }}
"#,
        ali_id = s("ali.id", ALI_ID),
        ali_secret = s("ali.secret", ALI_SECRET),
        tc_id = s("tc.id", TC_ID),
        tc_key = s("tc.key", TC_KEY),
        gw = s("gw.token", SMS_GATEWAY_TOKEN),
    )
}

fn code_sms(cfg: &NotifyConfig, provider: &str, template: &str) -> Arc<CodeSms> {
    Arc::new(CodeSms::new(cfg, provider, template).unwrap_or_else(|e| panic!("{provider}: {e}")))
}

/// `send_code` is blocking; run it on the blocking pool so the fake keeps answering.
async fn send(
    sms: &Arc<CodeSms>,
    phone: &str,
    code: &str,
    minutes: u32,
    lang: Language,
) -> Result<Receipt, NotifyError> {
    let (sms, phone, code) = (sms.clone(), phone.to_string(), code.to_string());
    tokio::task::spawn_blocking(move || sms.send_code(&phone, &code, minutes, lang)).await.unwrap()
}

fn is_hex32(v: &str) -> bool {
    v.len() == 32 && v.chars().all(|c| c.is_ascii_hexdigit())
}

fn build_error(cfg: &NotifyConfig, provider: &str, template: &str) -> String {
    match CodeSms::new(cfg, provider, template) {
        Ok(_) => panic!("{provider} with {template:?} was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn code_sms_can_be_shared_between_threads() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<CodeSms>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliyun_code_is_signed_and_uses_the_verification_template() {
    let fake = fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&providers(&fake.url(), dir.path()));
    let sms = code_sms(&cfg, "aliyun_sms", "SMS_900001");

    let receipt = send(&sms, "13800000000", CODE, 5, Language::ZhCn).await.unwrap();
    let again = send(&sms, "+8613900000000", "7305", 5, Language::En).await.unwrap();
    fake.state.assert_clean();
    assert_eq!(receipt, Receipt("BizId 900619746936498440^0".into()));
    assert!(!receipt.0.contains(CODE) && !again.0.contains("7305"));

    let ali = fake.state.of("aliyun");
    assert_eq!(ali.len(), 2, "each send signed with a fresh nonce (the fake rejects reuse)");
    let q = &ali[0].query;
    assert_eq!(q["PhoneNumbers"], "13800000000");
    assert_eq!(q["TemplateCode"], "SMS_900001", "the verification template, not the notification one");
    assert_eq!(q["TemplateParam"], r#"{"code":"482913"}"#);
    assert_eq!(ali[0].body, json!({ "code": CODE }));
    assert_eq!(q["SignName"], "某某医院");
    assert!(is_hex32(&q["OutId"]), "OutId {:?}", q["OutId"]);
    assert_eq!(ali[1].query["PhoneNumbers"], "8613900000000");
    assert_eq!(ali[1].query["TemplateParam"], r#"{"code":"7305"}"#);
    assert_ne!(ali[0].query["OutId"], ali[1].query["OutId"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tencent_code_is_tc3_signed_with_code_and_minutes() {
    let fake = fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&providers(&fake.url(), dir.path()));
    let sms = code_sms(&cfg, "tencent_sms", "2233445");

    let receipt = send(&sms, "13800000000", CODE, 5, Language::ZhCn).await.unwrap();
    fake.state.assert_clean();
    assert_eq!(receipt, Receipt("SerialNo 2028:0".into()));

    let tc = fake.state.of("tencent");
    assert_eq!(tc.len(), 1);
    let b = &tc[0].body;
    assert_eq!(b["PhoneNumberSet"], json!(["+8613800000000"]));
    assert_eq!(b["TemplateId"], "2233445", "the verification template, not the notification one");
    assert_eq!(b["TemplateParamSet"], json!([CODE, "5"]));
    assert_eq!(b["SmsSdkAppId"], TC_APP);
    assert_eq!(b["SignName"], "某某医院");
    assert!(b["SessionContext"].as_str().is_some_and(is_hex32), "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_gateway_gets_the_rendered_text_in_both_languages() {
    let fake = fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&providers(&fake.url(), dir.path()));
    let builtin = code_sms(&cfg, "http_sms", "");
    let custom = code_sms(&cfg, "http_sms", "【某某医院】验证码 {{code}}，{{minutes}} 分钟内有效。");

    let r = send(&builtin, "13800000000", CODE, 5, Language::ZhCn).await.unwrap();
    send(&builtin, "13900000000", "550071", 10, Language::En).await.unwrap();
    send(&custom, "+85261234567", "913", 3, Language::En).await.unwrap();
    fake.state.assert_clean();
    assert!(!r.0.contains(CODE), "{r:?}");

    let gw = fake.state.of("sms");
    assert_eq!(gw.len(), 3);
    let zh = &gw[0].body;
    assert_eq!(zh["content"], "您的听诊密码重置验证码为 482913，5 分钟内有效。如非本人操作，请忽略本短信。");
    assert_eq!(zh["mobile"], "13800000000");
    assert_eq!(zh["mobiles"], json!(["13800000000"]));
    assert!(zh["ref"].as_str().is_some_and(is_hex32), "{zh}");
    assert_eq!(gw[0].headers["x-gateway-token"], SMS_GATEWAY_TOKEN);
    let en = &gw[1].body;
    assert_eq!(
        en["content"],
        "Your tingzhen password reset code is 550071, valid for 10 minutes. If you did not ask for it, ignore this message."
    );
    assert_eq!(en["mobiles"], json!(["13900000000"]));
    assert_ne!(zh["ref"], en["ref"]);
    assert_eq!(
        gw[2].body["content"], "【某某医院】验证码 913，3 分钟内有效。",
        "a configured text serves every language"
    );
    assert_eq!(gw[2].body["mobile"], "+85261234567");
}

/// The fake's signature checks also guard the code path: signing with the wrong secrets is
/// refused, and the refusal is a permanent error that does not repeat the code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secrets_fail_the_signature_checks_for_codes() {
    let fake = fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = providers(&fake.url(), dir.path());
    secret(dir.path(), "ali.secret", "not-the-secret");
    secret(dir.path(), "tc.key", "not-the-key");
    let cfg = config(&text);
    for (provider, template) in [("aliyun_sms", "SMS_900001"), ("tencent_sms", "2233445")] {
        let e = send(&code_sms(&cfg, provider, template), "13800000000", CODE, 5, Language::ZhCn).await.unwrap_err();
        assert!(e.is_permanent(), "{provider}: {e:?}");
        assert!(e.to_string().contains("SignatureDoesNotMatch") || e.to_string().contains("SignatureFailure"), "{e}");
        assert!(!e.to_string().contains(CODE), "{e}");
    }
    let v = fake.state.violations.lock().clone();
    assert!(v.iter().any(|m| m.starts_with("aliyun: signature")), "{v:?}");
    assert!(v.iter().any(|m| m.starts_with("tencent: signature")), "{v:?}");
    assert!(fake.state.of("aliyun").is_empty() && fake.state.of("tencent").is_empty());
}

#[test]
fn new_refuses_unknown_and_unconfigured_providers_and_empty_templates() {
    let dir = tempfile::tempdir().unwrap();
    let all = config(&providers("http://127.0.0.1:9", dir.path()));
    let http_only = config("[http_sms]\nurl = \"http://127.0.0.1:9/sms\"\nbody = '{{json text}}'\nmax_chars = 70");

    let e = build_error(&all, "pigeon_sms", "x");
    assert!(e.starts_with(&format!("{PROVIDER_KEY}: ")) && e.contains("pigeon_sms"), "{e}");
    let e = build_error(&all, "aliyun", "SMS_1");
    assert!(e.starts_with(&format!("{PROVIDER_KEY}: ")), "the notify channel's name is not a provider key: {e}");
    for provider in ["aliyun_sms", "tencent_sms"] {
        let e = build_error(&http_only, provider, "SMS_1");
        assert_eq!(e, format!("{PROVIDER_KEY}: {provider} is not configured in [alerting.notify]"));
    }
    let e = build_error(&NotifyConfig::default(), "http_sms", "");
    assert_eq!(e, format!("{PROVIDER_KEY}: http_sms is not configured in [alerting.notify]"));

    for provider in ["aliyun_sms", "tencent_sms"] {
        for empty in ["", "  "] {
            let e = build_error(&all, provider, empty);
            assert!(e.starts_with(&format!("{TEMPLATE_KEY}: {provider} needs ")), "{e}");
        }
    }
    // http_sms: the built-in texts, or a text that compiles, shows the code and fits. The
    // built-in English text is longer than 70 characters, but the cut keeps the code.
    CodeSms::new(&all, "http_sms", "").unwrap();
    CodeSms::new(&http_only, "http_sms", "").unwrap();
    CodeSms::new(&http_only, "http_sms", "  ").unwrap();
    let e = build_error(&all, "http_sms", "您的验证码已发送");
    assert!(e.starts_with(&format!("{TEMPLATE_KEY}: ")) && e.contains("{{code}}"), "{e}");
    let e = build_error(&all, "http_sms", "code {{#if code}}");
    assert!(e.starts_with(&format!("template {TEMPLATE_KEY}:")), "{e}");
    let long = format!("{}{{{{code}}}}", "x".repeat(70));
    let e = build_error(&http_only, "http_sms", &long);
    assert!(e.starts_with(&format!("{TEMPLATE_KEY}: ")) && e.contains("http_sms.max_chars (70)"), "{e}");
    // At 20 characters the cut would take the code out of the English text.
    let e = build_error(
        &config("[http_sms]\nurl = \"http://127.0.0.1:9/sms\"\nbody = 'x'\nmax_chars = 20"),
        "http_sms",
        "",
    );
    assert!(e.starts_with(&format!("{TEMPLATE_KEY}: ")) && e.contains("max_chars (20)"), "{e}");

    // A bad provider section is still reported under its own key.
    let broken = config(&providers("ftp://127.0.0.1:9", dir.path()));
    let e = build_error(&broken, "aliyun_sms", "SMS_1");
    assert!(e.starts_with("alerting.notify.aliyun_sms.endpoint: "), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_phone_or_code_is_refused_before_sending() {
    let fake = fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&providers(&fake.url(), dir.path()));
    let sms = code_sms(&cfg, "http_sms", "");
    for (phone, code) in [("138-0000-0000", CODE), ("", CODE), ("13800000000", ""), ("13800000000", "12 34")] {
        let e = send(&sms, phone, code, 5, Language::ZhCn).await.unwrap_err();
        assert!(e.is_permanent(), "{phone:?} {code:?}: {e:?}");
    }
    assert!(fake.state.received.lock().is_empty());
}

// ---- provider errors, from a stub that answers what the test scripts ----

#[derive(Default)]
struct Script {
    answers: Mutex<VecDeque<(u16, String)>>,
    requests: Mutex<Vec<(Method, String, String)>>,
}

async fn scripted(State(s): State<Arc<Script>>, method: Method, uri: Uri, body: Bytes) -> Response {
    let request = String::from_utf8_lossy(&body).into_owned();
    s.requests.lock().push((method, uri.to_string(), request.clone()));
    let (status, body) = s.answers.lock().pop_front().expect("an answer is scripted for every request");
    let status = StatusCode::from_u16(status).unwrap();
    // The gateway stub echoes the request, as some gateways do in their error pages.
    let body = body.replace("$REQUEST", &request);
    (status, [("content-type", "application/json")], body).into_response()
}

async fn stub() -> (String, Arc<Script>) {
    let script = Arc::new(Script::default());
    let app = Router::new().fallback(scripted).with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), script)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_errors_are_permanent_or_transient_like_the_notifiers() {
    let (base, script) = stub().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&providers(&base, dir.path()));
    let aliyun = code_sms(&cfg, "aliyun_sms", "SMS_900001");
    let tencent = code_sms(&cfg, "tencent_sms", "2233445");
    let http = code_sms(&cfg, "http_sms", "");

    let tc_error = |code: &str| json!({"Response": {"Error": {"Code": code, "Message": "m"}, "RequestId": "r"}});
    let tc_refused = json!({"Response": {"SendStatusSet": [{"SerialNo": "", "PhoneNumber": "+8613800000000",
        "Code": "InvalidParameterValue.IncorrectPhoneNumber", "Message": "m"}], "RequestId": "r"}});
    let cases: Vec<(&Arc<CodeSms>, u16, String, bool, &str)> = vec![
        (&aliyun, 200, json!({"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "m"}).to_string(), true, "isv.MOBILE"),
        (&aliyun, 400, json!({"Code": "isv.SMS_TEMPLATE_ILLEGAL", "Message": "m"}).to_string(), true, "TEMPLATE"),
        (&aliyun, 200, json!({"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "m"}).to_string(), false, "LIMIT"),
        (&aliyun, 503, "service unavailable".into(), false, "HTTP 503"),
        (&tencent, 200, tc_error("FailedOperation.TemplateIncorrectOrUnapproved").to_string(), true, "Template"),
        (&tencent, 200, tc_error("LimitExceeded.PhoneNumberDailyLimit").to_string(), false, "LimitExceeded"),
        (&tencent, 502, "bad gateway".into(), false, "HTTP 502"),
        (&tencent, 200, tc_refused.to_string(), true, "+86138****0000 InvalidParameterValue"),
        (&http, 400, "rejected: $REQUEST".into(), true, "HTTP 400"),
        (&http, 500, "internal error: $REQUEST".into(), false, "HTTP 500"),
    ];
    for (i, (sms, status, answer, permanent, shows)) in cases.into_iter().enumerate() {
        let answer_echoes = answer.contains("$REQUEST");
        script.answers.lock().push_back((status, answer));
        let e = send(sms, "13800000000", CODE, 5, Language::ZhCn).await.unwrap_err();
        assert_eq!(e.is_permanent(), permanent, "case {i} ({sms:?} {status}): {e:?}");
        let m = e.to_string();
        assert!(m.contains(shows), "case {i}: {m}");
        assert!(!m.contains(CODE), "case {i}: the error repeats the code: {m}");
        assert!(!m.contains("13800000000"), "case {i}: the error shows the whole phone number: {m}");
        if answer_echoes {
            assert!(m.contains("******") && m.contains("138****0000"), "case {i}: the echo is masked: {m}");
        }
    }
    // The gateway's echo did carry the code and the number; the error has them masked.
    let reqs = script.requests.lock().clone();
    assert_eq!(reqs.len(), 10);
    assert!(reqs[8].2.contains(CODE) && reqs[8].2.contains("13800000000"), "{:?}", reqs[8]);
    assert_eq!((reqs[0].0.clone(), reqs[4].0.clone(), reqs[8].1.as_str()), (Method::GET, Method::POST, "/sms"));

    // Nobody listening: a transient failure, retried by the caller if it wants.
    let closed = config(&providers(&format!("http://127.0.0.1:{}", free_port()), dir.path()));
    for (provider, template) in [("aliyun_sms", "SMS_1"), ("tencent_sms", "1"), ("http_sms", "")] {
        let e = send(&code_sms(&closed, provider, template), "13800000000", CODE, 5, Language::En).await.unwrap_err();
        assert!(!e.is_permanent() && !e.to_string().contains(CODE), "{provider}: {e:?}");
    }
}
