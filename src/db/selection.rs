//! Running compiled pipeline selections (read-only) and estimating their prompt sizes in SQL.

use crate::db::{IssueRef, ReadOnlyDb};
use crate::error::UserError;

/// Totals over a selection, computed by DuckDB without reading issue files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SelectionSize {
    pub issues: u64,
    /// Characters of title + body + comment bodies, each issue capped at the prompt budget (0 when not
    /// estimated).
    pub chars: u64,
}

impl ReadOnlyDb {
    /// Runs a compiled selection (columns: id, org, repo, number, file_path, has_result).
    pub fn select_issues(&self, sql: &str) -> anyhow::Result<Vec<IssueRef>> {
        let fail = |e: duckdb::Error| {
            anyhow::Error::new(e).context(UserError("selecting issues failed".into()))
        };
        let mut stmt = self.conn.prepare(sql).map_err(fail)?;
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

    /// Column names of a SELECT, found by running it with no rows.
    pub fn result_columns(&self, select: &str) -> anyhow::Result<Vec<String>> {
        let sql = format!("SELECT * FROM (\n{select}\n) LIMIT 0");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query([])?;
        Ok(rows.as_ref().map(|s| s.column_names()).unwrap_or_default())
    }

    /// Count and prompt characters of a selection; threads longer than `cap_chars` count as
    /// `cap_chars` because prompts cut them to the token budget.
    pub fn selection_size(
        &self,
        selection_sql: &str,
        cap_chars: Option<u64>,
    ) -> anyhow::Result<SelectionSize> {
        // Without a price to estimate (offline model) only the count is needed.
        let Some(cap_chars) = cap_chars else {
            let sql = format!("SELECT count(*)::BIGINT, 0::BIGINT FROM (\n{selection_sql}\n)");
            return self.size_query(&sql);
        };
        let sql = format!(
            "WITH sel AS (\n{selection_sql}\n)
             SELECT count(*)::BIGINT,
                    coalesce(sum(least(
                        length(coalesce(i.title, '')) + length(coalesce(i.body, ''))
                          + coalesce(c.chars, 0),
                        {cap_chars})), 0)::BIGINT
             FROM sel JOIN issues i ON i.id = sel.id
             LEFT JOIN (SELECT issue_id, sum(length(coalesce(body, ''))) AS chars
                        FROM comments GROUP BY issue_id) c ON c.issue_id = i.id"
        );
        self.size_query(&sql)
    }

    fn size_query(&self, sql: &str) -> anyhow::Result<SelectionSize> {
        let (issues, chars): (i64, i64) = self
            .conn
            .query_row(sql, [], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| {
                anyhow::Error::new(e).context(UserError("selecting issues failed".into()))
            })?;
        Ok(SelectionSize {
            issues: issues.max(0) as u64,
            chars: chars.max(0) as u64,
        })
    }
}
