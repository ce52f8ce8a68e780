//! The head: recent data in memory. Series are found by a hash of their encoded label set in
//! sharded maps, hold their samples in Gorilla chunks (plus a small sorted buffer for
//! out-of-order samples), and are indexed by in-memory postings. Data below the persisted
//! `floor` is dropped once it is in a block.

use super::chunk::{FrozenChunk, HEAD_CHUNK_SAMPLES, XorChunk};
use super::encoding::{Cursor, DecodeError, decode_labels, hash_bytes, put_bytes, put_uvarint};
use super::index::MemPostings;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use tingzhen_core::{Labels, Matcher, Sample};

const SHARDS: usize = 64;

/// The head's identity bytes for a canonical label set given as `(name, value)` pairs: the same
/// bytes as `encoding::encode_labels` (a test holds them equal), built from borrowed bytes so a
/// lookup needs no owned `Labels`. Runs once per series per request, so the usual one-byte
/// lengths are written inline.
#[inline]
pub fn encode_label_pairs<'a>(count: usize, pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>, buf: &mut Vec<u8>) {
    #[inline]
    fn put(buf: &mut Vec<u8>, b: &[u8]) {
        if b.len() < 0x80 {
            buf.push(b.len() as u8);
            buf.extend_from_slice(b);
        } else {
            put_bytes(buf, b);
        }
    }
    put_uvarint(buf, count as u64);
    for (name, value) in pairs {
        put(buf, name);
        put(buf, value);
    }
}

pub struct MemSeries {
    pub id: u32,
    /// The canonical label encoding; decoded only when a query needs the labels.
    pub labels_enc: Box<[u8]>,
    data: Mutex<SeriesData>,
}

struct SeriesData {
    closed: Vec<FrozenChunk>,
    open: XorChunk,
    /// Samples older than the in-order tip; sorted, unique.
    ooo: Vec<Sample>,
    /// Newest in-order timestamp (i64::MIN when empty).
    max_t: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    InOrder,
    OutOfOrder,
    Duplicate,
}

impl MemSeries {
    pub fn labels(&self) -> Labels {
        decode_labels(&mut Cursor::new(&self.labels_enc)).unwrap_or_default()
    }

    /// Appends one sample. `block_ms` aligns chunk boundaries with block boundaries so
    /// cutting a block never has to split a chunk.
    pub fn append(&self, t: i64, v: f64, block_ms: i64) -> AppendOutcome {
        let mut d = self.data.lock();
        d.append(t, v, block_ms)
    }

    /// Samples within [mint, maxt], sorted and de-duplicated.
    pub fn samples(&self, mint: i64, maxt: i64, out: &mut Vec<Sample>) -> Result<(), DecodeError> {
        let d = self.data.lock();
        d.samples(mint, maxt, out)
    }

    pub fn has_data(&self, mint: i64, maxt: i64) -> Result<bool, DecodeError> {
        let d = self.data.lock();
        if let Some(b) = d.bounds_hit(mint, maxt) {
            return Ok(b);
        }
        let mut tmp = Vec::new();
        d.samples(mint, maxt, &mut tmp)?;
        Ok(!tmp.is_empty())
    }

    /// Oldest sample at or after `floor`, if any.
    pub fn min_time(&self, floor: i64) -> Option<i64> {
        let d = self.data.lock();
        let mut m = d.ooo.iter().map(|s| s.timestamp_ms).find(|&t| t >= floor);
        for c in &d.closed {
            if c.max_t >= floor {
                let t = c.min_t.max(floor);
                m = Some(m.map_or(t, |x| x.min(t)));
                break;
            }
        }
        if !d.open.is_empty() && d.open.max_t() >= floor {
            let t = d.open.min_t().max(floor);
            m = Some(m.map_or(t, |x| x.min(t)));
        }
        m
    }

    /// Drops everything older than `floor`; returns true when the series is now empty.
    fn truncate(&self, floor: i64) -> bool {
        let mut d = self.data.lock();
        d.closed.retain(|c| c.max_t >= floor);
        if !d.open.is_empty() && d.open.max_t() < floor {
            d.open = XorChunk::new();
        }
        d.ooo.retain(|s| s.timestamp_ms >= floor);
        if d.ooo.capacity() > d.ooo.len() * 2 {
            d.ooo.shrink_to_fit();
        }
        d.closed.is_empty() && d.open.is_empty() && d.ooo.is_empty()
    }

