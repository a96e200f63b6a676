//! `process PROCESSOR`: run an AI processor in real time over stored issues (or, with
//! `--dry-run`, list what would run with estimated tokens and cost).

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::ai::Provider;
use crate::cli::{ProcessArgs, ProcessCommand};
use crate::commands::{check_issue_scope, Ctx};
use crate::db::{Db, IssueRef};
use crate::error::{user, ExitStatus};
use crate::pipeline::Pipeline;
use crate::plan::Plan;
use crate::printer::{OutputFormat, Table};
use crate::processors;
use crate::realtime::{self, Engine};
use crate::store::{parse_issue, IssueState};

const DEFAULT_CONCURRENCY: usize = 8;
const MAX_CONCURRENCY: usize = 256;

pub async fn run(ctx: &Ctx, cmd: ProcessCommand) -> anyhow::Result<ExitStatus> {
    match cmd {
        ProcessCommand::ProductLabeling(args) => {
            run_processor(ctx, processors::product_labeling::NAME, &args).await
        }
        ProcessCommand::Unknown(words) => Err(user(format!(
            "unknown processor {:?}; known processors: {}",
            words.first().map(String::as_str).unwrap_or_default(),
            processors::KNOWN.join(", ")
        ))),
    }
}

pub async fn run_processor(
    ctx: &Ctx,
    processor: &str,
    args: &ProcessArgs,
) -> anyhow::Result<ExitStatus> {
    check_issue_scope(&args.scope)?;
    let concurrency = concurrency(args.concurrency)?;
    let plan = ctx.plan(processor, args.model.as_deref(), &args.ai)?;
    let mut pipeline = Pipeline::new().where_state(IssueState::All);
    let scope = &args.scope;
    pipeline = pipeline.where_scope(&scope.org, scope.repo.as_deref(), scope.issue_number);
    // Our own filters only, so the run's read-write connection selects too (one open).
    let db = ctx.db()?;
    let all = pipeline.select_rw(&db, plan.processor.name())?.issues;
    // A person's decision stands: --reprocess leaves reviewed recommendations' issues alone.
    let reviewed: HashSet<String> = if args.reprocess && !args.include_reviewed {
        let open: HashSet<String> = pipeline
            .clone()
            .excluding_reviewed(plan.processor.name())
            .select_rw(&db, plan.processor.name())?
            .issues
            .into_iter()
            .map(|i| i.id)
            .collect();
        all.iter()
            .filter(|i| !open.contains(&i.id))
            .map(|i| i.id.clone())
            .collect()
    } else {
        HashSet::new()
    };
    if all.is_empty() {
        let what = scope.describe();
        return Err(user(format!(
            "no stored issues match {what}: collect or import them first (see `status`)"
        )));
    }
    let selected = all.len();
    let (todo, existing): (Vec<IssueRef>, Vec<IssueRef>) = all
        .into_iter()
        .partition(|i| (args.reprocess && !reviewed.contains(&i.id)) || !i.has_result);
    if !reviewed.is_empty() {
        ctx.printer.note(&format!(
            "{} issue(s) with a reviewed recommendation kept as they are; --include-reviewed redoes them",
            reviewed.len()
        ));
    }
    if args.dry_run {
        drop(db);
        dry_run(ctx, &plan, &todo, existing.len())?;
        return Ok(ExitStatus::Success);
    }
    if todo.is_empty() {
        ctx.printer.note(&format!(
            "all {selected} selected issue(s) already have a {} result; use --reprocess to redo them",
            plan.processor.name()
        ));
    }
    run_realtime(ctx, db, plan, todo, concurrency, existing.len()).await
}

/// Checks a `--concurrency` value (default 8).
pub fn concurrency(flag: Option<usize>) -> anyhow::Result<usize> {
    let concurrency = flag.unwrap_or(DEFAULT_CONCURRENCY);
    if concurrency == 0 || concurrency > MAX_CONCURRENCY {
        return Err(user(format!(
            "--concurrency {concurrency}: must be between 1 and {MAX_CONCURRENCY}"
        )));
    }
    Ok(concurrency)
}

/// Runs the real-time engine over chosen issues, prints the results summary, and turns
/// failures and interruptions into the exit status.
async fn run_realtime(
    ctx: &Ctx,
    db: Db,
    plan: Plan,
    todo: Vec<IssueRef>,
    concurrency: usize,
    skipped_existing: usize,
) -> anyhow::Result<ExitStatus> {
    let processor = plan.processor.name();
    let model = plan.model.id();
    let to_run = todo.len();
    let report = execute_realtime(ctx, db, plan, todo, concurrency).await?;
    report_realtime(ctx, processor, &model, &report, to_run, skipped_existing)
}

/// The real-time engine of a plan over the issues, with this process's environment and output.
async fn execute_realtime(
    ctx: &Ctx,
    mut db: Db,
    plan: Plan,
    todo: Vec<IssueRef>,
    concurrency: usize,
) -> anyhow::Result<realtime::RunReport> {
    // Nothing to send needs no key.
    let endpoint = if todo.is_empty() {
        None
    } else {
        plan.endpoint(ctx.env())?
    };
    let provider = Provider::from_plan(&plan, endpoint)?;
    let processor = plan.processor.clone();
    let engine = Engine::new(plan, provider)?;
    let report =
        realtime::execute(engine, &ctx.store, &mut db, todo, concurrency, &ctx.printer).await;
    db.discover_after_store(&processor, &ctx.printer);
    report
}

