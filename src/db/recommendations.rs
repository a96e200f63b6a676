//! The `recommendations` table family: typed statuses, reading recommendations with their
//! per-label reasoning, filters, the summary, and review decisions (one UPDATE each, committed
//! at once, so an interrupted review keeps every earlier decision). Deriving them from stored
//! results is `discover.rs`; what `update-labels` records is `label_changes.rs`.

use chrono::NaiveDateTime;
use duckdb::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use duckdb::{params_from_iter, Row};

use crate::db::Db;
use crate::error::user;

/// Where a recommendation is in its life: `pending` (or `no_change`, nothing to do) from
/// discover; `approved` / `rejected` / `needs_modification` by a reviewer; `applied` by
/// `update-labels`; `superseded` when a newer result replaced it before anyone reviewed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecStatus {
    Pending,
    NoChange,
    Approved,
    Rejected,
    NeedsModification,
    Applied,
    Superseded,
}

impl RecStatus {
    pub const ALL: &'static [RecStatus] = &[
        Self::Pending,
        Self::NoChange,
        Self::Approved,
        Self::Rejected,
        Self::NeedsModification,
        Self::Applied,
        Self::Superseded,
    ];
    /// A person (or `update-labels`) decided: `reprocess` leaves these issues alone unless told.
    pub const REVIEWED: &'static [RecStatus] = &[Self::Approved, Self::Rejected, Self::Applied];
    /// Statuses a reviewer may still decide on.
    pub const OPEN: &'static [RecStatus] = &[Self::Pending, Self::NeedsModification];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::NoChange => "no_change",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::NeedsModification => "needs_modification",
            Self::Applied => "applied",
            Self::Superseded => "superseded",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|s| s.as_str() == text)
    }

    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|s| s.as_str()).collect()
    }
}

impl std::fmt::Display for RecStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for RecStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl ToSql for RecStatus {
    fn to_sql(&self) -> duckdb::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for RecStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = String::column_result(value)?;
        Self::parse(&text)
            .ok_or_else(|| FromSqlError::Other(format!("unknown RecStatus {text:?}").into()))
    }
}

/// One label of a recommendation with the model's word on it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RecLabel {
    pub label: String,
    /// `add` or `remove`.
    pub action: String,
    pub confidence: Option<f64>,
    pub reasoning: Option<String>,
}

/// One recommendation, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RecRow {
    pub id: i64,
    pub issue_id: String,
    pub org: String,
    pub repo: String,
    pub number: u64,
    pub processor: String,
    pub result_md5: String,
    pub model: Option<String>,
    pub confidence: Option<f64>,
    /// The issue's labels when the recommendation was made.
    pub labels_before: Vec<String>,
    pub add: Vec<String>,
    pub remove: Vec<String>,
    pub status: RecStatus,
    /// The label set a reviewer picked instead of the proposal.
    pub final_labels: Option<Vec<String>>,
    pub notes: Option<String>,
    pub reviewed_at: Option<NaiveDateTime>,
    pub applied_at: Option<NaiveDateTime>,
    pub superseded_by: Option<i64>,
    pub created_at: NaiveDateTime,
    /// From the issue row (None when the issue file is no longer stored).
    pub title: Option<String>,
    pub html_url: Option<String>,
}

/// Case-insensitive membership: GitHub label names are unique regardless of case.
pub fn has_label(set: &[String], name: &str) -> bool {
    set.iter().any(|l| l.eq_ignore_ascii_case(name))
}

impl RecRow {
    /// Labels to add: the reviewer's set minus the labels it was made against, or the proposal.
    pub fn effective_add(&self) -> Vec<String> {
        match &self.final_labels {
            Some(fin) => fin
                .iter()
                .filter(|l| !has_label(&self.labels_before, l))
                .cloned()
                .collect(),
            None => self.add.clone(),
        }
    }

    /// Labels to remove: those the reviewer left out of the set, or the proposal.
    pub fn effective_remove(&self) -> Vec<String> {
        match &self.final_labels {
            Some(fin) => self
                .labels_before
                .iter()
                .filter(|l| !has_label(fin, l))
                .cloned()
                .collect(),
            None => self.remove.clone(),
        }
    }

