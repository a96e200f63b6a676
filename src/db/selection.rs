//! Running compiled pipeline selections (read-only; on the read-write connection only for the
//! program's own filters) and estimating their prompt sizes in SQL.

use duckdb::Connection;

use crate::db::{Db, IssueRef, ReadOnlyDb};
use crate::error::UserError;

/// Totals over a selection, computed by DuckDB without reading issue files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SelectionSize {
    pub issues: u64,
    /// Characters of title + body + comment bodies, each issue capped at the prompt budget (0 when not
    /// estimated).
    pub chars: u64,
}

/// Runs a compiled selection (columns: id, org, repo, number, file_path, has_result).
fn select_issues(conn: &Connection, sql: &str) -> anyhow::Result<Vec<IssueRef>> {
    let fail = |e: duckdb::Error| {
        anyhow::Error::new(e).context(UserError("selecting issues failed".into()))
    };
    let mut stmt = conn.prepare(sql).map_err(fail)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(IssueRef {
                id: r.get(0)?,
                org: r.get(1)?,
                repo: r.get(2)?,
                number: r.get::<_, i64>(3)?.max(0) as u64,
                file_path: r.get(4)?,
                has_result: r.get(5)?,
            })
        })
        .map_err(fail)?;
    rows.collect::<Result<_, _>>().map_err(fail)
}

impl Db {
    /// A selection this program compiled from its own filters (never user SQL, which runs on
    /// the read-only connection).
    pub fn select_compiled(&self, sql: &str) -> anyhow::Result<Vec<IssueRef>> {
        select_issues(self.conn()?, sql)
    }
}

impl ReadOnlyDb {
    /// Runs a compiled selection (columns: id, org, repo, number, file_path, has_result).
    pub fn select_issues(&self, sql: &str) -> anyhow::Result<Vec<IssueRef>> {
        select_issues(&self.conn, sql)
    }

    /// Column names of a SELECT, found by running it with no rows.
    pub fn result_columns(&self, select: &str) -> anyhow::Result<Vec<String>> {
        let sql = format!("SELECT * FROM (\n{select}\n) LIMIT 0");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query([])?;
        Ok(rows.as_ref().map(|s| s.column_names()).unwrap_or_default())
    }

    /// Count and prompt characters of a selection; threads longer than `cap_chars` count as
    /// `cap_chars` because prompts cut them to the token budget. `None`: count only.
    pub fn selection_size(
        &self,
        selection_sql: &str,
        cap_chars: Option<u64>,
    ) -> anyhow::Result<SelectionSize> {
        Ok(self.selection_overview(selection_sql, cap_chars, 0)?.0)
    }

    /// Size of a selection and its first `preview` issues, from ONE execution of the
    /// selection (materialized once, then counted and sampled).
    pub fn selection_overview(
        &self,
        selection_sql: &str,
        cap_chars: Option<u64>,
        preview: usize,
    ) -> anyhow::Result<(SelectionSize, Vec<IssueRef>)> {
        let totals = match cap_chars {
            None => "SELECT count(*)::BIGINT AS n, 0::BIGINT AS chars FROM sel".to_string(),
            Some(cap) => format!(
                "SELECT count(*)::BIGINT AS n,
                        coalesce(sum(least(i.text_chars, {cap})), 0)::BIGINT AS chars
                 FROM sel JOIN issues i ON i.id = sel.id"
            ),
        };
        let sql = format!(
            "WITH sel AS MATERIALIZED (\n{selection_sql}\n),
             tot AS ({totals})
             SELECT p.id, p.org, p.repo, p.number, p.file_path, p.has_result, tot.n, tot.chars
             FROM tot LEFT JOIN (SELECT * FROM sel LIMIT {preview}) p ON true"
        );
        let fail = |e: duckdb::Error| {
            anyhow::Error::new(e).context(UserError("selecting issues failed".into()))
        };
        let mut stmt = self.conn.prepare(&sql).map_err(fail)?;
        let mut rows = stmt.query([]).map_err(fail)?;
        let mut size = SelectionSize::default();
        let mut issues = Vec::new();
        while let Some(r) = rows.next().map_err(fail)? {
            size.issues = r.get::<_, i64>(6).map_err(fail)?.max(0) as u64;
            size.chars = r.get::<_, i64>(7).map_err(fail)?.max(0) as u64;
            // With an empty preview the LEFT JOIN yields one row of NULL issue columns.
            let Some(id) = r.get::<_, Option<String>>(0).map_err(fail)? else {
                continue;
            };
            issues.push(IssueRef {
                id,
                org: r.get(1).map_err(fail)?,
                repo: r.get(2).map_err(fail)?,
                number: r.get::<_, i64>(3).map_err(fail)?.max(0) as u64,
                file_path: r.get(4).map_err(fail)?,
                has_result: r.get(5).map_err(fail)?,
            });
        }
        Ok((size, issues))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Db, LoadedIssue};
    use crate::store::{Comment, StoredIssue};
    use std::time::Duration;

    fn comment(id: i64, body: Option<&str>) -> Comment {
        Comment {
            id,
            user: None,
            body: body.map(str::to_string),
            created_at: None,
            updated_at: None,
        }
    }

    #[test]
    fn the_estimate_counts_characters_of_title_body_and_comments_capped_per_issue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.duckdb");
        let mut a = StoredIssue::new("o", "r", 1, "Ünï ✓"); // 5 characters, 9 bytes
        a.issue.body = Some("é日本".into()); // 3
        a.issue.comments = vec![comment(1, Some("ab")), comment(2, None)]; // 2
        let b = StoredIssue::new("o", "r", 2, &"x".repeat(50)); // capped at 40
        let mut db = Db::open(&path, Duration::from_secs(5)).unwrap();
        db.replace_issues(&[LoadedIssue::fixture(a), LoadedIssue::fixture(b)])
            .unwrap();
        drop(db);
        let ro = ReadOnlyDb::open(&path, Duration::from_secs(5)).unwrap();
        let size = |sql: &str, cap| ro.selection_size(sql, cap).unwrap();
        let all = "SELECT id, org, repo, number, file_path, false AS has_result FROM issues";
        assert_eq!(
            size(all, Some(40)),
            SelectionSize {
                issues: 2,
                chars: 50
            }
        );
        assert_eq!(
            size(&format!("{all} WHERE number = 1"), Some(40)),
            SelectionSize {
                issues: 1,
                chars: 10
            }
        );
        assert_eq!(
            size(all, None),
            SelectionSize {
                issues: 2,
                chars: 0
            }
        );
    }
}