    fn chunk_stats(&self) -> (usize, usize) {
        let d = self.data.lock();
        let bytes = d.closed.iter().map(|c| c.memory_bytes()).sum::<usize>()
            + d.open.memory_bytes()
            + d.ooo.capacity() * 16
            + d.closed.capacity() * std::mem::size_of::<FrozenChunk>();
        (d.closed.len() + usize::from(!d.open.is_empty()), bytes)
    }
}

impl SeriesData {
    fn append(&mut self, t: i64, v: f64, block_ms: i64) -> AppendOutcome {
        if self.max_t == i64::MIN || t > self.max_t {
            if !self.open.is_empty()
                && (self.open.count() >= HEAD_CHUNK_SAMPLES
                    || t.div_euclid(block_ms) != self.open.min_t().div_euclid(block_ms))
            {
                let full = std::mem::take(&mut self.open);
                self.closed.push(full.freeze());
            }
            self.open.append(t, v);
            self.max_t = t;
            return AppendOutcome::InOrder;
        }
        if t == self.max_t || self.contains(t) {
            return AppendOutcome::Duplicate;
        }
        match self.ooo.binary_search_by_key(&t, |s| s.timestamp_ms) {
            Ok(_) => AppendOutcome::Duplicate,
            Err(pos) => {
                self.ooo.insert(pos, Sample::new(t, v));
                AppendOutcome::OutOfOrder
            }
        }
    }

    /// Whether the in-order chunks hold a sample at exactly `t`.
    fn contains(&self, t: i64) -> bool {
        let mut tmp = Vec::new();
        let hit = |tmp: &Vec<Sample>| tmp.iter().any(|s| s.timestamp_ms == t);
        if !self.open.is_empty() && self.open.min_t() <= t && t <= self.open.max_t() {
            return self.open.decode_into(&mut tmp, t, t).is_ok() && hit(&tmp);
        }
        let idx = self.closed.partition_point(|c| c.max_t < t);
        match self.closed.get(idx) {
            Some(c) if c.min_t <= t => c.decode_into(&mut tmp, t, t).is_ok() && hit(&tmp),
            _ => false,
        }
    }

    /// Some(answer) when chunk bounds decide whether data exists in the range.
    fn bounds_hit(&self, mint: i64, maxt: i64) -> Option<bool> {
        let mut undecided = false;
        let mut check = |lo: i64, hi: i64| -> bool {
            if (mint..=maxt).contains(&lo) || (mint..=maxt).contains(&hi) {
                return true;
            }
            if lo < mint && hi > maxt {
                undecided = true;
            }
            false
        };
        for c in &self.closed {
            if check(c.min_t, c.max_t) {
                return Some(true);
            }
        }
        if !self.open.is_empty() && check(self.open.min_t(), self.open.max_t()) {
            return Some(true);
        }
        let s = self.ooo.partition_point(|s| s.timestamp_ms < mint);
        if self.ooo.get(s).is_some_and(|x| x.timestamp_ms <= maxt) {
            return Some(true);
        }
        if undecided { None } else { Some(false) }
    }

    fn samples(&self, mint: i64, maxt: i64, out: &mut Vec<Sample>) -> Result<(), DecodeError> {
        let start = out.len();
        for c in &self.closed {
            if c.max_t >= mint && c.min_t <= maxt {
                c.decode_into(out, mint, maxt)?;
            }
        }
        if !self.open.is_empty() && self.open.max_t() >= mint && self.open.min_t() <= maxt {
            self.open.decode_into(out, mint, maxt)?;
        }
        let lo = self.ooo.partition_point(|s| s.timestamp_ms < mint);
        let hi = self.ooo.partition_point(|s| s.timestamp_ms <= maxt);
        if lo < hi {
            out.extend_from_slice(&self.ooo[lo..hi]);
            // Stable sort keeps the in-order sample first on equal timestamps.
            out[start..].sort_by_key(|s| s.timestamp_ms);
        }
        // Chunks straddling a block boundary overlap neighbours only in theory; keep unique.
        let mut w = start;
        for r in start..out.len() {
            if w == start || out[r].timestamp_ms != out[w - 1].timestamp_ms {
                out[w] = out[r];
                w += 1;
            }
        }
        out.truncate(w);
        Ok(())
    }
}

/// The shard maps' keys are already `hash_bytes` digests: hashing them again with SipHash cost
/// more than the lookup's probe. Rotated so the bits the shard choice fixed (the top six) are not
/// the ones hashbrown takes for its control bytes (the top seven).
#[derive(Default, Clone, Copy)]
struct PrehashedKey(u64);

