//! Sample compression. Two codecs: the head's appendable Gorilla chunk (delta-of-delta
//! timestamps, XOR floats; O(1) append, ~1.4 bytes/sample) and the denser block codec used on
//! disk, which turns decimal values into integers (as VictoriaMetrics does), picks delta or
//! delta-of-delta per stream and leaves entropy coding to zstd over whole pages.
//! Every value round-trips bit-exactly: NaN payloads, the stale marker, ±Inf and -0.0.

use super::encoding::{BitReader, BitWriter, DecodeError};
use tingzhen_core::Sample;

/// Head chunks are closed after this many samples so queries decode little and a closed
/// chunk's memory is exact-sized.
pub const HEAD_CHUNK_SAMPLES: u16 = 120;

/// An appendable Gorilla chunk. Timestamps must be appended strictly increasing.
#[derive(Clone)]
pub struct XorChunk {
    w: BitWriter,
    count: u16,
    min_t: i64,
    last_t: i64,
    last_delta: i64,
    last_v: u64,
    /// 0xff until the first XOR window is written.
    leading: u8,
    trailing: u8,
}

impl Default for XorChunk {
    fn default() -> Self {
        Self::new()
    }
}

/// A closed, immutable head chunk.
pub struct FrozenChunk {
    pub min_t: i64,
    pub max_t: i64,
    pub count: u16,
    bit_len: u32,
    bytes: Box<[u8]>,
}

impl FrozenChunk {
    pub fn decode_into(&self, out: &mut Vec<Sample>, mint: i64, maxt: i64) -> Result<(), DecodeError> {
        decode_xor(&self.bytes, self.bit_len as usize, self.count, out, mint, maxt)
    }

    pub fn memory_bytes(&self) -> usize {
        self.bytes.len() + std::mem::size_of::<Self>()
    }
}

impl XorChunk {
    pub fn new() -> Self {
        Self {
            w: BitWriter::new(),
            count: 0,
            min_t: 0,
            last_t: 0,
            last_delta: 0,
            last_v: 0,
            leading: 0xff,
            trailing: 0,
        }
    }

    pub fn count(&self) -> u16 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn min_t(&self) -> i64 {
        self.min_t
    }

    pub fn max_t(&self) -> i64 {
        self.last_t
    }

    pub fn memory_bytes(&self) -> usize {
        self.w.buf.capacity() + std::mem::size_of::<Self>()
    }

    pub fn append(&mut self, t: i64, v: f64) {
        let bits = v.to_bits();
        match self.count {
            0 => {
                self.w.buf.reserve(HEAD_CHUNK_SAMPLES as usize * 2);
                self.w.write_bits(t as u64, 64);
                self.w.write_bits(bits, 64);
                self.min_t = t;
            }
            _ => {
                let delta = t.wrapping_sub(self.last_t);
                let dod = delta.wrapping_sub(self.last_delta);
                write_dod(&mut self.w, dod);
                self.last_delta = delta;
                self.write_value(bits);
            }
        }
        self.last_t = t;
        self.last_v = bits;
        self.count += 1;
    }

    fn write_value(&mut self, bits: u64) {
        let xor = bits ^ self.last_v;
        if xor == 0 {
            self.w.write_bit(false);
            return;
        }
        self.w.write_bit(true);
        let leading = (xor.leading_zeros() as u8).min(31);
        let trailing = xor.trailing_zeros() as u8;
        if self.leading != 0xff && leading >= self.leading && trailing >= self.trailing {
            self.w.write_bit(false);
            let sig = 64 - self.leading - self.trailing;
            self.w.write_bits(xor >> self.trailing, sig);
        } else {
            self.w.write_bit(true);
            let sig = 64 - leading - trailing;
            self.w.write_bits(leading as u64, 5);
            // 64 significant bits is encoded as 0; 0 cannot occur because xor != 0.
            self.w.write_bits((sig & 63) as u64, 6);
            self.w.write_bits(xor >> trailing, sig);
            self.leading = leading;
            self.trailing = trailing;
        }
    }

