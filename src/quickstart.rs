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

/// Alert routing for the quickstart: every alert goes to a receiver without channels, so
/// acknowledging, silencing and the notification log work in the console from the first
/// minute; real channels (email, SMS, WeChat Work) are configured with `tingzhen serve`.
const QUICKSTART_CONFIG: &str = r#"
[alerting.routing.route]
receiver = "console"
group_by = ["alertname", "campus", "host"]

[[alerting.notify.receivers]]
name = "console"
channels = []
"#;
const AGENT_TOKEN: &str = "quickstart-agent";

fn fresh_token(db: &Db, name: &str, scopes: &[Scope]) -> anyhow::Result<String> {
    match db.revoke_token(name) {
        Ok(()) | Err(DbError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(db.create_token(name, scopes, &[])?.plaintext)
}

pub fn run(listen: &str, data: &Path, interval: Duration) -> anyhow::Result<()> {
    let mut config: Config = toml::from_str(QUICKSTART_CONFIG).context("the quickstart's built-in config")?;
    // The quickstart serves plain HTTP on this machine; a Secure cookie would not come back.
    config.identity.cookie_secure = false;
    config.server.listen = listen.to_string();
    config.storage.data_dir = data.display().to_string();
    config.validate()?;
    let db = Arc::new(open_db(&config)?);
    let admin = fresh_token(&db, ADMIN_TOKEN, &[Scope::Admin])?;
    let agent_token = fresh_token(&db, AGENT_TOKEN, &[Scope::Ingest])?;
    runtime()?.block_on(async move {
        let targets = open_all(&config, db).await?;
        let console_login = match &targets.console {
            Some(c) => bootstrap_admin(c.identity.clone()).await?,
            None => None,
        };
        let listener = serve::bind(&config.server.listen).await?;
        let url = format!("http://{}", listener.local_addr().context("listener address")?);
        let agent = start_agent(&url, &agent_token, data, interval)?;
        let traffic = start_demo_traffic(&targets)?;
        print_banner(&url, &admin, data, interval, console_login.as_deref());
        let stop_agent: Box<dyn FnOnce() + Send> = Box::new(move || {
            traffic.store(true, std::sync::atomic::Ordering::Relaxed);
            agent.shutdown()
        });
        run_until_signal(targets, listener, None, Some(stop_agent)).await
    })
}

const CONSOLE_ADMIN: &str = "admin";

/// On a fresh data dir: the console's first administrator with a random one-time password
/// (changed at first login). `None` when users exist already.
async fn bootstrap_admin(identity: Arc<tingzhen_identity::Identity>) -> anyhow::Result<Option<String>> {
    let password = one_time_password();
    let pw = password.clone();
    let created = tokio::task::spawn_blocking(move || {
        identity.bootstrap_admin(&tingzhen_identity::Actor::new("cli:quickstart", "127.0.0.1"), CONSOLE_ADMIN, &pw)
    })
    .await?
    .context("cannot create the console's first administrator")?;
    Ok(created.then_some(password))
}

/// 16 characters from four classes (so it always passes the password policy), without
/// look-alikes (0/O, 1/l/I) since people type it from a terminal.
fn one_time_password() -> String {
    use rand::seq::{IndexedRandom, SliceRandom};
    const CLASSES: [&[u8]; 4] = [b"ABCDEFGHJKLMNPQRSTUVWXYZ", b"abcdefghijkmnpqrstuvwxyz", b"23456789", b"#%+=@"];
    let mut rng = rand::rng();
    let mut chars: Vec<u8> = CLASSES.iter().map(|c| *c.choose(&mut rng).expect("class is not empty")).collect();
    let all: Vec<u8> = CLASSES.concat();
    while chars.len() < 16 {
        chars.push(*all.choose(&mut rng).expect("alphabet is not empty"));
    }
    chars.shuffle(&mut rng);
    String::from_utf8(chars).expect("ASCII")
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

fn print_banner(url: &str, admin: &str, data: &Path, interval: Duration, console_password: Option<&str>) {
    let secs = interval.as_secs().max(1);
    println!("tingzhen (听诊) is up.");
    println!();
    println!("URL: {url}");
    println!("Console: {url}/ui/");
    match console_password {
        Some(p) => {
            println!("Console user: {CONSOLE_ADMIN}");
            println!("Console password: {p}");
            println!("  (one-time: you must change it at first login)");
        }
        None => println!("Console users exist already in this data dir (manage them with `tingzhen user`)."),
    }
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
