//! Routing with an injected clock: the route tree with `continue`, grouping with group_wait /
//! group_interval / repeat_interval, inhibition, silences (one-off and recurring),
//! escalation and acknowledgement, restart on the same database, and bad configurations.

mod routing_common;

use routing_common::*;
use std::sync::Arc;
use tingzhen_alerting::model::NotificationStatus;
use tingzhen_alerting::routing::{AckTarget, Dispatcher, SilenceSpec};
use tingzhen_core::db::testing::{TestStore, fresh_db};

const TREE: &str = r#"
[route]
receiver = "default"
group_by = ["alertname"]
group_wait = "0s"

[[route.routes]]
matchers = ['severity="critical"']
receiver = "oncall-sms"
continue = true

[[route.routes]]
matchers = ['system=~"his|lis"']
receiver = "his-team"

  [[route.routes.routes]]
  matchers = ['campus="west"']

[[route.routes]]
matchers = ['campus="east"']
receiver = "east-wechat"
"#;

#[test]
fn routing_tree_matches_with_continue_and_inheritance() {
    let d = open(TREE);
    let t = at("2025-03-04 10:00");
    let receivers = |labels: &[(&str, &str)]| {
        let mut r: Vec<String> = d.process(&[firing(labels, t)], t).into_iter().map(|n| n.receiver).collect();
        r.sort();
        r
    };
    // critical continues to the next sibling; his-team stops the search (no continue).
    assert_eq!(
        receivers(&[("alertname", "A"), ("severity", "critical"), ("system", "his"), ("campus", "east")]),
        vec!["his-team", "oncall-sms"]
    );
    assert_eq!(receivers(&[("alertname", "B"), ("severity", "warning"), ("campus", "east")]), vec!["east-wechat"]);
    assert_eq!(receivers(&[("alertname", "C"), ("severity", "warning"), ("campus", "west")]), vec!["default"]);
    // The nested west route inherits his-team as receiver but is its own group.
    let n = d.process(&[firing(&[("alertname", "D"), ("system", "lis"), ("campus", "west")], t)], t);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].receiver, "his-team");
    assert!(n[0].group_key.contains(r#"campus="west""#), "{}", n[0].group_key);
    assert_eq!(n[0].group_labels.get("alertname").map(String::as_str), Some("D"));
    let mut refs = d.receivers_referenced();
    refs.sort();
    assert_eq!(refs, vec!["default", "east-wechat", "his-team", "oncall-sms"]);
}

const GROUPING: &str = r#"
[route]
receiver = "ops"
group_by = ["campus"]
group_wait = "30s"
group_interval = "5m"
repeat_interval = "4h"
"#;

#[test]
fn routing_grouping_waits_batches_and_repeats() {
    let d = open(GROUPING);
    let t0 = at("2025-03-04 10:00");
    fn e(host: &str) -> [(&str, &str); 3] {
        [("alertname", "DiskFull"), ("campus", "east"), ("host", host)]
    }
    assert!(d.process(&[firing(&e("h1"), t0)], t0).is_empty(), "group_wait holds the first alert");
    assert!(d.process(&[firing(&e("h2"), t0)], t0 + 10_000).is_empty());
    assert_eq!(d.next_wake_ms(), Some(t0 + 30_000));
    let first = d.tick(t0 + 30_000);
    assert_eq!(first.len(), 1, "both alerts in one notification");
    assert_eq!(summary(&first[0]), ("ops".into(), vec!["h1:firing".into(), "h2:firing".into()]));
    assert_eq!(first[0].group_labels.get("campus").map(String::as_str), Some("east"));

    // A third alert joins: announced at the next group_interval, not before.
    assert!(d.process(&[firing(&e("h3"), t0 + MIN)], t0 + MIN).is_empty());
    assert!(d.tick(t0 + 5 * MIN + 29_000).is_empty());
    let second = d.tick(t0 + 5 * MIN + 30_000);
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].alerts.len(), 3);
    assert_ne!(second[0].idempotency_key, first[0].idempotency_key);

    // Nothing changed: nothing sent.
    assert!(d.tick(t0 + 10 * MIN + 30_000).is_empty());

    // h1 resolves: the next flush announces it.
    assert!(d.process(&[resolved(&e("h1"), t0 + 11 * MIN)], t0 + 11 * MIN).is_empty());
    let third = d.tick(t0 + 15 * MIN + 30_000);
    assert_eq!(summary(&third[0]).1, vec!["h1:resolved", "h2:firing", "h3:firing"]);
    assert_eq!(third[0].status, NotificationStatus::Firing);

    // Unchanged for repeat_interval: sent again, with a new key.
    let before_repeat = t0 + 15 * MIN + 30_000 + 4 * 60 * MIN;
    let sent = run_until(&d, before_repeat - 1);
    assert!(sent.is_empty(), "no repeat before repeat_interval: {sent:?}");
    let repeat = run_until(&d, before_repeat + 5 * MIN);
    assert_eq!(repeat.len(), 1);
    assert_eq!(summary(&repeat[0].1).1, vec!["h2:firing", "h3:firing"]);
    assert_ne!(repeat[0].1.idempotency_key, third[0].idempotency_key);

    // Another campus is another group.
    let w = [("alertname", "DiskFull"), ("campus", "west"), ("host", "w1")];
    let tw = repeat[0].0 + MIN;
    assert!(d.process(&[firing(&w, tw)], tw).is_empty());
    assert_eq!(d.tick(tw + 30_000).len(), 1);
    assert_eq!(d.groups(tw).len(), 2);

    // Everything in east resolves: a resolved notification, and the group is gone.
    let tr = tw + MIN;
    let mut done: Vec<_> =
        d.process(&[resolved(&e("h2"), tr), resolved(&e("h3"), tr)], tr).into_iter().map(|n| (tr, n)).collect();
    done.extend(run_until(&d, tr + 15 * MIN));
    let east: Vec<_> = done.iter().filter(|(_, n)| n.group_labels.get("campus").unwrap() == "east").collect();
    assert_eq!(east.len(), 1);
    assert_eq!(east[0].1.status, NotificationStatus::Resolved);
    assert_eq!(d.groups(tr + 15 * MIN).len(), 1, "only west is left");
}

