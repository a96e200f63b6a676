//! Batch item rows (`batch_items`): one per issue of a job. Loaded with the Appender and
//! updated through a staged temp table, so a job of 50,000 issues costs a few statements.

use chrono::NaiveDateTime;
use duckdb::params;

use crate::db::batch_states::sql_list;
use crate::db::{BatchItem, BatchPart, Db, IssueRef, ItemStatus, ItemUpdate};

impl Db {
    /// Step 2 of a submission (see `batch/mod.rs`), its bookkeeping: the parts written to disk, each item's part (parts hold
    /// contiguous ranges of custom ids), and items that could not be prepared — one transaction.
    pub fn record_batch_parts(
        &mut self,
        job_id: &str,
        parts: &[(BatchPart, String, String)],
        failed: &[ItemUpdate],
    ) -> anyhow::Result<()> {
        let now = chrono::Utc::now().naive_utc();
        let tx = self.conn_mut()?.transaction()?;
        tx.execute("DELETE FROM batch_parts WHERE job_id = ?", params![job_id])?;
        for (p, first, last) in parts {
            insert_new_part(&tx, p)?;
            tx.execute(
                "UPDATE batch_items SET part = ?, status = 'pending', updated_at = ?
                 WHERE job_id = ? AND custom_id >= ? AND custom_id <= ? AND status = 'preparing'",
                params![p.part, now, job_id, first, last],
            )?;
        }
        stage_updates(&tx, failed)?;
        apply_staged(&tx, job_id, now)?;
        tx.commit()?;
        Ok(())
    }

    /// Sets the status (and reason) of many items at once.
    pub fn update_batch_items(
        &mut self,
        job_id: &str,
        updates: &[ItemUpdate],
    ) -> anyhow::Result<()> {
        if updates.is_empty() {
            return Ok(());
        }
        let now = chrono::Utc::now().naive_utc();
        let tx = self.conn_mut()?.transaction()?;
        stage_updates(&tx, updates)?;
        apply_staged(&tx, job_id, now)?;
        tx.commit()?;
        Ok(())
    }

    /// Marks every item of a part still in `from` statuses with `status` and `error`.
    pub fn settle_part_items(
        &mut self,
        job_id: &str,
        part: i32,
        from: &[ItemStatus],
        status: ItemStatus,
        error: Option<&str>,
    ) -> anyhow::Result<usize> {
        let now = chrono::Utc::now().naive_utc();
        let list = sql_list(from, ItemStatus::as_str);
        let n = self.conn()?.execute(
            &format!(
                "UPDATE batch_items SET status = ?, error = ?, updated_at = ?
                 WHERE job_id = ? AND part = ? AND status IN ({list})"
            ),
            params![status, error, now, job_id, part],
        )?;
        Ok(n)
    }

