//! `recommendations …`: discover, list, summary, show, review-session, approve, reject. The
//! terminal side of review-session is `review_terminal.rs`; the loop is
//! `recommendations::review`.

use serde_json::{json, Value};

use crate::cli::{
    DecideArgs, DiscoverArgs, RecListArgs, RecScopeArgs, RecShowArgs, RecommendationsCommand,
    ReviewArgs,
};
use crate::commands::review_terminal::TerminalReviewer;
use crate::commands::{ask, check_scope, Ctx};
use crate::db::{Db, DiscoverScope, RecFilter, RecLabel, RecRow, RecStatus};
use crate::error::{user, ExitStatus};
use crate::printer::{OutputFormat, Printer, Table};
use crate::processors::taxonomy::Taxonomy;
use crate::recommendations::review::{self, ReviewItem};
use crate::store::names;

pub async fn run(ctx: &Ctx, cmd: RecommendationsCommand) -> anyhow::Result<ExitStatus> {
    match cmd {
        RecommendationsCommand::Discover(a) => discover(ctx, &a),
        RecommendationsCommand::List(a) => list(ctx, &a),
        RecommendationsCommand::Summary(a) => summary(ctx, &a),
        RecommendationsCommand::Show(a) => show(ctx, &a),
        RecommendationsCommand::ReviewSession(a) => review_session(ctx, &a),
        RecommendationsCommand::Approve(a) => decide(ctx, &a, RecStatus::Approved),
        RecommendationsCommand::Reject(a) => decide(ctx, &a, RecStatus::Rejected),
    }
}

/// The taxonomy given, or the embedded one.
pub fn taxonomy(path: Option<&std::path::Path>) -> anyhow::Result<Taxonomy> {
    match path {
        Some(p) => Taxonomy::load(p),
        None => Taxonomy::default_replicated(),
    }
}

fn filter_of(s: &RecScopeArgs) -> anyhow::Result<RecFilter> {
    check_scope(&s.repo_scope)?;
    Ok(RecFilter {
        processor: s.processor.clone(),
        org: s.repo_scope.org.clone(),
        repo: s.repo_scope.repo.clone(),
        label: s.label.clone(),
        min_confidence: s.min_confidence,
        ..RecFilter::default()
    })
}

/// `org/repo#N`, `https://github.com/org/repo/issues/N`, or `N` with `--org` and `--repo`;
/// returns the issue id `org/repo#N`.
pub fn parse_issue_ref(s: &str, org: Option<&str>, repo: Option<&str>) -> anyhow::Result<String> {
    let t = s.trim();
    let bad = || {
        user(format!(
            "{s:?} is not an issue: write org/repo#N, its GitHub URL, or N with --org and --repo"
        ))
    };
    let (o, r, n) = if let Some(rest) = t
        .strip_prefix("https://github.com/")
        .or_else(|| t.strip_prefix("http://github.com/"))
    {
        let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        match parts.as_slice() {
            [o, r, "issues" | "pull", n] => (o.to_string(), r.to_string(), *n),
            _ => return Err(bad()),
        }
    } else if let Some((path, n)) = t.split_once('#') {
        let (o, r) = path.split_once('/').ok_or_else(bad)?;
        (o.to_string(), r.to_string(), n)
    } else {
        match (org, repo) {
            (Some(o), Some(r)) => (o.to_string(), r.to_string(), t),
            _ => return Err(bad()),
        }
    };
    let n: u64 = n.parse().map_err(|_| bad())?;
    names::validate_org(&o)?;
    names::validate_repo(&r)?;
    Ok(format!("{o}/{r}#{n}"))
}

