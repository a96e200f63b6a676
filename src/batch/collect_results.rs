//! Collecting a job: download output AND error files (Anthropic: the results JSONL) into
//! `batch/output/`, join every line to its item by `custom_id` (never by order), validate each
//! answer exactly like real-time mode, and store valid ones in the same result files and rows
//! (mode `batch`, the job id, batch-discounted cost). Only open items are touched, and files
//! already downloaded are reused, so collecting twice changes nothing. Durability is per chunk
//! of lines, not per file: see `settle` below and docs/batch.md.

use std::collections::HashMap;
use std::io::BufRead;

use serde_json::Value;

use crate::ai::Usage;
use crate::batch::backend::{BatchBackend, Outcome};
use crate::batch::{crash_point, now, BatchManager, Loaded};
use crate::db::{
    Backend, BatchPart, IssueRef, ItemStatus, ItemUpdate, JobStatus, PartStatus, ResultRow,
};
use crate::error::user;
use crate::processors::Recommendation;
use crate::result_files::{self as results, Finished, Provenance};
use crate::store::atomic::sync_dir;
use crate::store::{make_durable, write_unsynced, RESULTS_DIR};

/// Lines per chunk: its result files are made durable together (one flush), then its rows and
/// item statuses commit. Bigger chunks mean fewer flushes; memory holds one chunk's lines.
const CHUNK: usize = 2_000;

/// DuckDB's share of a collect's memory. Without a cap its buffer pool keeps every block the
/// collect wrote (up to 80% of RAM), so peak memory grew with the job: 143 MB at 10,000
/// requests, 295 MB at 50,000 (docs/benchmarks.md). Beyond the cap it writes blocks out.
const COLLECT_MEMORY_MB: u64 = 96;

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
        self.db.limit_memory(COLLECT_MEMORY_MB)?;
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

    /// Reads a part's downloaded files and settles its items, a chunk of lines at a time.
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
            .open_part_items(&job_id, p.part)?
            .into_iter()
            .collect();
        let provenance = Provenance {
            processor: &l.plan.processor,
            model: &l.plan.model,
            mode: "batch",
            batch_job_id: Some(&job_id),
        };
        // Test hook: small chunks, and a stop after the second chunk's files are durable but
        // before its rows commit, as a kill there would.
        let crash = crate::env::crash_requested("collect");
        let mut chunk = Chunk {
            size: if crash { 2 } else { CHUNK },
            crash,
            ..Chunk::default()
        };
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
                chunk.lines.push((rel.clone(), n + 1, line));
                if chunk.lines.len() >= chunk.size {
                    self.settle(l, api, provenance, &mut open, &mut chunk, report)?;
                }
            }
        }
        self.settle(l, api, provenance, &mut open, &mut chunk, report)?;
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
        // From the stored rows, so a collect interrupted between two chunks still adds up.
        l.job.cost_actual = self.db.batch_job_result_cost(&job_id)?;
        self.db.update_batch_job(&l.job)?;
        Ok(())
    }

    /// Settles a chunk of lines (docs/batch.md, "Collect durability"):
    ///
    /// 1. every core parses its share of the lines; each is joined to its open item by
    ///    `custom_id` (a settled or unknown item is left alone: idempotence);
    /// 2. every core validates its share of the answers and writes their result files (and
    ///    failure records) without syncing each one;
    /// 3. the chunk's files are made durable together (one `syncfs` on Linux);
    /// 4. the rows commit, then the item statuses.
    ///
    /// A crash before 4 leaves the chunk's items open: the next collect reads the same lines
    /// from the downloaded output (the source of truth) and writes the same files and rows.
    fn settle(
        &mut self,
        l: &Loaded,
        api: &dyn BatchBackend,
        provenance: Provenance<'_>,
        open: &mut HashMap<String, IssueRef>,
        chunk: &mut Chunk,
        report: &mut CollectReport,
    ) -> anyhow::Result<()> {
        if chunk.lines.is_empty() {
            return Ok(());
        }
        let lines = std::mem::take(&mut chunk.lines);
        let parsed = on_every_core(&lines, |(rel, n, line)| {
            let Ok(v) = serde_json::from_slice::<Value>(line) else {
                return Err(format!("{rel} line {n}: not JSON; skipped"));
            };
            let Some(cid) = v["custom_id"].as_str().map(str::to_string) else {
                return Err(format!("{rel} line {n}: no custom_id; skipped"));
            };
            Ok((cid, api.outcome(v)))
        });
        drop(lines);
        let mut joined: Vec<(String, IssueRef, Outcome)> = Vec::with_capacity(parsed.len());
        for p in parsed {
            match p {
                Err(warning) => self.reporter.warn(&warning),
                Ok((cid, outcome)) => match open.remove(&cid) {
                    Some(issue) => joined.push((cid, issue, outcome)),
                    None => report.skipped_lines += 1,
                },
            }
        }
        let store = self.store;
        let done = on_every_core(&joined, |(cid, issue, outcome)| {
            let settled = match outcome {
                Outcome::Answer(body) => accept(store, l, issue, body, provenance)
                    .map_err(|reason| (ItemStatus::Failed, reason)),
                Outcome::Failed(r) => Err((ItemStatus::Failed, r.clone())),
                Outcome::Expired(r) => Err((ItemStatus::Expired, r.clone())),
                Outcome::Cancelled(r) => Err((ItemStatus::Cancelled, r.clone())),
            };
            let written = match &settled {
                Ok((row, ..)) => Some(row.file_path.clone()),
                Err((ItemStatus::Failed, reason)) => {
                    results::write_failure_with(store, issue, provenance, reason, 1, write_unsynced)
                        .ok()
                }
                Err(_) => None,
            };
            (cid.clone(), issue.id.clone(), settled, written)
        });
        drop(joined);
        // One flush for the whole chunk's files, then the folders' entries (the renames).
        let written: Vec<_> = done
            .iter()
            .filter_map(|d| d.3.as_deref().map(|rel| self.store.abs(rel)))
            .collect();
        make_durable(&self.store.abs(RESULTS_DIR), &written)?;
        let failures = self.store.abs(results::FAILURES_DIR);
        if !written.is_empty() && failures.is_dir() {
            sync_dir(&failures)?;
        }
        drop(written);
        let mut rows: Vec<(ResultRow, Vec<Recommendation>)> = Vec::new();
        let mut updates: Vec<ItemUpdate> = Vec::new();
        for (cid, issue_id, settled, _) in done {
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
        chunk.settled += 1;
        if chunk.crash && chunk.settled == 2 {
            crash_point("collect");
        }
        // Rows first: a crash in between leaves the items open, and the next collect stores
        // the same results again.
        self.db.save_results(&rows)?;
        self.db.update_batch_items(&l.job.job_id, &updates)?;
        Ok(())
    }
}

