//! End-to-end test support: starting tingzhen binaries and real peers on free loopback ports.
