//! The `sluice` binary: command line, wiring of source -> translation -> snapshot -> data plane,
//! signals and shutdown.

mod allocator;
mod apply;
mod check;
mod checksum_cmd;
mod cli;
mod demo_backend;
mod gate;
mod kubernetes;
mod listeners;
mod observability;
mod selection;
mod serve;
mod served_state;
mod workers;

use clap::Parser;
use cli::{Cli, Command, LogFormat};
use std::io::IsTerminal;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    allocator::tune();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args).map(|()| ExitCode::SUCCESS),
        Command::Check(args) => check::check(&args),
        Command::Routes(args) => check::routes(&args),
        Command::Checksum(args) => checksum_cmd::checksum(&args),
        Command::DemoBackend(args) => demo_backend::run(args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("sluice: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(format: LogFormat) {
    // kube-runtime's watcher warns on every failed retry; Sluice logs each watch failure once
    // (and its recovery) with what to do, so that one is kept to errors.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,kube_runtime::watcher=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