    pub fn decode_into(&self, out: &mut Vec<Sample>, mint: i64, maxt: i64) -> Result<(), DecodeError> {
        decode_xor(&self.w.buf, self.w.bit_len(), self.count, out, mint, maxt)
    }

    pub fn freeze(self) -> FrozenChunk {
        let bit_len = self.w.bit_len() as u32;
        FrozenChunk {
            min_t: self.min_t,
            max_t: self.last_t,
            count: self.count,
            bit_len,
            bytes: self.w.buf.into_boxed_slice(),
        }
    }
}

fn write_dod(w: &mut BitWriter, dod: i64) {
    match dod {
        0 => w.write_bit(false),
        -8191..=8192 => {
            w.write_bits(0b10, 2);
            w.write_bits(dod as u64, 14);
        }
        -65535..=65536 => {
            w.write_bits(0b110, 3);
            w.write_bits(dod as u64, 17);
        }
        -524_287..=524_288 => {
            w.write_bits(0b1110, 4);
            w.write_bits(dod as u64, 20);
        }
        _ => {
            w.write_bits(0b1111, 4);
            w.write_bits(dod as u64, 64);
        }
    }
}

#[inline]
fn sign_extend(v: u64, bits: u8) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

fn read_dod(r: &mut BitReader<'_>) -> Result<i64, DecodeError> {
    if !r.read_bit()? {
        return Ok(0);
    }
    if !r.read_bit()? {
        return Ok(sign_extend(r.read_bits(14)?, 14));
    }
    if !r.read_bit()? {
        return Ok(sign_extend(r.read_bits(17)?, 17));
    }
    if !r.read_bit()? {
        return Ok(sign_extend(r.read_bits(20)?, 20));
    }
    Ok(r.read_bits(64)? as i64)
}

/// Decodes the value half of a Gorilla stream: `prev` and the window live in `state`.
struct XorValueState {
    v: u64,
    leading: u8,
    trailing: u8,
}

impl XorValueState {
    fn read(&mut self, r: &mut BitReader<'_>) -> Result<u64, DecodeError> {
        if !r.read_bit()? {
            return Ok(self.v);
        }
        if r.read_bit()? {
            let leading = r.read_bits(5)? as u8;
            let mut sig = r.read_bits(6)? as u8;
            if sig == 0 {
                sig = 64;
            }
            if leading as u32 + sig as u32 > 64 {
                return Err(DecodeError("corrupt XOR window"));
            }
            self.leading = leading;
            self.trailing = 64 - leading - sig;
        } else if self.leading == 0xff {
            return Err(DecodeError("XOR window reused before it was set"));
        }
        let sig = 64 - self.leading - self.trailing;
        let bits = r.read_bits(sig)?;
        self.v ^= bits << self.trailing;
        Ok(self.v)
    }
}

fn decode_xor(
    buf: &[u8],
    bit_len: usize,
    count: u16,
    out: &mut Vec<Sample>,
    mint: i64,
    maxt: i64,
) -> Result<(), DecodeError> {
    if count == 0 {
        return Ok(());
    }
    let mut r = BitReader::new(buf, bit_len);
    let mut t = r.read_bits(64)? as i64;
    let mut vs = XorValueState { v: r.read_bits(64)?, leading: 0xff, trailing: 0 };
    let mut delta = 0i64;
    if t > maxt {
        return Ok(());
    }
    if t >= mint {
        out.push(Sample::new(t, f64::from_bits(vs.v)));
    }
    for _ in 1..count {
        delta = delta.wrapping_add(read_dod(&mut r)?);
        t = t.wrapping_add(delta);
        let v = vs.read(&mut r)?;
        if t > maxt {
            break;
        }
        if t >= mint {
            out.push(Sample::new(t, f64::from_bits(v)));
        }
    }
    Ok(())
}

/// Gorilla XOR coding of a value column alone (the block codec's fallback for values that are
/// not short decimals). Returns the bit length written.
pub fn xor_encode_values(vals: &[u64], out: &mut Vec<u8>) -> usize {
    let mut c = XorChunk::new();
    for (i, &bits) in vals.iter().enumerate() {
        if i == 0 {
            c.w.write_bits(bits, 64);
        } else {
            c.write_value(bits);
        }
        c.last_v = bits;
    }
    let len = c.w.bit_len();
    out.extend_from_slice(&c.w.buf);
    len
}

