//! Label-quality tables and reads: label usage for `taxonomy init`, human-labeled issues for
//! `train`, stored predictions against human labels for `evaluate`, and the `evaluations` and
//! `trained_models` records (migration 0004, docs/quality.md).

use duckdb::params;

use crate::db::Db;
use crate::processors::taxonomy::UsedLabel;

/// Which issues a quality command looks at. Dates are `YYYY-MM-DD` (or full timestamps):
/// `since` is inclusive, `until` exclusive, so `train --until D` and `evaluate --since D` split
/// the issues in two without overlap. An issue without a creation date is outside any dated scope.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QualityScope {
    pub org: Option<String>,
    pub repo: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    /// Only issues numbered below this: the demo's split of an undated sample (older issues
    /// have lower numbers).
    pub below_number: Option<u64>,
}

impl QualityScope {
    /// The WHERE conditions over `issues i` and their parameters, in order.
    fn condition(&self) -> (String, Vec<String>) {
        let mut sql = String::from("TRUE");
        let mut args = Vec::new();
        let mut add = |cond: &str, v: &Option<String>| {
            if let Some(v) = v {
                sql.push_str(cond);
                args.push(v.clone());
            }
        };
        add(" AND i.org = ?", &self.org);
        add(" AND i.repo = ?", &self.repo);
        add(" AND i.created_at >= CAST(? AS TIMESTAMP)", &self.since);
        add(" AND i.created_at < CAST(? AS TIMESTAMP)", &self.until);
        add(
            " AND i.number < CAST(? AS BIGINT)",
            &self.below_number.map(|n| n.to_string()),
        );
        (sql, args)
    }

    /// One line describing the scope, for reports and the `evaluations` row.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        match (&self.org, &self.repo) {
            (Some(o), Some(r)) => parts.push(format!("{o}/{r}")),
            (Some(o), None) => parts.push(format!("{o}/*")),
            _ => parts.push("all repositories".into()),
        }
        if let Some(s) = &self.since {
            parts.push(format!("since {s}"));
        }
        if let Some(u) = &self.until {
            parts.push(format!("until {u}"));
        }
        if let Some(n) = self.below_number {
            parts.push(format!("issues numbered below {n}"));
        }
        parts.join(", ")
    }
}

/// An issue with its human labels of a taxonomy: what `train` learns from.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledDoc {
    pub id: String,
    pub created_at: Option<String>,
    pub title: String,
    pub body: String,
    /// The first comments (oldest first), at most [`TRAINING_COMMENTS`].
    pub comments: Vec<String>,
    /// Human labels of the taxonomy, in name order.
    pub labels: Vec<String>,
}

/// Comments of an issue a model reads: the first ones say what the issue is about.
pub const TRAINING_COMMENTS: usize = crate::processors::local::COMMENTS_READ;

/// One stored result against the human labels of its issue.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRow {
    pub issue_id: String,
    pub model: String,
    /// Human labels of the taxonomy.
    pub human: Vec<String>,
    /// Recommended labels with their confidence.
    pub predicted: Vec<(String, f64)>,
}

/// An `evaluations` row.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationRecord {
    pub processor: String,
    pub model: String,
    pub taxonomy_name: String,
    pub taxonomy_version: String,
    pub taxonomy_sha256: String,
    pub scope: String,
    pub issue_count: u64,
    pub macro_f1: Option<f64>,
    pub micro_f1: Option<f64>,
    pub coverage: Option<f64>,
    pub ece: Option<f64>,
    pub metrics_json: String,
}

/// A `trained_models` row.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainedModelRecord {
    pub processor: String,
    pub taxonomy_name: String,
    pub taxonomy_version: String,
    pub taxonomy_sha256: String,
    pub file_path: String,
    pub training_query: String,
    pub training_ids: Vec<String>,
    pub metrics_json: String,
}

fn json_list(s: Option<String>) -> Vec<String> {
    s.and_then(|s| serde_json::from_str::<Vec<Option<String>>>(&s).ok())
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect()
}

/// The SQL `list` of label names as a parameter (a JSON array cast in SQL).
fn names_json(labels: &[String]) -> String {
    serde_json::to_string(labels).unwrap_or_else(|_| "[]".into())
}

