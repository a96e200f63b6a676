//! Finishing a submission a crash interrupted: missing inputs are written, provider batches
//! that were created but not recorded are found and adopted, and only what never reached the
//! provider is submitted — never anything twice.

use crate::batch::{BatchManager, Caps, Loaded};
use crate::db::{Backend, IssueRef, ItemStatus, PartStatus};
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
            let caps = Caps::for_provider(l.plan.model.provider, self.env)?;
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
            let found: Vec<&serde_json::Value> = listed
                .iter()
                .filter(|b| api.is_lost_part(b, &l.job.job_id, p, &known))
                .collect();
            match found.as_slice() {
                [b] => {
                    p.provider_batch_id = b["id"].as_str().map(str::to_string);
                    if let Some(f) = b["input_file_id"].as_str() {
                        p.input_file_id = Some(f.to_string());
                    }
                    api.apply(p, b);
                    p.error_message = None;
                    self.db.upsert_batch_part(p)?;
                    self.reporter.note(&format!(
                        "job {} part {}: found its batch {} at {} (created before an interruption); recorded it",
                        l.job.job_id,
                        p.part,
                        p.provider_batch_id.as_deref().unwrap_or("?"),
                        api.name()
                    ));
                }
                [] => {
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
