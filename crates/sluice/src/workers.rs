//! The data plane's threads: one single-threaded tokio runtime per worker, each accepting on its
//! own SO_REUSEPORT socket per listen address.
//!
//! Why not one multi-thread runtime: a client connection, the requests on it and the upstream
//! connections they use then stay on one thread, so no task is woken from another thread, stolen
//! or moved between cores, and the kernel spreads new connections across the workers' sockets.
//! Measured on one core (bench/RESULTS.md), the work-stealing scheduler's cross-thread wake-ups
//! and atomics cost more than they bought. Everything else is shared: the snapshot, the TLS
//! configuration (session cache, ticket keys) and the upstream pool's per-thread shards.

use anyhow::Context;
use sluice_proxy::DataPlane;
use std::net::TcpListener as StdListener;
use std::thread::JoinHandle;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// One worker's sockets: one per plain and per TLS listen address.
#[derive(Default)]
pub struct WorkerListeners {
    pub http: Vec<StdListener>,
    pub https: Vec<StdListener>,
}

/// The running worker threads.
pub struct Workers {
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts one thread per entry of `listeners`. Each serves until `stop` is cancelled, then
    /// drains like [`DataPlane::serve_http`].
    pub fn start(
        data_plane: &DataPlane,
        listeners: Vec<WorkerListeners>,
        stop: &CancellationToken,
    ) -> anyhow::Result<Workers> {
        let mut threads = Vec::with_capacity(listeners.len());
        for (index, own) in listeners.into_iter().enumerate() {
            let data_plane = data_plane.clone();
            let stop = stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("sluice-worker-{index}"))
                .spawn(move || run_worker(index, data_plane, own, stop))
                .with_context(|| format!("cannot start data-plane worker thread {index}"))?;
            threads.push(thread);
        }
        Ok(Workers { threads })
    }

    /// Waits until every worker has drained and stopped.
    pub async fn join(self) {
        let threads = self.threads;
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                if thread.join().is_err() {
                    tracing::error!("a data-plane worker thread panicked");
                }
            }
        })
        .await;
        if joined.is_err() {
            tracing::error!("waiting for the data-plane worker threads failed");
        }
    }
}

fn run_worker(index: usize, data_plane: DataPlane, own: WorkerListeners, stop: CancellationToken) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(worker = index, error = %e, "cannot start a data-plane worker's runtime; it serves nothing");
            return;
        }
    };
    runtime.block_on(async move {
        let mut serving = JoinSet::new();
        for (listener, tls) in own
            .http
            .into_iter()
            .map(|l| (l, false))
            .chain(own.https.into_iter().map(|l| (l, true)))
        {
            let listener = match TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::error!(worker = index, error = %e, "cannot register a listening socket with the worker's runtime");
                    continue;
                }
            };
            let (data_plane, stop) = (data_plane.clone(), stop.clone());
            serving.spawn(async move {
                if tls {
                    data_plane.serve_https(listener, stop).await
                } else {
                    data_plane.serve_http(listener, stop).await
                }
            });
        }
        while serving.join_next().await.is_some() {}
    });
}
