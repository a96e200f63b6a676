//! Collecting a job: download output AND error files (Anthropic: the results JSONL) into
//! `batch/output/`, join every line to its item by `custom_id` (never by order), validate each
//! answer exactly like real-time mode, and store valid ones in the same result files and rows
//! (mode `batch`, the job id, batch-discounted cost). Only open items are touched, and files
//! already downloaded are reused, so collecting twice changes nothing.

use std::collections::HashMap;
use std::io::BufRead;

use serde_json::Value;

use crate::ai::Usage;
use crate::batch::backend::{BatchBackend, Outcome};
use crate::batch::{now, BatchManager, Loaded};
use crate::db::{
    Backend, BatchPart, IssueRef, ItemStatus, ItemUpdate, JobStatus, PartStatus, ResultRow,
};
use crate::error::user;
use crate::processors::Recommendation;
use crate::result_files::{self as results, Finished, Provenance};

/// Results and item updates are committed in groups of this many lines.
const CHUNK: usize = 500;
/// Threads writing the result files of a group.
const WRITERS: usize = 8;

/// What one `collect` did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CollectReport {
    pub job_id: String,
    pub status: Option<JobStatus>,
    /// Results stored by this run.
    pub stored: usize,
    /// Items marked failed / expired / cancelled by this run.
    pub failed: usize,
    /// Lines whose item was already settled (an earlier collect) or unknown.
    pub skipped_lines: usize,
    /// Parts still running at the provider (collect again later).
    pub parts_running: usize,
    pub cost_usd: f64,
    /// (issue, reason) of the failures of this run.
    pub failures: Vec<(String, String)>,
}

