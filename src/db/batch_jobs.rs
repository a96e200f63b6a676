//! Batch job tables (`batch_jobs`, `batch_parts`; items live in `batch_items.rs`): typed rows
//! for the batch engine, decoded into the states of `batch_states.rs` when read.

use chrono::NaiveDateTime;
use duckdb::{params, OptionalExt};
use serde_json::Value;

use crate::db::batch_states::sql_list;
pub use crate::db::batch_states::{Backend, ItemStatus, JobStatus, PartStatus};
use crate::db::Db;

/// One `batch_jobs` row.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchJob {
    pub job_id: String,
    pub parent_job_id: Option<String>,
    /// What runs the job (the `provider` column).
    pub provider: Backend,
    pub processor: String,
    /// The model string (`openai:gpt-4o-mini`, `rules`).
    pub model: String,
    pub status: JobStatus,
    pub issues_count: i64,
    pub completed_count: i64,
    pub failed_count: i64,
    pub created_at: NaiveDateTime,
    pub submitted_at: Option<NaiveDateTime>,
    pub completed_at: Option<NaiveDateTime>,
    pub collected_at: Option<NaiveDateTime>,
    pub cost_estimate: Option<f64>,
    pub cost_actual: Option<f64>,
    pub selection_query: Option<String>,
    pub source_command: Option<String>,
    pub error_message: Option<String>,
    /// How to rebuild the processor and model later (taxonomy, settings, prices).
    pub metadata: Value,
}

/// One `batch_parts` row: one provider batch of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchPart {
    pub job_id: String,
    pub part: i32,
    pub provider_batch_id: Option<String>,
    pub input_file_id: Option<String>,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub status: PartStatus,
    pub request_count: i64,
    pub bytes: i64,
    /// Relative to the data directory.
    pub input_path: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: Option<NaiveDateTime>,
    pub completed_count: i64,
    pub failed_count: i64,
    pub error_message: Option<String>,
    pub collected_at: Option<NaiveDateTime>,
    /// Estimated prompt tokens of its requests (what the provider's queue counts).
    pub est_tokens: i64,
}

impl BatchPart {
    /// A part as first recorded, before any provider knows it: `requests` requests in `status`,
    /// created now; the caller fills in what it knows more (input file, size, tokens).
    pub fn new(job_id: &str, part: i32, status: PartStatus, requests: i64) -> Self {
        let t = chrono::Utc::now().naive_utc();
        BatchPart {
            job_id: job_id.to_string(),
            part,
            provider_batch_id: None,
            input_file_id: None,
            output_file_id: None,
            error_file_id: None,
            status,
            request_count: requests,
            bytes: 0,
            input_path: None,
            created_at: t,
            updated_at: Some(t),
            completed_count: 0,
            failed_count: 0,
            error_message: None,
            collected_at: None,
            est_tokens: 0,
        }
    }
}

/// One `batch_items` row: one issue of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem {
    pub job_id: String,
    pub issue_id: String,
    pub custom_id: String,
    pub part: i32,
    pub status: ItemStatus,
    pub error: Option<String>,
    pub updated_at: Option<NaiveDateTime>,
}

/// A new status (and reason) for one item.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemUpdate {
    pub custom_id: String,
    pub status: ItemStatus,
    pub error: Option<String>,
}

const JOB_COLUMNS: &str = "job_id, parent_job_id, provider, processor, model, status, issues_count,
    completed_count, failed_count, created_at, submitted_at, completed_at, collected_at,
    cost_estimate, cost_actual, selection_query, source_command, error_message,
    coalesce(metadata::VARCHAR, '{}')";

const PART_COLUMNS: &str = "job_id, part, provider_batch_id, input_file_id, output_file_id,
    error_file_id, status, request_count, bytes, input_path, created_at, updated_at,
    coalesce(completed_count, 0), coalesce(failed_count, 0), error_message, collected_at,
    coalesce(est_tokens, 0)";

fn job_of(r: &duckdb::Row<'_>) -> duckdb::Result<BatchJob> {
    let metadata: String = r.get(18)?;
    Ok(BatchJob {
        job_id: r.get(0)?,
        parent_job_id: r.get(1)?,
        provider: r.get(2)?,
        processor: r.get(3)?,
        model: r.get(4)?,
        status: r.get(5)?,
        issues_count: r.get(6)?,
        completed_count: r.get(7)?,
        failed_count: r.get(8)?,
        created_at: r.get(9)?,
        submitted_at: r.get(10)?,
        completed_at: r.get(11)?,
        collected_at: r.get(12)?,
        cost_estimate: r.get(13)?,
        cost_actual: r.get(14)?,
        selection_query: r.get(15)?,
        source_command: r.get(16)?,
        error_message: r.get(17)?,
        metadata: serde_json::from_str(&metadata).unwrap_or(Value::Null),
    })
}

