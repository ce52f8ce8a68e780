//! The open keys of one flow in memory, packed for a million of them: every open key is one
//! fixed 120-byte slot in dense 4,096-slot chunks (its order number inline when ≤ 22 bytes, campus,
//! system and rule attributes as interned ids, step times only for reached steps) and a 16-byte
//! entry in a hash index from the key's 64-bit hash to its slot, with no allocation of its own
//! for the usual key. A `HashMap<Box<str>, KeyState>` paid ~130 bytes of table per key at a
//! million keys (the table doubles, so it sits half empty) plus separate allocations for the
//! name, times and attributes. Keys whose hash
//! collides with another open key's go to a small side map, so lookups stay exact.
//! [`KeyState`] stays the working form the engine applies events to; slots are packed from it.

use super::engine::{KeyState, NOT_REACHED};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

/// Campus, system and attribute strings as small ids; they are few and repeat across keys.
#[derive(Default)]
pub struct Interner {
    ids: HashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

impl Interner {
    pub fn id(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.names.len() as u32;
        let a: Arc<str> = Arc::from(s);
        self.names.push(a.clone());
        self.ids.insert(a, id);
        id
    }

    /// The shared copy of `s` (metrics keep label values as these).
    pub fn arc(&mut self, s: &str) -> Arc<str> {
        let id = self.id(s);
        self.names[id as usize].clone()
    }

    pub fn get(&self, id: u32) -> &Arc<str> {
        &self.names[id as usize]
    }
}

/// An order number: inline up to 22 bytes (the usual 申请单号), else on the heap.
#[derive(Debug, Clone)]
enum KeyName {
    Inline { len: u8, bytes: [u8; 22] },
    Heap(Box<str>),
}

impl KeyName {
    fn new(s: &str) -> Self {
        if s.len() <= 22 {
            let mut bytes = [0u8; 22];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            Self::Inline { len: s.len() as u8, bytes }
        } else {
            Self::Heap(s.into())
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..*len as usize],
            Self::Heap(s) => s.as_bytes(),
        }
    }

