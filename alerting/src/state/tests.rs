use super::*;
use crate::model::ALERTNAME;
use tingzhen_core::db::testing::{TestStore, fresh_db};

fn obs(host: &str, v: f64) -> Observed {
    let labels: LabelMap =
        [(ALERTNAME, "Hot"), ("host", host)].into_iter().map(|(k, v)| (k.into(), v.into())).collect();
    Observed { labels, annotations: [("summary".to_string(), format!("{host} {v}"))].into(), value: v }
}

const FOR_10S: Timing = Timing { for_ms: 10_000, keep_firing_for_ms: 0 };

#[test]
fn restart_neither_repages_nor_forgets() {
    // A real restart: the store is closed and opened again (a file, or a PostgreSQL schema).
    let store = TestStore::new();
    {
        let s = AlertStore::open(Arc::new(store.open())).unwrap();
        assert!(s.evaluate_rule("g/Hot#0", FOR_10S, vec![obs("a", 1.0), obs("b", 1.0)], 0).unwrap().is_empty());
        let fired = s.evaluate_rule("g/Hot#0", FOR_10S, vec![obs("a", 2.0), obs("b", 2.0)], 10_000).unwrap();
        assert_eq!(fired.len(), 2);
        assert!(fired.iter().all(|a| a.state == AlertState::Firing && a.starts_at_ms == 10_000));
        s.routed(&fired).unwrap();
        // A third host becomes pending just before the "crash".
        s.evaluate_rule("g/Hot#0", FOR_10S, vec![obs("a", 2.0), obs("b", 2.0), obs("c", 1.0)], 12_000).unwrap();
    }
    let s = AlertStore::open(Arc::new(store.open())).unwrap();
    let undelivered = s.undelivered();
    assert_eq!(undelivered.len(), 2, "both firing alerts are remembered");
    // The same condition after the restart: no new firing transition, so no new page.
    let again = s.evaluate_rule("g/Hot#0", FOR_10S, vec![obs("a", 3.0), obs("b", 3.0), obs("c", 1.0)], 15_000).unwrap();
    assert!(again.is_empty(), "{again:?}");
    // The pending alert kept its start: it fires 10 s after 12 s, not after the restart.
    let c = s.evaluate_rule("g/Hot#0", FOR_10S, vec![obs("a", 3.0), obs("b", 3.0), obs("c", 1.0)], 22_000).unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].labels["host"], "c");
    // One history row per firing episode, none duplicated by the restart.
    assert_eq!(s.history(0, 100_000).unwrap().len(), 3);
}

#[test]
fn resolved_alerts_stay_until_routed_and_history_closes() {
    let db = Arc::new(fresh_db());
    let s = AlertStore::open(db.clone()).unwrap();
    s.evaluate_rule("r", Timing::default(), vec![obs("a", 1.0)], 1_000).unwrap();
    let resolved = s.evaluate_rule("r", Timing::default(), vec![], 61_000).unwrap();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].state, AlertState::Resolved);
    assert_eq!(resolved[0].ends_at_ms, Some(61_000));
    // Not yet routed: a restart would hand it to routing again.
    assert_eq!(AlertStore::open(db.clone()).unwrap().undelivered().len(), 1);
    s.routed(&resolved).unwrap();
    assert!(s.active().is_empty());
    assert!(AlertStore::open(db.clone()).unwrap().undelivered().is_empty());
    let h = s.history(0, 100_000).unwrap();
    assert_eq!((h[0].started_at_ms, h[0].ended_at_ms), (1_000, Some(61_000)));
    s.record_acks(&[(h[0].fingerprint.clone(), 5_000), (h[0].fingerprint.clone(), 9_000)]).unwrap();
    assert_eq!(s.history(0, 100_000).unwrap()[0].acked_at_ms, Some(5_000), "the first ack counts");
    // Outside the window: not listed.
    assert!(s.history(62_000, 100_000).unwrap().is_empty());
}

#[test]
fn external_alerts_fire_refresh_resolve_and_expire() {
    let s = AlertStore::open(Arc::new(fresh_db())).unwrap();
    let ext = |name: &str, ends: i64| ExternalAlert {
        labels: [(ALERTNAME.to_string(), name.to_string())].into(),
        annotations: LabelMap::new(),
        starts_at_ms: 500,
        ends_at_ms: ends,
        generator_url: "http://prom".into(),
    };
    let fired = s.external(vec![ext("A", 10_000), ext("B", 10_000), ext("Never", 900)], 1_000).unwrap();
    assert_eq!(fired.len(), 2, "a resolved alert never seen firing is not announced");
    assert_eq!(fired[0].starts_at_ms, 500);
    assert_eq!(s.next_expiry_ms(), Some(10_000));
    // A refreshed, B resolved by its sender.
    assert!(s.external(vec![ext("A", 20_000)], 5_000).unwrap().is_empty());
    let b = s.external(vec![ext("B", 5_000)], 5_000).unwrap();
    assert_eq!((b.len(), b[0].state), (1, AlertState::Resolved));
    assert!(s.expire_external(19_999).unwrap().is_empty());
    let a = s.expire_external(20_000).unwrap();
    assert_eq!((a.len(), a[0].ends_at_ms), (1, Some(20_000)));
}

#[test]
fn retired_rules_resolve_their_alerts() {
    let s = AlertStore::open(Arc::new(fresh_db())).unwrap();
    s.evaluate_rule("g/Old#0", Timing::default(), vec![obs("a", 1.0)], 0).unwrap();
    s.evaluate_rule("g/Kept#0", Timing::default(), vec![obs("b", 1.0)], 0).unwrap();
    let live: HashSet<String> = ["g/Kept#0".to_string()].into();
    let out = s.retire_rules(&live, 1_000).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].labels["host"].as_str(), out[0].state), ("a", AlertState::Resolved));
}
