//! Redis: `INFO` over a hand-written RESP client (three commands — AUTH, PING, INFO — do not
//! justify the `redis` crate's dependency tree in an agent benchmarked for footprint).
//! redis_exporter's metric names for liveness, memory, clients, commands and ops/s, hits and
//! misses, keyspace, replication, persistence and CPU; the PING round trip and, on Redis 7,
//! per-command latency percentiles from `INFO latencystats`.

use super::{Collect, Ctx, TargetConfig, TargetError};
use crate::host::Out;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Largest bulk reply accepted (an INFO reply is a few KiB).
const MAX_BULK: usize = 4 << 20;

pub struct Redis {
    address: String,
    username: Option<String>,
    password: Option<String>,
    timeout: Duration,
    conn: Option<BufReader<TcpStream>>,
}

#[derive(Debug, PartialEq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(usize),
}

/// Reads one RESP reply (arrays only as their length: we never ask for one).
pub fn read_reply(r: &mut impl BufRead) -> Result<Reply, String> {
    let mut line = String::new();
    let n = r.read_line(&mut line).map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("connection closed by the server".into());
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at_checked(1).ok_or("empty reply line")?;
    match kind {
        "+" => Ok(Reply::Simple(rest.into())),
        "-" => Ok(Reply::Error(rest.into())),
        ":" => rest.parse().map(Reply::Int).map_err(|_| format!("bad integer reply {rest:?}")),
        "*" => rest.parse().map(Reply::Array).map_err(|_| format!("bad array reply {rest:?}")),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| format!("bad bulk length {rest:?}"))?;
            if len < 0 {
                return Ok(Reply::Bulk(None));
            }
            let len = len as usize;
            if len > MAX_BULK {
                return Err(format!("bulk reply of {len} bytes is larger than {MAX_BULK}"));
            }
            let mut buf = vec![0u8; len + 2];
            r.read_exact(&mut buf).map_err(|e| e.to_string())?;
            buf.truncate(len);
            Ok(Reply::Bulk(Some(String::from_utf8_lossy(&buf).into_owned())))
        }
        _ => Err(format!("not a RESP reply: {line:?}")),
    }
}

/// A command as a RESP array of bulk strings.
pub fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// `INFO` text into field → value (section headers and blank lines skipped).
pub fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim_end().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `a=1,b=2` fields (keyspace lines, slave lines, latency lines).
fn sub_fields(v: &str) -> HashMap<&str, &str> {
    v.split(',').filter_map(|p| p.split_once('=')).collect()
}

const GAUGES: &[(&str, &str)] = &[
    ("uptime_in_seconds", "redis_uptime_in_seconds"),
    ("connected_clients", "redis_connected_clients"),
    ("blocked_clients", "redis_blocked_clients"),
    ("maxclients", "redis_config_maxclients"),
    ("used_memory", "redis_memory_used_bytes"),
    ("used_memory_rss", "redis_memory_used_rss_bytes"),
    ("used_memory_peak", "redis_memory_used_peak_bytes"),
    ("maxmemory", "redis_memory_max_bytes"),
    ("mem_fragmentation_ratio", "redis_mem_fragmentation_ratio"),
    ("instantaneous_ops_per_sec", "redis_instantaneous_ops_per_sec"),
    ("connected_slaves", "redis_connected_slaves"),
    ("master_repl_offset", "redis_master_repl_offset"),
    ("rdb_changes_since_last_save", "redis_rdb_changes_since_last_save"),
    ("rdb_last_save_time", "redis_rdb_last_save_timestamp_seconds"),
    ("aof_enabled", "redis_aof_enabled"),
    ("master_last_io_seconds_ago", "redis_master_last_io_seconds_ago"),
];

const COUNTERS: &[(&str, &str)] = &[
    ("total_commands_processed", "redis_commands_processed_total"),
    ("total_connections_received", "redis_connections_received_total"),
    ("rejected_connections", "redis_rejected_connections_total"),
    ("total_net_input_bytes", "redis_net_input_bytes_total"),
    ("total_net_output_bytes", "redis_net_output_bytes_total"),
    ("keyspace_hits", "redis_keyspace_hits_total"),
    ("keyspace_misses", "redis_keyspace_misses_total"),
    ("evicted_keys", "redis_evicted_keys_total"),
    ("expired_keys", "redis_expired_keys_total"),
    ("used_cpu_sys", "redis_cpu_sys_seconds_total"),
    ("used_cpu_user", "redis_cpu_user_seconds_total"),
];

