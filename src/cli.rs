//! The command line: `serve`, `up`, `config check`, `token create|list|revoke`. Flags
//! override the config file.

use crate::config::Config;
use crate::console::Console;
use crate::{quickstart, serve};
use anyhow::Context;
use axum::Router;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tingzhen_alerting::Alerting;
use tingzhen_alerting::query_client::HttpMetricsQuery;
use tingzhen_collector::Collector;
use tingzhen_core::db::Db;
use tingzhen_core::token::{Scope, parse_allow};
use tokio::sync::watch;

#[derive(Parser, Debug)]
#[command(name = "tingzhen", version, about = "tingzhen (听诊): monitoring and ops for hospital groups")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (one target or all of them in one process).
    Serve(ServeArgs),
    /// Quickstart: everything in one process on embedded storage, with a built-in agent for this host.
    Up(UpArgs),
    /// Config file tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// API tokens (stored hashed; the plaintext is printed once).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Web-console users (identity).
    User {
        #[command(subcommand)]
        command: crate::identity_cli::UserCommand,
    },
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: crate::identity_cli::AuditCommand,
    },
    /// Backups taken by `[storage.backup]` (or `POST /api/v1/admin/backups`): check, restore.
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// Demo data for trying tingzhen out.
    Demo {
        #[command(subcommand)]
        command: DemoCommand,
    },
}