    /// The label set the issue gets if everything is applied.
    pub fn labels_after(&self) -> Vec<String> {
        let remove = self.effective_remove();
        let mut out: Vec<String> = self
            .labels_before
            .iter()
            .filter(|l| !has_label(&remove, l))
            .cloned()
            .collect();
        for a in self.effective_add() {
            if !has_label(&out, &a) {
                out.push(a);
            }
        }
        out
    }
}

/// Which recommendations a command is about. Empty fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct RecFilter {
    pub statuses: Vec<RecStatus>,
    pub processor: Option<String>,
    pub org: Option<String>,
    pub repo: Option<String>,
    pub number: Option<u64>,
    /// Exact issue ids (`org/repo#n`).
    pub issue_ids: Vec<String>,
    /// Recommendations proposing this label (to add or to remove).
    pub label: Option<String>,
    /// The recommendation's confidence; with `label`, the confidence given to that label.
    pub min_confidence: Option<f64>,
    /// Also superseded (older) recommendations; by default only each issue's current one.
    pub history: bool,
    pub limit: Option<usize>,
}

/// What a reviewer decided about one recommendation.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub status: RecStatus,
    /// The label set picked instead of the proposal (`modify`).
    pub final_labels: Option<Vec<String>>,
    pub note: Option<String>,
}

/// Counts for `recommendations summary`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecSummary {
    pub by_status: Vec<(String, i64)>,
    /// (label, action, count, of which pending).
    pub by_label: Vec<(String, String, i64, i64)>,
    /// (bucket, count): `high` ≥ 0.9, `medium` ≥ 0.7, `low` below, `unknown`.
    pub by_confidence: Vec<(String, i64)>,
}

const COLUMNS: &str = "r.id, r.issue_id, r.org, r.repo, r.number, r.processor, r.result_md5, \
     r.model, r.confidence, r.labels_before::VARCHAR, r.add_labels::VARCHAR, \
     r.remove_labels::VARCHAR, r.status, r.final_labels::VARCHAR, r.reviewer_notes, \
     r.reviewed_at, r.applied_at, r.superseded_by, r.created_at, i.title, i.html_url";