    pub fn batch_items(&self, job_id: &str) -> anyhow::Result<Vec<BatchItem>> {
        let mut stmt = self.conn()?.prepare(
            "SELECT job_id, issue_id, custom_id, part, status, error, updated_at
             FROM batch_items WHERE job_id = ? ORDER BY custom_id",
        )?;
        let rows = stmt.query_map(params![job_id], item_of)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Items of a job with their issue (file path), restricted to `statuses`. Items whose
    /// issue is no longer stored come back with an empty `file_path`.
    pub fn batch_item_issues(
        &self,
        job_id: &str,
        statuses: &[ItemStatus],
    ) -> anyhow::Result<Vec<(BatchItem, IssueRef)>> {
        let list = sql_list(statuses, ItemStatus::as_str);
        let sql = format!(
            "SELECT bi.job_id, bi.issue_id, bi.custom_id, bi.part, bi.status, bi.error, bi.updated_at,
                    coalesce(i.org, ''), coalesce(i.repo, ''), coalesce(i.number, 0),
                    coalesce(i.file_path, '')
             FROM batch_items bi LEFT JOIN issues i ON i.id = bi.issue_id
             WHERE bi.job_id = ? AND bi.status IN ({list})
             ORDER BY bi.custom_id"
        );
        let mut stmt = self.conn()?.prepare(&sql)?;
        let rows = stmt.query_map(params![job_id], |r| {
            let item = item_of(r)?;
            let issue = IssueRef {
                id: item.issue_id.clone(),
                org: r.get(7)?,
                repo: r.get(8)?,
                number: r.get::<_, i64>(9)?.max(0) as u64,
                file_path: r.get(10)?,
                has_result: false,
            };
            Ok((item, issue))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The open items of one part of a job: (custom id, issue).
    pub fn open_part_items(
        &self,
        job_id: &str,
        part: i32,
    ) -> anyhow::Result<Vec<(String, IssueRef)>> {
        Ok(self
            .batch_item_issues(job_id, ItemStatus::OPEN)?
            .into_iter()
            .filter(|(i, _)| i.part == part)
            .map(|(i, r)| (i.custom_id, r))
            .collect())
    }

    /// Item counts of a job by status.
    pub fn batch_item_counts(&self, job_id: &str) -> anyhow::Result<Vec<(ItemStatus, i64)>> {
        let mut stmt = self.conn()?.prepare(
            "SELECT status, count(*) FROM batch_items WHERE job_id = ? GROUP BY 1 ORDER BY 1",
        )?;
        let rows = stmt.query_map(params![job_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Item counts of one part: (completed, failed/expired/cancelled, still open).
    pub fn batch_part_item_counts(
        &self,
        job_id: &str,
        part: i32,
    ) -> anyhow::Result<(i64, i64, i64)> {
        Ok(self.conn()?.query_row(
            "SELECT count(*) FILTER (WHERE status = 'completed'),
                    count(*) FILTER (WHERE status IN ('failed', 'expired', 'cancelled')),
                    count(*) FILTER (WHERE status IN ('preparing', 'pending'))
             FROM batch_items WHERE job_id = ? AND part = ?",
            params![job_id, part],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?)
    }

    /// Moves every open item of a job into one part (a job turned local).
    pub fn reassign_open_items(&mut self, job_id: &str, part: i32) -> anyhow::Result<()> {
        self.conn()?.execute(
            "UPDATE batch_items SET part = ?, status = 'pending', updated_at = ?
             WHERE job_id = ? AND status IN ('preparing', 'pending')",
            params![part, chrono::Utc::now().naive_utc(), job_id],
        )?;
        Ok(())
    }

    /// Issues a job's retries (jobs whose parent it is) already took, with those jobs' ids.
    pub fn batch_retried_issues(
        &self,
        parent: &str,
    ) -> anyhow::Result<(std::collections::HashSet<String>, Vec<String>)> {
        let mut stmt = self.conn()?.prepare(
            "SELECT bi.issue_id, bj.job_id FROM batch_items bi
             JOIN batch_jobs bj ON bj.job_id = bi.job_id
             WHERE bj.parent_job_id = ? ORDER BY bj.created_at, bj.job_id",
        )?;
        let rows = stmt.query_map(params![parent], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut issues = std::collections::HashSet::new();
        let mut jobs: Vec<String> = Vec::new();
        for row in rows {
            let (issue, job) = row?;
            issues.insert(issue);
            if !jobs.contains(&job) {
                jobs.push(job);
            }
        }
        Ok((issues, jobs))
    }

    /// Items that could not be prepared (no part): they failed before submission.
    pub fn batch_unprepared_count(&self, job_id: &str) -> anyhow::Result<i64> {
        Ok(self.conn()?.query_row(
            "SELECT count(*) FROM batch_items WHERE job_id = ? AND part < 0",
            params![job_id],
            |r| r.get(0),
        )?)
    }
}

fn stage_updates(tx: &duckdb::Transaction<'_>, updates: &[ItemUpdate]) -> anyhow::Result<()> {
    tx.execute_batch(
        "CREATE OR REPLACE TEMP TABLE _stage_items (custom_id VARCHAR, status VARCHAR, error VARCHAR)",
    )?;
    let mut app = tx.appender("_stage_items")?;
    for u in updates {
        app.append_row(params![u.custom_id, u.status, u.error])?;
    }
    app.flush()?;
    Ok(())
}

fn apply_staged(
    tx: &duckdb::Transaction<'_>,
    job_id: &str,
    now: NaiveDateTime,
) -> anyhow::Result<()> {
    tx.execute(
        "UPDATE batch_items SET status = s.status, error = s.error, updated_at = ?
         FROM _stage_items s
         WHERE batch_items.job_id = ? AND batch_items.custom_id = s.custom_id",
        params![now, job_id],
    )?;
    tx.execute_batch("DROP TABLE _stage_items")?;
    Ok(())
}

/// A part just written to disk: nothing sent, nothing settled yet.
pub(super) fn insert_new_part(
    tx: &duckdb::Transaction<'_>,
    p: &BatchPart,
) -> duckdb::Result<usize> {
    tx.execute(
        "INSERT INTO batch_parts (job_id, part, status, request_count, bytes, input_path,
             created_at, updated_at, completed_count, failed_count, est_tokens)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?)",
        params![
            p.job_id,
            p.part,
            p.status,
            p.request_count,
            p.bytes,
            p.input_path,
            p.created_at,
            p.updated_at,
            p.est_tokens
        ],
    )
}

/// An item from its seven columns (job_id, issue_id, custom_id, part, status, error,
/// updated_at), first in the row.
fn item_of(r: &duckdb::Row<'_>) -> duckdb::Result<BatchItem> {
    Ok(BatchItem {
        job_id: r.get(0)?,
        issue_id: r.get(1)?,
        custom_id: r.get(2)?,
        part: r.get(3)?,
        status: r.get(4)?,
        error: r.get(5)?,
        updated_at: r.get(6)?,
    })
}
