//! `process-query`: SQL-selected pipelines (missing / reprocess / custom), run in real time or
//! as a batch job with the same selection, plus `analytics` and `batch-status`.

use serde_json::{json, Value};

use crate::batch;
use crate::cli::{ProcessQueryCommand, RunArgs, SelectionArgs};
use crate::commands::{ai_config, ask, check_scope, command_line, process, Ctx};
use crate::db::{BatchJob, JobStatus, SelectionSize};
use crate::error::{user, ExitStatus};
use crate::pipeline::{self, check_custom_sql, Deps, Mode, Outcome, Pipeline, Selection};
use crate::plan::Plan;
use crate::printer::{OutputFormat, Table};

/// Issues shown by a dry run; the full selection is only counted.
const PREVIEW_ROWS: usize = 20;

pub async fn run(ctx: &Ctx, cmd: ProcessQueryCommand) -> anyhow::Result<ExitStatus> {
    match cmd {
        ProcessQueryCommand::Missing {
            processor,
            filter,
            run,
        } => {
            let plan = ctx.plan(&processor, run.model.as_deref(), &run.ai)?;
            let name = plan.processor.name();
            let p = scoped(Pipeline::new().where_missing_analysis(name), &filter)?;
            let what = format!("missing {name} analysis");
            execute(ctx, plan, p, &run, &what, "process-query missing").await
        }
        ProcessQueryCommand::Reprocess {
            processor,
            threshold,
            days_old,
            include_reviewed,
            filter,
            run,
        } => {
            if !(0.0..=1.0).contains(&threshold) {
                return Err(user(format!(
                    "--threshold {threshold}: must be between 0 and 1"
                )));
            }
            let plan = ctx.plan(&processor, run.model.as_deref(), &run.ai)?;
            let name = plan.processor.name();
            let mut p = Pipeline::new().where_low_confidence(name, threshold);
            if let Some(d) = days_old {
                p = p.where_older_than(name, d);
            }
            if !include_reviewed {
                p = p.excluding_reviewed(name);
            }
            let p = scoped(p, &filter)?;
            let what = format!("with {name} confidence below {threshold}");
            execute(ctx, plan, p, &run, &what, "process-query reprocess").await
        }
        ProcessQueryCommand::Custom {
            processor,
            sql,
            limit,
            run,
        } => {
            let plan = ctx.plan(&processor, run.model.as_deref(), &run.ai)?;
            let key = check_custom_sql(&ctx.read_only_db()?, &sql)?;
            let mut p = Pipeline::new().from_custom_sql(&sql, key);
            if let Some(n) = limit {
                p = p.limit(n);
            }
            let what = "selected by your query".to_string();
            execute(ctx, plan, p, &run, &what, "process-query custom").await
        }
        ProcessQueryCommand::Analytics => {
            analytics(ctx)?;
            Ok(ExitStatus::Success)
        }
        ProcessQueryCommand::BatchStatus { no_refresh, limit } => {
            batch_status(ctx, no_refresh, limit).await?;
            Ok(ExitStatus::Success)
        }
    }
}

/// Adds the org/repo/state/limit flags shared by `missing` and `reprocess`.
fn scoped(mut p: Pipeline, f: &SelectionArgs) -> anyhow::Result<Pipeline> {
    check_scope(&f.repo_scope)?;
    if let Some(o) = &f.repo_scope.org {
        p = p.where_scope(o, f.repo_scope.repo.as_deref(), None);
    }
    p = p.where_state(f.state);
    if let Some(n) = f.limit {
        p = p.limit(n);
    }
    Ok(p)
}

