//! Submitting a job in the crash-safe order of ARCHITECTURE.md §6, splitting it over provider
//! caps, and finishing submissions a crash interrupted.

use std::io::{BufWriter, Write};

use serde_json::json;

use crate::ai::{tokens, Provider, ProviderKind, Usage};
use crate::batch::remote::BatchApi;
use crate::batch::{
    crash_point, input_rel, new_job_id, no_batch_api, now, provider_for, BatchManager, Caps,
    DryRun, JobConfig, Loaded, NewJob, PlannedPart,
};
use crate::commands::process::{plan, Plan, EST_COMPLETION_TOKENS};
use crate::db::{BatchItem, BatchJob, BatchPart, IssueRef, ItemUpdate};
use crate::error::user;
use crate::store::Store;

/// One request line, built exactly as real-time mode would send the body.
struct Line {
    bytes: Vec<u8>,
    prompt_tokens: u64,
}

/// Builds the JSONL line of one issue: `{"custom_id","method","url","body"}` (OpenAI) or
/// `{"custom_id","params"}` (Anthropic). The body bytes are `serde_json::to_vec` of the same
/// value real-time mode sends, so the request is byte-identical.
fn build_line(
    store: &Store,
    plan: &Plan,
    provider: &Provider,
    issue: &IssueRef,
    custom_id: &str,
    prefix_tokens: &mut u64,
) -> Result<Line, String> {
    let stored = crate::store::load_issue(store, &issue.file_path, &issue.id)?;
    let (prompt, _) = plan.processor.prompt(&stored);
    let body = provider
        .request_body(&prompt, None)
        .ok_or_else(|| "this model sends no requests".to_string())?;
    let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
    let mut line = Vec::with_capacity(body.len() + 96);
    line.extend_from_slice(b"{\"custom_id\":");
    line.extend_from_slice(&serde_json::to_vec(custom_id).map_err(|e| e.to_string())?);
    match provider.kind() {
        ProviderKind::Anthropic => line.extend_from_slice(b",\"params\":"),
        _ => line.extend_from_slice(
            format!(
                ",\"method\":\"POST\",\"url\":\"/v1{}\",\"body\":",
                crate::ai::openai::CHAT_PATH
            )
            .as_bytes(),
        ),
    }
    line.extend_from_slice(&body);
    line.extend_from_slice(b"}\n");
    if *prefix_tokens == 0 {
        *prefix_tokens =
            (tokens::count(&prompt.system) + tokens::count(&prompt.schema.to_string()) + 20) as u64;
    }
    Ok(Line {
        bytes: line,
        prompt_tokens: *prefix_tokens + tokens::count(&prompt.user) as u64,
    })
}

/// The part being filled while writing inputs.
struct OpenPart {
    part: i32,
    writer: Option<BufWriter<std::fs::File>>,
    tmp: std::path::PathBuf,
    requests: usize,
    bytes: u64,
    first: String,
    last: String,
}

/// What writing (or planning) the inputs produced.
struct Written {
    parts: Vec<(PlannedPart, String, String)>,
    unprepared: Vec<(String, String, String)>,
    prompt_tokens: u64,
    completion_tokens: u64,
    cost: Option<f64>,
}

