//! `BatchManager`: batch jobs through the OpenAI Batch API, Anthropic Message Batches, or the
//! local executor, tracked in `batch_jobs` / `batch_parts` / `batch_items`.
//!
//! # API (used by the `batch` commands and by `process-query --batch-mode`)
//!
//! ```text
//! let mut db = ctx.db()?;
//! let mut m = BatchManager::new(ctx, &mut db);
//! let job = m.create_batch_job(NewJob { processor, model, ai, selection_query, source_command,
//!                                       parent_job_id: None }, issues).await?;   // -> BatchJob
//! let job = m.check_job_status(&job.job_id).await?;       // refresh from the provider
//! let report = m.collect_results(&job.job_id).await?;     // store results (idempotent)
//! let active = m.active_jobs()?;                          // jobs still being worked on
//! m.cancel(&id).await?; m.remove(&id, force).await?; m.retry(&id).await?; m.reconcile().await?;
//! ```
//! `resolve_job(prefix)` turns any unique prefix of a job id (or a provider batch id) into the id.
//!
//! # Statuses
//! Job: `preparing` → `submitted` → `validating` / `in_progress` / `finalizing` → `completed` |
//! `failed` | `expired` | `cancelled` (via `cancelling`) → `collected` once every result is stored
//! (an all-failed job stays `failed`, one cancelled before anything came back stays `cancelled`).
//! OpenAI's eight batch statuses map onto these one to one; Anthropic's `in_progress` →
//! `in_progress`, `canceling` → `cancelling`, `ended` → `cancelled` (if a cancel was initiated),
//! `expired` (if any request expired) or `completed`. A job split into several provider batches
//! (parts) aggregates: any part still being submitted → `preparing`; any part running →
//! `cancelling` / `in_progress` / `finalizing` / `validating`; all ended → `failed` if all failed,
//! else `cancelled`, `expired`, `completed` in that order of precedence.
//! Item: `preparing` → `pending` → `completed` | `failed` | `expired` | `cancelled`.
//!
//! # Crash safety (ARCHITECTURE.md §6)
//!
//! 1. The job row (`preparing`) and the item rows are committed.
//! 2. The JSONL input files are written and the parts recorded, committed.
//! 3. Each part is marked `submitting` (committed) before any provider call; the OpenAI file
//!    id is recorded as soon as it is known (`uploaded`).
//! 4. The provider batch id is recorded, committed.
//!
//! A part found in `submitting`/`uploaded` without a batch id is never simply resubmitted: the
//! provider is searched first (OpenAI: our job id and part in the batch metadata, and the upload
//! by its file name; Anthropic, whose batches carry no metadata: a batch created since the part
//! was marked, with the part's request count and not claimed by another part — adopted if there
//! is exactly one, reported if ambiguous). `check_job_status` and `reconcile` do this repair.

mod collect;
mod local;
pub mod remote;
mod submit;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::ai::http::{ErrorKind, HttpClient};
use crate::ai::{Endpoint, Provider, ProviderKind};
use crate::cli::AiArgs;
use crate::commands::process::{plan, Plan};
use crate::commands::Ctx;
use crate::db::{BatchJob, BatchPart, Db, IssueRef};
use crate::error::user;
use crate::store::{BATCH_INPUT_DIR, BATCH_OUTPUT_DIR};
pub use collect::CollectReport;
use remote::BatchApi;

/// Most requests in one OpenAI batch (default 50,000).
pub const ENV_OPENAI_MAX_REQUESTS: &str = "GITHUB_ANALYSIS_OPENAI_BATCH_MAX_REQUESTS";
/// Largest OpenAI batch input file in bytes (default 200 MB).
pub const ENV_OPENAI_MAX_BYTES: &str = "GITHUB_ANALYSIS_OPENAI_BATCH_MAX_BYTES";
/// Most requests in one Anthropic message batch (default 100,000).
pub const ENV_ANTHROPIC_MAX_REQUESTS: &str = "GITHUB_ANALYSIS_ANTHROPIC_BATCH_MAX_REQUESTS";
/// Largest Anthropic message batch body in bytes (default 256 MB).
pub const ENV_ANTHROPIC_MAX_BYTES: &str = "GITHUB_ANALYSIS_ANTHROPIC_BATCH_MAX_BYTES";
/// Test hook: abort the process at a named step of a submission (`rows`, `input`, `upload`,
/// `create`), or after two items of a local job (`local`), to prove a crash there is repaired by
/// `batch status` / `batch reconcile`.
pub const ENV_CRASH_AT: &str = "GITHUB_ANALYSIS_BATCH_CRASH_AT";

