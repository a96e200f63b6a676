//! Collecting a job: download output AND error files (Anthropic: the results JSONL) into
//! `batch/output/`, join every line to its item by `custom_id` (never by order), validate each
//! answer exactly like real-time mode, and store valid ones in the same result files and rows
//! (mode `batch`, the job id, batch-discounted cost). Only open items are touched, and files
//! already downloaded are reused, so collecting twice changes nothing.

use std::collections::HashMap;
use std::io::BufRead;

use serde_json::Value;

use crate::ai::http::decode_error;
use crate::ai::{ProviderKind, Usage};
use crate::batch::{errors_rel, is_terminal, now, output_rel, BatchManager, Loaded};
use crate::db::{BatchPart, IssueRef, ItemUpdate, ResultRow};
use crate::error::user;
use crate::processors::Recommendation;
use crate::results::{self, Finished, Provenance};

/// Results and item updates are committed in groups of this many lines.
const CHUNK: usize = 500;
/// Threads writing the result files of a group.
const WRITERS: usize = 8;

/// What one `collect` did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CollectReport {
    pub job_id: String,
    pub status: String,
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

/// What one output line says about its item.
enum Outcome {
    Answer(Vec<u8>),
    Failed(String),
    Expired(String),
    Cancelled(String),
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
        if job.provider == "local" || job.status == "collected" {
            report.status = job.status.clone();
            return Ok(report);
        }
        let mut l = self.load(job.clone())?;
        let Some(api) = l.api.clone() else {
            report.status = job.status;
            return Ok(report);
        };
        let mut parts = self.db.batch_parts(job_id)?;
        for p in parts.iter_mut() {
            if p.collected_at.is_some() {
                continue;
            }
            if !is_terminal(&p.status) || p.provider_batch_id.is_none() {
                if p.status != "cancelled" {
                    report.parts_running += 1;
                }
                continue;
            }
            let mut files = Vec::new();
            match api.kind {
                ProviderKind::Anthropic => {
                    let id = p.provider_batch_id.clone().unwrap_or_default();
                    let rel = output_rel(job_id, p.part);
                    if !self.ctx.store.abs(&rel).is_file() {
                        let batch = api
                            .anthropic_retrieve(&id)
                            .await
                            .map_err(|e| user(format!("cannot read batch {id}: {e}")))?;
                        let path = api.anthropic_results_path(&batch, &id);
                        api.download(&path, &self.ctx.store.abs(&rel))
                            .await
                            .map_err(|e| {
                                user(format!("cannot download the results of batch {id}: {e}"))
                            })?;
                    }
                    files.push(rel);
                }
                _ => {
                    for (file_id, rel) in [
                        (p.output_file_id.clone(), output_rel(job_id, p.part)),
                        (p.error_file_id.clone(), errors_rel(job_id, p.part)),
                    ] {
                        let Some(file_id) = file_id else { continue };
                        if !self.ctx.store.abs(&rel).is_file() {
                            api.download(
                                &format!("/files/{}/content", url_seg(&file_id)),
                                &self.ctx.store.abs(&rel),
                            )
                            .await
                            .map_err(|e| user(format!("cannot download file {file_id}: {e}")))?;
                        }
                        files.push(rel);
                    }
                }
            }
            self.collect_part(&mut l, p, &files, &mut report)?;
        }
        job = l.job;
        self.reaggregate(&mut job, &parts)?;
        // A job that ended failed or cancelled never becomes `collected`, but once nothing is
        // left running its collection is done too: mark it, so `process-query batch-status`
        // does not ask the provider about it again on every run.
        if job.status == "collected"
            || (report.parts_running == 0 && !super::is_active(&job.status))
        {
            job.collected_at.get_or_insert_with(now);
            self.db.update_batch_job(&job)?;
        }
        report.status = job.status;
        Ok(report)
    }

    /// Reads a part's downloaded files and settles its items.
    fn collect_part(
        &mut self,
        l: &mut Loaded,
        p: &mut BatchPart,
        files: &[String],
        report: &mut CollectReport,
    ) -> anyhow::Result<()> {
        let job_id = l.job.job_id.clone();
        let mut open: HashMap<String, IssueRef> = self
            .db
            .batch_item_issues(&job_id, &["pending", "preparing"])?
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
            let path = self.ctx.store.abs(rel);
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
                    self.ctx
                        .printer
                        .warn(&format!("{rel} line {}: not JSON; skipped", n + 1));
                    continue;
                };
                let Some(cid) = v["custom_id"].as_str() else {
                    self.ctx
                        .printer
                        .warn(&format!("{rel} line {}: no custom_id; skipped", n + 1));
                    continue;
                };
                // Join on custom_id; a settled or unknown item is left alone (idempotence).
                let Some(issue) = open.remove(cid) else {
                    report.skipped_lines += 1;
                    continue;
                };
                let outcome = match l.provider.kind() {
                    ProviderKind::Anthropic => anthropic_outcome(&v),
                    _ => openai_outcome(&v),
                };
                batch.push((cid.to_string(), issue, outcome));
                if batch.len() >= CHUNK {
                    self.settle(l, provenance, &mut batch, report)?;
                }
            }
        }
        self.settle(l, provenance, &mut batch, report)?;
        // Items with no line: what the part's end says happened to them.
        let (status, reason) = match p.status.as_str() {
            "expired" => (
                "expired",
                "the batch expired before this request ran".to_string(),
            ),
            "cancelled" => (
                "cancelled",
                "the batch was cancelled before this request ran".to_string(),
            ),
            "failed" => (
                "failed",
                format!(
                    "the provider rejected the batch: {}",
                    p.error_message.as_deref().unwrap_or("no reason given")
                ),
            ),
            _ => (
                "failed",
                "the provider returned no result for this request".to_string(),
            ),
        };
        for (_, issue) in open.iter() {
            report.failures.push((issue.id.clone(), reason.clone()));
        }
        report.failed += open.len();
        self.db.settle_part_items(
            &job_id,
            p.part,
            &["pending", "preparing"],
            status,
            Some(&reason),
        )?;
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
        let store = &self.ctx.store;
        let work = |(cid, issue, outcome): &(String, IssueRef, Outcome)| {
            let settled = match outcome {
                Outcome::Answer(body) => {
                    accept(store, l, issue, body, provenance).map_err(|reason| ("failed", reason))
                }
                Outcome::Failed(r) => Err(("failed", r.clone())),
                Outcome::Expired(r) => Err(("expired", r.clone())),
                Outcome::Cancelled(r) => Err(("cancelled", r.clone())),
            };
            if let Err(("failed", reason)) = &settled {
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
                        status: "completed".into(),
                        error: None,
                    });
                }
                Err((status, reason)) => {
                    report.failed += 1;
                    report.failures.push((issue_id, reason.clone()));
                    updates.push(ItemUpdate {
                        custom_id: cid,
                        status: status.into(),
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

fn url_seg(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

/// An OpenAI output/error line: `response` (status + body) or `error` (`batch_expired`, …).
fn openai_outcome(v: &Value) -> Outcome {
    if let Some(resp) = v.get("response").filter(|r| !r.is_null()) {
        let status = resp["status_code"].as_u64().unwrap_or(0);
        let body = serde_json::to_vec(&resp["body"]).unwrap_or_default();
        if status == 200 {
            return Outcome::Answer(body);
        }
        let e = decode_error(
            u16::try_from(status).unwrap_or(0),
            &reqwest::header::HeaderMap::new(),
            &body,
            &crate::ai::Secret::new(""),
        );
        return Outcome::Failed(format!("request failed: {e}"));
    }
    let code = v["error"]["code"].as_str().unwrap_or("error");
    let message = v["error"]["message"].as_str().unwrap_or("no message");
    let text = format!("{code}: {message}");
    match code {
        "batch_expired" => Outcome::Expired(text),
        "batch_cancelled" => Outcome::Cancelled(text),
        _ => Outcome::Failed(text),
    }
}

/// An Anthropic result line: `succeeded` / `errored` (double-nested error) / `canceled` /
/// `expired`.
fn anthropic_outcome(v: &Value) -> Outcome {
    let r = &v["result"];
    match r["type"].as_str() {
        Some("succeeded") => Outcome::Answer(serde_json::to_vec(&r["message"]).unwrap_or_default()),
        Some("errored") => {
            let e = &r["error"]["error"];
            Outcome::Failed(format!(
                "request failed: {}: {}",
                e["type"].as_str().unwrap_or("error"),
                e["message"].as_str().unwrap_or("no message")
            ))
        }
        Some("canceled") => {
            Outcome::Cancelled("the batch was cancelled before this request ran".into())
        }
        Some("expired") => Outcome::Expired("the batch expired before this request ran".into()),
        other => Outcome::Failed(format!("unknown result type {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn output_lines_map_to_outcomes() {
        let ok = json!({"custom_id": "a", "response": {"status_code": 200, "body": {"id": "x"}}, "error": null});
        assert!(matches!(openai_outcome(&ok), Outcome::Answer(b) if b == br#"{"id":"x"}"#));
        let bad = json!({"custom_id": "a", "response": {"status_code": 400, "request_id": "r",
            "body": {"error": {"message": "bad temperature", "type": "invalid_request_error", "param": null, "code": "unsupported_value"}}}, "error": null});
        assert!(
            matches!(openai_outcome(&bad), Outcome::Failed(r) if r.contains("bad temperature") && r.contains("400"))
        );
        let exp = json!({"custom_id": "a", "response": null, "error": {"code": "batch_expired", "message": "m"}});
        assert!(matches!(openai_outcome(&exp), Outcome::Expired(_)));
        let can = json!({"custom_id": "a", "response": null, "error": {"code": "batch_cancelled", "message": "m"}});
        assert!(matches!(openai_outcome(&can), Outcome::Cancelled(_)));
        let garbage = json!({"custom_id": "a"});
        assert!(matches!(openai_outcome(&garbage), Outcome::Failed(_)));
        let err = json!({"custom_id": "a", "result": {"type": "errored", "error": {"type": "error",
            "error": {"type": "invalid_request_error", "message": "max_tokens: too big"}}}});
        assert!(
            matches!(anthropic_outcome(&err), Outcome::Failed(r) if r.contains("max_tokens: too big"))
        );
        assert!(matches!(
            anthropic_outcome(&json!({"result": {"type": "expired"}})),
            Outcome::Expired(_)
        ));
        assert!(matches!(
            anthropic_outcome(&json!({"result": {"type": "canceled"}})),
            Outcome::Cancelled(_)
        ));
        assert!(matches!(
            anthropic_outcome(&json!({"result": {"type": "succeeded", "message": {}}})),
            Outcome::Answer(_)
        ));
        assert!(matches!(anthropic_outcome(&json!({})), Outcome::Failed(_)));
    }
}
