//! `status`: what is stored, and whether the database matches the JSON files.

use serde_json::json;

use crate::commands::Ctx;
use crate::error::ExitStatus;
use crate::printer::{OutputFormat, Table};

pub fn run(ctx: &Ctx) -> anyhow::Result<ExitStatus> {
    let db = ctx.db()?;
    let plan = crate::ingest::plan(&ctx.store, &db, false)?;
    let json_bytes = plan.bytes;
    let db_path = ctx.settings.db_path();
    let db_bytes = std::fs::metadata(&db_path).map(|m| m.len()).unwrap_or(0);
    let counts = db.counts()?;
    let repos = db.repo_counts()?;

    let mut table = Table::new([
        "org",
        "repo",
        "issues",
        "open",
        "closed",
        "comments_on_github",
        "comments_stored",
        "with_ai_results",
        "last_updated",
    ]);
    for r in &repos {
        table.push(vec![
            json!(r.org),
            json!(r.repo),
            json!(r.issues),
            json!(r.open),
            json!(r.closed),
            json!(r.comments_on_github),
            json!(r.comments_stored),
            json!(r.ai_results),
            json!(r.last_updated),
        ]);
    }
    let pending = plan.candidates.len();
    let missing = plan.missing.len();
    match ctx.printer.format {
        OutputFormat::Json => ctx.printer.json(&json!({
            "data_dir": ctx.settings.data_dir.display().to_string(),
            "json": {"files": plan.on_disk, "bytes": json_bytes},
            "database": {
                "path": db_path.display().to_string(),
                "bytes": db_bytes,
                "issues": counts.issues,
                "comments_stored": counts.comments,
                "labels": counts.labels,
                "ai_results": counts.ai_results,
                "batch_jobs": counts.batch_jobs,
            },
            "in_sync": plan.in_sync(),
            "files_to_sync": pending,
            "files_missing": missing,
            "repositories": repos.iter().map(|r| json!({
                "org": r.org, "repo": r.repo, "issues": r.issues, "open": r.open,
                "closed": r.closed, "comments_on_github": r.comments_on_github,
                "comments_stored": r.comments_stored, "with_ai_results": r.ai_results,
                "last_updated": r.last_updated,
            })).collect::<Vec<_>>(),
        }))?,
        OutputFormat::Csv => ctx.printer.table(&table)?,
        OutputFormat::Table => {
            let p = &ctx.printer;
            p.line(&format!(
                "Data directory: {}",
                ctx.settings.data_dir.display()
            ))?;
            p.line(&format!(
                "JSON issue files: {} ({})",
                plan.on_disk,
                human_bytes(json_bytes)
            ))?;
            p.line(&format!(
                "Database: {} ({})",
                db_path.display(),
                human_bytes(db_bytes)
            ))?;
            p.line(&format!(
                "  issues {}, comments stored {}, labels {}, ai_results {}, batch_jobs {}",
                counts.issues, counts.comments, counts.labels, counts.ai_results, counts.batch_jobs
            ))?;
            if plan.in_sync() {
                p.line("In sync: yes")?;
            } else {
                p.line(&format!(
                    "In sync: no ({pending} new or changed file(s), {missing} missing) — run `github-analysis sync`"
                ))?;
            }
            if !repos.is_empty() {
                p.line("")?;
                p.table(&table)?;
            }
        }
    }
    Ok(ExitStatus::Success)
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