/// Inverse of [`xor_encode_values`]: `n` values from a stream of `bit_len` bits.
pub fn xor_decode_values(buf: &[u8], bit_len: usize, n: usize, out: &mut Vec<u64>) -> Result<(), DecodeError> {
    if n == 0 {
        return Ok(());
    }
    let mut r = BitReader::new(buf, bit_len);
    let mut vs = XorValueState { v: r.read_bits(64)?, leading: 0xff, trailing: 0 };
    out.push(vs.v);
    for _ in 1..n {
        out.push(vs.read(&mut r)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::tests::Rng;
    use tingzhen_core::STALE_NAN_BITS;

    fn edge_values() -> Vec<f64> {
        vec![
            0.0,
            -0.0,
            1.0,
            -1.5,
            f64::NAN,
            f64::from_bits(STALE_NAN_BITS),
            f64::from_bits(0x7ff8_0000_0000_0001),
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            1e-300,
            0.1,
            123456.789,
            9_007_199_254_740_993.0,
            5e-324,
        ]
    }

    fn check_xor(samples: &[Sample]) {
        let mut c = XorChunk::new();
        for s in samples {
            c.append(s.timestamp_ms, s.value);
        }
        let mut out = Vec::new();
        c.decode_into(&mut out, i64::MIN, i64::MAX).unwrap();
        assert_same(samples, &out);
        let mut out2 = Vec::new();
        c.freeze().decode_into(&mut out2, i64::MIN, i64::MAX).unwrap();
        assert_same(samples, &out2);
    }

    fn assert_same(a: &[Sample], b: &[Sample]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.timestamp_ms, y.timestamp_ms);
            assert_eq!(x.value.to_bits(), y.value.to_bits(), "at t={}", x.timestamp_ms);
        }
    }

    #[test]
    fn edge_values_round_trip_bit_exactly() {
        let vals = edge_values();
        let samples: Vec<Sample> = vals.iter().enumerate().map(|(i, &v)| Sample::new(i as i64 * 7 - 3, v)).collect();
        check_xor(&samples);
        // Extreme timestamps and deltas.
        let ts = [i64::MIN + 1, -5, 0, 1, 1 << 40, i64::MAX - 1];
        let samples: Vec<Sample> = ts.iter().zip(vals.iter()).map(|(&t, &v)| Sample::new(t, v)).collect();
        check_xor(&samples);
    }

    #[test]
    fn random_round_trips() {
        let mut rng = Rng(42);
        let edges = edge_values();
        for round in 0..300 {
            let n = (rng.next() % 250) as usize + 1;
            let mut t = rng.next() as i64 >> 20;
            let mut v = 0.0f64;
            let mut samples = Vec::with_capacity(n);
            for _ in 0..n {
                t += match round % 3 {
                    0 => 10_000,
                    1 => 10_000 + (rng.next() % 50) as i64 - 25,
                    _ => 1 + (rng.next() % 1_000_000) as i64,
                };
                v = match rng.next() % 7 {
                    0 => edges[(rng.next() % edges.len() as u64) as usize],
                    1 => f64::from_bits(rng.next()),
                    2 => v + (rng.next() % 1000) as f64,
                    3 => (rng.next() % 10_000) as f64 / 100.0,
                    _ if round % 2 == 0 => v,
                    _ => rng.next() as f64 / 3.0,
                };
                samples.push(Sample::new(t, v));
            }
            let xs: Vec<Sample> = samples.iter().take(HEAD_CHUNK_SAMPLES as usize).copied().collect();
            check_xor(&xs);
        }
    }

    #[test]
    fn range_filter_and_corruption_are_handled() {
        let samples: Vec<Sample> = (0..50).map(|i| Sample::new(i * 10, i as f64)).collect();
        let mut c = XorChunk::new();
        for s in &samples {
            c.append(s.timestamp_ms, s.value);
        }
        let mut out = Vec::new();
        c.decode_into(&mut out, 100, 200).unwrap();
        assert_eq!(out.len(), 11);
    }
}
