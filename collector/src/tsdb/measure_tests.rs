//! Ignored measurements (run by hand, release build, `--ignored --nocapture`): ingest rate and
//! bytes/sample of the embedded engine, and VictoriaMetrics' bytes/sample on the very same data,
//! so the block format can be judged against the peer it must match.

use super::tests::Rng;
use super::*;
use tingzhen_core::{Labels, MatchOp, Matcher, Sample};

const NSERIES: usize = 10_000;
const NSAMPLES: usize = 360;
const NAMES: [&str; 8] = [
    "node_network_receive_bytes_total",
    "node_cpu_seconds_total",
    "node_load1",
    "node_memory_MemFree_bytes",
    "node_filesystem_size_bytes",
    "node_network_receive_errs_total",
    "node_disk_io_time_seconds_total",
    "node_filesystem_avail_bytes",
];

/// Realistic host metrics: counters (integers growing at varying rates), gauges with decimals
/// and big integer gauges, 10 s interval with a few ms of jitter per sample.
fn host_metrics(start: i64) -> Vec<TimeSeries> {
    let mut rng = Rng(99);
    let mut all_series = Vec::with_capacity(NSERIES);
    for i in 0..NSERIES {
        let host = format!("his-node-{:03}", i / 100);
        let kind = i % NAMES.len();
        let labels = Labels::from_pairs([
            ("__name__", NAMES[kind]),
            ("host", &host),
            ("campus", "east"),
            ("series", &(i % 100).to_string()),
        ]);
        let mut v = (rng.next() % 1_000_000) as f64;
        let mut samples = Vec::with_capacity(NSAMPLES);
        for k in 0..NSAMPLES {
            // The agent's scheduler jitters a few ms around the 10 s grid.
            let t = start + k as i64 * 10_000 + (rng.next() % 5) as i64;
            v = match kind {
                0 => v + 20_000.0 + (rng.next() % 2_000) as f64,
                1 => ((v * 100.0).round() + 990.0 + (rng.next() % 10) as f64) / 100.0,
                2 => (((v * 100.0).round() + (rng.next() % 11) as f64 - 5.0).abs()) / 100.0,
                3 => (v as i64 / 4096 * 4096) as f64 + ((rng.next() % 64) as f64 - 32.0) * 4096.0,
                4 => 512_110_190_592.0,
                5 => v + if rng.next().is_multiple_of(50) { 1.0 } else { 0.0 },
                6 => ((v * 1000.0).round() + (rng.next() % 200) as f64) / 1000.0,
                _ => 212_110_190_592.0 - (k as f64 * 4096.0 * (rng.next() % 3) as f64),
            };
            samples.push(Sample::new(t, v));
        }
        all_series.push(TimeSeries::new(labels, samples));
    }
    all_series
}

/// Remote-write shaped batches: 1000 series × 60 samples.
fn batches(all_series: &[TimeSeries]) -> Vec<Vec<TimeSeries>> {
    let mut out = Vec::new();
    for chunk in all_series.chunks(1000) {
        for w in 0..(NSAMPLES / 60) {
            out.push(
                chunk
                    .iter()
                    .map(|s| TimeSeries::new(s.labels.clone(), s.samples[w * 60..(w + 1) * 60].to_vec()))
                    .collect::<Vec<_>>(),
            );
        }
    }
    out
}

/// A recent 10 s-aligned start, so VictoriaMetrics (default retention one month) keeps it all.
fn recent_start() -> i64 {
    let day_ago = super::now_ms() - 86_400_000;
    day_ago - day_ago.rem_euclid(3_600_000)
}

/// Apparent size of every file under `dir` (not allocated blocks: the many small files of an
/// LSM store would otherwise be dominated by filesystem rounding).
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => total += dir_bytes(&e.path()),
                Ok(_) => total += e.metadata().map_or(0, |m| m.len()),
                Err(_) => {}
            }
        }
    }
    total
}

