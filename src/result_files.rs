//! AI results as files and rows: the result document (docs/data.md shape, the same for
//! real-time and batch modes), its path, the `ai_results` row, and failure records.

use serde_json::{json, Value};

use crate::ai::{ModelSpec, Usage};
use crate::db::{IssueRef, ResultRow};
use crate::processors::{Processor, Recommendation, Validated};
use crate::store::{names, write_atomic, Store, RESULTS_DIR};

/// How a file is written: [`write_atomic`] (durable on return) or
/// [`crate::store::write_unsynced`] (a writer of many files then makes them durable together
/// with `store::make_durable`).
pub type Writer = fn(&std::path::Path, &[u8]) -> anyhow::Result<()>;

/// Failure records live beside the results, one per (issue, processor), removed on success.
pub const FAILURES_DIR: &str = "results/failures";

/// `{dir}/{org}_{repo}_issue_{n}_{processor}.json`, `dir` being [`RESULTS_DIR`] or
/// [`FAILURES_DIR`] (names validated before use).
fn rel_path(
    dir: &str,
    org: &str,
    repo: &str,
    number: u64,
    processor: &str,
) -> anyhow::Result<String> {
    names::validate_org(org)?;
    names::validate_repo(repo)?;
    Ok(format!(
        "{dir}/{org}_{repo}_issue_{number}_{processor}.json"
    ))
}

/// Everything known about one successful processing of an issue.
#[derive(Debug, Clone)]
pub struct Finished {
    pub issue: IssueRef,
    pub validated: Validated,
    pub usage: Usage,
    pub cost_usd: Option<f64>,
    pub processing_time_ms: u64,
    /// HTTP requests made (retries and the repair included); 0 for `rules`.
    pub requests: u32,
    /// The provider's response id of the accepted answer.
    pub response_id: Option<String>,
    /// What the token budget cut from the prompt, if anything.
    pub prompt_note: Option<String>,
}

/// How the result was produced.
#[derive(Debug, Clone, Copy)]
pub struct Provenance<'a> {
    pub processor: &'a Processor,
    pub model: &'a ModelSpec,
    /// `realtime` or `batch`.
    pub mode: &'a str,
    pub batch_job_id: Option<&'a str>,
}

