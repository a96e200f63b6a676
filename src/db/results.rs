//! AI result tables (`ai_results`, `ai_recommendations`): choosing issues to process and storing
//! results. One result per (issue, processor); storing again replaces it and its recommendations.

use chrono::NaiveDateTime;
use duckdb::{params, params_from_iter, Transaction};

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
    /// Issues of an organisation (optionally one repository, optionally one issue), in a stable
    /// order, each marked with whether `processor` already has a result for it.
    pub fn issues_for_processing(
        &self,
        org: &str,
        repo: Option<&str>,
        number: Option<u64>,
        processor: &str,
    ) -> anyhow::Result<Vec<IssueRef>> {
        // GitHub names are case-insensitive.
        let mut stmt = self.conn.prepare(
            "SELECT i.id, i.org, i.repo, i.number, i.file_path, r.issue_id IS NOT NULL
             FROM issues i
             LEFT JOIN ai_results r ON r.issue_id = i.id AND r.processor = ?
             WHERE lower(i.org) = lower(?)
               AND (?::VARCHAR IS NULL OR lower(i.repo) = lower(?::VARCHAR))
               AND (?::BIGINT IS NULL OR i.number = ?::BIGINT)
             ORDER BY i.org, i.repo, i.number",
        )?;
        let number = number.map(|n| n as i64);
        let rows = stmt.query_map(params![processor, org, repo, repo, number, number], |r| {
            Ok(IssueRef {
                id: r.get(0)?,
                org: r.get(1)?,
                repo: r.get(2)?,
                number: r.get::<_, i64>(3)? as u64,
                file_path: r.get(4)?,
                has_result: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Stores results with their recommendations in one transaction: an existing result of the
    /// same (issue, processor) is replaced, and so are its recommendations.
    pub fn save_results(
        &mut self,
        items: &[(ResultRow, Vec<Recommendation>)],
    ) -> anyhow::Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        for (row, recs) in items {
            upsert_result(&tx, row)?;
            replace_recommendations(&tx, row, recs)?;
        }
        tx.commit()?;
        Ok(())
    }
}

fn upsert_result(tx: &Transaction<'_>, r: &ResultRow) -> anyhow::Result<()> {
    tx.execute(
        "INSERT INTO ai_results (issue_id, processor, processor_version, model, provider, mode,
             confidence, result, prompt_tokens, cached_tokens, completion_tokens, cost_usd,
             processing_time_ms, created_at, file_path, batch_job_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?::JSON, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (issue_id, processor) DO UPDATE SET
             processor_version = excluded.processor_version, model = excluded.model,
             provider = excluded.provider, mode = excluded.mode, confidence = excluded.confidence,
             result = excluded.result, prompt_tokens = excluded.prompt_tokens,
             cached_tokens = excluded.cached_tokens, completion_tokens = excluded.completion_tokens,
             cost_usd = excluded.cost_usd, processing_time_ms = excluded.processing_time_ms,
             created_at = excluded.created_at, file_path = excluded.file_path,
             batch_job_id = excluded.batch_job_id",
        params![
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
        ],
    )?;
    Ok(())
}

fn replace_recommendations(
    tx: &Transaction<'_>,
    r: &ResultRow,
    recs: &[Recommendation],
) -> anyhow::Result<()> {
    tx.execute(
        "DELETE FROM ai_recommendations WHERE issue_id = ? AND processor = ?",
        params![r.issue_id, r.processor],
    )?;
    if recs.is_empty() {
        return Ok(());
    }
    // A handful of rows per result: one multi-row INSERT (the Appender cannot fill the id
    // column's sequence default).
    let placeholders = vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; recs.len()].join(", ");
    let sql = format!(
        "INSERT INTO ai_recommendations (issue_id, processor, kind, value, confidence, reasoning,
             created_at, batch_job_id) VALUES {placeholders}"
    );
    let mut values: Vec<duckdb::types::Value> = Vec::with_capacity(recs.len() * 8);
    let text = |s: &str| duckdb::types::Value::Text(s.to_string());
    let opt_text = |s: Option<&str>| s.map_or(duckdb::types::Value::Null, text);
    for rec in recs {
        values.push(text(&r.issue_id));
        values.push(text(&r.processor));
        values.push(text(&rec.kind));
        values.push(text(&rec.value));
        values.push(
            rec.confidence
                .map_or(duckdb::types::Value::Null, duckdb::types::Value::Double),
        );
        values.push(opt_text(rec.reasoning.as_deref()));
        values.push(duckdb::types::Value::Timestamp(
            duckdb::types::TimeUnit::Microsecond,
            r.created_at.and_utc().timestamp_micros(),
        ));
        values.push(opt_text(r.batch_job_id.as_deref()));
    }
    tx.execute(&sql, params_from_iter(values))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(issue: &str, confidence: f64) -> ResultRow {
        ResultRow {
            issue_id: issue.into(),
            processor: "product-labeling".into(),
            processor_version: "1.0.0".into(),
            model: "rules".into(),
            provider: "rules".into(),
            mode: "realtime".into(),
            confidence,
            result_json: format!("{{\"analysis\":{{\"confidence\":{confidence}}}}}"),
            prompt_tokens: 10,
            cached_tokens: 2,
            completion_tokens: 3,
            cost_usd: Some(0.5),
            processing_time_ms: 7,
            created_at: chrono::Utc::now().naive_utc(),
            file_path: "results/x.json".into(),
            batch_job_id: None,
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
        db.conn.query_row(sql, [], |r| r.get(0)).unwrap()
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
            .conn
            .query_row(
                "SELECT confidence FROM ai_results WHERE issue_id = 'o/r#1'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(c, 0.8);
        let v: String = db
            .conn
            .query_row(
                "SELECT result->>'$.analysis.confidence' FROM ai_results WHERE issue_id = 'o/r#1'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(v, "0.8");
        let values: String = db
            .conn
            .query_row(
                "SELECT string_agg(value, ',' ORDER BY value) FROM ai_recommendations",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(values, "c,z");
    }
}
