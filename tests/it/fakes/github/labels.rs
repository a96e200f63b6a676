//! The label and comment endpoints of the GitHub fake, as strict as GitHub where `update-labels`
//! is concerned (github.md §1.4, §0.1, §0.3):
//!
//! * `GET/POST/PUT …/issues/{n}/labels`, `DELETE …/issues/{n}/labels/{name}` (the name one
//!   percent-encoded path segment: `::`, spaces, `%`, emoji), `GET /repos/{o}/{r}/labels/{name}`
//!   (case-insensitive, 404 for unknown labels), `POST /repos/{o}/{r}/labels` (422
//!   `already_exists`), `POST …/issues/{n}/comments`;
//! * 404 for unknown issues, 410 for deleted ones; POSTing a label the repository lacks creates
//!   it silently, grey and without description, as GitHub does;
//! * writes without write scope: 403 "Resource not accessible by personal access token" with
//!   `x-accepted-github-permissions`;
//! * secondary limits for writes: scripted (with or without `retry-after`), enforced (a write
//!   before the window passed is refused again), and optionally a smallest gap between writes,
//!   so a client that does not pace is caught.
//!
//! Wired into the fake by one call in `server.rs` (`route_ok`); reads of issues themselves stay
//! with `rest.rs` (ETags and 304s come from `server.rs` for every GET).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use axum::http::{Method, Uri};
use serde_json::{json, Value};

use super::{lock, FakeComment, FakeGitHub, FakeIssue, Fault, Inner, Logged, Reply, DOCS};

const LABEL_DOCS: &str = "https://docs.github.com/rest/issues/labels";
const SECONDARY_DOCS: &str =
    "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits";

/// A label of a repository.
#[derive(Debug, Clone, PartialEq)]
pub struct RepoLabel {
    pub name: String,
    pub color: String,
    pub description: Option<String>,
}

#[derive(Debug, Default)]
pub struct LabelState {
    /// (owner, repo) lowercased → its labels (besides those its issues carry).
    catalog: HashMap<(String, String), Vec<RepoLabel>>,
    writes_denied: bool,
    write_faults: VecDeque<Fault>,
    /// Writes before this are refused (the secondary-limit window of the last refusal).
    blocked_until: Option<Instant>,
    min_write_gap: Option<Duration>,
    last_write: Option<Instant>,
    next_comment: i64,
    /// The status that replaces the answer of the write now being done.
    lose_answer: Option<u16>,
}

fn key(o: &str, r: &str) -> (String, String) {
    (o.to_ascii_lowercase(), r.to_ascii_lowercase())
}

impl FakeGitHub {
    /// Defines labels of a repository: (name, description).
    pub fn define_labels(&self, owner: &str, repo: &str, labels: &[(&str, Option<&str>)]) {
        let mut g = lock(&self.inner);
        let list = g.labels.catalog.entry(key(owner, repo)).or_default();
        for (name, description) in labels {
            list.push(RepoLabel {
                name: name.to_string(),
                color: "0e8a16".into(),
                description: description.map(str::to_string),
            });
        }
    }

    /// Every label of a repository: defined ones and those on its issues.
    pub fn repo_labels(&self, owner: &str, repo: &str) -> Vec<RepoLabel> {
        let g = lock(&self.inner);
        all_labels(&g, owner, repo)
    }

    pub fn issue_labels(&self, owner: &str, repo: &str, number: u64) -> Vec<String> {
        let g = lock(&self.inner);
        find_issue(&g, owner, repo, number)
            .map(|i| i.labels.clone())
            .unwrap_or_default()
    }

    /// Comment bodies of an issue.
    pub fn comment_bodies(&self, owner: &str, repo: &str, number: u64) -> Vec<String> {
        let g = lock(&self.inner);
        find_issue(&g, owner, repo, number)
            .map(|i| i.comments.iter().map(|c| c.body.clone()).collect())
            .unwrap_or_default()
    }

    /// The token can read but not write (a fine-grained token with read-only issues access).
    pub fn deny_writes(&self) {
        lock(&self.inner).labels.writes_denied = true;
    }

    /// A fault answered to the next write (POST / PUT / PATCH / DELETE) instead of the normal answer.
    pub fn push_write_fault(&self, fault: Fault) {
        lock(&self.inner).labels.write_faults.push_back(fault);
    }

    /// Writes closer together than `gap` are refused with a secondary rate limit.
    pub fn set_min_write_gap(&self, gap: Duration) {
        lock(&self.inner).labels.min_write_gap = Some(gap);
    }

