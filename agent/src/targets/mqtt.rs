//! MQTT brokers (Mosquitto): one MQTT 3.1.1 connection kept open and subscribed to `$SYS/#`,
//! written by hand (CONNECT, SUBSCRIBE, PINGREQ, DISCONNECT — an async client with its own
//! runtime would cost more than the whole protocol). Brokers publish `$SYS` every few seconds,
//! so the connection stays up and each collection drains what arrived, then proves liveness
//! with a PINGREQ/PINGRESP round trip. Metric names follow the mosquitto exporter:
//! `$SYS/broker/clients/connected` → `broker_clients_connected`.

use super::{Collect, Ctx, TargetConfig, TargetError};
use crate::host::Out;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Largest packet accepted (a `$SYS` value is a few bytes).
const MAX_PACKET: usize = 1 << 20;
/// Most distinct `$SYS` topics kept (bridges add topics; the set must stay bounded).
const MAX_TOPICS: usize = 300;

/// Cumulative `$SYS` values (counters); everything else numeric is a gauge.
const COUNTERS: &[&str] = &[
    "messages/received",
    "messages/sent",
    "bytes/received",
    "bytes/sent",
    "publish/messages/received",
    "publish/messages/sent",
    "publish/messages/dropped",
    "publish/bytes/received",
    "publish/bytes/sent",
];

pub struct Mqtt {
    address: String,
    username: Option<String>,
    password: Option<String>,
    timeout: Duration,
    keepalive: u16,
    conn: Option<TcpStream>,
    values: BTreeMap<String, String>,
}

/// MQTT's variable-length remaining length.
pub fn encode_len(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return;
        }
    }
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![first];
    encode_len(body.len(), &mut p);
    p.extend_from_slice(body);
    p
}

fn string(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(65535)];
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

pub fn connect_packet(client_id: &str, user: Option<&str>, pass: Option<&str>, keepalive: u16) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, "MQTT");
    body.push(4);
    let mut flags = 0x02u8;
    if user.is_some() {
        flags |= 0x80;
    }
    if pass.is_some() {
        flags |= 0x40;
    }
    body.push(flags);
    body.extend_from_slice(&keepalive.to_be_bytes());
    string(&mut body, client_id);
    if let Some(u) = user {
        string(&mut body, u);
    }
    if let Some(p) = pass {
        string(&mut body, p);
    }
    packet(0x10, &body)
}

pub fn subscribe_packet(topic: &str) -> Vec<u8> {
    let mut body = vec![0, 1];
    string(&mut body, topic);
    body.push(0);
    packet(0x82, &body)
}

/// Reads one packet: (type nibble, flags nibble, body).
pub fn read_packet(r: &mut impl Read) -> Result<(u8, u8, Vec<u8>), std::io::Error> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut first = [0u8; 1];
    r.read_exact(&mut first)?;
    let mut len = 0usize;
    for i in 0..4 {
        let mut b = [0u8; 1];
        r.read_exact(&mut b)?;
        len |= ((b[0] & 0x7f) as usize) << (7 * i);
        if b[0] & 0x80 == 0 {
            break;
        }
        if i == 3 {
            return Err(bad("malformed remaining length"));
        }
    }
    if len > MAX_PACKET {
        return Err(bad("packet too large"));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok((first[0] >> 4, first[0] & 0x0f, body))
}

/// A PUBLISH body's topic and payload (QoS from the flags decides whether an id follows).
pub fn parse_publish(flags: u8, body: &[u8]) -> Option<(String, String)> {
    let n = u16::from_be_bytes([*body.first()?, *body.get(1)?]) as usize;
    let topic = std::str::from_utf8(body.get(2..2 + n)?).ok()?.to_string();
    let start = 2 + n + if (flags >> 1) & 3 > 0 { 2 } else { 0 };
    let payload = String::from_utf8_lossy(body.get(start..)?).into_owned();
    Some((topic, payload))
}

