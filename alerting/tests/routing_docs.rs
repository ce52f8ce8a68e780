//! The example routing tree in docs/alerting-routing.md parses, validates and routes as the
//! text says, so the documentation cannot drift from the code.

mod routing_common;

use routing_common::*;
use std::sync::Arc;
use tingzhen_alerting::routing::{Dispatcher, RoutingConfig};
use tingzhen_core::db::testing::fresh_db;

fn doc_config() -> RoutingConfig {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/alerting-routing.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("```toml\n").expect("the doc has a TOML example") + "```toml\n".len();
    let end = start + text[start..].find("```").unwrap();
    let value: toml::Table = toml::from_str(&text[start..end]).unwrap();
    let routing = value["alerting"]["routing"].clone();
    routing.try_into().unwrap_or_else(|e| panic!("docs example does not deserialize: {e}"))
}

#[test]
fn routing_docs_example_routes_as_described() {
    let d = Dispatcher::open(&doc_config(), Arc::new(fresh_db())).unwrap();
    let mut receivers = d.receivers_referenced();
    receivers.sort();
    assert_eq!(
        receivers,
        vec![
            "clinical-systems-wechat",
            "duty-manager-sms",
            "east-campus-wechat",
            "it-director-phone",
            "oncall-sms",
            "ops-email",
            "ops-wechat"
        ]
    );
    let t = at("2025-03-04 10:00");
    let mut got: Vec<String> = d
        .process(
            &[firing(&[("alertname", "HisDown"), ("severity", "critical"), ("system", "his"), ("campus", "east")], t)],
            t,
        )
        .into_iter()
        .map(|n| n.receiver)
        .collect();
    got.sort();
    assert_eq!(got, vec!["east-campus-wechat", "oncall-sms"]);
    // The configured hospital holiday is not an office day.
    assert!(!d.calendar_day("2025-10-28").unwrap().workday);
    // A warning at 12:30 falls in the lunch break of office hours: held until 13:30.
    let lunch = at("2025-03-04 12:30");
    let now = d.process(&[firing(&[("alertname", "DiskSlow"), ("severity", "warning")], lunch)], lunch);
    assert!(now.iter().all(|n| n.receiver != "ops-email"), "{now:?}");
    let sent = run_until(&d, at("2025-03-04 14:00"));
    let email: Vec<_> = sent.iter().filter(|(_, n)| n.receiver == "ops-email").collect();
    assert_eq!(email.len(), 1);
    assert_eq!(email[0].0, at("2025-03-04 13:30"));
}

#[test]
fn routing_deploy_example_section_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/tingzhen.example.toml");
    let value: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let cfg: RoutingConfig = value["alerting"]["routing"].clone().try_into().unwrap();
    let d = Dispatcher::open(&cfg, Arc::new(fresh_db())).unwrap();
    let mut receivers = d.receivers_referenced();
    receivers.sort();
    assert_eq!(receivers, vec!["dba", "infra-oncall"], "only receivers the example's notify section defines");
    assert!(!d.calendar_day("2026-10-28").unwrap().workday);
}