/// Streams the request lines into `batch/input/{job}-{part}.jsonl`, starting a new part when
/// the next line would pass a cap. With `write = false` only plans (dry run). Memory stays flat:
/// one line at a time.
fn write_inputs(
    store: &Store,
    plan: &Plan,
    provider: &Provider,
    caps: Caps,
    job_id: &str,
    items: &[(String, IssueRef)],
    write: bool,
) -> anyhow::Result<Written> {
    let mut out = Written {
        parts: Vec::new(),
        unprepared: Vec::new(),
        prompt_tokens: 0,
        completion_tokens: 0,
        cost: Some(0.0),
    };
    if write {
        std::fs::create_dir_all(store.abs(crate::store::BATCH_INPUT_DIR))?;
    }
    let mut prefix_tokens = 0u64;
    let mut open: Option<OpenPart> = None;
    let close = |p: OpenPart, out: &mut Written| -> anyhow::Result<()> {
        if let Some(mut w) = p.writer {
            w.flush()?;
            w.get_ref().sync_data()?;
            drop(w);
            std::fs::rename(&p.tmp, store.abs(&input_rel(job_id, p.part)))?;
        }
        out.parts.push((
            PlannedPart {
                part: p.part,
                requests: p.requests,
                bytes: p.bytes,
            },
            p.first,
            p.last,
        ));
        Ok(())
    };
    for (custom_id, issue) in items {
        let line = match build_line(store, plan, provider, issue, custom_id, &mut prefix_tokens) {
            Ok(l) => l,
            Err(reason) => {
                out.unprepared
                    .push((custom_id.clone(), issue.id.clone(), reason));
                continue;
            }
        };
        let len = line.bytes.len() as u64;
        if len > caps.max_bytes {
            out.unprepared.push((
                custom_id.clone(),
                issue.id.clone(),
                format!("its request ({len} bytes) is larger than the provider's batch size cap ({} bytes)", caps.max_bytes),
            ));
            continue;
        }
        let full = open
            .as_ref()
            .is_some_and(|p| p.requests + 1 > caps.max_requests || p.bytes + len > caps.max_bytes);
        if full {
            if let Some(p) = open.take() {
                close(p, &mut out)?;
            }
        }
        let p = match open.as_mut() {
            Some(p) => p,
            None => {
                let part = out.parts.len() as i32;
                let tmp = store.abs(&format!("{}.tmp", input_rel(job_id, part)));
                let writer = if write {
                    Some(BufWriter::with_capacity(
                        256 * 1024,
                        std::fs::File::create(&tmp)?,
                    ))
                } else {
                    None
                };
                open.insert(OpenPart {
                    part,
                    writer,
                    tmp,
                    requests: 0,
                    bytes: 0,
                    first: custom_id.clone(),
                    last: custom_id.clone(),
                })
            }
        };
        if let Some(w) = p.writer.as_mut() {
            w.write_all(&line.bytes)?;
        }
        p.requests += 1;
        p.bytes += len;
        p.last = custom_id.clone();
        let usage = Usage {
            prompt_tokens: line.prompt_tokens,
            completion_tokens: EST_COMPLETION_TOKENS,
            ..Default::default()
        };
        out.prompt_tokens += usage.prompt_tokens;
        out.completion_tokens += usage.completion_tokens;
        out.cost = match (out.cost, plan.prices.cost(&plan.model, &usage, true)) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
    }
    if let Some(p) = open.take() {
        close(p, &mut out)?;
    }
    Ok(out)
}

fn custom_ids(job_id: &str, issues: Vec<IssueRef>) -> Vec<(String, IssueRef)> {
    issues
        .into_iter()
        .enumerate()
        .map(|(i, issue)| (format!("{job_id}-{:07}", i + 1), issue))
        .collect()
}

