//! The shipper thread: sends batches to the collector in collection order, with exponential
//! backoff and jitter, spilling to the disk buffer whenever the collector cannot take them.
//!
//! Ordering invariant: while the disk buffer holds anything, new batches are appended behind
//! it and only the buffer's oldest record is sent, so the collector never sees a series go
//! backwards. A batch is sent straight from memory only when the buffer is empty.

use crate::client::{Client, Outcome};
use crate::stats::Stats;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tingzhen_core::spool::{DiskBuffer, Dropped, Record};

/// First retry delay; it doubles per consecutive failure up to the configured maximum.
pub const BASE_BACKOFF: Duration = Duration::from_millis(500);

/// Exponential backoff with "equal jitter": half fixed, half random, so that many agents
/// cut off by the same outage do not come back in lockstep.
pub fn backoff(failures: u32, max: Duration) -> Duration {
    let exp = BASE_BACKOFF.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    let d = exp.min(max).max(Duration::from_millis(1));
    let half = d / 2;
    half + Duration::from_nanos(fastrand::u64(0..=half.as_nanos() as u64))
}

#[derive(Debug)]
pub struct Shipper {
    client: Client,
    buffer: DiskBuffer,
    stats: Arc<Stats>,
    max_backoff: Duration,
    pending: VecDeque<Record>,
    failures: u32,
}

impl Shipper {
    pub fn new(client: Client, buffer: DiskBuffer, stats: Arc<Stats>, max_backoff: Duration) -> Self {
        let s = Self { client, buffer, stats, max_backoff, pending: VecDeque::new(), failures: 0 };
        s.publish_buffer_stats();
        s
    }

    fn publish_buffer_stats(&self) {
        self.stats.buffer_bytes.store(self.buffer.bytes(), Relaxed);
        self.stats.buffer_samples.store(self.buffer.samples(), Relaxed);
    }

    fn count_dropped(&self, d: Dropped) {
        if d.records > 0 {
            tracing::warn!(batches = d.records, samples = d.samples, "disk buffer full: dropped the oldest data");
            self.stats.buffer_dropped_batches.fetch_add(d.records, Relaxed);
            self.stats.buffer_dropped_samples.fetch_add(d.samples, Relaxed);
        }
    }

    /// Moves in-memory batches to the disk buffer, in order.
    fn spill(&mut self) {
        while let Some(r) = self.pending.pop_front() {
            self.persist(&r);
        }
        self.publish_buffer_stats();
    }

    fn persist(&mut self, r: &Record) {
        match self.buffer.append(r) {
            Ok(d) => self.count_dropped(d),
            Err(e) => {
                tracing::error!(error = %e, samples = r.samples, "cannot write to the disk buffer: batch lost");
                self.stats.buffer_errors.fetch_add(1, Relaxed);
                self.stats.buffer_dropped_samples.fetch_add(r.samples as u64, Relaxed);
            }
        }
    }

    /// Runs until the sending side of `rx` is dropped, then writes whatever is still in memory
    /// to the disk buffer and returns.
    pub fn run(mut self, rx: Receiver<Record>) {
        let mut retry_at: Option<Instant> = None;
        'outer: loop {
            if self.buffer.is_empty() && self.pending.is_empty() {
                match rx.recv() {
                    Ok(r) => self.pending.push_back(r),
                    Err(_) => break,
                }
            }
            if let Some(t) = retry_at {
                // Backing off: whatever arrives meanwhile waits on disk, behind the backlog.
                self.spill();
                loop {
                    let now = Instant::now();
                    if now >= t {
                        break;
                    }
                    match rx.recv_timeout(t - now) {
                        Ok(r) => {
                            self.pending.push_back(r);
                            self.spill();
                        }
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => break 'outer,
                    }
                }
                retry_at = None;
            }
            loop {
                match rx.try_recv() {
                    Ok(r) => self.pending.push_back(r),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => break 'outer,
                }
            }
            let (outcome, samples, source) = if !self.buffer.is_empty() {
                self.spill();
                match self.buffer.peek() {
                    Ok(Some(rec)) => (self.client.write(&rec.payload), rec.samples, Source::Disk),
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the disk buffer");
                        self.stats.buffer_errors.fetch_add(1, Relaxed);
                        retry_at = Some(Instant::now() + backoff(self.failures.max(1), self.max_backoff));
                        continue;
                    }
                }
            } else if let Some(rec) = self.pending.pop_front() {
                (self.client.write(&rec.payload), rec.samples, Source::Memory(rec))
            } else {
                continue;
            };
            self.handle(outcome, samples, source, &mut retry_at);
        }
        // Shutdown: nothing in memory is given up; the next start replays it.
        while let Ok(r) = rx.try_recv() {
            self.pending.push_back(r);
        }
        self.spill();
    }

    fn handle(&mut self, outcome: Outcome, samples: u32, source: Source, retry_at: &mut Option<Instant>) {
        match outcome {
            Outcome::Sent => {
                if matches!(source, Source::Disk) {
                    self.buffer.ack();
                }
                if self.failures > 0 {
                    tracing::info!(failures = self.failures, "collector reachable again; replaying the buffer");
                }
                self.failures = 0;
                self.stats.samples_sent.fetch_add(samples as u64, Relaxed);
                self.stats.batches_sent.fetch_add(1, Relaxed);
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
                self.stats.last_send_timestamp.set(now);
            }
            Outcome::Retry(why) => {
                self.failures += 1;
                self.stats.send_failures.fetch_add(1, Relaxed);
                // One line when an outage starts and a reminder now and then, not one per try.
                if self.failures == 1 || self.failures.is_multiple_of(20) {
                    tracing::warn!(error = %why, failures = self.failures, "send failed; buffering on disk and retrying");
                }
                if let Source::Memory(rec) = source {
                    self.pending.push_front(rec);
                    self.spill();
                }
                *retry_at = Some(Instant::now() + backoff(self.failures, self.max_backoff));
            }
            Outcome::Reject(status, body) => {
                if matches!(source, Source::Disk) {
                    self.buffer.ack();
                }
                self.stats.batches_rejected.fetch_add(1, Relaxed);
                self.stats.samples_rejected.fetch_add(samples as u64, Relaxed);
                tracing::warn!(status, body = %body, samples, "collector rejected a batch for good; dropped");
            }
        }
        self.publish_buffer_stats();
    }
}

/// Where the batch being sent lives, which decides what success or failure does to it.
#[derive(Debug)]
enum Source {
    Disk,
    Memory(Record),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let max = Duration::from_secs(30);
        for f in 1..40 {
            let d = backoff(f, max);
            let cap = BASE_BACKOFF.saturating_mul(1 << (f - 1).min(20)).min(max);
            assert!(d >= cap / 2 && d <= cap, "failures {f}: {d:?} not in [{:?}, {cap:?}]", cap / 2);
        }
    }
}