    /// Logged requests that change something.
    pub fn writes(&self) -> Vec<Logged> {
        self.requests()
            .into_iter()
            .filter(|l| l.method != "GET" && l.method != "HEAD" && l.graphql.is_none())
            .collect()
    }
}

fn all_labels(g: &Inner, owner: &str, repo: &str) -> Vec<RepoLabel> {
    let mut out = g
        .labels
        .catalog
        .get(&key(owner, repo))
        .cloned()
        .unwrap_or_default();
    if let Some(r) = g
        .repos
        .iter()
        .find(|r| r.owner.eq_ignore_ascii_case(owner) && r.name.eq_ignore_ascii_case(repo))
    {
        for i in &r.issues {
            for l in &i.labels {
                if !out.iter().any(|x| x.name.eq_ignore_ascii_case(l)) {
                    out.push(RepoLabel {
                        name: l.clone(),
                        color: "d73a4a".into(),
                        description: None,
                    });
                }
            }
        }
    }
    out
}

fn find_issue<'a>(g: &'a Inner, owner: &str, repo: &str, number: u64) -> Option<&'a FakeIssue> {
    g.repos
        .iter()
        .find(|r| r.owner.eq_ignore_ascii_case(owner) && r.name.eq_ignore_ascii_case(repo))
        .and_then(|r| r.issues.iter().find(|i| i.number == number))
}

