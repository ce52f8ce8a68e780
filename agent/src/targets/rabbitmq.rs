//! RabbitMQ: an AMQP 0-9-1 connection check by hand (protocol header, Start/Start-Ok with
//! PLAIN, Tune/Tune-Ok, Open/Open-Ok on the virtual host, Close/Close-Ok — a login that
//! really proves the broker serves clients, in ~200 lines instead of an async AMQP client
//! with its own runtime), and, when `management_url` is set, the management API's overview
//! and per-queue depth, consumers and message counters (kbudde/rabbitmq_exporter's names).

use super::{Collect, Ctx, TargetConfig, TargetError};
use crate::host::Out;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

const FRAME_METHOD: u8 = 1;
const FRAME_END: u8 = 0xCE;
/// Largest frame accepted before Tune (the spec's minimum frame size is 4096).
const MAX_FRAME: usize = 1 << 20;
/// Queues reported with their own series (the deepest first).
const MAX_QUEUES: usize = 200;

pub struct Rabbitmq {
    address: String,
    username: String,
    password: String,
    vhost: String,
    timeout: Duration,
    management: Option<(String, ureq::Agent)>,
}

/// One method frame's class, method and arguments.
#[derive(Debug, PartialEq)]
pub struct Method {
    pub class: u16,
    pub method: u16,
    pub args: Vec<u8>,
}

pub fn encode_method(class: u16, method: u16, args: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(4 + args.len());
    payload.extend_from_slice(&class.to_be_bytes());
    payload.extend_from_slice(&method.to_be_bytes());
    payload.extend_from_slice(args);
    let mut f = vec![FRAME_METHOD, 0, 0];
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(&payload);
    f.push(FRAME_END);
    f
}

/// Reads frames until a method frame on channel 0 (heartbeats are skipped).
pub fn read_method(r: &mut impl Read) -> Result<Method, String> {
    loop {
        let mut head = [0u8; 7];
        r.read_exact(&mut head).map_err(|e| format!("reading a frame: {e}"))?;
        if &head[..4] == b"AMQP" {
            return Err("the broker refused our protocol version".into());
        }
        let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
        if size > MAX_FRAME {
            return Err(format!("frame of {size} bytes is too large"));
        }
        let mut payload = vec![0u8; size + 1];
        r.read_exact(&mut payload).map_err(|e| format!("reading a frame: {e}"))?;
        if payload[size] != FRAME_END {
            return Err("frame does not end with 0xCE: not an AMQP broker".into());
        }
        payload.truncate(size);
        if head[0] != FRAME_METHOD {
            continue;
        }
        if payload.len() < 4 {
            return Err("method frame too short".into());
        }
        let class = u16::from_be_bytes([payload[0], payload[1]]);
        let method = u16::from_be_bytes([payload[2], payload[3]]);
        return Ok(Method { class, method, args: payload[4..].to_vec() });
    }
}

fn shortstr(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(255)];
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

fn longstr(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// A bounds-checked reader over method arguments.
struct Args<'a>(&'a [u8], usize);

