//! Byte- and bit-level primitives shared by the WAL, chunk and block formats: varints, zigzag,
//! a bit writer/reader for Gorilla chunks, and a bounds-checked byte cursor that turns every
//! short read into a typed error instead of a panic.

use std::fmt;

/// Decoding ran past the end of its input or met an impossible value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for DecodeError {}

#[inline]
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[inline]
pub fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

#[inline]
pub fn put_varint(buf: &mut Vec<u8>, v: i64) {
    put_uvarint(buf, zigzag(v));
}

pub fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    put_uvarint(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

/// A forward-only reader over a byte slice; every accessor checks bounds.
#[derive(Clone)]
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline]
    pub fn uvarint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        let mut shift = 0u32;
        loop {
            let b = *self.buf.get(self.pos).ok_or(DecodeError("truncated varint"))?;
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(DecodeError("varint overflows 64 bits"));
            }
            v |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return Ok(v);
            }
            shift += 7;
            if shift > 63 {
                return Err(DecodeError("varint overflows 64 bits"));
            }
        }
    }

    #[inline]
    pub fn varint(&mut self) -> Result<i64, DecodeError> {
        self.uvarint().map(unzigzag)
    }

    /// A varint that must fit in `usize` and not exceed `max` (guards allocations).
    pub fn len(&mut self, max: usize) -> Result<usize, DecodeError> {
        let v = self.uvarint()?;
        if v > max as u64 {
            return Err(DecodeError("length out of range"));
        }
        Ok(v as usize)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError("truncated byte"))?;
        self.pos += 1;
        Ok(b)
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError("truncated bytes"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn u32_le(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64_le(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.len(self.remaining())?;
        self.take(n)
    }

    pub fn str(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| DecodeError("string is not UTF-8"))
    }
}

/// Appends bits most-significant first, as Gorilla chunks do.
#[derive(Default, Clone)]
pub struct BitWriter {
    pub buf: Vec<u8>,
    /// Bits still free in the last byte of `buf` (0 means a new byte is needed).
    free: u8,
}

impl BitWriter {
    pub fn new() -> Self {
        Self::default()
    }

    #[inline]
    pub fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.buf.push(0);
            self.free = 8;
        }
        if bit {
            let last = self.buf.len() - 1;
            self.buf[last] |= 1 << (self.free - 1);
        }
        self.free -= 1;
    }

    /// Writes the low `n` bits of `v` (n ≤ 64).
    #[inline]
    pub fn write_bits(&mut self, v: u64, mut n: u8) {
        while n > 0 {
            if self.free == 0 {
                self.buf.push(0);
                self.free = 8;
            }
            let take = n.min(self.free);
            let shift = n - take;
            let mask = if take == 64 { u64::MAX } else { (1u64 << take) - 1 };
            let bits = ((v >> shift) & mask) as u8;
            let last = self.buf.len() - 1;
            self.buf[last] |= bits << (self.free - take);
            self.free -= take;
            n -= take;
        }
    }

    pub fn bit_len(&self) -> usize {
        self.buf.len() * 8 - self.free as usize
    }
}

pub struct BitReader<'a> {
    buf: &'a [u8],
    /// Absolute bit position.
    pos: usize,
    end: usize,
}

impl<'a> BitReader<'a> {
    pub fn new(buf: &'a [u8], bit_len: usize) -> Self {
        Self { buf, pos: 0, end: bit_len.min(buf.len() * 8) }
    }

    #[inline]
    pub fn read_bit(&mut self) -> Result<bool, DecodeError> {
        if self.pos >= self.end {
            return Err(DecodeError("chunk bit stream truncated"));
        }
        let b = self.buf[self.pos >> 3] >> (7 - (self.pos & 7)) & 1;
        self.pos += 1;
        Ok(b == 1)
    }