/// A percent-encoded path segment, decoded; `None` for a bad escape or bytes that are not UTF-8.
fn decode(seg: &str) -> Option<String> {
    let b = seg.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn label_json(g: &Inner, owner: &str, repo: &str, l: &RepoLabel) -> Value {
    let id = l
        .name
        .bytes()
        .fold(11u64, |a, b| a.wrapping_mul(31).wrapping_add(u64::from(b)))
        % 1_000_000_000;
    json!({
        "id": id, "node_id": format!("LA_{id}"),
        "url": format!("{}/repos/{owner}/{repo}/labels/{}", g.base, l.name.replace(' ', "%20")),
        "name": l.name, "color": l.color, "default": false, "description": l.description,
    })
}

fn issue_labels_json(g: &Inner, owner: &str, repo: &str, names: &[String]) -> Value {
    let known = all_labels(g, owner, repo);
    Value::Array(
        names
            .iter()
            .map(|n| {
                let l = known
                    .iter()
                    .find(|k| k.name.eq_ignore_ascii_case(n))
                    .cloned()
                    .unwrap_or(RepoLabel {
                        name: n.clone(),
                        color: "ededed".into(),
                        description: None,
                    });
                label_json(g, owner, repo, &l)
            })
            .collect(),
    )
}

fn validation(resource: &str, field: &str, code: &str) -> Reply {
    Reply::json(
        422,
        json!({"message": "Validation Failed",
               "errors": [{"resource": resource, "field": field, "code": code}],
               "documentation_url": LABEL_DOCS, "status": "422"}),
    )
}

fn secondary(retry_after: Option<u64>) -> Reply {
    let r = Reply::json(
        403,
        json!({"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
               "documentation_url": SECONDARY_DOCS, "status": "403"}),
    );
    match retry_after {
        Some(s) => r.header("retry-after", s.to_string()),
        None => r,
    }
}

/// Checks a write against scope, scripted faults and the secondary limits; `Some` refuses it.
fn gate(g: &mut Inner) -> Option<Reply> {
    let now = Instant::now();
    if g.labels.writes_denied {
        return Some(
            Reply::json(
                403,
                json!({"message": "Resource not accessible by personal access token",
                       "documentation_url": LABEL_DOCS, "status": "403"}),
            )
            .header(
                "x-accepted-github-permissions",
                "issues=write; pull_requests=write",
            ),
        );
    }
    if let Some(f) = g.labels.write_faults.pop_front() {
        match f {
            Fault::SecondaryRateLimit {
                status,
                retry_after,
            } => {
                // Without retry-after GitHub asks for a minute; the fake keeps it short.
                let window = retry_after.map_or(Duration::from_millis(50), Duration::from_secs);
                g.labels.blocked_until = Some(now + window);
                let mut r = secondary(retry_after);
                r.status = axum::http::StatusCode::from_u16(status)
                    .unwrap_or(axum::http::StatusCode::FORBIDDEN);
                return Some(r);
            }
            Fault::ServerError { status } => {
                return Some(Reply::error(status, "Server Error", DOCS));
            }
            Fault::ServerErrorAfterWriting { status } => g.labels.lose_answer = Some(status),
            _ => {}
        }
    }
    if g.labels.blocked_until.is_some_and(|t| now < t) {
        return Some(secondary(None));
    }
    if let (Some(gap), Some(last)) = (g.labels.min_write_gap, g.labels.last_write) {
        if now.duration_since(last) < gap {
            g.labels.blocked_until = Some(last + gap);
            return Some(secondary(None));
        }
    }
    g.labels.last_write = Some(now);
    None
}

/// Label names from an add/set body, in every form GitHub accepts.
fn body_labels(body: &[u8]) -> Result<Vec<String>, Reply> {
    let v: Value = serde_json::from_slice(body).map_err(|_| {
        Reply::json(
            400,
            json!({"message": "Problems parsing JSON", "documentation_url": LABEL_DOCS, "status": "400"}),
        )
    })?;
    let list = match &v {
        Value::Object(o) => o.get("labels").cloned().unwrap_or(Value::Null),
        other => other.clone(),
    };
    let items = match list {
        Value::Array(a) => a,
        Value::String(s) => vec![Value::String(s)],
        _ => return Err(validation("Label", "labels", "missing_field")),
    };
    let mut out = Vec::new();
    for i in items {
        let name = match i {
            Value::String(s) => s,
            Value::Object(o) => match o.get("name").and_then(Value::as_str) {
                Some(s) => s.to_string(),
                None => return Err(validation("Label", "name", "missing_field")),
            },
            _ => return Err(validation("Label", "labels", "invalid")),
        };
        if name.trim().is_empty() {
            return Err(validation("Label", "name", "invalid"));
        }
        out.push(name);
    }
    if out.is_empty() {
        return Err(validation("Label", "labels", "invalid"));
    }
    Ok(out)
}

/// Answers the label and comment endpoints; `None` for every other request (and for a
/// repository unknown under that name, so `rest.rs` answers its 301 or 404).
pub(super) fn route(
    g: &mut Inner,
    method: &Method,
    uri: &Uri,
    body: &[u8],
) -> Option<(Reply, u64)> {
    let raw: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let (owner, repo) = match raw.as_slice() {
        ["repos", o, r, ..] => (o.to_string(), r.to_string()),
        _ => return None,
    };
    let rest: Vec<&str> = raw[3..].to_vec();
    let ours = matches!(
        (method.as_str(), rest.as_slice()),
        ("GET", ["labels", _])
            | ("POST", ["labels"])
            | ("GET" | "POST" | "PUT", ["issues", _, "labels"])
            | ("DELETE", ["issues", _, "labels", _])
            | ("POST", ["issues", _, "comments"])
    );
    if !ours {
        return None;
    }
    let ri = g
        .repos
        .iter()
        .position(|r| r.owner.eq_ignore_ascii_case(&owner) && r.name.eq_ignore_ascii_case(&repo))?;
    let (owner, repo) = (g.repos[ri].owner.clone(), g.repos[ri].name.clone());
    let not_found = || Reply::error(404, "Not Found", DOCS);
    if *method != Method::GET {
        if let Some(refused) = gate(g) {
            return Some((refused, 1));
        }
    }
    // The issue of `…/issues/{n}/…`: 404 unknown, 410 deleted.
    let issue_idx = |g: &Inner, n: &str| -> Result<usize, Reply> {
        let n: u64 = n.parse().map_err(|_| not_found())?;
        let idx = g.repos[ri]
            .issues
            .iter()
            .position(|i| i.number == n && i.moved_to.is_none())
            .ok_or_else(not_found)?;
        if g.repos[ri].issues[idx].deleted {
            return Err(Reply::error(410, "This issue was deleted", DOCS));
        }
        Ok(idx)
    };
    let reply = match (method.as_str(), rest.as_slice()) {
        ("GET", ["labels", name]) => match decode(name) {
            Some(name) => match all_labels(g, &owner, &repo)
                .into_iter()
                .find(|l| l.name.eq_ignore_ascii_case(&name))
            {
                Some(l) => Reply::json(200, label_json(g, &owner, &repo, &l)),
                None => not_found(),
            },
            None => not_found(),
        },
        ("POST", ["labels"]) => create_label(g, &owner, &repo, body),
        ("GET", ["issues", n, "labels"]) => match issue_idx(g, n) {
            Ok(i) => {
                let names = g.repos[ri].issues[i].labels.clone();
                Reply::json(200, issue_labels_json(g, &owner, &repo, &names))
            }
            Err(r) => r,
        },
        ("POST" | "PUT", ["issues", n, "labels"]) => match (issue_idx(g, n), body_labels(body)) {
            (Err(r), _) | (_, Err(r)) => r,
            (Ok(i), Ok(names)) => {
                let mut set = if *method == Method::PUT {
                    Vec::new()
                } else {
                    g.repos[ri].issues[i].labels.clone()
                };
                for n in names {
                    // GitHub creates a label the repository lacks: grey, no description.
                    if !all_labels(g, &owner, &repo)
                        .iter()
                        .any(|l| l.name.eq_ignore_ascii_case(&n))
                    {
                        g.labels
                            .catalog
                            .entry(key(&owner, &repo))
                            .or_default()
                            .push(RepoLabel {
                                name: n.clone(),
                                color: "ededed".into(),
                                description: None,
                            });
                    }
                    if !set.iter().any(|s| s.eq_ignore_ascii_case(&n)) {
                        set.push(n);
                    }
                }
                if set.len() > 100 {
                    validation("Label", "labels", "too_many")
                } else {
                    let issue = &mut g.repos[ri].issues[i];
                    issue.labels = set.clone();
                    issue.updated_at = FakeGitHub::now();
                    Reply::json(200, issue_labels_json(g, &owner, &repo, &set))
                }
            }
        },
        ("DELETE", ["issues", n, "labels", name]) => match (issue_idx(g, n), decode(name)) {
            (Err(r), _) => r,
            (Ok(_), None) => not_found(),
            (Ok(i), Some(name)) => {
                let issue = &mut g.repos[ri].issues[i];
                match issue
                    .labels
                    .iter()
                    .position(|l| l.eq_ignore_ascii_case(&name))
                {
                    None => Reply::json(
                        404,
                        json!({"message": "Label does not exist", "documentation_url": LABEL_DOCS, "status": "404"}),
                    ),
                    Some(pos) => {
                        issue.labels.remove(pos);
                        issue.updated_at = FakeGitHub::now();
                        let names = issue.labels.clone();
                        Reply::json(200, issue_labels_json(g, &owner, &repo, &names))
                    }
                }
            }
        },
        ("POST", ["issues", n, "comments"]) => match issue_idx(g, n) {
            Err(r) => r,
            Ok(i) => {
                let text = serde_json::from_slice::<Value>(body)
                    .ok()
                    .and_then(|v| v.get("body").and_then(Value::as_str).map(str::to_string));
                match text.filter(|t| !t.trim().is_empty()) {
                    None => validation("IssueComment", "body", "missing_field"),
                    Some(text) => {
                        g.labels.next_comment += 1;
                        let id = 9_000_000 + g.labels.next_comment;
                        let now = FakeGitHub::now();
                        let issue = &mut g.repos[ri].issues[i];
                        issue.comments.push(FakeComment {
                            id,
                            author: Some("triage-bot".into()),
                            body: text.clone(),
                            created_at: now.clone(),
                            updated_at: now.clone(),
                        });
                        issue.updated_at = now.clone();
                        Reply::json(
                            201,
                            json!({"id": id, "node_id": format!("IC_{id}"), "body": text,
                                   "created_at": now, "updated_at": now,
                                   "html_url": format!("https://github.com/{owner}/{repo}/issues/{}#issuecomment-{id}", issue.number)}),
                        )
                    }
                }
            }
        },
        _ => return None,
    };
    match g.labels.lose_answer.take() {
        Some(status) => Some((Reply::error(status, "Server Error", DOCS), 1)),
        None => Some((reply, 1)),
    }
}

fn create_label(g: &mut Inner, owner: &str, repo: &str, body: &[u8]) -> Reply {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Reply::json(
            400,
            json!({"message": "Problems parsing JSON", "documentation_url": LABEL_DOCS, "status": "400"}),
        );
    };
    let Some(name) = v
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.trim().is_empty())
    else {
        return validation("Label", "name", "missing_field");
    };
    let color = v.get("color").and_then(Value::as_str).unwrap_or("ededed");
    if color.len() != 6 || !color.chars().all(|c| c.is_ascii_hexdigit()) {
        return validation("Label", "color", "invalid");
    }
    let description = v.get("description").and_then(Value::as_str);
    if description.is_some_and(|d| d.chars().count() > 100) {
        return validation("Label", "description", "invalid");
    }
    if all_labels(g, owner, repo)
        .iter()
        .any(|l| l.name.eq_ignore_ascii_case(name))
    {
        return validation("Label", "name", "already_exists");
    }
    let l = RepoLabel {
        name: name.to_string(),
        color: color.to_string(),
        description: description.map(str::to_string),
    };
    g.labels
        .catalog
        .entry(key(owner, repo))
        .or_default()
        .push(l.clone());
    Reply::json(201, label_json(g, owner, repo, &l))
}
