//! Engine-level tests: durability, recovery, cuts, retention, bounds, and a randomized
//! differential test against `MemStorage`.

/// A small deterministic PRNG (xorshift64*) so tests need no extra dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

use super::*;
use crate::storage::{MemStorage, SeriesSamples};
use tingzhen_core::{Labels, MatchOp, Matcher, STALE_NAN_BITS, Sample};

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;

fn opts() -> TsdbOptions {
    TsdbOptions { max_future: None, ..TsdbOptions::default() }
}

fn lbl(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn series(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries::new(lbl(pairs), samples.iter().map(|&(t, v)| Sample::new(t, v)).collect())
}

fn all(db: &dyn Queryable) -> Vec<SeriesSamples> {
    db.select(&[], i64::MIN, i64::MAX).unwrap()
}

/// Compares query results bit-exactly (NaN-safe).
fn assert_same(a: &[SeriesSamples], b: &[SeriesSamples]) {
    assert_eq!(a.len(), b.len(), "series count differs: {:?} vs {:?}", names(a), names(b));
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.labels, y.labels);
        let bits =
            |s: &SeriesSamples| s.samples.iter().map(|p| (p.timestamp_ms, p.value.to_bits())).collect::<Vec<_>>();
        assert_eq!(bits(x), bits(y), "samples differ for {}", x.labels);
    }
}

fn names(a: &[SeriesSamples]) -> Vec<String> {
    a.iter().map(|s| s.labels.to_string()).collect()
}

fn m(op: MatchOp, n: &str, v: &str) -> Matcher {
    Matcher::new(op, n, v).unwrap()
}

#[test]
fn head_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let batch = vec![
        series(&[("__name__", "up"), ("host", "a")], &[(1000, 1.0), (2000, f64::from_bits(STALE_NAN_BITS))]),
        series(&[("__name__", "up"), ("host", "b")], &[(1000, f64::INFINITY), (2000, f64::NEG_INFINITY)]),
    ];
    let before = {
        let db = Tsdb::open(dir.path(), opts()).unwrap();
        let st = db.append(&batch).unwrap();
        assert_eq!(st, AppendStats { samples_appended: 4, series_created: 2, ..Default::default() });
        all(&db)
    };
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    assert_same(&all(&db), &before);
    assert_eq!(before[0].samples[1].value.to_bits(), STALE_NAN_BITS);
    // New series after a restart get fresh ids and the old ones keep working.
    db.append(&[series(&[("__name__", "up"), ("host", "c")], &[(3000, 3.0)])]).unwrap();
    db.append(&[series(&[("__name__", "up"), ("host", "a")], &[(3000, 3.0)])]).unwrap();
    drop(db);
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    assert_eq!(all(&db).len(), 3);
    assert_eq!(all(&db)[0].samples.len(), 3);
}

