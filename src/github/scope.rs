//! What a collection covers: the options resolved from the command line, the scope key of
//! incremental cursors, GitHub's state filter, date and size parsing, and the report.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::user;
use crate::github::attachments::AttachmentCounts;
use crate::store::{names, IssueState};

/// What to collect, resolved from the command line.
#[derive(Debug, Clone)]
pub struct CollectOptions {
    pub org: String,
    pub repo: Option<String>,
    pub issue_number: Option<u64>,
    pub labels: Vec<String>,
    pub state: IssueState,
    pub since: Option<DateTime<Utc>>,
    pub limit: Option<usize>,
    pub exclude_repos: Vec<String>,
    pub include_archived: bool,
    pub full: bool,
    /// `Some(cap in bytes)` when attachments are downloaded.
    pub attachments: Option<u64>,
    /// Repositories of an organisation collected at once (`--parallel-repos`).
    pub parallel_repos: usize,
}

#[derive(Debug, Default, Clone)]
pub struct CollectReport {
    pub repositories: usize,
    pub repositories_skipped: usize,
    /// Repositories fetched incrementally (from a stored cursor).
    pub incremental: usize,
    /// (repository, reason) of repositories that failed in organisation mode.
    pub failed: Vec<(String, String)>,
    pub issues_new: usize,
    pub issues_updated: usize,
    pub issues_unchanged: usize,
    pub comments: usize,
    pub pull_requests_skipped: usize,
    pub attachments: AttachmentCounts,
    /// Files written whose database load failed (reason per path).
    pub sync_failed: Vec<(String, String)>,
    /// (issue, reason) of issues not stored because their file name holds another issue.
    pub refused: Vec<(String, String)>,
}

impl CollectReport {
    pub fn issues(&self) -> usize {
        self.issues_new + self.issues_updated + self.issues_unchanged
    }
}

/// The new `(owner, name)` when GitHub's `nameWithOwner` differs from what was asked (a renamed or
/// transferred repository), if both are valid names.
pub(crate) fn renamed(
    name_with_owner: Option<&str>,
    org: &str,
    repo: &str,
) -> Option<(String, String)> {
    let (o, r) = name_with_owner?.split_once('/')?;
    let same = o.eq_ignore_ascii_case(org) && r.eq_ignore_ascii_case(repo);
    (!same && names::validate_org(o).is_ok() && names::validate_repo(r).is_ok())
        .then(|| (o.to_string(), r.to_string()))
}

/// Parses `--since`: a date (midnight UTC) or an RFC 3339 time.
pub fn parse_since(s: &str) -> anyhow::Result<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Ok(d.to_utc());
    }
    if let Some(dt) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
    {
        return Ok(dt.and_utc());
    }
    Err(user(format!(
        "--since {s:?} is not a date: use YYYY-MM-DD or an RFC 3339 time like 2024-05-01T10:00:00Z"
    )))
}

/// Parses `--max-attachment-size`: bytes, or a number with KB/MB/GB (powers of 1024).
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => 0,
    };
    match num.parse::<f64>() {
        Ok(n) if mult > 0 && n.is_finite() && n >= 0.0 => Ok((n * mult as f64) as u64),
        _ => Err(user(format!(
            "--max-attachment-size {s:?} is not a size: use bytes or e.g. 512KB, 10MB"
        ))),
    }
}

/// The filters a cursor is valid for: a run with other filters has its own cursor.
pub(crate) fn scope_key(state: IssueState, labels: &[String]) -> String {
    let mut l: Vec<&str> = labels.iter().map(String::as_str).collect();
    l.sort_unstable();
    l.dedup();
    let s = match state {
        IssueState::Open => "open",
        IssueState::Closed => "closed",
        IssueState::All => "all",
    };
    format!("state={s};labels={}", l.join(","))
}

pub(crate) fn gql_states(state: IssueState) -> Vec<&'static str> {
    match state {
        IssueState::Open => vec!["OPEN"],
        IssueState::Closed => vec!["CLOSED"],
        IssueState::All => vec![],
    }
}

pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_dates_and_times() {
        assert_eq!(
            rfc3339(parse_since("2024-05-01").unwrap()),
            "2024-05-01T00:00:00Z"
        );
        assert_eq!(
            rfc3339(parse_since("2024-05-01T10:00:00+02:00").unwrap()),
            "2024-05-01T08:00:00Z"
        );
        assert!(parse_since("yesterday").is_err());
    }

    #[test]
    fn sizes_accept_units() {
        assert_eq!(parse_size("10MB").unwrap(), 10 * 1024 * 1024);
        assert_eq!(parse_size("512kb").unwrap(), 512 * 1024);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert_eq!(parse_size("1.5 M").unwrap(), 1024 * 1024 * 3 / 2);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }

    #[test]
    fn renames_are_detected_but_case_is_not_a_rename() {
        assert_eq!(
            renamed(Some("acme/gizmos"), "acme", "widgets"),
            Some(("acme".into(), "gizmos".into()))
        );
        assert_eq!(renamed(Some("Acme/Widgets"), "acme", "widgets"), None);
        assert_eq!(renamed(None, "acme", "widgets"), None);
        assert_eq!(renamed(Some("acme/../x"), "acme", "widgets"), None);
    }

    #[test]
    fn scope_ignores_label_order() {
        assert_eq!(
            scope_key(IssueState::All, &["b".into(), "a".into()]),
            scope_key(IssueState::All, &["a".into(), "b".into(), "a".into()])
        );
        assert_ne!(
            scope_key(IssueState::Open, &[]),
            scope_key(IssueState::All, &[])
        );
    }
}
