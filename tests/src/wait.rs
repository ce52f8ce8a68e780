//! Polling with generous deadlines: tests wait for a condition, never for a fixed time, and
//! never assert on how long something took.

use std::time::{Duration, Instant};

/// Calls `f` every `every` until it returns `Some`, or panics after `limit` naming `what` and
/// the last observation `f` reported through `last`.
pub fn until<T>(what: &str, limit: Duration, every: Duration, mut f: impl FnMut(&mut String) -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    loop {
        if let Some(v) = f(&mut last) {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}; last seen: {last}");
        }
        std::thread::sleep(every);
    }
}

/// [`until`] with a 60 s limit and a 250 ms period.
pub fn until_60s<T>(what: &str, f: impl FnMut(&mut String) -> Option<T>) -> T {
    until(what, Duration::from_secs(60), Duration::from_millis(250), f)
}
