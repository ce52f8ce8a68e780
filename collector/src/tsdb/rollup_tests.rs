//! Tests of block-format versioning and of rollups: per-window aggregates against values
//! computed from the raw samples, counter increases across resets, durability across reopen,
//! raw retention expiring under rollups, and `select_hinted`'s choice between rollups and raw.

use super::tests::Rng;
use super::*;
use crate::storage::{RollupFunc, SelectHints, SeriesSamples};
use tingzhen_core::{Labels, MatchOp, Matcher, STALE_NAN_BITS, Sample};

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
const RES: i64 = 5 * MIN;

fn opts() -> TsdbOptions {
    TsdbOptions { max_future: None, ..TsdbOptions::default() }
}

fn lbl(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn hints(func: RollupFunc) -> SelectHints {
    SelectHints { step_ms: RES, range_ms: RES, func: Some(func) }
}

/// A counter with resets and a stale gap, and a gauge with NaN and decimals, 10 s apart with jitter.
fn data(from: i64, to: i64) -> Vec<TimeSeries> {
    let mut rng = Rng(5);
    let (mut c, mut g) = (Vec::new(), Vec::new());
    let mut v = 0.0f64;
    let mut t = from;
    let mut k = 0u64;
    while t < to {
        let ts = t + (rng.next() % 4) as i64;
        v = if rng.next().is_multiple_of(97) { (rng.next() % 5) as f64 } else { v + (rng.next() % 300) as f64 };
        c.push(Sample::new(ts, v));
        let gv = match k % 211 {
            7 => f64::NAN,
            100 => f64::from_bits(STALE_NAN_BITS),
            _ => (rng.next() % 10_000) as f64 / 100.0 - 30.0,
        };
        g.push(Sample::new(ts, gv));
        t += 10_000;
        k += 1;
    }
    vec![
        TimeSeries::new(lbl(&[("__name__", "req_total"), ("host", "a")]), c),
        TimeSeries::new(lbl(&[("__name__", "temp"), ("host", "a")]), g),
    ]
}

fn stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// The expected rollup of one window computed directly from raw samples.
fn expect(samples: &[Sample], w: i64, func: RollupFunc) -> Option<f64> {
    let in_w: Vec<f64> =
        samples.iter().filter(|s| s.timestamp_ms >= w && s.timestamp_ms < w + RES).map(|s| s.value).collect();
    let vals: Vec<f64> = in_w.iter().copied().filter(|v| !stale(*v)).collect();
    if vals.is_empty() {
        return None;
    }
    let nonnan: Vec<f64> = vals.iter().copied().filter(|v| !v.is_nan()).collect();
    Some(match func {
        RollupFunc::Min => nonnan.iter().copied().fold(f64::NAN, f64::min),
        RollupFunc::Max => nonnan.iter().copied().fold(f64::NAN, f64::max),
        RollupFunc::Sum => vals.iter().sum(),
        RollupFunc::Count => vals.len() as f64,
        RollupFunc::Avg => vals.iter().sum::<f64>() / vals.len() as f64,
        RollupFunc::Last => *in_w.last().unwrap_or(&f64::NAN),
        RollupFunc::Counter => unreachable!(),
    })
}

fn same_value(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan() && stale(a) == stale(b))
}

/// Reset-aware increase between two times, Prometheus style, over raw samples.
fn raw_increase(samples: &[Sample], from: i64, to: i64) -> f64 {
    let vals: Vec<f64> = samples
        .iter()
        .filter(|s| s.timestamp_ms > from && s.timestamp_ms <= to && !s.value.is_nan())
        .map(|s| s.value)
        .collect();
    let mut prev = samples.iter().rev().find(|s| s.timestamp_ms <= from && !s.value.is_nan()).map(|s| s.value);
    let mut inc = 0.0;
    for v in vals {
        if let Some(p) = prev {
            inc += if v >= p { v - p } else { v };
        }
        prev = Some(v);
    }
    inc
}

/// Bit-exact comparison (NaN-safe).
fn bits(r: &[SeriesSamples]) -> Vec<(Labels, Vec<(i64, u64)>)> {
    r.iter()
        .map(|s| (s.labels.clone(), s.samples.iter().map(|p| (p.timestamp_ms, p.value.to_bits())).collect()))
        .collect()
}

fn one(r: Vec<SeriesSamples>, name: &str) -> SeriesSamples {
    r.into_iter().find(|s| s.labels.get("__name__") == Some(name)).expect("series present")
}