/// Selection → summary → confirmation → real-time run or batch job. Both modes use the same
/// compiled selection; batch mode also leaves out issues already in a running job.
async fn execute(
    ctx: &Ctx,
    plan: Plan,
    pipeline: Pipeline,
    run: &RunArgs,
    what: &str,
    source_command: &str,
) -> anyhow::Result<ExitStatus> {
    if !run.poll_interval.is_finite() || run.poll_interval <= 0.0 || run.poll_interval > 3600.0 {
        return Err(user(format!(
            "--poll-interval {}: must be between 0 and 3600 seconds",
            run.poll_interval
        )));
    }
    let name = plan.processor.name();
    let pipeline = pipeline.excluding_active_batches(name);
    let mode = if run.batch_mode { "Batch" } else { "Real-time" };
    let db = ctx.read_only_db()?;
    let estimator = plan.estimator();
    let cap_chars = (!plan.offline()).then(|| estimator.max_issue_chars());
    let sql = pipeline.compile(name);
    // A dry run only counts and previews; a real run selects its issues once, here, and
    // processes exactly those.
    let (size, preview, selection) = if run.dry_run {
        let (size, preview) = db.selection_overview(&sql, cap_chars, PREVIEW_ROWS)?;
        (size, preview, None)
    } else {
        let selection = pipeline.select(&db, name)?;
        let chars = match cap_chars {
            Some(_) => db.selection_size(&sql, cap_chars)?.chars,
            None => 0,
        };
        let size = SelectionSize {
            issues: selection.len() as u64,
            chars,
        };
        (size, Vec::new(), Some(selection))
    };
    if size.issues == 0 {
        ctx.printer.warn(&format!("No issues {what} to process."));
        if ctx.printer.format == OutputFormat::Json {
            ctx.printer.json(&json!({"selected": 0, "mode": mode}))?;
        }
        return Ok(ExitStatus::Success);
    }
    let usage = estimator.for_selection(size.issues, size.chars);
    let estimate = Estimate {
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        cost_usd: if plan.offline() {
            Some(0.0)
        } else {
            estimator.cost(&usage, run.batch_mode)
        },
        offline: plan.offline(),
    };
    let header = [
        format!("Will process {} issues {what}", size.issues),
        format!("Mode: {mode}"),
        format!("Model: {}", plan.model.id()),
        format!("Estimated cost: {}", estimate.describe()),
    ];
    let Some(selection) = selection else {
        dry_run(ctx, &header, &sql, size, &estimate, &preview, mode, &plan)?;
        return Ok(ExitStatus::Success);
    };
    if ctx.printer.format == OutputFormat::Table {
        for l in &header {
            ctx.printer.line(l)?;
        }
    } else {
        for l in &header {
            ctx.printer.note(l);
        }
    }
    // The prompt may stay open for hours: another terminal's `query` must not wait on it.
    drop(db);
    if !run.yes {
        confirm()?;
    }
    let (processor, model) = (plan.processor.name(), plan.model.id());
    let selected = selection.len();
    let mode = if run.batch_mode {
        Mode::Batch {
            config: ai_config(&run.ai),
            source_command: format!("{source_command} ({})", command_line()),
        }
    } else {
        Mode::Realtime {
            concurrency: process::concurrency(run.concurrency)?,
        }
    };
    let outcome = run_selection(ctx, selection, plan, mode).await?;
    match outcome {
        Outcome::Realtime(report) => {
            process::report_realtime(ctx, processor, &model, &report, selected, 0)
        }
        Outcome::Batch(job) => follow_batch(ctx, job, run).await,
        // Only an empty selection runs nothing; it was answered above, this keeps it total.
        Outcome::Nothing => {
            ctx.printer.warn(&format!("No issues {what} to process."));
            Ok(ExitStatus::Success)
        }
    }
}

/// Runs a selection with this process's data directory, environment and output.
async fn run_selection(
    ctx: &Ctx,
    selection: Selection,
    plan: Plan,
    mode: Mode,
) -> anyhow::Result<Outcome> {
    let mut db = ctx.db()?;
    let processor = plan.processor.clone();
    let deps = Deps {
        store: &ctx.store,
        db: &mut db,
        env: ctx.env(),
        reporter: &ctx.printer,
    };
    let outcome = pipeline::run(selection, plan, mode, deps).await;
    db.discover_after_store(&processor, &ctx.printer);
    outcome
}

/// Asks on a terminal; without one, refuses (exit 2) instead of hanging.
fn confirm() -> anyhow::Result<()> {
    ask::require_terminal(
        "refusing to process without confirmation: there is no terminal to ask on; pass --yes",
    )?;
    ask::confirm(
        "Continue with processing?",
        "cancelled: nothing was processed",
    )
}

struct Estimate {
    prompt_tokens: u64,
    completion_tokens: u64,
    cost_usd: Option<f64>,
    offline: bool,
}

