//! Wires the pieces into threads: the collection loop (fixed rate, jittered start), the
//! shipper, the heartbeat loop and the `/metrics` server, and stops them in an order that
//! loses nothing: collection stops first, then the shipper spills what it holds to disk.

use crate::AgentError;
use crate::client::{Client, Outcome};
use crate::config::AgentConfig;
use crate::heartbeat;
use crate::host::HostCollector;
use crate::server;
use crate::shipper::Shipper;
use crate::stats::Stats;
use crate::targets::{self, RunContext, Targets};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tingzhen_core::Labels;
use tingzhen_core::exposition::{self, MetricFamily};
use tingzhen_core::remote_write;
use tingzhen_core::spool::{DiskBuffer, Record};

/// A stop request threads can sleep on.
#[derive(Debug, Default)]
pub(crate) struct Stop {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl Stop {
    fn request(&self) {
        *self.flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_all();
    }

    /// Sleeps until `deadline`; true if a stop was requested meanwhile.
    pub(crate) fn wait_until(&self, deadline: Instant) -> bool {
        let mut g = self.flag.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if *g {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = self.cv.wait_timeout(g, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

type Latest = Arc<Mutex<Arc<Vec<MetricFamily>>>>;

/// A running agent. Dropping it stops it too, but [`AgentHandle::shutdown`] says so plainly.
#[derive(Debug)]
pub struct AgentHandle {
    stop: Arc<Stop>,
    server_stop: Arc<AtomicBool>,
    local_addr: Option<SocketAddr>,
    threads: Vec<JoinHandle<()>>,
    stats: Arc<Stats>,
    latest: Latest,
    base: Labels,
    targets: Targets,
}

impl AgentHandle {
    /// Where `/metrics` is served (the bound address, useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// What `/metrics` would answer now.
    pub fn metrics_text(&self) -> String {
        render_metrics(&self.latest, &self.stats, &self.base, &self.targets)
    }

    /// Each watched target as the inventory heartbeat reports it now.
    pub fn watched_targets(&self) -> Vec<tingzhen_core::inventory::WatchedTarget> {
        self.targets.watched()
    }

    /// Stops collecting, writes batches not yet sent to the disk buffer, and waits for every
    /// thread (at most one request timeout, if a send is in flight).
    pub fn shutdown(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        self.stop.request();
        self.server_stop.store(true, Ordering::Release);
        if let Some(a) = self.local_addr {
            server::wake(a);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for AgentHandle {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn render_metrics(latest: &Latest, stats: &Stats, base: &Labels, targets: &Targets) -> String {
    let host = latest.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut text = exposition::render(&host);
    text.push_str(&exposition::render(&targets.families()));
    text.push_str(&exposition::render(&stats.families(base)));
    text
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// One collection of this host and of every target in the text format (`tingzhen-agent once`).
pub fn collect_once(config: &AgentConfig) -> String {
    let mut c = HostCollector::new(config.labels.to_labels(), config.top_n, config.process_interval);
    let mut text = exposition::render(&c.collect());
    let base = config.labels.to_labels();
    let targets = Targets { slots: config.targets.iter().map(|t| Arc::new(targets::slot_for(t, &base))).collect() };
    for slot in &targets.slots {
        targets::collect_into(slot);
    }
    text.push_str(&exposition::render(&targets.families()));
    text
}

fn thread(name: &'static str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, AgentError> {
    std::thread::Builder::new().name(name.into()).spawn(f).map_err(|source| AgentError::Thread { name, source })
}

/// Starts the agent in background threads.
pub fn spawn(config: AgentConfig) -> Result<AgentHandle, AgentError> {
    config.validate()?;
    let base = config.labels.to_labels();
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(Stop::default());
    let server_stop = Arc::new(AtomicBool::new(false));
    let latest: Latest = Arc::new(Mutex::new(Arc::new(Vec::new())));
    let targets = Targets { slots: config.targets.iter().map(|t| Arc::new(targets::slot_for(t, &base))).collect() };

    // Everything that can fail is set up before any thread starts.
    let listener = match config.listen {
        Some(addr) => Some(TcpListener::bind(addr).map_err(|source| AgentError::Listen { addr, source })?),
        None => None,
    };
    let local_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
    let client = match &config.collector {
        Some(url) => Some(Client::new(url, config.token.as_deref(), config.ca_file.as_deref(), config.timeout)?),
        None => None,
    };
    let buffer = match client {
        Some(_) => Some(DiskBuffer::open(&config.buffer_dir, config.buffer_max_bytes)?),
        None => None,
    };

    let mut handle = AgentHandle {
        stop: stop.clone(),
        server_stop: server_stop.clone(),
        local_addr,
        threads: Vec::new(),
        stats: stats.clone(),
        latest: latest.clone(),
        base: base.clone(),
        targets: targets.clone(),
    };

    let mut tx = None;
    if let (Some(client), Some(buffer)) = (client.clone(), buffer) {
        let (t, rx) = mpsc::channel::<Record>();
        tx = Some(t);
        let shipper = Shipper::new(client, buffer, stats.clone(), config.max_backoff);
        handle.threads.push(thread("tz-ship", move || shipper.run(rx))?);
    }
    let mut top_sql = None;
    if let Some(client) = client.clone().filter(|_| config.targets.iter().any(|t| t.top_sql > 0)) {
        // Bounded: a collector that is slow to answer costs snapshots, never memory.
        let (t, rx) = mpsc::sync_channel(32);
        top_sql = Some(t);
        handle.threads.push(thread("tz-topsql", move || top_sql_loop(&client, rx))?);
    }
    let run_ctx = RunContext {
        tx: tx.clone(),
        top_sql,
        stop: stop.clone(),
        stats: stats.clone(),
        batch_size: config.batch_size,
        host: config.labels.host.clone(),
        jitter: config.jitter,
    };
    for slot in &targets.slots {
        handle.threads.push(targets::spawn_target(slot.clone(), run_ctx.clone())?);
    }
    drop(run_ctx);
    if let Some(client) = client {
        let id = heartbeat::Identity {
            host: config.labels.host.clone(),
            campus: config.labels.campus.clone(),
            role: config.labels.role.clone(),
            system: config.labels.system.clone(),
            // The collector judges liveness by heartbeats, so it must know their period.
            interval_ms: config.heartbeat_interval.as_millis() as u64,
        };
        let (stop, stats, every, targets) = (stop.clone(), stats.clone(), config.heartbeat_interval, targets.clone());
        handle
            .threads
            .push(thread("tz-heartbeat", move || heartbeat_loop(&client, &id, &targets, every, &stop, &stats))?);
    }
    if let Some(listener) = listener {
        let (latest, stats, base, targets) = (latest.clone(), stats.clone(), base.clone(), targets.clone());
        handle.threads.push(thread("tz-metrics", move || {
            server::serve(listener, server_stop, || render_metrics(&latest, &stats, &base, &targets))
        })?);
    }
    let cfg = config.clone();
    handle.threads.push(thread("tz-collect", move || collect_loop(&cfg, base, tx, &targets, &stop, &stats, &latest))?);
    Ok(handle)
}

fn top_sql_loop(client: &Client, rx: mpsc::Receiver<tingzhen_core::topsql::TopSqlReport>) {
    // Ends when every target thread has dropped its sender.
    for report in rx {
        match client.top_sql(&report) {
            Outcome::Sent => {}
            Outcome::Retry(why) | Outcome::Reject(_, why) => {
                tracing::debug!(target_name = %report.target, error = %why, "top-SQL snapshot not sent")
            }
        }
    }
}

fn heartbeat_loop(
    client: &Client,
    id: &heartbeat::Identity,
    targets: &Targets,
    every: Duration,
    stop: &Stop,
    stats: &Stats,
) {
    let mut next = Instant::now();
    loop {
        if stop.wait_until(next) {
            return;
        }
        let mut hb = heartbeat::build(id);
        hb.targets = targets.watched();
        match client.heartbeat(&hb) {
            Outcome::Sent => {
                stats.heartbeats_sent.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Retry(why) | Outcome::Reject(_, why) => {
                // A missed heartbeat is simply sent again at the next interval.
                stats.heartbeat_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %why, "heartbeat failed");
            }
        }
        next += every;
        let now = Instant::now();
        if next < now {
            next = now;
        }
    }
}

fn collect_loop(
    cfg: &AgentConfig,
    base: Labels,
    tx: Option<mpsc::Sender<Record>>,
    targets: &Targets,
    stop: &Stop,
    stats: &Stats,
    latest: &Latest,
) {
    let mut host = HostCollector::new(base.clone(), cfg.top_n, cfg.process_interval);
    // Pushed series also get the target labels Prometheus would add on a scrape, so the
    // "Node Exporter Full" dashboard's job/instance variables work on pushed data.
    let push_labels = Labels::from_pairs([("job", "tingzhen-agent"), ("instance", cfg.labels.host.as_str())]);
    let jitter = if cfg.jitter {
        Duration::from_millis(fastrand::u64(0..cfg.interval.as_millis() as u64))
    } else {
        Duration::ZERO
    };
    let mut next = Instant::now() + jitter;
    loop {
        if stop.wait_until(next) {
            break;
        }
        let ts = now_ms();
        let t0 = Instant::now();
        let families = host.collect();
        let took = t0.elapsed().as_secs_f64();
        stats.collections.fetch_add(1, Ordering::Relaxed);
        stats.last_collection_seconds.set(took);
        stats.collection_seconds_total.set(stats.collection_seconds_total.get() + took);
        if let Some(tx) = &tx {
            let mut series = exposition::to_series(&families, &push_labels, ts);
            series.extend(exposition::to_series(&stats.families(&base), &push_labels, ts));
            // A target thread stuck in a driver cannot report itself; its `up 0` goes from here.
            for (slot, why) in targets.hung() {
                tracing::warn!(target_name = %slot.config.name, error = %why, "target collection hangs");
                let fams = slot.down_families();
                series.extend(exposition::to_series(&fams, &targets::push_labels(&slot), ts));
            }
            stats.samples_collected.fetch_add(series.len() as u64, Ordering::Relaxed);
            for chunk in series.chunks(cfg.batch_size) {
                let rec = Record { samples: chunk.len() as u32, payload: remote_write::encode(chunk) };
                if tx.send(rec).is_err() {
                    break;
                }
            }
        } else {
            let n: usize = families.iter().map(|f| f.samples.len()).sum();
            stats.samples_collected.fetch_add(n as u64, Ordering::Relaxed);
        }
        let mut page = families;
        if !host.processes_fresh() {
            page.extend(host.last_process_families().iter().cloned());
        }
        *latest.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(page);
        // Fixed rate: the next tick is one interval after this one, not after the work; if the
        // host was suspended, skip the missed ticks instead of collecting in a burst.
        next += cfg.interval;
        let now = Instant::now();
        while next < now {
            next += cfg.interval;
        }
    }
    // Dropping `tx` here tells the shipper to spill to disk and exit.
}
