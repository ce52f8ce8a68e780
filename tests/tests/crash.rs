//! Crash test: `kill -9` the collector while writers are ingesting, restart it on the same data
//! dir, and every batch the collector acknowledged (2xx) must be there, sample for sample.
//! Two crash cycles, so recovery of an already-recovered store is covered too.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tingzhen_core::{Labels, Sample, TimeSeries};
use tingzhen_tests::{Collector, Http, now_ms, wait};

const WRITERS: usize = 2;
const SERIES_PER_WRITER: usize = 25;
const SAMPLES_PER_BATCH: usize = 5;
const MAX_BATCHES: usize = 4000;
const SPACING_MS: i64 = 20;

fn labels(cycle: usize, w: usize, i: usize) -> Labels {
    Labels::from_pairs([
        ("__name__", "tz_crash".to_string()),
        ("cycle", cycle.to_string()),
        ("writer", w.to_string()),
        ("series", i.to_string()),
    ])
}

/// The `k`-th sample of batch `b` of one series: timestamps strictly increasing, values
/// unique and exactly representable.
fn sample(t0: i64, b: usize, k: usize, i: usize) -> Sample {
    let n = b * SAMPLES_PER_BATCH + k;
    Sample::new(t0 + n as i64 * SPACING_MS, (n * 1000 + i) as f64)
}

fn batch(cycle: usize, t0: i64, w: usize, b: usize) -> Vec<TimeSeries> {
    (0..SERIES_PER_WRITER)
        .map(|i| TimeSeries::new(labels(cycle, w, i), (0..SAMPLES_PER_BATCH).map(|k| sample(t0, b, k, i)).collect()))
        .collect()
}

/// Runs the writers until the collector dies under them; returns the acknowledged batches per
/// writer.
fn ingest_and_crash(coll: &mut Collector, token: &str, cycle: usize, t0: i64) -> Vec<Vec<usize>> {
    let acked: Arc<Mutex<Vec<Vec<usize>>>> = Arc::new(Mutex::new(vec![Vec::new(); WRITERS]));
    let total = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(Mutex::new(Vec::<String>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let url = coll.url("/api/v1/write");
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (acked, total, refused, done) = (acked.clone(), total.clone(), refused.clone(), done.clone());
            let (url, token) = (url.clone(), token.to_string());
            std::thread::spawn(move || {
                let http = Http::new();
                for b in 0..MAX_BATCHES {
                    if done.load(Ordering::Relaxed) {
                        break;
                    }
                    let body = tingzhen_core::remote_write::encode(&batch(cycle, t0, w, b));
                    match http.remote_write(&url, Some(&token), &body) {
                        Ok(r) if r.is_success() => {
                            acked.lock().unwrap()[w].push(b);
                            total.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(r) => refused.lock().unwrap().push(format!("writer {w} batch {b}: {} {}", r.status, r.body)),
                        // The collector is gone: nothing after this can be acknowledged.
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    wait::until_60s("writers to get 150 batches acknowledged", |last| {
        *last = format!("{} acknowledged", total.load(Ordering::SeqCst));
        (total.load(Ordering::SeqCst) >= 150).then_some(())
    });
    coll.kill9();
    done.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("writer thread");
    }
    let refused = refused.lock().unwrap();
    assert!(refused.is_empty(), "the collector refused valid batches before the crash:\n{}", refused.join("\n"));
    acked.lock().unwrap().clone()
}

/// Reads every sample of one series back as raw samples (a range selector at a late instant).
fn stored(coll: &Collector, token: &str, l: &Labels, at: i64) -> BTreeMap<i64, f64> {
    let sel: Vec<String> =
        l.iter().filter(|x| x.name != "__name__").map(|x| format!("{}={:?}", x.name, x.value)).collect();
    let q = format!("tz_crash{{{}}}[30m]", sel.join(","));
    let res = coll.client(token).query(&q, at);
    let m = res.matrix();
    assert!(m.len() <= 1, "{q} returned {} series", m.len());
    m.values().next().map(|pts| pts.iter().copied().collect()).unwrap_or_default()
}

fn verify(coll: &Collector, token: &str, cycle: usize, t0: i64, acked: &[Vec<usize>]) {
    let at = t0 + (MAX_BATCHES * SAMPLES_PER_BATCH) as i64 * SPACING_MS + 1_000;
    let mut missing = Vec::new();
    let mut checked = 0;
    for (w, batches) in acked.iter().enumerate() {
        for i in 0..SERIES_PER_WRITER {
            let got = stored(coll, token, &labels(cycle, w, i), at);
            for &b in batches {
                for k in 0..SAMPLES_PER_BATCH {
                    let s = sample(t0, b, k, i);
                    checked += 1;
                    if got.get(&s.timestamp_ms) != Some(&s.value) {
                        missing.push(format!(
                            "cycle {cycle} writer {w} series {i} batch {b} sample {k}: want {} @ {}, got {:?}",
                            s.value,
                            s.timestamp_ms,
                            got.get(&s.timestamp_ms)
                        ));
                    }
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {checked} acknowledged samples lost after kill -9; first ones:\n{}",
        missing.len(),
        missing.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn acknowledged_samples_survive_kill_9() {
    let mut coll = Collector::start_default();
    let token = coll.create_token("crash", "ingest,query", None);
    let t0 = now_ms() - 20 * 60_000;
    let t1 = t0 + 2 * 60_000 + 3;

    let acked1 = ingest_and_crash(&mut coll, &token, 1, t0);
    coll.start();
    verify(&coll, &token, 1, t0, &acked1);

    let acked2 = ingest_and_crash(&mut coll, &token, 2, t1);
    coll.start();
    verify(&coll, &token, 1, t0, &acked1);
    verify(&coll, &token, 2, t1, &acked2);

    // And it still takes writes after two crashes.
    let again = batch(3, t1, 0, 0);
    coll.write_ok(&token, &again);
    verify(&coll, &token, 3, t1, &[vec![0]]);
}
