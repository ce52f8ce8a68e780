//! Per-series work spread over the machine's cores. A range query over a day of a fleet's
//! series spends most of its time in per-series loops (decoding, then a window per step per
//! series) that share nothing, so they are split into one contiguous run per core; results keep
//! the input order, so answers are identical to the sequential loop's. The embedded storage
//! decodes a selection's series the same way.

use std::ops::Range;
use std::sync::OnceLock;

/// A 2-core appliance uses both; larger machines leave room for ingest and other queries.
const MAX_THREADS: usize = 4;

fn threads() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_THREADS))
}

/// `f` over one contiguous run of `0..n` per thread (up to `MAX_THREADS`), results concatenated
/// in order. `f` returns one result per index of its run, or fewer when it stops at an error
/// (which the caller finds first when reading in order). For work that keeps state across
/// neighbouring items, such as decode buffers; the caller decides whether the work is worth
/// the threads (`parallel`).
pub(crate) fn map_ranges<R: Send>(n: usize, parallel: bool, f: impl Fn(Range<usize>) -> Vec<R> + Sync) -> Vec<R> {
    let t = threads();
    if !parallel || t < 2 || n < 2 {
        return f(0..n);
    }
    let chunk = n.div_ceil(t);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n).step_by(chunk).map(|lo| scope.spawn(move || f(lo..(lo + chunk).min(n)))).collect();
        let mut out = Vec::with_capacity(n);
        for h in handles {
            match h.join() {
                Ok(part) => out.extend(part),
                // Re-raise a worker's panic on the query thread, where it would have happened.
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_order_for_small_and_large_inputs() {
        for len in [0, 1, 63, 64, 65, 1000, 1001] {
            let items: Vec<usize> = (0..len).collect();
            for parallel in [false, true] {
                assert_eq!(super::map_ranges(len, parallel, |r| r.collect()), items, "len {len}");
            }
        }
    }
}