pub(crate) fn json_list(text: Option<String>) -> Vec<String> {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

pub(crate) fn to_json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

fn read_row(r: &Row<'_>) -> duckdb::Result<RecRow> {
    Ok(RecRow {
        id: r.get(0)?,
        issue_id: r.get(1)?,
        org: r.get(2)?,
        repo: r.get(3)?,
        number: r.get::<_, i64>(4)?.max(0) as u64,
        processor: r.get(5)?,
        result_md5: r.get(6)?,
        model: r.get(7)?,
        confidence: r.get(8)?,
        labels_before: json_list(r.get(9)?),
        add: json_list(r.get(10)?),
        remove: json_list(r.get(11)?),
        status: r.get(12)?,
        final_labels: r.get::<_, Option<String>>(13)?.map(|t| json_list(Some(t))),
        notes: r.get(14)?,
        reviewed_at: r.get(15)?,
        applied_at: r.get(16)?,
        superseded_by: r.get(17)?,
        created_at: r.get(18)?,
        title: r.get(19)?,
        html_url: r.get(20)?,
    })
}

/// The WHERE clause of a filter and its parameters (values never enter the SQL text).
fn where_clause(f: &RecFilter) -> (String, Vec<duckdb::types::Value>) {
    use duckdb::types::Value as V;
    let mut conds: Vec<String> = Vec::new();
    let mut params: Vec<V> = Vec::new();
    if !f.history {
        conds.push("r.superseded_by IS NULL".into());
    }
    if !f.statuses.is_empty() {
        let marks = vec!["?"; f.statuses.len()].join(", ");
        conds.push(format!("r.status IN ({marks})"));
        params.extend(f.statuses.iter().map(|s| V::Text(s.as_str().into())));
    }
    if let Some(p) = &f.processor {
        conds.push("r.processor = ?".into());
        params.push(V::Text(p.clone()));
    }
    // GitHub names are case-insensitive.
    if let Some(o) = &f.org {
        conds.push("lower(r.org) = lower(?)".into());
        params.push(V::Text(o.clone()));
    }
    if let Some(r) = &f.repo {
        conds.push("lower(r.repo) = lower(?)".into());
        params.push(V::Text(r.clone()));
    }
    if let Some(n) = f.number {
        conds.push("r.number = ?".into());
        params.push(V::BigInt(i64::try_from(n).unwrap_or(i64::MAX)));
    }
    if !f.issue_ids.is_empty() {
        let marks = vec!["lower(?)"; f.issue_ids.len()].join(", ");
        conds.push(format!("lower(r.issue_id) IN ({marks})"));
        params.extend(f.issue_ids.iter().map(|i| V::Text(i.clone())));
    }
    match (&f.label, f.min_confidence) {
        (Some(l), min) => {
            conds.push(
                "EXISTS (SELECT 1 FROM recommendation_labels rl WHERE rl.recommendation_id = r.id \
                 AND lower(rl.label) = lower(?) AND coalesce(rl.confidence, r.confidence, 0) >= ?)"
                    .into(),
            );
            params.push(V::Text(l.clone()));
            params.push(V::Double(min.unwrap_or(f64::NEG_INFINITY)));
        }
        (None, Some(min)) => {
            conds.push("coalesce(r.confidence, 0) >= ?".into());
            params.push(V::Double(min));
        }
        (None, None) => {}
    }
    let sql = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    (sql, params)
}

impl Db {
    /// Recommendations matching the filter, oldest issue first (org, repo, number, newest id).
    pub fn recommendations(&self, f: &RecFilter) -> anyhow::Result<Vec<RecRow>> {
        let (cond, params) = where_clause(f);
        let limit = f.limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
        let sql = format!(
            "SELECT {COLUMNS} FROM recommendations r LEFT JOIN issues i ON i.id = r.issue_id \
             {cond} ORDER BY r.org, r.repo, r.number, r.processor, r.id DESC{limit}"
        );
        let mut stmt = self.conn()?.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(params), read_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn recommendation(&self, id: i64) -> anyhow::Result<Option<RecRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM recommendations r LEFT JOIN issues i ON i.id = r.issue_id \
             WHERE r.id = ?"
        );
        let mut stmt = self.conn()?.prepare(&sql)?;
        let mut rows = stmt.query_map([id], read_row)?;
        Ok(rows.next().transpose()?)
    }

    /// The labels (with confidence and reasoning) of these recommendations, by id.
    pub fn recommendation_labels(
        &self,
        ids: &[i64],
    ) -> anyhow::Result<std::collections::HashMap<i64, Vec<RecLabel>>> {
        let mut out: std::collections::HashMap<i64, Vec<RecLabel>> = Default::default();
        if ids.is_empty() {
            return Ok(out);
        }
        let list = ids
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT recommendation_id, label, action, confidence, reasoning \
             FROM recommendation_labels WHERE recommendation_id IN ({list}) \
             ORDER BY recommendation_id, action, coalesce(confidence, 0) DESC, label"
        );
        let mut stmt = self.conn()?.prepare(&sql)?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                RecLabel {
                    label: r.get(1)?,
                    action: r.get(2)?,
                    confidence: r.get(3)?,
                    reasoning: r.get(4)?,
                },
            ))
        })?;
        for row in rows {
            let (id, l) = row?;
            out.entry(id).or_default().push(l);
        }
        Ok(out)
    }

    /// Records a review decision on its own (autocommitted) statement: whatever happens to
    /// the session afterwards, this decision is kept. Only open or reviewed-but-unapplied
    /// current recommendations can be decided on.
    pub fn decide(&mut self, id: i64, d: &Decision) -> anyhow::Result<()> {
        let final_labels = d.final_labels.as_deref().map(to_json_list);
        let n = self.conn()?.execute(
            "UPDATE recommendations SET status = ?, final_labels = ?::JSON, reviewer_notes = ?,
                 reviewed_at = now()::TIMESTAMP, updated_at = now()::TIMESTAMP
             WHERE id = ? AND superseded_by IS NULL AND status IN (?, ?, ?, ?)",
            duckdb::params![
                d.status,
                final_labels,
                d.note,
                id,
                RecStatus::Pending,
                RecStatus::NeedsModification,
                RecStatus::Approved,
                RecStatus::Rejected
            ],
        )?;
        if n == 0 {
            return Err(user(format!(
                "recommendation {id} cannot be reviewed: it is applied, superseded, has nothing \
                 to change, or does not exist"
            )));
        }
        Ok(())
    }

    /// Counts per status, per proposed label and per confidence bucket (current ones only).
    pub fn recommendation_summary(&self, f: &RecFilter) -> anyhow::Result<RecSummary> {
        let (cond, params) = where_clause(f);
        let scoped = format!("SELECT r.* FROM recommendations r {cond}");
        let mut s = RecSummary::default();
        let mut stmt = self.conn()?.prepare(&format!(
            "SELECT status, count(*) FROM ({scoped}) GROUP BY status ORDER BY count(*) DESC, status"
        ))?;
        let rows = stmt.query_map(params_from_iter(params.clone()), |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        s.by_status = rows.collect::<Result<_, _>>()?;
        let mut stmt = self.conn()?.prepare(&format!(
            "SELECT rl.label, rl.action, count(*), count(*) FILTER (WHERE s.status = 'pending')
             FROM ({scoped}) s JOIN recommendation_labels rl ON rl.recommendation_id = s.id
             GROUP BY rl.label, rl.action ORDER BY count(*) DESC, rl.label, rl.action"
        ))?;
        let rows = stmt.query_map(params_from_iter(params.clone()), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        s.by_label = rows.collect::<Result<_, _>>()?;
        let mut stmt = self.conn()?.prepare(&format!(
            "SELECT CASE WHEN confidence IS NULL THEN 'unknown'
                         WHEN confidence >= 0.9 THEN 'high (>= 0.9)'
                         WHEN confidence >= 0.7 THEN 'medium (0.7-0.9)'
                         ELSE 'low (< 0.7)' END AS bucket, count(*)
             FROM ({scoped}) GROUP BY bucket ORDER BY bucket"
        ))?;
        let rows = stmt.query_map(params_from_iter(params), |r| Ok((r.get(0)?, r.get(1)?)))?;
        s.by_confidence = rows.collect::<Result<_, _>>()?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(before: &[&str], add: &[&str], remove: &[&str], fin: Option<&[&str]>) -> RecRow {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        RecRow {
            id: 1,
            issue_id: "o/r#1".into(),
            org: "o".into(),
            repo: "r".into(),
            number: 1,
            processor: "p".into(),
            result_md5: "x".into(),
            model: None,
            confidence: Some(0.9),
            labels_before: v(before),
            add: v(add),
            remove: v(remove),
            status: RecStatus::Approved,
            final_labels: fin.map(v),
            notes: None,
            reviewed_at: None,
            applied_at: None,
            superseded_by: None,
            created_at: chrono::Utc::now().naive_utc(),
            title: None,
            html_url: None,
        }
    }

    #[test]
    fn a_reviewers_set_replaces_the_proposal_relative_to_the_labels_it_was_made_against() {
        let r = row(
            &["bug", "product::kurl"],
            &["product::kots"],
            &["product::kurl"],
            None,
        );
        assert_eq!(r.effective_add(), vec!["product::kots"]);
        assert_eq!(r.effective_remove(), vec!["product::kurl"]);
        assert_eq!(r.labels_after(), vec!["bug", "product::kots"]);
        // The reviewer keeps kurl, adds troubleshoot instead of kots, and drops bug.
        let r = row(
            &["bug", "product::kurl"],
            &["product::kots"],
            &["product::kurl"],
            Some(&["Product::KURL", "product::troubleshoot"]),
        );
        assert_eq!(r.effective_add(), vec!["product::troubleshoot"]);
        assert_eq!(r.effective_remove(), vec!["bug"]);
    }

    #[test]
    fn statuses_round_trip_through_their_text() {
        for s in RecStatus::ALL {
            assert_eq!(RecStatus::parse(s.as_str()), Some(*s));
        }
        assert_eq!(RecStatus::parse("done"), None);
    }
}
