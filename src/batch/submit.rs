//! Submitting a job in the crash-safe order (see `mod.rs`): rows, input files, then each part
//! at its provider; a job for `rules` or for a server without a batch API runs here instead.

use serde_json::json;

use crate::ai::http::{ApiError, ErrorKind};
use crate::ai::{Provider, ProviderKind};
use crate::batch::backend::BatchBackend;
use crate::batch::inputs::{custom_ids, write_inputs, Written};
use crate::batch::job_config;
use crate::batch::queue::{create_refusal, Refusal, Room};
use crate::batch::{
    crash_point, new_job_id, now, BatchManager, Caps, DryRun, Loaded, NewJob, PlannedPart,
};
use crate::db::{
    Backend, BatchItem, BatchJob, BatchPart, IssueRef, ItemStatus, ItemUpdate, JobStatus,
    PartStatus,
};
use crate::error::user;

/// The backend of a provider's jobs (`rules` runs here).
pub(crate) fn backend_of(kind: ProviderKind) -> Backend {
    match kind {
        ProviderKind::OpenAi => Backend::OpenAi,
        ProviderKind::Anthropic => Backend::Anthropic,
        ProviderKind::Rules | ProviderKind::Local => Backend::Local,
    }
}

/// Whether a provider error means "this server has no batch API" (compatible servers).
fn no_batch_api(e: &ApiError) -> bool {
    e.kind == ErrorKind::NotFound || e.status == Some(405)
}

