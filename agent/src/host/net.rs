//! Network: `/proc/net/dev` per interface, `/proc/net/sockstat{,6}`, the default subset of
//! `/proc/net/{snmp,netstat,snmp6}`, and TCP connection states from `/proc/net/tcp{,6}`, under
//! node_exporter's netdev, sockstat, netstat and tcpstat names. TCP states come from the
//! kernel's sock_diag netlink interface (as node_exporter's tcpstat does); reading
//! `/proc/net/tcp` instead costs ~40 times more CPU because the kernel walks its whole
//! connection hash table on every read, and is only the fallback.

use super::out::Out;
use std::io::BufRead;

#[derive(Debug, Clone, PartialEq)]
pub struct NetDev {
    pub device: String,
    /// 8 receive columns then 8 transmit columns, as in the file.
    pub fields: [u64; 16],
}

pub fn parse_net_dev(text: &str) -> Vec<NetDev> {
    text.lines()
        .filter_map(|l| {
            let (dev, rest) = l.split_once(':')?;
            let device = dev.trim().to_string();
            if device.is_empty() || device.contains('|') {
                return None;
            }
            let mut fields = [0u64; 16];
            let mut n = 0;
            for (slot, v) in fields.iter_mut().zip(rest.split_ascii_whitespace()) {
                *slot = v.parse().ok()?;
                n += 1;
            }
            (n == 16).then_some(NetDev { device, fields })
        })
        .collect()
}

pub fn emit_net_dev(devs: &[NetDev], out: &mut Out) {
    const RX: [&str; 8] = ["bytes", "packets", "errs", "drop", "fifo", "frame", "compressed", "multicast"];
    const TX: [&str; 8] = ["bytes", "packets", "errs", "drop", "fifo", "colls", "carrier", "compressed"];
    for d in devs {
        for (i, v) in d.fields.iter().enumerate() {
            let (dir, what) = if i < 8 { ("receive", RX[i]) } else { ("transmit", TX[i - 8]) };
            out.counter(
                &format!("node_network_{dir}_{what}_total"),
                &format!("Network device statistic {dir}_{what}."),
                &[("device", &d.device)],
                *v as f64,
            );
        }
    }
}

/// `/proc/net/sockstat` lines like `TCP: inuse 5 orphan 0 tw 2 alloc 7 mem 1` become
/// `node_sockstat_TCP_inuse` etc.; `mem` (pages) also gets a `_mem_bytes` twin.
pub fn parse_sockstat(text: &str, page_size: f64) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((proto, rest)) = line.split_once(':') else { continue };
        let proto = proto.trim();
        if proto.is_empty() || !proto.bytes().all(|b| b.is_ascii_alphanumeric()) {
            continue;
        }
        let toks: Vec<&str> = rest.split_ascii_whitespace().collect();
        for pair in toks.chunks_exact(2) {
            let Ok(v) = pair[1].parse::<f64>() else { continue };
            if !pair[0].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                continue;
            }
            out.push((format!("node_sockstat_{proto}_{}", pair[0]), v));
            if pair[0] == "mem" {
                out.push((format!("node_sockstat_{proto}_mem_bytes"), v * page_size));
            }
        }
    }
    out
}

pub fn emit_named_gauges(fields: &[(String, f64)], help_prefix: &str, out: &mut Out) {
    for (name, v) in fields {
        out.gauge(name, &format!("{help_prefix} {name}."), &[], *v);
    }
}

/// node_exporter's default `--collector.netstat.fields`, matched without a regex engine.
pub fn netstat_wanted(proto: &str, key: &str) -> bool {
    let any = |list: &[&str]| list.contains(&key);
    if key.ends_with("InErrors") || key.ends_with("InErrs") {
        return true;
    }
    match proto {
        "Ip" => key == "Forwarding",
        "Ip6" | "IpExt" => any(&["InOctets", "OutOctets"]),
        "Icmp" | "Icmp6" => any(&["InMsgs", "OutMsgs"]),
        "TcpExt" => {
            key.starts_with("Listen")
                || key.starts_with("Syncookies")
                || any(&["TCPSynRetrans", "TCPTimeouts", "TCPOFOQueue", "TCPRcvQDrop"])
        }
        "Tcp" => any(&["ActiveOpens", "InSegs", "OutSegs", "OutRsts", "PassiveOpens", "RetransSegs", "CurrEstab"]),
        "Udp" | "Udp6" => any(&["InDatagrams", "OutDatagrams", "NoPorts", "RcvbufErrors", "SndbufErrors"]),
        _ => false,
    }
}

