//! `import FILE...`: GitHub REST issue JSON into the JSON store and DuckDB.

use std::collections::BTreeMap;

use serde_json::json;

use crate::cli::ImportArgs;
use crate::commands::Ctx;
use crate::error::{user, ExitStatus};
use crate::import_files::{convert, parse_values, Item};
use crate::store::{names, parse_issue, StoredIssue};

pub fn run(ctx: &Ctx, args: &ImportArgs) -> anyhow::Result<ExitStatus> {
    if let (Some(org), Some(repo)) = (&args.org, &args.repo) {
        names::validate_org(org)?;
        names::validate_repo(repo)?;
    }
    let fallback = args.org.as_deref().zip(args.repo.as_deref());
    let sources = args
        .files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).map_err(|e| user(format!("cannot read: {e}")));
            (f.display().to_string(), bytes)
        })
        .collect();
    import_sources(ctx, sources, fallback)
}

/// Imports named byte sources (files, or the samples embedded for `demo`); a source that can't
/// be read or parsed is reported and the others still import.
pub fn import_sources(
    ctx: &Ctx,
    sources: Vec<(String, anyhow::Result<Vec<u8>>)>,
    fallback: Option<(&str, &str)>,
) -> anyhow::Result<ExitStatus> {
    // Open the database first: if another process holds it, fail before writing any file.
    let mut db = ctx.db()?;
    ctx.store.ensure_dirs()?;

    let source_count = sources.len();
    let mut failures: Vec<String> = Vec::new();
    let mut pull_requests = 0usize;
    // Keyed by issue so an issue listed twice is written once (the last copy wins).
    let mut issues: BTreeMap<String, StoredIssue> = BTreeMap::new();
    for (name, bytes) in sources {
        let values = bytes.and_then(|b| parse_values(&b));
        let values = match values {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        for (i, v) in values.into_iter().enumerate() {
            match convert(v, fallback) {
                Item::Issue(s) => {
                    issues.insert(s.key(), *s);
                }
                Item::PullRequest => pull_requests += 1,
                Item::Invalid(why) => failures.push(format!("{name}: item {}: {why}", i + 1)),
            }
        }
    }

    let mut written = Vec::new();
    let mut unchanged = 0usize;
    for issue in issues.values() {
        let rel = crate::store::Store::issue_rel_path(&issue.org, &issue.repo, issue.issue.number)?;
        if same_content(ctx, &rel, issue) {
            unchanged += 1;
            continue;
        }
        written.push(ctx.store.write_issue(issue)?);
    }
    let bar = ctx.printer.bar(written.len() as u64, "import");
    let report = crate::ingest::sync_paths(&ctx.store, &mut db, &written, &bar)?;
    bar.finish_and_clear();
    failures.extend(report.failed.iter().map(|(p, why)| format!("{p}: {why}")));

    for f in &failures {
        ctx.printer.warn(f);
    }
    ctx.printer.summary(&[
        ("files", json!(source_count)),
        ("issues", json!(issues.len())),
        ("written", json!(report.added + report.updated)),
        ("unchanged", json!(unchanged)),
        ("pull_requests_skipped", json!(pull_requests)),
        ("failed", json!(failures.len())),
    ])?;
    if failures.is_empty() {
        Ok(ExitStatus::Success)
    } else {
        Ok(ctx.failure(&format!(
            "{} item(s) or file(s) could not be imported (listed above); the rest were stored",
            failures.len()
        )))
    }
}

/// True when the stored file already holds this issue (collection time aside), so a repeated
/// import rewrites nothing.
fn same_content(ctx: &Ctx, rel: &str, issue: &StoredIssue) -> bool {
    let path = ctx.store.abs(rel);
    let Ok(bytes) = std::fs::read(&path) else {
        return false;
    };
    parse_issue(&path, &bytes)
        .is_ok_and(|old| old.org == issue.org && old.repo == issue.repo && old.issue == issue.issue)
}