impl BatchManager<'_> {
    /// Stores the results of every ended part of a job (works on expired and cancelled jobs,
    /// keeping their partial results). Idempotent.
    pub async fn collect_results(&mut self, job_id: &str) -> anyhow::Result<CollectReport> {
        let mut job = self.check_job_status(job_id).await?;
        let mut report = CollectReport {
            job_id: job_id.to_string(),
            ..Default::default()
        };
        if job.provider == Backend::Local || job.status == JobStatus::Collected {
            report.status = Some(job.status);
            return Ok(report);
        }
        let mut l = self.load(job.clone())?;
        let Some(api) = l.api.clone() else {
            report.status = Some(job.status);
            return Ok(report);
        };
        let mut parts = self.db.batch_parts(job_id)?;
        for p in parts.iter_mut() {
            if p.collected_at.is_some() {
                continue;
            }
            if !p.status.is_terminal() || p.provider_batch_id.is_none() {
                if p.status != PartStatus::Cancelled {
                    report.parts_running += 1;
                }
                continue;
            }
            let files = api.fetch_results(self.store, job_id, p).await?;
            self.collect_part(&mut l, api.as_ref(), p, &files, &mut report)?;
        }
        job = l.job;
        self.db
            .discover_after_store(&l.plan.processor, self.reporter);
        self.reaggregate(&mut job, &parts)?;
        // A job that ended failed or cancelled never becomes `collected`, but once nothing is
        // left running its collection is done too: mark it, so `process-query batch-status`
        // does not ask the provider about it again on every run.
        if job.status == JobStatus::Collected
            || (report.parts_running == 0 && !job.status.is_active())
        {
            job.collected_at.get_or_insert_with(now);
            self.db.update_batch_job(&job)?;
        }
        report.status = Some(job.status);
        Ok(report)
    }

    /// Reads a part's downloaded files and settles its items.
    fn collect_part(
        &mut self,
        l: &mut Loaded,
        api: &dyn BatchBackend,
        p: &mut BatchPart,
        files: &[String],
        report: &mut CollectReport,
    ) -> anyhow::Result<()> {
        let job_id = l.job.job_id.clone();
        let mut open: HashMap<String, IssueRef> = self
            .db
            .batch_item_issues(&job_id, ItemStatus::OPEN)?
            .into_iter()
            .filter(|(i, _)| i.part == p.part)
            .map(|(i, r)| (i.custom_id, r))
            .collect();
        let provenance = Provenance {
            processor: &l.plan.processor,
            model: &l.plan.model,
            mode: "batch",
            batch_job_id: Some(&job_id),
        };
        let mut batch: Vec<(String, IssueRef, Outcome)> = Vec::with_capacity(CHUNK);
        for rel in files {
            let path = self.store.abs(rel);
            let file = std::fs::File::open(&path)
                .map_err(|e| user(format!("cannot read {}: {e}", path.display())))?;
            let reader = std::io::BufReader::with_capacity(256 * 1024, file);
            for (n, line) in reader.split(b'\n').enumerate() {
                let line =
                    line.map_err(|e| user(format!("cannot read {}: {e}", path.display())))?;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                    self.reporter
                        .warn(&format!("{rel} line {}: not JSON; skipped", n + 1));
                    continue;
                };
                let Some(cid) = v["custom_id"].as_str() else {
                    self.reporter
                        .warn(&format!("{rel} line {}: no custom_id; skipped", n + 1));
                    continue;
                };
                // Join on custom_id; a settled or unknown item is left alone (idempotence).
                let Some(issue) = open.remove(cid) else {
                    report.skipped_lines += 1;
                    continue;
                };
                batch.push((cid.to_string(), issue, api.outcome(&v)));
                if batch.len() >= CHUNK {
                    self.settle(l, provenance, &mut batch, report)?;
                }
            }
        }
        self.settle(l, provenance, &mut batch, report)?;
        // Items with no line: what the part's end says happened to them.
        let (status, reason) = match p.status {
            PartStatus::Expired => (
                ItemStatus::Expired,
                "the batch expired before this request ran".to_string(),
            ),
            PartStatus::Cancelled => (
                ItemStatus::Cancelled,
                "the batch was cancelled before this request ran".to_string(),
            ),
            PartStatus::Failed => (
                ItemStatus::Failed,
                format!(
                    "the provider rejected the batch: {}",
                    p.error_message.as_deref().unwrap_or("no reason given")
                ),
            ),
            _ => (
                ItemStatus::Failed,
                "the provider returned no result for this request".to_string(),
            ),
        };
        for (_, issue) in open.iter() {
            report.failures.push((issue.id.clone(), reason.clone()));
        }
        report.failed += open.len();
        self.db
            .settle_part_items(&job_id, p.part, ItemStatus::OPEN, status, Some(&reason))?;
        let (c, f, _) = self.db.batch_part_item_counts(&job_id, p.part)?;
        p.completed_count = c;
        p.failed_count = f;
        p.collected_at = Some(now());
        p.updated_at = Some(now());
        self.db.upsert_batch_part(p)?;
        // From the stored rows, so a collect interrupted between two groups still adds up.
        l.job.cost_actual = self.db.batch_job_result_cost(&job_id)?;
        self.db.update_batch_job(&l.job)?;
        Ok(())
    }

    /// Settles a group of joined lines: answers are parsed, validated and written to their
    /// result files in parallel (file writes are fsync-bound), then the rows and item statuses
    /// are committed (rows first: a crash in between leaves the items open, and the next
    /// collect stores the same results again).
    fn settle(
        &mut self,
        l: &Loaded,
        provenance: Provenance<'_>,
        batch: &mut Vec<(String, IssueRef, Outcome)>,
        report: &mut CollectReport,
    ) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let store = self.store;
        let work = |(cid, issue, outcome): &(String, IssueRef, Outcome)| {
            let settled = match outcome {
                Outcome::Answer(body) => accept(store, l, issue, body, provenance)
                    .map_err(|reason| (ItemStatus::Failed, reason)),
                Outcome::Failed(r) => Err((ItemStatus::Failed, r.clone())),
                Outcome::Expired(r) => Err((ItemStatus::Expired, r.clone())),
                Outcome::Cancelled(r) => Err((ItemStatus::Cancelled, r.clone())),
            };
            if let Err((ItemStatus::Failed, reason)) = &settled {
                let _ = results::write_failure(store, issue, provenance, reason, 1);
            }
            (cid.clone(), issue.id.clone(), settled)
        };
        let threads = WRITERS.min(batch.len()).max(1);
        let size = batch.len().div_ceil(threads);
        let done: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = batch
                .chunks(size)
                .map(|chunk| scope.spawn(move || chunk.iter().map(work).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let mut rows: Vec<(ResultRow, Vec<Recommendation>)> = Vec::new();
        let mut updates: Vec<ItemUpdate> = Vec::new();
        for (cid, issue_id, settled) in done {
            match settled {
                Ok((row, recs, cost)) => {
                    report.stored += 1;
                    report.cost_usd += cost;
                    rows.push((row, recs));
                    updates.push(ItemUpdate {
                        custom_id: cid,
                        status: ItemStatus::Completed,
                        error: None,
                    });
                }
                Err((status, reason)) => {
                    report.failed += 1;
                    report.failures.push((issue_id, reason.clone()));
                    updates.push(ItemUpdate {
                        custom_id: cid,
                        status,
                        error: Some(reason),
                    });
                }
            }
        }
        // A worker that panicked returns nothing: its items stay open for the next collect.
        batch.clear();
        self.db.save_results(&rows)?;
        self.db.update_batch_items(&l.job.job_id, &updates)?;
        Ok(())
    }
}

/// Parses and validates one answer like real-time mode, and writes its result file.
fn accept(
    store: &crate::store::Store,
    l: &Loaded,
    issue: &IssueRef,
    body: &[u8],
    provenance: Provenance<'_>,
) -> Result<(ResultRow, Vec<Recommendation>, f64), String> {
    if issue.file_path.is_empty() {
        return Err(format!("issue {} is no longer stored", issue.id));
    }
    let answer = l
        .provider
        .parse_response(body)
        .map_err(|e| format!("unusable response: {}", e.message))?;
    let validated = l
        .plan
        .processor
        .validate(&answer.value)
        .map_err(|why| format!("invalid answer: {why}"))?;
    let usage: Usage = answer.usage;
    let cost = l.plan.prices.cost(&l.plan.model, &usage, true);
    let f = Finished {
        issue: issue.clone(),
        validated,
        usage,
        cost_usd: cost,
        processing_time_ms: 0,
        requests: 1,
        response_id: answer.response_id,
        prompt_note: None,
    };
    let (doc, row) = results::build(&f, provenance).map_err(|e| format!("{e:#}"))?;
    results::write_file(store, &doc, &row, issue)
        .map_err(|e| format!("cannot store the result: {e:#}"))?;
    Ok((row, f.validated.recommendations, cost.unwrap_or(0.0)))
}
