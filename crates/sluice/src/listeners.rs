//! Binding listening sockets before anything is served, so a taken port fails start-up at once.

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Binds `addr` with SO_REUSEADDR and a deep backlog. Must be called inside the runtime.
pub fn bind(kind: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .with_context(|| format!("{kind} listener {addr}: cannot create socket"))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into()).with_context(|| {
        format!(
            "{kind} listener: cannot bind {addr} (in use, or a port below 1024 without privilege?); \
             choose another address with --{kind}-listen"
        )
    })?;
    socket
        .listen(4096)
        .with_context(|| format!("{kind} listener {addr}: listen failed"))?;
    let listener = TcpListener::from_std(socket.into())?;
    // Tests and operators read this line to learn the port when they asked for port 0.
    tracing::info!("listening on {kind} {}", listener.local_addr()?);
    Ok(listener)
}