    #[inline]
    pub fn read_bits(&mut self, n: u8) -> Result<u64, DecodeError> {
        let n = n as usize;
        if self.pos + n > self.end {
            return Err(DecodeError("chunk bit stream truncated"));
        }
        let byte = self.pos >> 3;
        // Fast path: the n bits lie within the 8 bytes from the current one (always, for
        // n <= 56, away from the buffer's end): one big-endian load and two shifts instead of
        // a loop over bytes (Gorilla values are 10–60 bits; the loop dominated head reads).
        if n > 0
            && n <= 56
            && let Some(w) = self.buf.get(byte..byte + 8)
        {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            let v = (u64::from_be_bytes(b) << (self.pos & 7)) >> (64 - n);
            self.pos += n;
            return Ok(v);
        }
        let mut v: u64 = 0;
        let mut left = n;
        while left > 0 {
            let byte = self.buf[self.pos >> 3];
            let off = self.pos & 7;
            let avail = 8 - off;
            let take = left.min(avail);
            let bits = (byte >> (avail - take)) & (((1u16 << take) - 1) as u8);
            v = (v << take) | bits as u64;
            self.pos += take;
            left -= take;
        }
        Ok(v)
    }
}

/// A fast non-cryptographic 64-bit hash over bytes (wyhash-style multiply-fold), used to shard
/// and look up series by their encoded label set without allocating.
pub fn hash_bytes(data: &[u8]) -> u64 {
    const P0: u64 = 0xa076_1d64_78bd_642f;
    const P1: u64 = 0xe703_7ed1_a0b4_28db;
    #[inline]
    fn mix(a: u64, b: u64) -> u64 {
        let r = (a as u128).wrapping_mul(b as u128);
        (r as u64) ^ ((r >> 64) as u64)
    }
    let mut h = P0 ^ (data.len() as u64).wrapping_mul(P1);
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        h = mix(h ^ u64::from_le_bytes(a), P1);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut a = [0u8; 8];
        a[..rest.len()].copy_from_slice(rest);
        h = mix(h ^ u64::from_le_bytes(a) ^ 0x5555, P1);
    }
    mix(h, P0)
}

/// The canonical binary form of a label set (WAL series records, head identity):
/// count, then length-prefixed name and value of each label in sorted order.
pub fn encode_labels(labels: &tingzhen_core::Labels, buf: &mut Vec<u8>) {
    put_uvarint(buf, labels.len() as u64);
    for l in labels {
        put_bytes(buf, l.name.as_bytes());
        put_bytes(buf, l.value.as_bytes());
    }
}

pub fn decode_labels(c: &mut Cursor<'_>) -> Result<tingzhen_core::Labels, DecodeError> {
    let n = c.len(tingzhen_core::labels::MAX_LABELS_PER_SERIES * 4)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let name = c.str()?;
        let value = c.str()?;
        v.push(tingzhen_core::Label::new(name, value));
    }
    Ok(tingzhen_core::Labels::from_unsorted(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_reject_garbage() {
        let vals = [0i64, 1, -1, 63, -64, 1 << 40, i64::MIN, i64::MAX];
        let mut buf = Vec::new();
        for v in vals {
            put_varint(&mut buf, v);
        }
        put_uvarint(&mut buf, u64::MAX);
        let mut c = Cursor::new(&buf);
        for v in vals {
            assert_eq!(c.varint().unwrap(), v);
        }
        assert_eq!(c.uvarint().unwrap(), u64::MAX);
        assert!(c.is_empty());
        assert!(Cursor::new(&[0x80, 0x80]).uvarint().is_err());
        assert!(Cursor::new(&[0xff; 11]).uvarint().is_err());
    }

    #[test]
    fn bits_round_trip() {
        let mut w = BitWriter::new();
        let items: Vec<(u64, u8)> = vec![(1, 1), (0b101, 3), (u64::MAX, 64), (0, 7), (0x1234, 13), (1, 64)];
        for &(v, n) in &items {
            w.write_bits(v, n);
        }
        let len = w.bit_len();
        let mut r = BitReader::new(&w.buf, len);
        for &(v, n) in &items {
            let mask = if n == 64 { u64::MAX } else { (1 << n) - 1 };
            assert_eq!(r.read_bits(n).unwrap(), v & mask);
        }
        assert!(r.read_bit().is_err());
    }

    #[test]
    fn long_bit_streams_read_back_through_fast_and_slow_paths() {
        // Every width at every bit offset, far from and close to the buffer's end.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut items = Vec::new();
        for i in 0..2000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            items.push((x, (i % 65) as u8));
        }
        let mut w = BitWriter::new();
        for &(v, n) in &items {
            w.write_bits(v, n);
        }
        let mut r = BitReader::new(&w.buf, w.bit_len());
        for &(v, n) in &items {
            let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
            assert_eq!(r.read_bits(n).unwrap(), v & mask, "width {n}");
        }
        assert!(r.read_bits(1).is_err());
    }
}
