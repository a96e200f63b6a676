//! The explanatory comment of `update-labels --comment`: its body, its hidden marker, and
//! posting it at most once per recommended result (looked up on the issue before any repeat).

use crate::db::{RecLabel, RecRow};
use crate::github::client::GitHubError;
use crate::github::labels;
use crate::recommendations::apply::{Deps, IssueResult, Planned};

/// The hidden marker of the explanatory comment: one comment per recommended result.
pub fn comment_marker(rec: &RecRow) -> String {
    format!("<!-- github-analysis:labels result={} -->", rec.result_md5)
}

/// Posts the explanatory comment unless it was posted before (recorded, or found on the issue
/// by its marker). `Ok(None)`: already there.
pub(super) async fn post(
    deps: &mut Deps<'_>,
    p: &Planned,
    r: &IssueResult,
) -> anyhow::Result<Option<u16>> {
    let rec = &p.rec;
    let marker = comment_marker(rec);
    if deps.db.comment_posted(rec.id)? || on_github(deps, rec, &marker).await? {
        return Ok(None);
    }
    let body = comment_body(rec, &p.reasons, &r.added, &r.removed, &marker);
    let post = || {
        labels::post_comment(
            deps.client,
            deps.pacer,
            &rec.org,
            &rec.repo,
            rec.number,
            &body,
        )
    };
    match post().await {
        Ok(status) => Ok(Some(status)),
        // It may have been posted: look before posting again, so a re-run or a retry never
        // makes a second comment.
        Err(GitHubError::OutcomeUnknown { .. }) => {
            if on_github(deps, rec, &marker).await? {
                return Ok(None);
            }
            Ok(Some(post().await?))
        }
        Err(e) => Err(e.into()),
    }
}

/// The comment: what changed, the model's confidence and reasoning per label, the review.
pub fn comment_body(
    rec: &RecRow,
    reasons: &[RecLabel],
    added: &[String],
    removed: &[String],
    marker: &str,
) -> String {
    let mut s = format!(
        "{marker}\n**Labels updated from an AI recommendation** ({}",
        rec.processor
    );
    if let Some(m) = &rec.model {
        s.push_str(&format!(", model `{m}`"));
    }
    if let Some(c) = rec.confidence {
        s.push_str(&format!(", confidence {c:.2}"));
    }
    s.push_str(")\n");
    let reason = |l: &str| reasons.iter().find(|r| r.label.eq_ignore_ascii_case(l));
    for (title, list) in [("Added", added), ("Removed", removed)] {
        if list.is_empty() {
            continue;
        }
        s.push_str(&format!("\n{title}:\n"));
        for l in list {
            let r = reason(l);
            s.push_str(&format!("- `{l}`"));
            if let Some(c) = r.and_then(|r| r.confidence) {
                s.push_str(&format!(" (confidence {c:.2})"));
            }
            if let Some(why) = r.and_then(|r| r.reasoning.as_deref()) {
                s.push_str(&format!(": {}", why.replace('\n', " ")));
            }
            s.push('\n');
        }
    }
    match (&rec.reviewed_at, &rec.notes) {
        (Some(at), Some(note)) => s.push_str(&format!(
            "\nReviewed {}: {}\n",
            at.format("%Y-%m-%d"),
            note.replace('\n', " ")
        )),
        (Some(at), None) => s.push_str(&format!("\nReviewed {}.\n", at.format("%Y-%m-%d"))),
        _ => {}
    }
    s
}

/// Whether the issue already has the comment with `marker`.
async fn on_github(deps: &mut Deps<'_>, rec: &RecRow, marker: &str) -> anyhow::Result<bool> {
    labels::has_comment_with(
        deps.client,
        deps.db,
        &rec.org,
        &rec.repo,
        rec.number,
        marker,
    )
    .await
}
