//! `update-labels`: approved recommendations to GitHub, one issue at a time. The safety rules
//! (docs/recommendations.md):
//!
//! * only approved ones (or, with an explicit rule, pending ones at a confidence) are applied;
//! * additive by default: labels are removed only when asked (`remove_labels`);
//! * the label set is never replaced: one POST adds, one DELETE per label removes;
//! * just before changing an issue its labels are read again; what a person changed on GitHub
//!   since the recommendation was made wins (a label removed since is never re-added, one
//!   already removed is not removed again) and the issue is reported "changed on GitHub";
//! * a label the repository lacks is an error for that issue, unless `create_missing`;
//! * every change is recorded in `label_changes`, and a recommendation becomes `applied` in
//!   the same transaction, only once everything it asks for is on GitHub;
//! * a failure on one issue never stops the others (a repository that refuses the token is not
//!   asked again in the same run); a dry run sends nothing at all.

use std::collections::HashMap;
use std::sync::Arc;

use crate::db::recommendations::has_label;
use crate::db::{Db, LabelChange, RecFilter, RecLabel, RecRow};
use crate::github::client::{Client, GitHubError};
use crate::github::labels::{self, Removed, DEFAULT_COLOR};
use crate::github::pacing::Pacer;
use crate::processors::taxonomy::Taxonomy;
use crate::recommendations::local::LocalUpdates;
use crate::report::Reporter;
use crate::store::{Label, Store};

/// How `update-labels` was asked to apply.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    pub remove_labels: bool,
    pub comment: bool,
    pub create_missing: bool,
    pub dry_run: bool,
}

/// One recommendation's change, planned from the labels stored locally.
#[derive(Debug, Clone)]
pub struct Planned {
    pub rec: RecRow,
    pub reasons: Vec<RecLabel>,
    pub add: Vec<String>,
    pub remove: Vec<String>,
    /// Removals left out because the run is additive (no `--remove-labels`).
    pub held_back: Vec<String>,
    /// The issue file, when the issue is stored.
    pub file_path: Option<String>,
}

/// The plan of each recommendation `filter` selects, against the issue's stored labels, as
/// printed before anything is sent and as a dry run records it.
pub fn plan(db: &Db, filter: &RecFilter, opts: ApplyOptions) -> anyhow::Result<Vec<Planned>> {
    let recs = db.recommendations(filter)?;
    let ids: Vec<i64> = recs.iter().map(|r| r.id).collect();
    let reasons = db.recommendation_labels(&ids)?;
    let issue_ids: Vec<String> = recs.iter().map(|r| r.issue_id.clone()).collect();
    let local = db.issue_labels(&issue_ids)?;
    Ok(plan_rows(recs, reasons, &local, opts))
}

/// [`plan`] of rows already read (`local`: issue id → (file, label names)).
fn plan_rows(
    recs: Vec<RecRow>,
    mut reasons: HashMap<i64, Vec<RecLabel>>,
    local: &HashMap<String, (String, Vec<String>)>,
    opts: ApplyOptions,
) -> Vec<Planned> {
    recs.into_iter()
        .map(|rec| {
            let (file_path, stored) = match local.get(&rec.issue_id) {
                Some((f, l)) => (Some(f.clone()), l.clone()),
                None => (None, rec.labels_before.clone()),
            };
            let add = rec
                .effective_add()
                .into_iter()
                .filter(|l| !has_label(&stored, l))
                .collect();
            let (remove, held_back): (Vec<String>, Vec<String>) = rec
                .effective_remove()
                .into_iter()
                .filter(|l| has_label(&stored, l))
                .partition(|_| opts.remove_labels);
            Planned {
                reasons: reasons.remove(&rec.id).unwrap_or_default(),
                rec,
                add,
                remove,
                held_back,
                file_path,
            }
        })
        .collect()
}

/// How one issue ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Labels were changed on GitHub.
    Applied,
    /// GitHub already had every change: nothing was sent.
    AlreadyDone,
    /// Nothing to add, removals held back (no `--remove-labels`): still approved.
    HeldBack,
    /// Dry run: recorded as planned, nothing sent.
    Planned,
    Failed,
}

/// What happened to one issue.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IssueResult {
    pub issue: String,
    pub recommendation: i64,
    pub outcome: Outcome,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub held_back: Vec<String>,
    pub created_labels: Vec<String>,
    /// The issue's labels on GitHub differed from those the recommendation was made against.
    pub changed_on_github: bool,
    pub commented: bool,
    /// `--comment` was asked for and the comment could not be posted (the labels were).
    pub comment_failed: bool,
    pub note: Option<String>,
}