#[test]
fn routing_alert_resolved_during_group_wait_is_never_sent() {
    let d = open(GROUPING);
    let t0 = at("2025-03-04 10:00");
    let a = [("alertname", "Blip"), ("campus", "east")];
    d.process(&[firing(&a, t0)], t0);
    d.process(&[resolved(&a, t0 + 5_000)], t0 + 5_000);
    assert!(run_until(&d, t0 + 60 * MIN).is_empty());
    assert!(d.groups(t0 + 60 * MIN).is_empty());
}

const INHIBIT: &str = r#"
[route]
receiver = "ops"
group_by = ["..."]
group_wait = "0s"
group_interval = "1m"

[[inhibit_rules]]
source_matchers = ['alertname="HostDown"']
target_matchers = ['alertname!="HostDown"']
equal = ["host"]
"#;

#[test]
fn routing_inhibition_host_down_mutes_its_services() {
    let d = open(INHIBIT);
    let t0 = at("2025-03-04 10:00");
    let down = [("alertname", "HostDown"), ("host", "his-db1")];
    let pg_same = [("alertname", "PgDown"), ("host", "his-db1")];
    let pg_other = [("alertname", "PgDown"), ("host", "lis-db1")];
    let sent = d.process(&[firing(&down, t0), firing(&pg_same, t0), firing(&pg_other, t0)], t0);
    let mut who: Vec<_> = sent.iter().flat_map(|n| summary(n).1).collect();
    who.sort();
    assert_eq!(who, vec!["his-db1:firing", "lis-db1:firing"], "PgDown on the down host is muted");
    assert!(sent.iter().all(|n| n.alerts.iter().all(|a| a.labels != firing(&pg_same, t0).labels)));
    let g = d.groups(t0);
    assert!(g.iter().flat_map(|g| &g.alerts).any(|a| a.inhibited && a.labels.get("alertname").unwrap() == "PgDown"));

    // The host comes back but PostgreSQL is still down: now it is announced, at once.
    let t1 = t0 + 3 * MIN;
    let sent = d.process(&[resolved(&down, t1)], t1);
    let names: Vec<_> = sent.iter().map(|n| (n.alerts[0].name().to_string(), n.status)).collect();
    assert!(names.contains(&("HostDown".into(), NotificationStatus::Resolved)), "{names:?}");
    assert!(names.contains(&("PgDown".into(), NotificationStatus::Firing)), "{names:?}");
}

const SILENCE: &str = r#"
[route]
receiver = "ops"
group_by = ["host"]
group_wait = "0s"
group_interval = "5m"
"#;

