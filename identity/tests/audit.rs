//! The audit log's tamper evidence (edits made directly in the store, with the append-only
//! triggers dropped as a DBA could), its triggers, appends from many threads at once, and
//! syslog forwarding. Runs on SQLite, and on PostgreSQL with `TINGZHEN_TEST_DATABASE_URL`.

mod common;

use common::*;
use std::net::UdpSocket;
use std::time::Duration;
use tingzhen_core::db::DbError;
use tingzhen_core::params;
use tingzhen_identity::audit::{AuditEvent, Outcome, TamperKind};
use tingzhen_identity::config::SyslogConfig;
use tingzhen_identity::{Actor, IdentityConfig};

fn fill(e: &Env, n: usize) {
    for i in 0..n {
        e.id.record(&Actor::new("ops1", "10.1.2.3"), "config_change", Outcome::Success, format!("rule r{i} changed"))
            .unwrap();
        e.advance(Duration::from_secs(1));
    }
}

/// Moves record `from` to sequence number `to`, directly in the store.
fn renumber(e: &Env, from: i64, to: i64) {
    e.db.with_conn(|c| c.execute("UPDATE identity_audit SET seq = ?1 WHERE seq = ?2", &[to, from])).unwrap();
}

#[test]
fn the_table_refuses_update_and_delete() {
    let e = env();
    fill(&e, 3);
    let err = e.exec("UPDATE identity_audit SET detail = 'x' WHERE seq = 2").unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let err = e.exec("DELETE FROM identity_audit WHERE seq = 2").unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    if e.db.dialect() == tingzhen_core::db::Dialect::Postgres {
        // PostgreSQL empties a table without row triggers; TRUNCATE is refused on its own.
        let err = e.exec("TRUNCATE identity_audit").unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    assert!(e.id.audit_log().verify().unwrap().ok);
    assert_eq!(e.id.audit_log().verify().unwrap().records, 3);
}

#[test]
fn appends_from_many_threads_build_one_unbroken_chain() {
    // On PostgreSQL each thread takes its own pooled connection, so the appends really overlap;
    // without the table lock two of them read the same predecessor and collide on a sequence
    // number (or fork the chain).
    let e = env();
    let threads = 8;
    let per_thread = 25;
    std::thread::scope(|s| {
        for t in 0..threads {
            let id = &e.id;
            s.spawn(move || {
                for i in 0..per_thread {
                    id.record(
                        &Actor::new(format!("ops{t}"), "10.0.0.1"),
                        "config_change",
                        Outcome::Success,
                        format!("{i}"),
                    )
                    .unwrap();
                }
            });
        }
    });
    let report = e.id.audit_log().verify().unwrap();
    assert!(report.ok, "{:?}", report.problem);
    assert_eq!(report.records, threads * per_thread);
    let all =
        e.id.audit_log().query(&tingzhen_identity::audit::AuditQuery { limit: Some(10_000), ..Default::default() });
    let mut seqs: Vec<i64> = all.unwrap().iter().map(|r| r.seq).collect();
    seqs.sort();
    assert_eq!(seqs, (1..=threads * per_thread).collect::<Vec<_>>());
    for t in 0..threads {
        let q = tingzhen_identity::audit::AuditQuery { actor: Some(format!("ops{t}")), ..Default::default() };
        assert_eq!(e.id.audit_log().query(&q).unwrap().len() as i64, per_thread, "ops{t}");
    }
}

#[test]
fn verify_detects_an_edited_record() {
    let e = env();
    fill(&e, 6);
    assert!(e.id.audit_log().verify().unwrap().ok);
    e.drop_audit_triggers();
    e.exec("UPDATE identity_audit SET actor = 'someone-else' WHERE seq = 4").unwrap();
    let r = e.id.audit_log().verify().unwrap();
    let p = r.problem.unwrap();
    assert_eq!((p.seq, p.kind), (4, TamperKind::Modified), "{}", p.message);
}

#[test]
fn verify_detects_a_deleted_record_even_when_renumbered() {
    let e = env();
    fill(&e, 6);
    e.drop_audit_triggers();
    e.exec("DELETE FROM identity_audit WHERE seq = 3").unwrap();
    let p = e.id.audit_log().verify().unwrap().problem.unwrap();
    assert_eq!((p.seq, p.kind), (3, TamperKind::Missing), "{}", p.message);
    // Closing the gap does not help: record 4 (now 3) does not chain to record 2.
    for s in 4..=6 {
        renumber(&e, s, s - 1);
    }
    let p = e.id.audit_log().verify().unwrap().problem.unwrap();
    assert_eq!((p.seq, p.kind), (3, TamperKind::ChainBroken), "{}", p.message);
}

#[test]
fn verify_detects_deleted_trailing_records() {
    let e = env();
    fill(&e, 5);
    e.drop_audit_triggers();
    e.exec("DELETE FROM identity_audit WHERE seq >= 4").unwrap();
    let p = e.id.audit_log().verify().unwrap().problem.unwrap();
    assert_eq!(p.kind, TamperKind::Truncated, "{}", p.message);
}

#[test]
fn verify_detects_an_inserted_record() {
    let e = env();
    fill(&e, 6);
    e.drop_audit_triggers();
    // Make room after record 2 and forge a record 3 that chains correctly to record 2, with
    // its SHA-256 computed as the application would.
    for s in (3..=6).rev() {
        renumber(&e, s, s + 1);
    }
    let prev = e.text("SELECT hash FROM identity_audit WHERE seq = 2");
    let mut forged = e.id.audit_log().query(&Default::default()).unwrap().pop().unwrap();
    forged.seq = 3;
    forged.actor = "intruder".into();
    forged.detail = "nothing happened".into();
    forged.prev_hash = prev;
    forged.hash = e.id.audit_log().hash_of(&forged);
    e.db.with_conn(|c| {
        c.execute(
            "INSERT INTO identity_audit (seq, ts_ms, actor, source_ip, event, outcome, detail, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            &params![
                forged.seq,
                forged.ts_ms,
                forged.actor,
                forged.source_ip,
                forged.event,
                forged.outcome,
                forged.detail,
                forged.prev_hash,
                forged.hash
            ],
        )
    })
    .unwrap();
    let p = e.id.audit_log().verify().unwrap().problem.unwrap();
    // The old record 3, now 4, no longer chains to what precedes it.
    assert_eq!((p.seq, p.kind), (4, TamperKind::ChainBroken), "{}", p.message);
    assert!(p.message.contains("record 3 was inserted"), "{}", p.message);
}

