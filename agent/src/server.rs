//! A minimal HTTP/1.1 server for the agent's own `/metrics` (and `/healthz`): std::net, one
//! connection at a time, `Connection: close`. A scrape endpoint needs no more, and this keeps the
//! agent free of an async runtime.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tingzhen_core::exposition;

/// The longest request head we read; scrapers send a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves until `stop` is set (and a connection wakes the accept call).
pub fn serve(listener: TcpListener, stop: Arc<AtomicBool>, render: impl Fn() -> String) {
    for conn in listener.incoming() {
        if stop.load(Ordering::Acquire) {
            break;
        }
        let Ok(conn) = conn else { continue };
        if let Err(e) = handle(conn, &render) {
            tracing::debug!(error = %e, "metrics connection failed");
        }
    }
}

/// Wakes a blocked `accept` so the server thread sees its stop flag.
pub fn wake(addr: SocketAddr) {
    let mut a = addr;
    if a.ip().is_unspecified() {
        a.set_ip(match a {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let _ = TcpStream::connect_timeout(&a, Duration::from_secs(1));
}

fn handle(mut conn: TcpStream, render: &impl Fn() -> String) -> std::io::Result<()> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
        if head.len() > MAX_HEAD {
            return respond(
                &mut conn,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"request head too large\n",
                true,
            );
        }
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let with_body = method != "HEAD";
    if method != "GET" && method != "HEAD" {
        return respond(&mut conn, "405 Method Not Allowed", "text/plain", b"only GET\n", true);
    }
    match path {
        "/metrics" => {
            let body = render();
            respond(&mut conn, "200 OK", exposition::CONTENT_TYPE, body.as_bytes(), with_body)
        }
        "/healthz" => respond(&mut conn, "200 OK", "text/plain", b"ok\n", with_body),
        "/" => respond(
            &mut conn,
            "200 OK",
            "text/html; charset=utf-8",
            b"<html><head><title>tingzhen-agent</title></head><body><h1>tingzhen-agent</h1><p><a href=\"/metrics\">Metrics</a></p></body></html>\n",
            with_body,
        ),
        _ => respond(&mut conn, "404 Not Found", "text/plain", b"not found\n", with_body),
    }
}

fn respond(conn: &mut TcpStream, status: &str, ctype: &str, body: &[u8], with_body: bool) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    if with_body {
        conn.write_all(body)?;
    }
    conn.flush()
}
