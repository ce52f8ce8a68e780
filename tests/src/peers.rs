//! Real peers from Debian packages, each in its own temp dir on a free port: Prometheus (with
//! the remote-write receiver), VictoriaMetrics, node_exporter and Alertmanager.

use crate::http::Http;
use crate::process::Proc;
use crate::prom::PromClient;
use crate::{bins, ports, wait};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tempfile::TempDir;

fn wait_http_ok(proc: &mut Proc, url: &str) {
    let http = Http::new();
    wait::until(&format!("{} at {url}", proc.name()), Duration::from_secs(90), Duration::from_millis(100), |last| {
        proc.assert_running();
        match http.get(url, None, &[]) {
            Ok(r) if r.status == 200 => Some(()),
            Ok(r) => {
                *last = format!("{} {}", r.status, r.body);
                None
            }
            Err(e) => {
                *last = e.to_string();
                None
            }
        }
    })
}

/// A real Prometheus server.
pub struct Prometheus {
    _root: TempDir,
    pub addr: SocketAddr,
    pub proc: Proc,
}

impl Prometheus {
    /// Starts Prometheus with the remote-write receiver on. `config_body` is the YAML after
    /// `global:` (scrape_configs, remote_write), may be empty.
    pub fn start(global_yaml: &str, config_body: &str) -> Prometheus {
        let bin = bins::peer("/usr/bin/prometheus", "prometheus");
        let root = tempfile::Builder::new().prefix("tz-prometheus-").tempdir().expect("tempdir");
        let addr = ports::free_addr();
        let cfg = root.path().join("prometheus.yml");
        std::fs::write(&cfg, format!("global:\n{global_yaml}\n{config_body}\n")).expect("write prometheus.yml");
        let mut cmd = Command::new(bin);
        cmd.current_dir(root.path())
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", root.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-remote-write-receiver")
            .arg("--log.level=warn");
        let mut proc = Proc::spawn("prometheus", cmd, &root.path().join("logs"));
        wait_http_ok(&mut proc, &format!("http://{addr}/-/ready"));
        Prometheus { _root: root, addr, proc }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn client(&self) -> PromClient {
        PromClient::new(self.base_url(), None, Http::new())
    }

    pub fn remote_write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }
}

/// A real single-node VictoriaMetrics; can be stopped and restarted on the same port and data.
pub struct VictoriaMetrics {
    root: TempDir,
    pub addr: SocketAddr,
    args: Vec<String>,
    proc: Option<Proc>,
}

impl VictoriaMetrics {
    pub fn start() -> VictoriaMetrics {
        Self::start_with_args(&[])
    }

    /// Starts with extra command-line flags (e.g. `-influxSkipSingleField`).
    pub fn start_with_args(args: &[&str]) -> VictoriaMetrics {
        let root = tempfile::Builder::new().prefix("tz-vm-").tempdir().expect("tempdir");
        let mut vm = VictoriaMetrics {
            root,
            addr: ports::free_addr(),
            args: args.iter().map(|a| a.to_string()).collect(),
            proc: None,
        };
        vm.restart();
        vm
    }

    /// Starts the process (again) on the same port and data dir and waits for `/health`.
    pub fn restart(&mut self) {
        assert!(self.proc.is_none(), "VictoriaMetrics already running");
        let bin = bins::peer("/usr/bin/victoria-metrics", "victoria-metrics");
        let mut cmd = Command::new(bin);
        cmd.current_dir(self.root.path())
            .arg(format!("-httpListenAddr={}", self.addr))
            .arg(format!("-storageDataPath={}", self.data_dir().display()))
            .arg("-loggerLevel=WARN")
            .args(&self.args);
        let mut proc = Proc::spawn("victoria-metrics", cmd, &self.root.path().join("logs"));
        wait_http_ok(&mut proc, &format!("http://{}/health", self.addr));
        self.proc = Some(proc);
    }

    /// Graceful stop (SIGTERM); VictoriaMetrics flushes on the way out.
    pub fn stop(&mut self) {
        let mut p = self.proc.take().expect("VictoriaMetrics running");
        assert!(p.terminate(Duration::from_secs(30)).is_some(), "VictoriaMetrics ignored SIGTERM\n{}", p.logs());
    }

    pub fn pid(&self) -> u32 {
        self.proc.as_ref().expect("VictoriaMetrics running").pid()
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn remote_write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// Makes VictoriaMetrics persist its in-memory buffers, so disk usage can be measured.
    pub fn force_flush(&self) {
        let r = Http::new().get(&format!("{}/internal/force_flush", self.base_url()), None, &[]).expect("force_flush");
        assert_eq!(r.status, 200, "force_flush: {}", r.body);
    }

    pub fn client(&self) -> PromClient {
        PromClient::new(self.base_url(), None, Http::new())
    }
}

/// A real node_exporter.
pub struct NodeExporter {
    _root: TempDir,
    pub addr: SocketAddr,
    pub proc: Proc,
}

impl NodeExporter {
    pub fn start() -> NodeExporter {
        let bin = bins::peer("/usr/bin/prometheus-node-exporter", "prometheus-node-exporter");
        let root = tempfile::Builder::new().prefix("tz-node-exporter-").tempdir().expect("tempdir");
        let addr = ports::free_addr();
        let mut cmd = Command::new(bin);
        cmd.current_dir(root.path()).arg(format!("--web.listen-address={addr}")).arg("--log.level=warn");
        let mut proc = Proc::spawn("node_exporter", cmd, &root.path().join("logs"));
        wait_http_ok(&mut proc, &format!("http://{addr}/metrics"));
        NodeExporter { _root: root, addr, proc }
    }

    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }
}

/// Total size in bytes of the regular files under `dir` (what `du --apparent-size` counts).
pub fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    for e in rd.flatten() {
        let Ok(md) = e.metadata() else { continue };
        if md.is_dir() {
            total += dir_bytes(&e.path());
        } else if md.is_file() {
            total += md.len();
        }
    }
    total
}

/// A real Alertmanager (Debian `prometheus-alertmanager`) with clustering off: a lone instance
/// with gossip on waits for its peers to settle before sending its first notification.
pub struct Alertmanager {
    _root: TempDir,
    pub addr: SocketAddr,
    pub proc: Proc,
}

impl Alertmanager {
    /// Starts Alertmanager with `config_yaml` as its whole configuration file.
    pub fn start(config_yaml: &str) -> Alertmanager {
        let bin = bins::peer("/usr/bin/prometheus-alertmanager", "prometheus-alertmanager");
        let root = tempfile::Builder::new().prefix("tz-alertmanager-").tempdir().expect("tempdir");
        let addr = ports::free_addr();
        let cfg = root.path().join("alertmanager.yml");
        std::fs::write(&cfg, config_yaml).expect("write alertmanager.yml");
        let mut cmd = Command::new(bin);
        cmd.current_dir(root.path())
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.path={}", root.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn");
        let mut proc = Proc::spawn("alertmanager", cmd, &root.path().join("logs"));
        wait_http_ok(&mut proc, &format!("http://{addr}/-/ready"));
        Alertmanager { _root: root, addr, proc }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}
