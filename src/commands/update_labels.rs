//! `update-labels`: selects approved recommendations (or, with `--ignore-status`, pending ones
//! at a confidence), prints the plan, asks (or needs `--yes`), then applies them one issue at a
//! time through `recommendations::apply`, paced for GitHub's limits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cli::UpdateLabelsArgs;
use crate::commands::recommendations::taxonomy;
use crate::commands::{ask, check_issue_scope, Ctx};
use crate::db::{RecFilter, RecStatus};
use crate::env;
use crate::error::{user, ExitStatus};
use crate::github::client::Client;
use crate::github::pacing::Pacer;
use crate::printer::{OutputFormat, Printer, Table};
use crate::recommendations::apply::{self, ApplyOptions, IssueResult, Outcome, Planned};

/// The pacing scale from `GITHUB_ANALYSIS_WRITE_PACE` (default 1).
fn pace_scale(ctx: &Ctx) -> anyhow::Result<f64> {
    match ctx.env()(env::GITHUB_WRITE_PACE).filter(|s| !s.trim().is_empty()) {
        None => Ok(1.0),
        Some(s) => match s.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && (0.0..=100.0).contains(&v) => Ok(v),
            _ => Err(user(format!(
                "{} must be a number from 0 to 100, got {s:?}",
                env::GITHUB_WRITE_PACE
            ))),
        },
    }
}

fn names_value(p: &Printer, items: &[String]) -> Value {
    match p.format {
        OutputFormat::Json => json!(items),
        _ => Value::String(items.join(", ")),
    }
}

pub async fn run(ctx: &Ctx, a: &UpdateLabelsArgs) -> anyhow::Result<ExitStatus> {
    check_issue_scope(&a.scope)?;
    let opts = ApplyOptions {
        remove_labels: a.remove_labels,
        comment: a.comment,
        create_missing: a.create_missing_labels,
        dry_run: a.dry_run,
    };
    let tax = taxonomy(a.taxonomy.as_deref())?;
    let scale = pace_scale(ctx)?;
    let mut statuses = vec![RecStatus::Approved];
    if a.ignore_status {
        statuses.push(RecStatus::Pending);
    }
    let mut db = ctx.db()?;
    let filter = RecFilter {
        statuses,
        processor: a.processor.clone(),
        org: Some(a.scope.org.clone()),
        repo: a.scope.repo.clone(),
        number: a.scope.issue_number,
        min_confidence: a.min_confidence,
        ..RecFilter::default()
    };
    let plans = apply::plan(&db, &filter, opts)?;
    let p = &ctx.printer;
    if plans.is_empty() {
        p.note(&format!(
            "Nothing to apply: no {} recommendation matches (see `recommendations list`).",
            if a.ignore_status {
                "approved or pending"
            } else {
                "approved"
            }
        ));
        if p.format == OutputFormat::Json {
            p.json(&json!({"issues": 0, "results": []}))?;
        }
        return Ok(ExitStatus::Success);
    }
    if p.format == OutputFormat::Table {
        p.titled_table(
            "Plan (from the stored labels; each issue is read again before it is changed)",
            &plan_table(p, &plans),
        )?;
    }
    let started = Instant::now();
    if a.dry_run {
        let results = apply::record_dry_run(&mut db, &plans)?;
        report(ctx, &results, &[], None, started.elapsed(), true)?;
        return Ok(ExitStatus::Success);
    }
    let cfg = ctx.github_config(a.token.as_deref(), " (it needs write access to issues)")?;
    if !a.yes {
        // The prompt may stay open for hours: another terminal's `query` must not wait on it.
        db.release();
        confirm(&plans)?;
    }
    let reporter: Arc<dyn crate::report::Reporter> = Arc::new(ctx.printer);
    let client = Client::new(cfg, reporter.clone())?;
    let pacer = Pacer::new(scale, reporter.clone());
    // Writes of an earlier run within the hour count against GitHub's hourly budget.
    let hour = chrono::Duration::hours(1) + chrono::Duration::seconds(1);
    let now = chrono::Utc::now().naive_utc();
    for t in db.writes_since(now - hour)? {
        pacer.seed((now - t).to_std().unwrap_or_default());
    }
    let bar = p.bar(plans.len() as u64, "labels");
    let mut deps = apply::Deps {
        client: &client,
        pacer: &pacer,
        db: &mut db,
        store: &ctx.store,
        taxonomy: &tax,
        reporter,
    };
    let (results, local_failed) = apply::apply(&plans, opts, &mut deps, |_| bar.inc(1)).await?;
    bar.finish_and_clear();
    let writes = pacer.writes();
    let counts = Requests {
        reads: client.requests().saturating_sub(writes),
        writes,
        pacing_wait: pacer.waited(),
    };
    report(
        ctx,
        &results,
        &local_failed,
        Some(counts),
        started.elapsed(),
        false,
    )
}

struct Requests {
    reads: u64,
    writes: u64,
    pacing_wait: Duration,
}