/// `$SYS/broker/retained messages/count` → `broker_retained_messages_count`.
pub fn metric_name(topic: &str) -> Option<String> {
    let rest = topic.strip_prefix("$SYS/")?;
    let mut name: String =
        rest.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    while name.contains("__") {
        name = name.replace("__", "_");
    }
    Some(name.trim_matches('_').to_string())
}

pub fn emit_sys(values: &BTreeMap<String, String>, out: &mut Out<'_>) {
    for (topic, payload) in values {
        if topic == "$SYS/broker/version" {
            out.gauge("broker_version_info", "The broker's version", &[("version", payload.trim())], 1.0);
            continue;
        }
        // "13640 seconds" (uptime) → 13640; non-numeric payloads are skipped.
        let Some(v) = payload.split_whitespace().next().and_then(|w| w.parse::<f64>().ok()) else { continue };
        let Some(name) = metric_name(topic) else { continue };
        let path = topic.trim_start_matches("$SYS/broker/");
        let help = format!("The value of {topic}");
        if COUNTERS.contains(&path) {
            out.counter(&name, &help, &[], v);
        } else {
            out.gauge(&name, &help, &[], v);
        }
    }
}

impl Mqtt {
    pub fn new(cfg: &TargetConfig) -> Self {
        // Our PINGREQ each interval keeps the session alive.
        let keepalive = (cfg.interval.as_secs() * 2).clamp(30, 65535) as u16;
        Self {
            address: cfg.address.clone(),
            username: cfg.username.clone(),
            password: cfg.password.clone(),
            timeout: cfg.timeout,
            keepalive,
            conn: None,
            values: BTreeMap::new(),
        }
    }

    fn open(&self) -> Result<TcpStream, TargetError> {
        let err = |m: String| TargetError::Connect { address: self.address.clone(), message: m };
        let addr = self
            .address
            .to_socket_addrs()
            .map_err(|e| err(e.to_string()))?
            .next()
            .ok_or_else(|| err("name resolves to no address".into()))?;
        let mut s = TcpStream::connect_timeout(&addr, self.timeout).map_err(|e| err(e.to_string()))?;
        s.set_read_timeout(Some(self.timeout)).map_err(|e| err(e.to_string()))?;
        s.set_write_timeout(Some(self.timeout)).map_err(|e| err(e.to_string()))?;
        let id = format!("tingzhen-agent-{}-{:08x}", std::process::id(), fastrand::u32(..));
        s.write_all(&connect_packet(&id, self.username.as_deref(), self.password.as_deref(), self.keepalive))
            .map_err(|e| err(e.to_string()))?;
        let (kind, _, body) = read_packet(&mut s).map_err(|e| TargetError::Protocol(format!("CONNACK: {e}")))?;
        if kind != 2 || body.len() < 2 {
            return Err(TargetError::Protocol(format!("expected CONNACK, got packet type {kind}")));
        }
        match body[1] {
            0 => {}
            4 => return Err(TargetError::Auth("bad user name or password (CONNACK 4)".into())),
            5 => return Err(TargetError::Auth("not authorised (CONNACK 5)".into())),
            c => return Err(TargetError::Protocol(format!("connection refused, CONNACK code {c}"))),
        }
        s.write_all(&subscribe_packet("$SYS/#")).map_err(|e| err(e.to_string()))?;
        Ok(s)
    }

    /// PINGREQ, then read until PINGRESP, keeping every `$SYS` value that arrived meanwhile.
    fn ping_and_drain(&mut self) -> Result<f64, TargetError> {
        let conn = self.conn.as_mut().expect("connected");
        let proto = |e: std::io::Error| TargetError::Protocol(format!("reading from the broker: {e}"));
        let t0 = Instant::now();
        conn.write_all(&[0xC0, 0x00]).map_err(proto)?;
        loop {
            let (kind, flags, body) = read_packet(conn).map_err(proto)?;
            match kind {
                13 => return Ok(t0.elapsed().as_secs_f64()),
                3 => {
                    if let Some((topic, payload)) = parse_publish(flags, &body)
                        && (self.values.len() < MAX_TOPICS || self.values.contains_key(&topic))
                    {
                        self.values.insert(topic, payload);
                    }
                }
                9 if body.get(2) == Some(&0x80) => {
                    return Err(TargetError::Auth("subscription to $SYS/# refused".into()));
                }
                _ => {}
            }
            if t0.elapsed() > self.timeout {
                return Err(TargetError::Protocol("no PINGRESP within the timeout".into()));
            }
        }
    }
}

