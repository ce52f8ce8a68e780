//! Consistent copies of the engine directory (scheduled backups) taken while ingest goes on.
//!
//! Blocks and rollup blocks are immutable once published, so they are hard-linked (copied when
//! linking fails, e.g. onto another filesystem). The WAL is copied up to the committed length
//! of each segment, read while appends are held out; appends only ever add bytes beyond it.
//! `maintain_lock` is held throughout, so no block, segment or checkpoint the copy relies on
//! is deleted or replaced meanwhile, and the block set matches the WAL (replay skips samples
//! below the highest block floor, exactly as in the original).

use super::maintain::TMP_PREFIX;
use super::wal::{WalExtent, fsync_dir};
use super::{Tsdb, TsdbError, io_err};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// What one [`Tsdb::snapshot`] wrote.
#[derive(Debug, Clone, Default)]
pub struct SnapshotStats {
    /// Raw blocks in the snapshot.
    pub blocks: usize,
    /// Rollup blocks in the snapshot.
    pub rollups: usize,
    /// WAL segments copied (the checkpoint, if any, is not counted).
    pub wal_segments: usize,
    /// Bytes of all files in the snapshot, linked or copied.
    pub bytes: u64,
}

impl Tsdb {
    /// Writes a consistent copy of the engine into `dest` (must not exist or be an empty
    /// directory; created). Opening `dest` with `Tsdb::open` gives every sample acknowledged
    /// before the call started and no partial batch. Ingest continues meanwhile (appends wait
    /// only for the short moment the WAL lengths are taken); maintenance waits until the copy
    /// is done.
    ///
    /// Block files are hard-linked when `dest` is on the same filesystem (so the snapshot
    /// shares their disk space and survives the engine deleting them), copied otherwise. The
    /// head needs no flush: it is carried by the WAL and rebuilt when the snapshot is opened.
    /// Only a snapshot for which this returned `Ok` is complete; on error what was written to
    /// `dest` is removed (best effort).
    pub fn snapshot(&self, dest: &Path) -> Result<SnapshotStats, TsdbError> {
        let created = prepare_dest(dest)?;
        if let (Ok(d), Ok(own)) = (dest.canonicalize(), self.dir.canonicalize())
            && d.starts_with(&own)
        {
            discard(dest, created);
            let source = io::Error::new(io::ErrorKind::InvalidInput, "snapshot destination is inside the engine dir");
            return Err(TsdbError::Io { path: dest.to_path_buf(), source });
        }
        let res = {
            let _m = self.maintain_lock.lock();
            self.snapshot_locked(dest)
        };
        match res {
            Ok(stats) => {
                if created && let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
                    fsync_dir(parent)?;
                }
                tracing::info!(dest = %dest.display(), ?stats, "tsdb snapshot written");
                Ok(stats)
            }
            Err(e) => {
                discard(dest, created);
                Err(e)
            }
        }
    }

    /// The copy proper; `maintain_lock` is held by the caller.
    fn snapshot_locked(&self, dest: &Path) -> Result<SnapshotStats, TsdbError> {
        // Only maintenance changes these lists, so they stay valid (and their files on disk)
        // until the lock is released.
        let blocks = self.blocks.read().clone();
        let rollups = self.rollups.read().clone();
        // Appenders hold the gate shared from validation until their batch is fsync'd and
        // applied, so with it held exclusively every record in the WAL belongs to a finished
        // append, and every acknowledged batch lies wholly below the lengths taken here.
        let wal = {
            let _g = self.gate.write();
            self.wal.committed()?
        };

        let mut stats = SnapshotStats::default();
        let mut fell_back = false;
        let blocks_dest = dest.join("blocks");
        mkdir(&blocks_dest)?;
        for b in &blocks {
            stats.bytes += link_block(&b.dir, &blocks_dest, &mut fell_back)?;
            stats.blocks += 1;
        }
        fsync_dir(&blocks_dest)?;
        if self.rollup_ms > 0 {
            let rollups_parent = dest.join("rollups");
            let rollups_dest = rollups_parent.join(format!("{}ms", self.rollup_ms));
            mkdir(&rollups_parent)?;
            mkdir(&rollups_dest)?;
            for b in &rollups {
                stats.bytes += link_block(&b.dir, &rollups_dest, &mut fell_back)?;
                stats.rollups += 1;
            }
            fsync_dir(&rollups_dest)?;
            fsync_dir(&rollups_parent)?;
        }
        stats.bytes += copy_wal(&wal, &dest.join("wal"), &mut stats.wal_segments)?;
        fsync_dir(dest)?;
        if fell_back {
            tracing::info!(dest = %dest.display(), "snapshot copied block files (hard links not possible)");
        }
        Ok(stats)
    }
}