impl Db {
    /// Labels used on the scope's issues, most used first, with their GitHub description;
    /// labels on fewer than `min_issues` issues, or not starting with `prefix`, are left out.
    pub fn label_usage(
        &self,
        scope: &QualityScope,
        min_issues: u64,
        prefix: Option<&str>,
    ) -> anyhow::Result<Vec<UsedLabel>> {
        let (cond, mut args) = scope.condition();
        args.push(prefix.unwrap_or("").to_string());
        let sql = format!(
            "SELECT l.name, max(l.description) FILTER (WHERE trim(l.description) <> ''),
                    count(DISTINCT l.issue_id)
             FROM labels l JOIN issues i ON i.id = l.issue_id
             WHERE {cond} AND starts_with(l.name, ?)
             GROUP BY l.name
             ORDER BY 3 DESC, 1"
        );
        let mut stmt = self.conn()?.prepare(&sql)?;
        let rows = stmt.query_map(duckdb::params_from_iter(args.iter()), |r| {
            Ok(UsedLabel {
                name: r.get(0)?,
                description: r.get(1)?,
                issues: r.get::<_, i64>(2)?.max(0) as u64,
            })
        })?;
        let all: Vec<UsedLabel> = rows.collect::<Result<_, _>>()?;
        Ok(all.into_iter().filter(|l| l.issues >= min_issues).collect())
    }

    /// The scope's issues carrying at least one of `labels`, oldest first (by creation date,
    /// then number), with their first comments. Also returns the SQL, recorded with a model.
    pub fn labeled_documents(
        &self,
        scope: &QualityScope,
        labels: &[String],
    ) -> anyhow::Result<(Vec<LabeledDoc>, String)> {
        let (cond, mut args) = scope.condition();
        args.insert(0, names_json(labels));
        let sql = format!(
            "WITH wanted AS (SELECT unnest(CAST(? AS VARCHAR[])) AS name),
             lab AS (
                 SELECT l.issue_id, to_json(list(DISTINCT l.name ORDER BY l.name))::VARCHAR AS names
                 FROM labels l JOIN wanted w ON w.name = l.name GROUP BY l.issue_id),
             com AS (
                 SELECT issue_id, to_json(list(body ORDER BY created_at, id))::VARCHAR AS bodies
                 FROM (SELECT issue_id, body, created_at, id, row_number() OVER
                           (PARTITION BY issue_id ORDER BY created_at, id) AS n
                       FROM comments WHERE body IS NOT NULL)
                 WHERE n <= {TRAINING_COMMENTS} GROUP BY issue_id)
             SELECT i.id, strftime(i.created_at, '%Y-%m-%dT%H:%M:%SZ'), i.title,
                    coalesce(i.body, ''), com.bodies, lab.names
             FROM issues i JOIN lab ON lab.issue_id = i.id
             LEFT JOIN com ON com.issue_id = i.id
             WHERE {cond}
             ORDER BY i.created_at NULLS FIRST, i.org, i.repo, i.number"
        );
        let mut stmt = self.conn()?.prepare(&sql)?;
        let rows = stmt.query_map(duckdb::params_from_iter(args.iter()), |r| {
            Ok(LabeledDoc {
                id: r.get(0)?,
                created_at: r.get(1)?,
                title: r.get(2)?,
                body: r.get(3)?,
                comments: json_list(r.get(4)?),
                labels: json_list(r.get(5)?),
            })
        })?;
        let docs = rows.collect::<Result<_, _>>()?;
        let recorded = format!("{sql}\n-- parameters: {args:?}");
        Ok((docs, recorded))
    }