/// Job statuses in which a job's items are still being worked on.
pub const ACTIVE_STATUSES: &[&str] = &[
    "preparing",
    "submitted",
    "validating",
    "in_progress",
    "finalizing",
    "cancelling",
];
/// Part (provider batch) statuses after which nothing changes at the provider.
pub const TERMINAL_STATUSES: &[&str] = &["completed", "failed", "expired", "cancelled"];
/// Item statuses that may be resubmitted by `retry`.
pub const RETRYABLE_ITEM_STATUSES: &[&str] = &["failed", "expired", "cancelled"];

pub fn is_active(status: &str) -> bool {
    ACTIVE_STATUSES.contains(&status)
}

fn is_terminal(status: &str) -> bool {
    TERMINAL_STATUSES.contains(&status)
}

/// Provider caps on one batch; bigger jobs are split into parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub max_requests: usize,
    pub max_bytes: u64,
}

impl Caps {
    /// The caps of a provider, overridable through the environment.
    pub fn for_provider(kind: ProviderKind) -> anyhow::Result<Self> {
        let (req_var, bytes_var, req, bytes) = match kind {
            ProviderKind::Anthropic => (
                ENV_ANTHROPIC_MAX_REQUESTS,
                ENV_ANTHROPIC_MAX_BYTES,
                100_000usize,
                256_000_000u64,
            ),
            _ => (
                ENV_OPENAI_MAX_REQUESTS,
                ENV_OPENAI_MAX_BYTES,
                50_000,
                200_000_000,
            ),
        };
        let read = |var: &str, default: u64| -> anyhow::Result<u64> {
            match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| user(format!("{var}={v:?}: expected a whole number ≥ 1"))),
                _ => Ok(default),
            }
        };
        Ok(Self {
            max_requests: usize::try_from(read(req_var, req as u64)?).unwrap_or(usize::MAX),
            max_bytes: read(bytes_var, bytes)?,
        })
    }
}

/// How to rebuild a job's processor and model later (kept in `batch_jobs.metadata.config`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobConfig {
    #[serde(default)]
    pub taxonomy: Option<PathBuf>,
    #[serde(default)]
    pub token_budget: Option<usize>,
    #[serde(default)]
    pub settings: Vec<String>,
    #[serde(default)]
    pub prices: Option<PathBuf>,
    #[serde(default)]
    pub request_timeout: Option<f64>,
    #[serde(default)]
    pub max_retries: Option<u32>,
}

impl JobConfig {
    pub fn from_args(a: Option<&AiArgs>) -> Self {
        let Some(a) = a else {
            return Self::default();
        };
        // Absolute paths: later commands may run from another folder.
        let abs = |p: &PathBuf| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        Self {
            taxonomy: a.taxonomy.as_ref().map(abs),
            token_budget: a.token_budget,
            settings: a.settings.clone(),
            prices: a.prices.as_ref().map(abs),
            request_timeout: a.request_timeout,
            max_retries: a.max_retries,
        }
    }

    pub fn to_args(&self) -> AiArgs {
        AiArgs {
            taxonomy: self.taxonomy.clone(),
            settings: self.settings.clone(),
            token_budget: self.token_budget,
            prices: self.prices.clone(),
            request_timeout: self.request_timeout,
            max_retries: self.max_retries,
        }
    }
}

/// What to submit.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    pub processor: &'a str,
    /// Model string; `None` resolves like real-time mode (env, keys, `rules`).
    pub model: Option<&'a str>,
    /// Taxonomy, settings, prices, timeouts (`None` = defaults).
    pub ai: Option<&'a AiArgs>,
    /// The SQL that selected the issues, recorded with the job.
    pub selection_query: Option<String>,
    /// The command line that created the job, recorded with it.
    pub source_command: String,
    /// Set by `retry`.
    pub parent_job_id: Option<String>,
}