    fn as_str(&self) -> &str {
        // Built from a &str, so always UTF-8.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

const NO_STEP: u8 = u8::MAX;
/// Reached-step times kept inline; a key that reached more steps keeps them on the heap.
const INLINE_TIMES: usize = 5;
/// Rule attributes kept inline (the demo models read at most two: urgency, exam type).
const INLINE_ATTRS: usize = 2;
const NO_ATTR: u32 = u32::MAX;

/// Times of the reached steps, in step order: inline as ms after the key's first event (which
/// no step time precedes) while they fit in u32 (49 days), else absolute on the heap.
#[derive(Debug, Clone, PartialEq)]
enum Times {
    Inline([u32; INLINE_TIMES]),
    Heap(Box<[i64]>),
}

/// Interned (name, value) pairs of the rule attributes; inline while there are few.
#[derive(Debug, Clone, PartialEq)]
enum Attrs {
    Inline([(u32, u32); INLINE_ATTRS]),
    Heap(Box<[(u32, u32)]>),
}

/// A [`KeyState`] packed for memory: the same facts, ids instead of strings, times only for the
/// steps reached (in step order, so a step's time is at the popcount of reached steps below
/// it). No heap allocation for the usual key.
#[derive(Debug, Clone, PartialEq)]
pub struct Packed {
    pub first_ms: i64,
    pub last_ms: i64,
    pub due_ms: i64,
    times: Times,
    attrs: Attrs,
    pub version: u32,
    pub reached: u32,
    pub errors: u32,
    pub campus: u32,
    pub system: u32,
    awaiting: u8,
    steps: u8,
}

impl Packed {
    pub fn pack(k: &KeyState, names: &mut Interner) -> Self {
        // A reached step always has a time; if a stored row ever disagreed, trust the times.
        let reached_times =
            || k.times.iter().enumerate().filter(|(i, t)| k.reached & (1 << i) != 0 && **t != NOT_REACHED);
        let reached = reached_times().fold(0u32, |m, (i, _)| m | (1 << i));
        let n = reached.count_ones() as usize;
        let offsets: Option<Vec<u32>> = reached_times().map(|(_, t)| u32::try_from(t - k.first_ms).ok()).collect();
        let times = match offsets {
            Some(o) if n <= INLINE_TIMES => {
                let mut a = [0u32; INLINE_TIMES];
                a[..n].copy_from_slice(&o);
                Times::Inline(a)
            }
            _ => Times::Heap(reached_times().map(|(_, t)| *t).collect()),
        };
        let attrs = if k.attrs.len() <= INLINE_ATTRS {
            let mut a = [(NO_ATTR, NO_ATTR); INLINE_ATTRS];
            for (slot, (n, v)) in a.iter_mut().zip(k.attrs.iter()) {
                *slot = (names.id(n), names.id(v));
            }
            Attrs::Inline(a)
        } else {
            Attrs::Heap(k.attrs.iter().map(|(n, v)| (names.id(n), names.id(v))).collect())
        };
        Self {
            first_ms: k.first_ms,
            last_ms: k.last_ms,
            due_ms: k.due_ms,
            times,
            attrs,
            version: k.version,
            reached,
            errors: k.errors,
            campus: names.id(&k.campus),
            system: names.id(&k.system),
            awaiting: k.awaiting.unwrap_or(NO_STEP),
            steps: k.times.len() as u8,
        }
    }

    pub fn unpack(&self, names: &Interner) -> KeyState {
        let mut times = vec![NOT_REACHED; self.steps as usize];
        let mut j = 0;
        for (i, t) in times.iter_mut().enumerate() {
            if self.reached & (1 << i) != 0 {
                *t = match &self.times {
                    Times::Inline(a) => a.get(j).map(|o| self.first_ms + i64::from(*o)).unwrap_or(NOT_REACHED),
                    Times::Heap(v) => v.get(j).copied().unwrap_or(NOT_REACHED),
                };
                j += 1;
            }
        }
        let attrs: &[(u32, u32)] = match &self.attrs {
            Attrs::Inline(a) => &a[..a.iter().take_while(|(n, _)| *n != NO_ATTR).count()],
            Attrs::Heap(v) => v,
        };
        KeyState {
            version: self.version,
            first_ms: self.first_ms,
            last_ms: self.last_ms,
            reached: self.reached,
            errors: self.errors,
            times: times.into_boxed_slice(),
            campus: names.get(self.campus).clone(),
            system: names.get(self.system).clone(),
            due_ms: self.due_ms,
            awaiting: self.awaiting(),
            attrs: attrs.iter().map(|(n, v)| (names.get(*n).clone(), names.get(*v).clone())).collect(),
        }
    }

    pub fn awaiting(&self) -> Option<u8> {
        (self.awaiting != NO_STEP).then_some(self.awaiting)
    }

    pub fn furthest(&self) -> Option<u8> {
        (self.reached != 0).then(|| (31 - self.reached.leading_zeros()) as u8)
    }

    pub fn is_overdue(&self, now_ms: i64) -> bool {
        self.due_ms != 0 && self.due_ms < now_ms
    }
}

/// Slots per chunk (~480 KB). Growing adds a chunk and never copies or frees a big block, so
/// resident memory follows the open keys rather than a doubling vector's old copies, which the
/// allocator may keep resident for a while.
const CHUNK: usize = 4096;

/// The slots, dense: index `i` is `chunks[i / CHUNK][i % CHUNK]`, and every chunk but the last
/// is full.
#[derive(Default)]
struct Slots {
    chunks: Vec<Vec<(KeyName, Packed)>>,
    len: usize,
}

impl Slots {
    fn get(&self, i: usize) -> &(KeyName, Packed) {
        &self.chunks[i / CHUNK][i % CHUNK]
    }

    fn get_mut(&mut self, i: usize) -> &mut (KeyName, Packed) {
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }

    fn push(&mut self, slot: (KeyName, Packed)) {
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks.last_mut().expect("a chunk with room").push(slot);
        self.len += 1;
    }

    /// Removes slot `i`, moving the last slot into its place.
    fn swap_remove(&mut self, i: usize) -> (KeyName, Packed) {
        let last = self.chunks.last_mut().and_then(Vec::pop).expect("swap_remove on a non-empty table");
        if self.chunks.last().is_some_and(Vec::is_empty) {
            self.chunks.pop();
        }
        self.len -= 1;
        if i == self.len { last } else { std::mem::replace(self.get_mut(i), last) }
    }
}

/// The open keys of one flow.
pub struct KeyTable {
    slots: Slots,
    by_hash: HashMap<u64, u32>,
    /// Keys whose hash another open key already holds in `by_hash`.
    collided: HashMap<Box<str>, u32>,
    hasher: RandomState,
    /// All ones; tests clear it to force every key onto one hash.
    mask: u64,
}

impl Default for KeyTable {
    fn default() -> Self {
        Self {
            slots: Slots::default(),
            by_hash: HashMap::new(),
            collided: HashMap::new(),
            hasher: RandomState::new(),
            mask: u64::MAX,
        }
    }
}

impl KeyTable {
    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key) & self.mask
    }

