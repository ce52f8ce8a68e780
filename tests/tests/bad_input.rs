//! Bad input: malformed protobuf, bad snappy, bad line protocol, bodies over `max_body_bytes`,
//! invalid labels, one bad series in an otherwise good batch, bad queries. Each must get a
//! clear 4xx JSON error naming the problem, store nothing from the rejected request, and leave
//! the server serving.

use prost::Message;
use tingzhen_core::remote_write::{Label, Sample as PbSample, TimeSeries as PbSeries, WriteRequest};
use tingzhen_tests::{Collector, CollectorOpts, Resp, now_ms};

const MAX_BODY: usize = 64 * 1024;

fn pb_series(name: &str, extra: &[(&str, &str)], samples: &[(i64, f64)]) -> PbSeries {
    let mut labels = vec![Label { name: "__name__".into(), value: name.into() }];
    labels.extend(extra.iter().map(|(k, v)| Label { name: (*k).into(), value: (*v).into() }));
    PbSeries { labels, samples: samples.iter().map(|&(t, v)| PbSample { value: v, timestamp: t }).collect() }
}

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).unwrap()
}

fn request(series: Vec<PbSeries>) -> Vec<u8> {
    snappy(&WriteRequest { timeseries: series, metadata: vec![] }.encode_to_vec())
}

/// A case: what is sent, and words of which at least one must appear in the error.
struct Case {
    name: &'static str,
    path: String,
    content_type: &'static str,
    body: Vec<u8>,
    status: &'static [u16],
    mentions: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    let t = now_ms();
    let good = |case: &str| pb_series(&format!("tz_bad_{case}_good"), &[("host", "a")], &[(t, 1.0)]);
    let rw = |name, body, mentions| Case {
        name,
        path: "/api/v1/write".into(),
        content_type: "application/x-protobuf",
        body,
        status: &[400],
        mentions,
    };
    // Random label values so snappy cannot shrink the body under the limit.
    let mut rng = tingzhen_tests::synth::Rng::new(1);
    let mut huge = Vec::new();
    for i in 0..4000 {
        let pad = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
        huge.push(pb_series("tz_bad_huge_good", &[("i", &i.to_string()), ("pad", &pad)], &[(t, 1.0)]));
    }
    let raw_good = WriteRequest { timeseries: vec![good("snappy")], metadata: vec![] }.encode_to_vec();
    let lp_huge: String = (0..3000).map(|i| format!("tz_bad_lphuge,host=h{i} value={i} {t}\n")).collect();
    vec![
        rw("malformed protobuf", snappy(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02]), &["protobuf"]),
        rw("bad snappy", raw_good, &["snappy"]),
        rw(
            "invalid label name",
            request(vec![good("label"), pb_series("tz_bad_label_bad", &[("bad-label", "x")], &[(t, 1.0)])]),
            &["bad-label"],
        ),
        rw(
            "one bad series in a batch",
            request(vec![
                good("batch"),
                pb_series("tz_bad_batch_good2", &[("host", "b")], &[(t, 2.0)]),
                pb_series("tz_bad_batch_good3", &[("host", "c")], &[(t, 3.0)]),
                pb_series("0bad_metric", &[("host", "d")], &[(t, 4.0)]),
            ]),
            &["0bad_metric", "#3"],
        ),
        rw(
            "no metric name",
            request(vec![good("noname"), PbSeries { labels: vec![Label { name: "host".into(), value: "x".into() }], samples: vec![PbSample { value: 1.0, timestamp: t }] }]),
            &["__name__", "metric name"],
        ),
        rw(
            "duplicate label",
            request(vec![good("dup"), pb_series("tz_bad_dup_bad", &[("host", "a"), ("host", "b")], &[(t, 1.0)])]),
            &["host"],
        ),
        rw(
            "samples out of order",
            request(vec![good("order"), pb_series("tz_bad_order_bad", &[], &[(t, 1.0), (t - 1000, 2.0)])]),
            &["order"],
        ),
        Case { status: &[413, 400], ..rw("body over max_body_bytes", request(huge), &["max_body_bytes", "too large", "65536", "limit"]) },
        Case {
            name: "bad line protocol",
            path: "/write?precision=ms".into(),
            content_type: "text/plain",
            body: format!("tz_bad_lp,host=a value=1 {t}\ntz_bad_lp,host=b value=\n").into_bytes(),
            status: &[400],
            mentions: &["line 2"],
        },
        Case {
            name: "bad line protocol (v2)",
            path: "/api/v2/write?precision=ms".into(),
            content_type: "text/plain",
            body: format!("tz_bad_lp2,host=a value=1 {t}\ntz_bad_lp2,host=b value=abc {t}\n").into_bytes(),
            status: &[400],
            mentions: &["line 2"],
        },
        Case {
            name: "unknown precision",
            path: "/write?precision=weeks".into(),
            content_type: "text/plain",
            body: format!("tz_bad_prec,host=a value=1 {t}\n").into_bytes(),
            status: &[400],
            mentions: &["precision"],
        },
        Case {
            name: "line protocol not UTF-8",
            path: "/write?precision=ms".into(),
            content_type: "text/plain",
            body: [format!("tz_bad_utf,host=a value=1 {t}\n").as_bytes(), b"tz_bad_utf,host=\xff\xfe value=1\n"].concat(),
            status: &[400],
            mentions: &["utf-8", "utf8"],
        },
        Case {
            name: "line protocol over max_body_bytes",
            path: "/write?precision=ms".into(),
            content_type: "text/plain",
            body: lp_huge.into_bytes(),
            status: &[413, 400],
            mentions: &["max_body_bytes", "too large", "65536", "limit"],
        },
        Case {
            name: "heartbeat with a bad IP",
            path: "/api/v1/agents/heartbeat".into(),
            content_type: "application/json",
            body: br#"{"host":"tz-bad-host","hostname":"h","ips":["10.0.0.300"],"os":"linux","cpus":1,"memory_bytes":1,"agent_version":"0","interval_ms":1000,"boot_time":0}"#.to_vec(),
            status: &[400, 422],
            mentions: &["ips"],
        },
        Case {
            name: "heartbeat missing a field",
            path: "/api/v1/agents/heartbeat".into(),
            content_type: "application/json",
            body: br#"{"host":"tz-bad-host2","hostname":"h","os":"linux","memory_bytes":1,"agent_version":"0","interval_ms":1000,"boot_time":0}"#.to_vec(),
            status: &[400, 422],
            mentions: &["cpus"],
        },
    ]
}