/// What `apply` works with.
pub struct Deps<'a> {
    pub client: &'a Client,
    pub pacer: &'a Pacer,
    pub db: &'a mut Db,
    pub store: &'a Store,
    /// Descriptions for labels created with `create_missing`.
    pub taxonomy: &'a Taxonomy,
    pub reporter: Arc<dyn Reporter>,
}

/// Records a dry run: the planned changes as `label_changes` rows with `dry_run`, nothing sent.
pub fn record_dry_run(db: &mut Db, plans: &[Planned]) -> anyhow::Result<Vec<IssueResult>> {
    let now = chrono::Utc::now().naive_utc();
    let mut out = Vec::new();
    for p in plans {
        let before = p.rec.labels_before.clone();
        let changes: Vec<LabelChange> = p
            .add
            .iter()
            .map(|l| (l, "add"))
            .chain(p.remove.iter().map(|l| (l, "remove")))
            .map(|(l, action)| LabelChange {
                issue_id: p.rec.issue_id.clone(),
                recommendation_id: Some(p.rec.id),
                label: Some(l.clone()),
                action,
                labels_before: Some(before.clone()),
                labels_after: None,
                http_status: None,
                error: None,
                applied_at: now,
                dry_run: true,
            })
            .collect();
        db.record_label_changes(&changes, None)?;
        out.push(IssueResult {
            issue: p.rec.issue_id.clone(),
            recommendation: p.rec.id,
            outcome: Outcome::Planned,
            added: p.add.clone(),
            removed: p.remove.clone(),
            held_back: p.held_back.clone(),
            created_labels: Vec::new(),
            changed_on_github: false,
            commented: false,
            comment_failed: false,
            note: None,
        });
    }
    Ok(out)
}

/// Per-run memory: repository labels looked up, repositories (or all) that refused us.
#[derive(Default)]
struct RunState {
    repo_labels: HashMap<(String, String, String), Option<Label>>,
    refused: HashMap<(String, String), String>,
    refused_all: Option<String>,
    local: LocalUpdates,
}

fn repo_key(org: &str, repo: &str) -> (String, String) {
    (org.to_ascii_lowercase(), repo.to_ascii_lowercase())
}

/// Applies each plan in turn; `on_done` is told after each issue (progress).
pub async fn apply(
    plans: &[Planned],
    opts: ApplyOptions,
    deps: &mut Deps<'_>,
    mut on_done: impl FnMut(&IssueResult),
) -> anyhow::Result<(Vec<IssueResult>, Vec<(String, String)>)> {
    let mut state = RunState::default();
    let mut results = Vec::with_capacity(plans.len());
    let mut local_failed = Vec::new();
    for p in plans {
        let r = apply_one(p, opts, deps, &mut state).await?;
        on_done(&r);
        results.push(r);
        local_failed.extend(state.local.flush_if_full(deps.store, deps.db));
        // GitHub calls and pacing waits come next: another process may use the database.
        deps.db.release();
    }
    local_failed.extend(state.local.flush(deps.store, deps.db));
    Ok((results, local_failed))
}

/// A user-facing reason for a GitHub error on one issue, and whether the whole repository (or
/// every repository) refuses us, so no more requests go there in this run.
fn explain(e: &GitHubError, what: &str) -> (String, Refusal) {
    match e {
        GitHubError::Unauthorized(_) => (format!("{e}"), Refusal::All),
        GitHubError::Forbidden { message } => (
            format!(
                "GitHub refused to {what} (403 {message}): the token needs write access to \
                 issues (fine-grained: Issues read and write; classic: repo / public_repo)"
            ),
            Refusal::Repo,
        ),
        GitHubError::NotFound { .. } => (
            format!(
                "GitHub answered 404 to {what}: the issue or repository is gone, or the token \
                 cannot see it"
            ),
            Refusal::None,
        ),
        GitHubError::Gone { .. } => (
            "the issue was deleted on GitHub (410 Gone)".to_string(),
            Refusal::None,
        ),
        GitHubError::Status {
            status: 422,
            message,
            ..
        } => (
            format!("GitHub refused to {what} (422 {message})"),
            Refusal::None,
        ),
        other => (format!("could not {what}: {other}"), Refusal::None),
    }
}

#[derive(PartialEq)]
enum Refusal {
    None,
    Repo,
    All,
}

fn failed(p: &Planned, note: String, changed: bool) -> IssueResult {
    IssueResult {
        issue: p.rec.issue_id.clone(),
        recommendation: p.rec.id,
        outcome: Outcome::Failed,
        added: Vec::new(),
        removed: Vec::new(),
        held_back: p.held_back.clone(),
        created_labels: Vec::new(),
        changed_on_github: changed,
        commented: false,
        comment_failed: false,
        note: Some(note),
    }
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|x| has_label(b, x))
}

fn names(labels: &[Label]) -> Vec<String> {
    labels.iter().map(|l| l.name.clone()).collect()
}