fn part_of(r: &duckdb::Row<'_>) -> duckdb::Result<BatchPart> {
    Ok(BatchPart {
        job_id: r.get(0)?,
        part: r.get(1)?,
        provider_batch_id: r.get(2)?,
        input_file_id: r.get(3)?,
        output_file_id: r.get(4)?,
        error_file_id: r.get(5)?,
        status: r.get(6)?,
        request_count: r.get(7)?,
        bytes: r.get(8)?,
        input_path: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
        completed_count: r.get(12)?,
        failed_count: r.get(13)?,
        error_message: r.get(14)?,
        collected_at: r.get(15)?,
        est_tokens: r.get(16)?,
    })
}

impl Db {
    /// Step 1 of a submission (see `batch/mod.rs`): the job row (status `preparing`) and one
    /// item per issue, in one transaction — except issues an active job of the same processor
    /// already holds open, which are claimed by that job and left out (their ids are
    /// returned). The check and the insert share the transaction (and the database's write
    /// lock), so two submissions at once never both take an issue. `job.issues_count` is set
    /// to what was inserted; when every issue is claimed nothing is written.
    pub fn insert_batch_job(
        &mut self,
        job: &mut BatchJob,
        items: &[BatchItem],
    ) -> anyhow::Result<Vec<String>> {
        let tx = self.conn_mut()?.transaction()?;
        tx.execute_batch("CREATE OR REPLACE TEMP TABLE _claim (issue_id VARCHAR)")?;
        {
            let mut app = tx.appender("_claim")?;
            for i in items {
                app.append_row(params![i.issue_id])?;
            }
            app.flush()?;
        }
        let claimed: Vec<String> = {
            let sql = format!(
                "SELECT DISTINCT c.issue_id FROM _claim c
                 JOIN batch_items bi ON bi.issue_id = c.issue_id
                 JOIN batch_jobs bj ON bj.job_id = bi.job_id
                 WHERE bj.processor = ? AND bj.status IN ({}) AND bi.status IN ({})
                 ORDER BY 1",
                sql_list(JobStatus::ACTIVE, JobStatus::as_str),
                sql_list(ItemStatus::OPEN, ItemStatus::as_str)
            );
            let mut stmt = tx.prepare(&sql)?;
            let rows = stmt.query_map(params![job.processor], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        tx.execute_batch("DROP TABLE _claim")?;
        let taken: std::collections::HashSet<&str> = claimed.iter().map(String::as_str).collect();
        let items: Vec<&BatchItem> = items
            .iter()
            .filter(|i| !taken.contains(i.issue_id.as_str()))
            .collect();
        if items.is_empty() {
            tx.rollback()?;
            return Ok(claimed);
        }
        job.issues_count = items.len() as i64;
        tx.execute(
            "INSERT INTO batch_jobs (job_id, parent_job_id, provider, processor, model, status,
                 issues_count, completed_count, failed_count, created_at, submitted_at,
                 completed_at, collected_at, cost_estimate, cost_actual, selection_query,
                 source_command, error_message, metadata)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?::JSON)",
            params![
                job.job_id,
                job.parent_job_id,
                job.provider,
                job.processor,
                job.model,
                job.status,
                job.issues_count,
                job.completed_count,
                job.failed_count,
                job.created_at,
                job.submitted_at,
                job.completed_at,
                job.collected_at,
                job.cost_estimate,
                job.cost_actual,
                job.selection_query,
                job.source_command,
                job.error_message,
                job.metadata.to_string(),
            ],
        )?;
        {
            let mut app = tx.appender("batch_items")?;
            for i in items {
                app.append_row(params![
                    i.job_id,
                    i.issue_id,
                    i.custom_id,
                    i.part,
                    i.status,
                    i.error,
                    i.updated_at
                ])?;
            }
            app.flush()?;
        }
        tx.commit()?;
        Ok(claimed)
    }

    /// Updates every mutable field of a job.
    pub fn update_batch_job(&mut self, job: &BatchJob) -> anyhow::Result<()> {
        self.conn()?.execute(
            "UPDATE batch_jobs SET provider = ?, status = ?, issues_count = ?, completed_count = ?,
                 failed_count = ?, submitted_at = ?, completed_at = ?, collected_at = ?,
                 cost_estimate = ?, cost_actual = ?, error_message = ?, metadata = ?::JSON
             WHERE job_id = ?",
            params![
                job.provider,
                job.status,
                job.issues_count,
                job.completed_count,
                job.failed_count,
                job.submitted_at,
                job.completed_at,
                job.collected_at,
                job.cost_estimate,
                job.cost_actual,
                job.error_message,
                job.metadata.to_string(),
                job.job_id,
            ],
        )?;
        Ok(())
    }