pub fn emit_info(info: &HashMap<String, String>, out: &mut Out<'_>) {
    let get = |k: &str| info.get(k).map(String::as_str).unwrap_or("");
    out.gauge(
        "redis_instance_info",
        "Information about the Redis instance",
        &[("redis_version", get("redis_version")), ("redis_mode", get("redis_mode")), ("role", get("role"))],
        1.0,
    );
    let n = |k: &str| info.get(k).and_then(|v| v.parse::<f64>().ok());
    for (k, name) in GAUGES {
        if let Some(v) = n(k) {
            out.gauge(name, &format!("Redis INFO field {k}"), &[], v);
        }
    }
    for (k, name) in COUNTERS {
        if let Some(v) = n(k) {
            out.counter(name, &format!("Redis INFO field {k}"), &[], v);
        }
    }
    if info.contains_key("master_link_status") {
        let up = if get("master_link_status") == "up" { 1.0 } else { 0.0 };
        out.gauge("redis_master_link_up", "Whether the link to the master is up", &[], up);
    }
    if let (Some(h), Some(m)) = (n("keyspace_hits"), n("keyspace_misses"))
        && h + m > 0.0
    {
        out.gauge("redis_keyspace_hit_ratio", "Share of key lookups that hit, since start", &[], h / (h + m));
    }
    let mut keys: Vec<(&String, &String)> = info.iter().collect();
    keys.sort();
    for (k, v) in keys {
        if k.starts_with("db") && k[2..].bytes().all(|b| b.is_ascii_digit()) {
            let f = sub_fields(v);
            let db = [("db", k.as_str())];
            let num = |f: &HashMap<&str, &str>, key: &str| f.get(key).and_then(|x| x.parse::<f64>().ok());
            if let Some(x) = num(&f, "keys") {
                out.gauge("redis_db_keys", "Total number of keys by DB", &db, x);
            }
            if let Some(x) = num(&f, "expires") {
                out.gauge("redis_db_keys_expiring", "Total number of expiring keys by DB", &db, x);
            }
            if let Some(x) = num(&f, "avg_ttl") {
                out.gauge("redis_db_avg_ttl_seconds", "Avg TTL in seconds", &db, x / 1000.0);
            }
        } else if k.starts_with("slave") && k[5..].bytes().all(|b| b.is_ascii_digit()) {
            let f = sub_fields(v);
            let l = [
                ("slave_ip", f.get("ip").copied().unwrap_or("")),
                ("slave_port", f.get("port").copied().unwrap_or("")),
                ("slave_state", f.get("state").copied().unwrap_or("")),
            ];
            if let Some(x) = f.get("lag").and_then(|x| x.parse::<f64>().ok()) {
                out.gauge("redis_connected_slave_lag_seconds", "Lag of connected slave", &l, x);
            }
            if let Some(x) = f.get("offset").and_then(|x| x.parse::<f64>().ok()) {
                out.gauge("redis_connected_slave_offset_bytes", "Offset of connected slave", &l, x);
            }
        } else if let Some(cmd) = k.strip_prefix("latency_percentiles_usec_") {
            for (q, x) in sub_fields(v) {
                let (Some(q), Ok(x)) = (q.strip_prefix('p'), x.parse::<f64>()) else { continue };
                let Ok(q) = q.parse::<f64>() else { continue };
                // "p99.9" → "0.999" (no binary-float tail in a label value).
                let quantile = format!("{:.6}", q / 100.0).trim_end_matches('0').trim_end_matches('.').to_string();
                out.gauge(
                    "redis_latency_percentiles_usec",
                    "A summary of latency percentile distribution per command",
                    &[("cmd", cmd), ("quantile", quantile.as_str())],
                    x,
                );
            }
        }
    }
}

impl Redis {
    pub fn new(cfg: &TargetConfig) -> Self {
        Self {
            address: cfg.address.clone(),
            username: cfg.username.clone(),
            password: cfg.password.clone(),
            timeout: cfg.timeout,
            conn: None,
        }
    }

    fn connect(&self) -> Result<BufReader<TcpStream>, TargetError> {
        let err = |m: String| TargetError::Connect { address: self.address.clone(), message: m };
        let addr = self
            .address
            .to_socket_addrs()
            .map_err(|e| err(e.to_string()))?
            .next()
            .ok_or_else(|| err("name resolves to no address".into()))?;
        let s = TcpStream::connect_timeout(&addr, self.timeout).map_err(|e| err(e.to_string()))?;
        s.set_read_timeout(Some(self.timeout)).map_err(|e| err(e.to_string()))?;
        s.set_write_timeout(Some(self.timeout)).map_err(|e| err(e.to_string()))?;
        let _ = s.set_nodelay(true);
        Ok(BufReader::new(s))
    }

    fn call(conn: &mut BufReader<TcpStream>, args: &[&str]) -> Result<Reply, String> {
        conn.get_mut().write_all(&encode(args)).map_err(|e| e.to_string())?;
        read_reply(conn)
    }