#[test]
fn with_an_audit_key_a_fully_recomputed_forgery_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("audit.key");
    std::fs::write(&key, "k3y-only-the-appliance-knows\n").unwrap();
    let cfg = IdentityConfig {
        audit_key: Some(tingzhen_core::config::SecretRef::file(key.to_str().unwrap())),
        ..fast_config()
    };
    let e = env_with(cfg);
    fill(&e, 3);
    assert!(e.id.audit_log().verify().unwrap().ok);
    // An attacker without the key recomputes record 3 with plain SHA-256.
    e.drop_audit_triggers();
    let (prev, ts): (String, i64) =
        e.db.with_conn(|c| {
            c.query_row("SELECT prev_hash, ts_ms FROM identity_audit WHERE seq = 3", &(), |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
        })
        .unwrap();
    let unkeyed = {
        let e2 = env(); // same algorithm, no key
        let mut r = e.id.audit_log().query(&Default::default()).unwrap().remove(0);
        r.detail = "edited".into();
        r.prev_hash = prev;
        r.ts_ms = ts;
        e2.id.audit_log().hash_of(&r)
    };
    e.db.with_conn(|c| -> Result<(), DbError> {
        c.execute("UPDATE identity_audit SET detail = 'edited', hash = ?1 WHERE seq = 3", &[unkeyed])?;
        c.execute("UPDATE identity_audit_head SET hash = (SELECT hash FROM identity_audit WHERE seq = 3)", &())?;
        Ok(())
    })
    .unwrap();
    let p = e.id.audit_log().verify().unwrap().problem.unwrap();
    assert_eq!((p.seq, p.kind), (3, TamperKind::Modified));
}