fn largest_segment(wal: &Path) -> PathBuf {
    let mut best: Option<(u64, PathBuf)> = None;
    for e in std::fs::read_dir(wal).unwrap() {
        let p = e.unwrap().path();
        let len = std::fs::metadata(&p).unwrap().len();
        if best.as_ref().is_none_or(|(l, _)| len > *l) {
            best = Some((len, p));
        }
    }
    best.unwrap().1
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn torn_wal_tail_is_truncated_at_every_offset() {
    let dir = tempfile::tempdir().unwrap();
    let a = series(&[("__name__", "x"), ("i", "1")], &[(1000, 1.0), (2000, 2.0)]);
    let b = series(&[("__name__", "x"), ("i", "1")], &[(3000, 3.0), (4000, 4.0)]);
    let (before_b, expected_a, expected_ab) = {
        let db = Tsdb::open(dir.path(), opts()).unwrap();
        db.append(std::slice::from_ref(&a)).unwrap();
        let seg = largest_segment(&dir.path().join("wal"));
        let before_b = std::fs::metadata(&seg).unwrap().len();
        let expected_a = all(&db);
        db.append(std::slice::from_ref(&b)).unwrap();
        (before_b, expected_a, all(&db))
    };
    let seg = largest_segment(&dir.path().join("wal"));
    let full = std::fs::metadata(&seg).unwrap().len();
    assert!(full > before_b);
    for cut in before_b..=full {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        let seg_copy = copy.path().join("wal").join(seg.file_name().unwrap());
        std::fs::OpenOptions::new().write(true).open(&seg_copy).unwrap().set_len(cut).unwrap();
        let db = Tsdb::open(copy.path(), opts()).unwrap();
        if cut == full {
            assert_same(&all(&db), &expected_ab);
        } else {
            assert_same(&all(&db), &expected_a);
            assert_eq!(std::fs::metadata(&seg_copy).unwrap().len(), before_b, "torn tail cut back at {cut}");
        }
        // The reopened engine accepts writes and they survive another restart.
        db.append(&[series(&[("__name__", "x"), ("i", "2")], &[(5000, 5.0)])]).unwrap();
        drop(db);
        let db = Tsdb::open(copy.path(), opts()).unwrap();
        assert_eq!(all(&db).len(), 2);
    }
}

#[test]
fn garbage_tail_and_corrupt_middle_do_not_prevent_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Tsdb::open(dir.path(), opts()).unwrap();
        db.append(&[series(&[("__name__", "x")], &[(1000, 1.0)])]).unwrap();
        db.append(&[series(&[("__name__", "x")], &[(2000, 2.0)])]).unwrap();
    }
    let seg = largest_segment(&dir.path().join("wal"));
    let mut data = std::fs::read(&seg).unwrap();
    data.extend_from_slice(&[0xff; 37]);
    std::fs::write(&seg, &data).unwrap();
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    assert_eq!(all(&db)[0].samples.len(), 2);
    drop(db);
    // Flip a byte in the last record: the checksum catches it and only that record is lost.
    let mut data = std::fs::read(&seg).unwrap();
    let n = data.len();
    data[n - 3] ^= 0x40;
    std::fs::write(&seg, &data).unwrap();
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    assert_eq!(all(&db)[0].samples, vec![Sample::new(1000, 1.0)]);
}

fn fleet(hosts: usize, from: i64, to: i64, step: i64) -> Vec<TimeSeries> {
    let mut out = Vec::new();
    for h in 0..hosts {
        let host = format!("h{h}");
        let mut c = Vec::new();
        let mut g = Vec::new();
        let mut t = from;
        while t < to {
            c.push(Sample::new(t, (t / 1000 * (h as i64 + 1)) as f64));
            g.push(Sample::new(t, ((t / step) % 17) as f64 * 0.5));
            t += step;
        }
        out.push(TimeSeries::new(lbl(&[("__name__", "node_cpu_seconds_total"), ("host", &host), ("mode", "idle")]), c));
        out.push(TimeSeries::new(lbl(&[("__name__", "node_load1"), ("host", &host)]), g));
    }
    out
}

fn oracle_of(batches: &[Vec<TimeSeries>]) -> MemStorage {
    let mut o = MemStorage::new();
    for b in batches {
        for s in b {
            o.add(s.labels.clone(), s.samples.iter().copied());
        }
    }
    o
}

#[test]
fn blocks_are_cut_and_queries_span_blocks_and_head() {
    let dir = tempfile::tempdir().unwrap();
    let data = fleet(5, 0, 7 * HOUR, MIN);
    let oracle = oracle_of(std::slice::from_ref(&data));
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    db.append(&data).unwrap();
    db.maintain(7 * HOUR).unwrap();
    let st = db.stats();
    assert!(st.blocks >= 2, "{st:?}");
    assert!(st.series > 0);
    let check = |db: &Tsdb| {
        assert_same(&all(db), &all(&oracle));
        for (s, e) in [(0, HOUR), (HOUR + 1, 5 * HOUR + 7), (4 * HOUR - 5, 7 * HOUR), (7 * HOUR, 8 * HOUR)] {
            let ms = [m(MatchOp::Equal, "__name__", "node_load1")];
            assert_same(&db.select(&ms, s, e).unwrap(), &oracle.select(&ms, s, e).unwrap());
        }
    };
    check(&db);
    // Samples below the sealed floor are refused, inside the window accepted.
    let err = db.append(&[series(&[("__name__", "late")], &[(HOUR, 1.0)])]).unwrap_err();
    assert!(err.is_client_error() && err.series() == Some("late{}"), "{err}");
    drop(db);
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    check(&db);
    db.flush().unwrap();
    assert_eq!(db.stats().series, 0);
    check(&db);
    db.maintain(7 * HOUR).unwrap();
    drop(db);
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    check(&db);
    assert!(db.stats().wal_bytes < 1024, "WAL should be truncated after flush: {:?}", db.stats());
}

