//! Finishing a submission a crash interrupted: missing inputs are written, provider batches
//! that were created but not recorded are found and adopted, and only what never reached the
//! provider is submitted — never anything twice.

use serde_json::Value;

use crate::batch::backend::BatchBackend;
use crate::batch::{BatchManager, Loaded};
use crate::db::{Backend, BatchPart, IssueRef, ItemStatus, PartStatus};
use crate::error::user;

impl BatchManager<'_> {
    /// Finishes an interrupted submission: writes missing inputs, adopts provider batches that
    /// were created but not recorded, submits what never reached the provider.
    pub(crate) async fn resume_submission(&mut self, l: &mut Loaded) -> anyhow::Result<()> {
        if l.job.provider == Backend::Local {
            if self.db.batch_parts(&l.job.job_id)?.is_empty() {
                self.start_local(l, None)?;
            }
            return Ok(());
        }
        if l.api.is_none() {
            return Ok(());
        }
        if self.db.batch_parts(&l.job.job_id)?.is_empty() {
            // Crashed before the parts were recorded: nothing was sent; rebuild the inputs.
            let items: Vec<(String, IssueRef)> = self
                .db
                .batch_item_issues(&l.job.job_id, ItemStatus::OPEN)?
                .into_iter()
                .map(|(i, r)| (i.custom_id, r))
                .collect();
            let caps = self.job_caps(l)?;
            self.reporter.note(&format!(
                "job {}: interrupted before its input was written; writing it now",
                l.job.job_id
            ));
            self.prepare_inputs(l, &items, caps)?;
            if l.job.status == crate::db::JobStatus::Failed {
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
            .filter(|(_, p)| p.provider_batch_id.is_none() && p.status.may_be_lost())
            .map(|(i, _)| i)
            .collect();
        if lost.is_empty() {
            return Ok(());
        }
        let known = self.db.known_provider_batch_ids()?;
        let listed = api.list(10_000).await.map_err(|e| {
            user(format!(
                "cannot list {} batches to repair job {}: {e}",
                api.name(),
                l.job.job_id
            ))
        })?;
        for i in lost {
            let p = &mut parts[i];
            match match_lost(api.as_ref(), &listed, &l.job.job_id, p, &known) {
                Ok(Some(b)) => self.adopt(api.as_ref(), &l.job.job_id, p, &b)?,
                Ok(None) => {
                    if p.input_file_id.is_none() {
                        let name = format!("{}-{}.jsonl", l.job.job_id, p.part);
                        if let Some(id) = api
                            .find_upload(&name)
                            .await
                            .map_err(|e| user(format!("cannot list OpenAI files: {e}")))?
                        {
                            p.input_file_id = Some(id);
                            p.status = PartStatus::Uploaded;
                            self.db.upsert_batch_part(p)?;
                        }
                    }
                }
                Err(msg) => {
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

    /// Records a provider batch found by a search as a part's batch.
    pub(crate) fn adopt(
        &mut self,
        api: &dyn BatchBackend,
        job_id: &str,
        p: &mut BatchPart,
        b: &Value,
    ) -> anyhow::Result<()> {
        p.provider_batch_id = b["id"].as_str().map(str::to_string);
        if let Some(f) = b["input_file_id"].as_str() {
            p.input_file_id = Some(f.to_string());
        }
        api.apply(p, b);
        p.error_message = None;
        self.db.upsert_batch_part(p)?;
        self.reporter.note(&format!(
            "job {job_id} part {}: found its batch {} at {} (created before an interruption or a lost answer); recorded it",
            p.part,
            p.provider_batch_id.as_deref().unwrap_or("?"),
            api.name()
        ));
        Ok(())
    }

    /// Looks for the batch a create whose answer was lost may have made: `Ok(None)` when the
    /// provider has none, an error when several could be it.
    pub(crate) async fn find_lost(
        &mut self,
        api: &dyn BatchBackend,
        job_id: &str,
        p: &BatchPart,
    ) -> anyhow::Result<Option<Value>> {
        let known = self.db.known_provider_batch_ids()?;
        let listed = api.list(10_000).await.map_err(|e| {
            user(format!(
                "cannot list {} batches to look for job {job_id} part {}: {e}",
                api.name(),
                p.part
            ))
        })?;
        match_lost(api, &listed, job_id, p, &known)
            .map_err(|msg| user(format!("job {job_id}: {msg}")))
    }
}

/// The one listed batch a lost part created, if any; an ambiguous match is an error message.
fn match_lost(
    api: &dyn BatchBackend,
    listed: &[Value],
    job_id: &str,
    p: &BatchPart,
    known: &[String],
) -> Result<Option<Value>, String> {
    let found: Vec<&Value> = listed
        .iter()
        .filter(|b| api.is_lost_part(b, job_id, p, known))
        .collect();
    match found.as_slice() {
        [] => Ok(None),
        [b] => Ok(Some((*b).clone())),
        many => {
            let ids: Vec<&str> = many.iter().filter_map(|b| b["id"].as_str()).collect();
            Err(format!(
                "part {} may have been created as any of {} ({}); not resubmitted — check them at the provider, then `batch cancel` or `batch remove` this job",
                p.part,
                ids.len(),
                ids.join(", ")
            ))
        }
    }
}