fn spec(matchers: &[&str]) -> SilenceSpec {
    SilenceSpec {
        matchers: matchers.iter().map(|s| s.to_string()).collect(),
        starts_at_ms: None,
        ends_at_ms: None,
        duration: None,
        created_by: "li.na".into(),
        comment: "CHG-2031".into(),
        recurrence: None,
    }
}

#[test]
fn routing_silence_mutes_until_expired() {
    let d = open(SILENCE);
    let t0 = at("2025-03-04 10:00");
    let s = d
        .create_silence(&SilenceSpec { duration: Some("1h".parse().unwrap()), ..spec(&[r#"host="his-db1""#]) }, t0)
        .unwrap();
    let a = [("alertname", "PgDown"), ("host", "his-db1")];
    let b = [("alertname", "PgDown"), ("host", "lis-db1")];
    let sent = d.process(&[firing(&a, t0 + MIN), firing(&b, t0 + MIN)], t0 + MIN);
    assert_eq!(sent.iter().map(|n| summary(n).1).collect::<Vec<_>>(), vec![vec!["lis-db1:firing".to_string()]]);
    assert!(d.groups(t0 + MIN).iter().flat_map(|g| &g.alerts).any(|a| a.silenced));
    // Expired by hand after 20 minutes: the muted alert is announced at the next tick.
    assert!(d.tick(t0 + 19 * MIN).is_empty());
    d.expire_silence(&s.id, t0 + 20 * MIN).unwrap();
    let sent = d.tick(t0 + 20 * MIN);
    assert_eq!(sent.len(), 1);
    assert_eq!(summary(&sent[0]).1, vec!["his-db1:firing"]);
    let listed = d.silences(t0 + 20 * MIN);
    assert_eq!(listed.len(), 1);
    assert_eq!(format!("{:?}", listed[0].1), "Expired");
}

#[test]
fn routing_recurring_silence_tuesday_maintenance() {
    let d = open(SILENCE);
    let created = at("2025-03-01 09:00");
    d.create_silence(
        &SilenceSpec {
            recurrence: Some(
                toml::from_str(
                    r#"weekdays = ["tue"]
times = ["02:00-04:00"]"#,
                )
                .unwrap(),
            ),
            ..spec(&[r#"host=~"his-.*""#])
        },
        created,
    )
    .unwrap();
    // Tuesday 2025-03-04, 02:30: inside the maintenance window.
    let t = at("2025-03-04 02:32");
    let a = [("alertname", "PgDown"), ("host", "his-db1")];
    assert!(d.process(&[firing(&a, t)], t).is_empty());
    let sent = run_until(&d, at("2025-03-04 06:00"));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, at("2025-03-04 04:00"), "announced the moment the window closes");
    // The same alert on a Wednesday is not muted.
    let t = at("2025-03-05 02:30");
    let b = [("alertname", "PgDown"), ("host", "his-db2")];
    let sent = d.process(&[firing(&b, t)], t);
    assert!(sent.iter().any(|n| summary(n).1 == vec!["his-db2:firing".to_string()]), "{sent:?}");
}

const ESCALATION: &str = r#"
[route]
receiver = "oncall-wechat"
group_by = ["alertname"]
group_wait = "0s"
group_interval = "1m"
repeat_interval = "12h"
escalation = [
  { after = "10m", receiver = "duty-manager-sms" },
  { after = "30m", receiver = "director-phone" },
]
"#;

#[test]
fn routing_escalation_stops_when_acknowledged() {
    let d = open(ESCALATION);
    let t0 = at("2025-03-04 10:00");
    let a = [("alertname", "HisDown"), ("severity", "critical")];
    let sent = d.process(&[firing(&a, t0 - 2 * MIN)], t0);
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].receiver.as_str(), sent[0].escalation_level), ("oncall-wechat", 0));
    let group_key = sent[0].group_key.clone();

    let early = run_until(&d, t0 + 10 * MIN - 1);
    assert!(early.is_empty(), "{early:?}");
    let step1 = run_until(&d, t0 + 11 * MIN);
    assert_eq!(step1.len(), 1);
    assert_eq!(step1[0].0, t0 + 10 * MIN);
    assert_eq!((step1[0].1.receiver.as_str(), step1[0].1.escalation_level), ("duty-manager-sms", 1));

    let acks = d.ack(&AckTarget::Group(group_key.clone()), "wang.fang", "looking into it", t0 + 12 * MIN).unwrap();
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].first_notified_ms, Some(t0));
    assert_eq!(acks[0].alert_starts_at_ms, t0 - 2 * MIN);
    assert!(run_until(&d, t0 + 45 * MIN).is_empty(), "no director after the acknowledgement");

    // Resolution reaches everyone who was paged: the first receiver and the duty manager.
    let tr = t0 + 50 * MIN;
    let done: Vec<_> = d
        .process(&[tingzhen_alerting::model::Alert { ends_at_ms: Some(tr), ..resolved(&a, t0 - 2 * MIN) }], tr)
        .into_iter()
        .map(|n| (tr, n))
        .collect();
    assert!(run_until(&d, tr + 2 * MIN).is_empty());
    let mut got: Vec<_> = done.iter().map(|(_, n)| (n.receiver.clone(), n.escalation_level, n.status)).collect();
    got.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        got,
        vec![
            ("duty-manager-sms".into(), 1, NotificationStatus::Resolved),
            ("oncall-wechat".into(), 0, NotificationStatus::Resolved)
        ]
    );
    let recorded = d.acks_between(t0, t0 + 60 * MIN).unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!((recorded[0].acked_by.as_str(), recorded[0].acked_at_ms), ("wang.fang", t0 + 12 * MIN));
    assert!(d.ack(&AckTarget::Group(group_key), "x", "", tr + 3 * MIN).is_err(), "group is gone");
}

