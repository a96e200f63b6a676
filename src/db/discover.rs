//! `recommendations discover`: derives recommendations from stored AI results. One per
//! (issue, processor, result), keyed by the md5 of the result's JSON, so running it again
//! creates nothing; a newer result makes a new `pending` one and the older one is kept for audit
//! (`superseded_by`; an unreviewed one becomes `superseded`). Reviewed ones keep their status
//! unless `force_refresh`, which re-derives every current, unapplied one from the issue's
//! labels now and sends it back to review. It works a page of issues at a time, so memory does
//! not grow with the number of results.

use std::collections::HashSet;

use chrono::NaiveDateTime;
use duckdb::params;
use serde_json::Value;

use crate::db::recommendations::{has_label, to_json_list, RecLabel, RecStatus};
use crate::db::Db;
use crate::processors::Processor;
use crate::report::Reporter;

/// What to derive recommendations for.
#[derive(Debug, Clone, Copy)]
pub struct DiscoverScope<'a> {
    pub processor: &'a str,
    pub org: Option<&'a str>,
    pub repo: Option<&'a str>,
    pub force_refresh: bool,
    /// The taxonomy's labels: only these are ever proposed for removal (a model's opinion of
    /// `bug` or `good first issue` is no reason to touch them).
    pub taxonomy: &'a [String],
}

/// What a discover run did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct DiscoverReport {
    /// New recommendations (pending + no_change).
    pub created: usize,
    pub pending: usize,
    pub no_change: usize,
    /// Older current recommendations that a new one replaced.
    pub superseded: usize,
    /// Re-derived in place by `force_refresh`.
    pub refreshed: usize,
    /// Results whose issue is not stored (its file is gone): nothing to compare labels with.
    pub without_issue: usize,
    /// (issue, reason) of results whose analysis could not be read.
    pub unreadable: Vec<(String, String)>,
}

/// One stored result to derive from.
struct Candidate {
    issue_id: String,
    org: String,
    repo: String,
    number: i64,
    model: Option<String>,
    confidence: Option<f64>,
    created_at: Option<NaiveDateTime>,
    md5: String,
    doc: String,
    labels: Vec<String>,
    existing: Option<(i64, RecStatus, Option<i64>)>,
}

/// The proposal of one result against the issue's labels.
pub(crate) struct Proposal {
    pub add: Vec<RecLabel>,
    pub remove: Vec<RecLabel>,
}

impl Proposal {
    fn names(list: &[RecLabel]) -> Vec<String> {
        list.iter().map(|l| l.label.clone()).collect()
    }

    fn status(&self) -> RecStatus {
        if self.add.is_empty() && self.remove.is_empty() {
            RecStatus::NoChange
        } else {
            RecStatus::Pending
        }
    }
}