    fn bulk(&mut self, args: &[&str]) -> Result<String, TargetError> {
        let conn = self.conn.as_mut().expect("connected");
        match Self::call(conn, args).map_err(TargetError::Protocol)? {
            Reply::Bulk(Some(s)) | Reply::Simple(s) => Ok(s),
            Reply::Error(e) if e.starts_with("NOAUTH") || e.starts_with("WRONGPASS") => Err(TargetError::Auth(e)),
            Reply::Error(e) => Err(TargetError::Query(format!("{}: {e}", args[0]))),
            other => Err(TargetError::Protocol(format!("{}: unexpected reply {other:?}", args[0]))),
        }
    }

    fn collect_with(&mut self, cx: &mut Ctx<'_>) -> Result<(), TargetError> {
        if self.conn.is_none() {
            let mut conn = self.connect()?;
            if let Some(p) = self.password.clone() {
                let mut args = vec!["AUTH"];
                if let Some(u) = &self.username {
                    args.push(u);
                }
                args.push(&p);
                match Self::call(&mut conn, &args).map_err(TargetError::Protocol)? {
                    Reply::Simple(_) => {}
                    Reply::Error(e) => return Err(TargetError::Auth(e)),
                    other => return Err(TargetError::Protocol(format!("AUTH: unexpected reply {other:?}"))),
                }
            }
            self.conn = Some(conn);
        }
        let t0 = Instant::now();
        let pong = self.bulk(&["PING"])?;
        let rtt = t0.elapsed().as_secs_f64();
        if pong != "PONG" {
            return Err(TargetError::Protocol(format!("PING answered {pong:?}")));
        }
        let mut info = parse_info(&self.bulk(&["INFO"])?);
        // Redis 7 only; older servers answer an empty section, which adds nothing.
        match self.bulk(&["INFO", "latencystats"]) {
            Ok(lat) => info.extend(parse_info(&lat)),
            Err(e @ TargetError::Query(_)) => cx.partial_errors.push(e.to_string()),
            Err(e) => return Err(e),
        }
        emit_info(&info, &mut cx.out);
        cx.out.gauge("redis_ping_seconds", "Round trip of a PING during the last collection", &[], rtt);
        Ok(())
    }
}

impl Collect for Redis {
    fn collect(&mut self, cx: &mut Ctx<'_>) -> Result<(), TargetError> {
        self.collect_with(cx).inspect_err(|_| self.conn = None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tingzhen_core::Labels;

    #[test]
    fn resp_replies_parse_and_garbage_is_an_error() {
        let mut r = std::io::Cursor::new(
            b"+PONG\r\n-NOAUTH Authentication required.\r\n:5\r\n$3\r\nabc\r\n$-1\r\n*2\r\n".to_vec(),
        );
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Simple("PONG".into()));
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Error("NOAUTH Authentication required.".into()));
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Int(5));
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Bulk(Some("abc".into())));
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Bulk(None));
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Array(2));
        assert!(read_reply(&mut r).unwrap_err().contains("closed"));
        assert!(read_reply(&mut std::io::Cursor::new(b"HTTP/1.1 400\r\n".to_vec())).is_err());
        assert!(read_reply(&mut std::io::Cursor::new(b"$999999999\r\n".to_vec())).unwrap_err().contains("larger"));
        assert_eq!(encode(&["AUTH", "pw"]), b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n");
    }

    #[test]
    fn info_maps_to_exporter_names() {
        let text = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\nuptime_in_seconds:100\r\n\
                    # Stats\r\nkeyspace_hits:30\r\nkeyspace_misses:10\r\ninstantaneous_ops_per_sec:7\r\n\
                    # Replication\r\nrole:master\r\nslave0:ip=10.0.0.2,port=6380,state=online,offset=42,lag=1\r\n\
                    # Keyspace\r\ndb0:keys=5,expires=1,avg_ttl=2000\r\n\
                    latency_percentiles_usec_get:p50=1.003,p99=2.007,p99.9=10.1\r\n";
        let base = Labels::new();
        let mut out = Out::new(&base);
        emit_info(&parse_info(text), &mut out);
        let fams = out.finish();
        let get = |n: &str| fams.iter().find(|f| f.name == n).map(|f| f.samples.clone()).unwrap_or_default();
        assert_eq!(get("redis_uptime_in_seconds")[0].1, 100.0);
        assert_eq!(get("redis_keyspace_hit_ratio")[0].1, 0.75);
        assert_eq!(get("redis_db_keys")[0].0.get("db"), Some("db0"));
        assert_eq!(get("redis_db_avg_ttl_seconds")[0].1, 2.0);
        assert_eq!(get("redis_connected_slave_lag_seconds")[0].0.get("slave_ip"), Some("10.0.0.2"));
        let lat = get("redis_latency_percentiles_usec");
        assert_eq!(lat.len(), 3);
        assert!(lat.iter().any(|(l, v)| l.get("quantile") == Some("0.99") && *v == 2.007));
        assert!(lat.iter().any(|(l, _)| l.get("quantile") == Some("0.999")));
        assert_eq!(get("redis_instance_info")[0].0.get("role"), Some("master"));
    }
}