#[test]
fn records_are_forwarded_to_syslog_in_rfc5424_format() {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let cfg = IdentityConfig {
        syslog: Some(SyslogConfig {
            address: sock.local_addr().unwrap().to_string(),
            protocol: Default::default(),
            app_name: "tingzhen".into(),
            facility: 13,
        }),
        ..fast_config()
    };
    let e = env_with(cfg);
    let rec =
        e.id.audit_log()
            .append(
                e.id.now_ms(),
                &AuditEvent::new("ad\"min", "10.0.0.7", "lockout", Outcome::Refused, "locked after 5 failures"),
            )
            .unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("no syslog datagram received");
    let msg = std::str::from_utf8(&buf[..n]).unwrap();
    // <PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] BOM MSG; PRI = 13*8 + 4 (warning).
    let parts: Vec<&str> = msg.splitn(7, ' ').collect();
    assert_eq!(parts[0], "<108>1", "{msg}");
    assert_eq!(parts[1], "2026-11-23T02:00:00.000Z");
    assert!(!parts[2].is_empty());
    assert_eq!(parts[3], "tingzhen");
    assert_eq!(parts[4], std::process::id().to_string());
    assert_eq!(parts[5], "lockout");
    let sd = format!(
        "[tingzhen@32473 seq=\"{}\" actor=\"ad\\\"min\" ip=\"10.0.0.7\" outcome=\"refused\" hash=\"{}\"] \u{feff}locked after 5 failures",
        rec.seq, rec.hash
    );
    assert_eq!(parts[6], sd);
}

#[test]
fn records_are_forwarded_to_syslog_over_tcp_with_octet_counting() {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = IdentityConfig {
        syslog: Some(SyslogConfig {
            address: listener.local_addr().unwrap().to_string(),
            protocol: tingzhen_identity::config::SyslogProtocol::Tcp,
            app_name: "tingzhen".into(),
            facility: 13,
        }),
        ..fast_config()
    };
    let e = env_with(cfg);
    e.id.record(&Actor::new("ops1", "10.0.0.8"), "start", Outcome::Success, "server started").unwrap();
    e.id.record(&Actor::new("ops1", "10.0.0.8"), "stop", Outcome::Success, "server stopping").unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // RFC 6587 octet counting: "LEN SP MSG", twice.
    let frames = loop {
        let n = conn.read(&mut buf).expect("syslog frames not received");
        assert!(n > 0, "connection closed early");
        got.extend_from_slice(&buf[..n]);
        let mut rest = &got[..];
        let mut frames = Vec::new();
        while let Some(sp) = rest.iter().position(|b| *b == b' ') {
            let len: usize = std::str::from_utf8(&rest[..sp]).unwrap().parse().unwrap();
            if rest.len() < sp + 1 + len {
                break;
            }
            frames.push(String::from_utf8(rest[sp + 1..sp + 1 + len].to_vec()).unwrap());
            rest = &rest[sp + 1 + len..];
        }
        if frames.len() == 2 {
            break frames;
        }
    };
    assert!(
        frames[0].starts_with("<109>1 ") && frames[0].contains(" start [tingzhen@32473 seq=\"1\""),
        "{}",
        frames[0]
    );
    assert!(frames[1].ends_with("\u{feff}server stopping"), "{}", frames[1]);
}

#[test]
fn records_can_be_filtered_by_source_address() {
    let e = env();
    fill(&e, 2);
    e.id.record(&Actor::new("ops2", "10.9.9.9"), "config_change", Outcome::Success, "rule x changed").unwrap();
    let q = tingzhen_identity::audit::AuditQuery { source_ip: Some("10.9.9.9".into()), ..Default::default() };
    let found = e.id.audit_log().query(&q).unwrap();
    assert_eq!(found.iter().map(|r| r.actor.as_str()).collect::<Vec<_>>(), ["ops2"]);
    let q = tingzhen_identity::audit::AuditQuery { source_ip: Some("10.1.2.3".into()), ..Default::default() };
    assert_eq!(e.id.audit_log().query(&q).unwrap().len(), 2);
}