/// Run with `cargo test --release -p tingzhen-collector --lib measure_ingest -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_ingest_and_compression() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), TsdbOptions { max_future: None, ..TsdbOptions::default() }).unwrap();
    let empty = dir_bytes(dir.path());
    let all_series = host_metrics(recent_start());
    let batches = batches(&all_series);
    let t0 = std::time::Instant::now();
    for b in &batches {
        db.append(b).unwrap();
    }
    let el = t0.elapsed();
    let total = (NSERIES * NSAMPLES) as f64;
    let t1 = std::time::Instant::now();
    db.flush().unwrap();
    let fl = t1.elapsed();
    let st = db.stats();
    let whole = dir_bytes(dir.path()) - empty;
    println!(
        "tingzhen: ingest {:.0} samples/s ({el:?}); flush {fl:?}; blocks {}; block bytes {} = {:.3} bytes/sample; \
         whole data dir minus empty {} = {:.3} bytes/sample",
        total / el.as_secs_f64(),
        st.blocks,
        db.block_bytes(),
        db.block_bytes() as f64 / total,
        whole,
        whole as f64 / total,
    );
    let t2 = std::time::Instant::now();
    let r = db.select(&[Matcher::new(MatchOp::Equal, "__name__", "node_load1").unwrap()], i64::MIN, i64::MAX).unwrap();
    println!("select {} series x {NSAMPLES}: {:?}", r.len(), t2.elapsed());
    assert_eq!(r.len(), NSERIES / NAMES.len());
    let got: usize = db.select(&[], i64::MIN, i64::MAX).unwrap().iter().map(|s| s.samples.len()).sum();
    assert_eq!(got, NSERIES * NSAMPLES);
}

/// VictoriaMetrics (Debian's `/usr/bin/victoria-metrics`) on loopback, fed the same series by
/// remote write; size of its data dir after `/internal/force_flush` minus its size when empty.
/// Run with `cargo test --release -p tingzhen-collector --lib measure_victoria -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_victoria_metrics_on_same_data() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = std::process::Command::new("/usr/bin/victoria-metrics")
        .arg(format!("-storageDataPath={}", dir.path().display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg("-loggerLevel=ERROR")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("victoria-metrics runs");
    let base = format!("http://127.0.0.1:{port}");
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let ready = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            agent.get(format!("{base}/health")).call().is_ok_and(|r| r.status() == 200)
        });
        assert!(ready, "VictoriaMetrics did not come up");
        std::thread::sleep(Duration::from_secs(2));
        let empty = dir_bytes(dir.path());
        let start = recent_start();
        for b in batches(&host_metrics(start)) {
            let body = tingzhen_core::remote_write::encode(&b);
            let r = agent
                .post(format!("{base}/api/v1/write"))
                .header("Content-Encoding", "snappy")
                .header("Content-Type", "application/x-protobuf")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                .send(&body[..])
                .unwrap();
            assert!(r.status().is_success(), "write: {}", r.status());
        }
        for _ in 0..2 {
            agent.get(format!("{base}/internal/force_flush")).call().unwrap();
            std::thread::sleep(Duration::from_secs(5));
        }
        let used = dir_bytes(dir.path()) - empty;
        let data = dir_bytes(&dir.path().join("data"));
        let index = dir_bytes(&dir.path().join("indexdb"));
        println!(
            "VictoriaMetrics: data/ {data} = {:.3} bytes/sample; indexdb/ {index}; other {}",
            data as f64 / (NSERIES * NSAMPLES) as f64,
            used.saturating_sub(data + index)
        );
        let total = (NSERIES * NSAMPLES) as f64;
        let end = (start + NSAMPLES as i64 * 10_000) / 1000;
        let mut r = agent
            .get(format!("{base}/api/v1/query"))
            .query("query", "sum(count_over_time({__name__=~\"node_.+\"}[2h]))")
            .query("time", end.to_string())
            .call()
            .unwrap();
        let answer = r.body_mut().read_to_string().unwrap();
        println!(
            "VictoriaMetrics: data dir after force_flush minus empty ({empty} bytes) = {used} = {:.3} bytes/sample; \
             samples it reports: {answer}",
            used as f64 / total
        );
    }));
    let _ = child.kill();
    let _ = child.wait();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}
