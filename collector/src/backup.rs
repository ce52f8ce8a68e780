//! Backups of a collector's state (MLPS: automatic backups on a configurable period; PLAT-6):
//! the embedded engine (`Tsdb::snapshot`, taken while ingest goes on) and the relational store
//! (SQLite `VACUUM INTO`; a PostgreSQL store is the database server's to back up).
//!
//! A backup is a directory `tingzhen-<UTC time>` under `[storage.backup] dir` holding `tsdb/`,
//! `tingzhen.db` and `manifest.json` (every file with its size and SHA-256). It is written as
//! `<name>.partial` and renamed only when complete and fsync'd, so a crash mid-backup never
//! leaves something that looks like a backup; leftovers are removed by the next run. The
//! newest `keep` backups are kept. `verify` re-reads every file against the manifest, and
//! `restore` (server stopped) verifies first, then copies into an empty data directory.

use crate::tsdb::{Tsdb, TsdbError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use tingzhen_core::config::HumanDuration;
use tingzhen_core::db::{Db, DbError};

/// `[storage.backup]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// Where backups are written: best another disk or a mounted remote share.
    pub dir: String,
    /// How often a backup is taken. Default 24 hours.
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// How many backups are kept (the oldest beyond are deleted). Default 7.
    #[serde(default = "default_keep")]
    pub keep: usize,
}

fn default_interval() -> HumanDuration {
    HumanDuration::from_secs(86_400)
}

fn default_keep() -> usize {
    7
}