#[test]
fn retention_drops_old_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let o = TsdbOptions { retention: Duration::from_secs(6 * 3600), ..opts() };
    let db = Tsdb::open(dir.path(), o.clone()).unwrap();
    db.append(&fleet(2, 0, 12 * HOUR, 5 * MIN)).unwrap();
    db.maintain(12 * HOUR).unwrap();
    let blocks_before = db.stats().blocks;
    db.maintain(14 * HOUR).unwrap();
    let left = all(&db);
    assert!(db.stats().blocks < blocks_before);
    let oldest = left.iter().map(|s| s.samples[0].timestamp_ms).min().unwrap();
    assert!(oldest >= 6 * HOUR, "{oldest}");
    drop(db);
    let db = Tsdb::open(dir.path(), o).unwrap();
    assert_same(&all(&db), &left);
}

#[test]
fn out_of_order_and_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    let l = [("__name__", "m")];
    db.append(&[series(&l, &[(10 * MIN, 1.0), (20 * MIN, 2.0)])]).unwrap();
    let st = db.append(&[series(&l, &[(15 * MIN, 1.5), (20 * MIN, 9.0), (10 * MIN, 9.0), (25 * MIN, 2.5)])]).unwrap();
    assert_eq!(st, AppendStats { samples_appended: 2, out_of_order: 1, duplicates: 2, series_created: 0 });
    // Retrying the same batch is idempotent.
    let st = db.append(&[series(&l, &[(15 * MIN, 1.5), (25 * MIN, 2.5)])]).unwrap();
    assert_eq!(st.duplicates, 2);
    let want = vec![(10 * MIN, 1.0), (15 * MIN, 1.5), (20 * MIN, 2.0), (25 * MIN, 2.5)];
    let got = |db: &Tsdb| all(db)[0].samples.iter().map(|s| (s.timestamp_ms, s.value)).collect::<Vec<_>>();
    assert_eq!(got(&db), want);
    // Out of order across a chunk boundary and into an already-written head chunk.
    let many: Vec<(i64, f64)> = (30..200).map(|i| (i * MIN / 4 + 20 * MIN, i as f64)).collect();
    db.append(&[series(&l, &many)]).unwrap();
    db.append(&[series(&l, &[(21 * MIN, -1.0), (20 * MIN + 7, -2.0)])]).unwrap();
    drop(db);
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    let mut oracle = MemStorage::new();
    oracle.add(lbl(&l), want.iter().chain(many.iter()).map(|&(t, v)| Sample::new(t, v)));
    oracle.add(lbl(&l), [Sample::new(21 * MIN, -1.0), Sample::new(20 * MIN + 7, -2.0)]);
    assert_same(&all(&db), &all(&oracle));
    db.flush().unwrap();
    assert_same(&all(&db), &all(&oracle));
}

