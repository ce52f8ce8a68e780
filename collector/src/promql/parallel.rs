//! Per-series work spread over the machine's cores. A range query over a day of a fleet's
//! series spends most of its time in per-series loops (a window per step per series) that
//! share nothing, so they are split into one contiguous chunk per core; results keep the input
//! order, so answers are identical to the sequential loop's.

use std::sync::OnceLock;

/// Below this many items the threads cost more than they save.
const MIN_ITEMS: usize = 64;
/// A 2-core appliance uses both; larger machines leave room for ingest and other queries.
const MAX_THREADS: usize = 4;

fn threads() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_THREADS))
}

/// `items.iter().map(f).collect()`, on up to `MAX_THREADS` scoped threads.
pub(crate) fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let n = threads();
    if n < 2 || items.len() < MIN_ITEMS {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(n);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            items.chunks(chunk).map(|c| scope.spawn(move || c.iter().map(f).collect::<Vec<R>>())).collect();
        let mut out = Vec::with_capacity(items.len());
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
            assert_eq!(super::map(&items, |x| x * 2), items.iter().map(|x| x * 2).collect::<Vec<_>>(), "len {len}");
        }
    }
}
