//! The review loop: one recommendation at a time, the reviewer's choice recorded before the
//! next one is shown (each decision is its own committed statement), so quitting, a Ctrl-C or a
//! crash loses nothing decided. The terminal side (dialoguer) is in `commands/`; here the loop
//! talks to any [`Reviewer`], which is how it is tested without a terminal.

use crate::db::{Db, Decision, RecLabel, RecRow, RecStatus};
use crate::error::user;

/// What the reviewer chose for one recommendation.
#[derive(Debug, Clone, PartialEq)]
pub enum Choice {
    Approve,
    Reject,
    /// Not right yet: kept out of `update-labels` and flagged for another look.
    NeedsModification,
    /// Approve this label set instead of the proposal.
    Modify(Vec<String>),
    Skip,
    Quit,
}

/// One recommendation with what a reviewer needs to judge it.
#[derive(Debug, Clone)]
pub struct ReviewItem {
    pub rec: RecRow,
    /// The model's reasoning and confidence per proposed label.
    pub labels: Vec<RecLabel>,
}

/// Asks a person (or a test) for a choice and an optional note.
pub trait Reviewer {
    /// `position` is 1-based, `total` the number of items in the session.
    fn review(
        &mut self,
        item: &ReviewItem,
        position: usize,
        total: usize,
    ) -> anyhow::Result<(Choice, Option<String>)>;
}

/// What a session decided.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SessionReport {
    pub approved: usize,
    pub modified: usize,
    pub rejected: usize,
    pub needs_modification: usize,
    pub skipped: usize,
    /// Items not shown because the reviewer quit.
    pub not_reviewed: usize,
}

/// The decision a choice records (`None` for skip and quit).
pub fn decision(choice: &Choice, note: Option<String>) -> Option<Decision> {
    let (status, final_labels) = match choice {
        Choice::Approve => (RecStatus::Approved, None),
        Choice::Modify(set) => (RecStatus::Approved, Some(set.clone())),
        Choice::Reject => (RecStatus::Rejected, None),
        Choice::NeedsModification => (RecStatus::NeedsModification, None),
        Choice::Skip | Choice::Quit => return None,
    };
    Some(Decision {
        status,
        final_labels,
        note: note.filter(|n| !n.trim().is_empty()),
    })
}

/// Runs a session over `items`. Every decision is written before the next item is shown; an
/// error from the reviewer (a closed terminal) ends the session with the decisions so far kept.
pub fn run_session(
    db: &mut Db,
    items: &[ReviewItem],
    reviewer: &mut dyn Reviewer,
) -> anyhow::Result<SessionReport> {
    let mut report = SessionReport::default();
    let total = items.len();
    for (i, item) in items.iter().enumerate() {
        // A person may look at one issue for minutes: keep the database free meanwhile.
        db.release();
        let (choice, note) = reviewer.review(item, i + 1, total)?;
        if choice == Choice::Quit {
            report.not_reviewed = total - i;
            break;
        }
        if let Some(d) = decision(&choice, note) {
            db.decide(item.rec.id, &d)?;
        }
        match choice {
            Choice::Approve => report.approved += 1,
            Choice::Modify(_) => report.modified += 1,
            Choice::Reject => report.rejected += 1,
            Choice::NeedsModification => report.needs_modification += 1,
            Choice::Skip | Choice::Quit => report.skipped += 1,
        }
    }
    Ok(report)
}

