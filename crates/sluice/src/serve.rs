//! `sluice serve`: bind, apply the first configuration, serve, drain on SIGTERM.

use crate::apply::Applier;
use crate::cli::ServeArgs;
use crate::gate::GateOptions;
use crate::listeners::bind;
use crate::selection::translate_options;
use anyhow::{Context, anyhow};
use arc_swap::ArcSwap;
use sluice_admin::{RuntimeState, serve_admin};
use sluice_model::Snapshot;
use sluice_proxy::{DataPlane, ProxyConfig};
use sluice_source::ManifestSource;
use std::sync::Arc;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let workers = args
        .workers
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("sluice-worker")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let options = translate_options(&args.selection)?;

    let http = args
        .http_listen
        .iter()
        .map(|a| bind("http", *a))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let https = args
        .https_listen
        .iter()
        .map(|a| bind("https", *a))
        .collect::<anyhow::Result<Vec<_>>>()?;
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
    let mut serving = JoinSet::new();
    for listener in http {
        let (dp, stop) = (data_plane.clone(), stop_accepting.clone());
        serving.spawn(async move { dp.serve_http(listener, stop).await });
    }
    for listener in https {
        let (dp, stop) = (data_plane.clone(), stop_accepting.clone());
        serving.spawn(async move { dp.serve_https(listener, stop).await });
    }

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
    while serving.join_next().await.is_some() {}
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