    /// Stored results of `processor` (of `model` if given) on the scope's issues that have at
    /// least one human label of `labels`, with the labels each result recommends.
    pub fn evaluation_rows(
        &self,
        processor: &str,
        model: Option<&str>,
        scope: &QualityScope,
        labels: &[String],
    ) -> anyhow::Result<Vec<EvalRow>> {
        let (cond, scope_args) = scope.condition();
        let mut args = vec![names_json(labels), processor.to_string()];
        let model_cond = match model {
            Some(m) => {
                args.push(m.to_string());
                "AND r.model = ?"
            }
            None => "",
        };
        args.push(processor.to_string());
        args.extend(scope_args);
        let sql = format!(
            "WITH wanted AS (SELECT unnest(CAST(? AS VARCHAR[])) AS name),
             lab AS (
                 SELECT l.issue_id, to_json(list(DISTINCT l.name ORDER BY l.name))::VARCHAR AS names
                 FROM labels l JOIN wanted w ON w.name = l.name GROUP BY l.issue_id),
             res AS (SELECT issue_id, model FROM ai_results r WHERE r.processor = ? {model_cond}),
             rec AS (
                 SELECT issue_id, to_json(list({{'label': value, 'confidence': confidence}}
                                              ORDER BY confidence DESC, value))::VARCHAR AS recs
                 FROM ai_recommendations
                 WHERE kind = 'label' AND processor = ?
                 GROUP BY issue_id)
             SELECT i.id, res.model, lab.names, rec.recs
             FROM issues i JOIN lab ON lab.issue_id = i.id
             JOIN res ON res.issue_id = i.id
             LEFT JOIN rec ON rec.issue_id = i.id
             WHERE {cond}
             ORDER BY i.id"
        );
        let mut stmt = self.conn()?.prepare(&sql)?;
        let rows = stmt.query_map(duckdb::params_from_iter(args.iter()), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (issue_id, model, names, recs) = row?;
            #[derive(serde::Deserialize)]
            struct Rec {
                label: String,
                confidence: Option<f64>,
            }
            let predicted = recs
                .and_then(|s| serde_json::from_str::<Vec<Rec>>(&s).ok())
                .unwrap_or_default()
                .into_iter()
                .map(|r| (r.label, r.confidence.unwrap_or(1.0).clamp(0.0, 1.0)))
                .collect();
            out.push(EvalRow {
                issue_id,
                model,
                human: json_list(names),
                predicted,
            });
        }
        Ok(out)
    }