#[test]
fn routing_escalation_runs_all_steps_when_nobody_acks() {
    let d = open(ESCALATION);
    let t0 = at("2025-03-04 10:00");
    let a = [("alertname", "LisDown")];
    d.process(&[firing(&a, t0)], t0);
    let sent = run_until(&d, t0 + 40 * MIN);
    let steps: Vec<_> = sent.iter().map(|(t, n)| ((t - t0) / MIN, n.receiver.clone(), n.escalation_level)).collect();
    assert_eq!(steps, vec![(10, "duty-manager-sms".into(), 1), (30, "director-phone".into(), 2)]);
    // Acknowledging one alert by fingerprint works too.
    let fp = firing(&a, t0).fingerprint();
    let r = d.ack(&AckTarget::Alert(fp.clone()), "zhao.lei", "", t0 + 41 * MIN).unwrap();
    assert_eq!(r[0].fingerprint, fp);
    assert!(d.ack(&AckTarget::Alert("nope".into()), "zhao.lei", "", t0 + 41 * MIN).is_err());
    assert!(d.ack(&AckTarget::Alert(fp), " ", "", t0 + 41 * MIN).unwrap_err().to_string().contains("by"));
}

#[test]
fn routing_restart_on_the_same_database_does_not_repage() {
    let store = TestStore::new();
    let cfg = config(ESCALATION);
    let t0 = at("2025-03-04 10:00");
    let a = [("alertname", "HisDown")];
    let first = {
        let d = Dispatcher::open(&cfg, Arc::new(store.open())).unwrap();
        let sent = d.process(&[firing(&a, t0)], t0);
        assert_eq!(sent.len(), 1);
        sent[0].clone()
    };
    let d = Dispatcher::open(&cfg, Arc::new(store.open())).unwrap();
    // The engine hands over its restored firing alerts again: nothing new to say.
    assert!(d.process(&[firing(&a, t0)], t0 + MIN).is_empty());
    assert!(d.tick(t0 + 2 * MIN).is_empty());
    // What was emitted just before the restart is offered again with the same key, so the
    // outbox stores it if it had not yet and drops it otherwise.
    let replay = d.replay(t0 + 2 * MIN).unwrap();
    assert_eq!(replay, vec![first.clone()]);
    // Escalation timers survived the restart.
    let esc = run_until(&d, t0 + 11 * MIN);
    assert_eq!(esc.len(), 1);
    assert_eq!(esc[0].0, t0 + 10 * MIN);
}

#[test]
fn routing_keys_are_deterministic_for_the_same_history() {
    let run = || {
        let d = open(GROUPING);
        let t0 = at("2025-03-04 10:00");
        d.process(&[firing(&[("alertname", "X"), ("campus", "east")], t0)], t0);
        let mut keys: Vec<String> = d.tick(t0 + 30_000).into_iter().map(|n| n.idempotency_key).collect();
        d.process(&[resolved(&[("alertname", "X"), ("campus", "east")], t0 + MIN)], t0 + MIN);
        keys.extend(run_until(&d, t0 + 10 * MIN).into_iter().map(|(_, n)| n.idempotency_key));
        keys
    };
    let (a, b) = (run(), run());
    assert_eq!(a.len(), 2);
    assert_eq!(a, b);
    assert_ne!(a[0], a[1]);
}

