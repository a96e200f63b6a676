//! `import FILE...`: GitHub REST issue JSON into the JSON store and DuckDB, streamed item by
//! item (see `import_files`).

use serde_json::json;

use crate::cli::ImportArgs;
use crate::commands::Ctx;
use crate::error::{user, ExitStatus};
use crate::import_files::{import, Source};
use crate::store::names;

/// DuckDB's share of an import's memory; the rest is one chunk of items in flight.
const IMPORT_MEMORY_MB: u64 = 64;

pub fn run(ctx: &Ctx, args: &ImportArgs) -> anyhow::Result<ExitStatus> {
    if let (Some(org), Some(repo)) = (&args.org, &args.repo) {
        names::validate_org(org)?;
        names::validate_repo(repo)?;
    }
    let fallback = args.org.as_deref().zip(args.repo.as_deref());
    let sources = args
        .files
        .iter()
        .map(|f| Source {
            name: f.display().to_string(),
            reader: std::fs::File::open(f)
                .map(|file| {
                    Box::new(std::io::BufReader::with_capacity(1 << 20, file))
                        as Box<dyn std::io::BufRead + Send>
                })
                .map_err(|e| user(format!("cannot read: {e}"))),
        })
        .collect();
    let total: u64 = args
        .files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    import_streams(ctx, sources, fallback, total)
}

/// Imports named byte sources held in memory (the samples embedded for `demo`).
pub fn import_sources(
    ctx: &Ctx,
    sources: Vec<(String, anyhow::Result<Vec<u8>>)>,
    fallback: Option<(&str, &str)>,
) -> anyhow::Result<ExitStatus> {
    let total = sources
        .iter()
        .filter_map(|(_, b)| b.as_ref().ok())
        .map(|b| b.len() as u64)
        .sum();
    let sources = sources
        .into_iter()
        .map(|(name, bytes)| Source {
            name,
            reader: bytes
                .map(|b| Box::new(std::io::Cursor::new(b)) as Box<dyn std::io::BufRead + Send>),
        })
        .collect();
    import_streams(ctx, sources, fallback, total)
}

/// Imports named sources (files, or in-memory samples); a source or item that can't be read
/// or converted is reported and the others still import. `bytes`: their total size, for the
/// progress bar.
pub fn import_streams(
    ctx: &Ctx,
    sources: Vec<Source>,
    fallback: Option<(&str, &str)>,
    bytes: u64,
) -> anyhow::Result<ExitStatus> {
    // Open the database first: if another process holds it, fail before writing any file.
    let mut db = ctx.db()?;
    // The rows of a large dump need not stay in memory once written.
    db.limit_memory(IMPORT_MEMORY_MB)?;
    ctx.store.ensure_dirs()?;
    let bar = ctx.printer.bar(bytes, "import");
    let report = import(&ctx.store, &mut db, sources, fallback, &bar)?;
    bar.finish_and_clear();

    for f in &report.failures {
        ctx.printer.warn(f);
    }
    ctx.printer.summary(&[
        ("files", json!(report.sources)),
        ("issues", json!(report.issues)),
        ("written", json!(report.written)),
        ("unchanged", json!(report.unchanged)),
        ("pull_requests_skipped", json!(report.pull_requests)),
        ("failed", json!(report.failures.len())),
    ])?;
    if report.failures.is_empty() {
        Ok(ExitStatus::Success)
    } else {
        Ok(ctx.failure(&format!(
            "{} item(s) or file(s) could not be imported (listed above); the rest were stored",
            report.failures.len()
        )))
    }
}