/// Checks `dest` is absent or an empty directory and makes sure it exists; returns whether it
/// was created.
fn prepare_dest(dest: &Path) -> Result<bool, TsdbError> {
    match fs::read_dir(dest) {
        Ok(mut entries) => match entries.next() {
            None => Ok(false),
            Some(Err(e)) => Err(io_err(dest)(e)),
            Some(Ok(_)) => Err(TsdbError::Io {
                path: dest.to_path_buf(),
                source: io::Error::new(io::ErrorKind::DirectoryNotEmpty, "snapshot destination is not empty"),
            }),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dest).map_err(io_err(dest))?;
            Ok(true)
        }
        Err(e) => Err(io_err(dest)(e)),
    }
}

/// Removes what a failed snapshot left in `dest` (all of it was written by us: `dest` was
/// checked to be absent or empty).
fn discard(dest: &Path, created: bool) {
    let res = if created {
        fs::remove_dir_all(dest)
    } else {
        fs::read_dir(dest).and_then(|entries| {
            for e in entries {
                let e = e?;
                if e.file_type()?.is_dir() { fs::remove_dir_all(e.path()) } else { fs::remove_file(e.path()) }?;
            }
            Ok(())
        })
    };
    if let Err(e) = res {
        tracing::warn!(dest = %dest.display(), error = %e, "could not remove a failed snapshot");
    }
}

fn mkdir(path: &Path) -> Result<(), TsdbError> {
    fs::create_dir(path).map_err(io_err(path))
}

/// Links (or copies) one block directory into `parent`, under a temporary name first so an
/// interrupted snapshot never holds a half block that would load (`load_blocks` removes it).
/// Returns the bytes of its files.
fn link_block(src: &Path, parent: &Path, fell_back: &mut bool) -> Result<u64, TsdbError> {
    let Some(name) = src.file_name() else {
        return Err(TsdbError::Corrupt(format!("block dir {} has no name", src.display())));
    };
    let tmp = parent.join(format!("{TMP_PREFIX}{}", name.to_string_lossy()));
    mkdir(&tmp)?;
    let mut bytes = 0;
    for e in fs::read_dir(src).map_err(io_err(src))? {
        let e = e.map_err(io_err(src))?;
        let path = e.path();
        if !e.file_type().map_err(io_err(&path))?.is_file() {
            continue;
        }
        bytes += link_or_copy(&path, &tmp.join(e.file_name()), fell_back)?;
    }
    fsync_dir(&tmp)?;
    let final_path = parent.join(name);
    fs::rename(&tmp, &final_path).map_err(io_err(&final_path))?;
    Ok(bytes)
}

/// Hard-links an immutable file, or copies it (fsync'd) when linking is not possible.
fn link_or_copy(src: &Path, dst: &Path, fell_back: &mut bool) -> Result<u64, TsdbError> {
    match fs::hard_link(src, dst) {
        Ok(()) => Ok(fs::metadata(dst).map_err(io_err(dst))?.len()),
        Err(e) => {
            tracing::debug!(src = %src.display(), error = %e, "hard link failed; copying");
            *fell_back = true;
            copy_prefix(src, dst, None)
        }
    }
}

/// Copies `src` (its first `len` bytes if given, which must exist) to a new file `dst` and
/// fsyncs it.
fn copy_prefix(src: &Path, dst: &Path, len: Option<u64>) -> Result<u64, TsdbError> {
    let mut from = File::open(src).map_err(io_err(src))?;
    let mut to = File::options().write(true).create_new(true).open(dst).map_err(io_err(dst))?;
    let copied = match len {
        Some(n) => io::copy(&mut (&mut from).take(n), &mut to),
        None => io::copy(&mut from, &mut to),
    }
    .map_err(io_err(dst))?;
    if let Some(n) = len
        && copied != n
    {
        let source = io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("WAL segment holds {copied} bytes, {n} were committed"),
        );
        return Err(TsdbError::Io { path: src.to_path_buf(), source });
    }
    to.sync_all().map_err(io_err(dst))?;
    Ok(copied)
}

/// Copies the committed prefix of every live segment and the checkpoint into `dir`. Segments
/// are always copied, never linked: replay truncates a torn or corrupt segment in place, and
/// that must not reach the other copy.
fn copy_wal(wal: &WalExtent, dir: &Path, segments: &mut usize) -> Result<u64, TsdbError> {
    mkdir(dir)?;
    let mut bytes = 0;
    let file_name = |p: &PathBuf| -> Result<PathBuf, TsdbError> {
        p.file_name()
            .map(|n| dir.join(n))
            .ok_or_else(|| TsdbError::Corrupt(format!("WAL file {} has no name", p.display())))
    };
    if let Some(cp) = &wal.checkpoint {
        bytes += copy_prefix(cp, &file_name(cp)?, None)?;
    }
    for (seg, len) in &wal.segments {
        bytes += copy_prefix(seg, &file_name(seg)?, Some(*len))?;
        *segments += 1;
    }
    fsync_dir(dir)?;
    Ok(bytes)
}
