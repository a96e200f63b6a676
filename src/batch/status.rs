//! The batch state machine: provider statuses mapped onto ours, a job's status aggregated from
//! its parts, and refreshing a job from its provider.
//!
//! Job: `preparing` → `submitted` → `validating` / `in_progress` / `finalizing` → `completed` |
//! `failed` | `expired` | `cancelled` (via `cancelling`) → `collected` once every result is
//! stored (an all-failed job stays `failed`, one cancelled before anything came back stays
//! `cancelled`). OpenAI's eight batch statuses map onto these one to one; Anthropic's
//! `in_progress` → `in_progress`, `canceling` → `cancelling`, `ended` → `cancelled` (if a cancel
//! was initiated), `expired` (if any request expired) or `completed`. A job split into several
//! provider batches (parts) aggregates: any part still being submitted → `preparing`; any part
//! running → `cancelling` / `in_progress` / `finalizing` / `validating`; all ended → `failed` if
//! all failed, else `cancelled`, `expired`, `completed` in that order of precedence. A part
//! written but waiting for room in the provider's queue is `queued` (docs/batch.md); a job
//! whose only unfinished parts are queued is `queued`, and `batch status` submits them when
//! there is room.
//! Item: `preparing` → `pending` → `completed` | `failed` | `expired` | `cancelled`.

use serde_json::Value;

use crate::batch::{now, BatchManager, Loaded};
use crate::db::{Backend, BatchJob, BatchPart, JobStatus, PartStatus};
use crate::error::user;

/// OpenAI batch status → ours (the same names; anything unknown is still running).
pub fn map_openai_status(s: &str) -> PartStatus {
    match s {
        "validating" => PartStatus::Validating,
        "finalizing" => PartStatus::Finalizing,
        "completed" => PartStatus::Completed,
        "failed" => PartStatus::Failed,
        "expired" => PartStatus::Expired,
        "cancelling" => PartStatus::Cancelling,
        "cancelled" => PartStatus::Cancelled,
        _ => PartStatus::InProgress,
    }
}

/// Anthropic message batch → ours: `ended` is split by what the request counts say.
pub fn map_anthropic_status(batch: &Value) -> PartStatus {
    let count = |k: &str| batch["request_counts"][k].as_u64().unwrap_or(0);
    match batch["processing_status"].as_str() {
        Some("canceling") => PartStatus::Cancelling,
        Some("ended") => {
            if batch
                .get("cancel_initiated_at")
                .is_some_and(|v| !v.is_null())
            {
                PartStatus::Cancelled
            } else if count("expired") > 0 {
                PartStatus::Expired
            } else {
                PartStatus::Completed
            }
        }
        _ => PartStatus::InProgress,
    }
}

/// The job status implied by its parts' statuses.
pub fn aggregate_status(parts: &[PartStatus]) -> JobStatus {
    use PartStatus as P;
    if parts.is_empty() || parts.iter().any(|s| s.is_unsubmitted()) {
        return JobStatus::Preparing;
    }
    if parts.iter().any(|s| !s.is_terminal()) {
        for (part, job) in [
            (P::Cancelling, JobStatus::Cancelling),
            (P::InProgress, JobStatus::InProgress),
            (P::Finalizing, JobStatus::Finalizing),
            (P::Validating, JobStatus::Validating),
        ] {
            if parts.contains(&part) {
                return job;
            }
        }
        if parts.contains(&P::Queued) {
            return JobStatus::Queued;
        }
        return JobStatus::Submitted;
    }
    if parts.iter().all(|s| *s == P::Failed) {
        JobStatus::Failed
    } else if parts.contains(&P::Cancelled) {
        JobStatus::Cancelled
    } else if parts.contains(&P::Expired) {
        JobStatus::Expired
    } else {
        JobStatus::Completed
    }
}

