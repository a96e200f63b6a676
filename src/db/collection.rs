//! Collect bookkeeping tables: incremental cursors (`collect_cursors`), the REST ETag cache
//! (`http_etags`) and downloaded attachments (`attachments`).

use chrono::{DateTime, NaiveDateTime, Utc};
use duckdb::{params, OptionalExt};

use crate::db::Db;

/// A REST response kept for conditional requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedPage {
    pub etag: String,
    pub body: String,
    pub link_next: Option<String>,
}

/// One row of the `attachments` table.
#[derive(Debug, Clone, PartialEq)]
pub struct AttachmentRow {
    pub issue_id: String,
    pub comment_id: Option<i64>,
    pub url: String,
    /// Relative to the data directory; `None` when nothing was saved.
    pub file_path: Option<String>,
    pub content_type: Option<String>,
    pub size_bytes: Option<i64>,
    /// `downloaded`, `failed` or `skipped`.
    pub status: String,
    pub error: Option<String>,
    pub downloaded_at: Option<NaiveDateTime>,
}

impl Db {
    /// GitHub's time at the start of the last complete collect of this repository and scope.
    pub fn collect_cursor(
        &self,
        org: &str,
        repo: &str,
        scope: &str,
    ) -> anyhow::Result<Option<DateTime<Utc>>> {
        let at: Option<NaiveDateTime> = self
            .conn()?
            .query_row(
                "SELECT last_collected_at FROM collect_cursors WHERE org = ? AND repo = ? AND scope = ?",
                params![org, repo, scope],
                |r| r.get(0),
            )
            .optional()?;
        Ok(at.map(|t| t.and_utc()))
    }

    pub fn set_collect_cursor(
        &mut self,
        org: &str,
        repo: &str,
        scope: &str,
        at: DateTime<Utc>,
        issues_collected: u64,
    ) -> anyhow::Result<()> {
        self.conn()?.execute(
            "INSERT OR REPLACE INTO collect_cursors
                 (org, repo, scope, last_collected_at, issues_collected, updated_at)
             VALUES (?, ?, ?, ?, ?, current_timestamp)",
            params![org, repo, scope, at.naive_utc(), issues_collected],
        )?;
        Ok(())
    }

    pub fn cached_page(&self, url: &str) -> anyhow::Result<Option<CachedPage>> {
        Ok(self
            .conn()?
            .query_row(
                "SELECT etag, body, link_next FROM http_etags WHERE url = ?",
                [url],
                |r| {
                    Ok(CachedPage {
                        etag: r.get(0)?,
                        body: r.get(1)?,
                        link_next: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn store_page(&mut self, url: &str, page: &CachedPage) -> anyhow::Result<()> {
        self.conn()?.execute(
            "INSERT OR REPLACE INTO http_etags (url, etag, body, link_next, fetched_at)
             VALUES (?, ?, ?, ?, current_timestamp)",
            params![url, page.etag, page.body, page.link_next],
        )?;
        Ok(())
    }

    /// Replaces every attachment row of the given issues with `rows`, in one transaction.
    pub fn replace_attachments(
        &mut self,
        issue_ids: &[String],
        rows: &[AttachmentRow],
    ) -> anyhow::Result<()> {
        if issue_ids.is_empty() {
            return Ok(());
        }
        let tx = self.conn_mut()?.transaction()?;
        tx.execute_batch("CREATE OR REPLACE TEMP TABLE _stage_att (id VARCHAR)")?;
        {
            let mut app = tx.appender("_stage_att")?;
            for id in issue_ids {
                app.append_row([id])?;
            }
            app.flush()?;
        }
        tx.execute_batch("DELETE FROM attachments WHERE issue_id IN (SELECT id FROM _stage_att)")?;
        {
            // `id` comes from a sequence default, which the Appender does not apply: list the
            // columns explicitly. Attachments per page are few, so a prepared insert is enough.
            let mut stmt = tx.prepare(
                "INSERT INTO attachments (issue_id, comment_id, url, file_path, content_type,
                     size_bytes, status, error, downloaded_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )?;
            for a in rows {
                stmt.execute(params![
                    a.issue_id,
                    a.comment_id,
                    a.url,
                    a.file_path,
                    a.content_type,
                    a.size_bytes,
                    a.status,
                    a.error,
                    a.downloaded_at,
                ])?;
            }
        }
        tx.execute_batch("DROP TABLE _stage_att")?;
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_per_scope_and_replaced() {
        let mut db = Db::open_in_memory().unwrap();
        assert_eq!(db.collect_cursor("o", "r", "s").unwrap(), None);
        let t1 = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let t2 = DateTime::parse_from_rfc3339("2024-02-01T00:00:00Z")
            .unwrap()
            .to_utc();
        db.set_collect_cursor("o", "r", "s", t1, 3).unwrap();
        db.set_collect_cursor("o", "r", "s", t2, 0).unwrap();
        assert_eq!(db.collect_cursor("o", "r", "s").unwrap(), Some(t2));
        assert_eq!(db.collect_cursor("o", "r", "other").unwrap(), None);
    }

    #[test]
    fn etag_cache_round_trips() {
        let mut db = Db::open_in_memory().unwrap();
        let p = CachedPage {
            etag: "W/\"x\"".into(),
            body: "[]".into(),
            link_next: Some("http://h/next".into()),
        };
        db.store_page("http://h/a", &p).unwrap();
        assert_eq!(db.cached_page("http://h/a").unwrap(), Some(p));
        assert_eq!(db.cached_page("http://h/b").unwrap(), None);
    }

    #[test]
    fn attachments_of_an_issue_are_replaced() {
        let mut db = Db::open_in_memory().unwrap();
        let row = |url: &str| AttachmentRow {
            issue_id: "o/r#1".into(),
            comment_id: None,
            url: url.into(),
            file_path: None,
            content_type: None,
            size_bytes: None,
            status: "failed".into(),
            error: Some("x".into()),
            downloaded_at: None,
        };
        let ids = vec!["o/r#1".to_string()];
        db.replace_attachments(&ids, &[row("a"), row("b")]).unwrap();
        db.replace_attachments(&ids, &[row("c")]).unwrap();
        let n: i64 = db
            .conn()
            .unwrap()
            .query_row("SELECT count(*) FROM attachments", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }
}
