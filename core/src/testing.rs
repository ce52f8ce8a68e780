//! Test support for every crate's tests: loopback ports for the servers a test starts, its own
//! or a child process's (aiosmtpd, Prometheus, `tingzhen serve`).
//!
//! Not behind a feature: a feature only tests turn on would give the tests' build of `core` a
//! different fingerprint from the binaries' build that `tests/src/bins.rs` runs, and cargo
//! would compile `core` and every crate above it twice. Nothing here is called by a shipped
//! binary, so the linker drops it.
//!
//! Why not `bind(127.0.0.1:0)` and hand the port on: the kernel picks that port from its
//! ephemeral range, the same range it picks the local port of every outgoing connection from.
//! Between the probe and the child's own bind, any connection on the machine may take it, and
//! the child then fails to start (an agent test failed in CI in a way that fits this). Ports
//! here come from just below that range, which the kernel never hands out by itself; a bind
//! probe still skips any that a service listens on.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::ops::Range;
use std::sync::Mutex;

/// Ports this process has handed out: two servers of one test process never share one.
static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// The lowest port we use; below are well-known services' defaults.
const LOWEST: u16 = 10_000;

/// The first port of the kernel's ephemeral range (Linux: `ip_local_port_range`).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A loopback port nobody listens on now, outside the kernel's ephemeral range, that this
/// process has not handed out before.
pub fn free_loopback_port() -> u16 {
    let top = ephemeral_start();
    if top <= LOWEST + 1_000 {
        // A machine whose ephemeral range starts low: only the probe is left.
        return probed_ephemeral_port();
    }
    // Start somewhere different in each process so concurrent test processes rarely probe the
    // same ports; the bind probe settles any overlap.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let start = std::process::id().wrapping_mul(7_919) ^ nanos;
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    pick(LOWEST..top, start, given.get_or_insert_with(HashSet::new))
        .unwrap_or_else(|| panic!("no free loopback port in {LOWEST}..{top}"))
}

/// The first port of `range`, walking round from `start`, that is not in `given` and binds on
/// loopback now; it is added to `given`.
fn pick(range: Range<u16>, start: u32, given: &mut HashSet<u16>) -> Option<u16> {
    let span = u32::from(range.end - range.start);
    (0..span)
        .map(|i| range.start + ((start.wrapping_add(i)) % span) as u16)
        .find(|port| !given.contains(port) && TcpListener::bind(("127.0.0.1", *port)).is_ok() && given.insert(*port))
}

/// `127.0.0.1:<free_loopback_port>`.
pub fn free_loopback_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_loopback_port()))
}

fn probed_ephemeral_port() -> u16 {
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    for _ in 0..1_000 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
        let port = l.local_addr().expect("local_addr").port();
        if given.insert(port) {
            return port;
        }
    }
    panic!("no free loopback port after 1000 tries");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_below_the_ephemeral_range() {
        let top = ephemeral_start();
        let ports: Vec<u16> = (0..200).map(|_| free_loopback_port()).collect();
        let distinct: HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
        for p in &ports {
            assert!((LOWEST..top).contains(p), "{p} is outside {LOWEST}..{top}");
            TcpListener::bind(("127.0.0.1", *p))
                .unwrap_or_else(|e| panic!("port {p} handed out but not bindable: {e}"));
        }
    }

    #[test]
    fn a_port_someone_listens_on_is_skipped() {
        let port = free_loopback_port();
        let _held = TcpListener::bind(("127.0.0.1", port)).expect("bind the port just handed out");
        // A fresh record, so only the bind probe can tell that the port is taken.
        let mut given = HashSet::new();
        let next = pick(port..port.saturating_add(100), 0, &mut given).expect("a free port after it");
        assert_ne!(next, port, "a port with a listener was handed out");
        assert!(next > port);
        assert_eq!(given, HashSet::from([next]));
    }

    #[test]
    fn the_walk_wraps_round_the_range_and_ends_when_all_are_given() {
        let base = free_loopback_port();
        let range = base..base + 3;
        let mut given = HashSet::new();
        let got: Vec<u16> = std::iter::from_fn(|| pick(range.clone(), 2, &mut given)).take(10).collect();
        // From offset 2 round to the start; a neighbour some service listens on is skipped.
        let walk: Vec<u16> = [base + 2, base, base + 1].into_iter().filter(|p| got.contains(p)).collect();
        assert_eq!(got, walk);
        assert!(got.contains(&base), "{base} was free a moment ago: {got:?}");
        assert_eq!(pick(range, 2, &mut given), None, "every port of the range is given");
    }
}