/// The scriptable form (`recommendations approve|reject`): records one decision on each
/// recommendation; returns (recommendation, status before) of those changed. A recommendation
/// that cannot take the decision (applied, superseded, nothing to change) is an error naming it.
pub fn decide_all(
    db: &mut Db,
    recs: &[RecRow],
    status: RecStatus,
    note: Option<String>,
) -> anyhow::Result<Vec<(RecRow, RecStatus)>> {
    let mut changed = Vec::new();
    for rec in recs {
        if rec.status == status {
            continue;
        }
        if !matches!(
            rec.status,
            RecStatus::Pending
                | RecStatus::NeedsModification
                | RecStatus::Approved
                | RecStatus::Rejected
        ) {
            return Err(user(format!(
                "{} (recommendation {}) is {}: it cannot be {}{}",
                rec.issue_id,
                rec.id,
                rec.status,
                status,
                if changed.is_empty() {
                    String::new()
                } else {
                    format!("; the {} before it were recorded", changed.len())
                }
            )));
        }
        let d = Decision {
            status,
            final_labels: None,
            note: note.clone(),
        };
        db.decide(rec.id, &d)?;
        changed.push((rec.clone(), rec.status));
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{DiscoverScope, RecFilter};

    /// Plays scripted choices; past the script it fails like a terminal that went away.
    struct Script(Vec<Choice>);

    impl Reviewer for Script {
        fn review(
            &mut self,
            _: &ReviewItem,
            _: usize,
            _: usize,
        ) -> anyhow::Result<(Choice, Option<String>)> {
            if self.0.is_empty() {
                anyhow::bail!("interrupted");
            }
            Ok((self.0.remove(0), Some("looked".into())))
        }
    }

    fn db_with_pending(n: u64) -> Db {
        let mut db = Db::open_in_memory().unwrap();
        let mut loaded = Vec::new();
        let mut results = Vec::new();
        for k in 1..=n {
            let i = crate::store::StoredIssue::new("o", "r", k, "t");
            loaded.push(crate::db::LoadedIssue::fixture(i));
            let doc = serde_json::json!({"analysis": {"recommended_labels": [
                {"label": "product::kots", "confidence": 0.9, "reasoning": "r"}], "confidence": 0.9}});
            let row = crate::db::ResultRow::fixture(&format!("o/r#{k}"), 0.9, doc.to_string());
            results.push((row, vec![]));
        }
        db.replace_issues(&loaded).unwrap();
        db.save_results(&results).unwrap();
        let taxonomy = vec!["product::kots".to_string()];
        db.discover_recommendations(&DiscoverScope {
            processor: "product-labeling",
            org: None,
            repo: None,
            force_refresh: false,
            taxonomy: &taxonomy,
        })
        .unwrap();
        db
    }

    fn items(db: &Db) -> Vec<ReviewItem> {
        db.recommendations(&RecFilter::default())
            .unwrap()
            .into_iter()
            .map(|rec| ReviewItem {
                rec,
                labels: vec![],
            })
            .collect()
    }

    #[test]
    fn an_interrupted_session_keeps_every_decision_made_before() {
        let mut db = db_with_pending(3);
        let all = items(&db);
        let err = run_session(
            &mut db,
            &all,
            &mut Script(vec![
                Choice::Approve,
                Choice::Modify(vec!["product::kurl".into()]),
            ]),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "interrupted");
        let after = items(&db);
        let status: Vec<RecStatus> = after.iter().map(|i| i.rec.status).collect();
        assert_eq!(
            status,
            vec![RecStatus::Approved, RecStatus::Approved, RecStatus::Pending]
        );
        assert_eq!(after[0].rec.notes.as_deref(), Some("looked"));
        assert_eq!(
            after[1].rec.final_labels,
            Some(vec!["product::kurl".to_string()])
        );
        // Quit leaves the rest as they were and says how many were not shown.
        let r = run_session(&mut db, &after[2..], &mut Script(vec![Choice::Quit])).unwrap();
        assert_eq!(r.not_reviewed, 1);
        assert_eq!(items(&db)[2].rec.status, RecStatus::Pending);
    }

    #[test]
    fn scripted_decisions_refuse_what_cannot_change() {
        let mut db = db_with_pending(2);
        let all: Vec<RecRow> = items(&db).into_iter().map(|i| i.rec).collect();
        let changed = decide_all(&mut db, &all, RecStatus::Rejected, None).unwrap();
        assert_eq!(changed.len(), 2);
        // Rejecting again changes nothing.
        let all: Vec<RecRow> = items(&db).into_iter().map(|i| i.rec).collect();
        assert!(decide_all(&mut db, &all, RecStatus::Rejected, None)
            .unwrap()
            .is_empty());
        db.record_label_changes(&[], Some(all[0].id)).unwrap();
        let all: Vec<RecRow> = items(&db).into_iter().map(|i| i.rec).collect();
        let err = decide_all(&mut db, &all, RecStatus::Approved, None).unwrap_err();
        assert!(err.to_string().contains("is applied"), "{err}");
    }
}