fn check_error(name: &str, r: &Resp, status: &[u16], mentions: &[&str]) -> Option<String> {
    if !status.contains(&r.status) {
        return Some(format!("{name}: status {} (want {status:?}): {}", r.status, r.body));
    }
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&r.body) else {
        return Some(format!("{name}: error body is not JSON: {}", r.body));
    };
    let msg = v["error"].as_str().unwrap_or_default().to_lowercase();
    if v["status"] != "error" || v["errorType"] != "bad_data" || msg.is_empty() {
        return Some(format!("{name}: want {{status: error, errorType: bad_data, error: …}}, got {}", r.body));
    }
    if !mentions.iter().any(|m| msg.contains(&m.to_lowercase())) {
        return Some(format!("{name}: error {msg:?} names none of {mentions:?}"));
    }
    None
}

#[test]
fn bad_input_is_refused_clearly_and_nothing_is_stored() {
    let c = Collector::start_with(CollectorOpts { max_body_bytes: Some(MAX_BODY), ..Default::default() });
    let token = c.create_token("bad-input", "ingest,query", None);
    let mut failures = Vec::new();
    for case in cases() {
        let headers: Vec<(&str, &str)> = if case.content_type == "application/x-protobuf" {
            vec![
                ("Content-Type", case.content_type),
                ("Content-Encoding", "snappy"),
                ("X-Prometheus-Remote-Write-Version", "0.1.0"),
            ]
        } else {
            vec![("Content-Type", case.content_type)]
        };
        // A fresh client per case: the server may close a connection after refusing an
        // oversized body, and a pooled connection reused after that would fail on our side.
        let http = tingzhen_tests::http::Http::new();
        match http.post(&c.url(&case.path), Some(&token), &headers, &case.body) {
            Ok(r) => failures.extend(check_error(case.name, &r, case.status, case.mentions)),
            // An oversized body may be cut off before the answer is read; the server must
            // still be alive, which the checks below prove.
            Err(e) if case.status.contains(&413) => eprintln!("{}: connection ended early: {e}", case.name),
            Err(e) => failures.push(format!("{}: no HTTP answer: {e}", case.name)),
        }
        let r = tingzhen_tests::http::Http::new().get(&c.url("/healthz"), None, &[]).expect("server still answers");
        assert_eq!(r.status, 200, "after {}: /healthz {}", case.name, r.body);
    }

    // Nothing of any rejected request is queryable or indexed.
    let client = c.client(&token);
    let q = client.query(r#"{__name__=~"tz_bad.*|0bad.*"}"#, now_ms());
    if !q.is_empty() {
        failures.push(format!("series from rejected requests are queryable: {q:?}"));
    }
    let names = client.label_values("__name__", &[], now_ms() - 3_600_000, now_ms() + 60_000);
    let leaked: Vec<&String> = names.iter().filter(|n| n.starts_with("tz_bad")).collect();
    if !leaked.is_empty() {
        failures.push(format!("rejected series reached the label index: {leaked:?}"));
    }
    let hosts = c.http().get(&c.url("/api/v1/inventory/hosts"), Some(&token), &[]).unwrap();
    if hosts.body.contains("tz-bad-host") {
        failures.push(format!("a rejected heartbeat reached the inventory: {}", hosts.body));
    }

    // Bad queries are bad_data too.
    for (path, params, mentions) in [
        ("/api/v1/query", vec![("query", "sum(rate(x[5m])")], &["parse", "unclosed", "expected", "syntax"][..]),
        ("/api/v1/query", vec![("query", "up"), ("time", "yesterday")], &["time"]),
        (
            "/api/v1/query_range",
            vec![("query", "up"), ("start", "100"), ("end", "50"), ("step", "15")],
            &["end", "start"],
        ),
        ("/api/v1/query_range", vec![("query", "up"), ("start", "0"), ("end", "50"), ("step", "0")], &["step"]),
        ("/api/v1/series", vec![("match[]", "{")], &["match", "parse", "unexpected", "selector"]),
    ] {
        let r = client.call(path, &params);
        failures.extend(check_error(&format!("{path} {params:?}"), &r, &[400], mentions));
    }

    // Still serving: a good write after all that is stored and readable.
    let t = now_ms();
    let good = tingzhen_core::TimeSeries::new(
        tingzhen_core::Labels::from_pairs([("__name__", "tz_after_bad"), ("host", "a")]),
        vec![tingzhen_core::Sample::new(t, 42.0)],
    );
    c.write_ok(&token, &[good]);
    let r = client.query("tz_after_bad", t + 1);
    assert_eq!(r.vector().values().map(|v| v.1).collect::<Vec<_>>(), vec![42.0], "good write after bad ones");
    assert!(failures.is_empty(), "{} problems:\n{}", failures.len(), failures.join("\n"));
}