impl<'a> Args<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let s = self.0.get(self.1..self.1 + n).ok_or("method arguments end early")?;
        self.1 += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn shortstr(&mut self) -> Result<String, String> {
        let n = self.u8()? as usize;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
    fn longstr(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// A field table's string entries (other value types are skipped by their size).
    fn table(&mut self) -> Result<Vec<(String, String)>, String> {
        let body = self.longstr()?;
        let mut t = Args(body, 0);
        let mut out = Vec::new();
        while t.1 < body.len() {
            let key = t.shortstr()?;
            let kind = t.u8()?;
            match kind {
                b'S' | b'x' => out.push((key, String::from_utf8_lossy(t.longstr()?).into_owned())),
                b'F' | b'A' => {
                    t.longstr()?;
                }
                b't' | b'b' | b'B' => {
                    t.take(1)?;
                }
                b's' | b'u' => {
                    t.take(2)?;
                }
                b'I' | b'i' | b'f' => {
                    t.take(4)?;
                }
                b'l' | b'L' | b'd' | b'T' => {
                    t.take(8)?;
                }
                b'D' => {
                    t.take(5)?;
                }
                b'V' => {}
                other => return Err(format!("unknown field type {:?} in a table", other as char)),
            }
        }
        Ok(out)
    }
}

/// Connection.Close's reply code and text.
fn close_reason(m: &Method) -> (u16, String) {
    let mut a = Args(&m.args, 0);
    let code = a.u16().unwrap_or(0);
    (code, a.shortstr().unwrap_or_default())
}

fn start_ok(user: &str, pass: &str) -> Vec<u8> {
    // Ask for an explicit Close on a failed login instead of a silent disconnect.
    let mut caps = Vec::new();
    shortstr(&mut caps, "authentication_failure_close");
    caps.extend_from_slice(&[b't', 1]);
    let mut props = Vec::new();
    shortstr(&mut props, "product");
    props.push(b'S');
    longstr(&mut props, b"tingzhen-agent");
    shortstr(&mut props, "capabilities");
    props.push(b'F');
    longstr(&mut props, &caps);
    let mut args = Vec::new();
    longstr(&mut args, &props);
    shortstr(&mut args, "PLAIN");
    longstr(&mut args, format!("\0{user}\0{pass}").as_bytes());
    shortstr(&mut args, "en_US");
    encode_method(10, 11, &args)
}

impl Rabbitmq {
    pub fn new(cfg: &TargetConfig) -> Self {
        let management = cfg.management_url.as_ref().map(|u| {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(cfg.timeout))
                .http_status_as_error(false)
                .build()
                .into();
            (u.trim_end_matches('/').to_string(), agent)
        });
        Self {
            address: cfg.address.clone(),
            username: cfg.username.clone().unwrap_or_else(|| "guest".into()),
            password: cfg.password.clone().unwrap_or_else(|| "guest".into()),
            vhost: cfg.database.clone().unwrap_or_else(|| "/".into()),
            timeout: cfg.timeout,
            management,
        }
    }

    /// Logs in and out over AMQP; returns the broker's product and version.
    fn amqp_check(&self) -> Result<(String, String), TargetError> {
        let conn_err = |m: String| TargetError::Connect { address: self.address.clone(), message: m };
        let addr = self
            .address
            .to_socket_addrs()
            .map_err(|e| conn_err(e.to_string()))?
            .next()
            .ok_or_else(|| conn_err("name resolves to no address".into()))?;
        let mut s = TcpStream::connect_timeout(&addr, self.timeout).map_err(|e| conn_err(e.to_string()))?;
        s.set_read_timeout(Some(self.timeout)).map_err(|e| conn_err(e.to_string()))?;
        s.set_write_timeout(Some(self.timeout)).map_err(|e| conn_err(e.to_string()))?;
        let proto = |m: String| TargetError::Protocol(m);
        s.write_all(b"AMQP\x00\x00\x09\x01").map_err(|e| conn_err(e.to_string()))?;
        let start = read_method(&mut s).map_err(proto)?;
        if (start.class, start.method) != (10, 10) {
            return Err(proto(format!("expected Connection.Start, got {}.{}", start.class, start.method)));
        }
        let mut a = Args(&start.args, 0);
        a.take(2).map_err(proto)?;
        let props = a.table().map_err(proto)?;
        let get = |k: &str| props.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
        let (product, version) = (get("product"), get("version"));
        let mechanisms = String::from_utf8_lossy(a.longstr().map_err(proto)?).into_owned();
        if !mechanisms.split(' ').any(|m| m == "PLAIN") {
            return Err(TargetError::Auth(format!("the broker does not offer PLAIN (offers {mechanisms})")));
        }
        s.write_all(&start_ok(&self.username, &self.password)).map_err(|e| conn_err(e.to_string()))?;
        let tune = read_method(&mut s).map_err(|e| {
            // Brokers that ignore the capability just drop the connection on a bad login.
            TargetError::Auth(format!("connection closed after login ({e}); wrong user or password?"))
        })?;
        match (tune.class, tune.method) {
            (10, 30) => {}
            (10, 50) => {
                let (code, text) = close_reason(&tune);
                return Err(if code == 403 {
                    TargetError::Auth(text)
                } else {
                    TargetError::Protocol(format!("{code} {text}"))
                });
            }
            (c, m) => return Err(proto(format!("expected Connection.Tune, got {c}.{m}"))),
        }
        let mut t = Args(&tune.args, 0);
        let channel_max = t.u16().map_err(proto)?;
        let frame_max = t.u32().map_err(proto)?;
        let mut tune_ok = Vec::new();
        tune_ok.extend_from_slice(&channel_max.to_be_bytes());
        tune_ok.extend_from_slice(&frame_max.to_be_bytes());
        tune_ok.extend_from_slice(&0u16.to_be_bytes());
        let mut open = Vec::new();
        shortstr(&mut open, &self.vhost);
        shortstr(&mut open, "");
        open.push(0);
        s.write_all(&encode_method(10, 31, &tune_ok)).map_err(|e| conn_err(e.to_string()))?;
        s.write_all(&encode_method(10, 40, &open)).map_err(|e| conn_err(e.to_string()))?;
        let opened = read_method(&mut s).map_err(proto)?;
        match (opened.class, opened.method) {
            (10, 41) => {}
            (10, 50) => {
                let (code, text) = close_reason(&opened);
                return Err(TargetError::Auth(format!("virtual host {:?}: {code} {text}", self.vhost)));
            }
            (c, m) => return Err(proto(format!("expected Connection.Open-Ok, got {c}.{m}"))),
        }
        let mut close = Vec::new();
        close.extend_from_slice(&200u16.to_be_bytes());
        shortstr(&mut close, "bye");
        close.extend_from_slice(&[0, 0, 0, 0]);
        s.write_all(&encode_method(10, 50, &close)).map_err(|e| conn_err(e.to_string()))?;
        // Close-Ok is a courtesy; the check already passed.
        let _ = read_method(&mut s);
        Ok((product, version))
    }

    fn management_get(&self, path: &str) -> Result<Value, String> {
        let (base, agent) = self.management.as_ref().ok_or("no management_url")?;
        let auth = base64_basic(&self.username, &self.password);
        let mut resp = agent
            .get(&format!("{base}{path}"))
            .header("Authorization", &auth)
            .call()
            .map_err(|e| format!("{base}{path}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{base}{path}: HTTP {}", resp.status()));
        }
        let mut body = String::new();
        resp.body_mut()
            .as_reader()
            .take(16 << 20)
            .read_to_string(&mut body)
            .map_err(|e| format!("{base}{path}: {e}"))?;
        serde_json::from_str(&body).map_err(|e| format!("{base}{path}: not JSON: {e}"))
    }
}