#[test]
fn rollups_match_raw_per_window_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let o = TsdbOptions { rollup_min_query_range: Duration::from_secs(3600), ..opts() };
    let series = data(0, 10 * HOUR);
    let db = Tsdb::open(dir.path(), o.clone()).unwrap();
    db.append(&series).unwrap();
    db.maintain(10 * HOUR).unwrap();
    assert!(db.stats().rollup_blocks > 0, "{:?}", db.stats());
    let wm = db.rollup_watermark.load(Ordering::Acquire);
    assert!(wm >= 4 * HOUR, "{wm}");
    let check = |db: &Tsdb| {
        for name in ["req_total", "temp"] {
            let raw = &series.iter().find(|s| s.labels.get("__name__") == Some(name)).unwrap().samples;
            let funcs = [
                RollupFunc::Min,
                RollupFunc::Max,
                RollupFunc::Sum,
                RollupFunc::Count,
                RollupFunc::Avg,
                RollupFunc::Last,
            ];
            for func in funcs {
                let got = one(db.select_hinted(&[], 0, 10 * HOUR, &hints(func)).unwrap(), name);
                // Every window stamped inside the range is there, from rollups and from raw.
                let mut n = 0;
                for w in (0..10 * HOUR).step_by(RES as usize) {
                    let stamp = w + RES - 1;
                    let want = expect(raw, w, func);
                    let have = got
                        .samples
                        .iter()
                        .find(|s| s.timestamp_ms == stamp || (stamp > 10 * HOUR && s.timestamp_ms >= w));
                    match (want, have) {
                        (Some(a), Some(b)) => {
                            let ok = if func == RollupFunc::Sum || func == RollupFunc::Avg {
                                (a - b.value).abs() <= 1e-9 * a.abs().max(1.0) || same_value(a, b.value)
                            } else {
                                same_value(a, b.value)
                            };
                            assert!(ok, "{name} {func:?} window {w}: want {a} got {}", b.value);
                            n += 1;
                        }
                        (None, Some(b)) => {
                            assert!(func == RollupFunc::Last && stale(b.value), "{name} {func:?} {w}: {b:?}")
                        }
                        (Some(a), None) => panic!("{name} {func:?} window {w} missing (want {a})"),
                        (None, None) => {}
                    }
                }
                assert!(n >= 110, "{name} {func:?}: {n} windows");
            }
        }
        // Counter: increase between any two window stamps equals the raw increase.
        let raw = &series[0].samples;
        let got = one(db.select_hinted(&[], 0, 10 * HOUR, &hints(RollupFunc::Counter)).unwrap(), "req_total");
        assert!(raw.windows(2).any(|p| p[1].value < p[0].value), "data has resets");
        for (i, j) in [(0usize, 5usize), (3, 60), (10, 110), (0, got.samples.len() - 1), (47, 49)] {
            let (a, b) = (got.samples[i], got.samples[j]);
            assert!(b.value >= a.value, "counter rollup is monotonic");
            let want = raw_increase(raw, a.timestamp_ms, b.timestamp_ms);
            assert!((b.value - a.value - want).abs() < 1e-6, "{i}..{j}: {} vs {want}", b.value - a.value);
        }
        assert_eq!(got.samples[0].value, raw.iter().rfind(|s| s.timestamp_ms < RES).unwrap().value);
    };
    check(&db);
    drop(db);
    let db = Tsdb::open(dir.path(), o.clone()).unwrap();
    assert_eq!(db.rollup_watermark.load(Ordering::Acquire), wm);
    check(&db);
    // Nothing is built twice.
    let before = db.stats().rollup_samples;
    db.maintain(10 * HOUR).unwrap();
    assert_eq!(db.stats().rollup_samples, before);
}

#[test]
fn raw_retention_expires_while_rollups_remain() {
    let dir = tempfile::tempdir().unwrap();
    let o = TsdbOptions {
        retention: Duration::from_secs(2 * 24 * 3600),
        rollup_retention: Duration::from_secs(30 * 24 * 3600),
        ..opts()
    };
    let db = Tsdb::open(dir.path(), o.clone()).unwrap();
    // Four days at one sample a minute, appended a day at a time as a collector would.
    let mut all = Vec::new();
    for d in 0..4 {
        let batch: Vec<TimeSeries> = vec![TimeSeries::new(
            lbl(&[("__name__", "load"), ("host", "b")]),
            (0..24 * 60).map(|i| Sample::new(d * DAY + i * MIN, ((d * 1440 + i) % 17) as f64)).collect(),
        )];
        all.extend(batch[0].samples.iter().copied());
        db.append(&batch).unwrap();
        db.maintain((d + 1) * DAY).unwrap();
    }
    db.flush().unwrap();
    db.maintain(4 * DAY).unwrap();
    let raw = db.select(&[], 0, DAY).unwrap();
    assert!(raw.is_empty(), "raw day 0 expired");
    assert!(db.stats().rollup_blocks >= 3, "{:?}", db.stats());
    // Day 0 answered from rollups even for a short range: raw is gone there.
    let ms = [Matcher::new(MatchOp::Equal, "__name__", "load").unwrap()];
    let h = SelectHints { step_ms: HOUR, range_ms: HOUR, func: Some(RollupFunc::Max) };
    let got = db.select_hinted(&ms, 2 * HOUR, 4 * HOUR, &h).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].samples.len(), 24);
    for s in &got[0].samples {
        let w = s.timestamp_ms + 1 - RES;
        let want = all.iter().filter(|x| x.timestamp_ms >= w && x.timestamp_ms < w + RES).map(|x| x.value);
        assert_eq!(s.value, want.fold(f64::MIN, f64::max));
    }
    drop(db);
    let db = Tsdb::open(dir.path(), o).unwrap();
    assert_eq!(db.select_hinted(&ms, 2 * HOUR, 4 * HOUR, &h).unwrap(), got);
    // Rollup retention applies separately.
    db.maintain(40 * DAY).unwrap();
    assert_eq!(db.stats().rollup_blocks, 0);
}

