//! Allocator housekeeping for the server process.
//!
//! mimalloc keeps freed pages committed for a while (v3: one second) so that memory freed and
//! asked for again soon is reused without page faults, and it purges pages whose delay has
//! expired only when the allocator is next busy. A collector is bursty: a 24-hour dashboard query
//! allocates tens of MiB of decode buffers and step values, frees them, and then the process
//! idles until the next screen refresh. Nothing then purges that memory, so the query's peak
//! stays in the RSS, which on a modest appliance looks like a leak to the OS and to ops staff.
//!
//! A housekeeping thread asks mimalloc to purge what has expired, twice a second, so freed
//! memory leaves the RSS within about 1.5 s of a burst. Purging at once instead
//! (`purge_delay = 0`) re-faulted every query's buffers: about 25% slower back-to-back
//! 24-hour queries.

use std::time::Duration;

/// How often expired freed memory is purged.
const HOUSEKEEPING_EVERY: Duration = Duration::from_millis(500);

/// Starts the housekeeping thread (once per process); for the long-running commands (`serve`,
/// `up`), not for one-shot CLI commands.
pub fn start_housekeeping() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let spawned = std::thread::Builder::new().name("alloc-purge".into()).spawn(|| {
            loop {
                std::thread::sleep(HOUSEKEEPING_EVERY);
                purge_expired();
            }
        });
        if let Err(e) = spawned {
            // The server works without it; it only holds freed memory longer.
            tracing::warn!(error = %e, "could not start the allocator housekeeping thread");
        }
    });
}

/// Purges freed memory whose purge delay has expired, program-wide (mimalloc's arenas are
/// shared by all threads; this thread's own heap is nearly empty).
fn purge_expired() {
    // The workspace denies unsafe code; this FFI call is its only exception.
    // SAFETY: `mi_collect` takes no pointers and may be called from any thread at any time.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_collect(false)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The process's resident memory, from /proc/self/status.
    fn rss_bytes() -> i64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
        let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).expect("VmRSS line");
        kib.trim().trim_end_matches("kB").trim().parse::<i64>().expect("VmRSS in kB") * 1024
    }

    #[test]
    fn housekeeping_returns_a_freed_burst() {
        // A query-sized burst of small buffers (they live in mimalloc's arenas, unlike huge
        // blocks, which go straight back to the OS) on another thread, freed when the thread
        // ends, as a query's decode threads do.
        let before = rss_bytes();
        std::thread::spawn(|| {
            let blocks: Vec<Vec<u8>> = (0..2048).map(|i| vec![i as u8; 32 << 10]).collect();
            std::hint::black_box(&blocks);
        })
        .join()
        .unwrap();
        let held = rss_bytes();
        assert!(held - before >= 48 << 20, "the burst did not show in the RSS: {before} -> {held}");
        start_housekeeping();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut now = held;
        while std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            now = rss_bytes();
            if held - now >= 48 << 20 {
                return;
            }
        }
        panic!("64 MiB freed, but the RSS is still {now} bytes of {held} after 20 s");
    }
}
