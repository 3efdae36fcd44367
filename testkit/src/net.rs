//! Ports for test servers and for processes started by tests.

use std::net::TcpListener;

/// A free TCP port on 127.0.0.1 (the OS picks it; it is free again once this returns, so another
/// process can take it first: callers that start a server on it retry on failure).
pub fn try_free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// [`try_free_port`], panicking when no port can be had.
pub fn free_port() -> u16 {
    try_free_port().expect("free port")
}