/// One planned provider batch of a dry run.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedPart {
    pub part: i32,
    pub requests: usize,
    pub bytes: u64,
}

/// What a dry run found: the split and the estimate (batch discount applied).
#[derive(Debug, Clone, PartialEq)]
pub struct DryRun {
    pub job_provider: &'static str,
    pub model: String,
    pub issues: usize,
    pub parts: Vec<PlannedPart>,
    /// (issue, reason) of issues that could not be prepared.
    pub unprepared: Vec<(String, String)>,
    pub est_prompt_tokens: u64,
    pub est_completion_tokens: u64,
    pub est_cost_usd: Option<f64>,
    pub caps: Option<Caps>,
}

/// One finding of `reconcile`.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// `repaired`, `resubmitted`, `orphan`, `ambiguous`, `error`.
    pub kind: &'static str,
    pub job_id: Option<String>,
    pub part: Option<i32>,
    pub provider_batch_id: Option<String>,
    pub detail: String,
}

/// A job with what it needs to talk to its provider.
pub(crate) struct Loaded {
    pub job: BatchJob,
    pub plan: Plan,
    pub provider: Provider,
    /// `None` for local jobs.
    pub api: Option<BatchApi>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

pub(crate) fn now() -> chrono::NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

/// Aborts the process at a named submission step when [`ENV_CRASH_AT`] asks for it.
pub(crate) fn crash_point(step: &str) {
    if std::env::var(ENV_CRASH_AT).is_ok_and(|v| v == step) {
        eprintln!("{ENV_CRASH_AT}={step}: aborting on purpose");
        std::process::abort();
    }
}

/// Relative paths of a part's files.
pub fn input_rel(job: &str, part: i32) -> String {
    format!("{BATCH_INPUT_DIR}/{job}-{part}.jsonl")
}
pub fn output_rel(job: &str, part: i32) -> String {
    format!("{BATCH_OUTPUT_DIR}/{job}-{part}.jsonl")
}
pub fn errors_rel(job: &str, part: i32) -> String {
    format!("{BATCH_OUTPUT_DIR}/{job}-{part}-errors.jsonl")
}

/// OpenAI batch status → ours (the same names, `cancelling` spelled alike).
pub fn map_openai_status(s: &str) -> &'static str {
    match s {
        "validating" => "validating",
        "in_progress" => "in_progress",
        "finalizing" => "finalizing",
        "completed" => "completed",
        "failed" => "failed",
        "expired" => "expired",
        "cancelling" => "cancelling",
        "cancelled" => "cancelled",
        _ => "in_progress",
    }
}

/// Anthropic message batch → ours: `ended` is split by what the request counts say.
pub fn map_anthropic_status(batch: &Value) -> &'static str {
    let count = |k: &str| batch["request_counts"][k].as_u64().unwrap_or(0);
    match batch["processing_status"].as_str() {
        Some("canceling") => "cancelling",
        Some("ended") => {
            if !batch["cancel_initiated_at"].is_null() && batch.get("cancel_initiated_at").is_some()
            {
                "cancelled"
            } else if count("expired") > 0 {
                "expired"
            } else {
                "completed"
            }
        }
        _ => "in_progress",
    }
}

/// The job status implied by its parts' statuses.
pub fn aggregate_status(parts: &[&str]) -> &'static str {
    if parts.is_empty()
        || parts
            .iter()
            .any(|s| matches!(*s, "preparing" | "submitting" | "uploaded"))
    {
        return "preparing";
    }
    if parts.iter().any(|s| !is_terminal(s)) {
        for s in ["cancelling", "in_progress", "finalizing", "validating"] {
            if parts.contains(&s) {
                return s;
            }
        }
        return "submitted";
    }
    if parts.iter().all(|s| *s == "failed") {
        "failed"
    } else if parts.contains(&"cancelled") {
        "cancelled"
    } else if parts.contains(&"expired") {
        "expired"
    } else {
        "completed"
    }
}

pub struct BatchManager<'a> {
    pub(crate) ctx: &'a Ctx,
    pub(crate) db: &'a mut Db,
}

impl<'a> BatchManager<'a> {
    pub fn new(ctx: &'a Ctx, db: &'a mut Db) -> Self {
        Self { ctx, db }
    }