fn plan_table(p: &Printer, plans: &[Planned]) -> Table {
    let mut t = Table::new([
        "issue",
        "recommendation",
        "status",
        "confidence",
        "add",
        "remove",
        "held_back",
    ]);
    for pl in plans {
        t.push(vec![
            json!(pl.rec.issue_id),
            json!(pl.rec.id),
            json!(pl.rec.status),
            pl.rec
                .confidence
                .map_or(Value::Null, |c| json!((c * 1000.0).round() / 1000.0)),
            names_value(p, &pl.add),
            names_value(p, &pl.remove),
            names_value(p, &pl.held_back),
        ]);
    }
    t
}

/// Asks on a terminal; without one, refuses (exit 2) instead of hanging.
fn confirm(plans: &[Planned]) -> anyhow::Result<()> {
    ask::require_terminal(
        "refusing to change labels on GitHub without confirmation: there is no terminal to \
         ask on; pass --yes (or look first with --dry-run)",
    )?;
    ask::confirm(
        &format!("Apply these changes to {} issue(s) on GitHub?", plans.len()),
        "cancelled: nothing was sent to GitHub",
    )
}

fn report(
    ctx: &Ctx,
    results: &[IssueResult],
    local_failed: &[(String, String)],
    requests: Option<Requests>,
    elapsed: Duration,
    dry_run: bool,
) -> anyhow::Result<ExitStatus> {
    let p = &ctx.printer;
    let count = |o: Outcome| results.iter().filter(|r| r.outcome == o).count();
    let failed = count(Outcome::Failed);
    let comment_failed = results.iter().filter(|r| r.comment_failed).count();
    let changed = results.iter().filter(|r| r.changed_on_github).count();
    let total = |f: fn(&IssueResult) -> usize| results.iter().map(f).sum::<usize>();
    for r in results
        .iter()
        .filter(|r| r.outcome == Outcome::Failed || r.comment_failed)
    {
        p.warn(&format!(
            "{}: {}",
            r.issue,
            r.note.as_deref().unwrap_or("failed")
        ));
    }
    for (issue, why) in local_failed {
        p.warn(&format!(
            "{issue}: changed on GitHub, but the local copy was not updated ({why}); `collect` brings it up to date"
        ));
    }
    let mut t = Table::new([
        "issue",
        "recommendation",
        "outcome",
        "added",
        "removed",
        "held_back",
        "created_labels",
        "changed_on_github",
        "commented",
        "note",
    ]);
    for r in results {
        t.push(vec![
            json!(r.issue),
            json!(r.recommendation),
            json!(r.outcome),
            names_value(p, &r.added),
            names_value(p, &r.removed),
            names_value(p, &r.held_back),
            names_value(p, &r.created_labels),
            json!(r.changed_on_github),
            json!(r.commented),
            r.note.as_ref().map_or(Value::Null, |n| json!(n)),
        ]);
    }
    let held = results.iter().filter(|r| !r.held_back.is_empty()).count();
    let mut fields: Vec<(&str, Value)> = vec![
        ("dry_run", json!(dry_run)),
        ("issues", json!(results.len())),
        ("applied", json!(count(Outcome::Applied))),
        ("planned", json!(count(Outcome::Planned))),
        ("already_done", json!(count(Outcome::AlreadyDone))),
        ("removals_held_back", json!(held)),
        ("failed", json!(failed)),
        ("changed_on_github", json!(changed)),
        ("labels_added", json!(total(|r| r.added.len()))),
        ("labels_removed", json!(total(|r| r.removed.len()))),
        ("labels_created", json!(total(|r| r.created_labels.len()))),
        (
            "comments",
            json!(results.iter().filter(|r| r.commented).count()),
        ),
    ];
    if let Some(rq) = &requests {
        fields.push(("read_requests", json!(rq.reads)));
        fields.push(("write_requests", json!(rq.writes)));
        fields.push((
            "pacing_wait_s",
            json!((rq.pacing_wait.as_secs_f64() * 100.0).round() / 100.0),
        ));
    }
    fields.push((
        "elapsed_s",
        json!((elapsed.as_secs_f64() * 100.0).round() / 100.0),
    ));
    match p.format {
        OutputFormat::Json => {
            let mut doc: serde_json::Map<String, Value> = fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            doc.insert("results".into(), serde_json::to_value(results)?);
            p.json(&Value::Object(doc))?;
        }
        OutputFormat::Csv => p.table(&t)?,
        OutputFormat::Table => {
            p.titled_table(
                if dry_run {
                    "Dry run: nothing was sent"
                } else {
                    "Results"
                },
                &t,
            )?;
            p.summary(&fields)?;
        }
    }
    if held > 0 {
        p.note(&format!(
            "{held} issue(s) keep labels the recommendation would remove: update-labels is additive; pass --remove-labels to remove them"
        ));
    }
    if failed > 0 || comment_failed > 0 {
        return Ok(ctx.failure(&format!(
            "{failed} issue(s) failed and {comment_failed} comment(s) could not be posted (listed above); the other issues were updated"
        )));
    }
    Ok(ExitStatus::Success)
}