fn discover(ctx: &Ctx, a: &DiscoverArgs) -> anyhow::Result<ExitStatus> {
    check_scope(&a.repo_scope)?;
    if !crate::processors::KNOWN.contains(&a.processor.as_str()) {
        return Err(user(format!(
            "unknown processor {:?}; known processors: {}",
            a.processor,
            crate::processors::KNOWN.join(", ")
        )));
    }
    let tax = taxonomy(a.taxonomy.as_deref())?;
    let labels: Vec<String> = tax.names().into_iter().map(String::from).collect();
    let mut db = ctx.db()?;
    let r = db.discover_recommendations(&DiscoverScope {
        processor: &a.processor,
        org: a.repo_scope.org.as_deref(),
        repo: a.repo_scope.repo.as_deref(),
        force_refresh: a.force_refresh,
        taxonomy: &labels,
    })?;
    for (issue, why) in &r.unreadable {
        ctx.printer
            .warn(&format!("{issue}: result not usable: {why}"));
    }
    if r.without_issue > 0 {
        ctx.printer.note(&format!(
            "{} result(s) have no stored issue (its file is gone): not discovered",
            r.without_issue
        ));
    }
    ctx.printer.summary(&[
        ("processor", json!(a.processor)),
        ("created", json!(r.created)),
        ("pending", json!(r.pending)),
        ("no_change", json!(r.no_change)),
        ("superseded", json!(r.superseded)),
        ("refreshed", json!(r.refreshed)),
        ("without_issue", json!(r.without_issue)),
        ("unreadable", json!(r.unreadable.len())),
    ])?;
    Ok(ExitStatus::Success)
}

/// A list of names: a JSON array in JSON, `a, b` in tables and CSV.
fn names_value(p: &Printer, items: &[String]) -> Value {
    match p.format {
        OutputFormat::Json => json!(items),
        _ => Value::String(items.join(", ")),
    }
}

fn round3(x: Option<f64>) -> Value {
    x.map_or(Value::Null, |c| json!((c * 1000.0).round() / 1000.0))
}

