//! Host identity: uname, `/etc/os-release`, the host's IP addresses and its primary IPv4 (from
//! the routing table), under node_exporter's uname and os names; also the inventory the
//! heartbeat reports.

use super::out::Out;
use std::net::{IpAddr, Ipv4Addr};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Uname {
    pub sysname: String,
    pub nodename: String,
    pub release: String,
    pub version: String,
    pub machine: String,
    pub domainname: String,
}

pub fn uname() -> Uname {
    let u = rustix::system::uname();
    let s = |c: &std::ffi::CStr| c.to_string_lossy().into_owned();
    Uname {
        sysname: s(u.sysname()),
        nodename: s(u.nodename()),
        release: s(u.release()),
        version: s(u.version()),
        machine: s(u.machine()),
        domainname: s(u.domainname()),
    }
}

pub fn emit_uname(u: &Uname, out: &mut Out) {
    out.gauge(
        "node_uname_info",
        "Labeled system information as provided by the uname system call.",
        &[
            ("sysname", &u.sysname),
            ("nodename", &u.nodename),
            ("release", &u.release),
            ("version", &u.version),
            ("machine", &u.machine),
            ("domainname", &u.domainname),
        ],
        1.0,
    );
}

/// `KEY=value` pairs of os-release(5), quotes removed.
pub fn parse_os_release(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.starts_with('#') {
                return None;
            }
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
            let v = v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')).unwrap_or(v);
            Some((k.trim().to_string(), v.replace("\\\"", "\"")))
        })
        .collect()
}

pub fn os_get<'a>(os: &'a [(String, String)], key: &str) -> &'a str {
    os.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or("")
}

pub fn emit_os(os: &[(String, String)], out: &mut Out) {
    const KEYS: [(&str, &str); 10] = [
        ("BUILD_ID", "build_id"),
        ("ID", "id"),
        ("ID_LIKE", "id_like"),
        ("IMAGE_ID", "image_id"),
        ("IMAGE_VERSION", "image_version"),
        ("NAME", "name"),
        ("PRETTY_NAME", "pretty_name"),
        ("VARIANT", "variant"),
        ("VARIANT_ID", "variant_id"),
        ("VERSION", "version"),
    ];
    if os.is_empty() {
        return;
    }
    let mut labels: Vec<(&str, &str)> = KEYS.iter().map(|(k, l)| (*l, os_get(os, k))).collect();
    labels.push(("version_codename", os_get(os, "VERSION_CODENAME")));
    labels.push(("version_id", os_get(os, "VERSION_ID")));
    out.gauge("node_os_info", "A metric with a constant '1' value labeled by build_id, id, id_like, image_id, image_version, name, pretty_name, variant, variant_id, version, version_codename, version_id.", &labels, 1.0);
    // node_exporter's node_os_version: VERSION_ID as a number where it is one ("12", "22.04").
    if let Ok(v) = os_get(os, "VERSION_ID").parse::<f64>() {
        out.gauge(
            "node_os_version",
            "Metric containing the major.minor part of the OS version.",
            &[("id", os_get(os, "ID")), ("id_like", os_get(os, "ID_LIKE")), ("name", os_get(os, "NAME"))],
            v,
        );
    }
}

pub fn read_os_release() -> Vec<(String, String)> {
    for p in ["/etc/os-release", "/usr/lib/os-release"] {
        if let Ok(t) = std::fs::read_to_string(p) {
            return parse_os_release(&t);
        }
    }
    Vec::new()
}

/// Local (assigned) IPv4 addresses from `/proc/net/fib_trie`, loopback excluded, de-duplicated.
pub fn parse_fib_trie_locals(text: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(ip) = t.strip_prefix("|-- ") {
            last = ip.trim().parse().ok();
        } else if t.starts_with("/32 host LOCAL")
            && let Some(ip) = last
            && !ip.is_loopback()
            && !out.contains(&ip)
        {
            out.push(ip);
        }
    }
    out
}