impl std::hash::Hasher for PrehashedKey {
    fn finish(&self) -> u64 {
        self.0.rotate_left(32)
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; fold anything else in rather than ignore it.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type PrehashedMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<PrehashedKey>>;

#[derive(Default)]
struct Shard {
    by_hash: PrehashedMap<Arc<MemSeries>>,
    /// Series whose hash collides with a different label set (practically never used).
    collisions: Vec<(u64, Arc<MemSeries>)>,
}

impl Shard {
    fn find(&self, hash: u64, enc: &[u8]) -> Option<&Arc<MemSeries>> {
        match self.by_hash.get(&hash) {
            Some(s) if *s.labels_enc == *enc => Some(s),
            Some(_) => self.collisions.iter().find(|(h, s)| *h == hash && *s.labels_enc == *enc).map(|(_, s)| s),
            None => None,
        }
    }
}

struct HeadIndex {
    postings: MemPostings,
    by_id: HashMap<u32, Arc<MemSeries>>,
}

pub struct Head {
    shards: Box<[RwLock<Shard>]>,
    index: RwLock<HeadIndex>,
    next_id: AtomicU64,
    pub max_t: AtomicI64,
}

pub struct HeadStats {
    pub series: usize,
    pub chunks: usize,
    pub chunk_bytes: usize,
    pub index_bytes: usize,
}

impl Head {
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
            index: RwLock::new(HeadIndex { postings: MemPostings::new(), by_id: HashMap::new() }),
            next_id: AtomicU64::new(1),
            max_t: AtomicI64::new(i64::MIN),
        }
    }

    fn shard(&self, hash: u64) -> &RwLock<Shard> {
        &self.shards[(hash >> 58) as usize % SHARDS]
    }

    pub fn lookup(&self, hash: u64, enc: &[u8]) -> Option<Arc<MemSeries>> {
        self.shard(hash).read().find(hash, enc).cloned()
    }

    pub fn hash(enc: &[u8]) -> u64 {
        hash_bytes(enc)
    }