impl BackupConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.dir.trim().is_empty() {
            return Err("storage.backup.dir: must name a directory".into());
        }
        if self.interval.0 < std::time::Duration::from_secs(60) {
            return Err("storage.backup.interval: must be at least 1m".into());
        }
        if self.keep == 0 {
            return Err("storage.backup.keep: must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("time-series engine snapshot: {0}")]
    Tsdb(#[from] TsdbError),
    #[error("relational store copy: {0}")]
    Db(#[from] DbError),
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io { path: path.display().to_string(), source }
}

fn invalid(path: &Path, reason: impl Into<String>) -> BackupError {
    BackupError::Invalid { path: path.display().to_string(), reason: reason.into() }
}

const MANIFEST: &str = "manifest.json";
const FORMAT: u32 = 1;
const PREFIX: &str = "tingzhen-";
const PARTIAL: &str = ".partial";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// What a backup holds; `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub version: String,
    pub created_ms: i64,
    /// Whether `tingzhen.db` is in it (false when the store is PostgreSQL).
    pub relational_store: bool,
    pub files: Vec<ManifestFile>,
}

/// A finished backup.
#[derive(Debug, Clone, Serialize)]
pub struct BackupInfo {
    pub name: String,
    pub path: String,
    pub created_ms: i64,
    pub files: usize,
    pub bytes: u64,
    pub relational_store: bool,
}

/// Takes backups of one collector's engine and store; at most one at a time.
pub struct Backups {
    config: BackupConfig,
    tsdb: Arc<Tsdb>,
    db: Arc<Db>,
    running: parking_lot::Mutex<()>,
    last_success_ms: AtomicI64,
    failures: AtomicU64,
}

impl Backups {
    pub fn new(config: BackupConfig, tsdb: Arc<Tsdb>, db: Arc<Db>) -> Self {
        Self {
            config,
            tsdb,
            db,
            running: parking_lot::Mutex::new(()),
            last_success_ms: AtomicI64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> &BackupConfig {
        &self.config
    }

    /// Unix ms of the last successful backup of this process (0: none yet).
    pub fn last_success_ms(&self) -> i64 {
        self.last_success_ms.load(Ordering::Relaxed)
    }

    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Takes a backup now (blocking), then deletes the oldest beyond `keep`. Counted in
    /// `failures` when it fails.
    pub fn run(&self, now_ms: i64) -> Result<BackupInfo, BackupError> {
        let _one = self.running.lock();
        match self.create(now_ms) {
            Ok(info) => {
                self.last_success_ms.store(now_ms, Ordering::Relaxed);
                if let Err(e) = prune(Path::new(&self.config.dir), self.config.keep) {
                    tracing::warn!(error = %e, "could not delete old backups");
                }
                Ok(info)
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    fn create(&self, now_ms: i64) -> Result<BackupInfo, BackupError> {
        let root = PathBuf::from(&self.config.dir);
        std::fs::create_dir_all(&root).map_err(io(&root))?;
        remove_partials(&root)?;
        let name = backup_name(now_ms);
        let partial = root.join(format!("{name}{PARTIAL}"));
        let done = root.join(&name);
        if done.exists() {
            return Err(invalid(&done, "a backup of this millisecond already exists"));
        }
        std::fs::create_dir(&partial).map_err(io(&partial))?;
        let result = self.fill(&partial, now_ms);
        let manifest = match result {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&partial);
                return Err(e);
            }
        };
        std::fs::rename(&partial, &done).map_err(io(&done))?;
        fsync_dir(&root)?;
        Ok(BackupInfo {
            name,
            path: done.display().to_string(),
            created_ms: now_ms,
            files: manifest.files.len(),
            bytes: manifest.files.iter().map(|f| f.bytes).sum(),
            relational_store: manifest.relational_store,
        })
    }

    fn fill(&self, dir: &Path, now_ms: i64) -> Result<Manifest, BackupError> {
        self.tsdb.snapshot(&dir.join("tsdb"))?;
        let relational_store = self.db.backup_to(&dir.join("tingzhen.db"))?;
        let manifest = Manifest {
            format: FORMAT,
            version: env!("CARGO_PKG_VERSION").into(),
            created_ms: now_ms,
            relational_store,
            files: list_files(dir)?,
        };
        let path = dir.join(MANIFEST);
        let text = serde_json::to_vec_pretty(&manifest).map_err(|e| invalid(&path, e.to_string()))?;
        std::fs::write(&path, text).map_err(io(&path))?;
        std::fs::File::open(&path).and_then(|f| f.sync_all()).map_err(io(&path))?;
        for d in dirs_under(dir)? {
            fsync_dir(&d)?;
        }
        Ok(manifest)
    }
}

/// `tingzhen-20261127T044000.123Z`: sorts by time; a scheduled and an asked-for backup in the
/// same second get different names.
fn backup_name(now_ms: i64) -> String {
    let t = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(now_ms).unwrap_or_default();
    format!("{PREFIX}{}", t.format("%Y%m%dT%H%M%S%.3fZ"))
}

/// Takes a backup every `every` (the first one `every` after the start, so a restart loop does
/// not fill the backup disk) until `shutdown` turns true.
pub async fn schedule(
    backups: Arc<Backups>,
    every: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let b = backups.clone();
                match tokio::task::spawn_blocking(move || b.run(tingzhen_core::now_ms())).await {
                    Ok(Ok(info)) => tracing::info!(backup = %info.path, bytes = info.bytes, "backup written"),
                    Ok(Err(e)) => tracing::error!(error = %e, "backup failed"),
                    Err(e) => tracing::error!(error = %e, "backup task panicked"),
                }
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
}

fn fsync_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(io(dir))
}

/// Every directory under `dir`, `dir` included.
fn dirs_under(dir: &Path) -> Result<Vec<PathBuf>, BackupError> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let d = out[i].clone();
        for e in std::fs::read_dir(&d).map_err(io(&d))? {
            let e = e.map_err(io(&d))?;
            if e.file_type().map_err(io(&e.path()))?.is_dir() {
                out.push(e.path());
            }
        }
        i += 1;
    }
    Ok(out)
}

/// Every file under `dir` (the manifest aside), relative, sorted, with size and SHA-256.
fn list_files(dir: &Path) -> Result<Vec<ManifestFile>, BackupError> {
    let mut files = Vec::new();
    for d in dirs_under(dir)? {
        for e in std::fs::read_dir(&d).map_err(io(&d))? {
            let e = e.map_err(io(&d))?;
            let path = e.path();
            if !e.file_type().map_err(io(&path))?.is_file() {
                continue;
            }
            let rel = relative(dir, &path)?;
            if rel == MANIFEST {
                continue;
            }
            let (bytes, sha256) = hash_file(&path)?;
            files.push(ManifestFile { path: rel, bytes, sha256 });
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

fn relative(root: &Path, path: &Path) -> Result<String, BackupError> {
    let rel = path.strip_prefix(root).map_err(|_| invalid(path, "outside the backup"))?;
    rel.to_str().map(|s| s.replace('\\', "/")).ok_or_else(|| invalid(path, "not a UTF-8 path"))
}

fn hash_file(path: &Path) -> Result<(u64, String), BackupError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((bytes, hex::encode(h.finalize())))
}

/// Leftovers of backups that did not finish (a crash, a full disk).
fn remove_partials(root: &Path) -> Result<(), BackupError> {
    for e in std::fs::read_dir(root).map_err(io(root))? {
        let e = e.map_err(io(root))?;
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with(PREFIX) && name.ends_with(PARTIAL) {
            std::fs::remove_dir_all(e.path()).map_err(io(&e.path()))?;
        }
    }
    Ok(())
}

/// Finished backups under `root`, oldest first.
pub fn list(root: &Path) -> Result<Vec<PathBuf>, BackupError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).map_err(io(root))? {
        let e = e.map_err(io(root))?;
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with(PREFIX) && !name.ends_with(PARTIAL) && e.path().join(MANIFEST).is_file() {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Deletes the oldest finished backups beyond `keep`.
fn prune(root: &Path, keep: usize) -> Result<(), BackupError> {
    let all = list(root)?;
    for old in &all[..all.len().saturating_sub(keep)] {
        std::fs::remove_dir_all(old).map_err(io(old))?;
    }
    Ok(())
}

/// Reads the manifest and checks every file it lists (size and SHA-256), and that nothing
/// else is there. The first difference is the error.
pub fn verify(backup: &Path) -> Result<Manifest, BackupError> {
    let path = backup.join(MANIFEST);
    let text = std::fs::read(&path).map_err(io(&path))?;
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|e| invalid(&path, format!("not a backup manifest: {e}")))?;
    if manifest.format != FORMAT {
        return Err(invalid(&path, format!("format {} is not {FORMAT}", manifest.format)));
    }
    let found = list_files(backup)?;
    for want in &manifest.files {
        let file = backup.join(&want.path);
        let Some(got) = found.iter().find(|f| f.path == want.path) else {
            return Err(invalid(&file, "missing"));
        };
        if got.bytes != want.bytes || got.sha256 != want.sha256 {
            return Err(invalid(&file, "modified since the backup (size or SHA-256 differs)"));
        }
    }
    if let Some(extra) = found.iter().find(|f| !manifest.files.iter().any(|w| w.path == f.path)) {
        return Err(invalid(&backup.join(&extra.path), "not in the manifest"));
    }
    Ok(manifest)
}

/// Copies a verified backup into `data_dir` (the server stopped). Refuses a data directory
/// that already holds an engine or a store, naming it, so a restore never overwrites data.
pub fn restore(backup: &Path, data_dir: &Path) -> Result<Manifest, BackupError> {
    let manifest = verify(backup)?;
    for existing in [data_dir.join("tsdb"), data_dir.join("tingzhen.db")] {
        if existing.exists() {
            return Err(invalid(&existing, "already exists; restore into an empty data directory"));
        }
    }
    for f in &manifest.files {
        let (from, to) = (backup.join(&f.path), data_dir.join(&f.path));
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::copy(&from, &to).map_err(io(&to))?;
        std::fs::File::open(&to).and_then(|f| f.sync_all()).map_err(io(&to))?;
    }
    for d in dirs_under(data_dir)? {
        fsync_dir(&d)?;
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests;
