//! The on-disk chunk codec of blocks. A chunk is split into a timestamp stream and one or more
//! value columns (raw blocks: one; rollup blocks: one per aggregate); the block writer puts all
//! timestamp streams of a page together and all value streams together, so zstd sees
//! homogeneous data.
//!
//! - Timestamps are coded against a nominal interval (the chunk's median delta): each one as
//!   its offset from the expected grid point, so exact scrapes cost nothing and jittered ones a
//!   few bits; a gap re-anchors the grid. The first timestamp is not stored (the index has it).
//! - Values that are short decimals (`m / 10^e`, as most metrics are) become integers; the
//!   integers, like the timestamp offsets, are then stored raw, as deltas or as
//!   delta-of-deltas — whichever is smallest — minus their minimum, divided by their common
//!   divisor (4096-byte pages, say), as little-endian byte planes (all low bytes, then the next
//!   bytes …) so zstd's entropy coder sees one distribution at a time. Constant columns and
//!   zero deltas cost a few header bytes.
//! - The rare value that is not a short decimal (NaN, the stale marker, ±Inf, -0.0) is an
//!   exception stored with its exact bits; columns with many of them fall back to Gorilla XOR.
//!
//! Every f64 round-trips bit-exactly, and decoding bad input returns an error, never panics.

use super::chunk::{xor_decode_values, xor_encode_values};
use super::encoding::{Cursor, DecodeError, put_uvarint, put_varint};
use tingzhen_core::Sample;

const MODE_XOR: u8 = 0;
const MODE_DECIMAL: u8 = 1;
/// The column is bit-for-bit equal to an earlier one of the chunk (rollups: min = max = sum =
/// last for single-sample windows, `inc` = 0 for gauges that never move).
const MODE_SAME: u8 = 2;
const T_RAW: u8 = 0;
const T_DELTA: u8 = 1;
const T_DOD: u8 = 2;
const MAX_EXPONENT: usize = 12;
/// Largest integer magnitude whose f64 conversion is exact.
const EXACT_INT: f64 = 9_007_199_254_740_992.0;
const POW10: [f64; MAX_EXPONENT + 1] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12];
/// Upper bound on samples in one chunk accepted when decoding (guards allocations).
pub const MAX_DECODE_SAMPLES: usize = 1 << 20;

/// The smallest exponent e such that v == m / 10^e exactly for an integer m.
fn min_exponent(v: f64) -> Option<usize> {
    if !v.is_finite() || (v == 0.0 && v.is_sign_negative()) {
        return None;
    }
    (0..=MAX_EXPONENT).find(|&e| as_decimal(v, e).is_some())
}

