//! The shipper against a real local HTTP receiver: an outage of several intervals loses
//! nothing and keeps order, server errors are retried, 4xx batches are dropped and counted,
//! a restart replays what was buffered, and TLS with a private CA plus a bearer token works.

mod common;

use common::{Receiver, free_port, metric, series_values, test_config, wait_for};
use std::net::TcpListener;
use std::sync::Arc;

/// `tingzhen_agent_collections_total` as pushed: collection N carries the value N, so the
/// values received must be exactly 1, 2, 3, … in arrival order — no gap, no reordering.
fn assert_contiguous(r: &Receiver) -> usize {
    let vals = r.with(|s| series_values(&s.writes, "tingzhen_agent_collections_total"));
    let got: Vec<u64> = vals.iter().map(|(_, v)| *v as u64).collect();
    let want: Vec<u64> = (1..=got.len() as u64).collect();
    assert_eq!(got, want, "collections arrived with a gap or out of order");
    let ts: Vec<i64> = vals.iter().map(|(t, _)| *t).collect();
    assert!(ts.windows(2).all(|w| w[0] < w[1]), "timestamps went backwards: {ts:?}");
    // Every collection carried host metrics too, with the same timestamps.
    let load: Vec<i64> = r.with(|s| series_values(&s.writes, "node_load1")).iter().map(|(t, _)| *t).collect();
    assert_eq!(load, ts);
    got.len()
}

#[test]
fn outage_then_recovery_loses_nothing_and_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let agent = tingzhen_agent::spawn(test_config(format!("http://127.0.0.1:{port}"), dir.path())).unwrap();

    // The collector is down (connection refused) for several intervals.
    wait_for("5 collections during the outage", || {
        metric(&agent.metrics_text(), "tingzhen_agent_collections_total") >= 5.0
    });
    let text = agent.metrics_text();
    assert!(metric(&text, "tingzhen_agent_send_failures_total") >= 1.0);
    assert!(metric(&text, "tingzhen_agent_buffer_samples") > 0.0, "outage data must wait on disk");
    assert!(metric(&text, "tingzhen_agent_buffer_bytes") > 0.0);
    assert_eq!(metric(&text, "tingzhen_agent_samples_sent_total"), 0.0);

    // It comes back on the same port.
    let mut listener = None;
    wait_for("the port to be bindable", || {
        listener = TcpListener::bind(("127.0.0.1", port)).ok();
        listener.is_some()
    });
    let r = Receiver::start(listener.unwrap(), None);
    let outage = metric(&agent.metrics_text(), "tingzhen_agent_collections_total") as usize;
    wait_for("the backlog and three live collections", || {
        r.with(|s| series_values(&s.writes, "tingzhen_agent_collections_total").len()) >= outage + 3
    });
    wait_for("a heartbeat once the collector is back", || r.with(|s| !s.heartbeats.is_empty()));
    agent.shutdown();
    let n = assert_contiguous(&r);
    assert!(n >= outage + 3);
    let hb = r.with(|s| s.heartbeats.clone());
    let hb: tingzhen_core::inventory::Heartbeat = serde_json::from_value(hb[0].clone()).unwrap();
    assert_eq!(hb.host, "test-host");
    assert_eq!(hb.interval_ms, 1000);
    hb.validate().unwrap();
    // Pushed series carry the static labels and the job/instance a scrape would add.
    let w = r.with(|s| s.writes[0][0].labels.clone());
    assert_eq!(w.get("host"), Some("test-host"));
    assert_eq!(w.get("job"), Some("tingzhen-agent"));
    assert_eq!(w.get("instance"), Some("test-host"));
}

