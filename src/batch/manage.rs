//! Managing jobs after submission: cancel (at the provider, or the open items of a local job),
//! remove (rows and files, never results), retry (a new job for what failed) and reconcile
//! (finish interrupted submissions, report provider batches no job records).

use crate::ai::ProviderKind;
use crate::batch::backend;
use crate::batch::{job_config, now, BatchManager, NewJob};
use crate::db::{Backend, BatchJob, IssueRef, ItemStatus, ItemUpdate, JobStatus, PartStatus};
use crate::error::user;
use crate::store::{BATCH_INPUT_DIR, BATCH_OUTPUT_DIR};

/// What `reconcile` found about a job or a provider batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    /// An interrupted submission was finished.
    Repaired,
    /// A provider batch no job records.
    Orphan,
    /// An orphan provider batch, cancelled by `reconcile --cancel-orphans`.
    OrphanCancelled,
    /// A job could not be repaired.
    Error,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Repaired => "repaired",
            Self::Orphan => "orphan",
            Self::OrphanCancelled => "orphan_cancelled",
            Self::Error => "error",
        }
    }
}

/// One finding of `reconcile`.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub kind: FindingKind,
    pub job_id: Option<String>,
    pub part: Option<i32>,
    pub provider_batch_id: Option<String>,
    pub detail: String,
    /// An orphan still running at its provider (so it can be cancelled).
    pub cancellable: bool,
}