#[test]
fn rejected_batches_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let o = TsdbOptions { max_series: 3, ..opts() };
    let db = Tsdb::open(dir.path(), o.clone()).unwrap();
    db.append(&[series(&[("__name__", "a")], &[(5 * HOUR, 1.0)])]).unwrap();
    let before = all(&db);
    let wal_before = db.stats().wal_bytes;
    // Too old (outside the 1h out-of-order window), listed after good samples and a new series.
    let bad = vec![
        series(&[("__name__", "a")], &[(5 * HOUR + 1, 2.0)]),
        series(&[("__name__", "new")], &[(5 * HOUR, 1.0)]),
        series(&[("__name__", "old"), ("job", "x")], &[(5 * HOUR, 1.0), (3 * HOUR, 1.0)]),
    ];
    let err = db.append(&bad).unwrap_err();
    match &err {
        TsdbError::OutOfBounds { series, timestamp_ms, .. } => {
            assert_eq!(series, "old{job=\"x\"}");
            assert_eq!(*timestamp_ms, 3 * HOUR);
        }
        e => panic!("unexpected {e}"),
    }
    assert!(err.is_client_error());
    let too_many: Vec<TimeSeries> =
        (0..3).map(|i| series(&[("__name__", "n"), ("i", &i.to_string())], &[(5 * HOUR, 1.0)])).collect();
    let err = db.append(&too_many).unwrap_err();
    assert!(matches!(err, TsdbError::TooManySeries { .. }) && err.is_client_error(), "{err}");
    assert!(db.append(&[series(&[], &[(5 * HOUR, 1.0)])]).unwrap_err().is_client_error());
    assert_same(&all(&db), &before);
    assert_eq!(db.stats().series, 1);
    assert_eq!(db.stats().wal_bytes, wal_before);
    assert_eq!(db.label_names(&[], i64::MIN, i64::MAX).unwrap(), ["__name__"]);
    drop(db);
    let db = Tsdb::open(dir.path(), o).unwrap();
    assert_same(&all(&db), &before);
    // Clock skew guard.
    let skew = TsdbOptions { max_future: Some(Duration::from_secs(60)), ..opts() };
    let dir2 = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir2.path(), skew).unwrap();
    let far = super::now_ms() + 3_600_000;
    assert!(db.append(&[series(&[("__name__", "f")], &[(far, 1.0)])]).unwrap_err().is_client_error());
}

fn matcher_cases() -> Vec<Vec<Matcher>> {
    use MatchOp::*;
    vec![
        vec![m(Equal, "__name__", "node_load1")],
        vec![m(Equal, "host", "h1")],
        vec![m(NotEqual, "mode", "idle")],
        vec![m(Equal, "mode", "")],
        vec![m(RegexMatch, "mode", "idle|")],
        vec![m(RegexMatch, "host", "h[13]"), m(RegexNoMatch, "__name__", ".*load.*")],
        vec![m(RegexNoMatch, "host", "h1"), m(NotEqual, "missing", "x")],
        vec![m(RegexMatch, "missing", ".*")],
        vec![m(Equal, "missing", "x")],
        vec![m(RegexMatch, "host", ".+"), m(Equal, "env", "")],
        vec![],
    ]
}

#[test]
fn matchers_and_metadata_queries_match_the_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let data = fleet(4, 0, 5 * HOUR, 10 * MIN);
    let mut extra = vec![series(&[("__name__", "node_load1"), ("host", "h9"), ("env", "prod")], &[(4 * HOUR, 1.0)])];
    extra.push(series(&[("__name__", "only_old"), ("rack", "r1")], &[(10 * MIN, 1.0)]));
    let oracle = oracle_of(&[data.clone(), extra.clone()]);
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    db.append(&extra[1..]).unwrap();
    db.append(&data).unwrap();
    db.append(&extra[..1]).unwrap();
    db.maintain(5 * HOUR).unwrap();
    assert!(db.stats().blocks > 0);
    let ranges = [(i64::MIN, i64::MAX), (0, HOUR), (3 * HOUR, 5 * HOUR), (5 * MIN, 6 * MIN), (HOUR + 1, 2 * HOUR - 1)];
    for ms in matcher_cases() {
        for &(s, e) in &ranges {
            assert_same(&db.select(&ms, s, e).unwrap(), &oracle.select(&ms, s, e).unwrap());
            let sets = if ms.is_empty() { vec![] } else { vec![ms.clone(), vec![m(MatchOp::Equal, "rack", "r1")]] };
            assert_eq!(db.series(&sets, s, e).unwrap(), oracle.series(&sets, s, e).unwrap(), "{ms:?} {s} {e}");
            assert_eq!(db.label_names(&sets, s, e).unwrap(), oracle.label_names(&sets, s, e).unwrap(), "{ms:?}");
            for name in ["host", "__name__", "env", "nope"] {
                assert_eq!(
                    db.label_values(name, &sets, s, e).unwrap(),
                    oracle.label_values(name, &sets, s, e).unwrap(),
                    "{name} {ms:?} {s} {e}"
                );
            }
        }
    }
}

