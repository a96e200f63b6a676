//! `collect`: fetch issues, comments and labels from GitHub into the JSON store and DuckDB.

use serde_json::{json, Value};

use crate::cli::CollectArgs;
use crate::commands::Ctx;
use crate::error::ExitStatus;
use crate::github::client::Client;
use crate::github::collector::{parse_since, parse_size, CollectOptions, CollectReport, Collector};

pub async fn run(ctx: &Ctx, args: &CollectArgs) -> anyhow::Result<ExitStatus> {
    let cfg = ctx.github_config(args.token.as_deref(), "")?;
    let opts = CollectOptions {
        org: args.scope.org.clone(),
        repo: args.scope.repo.clone(),
        issue_number: args.scope.issue_number,
        labels: args
            .labels
            .iter()
            .flat_map(|l| l.split(','))
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect(),
        state: args.state,
        since: args.since.as_deref().map(parse_since).transpose()?,
        limit: args.limit,
        exclude_repos: args.exclude_repo.clone(),
        include_archived: args.include_archived,
        full: args.full,
        parallel_repos: args.parallel_repos,
        attachments: if args.download_attachments {
            Some(parse_size(&args.max_attachment_size)?)
        } else {
            None
        },
    };
    let client = Client::new(cfg, std::sync::Arc::new(ctx.printer))?;
    // Open the database first: if another process holds it, fail before fetching anything.
    let mut db = ctx.db()?;
    ctx.store.ensure_dirs()?;

    let mut collector = Collector::new(&client, &ctx.store, &mut db, &ctx.printer, &opts);
    // Files are written before the next request, and loaded below whatever happens, so
    // stopping at any await point (Ctrl-C) keeps all finished work; cursors only move when a
    // repository completes.
    let outcome = {
        let work = collector.run();
        tokio::pin!(work);
        tokio::select! {
            r = &mut work => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        }
    };
    // Load whatever was written before an interruption or a failure.
    let flushed = collector.flush();
    let report = collector.report.clone();
    print_summary(ctx, &client, &report)?;
    for (path, why) in &report.sync_failed {
        ctx.printer.warn(&format!(
            "{path}: written but not loaded into the database: {why}"
        ));
    }
    flushed?;
    match outcome {
        None => Ok(ctx.failure(&format!(
            "interrupted: the {} issues stored so far are kept; run the same command again to resume",
            report.issues_new + report.issues_updated
        ))),
        Some(Err(e)) => Err(e),
        Some(Ok(())) if !report.failed.is_empty() => Ok(ctx.failure(&format!(
            "{} repositories could not be collected (listed above); the others were",
            report.failed.len()
        ))),
        Some(Ok(())) if !report.refused.is_empty() => Ok(ctx.failure(&format!(
            "{} issues were not stored because their file name holds another issue (listed above)",
            report.refused.len()
        ))),
        Some(Ok(())) if !report.sync_failed.is_empty() => Ok(ctx.failure(&format!(
            "{} issue files could not be loaded into the database (listed above)",
            report.sync_failed.len()
        ))),
        Some(Ok(())) => Ok(ExitStatus::Success),
    }
}

fn print_summary(ctx: &Ctx, client: &Client, r: &CollectReport) -> anyhow::Result<()> {
    let limits = client.rate_limits();
    let remaining = |bucket: &str| {
        limits
            .get(bucket)
            .map_or(Value::Null, |s| json!(s.remaining))
    };
    ctx.printer.summary(&[
        ("repositories", json!(r.repositories)),
        ("repositories_skipped", json!(r.repositories_skipped)),
        ("repositories_failed", json!(r.failed.len())),
        ("incremental", json!(r.incremental)),
        ("issues", json!(r.issues())),
        ("new", json!(r.issues_new)),
        ("updated", json!(r.issues_updated)),
        ("unchanged", json!(r.issues_unchanged)),
        ("comments", json!(r.comments)),
        ("pull_requests_skipped", json!(r.pull_requests_skipped)),
        ("attachments_downloaded", json!(r.attachments.downloaded)),
        ("attachments_failed", json!(r.attachments.failed)),
        ("attachments_skipped", json!(r.attachments.skipped)),
        ("requests", json!(client.requests())),
        ("rate_limit_remaining_graphql", remaining("graphql")),
        ("rate_limit_remaining_core", remaining("core")),
    ])?;
    Ok(())
}