async fn apply_one(
    p: &Planned,
    opts: ApplyOptions,
    deps: &mut Deps<'_>,
    state: &mut RunState,
) -> anyhow::Result<IssueResult> {
    let rec = &p.rec;
    let key = repo_key(&rec.org, &rec.repo);
    if let Some(why) = state.refused_all.as_ref().or(state.refused.get(&key)) {
        return Ok(failed(p, format!("not sent: {why}"), false));
    }
    let refuse = |state: &mut RunState, e: &GitHubError, what: &str| {
        let (why, refusal) = explain(e, what);
        match refusal {
            Refusal::All => state.refused_all = Some(why.clone()),
            Refusal::Repo => {
                state.refused.insert(key.clone(), why.clone());
            }
            Refusal::None => {}
        }
        why
    };
    // The issue as it is now: a person may have changed its labels since.
    let now = match labels::issue_now(deps.client, deps.db, &rec.org, &rec.repo, rec.number).await {
        Ok(n) => n,
        Err(e) => {
            let why = match e.downcast_ref::<GitHubError>() {
                Some(g) => refuse(state, g, "read the issue"),
                None => format!("could not read the issue: {e:#}"),
            };
            return Ok(failed(p, why, false));
        }
    };
    let moved = now.number != rec.number
        || now.location.as_ref().is_some_and(|(o, r)| {
            !o.eq_ignore_ascii_case(&rec.org) || !r.eq_ignore_ascii_case(&rec.repo)
        });
    if moved {
        let (o, r) = now.location.clone().unwrap_or_default();
        return Ok(failed(
            p,
            format!(
                "the issue moved on GitHub to {o}/{r}#{}: collect it again and re-run discover",
                now.number
            ),
            true,
        ));
    }
    let before = now.names();
    let changed_on_github = !same_set(&before, &rec.labels_before);
    // Only what still makes sense: a label is added if the issue lacks it (one removed by a
    // person since the recommendation was made is not in `add`: it was on the issue then), and
    // removed only if the issue still has it (as GitHub spells it).
    let to_add: Vec<String> = rec
        .effective_add()
        .into_iter()
        .filter(|l| !has_label(&before, l))
        .collect();
    let wanted_removals = rec.effective_remove();
    let to_remove: Vec<String> = before
        .iter()
        .filter(|l| opts.remove_labels && has_label(&wanted_removals, l))
        .cloned()
        .collect();
    let held_back: Vec<String> = before
        .iter()
        .filter(|l| !opts.remove_labels && has_label(&wanted_removals, l))
        .cloned()
        .collect();
    let mut result = IssueResult {
        issue: rec.issue_id.clone(),
        recommendation: rec.id,
        outcome: Outcome::AlreadyDone,
        added: Vec::new(),
        removed: Vec::new(),
        held_back: held_back.clone(),
        created_labels: Vec::new(),
        changed_on_github,
        commented: false,
        comment_failed: false,
        note: changed_on_github.then(|| "changed on GitHub since the recommendation".to_string()),
    };
    // A change of this issue from the labels it had `before`; `answered` / `refused` say how
    // it went.
    let change = |label: Option<&str>, action: &'static str, before: &[String]| LabelChange {
        issue_id: rec.issue_id.clone(),
        recommendation_id: Some(rec.id),
        label: label.map(str::to_string),
        action,
        labels_before: Some(before.to_vec()),
        labels_after: None,
        http_status: None,
        error: None,
        applied_at: chrono::Utc::now().naive_utc(),
        dry_run: false,
    };
    if to_add.is_empty() && to_remove.is_empty() {
        let complete = held_back.is_empty();
        deps.db
            .record_label_changes(&[], complete.then_some(rec.id))?;
        if !complete {
            result.outcome = Outcome::HeldBack;
        }
        if let Some(f) = &p.file_path {
            state.local.push(&rec.issue_id, f, now.labels.clone());
        }
        return Ok(result);
    }
    // Every label to add must exist in the repository: GitHub would otherwise create it
    // silently, grey and without a description.
    let mut changes: Vec<LabelChange> = Vec::new();
    let mut add_names: Vec<String> = Vec::new();
    for l in &to_add {
        let k = (key.0.clone(), key.1.clone(), l.to_lowercase());
        let found = match state.repo_labels.get(&k) {
            Some(f) => f.clone(),
            None => match labels::repo_label(deps.client, &rec.org, &rec.repo, l).await {
                Ok(f) => {
                    state.repo_labels.insert(k.clone(), f.clone());
                    f
                }
                Err(e) => {
                    let why = refuse(state, &e, &format!("look up label {l:?}"));
                    deps.db.record_label_changes(&changes, None)?;
                    return Ok(failed(p, why, changed_on_github));
                }
            },
        };
        match found {
            Some(existing) => add_names.push(existing.name),
            None if opts.create_missing => {
                let label = Label {
                    name: l.clone(),
                    color: Some(DEFAULT_COLOR.into()),
                    description: deps
                        .taxonomy
                        .labels
                        .iter()
                        .find(|t| t.name.eq_ignore_ascii_case(l))
                        .map(|t| t.description.clone()),
                };
                match labels::create_label(deps.client, deps.pacer, &rec.org, &rec.repo, &label)
                    .await
                {
                    Ok(status) => {
                        changes
                            .push(change(Some(l), "create_label", &before).answered(status, None));
                        state.repo_labels.insert(k, Some(label));
                        result.created_labels.push(l.clone());
                        add_names.push(l.clone());
                    }
                    Err(e) => {
                        let why = refuse(state, &e, &format!("create label {l:?}"));
                        changes.push(change(Some(l), "create_label", &before).refused(&why));
                        deps.db.record_label_changes(&changes, None)?;
                        return Ok(failed(p, why, changed_on_github));
                    }
                }
            }
            None => {
                deps.db.record_label_changes(&changes, None)?;
                return Ok(failed(
                    p,
                    format!(
                        "label {l:?} does not exist in {}/{}: create it on GitHub, or pass \
                         --create-missing-labels (nothing was changed on this issue)",
                        rec.org, rec.repo
                    ),
                    changed_on_github,
                ));
            }
        }
    }
    let mut current = now.labels.clone();
    if !add_names.is_empty() {
        match labels::add_labels(
            deps.client,
            deps.pacer,
            &rec.org,
            &rec.repo,
            rec.number,
            &add_names,
        )
        .await
        {
            Ok((status, after)) => {
                let after_names = names(&after);
                for l in &add_names {
                    changes.push(
                        change(Some(l), "add", &names(&current))
                            .answered(status, Some(&after_names)),
                    );
                }
                current = after;
                result.added = add_names.clone();
            }
            Err(e) => {
                let why = refuse(state, &e, "add labels");
                for l in &add_names {
                    changes.push(change(Some(l), "add", &before).refused(&why));
                }
                deps.db.record_label_changes(&changes, None)?;
                return Ok(failed(p, why, changed_on_github));
            }
        }
    }
    for l in &to_remove {
        let prior = names(&current);
        match labels::remove_label(deps.client, deps.pacer, &rec.org, &rec.repo, rec.number, l)
            .await
        {
            Ok(Removed::Done(status, after)) => {
                let after_names = names(&after);
                changes
                    .push(change(Some(l), "remove", &prior).answered(status, Some(&after_names)));
                current = after;
                result.removed.push(l.clone());
            }
            Ok(Removed::NotOnIssue) => {
                changes.push(
                    change(Some(l), "remove", &prior)
                        .answered(404, None)
                        .refused("not on the issue any more (removed on GitHub meanwhile)"),
                );
                current.retain(|c| !c.name.eq_ignore_ascii_case(l));
                result.changed_on_github = true;
            }
            Err(e) => {
                let why = refuse(state, &e, &format!("remove label {l:?}"));
                changes.push(change(Some(l), "remove", &prior).refused(&why));
                deps.db.record_label_changes(&changes, None)?;
                if let Some(f) = &p.file_path {
                    state.local.push(&rec.issue_id, f, current);
                }
                let mut r = failed(p, why, result.changed_on_github);
                r.added = result.added;
                r.removed = result.removed;
                return Ok(r);
            }
        }
    }
    result.outcome = if result.added.is_empty() && result.removed.is_empty() {
        Outcome::AlreadyDone
    } else {
        Outcome::Applied
    };
    if opts.comment && result.outcome == Outcome::Applied {
        match super::comment::post(deps, p, &result).await {
            Ok(Some(status)) => {
                changes.push(change(None, "comment", &names(&current)).answered(status, None));
                result.commented = true;
            }
            Ok(None) => {}
            Err(e) => {
                let why = match e.downcast_ref::<GitHubError>() {
                    Some(g) => refuse(state, g, "post the comment"),
                    None => format!("could not post the comment: {e:#}"),
                };
                changes.push(change(None, "comment", &names(&current)).refused(&why));
                result.note = Some(format!("labels applied, but {why}"));
                result.comment_failed = true;
            }
        }
    }
    // Applied only when everything the recommendation asks for is on GitHub.
    let complete = held_back.is_empty();
    if !complete && result.outcome == Outcome::AlreadyDone {
        result.outcome = Outcome::HeldBack;
    }
    deps.db
        .record_label_changes(&changes, complete.then_some(rec.id))?;
    if let Some(f) = &p.file_path {
        state.local.push(&rec.issue_id, f, current);
    }
    Ok(result)
}