#[test]
fn select_hinted_falls_back_to_raw() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    db.append(&data(0, 6 * HOUR)).unwrap();
    db.maintain(6 * HOUR).unwrap();
    assert!(db.stats().rollup_blocks > 0);
    let raw = db.select(&[], 0, 6 * HOUR).unwrap();
    let cases = [
        SelectHints::default(),
        SelectHints { step_ms: 15_000, range_ms: RES, func: Some(RollupFunc::Max) },
        SelectHints { step_ms: RES, range_ms: MIN, func: Some(RollupFunc::Max) },
        // Long enough step and range, but a 6 h range of raw data that is all still kept.
        hints(RollupFunc::Max),
    ];
    for h in cases {
        assert_eq!(bits(&db.select_hinted(&[], 0, 6 * HOUR, &h).unwrap()), bits(&raw), "{h:?}");
    }
    assert!(!db.rollups_apply(0, 6 * HOUR, &hints(RollupFunc::Sum)));
    // Longer than two days: rollups (windows, not raw samples).
    assert!(db.rollups_apply(0, 3 * DAY, &hints(RollupFunc::Sum)));
    let got = db.select_hinted(&[], 0, 3 * DAY, &hints(RollupFunc::Count)).unwrap();
    assert_eq!(got[0].samples.len(), 72);
    // Disabled rollups never apply.
    let dir2 = tempfile::tempdir().unwrap();
    let off = Tsdb::open(dir2.path(), TsdbOptions { rollup_resolution: Duration::ZERO, ..opts() }).unwrap();
    off.append(&data(0, HOUR)).unwrap();
    let (a, b) =
        (off.select_hinted(&[], 0, 3 * DAY, &hints(RollupFunc::Sum)).unwrap(), off.select(&[], 0, 3 * DAY).unwrap());
    assert_eq!(bits(&a), bits(&b));
}

#[test]
fn old_version_and_corrupt_blocks_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Tsdb::open(dir.path(), opts()).unwrap();
        db.append(&data(0, HOUR)).unwrap();
        db.flush().unwrap();
    }
    let block = std::fs::read_dir(dir.path().join("blocks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("meta.json").exists())
        .unwrap();
    let meta_path = block.join("meta.json");
    let meta = std::fs::read_to_string(&meta_path).unwrap();
    // An old-format block: refused with a message that names the version.
    std::fs::write(&meta_path, meta.replace("\"version\": 2", "\"version\": 1")).unwrap();
    let err = Tsdb::open(dir.path(), opts()).err().expect("old block refused").to_string();
    assert!(err.contains("version 1") && err.contains("not supported"), "{err}");
    std::fs::write(&meta_path, &meta).unwrap();
    assert_eq!(Tsdb::open(dir.path(), opts()).unwrap().select(&[], 0, HOUR).unwrap().len(), 2);
    // A flipped byte in the chunks file: queries fail with a corruption error, no panic.
    let chunks = block.join("chunks");
    let mut bytes = std::fs::read(&chunks).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x10;
    std::fs::write(&chunks, &bytes).unwrap();
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    let err = db.select(&[], 0, HOUR).unwrap_err();
    assert!(matches!(err, crate::storage::StorageError::Corrupt(_)), "{err}");
    drop(db);
    // A damaged index is refused at open.
    let index = block.join("index");
    let mut bytes = std::fs::read(&index).unwrap();
    bytes[10] ^= 0x01;
    std::fs::write(&index, &bytes).unwrap();
    assert!(Tsdb::open(dir.path(), opts()).err().expect("corrupt index refused").to_string().contains("index"));
}
