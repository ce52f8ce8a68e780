//! The write-ahead log: numbered segment files of CRC-framed records, group-committed fsyncs,
//! replay that truncates a torn tail, and truncation behind a series checkpoint once the data
//! of old segments is safely in blocks.
//!
//! Frame: `len: u32 LE | crc32(payload): u32 LE | payload`. Payload type 1 = series
//! (`ref, labels`…), type 2 = samples (`count, base_t, (ref, t - base_t, value bits)…`).

use super::encoding::{Cursor, DecodeError, put_uvarint, put_varint};
use parking_lot::{Condvar, Mutex};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const REC_SERIES: u8 = 1;
pub const REC_SAMPLES: u8 = 2;
const FRAME_HEADER: usize = 8;
/// A record larger than this is treated as garbage (a torn length field), not allocated.
const MAX_RECORD: usize = 256 << 20;
const CHECKPOINT_PREFIX: &str = "checkpoint.";

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("WAL I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("WAL is unusable after an earlier write or fsync failure: {0}")]
    Failed(String),
    #[error("corrupt WAL record in {path} at offset {offset}: {reason}")]
    Corrupt { path: PathBuf, offset: u64, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io { path: path.to_path_buf(), source }
}

pub fn fsync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(io_err(dir))
}

/// Appends one framed record to `buf`; `payload` is built by the closure after the header.
pub fn frame(buf: &mut Vec<u8>, build: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; FRAME_HEADER]);
    build(buf);
    let len = (buf.len() - start - FRAME_HEADER) as u32;
    let crc = crc32fast::hash(&buf[start + FRAME_HEADER..]);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Builds a samples record payload (type byte included).
pub fn encode_samples(buf: &mut Vec<u8>, samples: &[(u64, i64, f64)]) {
    buf.push(REC_SAMPLES);
    put_uvarint(buf, samples.len() as u64);
    let base = samples.first().map_or(0, |s| s.1);
    put_varint(buf, base);
    for &(r, t, v) in samples {
        put_uvarint(buf, r);
        put_varint(buf, t.wrapping_sub(base));
        buf.extend_from_slice(&v.to_bits().to_le_bytes());
    }
}

pub fn decode_samples(payload: &[u8], mut f: impl FnMut(u64, i64, f64)) -> Result<(), DecodeError> {
    let mut c = Cursor::new(payload);
    if c.u8()? != REC_SAMPLES {
        return Err(DecodeError("not a samples record"));
    }
    let n = c.len(payload.len())?;
    let base = c.varint()?;
    for _ in 0..n {
        let r = c.uvarint()?;
        let t = base.wrapping_add(c.varint()?);
        let v = f64::from_bits(c.u64_le()?);
        f(r, t, v);
    }
    Ok(())
}