/// The result document and its `ai_results` row.
pub fn build(f: &Finished, p: Provenance<'_>) -> anyhow::Result<(Value, ResultRow)> {
    let rel = rel_path(
        RESULTS_DIR,
        &f.issue.org,
        &f.issue.repo,
        f.issue.number,
        p.processor.name(),
    )?;
    let now = chrono::Utc::now();
    // Microseconds, not seconds: recommendations are keyed by the md5 of this document, and a
    // rerun of a deterministic model within the same second would otherwise write the same
    // bytes, so `--reprocess --include-reviewed` could not send a reviewed issue back to review.
    let mut processor = json!({
        "name": p.processor.name(),
        "version": p.processor.version(),
        "model": p.model.model,
        "provider": p.model.provider.name(),
        "mode": p.mode,
        "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    });
    if let Some(id) = p.batch_job_id {
        processor["batch_job_id"] = json!(id);
    }
    if let (Some(dst), Value::Object(extra)) = (processor.as_object_mut(), p.processor.provenance())
    {
        dst.extend(extra);
    }
    let u = &f.usage;
    let mut usage = json!({
        "prompt_tokens": u.prompt_tokens,
        "cached_tokens": u.cached_tokens,
        "cache_creation_tokens": u.cache_creation_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "cost_usd": f.cost_usd,
        "processing_time_ms": f.processing_time_ms,
        "requests": f.requests,
    });
    if let Some(id) = &f.response_id {
        usage["response_id"] = json!(id);
    }
    if let Some(n) = &f.prompt_note {
        usage["prompt_note"] = json!(n);
    }
    let doc = json!({
        "issue_reference": {
            "org": f.issue.org,
            "repo": f.issue.repo,
            "issue_number": f.issue.number,
            "file_path": f.issue.file_path,
        },
        "processor": processor,
        "analysis": f.validated.analysis,
        "usage": usage,
    });
    let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let row = ResultRow {
        issue_id: f.issue.id.clone(),
        processor: p.processor.name().to_string(),
        processor_version: p.processor.version().to_string(),
        model: p.model.model.clone(),
        provider: p.model.provider.name().to_string(),
        mode: p.mode.to_string(),
        confidence: f.validated.confidence,
        result_json: serde_json::to_string(&doc)?,
        prompt_tokens: clamp(u.prompt_tokens),
        cached_tokens: clamp(u.cached_tokens),
        completion_tokens: clamp(u.completion_tokens),
        cost_usd: f.cost_usd,
        processing_time_ms: clamp(f.processing_time_ms),
        created_at: now.naive_utc(),
        file_path: rel,
        batch_job_id: p.batch_job_id.map(str::to_string),
    };
    Ok((doc, row))
}

/// Writes the result file atomically (before the row, so a row always has its file) and
/// removes a stale failure record of the same issue.
pub fn write_file(
    store: &Store,
    doc: &Value,
    row: &ResultRow,
    issue: &IssueRef,
) -> anyhow::Result<()> {
    write_file_with(store, doc, row, issue, write_atomic)
}

/// [`write_file`] with a chosen writer: batch collect writes a chunk's files with
/// [`crate::store::write_unsynced`] and makes them durable together before their rows commit.
pub fn write_file_with(
    store: &Store,
    doc: &Value,
    row: &ResultRow,
    issue: &IssueRef,
    write: Writer,
) -> anyhow::Result<()> {
    let path = store.abs(&row.file_path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    refuse_foreign(store, &row.file_path, issue)?;
    write(&path, &serde_json::to_vec_pretty(doc)?)?;
    if let Ok(rel) = rel_path(
        FAILURES_DIR,
        &issue.org,
        &issue.repo,
        issue.number,
        &row.processor,
    ) {
        let _ = std::fs::remove_file(store.abs(&rel));
    }
    Ok(())
}

/// Records why an issue could not be processed (never a result): reason, attempts, time.
pub fn write_failure(
    store: &Store,
    issue: &IssueRef,
    p: Provenance<'_>,
    reason: &str,
    requests: u32,
) -> anyhow::Result<String> {
    write_failure_with(store, issue, p, reason, requests, write_atomic)
}

/// [`write_failure`] with a chosen writer (see [`write_file_with`]).
pub fn write_failure_with(
    store: &Store,
    issue: &IssueRef,
    p: Provenance<'_>,
    reason: &str,
    requests: u32,
    write: Writer,
) -> anyhow::Result<String> {
    let rel = rel_path(
        FAILURES_DIR,
        &issue.org,
        &issue.repo,
        issue.number,
        p.processor.name(),
    )?;
    let doc = json!({
        "issue_reference": {
            "org": issue.org,
            "repo": issue.repo,
            "issue_number": issue.number,
            "file_path": issue.file_path,
        },
        "processor": {
            "name": p.processor.name(),
            "version": p.processor.version(),
            "model": p.model.model,
            "provider": p.model.provider.name(),
            "mode": p.mode,
        },
        "error": reason,
        "requests": requests,
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    });
    let path = store.abs(&rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    refuse_foreign(store, &rel, issue)?;
    write(&path, &serde_json::to_vec_pretty(&doc)?)?;
    Ok(rel)
}

/// Result names join organisation and repository with `_` like issue files, so `a_b/c#1` and
/// `a/b_c#1` share one: a file holding another issue's result is never overwritten.
fn refuse_foreign(store: &Store, rel: &str, issue: &IssueRef) -> anyhow::Result<()> {
    let Ok(bytes) = std::fs::read(store.abs(rel)) else {
        return Ok(());
    };
    let held = serde_json::from_slice::<Value>(&bytes).ok().and_then(|d| {
        let r = d.get("issue_reference")?;
        Some(crate::store::model::issue_key(
            r.get("org")?.as_str()?,
            r.get("repo")?.as_str()?,
            r.get("issue_number")?.as_u64()?,
        ))
    });
    let mine = crate::store::model::issue_key(&issue.org, &issue.repo, issue.number);
    match held {
        Some(other) if other != mine => Err(crate::store::collision(rel, &other, &mine)),
        _ => Ok(()),
    }
}

/// Reads a result file back into its `ai_results` row and recommendations (for
/// `sync --ai-results`, e.g. after the database was lost). The analysis must parse as the
/// processor's output with confidences in [0, 1]; labels are not checked against today's
/// taxonomy, because the file may come from a run with another one.
pub fn read_file(rel: &str, bytes: &[u8]) -> anyhow::Result<(ResultRow, Vec<Recommendation>)> {
    use crate::processors::product_labeling::{self, Analysis, ProductLabeling};
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| anyhow::anyhow!("not valid JSON: {e}"))?;
    let field = |path: &[&str]| -> Option<&Value> { path.iter().try_fold(&doc, |v, k| v.get(*k)) };
    let text = |path: &[&str]| field(path).and_then(Value::as_str).map(str::to_string);
    let int = |path: &[&str]| field(path).and_then(Value::as_i64).unwrap_or(0);
    let (Some(org), Some(repo), Some(number)) = (
        text(&["issue_reference", "org"]),
        text(&["issue_reference", "repo"]),
        field(&["issue_reference", "issue_number"]).and_then(Value::as_u64),
    ) else {
        anyhow::bail!("missing issue_reference.org / repo / issue_number");
    };
    names::validate_org(&org)?;
    names::validate_repo(&repo)?;
    let processor = text(&["processor", "name"]).unwrap_or_default();
    if processor != product_labeling::NAME {
        anyhow::bail!(
            "unknown processor {processor:?}; known processors: {}",
            crate::processors::KNOWN.join(", ")
        );
    }
    let analysis_value = field(&["analysis"]).cloned().unwrap_or(Value::Null);
    let analysis: Analysis = serde_json::from_value(analysis_value)
        .map_err(|e| anyhow::anyhow!("analysis does not match {processor}'s output: {e}"))?;
    let confidences = std::iter::once(analysis.confidence)
        .chain(analysis.recommended_labels.iter().map(|r| r.confidence));
    for c in confidences {
        if !(c.is_finite() && (0.0..=1.0).contains(&c)) {
            anyhow::bail!("confidence {c} is outside [0, 1]");
        }
    }
    let created_at = text(&["processor", "timestamp"])
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
        .map_or_else(|| chrono::Utc::now().naive_utc(), |t| t.naive_utc());
    let row = ResultRow {
        issue_id: crate::store::model::issue_key(&org, &repo, number),
        processor,
        processor_version: text(&["processor", "version"]).unwrap_or_default(),
        model: text(&["processor", "model"]).unwrap_or_default(),
        provider: text(&["processor", "provider"]).unwrap_or_default(),
        mode: text(&["processor", "mode"]).unwrap_or_else(|| "realtime".into()),
        confidence: analysis.confidence,
        result_json: serde_json::to_string(&doc)?,
        prompt_tokens: int(&["usage", "prompt_tokens"]),
        cached_tokens: int(&["usage", "cached_tokens"]),
        completion_tokens: int(&["usage", "completion_tokens"]),
        cost_usd: field(&["usage", "cost_usd"]).and_then(Value::as_f64),
        processing_time_ms: int(&["usage", "processing_time_ms"]),
        created_at,
        file_path: rel.to_string(),
        batch_job_id: text(&["processor", "batch_job_id"]),
    };
    Ok((row, ProductLabeling::recommendations(&analysis)))
}

#[cfg(test)]
mod collision_tests {
    use super::*;

    fn issue(org: &str, repo: &str) -> IssueRef {
        IssueRef {
            id: crate::store::model::issue_key(org, repo, 1),
            org: org.into(),
            repo: repo.into(),
            number: 1,
            file_path: String::new(),
            has_result: false,
        }
    }

    #[test]
    fn a_result_file_of_another_issue_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let rel = rel_path(RESULTS_DIR, "a_b", "c", 1, "p").unwrap();
        assert_eq!(rel, rel_path(RESULTS_DIR, "a", "b_c", 1, "p").unwrap());
        let doc = json!({"issue_reference": {"org": "a_b", "repo": "c", "issue_number": 1}});
        std::fs::create_dir_all(store.abs(RESULTS_DIR)).unwrap();
        std::fs::write(store.abs(&rel), doc.to_string()).unwrap();
        let err = refuse_foreign(&store, &rel, &issue("a", "b_c")).unwrap_err();
        assert!(err.to_string().contains("already used by a_b/c#1"), "{err}");
        refuse_foreign(&store, &rel, &issue("a_b", "c")).unwrap();
    }
}