    /// The job id for a unique prefix (or an exact provider batch id).
    pub fn resolve_job(&self, prefix: &str) -> anyhow::Result<String> {
        let prefix = prefix.trim();
        if prefix.is_empty() {
            return Err(user("empty job id"));
        }
        let ids = self.db.batch_job_ids_matching(prefix)?;
        match ids.len() {
            0 => Err(user(format!(
                "no batch job matches {prefix:?} (see `batch history`)"
            ))),
            1 => Ok(ids.into_iter().next().unwrap_or_default()),
            n => Err(user(format!(
                "{prefix:?} matches {n} jobs ({}); give more characters",
                ids.join(", ")
            ))),
        }
    }

    pub fn job(&self, job_id: &str) -> anyhow::Result<BatchJob> {
        self.db
            .batch_job(job_id)?
            .ok_or_else(|| user(format!("no batch job {job_id:?}")))
    }

    /// Jobs still being worked on, newest first.
    pub fn active_jobs(&self) -> anyhow::Result<Vec<BatchJob>> {
        self.db.batch_jobs(ACTIVE_STATUSES, None)
    }

    /// Every job, newest first.
    pub fn history(&self, limit: Option<usize>) -> anyhow::Result<Vec<BatchJob>> {
        self.db.batch_jobs(&[], limit)
    }

    pub fn parts(&self, job_id: &str) -> anyhow::Result<Vec<BatchPart>> {
        self.db.batch_parts(job_id)
    }

    pub fn items(&self, job_id: &str) -> anyhow::Result<Vec<crate::db::BatchItem>> {
        self.db.batch_items(job_id)
    }

    /// Rebuilds processor, model, provider and API client of a stored job.
    pub(crate) fn load(&self, job: BatchJob) -> anyhow::Result<Loaded> {
        let config: JobConfig =
            serde_json::from_value(job.metadata["config"].clone()).unwrap_or_default();
        let plan = plan(
            self.ctx,
            &job.processor,
            Some(&job.model),
            &config.to_args(),
        )?;
        let (provider, api) = provider_for(
            &plan,
            job.provider == "local" && plan.model.provider != ProviderKind::Rules,
        )?;
        let api = if job.provider == "local" { None } else { api };
        Ok(Loaded {
            job,
            plan,
            provider,
            api,
        })
    }

    /// Refreshes a job from its provider (finishing an interrupted submission, continuing a
    /// local job) and returns it with updated status and counts.
    pub async fn check_job_status(&mut self, job_id: &str) -> anyhow::Result<BatchJob> {
        let job = self.job(job_id)?;
        // Ended jobs have nothing left to ask the provider (and need no key to be shown).
        if !is_active(&job.status) {
            return Ok(job);
        }
        let mut l = self.load(job)?;
        if l.job.status == "preparing" {
            self.resume_submission(&mut l).await?;
        }
        if l.job.provider == "local" {
            if is_active(&l.job.status) {
                self.run_local(&mut l).await?;
            }
            return Ok(l.job);
        }
        self.refresh_parts(&mut l).await?;
        Ok(l.job)
    }

    /// Polls every running part and re-aggregates the job.
    pub(crate) async fn refresh_parts(&mut self, l: &mut Loaded) -> anyhow::Result<()> {
        let Some(api) = l.api.clone() else {
            return Ok(());
        };
        let mut parts = self.db.batch_parts(&l.job.job_id)?;
        let mut problems = Vec::new();
        for p in parts.iter_mut() {
            let Some(id) = p.provider_batch_id.clone() else {
                continue;
            };
            if is_terminal(&p.status) {
                continue;
            }
            let got = match api.kind {
                ProviderKind::Anthropic => api.anthropic_retrieve(&id).await,
                _ => api.openai_retrieve(&id).await,
            };
            match got {
                Ok(b) => {
                    apply_provider_batch(p, api.kind, &b);
                    self.db.upsert_batch_part(p)?;
                }
                Err(e) => problems.push(format!("part {} ({id}): {e}", p.part)),
            }
        }
        self.reaggregate(&mut l.job, &parts)?;
        if !problems.is_empty() {
            return Err(user(format!(
                "cannot refresh job {} from {}: {}",
                l.job.job_id,
                l.job.provider,
                problems.join("; ")
            )));
        }
        Ok(())
    }

