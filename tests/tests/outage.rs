//! Outage test: the agent collects every second while the collector is down for several
//! intervals, buffers on disk, and replays when the collector is back on the same data dir and
//! port; afterwards the chosen series has a sample for every collection, outage included.

use std::time::Duration;
use tingzhen_tests::agent::AgentOpts;
use tingzhen_tests::{Agent, Collector, now_ms, wait};

const OUTAGE: Duration = Duration::from_secs(8);

#[test]
fn no_collection_is_lost_while_the_collector_is_down() {
    let mut coll = Collector::start_default();
    let token = coll.create_token("outage", "ingest,query", None);
    let _agent = Agent::start(AgentOpts {
        collector: Some(coll.base_url()),
        token: Some(token.clone()),
        interval: Some("1s".into()),
        ..Default::default()
    });
    let q = "node_load1";
    let count_now = |coll: &Collector| -> usize {
        let r = coll.client(&token).query(&format!("count_over_time({q}[10m])"), now_ms());
        r.vector().values().map(|v| v.1 as usize).max().unwrap_or(0)
    };
    wait::until_60s("the agent's first samples", |last| {
        let n = count_now(&coll);
        *last = format!("{n} samples");
        (n >= 3).then_some(())
    });

    let down_at = now_ms();
    coll.stop();
    std::thread::sleep(OUTAGE);
    let up_at = now_ms();
    coll.start();

    // Wait for the replay, then for a few live collections after it.
    std::thread::sleep(Duration::from_secs(5));
    let client = coll.client(&token);
    let pts =
        wait::until("samples from the outage replayed", Duration::from_secs(90), Duration::from_secs(1), |last| {
            let r = client.query(&format!("{q}[15m]"), now_ms());
            let m = r.matrix();
            *last = format!("{} series", m.len());
            if m.len() != 1 {
                return None;
            }
            let pts: Vec<i64> = m.values().next().unwrap().iter().map(|p| p.0).collect();
            let in_outage = pts.iter().filter(|&&t| t > down_at && t < up_at).count();
            *last = format!("{} samples, {in_outage} inside the outage", pts.len());
            (in_outage as u64 + 2 >= OUTAGE.as_secs() && pts.last().is_some_and(|&t| t > up_at + 2_000)).then_some(pts)
        });

    // Collections are 1 s apart (with jitter): any gap over 2.5 s is a lost collection.
    let gaps: Vec<(i64, i64)> = pts.windows(2).filter(|w| w[1] - w[0] > 2_500).map(|w| (w[0], w[1] - w[0])).collect();
    assert!(
        gaps.is_empty(),
        "collections missing (outage from {down_at} to {up_at}): gaps (start, ms) {gaps:?} in {} samples",
        pts.len()
    );
    let dups = pts.windows(2).filter(|w| w[1] <= w[0]).count();
    assert_eq!(dups, 0, "timestamps not strictly increasing");
}
