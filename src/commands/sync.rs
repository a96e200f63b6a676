//! `sync`: bring DuckDB in step with the JSON files.

use serde_json::json;

use crate::cli::SyncArgs;
use crate::commands::Ctx;
use crate::error::ExitStatus;
use crate::ingest::SyncReport;

pub fn run(ctx: &Ctx, args: &SyncArgs) -> anyhow::Result<ExitStatus> {
    let mut db = ctx.db()?;
    let bar = ctx.printer.bar(0, "sync");
    let report = crate::ingest::sync(&ctx.store, &mut db, args.force, &bar)?;
    bar.finish_and_clear();
    let results = if args.ai_results {
        Some(sync_results(ctx, &mut db)?)
    } else {
        None
    };
    print_report(ctx, &report, results.as_ref())
}

/// Result files loaded, and (path, reason) of those that could not be.
struct ResultsLoaded {
    loaded: usize,
    failed: Vec<(String, String)>,
}

/// Loads every result file of `results/` into `ai_results` / `ai_recommendations` (replacing
/// rows of the same issue and processor), so a lost or new database gets its results back.
fn sync_results(ctx: &Ctx, db: &mut crate::db::Db) -> anyhow::Result<ResultsLoaded> {
    let dir = ctx.store.abs(crate::store::RESULTS_DIR);
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e.filter_map(Result::ok).collect::<Vec<_>>(),
        Err(_) => Vec::new(),
    };
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".json") || !entry.path().is_file() {
            continue;
        }
        let rel = format!("{}/{name}", crate::store::RESULTS_DIR);
        match std::fs::read(entry.path())
            .map_err(anyhow::Error::from)
            .and_then(|b| crate::result_files::read_file(&rel, &b))
        {
            Ok(r) => rows.push(r),
            Err(e) => failed.push((rel, format!("{e:#}"))),
        }
    }
    db.save_results(&rows)?;
    Ok(ResultsLoaded {
        loaded: rows.len(),
        failed,
    })
}

/// Prints a sync report; any file that failed makes the command fail (exit 1) after the rest
/// loaded.
fn print_report(
    ctx: &Ctx,
    r: &SyncReport,
    results: Option<&ResultsLoaded>,
) -> anyhow::Result<ExitStatus> {
    let mut failed: Vec<&(String, String)> = r.failed.iter().collect();
    if let Some(res) = results {
        failed.extend(res.failed.iter());
    }
    for (path, why) in &failed {
        ctx.printer.warn(&format!("skipped {path}: {why}"));
    }
    let mut fields = vec![
        ("files", json!(r.scanned)),
        ("added", json!(r.added)),
        ("updated", json!(r.updated)),
        ("unchanged", json!(r.unchanged)),
        ("removed", json!(r.removed)),
        ("failed", json!(r.failed.len())),
    ];
    if let Some(res) = results {
        fields.push(("result_files_loaded", json!(res.loaded)));
        fields.push(("result_files_failed", json!(res.failed.len())));
    }
    ctx.printer.summary(&fields)?;
    if failed.is_empty() {
        Ok(ExitStatus::Success)
    } else {
        Ok(ctx.failure(&format!(
            "{} file(s) could not be synced (listed above); the others were loaded",
            failed.len()
        )))
    }
}