    /// Recomputes a job's status and counts from its parts and saves it.
    pub(crate) fn reaggregate(
        &mut self,
        job: &mut BatchJob,
        parts: &[BatchPart],
    ) -> anyhow::Result<()> {
        let statuses: Vec<&str> = parts.iter().map(|p| p.status.as_str()).collect();
        let status = aggregate_status(&statuses);
        let all_collected = !parts.is_empty() && parts.iter().all(|p| p.collected_at.is_some());
        // A job whose every batch failed stays `failed` after collection (its items say why).
        if all_collected && !is_active(status) && status != "failed" {
            job.status = "collected".into();
        } else {
            job.status = status.into();
        }
        job.completed_count = parts.iter().map(|p| p.completed_count).sum();
        job.failed_count = parts.iter().map(|p| p.failed_count).sum();
        // Items that never made it into a part (unreadable issue files) count as failed.
        job.failed_count += self.db.batch_unprepared_count(&job.job_id)?;
        let errors: Vec<String> = parts
            .iter()
            .filter_map(|p| {
                p.error_message
                    .as_ref()
                    .map(|e| format!("part {}: {e}", p.part))
            })
            .collect();
        if !errors.is_empty() {
            job.error_message = Some(errors.join("; "));
        }
        if !is_active(&job.status) && job.completed_at.is_none() {
            job.completed_at = Some(now());
        }
        self.db.update_batch_job(job)?;
        Ok(())
    }

    /// Cancels a job: every running part at its provider, every open item of a local job.
    pub async fn cancel(&mut self, job_id: &str) -> anyhow::Result<BatchJob> {
        let job = self.job(job_id)?;
        if !is_active(&job.status) {
            return Err(user(format!(
                "job {job_id} is {} and cannot be cancelled",
                job.status
            )));
        }
        let mut l = self.load(job)?;
        if l.job.status == "preparing" && l.job.provider != "local" {
            // A part may have reached the provider before a crash: find it first, so that the
            // cancel reaches it instead of leaving it running untracked.
            self.adopt_lost_parts(&mut l, false).await?;
        }
        let mut parts = self.db.batch_parts(job_id)?;
        let mut problems = Vec::new();
        for p in parts.iter_mut() {
            if is_terminal(&p.status) {
                continue;
            }
            match (&p.provider_batch_id, &l.api) {
                (Some(id), Some(api)) => {
                    let got = match api.kind {
                        ProviderKind::Anthropic => api.anthropic_cancel(id).await,
                        _ => api.openai_cancel(id).await,
                    };
                    match got {
                        Ok(b) => apply_provider_batch(p, api.kind, &b),
                        Err(e) => problems.push(format!("part {} ({id}): {e}", p.part)),
                    }
                }
                _ => {
                    // Never submitted (or a local job): nothing runs anywhere — unless the search
                    // for a lost batch was ambiguous, which the user must settle at the provider.
                    if matches!(p.status.as_str(), "submitting" | "uploaded") {
                        if let Some(why) = &p.error_message {
                            self.ctx.printer.warn(&format!(
                                "job {job_id}: {why}; cancel it at the provider if it runs"
                            ));
                        }
                    }
                    p.status = "cancelled".into();
                    p.updated_at = Some(now());
                    self.db.settle_part_items(
                        job_id,
                        p.part,
                        &["preparing", "pending"],
                        "cancelled",
                        Some("the job was cancelled before this request ran"),
                    )?;
                    let (c, f, _) = self.db.batch_part_item_counts(job_id, p.part)?;
                    p.completed_count = c;
                    p.failed_count = f;
                    // Not `collected`: nothing came back, and the job stays `cancelled`.
                }
            }
            self.db.upsert_batch_part(p)?;
        }
        if parts.is_empty() {
            // Crashed before any part was recorded: no provider call was ever made.
            self.db.update_batch_items(
                job_id,
                &self
                    .db
                    .batch_items(job_id)?
                    .into_iter()
                    .filter(|i| i.status == "preparing" || i.status == "pending")
                    .map(|i| crate::db::ItemUpdate {
                        custom_id: i.custom_id,
                        status: "cancelled".into(),
                        error: Some("the job was cancelled before it was submitted".into()),
                    })
                    .collect::<Vec<_>>(),
            )?;
            l.job.status = "cancelled".into();
            l.job.completed_at = Some(now());
            l.job.failed_count = l.job.issues_count;
            self.db.update_batch_job(&l.job)?;
        } else {
            self.reaggregate(&mut l.job, &parts)?;
        }
        if !problems.is_empty() {
            return Err(user(format!(
                "cannot cancel every part of job {job_id}: {}",
                problems.join("; ")
            )));
        }
        Ok(l.job)
    }

