//! The `tingzhen` server under test: a temp data dir, a free port, optional config/TLS, the
//! token CLI, start / graceful stop / `kill -9` / restart on the same data dir and port.

use crate::http::{Http, Resp};
use crate::process::Proc;
use crate::prom::PromClient;
use crate::tls::TlsFiles;
use crate::{bins, ports, wait};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use tempfile::TempDir;
use tingzhen_core::TimeSeries;

/// How a collector is configured. The default writes no config file at all (flags only).
#[derive(Default, Clone)]
pub struct CollectorOpts {
    /// Serve HTTPS with this certificate (written to `[server.tls]`).
    pub tls: Option<TlsFiles>,
    /// `[server] max_body_bytes`.
    pub max_body_bytes: Option<usize>,
    /// More TOML appended verbatim (other sections, e.g. `[query]`).
    pub extra_toml: String,
    /// Run `--target all` (collector and alerting in one process) instead of the collector alone.
    pub all_targets: bool,
}

pub struct Collector {
    root: TempDir,
    pub data: PathBuf,
    pub addr: SocketAddr,
    config: Option<PathBuf>,
    tls: bool,
    target: &'static str,
    http: Http,
    proc: Option<Proc>,
}

impl Collector {
    /// Prepares dirs, port and config without starting.
    pub fn new(opts: CollectorOpts) -> Collector {
        let root = tempfile::Builder::new().prefix("tz-collector-").tempdir().expect("tempdir");
        let data = root.path().join("data");
        let addr = ports::free_addr();
        let needs_file = opts.tls.is_some() || opts.max_body_bytes.is_some() || !opts.extra_toml.is_empty();
        let config = needs_file.then(|| {
            let mut toml = format!("[server]\nlisten = \"{addr}\"\n");
            if let Some(n) = opts.max_body_bytes {
                toml.push_str(&format!("max_body_bytes = {n}\n"));
            }
            if let Some(t) = &opts.tls {
                toml.push_str(&format!(
                    "\n[server.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
                    t.cert_path.display().to_string(),
                    t.key_path.display().to_string()
                ));
            }
            toml.push_str(&format!("\n[storage]\ndata_dir = {:?}\n", data.display().to_string()));
            toml.push_str(&opts.extra_toml);
            let p = root.path().join("tingzhen.toml");
            std::fs::write(&p, toml).expect("write collector config");
            p
        });
        let http = match &opts.tls {
            Some(t) => Http::with_ca(&t.ca_pem),
            None => Http::new(),
        };
        let target = if opts.all_targets { "all" } else { "collector" };
        Collector { root, data, addr, config, tls: opts.tls.is_some(), target, http, proc: None }
    }

    /// A collector with default settings, started and ready.
    pub fn start_default() -> Collector {
        Self::start_with(CollectorOpts::default())
    }

    pub fn start_with(opts: CollectorOpts) -> Collector {
        let mut c = Self::new(opts);
        c.start();
        c
    }

    /// Starts `tingzhen serve` (again, after a stop, on the same port and data dir) and waits
    /// until `/readyz` says 200.
    pub fn start(&mut self) {
        assert!(self.proc.is_none(), "collector already running");
        let mut cmd = Command::new(bins::tingzhen());
        cmd.current_dir(self.root.path()).arg("serve").arg("--target").arg(self.target);
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        cmd.arg("--listen").arg(self.addr.to_string()).arg("--data").arg(&self.data);
        cmd.env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()));
        self.proc = Some(Proc::spawn("tingzhen-serve", cmd, &self.root.path().join("logs")));
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let url = self.url("/readyz");
        let http = self.http.clone();
        let proc = self.proc.as_mut().expect("started");
        wait::until(&format!("collector {url} ready"), Duration::from_secs(90), Duration::from_millis(100), |last| {
            proc.assert_running();
            match http.get(&url, None, &[]) {
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

    /// Graceful stop (SIGTERM); the process must exit by itself within 30 s.
    pub fn stop(&mut self) {
        let mut p = self.proc.take().expect("collector running");
        let st = p.terminate(Duration::from_secs(30));
        assert!(st.is_some(), "collector did not shut down within 30 s of SIGTERM\n{}", p.logs());
    }

    /// `kill -9`: the crash case.
    pub fn kill9(&mut self) {
        self.proc.take().expect("collector running").kill9();
    }

    pub fn proc_mut(&mut self) -> &mut Proc {
        self.proc.as_mut().expect("collector running")
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    pub fn base_url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// A client that trusts this collector's certificate (when TLS).
    pub fn http(&self) -> &Http {
        &self.http
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Runs `tingzhen <args> --data <data dir> [--config <file>]` and returns its output.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(bins::tingzhen());
        cmd.current_dir(self.root.path()).args(args).arg("--data").arg(&self.data);
        // The config names the relational store ([database]); the CLI must use the server's.
        if let Some(config) = &self.config {
            cmd.arg("--config").arg(config);
        }
        cmd.output().expect("run tingzhen CLI")
    }

    /// `tingzhen token create`; stdout must be exactly the token and a newline.
    pub fn create_token(&self, name: &str, scopes: &str, allow: Option<&str>) -> String {
        let mut args = vec!["token", "create", "--name", name, "--scope", scopes];
        if let Some(a) = allow {
            args.extend(["--allow", a]);
        }
        let out = self.cli(&args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "token create failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let token = stdout.strip_suffix('\n').unwrap_or(&stdout);
        assert!(
            token.starts_with("tz_") && !token.contains(char::is_whitespace),
            "token create must print only the token and a newline on stdout, printed {stdout:?}"
        );
        token.to_string()
    }

    /// A token with every scope.
    pub fn admin_token(&self) -> String {
        self.create_token("e2e-admin", "ingest,query,admin", None)
    }

    pub fn revoke_token(&self, name: &str) {
        let out = self.cli(&["token", "revoke", "--name", name]);
        assert!(out.status.success(), "token revoke failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The Prometheus query API of this collector with `token`.
    pub fn client(&self, token: &str) -> PromClient {
        PromClient::new(self.base_url(), Some(token.to_string()), self.http.clone())
    }

    /// Remote-writes `series` (snappy protobuf).
    pub fn write(&self, token: &str, series: &[TimeSeries]) -> Resp {
        let body = tingzhen_core::remote_write::encode(series);
        self.write_raw(token, &body)
    }

    pub fn write_raw(&self, token: &str, body: &[u8]) -> Resp {
        let url = self.url("/api/v1/write");
        self.http.remote_write(&url, Some(token), body).unwrap_or_else(|e| panic!("POST {url}: {e}"))
    }

    /// Remote-writes and asserts a 2xx.
    pub fn write_ok(&self, token: &str, series: &[TimeSeries]) {
        let r = self.write(token, series);
        assert!(r.is_success(), "remote write refused: {} {}", r.status, r.body);
    }
}