impl Estimate {
    fn describe(&self) -> String {
        match (self.offline, self.cost_usd) {
            (true, _) => "$0 (offline model, no API calls)".to_string(),
            (false, Some(c)) => format!(
                "${c:.4} (~{} prompt + {} completion tokens)",
                self.prompt_tokens, self.completion_tokens
            ),
            (false, None) => "unknown (no price for this model; see --prices)".to_string(),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn dry_run(
    ctx: &Ctx,
    header: &[String],
    sql: &str,
    size: SelectionSize,
    est: &Estimate,
    preview: &[crate::db::IssueRef],
    mode: &str,
    plan: &Plan,
) -> anyhow::Result<()> {
    let mut table = Table::new(["issue", "has_result", "file"]);
    for i in preview {
        table.push(vec![json!(i.id), json!(i.has_result), json!(i.file_path)]);
    }
    match ctx.printer.format {
        OutputFormat::Json => ctx.printer.json(&json!({
            "dry_run": true,
            "selected": size.issues,
            "mode": mode,
            "model": plan.model.id(),
            "processor": plan.processor.name(),
            "est_prompt_tokens": est.prompt_tokens,
            "est_completion_tokens": est.completion_tokens,
            "est_cost_usd": est.cost_usd,
            "selection_query": sql,
            "preview": preview.iter().map(|i| json!(i.id)).collect::<Vec<_>>(),
        }))?,
        OutputFormat::Csv => ctx.printer.table(&table)?,
        OutputFormat::Table => {
            for l in header {
                ctx.printer.line(l)?;
            }
            ctx.printer.line(&format!(
                "Dry run: nothing was processed. First {} of {}:",
                preview.len(),
                size.issues
            ))?;
            ctx.printer.table(&table)?;
        }
    }
    Ok(())
}

/// Per-processor statistics, confidence distribution and label counts.
fn analytics(ctx: &Ctx) -> anyhow::Result<()> {
    let db = ctx.read_only_db()?;
    let per_processor = db.query(
        "SELECT processor, count(*) AS results,
                round(avg(confidence), 3) AS avg_confidence,
                round(min(confidence), 3) AS min_confidence,
                round(max(confidence), 3) AS max_confidence,
                max(created_at) AS latest_run,
                count(*) FILTER (WHERE mode = 'batch') AS batch,
                count(*) FILTER (WHERE mode = 'realtime') AS realtime,
                coalesce(sum(prompt_tokens), 0)::BIGINT AS prompt_tokens,
                coalesce(sum(completion_tokens), 0)::BIGINT AS completion_tokens,
                round(coalesce(sum(cost_usd), 0), 6) AS cost_usd
         FROM ai_results GROUP BY processor ORDER BY processor",
        None,
    )?;
    let buckets = db.query(
        "SELECT processor,
                CASE WHEN confidence IS NULL THEN 'none'
                     WHEN confidence < 0.5 THEN '0.0-0.5'
                     WHEN confidence < 0.7 THEN '0.5-0.7'
                     WHEN confidence < 0.9 THEN '0.7-0.9'
                     ELSE '0.9-1.0' END AS confidence,
                count(*) AS results
         FROM ai_results GROUP BY ALL ORDER BY processor, confidence",
        None,
    )?;
    let labels = db.query(
        "SELECT processor, value AS label, count(*) AS recommended,
                round(avg(confidence), 3) AS avg_confidence
         FROM ai_recommendations WHERE kind = 'label'
         GROUP BY ALL ORDER BY processor, recommended DESC, label",
        None,
    )?;
    if ctx.printer.format == OutputFormat::Json {
        return Ok(ctx.printer.json(&json!({
            "processors": rows_json(&per_processor),
            "confidence_distribution": rows_json(&buckets),
            "labels": rows_json(&labels),
        }))?);
    }
    if per_processor.rows.is_empty() {
        ctx.printer
            .warn("No AI results yet: run `process-query missing PROCESSOR` first.");
    }
    ctx.printer
        .titled_table("Results per processor", &per_processor)?;
    ctx.printer
        .titled_table("Confidence distribution", &buckets)?;
    ctx.printer.titled_table("Recommended labels", &labels)?;
    Ok(())
}

fn rows_json(t: &Table) -> Value {
    Value::Array(
        t.rows
            .iter()
            .map(|r| Value::Object(t.columns.iter().cloned().zip(r.iter().cloned()).collect()))
            .collect(),
    )
}

/// Prints a created batch job's id, and with `--wait` polls until it ends and collects its
/// results.
async fn follow_batch(ctx: &Ctx, job: BatchJob, run: &RunArgs) -> anyhow::Result<ExitStatus> {
    let mut db = ctx.db()?;
    let mut m = ctx.batches(&mut db);
    let parts = m.parts(&job.job_id)?;
    ctx.printer.note(&format!(
        "Created batch job {} ({} issues, {} provider batch{}, provider {})",
        job.job_id,
        job.issues_count,
        parts.len().max(1),
        if parts.len() > 1 { "es" } else { "" },
        job.provider
    ));
    if !run.wait {
        ctx.printer
            .note("Use 'process-query batch-status' to monitor progress.");
        match ctx.printer.format {
            OutputFormat::Table => ctx.printer.line(&format!("Job ID: {}", job.job_id))?,
            _ => ctx.printer.json(&batch::job_json(&job, Some(&parts)))?,
        };
        return Ok(ExitStatus::Success);
    }
    let bar = ctx.printer.bar(job.issues_count.max(0) as u64, "batch");
    let mut job = job;
    while job.status.is_active() {
        bar.set_position((job.completed_count + job.failed_count).max(0) as u64);
        bar.set_message(job.status.as_str());
        m.release_db();
        tokio::time::sleep(std::time::Duration::from_secs_f64(run.poll_interval)).await;
        job = m.check_job_status(&job.job_id).await?;
    }
    bar.finish_and_clear();
    let report = m.collect_results(&job.job_id).await?;
    for (issue, why) in &report.failures {
        ctx.printer.warn(&format!("{issue}: {why}"));
    }
    let job = m.job(&job.job_id)?;
    ctx.printer.summary(&[
        ("job_id", json!(job.job_id)),
        ("status", json!(job.status)),
        ("issues", json!(job.issues_count)),
        ("completed", json!(job.completed_count)),
        ("failed", json!(job.failed_count)),
        ("cost_usd", json!(job.cost_actual)),
    ])?;
    if job.failed_count > 0 {
        return Ok(ctx.failure(&format!(
            "{} item(s) of job {} failed (listed above); retry them with `batch retry {}`",
            job.failed_count, job.job_id, job.job_id
        )));
    }
    Ok(ExitStatus::Success)
}

/// Refreshes active jobs from their providers, collects every job that has ended and is not
/// collected yet, then lists the most recent jobs.
async fn batch_status(ctx: &Ctx, no_refresh: bool, limit: usize) -> anyhow::Result<()> {
    let mut db = ctx.db()?;
    let mut m = ctx.batches(&mut db);
    if !no_refresh {
        for job in m.active_jobs()? {
            if let Err(e) = m.check_job_status(&job.job_id).await {
                ctx.printer
                    .warn(&format!("could not refresh job {}: {e:#}", job.job_id));
            }
        }
        let ended: Vec<String> = m
            .history(None)?
            .into_iter()
            .filter(|j| !j.status.is_active() && j.status != JobStatus::Collected)
            .filter(|j| j.collected_at.is_none())
            .map(|j| j.job_id)
            .collect();
        for id in ended {
            match m.collect_results(&id).await {
                Ok(r) if r.stored > 0 || r.failed > 0 => ctx.printer.note(&format!(
                    "Collected job {id}: {} result(s) stored, {} failed",
                    r.stored, r.failed
                )),
                Ok(_) => {}
                Err(e) => ctx
                    .printer
                    .warn(&format!("could not collect job {id}: {e:#}")),
            }
        }
    }
    let jobs = m.history(Some(limit))?;
    if ctx.printer.format == OutputFormat::Json {
        return Ok(ctx.printer.json(&Value::Array(
            jobs.iter().map(|j| batch::job_json(j, None)).collect(),
        ))?);
    }
    if jobs.is_empty() {
        ctx.printer.warn("No batch jobs found");
        return Ok(());
    }
    let mut table = Table::new([
        "Job ID",
        "Processor",
        "Model",
        "Status",
        "Progress",
        "Created",
        "Cost",
    ]);
    for j in &jobs {
        let progress = if j.failed_count > 0 {
            format!(
                "{}/{} ({} failed)",
                j.completed_count, j.issues_count, j.failed_count
            )
        } else {
            format!("{}/{}", j.completed_count, j.issues_count)
        };
        let cost = j
            .cost_actual
            .map(|c| format!("${c:.4}"))
            .or_else(|| j.cost_estimate.map(|c| format!("~${c:.4}")))
            .unwrap_or_default();
        table.push(vec![
            json!(j.job_id),
            json!(j.processor),
            json!(j.model),
            json!(j.status),
            json!(progress),
            json!(j.created_at.format("%Y-%m-%d %H:%M").to_string()),
            json!(cost),
        ]);
    }
    ctx.printer.titled_table("Recent Batch Jobs", &table)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::RepoScope;
    use crate::store::IssueState;

    #[test]
    fn state_flag_defaults_are_respected_by_scoped() {
        let f = SelectionArgs {
            repo_scope: RepoScope {
                org: Some("o".into()),
                repo: None,
            },
            state: IssueState::All,
            limit: Some(3),
        };
        let sql = scoped(Pipeline::new(), &f).unwrap().compile("p");
        assert!(sql.contains("lower(i.org) = lower('o')"));
        assert!(!sql.contains("i.state ="));
        assert!(sql.ends_with("LIMIT 3"));
        let bad = SelectionArgs {
            repo_scope: RepoScope {
                org: Some("../x".into()),
                repo: None,
            },
            state: IssueState::Open,
            limit: None,
        };
        assert!(scoped(Pipeline::new(), &bad).is_err());
    }
}
