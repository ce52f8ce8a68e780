//! Backups end to end inside one process: take one while the engine and the store hold data,
//! verify it, restore it into an empty directory and read everything back; tampering, pruning,
//! leftovers of a crashed backup, and refusals.

use super::*;
use crate::storage::Queryable;
use crate::tsdb::TsdbOptions;
use tingzhen_core::token::Scope;
use tingzhen_core::{Labels, Sample, TimeSeries};

const T0: i64 = 1_795_399_200_000;

struct Site {
    _tmp: tempfile::TempDir,
    backups_dir: PathBuf,
    tsdb: Arc<Tsdb>,
    db: Arc<Db>,
}

fn opts() -> TsdbOptions {
    TsdbOptions { max_future: None, ..TsdbOptions::default() }
}

fn site() -> Site {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let tsdb = Arc::new(Tsdb::open(&data.join("tsdb"), opts()).unwrap());
    let db = Arc::new(Db::open(&data.join("tingzhen.db")).unwrap());
    let backups_dir = tmp.path().join("backups");
    Site { _tmp: tmp, backups_dir, tsdb, db }
}

fn write(tsdb: &Tsdb, name: &str, from: i64, n: i64) {
    let samples = (0..n).map(|i| Sample::new(from + i * 15_000, i as f64)).collect();
    tsdb.append(&[TimeSeries::new(Labels::from_pairs([("__name__", name), ("host", "his-01")]), samples)]).unwrap();
}

fn samples(tsdb: &Tsdb) -> usize {
    tsdb.select(&[], i64::MIN, i64::MAX).unwrap().iter().map(|s| s.samples.len()).sum()
}

fn backups(s: &Site, keep: usize) -> Backups {
    let config = BackupConfig { dir: s.backups_dir.display().to_string(), interval: default_interval(), keep };
    Backups::new(config, s.tsdb.clone(), s.db.clone())
}

#[test]
fn a_backup_restores_into_an_empty_directory_with_everything_it_held() {
    let s = site();
    write(&s.tsdb, "node_load1", T0, 200);
    s.db.create_token("ward-agent", &[Scope::Ingest], &[]).unwrap();
    let b = backups(&s, 7);
    let info = b.run(T0 + 3_600_000).unwrap();
    assert_eq!(info.name, "tingzhen-20261123T030000.000Z");
    assert!(info.relational_store && info.files >= 2 && info.bytes > 0, "{info:?}");
    assert_eq!(b.last_success_ms(), T0 + 3_600_000);
    // Written after the backup: not in it.
    write(&s.tsdb, "node_load5", T0, 10);
    let manifest = verify(Path::new(&info.path)).unwrap();
    assert!(manifest.files.iter().any(|f| f.path == "tingzhen.db"));
    assert!(manifest.files.iter().any(|f| f.path.starts_with("tsdb/")));

    let target = s.backups_dir.parent().unwrap().join("restored");
    restore(Path::new(&info.path), &target).unwrap();
    let tsdb = Tsdb::open(&target.join("tsdb"), opts()).unwrap();
    assert_eq!(samples(&tsdb), 200, "the restored engine holds what was acknowledged before the backup");
    let db = Db::open(&target.join("tingzhen.db")).unwrap();
    let tokens = db.list_tokens().unwrap();
    assert!(tokens.iter().any(|t| t.name == "ward-agent"), "the store came back too");
    // A restore never overwrites data.
    let e = restore(Path::new(&info.path), &target).unwrap_err().to_string();
    assert!(e.contains("tsdb") && e.contains("already exists"), "{e}");
}

