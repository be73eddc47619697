//! `sluice check DIR` and `sluice routes DIR`: translate a directory once, report, exit.

use crate::cli::CheckArgs;
use crate::selection::translate_options;
use anyhow::Context;
use sluice_model::{Problem, Severity};
use sluice_source::ManifestSource;
use sluice_translate::{Translation, translate};
use std::process::ExitCode;

fn load(args: &CheckArgs) -> anyhow::Result<(Vec<Problem>, Translation)> {
    let options = translate_options(&args.selection)?;
    let source = ManifestSource::load(&args.dir)
        .with_context(|| format!("cannot read manifest directory {}", args.dir.display()))?;
    let update = source.update();
    let translation = translate(&update.store, &options);
    Ok((update.problems, translation))
}

/// Prints every problem, one per line; exit 1 when anything would be rejected.
pub fn check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let (source_problems, translation) = load(args)?;
    let problems: Vec<&Problem> = source_problems
        .iter()
        .chain(&translation.problems)
        .collect();
    for problem in &problems {
        println!("{problem}");
    }
    let rejected = problems
        .iter()
        .filter(|p| p.severity == Severity::Rejected)
        .count();
    let counts = translation.snapshot.counts();
    println!(
        "{}: {} hosts, {} routes, {} backends, {} certificates; {} rejected, {} warnings",
        args.dir.display(),
        counts.hosts,
        counts.routes,
        counts.backends,
        counts.certificates,
        rejected,
        problems.len() - rejected
    );
    Ok(if rejected > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Prints the route table: host, path, type, backend and its endpoints.
pub fn routes(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let (_, translation) = load(args)?;
    println!("HOST\tPATH\tTYPE\tBACKEND\tINGRESS\tENDPOINTS");
    for r in sluice_admin::routes_of(&translation.snapshot, None) {
        let path = if r.fallback {
            "(default backend)"
        } else {
            r.path.as_str()
        };
        let endpoints = match &r.unavailable {
            Some(why) => format!("503: {why}"),
            None => r.endpoints.join(","),
        };
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            r.host, path, r.path_type, r.backend, r.ingress, endpoints
        );
    }
    Ok(ExitCode::SUCCESS)
}
