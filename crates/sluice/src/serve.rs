//! `sluice serve`: bind, apply the first configuration, serve, drain on SIGTERM.

use crate::apply::Applier;
use crate::cli::ServeArgs;
use crate::gate::GateOptions;
use crate::listeners::{bind, bind_per_worker};
use crate::selection::translate_options;
use crate::workers::{WorkerListeners, Workers};
use anyhow::{Context, anyhow};
use arc_swap::ArcSwap;
use sluice_admin::{RuntimeState, serve_admin};
use sluice_model::Snapshot;
use sluice_proxy::{DataPlane, ProxyConfig};
use sluice_source::ManifestSource;
use std::sync::Arc;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    // The control plane (sources, translation, admin API, signals) runs on a thread of its own,
    // so a large re-translation never delays a request; the data plane runs on the workers.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("sluice-control")
        .on_thread_start(yield_to_data_plane)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

/// Nice value of the control plane's threads. At 10 (a tenth of a worker's CPU share under
/// contention) a pinned one-core setup kept its request rate during 10 changes/s but applied
/// them up to ten times later; 5 (a third) is the compromise (bench/RESULTS.md, P5).
const CONTROL_NICE: libc::c_int = 5;

/// Lowers the calling thread's scheduling priority, for the control plane's threads: a
/// re-translation of thousands of Ingresses takes a second of CPU, and where it shares a core
/// with a worker, requests must not wait for it (measured in bench/RESULTS.md, P5).
fn yield_to_data_plane() {
    // On Linux the nice value is per thread, and `who = 0` is the calling thread. Failing only
    // leaves the default priority, so the result is ignored.
    // SAFETY: setpriority takes no pointers and only changes the calling thread's priority.
    let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, CONTROL_NICE) };
}

/// Data-plane worker threads: `--workers`, else one per CPU.
fn worker_count(args: &ServeArgs) -> usize {
    args.workers
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .max(1)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let options = translate_options(&args.selection)?;

    let workers = worker_count(&args);
    let mut listeners: Vec<WorkerListeners> =
        (0..workers).map(|_| WorkerListeners::default()).collect();
    for addr in &args.http_listen {
        for (worker, socket) in bind_per_worker("http", *addr, workers)?
            .into_iter()
            .enumerate()
        {
            listeners[worker].http.push(socket);
        }
    }
    for addr in &args.https_listen {
        for (worker, socket) in bind_per_worker("https", *addr, workers)?
            .into_iter()
            .enumerate()
        {
            listeners[worker].https.push(socket);
        }
    }
    let admin = bind("admin", args.admin_listen)?;

    let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let metrics = Arc::new(crate::observability::metrics(&args)?);
    let state = Arc::new(RuntimeState::new(snapshot.clone()).with_metrics(metrics.clone()));

    // Up before the first configuration: in Kubernetes mode /readyz answers 503 during the sync.
    let stop_admin = CancellationToken::new();
    let admin_task = tokio::spawn(serve_admin(admin, state.clone(), stop_admin.clone()));

    let kubernetes = if args.kubernetes.kubernetes {
        if args.manifests.is_some() {
            anyhow::bail!("--manifests and --kubernetes exclude each other: choose one source");
        }
        Some(
            crate::kubernetes::start(
                &args.kubernetes,
                options,
                state.clone(),
                args.state_dir.clone(),
            )
            .await?,
        )
    } else {
        let dir = args.manifests.clone().ok_or_else(|| {
            anyhow!(
                "nothing to serve: pass --manifests DIR (a directory of Kubernetes manifests) or --kubernetes"
            )
        })?;
        let source = ManifestSource::load(&dir)
            .with_context(|| format!("cannot read manifest directory {}", dir.display()))?;
        let (updates_tx, updates_rx) = watch::channel(source.update());
        let gates = GateOptions {
            instance_ordinal: GateOptions::ordinal_from(args.kubernetes.instance_ordinal),
            state_dir: args.state_dir.clone(),
        };
        let mut applier = Applier::with_gates(options, state.clone(), gates);
        applier.apply(&updates_rx.borrow());
        state.mark_ready();
        tokio::spawn(source.watch(updates_tx));
        tokio::spawn(applier.run(updates_rx));
        None
    };

    let data_plane = DataPlane::with_metrics(
        snapshot,
        ProxyConfig {
            drain_timeout: args.drain_timeout,
            ..ProxyConfig::default()
        },
        metrics,
    )
    .context("cannot start the data plane")?;
    let stop_accepting = CancellationToken::new();
    let serving = Workers::start(&data_plane, listeners, &stop_accepting)?;

    wait_for_termination().await?;
    state.mark_shutting_down();
    data_plane.start_draining();
    if let Some(kubernetes) = kubernetes {
        kubernetes.stop().await;
    }
    tracing::info!(
        drain_delay = ?args.drain_delay,
        "shutting down: /healthz now answers 500; still serving during the drain delay"
    );
    tokio::time::sleep(args.drain_delay).await;
    tracing::info!("no longer accepting connections; waiting for in-flight requests");
    stop_accepting.cancel();
    serving.join().await;
    stop_admin.cancel();
    let _ = admin_task.await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_termination() -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    Ok(())
}