/// Lines read but not yet settled.
#[derive(Default)]
struct Chunk {
    lines: Vec<(String, usize, Vec<u8>)>,
    /// Lines per chunk.
    size: usize,
    /// Chunks settled so far (for the crash test hook).
    settled: usize,
    crash: bool,
}

/// `f` over `items` on every core (std scoped threads, contiguous shares), results in order.
/// A worker that panics returns nothing for its share; for collect that leaves those items
/// open for the next run.
fn on_every_core<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(2, usize::from)
        .min(items.len())
        .max(1);
    if threads == 1 {
        return items.iter().map(&f).collect();
    }
    let size = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(size)
            .map(|share| scope.spawn(move || share.iter().map(f).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// Parses and validates one answer like real-time mode, and writes its result file.
fn accept(
    store: &crate::store::Store,
    l: &Loaded,
    issue: &IssueRef,
    body: &Value,
    provenance: Provenance<'_>,
) -> Result<(ResultRow, Vec<Recommendation>, f64), String> {
    if issue.file_path.is_empty() {
        return Err(format!("issue {} is no longer stored", issue.id));
    }
    let answer = l
        .provider
        .parse_value(body)
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
    results::write_file_with(store, &doc, &row, issue, write_unsynced)
        .map_err(|e| format!("cannot store the result: {e:#}"))?;
    Ok((row, f.validated.recommendations, cost.unwrap_or(0.0)))
}
