//! Binding listening sockets before anything is served, so a taken port fails start-up at once.

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Binds `addr` with SO_REUSEADDR and a deep backlog. Must be called inside the runtime.
pub fn bind(kind: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::from_std(bind_socket(kind, addr, false)?)?;
    // Tests and operators read this line to learn the port when they asked for port 0.
    tracing::info!("listening on {kind} {}", listener.local_addr()?);
    Ok(listener)
}

/// Binds `addr` once per worker. With several workers every socket has SO_REUSEPORT, so the
/// kernel spreads incoming connections across the workers; port 0 is resolved by the first
/// socket and the others join that port.
pub fn bind_per_worker(
    kind: &str,
    addr: SocketAddr,
    workers: usize,
) -> anyhow::Result<Vec<std::net::TcpListener>> {
    let shared = workers > 1;
    let first = bind_socket(kind, addr, shared)?;
    let bound = first.local_addr()?;
    // Tests and operators read this line to learn the port when they asked for port 0.
    tracing::info!("listening on {kind} {bound}");
    let mut sockets = vec![first];
    for _ in 1..workers {
        sockets.push(bind_socket(kind, bound, shared)?);
    }
    Ok(sockets)
}

fn bind_socket(
    kind: &str,
    addr: SocketAddr,
    reuse_port: bool,
) -> anyhow::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .with_context(|| format!("{kind} listener {addr}: cannot create socket"))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket
            .set_reuse_port(true)
            .with_context(|| format!("{kind} listener {addr}: cannot set SO_REUSEPORT"))?;
    }
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
    Ok(socket.into())
}
