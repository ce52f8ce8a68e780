//! Forwards audit records to a syslog receiver as RFC 5424 messages, over UDP (one datagram
//! per record) or TCP (RFC 6587 octet counting). Sending happens on a thread of its own so a
//! slow or absent receiver never delays a login; a record that cannot be sent is logged and
//! dropped — the chained copy in SQLite stays the record of truth.

use super::AuditRecord;
use crate::config::{SyslogConfig, SyslogProtocol};
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::mpsc;
use std::time::Duration;

/// Structured-data id; 32473 is the private enterprise number RFC 5612 reserves for examples
/// and documentation, as we have none registered.
pub const SD_ID: &str = "tingzhen@32473";

#[derive(Debug)]
pub struct Forwarder {
    tx: mpsc::Sender<String>,
    cfg: SyslogConfig,
    hostname: String,
}

impl Forwarder {
    pub fn start(cfg: SyslogConfig) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<String>();
        let c = cfg.clone();
        std::thread::Builder::new().name("tz-audit-syslog".into()).spawn(move || run(c, rx))?;
        let hostname = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty() && h.is_ascii() && !h.contains(' '))
            .unwrap_or_else(|| "-".into());
        Ok(Self { tx, cfg, hostname })
    }

    pub fn send(&self, r: &AuditRecord) {
        let _ = self.tx.send(format_5424(&self.cfg, &self.hostname, r));
    }
}

/// One RFC 5424 message: `<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] BOM+MSG`.
pub fn format_5424(cfg: &SyslogConfig, hostname: &str, r: &AuditRecord) -> String {
    // notice (5) for successes, warning (4) for failures and refusals.
    let severity = if r.outcome == "success" { 5 } else { 4 };
    let pri = cfg.facility as u32 * 8 + severity;
    let ts = chrono::DateTime::from_timestamp_millis(r.ts_ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| "-".into());
    let msgid: String = r.event.chars().filter(|c| c.is_ascii_graphic()).take(32).collect();
    let msgid = if msgid.is_empty() { "-".to_string() } else { msgid };
    let app: String = cfg.app_name.chars().filter(|c| c.is_ascii_graphic()).take(48).collect();
    format!(
        "<{pri}>1 {ts} {hostname} {app} {pid} {msgid} [{SD_ID} seq=\"{}\" actor=\"{}\" ip=\"{}\" outcome=\"{}\" hash=\"{}\"] \u{feff}{}",
        r.seq,
        sd_escape(&r.actor),
        sd_escape(&r.source_ip),
        sd_escape(&r.outcome),
        r.hash,
        r.detail,
        pid = std::process::id(),
    )
}

/// RFC 5424 §6.3.3: `"`, `\` and `]` are escaped in PARAM-VALUE.
fn sd_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn run(cfg: SyslogConfig, rx: mpsc::Receiver<String>) {
    let mut udp: Option<UdpSocket> = None;
    let mut tcp: Option<TcpStream> = None;
    for msg in rx {
        let result = match cfg.protocol {
            SyslogProtocol::Udp => send_udp(&cfg.address, &mut udp, msg.as_bytes()),
            SyslogProtocol::Tcp => {
                let framed = format!("{} {msg}", msg.len());
                // One reconnect per message: the receiver may have restarted since the last one.
                send_tcp(&cfg.address, &mut tcp, framed.as_bytes())
                    .or_else(|_| send_tcp(&cfg.address, &mut tcp, framed.as_bytes()))
            }
        };
        if let Err(e) = result {
            tracing::warn!(address = %cfg.address, error = %e, "audit record not forwarded to syslog");
        }
    }
}

fn send_udp(addr: &str, sock: &mut Option<UdpSocket>, msg: &[u8]) -> std::io::Result<()> {
    let target = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "address resolves to nothing"))?;
    if sock.is_none() {
        let bind = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
        *sock = Some(UdpSocket::bind(bind)?);
    }
    sock.as_ref().map(|s| s.send_to(msg, target)).transpose()?;
    Ok(())
}

fn send_tcp(addr: &str, conn: &mut Option<TcpStream>, msg: &[u8]) -> std::io::Result<()> {
    if conn.is_none() {
        let target = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "address resolves to nothing"))?;
        let s = TcpStream::connect_timeout(&target, Duration::from_secs(5))?;
        s.set_write_timeout(Some(Duration::from_secs(5)))?;
        *conn = Some(s);
    }
    let r = conn.as_mut().map(|s| s.write_all(msg)).transpose();
    if r.is_err() {
        *conn = None;
    }
    r.map(|_| ())
}