#[inline]
fn as_decimal(v: f64, e: usize) -> Option<i64> {
    let m = (v * POW10[e]).round();
    if m.abs() >= EXACT_INT {
        return None;
    }
    let mi = m as i64;
    ((mi as f64 / POW10[e]).to_bits() == v.to_bits()).then_some(mi)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// One candidate transform of an integer column: reference values and the residuals.
fn transform(vals: &[i64], t: u8, refs: &mut Vec<i64>, resid: &mut Vec<i64>) {
    refs.clear();
    resid.clear();
    match t {
        T_RAW => resid.extend_from_slice(vals),
        T_DELTA => {
            refs.extend(vals.first());
            resid.extend(vals.windows(2).map(|w| w[1].wrapping_sub(w[0])));
        }
        _ => {
            refs.extend(vals.first());
            if vals.len() > 1 {
                refs.push(vals[1].wrapping_sub(vals[0]));
            }
            resid.extend(vals.windows(3).map(|w| w[2].wrapping_sub(w[1]).wrapping_sub(w[1].wrapping_sub(w[0]))));
        }
    }
}

/// Minimum, common divisor and a size estimate (significant bits summed) of residuals.
fn shape(resid: &[i64]) -> (i64, u64, u64) {
    let Some(&min) = resid.iter().min() else { return (0, 1, 0) };
    let mut g = 0u64;
    for &r in resid {
        g = gcd(g, r.wrapping_sub(min) as u64);
        if g == 1 {
            break;
        }
    }
    let g = g.max(1);
    let bits = resid.iter().map(|&r| 64 - ((r.wrapping_sub(min) as u64) / g).leading_zeros() as u64).sum();
    (min, g, bits)
}

/// Residuals with at most this many distinct scaled values are packed several to a byte in
/// base `range` (3 jitter offsets of 0..4 in one byte), which zstd's byte-wise entropy coder
/// then codes at close to their entropy.
const MAX_RADIX: u64 = 16;
/// Width code meaning "radix-packed" (byte widths are 0..=8).
const W_RADIX: u8 = 15;

/// How many base-`r` digits fit in a byte.
fn digits_per_byte(r: u64) -> usize {
    let (mut k, mut p) = (0usize, 1u64);
    while p * r <= 256 {
        p *= r;
        k += 1;
    }
    k.max(1)
}

/// Writes an integer column: header byte (transform | width << 2), reference values, minimum,
/// divisor, then `width` byte planes of the scaled residuals (or, for a small range, the
/// residuals packed in base `range`).
pub fn put_ints(out: &mut Vec<u8>, vals: &[i64]) {
    let (mut refs, mut resid) = (Vec::new(), Vec::new());
    let mut best = (u64::MAX, T_RAW);
    for t in [T_RAW, T_DELTA, T_DOD] {
        transform(vals, t, &mut refs, &mut resid);
        // A reference value costs about as much as a residual of its size.
        let ref_bits: u64 = refs.iter().map(|&r| 64 - super::encoding::zigzag(r).leading_zeros() as u64).sum();
        let (_, _, bits) = shape(&resid);
        if bits + ref_bits < best.0 {
            best = (bits + ref_bits, t);
        }
    }
    transform(vals, best.1, &mut refs, &mut resid);
    let (min, g, _) = shape(&resid);
    let max_u = resid.iter().map(|&r| (r.wrapping_sub(min) as u64) / g).max().unwrap_or(0);
    let width = (64 - max_u.leading_zeros() as usize).div_ceil(8);
    let radix = (max_u > 0 && max_u < MAX_RADIX).then_some(max_u + 1);
    out.push(best.1 | radix.map_or(width as u8, |_| W_RADIX) << 2);
    for &r in &refs {
        put_varint(out, r);
    }
    put_varint(out, min);
    if width == 0 {
        return;
    }
    put_uvarint(out, g);
    if let Some(r) = radix {
        out.push(r as u8);
        for group in resid.chunks(digits_per_byte(r)) {
            let byte = group.iter().rev().fold(0u64, |acc, &x| acc * r + (x.wrapping_sub(min) as u64) / g);
            out.push(byte as u8);
        }
        return;
    }
    for plane in 0..width {
        out.extend(resid.iter().map(|&r| (((r.wrapping_sub(min) as u64) / g) >> (plane * 8)) as u8));
    }
}

/// Reads `n` integers written by [`put_ints`].
pub fn read_ints(c: &mut Cursor<'_>, n: usize, out: &mut Vec<i64>) -> Result<(), DecodeError> {
    let header = c.u8()?;
    let (t, width) = (header & 3, (header >> 2) as usize);
    if t > T_DOD || (width > 8 && width != W_RADIX as usize) {
        return Err(DecodeError("bad integer column header"));
    }
    let nrefs = match t {
        T_RAW => 0,
        T_DELTA => 1,
        _ => 2,
    }
    .min(n);
    let mut refs = [0i64; 2];
    for r in refs.iter_mut().take(nrefs) {
        *r = c.varint()?;
    }
    let min = c.varint()?;
    let nres = n - nrefs;
    let base = out.len();
    out.reserve(n);
    out.extend_from_slice(&refs[..nrefs]);
    if width == 0 {
        out.extend(std::iter::repeat_n(min, nres));
    } else if width == W_RADIX as usize {
        let g = c.uvarint()?;
        let r = c.u8()? as u64;
        if !(2..=MAX_RADIX).contains(&r) {
            return Err(DecodeError("bad radix"));
        }
        let k = digits_per_byte(r);
        let bytes = c.take(nres.div_ceil(k))?;
        // Digits come out of each byte lowest first: one division per value (the old per-value
        // re-division from the byte's start cost up to k of them).
        let r32 = r as u32;
        let mut left = nres;
        for &byte in bytes {
            let mut b = byte as u32;
            for _ in 0..k.min(left) {
                out.push(min.wrapping_add(((b % r32) as u64).wrapping_mul(g) as i64));
                b /= r32;
            }
            left = left.saturating_sub(k);
        }
    } else {
        let g = c.uvarint()?;
        let planes = c.take(nres.checked_mul(width).ok_or(DecodeError("integer column too long"))?)?;
        // Plane by plane over contiguous slices (vectorises), instead of gathering each value's
        // bytes across planes.
        let start = out.len();
        out.extend(planes[..nres].iter().map(|&b| b as i64));
        let col = &mut out[start..];
        for p in 1..width {
            for (u, &b) in col.iter_mut().zip(&planes[p * nres..(p + 1) * nres]) {
                *u |= ((b as u64) << (p * 8)) as i64;
            }
        }
        if g == 1 {
            col.iter_mut().for_each(|u| *u = min.wrapping_add(*u));
        } else {
            col.iter_mut().for_each(|u| *u = min.wrapping_add((*u as u64).wrapping_mul(g) as i64));
        }
    }
    // Undo the transform in place. The running sums stay in registers: reading back the value
    // just stored made every element wait on a store-to-load round trip (70% of this function).
    let col = &mut out[base..];
    if let Some((&mut first, rest)) = col.split_first_mut() {
        match t {
            T_DELTA => {
                let mut prev = first;
                for x in rest {
                    prev = prev.wrapping_add(*x);
                    *x = prev;
                }
            }
            T_DOD => {
                let (mut prev, mut delta) = (first, 0i64);
                for x in rest {
                    delta = delta.wrapping_add(*x);
                    prev = prev.wrapping_add(delta);
                    *x = prev;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Where the timestamp after grid point `g` lands given the stored offset `x`, and the next
/// grid point: the grid advances by whole intervals so one gap does not shift every later offset.
#[inline]
fn grid_step(g: i64, d: i64, x: i64) -> (i64, i64) {
    let t = g.wrapping_add(d).wrapping_add(x);
    if d <= 0 {
        return (t, t);
    }
    // Nearly every sample is within half an interval of its grid point: skip the division.
    let h = x.wrapping_add(d / 2);
    let skipped = if (0..d).contains(&h) { 0 } else { h.div_euclid(d) };
    (t, g.wrapping_add(d).wrapping_add(skipped.wrapping_mul(d)))
}

fn grid_offsets(ts: &[i64], d: i64, g0: i64, out: &mut Vec<i64>) {
    out.clear();
    let mut g = g0;
    for &t in &ts[1..] {
        let x = t.wrapping_sub(g).wrapping_sub(d);
        out.push(x);
        g = grid_step(g, d, x).1;
    }
}

/// Writes the timestamps of a chunk (sorted, unique; the first is implied by the index).
pub fn put_timestamps(out: &mut Vec<u8>, ts: &[i64]) {
    put_uvarint(out, ts.len() as u64);
    if ts.len() < 2 {
        return;
    }
    let mut deltas: Vec<i64> = ts.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
    let mid = deltas.len() / 2;
    let d = *deltas.select_nth_unstable(mid).1;
    // First pass from the first timestamp; then move the grid so the earliest-running sample
    // sits on it and every offset is small and non-negative.
    let mut xs = Vec::with_capacity(ts.len());
    grid_offsets(ts, d, ts[0], &mut xs);
    let lead = xs.iter().copied().filter(|x| d <= 0 || x.unsigned_abs() < (d / 4) as u64).min().unwrap_or(0).min(0);
    let g0 = ts[0].wrapping_add(lead);
    grid_offsets(ts, d, g0, &mut xs);
    put_varint(out, d);
    put_varint(out, ts[0].wrapping_sub(g0));
    put_ints(out, &xs);
}

/// Reads timestamps written by [`put_timestamps`]; `first` is the chunk's first timestamp.
pub fn read_timestamps(c: &mut Cursor<'_>, first: i64, out: &mut Vec<i64>) -> Result<(), DecodeError> {
    let n = c.len(MAX_DECODE_SAMPLES)?;
    if n == 0 {
        return Ok(());
    }
    out.push(first);
    if n == 1 {
        return Ok(());
    }
    let d = c.varint()?;
    let g0 = first.wrapping_sub(c.varint()?);
    let base = out.len();
    read_ints(c, n - 1, out)?;
    let mut g = g0;
    for x in &mut out[base..] {
        let (t, next) = grid_step(g, d, *x);
        *x = t;
        g = next;
    }
    Ok(())
}

/// Writes one value column: decimal integers with exceptions, or Gorilla XOR.
pub fn put_values(out: &mut Vec<u8>, vals: &[f64]) {
    let mut exponent = 0usize;
    let mut exceptions = 0usize;
    for &v in vals {
        match min_exponent(v) {
            Some(e) => exponent = exponent.max(e),
            None => exceptions += 1,
        }
    }
    if exceptions * 8 <= vals.len() {
        let mut ints = Vec::with_capacity(vals.len());
        let mut exc: Vec<(usize, u64)> = Vec::new();
        let mut prev = 0i64;
        for (i, &v) in vals.iter().enumerate() {
            // A value exact at its own exponent may still overflow at the column's.
            match min_exponent(v).and_then(|_| as_decimal(v, exponent)) {
                Some(m) => {
                    ints.push(m);
                    prev = m;
                }
                None => {
                    // Repeating the previous integer keeps deltas at zero across the gap.
                    exc.push((i, v.to_bits()));
                    ints.push(prev);
                }
            }
        }
        if exc.len() * 8 <= vals.len() {
            out.push(MODE_DECIMAL);
            out.push(exponent as u8);
            put_uvarint(out, exc.len() as u64);
            let mut last = 0usize;
            for (i, bits) in exc {
                put_uvarint(out, (i - last) as u64);
                last = i;
                out.extend_from_slice(&bits.to_le_bytes());
            }
            put_ints(out, &ints);
            return;
        }
    }
    out.push(MODE_XOR);
    let bits: Vec<u64> = vals.iter().map(|v| v.to_bits()).collect();
    let mut buf = Vec::new();
    let bit_len = xor_encode_values(&bits, &mut buf);
    put_uvarint(out, bit_len as u64);
    out.extend_from_slice(&buf);
}

/// Reads `n` values written by [`put_values`].
pub fn read_values(c: &mut Cursor<'_>, n: usize, out: &mut Vec<f64>) -> Result<(), DecodeError> {
    match c.u8()? {
        MODE_DECIMAL => {
            let e = c.u8()? as usize;
            if e > MAX_EXPONENT {
                return Err(DecodeError("decimal exponent out of range"));
            }
            let nexc = c.len(n)?;
            let mut exc = Vec::with_capacity(nexc);
            let mut idx = 0usize;
            for _ in 0..nexc {
                idx = idx.checked_add(c.len(n)?).ok_or(DecodeError("exception index overflow"))?;
                exc.push((idx, c.u64_le()?));
            }
            let mut ms = Vec::with_capacity(n);
            read_ints(c, n, &mut ms)?;
            let base = out.len();
            if e == 0 {
                out.extend(ms.iter().map(|&m| m as f64));
            } else {
                // Division, not multiplication by 10^-e: only the division is bit-exact.
                let p = POW10[e];
                out.extend(ms.iter().map(|&m| m as f64 / p));
            }
            for (i, bits) in exc {
                *out.get_mut(base + i).ok_or(DecodeError("exception index out of range"))? = f64::from_bits(bits);
            }
        }
        MODE_XOR => {
            let bit_len = c.len(c.remaining() * 8)?;
            let bytes = c.take(bit_len.div_ceil(8))?;
            let mut bits = Vec::with_capacity(n);
            xor_decode_values(bytes, bit_len, n, &mut bits)?;
            out.extend(bits.into_iter().map(f64::from_bits));
        }
        _ => return Err(DecodeError("unknown value encoding")),
    }
    Ok(())
}

/// Encodes a chunk: timestamps into `ts_out`, then each value column (length-prefixed, so a
/// reader can skip to the one it needs) into `val_out`. Every column has `ts.len()` values.
pub fn encode_chunk(ts: &[i64], columns: &[&[f64]], ts_out: &mut Vec<u8>, val_out: &mut Vec<u8>) {
    put_timestamps(ts_out, ts);
    let mut buf = Vec::new();
    let same = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
    for (k, col) in columns.iter().enumerate() {
        buf.clear();
        match columns[..k].iter().position(|c| same(c, col)) {
            Some(j) => {
                buf.push(MODE_SAME);
                put_uvarint(&mut buf, j as u64);
            }
            None => put_values(&mut buf, col),
        }
        put_uvarint(val_out, buf.len() as u64);
        val_out.extend_from_slice(&buf);
    }
}

/// Encodes a raw chunk of samples (sorted, unique timestamps).
#[cfg(test)]
pub fn encode_samples(samples: &[Sample], ts_out: &mut Vec<u8>, val_out: &mut Vec<u8>) {
    let ts: Vec<i64> = samples.iter().map(|s| s.timestamp_ms).collect();
    let vals: Vec<f64> = samples.iter().map(|s| s.value).collect();
    encode_chunk(&ts, &[&vals], ts_out, val_out);
}

/// Decodes a chunk's timestamps into `ts` and returns its value column directory (columns
/// `0..=last_col`, each still encoded).
fn open_chunk<'a>(
    ts_bytes: &[u8],
    val_bytes: &'a [u8],
    first_t: i64,
    last_col: usize,
    ts: &mut Vec<i64>,
) -> Result<Vec<&'a [u8]>, DecodeError> {
    let mut c = Cursor::new(ts_bytes);
    read_timestamps(&mut c, first_t, ts)?;
    if !c.is_empty() {
        return Err(DecodeError("trailing bytes after timestamps"));
    }
    let mut c = Cursor::new(val_bytes);
    let mut dir = Vec::with_capacity(last_col + 1);
    for _ in 0..=last_col {
        dir.push(c.bytes()?);
    }
    Ok(dir)
}

/// Decodes column `col` of a directory from [`open_chunk`] (`n` values) into `out`.
fn read_column(dir: &[&[u8]], col: usize, n: usize, out: &mut Vec<f64>) -> Result<(), DecodeError> {
    let mut vc = Cursor::new(dir[col]);
    if dir[col].first() == Some(&MODE_SAME) {
        vc.u8()?;
        let j = vc.len(col.saturating_sub(1))?;
        // A reference always points to an earlier, real column.
        if j >= col || dir[j].first() == Some(&MODE_SAME) || !vc.is_empty() {
            return Err(DecodeError("bad column reference"));
        }
        vc = Cursor::new(dir[j]);
    }
    let base = out.len();
    read_values(&mut vc, n, out)?;
    if !vc.is_empty() || out.len() - base != n {
        return Err(DecodeError("value column does not match its timestamps"));
    }
    Ok(())
}

/// Decodes column `col` of a chunk, appending samples within [mint, maxt].
pub fn decode_chunk(
    ts_bytes: &[u8],
    val_bytes: &[u8],
    first_t: i64,
    col: usize,
    out: &mut Vec<Sample>,
    mint: i64,
    maxt: i64,
) -> Result<(), DecodeError> {
    let mut ts = Vec::new();
    let dir = open_chunk(ts_bytes, val_bytes, first_t, col, &mut ts)?;
    let mut vals = Vec::with_capacity(ts.len());
    read_column(&dir, col, ts.len(), &mut vals)?;
    let lo = ts.partition_point(|&t| t < mint);
    let hi = ts.partition_point(|&t| t <= maxt);
    if lo < hi {
        out.extend(ts[lo..hi].iter().zip(&vals[lo..hi]).map(|(&t, &v)| Sample::new(t, v)));
    }
    Ok(())
}

/// Decodes the timestamps of a chunk once and the value columns `cols` (any order), appending
/// those within [mint, maxt]: timestamps to `ts_out`, column `cols[k]`'s values to
/// `vals_out[k]`. Rollup queries read two or three columns of each chunk; decoding the
/// timestamps again for each one cost about as much as the columns themselves.
#[allow(clippy::too_many_arguments)]
pub fn decode_columns(
    ts_bytes: &[u8],
    val_bytes: &[u8],
    first_t: i64,
    cols: &[usize],
    mint: i64,
    maxt: i64,
    ts_out: &mut Vec<i64>,
    vals_out: &mut [Vec<f64>],
) -> Result<(), DecodeError> {
    if vals_out.len() != cols.len() {
        return Err(DecodeError("one output per requested column"));
    }
    let mut ts = Vec::new();
    let dir = open_chunk(ts_bytes, val_bytes, first_t, cols.iter().copied().max().unwrap_or(0), &mut ts)?;
    let lo = ts.partition_point(|&t| t < mint);
    let hi = ts.partition_point(|&t| t <= maxt).max(lo);
    let mut vals = Vec::with_capacity(ts.len());
    for (&col, out) in cols.iter().zip(vals_out.iter_mut()) {
        vals.clear();
        read_column(&dir, col, ts.len(), &mut vals)?;
        out.extend_from_slice(&vals[lo..hi]);
    }
    ts_out.extend_from_slice(&ts[lo..hi]);
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

    fn check(samples: &[Sample]) -> usize {
        let (mut tb, mut vb) = (Vec::new(), Vec::new());
        encode_samples(samples, &mut tb, &mut vb);
        let mut out = Vec::new();
        let first = samples.first().map_or(0, |s| s.timestamp_ms);
        decode_chunk(&tb, &vb, first, 0, &mut out, i64::MIN, i64::MAX).unwrap();
        assert_eq!(samples.len(), out.len());
        for (x, y) in samples.iter().zip(&out) {
            assert_eq!(x.timestamp_ms, y.timestamp_ms);
            assert_eq!(x.value.to_bits(), y.value.to_bits(), "at t={}", x.timestamp_ms);
        }
        tb.len() + vb.len()
    }

    #[test]
    fn edge_values_round_trip_bit_exactly() {
        let vals = edge_values();
        let samples: Vec<Sample> = vals.iter().enumerate().map(|(i, &v)| Sample::new(i as i64 * 7 - 3, v)).collect();
        check(&samples);
        let ts = [i64::MIN + 1, -5, 0, 1, 1 << 40, i64::MAX - 1];
        let samples: Vec<Sample> = ts.iter().zip(vals.iter()).map(|(&t, &v)| Sample::new(t, v)).collect();
        check(&samples);
        let ts = [i64::MIN, i64::MAX];
        check(&ts.iter().map(|&t| Sample::new(t, -0.0)).collect::<Vec<_>>());
        // Decimal column with a stale marker, NaN and -0.0 among ordinary values.
        let mut samples: Vec<Sample> = (0..100).map(|i| Sample::new(i * 10_000, i as f64 * 0.25)).collect();
        samples[40].value = f64::NAN;
        samples[41].value = -0.0;
        samples.push(Sample::new(1_000_000, f64::from_bits(STALE_NAN_BITS)));
        check(&samples);
        check(&[]);
        check(&[Sample::new(5, -0.0)]);
        check(&[Sample::new(5, f64::from_bits(STALE_NAN_BITS)), Sample::new(6, 1e300)]);
    }

    #[test]
    fn random_round_trips() {
        let mut rng = Rng(42);
        let edges = edge_values();
        for round in 0..400 {
            let n = (rng.next() % 300) as usize + 1;
            let mut t = rng.next() as i64 >> 20;
            let mut v = 0.0f64;
            let mut samples = Vec::with_capacity(n);
            for _ in 0..n {
                t += match round % 4 {
                    0 => 10_000,
                    1 => 10_000 + (rng.next() % 50) as i64 - 25,
                    2 if rng.next().is_multiple_of(10) => 10_000 * (rng.next() % 20) as i64 + 1,
                    2 => 15_000 + (rng.next() % 3) as i64,
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
            check(&samples);
        }
    }

    #[test]
    fn range_filter_columns_and_corruption_are_handled() {
        let ts: Vec<i64> = (0..50).map(|i| i * 10).collect();
        let a: Vec<f64> = (0..50).map(|i| i as f64).collect();
        let b: Vec<f64> = (0..50).map(|i| -(i as f64) / 8.0).collect();
        let (mut tb, mut vb) = (Vec::new(), Vec::new());
        encode_chunk(&ts, &[&a, &b], &mut tb, &mut vb);
        let mut out = Vec::new();
        decode_chunk(&tb, &vb, 0, 1, &mut out, 100, 200).unwrap();
        assert_eq!(out.len(), 11);
        assert_eq!(out[0], Sample::new(100, -1.25));
        assert!(decode_chunk(&tb, &vb, 0, 2, &mut out, 0, 1000).is_err());
        // Several columns at once agree with each column decoded alone, in the order asked.
        let (mut ts2, mut vals2) = (Vec::new(), [Vec::new(), Vec::new()]);
        decode_columns(&tb, &vb, 0, &[1, 0], 100, 200, &mut ts2, &mut vals2).unwrap();
        let mut col0 = Vec::new();
        decode_chunk(&tb, &vb, 0, 0, &mut col0, 100, 200).unwrap();
        assert_eq!(ts2, out.iter().map(|s| s.timestamp_ms).collect::<Vec<_>>());
        assert_eq!(vals2[0], out.iter().map(|s| s.value).collect::<Vec<_>>());
        assert_eq!(vals2[1], col0.iter().map(|s| s.value).collect::<Vec<_>>());
        assert!(decode_columns(&tb, &vb, 0, &[0, 2], 0, 1000, &mut ts2, &mut vals2).is_err());
        assert!(decode_columns(&tb, &vb, 0, &[0], 0, 1000, &mut ts2, &mut vals2).is_err());
        for cut in 0..vb.len() {
            let _ = decode_chunk(&tb, &vb[..cut], 0, 0, &mut Vec::new(), i64::MIN, i64::MAX);
        }
        for cut in 0..tb.len() {
            let _ = decode_chunk(&tb[..cut], &vb, 0, 0, &mut Vec::new(), i64::MIN, i64::MAX);
        }
        for i in 0..vb.len().max(tb.len()) {
            for mask in [0xa5u8, 0x01, 0x80] {
                let (mut t2, mut v2) = (tb.clone(), vb.clone());
                if let Some(x) = t2.get_mut(i) {
                    *x ^= mask;
                }
                if let Some(x) = v2.get_mut(i) {
                    *x ^= mask;
                }
                let _ = decode_chunk(&t2, &v2, 0, 0, &mut Vec::new(), i64::MIN, i64::MAX);
                let _ = decode_chunk(&t2, &v2, 0, 1, &mut Vec::new(), i64::MIN, i64::MAX);
            }
        }
    }

    #[test]
    fn regular_series_are_compact() {
        // An exact 10 s grid and an integer counter: timestamps cost a header, values ~1 byte.
        let samples: Vec<Sample> =
            (0..720).map(|i| Sample::new(1_700_000_000_000 + i * 10_000, (i * 4096) as f64)).collect();
        assert!(check(&samples) < 24, "{}", check(&samples));
        // Constant gauge with a gap in the scrapes.
        let samples: Vec<Sample> = (0..720)
            .filter(|i| !(300..310).contains(i))
            .map(|i| Sample::new(1_700_000_000_000 + i * 10_000, 512_110_190_592.0))
            .collect();
        check(&samples);
        let (mut tb, mut vb) = (Vec::new(), Vec::new());
        encode_samples(&samples, &mut tb, &mut vb);
        tb.extend_from_slice(&vb);
        let packed = zstd::bulk::compress(&tb, 9).unwrap().len();
        assert!(packed < 60, "{packed}");
        // Jittered timestamps: one byte plane of small offsets.
        let mut rng = Rng(3);
        let samples: Vec<Sample> =
            (0..720).map(|i| Sample::new(1_700_000_000_000 + i * 10_000 + (rng.next() % 5) as i64, 1.0)).collect();
        assert!(check(&samples) < 760, "{}", check(&samples));
    }
}