    /// Reserves a fresh series id; `None` once the 32-bit id space is used up.
    pub fn alloc_id(&self) -> Option<u32> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        u32::try_from(id).ok()
    }

    pub fn bump_next_id(&self, seen: u32) {
        self.next_id.fetch_max(seen as u64 + 1, Ordering::Relaxed);
    }

    /// Publishes a series unless another one with the same labels won the race; returns the
    /// series to use.
    pub fn publish(&self, id: u32, hash: u64, enc: Box<[u8]>) -> Arc<MemSeries> {
        let mut shard = self.shard(hash).write();
        if let Some(s) = shard.find(hash, &enc) {
            return s.clone();
        }
        let labels = decode_labels(&mut Cursor::new(&enc)).unwrap_or_default();
        let s = Arc::new(MemSeries {
            id,
            labels_enc: enc,
            data: Mutex::new(SeriesData {
                closed: Vec::new(),
                open: XorChunk::new(),
                ooo: Vec::new(),
                max_t: i64::MIN,
            }),
        });
        {
            let mut idx = self.index.write();
            idx.postings.add(id, labels.iter().map(|l| (l.name.as_str(), l.value.as_str())));
            idx.by_id.insert(id, s.clone());
        }
        match shard.by_hash.entry(hash) {
            std::collections::hash_map::Entry::Occupied(_) => shard.collisions.push((hash, s.clone())),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(s.clone());
            }
        }
        s
    }

    pub fn num_series(&self) -> usize {
        self.index.read().by_id.len()
    }

    /// Series matching `matchers`, in id order.
    pub fn select(&self, matchers: &[Matcher]) -> Vec<Arc<MemSeries>> {
        let idx = self.index.read();
        let ids = idx.postings.select(matchers);
        ids.iter().filter_map(|id| idx.by_id.get(id).cloned()).collect()
    }

    pub fn select_ids(&self, matchers: &[Matcher]) -> Vec<u32> {
        self.index.read().postings.select(matchers)
    }

    pub fn all_series(&self) -> Vec<Arc<MemSeries>> {
        self.index.read().by_id.values().cloned().collect()
    }

    pub fn label_names(&self) -> Vec<String> {
        self.index.read().postings.names().map(str::to_string).collect()
    }

    pub fn label_values(&self, name: &str) -> Vec<(String, Vec<u32>)> {
        self.index.read().postings.values(name).map(|(v, p)| (v.to_string(), p.to_vec())).collect()
    }

    pub fn series_by_ids(&self, ids: &[u32]) -> Vec<Arc<MemSeries>> {
        let idx = self.index.read();
        ids.iter().filter_map(|id| idx.by_id.get(id).cloned()).collect()
    }

    /// Drops data below `floor` and forgets series left without data. The caller must hold
    /// the append gate exclusively so no appender holds a reference it is about to use.
    pub fn truncate(&self, floor: i64) -> usize {
        let dead: Vec<Arc<MemSeries>> = self.all_series().into_iter().filter(|s| s.truncate(floor)).collect();
        if dead.is_empty() {
            return 0;
        }
        // Shards first, index second: the same lock order as `publish`.
        for s in &dead {
            let hash = hash_bytes(&s.labels_enc);
            let mut shard = self.shard(hash).write();
            if shard.by_hash.get(&hash).is_some_and(|x| x.id == s.id) {
                shard.by_hash.remove(&hash);
                if let Some(pos) = shard.collisions.iter().position(|(h, _)| *h == hash) {
                    let (_, c) = shard.collisions.swap_remove(pos);
                    shard.by_hash.insert(hash, c);
                }
            } else {
                shard.collisions.retain(|(_, x)| x.id != s.id);
            }
        }
        let mut ids: Vec<u32> = dead.iter().map(|s| s.id).collect();
        ids.sort_unstable();
        let mut idx = self.index.write();
        idx.postings.remove(&ids);
        for id in &ids {
            idx.by_id.remove(id);
        }
        idx.by_id.shrink_to_fit();
        ids.len()
    }

    pub fn stats(&self) -> HeadStats {
        let series = self.all_series();
        let (mut chunks, mut chunk_bytes) = (0, 0);
        for s in &series {
            let (c, b) = s.chunk_stats();
            chunks += c;
            chunk_bytes += b + s.labels_enc.len() + std::mem::size_of::<MemSeries>();
        }
        let index_bytes = self.index.read().postings.memory_bytes();
        HeadStats { series: series.len(), chunks, chunk_bytes, index_bytes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Queryable;
    use crate::tsdb::encoding::encode_labels;
    use crate::tsdb::{Tsdb, TsdbOptions};
    use prost::Message;
    use tingzhen_core::remote_write::{self, Label as PbLabel, Sample as PbSample, TimeSeries as PbSeries};
    use tingzhen_core::{TimeSeries, now_ms};

    #[test]
    fn pair_encoding_is_the_label_encoding() {
        let long = "v".repeat(300);
        for labels in [
            Labels::new(),
            Labels::from_pairs([("__name__", "up")]),
            Labels::from_pairs([("__name__", "node_cpu"), ("cpu", "0"), ("host", "中文"), ("x", long.as_str())]),
        ] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            encode_labels(&labels, &mut a);
            encode_label_pairs(labels.len(), labels.iter().map(|l| (l.name.as_bytes(), l.value.as_bytes())), &mut b);
            assert_eq!(a, b, "{labels}");
        }
    }

    /// A series written as owned `Labels` and later sent over remote write (labels unsorted,
    /// an empty label) is the same series: the borrowed path keys it on the same bytes.
    #[test]
    fn borrowed_and_owned_batches_find_the_same_series() {
        let dir = tempfile::tempdir().unwrap();
        let db = Tsdb::open(dir.path(), TsdbOptions::default()).unwrap();
        let now = now_ms();
        let owned = vec![TimeSeries::new(
            Labels::from_pairs([("__name__", "up"), ("host", "a")]),
            vec![Sample::new(now - 1_000, 1.0)],
        )];
        assert_eq!(db.append(&owned).unwrap().series_created, 1);
        let label = |n: &str, v: &str| PbLabel { name: n.into(), value: v.into() };
        let req = remote_write::WriteRequest {
            timeseries: vec![
                PbSeries {
                    labels: vec![label("host", "a"), label("zone", ""), label("__name__", "up")],
                    samples: vec![PbSample { value: 2.0, timestamp: now }],
                },
                PbSeries {
                    labels: vec![label("__name__", "up"), label("host", "b")],
                    samples: vec![PbSample { value: 3.0, timestamp: now }],
                },
            ],
            metadata: Vec::new(),
        };
        let raw = req.encode_to_vec();
        let batch = remote_write::decode_batch(&raw).unwrap();
        let stats = db.append_batch(&batch).unwrap();
        assert_eq!((stats.series_created, stats.samples_appended), (1, 2));
        let got = db.select(&[Matcher::equal("host", "a")], now - 10_000, now).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].samples, vec![Sample::new(now - 1_000, 1.0), Sample::new(now, 2.0)]);
    }
}
