//! Free loopback ports: outside the kernel's ephemeral range and never the same one twice in a
//! test process (see `tingzhen_core::testing` for why).

use std::net::SocketAddr;

/// A loopback port nobody listens on and this process has not handed out.
pub fn free_port() -> u16 {
    tingzhen_core::testing::free_loopback_port()
}

/// `127.0.0.1:<free port>`.
pub fn free_addr() -> SocketAddr {
    tingzhen_core::testing::free_loopback_addr()
}
