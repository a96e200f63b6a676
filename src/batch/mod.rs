//! `BatchManager`: batch jobs through the OpenAI Batch API, Anthropic Message Batches, or the
//! local executor, tracked in `batch_jobs` / `batch_parts` / `batch_items`.
//!
//! # API (used by the `batch` commands and by `process-query --batch-mode`)
//!
//! ```text
//! let mut m = BatchManager::new(&store, &mut db, env, &reporter);
//! let job = m.create_batch_job(NewJob { processor, model, config, selection_query,
//!                                       source_command, parent_job_id: None }, issues).await?;
//! let job = m.check_job_status(&job.job_id).await?;       // refresh from the provider
//! let report = m.collect_results(&job.job_id).await?;     // store results (idempotent)
//! let active = m.active_jobs()?;                          // jobs still being worked on
//! m.cancel(&id).await?; m.remove(&id, force).await?; m.retry(&id).await?; m.reconcile().await?;
//! ```
//! `resolve_job(prefix)` turns any unique prefix of a job id (or a provider batch id) into the id.
//! The statuses and how they move are documented in `status.rs`; what differs between the
//! providers lives behind the `BatchBackend` trait (`backend.rs`).
//!
//! # Crash safety (docs/architecture.md, "The order of a batch job's writes")
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

mod api;
pub mod backend;
mod collect_results;
mod inputs;
mod job_config;
mod local;
mod manage;
mod queue;
mod repair;
pub mod status;
mod submit;

use std::sync::Arc;

use serde_json::{json, Value};

use crate::ai::{Provider, ProviderKind};
use crate::db::{Backend, BatchItem, BatchJob, BatchPart, Db, JobStatus};
use crate::env::{self, EnvFn};
use crate::error::user;
use crate::plan::{AiConfig, Plan};
use crate::report::Reporter;
use crate::store::{Store, BATCH_INPUT_DIR, BATCH_OUTPUT_DIR};
use backend::BatchBackend;
pub use collect_results::CollectReport;
pub use local::OFFLINE_CONCURRENCY;
pub use manage::{Finding, FindingKind};

/// Provider caps on one batch; bigger jobs are split into parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub max_requests: usize,
    pub max_bytes: u64,
    /// Estimated prompt tokens of one part (the provider's enqueued-token budget, when known).
    pub max_tokens: u64,
}

impl Caps {
    /// No cap (a dry run of a job that runs here).
    pub const NONE: Caps = Caps {
        max_requests: usize::MAX,
        max_bytes: u64::MAX,
        max_tokens: u64::MAX,
    };

    /// The caps of a provider, overridable through the environment.
    pub fn for_provider(kind: ProviderKind, var: &EnvFn) -> anyhow::Result<Self> {
        let (req_var, bytes_var, req, bytes) = match kind {
            ProviderKind::Anthropic => (
                env::ANTHROPIC_BATCH_MAX_REQUESTS,
                env::ANTHROPIC_BATCH_MAX_BYTES,
                100_000u64,
                256_000_000u64,
            ),
            _ => (
                env::OPENAI_BATCH_MAX_REQUESTS,
                env::OPENAI_BATCH_MAX_BYTES,
                50_000,
                200_000_000,
            ),
        };
        let read = |name: &str, default: u64| -> anyhow::Result<u64> {
            match var(name) {
                Some(v) if !v.trim().is_empty() => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| user(format!("{name}={v:?}: expected a whole number ≥ 1"))),
                _ => Ok(default),
            }
        };
        Ok(Self {
            max_requests: usize::try_from(read(req_var, req)?).unwrap_or(usize::MAX),
            max_bytes: read(bytes_var, bytes)?,
            max_tokens: u64::MAX,
        })
    }
}

/// What to submit.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    pub processor: &'a str,
    /// Model string; `None` resolves like real-time mode (env, keys, `rules`).
    pub model: Option<&'a str>,
    /// Taxonomy, settings, prices, timeouts, kept with the job.
    pub config: AiConfig,
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
    /// Estimated prompt tokens.
    pub tokens: u64,
}

/// What a dry run found: the split and the estimate (batch discount applied).
#[derive(Debug, Clone, PartialEq)]
pub struct DryRun {
    pub backend: Backend,
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

/// A job with what it needs to run: its plan, provider and (for provider jobs) backend.
pub(crate) struct Loaded {
    pub job: BatchJob,
    pub plan: Plan,
    pub provider: Provider,
    /// `None` for local jobs.
    pub api: Option<Arc<dyn BatchBackend>>,
}

pub(crate) fn now() -> chrono::NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

/// Aborts the process at a named submission step when the crash test hook asks for it.
pub(crate) fn crash_point(step: &str) {
    if env::crash_requested(step) {
        tracing::error!("{}={step}: aborting on purpose", env::BATCH_CRASH_AT);
        std::process::abort();
    }
}

/// Waits at a named step while the pause test hook asks for it (see `env::BATCH_PAUSE_AT`).
pub fn pause_point(step: &str) {
    let Some(v) = env::process(env::BATCH_PAUSE_AT) else {
        return;
    };
    let Some((at, path)) = v.split_once(':') else {
        return;
    };
    if at != step {
        return;
    }
    let _ = std::fs::write(format!("{path}.waiting"), step);
    let start = std::time::Instant::now();
    while !std::path::Path::new(path).exists() && start.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(20));
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

/// A fresh job id: 12 hex digits, so a few leading characters are a unique prefix.
pub(crate) fn new_job_id() -> String {
    format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// Batch jobs over a data directory: what every batch operation takes.
pub struct BatchManager<'a> {
    pub(crate) store: &'a Store,
    pub(crate) db: &'a mut Db,
    /// Keys, base URLs and caps.
    pub(crate) env: &'a EnvFn,
    pub(crate) reporter: &'a dyn Reporter,
}

impl<'a> BatchManager<'a> {
    /// Lets another process use the database until the manager's next use (call it before
    /// waiting between polls).
    pub fn release_db(&mut self) {
        self.db.release();
    }

