//! The `label_changes` ledger of `update-labels`: one row per label added, removed or created
//! and per comment posted (or planned, with `--dry-run`), with the issue's labels before and
//! after and GitHub's status code; and the step that marks a recommendation `applied` in the
//! same transaction as the rows of the changes that completed it.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use duckdb::{params, params_from_iter};

use crate::db::recommendations::{json_list, to_json_list, RecStatus};
use crate::db::Db;

/// One change sent to GitHub (or planned).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelChange {
    pub issue_id: String,
    pub recommendation_id: Option<i64>,
    /// `None` for a comment.
    pub label: Option<String>,
    /// `add`, `remove`, `create_label` or `comment`.
    pub action: &'static str,
    pub labels_before: Option<Vec<String>>,
    pub labels_after: Option<Vec<String>>,
    pub http_status: Option<u16>,
    pub error: Option<String>,
    pub applied_at: NaiveDateTime,
    pub dry_run: bool,
}

impl LabelChange {
    /// GitHub answered with `status`; `after` is the issue's labels it returned, if any.
    pub fn answered(mut self, status: u16, after: Option<&[String]>) -> Self {
        self.http_status = Some(status);
        self.labels_after = after.map(<[String]>::to_vec);
        self
    }

    /// Not done, and why.
    pub fn refused(mut self, why: &str) -> Self {
        self.error = Some(why.to_string());
        self
    }
}

impl Db {
    /// Records changes, and marks the recommendation `applied` when `applied` is given, all in
    /// one transaction: a recommendation is never applied without the rows that say how.
    pub fn record_label_changes(
        &mut self,
        changes: &[LabelChange],
        applied: Option<i64>,
    ) -> anyhow::Result<()> {
        let tx = self.conn_mut()?.transaction()?;
        {
            let mut stmt = tx.prepare(
                "INSERT INTO label_changes (issue_id, recommendation_id, label, action,
                     labels_before, labels_after, http_status, error, applied_at, dry_run)
                 VALUES (?, ?, ?, ?, ?::JSON, ?::JSON, ?, ?, ?, ?)",
            )?;
            for c in changes {
                stmt.execute(params![
                    c.issue_id,
                    c.recommendation_id,
                    c.label,
                    c.action,
                    c.labels_before.as_deref().map(to_json_list),
                    c.labels_after.as_deref().map(to_json_list),
                    c.http_status,
                    c.error,
                    c.applied_at,
                    c.dry_run,
                ])?;
            }
        }
        if let Some(id) = applied {
            tx.execute(
                "UPDATE recommendations SET status = ?, applied_at = now()::TIMESTAMP,
                     updated_at = now()::TIMESTAMP WHERE id = ?",
                params![RecStatus::Applied, id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Whether the explanatory comment of a recommendation was already posted (never twice).
    pub fn comment_posted(&self, recommendation_id: i64) -> anyhow::Result<bool> {
        Ok(self.conn()?.query_row(
            "SELECT EXISTS (SELECT 1 FROM label_changes WHERE recommendation_id = ?
                 AND action = 'comment' AND NOT dry_run AND http_status BETWEEN 200 AND 299)",
            [recommendation_id],
            |r| r.get(0),
        )?)
    }

    /// When the writes sent to GitHub since `since` went out (UTC), oldest first: the pacing
    /// of a new run starts from them, so two runs in one hour share GitHub's hourly budget.
    pub fn writes_since(&self, since: NaiveDateTime) -> anyhow::Result<Vec<NaiveDateTime>> {
        let mut stmt = self.conn()?.prepare(
            "SELECT applied_at FROM label_changes WHERE NOT dry_run AND http_status IS NOT NULL
                 AND applied_at >= ? ORDER BY applied_at",
        )?;
        let rows = stmt.query_map([since], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The stored labels of these issues (names), and the file each issue lives in.
    pub fn issue_labels(
        &self,
        ids: &[String],
    ) -> anyhow::Result<HashMap<String, (String, Vec<String>)>> {
        let mut out = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let marks = vec!["?"; ids.len()].join(", ");
        let sql = format!(
            "SELECT i.id, i.file_path,
                 coalesce((SELECT to_json(list(l.name ORDER BY l.name)) FROM labels l
                           WHERE l.issue_id = i.id)::VARCHAR, '[]')
             FROM issues i WHERE i.id IN ({marks})"
        );
        let mut stmt = self.conn()?.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(ids), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                json_list(r.get(2)?),
            ))
        })?;
        for row in rows {
            let (id, path, labels) = row?;
            out.insert(id, (path, labels));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(action: &'static str, status: Option<u16>, dry_run: bool) -> LabelChange {
        LabelChange {
            issue_id: "o/r#1".into(),
            recommendation_id: Some(7),
            label: None,
            action,
            labels_before: Some(vec!["bug".into()]),
            labels_after: None,
            http_status: status,
            error: None,
            applied_at: chrono::Utc::now().naive_utc(),
            dry_run,
        }
    }

    #[test]
    fn comments_count_once_posted_for_real_and_writes_feed_the_pacing() {
        let mut db = Db::open_in_memory().unwrap();
        db.record_label_changes(&[change("comment", None, true)], None)
            .unwrap();
        assert!(!db.comment_posted(7).unwrap());
        db.record_label_changes(&[change("comment", Some(403), false)], None)
            .unwrap();
        assert!(!db.comment_posted(7).unwrap());
        db.record_label_changes(&[change("comment", Some(201), false)], None)
            .unwrap();
        assert!(db.comment_posted(7).unwrap());
        let hour_ago = chrono::Utc::now().naive_utc() - chrono::Duration::hours(1);
        // The dry run is not a write; the refused and the posted comment were sent.
        assert_eq!(db.writes_since(hour_ago).unwrap().len(), 2);
    }
}