    fn find(&self, key: &str) -> Option<usize> {
        if let Some(&i) = self.by_hash.get(&self.hash(key))
            && self.slots.get(i as usize).0.as_bytes() == key.as_bytes()
        {
            return Some(i as usize);
        }
        if self.collided.is_empty() {
            return None;
        }
        self.collided.get(key).map(|&i| i as usize)
    }

    pub fn len(&self) -> usize {
        self.slots.len
    }

    pub fn is_empty(&self) -> bool {
        self.slots.len == 0
    }

    pub fn get(&self, key: &str) -> Option<&Packed> {
        self.find(key).map(|i| &self.slots.get(i).1)
    }

    /// Inserts or replaces `key`'s state.
    pub fn insert(&mut self, key: &str, state: Packed) {
        if let Some(i) = self.find(key) {
            self.slots.get_mut(i).1 = state;
            return;
        }
        let i = u32::try_from(self.slots.len).expect("fewer than 4 billion open keys in one flow");
        let h = self.hash(key);
        if let std::collections::hash_map::Entry::Vacant(e) = self.by_hash.entry(h) {
            e.insert(i);
        } else {
            self.collided.insert(key.into(), i);
        }
        self.slots.push((KeyName::new(key), state));
    }

    pub fn remove(&mut self, key: &str) -> Option<Packed> {
        let i = self.find(key)?;
        let h = self.hash(key);
        if self.by_hash.get(&h) == Some(&(i as u32)) {
            self.by_hash.remove(&h);
        } else {
            self.collided.remove(key);
        }
        let last = self.slots.len - 1;
        let (_, state) = self.slots.swap_remove(i);
        if i != last {
            // The last slot moved into the hole: point its index entry at the new place.
            let moved = self.slots.get(i).0.as_str().to_owned();
            let mh = self.hash(&moved);
            match self.by_hash.get_mut(&mh) {
                Some(v) if *v == last as u32 => *v = i as u32,
                _ => {
                    if let Some(v) = self.collided.get_mut(moved.as_str()) {
                        *v = i as u32;
                    }
                }
            }
        }
        Some(state)
    }

