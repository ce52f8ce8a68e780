//! Immutable on-disk blocks: one directory per time range holding `chunks` (pages of chunks
//! coded by `codec`, read on demand with positioned reads), `index` (symbols, pages, series
//! with their chunk references; zstd-compressed, CRC-checked, loaded into compact memory and
//! turned into postings) and `meta.json`. A block appears atomically: it is built in a
//! temporary directory, every file and the directory are fsync'd, then it is renamed.
//!
//! A page holds the timestamp streams of its chunks in one zstd frame and their value streams
//! in a second one, so each frame's entropy coder sees one kind of data. Raw blocks have one
//! value column per chunk; rollup blocks (`meta.resolution_ms > 0`) one per aggregate.
//! `meta.version` is [`BLOCK_VERSION`]; blocks of any other version are refused, not misread.

use super::codec::{decode_chunk, decode_columns, encode_chunk};
use super::encoding::{Cursor, DecodeError, put_bytes, put_uvarint, put_varint};
use super::index::MemPostings;
use super::wal::fsync_dir;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, LazyLock};
use tingzhen_core::{Label, Labels, Sample};

/// The block format version written and the only one read: 2 = split timestamp/value page
/// frames, grid-coded timestamps, byte-plane integer columns, compressed index.
pub const BLOCK_VERSION: u32 = 2;
const INDEX_MAGIC: &[u8; 8] = b"TZIDX\x00\x00\x02";
/// Raw bytes per page: big enough for zstd to find cross-series redundancy, small enough
/// that reading one series decompresses little.
const PAGE_RAW_BYTES: usize = 256 * 1024;
/// Long series are split so a narrow query does not decode a whole day.
const MAX_CHUNK_SAMPLES: usize = 4096;
const ZSTD_LEVEL: i32 = 9;
/// Bound on a decompressed index, so a corrupt length cannot exhaust memory.
const MAX_INDEX_BYTES: u64 = 4 << 30;
pub const META_FILE: &str = "meta.json";

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("block I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("block {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BlockError + '_ {
    move |source| BlockError::Io { path: path.to_path_buf(), source }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BlockMeta {
    pub version: u32,
    pub id: String,
    /// The block covers [range_start, range_end); data lies within.
    pub range_start: i64,
    pub range_end: i64,
    pub min_t: i64,
    pub max_t: i64,
    pub num_series: u64,
    pub num_samples: u64,
    pub num_chunks: u64,
    /// Every WAL sample older than this is in some block (see `Tsdb::cut`).
    pub floor: i64,
    pub level: u32,
    /// Ids of the blocks this one was compacted from.
    #[serde(default)]
    pub sources: Vec<String>,
    /// 0 for raw samples; the window length of a rollup block.
    #[serde(default)]
    pub resolution_ms: i64,
}

#[derive(Clone, Copy)]
struct PageMeta {
    offset: u64,
    /// Compressed length of both frames; the timestamp frame comes first.
    len: u32,
    ts_len: u32,
    ts_raw_len: u32,
    val_raw_len: u32,
    crc: u32,
}

#[derive(Clone, Copy)]
pub struct ChunkMeta {
    pub min_t: i64,
    pub max_t: i64,
    page: u32,
    /// Offsets into the page's timestamp and value sections (derived from lengths on load).
    ts_off: u32,
    ts_len: u32,
    val_off: u32,
    val_len: u32,
}

pub struct BlockWriter {
    tmp: PathBuf,
    chunks: BufWriter<File>,
    file_off: u64,
    page_ts: Vec<u8>,
    page_val: Vec<u8>,
    pages: Vec<PageMeta>,
    series: Vec<(Labels, Vec<ChunkMeta>)>,
    pub num_samples: u64,
    min_t: i64,
    max_t: i64,
}

impl BlockWriter {
    pub fn new(tmp: PathBuf) -> Result<Self, BlockError> {
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        }
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let path = tmp.join("chunks");
        let f = File::create(&path).map_err(io_err(&path))?;
        Ok(Self {
            tmp,
            chunks: BufWriter::with_capacity(256 * 1024, f),
            file_off: 0,
            page_ts: Vec::with_capacity(PAGE_RAW_BYTES),
            page_val: Vec::with_capacity(PAGE_RAW_BYTES * 2),
            pages: Vec::new(),
            series: Vec::new(),
            num_samples: 0,
            min_t: i64::MAX,
            max_t: i64::MIN,
        })
    }

    /// Adds one series; calls must come in increasing label order and `samples` must be
    /// sorted with unique timestamps.
    pub fn add_series(&mut self, labels: Labels, samples: &[Sample]) -> Result<(), BlockError> {
        let ts: Vec<i64> = samples.iter().map(|s| s.timestamp_ms).collect();
        let vals: Vec<f64> = samples.iter().map(|s| s.value).collect();
        self.add_series_columns(labels, &ts, &[&vals])
    }

    /// Adds one series given as timestamps and value columns of the same length (rollups).
    pub fn add_series_columns(&mut self, labels: Labels, ts: &[i64], columns: &[&[f64]]) -> Result<(), BlockError> {
        if ts.is_empty() {
            return Ok(());
        }
        if self.series.last().is_some_and(|(l, _)| *l >= labels) {
            return Err(BlockError::Corrupt { path: self.tmp.clone(), reason: "series added out of order".into() });
        }
        if columns.iter().any(|c| c.len() != ts.len()) {
            return Err(BlockError::Corrupt { path: self.tmp.clone(), reason: "column length mismatch".into() });
        }
        let mut metas = Vec::with_capacity(ts.len().div_ceil(MAX_CHUNK_SAMPLES));
        let mut parts: Vec<&[f64]> = Vec::with_capacity(columns.len());
        for (k, part) in ts.chunks(MAX_CHUNK_SAMPLES).enumerate() {
            let lo = k * MAX_CHUNK_SAMPLES;
            parts.clear();
            parts.extend(columns.iter().map(|c| &c[lo..lo + part.len()]));
            let (ts_off, val_off) = (self.page_ts.len(), self.page_val.len());
            encode_chunk(part, &parts, &mut self.page_ts, &mut self.page_val);
            metas.push(ChunkMeta {
                min_t: part[0],
                max_t: part[part.len() - 1],
                page: self.pages.len() as u32,
                ts_off: ts_off as u32,
                ts_len: (self.page_ts.len() - ts_off) as u32,
                val_off: val_off as u32,
                val_len: (self.page_val.len() - val_off) as u32,
            });
            if self.page_ts.len() + self.page_val.len() >= PAGE_RAW_BYTES {
                self.flush_page()?;
            }
        }
        self.num_samples += ts.len() as u64;
        self.min_t = self.min_t.min(ts[0]);
        self.max_t = self.max_t.max(ts[ts.len() - 1]);
        self.series.push((labels, metas));
        Ok(())
    }

    fn flush_page(&mut self) -> Result<(), BlockError> {
        if self.page_ts.is_empty() && self.page_val.is_empty() {
            return Ok(());
        }
        let path = self.tmp.join("chunks");
        let ts = zstd::bulk::compress(&self.page_ts, ZSTD_LEVEL).map_err(io_err(&path))?;
        let val = zstd::bulk::compress(&self.page_val, ZSTD_LEVEL).map_err(io_err(&path))?;
        self.chunks.write_all(&ts).map_err(io_err(&path))?;
        self.chunks.write_all(&val).map_err(io_err(&path))?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&ts);
        crc.update(&val);
        self.pages.push(PageMeta {
            offset: self.file_off,
            len: (ts.len() + val.len()) as u32,
            ts_len: ts.len() as u32,
            ts_raw_len: self.page_ts.len() as u32,
            val_raw_len: self.page_val.len() as u32,
            crc: crc.finalize(),
        });
        self.file_off += (ts.len() + val.len()) as u64;
        self.page_ts.clear();
        self.page_val.clear();
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Writes index and meta, fsyncs, and renames the directory to `dest`.
    pub fn finish(mut self, mut meta: BlockMeta, dest: &Path) -> Result<BlockMeta, BlockError> {
        self.flush_page()?;
        let chunks_path = self.tmp.join("chunks");
        let f = self
            .chunks
            .into_inner()
            .map_err(|e| BlockError::Io { path: chunks_path.clone(), source: e.into_error() })?;
        f.sync_all().map_err(io_err(&chunks_path))?;

        let mut symbols: BTreeMap<&str, u32> = BTreeMap::new();
        for (labels, _) in &self.series {
            for l in labels {
                symbols.insert(&l.name, 0);
                symbols.insert(&l.value, 0);
            }
        }
        let mut body = Vec::with_capacity(self.series.len() * 64);
        put_uvarint(&mut body, symbols.len() as u64);
        for (i, (s, id)) in symbols.iter_mut().enumerate() {
            put_bytes(&mut body, s.as_bytes());
            *id = i as u32;
        }
        put_uvarint(&mut body, self.pages.len() as u64);
        for p in &self.pages {
            put_uvarint(&mut body, p.offset);
            put_uvarint(&mut body, p.len as u64);
            put_uvarint(&mut body, p.ts_len as u64);
            put_uvarint(&mut body, p.ts_raw_len as u64);
            put_uvarint(&mut body, p.val_raw_len as u64);
            body.extend_from_slice(&p.crc.to_le_bytes());
        }
        put_uvarint(&mut body, self.series.len() as u64);
        let mut num_chunks = 0u64;
        let mut last_page = 0u32;
        for (labels, chunks) in &self.series {
            put_uvarint(&mut body, labels.len() as u64);
            for l in labels {
                put_uvarint(&mut body, symbols[l.name.as_str()] as u64);
                put_uvarint(&mut body, symbols[l.value.as_str()] as u64);
            }
            put_uvarint(&mut body, chunks.len() as u64);
            // Chunks are laid out in series order, so offsets follow from lengths and pages
            // only ever advance: store page deltas and lengths.
            for c in chunks {
                put_varint(&mut body, c.min_t.wrapping_sub(meta.range_start));
                put_uvarint(&mut body, c.max_t.wrapping_sub(c.min_t) as u64);
                put_uvarint(&mut body, (c.page - last_page) as u64);
                put_uvarint(&mut body, c.ts_len as u64);
                put_uvarint(&mut body, c.val_len as u64);
                last_page = c.page;
            }
            num_chunks += chunks.len() as u64;
        }
        let index_path = self.tmp.join("index");
        {
            let mut f = File::create(&index_path).map_err(io_err(&index_path))?;
            let packed = zstd::bulk::compress(&body, ZSTD_LEVEL).map_err(io_err(&index_path))?;
            f.write_all(INDEX_MAGIC).map_err(io_err(&index_path))?;
            f.write_all(&packed).map_err(io_err(&index_path))?;
            f.write_all(&(body.len() as u64).to_le_bytes()).map_err(io_err(&index_path))?;
            f.write_all(&(packed.len() as u64).to_le_bytes()).map_err(io_err(&index_path))?;
            f.write_all(&crc32fast::hash(&packed).to_le_bytes()).map_err(io_err(&index_path))?;
            f.sync_all().map_err(io_err(&index_path))?;
        }
        meta.num_series = self.series.len() as u64;
        meta.num_samples = self.num_samples;
        meta.num_chunks = num_chunks;
        meta.min_t = self.min_t;
        meta.max_t = self.max_t;
        let meta_path = self.tmp.join(META_FILE);
        {
            let json = serde_json::to_vec_pretty(&meta)
                .map_err(|e| BlockError::Io { path: meta_path.clone(), source: e.into() })?;
            let mut f = File::create(&meta_path).map_err(io_err(&meta_path))?;
            f.write_all(&json).map_err(io_err(&meta_path))?;
            f.sync_all().map_err(io_err(&meta_path))?;
        }
        fsync_dir(&self.tmp)
            .map_err(|e| BlockError::Io { path: self.tmp.clone(), source: io::Error::other(e.to_string()) })?;
        fs::rename(&self.tmp, dest).map_err(io_err(dest))?;
        if let Some(parent) = dest.parent() {
            fsync_dir(parent)
                .map_err(|e| BlockError::Io { path: parent.to_path_buf(), source: io::Error::other(e.to_string()) })?;
        }
        Ok(meta)
    }
}

/// A decompressed page: the timestamp streams of its chunks, then their value streams.
pub struct Page {
    ts: Vec<u8>,
    val: Vec<u8>,
}

impl Page {
    fn bytes(&self) -> usize {
        self.ts.capacity() + self.val.capacity()
    }
}

/// Decompressed pages kept between queries: dashboards re-ask the same day of data at every
/// refresh, and decompressing its pages was a third of such a query's time. Bounded, least
/// recently used out first; the pages of a closed (compacted, expired) block leave with it.
const PAGE_CACHE_BYTES: usize = 32 << 20;

struct PageCache {
    pages: HashMap<(u64, u32), (Arc<Page>, u64)>,
    bytes: usize,
    tick: u64,
}

impl PageCache {
    fn get(&mut self, uid: u64, page: u32) -> Option<Arc<Page>> {
        self.tick += 1;
        let tick = self.tick;
        self.pages.get_mut(&(uid, page)).map(|(p, used)| {
            *used = tick;
            p.clone()
        })
    }

    fn insert(&mut self, uid: u64, page: u32, p: Arc<Page>) {
        if p.bytes() > PAGE_CACHE_BYTES / 4 {
            return;
        }
        self.tick += 1;
        self.bytes += p.bytes();
        if let Some((old, _)) = self.pages.insert((uid, page), (p, self.tick)) {
            self.bytes -= old.bytes();
        }
        while self.bytes > PAGE_CACHE_BYTES {
            // At most a few hundred entries: a scan is cheaper than keeping an order.
            let Some((&key, _)) = self.pages.iter().min_by_key(|(_, (_, used))| *used) else { break };
            if let Some((old, _)) = self.pages.remove(&key) {
                self.bytes -= old.bytes();
            }
        }
    }

    fn forget(&mut self, uid: u64) {
        let mut freed = 0;
        self.pages.retain(|(u, _), (p, _)| {
            if *u == uid {
                freed += p.bytes();
                return false;
            }
            true
        });
        self.bytes -= freed;
    }
}

static PAGE_CACHE: LazyLock<Mutex<PageCache>> =
    LazyLock::new(|| Mutex::new(PageCache { pages: HashMap::new(), bytes: 0, tick: 0 }));
static NEXT_UID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// One zstd decompression context per thread that reads pages, reused for every page.
    static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// An open block: meta, index in memory, chunks file handle.
pub struct Block {
    pub dir: PathBuf,
    pub meta: BlockMeta,
    symbols: Vec<Box<str>>,
    /// Flattened (name, value) symbol pairs; series i owns `labels[label_off[i]..label_off[i+1]]`.
    labels: Vec<u32>,
    label_off: Vec<u32>,
    chunks: Vec<ChunkMeta>,
    chunk_off: Vec<u32>,
    pages: Vec<PageMeta>,
    pub postings: MemPostings,
    file: File,
    pub disk_bytes: u64,
    /// Process-unique id: the key of this block's pages in the page cache.
    uid: u64,
}

impl Drop for Block {
    fn drop(&mut self) {
        PAGE_CACHE.lock().forget(self.uid);
    }
}

impl Block {
    pub fn open(dir: &Path) -> Result<Block, BlockError> {
        let corrupt = |reason: String| BlockError::Corrupt { path: dir.to_path_buf(), reason };
        let meta_path = dir.join(META_FILE);
        let meta_raw = fs::read(&meta_path).map_err(io_err(&meta_path))?;
        let meta: BlockMeta = serde_json::from_slice(&meta_raw).map_err(|e| corrupt(format!("meta.json: {e}")))?;
        if meta.version != BLOCK_VERSION {
            return Err(corrupt(format!(
                "block format version {} is not supported (this build reads version {BLOCK_VERSION} only); \
                 move the block out of the data directory",
                meta.version
            )));
        }
        let index_path = dir.join("index");
        let raw = fs::read(&index_path).map_err(io_err(&index_path))?;
        if raw.len() < INDEX_MAGIC.len() + 20 || &raw[..8] != INDEX_MAGIC {
            return Err(corrupt("index: bad magic or too short".into()));
        }
        let packed = &raw[8..raw.len() - 20];
        let mut tail = Cursor::new(&raw[raw.len() - 20..]);
        let raw_len = tail.u64_le().map_err(|e| corrupt(e.to_string()))?;
        let len = tail.u64_le().map_err(|e| corrupt(e.to_string()))?;
        let crc = tail.u32_le().map_err(|e| corrupt(e.to_string()))?;
        if len != packed.len() as u64 || crc32fast::hash(packed) != crc || raw_len > MAX_INDEX_BYTES {
            return Err(corrupt("index: checksum mismatch".into()));
        }
        let body = zstd::bulk::decompress(packed, raw_len as usize).map_err(|e| corrupt(format!("index: {e}")))?;
        if body.len() as u64 != raw_len {
            return Err(corrupt("index: decompressed to the wrong size".into()));
        }
        let body = &body[..];
        let chunks_path = dir.join("chunks");
        let file = File::open(&chunks_path).map_err(io_err(&chunks_path))?;
        let chunks_len = file.metadata().map_err(io_err(&chunks_path))?.len();
        let mut b = Self::parse_index(body, meta, dir, file).map_err(|e| corrupt(format!("index: {e}")))?;
        if b.pages.iter().any(|p| p.offset.saturating_add(p.len as u64) > chunks_len) {
            return Err(corrupt("chunks file is shorter than the index says".into()));
        }
        b.disk_bytes = chunks_len + raw.len() as u64 + meta_raw.len() as u64;
        Ok(b)
    }

    fn parse_index(body: &[u8], meta: BlockMeta, dir: &Path, file: File) -> Result<Block, DecodeError> {
        let mut c = Cursor::new(body);
        let nsym = c.len(body.len())?;
        let mut symbols = Vec::with_capacity(nsym);
        for _ in 0..nsym {
            symbols.push(Box::<str>::from(c.str()?));
        }
        let npages = c.len(body.len())?;
        let mut pages = Vec::with_capacity(npages);
        for _ in 0..npages {
            let offset = c.uvarint()?;
            let len = c.len(u32::MAX as usize)? as u32;
            let ts_len = c.len(len as usize)? as u32;
            let ts_raw_len = c.len(u32::MAX as usize)? as u32;
            let val_raw_len = c.len(u32::MAX as usize)? as u32;
            let crc = c.u32_le()?;
            pages.push(PageMeta { offset, len, ts_len, ts_raw_len, val_raw_len, crc });
        }
        let nseries = c.len(body.len())?;
        let mut labels = Vec::new();
        let mut label_off = Vec::with_capacity(nseries + 1);
        let mut chunks = Vec::new();
        let mut chunk_off = Vec::with_capacity(nseries + 1);
        let mut postings = MemPostings::new();
        label_off.push(0);
        chunk_off.push(0);
        let (mut page, mut ts_off, mut val_off) = (0u32, 0u32, 0u32);
        for id in 0..nseries {
            let nl = c.len(tingzhen_core::labels::MAX_LABELS_PER_SERIES * 4)?;
            let start = labels.len();
            for _ in 0..nl * 2 {
                let s = c.len(nsym.saturating_sub(1))?;
                if nsym == 0 {
                    return Err(DecodeError("label refers to a missing symbol"));
                }
                labels.push(s as u32);
            }
            postings.add(
                id as u32,
                labels[start..].chunks_exact(2).map(|p| (&*symbols[p[0] as usize], &*symbols[p[1] as usize])),
            );
            label_off.push(labels.len() as u32);
            let nc = c.len(body.len())?;
            for _ in 0..nc {
                let min_t = meta.range_start.wrapping_add(c.varint()?);
                let max_t = min_t.wrapping_add(c.uvarint()? as i64);
                let step = c.len(npages)? as u32;
                if step > 0 {
                    (page, ts_off, val_off) = (page + step, 0, 0);
                }
                let ts_len = c.len(u32::MAX as usize)? as u32;
                let val_len = c.len(u32::MAX as usize)? as u32;
                let p = pages.get(page as usize).ok_or(DecodeError("chunk refers to a missing page"))?;
                if ts_off as u64 + ts_len as u64 > p.ts_raw_len as u64
                    || val_off as u64 + val_len as u64 > p.val_raw_len as u64
                {
                    return Err(DecodeError("chunk lies outside its page"));
                }
                chunks.push(ChunkMeta { min_t, max_t, page, ts_off, ts_len, val_off, val_len });
                ts_off += ts_len;
                val_off += val_len;
            }
            chunk_off.push(chunks.len() as u32);
        }
        if !c.is_empty() {
            return Err(DecodeError("trailing bytes after series"));
        }
        labels.shrink_to_fit();
        chunks.shrink_to_fit();
        Ok(Block {
            dir: dir.to_path_buf(),
            meta,
            symbols,
            labels,
            label_off,
            chunks,
            chunk_off,
            pages,
            postings,
            file,
            disk_bytes: 0,
            uid: NEXT_UID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    pub fn num_series(&self) -> usize {
        self.label_off.len() - 1
    }

    pub fn labels(&self, id: u32) -> Labels {
        // Stored sorted, so no re-sorting is needed.
        let v: Vec<Label> = self.label_pairs(id).map(|(n, v)| Label::new(n, v)).collect();
        Labels::from_unsorted(v)
    }

    /// The (name, value) pairs of series `id`, sorted, without allocating: queries compare
    /// series across blocks by these and build a `Labels` once per series, not per block.
    pub fn label_pairs(&self, id: u32) -> impl Iterator<Item = (&str, &str)> + '_ {
        let i = id as usize;
        let (a, b) = (self.label_off[i] as usize, self.label_off[i + 1] as usize);
        self.labels[a..b].chunks_exact(2).map(|p| (&*self.symbols[p[0] as usize], &*self.symbols[p[1] as usize]))
    }

    /// Whether series `id` has a chunk overlapping [mint, maxt], and how many (a cost estimate).
    pub fn chunks_in(&self, id: u32, mint: i64, maxt: i64) -> usize {
        self.chunk_metas(id).iter().filter(|c| c.max_t >= mint && c.min_t <= maxt).count()
    }

    pub fn chunk_metas(&self, id: u32) -> &[ChunkMeta] {
        let i = id as usize;
        &self.chunks[self.chunk_off[i] as usize..self.chunk_off[i + 1] as usize]
    }

    pub fn memory_bytes(&self) -> usize {
        self.symbols.iter().map(|s| s.len() + 16).sum::<usize>()
            + self.labels.capacity() * 4
            + self.chunks.capacity() * std::mem::size_of::<ChunkMeta>()
            + (self.label_off.capacity() + self.chunk_off.capacity()) * 4
            + self.postings.memory_bytes()
    }

    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    /// Reads, checks and decompresses page `page`: its timestamp section, then its values, in
    /// one buffer (the layout maintenance's page caches use).
    pub fn read_page(&self, page: u32) -> Result<Vec<u8>, BlockError> {
        let p = self.load_page(page)?;
        let mut raw = p.ts;
        raw.extend_from_slice(&p.val);
        Ok(raw)
    }

    /// Reads, checks and decompresses page `page` into its two sections.
    fn load_page(&self, page: u32) -> Result<Page, BlockError> {
        let corrupt = |reason: String| BlockError::Corrupt { path: self.dir.clone(), reason };
        let p = self.pages.get(page as usize).ok_or_else(|| corrupt(format!("page {page} missing")))?;
        let mut buf = vec![0u8; p.len as usize];
        let path = self.dir.join("chunks");
        self.file.read_exact_at(&mut buf, p.offset).map_err(io_err(&path))?;
        if crc32fast::hash(&buf) != p.crc {
            return Err(corrupt(format!("chunk page {page} checksum mismatch")));
        }
        let ts_len = (p.ts_len as usize).min(buf.len());
        // Straight into buffers of the recorded sizes, not zero-filled first, with this
        // thread's decompression context (creating one per page cost more than small pages).
        let mut ts = Vec::with_capacity(p.ts_raw_len as usize);
        let mut val = Vec::with_capacity(p.val_raw_len as usize);
        let done = DCTX.with(|d| -> std::io::Result<()> {
            let mut d = d.borrow_mut();
            let d = match &mut *d {
                Some(d) => d,
                none => none.insert(zstd::bulk::Decompressor::new()?),
            };
            d.decompress_to_buffer(&buf[..ts_len], &mut ts)?;
            d.decompress_to_buffer(&buf[ts_len..], &mut val)?;
            Ok(())
        });
        match done {
            Ok(()) if ts.len() == p.ts_raw_len as usize && val.len() == p.val_raw_len as usize => Ok(Page { ts, val }),
            Ok(()) => Err(corrupt(format!("page {page} decompressed to the wrong size"))),
            Err(e) => Err(corrupt(format!("page {page}: {e}"))),
        }
    }

    /// Page `page` from the process-wide page cache, decompressed and cached on a miss.
    pub fn cached_page(&self, page: u32) -> Result<Arc<Page>, BlockError> {
        if let Some(p) = PAGE_CACHE.lock().get(self.uid, page) {
            return Ok(p);
        }
        let p = Arc::new(self.load_page(page)?);
        PAGE_CACHE.lock().insert(self.uid, page, p.clone());
        Ok(p)
    }

    /// Samples of series `id` within [mint, maxt]. `cache` keeps the last page read so a
    /// query walking series in order decompresses each page once.
    pub fn samples(
        &self,
        id: u32,
        mint: i64,
        maxt: i64,
        cache: &mut Option<(u32, Vec<u8>)>,
        out: &mut Vec<Sample>,
    ) -> Result<(), BlockError> {
        self.column(id, 0, mint, maxt, cache, out)
    }

    /// Values of column `col` of series `id` within [mint, maxt] (rollup blocks keep one
    /// column per aggregate; raw blocks only column 0).
    pub fn column(
        &self,
        id: u32,
        col: usize,
        mint: i64,
        maxt: i64,
        cache: &mut Option<(u32, Vec<u8>)>,
        out: &mut Vec<Sample>,
    ) -> Result<(), BlockError> {
        for c in self.chunk_metas(id) {
            if c.max_t < mint || c.min_t > maxt {
                continue;
            }
            if cache.as_ref().is_none_or(|(p, _)| *p != c.page) {
                *cache = Some((c.page, self.read_page(c.page)?));
            }
            let Some((_, page)) = cache.as_ref() else { continue };
            let split = self.pages[c.page as usize].ts_raw_len as usize;
            let ts = &page[c.ts_off as usize..(c.ts_off + c.ts_len) as usize];
            let vals = &page[split + c.val_off as usize..split + (c.val_off + c.val_len) as usize];
            decode_chunk(ts, vals, c.min_t, col, out, mint, maxt).map_err(|e| BlockError::Corrupt {
                path: self.dir.clone(),
                reason: format!("chunk of series {id}: {e}"),
            })?;
        }
        Ok(())
    }

    /// Columns `cols` of series `id` within [mint, maxt]: timestamps (decoded once per chunk)
    /// appended to `ts`, column `cols[k]`'s values to `vals[k]` (rollup blocks), with pages
    /// from `page` (see [`Block::samples_paged`]).
    #[allow(clippy::too_many_arguments)]
    pub fn columns(
        &self,
        id: u32,
        cols: &[usize],
        mint: i64,
        maxt: i64,
        mut page: impl FnMut(u32) -> Result<Arc<Page>, BlockError>,
        ts: &mut Vec<i64>,
        vals: &mut [Vec<f64>],
    ) -> Result<(), BlockError> {
        for c in self.chunk_metas(id) {
            if c.max_t < mint || c.min_t > maxt {
                continue;
            }
            let p = page(c.page)?;
            let (t, v) = self.chunk_bytes(c, &p)?;
            decode_columns(t, v, c.min_t, cols, mint, maxt, ts, vals).map_err(|e| BlockError::Corrupt {
                path: self.dir.clone(),
                reason: format!("chunk of series {id}: {e}"),
            })?;
        }
        Ok(())
    }

    /// Like [`Block::samples`], with pages from `page` (the page cache, through a table of
    /// the pages one query uses, shared by the threads decoding it).
    pub fn samples_paged(
        &self,
        id: u32,
        mint: i64,
        maxt: i64,
        mut page: impl FnMut(u32) -> Result<Arc<Page>, BlockError>,
        out: &mut Vec<Sample>,
    ) -> Result<(), BlockError> {
        for c in self.chunk_metas(id) {
            if c.max_t < mint || c.min_t > maxt {
                continue;
            }
            let p = page(c.page)?;
            let (ts, vals) = self.chunk_bytes(c, &p)?;
            decode_chunk(ts, vals, c.min_t, 0, out, mint, maxt).map_err(|e| BlockError::Corrupt {
                path: self.dir.clone(),
                reason: format!("chunk of series {id}: {e}"),
            })?;
        }
        Ok(())
    }

    /// A chunk's timestamp and value bytes within its page.
    fn chunk_bytes<'p>(&self, c: &ChunkMeta, p: &'p Page) -> Result<(&'p [u8], &'p [u8]), BlockError> {
        let ts = p.ts.get(c.ts_off as usize..(c.ts_off + c.ts_len) as usize);
        let vals = p.val.get(c.val_off as usize..(c.val_off + c.val_len) as usize);
        match (ts, vals) {
            (Some(ts), Some(vals)) => Ok((ts, vals)),
            _ => Err(BlockError::Corrupt { path: self.dir.clone(), reason: format!("page {} too short", c.page) }),
        }
    }

    /// Whether series `id` has a sample in [mint, maxt]; decodes only when chunk bounds
    /// cannot tell.
    pub fn has_data(
        &self,
        id: u32,
        mint: i64,
        maxt: i64,
        cache: &mut Option<(u32, Vec<u8>)>,
    ) -> Result<bool, BlockError> {
        let mut undecided = false;
        for c in self.chunk_metas(id) {
            if (mint..=maxt).contains(&c.min_t) || (mint..=maxt).contains(&c.max_t) {
                return Ok(true);
            }
            undecided |= c.min_t < mint && c.max_t > maxt;
        }
        if !undecided {
            return Ok(false);
        }
        let mut tmp = Vec::new();
        self.samples(id, mint, maxt, cache, &mut tmp)?;
        Ok(!tmp.is_empty())
    }

    /// True when every series of the block has data inside [mint, maxt].
    pub fn covered_by(&self, mint: i64, maxt: i64) -> bool {
        mint <= self.meta.min_t && self.meta.max_t <= maxt
    }
}