#[test]
fn routing_bad_configs_name_the_field() {
    let err = |text: &str| match toml::from_str::<tingzhen_alerting::routing::RoutingConfig>(text) {
        Err(e) => e.to_string(),
        Ok(cfg) => Dispatcher::open(&cfg, Arc::new(fresh_db())).unwrap_err().to_string(),
    };
    let cases = [
        ("[route]\nreceiver = \"a\"\ngroup_wiat = \"1s\"", "group_wiat"),
        ("[route]\ngroup_by = [\"x\"]", "route.receiver"),
        ("[route]\nreceiver = \"a\"\n[[route.routes]]\nmatchers = ['team=~\"(\"']", "route.routes[0].matchers[0]"),
        ("[route]\nreceiver = \"a\"\n[[route.routes]]\nmatchers = ['team']", "route.routes[0].matchers[0]"),
        ("[route]\nreceiver = \"a\"\ngroup_wait = \"soon\"", "invalid duration"),
        ("[route]\nreceiver = \"a\"\ngroup_interval = \"0s\"", "route.group_interval"),
        ("[route]\nreceiver = \"a\"\ngroup_by = [\"...\", \"host\"]", "route.group_by"),
        (
            "[route]\nreceiver = \"a\"\n[[route.routes]]\nactive_time_windows = [\"office\"]",
            "no time window named \"office\"",
        ),
        (
            "[route]\nreceiver = \"a\"\nescalation = [{ after = \"30m\", receiver = \"b\" }, { after = \"10m\", receiver = \"c\" }]",
            "route.escalation[1].after",
        ),
        ("[route]\nreceiver = \"a\"\nmatchers = ['a=\"b\"']", "route.matchers"),
        (
            "[route]\nreceiver = \"a\"\n[[inhibit_rules]]\nsource_matchers = []\ntarget_matchers = ['a=\"b\"']",
            "inhibit_rules[0].source_matchers",
        ),
        (
            "[route]\nreceiver = \"a\"\n[[time_windows]]\nname = \"n\"\nintervals = [{ times = [\"18:00-08:00\"] }]",
            "time_windows[0].intervals[0].times[0]",
        ),
        (
            "[route]\nreceiver = \"a\"\n[calendar]\noverrides = [{ date = \"2025-02-30\", kind = \"holiday\" }]",
            "calendar.overrides[0].date",
        ),
    ];
    for (text, want) in cases {
        let e = err(text);
        assert!(e.contains(want), "config {text:?}: error {e:?} should mention {want:?}");
    }
}

