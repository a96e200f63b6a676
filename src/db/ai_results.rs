//! AI result tables (`ai_results`, `ai_recommendations`): choosing issues to process and storing
//! results. One result per (issue, processor); storing again replaces it and its recommendations.

use chrono::NaiveDateTime;
use std::collections::HashMap;

use duckdb::params;

use crate::db::Db;
use crate::processors::Recommendation;

/// An issue chosen for processing, with where its file lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRef {
    /// `org/repo#number`.
    pub id: String,
    pub org: String,
    pub repo: String,
    pub number: u64,
    /// Relative to the data directory.
    pub file_path: String,
    /// Whether a result of the processor already exists.
    pub has_result: bool,
}

/// One `ai_results` row.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    pub issue_id: String,
    pub processor: String,
    pub processor_version: String,
    pub model: String,
    pub provider: String,
    /// `realtime` or `batch`.
    pub mode: String,
    pub confidence: f64,
    /// The whole result document (as written to the result file).
    pub result_json: String,
    pub prompt_tokens: i64,
    pub cached_tokens: i64,
    pub completion_tokens: i64,
    pub cost_usd: Option<f64>,
    pub processing_time_ms: i64,
    pub created_at: NaiveDateTime,
    pub file_path: String,
    pub batch_job_id: Option<String>,
}