/// `/proc/net/snmp` and `/proc/net/netstat`: pairs of lines, a header `Tcp: A B` and values
/// `Tcp: 1 2`.
pub fn parse_netstat_pairs(text: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks_exact(2) {
        let (Some((p1, keys)), Some((p2, vals))) = (pair[0].split_once(':'), pair[1].split_once(':')) else {
            continue;
        };
        if p1 != p2 {
            continue;
        }
        for (k, v) in keys.split_ascii_whitespace().zip(vals.split_ascii_whitespace()) {
            if let Ok(v) = v.parse::<f64>()
                && netstat_wanted(p1, k)
            {
                out.push((format!("node_netstat_{p1}_{k}"), v));
            }
        }
    }
    out
}

/// `/proc/net/snmp6`: `Ip6InOctets 123` per line; the protocol is the prefix before the field.
pub fn parse_snmp6(text: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut it = line.split_ascii_whitespace();
        let (Some(k), Some(v)) = (it.next(), it.next()) else { continue };
        let Ok(v) = v.parse::<f64>() else { continue };
        for proto in ["Ip6", "Icmp6", "Udp6", "UdpLite6"] {
            if let Some(field) = k.strip_prefix(proto)
                && netstat_wanted(proto, field)
            {
                out.push((format!("node_netstat_{proto}_{field}"), v));
            }
        }
    }
    out
}

pub fn emit_netstat(fields: &[(String, f64)], out: &mut Out) {
    for (name, v) in fields {
        let field = name.trim_start_matches("node_netstat_");
        out.untyped(name, &format!("Statistic {}.", field.replace('_', "")), &[], *v);
    }
}

/// node_exporter's tcpstat state names, indexed by the kernel's state number (1-based).
pub const TCP_STATES: [&str; 11] = [
    "established",
    "syn_sent",
    "syn_recv",
    "fin_wait1",
    "fin_wait2",
    "time_wait",
    "close",
    "close_wait",
    "last_ack",
    "listen",
    "closing",
];

/// Counts connections by state from a /proc/net/tcp-style table, streaming so that a host
/// with many thousands of connections does not make the agent allocate the whole table.
pub fn count_tcp_states(r: impl BufRead, counts: &mut [u64; 11]) {
    for line in r.lines().skip(1) {
        let Ok(line) = line else { break };
        let Some(st) = line.split_ascii_whitespace().nth(3) else { continue };
        if let Ok(n) = u8::from_str_radix(st, 16)
            && (1..=11).contains(&n)
        {
            counts[n as usize - 1] += 1;
        }
    }
}

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST_DUMP: u16 = 0x1 | 0x300;
const IPPROTO_TCP: u8 = 6;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// A `SOCK_DIAG_BY_FAMILY` dump request for every TCP socket of one address family:
/// `nlmsghdr` (16 bytes) then `inet_diag_req_v2` (56 bytes), in native byte order.
pub fn sock_diag_request(family: u8) -> Vec<u8> {
    let mut r = Vec::with_capacity(72);
    r.extend_from_slice(&72u32.to_ne_bytes());
    r.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    r.extend_from_slice(&NLM_F_REQUEST_DUMP.to_ne_bytes());
    r.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    r.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
    r.extend_from_slice(&[family, IPPROTO_TCP, 0, 0]);
    r.extend_from_slice(&0xfffu32.to_ne_bytes()); // all states
    r.extend_from_slice(&[0u8; 48]); // inet_diag_sockid: no filter
    r
}

/// Counts the `inet_diag_msg` replies in one datagram by state. Returns true at the end of
/// the dump; a kernel error reply becomes an `Err`; truncated input ends parsing quietly.
pub fn parse_sock_diag(data: &[u8], counts: &mut [u64; 11]) -> std::io::Result<bool> {
    let mut off = 0;
    while off + 16 <= data.len() {
        let len = u32::from_ne_bytes(data[off..off + 4].try_into().unwrap_or_default()) as usize;
        let kind = u16::from_ne_bytes(data[off + 4..off + 6].try_into().unwrap_or_default());
        if len < 16 || off + len > data.len() {
            break;
        }
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let code = data.get(off + 16..off + 20).map(|b| i32::from_ne_bytes(b.try_into().unwrap_or_default()));
                return Err(std::io::Error::from_raw_os_error(code.unwrap_or(0).saturating_neg()));
            }
            _ => {
                // inet_diag_msg starts with idiag_family, idiag_state.
                if let Some(&st) = data.get(off + 17)
                    && (1..=11).contains(&st)
                {
                    counts[st as usize - 1] += 1;
                }
            }
        }
        off += (len + 3) & !3;
    }
    Ok(false)
}

/// Counts TCP sockets (IPv4 and IPv6) by state over netlink.
pub fn count_tcp_states_netlink(counts: &mut [u64; 11]) -> std::io::Result<()> {
    use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType, netlink, sockopt};
    let mut buf = vec![0u8; 32 * 1024];
    for family in [AF_INET, AF_INET6] {
        let fd = rustix::net::socket(AddressFamily::NETLINK, SocketType::DGRAM, Some(netlink::SOCK_DIAG))?;
        // Never let a misbehaving kernel reply hang the collection.
        sockopt::set_socket_timeout(&fd, sockopt::Timeout::Recv, Some(std::time::Duration::from_secs(5)))?;
        rustix::net::send(&fd, &sock_diag_request(family), SendFlags::empty())?;
        loop {
            let (_, n) = rustix::net::recv(&fd, &mut buf[..], RecvFlags::empty())?;
            if n == 0 || parse_sock_diag(&buf[..n.min(buf.len())], counts)? {
                break;
            }
        }
    }
    Ok(())
}