#[test]
fn routing_resolution_of_a_paged_alert_is_sent_even_if_silenced_meanwhile() {
    let d = open(SILENCE);
    let t0 = at("2025-03-04 10:00");
    let a = [("alertname", "PgDown"), ("host", "his-db1")];
    assert_eq!(d.process(&[firing(&a, t0)], t0).len(), 1);
    d.create_silence(
        &SilenceSpec { duration: Some("2h".parse().unwrap()), ..spec(&[r#"alertname="PgDown""#]) },
        t0 + MIN,
    )
    .unwrap();
    assert!(run_until(&d, t0 + 30 * MIN).is_empty());
    // Another alert joins the group and is announced while PgDown is silenced …
    let b = [("alertname", "PgSlow"), ("host", "his-db1")];
    let mut sent = d.process(&[firing(&b, t0 + 31 * MIN)], t0 + 31 * MIN);
    sent.extend(run_until(&d, t0 + 40 * MIN).into_iter().map(|(_, n)| n));
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0].alerts.len(), 1, "the silenced alert is not repeated");
    // … and when PgDown resolves, the receiver who was paged for it still hears so.
    let mut sent = d.process(&[resolved(&a, t0 + 41 * MIN)], t0 + 41 * MIN);
    sent.extend(run_until(&d, t0 + 50 * MIN).into_iter().map(|(_, n)| n));
    assert_eq!(sent.len(), 1);
    let mut got: Vec<String> = sent[0].alerts.iter().map(|x| format!("{}:{}", x.name(), x.state.as_str())).collect();
    got.sort();
    assert_eq!(got, vec!["PgDown:resolved", "PgSlow:firing"]);
}

#[test]
fn routing_reconfigure_reroutes_alerts_of_removed_routes() {
    let d = open(TREE);
    let t = at("2025-03-04 10:00");
    let a = [("alertname", "A"), ("campus", "east")];
    assert_eq!(d.process(&[firing(&a, t)], t)[0].receiver, "east-wechat");
    d.reconfigure(&config("[route]\nreceiver = \"everyone\"\ngroup_wait = \"0s\"")).unwrap();
    let sent = d.tick(t + MIN);
    assert_eq!(sent.len(), 1, "the firing alert is announced on its new route");
    assert_eq!(sent[0].receiver, "everyone");
    assert!(d.reconfigure(&config("[route]\nreceiver = \"\"")).is_err());
}

#[test]
fn routing_silences_acks_and_calendar_edits_survive_a_restart() {
    let store = TestStore::new();
    let cfg = config(ESCALATION);
    let t0 = at("2025-03-04 10:00");
    let a = [("alertname", "HisDown"), ("host", "his-app1")];
    let silence_id = {
        let d = Dispatcher::open(&cfg, Arc::new(store.open())).unwrap();
        let key = d.process(&[firing(&a, t0)], t0)[0].group_key.clone();
        d.ack(&AckTarget::Group(key), "wang.fang", "", t0 + MIN).unwrap();
        d.set_calendar_day("2025-03-12", tingzhen_alerting::calendar::DayKind::Holiday, "院庆", "admin", t0).unwrap();
        d.create_silence(&SilenceSpec { duration: Some("1h".parse().unwrap()), ..spec(&[r#"host="lis-db1""#]) }, t0)
            .unwrap()
            .id
    };
    let d = Dispatcher::open(&cfg, Arc::new(store.open())).unwrap();
    assert!(!d.calendar_day("2025-03-12").unwrap().workday);
    assert_eq!(d.silence(&silence_id, t0 + MIN).unwrap().0.created_by, "li.na");
    assert_eq!(d.acks_between(t0, t0 + 2 * MIN).unwrap().len(), 1);
    // The acknowledgement still holds after the restart: no escalation.
    assert!(run_until(&d, t0 + 40 * MIN).is_empty());
    let b = [("alertname", "PgDown"), ("host", "lis-db1")];
    assert!(d.process(&[firing(&b, t0 + 41 * MIN)], t0 + 41 * MIN).is_empty(), "the silence still mutes");
}

/// Two dispatchers on one database (two processes, or PostgreSQL's pooled connections) doing
/// the same thing at the same moment: the emitted notification is stored once and neither
/// save fails, and two silences that hash to the same first id both survive under distinct
/// ids (one is never overwritten by the other).
#[test]
fn routing_two_dispatchers_on_one_database_neither_fail_nor_overwrite() {
    let store = TestStore::new();
    let cfg = config(ESCALATION);
    let t0 = at("2025-03-04 10:00");
    let a = [("alertname", "HisDown")];
    let both = [
        Dispatcher::open(&cfg, Arc::new(store.open())).unwrap(),
        Dispatcher::open(&cfg, Arc::new(store.open())).unwrap(),
    ];
    let start = std::sync::Barrier::new(2);
    let (sent, ids): (Vec<_>, Vec<_>) = std::thread::scope(|s| {
        let runs: Vec<_> = both
            .iter()
            .map(|d| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    let sent = d.process(&[firing(&a, t0)], t0);
                    let id = d
                        .create_silence(
                            &SilenceSpec { duration: Some("1h".parse().unwrap()), ..spec(&[r#"host="lis-db1""#]) },
                            t0,
                        )
                        .unwrap()
                        .id;
                    (sent, id)
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).unzip()
    });
    // Same history, same key: each dispatcher emitted the same notification.
    assert_eq!(sent[0].len(), 1);
    assert_eq!(sent[0][0].idempotency_key, sent[1][0].idempotency_key);
    assert_eq!(both.iter().map(Dispatcher::store_failures).sum::<u64>(), 0, "a save failed on the shared key");
    assert_ne!(ids[0], ids[1], "the second silence took a fresh id");
    let reopened = Dispatcher::open(&cfg, Arc::new(store.open())).unwrap();
    assert_eq!(reopened.replay(t0 + MIN).unwrap().len(), 1, "the emitted notification is stored once");
    for id in &ids {
        assert!(reopened.silence(id, t0 + MIN).is_ok(), "silence {id} was kept");
    }
}
