//! The on-disk queue of remote-write batches that could not be sent yet: segment files of
//! CRC-framed, fsync'd records, bounded in bytes, replayed strictly oldest first, and deleted
//! only after the receiver acknowledged them. The agent spools for its collector; the
//! collector in remote-storage mode spools for VictoriaMetrics / InfluxDB.
//!
//! Layout: `DIR/{id:020}.seg` segment files and `DIR/cursor` ("id offset": where the oldest
//! unacknowledged record starts). A record is `len u32 LE | crc32 u32 LE | body`, body =
//! `samples u32 LE | snappy remote-write payload`. A torn or corrupt record ends its segment
//! (that is what a `kill -9` or a crash mid-write leaves); a restarted agent never appends to an
//! old segment, so what follows a torn record is always in a newer file.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const HEADER: u64 = 8;
const SEGMENT_MAX: u64 = 8 * 1024 * 1024;
const SEGMENT_MIN: u64 = 4 * 1024;
const CURSOR: &str = "cursor";

#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    #[error("buffer directory {dir}: {source}")]
    Dir { dir: PathBuf, source: io::Error },
    #[error("buffer segment {path}: {source}")]
    Segment { path: PathBuf, source: io::Error },
}

/// One queued batch: how many samples it carries (for accounting) and the snappy-compressed
/// remote-write body, exactly as it will be POSTed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub samples: u32,
    pub payload: Vec<u8>,
}

impl Record {
    fn framed_len(&self) -> u64 {
        HEADER + 4 + self.payload.len() as u64
    }
}

/// What an append had to give up to stay within the bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    pub records: u64,
    pub samples: u64,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    /// File length, consumed part included: what the segment costs on disk.
    bytes: u64,
    /// Samples in records not yet acknowledged.
    samples: u64,
}

#[derive(Debug)]
pub struct DiskBuffer {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    segments: VecDeque<Segment>,
    /// Offset of the next unacknowledged record in the oldest segment.
    read_offset: u64,
    /// Writer of the newest segment, only ever one created by this process.
    head: Option<(u64, File)>,
    next_id: u64,
    /// The record returned by the last `peek`: (segment id, offset, framed length, samples).
    peeked: Option<(u64, u64, u64, u64)>,
}

fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// Reads the record at `offset`; `None` if the file ends or the record is torn or corrupt.
fn read_record(file: &mut File, offset: u64) -> Option<(Record, u64)> {
    file.seek(SeekFrom::Start(offset)).ok()?;
    let mut h = [0u8; HEADER as usize];
    file.read_exact(&mut h).ok()?;
    let len = u32::from_le_bytes(h[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(h[4..8].try_into().ok()?);
    if len < 4 {
        return None;
    }
    // Cap the allocation by what the file can hold, so a corrupt length cannot ask for 4 GiB.
    let remaining = file.metadata().ok()?.len().saturating_sub(offset + HEADER);
    if len as u64 > remaining {
        return None;
    }
    let mut body = vec![0u8; len];
    file.read_exact(&mut body).ok()?;
    if crc32fast::hash(&body) != crc {
        return None;
    }
    let samples = u32::from_le_bytes(body[0..4].try_into().ok()?);
    body.drain(..4);
    Some((Record { samples, payload: body }, HEADER + len as u64))
}

impl DiskBuffer {
    /// Opens (or creates) the buffer in `dir`, recovering what a previous run left: records
    /// already acknowledged are skipped, a torn last record is ignored.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<Self, BufferError> {
        let dir = dir.into();
        let derr = |source| BufferError::Dir { dir: dir.clone(), source };
        fs::create_dir_all(&dir).map_err(derr)?;
        let (cursor_id, cursor_off) = fs::read_to_string(dir.join(CURSOR))
            .ok()
            .and_then(|t| {
                let mut it = t.split_ascii_whitespace().map(|v| v.parse::<u64>().ok());
                Some((it.next()??, it.next()??))
            })
            .unwrap_or((0, 0));
        let mut ids: Vec<u64> = fs::read_dir(&dir)
            .map_err(derr)?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
            .collect();
        ids.sort_unstable();
        let mut b = Self {
            segment_bytes: (max_bytes / 8).clamp(SEGMENT_MIN, SEGMENT_MAX),
            max_bytes,
            segments: VecDeque::new(),
            read_offset: 0,
            head: None,
            next_id: ids.last().copied().unwrap_or(0).max(cursor_id) + 1,
            peeked: None,
            dir,
        };
        for id in ids {
            let path = seg_path(&b.dir, id);
            let start = match id.cmp(&cursor_id) {
                std::cmp::Ordering::Less => {
                    let _ = fs::remove_file(&path);
                    continue;
                }
                std::cmp::Ordering::Equal => cursor_off,
                std::cmp::Ordering::Greater => 0,
            };
            let mut f = File::open(&path).map_err(|source| BufferError::Segment { path: path.clone(), source })?;
            let bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
            let (mut off, mut samples, mut records) = (start, 0u64, 0u64);
            while let Some((r, len)) = read_record(&mut f, off) {
                off += len;
                samples += r.samples as u64;
                records += 1;
            }
            if records == 0 {
                let _ = fs::remove_file(&path);
                continue;
            }
            if b.segments.is_empty() {
                b.read_offset = start;
            }
            b.segments.push_back(Segment { id, bytes, samples });
        }
        Ok(b)
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Bytes on disk (segment files).
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Samples waiting to be sent.
    pub fn samples(&self) -> u64 {
        self.segments.iter().map(|s| s.samples).sum()
    }

    /// Appends a record durably (fsync'd before returning). If the bound would be exceeded,
    /// the oldest segments are dropped first and reported.
    pub fn append(&mut self, rec: &Record) -> Result<Dropped, BufferError> {
        let size = rec.framed_len();
        let mut dropped = Dropped::default();
        if size > self.max_bytes {
            // It could never fit: dropping everything else would not help.
            return Ok(Dropped { records: 1, samples: rec.samples as u64 });
        }
        while self.bytes() + size > self.max_bytes && !self.segments.is_empty() {
            let d = self.drop_oldest();
            dropped.records += d.records;
            dropped.samples += d.samples;
        }
        let needs_new = match (&self.head, self.segments.back()) {
            (Some((id, _)), Some(last)) => *id != last.id || last.bytes + size > self.segment_bytes,
            _ => true,
        };
        if needs_new {
            self.start_segment()?;
        }
        let (id, file) = self.head.as_mut().expect("start_segment sets head");
        let path = seg_path(&self.dir, *id);
        let mut framed = Vec::with_capacity(size as usize);
        framed.extend_from_slice(&((rec.payload.len() + 4) as u32).to_le_bytes());
        let mut h = crc32fast::Hasher::new();
        h.update(&rec.samples.to_le_bytes());
        h.update(&rec.payload);
        framed.extend_from_slice(&h.finalize().to_le_bytes());
        framed.extend_from_slice(&rec.samples.to_le_bytes());
        framed.extend_from_slice(&rec.payload);
        let seg = self.segments.back_mut().expect("head segment is listed");
        if let Err(source) = file.write_all(&framed).and_then(|_| file.sync_data()) {
            // Leave no half record behind for later appends to hide behind; if even that
            // fails, the next append starts a fresh segment.
            if file.set_len(seg.bytes).and_then(|_| file.seek(SeekFrom::Start(seg.bytes))).is_err() {
                self.head = None;
            }
            return Err(BufferError::Segment { path, source });
        }
        seg.bytes += size;
        seg.samples += rec.samples as u64;
        Ok(dropped)
    }

    fn start_segment(&mut self) -> Result<(), BufferError> {
        let id = self.next_id;
        self.next_id += 1;
        let path = seg_path(&self.dir, id);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|source| BufferError::Segment { path: path.clone(), source })?;
        // The new name must survive a crash too.
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.segments.push_back(Segment { id, bytes: 0, samples: 0 });
        self.head = Some((id, file));
        Ok(())
    }

    fn drop_oldest(&mut self) -> Dropped {
        let Some(seg) = self.segments.pop_front() else { return Dropped::default() };
        let records = self.count_records(seg.id, self.read_offset);
        let _ = fs::remove_file(seg_path(&self.dir, seg.id));
        if self.head.as_ref().is_some_and(|(id, _)| *id == seg.id) {
            self.head = None;
        }
        self.read_offset = 0;
        self.peeked = None;
        Dropped { records, samples: seg.samples }
    }

    fn count_records(&self, id: u64, mut off: u64) -> u64 {
        let Ok(mut f) = File::open(seg_path(&self.dir, id)) else { return 0 };
        let mut n = 0;
        while let Some((_, len)) = read_record(&mut f, off) {
            off += len;
            n += 1;
        }
        n
    }

    /// The oldest unacknowledged record, if any. Segments that end (or are torn) are retired
    /// on the way.
    pub fn peek(&mut self) -> Result<Option<Record>, BufferError> {
        loop {
            let Some(seg) = self.segments.front() else { return Ok(None) };
            let path = seg_path(&self.dir, seg.id);
            let id = seg.id;
            let rec = match File::open(&path) {
                Ok(mut f) => read_record(&mut f, self.read_offset),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(source) => return Err(BufferError::Segment { path, source }),
            };
            if let Some((r, len)) = rec {
                self.peeked = Some((id, self.read_offset, len, r.samples as u64));
                return Ok(Some(r));
            }
            if self.head.as_ref().is_some_and(|(h, _)| *h == id) {
                // The live segment is fully consumed: nothing more to read yet.
                self.retire_front();
                return Ok(None);
            }
            self.retire_front();
        }
    }

    fn retire_front(&mut self) {
        if let Some(seg) = self.segments.pop_front() {
            let _ = fs::remove_file(seg_path(&self.dir, seg.id));
            if self.head.as_ref().is_some_and(|(id, _)| *id == seg.id) {
                self.head = None;
            }
        }
        self.read_offset = 0;
        self.write_cursor();
    }

    /// Marks the record returned by the last `peek` as acknowledged (sent, or rejected for
    /// good). Its space is reclaimed when its whole segment is consumed.
    pub fn ack(&mut self) {
        let Some((id, off, len, samples)) = self.peeked.take() else { return };
        let Some(seg) = self.segments.front_mut() else { return };
        if seg.id != id || off != self.read_offset {
            return;
        }
        seg.samples = seg.samples.saturating_sub(samples);
        self.read_offset += len;
        if self.read_offset >= seg.bytes {
            self.retire_front();
        } else {
            self.write_cursor();
        }
    }

    /// Persists the read position atomically (write then rename), so a restart does not
    /// resend what was acknowledged.
    fn write_cursor(&self) {
        let id = self.segments.front().map(|s| s.id).unwrap_or(self.next_id.saturating_sub(1));
        let tmp = self.dir.join("cursor.tmp");
        if fs::write(&tmp, format!("{id} {}\n", self.read_offset)).is_ok() {
            let _ = fs::rename(&tmp, self.dir.join(CURSOR));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u32, size: usize) -> Record {
        let mut payload = i.to_le_bytes().to_vec();
        payload.resize(size.max(4), (i % 251) as u8);
        Record { samples: 10, payload }
    }

    fn id_of(r: &Record) -> u32 {
        u32::from_le_bytes(r.payload[0..4].try_into().unwrap())
    }

    fn drain(b: &mut DiskBuffer) -> Vec<u32> {
        let mut out = Vec::new();
        while let Some(r) = b.peek().unwrap() {
            out.push(id_of(&r));
            b.ack();
        }
        out
    }

    #[test]
    fn replays_in_order_and_deletes_after_ack() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
        for i in 0..50 {
            b.append(&rec(i, 300)).unwrap();
        }
        assert_eq!(b.samples(), 500);
        // A peek without ack does not consume.
        assert_eq!(id_of(&b.peek().unwrap().unwrap()), 0);
        assert_eq!(id_of(&b.peek().unwrap().unwrap()), 0);
        assert_eq!(drain(&mut b), (0..50).collect::<Vec<_>>());
        assert!(b.is_empty());
        assert_eq!(b.bytes(), 0);
        let segs =
            fs::read_dir(dir.path()).unwrap().flatten().filter(|e| e.path().extension().is_some_and(|x| x == "seg"));
        assert_eq!(segs.count(), 0, "acknowledged segments are deleted");
    }

    #[test]
    fn bound_is_respected_and_oldest_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let max = 64 * 1024;
        let mut b = DiskBuffer::open(dir.path(), max).unwrap();
        let mut dropped = Dropped::default();
        for i in 0..400 {
            let d = b.append(&rec(i, 1000)).unwrap();
            dropped.records += d.records;
            dropped.samples += d.samples;
            assert!(b.bytes() <= max, "bound exceeded: {}", b.bytes());
            let on_disk: u64 = fs::read_dir(dir.path())
                .unwrap()
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
                .map(|e| e.metadata().unwrap().len())
                .sum();
            assert!(on_disk <= max);
        }
        let kept = drain(&mut b);
        assert!(dropped.records > 0);
        assert_eq!(dropped.records + kept.len() as u64, 400, "every record is either kept or counted");
        assert_eq!(dropped.samples, dropped.records * 10);
        // What survives is the newest, contiguous and in order.
        let first = kept[0];
        assert_eq!(kept, (first..400).collect::<Vec<_>>());
        // A record bigger than the whole bound is refused and counted, not stored.
        let d = b.append(&rec(999, max as usize)).unwrap();
        assert_eq!(d, Dropped { records: 1, samples: 10 });
        assert!(b.is_empty());
    }

    #[test]
    fn restart_resumes_after_last_ack() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut b = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
            for i in 0..20 {
                b.append(&rec(i, 200)).unwrap();
            }
            for _ in 0..7 {
                b.peek().unwrap();
                b.ack();
            }
        }
        let mut b = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(b.samples(), 130);
        b.append(&rec(20, 200)).unwrap();
        assert_eq!(drain(&mut b), (7..21).collect::<Vec<_>>());
        // And after everything was acknowledged, a restart finds nothing to resend.
        drop(b);
        let mut b = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
        assert!(b.peek().unwrap().is_none());
        b.append(&rec(21, 10)).unwrap();
        drop(b);
        let mut b = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(drain(&mut b), [21]);
    }

    #[test]
    fn torn_tail_is_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut b = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
            for i in 0..5 {
                b.append(&rec(i, 100)).unwrap();
            }
        }
        // Simulate a kill -9 in the middle of writing a sixth record: half a frame at the end.
        let seg = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "seg"))
            .unwrap();
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 5, 6]).unwrap();
        drop(f);
        let mut b = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(b.samples(), 50);
        b.append(&rec(5, 100)).unwrap();
        assert_eq!(drain(&mut b), [0, 1, 2, 3, 4, 5]);

        // A flipped bit is caught by the CRC: that record and the rest of its segment are lost,
        // later segments still replay.
        let mut b = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
        b.append(&rec(6, 100)).unwrap();
        b.append(&rec(7, 100)).unwrap();
        drop(b);
        let seg = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .max()
            .unwrap();
        let mut bytes = fs::read(&seg).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&seg, bytes).unwrap();
        let mut b = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
        b.append(&rec(8, 100)).unwrap();
        assert_eq!(drain(&mut b), [6, 8]);
    }
}