impl BatchManager<'_> {
    /// Refreshes a job from its provider (finishing an interrupted submission, continuing a
    /// local job) and returns it with updated status and counts.
    pub async fn check_job_status(&mut self, job_id: &str) -> anyhow::Result<BatchJob> {
        let job = self.job(job_id)?;
        // Ended jobs have nothing left to ask the provider (and need no key to be shown).
        if !job.status.is_active() {
            return Ok(job);
        }
        let mut l = self.load(job)?;
        if l.job.status == JobStatus::Preparing {
            self.resume_submission(&mut l).await?;
        }
        if l.job.provider == Backend::Local {
            if l.job.status.is_active() {
                self.run_local(&mut l).await?;
            }
            return Ok(l.job);
        }
        self.refresh_parts(&mut l).await?;
        // Parts the provider's full queue refused wait again; queued parts go when there is
        // room (docs/batch.md, "Provider queue limits").
        self.requeue_refused(&mut l)?;
        if self
            .db
            .batch_parts(&l.job.job_id)?
            .iter()
            .any(|p| p.provider_batch_id.is_none() && p.status == PartStatus::Queued)
        {
            self.submit_parts(&mut l).await?;
        }
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
            if p.status.is_terminal() {
                continue;
            }
            match api.retrieve(&id).await {
                Ok(b) => {
                    api.apply(p, &b);
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
        let statuses: Vec<PartStatus> = parts.iter().map(|p| p.status).collect();
        let status = aggregate_status(&statuses);
        let all_collected = !parts.is_empty() && parts.iter().all(|p| p.collected_at.is_some());
        // A job whose every batch failed stays `failed` after collection (its items say why).
        job.status = if all_collected && !status.is_active() && status != JobStatus::Failed {
            JobStatus::Collected
        } else {
            status
        };
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
        if !job.status.is_active() && job.completed_at.is_none() {
            job.completed_at = Some(now());
        }
        self.db.update_batch_job(job)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use JobStatus as J;
    use PartStatus as P;

    #[test]
    fn statuses_map_and_aggregate() {
        for s in [
            P::Validating,
            P::InProgress,
            P::Finalizing,
            P::Completed,
            P::Failed,
            P::Expired,
            P::Cancelling,
            P::Cancelled,
        ] {
            assert_eq!(map_openai_status(s.as_str()), s);
        }
        assert_eq!(map_openai_status("something_new"), P::InProgress);
        let ended = |extra: Value| {
            let mut b = json!({"processing_status": "ended", "cancel_initiated_at": null,
                "request_counts": {"processing": 0, "succeeded": 2, "errored": 1, "canceled": 0, "expired": 0}});
            if let (Some(o), Value::Object(e)) = (b.as_object_mut(), extra) {
                o.extend(e);
            }
            map_anthropic_status(&b)
        };
        assert_eq!(ended(json!({})), P::Completed);
        assert_eq!(
            ended(json!({"request_counts": {"succeeded": 1, "expired": 2}})),
            P::Expired
        );
        assert_eq!(
            ended(json!({"cancel_initiated_at": "2024-09-24T18:37:24Z"})),
            P::Cancelled
        );
        assert_eq!(
            map_anthropic_status(&json!({"processing_status": "canceling"})),
            P::Cancelling
        );
        assert_eq!(
            map_anthropic_status(&json!({"processing_status": "in_progress"})),
            P::InProgress
        );
        assert_eq!(aggregate_status(&[]), J::Preparing);
        assert_eq!(
            aggregate_status(&[P::InProgress, P::Submitting]),
            J::Preparing
        );
        assert_eq!(
            aggregate_status(&[P::Completed, P::InProgress]),
            J::InProgress
        );
        assert_eq!(
            aggregate_status(&[P::Cancelling, P::InProgress]),
            J::Cancelling
        );
        assert_eq!(aggregate_status(&[P::Failed, P::Failed]), J::Failed);
        assert_eq!(aggregate_status(&[P::Failed, P::Completed]), J::Completed);
        assert_eq!(aggregate_status(&[P::Expired, P::Completed]), J::Expired);
        assert_eq!(aggregate_status(&[P::Expired, P::Cancelled]), J::Cancelled);
        assert_eq!(aggregate_status(&[P::Completed, P::Queued]), J::Queued);
        assert_eq!(aggregate_status(&[P::InProgress, P::Queued]), J::InProgress);
    }
}
