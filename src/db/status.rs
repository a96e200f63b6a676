//! Counts for `status`: totals per table and a per-repository breakdown.

use crate::db::Db;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbCounts {
    pub issues: i64,
    pub comments: i64,
    pub labels: i64,
    pub ai_results: i64,
    pub batch_jobs: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoCounts {
    pub org: String,
    pub repo: String,
    pub issues: i64,
    pub open: i64,
    pub closed: i64,
    /// GitHub's comment count, summed (REST list objects carry the count, not the bodies).
    pub comments_on_github: i64,
    /// Comment rows stored (bodies collected or imported).
    pub comments_stored: i64,
    pub ai_results: i64,
    pub last_updated: Option<String>,
}

impl Db {
    pub fn counts(&self) -> anyhow::Result<DbCounts> {
        Ok(self.conn()?.query_row(
            "SELECT (SELECT count(*) FROM issues), (SELECT count(*) FROM comments),
                    (SELECT count(*) FROM labels), (SELECT count(*) FROM ai_results),
                    (SELECT count(*) FROM batch_jobs)",
            [],
            |r| {
                Ok(DbCounts {
                    issues: r.get(0)?,
                    comments: r.get(1)?,
                    labels: r.get(2)?,
                    ai_results: r.get(3)?,
                    batch_jobs: r.get(4)?,
                })
            },
        )?)
    }

    pub fn repo_counts(&self) -> anyhow::Result<Vec<RepoCounts>> {
        let mut stmt = self.conn()?.prepare(
            "SELECT i.org, i.repo, count(*),
                    count(*) FILTER (WHERE i.state = 'open'),
                    count(*) FILTER (WHERE i.state = 'closed'),
                    sum(i.comments_count)::BIGINT,
                    count(a.issue_id),
                    strftime(max(i.updated_at), '%Y-%m-%dT%H:%M:%SZ'),
                    coalesce(sum(c.n), 0)::BIGINT
             FROM issues i
             LEFT JOIN (SELECT DISTINCT issue_id FROM ai_results) a ON a.issue_id = i.id
             LEFT JOIN (SELECT issue_id, count(*) AS n FROM comments GROUP BY issue_id) c
                    ON c.issue_id = i.id
             GROUP BY i.org, i.repo
             ORDER BY i.org, i.repo",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(RepoCounts {
                org: r.get(0)?,
                repo: r.get(1)?,
                issues: r.get(2)?,
                open: r.get(3)?,
                closed: r.get(4)?,
                comments_on_github: r.get(5)?,
                comments_stored: r.get(8)?,
                ai_results: r.get(6)?,
                last_updated: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