impl Collect for Mqtt {
    fn collect(&mut self, cx: &mut Ctx<'_>) -> Result<(), TargetError> {
        if self.conn.is_none() {
            self.conn = Some(self.open()?);
        }
        let rtt = match self.ping_and_drain() {
            Ok(r) => r,
            Err(e) => {
                self.conn = None;
                return Err(e);
            }
        };
        emit_sys(&self.values, &mut cx.out);
        cx.out.gauge("mqtt_ping_seconds", "Round trip of a PINGREQ during the last collection", &[], rtt);
        Ok(())
    }
}

impl Drop for Mqtt {
    fn drop(&mut self) {
        if let Some(c) = self.conn.as_mut() {
            let _ = c.write_all(&[0xE0, 0x00]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tingzhen_core::Labels;

    #[test]
    fn packets_encode_and_decode() {
        let mut v = Vec::new();
        encode_len(321, &mut v);
        assert_eq!(v, vec![0xC1, 0x02]);
        let c = connect_packet("id", Some("u"), Some("p"), 60);
        assert_eq!(c[0], 0x10);
        assert_eq!(&c[2..8], b"\x00\x04MQTT");
        assert_eq!(c[9], 0xC2, "user, password and clean session flags");
        let mut body = Vec::new();
        string(&mut body, "$SYS/broker/uptime");
        body.extend_from_slice(b"12 seconds");
        let p = packet(0x31, &body);
        let (kind, flags, b) = read_packet(&mut std::io::Cursor::new(p)).unwrap();
        assert_eq!((kind, flags), (3, 1));
        assert_eq!(parse_publish(flags, &b), Some(("$SYS/broker/uptime".into(), "12 seconds".into())));
        assert!(read_packet(&mut std::io::Cursor::new(vec![0x30, 0xff, 0xff, 0xff, 0xff])).is_err());
        assert_eq!(parse_publish(0, &[0, 9, b'a']), None, "truncated topic");
    }

    #[test]
    fn sys_topics_map_to_exporter_names() {
        let values: BTreeMap<String, String> = [
            ("$SYS/broker/version", "mosquitto version 2.0.11"),
            ("$SYS/broker/uptime", "13640 seconds"),
            ("$SYS/broker/clients/connected", "3"),
            ("$SYS/broker/messages/received", "11"),
            ("$SYS/broker/retained messages/count", "31"),
            ("$SYS/broker/load/bytes/sent/1min", "314.31"),
            ("$SYS/broker/bridge/odd", "not a number"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let base = Labels::new();
        let mut out = Out::new(&base);
        emit_sys(&values, &mut out);
        let fams = out.finish();
        let get = |n: &str| fams.iter().find(|f| f.name == n).map(|f| (f.kind, f.samples[0].1));
        use tingzhen_core::exposition::MetricType;
        assert_eq!(get("broker_uptime"), Some((MetricType::Gauge, 13640.0)));
        assert_eq!(get("broker_clients_connected"), Some((MetricType::Gauge, 3.0)));
        assert_eq!(get("broker_messages_received"), Some((MetricType::Counter, 11.0)));
        assert_eq!(get("broker_retained_messages_count"), Some((MetricType::Gauge, 31.0)));
        assert_eq!(get("broker_load_bytes_sent_1min"), Some((MetricType::Gauge, 314.31)));
        assert!(fams.iter().any(|f| f.name == "broker_version_info"));
        assert!(!fams.iter().any(|f| f.name.contains("bridge")));
    }
}
