//! `tingzhen up`: the whole system in one process on embedded storage, with a built-in agent
//! for this host, so a newcomer sees live data with one command. Each start issues fresh
//! tokens (revoking the previous quickstart ones) and prints the admin token once.

use crate::cli::{open_all, open_db, run_until_signal, runtime};
use crate::config::Config;
use crate::serve;
use anyhow::Context;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tingzhen_core::db::{Db, DbError};
use tingzhen_core::token::Scope;

const ADMIN_TOKEN: &str = "quickstart-admin";
const AGENT_TOKEN: &str = "quickstart-agent";

fn fresh_token(db: &Db, name: &str, scopes: &[Scope]) -> anyhow::Result<String> {
    match db.revoke_token(name) {
        Ok(()) | Err(DbError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(db.create_token(name, scopes, &[])?.plaintext)
}

pub fn run(listen: &str, data: &Path, interval: Duration) -> anyhow::Result<()> {
    let mut config = Config::default();
    config.server.listen = listen.to_string();
    config.storage.data_dir = data.display().to_string();
    config.validate()?;
    let db = Arc::new(open_db(data)?);
    let admin = fresh_token(&db, ADMIN_TOKEN, &[Scope::Admin])?;
    let agent_token = fresh_token(&db, AGENT_TOKEN, &[Scope::Ingest])?;
    runtime()?.block_on(async move {
        let targets = open_all(&config, db).await?;
        let listener = serve::bind(&config.server.listen).await?;
        let url = format!("http://{}", listener.local_addr().context("listener address")?);
        let agent = start_agent(&url, &agent_token, data, interval)?;
        let traffic = start_demo_traffic(&targets)?;
        print_banner(&url, &admin, data, interval);
        let stop_agent: Box<dyn FnOnce() + Send> = Box::new(move || {
            traffic.store(true, std::sync::atomic::Ordering::Relaxed);
            agent.shutdown()
        });
        run_until_signal(targets, listener, None, Some(stop_agent)).await
    })
}

fn start_agent(url: &str, token: &str, data: &Path, interval: Duration) -> anyhow::Result<tingzhen_agent::AgentHandle> {
    let mut config = tingzhen_agent::AgentConfig::for_collector(url);
    config.token = Some(token.to_string());
    config.interval = interval;
    config.buffer_dir = data.join("agent-buffer");
    // The built-in agent's own /metrics is not needed: the collector has its data.
    config.listen = None;
    tingzhen_agent::spawn(config).context("cannot start the built-in agent")
}

/// Runs the demo traffic generator in process so live business flows show at once.
fn start_demo_traffic(targets: &crate::cli::Targets) -> anyhow::Result<Arc<std::sync::atomic::AtomicBool>> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let Some(collector) = &targets.collector else { return Ok(stop) };
    let flows = collector.flows().clone();
    let flag = stop.clone();
    std::thread::Builder::new()
        .name("demo-traffic".into())
        .spawn(move || {
            let opts = tingzhen_collector::flows::demo::TrafficOptions::default();
            if let Err(e) = tingzhen_collector::flows::demo::run_in_process(flows, opts, flag) {
                tracing::warn!(error = %e, "demo traffic stopped");
            }
        })
        .context("cannot start the demo traffic generator")?;
    Ok(stop)
}

fn print_banner(url: &str, admin: &str, data: &Path, interval: Duration) {
    let secs = interval.as_secs().max(1);
    println!("tingzhen (听诊) is up.");
    println!();
    println!("URL: {url}");
    println!("Admin token: {admin}");
    println!("  (shown once; a new one is issued at every start. Keep it secret.)");
    println!("Data: {}", data.display());
    println!("Built-in agent: collecting this host every {secs}s");
    println!();
    println!("Try (after one or two intervals):");
    println!("  curl -H 'Authorization: Bearer {admin}' '{url}/api/v1/query?query=node_load1'");
    println!(
        "  curl -H 'Authorization: Bearer {admin}' '{url}/api/v1/query' --data-urlencode 'query=100 * (1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)'"
    );
    println!(
        "  curl -H 'Authorization: Bearer {admin}' '{url}/api/v1/query' --data-urlencode 'query=sum by (mode) (rate(node_cpu_seconds_total[1m]))'"
    );
    println!("  curl -H 'Authorization: Bearer {admin}' '{url}/api/v1/inventory/hosts'");
    println!();
    println!("Demo business flows (检查申请单, 检验申请单, 住院医嘱; four campuses) are being generated:");
    println!("  curl -H 'Authorization: Bearer {admin}' '{url}/api/v1/flows/overdue'");
    println!("  curl -H 'Authorization: Bearer {admin}' '{url}/api/v1/flows/models'");
    println!("  curl -H 'Authorization: Bearer {admin}' '{url}/api/v1/flows/map'");
    println!(
        "  curl -H 'Authorization: Bearer {admin}' '{url}/api/v1/query' --data-urlencode 'query=sum by (flow, step) (tingzhen_flow_overdue)'"
    );
    println!(
        "  curl -H 'Authorization: Bearer {admin}' '{url}/api/v1/alerting/rules'   # alerting (docs/alerting-rules.md)"
    );
    println!();
    println!("Grafana: add a Prometheus data source at {url} with header Authorization: Bearer <token>.");
    println!("Stop with Ctrl-C.");
}
