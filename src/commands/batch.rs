//! `batch …`: submit, status, collect, list, history, details, cancel, remove, retry, reconcile
//! — thin wrappers around [`crate::batch::BatchManager`], one function per leaf command.

use serde_json::{json, Value};

use crate::batch::{job_json, CollectReport, FindingKind, NewJob};
use crate::cli::{BatchCommand, BatchSubmitArgs};
use crate::commands::{ai_config, ask, check_scope, command_line, Ctx};
use crate::db::{Backend, BatchJob, BatchPart};
use crate::error::{user, ExitStatus};
use crate::pipeline::{check_custom_sql, Pipeline, Selection};
use crate::printer::{OutputFormat, Table};

pub async fn run(ctx: &Ctx, cmd: BatchCommand) -> anyhow::Result<ExitStatus> {
    match cmd {
        BatchCommand::Submit(args) => submit(ctx, &args).await,
        BatchCommand::Status(j) => status(ctx, &j.job).await,
        BatchCommand::Collect(j) => collect(ctx, &j.job).await,
        BatchCommand::List => list(ctx),
        BatchCommand::History => history(ctx),
        BatchCommand::Details(j) => details(ctx, &j.job),
        BatchCommand::Cancel(j) => cancel(ctx, &j.job).await,
        BatchCommand::Remove { job, force } => remove(ctx, &job.job, force).await,
        BatchCommand::Retry(j) => retry(ctx, &j.job).await,
        BatchCommand::Reconcile {
            cancel_orphans,
            yes,
        } => reconcile(ctx, cancel_orphans, yes).await,
    }?;
    Ok(ExitStatus::Success)
}

/// The issues a submit selects, and the SQL that selected them (recorded with the job).
fn select(ctx: &Ctx, a: &BatchSubmitArgs) -> anyhow::Result<Selection> {
    let processor = a.processor.as_str();
    let mut p = Pipeline::new();
    let ro = ctx.read_only_db()?;
    if let Some(sql) = &a.sql {
        let key = check_custom_sql(&ro, sql)?;
        p = p.from_custom_sql(sql, key);
    } else if let Some(org) = &a.repo_scope.org {
        check_scope(&a.repo_scope)?;
        p = p.where_scope(org, a.repo_scope.repo.as_deref(), a.issue_number);
    } else if !a.missing_analysis {
        return Err(user(
            "choose the issues: --org ORG [--repo REPO [--issue-number N]], --sql SQL, or --missing-analysis",
        ));
    }
    if a.missing_analysis {
        p = p.where_missing_analysis(processor);
    }
    // An issue already waiting in a running job of this processor is not submitted twice.
    p = p.excluding_active_batches(processor);
    p.select(&ro, processor)
}

