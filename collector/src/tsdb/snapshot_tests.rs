//! Tests of `Tsdb::snapshot`: a snapshot reopens to exactly the data at that point (blocks,
//! rollups and head), holds only whole batches under concurrent ingest and maintenance,
//! refuses a non-empty destination without side effects, and outlives the original.

use super::*;
use crate::storage::{RollupFunc, SelectHints, SeriesSamples};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use tingzhen_core::{Labels, Sample};

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn opts() -> TsdbOptions {
    TsdbOptions { max_future: None, ..TsdbOptions::default() }
}

fn lbl(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn all(db: &Tsdb) -> Vec<(Labels, Vec<(i64, u64)>)> {
    bits(db.select(&[], i64::MIN, i64::MAX).unwrap())
}

/// Query results bit-exactly (NaN-safe).
fn bits(r: Vec<SeriesSamples>) -> Vec<(Labels, Vec<(i64, u64)>)> {
    r.into_iter().map(|s| (s.labels, s.samples.iter().map(|p| (p.timestamp_ms, p.value.to_bits())).collect())).collect()
}

/// Answers from rollups: a range far longer than `rollup_min_query_range`.
fn rolled(db: &Tsdb) -> Vec<(Labels, Vec<(i64, u64)>)> {
    let h = SelectHints { step_ms: 5 * MIN, range_ms: 5 * MIN, func: Some(RollupFunc::Max) };
    bits(db.select_hinted(&[], 0, 3 * DAY, &h).unwrap())
}

fn gauges(hosts: usize, from: i64, to: i64, step: i64) -> Vec<TimeSeries> {
    (0..hosts)
        .map(|h| {
            let samples = (from..to).step_by(step as usize).map(|t| Sample::new(t, (t / step % 13 + h as i64) as f64));
            TimeSeries::new(lbl(&[("__name__", "load"), ("host", &format!("h{h}"))]), samples.collect())
        })
        .collect()
}

/// Every file under `dir` with its contents.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.insert(e.path(), std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

/// Blocks, rollups and a head: the snapshot answers like the original did when it was taken,
/// and nothing appended afterwards.
#[test]
fn snapshot_reopens_to_blocks_rollups_and_head() {
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let dest = backup.path().join("snap");
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    db.append(&gauges(3, 0, 7 * HOUR, MIN)).unwrap();
    db.maintain(7 * HOUR).unwrap();
    // Head data above the cut, in two batches (the second adds a series).
    db.append(&gauges(3, 7 * HOUR, 7 * HOUR + 30 * MIN, MIN)).unwrap();
    db.append(&gauges(4, 7 * HOUR + 30 * MIN, 7 * HOUR + 40 * MIN, MIN)).unwrap();
    let st = db.stats();
    assert!(st.blocks >= 2 && st.rollup_blocks >= 1 && st.series == 4, "{st:?}");
    let (raw, roll) = (all(&db), rolled(&db));
    assert!(!roll.is_empty());

    let snap = db.snapshot(&dest).unwrap();
    assert_eq!(snap.blocks as u64, st.blocks);
    assert_eq!(snap.rollups as u64, st.rollup_blocks);
    assert!(snap.wal_segments >= 1 && snap.bytes > 0, "{snap:?}");

    // Appends after the snapshot: new samples and a new series.
    db.append(&gauges(5, 7 * HOUR + 40 * MIN, 7 * HOUR + 45 * MIN, MIN)).unwrap();
    assert_ne!(all(&db), raw);

    let s = Tsdb::open(&dest, opts()).unwrap();
    assert_eq!(all(&s), raw);
    assert_eq!(rolled(&s), roll);
    let sst = s.stats();
    assert_eq!((sst.blocks, sst.rollup_blocks, sst.series), (st.blocks, st.rollup_blocks, st.series), "{sst:?}");
    // The snapshot is a working engine of its own.
    s.append(&gauges(1, 8 * HOUR, 8 * HOUR + MIN, MIN)).unwrap();
    s.flush().unwrap();
    drop(s);
    assert_eq!(all(&Tsdb::open(&dest, opts()).unwrap()).len(), 4);
}

/// Samples per series per batch: four series make one batch larger than a WAL samples
/// record, so a batch is two records and a cut between them would show.
const PER_SERIES: i64 = WAL_SAMPLES_PER_RECORD as i64 / 4 + 500;
const SERIES: usize = 4;
/// Batch `i` covers timestamps `[i * SPAN, i * SPAN + PER_SERIES)`.
const SPAN: i64 = 100_000;

fn batch(i: i64) -> Vec<TimeSeries> {
    (0..SERIES)
        .map(|k| {
            let samples = (0..PER_SERIES).map(|j| Sample::new(i * SPAN + j, (i * 7 + k as i64) as f64));
            TimeSeries::new(lbl(&[("__name__", "v"), ("k", &k.to_string())]), samples.collect())
        })
        .collect()
}

/// The batch ids in a reopened snapshot, checking each batch is whole.
fn whole_batches(db: &Tsdb) -> Vec<i64> {
    let mut per: BTreeMap<i64, usize> = BTreeMap::new();
    for s in db.select(&[], i64::MIN, i64::MAX).unwrap() {
        for p in &s.samples {
            let i = p.timestamp_ms / SPAN;
            assert_eq!(p.value, (i * 7 + s.labels.get("k").unwrap().parse::<i64>().unwrap()) as f64);
            *per.entry(i).or_default() += 1;
        }
    }
    for (i, n) in &per {
        assert_eq!(*n, SERIES * PER_SERIES as usize, "batch {i} is partial");
    }
    per.into_keys().collect()
}

/// One thread appends two-record batches, another runs flushes (cuts, WAL truncation) while
/// snapshots are taken: each holds exactly the batches `0..k` with every acknowledged one.
#[test]
fn snapshots_under_concurrent_ingest_hold_only_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let o = TsdbOptions { wal_segment_bytes: 64 << 10, ..opts() };
    let db = Arc::new(Tsdb::open(dir.path(), o.clone()).unwrap());
    let acked = Arc::new(AtomicI64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let appender = {
        let (db, acked, stop) = (db.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Acquire) && i < 40 {
                db.append(&batch(i)).unwrap();
                i += 1;
                acked.store(i, Ordering::Release);
            }
        })
    };
    let maintainer = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                db.flush().unwrap();
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let mut seen = Vec::new();
    for (n, at) in [3, 10, 18, 26].into_iter().enumerate() {
        while acked.load(Ordering::Acquire) < at {
            std::thread::sleep(Duration::from_millis(2));
        }
        let before = acked.load(Ordering::Acquire);
        let dest = backup.path().join(format!("s{n}"));
        db.snapshot(&dest).unwrap();
        let after = acked.load(Ordering::Acquire);
        let s = Tsdb::open(&dest, o.clone()).unwrap();
        let ids = whole_batches(&s);
        let k = ids.len() as i64;
        assert_eq!(ids, (0..k).collect::<Vec<_>>(), "snapshot {n} has gaps");
        assert!(k >= before, "snapshot {n} lost acknowledged batches: {k} < {before}");
        // At most the batch in flight when the snapshot finished may be there besides.
        assert!(k <= after + 1, "snapshot {n} has batches from after it: {k} > {after} + 1");
        seen.push((before, k));
    }
    stop.store(true, Ordering::Release);
    appender.join().unwrap();
    maintainer.join().unwrap();
    assert!(seen.last().unwrap().1 > 0, "{seen:?}");
    assert!(db.stats().blocks > 0, "the maintainer should have cut blocks");
}

