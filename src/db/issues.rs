//! Issue content tables (`issues`, `labels`, `comments`) and the `issue_files` sync ledger.
//! Loads are bulk: ids to replace go through a temp table, rows through DuckDB's Appender.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use duckdb::{params, Appender, Transaction};

use crate::db::Db;
use crate::store::StoredIssue;

/// What sync last saw of an issue file (stat + content hash), keyed by its relative path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub file_path: String,
    pub issue_id: String,
    pub size: i64,
    pub mtime_ns: i64,
    pub sha256: String,
}

/// A parsed issue file ready to load.
#[derive(Debug, Clone)]
pub struct LoadedIssue {
    pub file: FileRecord,
    pub issue: StoredIssue,
}

#[cfg(test)]
impl LoadedIssue {
    /// The issue as if read from its file in the store (unit-test fixture).
    pub fn fixture(issue: StoredIssue) -> Self {
        let i = &issue.issue;
        LoadedIssue {
            file: FileRecord {
                file_path: format!(
                    "issues/{}_{}_issue_{}.json",
                    issue.org, issue.repo, i.number
                ),
                issue_id: issue.key(),
                size: 1,
                mtime_ns: 1,
                sha256: "x".into(),
            },
            issue,
        }
    }
}

impl Db {
    /// The whole sync ledger, keyed by file path.
    pub fn file_records(&self) -> anyhow::Result<HashMap<String, FileRecord>> {
        let mut stmt = self
            .conn()?
            .prepare("SELECT file_path, issue_id, size, mtime_ns, sha256 FROM issue_files")?;
        let rows = stmt.query_map([], |r| {
            Ok(FileRecord {
                file_path: r.get(0)?,
                issue_id: r.get(1)?,
                size: r.get(2)?,
                mtime_ns: r.get(3)?,
                sha256: r.get(4)?,
            })
        })?;
        let mut out = HashMap::new();
        for r in rows {
            let r = r?;
            out.insert(r.file_path.clone(), r);
        }
        Ok(out)
    }

    /// Replaces the given issues (rows, labels, comments, ledger entries) in one transaction.
    pub fn replace_issues(&mut self, loaded: &[LoadedIssue]) -> anyhow::Result<()> {
        if loaded.is_empty() {
            return Ok(());
        }
        let now = chrono::Utc::now().naive_utc();
        let tx = self.conn_mut()?.transaction()?;
        stage_ids(&tx, loaded.iter().map(|l| l.issue.key()))?;
        stage_paths(&tx, loaded.iter().map(|l| l.file.file_path.clone()))?;
        tx.execute_batch(
            "DELETE FROM labels WHERE issue_id IN (SELECT id FROM _stage_ids);
             DELETE FROM comments WHERE issue_id IN (SELECT id FROM _stage_ids);
             DELETE FROM issues WHERE id IN (SELECT id FROM _stage_ids);
             DELETE FROM issue_files WHERE file_path IN (SELECT file_path FROM _stage_paths)
                OR issue_id IN (SELECT id FROM _stage_ids);",
        )?;
        {
            let mut issues = tx.appender("issues")?;
            let mut labels = tx.appender("labels")?;
            let mut comments = tx.appender("comments")?;
            let mut files = tx.appender("issue_files")?;
            for l in loaded {
                append_issue(&mut issues, &mut labels, &mut comments, l)?;
                let f = &l.file;
                files.append_row(params![
                    f.file_path,
                    f.issue_id,
                    f.size,
                    f.mtime_ns,
                    f.sha256,
                    now
                ])?;
            }
            issues.flush()?;
            labels.flush()?;
            comments.flush()?;
            files.flush()?;
        }
        tx.execute_batch("DROP TABLE _stage_ids; DROP TABLE _stage_paths;")?;
        tx.commit()?;
        Ok(())
    }

