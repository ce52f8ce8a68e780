//! A small real HTTP/1.1 receiver on 127.0.0.1 for the agent's integration tests: it decodes
//! remote write with `tingzhen_core::remote_write::decode`, keeps heartbeats, checks the bearer
//! token, answers with a status the test chooses, and optionally speaks TLS (rustls).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tingzhen_core::TimeSeries;

#[derive(Debug, Default)]
pub struct State {
    /// Every accepted write request, in arrival order.
    pub writes: Vec<Vec<TimeSeries>>,
    pub heartbeats: Vec<serde_json::Value>,
    /// Write requests answered with a non-2xx status.
    pub refused_writes: usize,
    /// Status for writes; 200..=299 accepts and stores.
    pub write_status: u16,
    /// Answer this many writes with 503 before `write_status` applies.
    pub fail_next: usize,
    /// Required `Authorization` header, if any.
    pub token: Option<String>,
    pub unauthorized: usize,
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

pub type Tls = Arc<rustls::ServerConfig>;

impl Receiver {
    pub fn start(listener: TcpListener, tls: Option<Tls>) -> Self {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State { write_status: 204, ..Default::default() }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::Acquire) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (st, tls) = (st.clone(), tls.clone());
                std::thread::spawn(move || {
                    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    match tls {
                        Some(cfg) => {
                            let Ok(sc) = rustls::ServerConnection::new(cfg) else { return };
                            serve(rustls::StreamOwned::new(sc, conn), &st);
                        }
                        None => serve(conn, &st),
                    }
                });
            }
        });
        Self { addr, state, stop }
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve<S: Read + Write>(stream: S, state: &Mutex<State>) {
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
        let mut len = 0usize;
        let mut chunked = false;
        let mut auth = None;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap_or((h, ""));
            match k.to_ascii_lowercase().as_str() {
                "content-length" => len = v.trim().parse().unwrap_or(0),
                "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
                "authorization" => auth = Some(v.trim().to_string()),
                _ => {}
            }
        }
        let body = if chunked {
            let mut body = Vec::new();
            loop {
                let mut size = String::new();
                r.read_line(&mut size).unwrap();
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0u8; n + 2];
                r.read_exact(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            body
        } else {
            let mut body = vec![0u8; len];
            if r.read_exact(&mut body).is_err() {
                return;
            }
            body
        };
        let status = handle(&method, &path, auth, &body, state);
        let resp = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
        let s = r.get_mut();
        if s.write_all(resp.as_bytes()).and_then(|_| s.flush()).is_err() {
            return;
        }
    }
}

fn handle(method: &str, path: &str, auth: Option<String>, body: &[u8], state: &Mutex<State>) -> u16 {
    let mut st = state.lock().unwrap();
    if let Some(t) = &st.token
        && auth.as_deref() != Some(format!("Bearer {t}").as_str())
    {
        st.unauthorized += 1;
        return 401;
    }
    match (method, path) {
        ("POST", "/api/v1/write") => {
            if st.fail_next > 0 {
                st.fail_next -= 1;
                st.refused_writes += 1;
                return 503;
            }
            if !(200..300).contains(&st.write_status) {
                st.refused_writes += 1;
                return st.write_status;
            }
            match tingzhen_core::remote_write::decode(body, 64 << 20) {
                Ok(series) => {
                    st.writes.push(series);
                    204
                }
                Err(_) => 400,
            }
        }
        ("POST", "/api/v1/agents/heartbeat") => match serde_json::from_slice(body) {
            Ok(v) => {
                st.heartbeats.push(v);
                204
            }
            Err(_) => 400,
        },
        _ => 404,
    }
}

/// A free loopback port (see `tingzhen_core::testing`).
pub fn free_port() -> u16 {
    tingzhen_core::testing::free_loopback_port()
}

/// Polls `f` until it returns true; panics with `what` after a generous deadline. Waiting is
/// not timing: nothing here asserts how fast anything was.
pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of an unlabelled-by-us metric in the agent's text output (first sample).
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in output"))
}

/// Values of `name` across all accepted writes, in arrival order, with their timestamps.
pub fn series_values(writes: &[Vec<TimeSeries>], name: &str) -> Vec<(i64, f64)> {
    let mut out = Vec::new();
    for w in writes {
        for s in w.iter().filter(|s| s.labels.metric_name() == Some(name)) {
            out.extend(s.samples.iter().map(|x| (x.timestamp_ms, x.value)));
        }
    }
    out
}

/// A config for tests: 1 s interval, no jitter, no /metrics server unless asked, short backoff.
pub fn test_config(collector: String, buffer: &std::path::Path) -> tingzhen_agent::AgentConfig {
    let mut c = tingzhen_agent::AgentConfig::for_collector(&collector);
    c.interval = Duration::from_secs(1);
    c.jitter = false;
    c.listen = None;
    c.buffer_dir = buffer.to_path_buf();
    c.max_backoff = Duration::from_millis(500);
    c.timeout = Duration::from_secs(5);
    c.top_n = 3;
    c.heartbeat_interval = Duration::from_secs(1);
    c.labels.host = "test-host".into();
    c
}