fn ts(t: Option<chrono::NaiveDateTime>) -> Value {
    t.map_or(Value::Null, |t| {
        json!(t
            .and_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    })
}

fn list(ctx: &Ctx, a: &RecListArgs) -> anyhow::Result<ExitStatus> {
    let mut f = filter_of(&a.scope)?;
    f.statuses = a.status.clone();
    f.history = a.history;
    f.limit = a.limit;
    let db = ctx.db()?;
    let recs = db.recommendations(&f)?;
    let p = &ctx.printer;
    let mut t = Table::new([
        "id",
        "issue",
        "processor",
        "status",
        "confidence",
        "add",
        "remove",
        "labels_then",
        "title",
        "reviewed_at",
        "notes",
    ]);
    for r in &recs {
        t.push(vec![
            json!(r.id),
            json!(r.issue_id),
            json!(r.processor),
            json!(r.status),
            round3(r.confidence),
            names_value(p, &r.effective_add()),
            names_value(p, &r.effective_remove()),
            names_value(p, &r.labels_before),
            r.title.as_ref().map_or(Value::Null, |t| json!(t)),
            ts(r.reviewed_at),
            r.notes.as_ref().map_or(Value::Null, |n| json!(n)),
        ]);
    }
    if recs.is_empty() && p.format == OutputFormat::Table {
        p.note("No recommendations match (run `recommendations discover` after processing).");
        return Ok(ExitStatus::Success);
    }
    p.table(&t)?;
    Ok(ExitStatus::Success)
}

fn summary(ctx: &Ctx, a: &RecScopeArgs) -> anyhow::Result<ExitStatus> {
    let f = filter_of(a)?;
    let s = ctx.db()?.recommendation_summary(&f)?;
    let p = &ctx.printer;
    let mut status = Table::new(["status", "count"]);
    for (k, n) in &s.by_status {
        status.push(vec![json!(k), json!(n)]);
    }
    let mut labels = Table::new(["label", "action", "count", "pending"]);
    for (l, action, n, pending) in &s.by_label {
        labels.push(vec![json!(l), json!(action), json!(n), json!(pending)]);
    }
    let mut conf = Table::new(["confidence", "count"]);
    for (k, n) in &s.by_confidence {
        conf.push(vec![json!(k), json!(n)]);
    }
    if p.format == OutputFormat::Json {
        let rows = |t: &Table| -> Value {
            t.rows
                .iter()
                .map(|r| Value::Object(t.columns.iter().cloned().zip(r.iter().cloned()).collect()))
                .collect()
        };
        p.json(&json!({
            "by_status": rows(&status),
            "by_label": rows(&labels),
            "by_confidence": rows(&conf),
        }))?;
        return Ok(ExitStatus::Success);
    }
    p.titled_table("By status", &status)?;
    p.titled_table("By label", &labels)?;
    p.titled_table("By confidence", &conf)?;
    Ok(ExitStatus::Success)
}

/// The facts of one recommendation, as `show` and the review session print them.
pub fn print_item(
    p: &Printer,
    rec: &RecRow,
    labels: &[RecLabel],
    heading: Option<&str>,
) -> anyhow::Result<()> {
    if let Some(h) = heading {
        p.line(h)?;
    }
    p.summary(&[
        ("issue", json!(rec.issue_id)),
        (
            "title",
            rec.title.as_ref().map_or(Value::Null, |t| json!(t)),
        ),
        (
            "url",
            rec.html_url.as_ref().map_or(Value::Null, |u| json!(u)),
        ),
        ("recommendation", json!(rec.id)),
        ("processor", json!(rec.processor)),
        (
            "model",
            rec.model.as_ref().map_or(Value::Null, |m| json!(m)),
        ),
        ("status", json!(rec.status)),
        ("confidence", round3(rec.confidence)),
        ("labels_then", names_value(p, &rec.labels_before)),
        ("add", names_value(p, &rec.effective_add())),
        ("remove", names_value(p, &rec.effective_remove())),
        ("labels_after", names_value(p, &rec.labels_after())),
        ("modified", json!(rec.final_labels.is_some())),
        (
            "notes",
            rec.notes.as_ref().map_or(Value::Null, |n| json!(n)),
        ),
        ("reviewed_at", ts(rec.reviewed_at)),
        ("applied_at", ts(rec.applied_at)),
    ])?;
    let mut t = Table::new(["action", "label", "confidence", "reasoning"]);
    for l in labels {
        t.push(vec![
            json!(l.action),
            json!(l.label),
            round3(l.confidence),
            l.reasoning.as_ref().map_or(Value::Null, |r| json!(r)),
        ]);
    }
    if !t.rows.is_empty() {
        p.table(&t)?;
    }
    Ok(())
}

fn show(ctx: &Ctx, a: &RecShowArgs) -> anyhow::Result<ExitStatus> {
    let id = parse_issue_ref(
        &a.issue,
        a.repo_scope.org.as_deref(),
        a.repo_scope.repo.as_deref(),
    )?;
    let db = ctx.db()?;
    let recs = db.recommendations(&RecFilter {
        issue_ids: vec![id.clone()],
        processor: a.processor.clone(),
        history: true,
        ..RecFilter::default()
    })?;
    if recs.is_empty() {
        return Err(user(format!(
            "no recommendation for {id}: process it, then run `recommendations discover`"
        )));
    }
    let ids: Vec<i64> = recs.iter().map(|r| r.id).collect();
    let mut labels = db.recommendation_labels(&ids)?;
    let (current, older): (Vec<&RecRow>, Vec<&RecRow>) =
        recs.iter().partition(|r| r.superseded_by.is_none());
    let p = &ctx.printer;
    if p.format == OutputFormat::Json {
        let one = |r: &RecRow, l: Vec<RecLabel>| {
            json!({
                "id": r.id, "issue": r.issue_id, "title": r.title, "url": r.html_url,
                "processor": r.processor, "model": r.model, "status": r.status,
                "confidence": r.confidence, "labels_then": r.labels_before,
                "add": r.effective_add(), "remove": r.effective_remove(),
                "labels_after": r.labels_after(), "final_labels": r.final_labels,
                "notes": r.notes, "reviewed_at": ts(r.reviewed_at), "applied_at": ts(r.applied_at),
                "superseded_by": r.superseded_by, "labels": l,
            })
        };
        let cur: Vec<Value> = current
            .iter()
            .map(|r| one(r, labels.remove(&r.id).unwrap_or_default()))
            .collect();
        let old: Vec<Value> = older
            .iter()
            .map(|r| one(r, labels.remove(&r.id).unwrap_or_default()))
            .collect();
        p.json(&json!({"issue": id, "current": cur, "history": old}))?;
        return Ok(ExitStatus::Success);
    }
    for r in &current {
        print_item(p, r, &labels.remove(&r.id).unwrap_or_default(), None)?;
    }
    if !older.is_empty() {
        let mut t = Table::new([
            "id",
            "status",
            "confidence",
            "add",
            "remove",
            "created_at",
            "superseded_by",
        ]);
        for r in &older {
            t.push(vec![
                json!(r.id),
                json!(r.status),
                round3(r.confidence),
                names_value(p, &r.effective_add()),
                names_value(p, &r.effective_remove()),
                ts(Some(r.created_at)),
                json!(r.superseded_by),
            ]);
        }
        p.titled_table("Earlier recommendations", &t)?;
    }
    Ok(ExitStatus::Success)
}

fn review_items(db: &Db, f: &RecFilter) -> anyhow::Result<Vec<ReviewItem>> {
    let recs = db.recommendations(f)?;
    let ids: Vec<i64> = recs.iter().map(|r| r.id).collect();
    let mut labels = db.recommendation_labels(&ids)?;
    Ok(recs
        .into_iter()
        .map(|rec| ReviewItem {
            labels: labels.remove(&rec.id).unwrap_or_default(),
            rec,
        })
        .collect())
}

fn review_session(ctx: &Ctx, a: &ReviewArgs) -> anyhow::Result<ExitStatus> {
    ask::require_terminal(
        "review-session needs a terminal to ask on; in scripts use \
         `recommendations approve|reject ISSUE...` or `--all` with filters \
         (e.g. `recommendations approve --all --label product::kots --min-confidence 0.9`)",
    )?;
    let mut f = filter_of(&a.scope)?;
    f.statuses = if a.status.is_empty() {
        vec![RecStatus::Pending]
    } else {
        a.status.clone()
    };
    let tax = taxonomy(a.taxonomy.as_deref())?;
    let mut db = ctx.db()?;
    let items = review_items(&db, &f)?;
    if items.is_empty() {
        ctx.printer.note("Nothing to review.");
        return Ok(ExitStatus::Success);
    }
    let mut reviewer = TerminalReviewer::new(&ctx.printer, &tax);
    let r = review::run_session(&mut db, &items, &mut reviewer)?;
    ctx.printer.summary(&[
        ("approved", json!(r.approved)),
        ("modified", json!(r.modified)),
        ("rejected", json!(r.rejected)),
        ("needs_modification", json!(r.needs_modification)),
        ("skipped", json!(r.skipped)),
        ("not_reviewed", json!(r.not_reviewed)),
    ])?;
    Ok(ExitStatus::Success)
}

fn decide(ctx: &Ctx, a: &DecideArgs, status: RecStatus) -> anyhow::Result<ExitStatus> {
    let mut f = filter_of(&a.scope)?;
    let mut db = ctx.db()?;
    let recs = if a.all {
        f.statuses = vec![RecStatus::Pending];
        db.recommendations(&f)?
    } else {
        let mut out = Vec::new();
        for s in &a.issues {
            let id = parse_issue_ref(
                s,
                a.scope.repo_scope.org.as_deref(),
                a.scope.repo_scope.repo.as_deref(),
            )?;
            let found = db.recommendations(&RecFilter {
                issue_ids: vec![id.clone()],
                ..f.clone()
            })?;
            if found.is_empty() {
                return Err(user(format!(
                    "no current recommendation for {id} matches: see `recommendations show {id}`"
                )));
            }
            out.extend(found);
        }
        out
    };
    let changed = review::decide_all(&mut db, &recs, status, a.note.clone())?;
    let p = &ctx.printer;
    let mut t = Table::new(["id", "issue", "before", "after", "add", "remove"]);
    for (r, before) in &changed {
        t.push(vec![
            json!(r.id),
            json!(r.issue_id),
            json!(before),
            json!(status),
            names_value(p, &r.effective_add()),
            names_value(p, &r.effective_remove()),
        ]);
    }
    if p.format == OutputFormat::Table {
        if !t.rows.is_empty() {
            p.table(&t)?;
        }
        p.line(&format!(
            "{} recommendation(s) {status}; {} already were.",
            changed.len(),
            recs.len() - changed.len()
        ))?;
    } else {
        p.table(&t)?;
    }
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_references_in_every_accepted_form() {
        assert_eq!(parse_issue_ref("o/r#12", None, None).unwrap(), "o/r#12");
        assert_eq!(
            parse_issue_ref("https://github.com/o/r/issues/12", None, None).unwrap(),
            "o/r#12"
        );
        assert_eq!(
            parse_issue_ref("12", Some("o"), Some("r")).unwrap(),
            "o/r#12"
        );
        for bad in ["12", "o/r", "o/r#x", "../r#1", "https://github.com/o/r"] {
            assert!(parse_issue_ref(bad, None, None).is_err(), "{bad}");
        }
    }
}