#[test]
fn verify_names_a_modified_a_missing_and_an_extra_file() {
    let s = site();
    write(&s.tsdb, "node_load1", T0, 50);
    let info = backups(&s, 7).run(T0).unwrap();
    let dir = PathBuf::from(&info.path);
    let db_file = dir.join("tingzhen.db");
    let mut bytes = std::fs::read(&db_file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&db_file, &bytes).unwrap();
    let e = verify(&dir).unwrap_err().to_string();
    assert!(e.contains("tingzhen.db") && e.contains("modified"), "{e}");
    bytes[last] ^= 0xff;
    std::fs::write(&db_file, &bytes).unwrap();
    verify(&dir).unwrap();

    std::fs::write(dir.join("tsdb").join("planted"), b"x").unwrap();
    let e = verify(&dir).unwrap_err().to_string();
    assert!(e.contains("planted") && e.contains("not in the manifest"), "{e}");
    std::fs::remove_file(dir.join("tsdb").join("planted")).unwrap();

    std::fs::remove_file(&db_file).unwrap();
    let e = verify(&dir).unwrap_err().to_string();
    assert!(e.contains("tingzhen.db") && e.contains("missing"), "{e}");
    let target = dir.parent().unwrap().join("restored");
    assert!(restore(&dir, &target).is_err(), "a damaged backup is not restored");
    assert!(!target.join("tsdb").exists(), "nothing copied from a damaged backup");
}

#[test]
fn old_backups_beyond_keep_and_crashed_leftovers_are_removed() {
    let s = site();
    write(&s.tsdb, "node_load1", T0, 20);
    let b = backups(&s, 2);
    // A crash mid-backup left this behind; it is never listed and the next run removes it.
    let leftover = s.backups_dir.join("tingzhen-20261123T010000.000Z.partial");
    std::fs::create_dir_all(leftover.join("tsdb")).unwrap();
    assert!(list(&s.backups_dir).unwrap().is_empty());
    for hour in 0..3 {
        b.run(T0 + hour * 3_600_000).unwrap();
    }
    let names: Vec<String> =
        list(&s.backups_dir).unwrap().iter().map(|p| p.file_name().unwrap().to_string_lossy().to_string()).collect();
    assert_eq!(names, ["tingzhen-20261123T030000.000Z", "tingzhen-20261123T040000.000Z"], "the newest 2 are kept");
    assert!(!leftover.exists());
}

#[test]
fn a_failed_backup_is_counted_and_leaves_nothing_that_looks_like_one() {
    let s = site();
    write(&s.tsdb, "node_load1", T0, 20);
    std::fs::create_dir_all(s.backups_dir.parent().unwrap()).unwrap();
    std::fs::write(&s.backups_dir, b"not a directory").unwrap();
    let b = backups(&s, 7);
    let e = b.run(T0).unwrap_err().to_string();
    assert!(e.contains("backups"), "the error names the path: {e}");
    assert_eq!((b.failures(), b.last_success_ms()), (1, 0));
    std::fs::remove_file(&s.backups_dir).unwrap();
    b.run(T0).unwrap();
    assert_eq!(list(&s.backups_dir).unwrap().len(), 1);
    let e = b.run(T0).unwrap_err().to_string();
    assert!(e.contains("already exists"), "{e}");
    assert_eq!(list(&s.backups_dir).unwrap().len(), 1);
    assert!(
        std::fs::read_dir(&s.backups_dir).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".partial"))
    );
}

#[test]
fn config_is_checked() {
    let ok = BackupConfig { dir: "/backup".into(), interval: default_interval(), keep: 7 };
    ok.validate().unwrap();
    let e = BackupConfig { keep: 0, ..ok.clone() }.validate().unwrap_err();
    assert!(e.starts_with("storage.backup.keep"), "{e}");
    let e = BackupConfig { interval: "10s".parse().unwrap(), ..ok.clone() }.validate().unwrap_err();
    assert!(e.starts_with("storage.backup.interval"), "{e}");
    let e = BackupConfig { dir: " ".into(), ..ok }.validate().unwrap_err();
    assert!(e.starts_with("storage.backup.dir"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_takes_backups_at_its_interval_and_stops_with_the_server() {
    let s = site();
    write(&s.tsdb, "node_load1", T0, 20);
    let b = Arc::new(backups(&s, 7));
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(schedule(b.clone(), std::time::Duration::from_millis(300), rx));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!s.backups_dir.exists() || list(&s.backups_dir).unwrap().is_empty(), "none before the first interval");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while list(&s.backups_dir).map(|l| l.len()).unwrap_or(0) < 2 {
        assert!(std::time::Instant::now() < deadline, "the schedule took fewer than 2 backups in 30 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stop.send(true).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(30), task).await.expect("the schedule stops").unwrap();
    assert_eq!(b.failures(), 0);
    assert!(b.last_success_ms() > 0);
}