    pub fn new(
        store: &'a Store,
        db: &'a mut Db,
        env: &'a EnvFn,
        reporter: &'a dyn Reporter,
    ) -> Self {
        Self {
            store,
            db,
            env,
            reporter,
        }
    }

    /// The job id for a unique prefix (or an exact provider batch id).
    pub fn resolve_job(&self, prefix: &str) -> anyhow::Result<String> {
        let prefix = prefix.trim();
        if prefix.is_empty() {
            return Err(user("empty job id"));
        }
        let mut ids = self.db.batch_job_ids_matching(prefix)?;
        match ids.len() {
            0 => Err(user(format!(
                "no batch job matches {prefix:?} (see `batch history`)"
            ))),
            1 => Ok(ids.remove(0)),
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
        self.db.batch_jobs(JobStatus::ACTIVE, None)
    }

    /// Every job, newest first.
    pub fn history(&self, limit: Option<usize>) -> anyhow::Result<Vec<BatchJob>> {
        self.db.batch_jobs(&[], limit)
    }

    pub fn parts(&self, job_id: &str) -> anyhow::Result<Vec<BatchPart>> {
        self.db.batch_parts(job_id)
    }

    pub fn items(&self, job_id: &str) -> anyhow::Result<Vec<BatchItem>> {
        self.db.batch_items(job_id)
    }

    /// The plan of a job's processor and model (the configuration the job keeps).
    pub(crate) fn plan(
        &self,
        processor: &str,
        model: Option<&str>,
        config: &AiConfig,
    ) -> anyhow::Result<Plan> {
        // Jobs made before `local` existed keep no models folder: it is this data directory's.
        let mut config = config.clone();
        if config.models_dir.is_none() {
            config.models_dir = Some(self.store.models_dir());
        }
        Plan::resolve(processor, model, &config, self.env, self.reporter)
    }

    /// The provider and, unless the job runs here, the batch backend of a plan. A network
    /// model without a key is a user error; `rules` runs here.
    pub(crate) fn connect(
        &self,
        plan: &Plan,
        local: bool,
    ) -> anyhow::Result<(Provider, Option<Arc<dyn BatchBackend>>)> {
        let endpoint = plan.endpoint(self.env)?;
        let api = match (&endpoint, local) {
            (Some(ep), false) => backend::for_provider_watched(
                plan.model.provider,
                ep,
                plan.policy.clone(),
                api::Watch::new(self.env, self.reporter)?,
            )?
            .map(Arc::from),
            _ => None,
        };
        Ok((Provider::from_plan(plan, endpoint)?, api))
    }

    /// Rebuilds processor, model, provider and backend of a stored job.
    pub(crate) fn load(&self, job: BatchJob) -> anyhow::Result<Loaded> {
        let config = job_config::restore(self.store, &job.job_id, &job.metadata)?;
        let plan = self.plan(&job.processor, Some(&job.model), &config)?;
        let (provider, api) = self.connect(&plan, job.provider == Backend::Local)?;
        Ok(Loaded {
            job,
            plan,
            provider,
            api,
        })
    }
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
                        "est_tokens": p.est_tokens,
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
    fn job_ids_are_prefix_friendly_and_files_are_named_by_job_and_part() {
        let id = new_job_id();
        assert_eq!(id.len(), 12);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(input_rel("abc", 2), "batch/input/abc-2.jsonl");
        assert_eq!(errors_rel("abc", 0), "batch/output/abc-0-errors.jsonl");
    }

    #[test]
    fn caps_come_from_the_environment_and_refuse_nonsense() {
        let none = |_: &str| None;
        assert_eq!(
            Caps::for_provider(ProviderKind::OpenAi, &none).unwrap(),
            Caps {
                max_requests: 50_000,
                max_bytes: 200_000_000,
                max_tokens: u64::MAX,
            }
        );
        let set = |k: &str| (k == env::ANTHROPIC_BATCH_MAX_REQUESTS).then(|| "40".to_string());
        assert_eq!(
            Caps::for_provider(ProviderKind::Anthropic, &set)
                .unwrap()
                .max_requests,
            40
        );
        let bad = |k: &str| (k == env::OPENAI_BATCH_MAX_BYTES).then(|| "0".to_string());
        assert!(Caps::for_provider(ProviderKind::OpenAi, &bad).is_err());
    }
}
