//! `demo`: the flagship workflow on the bundled sample issues, offline by default: import,
//! `process-query missing product-labeling --batch-mode --yes --wait`, `batch-status`,
//! `analytics`. It runs the real commands, so it shows what a user's own run does.

use crate::cli::{DemoArgs, ProcessQueryCommand, RunArgs, SelectionArgs};
use crate::commands::{import, process_query, Ctx};
use crate::error::ExitStatus;
use crate::store::IssueState;

/// The sample issues ship inside the binary so `demo` works from any directory.
const SAMPLES: &[(&str, &[u8])] = &[
    (
        "data/sample/dotnet-corefx-issues.json",
        include_bytes!("../../data/sample/dotnet-corefx-issues.json"),
    ),
    (
        "data/sample/webcompat-web-bugs.jsonl",
        include_bytes!("../../data/sample/webcompat-web-bugs.jsonl"),
    ),
];

pub async fn run(ctx: &Ctx, args: &DemoArgs) -> anyhow::Result<ExitStatus> {
    let p = &ctx.printer;
    p.line("== 1/4 import the bundled sample issues")?;
    let sources = SAMPLES
        .iter()
        .map(|(name, bytes)| (name.to_string(), Ok(bytes.to_vec())))
        .collect();
    let status = import::import_sources(ctx, sources, None)?;
    if status != ExitStatus::Success {
        return Ok(status);
    }

    p.line("")?;
    p.line(&format!(
        "== 2/4 process-query missing product-labeling --state all --batch-mode --yes --wait --model {}",
        args.model
    ))?;
    let missing = ProcessQueryCommand::Missing {
        processor: crate::processors::product_labeling::NAME.to_string(),
        filter: SelectionArgs {
            org: None,
            repo: None,
            state: IssueState::All,
            limit: None,
        },
        run: RunArgs {
            batch_mode: true,
            model: Some(args.model.clone()),
            yes: true,
            dry_run: false,
            concurrency: None,
            wait: true,
            poll_interval: 1.0,
            ai: Default::default(),
        },
    };
    let status = process_query::run(ctx, missing).await?;
    if status != ExitStatus::Success {
        return Ok(status);
    }

    p.line("")?;
    p.line("== 3/4 process-query batch-status")?;
    let status = process_query::run(
        ctx,
        ProcessQueryCommand::BatchStatus {
            no_refresh: false,
            limit: 10,
        },
    )
    .await?;
    if status != ExitStatus::Success {
        return Ok(status);
    }

    p.line("")?;
    p.line("== 4/4 process-query analytics")?;
    process_query::run(ctx, ProcessQueryCommand::Analytics).await
}