#[test]
fn server_errors_are_retried_and_client_errors_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let r = Receiver::start(TcpListener::bind("127.0.0.1:0").unwrap(), None);
    r.with(|s| s.fail_next = 3);
    let agent = tingzhen_agent::spawn(test_config(format!("http://{}", r.addr), dir.path())).unwrap();
    wait_for("three collections accepted after 503s", || {
        r.with(|s| series_values(&s.writes, "tingzhen_agent_collections_total").len()) >= 3
    });
    // 503 is retried: the first collection is the first one accepted.
    assert_contiguous(&r);
    assert!(metric(&agent.metrics_text(), "tingzhen_agent_send_failures_total") >= 3.0);
    assert_eq!(metric(&agent.metrics_text(), "tingzhen_agent_batches_dropped_total"), 0.0);

    // Now every write is refused with 400: each batch is tried once, dropped and counted.
    r.with(|s| s.write_status = 400);
    wait_for("three batches dropped", || metric(&agent.metrics_text(), "tingzhen_agent_batches_dropped_total") >= 3.0);
    let accepted = r.with(|s| {
        s.write_status = 204;
        s.writes.len()
    });
    let refused = r.with(|s| s.refused_writes) - 3;
    wait_for("every refusal counted", || {
        metric(&agent.metrics_text(), "tingzhen_agent_batches_dropped_total") == refused as f64
    });
    wait_for("data accepted again", || r.with(|s| s.writes.len()) > accepted);
    let text = agent.metrics_text();
    assert!(metric(&text, "tingzhen_agent_samples_rejected_total") > 0.0);
    agent.shutdown();
    // Collections arrive in order with exactly the dropped ones missing: none was retried.
    let got: Vec<u64> =
        r.with(|s| series_values(&s.writes, "tingzhen_agent_collections_total")).iter().map(|v| v.1 as u64).collect();
    assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
    let missing = *got.last().unwrap() as usize - got.len();
    assert_eq!(missing, refused, "each refused batch is dropped once, never resent: {got:?}");
    // Nothing rejected was kept for a retry.
    let buf = tingzhen_core::spool::DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    assert!(buf.is_empty(), "rejected batches must not be kept");
}

#[test]
fn restart_replays_the_buffer_before_new_data() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let first = tingzhen_agent::spawn(test_config(url.clone(), dir.path())).unwrap();
    wait_for("3 collections while down", || metric(&first.metrics_text(), "tingzhen_agent_collections_total") >= 3.0);
    first.shutdown();

    let r = Receiver::start(TcpListener::bind(("127.0.0.1", port)).unwrap(), None);
    let second = tingzhen_agent::spawn(test_config(url, dir.path())).unwrap();
    wait_for("2 live collections after the replay", || {
        r.with(|s| {
            series_values(&s.writes, "tingzhen_agent_collections_total").iter().filter(|(_, v)| *v >= 1.0).count()
        }) >= 5
            && r.with(|s| {
                series_values(&s.writes, "tingzhen_agent_collections_total").last().is_some_and(|(_, v)| *v >= 2.0)
            })
    });
    second.shutdown();
    let vals = r.with(|s| series_values(&s.writes, "tingzhen_agent_collections_total"));
    // First the first run's collections 1..=k from disk, then the second run's 1, 2, ….
    let restart = vals.windows(2).position(|w| w[1].1 < w[0].1).expect("second run's counter restarts") + 1;
    let (old, new) = vals.split_at(restart);
    assert!(old.len() >= 3);
    assert_eq!(old.iter().map(|v| v.1 as u64).collect::<Vec<_>>(), (1..=old.len() as u64).collect::<Vec<_>>());
    assert_eq!(new.iter().map(|v| v.1 as u64).collect::<Vec<_>>(), (1..=new.len() as u64).collect::<Vec<_>>());
    assert!(vals.windows(2).all(|w| w[0].0 < w[1].0), "timestamps must only go forward");
}

#[test]
fn tls_with_private_ca_and_bearer_token() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "tingzhen agent test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca_cert.pem()).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf_cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    let r = Receiver::start(TcpListener::bind("127.0.0.1:0").unwrap(), Some(Arc::new(tls)));
    r.with(|s| s.token = Some("tz_agent_secret".into()));
    let url = format!("https://localhost:{}", r.addr.port());

    // Without the CA the server is not trusted: nothing is sent, failures are counted.
    let untrusting = tingzhen_agent::spawn(test_config(url.clone(), &dir.path().join("b1"))).unwrap();
    wait_for("a failed TLS attempt", || {
        metric(&untrusting.metrics_text(), "tingzhen_agent_send_failures_total") >= 1.0
    });
    untrusting.shutdown();
    assert_eq!(r.with(|s| s.writes.len() + s.unauthorized), 0);

    // With the CA but a wrong token: the collector answers 401, which is a client error.
    let mut c = test_config(url.clone(), &dir.path().join("b2"));
    c.ca_file = Some(ca_path.clone());
    c.token = Some("wrong".into());
    let wrong = tingzhen_agent::spawn(c).unwrap();
    wait_for("a 401", || r.with(|s| s.unauthorized) >= 1);
    wrong.shutdown();
    assert_eq!(r.with(|s| s.writes.len()), 0);

    // With the CA and the right token, data and heartbeats arrive.
    let mut c = test_config(url, &dir.path().join("b3"));
    c.ca_file = Some(ca_path);
    c.token = Some("tz_agent_secret".into());
    let good = tingzhen_agent::spawn(c).unwrap();
    wait_for("writes and a heartbeat over TLS", || r.with(|s| !s.writes.is_empty() && !s.heartbeats.is_empty()));
    good.shutdown();
    assert_contiguous(&r);
}
