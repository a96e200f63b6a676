//! The local executor: a batch job run by this tool itself with the real-time machinery (for
//! `rules`, and for compatible servers whose batch API answers 404). Same tables and statuses as
//! provider jobs; every finished item is stored at once, so a killed run resumes with the
//! unfinished items on the next `batch status` / `batch collect`.

use std::sync::Arc;

use futures::StreamExt;

use crate::batch::{crash_point, now, BatchManager, Loaded};
use crate::db::{ItemStatus, ItemUpdate, PartStatus};
use crate::realtime::{Engine, ItemResult};
use crate::result_files::{self as results, Provenance};

/// Requests in flight at once for a local job against a network provider.
const LOCAL_CONCURRENCY: usize = 8;
/// Issues labelled at once by an offline model (`rules`, `local`): CPU work, one per core of the
/// 2-core machines this is tuned on.
pub const OFFLINE_CONCURRENCY: usize = 2;
/// Item statuses are written in groups of this many (a crash re-runs at most one group).
const FLUSH_EVERY: usize = 50;

impl BatchManager<'_> {
    /// Runs every open item of a local job, storing results with mode `batch`.
    pub(crate) async fn run_local(&mut self, l: &mut Loaded) -> anyhow::Result<()> {
        let job_id = l.job.job_id.clone();
        let open = self.db.batch_item_issues(&job_id, ItemStatus::OPEN)?;
        let engine = Arc::new(Engine::new(l.plan.clone(), l.provider.clone())?);
        let concurrency = if engine.http.is_some() {
            LOCAL_CONCURRENCY
        } else {
            OFFLINE_CONCURRENCY
        };
        let mut missing = Vec::new();
        let mut runnable = Vec::new();
        for (item, issue) in open {
            if issue.file_path.is_empty() {
                missing.push(ItemUpdate {
                    custom_id: item.custom_id,
                    status: ItemStatus::Failed,
                    error: Some(format!("issue {} is no longer stored", item.issue_id)),
                });
            } else {
                runnable.push((item.custom_id, issue));
            }
        }
        self.db.update_batch_items(&job_id, &missing)?;
        let bar = self
            .reporter
            .progress(runnable.len() as u64, "batch (local)");
        let store = self.store.clone();
        let mut results = futures::stream::iter(runnable)
            .map(|(cid, issue)| {
                let engine = engine.clone();
                let store = store.clone();
                tokio::spawn(async move { (cid, engine.process(&store, issue).await) })
            })
            .buffer_unordered(concurrency);
        let provenance = Provenance {
            processor: &engine.processor,
            model: &engine.model,
            mode: "batch",
            batch_job_id: Some(&job_id),
        };
        let mut updates = Vec::new();
        let mut rows = Vec::new();
        let mut cost = 0.0;
        let mut stopped = None;
        let mut done = 0usize;
        // Test hook: stop dead after two stored items, as a kill would.
        let crash_after_two = crate::env::crash_requested("local");
        while let Some(joined) = results.next().await {
            let Ok((cid, outcome)) = joined else {
                continue;
            };
            bar.inc(1);
            match outcome {
                ItemResult::Done(f) => {
                    // The file now, the row with its group: a crash before the group is
                    // committed leaves the item open and it is redone (same file, same row).
                    let stored = results::build(&f, provenance).and_then(|(doc, row)| {
                        results::write_file(self.store, &doc, &row, &f.issue)?;
                        Ok(row)
                    });
                    match stored {
                        Ok(row) => {
                            rows.push((row, f.validated.recommendations.clone()));
                            cost += f.cost_usd.unwrap_or(0.0);
                            updates.push(ItemUpdate {
                                custom_id: cid,
                                status: ItemStatus::Completed,
                                error: None,
                            });
                        }
                        Err(e) => updates.push(ItemUpdate {
                            custom_id: cid,
                            status: ItemStatus::Failed,
                            error: Some(format!("cannot store the result: {e:#}")),
                        }),
                    }
                }
                ItemResult::Failed {
                    issue,
                    reason,
                    usage,
                    run_wide,
                    requests,
                } => {
                    cost += engine
                        .prices
                        .cost(&engine.model, &usage, false)
                        .unwrap_or(0.0);
                    if run_wide {
                        // Every other request would fail the same way: leave them open so a
                        // later `batch status` resumes once the cause is fixed.
                        stopped.get_or_insert(reason);
                        continue;
                    }
                    let _ =
                        results::write_failure(self.store, &issue, provenance, &reason, requests);
                    updates.push(ItemUpdate {
                        custom_id: cid,
                        status: ItemStatus::Failed,
                        error: Some(reason),
                    });
                }
                ItemResult::NotStarted(_) => {}
            }
            done += 1;
            if updates.len() >= FLUSH_EVERY || (crash_after_two && done == 2) {
                self.db.save_results(&rows)?;
                self.db.update_batch_items(&job_id, &updates)?;
                rows.clear();
                updates.clear();
                if crash_after_two && done == 2 {
                    crash_point("local");
                }
            }
            if stopped.is_some() {
                break;
            }
        }
        drop(results);
        bar.finish_and_clear();
        self.db.save_results(&rows)?;
        self.db.update_batch_items(&job_id, &updates)?;
        self.db
            .discover_after_store(&l.plan.processor, self.reporter);
        l.job.cost_actual = Some(((l.job.cost_actual.unwrap_or(0.0) + cost) * 1e6).round() / 1e6);
        let mut parts = self.db.batch_parts(&job_id)?;
        let mut open_left = 0;
        for p in parts.iter_mut() {
            let (c, f, o) = self.db.batch_part_item_counts(&job_id, p.part)?;
            p.completed_count = c;
            p.failed_count = f;
            open_left += o;
            if o == 0 && p.status != PartStatus::Cancelled {
                p.status = PartStatus::Completed;
                p.collected_at = Some(now());
            }
            p.error_message = stopped.clone();
            p.updated_at = Some(now());
            self.db.upsert_batch_part(p)?;
        }
        if open_left == 0 {
            l.job.collected_at.get_or_insert_with(now);
        }
        self.reaggregate(&mut l.job, &parts)?;
        if let Some(reason) = stopped {
            return Err(crate::error::user(format!(
                "local job {job_id} stopped after a run-wide error; {open_left} item(s) left open \
                 (`batch status {job_id}` resumes them): {reason}"
            )));
        }
        Ok(())
    }
}