/// Prints a real-time run's summary and turns failures and interruptions into the exit code.
pub fn report_realtime(
    ctx: &Ctx,
    processor: &str,
    model: &str,
    report: &realtime::RunReport,
    to_run: usize,
    skipped_existing: usize,
) -> anyhow::Result<ExitStatus> {
    let selected = to_run + skipped_existing;
    for (issue, reason) in &report.failed {
        ctx.printer.warn(&format!("{issue}: {reason}"));
    }
    let not_started = to_run.saturating_sub(report.processed + report.failed.len());
    let secs = report.elapsed.as_secs_f64();
    let mut fields: Vec<(&str, Value)> = vec![
        ("processor", json!(processor)),
        ("model", json!(model)),
        ("selected", json!(selected)),
        ("skipped_existing", json!(skipped_existing)),
        ("processed", json!(report.processed)),
        ("failed", json!(report.failed.len())),
        ("not_started", json!(not_started)),
        (
            "avg_confidence",
            report
                .avg_confidence()
                .map_or(Value::Null, |c| json!((c * 1000.0).round() / 1000.0)),
        ),
        ("requests", json!(report.requests)),
        ("prompt_tokens", json!(report.usage.prompt_tokens)),
        ("cached_tokens", json!(report.usage.cached_tokens)),
        ("completion_tokens", json!(report.usage.completion_tokens)),
        (
            "cost_usd",
            if report.cost_unknown && report.cost_usd == 0.0 {
                Value::Null
            } else {
                json!(round6(report.cost_usd))
            },
        ),
        ("elapsed_s", json!((secs * 100.0).round() / 100.0)),
    ];
    if ctx.printer.format == OutputFormat::Json {
        fields.push((
            "failures",
            Value::Array(
                report
                    .failed
                    .iter()
                    .map(|(i, r)| json!({"issue": i, "reason": r}))
                    .collect(),
            ),
        ));
    }
    ctx.printer.summary(&fields)?;
    if report.cost_unknown {
        ctx.printer.warn(&format!(
            "no price known for {model}: cost not recorded (add it with --prices FILE)"
        ));
    }
    if let Some(reason) = &report.aborted {
        return Ok(ctx.failure(&format!(
            "stopped after a run-wide error; {} result(s) stored: {reason}",
            report.processed
        )));
    }
    if report.interrupted {
        return Ok(ctx.failure(&format!(
            "interrupted: {} result(s) stored, {not_started} issue(s) not processed",
            report.processed
        )));
    }
    if !report.failed.is_empty() {
        return Ok(ctx.failure(&format!(
            "{} issue(s) failed (listed above, records in {}); the other results were stored",
            report.failed.len(),
            crate::result_files::FAILURES_DIR
        )));
    }
    Ok(ExitStatus::Success)
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Lists what would run, with estimated tokens and cost (no prompt caching assumed: an upper
/// bound), and calls nothing.
fn dry_run(ctx: &Ctx, plan: &Plan, todo: &[IssueRef], existing: usize) -> anyhow::Result<()> {
    let estimator = plan.estimator();
    let mut table = Table::new([
        "issue",
        "title",
        "prompt_tokens",
        "completion_tokens",
        "est_cost_usd",
        "note",
    ]);
    let (mut total_prompt, mut total_completion, mut total_cost) = (0u64, 0u64, 0f64);
    let price = plan.prices.lookup(&plan.model);
    for item in todo {
        let path = ctx.store.abs(&item.file_path);
        let loaded = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| parse_issue(&path, &b).map_err(|e| format!("{e:#}")));
        let issue = match loaded {
            Ok(i) => i,
            Err(e) => {
                table.push(vec![
                    json!(item.id),
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    json!(e),
                ]);
                continue;
            }
        };
        let (prompt, note) = plan.processor.prompt(&issue);
        let usage = estimator.for_prompt(&prompt);
        let (p, c) = (usage.prompt_tokens, usage.completion_tokens);
        let cost = estimator.cost(&usage, false);
        total_prompt += p;
        total_completion += c;
        total_cost += cost.unwrap_or(0.0);
        table.push(vec![
            json!(item.id),
            json!(issue.issue.title),
            json!(p),
            json!(c),
            cost.map_or(Value::Null, |c| json!(round6(c))),
            note.map_or(Value::Null, Value::String),
        ]);
    }
    let total_cost = price.map(|_| round6(total_cost));
    match ctx.printer.format {
        OutputFormat::Json => ctx.printer.json(&json!({
            "dry_run": true,
            "processor": plan.processor.name(),
            "model": plan.model.id(),
            "to_process": todo.len(),
            "skipped_existing": existing,
            "est_prompt_tokens": total_prompt,
            "est_completion_tokens": total_completion,
            "est_cost_usd": total_cost,
            "prefix_cache": estimator.prefix_cache(),
            "issues": table.rows.iter().map(|r| json!({
                "issue": r[0], "title": r[1], "prompt_tokens": r[2],
                "completion_tokens": r[3], "est_cost_usd": r[4], "note": r[5],
            })).collect::<Vec<_>>(),
        }))?,
        OutputFormat::Csv => ctx.printer.table(&table)?,
        OutputFormat::Table => {
            ctx.printer.table(&table)?;
            ctx.printer.line(&format!(
                "Dry run with {}: {} issue(s) to process, {existing} skipped (already have a result).",
                plan.model.id(),
                todo.len()
            ))?;
            ctx.printer.line(&format!(
                "Estimated tokens: {total_prompt} prompt + {total_completion} completion; cost: {} \
                 (no prompt caching assumed; batch mode costs {:.0}% less).",
                total_cost.map_or("unknown (no price for this model; see --prices)".to_string(), |c| format!("${c:.4}")),
                plan.prices.batch_discount * 100.0
            ))?;
            if let Some(c) = estimator.prefix_cache() {
                ctx.printer
                    .line(&format!("Prompt caching: {}.", c.describe()))?;
            }
        }
    }
    Ok(())
}