#[test]
fn randomized_differential_against_mem_storage() {
    let dir = tempfile::tempdir().unwrap();
    let o = TsdbOptions {
        block_duration: Duration::from_secs(1800),
        retention: Duration::from_secs(365 * 86400),
        ..opts()
    };
    let mut db = Tsdb::open(dir.path(), o.clone()).unwrap();
    let mut oracle = MemStorage::new();
    let mut rng = Rng(7);
    let mut now = 0i64;
    let specials = [f64::NAN, f64::from_bits(STALE_NAN_BITS), f64::INFINITY, -0.0, 1e300];
    for round in 0..60 {
        now += (rng.next() % (20 * MIN as u64)) as i64;
        let mut batch = Vec::new();
        for _ in 0..(rng.next() % 12 + 1) {
            let host = format!("h{}", rng.next() % 8);
            let name = ["cpu", "mem", "disk"][(rng.next() % 3) as usize];
            let mut pairs = vec![("__name__", name.to_string()), ("host", host)];
            if rng.next().is_multiple_of(3) {
                pairs.push(("dev", format!("sd{}", rng.next() % 3)));
            }
            let labels = Labels::from_pairs(pairs);
            let mut samples = Vec::new();
            let mut t = now - (rng.next() % (50 * MIN as u64)) as i64;
            for _ in 0..(rng.next() % 40) {
                t += (rng.next() % 30_000) as i64 + 1;
                let v = match rng.next() % 10 {
                    0 => specials[(rng.next() % specials.len() as u64) as usize],
                    1..=4 => (rng.next() % 1000) as f64,
                    _ => (rng.next() % 100_000) as f64 / 100.0,
                };
                samples.push(Sample::new(t, v));
            }
            batch.push(TimeSeries::new(labels, samples));
        }
        match db.append(&batch) {
            Ok(_) => {
                for s in &batch {
                    // The oracle keeps the first value written for a timestamp, like the engine.
                    let mut existing: Vec<Sample> = Vec::new();
                    if let Some(x) = oracle.series.iter().find(|x| x.labels == s.labels) {
                        existing = x.samples.clone();
                    }
                    let fresh: Vec<Sample> = s
                        .samples
                        .iter()
                        .copied()
                        .filter(|p| !existing.iter().any(|e| e.timestamp_ms == p.timestamp_ms))
                        .collect();
                    oracle.add(s.labels.clone(), fresh);
                }
            }
            Err(e) => assert!(e.is_client_error(), "{e}"),
        }
        match rng.next() % 10 {
            0..=2 => db.maintain(now).unwrap(),
            3 => {
                drop(db);
                db = Tsdb::open(dir.path(), o.clone()).unwrap();
            }
            4 if round % 7 == 0 => db.flush().unwrap(),
            _ => {}
        }
        let s = now - (rng.next() % (3 * HOUR as u64)) as i64;
        let e = s + (rng.next() % (2 * HOUR as u64)) as i64;
        for ms in matcher_cases().into_iter().take(4) {
            assert_same(&db.select(&ms, s, e).unwrap(), &oracle.select(&ms, s, e).unwrap());
        }
        assert_same(&all(&db), &all(&oracle));
        assert_eq!(db.label_values("host", &[], s, e).unwrap(), oracle.label_values("host", &[], s, e).unwrap());
    }
    assert!(db.stats().blocks > 0);
}

#[test]
fn concurrent_appenders_share_commits_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Tsdb::open(dir.path(), opts()).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..50i64 {
                    let batch: Vec<TimeSeries> = (0..20)
                        .map(|k| {
                            series(&[("__name__", "c"), ("k", &k.to_string())], &[(i * 1000 + w, (i * 4 + w) as f64)])
                        })
                        .collect();
                    db.append(&batch).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let got = all(&*db);
    assert_eq!(got.len(), 20);
    assert!(got.iter().all(|s| s.samples.len() == 200));
    drop(got);
    drop(db);
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    assert_eq!(all(&db).iter().map(|s| s.samples.len()).sum::<usize>(), 4000);
    assert_eq!(db.stats().series, 20);
}