impl BatchManager<'_> {
    /// Cancels a job: every running part at its provider, every open item of a local job.
    pub async fn cancel(&mut self, job_id: &str) -> anyhow::Result<BatchJob> {
        let job = self.job(job_id)?;
        if !job.status.is_active() {
            return Err(user(format!(
                "job {job_id} is {} and cannot be cancelled",
                job.status
            )));
        }
        let mut l = self.load(job)?;
        if l.job.status == JobStatus::Preparing && l.job.provider != Backend::Local {
            // A part may have reached the provider before a crash: find it first, so that the
            // cancel reaches it instead of leaving it running untracked.
            self.adopt_lost_parts(&mut l, false).await?;
        }
        let mut parts = self.db.batch_parts(job_id)?;
        let mut problems = Vec::new();
        for p in parts.iter_mut() {
            if p.status.is_terminal() {
                continue;
            }
            match (&p.provider_batch_id, &l.api) {
                (Some(id), Some(api)) => match api.cancel(id).await {
                    Ok(b) => api.apply(p, &b),
                    Err(e) => problems.push(format!("part {} ({id}): {e}", p.part)),
                },
                _ => {
                    // Never submitted (or a local job): nothing runs anywhere — unless the search
                    // for a lost batch was ambiguous, which the user must settle at the provider.
                    if p.status.may_be_lost() {
                        if let Some(why) = &p.error_message {
                            self.reporter.warn(&format!(
                                "job {job_id}: {why}; cancel it at the provider if it runs"
                            ));
                        }
                    }
                    p.status = PartStatus::Cancelled;
                    p.updated_at = Some(now());
                    self.db.settle_part_items(
                        job_id,
                        p.part,
                        ItemStatus::OPEN,
                        ItemStatus::Cancelled,
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
                    .filter(|i| i.status.is_open())
                    .map(|i| ItemUpdate {
                        custom_id: i.custom_id,
                        status: ItemStatus::Cancelled,
                        error: Some("the job was cancelled before it was submitted".into()),
                    })
                    .collect::<Vec<_>>(),
            )?;
            l.job.status = JobStatus::Cancelled;
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
        if job.status.is_active() {
            if !force {
                return Err(user(format!(
                    "job {job_id} is {}: cancel it first (`batch cancel {job_id}`) or use --force",
                    job.status
                )));
            }
            // A job whose batches may still run at the provider keeps its rows: they are
            // what tells its batches from orphans and what a later cancel needs.
            if let Err(e) = self.cancel(job_id).await {
                return Err(user(format!(
                    "job {job_id} was not removed: its cancel failed ({e:#}); its records are kept — cancel it with `batch cancel {job_id}` (or at the provider), then remove it"
                )));
            }
        }
        let mut removed = Vec::new();
        for dir in [BATCH_INPUT_DIR, BATCH_OUTPUT_DIR] {
            let abs = self.store.abs(dir);
            let Ok(entries) = std::fs::read_dir(&abs) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with(&format!("{job_id}-"))
                    && (name.ends_with(".jsonl") || name.ends_with(".toml"))
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
        if job.status.is_active() {
            return Err(user(format!(
                "job {job_id} is still {}; wait for it to end and `batch collect` it first",
                job.status
            )));
        }
        let items = self.db.batch_item_issues(job_id, ItemStatus::RETRYABLE)?;
        // An item an earlier retry of this job took is that retry's to finish: retrying
        // twice never submits it twice.
        let (retried, children) = self.db.batch_retried_issues(job_id)?;
        let before = items.len();
        let items: Vec<_> = items
            .into_iter()
            .filter(|(i, _)| !retried.contains(&i.issue_id))
            .collect();
        if items.is_empty() && before > 0 {
            return Err(user(format!(
                "job {job_id}'s failed items were already retried by job {}; retry that job instead",
                children.join(", ")
            )));
        }
        if items.len() < before {
            self.reporter.warn(&format!(
                "{} item(s) already retried by job {} are left out",
                before - items.len(),
                children.join(", ")
            ));
        }
        let (issues, gone): (Vec<IssueRef>, Vec<IssueRef>) = items
            .into_iter()
            .map(|(_, i)| i)
            .partition(|i| !i.file_path.is_empty());
        for g in &gone {
            self.reporter
                .warn(&format!("{}: no longer stored; not retried", g.id));
        }
        if issues.is_empty() {
            return Err(user(format!(
                "job {job_id} has no failed, expired or cancelled items to retry{}",
                if job.status == JobStatus::Collected {
                    ""
                } else {
                    " (collect it first?)"
                }
            )));
        }
        let config = job_config::restore(self.store, job_id, &job.metadata)?;
        let new = NewJob {
            processor: &job.processor,
            model: Some(&job.model),
            config,
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
        for job in self.db.batch_jobs(&[JobStatus::Preparing], None)? {
            let id = job.job_id.clone();
            let outcome = match self.load(job) {
                Ok(mut l) => self.resume_submission(&mut l).await.map(|()| l.job.status),
                Err(e) => Err(e),
            };
            findings.push(match outcome {
                Ok(status) => Finding {
                    kind: FindingKind::Repaired,
                    job_id: Some(id),
                    part: None,
                    provider_batch_id: None,
                    detail: format!("interrupted submission finished; job is now {status}"),
                    cancellable: false,
                },
                Err(e) => Finding {
                    kind: FindingKind::Error,
                    job_id: Some(id),
                    part: None,
                    provider_batch_id: None,
                    detail: format!("{e:#}"),
                    cancellable: false,
                },
            });
        }
        // OpenAI batches carry our job id: any that no job records is an orphan.
        if let Some(api) = self.orphan_api()? {
            let known = self.db.known_provider_batch_ids()?;
            let batches = api
                .list(10_000)
                .await
                .map_err(|e| user(format!("cannot list OpenAI batches: {e}")))?;
            for b in batches {
                let Some((job, part)) = api.claimed_by(&b) else {
                    continue;
                };
                let id = b["id"].as_str().unwrap_or_default().to_string();
                if known.contains(&id) {
                    continue;
                }
                let exists = self.db.batch_job(&job)?.is_some();
                let status = b["status"].as_str().unwrap_or("?");
                findings.push(Finding {
                    kind: FindingKind::Orphan,
                    job_id: Some(job),
                    part,
                    provider_batch_id: Some(id),
                    detail: format!(
                        "OpenAI batch ({status}) not recorded by {}",
                        if exists {
                            "its job"
                        } else {
                            "any job in this data directory (removed, or another data directory)"
                        }
                    ),
                    cancellable: matches!(status, "validating" | "in_progress" | "finalizing"),
                });
            }
        }
        Ok(findings)
    }

    /// Cancels the running orphans among `findings` at their provider, recording the outcome
    /// in each finding (a failed cancel becomes an error finding).
    pub async fn cancel_orphans(&mut self, findings: &mut [Finding]) {
        let api = match self.orphan_api() {
            Ok(Some(api)) => api,
            _ => return,
        };
        for f in findings
            .iter_mut()
            .filter(|f| f.kind == FindingKind::Orphan && f.cancellable)
        {
            let id = f.provider_batch_id.clone().unwrap_or_default();
            match api.cancel(&id).await {
                Ok(b) => {
                    f.kind = FindingKind::OrphanCancelled;
                    f.cancellable = false;
                    f.detail = format!(
                        "{}; cancelled (now {})",
                        f.detail,
                        b["status"].as_str().unwrap_or("?")
                    );
                }
                Err(e) => {
                    f.kind = FindingKind::Error;
                    f.detail = format!("{}; could not cancel it: {e}", f.detail);
                }
            }
        }
    }

    /// The backend that can tell orphans: OpenAI's, whose batches carry our job id (message
    /// batches carry nothing to tell ours from another tool's). `None` without a key.
    fn orphan_api(&self) -> anyhow::Result<Option<Box<dyn backend::BatchBackend>>> {
        match crate::ai::Endpoint::from_env(ProviderKind::OpenAi, self.env) {
            Ok(Some(ep)) => backend::for_provider(
                ProviderKind::OpenAi,
                &ep,
                crate::ai::http::RetryPolicy::from_env(self.env)?,
            ),
            _ => Ok(None),
        }
    }
}
