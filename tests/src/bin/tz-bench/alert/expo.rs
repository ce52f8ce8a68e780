//! A tiny Prometheus exposition endpoint for the latency benchmark: `bench_temp{trial=…}`
//! gauges the bench sets; a scrape sees a new value from the instant `set` returns, so the
//! flip time is known exactly. One thread, one connection at a time (Prometheus scrapes a
//! target serially), `Connection: close`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Exposition {
    pub addr: SocketAddr,
    values: Arc<Mutex<BTreeMap<String, f64>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn body(values: &BTreeMap<String, f64>) -> String {
    let mut b = String::from("# HELP bench_temp A gauge the benchmark flips.\n# TYPE bench_temp gauge\n");
    for (trial, v) in values {
        b.push_str(&format!("bench_temp{{trial=\"{trial}\"}} {v}\n"));
    }
    b
}

/// Reads the request head (up to the blank line) and answers with the current values.
fn serve(mut conn: TcpStream, values: &Mutex<BTreeMap<String, f64>>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = body(&values.lock().unwrap_or_else(|e| e.into_inner()));
    write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )?;
    conn.flush()
}

impl Exposition {
    pub fn start() -> Exposition {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the exposition endpoint");
        let addr = listener.local_addr().expect("local_addr");
        let values = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (v, s) = (values.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn
                    && let Err(e) = serve(conn, &v)
                {
                    eprintln!("exposition endpoint: {e}");
                }
            }
        });
        Exposition { addr, values, stop, thread: Some(thread) }
    }

    /// Sets `bench_temp{trial="<trial>"}`; the next scrape sees it.
    pub fn set(&self, trial: &str, value: f64) {
        self.values.lock().unwrap_or_else(|e| e.into_inner()).insert(trial.to_string(), value);
    }
}

impl Drop for Exposition {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