    /// Gives memory back after a peak (a day's orders closing): slot chunks go as they empty;
    /// the index shrinks to twice what is open once at most a quarter of it is used. Per tick.
    pub fn shrink_if_sparse(&mut self) {
        let cap = self.by_hash.capacity();
        if cap > 1024 && self.slots.len < cap / 4 {
            self.by_hash.shrink_to(self.slots.len * 2);
            self.collided.shrink_to_fit();
            self.slots.chunks.shrink_to_fit();
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Packed)> {
        self.slots.chunks.iter().flatten().map(|(k, p)| (k.as_str(), p))
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Packed> {
        self.slots.chunks.iter_mut().flatten().map(|(_, p)| p)
    }

    pub fn values(&self) -> impl Iterator<Item = &Packed> {
        self.slots.chunks.iter().flatten().map(|(_, p)| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(names: &mut Interner, t: i64) -> Packed {
        let k = KeyState {
            version: 2,
            first_ms: t,
            last_ms: t + 5,
            reached: 0b101,
            errors: 0b10,
            times: vec![t, NOT_REACHED, t + 5, NOT_REACHED].into_boxed_slice(),
            campus: "本院".into(),
            system: "HIS".into(),
            due_ms: t + 100,
            awaiting: Some(3),
            attrs: vec![("urgency".into(), "急".into())].into_boxed_slice(),
        };
        Packed::pack(&k, names)
    }

    #[test]
    fn packing_round_trips_and_slots_stay_small() {
        let mut names = Interner::default();
        let k = state(&mut names, 1_000).unpack(&names);
        assert_eq!(k.times.as_ref(), [1_000, NOT_REACHED, 1_005, NOT_REACHED]);
        assert_eq!((k.reached, k.errors, k.awaiting, k.due_ms), (0b101, 0b10, Some(3), 1_100));
        assert_eq!((&*k.campus, &*k.system), ("本院", "HIS"));
        assert_eq!(&*k.attrs[0].1, "急");
        assert_eq!(Packed::pack(&k, &mut names), state(&mut names, 1_000));
        assert_eq!(std::mem::size_of::<(KeyName, Packed)>(), 120);
        assert_eq!(KeyName::new("SQ20260001").as_str(), "SQ20260001");
        let long = "检查申请单-2026-0000000001";
        assert_eq!(KeyName::new(long).as_str(), long);
        // Past the inline limits (six reached steps, 60 days apart, three attributes) the
        // heap forms keep every fact.
        let big = KeyState {
            reached: 0b11_1111,
            errors: 0,
            times: (0..7).map(|i| if i < 6 { 1_000 + i * 60 * 86_400_000 } else { NOT_REACHED }).collect(),
            attrs: ["a", "b", "c"].iter().map(|n| (Arc::from(*n), Arc::from("v"))).collect(),
            ..k.clone()
        };
        let p = Packed::pack(&KeyState { first_ms: 1_000, ..big.clone() }, &mut names);
        assert!(matches!((&p.times, &p.attrs), (Times::Heap(_), Attrs::Heap(_))));
        assert_eq!(p.unpack(&names), KeyState { first_ms: 1_000, ..big });
    }

    /// Every key on one hash: inserts, lookups and removals (which move the last slot) must
    /// still find exactly the right key.
    #[test]
    fn colliding_hashes_stay_exact_through_removals() {
        for mask in [u64::MAX, 0] {
            let mut names = Interner::default();
            let mut t = KeyTable { mask, ..KeyTable::default() };
            for i in 0..50 {
                t.insert(&format!("K{i}"), state(&mut names, i));
            }
            t.insert("K7", state(&mut names, 700));
            assert_eq!(t.len(), 50);
            for i in (0..50).step_by(3) {
                assert_eq!(t.remove(&format!("K{i}")).unwrap().first_ms, if i == 7 { 700 } else { i });
            }
            assert!(t.remove("K0").is_none());
            for i in 0..50 {
                let got = t.get(&format!("K{i}")).map(|p| p.first_ms);
                let want = (i % 3 != 0).then_some(if i == 7 { 700 } else { i });
                assert_eq!(got, want, "K{i} with mask {mask:x}");
            }
            assert_eq!(t.iter().count(), t.len());
            // After a peak the table gives memory back and still finds every key.
            for i in 50..5_000 {
                t.insert(&format!("K{i}"), state(&mut names, i));
            }
            for i in 50..5_000 {
                t.remove(&format!("K{i}"));
            }
            t.shrink_if_sparse();
            assert!(t.by_hash.capacity() < 1024, "{}", t.by_hash.capacity());
            assert_eq!(t.slots.chunks.len(), 1);
            assert_eq!(t.get("K1").map(|p| p.first_ms), Some(1));
            assert_eq!(t.get("K7").map(|p| p.first_ms), Some(700));
            assert!(t.iter().all(|(k, p)| *k == format!("K{}", if p.first_ms == 700 { 7 } else { p.first_ms })));
        }
    }
}