/// A non-empty destination (or a file) is refused by name, nothing is written to it, and the
/// engine carries on.
#[test]
fn snapshot_refuses_non_empty_destination() {
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    db.append(&gauges(2, 0, 3 * HOUR, MIN)).unwrap();
    db.maintain(3 * HOUR).unwrap();
    let before = all(&db);
    let engine_files = tree(dir.path());

    let dest = backup.path().join("busy");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("keep.txt"), b"mine").unwrap();
    let err = db.snapshot(&dest).unwrap_err();
    assert!(err.to_string().contains(&dest.display().to_string()), "{err}");
    assert!(err.to_string().contains("not empty"), "{err}");
    assert_eq!(tree(&dest).into_keys().collect::<Vec<_>>(), vec![dest.join("keep.txt")]);

    let file = backup.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let err = db.snapshot(&file).unwrap_err();
    assert!(err.to_string().contains(&file.display().to_string()), "{err}");
    // Inside the engine's own directory: refused and removed again.
    let inner = dir.path().join("backup");
    let err = db.snapshot(&inner).unwrap_err();
    assert!(err.to_string().contains(&inner.display().to_string()), "{err}");
    assert!(!inner.exists());

    assert_eq!(tree(dir.path()), engine_files);
    assert_eq!(all(&db), before);
    db.append(&gauges(2, 3 * HOUR, 3 * HOUR + MIN, MIN)).unwrap();
    db.maintain(4 * HOUR).unwrap();
    // An empty directory is fine.
    let empty = backup.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    db.snapshot(&empty).unwrap();
    assert_eq!(all(&Tsdb::open(&empty, opts()).unwrap()), all(&db));
}

/// The snapshot keeps its data when the original compacts, applies retention, truncates its
/// WAL and finally disappears.
#[test]
fn snapshot_outlives_maintenance_and_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let dest = backup.path().join("snap");
    let o = TsdbOptions {
        retention: Duration::from_secs(6 * 3600),
        rollup_retention: Duration::from_secs(8 * 3600),
        ..opts()
    };
    let db = Tsdb::open(dir.path(), o.clone()).unwrap();
    db.append(&gauges(3, 0, 6 * HOUR, MIN)).unwrap();
    db.maintain(6 * HOUR).unwrap();
    db.append(&gauges(3, 6 * HOUR, 6 * HOUR + 20 * MIN, MIN)).unwrap();
    let (raw, roll) = (all(&db), rolled(&db));
    let snap = db.snapshot(&dest).unwrap();
    assert!(snap.blocks >= 2 && snap.rollups >= 1, "{snap:?}");

    // Retention deletes every block and rollup the snapshot linked; flush truncates the WAL.
    db.append(&gauges(3, 6 * HOUR + 20 * MIN, 30 * HOUR, 10 * MIN)).unwrap();
    db.flush().unwrap();
    db.maintain(33 * HOUR).unwrap();
    let oldest = all(&db).iter().map(|(_, s)| s[0].0).min().unwrap();
    assert!(oldest >= 24 * HOUR, "{oldest}");
    drop(db);
    std::fs::remove_dir_all(dir.path()).unwrap();

    let s = Tsdb::open(&dest, o).unwrap();
    assert_eq!(all(&s), raw);
    assert_eq!(rolled(&s), roll);
}