/// Reads a result document's analysis: recommended labels not on the issue are added; current
/// taxonomy labels the model judged wrong (and did not also recommend) are removed.
pub(crate) fn proposal(
    doc: &str,
    before: &[String],
    taxonomy: &[String],
) -> Result<Proposal, String> {
    let v: Value = serde_json::from_str(doc).map_err(|e| format!("result is not JSON: {e}"))?;
    let analysis = v.get("analysis").ok_or("the result has no analysis")?;
    let recommended = analysis
        .get("recommended_labels")
        .and_then(Value::as_array)
        .ok_or("the analysis has no recommended_labels list")?;
    let text = |x: &Value, k: &str| x.get(k).and_then(Value::as_str).map(str::to_string);
    let mut add: Vec<RecLabel> = Vec::new();
    let mut recommended_names: Vec<String> = Vec::new();
    for r in recommended {
        let Some(label) = text(r, "label").filter(|l| !l.trim().is_empty()) else {
            return Err("a recommended label has no name".into());
        };
        recommended_names.push(label.clone());
        if has_label(before, &label) || add.iter().any(|a| a.label.eq_ignore_ascii_case(&label)) {
            continue;
        }
        add.push(RecLabel {
            label,
            action: "add".into(),
            confidence: r.get("confidence").and_then(Value::as_f64),
            reasoning: text(r, "reasoning"),
        });
    }
    let mut remove: Vec<RecLabel> = Vec::new();
    let assessed = analysis
        .get("current_labels_assessment")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for a in &assessed {
        let (Some(label), Some(false)) =
            (text(a, "label"), a.get("correct").and_then(Value::as_bool))
        else {
            continue;
        };
        // Remove only what is on the issue (spelled as the issue spells it), belongs to the
        // taxonomy, and was not recommended in the same breath.
        let Some(on_issue) = before.iter().find(|b| b.eq_ignore_ascii_case(&label)) else {
            continue;
        };
        if !has_label(taxonomy, &label)
            || has_label(&recommended_names, &label)
            || remove.iter().any(|r| r.label.eq_ignore_ascii_case(&label))
        {
            continue;
        }
        remove.push(RecLabel {
            label: on_issue.clone(),
            action: "remove".into(),
            confidence: None,
            reasoning: text(a, "reasoning"),
        });
    }
    Ok(Proposal { add, remove })
}

/// Issues per page of `discover`: memory holds one page's result documents, not every
/// result of the processor (a 50,000-result batch collect discovers at its end).
#[cfg(not(test))]
const PAGE: i64 = 5_000;
/// Unit tests page by two issues, so every discover test crosses page boundaries.
#[cfg(test)]
const PAGE: i64 = 2;

impl Db {
    /// Derives recommendations from stored results (see the module doc), a page of issues at
    /// a time, each page in one transaction (a crash between pages leaves the rest for the next
    /// run, which creates nothing twice).
    pub fn discover_recommendations(
        &mut self,
        scope: &DiscoverScope<'_>,
    ) -> anyhow::Result<DiscoverReport> {
        let mut report = DiscoverReport {
            without_issue: self.results_without_issue(scope)?,
            ..Default::default()
        };
        let mut seen = HashSet::new();
        let mut after = String::new();
        while let Some(upto) = self.page_end(scope.processor, &after)? {
            let candidates = self.discover_candidates(scope, &after, &upto)?;
            self.discover_page(scope, &candidates, &mut seen, &mut report)?;
            after = upto;
        }
        Ok(report)
    }