async fn submit(ctx: &Ctx, a: &BatchSubmitArgs) -> anyhow::Result<()> {
    let Selection { sql, issues } = select(ctx, a)?;
    crate::batch::pause_point("selected");
    if issues.is_empty() {
        return Err(user(
            "no stored issues match the selection (issues already in a running job of this processor are left out)",
        ));
    }
    let mut db = ctx.db()?;
    let mut m = ctx.batches(&mut db);
    let new = NewJob {
        processor: &a.processor,
        model: a.model.as_deref(),
        config: ai_config(&a.ai),
        selection_query: Some(sql),
        source_command: command_line(),
        parent_job_id: None,
    };
    if a.dry_run {
        let d = m.dry_run(&new, issues)?;
        let mut t = Table::new(["part", "requests", "bytes"]);
        for p in &d.parts {
            t.push(vec![json!(p.part), json!(p.requests), json!(p.bytes)]);
        }
        let summary = json!({
            "dry_run": true,
            "provider": d.backend,
            "model": d.model,
            "issues": d.issues,
            "parts": d.parts.iter().map(|p| json!({"part": p.part, "requests": p.requests, "bytes": p.bytes})).collect::<Vec<_>>(),
            "unprepared": d.unprepared.iter().map(|(i, r)| json!({"issue": i, "reason": r})).collect::<Vec<_>>(),
            "caps": d.caps.map(|c| json!({"max_requests": c.max_requests, "max_bytes": c.max_bytes,
                "enqueued_token_budget": (c.max_tokens != u64::MAX).then_some(c.max_tokens)})),
            "est_prompt_tokens": d.est_prompt_tokens,
            "est_completion_tokens": d.est_completion_tokens,
            "est_cost_usd": d.est_cost_usd.map(|c| (c * 1e6).round() / 1e6),
        });
        match ctx.printer.format {
            OutputFormat::Json => ctx.printer.json(&summary)?,
            _ => {
                ctx.printer.table(&t)?;
                ctx.printer.line(&format!(
                    "Dry run: {} issue(s) with {} as {} provider batch(es) ({}); estimated {} prompt + {} completion tokens, cost {} with the batch discount.",
                    d.issues,
                    d.model,
                    d.parts.len(),
                    d.backend,
                    d.est_prompt_tokens,
                    d.est_completion_tokens,
                    d.est_cost_usd.map_or("unknown (no price for this model)".into(), |c| format!("${c:.4}"))
                ))?;
            }
        }
        for (i, r) in &d.unprepared {
            ctx.printer
                .warn(&format!("{i}: would not be submitted: {r}"));
        }
        return Ok(());
    }
    let job = m.create_batch_job(new, issues).await?;
    let parts = m.parts(&job.job_id)?;
    show_job(ctx, &job, &parts)?;
    if job.provider != Backend::Local {
        ctx.printer.note(&format!(
            "check it with `batch status {}`; store its results with `batch collect {}` once it has ended",
            short(&job.job_id),
            short(&job.job_id)
        ));
    }
    Ok(())
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// The command line as typed (recorded with the job), keys never included (they are env only).
fn show_job(ctx: &Ctx, job: &BatchJob, parts: &[BatchPart]) -> anyhow::Result<()> {
    let v = job_json(job, Some(parts));
    match ctx.printer.format {
        OutputFormat::Json => ctx.printer.json(&v)?,
        _ => {
            let fields: Vec<(&str, Value)> = v
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(k, _)| k.as_str() != "parts")
                        .map(|(k, v)| (k.as_str(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            ctx.printer.summary(&fields)?;
            if ctx.printer.format == OutputFormat::Table && !parts.is_empty() {
                ctx.printer.line("")?;
                ctx.printer.table(&parts_table(parts))?;
            }
        }
    }
    Ok(())
}

fn parts_table(parts: &[BatchPart]) -> Table {
    let mut t = Table::new([
        "part",
        "provider_batch_id",
        "status",
        "requests",
        "bytes",
        "completed",
        "failed",
        "error",
    ]);
    for p in parts {
        t.push(vec![
            json!(p.part),
            json!(p.provider_batch_id),
            json!(p.status),
            json!(p.request_count),
            json!(p.bytes),
            json!(p.completed_count),
            json!(p.failed_count),
            json!(p.error_message),
        ]);
    }
    t
}

async fn status(ctx: &Ctx, job: &str) -> anyhow::Result<()> {
    let mut db = ctx.db()?;
    let mut m = ctx.batches(&mut db);
    let id = m.resolve_job(job)?;
    let job = m.check_job_status(&id).await?;
    let parts = m.parts(&id)?;
    show_job(ctx, &job, &parts)
}

async fn collect(ctx: &Ctx, job: &str) -> anyhow::Result<()> {
    let mut db = ctx.db()?;
    let mut m = ctx.batches(&mut db);
    let id = m.resolve_job(job)?;
    let r: CollectReport = m.collect_results(&id).await?;
    let job = m.job(&id)?;
    for (issue, reason) in r.failures.iter().take(20) {
        ctx.printer.warn(&format!("{issue}: {reason}"));
    }
    if r.failures.len() > 20 {
        ctx.printer.warn(&format!(
            "… and {} more (see `batch details {}`)",
            r.failures.len() - 20,
            short(&id)
        ));
    }
    let mut fields: Vec<(&str, Value)> = vec![
        ("job_id", json!(id)),
        ("status", json!(job.status)),
        ("stored", json!(r.stored)),
        ("failed", json!(r.failed)),
        ("already_collected_lines", json!(r.skipped_lines)),
        ("parts_running", json!(r.parts_running)),
        ("cost_usd", json!((r.cost_usd * 1e6).round() / 1e6)),
        ("job_completed", json!(job.completed_count)),
        ("job_failed", json!(job.failed_count)),
        ("job_cost_usd", json!(job.cost_actual)),
    ];
    if ctx.printer.format == OutputFormat::Json {
        fields.push((
            "failures",
            Value::Array(
                r.failures
                    .iter()
                    .map(|(i, r)| json!({"issue": i, "reason": r}))
                    .collect(),
            ),
        ));
    }
    ctx.printer.summary(&fields)?;
    if r.parts_running > 0 {
        ctx.printer.note(&format!(
            "{} provider batch(es) still running: collect again when they have ended",
            r.parts_running
        ));
    }
    if job.failed_count > 0 && !job.status.is_active() {
        ctx.printer.note(&format!(
            "{} item(s) failed; `batch retry {}` resubmits them",
            job.failed_count,
            short(&id)
        ));
    }
    Ok(())
}

/// Columns of job listings: keys of [`job_json`], in display order.
const JOB_COLUMNS: [&str; 12] = [
    "job_id",
    "parent_job_id",
    "provider",
    "processor",
    "model",
    "status",
    "issues",
    "completed",
    "failed",
    "cost_estimate_usd",
    "cost_actual_usd",
    "created_at",
];

fn jobs_table(jobs: &[BatchJob]) -> Table {
    let mut t = Table::new(JOB_COLUMNS);
    for j in jobs {
        let v = job_json(j, None);
        t.push(JOB_COLUMNS.iter().map(|k| v[*k].clone()).collect());
    }
    t
}

fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let mut db = ctx.db()?;
    let m = ctx.batches(&mut db);
    let jobs = m.active_jobs()?;
    ctx.printer.table(&jobs_table(&jobs))?;
    if jobs.is_empty() {
        ctx.printer
            .note("no active batch jobs (see `batch history` for all jobs)");
    }
    Ok(())
}

fn history(ctx: &Ctx) -> anyhow::Result<()> {
    let mut db = ctx.db()?;
    let m = ctx.batches(&mut db);
    ctx.printer.table(&jobs_table(&m.history(None)?))?;
    Ok(())
}

fn details(ctx: &Ctx, job: &str) -> anyhow::Result<()> {
    let mut db = ctx.db()?;
    let m = ctx.batches(&mut db);
    let id = m.resolve_job(job)?;
    let j = m.job(&id)?;
    let parts = m.parts(&id)?;
    let items = m.items(&id)?;
    let mut t = Table::new(["custom_id", "issue", "part", "status", "error"]);
    for i in &items {
        t.push(vec![
            json!(i.custom_id),
            json!(i.issue_id),
            json!(i.part),
            json!(i.status),
            json!(i.error),
        ]);
    }
    match ctx.printer.format {
        OutputFormat::Json => {
            let mut v = job_json(&j, Some(&parts));
            v["selection_query"] = json!(j.selection_query);
            v["source_command"] = json!(j.source_command);
            v["items"] = Value::Array(
                items
                    .iter()
                    .map(|i| {
                        json!({"custom_id": i.custom_id, "issue": i.issue_id, "part": i.part,
                               "status": i.status, "error": i.error})
                    })
                    .collect(),
            );
            ctx.printer.json(&v)?;
        }
        OutputFormat::Csv => ctx.printer.table(&t)?,
        OutputFormat::Table => {
            show_job(ctx, &j, &parts)?;
            ctx.printer.line("")?;
            ctx.printer.table(&t)?;
        }
    }
    Ok(())
}

async fn cancel(ctx: &Ctx, job: &str) -> anyhow::Result<()> {
    let mut db = ctx.db()?;
    let mut m = ctx.batches(&mut db);
    let id = m.resolve_job(job)?;
    let j = m.cancel(&id).await?;
    let parts = m.parts(&id)?;
    show_job(ctx, &j, &parts)
}

async fn remove(ctx: &Ctx, job: &str, force: bool) -> anyhow::Result<()> {
    let mut db = ctx.db()?;
    let mut m = ctx.batches(&mut db);
    let id = m.resolve_job(job)?;
    let files = m.remove(&id, force).await?;
    ctx.printer.summary(&[
        ("removed_job", json!(id)),
        ("removed_files", json!(files)),
        ("results_kept", json!(true)),
    ])?;
    Ok(())
}

async fn retry(ctx: &Ctx, job: &str) -> anyhow::Result<()> {
    let mut db = ctx.db()?;
    let mut m = ctx.batches(&mut db);
    let id = m.resolve_job(job)?;
    let new = m.retry(&id).await?;
    let parts = m.parts(&new.job_id)?;
    show_job(ctx, &new, &parts)
}

async fn reconcile(ctx: &Ctx, cancel_orphans: bool, yes: bool) -> anyhow::Result<()> {
    // Refused before any work, so a script without `--yes` learns it at once (exit 2).
    if cancel_orphans && !yes && !ask::terminal() {
        anyhow::bail!(
            "refusing to cancel provider batches without confirmation: there is no terminal to ask on; pass --yes"
        );
    }
    let mut db = ctx.db()?;
    let mut m = ctx.batches(&mut db);
    let mut findings = m.reconcile().await?;
    let orphans = findings
        .iter()
        .filter(|f| f.kind == FindingKind::Orphan && f.cancellable)
        .count();
    if cancel_orphans && orphans > 0 {
        if !yes {
            ask::confirm(
                &format!("Cancel {orphans} orphan provider batch(es) no job records?"),
                "cancelled: nothing was changed at the provider",
            )?;
        }
        m.cancel_orphans(&mut findings).await;
    } else if orphans > 0 {
        ctx.printer.note(&format!(
            "{orphans} orphan provider batch(es) still running: `batch reconcile --cancel-orphans` cancels them"
        ));
    }
    let mut t = Table::new(["kind", "job_id", "part", "provider_batch_id", "detail"]);
    for f in &findings {
        t.push(vec![
            json!(f.kind.as_str()),
            json!(f.job_id),
            json!(f.part),
            json!(f.provider_batch_id),
            json!(f.detail),
        ]);
    }
    ctx.printer.table(&t)?;
    if findings.is_empty() {
        ctx.printer.note("nothing to reconcile");
    }
    if findings.iter().any(|f| f.kind == FindingKind::Error) {
        return Err(user("some jobs could not be repaired (see the table)"));
    }
    Ok(())
}