impl BatchManager<'_> {
    /// Shows how a job would be split and what it would cost; writes and sends nothing.
    pub fn dry_run(&self, new: &NewJob<'_>, issues: Vec<IssueRef>) -> anyhow::Result<DryRun> {
        let plan = self.plan(new.processor, new.model, &new.config)?;
        let local = plan.offline();
        // The request bodies need no key: build them with a placeholder endpoint.
        let provider = Provider::for_bodies(&plan)?;
        let caps = if local {
            None
        } else {
            // Split as the job would be: to the caps and to what refusals taught.
            let kind = plan.model.provider;
            Some(self.caps_of(kind, backend_of(kind), &plan.model.id())?)
        };
        let n = issues.len();
        let items = custom_ids("dry-run", issues);
        let written = if local {
            Written {
                parts: vec![(
                    PlannedPart {
                        part: 0,
                        requests: n,
                        bytes: 0,
                        tokens: 0,
                    },
                    String::new(),
                    String::new(),
                )],
                unprepared: Vec::new(),
                prompt_tokens: 0,
                completion_tokens: 0,
                cost: Some(0.0),
            }
        } else {
            write_inputs(
                self.store,
                &plan,
                &provider,
                caps.unwrap_or(Caps::NONE),
                "dry-run",
                &items,
                false,
                0,
            )?
        };
        Ok(DryRun {
            backend: backend_of(plan.model.provider),
            model: plan.model.id(),
            issues: n,
            parts: written.parts.into_iter().map(|(p, _, _)| p).collect(),
            unprepared: written
                .unprepared
                .into_iter()
                .map(|(_, i, r)| (i, r))
                .collect(),
            est_prompt_tokens: written.prompt_tokens,
            est_completion_tokens: written.completion_tokens,
            est_cost_usd: written.cost,
            caps,
        })
    }

    /// Creates and submits a job for `issues` (in the crash-safe order). Returns the job as
    /// recorded after submission; a local job (`rules`, or a server without a batch API) has
    /// already run to completion.
    pub async fn create_batch_job(
        &mut self,
        new: NewJob<'_>,
        issues: Vec<IssueRef>,
    ) -> anyhow::Result<BatchJob> {
        if issues.is_empty() {
            return Err(user("no issues selected: nothing to submit"));
        }
        let config = new.config.with_absolute_paths();
        let plan = self.plan(new.processor, new.model, &config)?;
        // Keys and caps are checked before anything is written.
        let (provider, api) = self.connect(&plan, false)?;
        let caps = match api {
            Some(_) => Some(Caps::for_provider(plan.model.provider, self.env)?),
            None => None,
        };
        self.store.ensure_dirs()?;
        let job_id = new_job_id();
        let created = now();
        let items = custom_ids(&job_id, issues);
        let mut job = BatchJob {
            job_id: job_id.clone(),
            parent_job_id: new.parent_job_id.clone(),
            provider: match &api {
                Some(a) => a.backend(),
                None => Backend::Local,
            },
            processor: plan.processor.name().into(),
            model: plan.model.id(),
            status: JobStatus::Preparing,
            issues_count: items.len() as i64,
            completed_count: 0,
            failed_count: 0,
            created_at: created,
            submitted_at: None,
            completed_at: None,
            collected_at: None,
            cost_estimate: None,
            cost_actual: None,
            selection_query: new.selection_query.clone(),
            source_command: Some(new.source_command.clone()),
            error_message: None,
            metadata: job_config::keep(&config)?,
        };
        let rows: Vec<BatchItem> = items
            .iter()
            .map(|(cid, issue)| BatchItem {
                job_id: job_id.clone(),
                issue_id: issue.id.clone(),
                custom_id: cid.clone(),
                part: -1,
                status: ItemStatus::Preparing,
                error: None,
                updated_at: Some(created),
            })
            .collect();
        // Step 1, claiming the issues: one an active job of the processor holds (another
        // submission that won the race) is left out.
        let claimed = self.db.insert_batch_job(&mut job, &rows)?;
        drop(rows);
        if claimed.len() == items.len() {
            return Err(user(format!(
                "every selected issue ({}) is already in a running job of {}: nothing to submit",
                claimed.len(),
                job.processor
            )));
        }
        let items: Vec<(String, IssueRef)> = if claimed.is_empty() {
            items
        } else {
            self.reporter.warn(&format!(
                "{} selected issue(s) are already in a running job of {} and were left out",
                claimed.len(),
                job.processor
            ));
            let taken: std::collections::HashSet<&str> =
                claimed.iter().map(String::as_str).collect();
            items
                .into_iter()
                .filter(|(_, i)| !taken.contains(i.id.as_str()))
                .collect()
        };
        crash_point("rows");
        let mut l = Loaded {
            job,
            plan,
            provider,
            api,
        };
        self.reporter.note(&format!(
            "job {job_id}: {} issue(s) with {}",
            items.len(),
            l.plan.model.id()
        ));
        if l.api.is_none() {
            if l.plan.offline() {
                l.job.cost_estimate = Some(0.0);
            }
            self.start_local(&mut l, None)?;
            self.run_local(&mut l).await?;
            return Ok(l.job);
        }
        // Step 2, split to the caps and to what earlier refusals taught.
        let caps = match caps {
            Some(_) => self.job_caps(&l)?,
            None => Caps::NONE,
        };
        self.prepare_inputs(&mut l, &items, caps)?;
        drop(items);
        crash_point("input");
        // Steps 3-4.
        self.submit_parts(&mut l).await?;
        Ok(l.job)
    }

    /// Writes the input files and records the parts (one transaction).
    pub(crate) fn prepare_inputs(
        &mut self,
        l: &mut Loaded,
        items: &[(String, IssueRef)],
        caps: Caps,
    ) -> anyhow::Result<()> {
        let written = write_inputs(
            self.store,
            &l.plan,
            &l.provider,
            caps,
            &l.job.job_id,
            items,
            true,
            0,
        )?;
        let parts = written.part_rows(&l.job.job_id, PartStatus::Preparing);
        let failed: Vec<ItemUpdate> = written
            .unprepared
            .iter()
            .map(|(cid, issue, reason)| {
                self.reporter
                    .warn(&format!("{issue}: not submitted: {reason}"));
                ItemUpdate {
                    custom_id: cid.clone(),
                    status: ItemStatus::Failed,
                    error: Some(reason.clone()),
                }
            })
            .collect();
        self.db.record_batch_parts(&l.job.job_id, &parts, &failed)?;
        l.job.cost_estimate = written.cost.map(|c| (c * 1e6).round() / 1e6);
        l.job.failed_count = failed.len() as i64;
        if parts.is_empty() {
            l.job.status = JobStatus::Failed;
            l.job.error_message = Some("no issue could be prepared for submission".into());
            l.job.completed_at = Some(now());
        }
        self.db.update_batch_job(&l.job)?;
        if parts.len() > 1 {
            self.reporter.note(&format!(
                "job {}: split into {} provider batches (caps: {} requests, {} bytes)",
                l.job.job_id,
                parts.len(),
                caps.max_requests,
                caps.max_bytes
            ));
        }
        Ok(())
    }

    /// Turns a job into a local one (one part holding every open item) before running it.
    pub(crate) fn start_local(
        &mut self,
        l: &mut Loaded,
        reason: Option<&str>,
    ) -> anyhow::Result<()> {
        let items = self.db.batch_items(&l.job.job_id)?;
        let first = items
            .first()
            .map(|i| i.custom_id.clone())
            .unwrap_or_default();
        let last = items
            .last()
            .map(|i| i.custom_id.clone())
            .unwrap_or_default();
        let part = BatchPart::new(&l.job.job_id, 0, PartStatus::InProgress, items.len() as i64);
        let submitted = part.created_at;
        self.db
            .record_batch_parts(&l.job.job_id, &[(part, first, last)], &[])?;
        // Items already assigned to parts (a job falling back after writing its inputs) go to
        // the single local part.
        self.db.reassign_open_items(&l.job.job_id, 0)?;
        l.job.provider = Backend::Local;
        l.job.status = JobStatus::InProgress;
        l.job.submitted_at = Some(submitted);
        if let Some(r) = reason {
            l.job.metadata["local_reason"] = json!(r);
        }
        self.db.update_batch_job(&l.job)?;
        l.api = None;
        Ok(())
    }

    /// Steps 3-4 for every part without a provider batch, as the provider's queue allows: a
    /// part over the enqueued-token budget waits (`queued`), a part refused for its size is
    /// re-split and its pieces sent (see `queue.rs`).
    pub(crate) async fn submit_parts(&mut self, l: &mut Loaded) -> anyhow::Result<()> {
        let Some(api) = l.api.clone() else {
            return Ok(());
        };
        let any_submitted = self
            .db
            .batch_parts(&l.job.job_id)?
            .iter()
            .any(|p| p.provider_batch_id.is_some());
        let mut failure = None;
        // Each part is tried once per call; parts made by a re-split are new parts.
        let mut tried = std::collections::HashSet::new();
        loop {
            let parts = self.db.batch_parts(&l.job.job_id)?;
            let total = parts.len();
            let Some(mut p) = parts.into_iter().find(|p| {
                p.provider_batch_id.is_none()
                    && (p.status.is_unsubmitted() || p.status == PartStatus::Queued)
                    && !tried.contains(&p.part)
            }) else {
                break;
            };
            tried.insert(p.part);
            if !p.status.may_be_lost() {
                match self.room_for(l, &p)? {
                    Room::Fits => {}
                    Room::Wait => {
                        self.queue_part(&mut p, "the model's enqueued-token budget is full")?;
                        continue;
                    }
                    Room::Split(budget) => {
                        let mut caps = self.job_caps(l)?;
                        caps.max_tokens = budget;
                        let n = self.split_part(l, &p, caps, false, PartStatus::Preparing)?;
                        self.reporter.note(&format!(
                            "job {} part {}: larger than the enqueued-token budget ({budget}); split into {n} parts",
                            l.job.job_id, p.part
                        ));
                        continue;
                    }
                }
            }
            match self.submit_part(api.as_ref(), l, &mut p).await {
                Ok(()) => self.reporter.note(&format!(
                    "job {}: part {}/{} submitted as {} ({} requests)",
                    l.job.job_id,
                    p.part + 1,
                    total,
                    p.provider_batch_id.as_deref().unwrap_or("?"),
                    p.request_count
                )),
                Err(SubmitError::NoBatchApi(e)) if p.part == 0 && !any_submitted => {
                    let reason = format!(
                        "the server has no batch API ({e}); running the job locally with real-time requests"
                    );
                    self.reporter
                        .warn(&format!("job {}: {reason}", l.job.job_id));
                    // Nothing reached the provider: the job runs here instead.
                    self.start_local(l, Some(&reason))?;
                    return self.run_local(l).await;
                }
                Err(SubmitError::Api(e)) if create_refusal(&e).is_some() => {
                    // Refused outright: nothing was made, so the part may change.
                    let refusal = create_refusal(&e).unwrap_or(Refusal::Bytes);
                    self.learn(l, refusal, &e.to_string())?;
                    match refusal {
                        Refusal::EnqueuedTokens(_) => {
                            p.error_message = None;
                            self.queue_part(&mut p, &format!("refused ({e})"))?;
                        }
                        _ if p.request_count > 1 => {
                            let caps = Self::halved(&p, self.job_caps(l)?);
                            let n = self.split_part(l, &p, caps, false, PartStatus::Preparing)?;
                            self.reporter.warn(&format!(
                                "job {} part {}: refused for its size ({e}); split into {n} parts",
                                l.job.job_id, p.part
                            ));
                        }
                        _ => {
                            p.error_message = Some(e.to_string());
                            self.db.upsert_batch_part(&p)?;
                            failure = Some(format!("part {}: {e}", p.part));
                            break;
                        }
                    }
                }
                Err(SubmitError::NoBatchApi(e)) | Err(SubmitError::Api(e)) => {
                    p.error_message = Some(e.to_string());
                    self.db.upsert_batch_part(&p)?;
                    failure = Some(format!("part {}: {e}", p.part));
                    break;
                }
                Err(SubmitError::Other(e)) => return Err(e),
            }
        }
        let parts = self.db.batch_parts(&l.job.job_id)?;
        if parts
            .iter()
            .all(|p| p.provider_batch_id.is_some() || p.status == PartStatus::Cancelled)
        {
            l.job.submitted_at.get_or_insert_with(now);
            l.job.error_message = None;
            self.reaggregate(&mut l.job, &parts)?;
            if l.job.status == JobStatus::Preparing {
                l.job.status = JobStatus::Submitted;
                self.db.update_batch_job(&l.job)?;
            }
        } else if failure.is_none() {
            // Parts wait in the queue: the job is whatever its parts say (`queued` when
            // nothing else runs).
            if parts.iter().any(|p| p.provider_batch_id.is_some()) {
                l.job.submitted_at.get_or_insert_with(now);
            }
            self.reaggregate(&mut l.job, &parts)?;
        } else {
            self.db.update_batch_job(&l.job)?;
        }
        if let Some(f) = failure {
            l.job.error_message = Some(f.clone());
            self.db.update_batch_job(&l.job)?;
            return Err(user(format!(
                "job {} could not be fully submitted: {f}; it stays recorded — run `batch status {}` to finish the submission",
                l.job.job_id, l.job.job_id
            )));
        }
        Ok(())
    }

    /// Steps 3-4 of one part: mark it `submitting` (committed) before any call, record the file
    /// id as soon as it is known, then the batch id.
    async fn submit_part(
        &mut self,
        api: &dyn BatchBackend,
        l: &Loaded,
        p: &mut BatchPart,
    ) -> Result<(), SubmitError> {
        let input = self.store.abs(p.input_path.as_deref().unwrap_or_default());
        if !input.is_file() {
            return Err(SubmitError::Other(user(format!(
                "input file {} of job {} part {} is missing",
                input.display(),
                l.job.job_id,
                p.part
            ))));
        }
        if matches!(p.status, PartStatus::Preparing | PartStatus::Queued) {
            p.status = PartStatus::Submitting;
            p.updated_at = Some(now());
            self.db.upsert_batch_part(p).map_err(SubmitError::Other)?;
        }
        if p.input_file_id.is_none() {
            let name = format!("{}-{}.jsonl", l.job.job_id, p.part);
            if let Some(id) = api.upload(&input, &name).await.map_err(SubmitError::from)? {
                // Between the answer and the save, only the file name can find the upload.
                crash_point("upload");
                p.input_file_id = Some(id);
                p.status = PartStatus::Uploaded;
                p.updated_at = Some(now());
                self.db.upsert_batch_part(p).map_err(SubmitError::Other)?;
                crash_point("uploaded");
            }
        }
        // A create whose outcome is unknown is never sent again blindly: the provider is
        // searched first, and the batch adopted if the lost create made it.
        let mut delays = l.plan.policy.backoff().delays();
        let mut resends = 0;
        let batch = loop {
            match api
                .create(&input, p.input_file_id.as_deref(), &l.job.job_id, p.part)
                .await
            {
                Ok(b) => break b,
                Err(e) if outcome_unknown(&e) => {
                    self.reporter.warn(&format!(
                        "job {} part {}: the create of its batch failed with an unknown outcome ({e}); looking for it at {} before sending again",
                        l.job.job_id,
                        p.part,
                        api.name()
                    ));
                    if let Some(b) = self
                        .find_lost(api, &l.job.job_id, p)
                        .await
                        .map_err(SubmitError::Other)?
                    {
                        self.adopt(api, &l.job.job_id, p, &b)
                            .map_err(SubmitError::Other)?;
                        return Ok(());
                    }
                    resends += 1;
                    match delays.next() {
                        Some(d) if resends <= l.plan.policy.max_retries => {
                            tokio::time::sleep(d).await
                        }
                        _ => return Err(SubmitError::from(e)),
                    }
                }
                Err(e) => return Err(SubmitError::from(e)),
            }
        };
        crash_point("create");
        p.provider_batch_id = batch["id"].as_str().map(str::to_string);
        p.error_message = None;
        api.apply(p, &batch);
        self.db.upsert_batch_part(p).map_err(SubmitError::Other)?;
        Ok(())
    }
}

/// Whether a failed create may have made the batch anyway: a server error, a timeout or a broken
/// connection (a 429 or a 4xx is a refusal: nothing was made).
fn outcome_unknown(e: &ApiError) -> bool {
    e.retryable() && e.kind != ErrorKind::RateLimited && e.status != Some(429)
}

enum SubmitError {
    NoBatchApi(ApiError),
    Api(ApiError),
    Other(anyhow::Error),
}

impl From<ApiError> for SubmitError {
    fn from(e: ApiError) -> Self {
        if no_batch_api(&e) {
            Self::NoBatchApi(e)
        } else {
            Self::Api(e)
        }
    }
}
