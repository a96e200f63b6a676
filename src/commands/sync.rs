//! `sync`: bring DuckDB in step with the JSON files.

use serde_json::json;

use crate::cli::SyncArgs;
use crate::commands::Ctx;
use crate::error::user;
use crate::sync::SyncReport;

pub fn run(ctx: &Ctx, args: &SyncArgs) -> anyhow::Result<()> {
    if args.ai_results {
        ctx.printer
            .warn("--ai-results: there are no AI result files to load until the processors land");
    }
    let mut db = ctx.db()?;
    let bar = crate::progress::bar(0, "sync", ctx.settings.quiet);
    let report = crate::sync::sync(&ctx.store, &mut db, args.force, &bar)?;
    bar.finish_and_clear();
    print_report(ctx, &report)
}

/// Prints a sync report; any failed file makes the command fail (exit 1) after the rest loaded.
pub fn print_report(ctx: &Ctx, r: &SyncReport) -> anyhow::Result<()> {
    for (path, why) in &r.failed {
        ctx.printer.warn(&format!("skipped {path}: {why}"));
    }
    ctx.printer.summary(&[
        ("files", json!(r.scanned)),
        ("added", json!(r.added)),
        ("updated", json!(r.updated)),
        ("unchanged", json!(r.unchanged)),
        ("removed", json!(r.removed)),
        ("failed", json!(r.failed.len())),
    ])?;
    if r.failed.is_empty() {
        Ok(())
    } else {
        Err(user(format!(
            "{} file(s) could not be synced (listed above); the others were loaded",
            r.failed.len()
        )))
    }
}