impl BatchManager<'_> {
    /// Shows how a job would be split and what it would cost; writes and sends nothing.
    pub fn dry_run(&self, new: &NewJob<'_>, issues: Vec<IssueRef>) -> anyhow::Result<DryRun> {
        let default_args;
        let ai = match new.ai {
            Some(a) => a,
            None => {
                default_args = JobConfig::default().to_args();
                &default_args
            }
        };
        let plan = plan(self.ctx, new.processor, new.model, ai)?;
        let local = plan.model.provider == ProviderKind::Rules;
        // The request bodies need no key: build them with a placeholder endpoint.
        let provider = if local {
            Provider::Rules
        } else {
            Provider::new(
                &plan.model,
                Some(crate::ai::Endpoint {
                    base_url: String::new(),
                    key: crate::ai::Secret::new("dry-run"),
                }),
                plan.settings.clone(),
            )?
        };
        let caps = if local {
            None
        } else {
            Some(Caps::for_provider(plan.model.provider)?)
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
                &self.ctx.store,
                &plan,
                &provider,
                caps.unwrap_or(Caps {
                    max_requests: usize::MAX,
                    max_bytes: u64::MAX,
                }),
                "dry-run",
                &items,
                false,
            )?
        };
        Ok(DryRun {
            job_provider: if local {
                "local"
            } else {
                plan.model.provider.name()
            },
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

    /// Creates and submits a job for `issues` (ARCHITECTURE.md §6 order). Returns the job as
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
        let config = JobConfig::from_args(new.ai);
        let plan = plan(self.ctx, new.processor, new.model, &config.to_args())?;
        // Keys and caps are checked before anything is written.
        let (provider, api) = provider_for(&plan, false)?;
        let caps = match api {
            Some(_) => Some(Caps::for_provider(plan.model.provider)?),
            None => None,
        };
        self.ctx.store.ensure_dirs()?;
        let job_id = new_job_id();
        let created = now();
        let items = custom_ids(&job_id, issues);
        let job = BatchJob {
            job_id: job_id.clone(),
            parent_job_id: new.parent_job_id.clone(),
            provider: if api.is_some() {
                plan.model.provider.name().into()
            } else {
                "local".into()
            },
            processor: plan.processor.name().into(),
            model: plan.model.id(),
            status: "preparing".into(),
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
            metadata: json!({"config": config}),
        };
        let rows: Vec<BatchItem> = items
            .iter()
            .map(|(cid, issue)| BatchItem {
                job_id: job_id.clone(),
                issue_id: issue.id.clone(),
                custom_id: cid.clone(),
                part: -1,
                status: "preparing".into(),
                error: None,
                updated_at: Some(created),
            })
            .collect();
        // §6 step 1.
        self.db.insert_batch_job(&job, &rows)?;
        drop(rows);
        crash_point("rows");
        let mut l = Loaded {
            job,
            plan,
            provider,
            api,
        };
        self.ctx.printer.note(&format!(
            "job {job_id}: {} issue(s) with {}",
            items.len(),
            l.plan.model.id()
        ));
        if l.api.is_none() {
            if l.plan.model.provider == ProviderKind::Rules {
                l.job.cost_estimate = Some(0.0);
            }
            self.start_local(&mut l, None)?;
            self.run_local(&mut l).await?;
            return Ok(l.job);
        }
        // §6 step 2.
        self.prepare_inputs(
            &mut l,
            &items,
            caps.unwrap_or(Caps {
                max_requests: usize::MAX,
                max_bytes: u64::MAX,
            }),
        )?;
        drop(items);
        crash_point("input");
        // §6 steps 3-4.
        self.submit_parts(&mut l).await?;
        Ok(l.job)
    }

    /// Writes the input files and records the parts (one transaction).
    fn prepare_inputs(
        &mut self,
        l: &mut Loaded,
        items: &[(String, IssueRef)],
        caps: Caps,
    ) -> anyhow::Result<()> {
        let written = write_inputs(
            &self.ctx.store,
            &l.plan,
            &l.provider,
            caps,
            &l.job.job_id,
            items,
            true,
        )?;
        let t = now();
        let parts: Vec<(BatchPart, String, String)> = written
            .parts
            .iter()
            .map(|(p, first, last)| {
                (
                    BatchPart {
                        job_id: l.job.job_id.clone(),
                        part: p.part,
                        provider_batch_id: None,
                        input_file_id: None,
                        output_file_id: None,
                        error_file_id: None,
                        status: "preparing".into(),
                        request_count: p.requests as i64,
                        bytes: p.bytes as i64,
                        input_path: Some(input_rel(&l.job.job_id, p.part)),
                        created_at: t,
                        updated_at: Some(t),
                        completed_count: 0,
                        failed_count: 0,
                        error_message: None,
                        collected_at: None,
                    },
                    first.clone(),
                    last.clone(),
                )
            })
            .collect();
        let failed: Vec<ItemUpdate> = written
            .unprepared
            .iter()
            .map(|(cid, issue, reason)| {
                self.ctx
                    .printer
                    .warn(&format!("{issue}: not submitted: {reason}"));
                ItemUpdate {
                    custom_id: cid.clone(),
                    status: "failed".into(),
                    error: Some(reason.clone()),
                }
            })
            .collect();
        self.db.record_batch_parts(&l.job.job_id, &parts, &failed)?;
        l.job.cost_estimate = written.cost.map(|c| (c * 1e6).round() / 1e6);
        l.job.failed_count = failed.len() as i64;
        if parts.is_empty() {
            l.job.status = "failed".into();
            l.job.error_message = Some("no issue could be prepared for submission".into());
            l.job.completed_at = Some(now());
        }
        self.db.update_batch_job(&l.job)?;
        if parts.len() > 1 {
            self.ctx.printer.note(&format!(
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
        let t = now();
        let part = BatchPart {
            job_id: l.job.job_id.clone(),
            part: 0,
            provider_batch_id: None,
            input_file_id: None,
            output_file_id: None,
            error_file_id: None,
            status: "in_progress".into(),
            request_count: items.len() as i64,
            bytes: 0,
            input_path: None,
            created_at: t,
            updated_at: Some(t),
            completed_count: 0,
            failed_count: 0,
            error_message: None,
            collected_at: None,
        };
        self.db
            .record_batch_parts(&l.job.job_id, &[(part, first, last)], &[])?;
        // Items already assigned to parts (a job falling back after writing its inputs) go to
        // the single local part.
        self.db.reassign_open_items(&l.job.job_id, 0)?;
        l.job.provider = "local".into();
        l.job.status = "in_progress".into();
        l.job.submitted_at = Some(t);
        if let Some(r) = reason {
            l.job.metadata["local_reason"] = json!(r);
        }
        self.db.update_batch_job(&l.job)?;
        l.api = None;
        Ok(())
    }

    /// Steps 3-4 for every part without a provider batch.
    pub(crate) async fn submit_parts(&mut self, l: &mut Loaded) -> anyhow::Result<()> {
        let Some(api) = l.api.clone() else {
            return Ok(());
        };
        let mut parts = self.db.batch_parts(&l.job.job_id)?;
        let total = parts.len();
        let any_submitted = parts.iter().any(|p| p.provider_batch_id.is_some());
        let mut failure = None;
        for p in parts.iter_mut() {
            if p.provider_batch_id.is_some() || p.status == "cancelled" {
                continue;
            }
            match self.submit_part(&api, l, p).await {
                Ok(()) => self.ctx.printer.note(&format!(
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
                    self.ctx
                        .printer
                        .warn(&format!("job {}: {reason}", l.job.job_id));
                    // Nothing reached the provider: the job runs here instead.
                    self.start_local(l, Some(&reason))?;
                    return self.run_local(l).await;
                }
                Err(SubmitError::NoBatchApi(e)) | Err(SubmitError::Api(e)) => {
                    p.error_message = Some(e.to_string());
                    self.db.upsert_batch_part(p)?;
                    failure = Some(format!("part {}: {e}", p.part));
                    break;
                }
                Err(SubmitError::Other(e)) => return Err(e),
            }
        }
        let parts = self.db.batch_parts(&l.job.job_id)?;
        if parts
            .iter()
            .all(|p| p.provider_batch_id.is_some() || p.status == "cancelled")
        {
            l.job.submitted_at.get_or_insert_with(now);
            l.job.error_message = None;
            self.reaggregate(&mut l.job, &parts)?;
            if l.job.status == "preparing" {
                l.job.status = "submitted".into();
                self.db.update_batch_job(&l.job)?;
            }
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
        api: &BatchApi,
        l: &Loaded,
        p: &mut BatchPart,
    ) -> Result<(), SubmitError> {
        let input = self
            .ctx
            .store
            .abs(p.input_path.as_deref().unwrap_or_default());
        if !input.is_file() {
            return Err(SubmitError::Other(user(format!(
                "input file {} of job {} part {} is missing",
                input.display(),
                l.job.job_id,
                p.part
            ))));
        }
        if p.status == "preparing" {
            p.status = "submitting".into();
            p.updated_at = Some(now());
            self.db.upsert_batch_part(p).map_err(SubmitError::Other)?;
        }
        let batch = match api.kind {
            ProviderKind::Anthropic => api
                .anthropic_create(&input)
                .await
                .map_err(SubmitError::from)?,
            _ => {
                if p.input_file_id.is_none() {
                    let name = format!("{}-{}.jsonl", l.job.job_id, p.part);
                    let id = api
                        .openai_upload(&input, &name)
                        .await
                        .map_err(SubmitError::from)?;
                    p.input_file_id = Some(id);
                    p.status = "uploaded".into();
                    p.updated_at = Some(now());
                    self.db.upsert_batch_part(p).map_err(SubmitError::Other)?;
                    crash_point("upload");
                }
                let file = p.input_file_id.clone().unwrap_or_default();
                api.openai_create(&file, &l.job.job_id, p.part)
                    .await
                    .map_err(SubmitError::from)?
            }
        };
        crash_point("create");
        p.provider_batch_id = batch["id"].as_str().map(str::to_string);
        p.error_message = None;
        crate::batch::apply_provider_batch(p, api.kind, &batch);
        self.db.upsert_batch_part(p).map_err(SubmitError::Other)?;
        Ok(())
    }

    /// Finishes an interrupted submission: writes missing inputs, adopts provider batches that
    /// were created but not recorded, submits what never reached the provider.
    pub(crate) async fn resume_submission(&mut self, l: &mut Loaded) -> anyhow::Result<()> {
        if l.job.provider == "local" {
            if self.db.batch_parts(&l.job.job_id)?.is_empty() {
                self.start_local(l, None)?;
            }
            return Ok(());
        }
        let Some(api) = l.api.clone() else {
            return Ok(());
        };
        if self.db.batch_parts(&l.job.job_id)?.is_empty() {
            // Crashed before the parts were recorded: nothing was sent; rebuild the inputs.
            let items: Vec<(String, IssueRef)> = self
                .db
                .batch_item_issues(&l.job.job_id, &["preparing", "pending"])?
                .into_iter()
                .map(|(i, r)| (i.custom_id, r))
                .collect();
            let caps = Caps::for_provider(api.kind)?;
            self.ctx.printer.note(&format!(
                "job {}: interrupted before its input was written; writing it now",
                l.job.job_id
            ));
            self.prepare_inputs(l, &items, caps)?;
            if l.job.status == "failed" {
                return Ok(());
            }
        }
        self.adopt_lost_parts(l, true).await?;
        self.submit_parts(l).await
    }

    /// For parts that may have reached the provider (`submitting`/`uploaded`, no batch id):
    /// looks for their batch (and OpenAI upload) and records it. With `strict`, an ambiguous
    /// match is an error (nothing is submitted twice); otherwise it is only reported.
    pub(crate) async fn adopt_lost_parts(
        &mut self,
        l: &mut Loaded,
        strict: bool,
    ) -> anyhow::Result<()> {
        let Some(api) = l.api.clone() else {
            return Ok(());
        };
        let mut parts = self.db.batch_parts(&l.job.job_id)?;
        let lost: Vec<usize> = parts
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                p.provider_batch_id.is_none()
                    && matches!(p.status.as_str(), "submitting" | "uploaded")
            })
            .map(|(i, _)| i)
            .collect();
        if lost.is_empty() {
            return Ok(());
        }
        let known = self.db.known_provider_batch_ids()?;
        let listed = match api.kind {
            ProviderKind::Anthropic => api.anthropic_list(10_000).await,
            _ => api.openai_list(10_000).await,
        }
        .map_err(|e| {
            user(format!(
                "cannot list {} batches to repair job {}: {e}",
                api.kind.name(),
                l.job.job_id
            ))
        })?;
        for i in lost {
            let p = &mut parts[i];
            let found: Vec<&serde_json::Value> = match api.kind {
                ProviderKind::Anthropic => {
                    // No metadata on message batches: a batch created since the part was marked,
                    // with its request count, that no other part has claimed.
                    let since = p.updated_at.unwrap_or(p.created_at) - chrono::Duration::minutes(5);
                    listed
                        .iter()
                        .filter(|b| {
                            let id = b["id"].as_str().unwrap_or_default().to_string();
                            let created = b["created_at"]
                                .as_str()
                                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                                .map(|t| t.naive_utc());
                            let c = &b["request_counts"];
                            let total: u64 =
                                ["processing", "succeeded", "errored", "canceled", "expired"]
                                    .iter()
                                    .map(|k| c[k].as_u64().unwrap_or(0))
                                    .sum();
                            !known.contains(&id)
                                && created.is_some_and(|t| t >= since)
                                && total == p.request_count as u64
                        })
                        .collect()
                }
                _ => listed
                    .iter()
                    .filter(|b| {
                        b["metadata"][crate::batch::remote::JOB_KEY].as_str()
                            == Some(l.job.job_id.as_str())
                            && b["metadata"][crate::batch::remote::PART_KEY].as_str()
                                == Some(p.part.to_string().as_str())
                    })
                    .collect(),
            };
            match found.as_slice() {
                [b] => {
                    p.provider_batch_id = b["id"].as_str().map(str::to_string);
                    if let Some(f) = b["input_file_id"].as_str() {
                        p.input_file_id = Some(f.to_string());
                    }
                    crate::batch::apply_provider_batch(p, api.kind, b);
                    p.error_message = None;
                    self.db.upsert_batch_part(p)?;
                    self.ctx.printer.note(&format!(
                        "job {} part {}: found its batch {} at {} (created before an interruption); recorded it",
                        l.job.job_id,
                        p.part,
                        p.provider_batch_id.as_deref().unwrap_or("?"),
                        api.kind.name()
                    ));
                }
                [] => {
                    if api.kind == ProviderKind::OpenAi && p.input_file_id.is_none() {
                        let name = format!("{}-{}.jsonl", l.job.job_id, p.part);
                        if let Some(id) = api
                            .openai_find_file(&name)
                            .await
                            .map_err(|e| user(format!("cannot list OpenAI files: {e}")))?
                        {
                            p.input_file_id = Some(id);
                            p.status = "uploaded".into();
                            self.db.upsert_batch_part(p)?;
                        }
                    }
                }
                many => {
                    let ids: Vec<&str> = many.iter().filter_map(|b| b["id"].as_str()).collect();
                    let msg = format!(
                        "part {} may have been created as any of {} ({}); not resubmitted — check them at the provider, then `batch cancel` or `batch remove` this job",
                        p.part,
                        ids.len(),
                        ids.join(", ")
                    );
                    p.error_message = Some(msg.clone());
                    self.db.upsert_batch_part(p)?;
                    if strict {
                        return Err(user(format!("job {}: {msg}", l.job.job_id)));
                    }
                }
            }
        }
        Ok(())
    }
}

enum SubmitError {
    NoBatchApi(crate::ai::http::ApiError),
    Api(crate::ai::http::ApiError),
    Other(anyhow::Error),
}

impl From<crate::ai::http::ApiError> for SubmitError {
    fn from(e: crate::ai::http::ApiError) -> Self {
        if no_batch_api(&e) {
            Self::NoBatchApi(e)
        } else {
            Self::Api(e)
        }
    }
}