    /// Records a new stat for files whose content hash did not change (after `touch`, a copy
    /// or a checkout every file can be in this state, so this is a bulk update too).
    pub fn touch_files(&mut self, records: &[FileRecord]) -> anyhow::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let tx = self.conn_mut()?.transaction()?;
        tx.execute_batch(
            "CREATE OR REPLACE TEMP TABLE _stage_stat (file_path VARCHAR, size BIGINT, mtime_ns BIGINT)",
        )?;
        {
            let mut app = tx.appender("_stage_stat")?;
            for r in records {
                app.append_row(params![r.file_path, r.size, r.mtime_ns])?;
            }
            app.flush()?;
        }
        tx.execute_batch(
            "UPDATE issue_files SET size = s.size, mtime_ns = s.mtime_ns, synced_at = now()::TIMESTAMP
             FROM _stage_stat s WHERE issue_files.file_path = s.file_path;
             DROP TABLE _stage_stat;",
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Forgets files that disappeared from disk, with the issues they held. AI results are kept:
    /// they are paid-for work and stay valid if the issue comes back.
    pub fn remove_files(&mut self, records: &[FileRecord]) -> anyhow::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let tx = self.conn_mut()?.transaction()?;
        stage_ids(&tx, records.iter().map(|r| r.issue_id.clone()))?;
        stage_paths(&tx, records.iter().map(|r| r.file_path.clone()))?;
        tx.execute_batch(
            "DELETE FROM labels WHERE issue_id IN (SELECT id FROM _stage_ids);
             DELETE FROM comments WHERE issue_id IN (SELECT id FROM _stage_ids);
             DELETE FROM issues WHERE id IN (SELECT id FROM _stage_ids);
             DELETE FROM issue_files WHERE file_path IN (SELECT file_path FROM _stage_paths);
             DROP TABLE _stage_ids; DROP TABLE _stage_paths;",
        )?;
        tx.commit()?;
        Ok(())
    }
}

fn stage_ids(tx: &Transaction<'_>, ids: impl Iterator<Item = String>) -> anyhow::Result<()> {
    tx.execute_batch("CREATE OR REPLACE TEMP TABLE _stage_ids (id VARCHAR)")?;
    let mut app = tx.appender("_stage_ids")?;
    for id in ids {
        app.append_row([id])?;
    }
    app.flush()?;
    Ok(())
}

fn stage_paths(tx: &Transaction<'_>, paths: impl Iterator<Item = String>) -> anyhow::Result<()> {
    tx.execute_batch("CREATE OR REPLACE TEMP TABLE _stage_paths (file_path VARCHAR)")?;
    let mut app = tx.appender("_stage_paths")?;
    for p in paths {
        app.append_row([p])?;
    }
    app.flush()?;
    Ok(())
}

fn append_issue(
    issues: &mut Appender<'_>,
    labels: &mut Appender<'_>,
    comments: &mut Appender<'_>,
    l: &LoadedIssue,
) -> anyhow::Result<()> {
    let s = &l.issue;
    let i = &s.issue;
    let id = s.key();
    let comment_count = i.comment_count.unwrap_or(0).max(i.comments.len() as u64);
    // Characters as DuckDB's length() counts them (code points): the dry run's estimate.
    let chars = |t: &Option<String>| t.as_deref().map_or(0, |t| t.chars().count());
    let text_chars = i.title.chars().count()
        + chars(&i.body)
        + i.comments.iter().map(|c| chars(&c.body)).sum::<usize>();
    issues.append_row(params![
        id,
        s.org,
        s.repo,
        i.number,
        i.id,
        i.title,
        i.body,
        i.state,
        i.user.as_ref().map(|u| u.login.as_str()),
        i.user.as_ref().and_then(|u| u.id),
        i.html_url,
        comment_count,
        i.labels.len() as u64,
        ts(i.created_at.as_deref()),
        ts(i.updated_at.as_deref()),
        ts(i.closed_at.as_deref()),
        ts(Some(s.metadata.collection_timestamp.as_str())),
        l.file.file_path,
        text_chars as u64,
    ])?;
    for lab in &i.labels {
        labels.append_row(params![id, lab.name, lab.color, lab.description])?;
    }
    for c in &i.comments {
        comments.append_row(params![
            c.id,
            id,
            c.user.as_ref().map(|u| u.login.as_str()),
            c.user.as_ref().and_then(|u| u.id),
            c.body,
            ts(c.created_at.as_deref()),
            ts(c.updated_at.as_deref()),
        ])?;
    }
    Ok(())
}

