//! Restarts: a stop mid-queue leaves the rest stored and the reopened outbox (same database)
//! delivers each notification exactly once; a delivery in flight when the process dies is
//! sent again after the restart with the same Idempotency-Key (at-least-once, deduplicable).

mod notify_common;

use notify_common::fake::{self, HOOK_TOKEN};
use notify_common::*;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use tingzhen_alerting::outbox::{DeliveryState, dedup_id};
use tingzhen_core::db::testing::TestStore;

fn hook_config(base: &str, dir: &std::path::Path) -> String {
    let token = secret(dir, "hook.token", HOOK_TOKEN).file.unwrap();
    format!(
        r#"
[retry]
initial_backoff = "100ms"
max_backoff = "500ms"
concurrency = 1

[webhooks.ops]
url = "{base}/hook"
bearer = {{ file = "{token}" }}

[[receivers]]
name = "hook"
channels = [{{ type = "webhook", webhook = "ops" }}]
"#
    )
}

fn per_key(fake: &fake::Fake) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in fake.state.of("hook") {
        *m.entry(r.headers["idempotency-key"].clone()).or_insert(0) += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_queue_delivers_each_notification_exactly_once() {
    let fake = fake::start().await;
    fake.state.webhook_delay_ms.store(100, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&hook_config(&fake.url(), dir.path()));
    let store = TestStore::new();
    const N: usize = 20;

    let run = Running::start(&cfg, open_db(&store));
    for i in 0..N {
        assert!(run.outbox.enqueue(&firing(&format!("r{i}"), "hook")).unwrap());
    }
    wait_until("a few delivered", || fake.state.of("hook").len() >= 3).await;
    run.stop().await;
    let before = fake.state.of("hook").len();
    assert!(before < N, "the stop must come mid-queue ({before} of {N} sent)");

    let run = Running::start(&cfg, open_db(&store));
    // Re-flushing the same group state after the restart is a no-op.
    assert!(!run.outbox.enqueue(&firing("r0", "hook")).unwrap());
    assert!(!run.outbox.enqueue(&firing(&format!("r{}", N - 1), "hook")).unwrap());
    wait_until("all delivered", || run.records().iter().filter(|d| d.outcome == DeliveryState::Sent).count() == N)
        .await;
    run.stop().await;
    fake.state.assert_clean();

    let counts = per_key(&fake);
    assert_eq!(counts.len(), N);
    for i in 0..N {
        let id = dedup_id(&format!("r{i}"), "hook", "webhook:ops");
        assert_eq!(counts.get(&id), Some(&1), "notification r{i} delivered exactly once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_in_flight_at_a_crash_is_resent_with_the_same_key() {
    let fake = fake::start().await;
    fake.state.webhook_delay_ms.store(800, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&hook_config(&fake.url(), dir.path()));
    let store = TestStore::new();

    let run = Running::start(&cfg, open_db(&store));
    run.outbox.enqueue(&firing("c1", "hook")).unwrap();
    wait_until("send in flight", || run.records().iter().any(|d| d.outcome == DeliveryState::Sending)).await;
    run.crash();

    fake.state.webhook_delay_ms.store(0, Ordering::SeqCst);
    let run = Running::start(&cfg, open_db(&store));
    wait_until("delivered after restart", || run.records().iter().any(|d| d.outcome == DeliveryState::Sent)).await;
    let records = run.records();
    run.stop().await;
    // The first request (answered after the crash) may or may not have reached the fake; both
    // carry the same key, so a deduplicating receiver shows the message once.
    wait_until("crashed request settled", || !fake.state.of("hook").is_empty()).await;
    let counts = per_key(&fake);
    assert_eq!(counts.len(), 1, "{counts:?}");
    assert!(counts.contains_key(&dedup_id("c1", "hook", "webhook:ops")));
    assert_eq!(records.len(), 1, "one delivery row per notification and channel");
    assert_eq!(records[0].attempts, 2, "the crashed attempt counts");
}

/// A receiver removed from the config while its notification waits: the delivery ends as a
/// dead letter saying why, never silently dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_delivery_of_a_removed_receiver_becomes_a_dead_letter() {
    let fake = fake::start().await;
    fake.state.webhook_broken.store(1, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let store = TestStore::new();
    let cfg = config(&hook_config(&fake.url(), dir.path()));
    let run = Running::start(&cfg, open_db(&store));
    run.outbox.enqueue(&firing("gone", "hook")).unwrap();
    wait_until("a failed attempt", || {
        run.records().iter().any(|d| d.attempts >= 1 && d.outcome == DeliveryState::Pending)
    })
    .await;
    run.stop().await;

    let other = config(&hook_config(&fake.url(), dir.path()).replace("name = \"hook\"", "name = \"other\""));
    let run = Running::start(&other, open_db(&store));
    wait_until("dead letter", || run.records().iter().all(|d| d.outcome == DeliveryState::Dead)).await;
    let r = run.records();
    run.stop().await;
    assert!(r[0].last_error.as_deref().unwrap().contains("no longer configured"), "{r:#?}");
}