    /// Removes a job's rows and its input/output files; results already stored stay. An
    /// active job is refused unless `force`, which first tries to cancel it.
    pub async fn remove(&mut self, job_id: &str, force: bool) -> anyhow::Result<Vec<String>> {
        let job = self.job(job_id)?;
        if is_active(&job.status) {
            if !force {
                return Err(user(format!(
                    "job {job_id} is {}: cancel it first (`batch cancel {job_id}`) or use --force",
                    job.status
                )));
            }
            if let Err(e) = self.cancel(job_id).await {
                self.ctx.printer.warn(&format!(
                    "could not cancel job {job_id} before removing it: {e:#}"
                ));
            }
        }
        let mut removed = Vec::new();
        for dir in [BATCH_INPUT_DIR, BATCH_OUTPUT_DIR] {
            let abs = self.ctx.store.abs(dir);
            let Ok(entries) = std::fs::read_dir(&abs) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with(&format!("{job_id}-"))
                    && name.ends_with(".jsonl")
                    && std::fs::remove_file(e.path()).is_ok()
                {
                    removed.push(format!("{dir}/{name}"));
                }
            }
        }
        self.db.delete_batch_job(job_id)?;
        removed.sort();
        Ok(removed)
    }

    /// A new job (linked to its parent) with the parent's failed, expired and cancelled items.
    pub async fn retry(&mut self, job_id: &str) -> anyhow::Result<BatchJob> {
        let job = self.job(job_id)?;
        if is_active(&job.status) {
            return Err(user(format!(
                "job {job_id} is still {}; wait for it to end and `batch collect` it first",
                job.status
            )));
        }
        let items = self.db.batch_item_issues(job_id, RETRYABLE_ITEM_STATUSES)?;
        let (issues, gone): (Vec<IssueRef>, Vec<IssueRef>) = items
            .into_iter()
            .map(|(_, i)| i)
            .partition(|i| !i.file_path.is_empty());
        for g in &gone {
            self.ctx
                .printer
                .warn(&format!("{}: no longer stored; not retried", g.id));
        }
        if issues.is_empty() {
            return Err(user(format!(
                "job {job_id} has no failed, expired or cancelled items to retry{}",
                if job.status == "collected" {
                    ""
                } else {
                    " (collect it first?)"
                }
            )));
        }
        let config: JobConfig =
            serde_json::from_value(job.metadata["config"].clone()).unwrap_or_default();
        let args = config.to_args();
        let new = NewJob {
            processor: &job.processor,
            model: Some(&job.model),
            ai: Some(&args),
            selection_query: job.selection_query.clone(),
            source_command: format!("batch retry {job_id}"),
            parent_job_id: Some(job_id.to_string()),
        };
        self.create_batch_job(new, issues).await
    }

    /// Repairs jobs stuck in `preparing` and reports provider batches carrying a job id that
    /// no local job knows.
    pub async fn reconcile(&mut self) -> anyhow::Result<Vec<Finding>> {
        let mut findings = Vec::new();
        for job in self.db.batch_jobs(&["preparing"], None)? {
            let id = job.job_id.clone();
            let outcome = match self.load(job) {
                Ok(mut l) => self
                    .resume_submission(&mut l)
                    .await
                    .map(|()| l.job.status.clone()),
                Err(e) => Err(e),
            };
            findings.push(match outcome {
                Ok(status) => Finding {
                    kind: "repaired",
                    job_id: Some(id),
                    part: None,
                    provider_batch_id: None,
                    detail: format!("interrupted submission finished; job is now {status}"),
                },
                Err(e) => Finding {
                    kind: "error",
                    job_id: Some(id),
                    part: None,
                    provider_batch_id: None,
                    detail: format!("{e:#}"),
                },
            });
        }
        // OpenAI batches carry our job id: any that no job records is an orphan.
        if let Ok(Some(ep)) = Endpoint::from_env(ProviderKind::OpenAi, &env) {
            let api = BatchApi::new(ProviderKind::OpenAi, &ep, Default::default())?;
            let known = self.db.known_provider_batch_ids()?;
            let batches = api
                .openai_list(10_000)
                .await
                .map_err(|e| user(format!("cannot list OpenAI batches: {e}")))?;
            for b in batches {
                let Some(job) = b["metadata"][remote::JOB_KEY].as_str() else {
                    continue;
                };
                let id = b["id"].as_str().unwrap_or_default().to_string();
                if known.contains(&id) {
                    continue;
                }
                let exists = self.db.batch_job(job)?.is_some();
                findings.push(Finding {
                    kind: "orphan",
                    job_id: Some(job.to_string()),
                    part: b["metadata"][remote::PART_KEY]
                        .as_str()
                        .and_then(|p| p.parse().ok()),
                    provider_batch_id: Some(id),
                    detail: format!(
                        "OpenAI batch ({}) not recorded by {}",
                        b["status"].as_str().unwrap_or("?"),
                        if exists {
                            "its job"
                        } else {
                            "any job in this data directory (removed, or another data directory)"
                        }
                    ),
                });
            }
        }
        Ok(findings)
    }
}

