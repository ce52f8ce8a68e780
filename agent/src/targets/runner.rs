//! One thread per target: collect at the target's own fixed rate, publish to its [`Slot`],
//! ship through the shared shipper channel, hand top-SQL snapshots to the sender thread, and
//! back off after failures so a dead or misconfigured target costs almost nothing.

use super::state::{Slot, Status, up_help};
use super::{Ctx, TargetError, collector_for};
use crate::AgentError;
use crate::host::Out;
use crate::runtime::Stop;
use crate::stats::Stats;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tingzhen_core::Labels;
use tingzhen_core::remote_write;
use tingzhen_core::spool::Record;
use tingzhen_core::topsql::TopSqlReport;

/// Longest pause between attempts at a target that refuses our credentials.
const AUTH_BACKOFF_CAP: Duration = Duration::from_secs(300);
/// Longest pause between attempts at a target that cannot be reached.
const CONNECT_BACKOFF_CAP: Duration = Duration::from_secs(60);

/// What every target thread shares with the rest of the agent.
#[derive(Clone)]
pub(crate) struct RunContext {
    pub tx: Option<mpsc::Sender<Record>>,
    pub top_sql: Option<mpsc::SyncSender<TopSqlReport>>,
    pub stop: Arc<Stop>,
    pub stats: Arc<Stats>,
    pub batch_size: usize,
    pub host: String,
    pub jitter: bool,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// How many ticks to skip after `fails` consecutive failures: none after the first failure of
/// an unreachable target (so recovery is seen at once), then doubling up to the cap.
pub fn ticks_to_skip(fails: u32, auth: bool, interval: Duration) -> u32 {
    let (cap, exp) = if auth { (AUTH_BACKOFF_CAP, fails) } else { (CONNECT_BACKOFF_CAP, fails.saturating_sub(1)) };
    let max_ticks = (cap.as_secs_f64() / interval.as_secs_f64()).floor().max(0.0) as u32;
    let want = 1u32.checked_shl(exp.min(16)).unwrap_or(u32::MAX).saturating_sub(1);
    want.min(max_ticks)
}

/// Labels pushed with a target's series, as a Prometheus scrape of its exporter would add.
pub fn push_labels(slot: &Slot) -> Labels {
    Labels::from_pairs([("job", "tingzhen-agent"), ("instance", slot.config.address.as_str())])
}

/// Encodes families and hands them to the shipper in batches.
pub fn ship(ctx: &RunContext, slot: &Slot, families: &[tingzhen_core::exposition::MetricFamily], ts: i64) {
    let series = tingzhen_core::exposition::to_series(families, &push_labels(slot), ts);
    ctx.stats.samples_collected.fetch_add(series.len() as u64, Ordering::Relaxed);
    if let Some(tx) = &ctx.tx {
        for chunk in series.chunks(ctx.batch_size) {
            let rec = Record { samples: chunk.len() as u32, payload: remote_write::encode(chunk) };
            if tx.send(rec).is_err() {
                return;
            }
        }
    }
}

/// Starts the thread of one target.
pub(crate) fn spawn_target(slot: Arc<Slot>, ctx: RunContext) -> Result<JoinHandle<()>, AgentError> {
    std::thread::Builder::new()
        .name(format!("tz-t-{}", slot.config.name))
        .spawn(move || run(&slot, &ctx))
        .map_err(|source| AgentError::Thread { name: "target", source })
}

fn run(slot: &Slot, ctx: &RunContext) {
    let cfg = &slot.config;
    let mut collector = collector_for(cfg);
    let jitter = if ctx.jitter { fastrand::u64(0..cfg.interval.as_millis() as u64) } else { 0 };
    let mut next = Instant::now() + Duration::from_millis(jitter);
    let mut fails = 0u32;
    let mut skip = 0u32;
    let mut last_error: Option<TargetError> = None;
    let mut last_check: Option<String> = None;
    loop {
        if ctx.stop.wait_until(next) {
            return;
        }
        let ts = now_ms();
        let mut cx = Ctx { out: Out::new(&slot.base), top_sql: Vec::new(), partial_errors: Vec::new(), failed: None };
        let attempted = skip == 0;
        let t0 = Instant::now();
        let result = if attempted {
            slot.begin();
            collector.collect(&mut cx)
        } else {
            skip -= 1;
            Err(last_error.clone().unwrap_or_else(|| TargetError::Probe("backing off".into())))
        };
        let took = t0.elapsed().as_secs_f64();
        let Ctx { out: full, top_sql, partial_errors, failed } = cx;
        // A failed collection keeps nothing of what it gathered before failing: only `up 0`.
        // A failed check (the target answered) keeps its metrics and is not backed off.
        let mut out = if result.is_ok() { full } else { Out::new(&slot.base) };
        // Logged when the reason changes, not every tick: the check is not backed off.
        let check = failed.as_ref().filter(|_| result.is_ok()).map(|f| f.to_string());
        if let Some(f) = check.as_ref().filter(|f| last_check.as_ref() != Some(*f)) {
            tracing::warn!(target_name = %cfg.name, kind = cfg.kind.as_str(), error = %f, "target check failed");
        }
        if result.is_ok() {
            last_check = check;
        }
        let up = result.is_ok() && failed.is_none();
        let error = match result {
            Ok(()) => {
                if fails > 0 {
                    tracing::info!(target_name = %cfg.name, kind = cfg.kind.as_str(), "target is up again");
                }
                fails = 0;
                last_error = None;
                for e in &partial_errors {
                    tracing::debug!(target_name = %cfg.name, error = %e, "part of a target collection failed");
                }
                failed.map(|f| f.to_string()).unwrap_or_default()
            }
            Err(e) => {
                if attempted {
                    fails += 1;
                    skip = ticks_to_skip(fails, e.is_auth(), cfg.interval);
                    tracing::warn!(
                        target_name = %cfg.name,
                        kind = cfg.kind.as_str(),
                        address = %cfg.address,
                        error = %e,
                        next_attempt_in_s = (skip as u64 + 1) * cfg.interval.as_secs(),
                        "target collection failed"
                    );
                }
                let why = e.to_string();
                last_error = Some(e);
                why
            }
        };
        out.gauge(cfg.kind.up_metric(), &up_help(cfg.kind), &[], if up { 1.0 } else { 0.0 });
        if attempted {
            out.gauge(
                "tingzhen_target_collect_duration_seconds",
                "How long the last collection of a watched target took.",
                &[],
                took,
            );
        }
        if up {
            out.gauge(
                "tingzhen_target_partial_errors",
                "Parts of the last collection that failed while the target itself answered.",
                &[],
                partial_errors.len() as f64,
            );
        }
        let families = out.finish();
        ship(ctx, slot, &families, ts);
        slot.finish(families, if up { Status::Up } else { Status::Down }, error, ts);
        if up && !top_sql.is_empty() {
            send_top_sql(ctx, slot, top_sql, ts);
        }
        next += cfg.interval;
        let now = Instant::now();
        while next < now {
            next += cfg.interval;
        }
    }
}

/// One collection outside the schedule (`tingzhen-agent once`), published to the slot.
pub fn collect_into(slot: &Slot) {
    let mut collector = collector_for(&slot.config);
    let mut cx = Ctx { out: Out::new(&slot.base), top_sql: Vec::new(), partial_errors: Vec::new(), failed: None };
    let result = collector.collect(&mut cx);
    let mut out = if result.is_ok() { cx.out } else { Out::new(&slot.base) };
    let result = result.and_then(|()| cx.failed.map_or(Ok(()), Err));
    out.gauge(slot.config.kind.up_metric(), &up_help(slot.config.kind), &[], if result.is_ok() { 1.0 } else { 0.0 });
    let (status, error) = match result {
        Ok(()) => (Status::Up, String::new()),
        Err(e) => (Status::Down, e.to_string()),
    };
    slot.finish(out.finish(), status, error, now_ms());
}

/// Hands a snapshot to the sender thread; drops it if that thread is behind (top SQL is a
/// view for screens, not data that must survive an outage).
fn send_top_sql(ctx: &RunContext, slot: &Slot, statements: Vec<tingzhen_core::topsql::TopSqlEntry>, ts: i64) {
    let Some(tx) = &ctx.top_sql else { return };
    let report = TopSqlReport {
        host: ctx.host.clone(),
        target: slot.config.name.clone(),
        kind: slot.config.kind.as_str().into(),
        address: slot.config.address.clone(),
        ts_ms: ts,
        interval_ms: slot.config.interval.as_millis() as u64,
        statements,
    };
    if let Err(mpsc::TrySendError::Full(_)) = tx.try_send(report) {
        tracing::debug!(target_name = %slot.config.name, "top-SQL sender is behind; snapshot dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let i = Duration::from_secs(10);
        assert_eq!(ticks_to_skip(1, false, i), 0);
        assert_eq!(ticks_to_skip(2, false, i), 1);
        assert_eq!(ticks_to_skip(3, false, i), 3);
        assert_eq!(ticks_to_skip(20, false, i), 6);
        assert_eq!(ticks_to_skip(1, true, i), 1);
        assert_eq!(ticks_to_skip(2, true, i), 3);
        assert_eq!(ticks_to_skip(40, true, i), 30);
        assert_eq!(ticks_to_skip(40, true, Duration::from_secs(3600)), 0);
    }
}