    /// How many of the scope's issues carry more than one of `labels` (0: the labels are used
    /// as an exclusive set, like issue types).
    pub fn issues_with_several(
        &self,
        scope: &QualityScope,
        labels: &[String],
    ) -> anyhow::Result<u64> {
        let (cond, mut args) = scope.condition();
        args.insert(0, names_json(labels));
        let sql = format!(
            "WITH wanted AS (SELECT unnest(CAST(? AS VARCHAR[])) AS name)
             SELECT count(*) FROM (
                 SELECT l.issue_id FROM labels l JOIN wanted w ON w.name = l.name
                 JOIN issues i ON i.id = l.issue_id WHERE {cond}
                 GROUP BY l.issue_id HAVING count(DISTINCT l.name) > 1)"
        );
        let n: i64 = self
            .conn()?
            .query_row(&sql, duckdb::params_from_iter(args.iter()), |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    /// Records one `evaluate` run; returns its id.
    pub fn save_evaluation(&mut self, e: &EvaluationRecord) -> anyhow::Result<i64> {
        Ok(self.conn()?.query_row(
            "INSERT INTO evaluations (created_at, processor, model, taxonomy_name,
                 taxonomy_version, taxonomy_sha256, scope, issue_count, macro_f1, micro_f1,
                 coverage, ece, metrics)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            params![
                chrono::Utc::now().naive_utc(),
                e.processor,
                e.model,
                e.taxonomy_name,
                e.taxonomy_version,
                e.taxonomy_sha256,
                e.scope,
                e.issue_count as i64,
                e.macro_f1,
                e.micro_f1,
                e.coverage,
                e.ece,
                e.metrics_json,
            ],
            |r| r.get(0),
        )?)
    }

    /// Records one `train` run; returns its id.
    pub fn save_trained_model(&mut self, m: &TrainedModelRecord) -> anyhow::Result<i64> {
        Ok(self.conn()?.query_row(
            "INSERT INTO trained_models (created_at, processor, taxonomy_name, taxonomy_version,
                 taxonomy_sha256, file_path, training_query, training_issues, training_ids, metrics)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            params![
                chrono::Utc::now().naive_utc(),
                m.processor,
                m.taxonomy_name,
                m.taxonomy_version,
                m.taxonomy_sha256,
                m.file_path,
                m.training_query,
                m.training_ids.len() as i64,
                names_json(&m.training_ids),
                m.metrics_json,
            ],
            |r| r.get(0),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db_with_issues() -> Db {
        let db = Db::open_in_memory().unwrap();
        db.conn()
            .unwrap()
            .execute_batch(
                "INSERT INTO issues (id, org, repo, number, title, body, state, comments_count,
                     labels_count, created_at, file_path) VALUES
                 ('o/r#1', 'o', 'r', 1, 'crash', 'it crashes', 'open', 0, 1, '2024-01-01', 'f1'),
                 ('o/r#2', 'o', 'r', 2, 'add x', NULL, 'open', 1, 2, '2024-02-01', 'f2'),
                 ('o/r#3', 'o', 'r', 3, 'how?', 'q', 'open', 0, 1, '2024-03-01', 'f3'),
                 ('o/s#1', 'o', 's', 1, 'other', 'q', 'open', 0, 1, '2024-03-01', 'f4');
                 INSERT INTO labels VALUES ('o/r#1', 'bug', NULL, 'Something is broken'),
                   ('o/r#2', 'feature', NULL, ''), ('o/r#2', 'p1', NULL, NULL),
                   ('o/r#3', 'bug', NULL, 'Something is broken'), ('o/s#1', 'bug', NULL, NULL);
                 INSERT INTO comments VALUES (1, 'o/r#2', NULL, NULL, 'second', '2024-02-03', NULL),
                   (2, 'o/r#2', NULL, NULL, 'first', '2024-02-02', NULL);",
            )
            .unwrap();
        db
    }

    fn scope(repo: Option<&str>) -> QualityScope {
        QualityScope {
            org: Some("o".into()),
            repo: repo.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn label_usage_counts_issues_and_honours_min_and_prefix() {
        let db = db_with_issues();
        let all = db.label_usage(&scope(Some("r")), 1, None).unwrap();
        let names: Vec<_> = all.iter().map(|l| (l.name.as_str(), l.issues)).collect();
        assert_eq!(names, [("bug", 2), ("feature", 1), ("p1", 1)]);
        assert_eq!(all[0].description.as_deref(), Some("Something is broken"));
        assert_eq!(all[1].description, None);
        assert_eq!(db.label_usage(&scope(None), 3, None).unwrap().len(), 1);
        let f = db.label_usage(&scope(Some("r")), 1, Some("fea")).unwrap();
        assert_eq!(f.len(), 1);
        let two = |a: &str, b: &str| vec![a.to_string(), b.to_string()];
        assert_eq!(
            db.issues_with_several(&scope(None), &two("bug", "feature"))
                .unwrap(),
            0
        );
        assert_eq!(
            db.issues_with_several(&scope(None), &two("p1", "feature"))
                .unwrap(),
            1
        );
    }

    #[test]
    fn labeled_documents_keep_taxonomy_labels_comments_in_order_and_the_date_split() {
        let db = db_with_issues();
        let labels = vec!["bug".to_string(), "feature".to_string()];
        let (docs, sql) = db.labeled_documents(&scope(Some("r")), &labels).unwrap();
        let ids: Vec<_> = docs.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["o/r#1", "o/r#2", "o/r#3"]);
        assert_eq!(docs[1].labels, ["feature"]);
        assert_eq!(docs[1].comments, ["first", "second"]);
        assert_eq!(docs[1].body, "");
        assert!(sql.contains("parameters"));
        let until = QualityScope {
            until: Some("2024-02-01".into()),
            ..scope(Some("r"))
        };
        let (docs, _) = db.labeled_documents(&until, &labels).unwrap();
        assert_eq!(docs.len(), 1, "until is exclusive");
        let since = QualityScope {
            since: Some("2024-02-01".into()),
            ..scope(Some("r"))
        };
        let (docs, _) = db.labeled_documents(&since, &labels).unwrap();
        assert_eq!(docs.len(), 2, "since is inclusive");
        let below = QualityScope {
            below_number: Some(3),
            ..scope(Some("r"))
        };
        let (docs, _) = db.labeled_documents(&below, &labels).unwrap();
        assert_eq!(docs.len(), 2);
    }
}