/// GitHub timestamps are RFC 3339; the original tool also wrote naive ISO strings. Anything
/// unreadable becomes NULL rather than failing the whole file.
pub fn ts(s: Option<&str>) -> Option<NaiveDateTime> {
    let s = s?.trim();
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.naive_utc())
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Comment, Issue, Label, Metadata, User};

    fn loaded(n: u64, title: &str, comments: usize) -> LoadedIssue {
        let issue = StoredIssue {
            org: "o".into(),
            repo: "r".into(),
            issue: Issue {
                number: n,
                title: title.into(),
                body: Some("b".into()),
                state: "open".into(),
                labels: vec![Label {
                    name: "bug".into(),
                    color: None,
                    description: None,
                }],
                user: Some(User {
                    login: "u".into(),
                    id: Some(1),
                }),
                comments: (0..comments)
                    .map(|c| Comment {
                        id: (n * 100 + c as u64) as i64,
                        user: None,
                        body: Some("c".into()),
                        created_at: Some("2024-01-01T00:00:00Z".into()),
                        updated_at: None,
                    })
                    .collect(),
                created_at: Some("2024-01-01T00:00:00Z".into()),
                updated_at: Some("2024-01-02T00:00:00+02:00".into()),
                ..Default::default()
            },
            metadata: Metadata::now(),
        };
        LoadedIssue::fixture(issue)
    }

    fn count(db: &Db, sql: &str) -> i64 {
        db.conn().unwrap().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn replacing_an_issue_replaces_its_children_in_one_transaction() {
        let mut db = Db::open_in_memory().unwrap();
        db.replace_issues(&[loaded(1, "a", 3), loaded(2, "b", 1)])
            .unwrap();
        assert_eq!(count(&db, "SELECT count(*) FROM comments"), 4);
        db.replace_issues(&[loaded(1, "a2", 1)]).unwrap();
        assert_eq!(count(&db, "SELECT count(*) FROM issues"), 2);
        assert_eq!(count(&db, "SELECT count(*) FROM comments"), 2);
        assert_eq!(count(&db, "SELECT count(*) FROM labels"), 2);
        assert_eq!(count(&db, "SELECT count(*) FROM issue_files"), 2);
        let t: String = db
            .conn()
            .unwrap()
            .query_row("SELECT title FROM issues WHERE id = 'o/r#1'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(t, "a2");
        // Offsets are normalised to UTC.
        let u: String = db
            .conn()
            .unwrap()
            .query_row(
                "SELECT updated_at::VARCHAR FROM issues WHERE id = 'o/r#1'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(u, "2024-01-01 22:00:00");
    }

    #[test]
    fn removing_a_file_removes_its_issue_but_keeps_ai_results() {
        let mut db = Db::open_in_memory().unwrap();
        db.replace_issues(&[loaded(1, "a", 2)]).unwrap();
        db.conn().unwrap()
            .execute_batch(
                "INSERT INTO ai_results (issue_id, processor, model, provider, mode, result, created_at)
                 VALUES ('o/r#1', 'p', 'rules', 'rules', 'realtime', '{}', now())",
            )
            .unwrap();
        let rec = db.file_records().unwrap().into_values().collect::<Vec<_>>();
        db.remove_files(&rec).unwrap();
        assert_eq!(count(&db, "SELECT count(*) FROM issues"), 0);
        assert_eq!(count(&db, "SELECT count(*) FROM comments"), 0);
        assert_eq!(count(&db, "SELECT count(*) FROM ai_results"), 1);
    }
}
