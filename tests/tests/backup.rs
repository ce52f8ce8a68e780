//! Backups end to end (MLPS: automatic backups on a configurable period; PLAT-6): a writer keeps
//! ingesting while a backup is taken through the admin API; the backup is verified and restored
//! with the CLI into a fresh data directory, and a server started on it holds every batch
//! acknowledged before the backup was asked for, and only whole batches, with the same tokens.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tingzhen_core::{Labels, Sample, TimeSeries};
use tingzhen_tests::{Collector, CollectorOpts, Http, now_ms, wait};

const SERIES: usize = 20;

/// Batch `b`: one sample at `t0 + b s` for each of the series, value `b`.
fn batch(t0: i64, b: usize) -> Vec<TimeSeries> {
    (0..SERIES)
        .map(|i| {
            let l = Labels::from_pairs([("__name__", "tz_backup".to_string()), ("i", i.to_string())]);
            TimeSeries::new(l, vec![Sample::new(t0 + b as i64 * 1000, b as f64)])
        })
        .collect()
}

fn tingzhen(args: &[&str]) -> std::process::Output {
    std::process::Command::new(tingzhen_tests::bins::tingzhen()).args(args).output().expect("run tingzhen")
}

#[test]
fn a_backup_taken_during_ingest_restores_every_acknowledged_batch_and_no_partial_one() {
    let root = tempfile::tempdir().unwrap();
    let backup_dir = root.path().join("backups");
    let extra_toml =
        format!("\n[storage.backup]\ndir = {:?}\ninterval = \"24h\"\nkeep = 3\n", backup_dir.display().to_string());
    let mut server = Collector::start_with(CollectorOpts { extra_toml: extra_toml.clone(), ..Default::default() });
    let token = server.admin_token();
    let t0 = now_ms() - 3_600_000;

    let acked = Arc::new(Mutex::new(Vec::<usize>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop, url, token) = (acked.clone(), stop.clone(), server.url("/api/v1/write"), token.clone());
        std::thread::spawn(move || {
            let http = Http::new();
            for b in 0..3000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let body = tingzhen_core::remote_write::encode(&batch(t0, b));
                let r = http.remote_write(&url, Some(&token), &body).expect("write");
                assert!(r.is_success(), "batch {b} refused: {} {}", r.status, r.body);
                acked.lock().unwrap().push(b);
            }
        })
    };
    wait::until_60s("200 batches acknowledged", |last| {
        let n = acked.lock().unwrap().len();
        *last = format!("{n}");
        (n >= 200).then_some(())
    });
    let before: Vec<usize> = acked.lock().unwrap().clone();
    let r = server
        .http()
        .post(&server.url("/api/v1/admin/backups"), Some(&token), &[], b"")
        .expect("POST /api/v1/admin/backups");
    assert_eq!(r.status, 200, "{}", r.body);
    let info = r.json()["data"].clone();
    let path = info["path"].as_str().unwrap().to_string();
    assert!(path.starts_with(&backup_dir.display().to_string()) && info["relational_store"] == true, "{info}");
    // Ingest went on during and after the backup.
    wait::until_60s("more batches after the backup", |last| {
        let n = acked.lock().unwrap().len();
        *last = format!("{n}");
        (n >= before.len() + 50).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    // The schedule's metric and the listing see it; the query token may not ask for a backup.
    let metrics = server.http().get(&server.url("/metrics"), Some(&token), &[]).unwrap().body;
    assert!(metrics.contains("tingzhen_backup_failures_total 0"), "{metrics}");
    let listed = server.http().get(&server.url("/api/v1/admin/backups"), Some(&token), &[]).unwrap().json();
    assert_eq!(listed["data"][0]["path"], serde_json::json!(path), "{listed}");
    let reader = server.create_token("reader", "query", None);
    let r = server.http().post(&server.url("/api/v1/admin/backups"), Some(&reader), &[], b"").unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    server.stop();

    let out = tingzhen(&["backup", "verify", &path]);
    assert!(out.status.success(), "verify: {}", String::from_utf8_lossy(&out.stderr));
    let mut restored = Collector::new(CollectorOpts::default());
    let target = restored.data.display().to_string();
    let out = tingzhen(&["backup", "restore", "--from", &path, "--data", &target]);
    assert!(out.status.success(), "restore: {}", String::from_utf8_lossy(&out.stderr));
    let again = tingzhen(&["backup", "restore", "--from", &path, "--data", &target]);
    assert!(!again.status.success(), "a second restore into the same directory is refused");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    restored.start();

    // The old admin token came back with the store. Every sample, per batch timestamp.
    let res = restored.client(&token).query("tz_backup[2h]", now_ms());
    let mut per_batch: BTreeMap<i64, usize> = BTreeMap::new();
    for pts in res.matrix().values() {
        for (t, _) in pts {
            *per_batch.entry(*t).or_default() += 1;
        }
    }
    for b in &before {
        let t = t0 + *b as i64 * 1000;
        assert_eq!(
            per_batch.get(&t),
            Some(&SERIES),
            "batch {b}, acknowledged before the backup, is incomplete or missing"
        );
    }
    let partial: Vec<_> = per_batch.iter().filter(|(_, n)| **n != SERIES).collect();
    assert!(partial.is_empty(), "partial batches in the backup: {partial:?}");
    let total = acked.lock().unwrap().len();
    assert!(per_batch.len() < total, "batches written after the backup are not in it ({} of {total})", per_batch.len());
}