/// Routes from `/proc/net/route`: (interface, destination, mask, metric).
pub fn parse_routes(text: &str) -> Vec<(String, Ipv4Addr, Ipv4Addr, u32)> {
    let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(|v| Ipv4Addr::from(v.to_le_bytes()));
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_ascii_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            Some((f[0].to_string(), hex(f[1])?, hex(f[7])?, f[6].parse().unwrap_or(0)))
        })
        .collect()
}

/// The address on the default route's interface; otherwise the first non-loopback address.
pub fn primary_ipv4(routes: &[(String, Ipv4Addr, Ipv4Addr, u32)], locals: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    let default_if = routes
        .iter()
        .filter(|r| r.1.is_unspecified() && r.2.is_unspecified())
        .min_by_key(|r| r.3)
        .map(|r| r.0.as_str());
    if let Some(iface) = default_if {
        for r in routes.iter().filter(|r| r.0 == iface && !r.2.is_unspecified()) {
            let (net, mask) = (u32::from(r.1), u32::from(r.2));
            if let Some(ip) = locals.iter().find(|ip| u32::from(**ip) & mask == net & mask) {
                return Some(*ip);
            }
        }
    }
    locals.first().copied()
}

/// Global-scope IPv6 addresses from `/proc/net/if_inet6`.
pub fn parse_if_inet6(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_ascii_whitespace().collect();
            if f.len() < 6 || f[3] != "00" || f[0].len() != 32 {
                return None;
            }
            let v = u128::from_str_radix(f[0], 16).ok()?;
            Some(IpAddr::V6(v.into()))
        })
        .collect()
}

/// All the host's addresses, primary IPv4 first.
pub fn host_ips() -> (Option<Ipv4Addr>, Vec<IpAddr>) {
    let locals = std::fs::read_to_string("/proc/net/fib_trie").map(|t| parse_fib_trie_locals(&t)).unwrap_or_default();
    let routes = std::fs::read_to_string("/proc/net/route").map(|t| parse_routes(&t)).unwrap_or_default();
    let primary = primary_ipv4(&routes, &locals);
    let mut all: Vec<IpAddr> = primary.into_iter().map(IpAddr::V4).collect();
    all.extend(locals.iter().filter(|ip| Some(**ip) != primary).map(|ip| IpAddr::V4(*ip)));
    all.extend(std::fs::read_to_string("/proc/net/if_inet6").map(|t| parse_if_inet6(&t)).unwrap_or_default());
    (primary, all)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIB: &str = include_str!("../../tests/fixtures/fib_trie.txt");

    #[test]
    fn addresses_and_primary() {
        let locals = parse_fib_trie_locals(FIB);
        assert_eq!(locals, ["10.1.2.3".parse::<Ipv4Addr>().unwrap(), "192.0.2.2".parse().unwrap()]);
        let routes = parse_routes(
            "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
             eth1\t0000010A\t00000000\t0001\t0\t0\t0\t0000FFFF\n\
             eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\n\
             eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n",
        );
        assert_eq!(routes[2].1, "192.0.2.0".parse::<Ipv4Addr>().unwrap());
        assert_eq!(primary_ipv4(&routes, &locals), Some("192.0.2.2".parse().unwrap()));
        assert_eq!(primary_ipv4(&[], &locals), Some("10.1.2.3".parse().unwrap()));
        let v6 = parse_if_inet6(
            "20010db8000000000000000000000001 02 40 00 80 eth0\nfe800000000000000000000000000001 02 40 20 80 eth0\n",
        );
        assert_eq!(v6, vec!["2001:db8::1".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn os_release() {
        let os = parse_os_release("# c\nPRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nID=debian\nVERSION_ID='13'\n");
        assert_eq!(os_get(&os, "PRETTY_NAME"), "Debian GNU/Linux 13 (trixie)");
        assert_eq!(os_get(&os, "VERSION_ID"), "13");
        assert_eq!(os_get(&os, "NOPE"), "");
    }
}