/// Series record entries: `ref` and the canonical label encoding (see `encode_labels`).
pub fn decode_series<'a>(
    payload: &'a [u8],
    mut f: impl FnMut(u64, &mut Cursor<'a>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let mut c = Cursor::new(payload);
    if c.u8()? != REC_SERIES {
        return Err(DecodeError("not a series record"));
    }
    while !c.is_empty() {
        let r = c.uvarint()?;
        f(r, &mut c)?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
struct SegInfo {
    max_t: i64,
    bytes: u64,
}

struct Writer {
    file: Arc<File>,
    seg: u64,
    size: u64,
    /// Monotonic count of records written; the group-commit sequence number.
    lsn: u64,
    segments: BTreeMap<u64, SegInfo>,
}

struct SyncState {
    synced: u64,
    syncing: bool,
    failed: Option<String>,
}

pub struct Wal {
    dir: PathBuf,
    segment_size: u64,
    writer: Mutex<Writer>,
    sync: Mutex<SyncState>,
    synced_cv: Condvar,
}

/// What replay found, for the caller's bookkeeping and stats.
#[derive(Debug, Default)]
pub struct ReplayInfo {
    pub records: u64,
    pub torn_tail_truncated: bool,
    pub corruptions_repaired: u64,
}

/// See [`Wal::committed`].
#[derive(Debug)]
pub struct WalExtent {
    /// Live segments in order, each with its committed length.
    pub segments: Vec<(PathBuf, u64)>,
    /// The newest checkpoint (series still referenced by the segments), if any.
    pub checkpoint: Option<PathBuf>,
}

fn segment_path(dir: &Path, seg: u64) -> PathBuf {
    dir.join(format!("{seg:08}"))
}

fn list_dir(dir: &Path) -> Result<(Vec<u64>, Vec<u64>), WalError> {
    let mut segs = Vec::new();
    let mut checkpoints = Vec::new();
    for e in fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name.strip_prefix(CHECKPOINT_PREFIX) {
            if let Ok(n) = n.parse::<u64>() {
                checkpoints.push(n);
            }
        } else if let Ok(n) = name.parse::<u64>() {
            segs.push(n);
        }
    }
    segs.sort_unstable();
    checkpoints.sort_unstable();
    Ok((segs, checkpoints))
}

/// Reads the frames of one file. On a bad frame: if `repair`, truncates the file there and
/// stops; returns whether it truncated.
type RecordFn<'a> = dyn FnMut(u64, &[u8]) -> Result<(), DecodeError> + 'a;

fn read_file(
    path: &Path,
    seg: u64,
    f: &mut RecordFn<'_>,
    info: &mut ReplayInfo,
) -> Result<Option<(u64, String)>, WalError> {
    let mut data = Vec::new();
    File::open(path).and_then(|mut fh| fh.read_to_end(&mut data)).map_err(io_err(path))?;
    let mut off = 0usize;
    while off < data.len() {
        let bad = |reason: &str| Some((off as u64, reason.to_string()));
        if data.len() - off < FRAME_HEADER {
            return Ok(bad("truncated frame header"));
        }
        let len = u32::from_le_bytes([data[off], data[off + 1], data[off + 2], data[off + 3]]) as usize;
        let crc = u32::from_le_bytes([data[off + 4], data[off + 5], data[off + 6], data[off + 7]]);
        if len == 0 || len > MAX_RECORD {
            return Ok(bad("invalid record length"));
        }
        if data.len() - off - FRAME_HEADER < len {
            return Ok(bad("truncated record"));
        }
        let payload = &data[off + FRAME_HEADER..off + FRAME_HEADER + len];
        if crc32fast::hash(payload) != crc {
            return Ok(bad("checksum mismatch"));
        }
        if let Err(e) = f(seg, payload) {
            return Ok(bad(e.0));
        }
        info.records += 1;
        off += FRAME_HEADER + len;
    }
    Ok(None)
}

fn truncate_file(path: &Path, len: u64) -> Result<(), WalError> {
    let f = OpenOptions::new().write(true).open(path).map_err(io_err(path))?;
    f.set_len(len).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

impl Wal {
    /// Replays the checkpoint and every segment in order, calling `f(segment, payload)` for each
    /// intact record, then opens a fresh segment for writing. A torn tail (a crash mid-write)
    /// is truncated; corruption inside older segments is cut out and counted, so the engine
    /// always starts. `f` returns the largest sample timestamp it saw per record through
    /// `max_t` bookkeeping done by the caller via [`Wal::note_replayed`].
    pub fn open(
        dir: &Path,
        segment_size: u64,
        mut f: impl FnMut(u64, &[u8]) -> Result<(), DecodeError>,
    ) -> Result<(Wal, ReplayInfo), WalError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let (segs, checkpoints) = list_dir(dir)?;
        let mut info = ReplayInfo::default();
        if let Some(&cp) = checkpoints.last() {
            let path = dir.join(format!("{CHECKPOINT_PREFIX}{cp:08}"));
            // Checkpoints are written atomically (temp + rename), so damage is real corruption.
            if let Some((offset, reason)) = read_file(&path, 0, &mut f, &mut info)? {
                return Err(WalError::Corrupt { path, offset, reason });
            }
            for old in &checkpoints[..checkpoints.len() - 1] {
                let p = dir.join(format!("{CHECKPOINT_PREFIX}{old:08}"));
                fs::remove_file(&p).map_err(io_err(&p))?;
            }
        }
        let mut segments = BTreeMap::new();
        for (i, &seg) in segs.iter().enumerate() {
            let path = segment_path(dir, seg);
            if let Some((offset, reason)) = read_file(&path, seg, &mut f, &mut info)? {
                if i + 1 == segs.len() {
                    tracing::warn!(path = %path.display(), offset, reason, "truncating torn WAL tail");
                    info.torn_tail_truncated = true;
                } else {
                    tracing::error!(path = %path.display(), offset, reason, "corrupt WAL segment; cutting it short");
                    info.corruptions_repaired += 1;
                }
                truncate_file(&path, offset)?;
            }
            let bytes = fs::metadata(&path).map_err(io_err(&path))?.len();
            segments.insert(seg, SegInfo { max_t: i64::MIN, bytes });
        }
        let next = segs.last().map_or(1, |s| s + 1);
        let file = create_segment(dir, next)?;
        segments.insert(next, SegInfo { max_t: i64::MIN, bytes: 0 });
        let wal = Wal {
            dir: dir.to_path_buf(),
            segment_size,
            writer: Mutex::new(Writer { file: Arc::new(file), seg: next, size: 0, lsn: 0, segments }),
            sync: Mutex::new(SyncState { synced: 0, syncing: false, failed: None }),
            synced_cv: Condvar::new(),
        };
        Ok((wal, info))
    }

    /// Records the newest sample time replay saw in a segment (used to decide deletability).
    pub fn note_replayed(&self, seg: u64, max_t: i64) {
        let mut w = self.writer.lock();
        if let Some(s) = w.segments.get_mut(&seg) {
            s.max_t = s.max_t.max(max_t);
        }
    }

    fn check_failed(&self) -> Result<(), WalError> {
        match &self.sync.lock().failed {
            Some(e) => Err(WalError::Failed(e.clone())),
            None => Ok(()),
        }
    }

    fn fail(&self, msg: String) {
        let mut s = self.sync.lock();
        if s.failed.is_none() {
            s.failed = Some(msg);
        }
        self.synced_cv.notify_all();
    }

    /// Writes framed records (not yet durable); returns the sequence number to pass to
    /// [`Wal::sync_to`]. `max_t` is the newest sample timestamp in the records.
    pub fn write(&self, frames: &[u8], max_t: i64) -> Result<u64, WalError> {
        self.check_failed()?;
        let mut w = self.writer.lock();
        if w.size > 0 && w.size + frames.len() as u64 > self.segment_size {
            self.rotate_locked(&mut w)?;
        }
        let path = segment_path(&self.dir, w.seg);
        if let Err(e) = (&*w.file).write_all(frames) {
            // Cut the partial record off so later records stay readable; if even that fails,
            // the log cannot be trusted any more.
            if let Err(e2) = w.file.set_len(w.size) {
                self.fail(format!("write failed ({e}) and truncation failed ({e2})"));
            }
            return Err(WalError::Io { path, source: e });
        }
        w.size += frames.len() as u64;
        w.lsn += 1;
        let seg = w.seg;
        let size = w.size;
        if let Some(s) = w.segments.get_mut(&seg) {
            s.max_t = s.max_t.max(max_t);
            s.bytes = size;
        }
        Ok(w.lsn)
    }

    /// Blocks until everything up to `lsn` is fsync'd. One caller at a time runs the fsync;
    /// the others wait for it and are released together (group commit).
    pub fn sync_to(&self, lsn: u64) -> Result<(), WalError> {
        let mut s = self.sync.lock();
        loop {
            if let Some(e) = &s.failed {
                return Err(WalError::Failed(e.clone()));
            }
            if s.synced >= lsn {
                return Ok(());
            }
            if s.syncing {
                self.synced_cv.wait(&mut s);
                continue;
            }
            s.syncing = true;
            drop(s);
            let (file, target, seg) = {
                let w = self.writer.lock();
                (w.file.clone(), w.lsn, w.seg)
            };
            let res = file.sync_data();
            s = self.sync.lock();
            s.syncing = false;
            match res {
                Ok(()) => s.synced = s.synced.max(target),
                Err(e) => {
                    // After a failed fsync the kernel may have dropped dirty pages: nothing
                    // written since the last good fsync can be trusted (fsyncgate).
                    let path = segment_path(&self.dir, seg);
                    s.failed = Some(format!("fsync of {} failed: {e}", path.display()));
                }
            }
            self.synced_cv.notify_all();
        }
    }

    fn rotate_locked(&self, w: &mut Writer) -> Result<(), WalError> {
        let old = segment_path(&self.dir, w.seg);
        if let Err(e) = w.file.sync_data() {
            self.fail(format!("fsync of {} failed: {e}", old.display()));
            return Err(WalError::Io { path: old, source: e });
        }
        {
            let mut s = self.sync.lock();
            s.synced = s.synced.max(w.lsn);
            self.synced_cv.notify_all();
        }
        let next = w.seg + 1;
        let file = create_segment(&self.dir, next)?;
        w.file = Arc::new(file);
        w.seg = next;
        w.size = 0;
        w.segments.insert(next, SegInfo { max_t: i64::MIN, bytes: 0 });
        Ok(())
    }

    /// Starts a new segment; everything written before is in segments below the returned one.
    pub fn rotate(&self) -> Result<u64, WalError> {
        self.check_failed()?;
        let mut w = self.writer.lock();
        if w.size > 0 {
            self.rotate_locked(&mut w)?;
        }
        Ok(w.seg)
    }

    /// Deletes the longest prefix of segments below `before` whose samples are all older than
    /// `floor` (hence in blocks). The series they defined and that are still live are first
    /// written to a checkpoint, so replay can still resolve references in later segments.
    pub fn truncate(&self, before: u64, floor: i64, live_series: &[u8]) -> Result<usize, WalError> {
        let deletable: Vec<u64> = {
            let w = self.writer.lock();
            w.segments
                .iter()
                .take_while(|(s, i)| **s < before && **s != w.seg && i.max_t < floor)
                .map(|(s, _)| *s)
                .collect()
        };
        let Some(&last) = deletable.last() else { return Ok(0) };
        let keep_from = last + 1;
        let name = format!("{CHECKPOINT_PREFIX}{keep_from:08}");
        let tmp = self.dir.join(format!("{name}.tmp"));
        let path = self.dir.join(&name);
        {
            let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
            f.write_all(live_series).map_err(io_err(&tmp))?;
            f.sync_all().map_err(io_err(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        fsync_dir(&self.dir)?;
        let (_, checkpoints) = list_dir(&self.dir)?;
        for cp in checkpoints.into_iter().filter(|&c| c < keep_from) {
            let p = self.dir.join(format!("{CHECKPOINT_PREFIX}{cp:08}"));
            fs::remove_file(&p).map_err(io_err(&p))?;
        }
        let mut w = self.writer.lock();
        for s in &deletable {
            let p = segment_path(&self.dir, *s);
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(WalError::Io { path: p, source: e }),
            }
            w.segments.remove(s);
        }
        drop(w);
        fsync_dir(&self.dir)?;
        Ok(deletable.len())
    }

    /// The committed extent of the log, for a snapshot: every live segment with the length
    /// written so far (always a record boundary) and the newest checkpoint.
    ///
    /// The caller must keep writers out (no append between its `write` and its `sync_to`) and
    /// hold off `truncate`/`rotate`; then every record inside the returned lengths belongs to
    /// a finished append. Records an append wrote but did not get fsync'd (a series record
    /// left behind when writing its samples failed) are fsync'd here first, so the prefix is
    /// durable; a WAL that failed an fsync is refused.
    pub fn committed(&self) -> Result<WalExtent, WalError> {
        self.check_failed()?;
        let lsn = self.writer.lock().lsn;
        self.sync_to(lsn)?;
        let segments = {
            let w = self.writer.lock();
            w.segments.iter().map(|(&seg, i)| (segment_path(&self.dir, seg), i.bytes)).collect()
        };
        let (_, checkpoints) = list_dir(&self.dir)?;
        let checkpoint = checkpoints.last().map(|cp| self.dir.join(format!("{CHECKPOINT_PREFIX}{cp:08}")));
        Ok(WalExtent { segments, checkpoint })
    }

    pub fn size_bytes(&self) -> u64 {
        self.writer.lock().segments.values().map(|s| s.bytes).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.writer.lock().segments.len()
    }
}

fn create_segment(dir: &Path, seg: u64) -> Result<File, WalError> {
    let path = segment_path(dir, seg);
    let f = OpenOptions::new().create(true).append(true).open(&path).map_err(io_err(&path))?;
    fsync_dir(dir)?;
    Ok(f)
}