pub fn emit_tcp_states(counts: &[u64; 11], out: &mut Out) {
    for (state, n) in TCP_STATES.iter().zip(counts) {
        out.gauge("node_tcp_connection_states", "Number of connection states.", &[("state", state)], *n as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_DEV: &str = include_str!("../../tests/fixtures/net_dev.txt");
    const TCP: &str = include_str!("../../tests/fixtures/net_tcp.txt");

    #[test]
    fn net_dev() {
        let d = parse_net_dev(NET_DEV);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].device, "lo");
        assert_eq!(d[1].device, "eth0");
        assert_eq!(d[1].fields[0], 123_456_789);
        assert_eq!(d[1].fields[3], 4);
        assert_eq!(d[1].fields[8], 987_654);
        assert_eq!(d[1].fields[11], 7);
    }

    #[test]
    fn sockstat() {
        let f = parse_sockstat("sockets: used 120\nTCP: inuse 5 orphan 0 tw 2 alloc 7 mem 3\nbad line\n", 4096.0);
        assert!(f.contains(&("node_sockstat_sockets_used".into(), 120.0)));
        assert!(f.contains(&("node_sockstat_TCP_tw".into(), 2.0)));
        assert!(f.contains(&("node_sockstat_TCP_mem_bytes".into(), 3.0 * 4096.0)));
    }

    #[test]
    fn netstat_defaults() {
        let text = "Tcp: RtoAlgorithm ActiveOpens CurrEstab InErrs\nTcp: 1 10 3 0\nUdp: InDatagrams Ignored\nUdp: 5 9\nTcp: Mismatched\nIp: Forwarding\n";
        let f = parse_netstat_pairs(text);
        let names: Vec<&str> = f.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "node_netstat_Tcp_ActiveOpens",
                "node_netstat_Tcp_CurrEstab",
                "node_netstat_Tcp_InErrs",
                "node_netstat_Udp_InDatagrams"
            ]
        );
        let s6 = parse_snmp6("Ip6InOctets 100\nIp6InNoRoutes 1\nUdp6InDatagrams 4\n");
        assert_eq!(
            s6,
            vec![("node_netstat_Ip6_InOctets".into(), 100.0), ("node_netstat_Udp6_InDatagrams".into(), 4.0)]
        );
    }

    fn diag_msg(kind: u16, state: u8) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&(16u32 + 72).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0u8; 10]);
        m.extend_from_slice(&[AF_INET, state]);
        m.extend_from_slice(&[0u8; 70]);
        m
    }

    #[test]
    fn sock_diag_replies() {
        assert_eq!(sock_diag_request(AF_INET6).len(), 72);
        let mut data = [diag_msg(SOCK_DIAG_BY_FAMILY, 1), diag_msg(SOCK_DIAG_BY_FAMILY, 10), diag_msg(20, 99)].concat();
        let mut c = [0u64; 11];
        assert!(!parse_sock_diag(&data, &mut c).unwrap());
        assert_eq!((c[0], c[9], c.iter().sum::<u64>()), (1, 1, 2));
        let mut done = diag_msg(NLMSG_DONE, 0)[..20].to_vec();
        done[0..4].copy_from_slice(&20u32.to_ne_bytes());
        data.extend_from_slice(&done);
        assert!(parse_sock_diag(&data, &mut c).unwrap());
        let mut err = diag_msg(NLMSG_ERROR, 0);
        err[16..20].copy_from_slice(&(-13i32).to_ne_bytes());
        assert_eq!(parse_sock_diag(&err, &mut c).unwrap_err().raw_os_error(), Some(13));
        // Truncated or garbage input ends quietly.
        assert!(!parse_sock_diag(&data[..30], &mut c).unwrap());
        assert!(!parse_sock_diag(&[0xff; 40], &mut c).unwrap());
    }

    #[test]
    fn netlink_counts_a_real_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let mut c = [0u64; 11];
        count_tcp_states_netlink(&mut c).unwrap();
        assert!(c[9] >= 1, "listen count {c:?}");
        assert!(c[0] >= 2, "established count {c:?}");
    }

    #[test]
    fn tcp_states() {
        let mut c = [0u64; 11];
        count_tcp_states(TCP.as_bytes(), &mut c);
        assert_eq!(c[0], 2); // established
        assert_eq!(c[9], 1); // listen
        assert_eq!(c[5], 1); // time_wait
        assert_eq!(c.iter().sum::<u64>(), 4);
    }
}