/// The provider (and batch API client) of a plan. `realtime_only` skips the batch client.
pub(crate) fn provider_for(
    plan: &Plan,
    realtime_only: bool,
) -> anyhow::Result<(Provider, Option<BatchApi>)> {
    if plan.model.provider == ProviderKind::Rules {
        return Ok((Provider::Rules, None));
    }
    let Some(ep) = Endpoint::from_env(plan.model.provider, &env)? else {
        return Ok((Provider::Rules, None));
    };
    let provider = Provider::new(&plan.model, Some(ep.clone()), plan.settings.clone())?;
    if realtime_only {
        return Ok((provider, None));
    }
    let api = BatchApi::new(plan.model.provider, &ep, plan.policy.clone())?;
    Ok((provider, Some(api)))
}

/// An HTTP client for the local executor's real-time requests.
pub(crate) fn http_for(provider: &Provider, plan: &Plan) -> anyhow::Result<Option<HttpClient>> {
    Ok(match provider {
        Provider::Rules => None,
        _ => Some(HttpClient::new(plan.policy.clone())?),
    })
}

/// Copies a provider batch object's status, counts, file ids and errors into a part.
pub(crate) fn apply_provider_batch(p: &mut BatchPart, kind: ProviderKind, b: &Value) {
    let n = |v: &Value| {
        v.as_u64()
            .map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX))
    };
    match kind {
        ProviderKind::Anthropic => {
            p.status = map_anthropic_status(b).into();
            let c = &b["request_counts"];
            if p.collected_at.is_none() {
                p.completed_count = n(&c["succeeded"]);
                p.failed_count = n(&c["errored"]) + n(&c["canceled"]) + n(&c["expired"]);
            }
        }
        _ => {
            p.status = map_openai_status(b["status"].as_str().unwrap_or("")).into();
            if let Some(f) = b["output_file_id"].as_str() {
                p.output_file_id = Some(f.to_string());
            }
            if let Some(f) = b["error_file_id"].as_str() {
                p.error_file_id = Some(f.to_string());
            }
            let c = &b["request_counts"];
            if p.collected_at.is_none() {
                p.completed_count = n(&c["completed"]);
                p.failed_count = n(&c["failed"]);
            }
            if let Some(errs) = b["errors"]["data"].as_array().filter(|e| !e.is_empty()) {
                let text: Vec<String> = errs
                    .iter()
                    .take(5)
                    .map(|e| {
                        let line = e["line"]
                            .as_u64()
                            .map(|l| format!(" (line {l})"))
                            .unwrap_or_default();
                        format!(
                            "{}{line}: {}",
                            e["code"].as_str().unwrap_or("error"),
                            e["message"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                p.error_message = Some(text.join("; "));
            }
        }
    }
    p.updated_at = Some(now());
}

/// Whether a provider error means "this server has no batch API" (compatible servers).
pub(crate) fn no_batch_api(e: &crate::ai::http::ApiError) -> bool {
    e.kind == ErrorKind::NotFound || e.status == Some(405)
}

/// A fresh job id: 12 hex digits, so a few leading characters are a unique prefix.
pub(crate) fn new_job_id() -> String {
    format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// The summary fields of a job, for `status` and listings.
pub fn job_json(job: &BatchJob, parts: Option<&[BatchPart]>) -> Value {
    let ts = |t: &Option<chrono::NaiveDateTime>| {
        t.map(|t| {
            Value::String(
                t.and_utc()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            )
        })
        .unwrap_or(Value::Null)
    };
    let mut v = json!({
        "job_id": job.job_id,
        "parent_job_id": job.parent_job_id,
        "provider": job.provider,
        "processor": job.processor,
        "model": job.model,
        "status": job.status,
        "issues": job.issues_count,
        "completed": job.completed_count,
        "failed": job.failed_count,
        "created_at": ts(&Some(job.created_at)),
        "submitted_at": ts(&job.submitted_at),
        "completed_at": ts(&job.completed_at),
        "collected_at": ts(&job.collected_at),
        "cost_estimate_usd": job.cost_estimate,
        "cost_actual_usd": job.cost_actual,
        "error": job.error_message,
    });
    if let Some(parts) = parts {
        v["parts"] = Value::Array(
            parts
                .iter()
                .map(|p| {
                    json!({
                        "part": p.part,
                        "provider_batch_id": p.provider_batch_id,
                        "status": p.status,
                        "requests": p.request_count,
                        "bytes": p.bytes,
                        "completed": p.completed_count,
                        "failed": p.failed_count,
                        "input_file_id": p.input_file_id,
                        "output_file_id": p.output_file_id,
                        "error_file_id": p.error_file_id,
                        "input_path": p.input_path,
                        "collected_at": ts(&p.collected_at),
                        "error": p.error_message,
                    })
                })
                .collect(),
        );
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_and_aggregate() {
        for s in [
            "validating",
            "in_progress",
            "finalizing",
            "completed",
            "failed",
            "expired",
            "cancelling",
            "cancelled",
        ] {
            assert_eq!(map_openai_status(s), s);
        }
        let ended = |extra: Value| {
            let mut b = json!({"processing_status": "ended", "cancel_initiated_at": null,
                "request_counts": {"processing": 0, "succeeded": 2, "errored": 1, "canceled": 0, "expired": 0}});
            if let (Some(o), Value::Object(e)) = (b.as_object_mut(), extra) {
                o.extend(e);
            }
            map_anthropic_status(&b)
        };
        assert_eq!(ended(json!({})), "completed");
        assert_eq!(
            ended(json!({"request_counts": {"succeeded": 1, "expired": 2}})),
            "expired"
        );
        assert_eq!(
            ended(json!({"cancel_initiated_at": "2024-09-24T18:37:24Z"})),
            "cancelled"
        );
        assert_eq!(
            map_anthropic_status(&json!({"processing_status": "canceling"})),
            "cancelling"
        );
        assert_eq!(
            map_anthropic_status(&json!({"processing_status": "in_progress"})),
            "in_progress"
        );
        assert_eq!(aggregate_status(&[]), "preparing");
        assert_eq!(
            aggregate_status(&["in_progress", "submitting"]),
            "preparing"
        );
        assert_eq!(
            aggregate_status(&["completed", "in_progress"]),
            "in_progress"
        );
        assert_eq!(
            aggregate_status(&["cancelling", "in_progress"]),
            "cancelling"
        );
        assert_eq!(aggregate_status(&["failed", "failed"]), "failed");
        assert_eq!(aggregate_status(&["failed", "completed"]), "completed");
        assert_eq!(aggregate_status(&["expired", "completed"]), "expired");
        assert_eq!(aggregate_status(&["expired", "cancelled"]), "cancelled");
    }

    #[test]
    fn job_ids_are_prefix_friendly_and_files_are_named_by_job_and_part() {
        let id = new_job_id();
        assert_eq!(id.len(), 12);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(input_rel("abc", 2), "batch/input/abc-2.jsonl");
        assert_eq!(errors_rel("abc", 0), "batch/output/abc-0-errors.jsonl");
    }
}