#[derive(Subcommand, Debug)]
enum BackupCommand {
    /// Re-read every file of a backup against its manifest (size and SHA-256); exits non-zero
    /// naming the first missing, modified or extra file.
    Verify {
        /// The backup's directory (`…/tingzhen-<time>`).
        dir: PathBuf,
    },
    /// Copy a verified backup into an empty data directory (the server stopped), then start
    /// the server on it.
    Restore {
        /// The backup's directory (`…/tingzhen-<time>`).
        #[arg(long)]
        from: PathBuf,
        /// The data directory to restore into; it must not hold an engine or a store yet.
        #[arg(long)]
        data: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum DemoCommand {
    /// Send realistic business-flow events (three flows, four campuses; some slow, stuck and
    /// failing orders) to a collector until interrupted.
    Traffic {
        /// The collector's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8630")]
        url: String,
        /// Bearer token: ingest scope for events; admin to install the demo models too.
        #[arg(long, env = "TINGZHEN_TOKEN")]
        token: String,
        /// New orders per minute across the four campuses.
        #[arg(long, default_value_t = 60.0)]
        rate: f64,
        /// How far back the first orders start, so overdue orders exist at once.
        #[arg(long, default_value = "2h")]
        backfill: tingzhen_core::config::HumanDuration,
        /// Do not install the demo flow models and interfaces (they already exist).
        #[arg(long)]
        no_models: bool,
    },
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// TOML config file; without it every key takes its default.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Which part of the system to run.
    #[arg(long, value_enum, default_value_t = Target::All)]
    target: Target,
    /// Listen address (overrides server.listen).
    #[arg(long)]
    listen: Option<String>,
    /// Data directory (overrides storage.data_dir).
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct UpArgs {
    /// Listen address.
    #[arg(long, default_value = tingzhen_core::config::DEFAULT_LISTEN)]
    listen: String,
    /// Data directory.
    #[arg(long, default_value = "./tingzhen-data")]
    data: PathBuf,
    /// Collection interval of the built-in agent.
    #[arg(long, default_value = "10s")]
    interval: tingzhen_core::config::HumanDuration,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Target {
    /// Every target in one process (the appliance).
    All,
    /// Ingest, storage, query API and inventory.
    Collector,
    /// Rules, alert state, routing, notifications; queries the collector named in
    /// `[alerting.collector]` over HTTP.
    Alerting,
    /// The web console (identity and dashboard) over the APIs named in `[dashboard.api]`.
    Dashboard,
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Parse and validate a config file; names the first bad key.
    Check { file: PathBuf },
}

#[derive(Args, Debug)]
pub(crate) struct StoreArgs {
    /// Data directory holding tingzhen.db (overrides storage.data_dir of --config).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Config file whose storage.data_dir to use.
    #[arg(long)]
    config: Option<PathBuf>,
}

impl StoreArgs {
    pub(crate) fn config_file(&self) -> Option<&Path> {
        self.config.as_deref()
    }
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Create a token; prints only the token on stdout.
    Create {
        #[arg(long)]
        name: String,
        /// Comma-separated: ingest, query, admin.
        #[arg(long)]
        scope: String,
        /// Comma-separated addresses or CIDR networks the token may be used from.
        #[arg(long)]
        allow: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a token by name.
    Revoke {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            crate::alloc::start_housekeeping();
            serve_command(args)
        }
        Command::Up(args) => {
            crate::alloc::start_housekeeping();
            quickstart::run(&args.listen, &args.data, args.interval.0)
        }
        Command::Config { command: ConfigCommand::Check { file } } => {
            let config = Config::load(&file)?;
            // Rule files are part of the configuration: a bad rule fails the check, not the start.
            let rules = &config.alerting.rules;
            let groups = tingzhen_alerting::rules::check_files(&rules.files, rules.default_interval.0)
                .with_context(|| format!("invalid config file {}: alerting.rules.files", file.display()))?;
            println!("{}: ok ({groups} rule groups)", file.display());
            Ok(())
        }
        Command::Token { command } => token_command(command),
        Command::User { command } => crate::identity_cli::user(command),
        Command::Audit { command } => crate::identity_cli::audit(command),
        Command::Backup { command: BackupCommand::Verify { dir } } => {
            let m = tingzhen_collector::backup::verify(&dir).context("backup verify")?;
            let bytes: u64 = m.files.iter().map(|f| f.bytes).sum();
            println!("{}: ok ({} files, {bytes} bytes, taken at {} ms)", dir.display(), m.files.len(), m.created_ms);
            Ok(())
        }
        Command::Backup { command: BackupCommand::Restore { from, data } } => {
            let m = tingzhen_collector::backup::restore(&from, &data).context("backup restore")?;
            println!("restored {} files from {} into {}", m.files.len(), from.display(), data.display());
            if !m.relational_store {
                println!("the backup holds no relational store (it was PostgreSQL): restore that database separately");
            }
            Ok(())
        }
        Command::Demo { command: DemoCommand::Traffic { url, token, rate, backfill, no_models } } => {
            let opts = tingzhen_collector::flows::demo::TrafficOptions {
                rate_per_min: rate,
                backfill: backfill.0,
                ..Default::default()
            };
            let stop = std::sync::atomic::AtomicBool::new(false);
            eprintln!("demo traffic: sending to {url} ({rate} orders/min); stop with Ctrl-C");
            tingzhen_collector::flows::demo::run_http(&url, &token, opts, !no_models, &stop).map_err(anyhow::Error::msg)
        }
    }
}

/// The relational store `[database]` names: SQLite beside the time-series data unless it
/// points at PostgreSQL.
pub fn open_db(config: &Config) -> anyhow::Result<Db> {
    let db = Db::connect(&config.database, Path::new(&config.storage.data_dir))
        .context("cannot open the relational store ([database])")?;
    tracing::info!(store = %db.describe(), "relational store open");
    Ok(db)
}

/// The store a CLI command works on: `--config`'s `[database]`, with `--data` overriding the
/// data directory (where the SQLite store lives).
pub(crate) fn open_store(store: &StoreArgs) -> anyhow::Result<Db> {
    let mut config = Config::load_or_default(store.config.as_deref())?;
    if let Some(d) = &store.data {
        config.storage.data_dir = d.display().to_string();
    }
    open_db(&config)
}

fn token_command(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { name, scope, allow, store } => {
            let scopes = Scope::parse_list(&scope).map_err(|e| anyhow::anyhow!("--scope: {e}"))?;
            let allow = allow
                .as_deref()
                .unwrap_or("")
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| parse_allow(s).map_err(|e| anyhow::anyhow!("--allow: {e}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let db = open_store(&store)?;
            let created = db.create_token(&name, &scopes, &allow)?;
            eprintln!(
                "created token {:?} with scopes {}; it is shown once, store it now",
                name,
                scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
            );
            println!("{}", created.plaintext);
            Ok(())
        }
        TokenCommand::List { store } => {
            let db = open_store(&store)?;
            println!("{:<24} {:<20} {:<24} {:<8}", "NAME", "SCOPES", "ALLOW", "STATE");
            for t in db.list_tokens()? {
                let scopes = t.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",");
                let allow = if t.allow.is_empty() {
                    "any".to_string()
                } else {
                    t.allow.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",")
                };
                println!(
                    "{:<24} {:<20} {:<24} {:<8}",
                    t.name,
                    scopes,
                    allow,
                    if t.revoked { "revoked" } else { "live" }
                );
            }
            Ok(())
        }
        TokenCommand::Revoke { name, store } => {
            open_store(&store)?.revoke_token(&name)?;
            eprintln!("revoked token {name:?}");
            Ok(())
        }
    }
}

fn serve_command(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::load_or_default(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(data) = args.data {
        config.storage.data_dir = data.display().to_string();
    }
    config.validate()?;
    let target = args.target;
    runtime()?.block_on(async move {
        let db = Arc::new(open_db(&config)?);
        let targets = match target {
            Target::All => open_all(&config, db).await?,
            Target::Collector => {
                Targets { collector: Some(open_collector(&config, db).await?), alerting: None, console: None }
            }
            Target::Alerting => {
                Targets { collector: None, alerting: Some(open_alerting_remote(&config, db).await?), console: None }
            }
            Target::Dashboard => {
                let (config, db) = (config.clone(), db.clone());
                let console = tokio::task::spawn_blocking(move || Console::remote(&config, db)).await??;
                Targets { collector: None, alerting: None, console: Some(console) }
            }
        };
        let listener = serve::bind(&config.server.listen).await?;
        let scheme = if config.server.tls.is_some() { "https" } else { "http" };
        tracing::info!(listen = %config.server.listen, %scheme, data = %config.storage.data_dir, ?target, "tingzhen serving");
        run_until_signal(targets, listener, config.server.tls.as_ref(), None).await
    })
}

/// The targets one process runs; at least one is present.
pub struct Targets {
    pub collector: Option<Collector>,
    pub alerting: Option<Arc<Alerting>>,
    pub console: Option<Console>,
}

async fn open_collector(config: &Config, db: Arc<Db>) -> anyhow::Result<Collector> {
    let settings = config.collector_settings();
    let flows = config.flows.clone();
    tokio::task::spawn_blocking(move || {
        let collector = Collector::open(&settings, db)?;
        collector.flows().configure(flows).context("[flows]")?;
        Ok::<_, anyhow::Error>(collector)
    })
    .await?
}

/// Collector and alerting in one process: alerting queries the collector's engine directly
/// and is told about every write, so a rule is evaluated as soon as its metrics arrive.
pub async fn open_all(config: &Config, db: Arc<Db>) -> anyhow::Result<Targets> {
    if config.alerting.collector.is_some() {
        tracing::warn!(
            "[alerting.collector] is ignored with --target all: alerting uses the collector in this process"
        );
    }
    let collector = open_collector(config, db.clone()).await?;
    let query = collector.query_service();
    let alerting_config = config.alerting.clone();
    let alerting_db = db.clone();
    let alerting = tokio::task::spawn_blocking(move || Alerting::open(&alerting_config, alerting_db, query))
        .await?
        .context("cannot start alerting")?;
    let alerting = Arc::new(alerting);
    collector.add_ingest_observer(alerting.observer());
    let api = collector.router().merge(tingzhen_alerting::api::router(alerting.clone()));
    let config = config.clone();
    let console = tokio::task::spawn_blocking(move || Console::in_process(&config, db, api)).await??;
    Ok(Targets { collector: Some(collector), alerting: Some(alerting), console: Some(console) })
}

async fn open_alerting_remote(config: &Config, db: Arc<Db>) -> anyhow::Result<Arc<Alerting>> {
    let client =
        config.alerting.collector.as_ref().context(
            "--target alerting needs [alerting.collector] with the collector's url (and a query-scope token)",
        )?;
    let query = Arc::new(HttpMetricsQuery::new(client)?);
    let alerting_config = config.alerting.clone();
    let alerting = tokio::task::spawn_blocking(move || Alerting::open(&alerting_config, db, query))
        .await?
        .context("cannot start alerting")?;
    Ok(Arc::new(alerting))
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

/// Serves until SIGINT/SIGTERM, then stops accepting, stops the targets' loops (flushing
/// storage) and returns. `on_stop` runs first (the quickstart stops its agent there so its last
/// batch is not refused).
pub async fn run_until_signal(
    targets: Targets,
    listener: tokio::net::TcpListener,
    tls: Option<&tingzhen_core::config::TlsConfig>,
    on_stop: Option<Box<dyn FnOnce() + Send>>,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let router = match (&targets.collector, &targets.alerting) {
        (Some(c), Some(a)) => c.router().merge(tingzhen_alerting::api::router(a.clone())),
        (Some(c), None) => c.router(),
        (None, Some(a)) => tingzhen_alerting::api::standalone_router(a.clone()),
        (None, None) => Router::new()
            .route("/healthz", axum::routing::get(|| async { "ok\n" }))
            .route("/readyz", axum::routing::get(|| async { "ready\n" })),
    };
    let router = match &targets.console {
        Some(console) => router.merge(console.router()),
        None if targets.collector.is_none() && targets.alerting.is_none() => anyhow::bail!("no target to run"),
        None => router,
    };
    let mut background = Vec::new();
    if let Some(collector) = targets.collector {
        let collector = Arc::new(collector);
        let rx = stop_rx.clone();
        background.push(tokio::spawn(async move { collector.run_background(rx).await }));
    }
    if let Some(alerting) = targets.alerting {
        background.push(tokio::spawn(alerting.run(stop_rx.clone())));
    }
    let server = serve::serve(listener, router, tls, stop_rx);
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => {
            result?;
        }
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            if let Some(f) = on_stop {
                tokio::task::spawn_blocking(f).await.ok();
            }
            let _ = stop_tx.send(true);
            server.await?;
        }
    }
    let _ = stop_tx.send(true);
    for task in background {
        task.await.context("background tasks failed")?;
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
