//! The `tingzhen-agent` under test: runs in its own temp dir (so any disk buffer lands there),
//! serves its own `/metrics` on a free port, ships to a collector with a token.

use crate::http::Http;
use crate::process::Proc;
use crate::{bins, ports, wait};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tempfile::TempDir;

#[derive(Default, Clone)]
pub struct AgentOpts {
    /// `--collector URL`.
    pub collector: Option<String>,
    pub token: Option<String>,
    /// `--interval`, e.g. `1s`.
    pub interval: Option<String>,
    /// `--ca-file` for an HTTPS collector signed by a private CA.
    pub ca_file: Option<PathBuf>,
    /// Top-level keys and sections for the agent's config file (not `[buffer]`: the harness
    /// sets that one).
    pub config_toml: Option<String>,
}

pub struct Agent {
    root: TempDir,
    pub listen: SocketAddr,
    opts: AgentOpts,
    proc: Option<Proc>,
}

impl Agent {
    /// Starts `tingzhen-agent run` and waits until its `/metrics` answers.
    pub fn start(opts: AgentOpts) -> Agent {
        let root = tempfile::Builder::new().prefix("tz-agent-").tempdir().expect("tempdir");
        let mut a = Agent { root, listen: ports::free_addr(), opts, proc: None };
        a.restart();
        a
    }

    /// Starts the process again in the same dir (after [`Agent::kill9`] or [`Agent::stop`]).
    pub fn restart(&mut self) {
        assert!(self.proc.is_none(), "agent already running");
        let mut cmd = Command::new(bins::agent());
        cmd.current_dir(self.root.path()).arg("run");
        // Always a config file: the disk buffer must be this agent's own (the default,
        // /var/lib/tingzhen-agent/buffer, would be shared by every agent a test run starts).
        let mut toml = self.opts.config_toml.clone().unwrap_or_default();
        toml.push_str(&format!("\n[buffer]\ndir = {:?}\n", self.root.path().join("buffer").display().to_string()));
        let p = self.root.path().join("agent.toml");
        std::fs::write(&p, toml).expect("write agent config");
        cmd.arg("--config").arg(p);
        if let Some(c) = &self.opts.collector {
            cmd.args(["--collector", c]);
        }
        if let Some(t) = &self.opts.token {
            cmd.args(["--token", t]);
        }
        if let Some(i) = &self.opts.interval {
            cmd.args(["--interval", i]);
        }
        if let Some(ca) = &self.opts.ca_file {
            cmd.arg("--ca-file").arg(ca);
        }
        cmd.args(["--listen", &self.listen.to_string()]);
        cmd.env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()));
        let mut proc = Proc::spawn("tingzhen-agent", cmd, &self.root.path().join("logs"));
        let url = self.metrics_url();
        let http = Http::new();
        wait::until(&format!("agent {url}"), Duration::from_secs(60), Duration::from_millis(100), |last| {
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
        });
        self.proc = Some(proc);
    }

    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.listen)
    }

    /// The agent's own `/metrics` page.
    pub fn scrape(&self) -> String {
        let r = Http::new().get(&self.metrics_url(), None, &[]).expect("scrape agent");
        assert_eq!(r.status, 200, "agent /metrics: {}", r.body);
        r.body
    }

    /// The `/metrics` page once the first host collection is on it (the page may be served
    /// before the first collection finishes).
    pub fn scrape_collected(&mut self) -> String {
        let proc = self.proc.as_mut().expect("agent running");
        let url = format!("http://{}/metrics", self.listen);
        wait::until_60s("the agent's first collection on /metrics", |last| {
            proc.assert_running();
            let r = Http::new().get(&url, None, &[]).ok()?;
            *last = format!("{} ({} bytes)", r.status, r.body.len());
            (r.status == 200 && r.body.lines().any(|l| l.starts_with("node_load1"))).then_some(r.body)
        })
    }

    pub fn proc_mut(&mut self) -> &mut Proc {
        self.proc.as_mut().expect("agent running")
    }

    pub fn pid(&self) -> u32 {
        self.proc.as_ref().expect("agent running").pid()
    }

    pub fn kill9(&mut self) {
        self.proc.take().expect("agent running").kill9();
    }

    pub fn stop(&mut self) {
        let mut p = self.proc.take().expect("agent running");
        assert!(p.terminate(Duration::from_secs(30)).is_some(), "agent ignored SIGTERM\n{}", p.logs());
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }
}
