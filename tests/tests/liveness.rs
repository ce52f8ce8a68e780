//! Inventory and liveness: an agent's heartbeats put its host in `/api/v1/inventory/hosts` and
//! make `tingzhen_agent_up{host=…}` 1; when the agent stops, the series goes to 0.

use std::time::Duration;
use tingzhen_tests::agent::AgentOpts;
use tingzhen_tests::{Agent, Collector, hostname, now_ms, wait};

#[test]
fn agent_up_follows_heartbeats() {
    let coll = Collector::start_default();
    let token = coll.create_token("liveness", "ingest,query", None);
    let mut agent = Agent::start(AgentOpts {
        collector: Some(coll.base_url()),
        token: Some(token.clone()),
        interval: Some("1s".into()),
        // Heartbeat every second, so "down" comes after a few seconds, not minutes.
        config_toml: Some("heartbeat_interval = \"1s\"\n".into()),
        ..Default::default()
    });
    let host = hostname();
    let client = coll.client(&token);
    let q = format!("tingzhen_agent_up{{host={host:?}}}");
    let value = |last: &mut String| -> Option<f64> {
        let r = client.query(&q, now_ms());
        *last = format!("{r:?}");
        r.vector().values().next().map(|v| v.1)
    };
    wait::until_60s(&format!("{q} == 1"), |last| (value(last) == Some(1.0)).then_some(()));

    let hosts = coll.http().get(&coll.url("/api/v1/inventory/hosts"), Some(&token), &[]).unwrap();
    assert_eq!(hosts.status, 200, "{}", hosts.body);
    let v = hosts.json();
    let list = v["data"].as_array().unwrap_or_else(|| panic!("inventory data is not a list: {}", hosts.body));
    let entry = list
        .iter()
        .find(|h| h["host"] == host.as_str())
        .unwrap_or_else(|| panic!("{host} not in the inventory: {}", hosts.body));
    assert!(entry["cpus"].as_u64().unwrap_or(0) >= 1, "inventory entry without cpus: {entry}");
    assert_eq!(entry["up"], true, "inventory says the heartbeating host is down: {entry}");

    agent.kill9();
    wait::until(
        &format!("{q} == 0 after the agent stopped"),
        Duration::from_secs(90),
        Duration::from_millis(500),
        |last| (value(last) == Some(0.0)).then_some(()),
    );
}