impl Db {
    /// Stores results with their recommendations in one transaction: an existing result of the
    /// same (issue, processor) is replaced, and so are its recommendations. Rows go through
    /// Appender-filled temp tables and set-based statements, so the cost per call is nearly
    /// constant: a batch collection of 50,000 results is a handful of statements.
    pub fn save_results(
        &mut self,
        items: &[(ResultRow, Vec<Recommendation>)],
    ) -> anyhow::Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        // Within one call the last result of an (issue, processor) wins, as if saved in order.
        let mut last: HashMap<(&str, &str), usize> = HashMap::new();
        for (i, (row, _)) in items.iter().enumerate() {
            last.insert((row.issue_id.as_str(), row.processor.as_str()), i);
        }
        let mut keep: Vec<usize> = last.into_values().collect();
        keep.sort_unstable();
        let tx = self.conn_mut()?.transaction()?;
        tx.execute_batch(
            "CREATE OR REPLACE TEMP TABLE _stage_results (
                 issue_id VARCHAR, processor VARCHAR, processor_version VARCHAR, model VARCHAR,
                 provider VARCHAR, mode VARCHAR, confidence DOUBLE, result VARCHAR,
                 prompt_tokens BIGINT, cached_tokens BIGINT, completion_tokens BIGINT,
                 cost_usd DOUBLE, processing_time_ms BIGINT, created_at TIMESTAMP,
                 file_path VARCHAR, batch_job_id VARCHAR);
             CREATE OR REPLACE TEMP TABLE _stage_recs (
                 issue_id VARCHAR, processor VARCHAR, kind VARCHAR, value VARCHAR,
                 confidence DOUBLE, reasoning VARCHAR, created_at TIMESTAMP, batch_job_id VARCHAR);",
        )?;
        {
            let mut results = tx.appender("_stage_results")?;
            let mut recs = tx.appender("_stage_recs")?;
            for &i in &keep {
                let (r, rs) = &items[i];
                results.append_row(params![
                    r.issue_id,
                    r.processor,
                    r.processor_version,
                    r.model,
                    r.provider,
                    r.mode,
                    r.confidence,
                    r.result_json,
                    r.prompt_tokens,
                    r.cached_tokens,
                    r.completion_tokens,
                    r.cost_usd,
                    r.processing_time_ms,
                    r.created_at,
                    r.file_path,
                    r.batch_job_id,
                ])?;
                for rec in rs {
                    recs.append_row(params![
                        r.issue_id,
                        r.processor,
                        rec.kind,
                        rec.value,
                        rec.confidence,
                        rec.reasoning,
                        r.created_at,
                        r.batch_job_id,
                    ])?;
                }
            }
            results.flush()?;
            recs.flush()?;
        }
        tx.execute_batch(
            "INSERT INTO ai_results (issue_id, processor, processor_version, model, provider, mode,
                 confidence, result, prompt_tokens, cached_tokens, completion_tokens, cost_usd,
                 processing_time_ms, created_at, file_path, batch_job_id)
             SELECT issue_id, processor, processor_version, model, provider, mode, confidence,
                 result::JSON, prompt_tokens, cached_tokens, completion_tokens, cost_usd,
                 processing_time_ms, created_at, file_path, batch_job_id
             FROM _stage_results
             ON CONFLICT (issue_id, processor) DO UPDATE SET
                 processor_version = excluded.processor_version, model = excluded.model,
                 provider = excluded.provider, mode = excluded.mode,
                 confidence = excluded.confidence, result = excluded.result,
                 prompt_tokens = excluded.prompt_tokens, cached_tokens = excluded.cached_tokens,
                 completion_tokens = excluded.completion_tokens, cost_usd = excluded.cost_usd,
                 processing_time_ms = excluded.processing_time_ms,
                 created_at = excluded.created_at, file_path = excluded.file_path,
                 batch_job_id = excluded.batch_job_id;
             DELETE FROM ai_recommendations a USING _stage_results s
             WHERE a.issue_id = s.issue_id AND a.processor = s.processor;
             INSERT INTO ai_recommendations (issue_id, processor, kind, value, confidence,
                 reasoning, created_at, batch_job_id)
             SELECT issue_id, processor, kind, value, confidence, reasoning, created_at, batch_job_id
             FROM _stage_recs;
             DROP TABLE _stage_results;
             DROP TABLE _stage_recs;",
        )?;
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
impl ResultRow {
    /// A real-time `rules` result of `issue_id` with this document, as unit tests store it.
    pub fn fixture(issue_id: &str, confidence: f64, result_json: String) -> Self {
        ResultRow {
            issue_id: issue_id.into(),
            processor: "product-labeling".into(),
            processor_version: "1".into(),
            model: "rules".into(),
            provider: "rules".into(),
            mode: "realtime".into(),
            confidence,
            result_json,
            prompt_tokens: 0,
            cached_tokens: 0,
            completion_tokens: 0,
            cost_usd: None,
            processing_time_ms: 0,
            created_at: chrono::Utc::now().naive_utc(),
            file_path: "results/x.json".into(),
            batch_job_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(issue: &str, confidence: f64) -> ResultRow {
        let doc = format!("{{\"analysis\":{{\"confidence\":{confidence}}}}}");
        ResultRow {
            processor_version: "1.0.0".into(),
            prompt_tokens: 10,
            cached_tokens: 2,
            completion_tokens: 3,
            cost_usd: Some(0.5),
            processing_time_ms: 7,
            ..ResultRow::fixture(issue, confidence, doc)
        }
    }

    fn rec(value: &str) -> Recommendation {
        Recommendation {
            kind: "label".into(),
            value: value.into(),
            confidence: Some(0.9),
            reasoning: Some("because".into()),
        }
    }

    fn count(db: &Db, sql: &str) -> i64 {
        db.conn().unwrap().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn a_batch_with_repeats_keeps_the_last_result_of_each_issue() {
        let mut db = Db::open_in_memory().unwrap();
        let batch: Vec<_> = (0..200)
            .map(|i| {
                (
                    row(&format!("o/r#{}", i % 50), i as f64 / 200.0),
                    vec![rec(&format!("l{i}"))],
                )
            })
            .collect();
        db.save_results(&batch).unwrap();
        assert_eq!(count(&db, "SELECT count(*) FROM ai_results"), 50);
        assert_eq!(count(&db, "SELECT count(*) FROM ai_recommendations"), 50);
        let v: String = db
            .conn()
            .unwrap()
            .query_row(
                "SELECT value FROM ai_recommendations WHERE issue_id = 'o/r#7'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(v, "l157");
        db.save_results(&[]).unwrap();
    }

    #[test]
    fn saving_again_replaces_the_result_and_its_recommendations() {
        let mut db = Db::open_in_memory().unwrap();
        db.save_results(&[(row("o/r#1", 0.4), vec![rec("a"), rec("b")])])
            .unwrap();
        db.save_results(&[(row("o/r#2", 0.9), vec![rec("c")])])
            .unwrap();
        db.save_results(&[(row("o/r#1", 0.8), vec![rec("z")])])
            .unwrap();
        assert_eq!(count(&db, "SELECT count(*) FROM ai_results"), 2);
        assert_eq!(count(&db, "SELECT count(*) FROM ai_recommendations"), 2);
        let c: f64 = db
            .conn()
            .unwrap()
            .query_row(
                "SELECT confidence FROM ai_results WHERE issue_id = 'o/r#1'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(c, 0.8);
        let v: String = db
            .conn()
            .unwrap()
            .query_row(
                "SELECT result->>'$.analysis.confidence' FROM ai_results WHERE issue_id = 'o/r#1'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(v, "0.8");
        let values: String = db
            .conn()
            .unwrap()
            .query_row(
                "SELECT string_agg(value, ',' ORDER BY value) FROM ai_recommendations",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(values, "c,z");
    }
}