/// `Basic base64(user:pass)` without pulling a base64 crate into the agent for one header.
fn base64_basic(user: &str, pass: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{pass}").into_bytes();
    let mut out = String::from("Basic ");
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn emit_overview(v: &Value, out: &mut Out<'_>) {
    let totals = &v["object_totals"];
    for (k, name) in [
        ("connections", "rabbitmq_connections"),
        ("channels", "rabbitmq_channels"),
        ("queues", "rabbitmq_queues"),
        ("consumers", "rabbitmq_consumers"),
        ("exchanges", "rabbitmq_exchanges"),
    ] {
        if let Some(x) = totals[k].as_f64() {
            out.gauge(name, &format!("Number of {k}"), &[], x);
        }
    }
    let q = &v["queue_totals"];
    for (k, name) in [
        ("messages", "rabbitmq_queue_messages_global"),
        ("messages_ready", "rabbitmq_queue_messages_ready_global"),
        ("messages_unacknowledged", "rabbitmq_queue_messages_unacknowledged_global"),
    ] {
        out.gauge(name, &format!("Total {k} in all queues"), &[], q[k].as_f64().unwrap_or(0.0));
    }
    let m = &v["message_stats"];
    for (k, name) in [
        ("publish", "rabbitmq_global_messages_published_total"),
        ("deliver_get", "rabbitmq_global_messages_delivered_total"),
        ("ack", "rabbitmq_global_messages_acknowledged_total"),
        ("redeliver", "rabbitmq_global_messages_redelivered_total"),
    ] {
        out.counter(name, &format!("Messages {k} since the broker started"), &[], m[k].as_f64().unwrap_or(0.0));
    }
}

pub fn emit_queues(v: &Value, out: &mut Out<'_>) {
    let Some(list) = v.as_array() else { return };
    let mut queues: Vec<&Value> = list.iter().collect();
    queues.sort_by(|a, b| b["messages"].as_f64().unwrap_or(0.0).total_cmp(&a["messages"].as_f64().unwrap_or(0.0)));
    for q in queues.into_iter().take(MAX_QUEUES) {
        let l = [("queue", q["name"].as_str().unwrap_or("")), ("vhost", q["vhost"].as_str().unwrap_or(""))];
        for (k, name) in [
            ("messages", "rabbitmq_queue_messages"),
            ("messages_ready", "rabbitmq_queue_messages_ready"),
            ("messages_unacknowledged", "rabbitmq_queue_messages_unacknowledged"),
            ("consumers", "rabbitmq_queue_consumers"),
        ] {
            out.gauge(name, &format!("Queue {k}"), &l, q[k].as_f64().unwrap_or(0.0));
        }
        let stats = &q["message_stats"];
        out.counter(
            "rabbitmq_queue_messages_published_total",
            "Messages published to the queue",
            &l,
            stats["publish"].as_f64().unwrap_or(0.0),
        );
        out.counter(
            "rabbitmq_queue_messages_delivered_total",
            "Messages delivered from the queue",
            &l,
            stats["deliver_get"].as_f64().unwrap_or(0.0),
        );
    }
}

impl Collect for Rabbitmq {
    fn collect(&mut self, cx: &mut Ctx<'_>) -> Result<(), TargetError> {
        let t0 = Instant::now();
        let (product, version) = self.amqp_check()?;
        let took = t0.elapsed().as_secs_f64();
        let out = &mut cx.out;
        out.gauge(
            "rabbitmq_build_info",
            "Broker product and version",
            &[("product", &product), ("rabbitmq_version", &version)],
            1.0,
        );
        out.gauge("rabbitmq_amqp_login_seconds", "Time to log in and out over AMQP", &[], took);
        if self.management.is_some() {
            match self.management_get("/api/overview") {
                Ok(v) => emit_overview(&v, &mut cx.out),
                Err(e) => cx.partial_errors.push(format!("management overview: {e}")),
            }
            let cols = "/api/queues?columns=name,vhost,messages,messages_ready,messages_unacknowledged,consumers,message_stats";
            match self.management_get(cols) {
                Ok(v) => emit_queues(&v, &mut cx.out),
                Err(e) => cx.partial_errors.push(format!("management queues: {e}")),
            }
            cx.out.gauge(
                "rabbitmq_management_up",
                "Whether the management API answered",
                &[],
                if cx.partial_errors.is_empty() { 1.0 } else { 0.0 },
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tingzhen_core::Labels;

    #[test]
    fn frames_round_trip_and_garbage_is_refused() {
        let f = encode_method(10, 50, &[0, 200, 3, b'b', b'y', b'e']);
        let m = read_method(&mut std::io::Cursor::new(f.clone())).unwrap();
        assert_eq!((m.class, m.method), (10, 50));
        assert_eq!(close_reason(&m), (200, "bye".into()));
        let mut bad = f.clone();
        *bad.last_mut().unwrap() = 0;
        assert!(read_method(&mut std::io::Cursor::new(bad)).unwrap_err().contains("0xCE"));
        assert!(read_method(&mut std::io::Cursor::new(b"AMQP\x00\x00\x09\x01".to_vec())).is_err());
        assert!(read_method(&mut std::io::Cursor::new(vec![1, 0, 0, 0xff, 0xff, 0xff, 0xff])).is_err());
    }

    #[test]
    fn tables_skip_unknown_types_by_size_and_basic_auth_encodes() {
        let mut inner = Vec::new();
        shortstr(&mut inner, "product");
        inner.push(b'S');
        longstr(&mut inner, b"RabbitMQ");
        shortstr(&mut inner, "capabilities");
        inner.push(b'F');
        longstr(&mut inner, &[0; 5]);
        shortstr(&mut inner, "n");
        inner.push(b'l');
        inner.extend_from_slice(&[0; 8]);
        let mut t = Vec::new();
        longstr(&mut t, &inner);
        let got = Args(&t, 0).table().unwrap();
        assert_eq!(got, vec![("product".to_string(), "RabbitMQ".to_string())]);
        let mut cut = t.clone();
        cut.truncate(t.len() - 3);
        assert!(Args(&cut, 0).table().is_err());
        assert_eq!(base64_basic("guest", "guest"), "Basic Z3Vlc3Q6Z3Vlc3Q=");
        assert_eq!(base64_basic("a", "bc"), "Basic YTpiYw==");
    }

    #[test]
    fn management_json_maps_to_exporter_names() {
        let overview: Value = serde_json::from_str(
            r#"{"object_totals":{"connections":2,"channels":3,"queues":1,"consumers":1,"exchanges":7},
                "queue_totals":{"messages":5,"messages_ready":4,"messages_unacknowledged":1},
                "message_stats":{"publish":10,"deliver_get":6}}"#,
        )
        .unwrap();
        let queues: Value = serde_json::from_str(
            r#"[{"name":"orders","vhost":"/","messages":5,"messages_ready":4,"messages_unacknowledged":1,
                 "consumers":1,"message_stats":{"publish":10,"deliver_get":6}},
                {"name":"idle","vhost":"/","messages":0}]"#,
        )
        .unwrap();
        let base = Labels::new();
        let mut out = Out::new(&base);
        emit_overview(&overview, &mut out);
        emit_queues(&queues, &mut out);
        let fams = out.finish();
        let get = |n: &str| fams.iter().find(|f| f.name == n).map(|f| f.samples.clone()).unwrap_or_default();
        assert_eq!(get("rabbitmq_connections")[0].1, 2.0);
        assert_eq!(get("rabbitmq_queue_messages_global")[0].1, 5.0);
        assert_eq!(get("rabbitmq_global_messages_published_total")[0].1, 10.0);
        let depth = get("rabbitmq_queue_messages");
        assert_eq!(depth.len(), 2);
        assert_eq!((depth[0].0.get("queue"), depth[0].1), (Some("orders"), 5.0), "deepest first");
        assert_eq!(get("rabbitmq_queue_consumers")[1].1, 0.0, "missing fields are 0");
    }
}