    /// Inserts or updates one part.
    pub fn upsert_batch_part(&mut self, p: &BatchPart) -> anyhow::Result<()> {
        self.conn()?.execute(
            "INSERT INTO batch_parts (job_id, part, provider_batch_id, input_file_id,
                 output_file_id, error_file_id, status, request_count, bytes, input_path,
                 created_at, updated_at, completed_count, failed_count, error_message, collected_at,
                 est_tokens)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (job_id, part) DO UPDATE SET
                 provider_batch_id = excluded.provider_batch_id,
                 input_file_id = excluded.input_file_id, output_file_id = excluded.output_file_id,
                 error_file_id = excluded.error_file_id, status = excluded.status,
                 request_count = excluded.request_count, bytes = excluded.bytes,
                 input_path = excluded.input_path, updated_at = excluded.updated_at,
                 completed_count = excluded.completed_count, failed_count = excluded.failed_count,
                 error_message = excluded.error_message, collected_at = excluded.collected_at,
                 est_tokens = excluded.est_tokens",
            params![
                p.job_id,
                p.part,
                p.provider_batch_id,
                p.input_file_id,
                p.output_file_id,
                p.error_file_id,
                p.status,
                p.request_count,
                p.bytes,
                p.input_path,
                p.created_at,
                p.updated_at,
                p.completed_count,
                p.failed_count,
                p.error_message,
                p.collected_at,
                p.est_tokens,
            ],
        )?;
        Ok(())
    }

    pub fn batch_job(&self, job_id: &str) -> anyhow::Result<Option<BatchJob>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM batch_jobs WHERE job_id = ?");
        Ok(self
            .conn()?
            .query_row(&sql, params![job_id], job_of)
            .optional()?)
    }

    /// Ids of jobs whose id starts with `prefix`, or whose provider batch id is `prefix`.
    pub fn batch_job_ids_matching(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let mut stmt = self.conn()?.prepare(
            "SELECT job_id FROM batch_jobs WHERE starts_with(job_id, ?)
             UNION
             SELECT job_id FROM batch_parts WHERE provider_batch_id = ?
             ORDER BY 1",
        )?;
        let rows = stmt.query_map(params![prefix, prefix], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Jobs, newest first; `statuses` limits to those statuses (empty = all).
    pub fn batch_jobs(
        &self,
        statuses: &[JobStatus],
        limit: Option<usize>,
    ) -> anyhow::Result<Vec<BatchJob>> {
        let filter = if statuses.is_empty() {
            String::new()
        } else {
            format!(
                "WHERE status IN ({})",
                sql_list(statuses, JobStatus::as_str)
            )
        };
        let limit = limit.map_or(String::new(), |n| format!("LIMIT {n}"));
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM batch_jobs {filter} ORDER BY created_at DESC, job_id {limit}"
        );
        let mut stmt = self.conn()?.prepare(&sql)?;
        let rows = stmt.query_map([], job_of)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn batch_parts(&self, job_id: &str) -> anyhow::Result<Vec<BatchPart>> {
        let sql = format!("SELECT {PART_COLUMNS} FROM batch_parts WHERE job_id = ? ORDER BY part");
        let mut stmt = self.conn()?.prepare(&sql)?;
        let rows = stmt.query_map(params![job_id], part_of)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Provider batch ids recorded for any job (to tell adopted batches from orphans).
    pub fn known_provider_batch_ids(&self) -> anyhow::Result<Vec<String>> {
        let mut stmt = self.conn()?.prepare(
            "SELECT provider_batch_id FROM batch_parts WHERE provider_batch_id IS NOT NULL",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// What the stored results of a job cost (`None` when it has none with a price).
    pub fn batch_job_result_cost(&self, job_id: &str) -> anyhow::Result<Option<f64>> {
        let c: Option<f64> = self.conn()?.query_row(
            "SELECT round(sum(cost_usd), 6) FROM ai_results WHERE batch_job_id = ?",
            params![job_id],
            |r| r.get(0),
        )?;
        Ok(c)
    }

    /// Deletes a job's rows (items, parts, job). Stored results are never touched.
    pub fn delete_batch_job(&mut self, job_id: &str) -> anyhow::Result<()> {
        let tx = self.conn_mut()?.transaction()?;
        tx.execute("DELETE FROM batch_items WHERE job_id = ?", params![job_id])?;
        tx.execute("DELETE FROM batch_parts WHERE job_id = ?", params![job_id])?;
        tx.execute("DELETE FROM batch_jobs WHERE job_id = ?", params![job_id])?;
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Microsecond precision, as DuckDB stores timestamps.
    fn t0() -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_700_000_000, 0)
            .unwrap()
            .naive_utc()
    }

    fn job(id: &str) -> BatchJob {
        BatchJob {
            job_id: id.into(),
            parent_job_id: None,
            provider: Backend::OpenAi,
            processor: "product-labeling".into(),
            model: "openai:gpt-4o-mini".into(),
            status: JobStatus::Preparing,
            issues_count: 3,
            completed_count: 0,
            failed_count: 0,
            created_at: t0(),
            submitted_at: None,
            completed_at: None,
            collected_at: None,
            cost_estimate: Some(0.1),
            cost_actual: None,
            selection_query: Some("SELECT 1".into()),
            source_command: Some("batch submit".into()),
            error_message: None,
            metadata: serde_json::json!({"k": "v"}),
        }
    }

    fn item(job: &str, n: u32) -> BatchItem {
        BatchItem {
            job_id: job.into(),
            issue_id: format!("o/r#{n}"),
            custom_id: format!("{job}-{n:07}"),
            part: -1,
            status: ItemStatus::Preparing,
            error: None,
            updated_at: None,
        }
    }

    #[test]
    fn jobs_parts_and_items_round_trip_and_update_in_bulk() {
        let mut db = Db::open_in_memory().unwrap();
        let mut j = job("abc123");
        let claimed = db
            .insert_batch_job(
                &mut j,
                &[item("abc123", 1), item("abc123", 2), item("abc123", 3)],
            )
            .unwrap();
        assert!(claimed.is_empty());
        // A second job of the processor cannot take issues the first holds open.
        let mut k = job("def456");
        let mut other = item("def456", 4);
        other.issue_id = "o/r#9".into();
        let claimed = db
            .insert_batch_job(&mut k, &[item("def456", 1), other])
            .unwrap();
        assert_eq!(claimed, vec!["o/r#1".to_string()]);
        assert_eq!(db.batch_job("def456").unwrap().unwrap().issues_count, 1);
        assert_eq!(db.batch_items("def456").unwrap().len(), 1);
        db.delete_batch_job("def456").unwrap();
        assert_eq!(db.batch_job("abc123").unwrap().unwrap(), j);
        assert_eq!(db.batch_job_ids_matching("ab").unwrap(), vec!["abc123"]);
        assert!(db.batch_job_ids_matching("zz").unwrap().is_empty());
        let now = t0();
        let part = |n: i32| BatchPart {
            bytes: 10,
            input_path: Some(format!("batch/input/abc123-{n}.jsonl")),
            created_at: now,
            updated_at: Some(now),
            ..BatchPart::new("abc123", n, PartStatus::Preparing, 1)
        };
        db.record_batch_parts(
            "abc123",
            &[
                (part(0), "abc123-0000001".into(), "abc123-0000001".into()),
                (part(1), "abc123-0000002".into(), "abc123-0000002".into()),
            ],
            &[ItemUpdate {
                custom_id: "abc123-0000003".into(),
                status: ItemStatus::Failed,
                error: Some("unreadable".into()),
            }],
        )
        .unwrap();
        let items = db.batch_items("abc123").unwrap();
        let got: Vec<(i32, &str)> = items.iter().map(|i| (i.part, i.status.as_str())).collect();
        assert_eq!(got, vec![(0, "pending"), (1, "pending"), (-1, "failed")]);
        assert_eq!(db.batch_unprepared_count("abc123").unwrap(), 1);
        let mut p = part(1);
        p.provider_batch_id = Some("batch_1".into());
        p.status = PartStatus::InProgress;
        db.upsert_batch_part(&p).unwrap();
        assert_eq!(db.batch_parts("abc123").unwrap()[1], p);
        assert_eq!(
            db.batch_job_ids_matching("batch_1").unwrap(),
            vec!["abc123"]
        );
        assert_eq!(
            db.settle_part_items(
                "abc123",
                1,
                &[ItemStatus::Pending],
                ItemStatus::Expired,
                Some("x")
            )
            .unwrap(),
            1
        );
        assert_eq!(db.batch_part_item_counts("abc123", 1).unwrap(), (0, 1, 0));
        assert_eq!(db.batch_part_item_counts("abc123", 0).unwrap(), (0, 0, 1));
        db.delete_batch_job("abc123").unwrap();
        assert!(db.batch_job("abc123").unwrap().is_none());
        assert!(db.batch_items("abc123").unwrap().is_empty());
    }
}