    /// The last issue id of the page after `after` (ids in order), `None` past the end.
    fn page_end(&self, processor: &str, after: &str) -> anyhow::Result<Option<String>> {
        Ok(self.conn()?.query_row(
            "SELECT max(issue_id) FROM (SELECT issue_id FROM ai_results
                 WHERE processor = ? AND issue_id > ? ORDER BY issue_id LIMIT ?)",
            params![processor, after, PAGE],
            |r| r.get(0),
        )?)
    }

    fn discover_page(
        &mut self,
        scope: &DiscoverScope<'_>,
        candidates: &[Candidate],
        seen: &mut HashSet<String>,
        report: &mut DiscoverReport,
    ) -> anyhow::Result<()> {
        let mut fresh: Vec<(&Candidate, Proposal)> = Vec::new();
        let mut refresh: Vec<(i64, &Candidate, Proposal)> = Vec::new();
        for c in candidates {
            let p = match proposal(&c.doc, &c.labels, scope.taxonomy) {
                Ok(p) => p,
                Err(why) => {
                    report.unreadable.push((c.issue_id.clone(), why));
                    continue;
                }
            };
            match c.existing {
                None if seen.insert(c.issue_id.clone()) => fresh.push((c, p)),
                // Only --force-refresh re-derives an existing one; applied and superseded
                // ones are history.
                Some((id, status, None))
                    if scope.force_refresh
                        && !matches!(status, RecStatus::Applied | RecStatus::Superseded) =>
                {
                    refresh.push((id, c, p))
                }
                _ => {}
            }
        }
        let ids: Vec<i64> = if fresh.is_empty() {
            Vec::new()
        } else {
            let mut stmt = self
                .conn()?
                .prepare("SELECT nextval('recommendations_id_seq') FROM range(?)")?;
            let rows = stmt.query_map([fresh.len() as i64], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let now = chrono::Utc::now().naive_utc();
        let tx = self.conn_mut()?.transaction()?;
        tx.execute_batch(
            "CREATE OR REPLACE TEMP TABLE _stage_recs (
                 id BIGINT, issue_id VARCHAR, org VARCHAR, repo VARCHAR, number BIGINT,
                 processor VARCHAR, result_md5 VARCHAR, result_created_at TIMESTAMP, model VARCHAR,
                 confidence DOUBLE, labels_before VARCHAR, add_labels VARCHAR,
                 remove_labels VARCHAR, status VARCHAR, refresh BOOLEAN);
             CREATE OR REPLACE TEMP TABLE _stage_rec_labels (
                 recommendation_id BIGINT, label VARCHAR, action VARCHAR, confidence DOUBLE,
                 reasoning VARCHAR);",
        )?;
        {
            let mut recs = tx.appender("_stage_recs")?;
            let mut labels = tx.appender("_stage_rec_labels")?;
            let staged = fresh
                .iter()
                .zip(&ids)
                .map(|((c, p), id)| (*id, *c, p, false))
                .chain(refresh.iter().map(|(id, c, p)| (*id, *c, p, true)));
            for (id, c, p, is_refresh) in staged {
                let status = p.status();
                match status {
                    RecStatus::NoChange if !is_refresh => report.no_change += 1,
                    _ if !is_refresh => report.pending += 1,
                    _ => report.refreshed += 1,
                }
                recs.append_row(params![
                    id,
                    c.issue_id,
                    c.org,
                    c.repo,
                    c.number,
                    scope.processor,
                    c.md5,
                    c.created_at,
                    c.model,
                    c.confidence,
                    to_json_list(&c.labels),
                    to_json_list(&Proposal::names(&p.add)),
                    to_json_list(&Proposal::names(&p.remove)),
                    status.as_str(),
                    is_refresh,
                ])?;
                for l in p.add.iter().chain(&p.remove) {
                    labels.append_row(params![id, l.label, l.action, l.confidence, l.reasoning])?;
                }
            }
            recs.flush()?;
            labels.flush()?;
        }
        report.created += fresh.len();
        // Older current recommendations of the same issue and processor make way; a person's
        // decision stays readable, an unreviewed proposal becomes `superseded`.
        report.superseded += tx.execute(
            "UPDATE recommendations SET superseded_by = s.id, updated_at = now()::TIMESTAMP,
                 status = CASE WHEN recommendations.status IN ('pending', 'no_change')
                               THEN 'superseded' ELSE recommendations.status END
             FROM _stage_recs s
             WHERE NOT s.refresh AND recommendations.issue_id = s.issue_id
               AND recommendations.processor = s.processor
               AND recommendations.superseded_by IS NULL",
            [],
        )?;
        tx.execute(
            "UPDATE recommendations SET labels_before = s.labels_before::JSON,
                 add_labels = s.add_labels::JSON, remove_labels = s.remove_labels::JSON,
                 status = s.status, final_labels = NULL, reviewer_notes = NULL,
                 reviewed_at = NULL, updated_at = ?
             FROM _stage_recs s WHERE s.refresh AND recommendations.id = s.id",
            [now],
        )?;
        tx.execute_batch(
            "DELETE FROM recommendation_labels WHERE recommendation_id IN
                 (SELECT id FROM _stage_recs WHERE refresh);",
        )?;
        tx.execute(
            "INSERT INTO recommendations (id, issue_id, org, repo, number, processor, result_md5,
                 result_created_at, model, confidence, labels_before, add_labels, remove_labels,
                 status, created_at, updated_at)
             SELECT id, issue_id, org, repo, number, processor, result_md5, result_created_at,
                 model, confidence, labels_before::JSON, add_labels::JSON, remove_labels::JSON,
                 status, ?, ?
             FROM _stage_recs WHERE NOT refresh",
            [now, now],
        )?;
        tx.execute_batch(
            "INSERT INTO recommendation_labels SELECT * FROM _stage_rec_labels;
             DROP TABLE _stage_recs; DROP TABLE _stage_rec_labels;",
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Discovers what a processing run just stored, for every command that stores results
    /// (`process`, `process-query`, `batch collect`). It never fails the run that stored the
    /// results: a problem is a warning, and `recommendations discover` can be run again.
    pub fn discover_after_store(&mut self, processor: &Processor, reporter: &dyn Reporter) {
        let taxonomy: Vec<String> = match processor {
            Processor::ProductLabeling(p) => {
                p.taxonomy.names().into_iter().map(String::from).collect()
            }
        };
        let scope = DiscoverScope {
            processor: processor.name(),
            org: None,
            repo: None,
            force_refresh: false,
            taxonomy: &taxonomy,
        };
        match self.discover_recommendations(&scope) {
            Ok(r) if r.pending > 0 => reporter.note(&format!(
                "{} new recommendation(s) to review: `recommendations list` / `recommendations review-session`",
                r.pending
            )),
            Ok(_) => {}
            Err(e) => reporter.warn(&format!(
                "results stored, but recommendations could not be derived ({e:#}); run `recommendations discover`"
            )),
        }
    }

    /// The results of the issues in (`after`, `upto`] with what is known of them.
    fn discover_candidates(
        &self,
        scope: &DiscoverScope<'_>,
        after: &str,
        upto: &str,
    ) -> anyhow::Result<Vec<Candidate>> {
        use duckdb::types::Value as V;
        // The page's bounds inside `r`, so only its results are hashed and read.
        let mut conds = vec!["true".to_string()];
        let mut args: Vec<V> = vec![
            V::Text(scope.processor.into()),
            V::Text(after.into()),
            V::Text(upto.into()),
        ];
        if let Some(o) = scope.org {
            conds.push("lower(i.org) = lower(?)".into());
            args.push(V::Text(o.into()));
        }
        if let Some(rp) = scope.repo {
            conds.push("lower(i.repo) = lower(?)".into());
            args.push(V::Text(rp.into()));
        }
        if !scope.force_refresh {
            conds.push("c.id IS NULL".into());
        }
        let sql = format!(
            "WITH r AS (SELECT *, md5(result::VARCHAR) AS h FROM ai_results
                        WHERE processor = ? AND issue_id > ? AND issue_id <= ?)
             SELECT r.issue_id, i.org, i.repo, i.number, r.model, r.confidence, r.created_at, r.h,
                 r.result::VARCHAR,
                 coalesce((SELECT to_json(list(l.name ORDER BY l.name)) FROM labels l
                           WHERE l.issue_id = i.id)::VARCHAR, '[]'),
                 c.id, c.status, c.superseded_by
             FROM r JOIN issues i ON i.id = r.issue_id
             LEFT JOIN recommendations c
                 ON c.issue_id = r.issue_id AND c.processor = r.processor AND c.result_md5 = r.h
             WHERE {}
             ORDER BY r.issue_id",
            conds.join(" AND ")
        );
        let mut stmt = self.conn()?.prepare(&sql)?;
        let rows = stmt.query_map(duckdb::params_from_iter(args), |r| {
            let existing: Option<i64> = r.get(10)?;
            let status: Option<RecStatus> = r.get(11)?;
            Ok(Candidate {
                issue_id: r.get(0)?,
                org: r.get(1)?,
                repo: r.get(2)?,
                number: r.get(3)?,
                model: r.get(4)?,
                confidence: r.get(5)?,
                created_at: r.get(6)?,
                md5: r.get(7)?,
                doc: r.get(8)?,
                labels: crate::db::recommendations::json_list(r.get(9)?),
                existing: match (existing, status) {
                    (Some(id), Some(s)) => Some((id, s, r.get(12)?)),
                    _ => None,
                },
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn results_without_issue(&self, scope: &DiscoverScope<'_>) -> anyhow::Result<usize> {
        let n: i64 = self.conn()?.query_row(
            "SELECT count(*) FROM ai_results r WHERE r.processor = ?
                 AND NOT EXISTS (SELECT 1 FROM issues i WHERE i.id = r.issue_id)",
            [scope.processor],
            |r| r.get(0),
        )?;
        Ok(n.max(0) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn proposals_add_what_is_missing_and_remove_only_wrong_taxonomy_labels() {
        let doc = serde_json::json!({"analysis": {
            "recommended_labels": [
                {"label": "product::kots", "confidence": 0.9, "reasoning": "kotsadm"},
                {"label": "product::vendor", "confidence": 0.6, "reasoning": "portal"}
            ],
            "current_labels_assessment": [
                {"label": "Product::Kurl", "correct": false, "reasoning": "not kurl"},
                {"label": "bug", "correct": false, "reasoning": "not a bug"},
                {"label": "product::vendor", "correct": false, "reasoning": "contradiction"}
            ],
            "confidence": 0.8, "summary": "s", "reasoning": "r"
        }})
        .to_string();
        let before = names(&["bug", "product::kurl", "product::vendor"]);
        let taxonomy = names(&["product::kots", "product::kurl", "product::vendor"]);
        let p = proposal(&doc, &before, &taxonomy).unwrap();
        // vendor is already on the issue; kurl is removed (spelled as on the issue); bug is not
        // in the taxonomy; vendor is recommended so it is never removed.
        assert_eq!(Proposal::names(&p.add), names(&["product::kots"]));
        assert_eq!(Proposal::names(&p.remove), names(&["product::kurl"]));
        assert_eq!(p.add[0].confidence, Some(0.9));
        assert!(proposal("{}", &before, &taxonomy).is_err());
        let nothing =
            serde_json::json!({"analysis": {"recommended_labels": [], "confidence": 0.3}});
        assert_eq!(
            proposal(&nothing.to_string(), &before, &taxonomy)
                .unwrap()
                .status(),
            RecStatus::NoChange
        );
    }

    fn issue(n: u64, labels: &[&str]) -> crate::db::LoadedIssue {
        let mut i = crate::store::StoredIssue::new("o", "r", n, "t");
        i.issue.labels = labels
            .iter()
            .map(|l| crate::store::Label {
                name: l.to_string(),
                color: None,
                description: None,
            })
            .collect();
        crate::db::LoadedIssue::fixture(i)
    }

    fn result(
        n: u64,
        labels: &[&str],
        stamp: &str,
    ) -> (crate::db::ResultRow, Vec<crate::processors::Recommendation>) {
        let doc = serde_json::json!({"stamp": stamp, "analysis": {
            "recommended_labels": labels.iter().map(|l| serde_json::json!({"label": l, "confidence": 0.9, "reasoning": "r"})).collect::<Vec<_>>(),
            "current_labels_assessment": [{"label": "product::kurl", "correct": false, "reasoning": "no"}],
            "confidence": 0.8, "summary": "s", "reasoning": "r"}});
        let row = crate::db::ResultRow::fixture(&format!("o/r#{n}"), 0.8, doc.to_string());
        (row, vec![])
    }

    /// product-labeling's results of every repository, no forced refresh.
    fn every_repo(taxonomy: &[String]) -> DiscoverScope<'_> {
        DiscoverScope {
            processor: "product-labeling",
            org: None,
            repo: None,
            force_refresh: false,
            taxonomy,
        }
    }

    #[test]
    fn discover_works_through_every_page_of_results() {
        let mut db = Db::open_in_memory().unwrap();
        let numbers = 1..=5u64; // three pages of two issues in unit tests
        let issues: Vec<_> = numbers.clone().map(|n| issue(n, &[])).collect();
        db.replace_issues(&issues).unwrap();
        let results: Vec<_> = numbers
            .map(|n| result(n, &["product::kots"], "a"))
            .collect();
        db.save_results(&results).unwrap();
        let taxonomy = names(&["product::kots"]);
        let scope = every_repo(&taxonomy);
        let r = db.discover_recommendations(&scope).unwrap();
        assert_eq!((r.created, r.pending), (5, 5));
        assert_eq!(db.discover_recommendations(&scope).unwrap().created, 0);
        let all = db
            .recommendations(&crate::db::RecFilter::default())
            .unwrap();
        let mut numbers: Vec<u64> = all.iter().map(|c| c.number).collect();
        numbers.sort_unstable();
        assert_eq!(numbers, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn discover_is_idempotent_keeps_history_and_decisions_and_refreshes_on_demand() {
        use crate::db::{Decision, RecFilter};
        let mut db = Db::open_in_memory().unwrap();
        db.replace_issues(&[issue(1, &["product::kurl"]), issue(2, &["product::kots"])])
            .unwrap();
        db.save_results(&[
            result(1, &["product::kots"], "a"),
            result(2, &["product::kots"], "a"),
        ])
        .unwrap();
        let taxonomy = names(&["product::kots", "product::kurl"]);
        let scope = every_repo(&taxonomy);
        let r = db.discover_recommendations(&scope).unwrap();
        assert_eq!((r.created, r.pending, r.no_change), (2, 1, 1));
        assert_eq!(db.discover_recommendations(&scope).unwrap().created, 0);
        let current = db.recommendations(&RecFilter::default()).unwrap();
        let one = current.iter().find(|c| c.number == 1).unwrap();
        assert_eq!(one.add, names(&["product::kots"]));
        assert_eq!(one.remove, names(&["product::kurl"]));
        // A decision is kept by a plain discover, and by a newer result (for audit).
        let approve = Decision {
            status: RecStatus::Approved,
            final_labels: None,
            note: Some("ok".into()),
        };
        db.decide(one.id, &approve).unwrap();
        let plain = db.discover_recommendations(&scope).unwrap();
        assert_eq!((plain.created, plain.refreshed), (0, 0));
        assert_eq!(
            db.recommendation(one.id).unwrap().unwrap().status,
            RecStatus::Approved
        );
        db.save_results(&[result(1, &["product::troubleshoot"], "b")])
            .unwrap();
        let r = db.discover_recommendations(&scope).unwrap();
        assert_eq!((r.created, r.superseded), (1, 1));
        let all = db
            .recommendations(&RecFilter {
                history: true,
                ..RecFilter::default()
            })
            .unwrap();
        let old = all.iter().find(|c| c.id == one.id).unwrap();
        assert_eq!(old.status, RecStatus::Approved);
        assert!(old.superseded_by.is_some());
        // A superseded recommendation cannot be decided on any more.
        assert!(db.decide(one.id, &approve).is_err());
        let new = all
            .iter()
            .find(|c| c.number == 1 && c.superseded_by.is_none())
            .unwrap();
        assert_eq!(new.status, RecStatus::Pending);
        db.decide(
            new.id,
            &Decision {
                status: RecStatus::Rejected,
                final_labels: None,
                note: None,
            },
        )
        .unwrap();
        // --force-refresh sends the current one back to review, re-derived from the labels now.
        let forced = DiscoverScope {
            force_refresh: true,
            ..scope
        };
        let r = db.discover_recommendations(&forced).unwrap();
        assert_eq!((r.created, r.refreshed), (0, 2));
        let again = db.recommendation(new.id).unwrap().unwrap();
        assert_eq!((again.status, again.notes), (RecStatus::Pending, None));
    }
}
