//! A loopback fake of GitHub's REST and GraphQL APIs (axum on 127.0.0.1:0), as strict as the real
//! one where our client is concerned (github.md §4): User-Agent and token checks, REST error
//! envelopes, Link pagination in `/repositories/{id}/…` form, pull requests mixed into REST lists,
//! ETags and 304s that cost nothing, rate-limit headers and buckets, GraphQL errors with HTTP 200,
//! scripted faults (primary/secondary rate limits with and without retry-after, 5xx). Every
//! request is logged so tests can count them.
//!
//! Shared by the integration tests and `examples/collect_bench.rs` (included there with `#[path]`),
//! so it depends on nothing else under tests/.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

pub const TOKEN: &str = "ghp_fake_token_for_tests";
const CORE_LIMIT: u64 = 5000;
const GRAPHQL_LIMIT: u64 = 5000;

#[derive(Debug, Clone)]
pub struct FakeComment {
    pub id: i64,
    /// `None`: a deleted account ("ghost"): REST `user: null`, GraphQL `author: null`.
    pub author: Option<String>,
    pub body: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone)]
pub struct FakeIssue {
    pub number: u64,
    pub id: i64,
    pub title: String,
    pub body: Option<String>,
    /// `open` | `closed`.
    pub state: String,
    pub labels: Vec<String>,
    pub author: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub closed_at: Option<String>,
    pub comments: Vec<FakeComment>,
    /// Pull requests show up in REST issue lists only.
    pub pull_request: bool,
    /// Deleted: REST GET answers 410.
    pub deleted: bool,
    /// Transferred to (repository name, number) of the same owner: REST GET answers 301 and it
    /// is not listed here any more.
    pub moved_to: Option<(String, u64)>,
}

impl FakeIssue {
    pub fn new(number: u64, title: &str, updated_at: &str) -> Self {
        Self {
            number,
            id: 1_000_000 + number as i64,
            title: title.to_string(),
            body: Some(format!("Body of {title}")),
            state: "open".into(),
            labels: Vec::new(),
            author: Some("octocat".into()),
            created_at: "2024-01-01T00:00:00Z".into(),
            updated_at: updated_at.to_string(),
            closed_at: None,
            comments: Vec::new(),
            pull_request: false,
            deleted: false,
            moved_to: None,
        }
    }

    pub fn labels(mut self, labels: &[&str]) -> Self {
        self.labels = labels.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn closed(mut self) -> Self {
        self.state = "closed".into();
        self.closed_at = Some(self.updated_at.clone());
        self
    }

    pub fn pr(mut self) -> Self {
        self.pull_request = true;
        self
    }

    pub fn with_comments(mut self, n: usize) -> Self {
        let base = self.number as i64 * 10_000;
        self.comments = (0..n)
            .map(|i| FakeComment {
                id: base + i as i64,
                author: Some(format!("user{}", i % 7)),
                body: format!("comment {i} on #{}", self.number),
                created_at: "2024-01-02T00:00:00Z".into(),
                updated_at: "2024-01-02T00:00:00Z".into(),
            })
            .collect();
        self
    }
}

#[derive(Debug, Clone)]
pub struct FakeRepo {
    pub id: u64,
    pub owner: String,
    pub name: String,
    pub archived: bool,
    pub issues: Vec<FakeIssue>,
}

/// Which requests a scripted fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Rest,
    GraphQl,
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 403 or 429, `x-ratelimit-remaining: 0`, reset one second ahead.
    PrimaryRateLimit { status: u16 },
    /// 403 or 429 with the secondary-limit message; `retry-after` if given.
    SecondaryRateLimit {
        status: u16,
        retry_after: Option<u64>,
    },
    /// 500 / 502 / 503 / 504 with GitHub's body for it.
    ServerError { status: u16 },
    /// HTTP 200 with a GraphQL `RATE_LIMITED` error (or the newer `RATE_LIMIT` variant).
    GraphQlRateLimited { newer_variant: bool },
    /// A normal answer whose headers say the bucket is now empty (reset one second ahead).
    Exhausted,
    /// A normal answer: lets a test place faults after the first N requests.
    Pass,
    /// A normal answer sent only after this many milliseconds (a slow or hanging GitHub).
    Delay(u64),
    /// HTTP 200 with a GraphQL error of this type and message; `with_data` keeps the normal
    /// `data` next to it (GitHub's partial answers of cut-off queries).
    GraphQlError {
        kind: &'static str,
        message: &'static str,
        with_data: bool,
    },
}

#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    /// Path and query as received.
    pub target: String,
    pub status: u16,
    /// `issues` / `comments` for GraphQL requests.
    pub graphql: Option<&'static str>,
    /// GraphQL `variables` as sent.
    pub variables: Option<Value>,
    pub if_none_match: bool,
}

struct Inner {
    base: String,
    repos: Vec<FakeRepo>,
    /// Organisation login → id (for `/organizations/{id}/repos` links).
    orgs: HashMap<String, u64>,
    /// (owner, old name, repository id) of renamed repositories.
    renames: Vec<(String, String, u64)>,
    faults: VecDeque<(Target, Fault)>,
    log: Vec<Logged>,
    core_used: u64,
    graphql_used: u64,
    reset: i64,
    attachments: HashMap<String, Vec<u8>>,
    /// Set by a `Delay` fault for the request being answered.
    delay_ms: u64,
}

pub struct FakeGitHub {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    /// The running server; dropping it stops the server.
    _served: super::serve::Served,
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeGitHub {
    /// Starts the server on its own thread and runtime (tests are synchronous).
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let url = format!("http://{addr}");
        let inner = Arc::new(Mutex::new(Inner {
            base: url.clone(),
            repos: Vec::new(),
            orgs: HashMap::new(),
            renames: Vec::new(),
            faults: VecDeque::new(),
            log: Vec::new(),
            core_used: 0,
            graphql_used: 0,
            reset: Utc::now().timestamp() + 3600,
            attachments: HashMap::new(),
            delay_ms: 0,
        }));
        let state = inner.clone();
        // Not joined on drop: a `Delay` fault may still be sleeping for a client that is gone.
        let served = super::serve::spawn(listener, 2, false, move || {
            axum::Router::new().fallback(handle).with_state(state)
        });
        Self {
            url,
            inner,
            _served: served,
        }
    }

    pub fn add_repo(&self, owner: &str, name: &str, issues: Vec<FakeIssue>) {
        let mut g = lock(&self.inner);
        let id = 1000 + g.repos.len() as u64;
        let next_org = 500 + g.orgs.len() as u64;
        g.orgs.entry(owner.to_string()).or_insert(next_org);
        g.repos.push(FakeRepo {
            id,
            owner: owner.into(),
            name: name.into(),
            archived: false,
            issues,
        });
    }

    /// Renames a repository: REST paths with the old name answer 301 to `/repositories/{id}/…`,
    /// GraphQL resolves the old name to the repository (whose `nameWithOwner` is the new one).
    pub fn rename(&self, owner: &str, old: &str, new: &str) {
        let mut g = lock(&self.inner);
        if let Some(r) = g
            .repos
            .iter_mut()
            .find(|r| r.owner == owner && r.name == old)
        {
            r.name = new.to_string();
            let id = r.id;
            g.renames.push((owner.to_string(), old.to_string(), id));
        }
    }

    pub fn archive(&self, owner: &str, name: &str) {
        let mut g = lock(&self.inner);
        if let Some(r) = g
            .repos
            .iter_mut()
            .find(|r| r.owner == owner && r.name == name)
        {
            r.archived = true;
        }
    }

    /// Changes an issue in place (e.g. a new comment and a newer `updated_at`).
    pub fn update_issue(
        &self,
        owner: &str,
        name: &str,
        number: u64,
        f: impl FnOnce(&mut FakeIssue),
    ) {
        let mut g = lock(&self.inner);
        let issue = g
            .repos
            .iter_mut()
            .find(|r| r.owner == owner && r.name == name)
            .and_then(|r| r.issues.iter_mut().find(|i| i.number == number))
            .expect("issue to update exists");
        f(issue);
    }

    pub fn add_attachment(&self, path: &str, bytes: Vec<u8>) {
        lock(&self.inner)
            .attachments
            .insert(path.to_string(), bytes);
    }

    pub fn push_fault(&self, target: Target, fault: Fault) {
        lock(&self.inner).faults.push_back((target, fault));
    }

    pub fn requests(&self) -> Vec<Logged> {
        lock(&self.inner).log.clone()
    }

    pub fn request_count(&self) -> usize {
        lock(&self.inner).log.len()
    }

    pub fn clear_log(&self) {
        lock(&self.inner).log.clear();
    }

    /// Environment for the binary under test: URLs, token, and short waits.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GITHUB_API_URL", self.url.clone()),
            ("GITHUB_TOKEN", TOKEN.to_string()),
            ("GITHUB_ANALYSIS_MAX_WAIT", "0.1".to_string()),
        ]
    }

    /// `YYYY-MM-DDTHH:MM:SSZ` for now (GitHub's timestamp format).
    pub fn now() -> String {
        Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
    }
}

// ---------------------------------------------------------------------------------------------
// Responses

struct Reply {
    status: StatusCode,
    headers: Vec<(String, String)>,
    body: Option<Value>,
    raw: Option<(Vec<u8>, &'static str)>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            headers: Vec::new(),
            body: Some(body),
            raw: None,
        }
    }

    fn error(status: u16, message: &str, doc: &str) -> Self {
        Self::json(
            status,
            json!({"message": message, "documentation_url": doc, "status": status.to_string()}),
        )
    }

    fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_string(), v.into()));
        self
    }
}

const DOCS: &str = "https://docs.github.com/rest";

async fn handle(
    State(state): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (resp, delay) = respond(&state, method, uri, headers, body);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    resp
}

/// Everything but the optional delay, synchronously (the state lock is never held across an
/// await).
fn respond(
    state: &Mutex<Inner>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (Response, u64) {
    let target = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| uri.path().to_string());
    let mut g = lock(state);
    let graphql_kind = if uri.path() == "/graphql" {
        Some(graphql_kind(&body))
    } else {
        None
    };
    let if_none_match = headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (reply, bucket, cost) = route(&mut g, &method, &uri, &headers, &body);
    let is_graphql = bucket == "graphql";
    let mut status = reply.status;
    let mut bytes = match (&reply.raw, &reply.body) {
        (Some((b, _)), _) => b.clone(),
        (None, Some(v)) => serde_json::to_vec(v).unwrap_or_default(),
        (None, None) => Vec::new(),
    };
    // ETags on successful REST GETs; a matching If-None-Match is a free 304.
    let mut etag = None;
    let mut free = false;
    if method == Method::GET && status == StatusCode::OK && !is_graphql && reply.raw.is_none() {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut h);
        let tag = format!("W/\"{:016x}\"", h.finish());
        if if_none_match.as_deref() == Some(tag.as_str()) {
            status = StatusCode::NOT_MODIFIED;
            bytes.clear();
            free = true;
        }
        etag = Some(tag);
    }
    let exhausted = reply
        .headers
        .iter()
        .any(|(k, v)| k == "x-ratelimit-remaining" && v == "0");
    if !free && !exhausted {
        if is_graphql {
            g.graphql_used += cost;
        } else if bucket == "core" {
            g.core_used += cost;
        }
    }
    g.log.push(Logged {
        method: method.to_string(),
        target,
        status: status.as_u16(),
        graphql: graphql_kind,
        variables: graphql_kind.and_then(|_| {
            serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("variables").cloned())
        }),
        if_none_match: if_none_match.is_some(),
    });
    let (limit, used) = if is_graphql {
        (GRAPHQL_LIMIT, g.graphql_used)
    } else {
        (CORE_LIMIT, g.core_used)
    };
    let mut resp = Response::builder().status(status);
    let date = httpdate(Utc::now());
    let mut std_headers: Vec<(String, String)> = vec![
        ("date".into(), date),
        (
            "x-github-request-id".into(),
            format!("FAKE:{:08X}", g.log.len()),
        ),
        (
            "x-github-media-type".into(),
            "github.v3; format=json".into(),
        ),
    ];
    if bucket != "none" {
        std_headers.extend([
            ("x-ratelimit-limit".into(), limit.to_string()),
            (
                "x-ratelimit-remaining".into(),
                limit.saturating_sub(used).to_string(),
            ),
            ("x-ratelimit-used".into(), used.to_string()),
            ("x-ratelimit-reset".into(), g.reset.to_string()),
            ("x-ratelimit-resource".into(), bucket.to_string()),
        ]);
    }
    // Scripted headers override the standard ones of the same name.
    std_headers.retain(|(k, _)| !reply.headers.iter().any(|(rk, _)| rk == k));
    for (k, v) in std_headers.iter().chain(reply.headers.iter()) {
        if let Ok(v) = HeaderValue::from_str(v) {
            resp = resp.header(k.as_str(), v);
        }
    }
    if let Some(e) = etag {
        resp = resp.header("etag", e);
    }
    if !bytes.is_empty() {
        let ct = reply
            .raw
            .as_ref()
            .map_or("application/json; charset=utf-8", |(_, ct)| *ct);
        resp = resp.header("content-type", ct);
    }
    let delay = std::mem::take(&mut g.delay_ms);
    let resp = resp
        .body(Body::from(bytes))
        .unwrap_or_else(|_| Response::new(Body::empty()));
    (resp, delay)
}

fn graphql_kind(body: &[u8]) -> &'static str {
    let q = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("query").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    if q.contains("issue(number:") {
        "comments"
    } else if q.contains("issues(") {
        "issues"
    } else {
        "other"
    }
}

fn httpdate(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Returns the reply, its rate-limit bucket (`core`, `graphql`, `none`) and its point cost.
fn route(
    g: &mut Inner,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> (Reply, &'static str, u64) {
    let path = uri.path().to_string();
    // Uploads are served by another host on github.com; no API checks apply.
    if path.starts_with("/user-attachments/") {
        return match g.attachments.get(&path) {
            Some(b) => (
                Reply {
                    status: StatusCode::OK,
                    headers: Vec::new(),
                    body: None,
                    raw: Some((b.clone(), "image/png")),
                },
                "none",
                0,
            ),
            None => (Reply::error(404, "Not Found", DOCS), "none", 0),
        };
    }
    let is_graphql = path == "/graphql";
    let bucket = if is_graphql { "graphql" } else { "core" };
    if headers.get("user-agent").is_none_or(|v| v.is_empty()) {
        return (
            Reply::error(
                403,
                "Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). Check https://developer.github.com for other possible causes.",
                DOCS,
            ),
            bucket,
            0,
        );
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let token_ok = auth.split_once(' ').is_some_and(|(scheme, t)| {
        matches!(scheme.to_ascii_lowercase().as_str(), "bearer" | "token") && t == TOKEN
    });
    if !token_ok {
        return (Reply::error(401, "Bad credentials", DOCS), bucket, 0);
    }
    if let Some(v) = headers
        .get("x-github-api-version")
        .and_then(|v| v.to_str().ok())
    {
        if v != "2022-11-28" && v != "2026-03-10" {
            return (
                Reply::error(400, &format!("API version '{v}' is not supported."), DOCS),
                bucket,
                1,
            );
        }
    }
    let want = if is_graphql {
        Target::GraphQl
    } else {
        Target::Rest
    };
    if let Some(pos) = g
        .faults
        .iter()
        .position(|(t, _)| *t == Target::Any || *t == want)
    {
        if let Some((_, fault)) = g.faults.remove(pos) {
            if fault == Fault::Pass {
                return route_ok(g, method, uri, body, is_graphql);
            }
            if let Fault::Delay(ms) = fault {
                g.delay_ms = ms;
                return route_ok(g, method, uri, body, is_graphql);
            }
            if let Fault::GraphQlError {
                kind,
                message,
                with_data,
            } = fault
            {
                let (mut r, b, c) = route_ok(g, method, uri, body, is_graphql);
                let data = match (&r.body, with_data) {
                    (Some(v), true) => v.get("data").cloned().unwrap_or(Value::Null),
                    _ => Value::Null,
                };
                r.body = Some(json!({
                    "data": data,
                    "errors": [{"type": kind, "path": ["repository"], "message": message}]
                }));
                return (r, b, c);
            }
            if let Some(r) = fault_reply(g, &fault, bucket) {
                return (r, bucket, 1);
            }
            // `Exhausted`: answer normally but with an empty bucket.
            let (r, b, c) = route_ok(g, method, uri, body, is_graphql);
            let reset = Utc::now().timestamp() + 1;
            return (
                r.header("x-ratelimit-remaining", "0")
                    .header("x-ratelimit-reset", reset.to_string()),
                b,
                c,
            );
        }
    }
    route_ok(g, method, uri, body, is_graphql)
}

fn fault_reply(g: &Inner, fault: &Fault, bucket: &str) -> Option<Reply> {
    let reset = (Utc::now().timestamp() + 1).to_string();
    let id = format!("FAKE:{:08X}", g.log.len());
    Some(match fault {
        Fault::PrimaryRateLimit { status } => Reply::json(
            *status,
            json!({
                "message": format!("API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please include the request ID {id}."),
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
                "status": status.to_string(),
            }),
        )
        .header("x-ratelimit-remaining", "0")
        .header("x-ratelimit-reset", reset),
        Fault::SecondaryRateLimit { status, retry_after } => {
            let r = Reply::json(
                *status,
                json!({
                    "message": format!("You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID {id}."),
                    "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
                    "status": status.to_string(),
                }),
            );
            match retry_after {
                Some(s) => r.header("retry-after", s.to_string()),
                None => r,
            }
        }
        Fault::ServerError { status } => {
            let msg = if *status == 502 || *status == 504 {
                "We couldn't respond to your request in time. Sorry about that. Please try resubmitting your request and contact us if the problem persists."
            } else {
                "Server Error"
            };
            Reply::error(*status, msg, DOCS)
        }
        Fault::GraphQlRateLimited { newer_variant } => {
            let err = if *newer_variant {
                json!({"type": "RATE_LIMIT", "code": "graphql_rate_limit", "message": "API rate limit already exceeded for user ID 1."})
            } else {
                json!({"type": "RATE_LIMITED", "message": "API rate limit exceeded for user ID 1."})
            };
            let _ = bucket;
            Reply::json(200, json!({"errors": [err]}))
                .header("x-ratelimit-remaining", "0")
                .header("x-ratelimit-reset", reset)
        }
        Fault::Exhausted | Fault::Pass | Fault::Delay(_) | Fault::GraphQlError { .. } => {
            return None
        }
    })
}

fn route_ok(
    g: &mut Inner,
    method: &Method,
    uri: &Uri,
    body: &[u8],
    is_graphql: bool,
) -> (Reply, &'static str, u64) {
    if is_graphql {
        if method != Method::POST {
            return (Reply::error(404, "Not Found", DOCS), "graphql", 0);
        }
        let (r, cost) = graphql(g, body);
        return (r, "graphql", cost);
    }
    if method != Method::GET {
        return (Reply::error(404, "Not Found", DOCS), "core", 1);
    }
    (rest(g, uri), "core", 1)
}

// ---------------------------------------------------------------------------------------------
// REST

fn query_map(uri: &Uri) -> Vec<(String, String)> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(qk, _)| qk == k).map(|(_, v)| v.as_str())
}

fn rest(g: &mut Inner, uri: &Uri) -> Reply {
    let segs: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let q = query_map(uri);
    let repo_idx = |g: &Inner, o: &str, r: &str| {
        g.repos
            .iter()
            .position(|x| x.owner.eq_ignore_ascii_case(o) && x.name.eq_ignore_ascii_case(r))
    };
    let by_id = |g: &Inner, id: &str| g.repos.iter().position(|x| x.id.to_string() == id);
    if let ["repos", o, r, rest @ ..] = segs.as_slice() {
        let moved = g
            .renames
            .iter()
            .find(|(ro, rr, _)| ro.eq_ignore_ascii_case(o) && rr.eq_ignore_ascii_case(r));
        if let (None, Some((_, _, id))) = (repo_idx(g, o, r), moved) {
            let mut url = format!("{}/repositories/{id}", g.base);
            for part in rest {
                url.push('/');
                url.push_str(part);
            }
            if let Some(q) = uri.query() {
                url.push('?');
                url.push_str(q);
            }
            return Reply::json(
                301,
                json!({"message": "Moved Permanently", "url": url, "documentation_url": DOCS}),
            )
            .header("location", url);
        }
    }
    match segs.as_slice() {
        ["orgs", org, "repos"] => org_repos(g, org, &q),
        ["organizations", id, "repos"] => {
            let org = g
                .orgs
                .iter()
                .find(|(_, v)| v.to_string() == *id)
                .map(|(k, _)| k.clone());
            match org {
                Some(o) => org_repos(g, &o, &q),
                None => Reply::error(404, "Not Found", DOCS),
            }
        }
        ["repos", o, r, "issues"] => match repo_idx(g, o, r) {
            Some(i) => list_issues(g, i, &q),
            None => Reply::error(404, "Not Found", DOCS),
        },
        ["repositories", id, "issues"] => match by_id(g, id) {
            Some(i) => list_issues(g, i, &q),
            None => Reply::error(404, "Not Found", DOCS),
        },
        ["repos", o, r, "issues", n] => match repo_idx(g, o, r) {
            Some(i) => get_issue(g, i, n),
            None => Reply::error(404, "Not Found", DOCS),
        },
        ["repositories", id, "issues", n] => match by_id(g, id) {
            Some(i) => get_issue(g, i, n),
            None => Reply::error(404, "Not Found", DOCS),
        },
        ["repos", o, r, "issues", n, "comments"] => match repo_idx(g, o, r) {
            Some(i) => list_comments(g, i, n, &q),
            None => Reply::error(404, "Not Found", DOCS),
        },
        ["repositories", id, "issues", n, "comments"] => match by_id(g, id) {
            Some(i) => list_comments(g, i, n, &q),
            None => Reply::error(404, "Not Found", DOCS),
        },
        _ => Reply::error(404, "Not Found", DOCS),
    }
}

/// Slices `items` by `page`/`per_page` (default 30, clamped to 100) and adds the Link header,
/// whose URLs use `link_path` and keep the other query parameters.
fn paginate(g: &Inner, items: Vec<Value>, q: &[(String, String)], link_path: &str) -> Reply {
    let per_page = param(q, "per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = param(q, "page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let mut reply = Reply::json(200, Value::Array(slice));
    if last > 1 {
        let link = |p: usize| {
            let mut ser = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in q.iter().filter(|(k, _)| k != "page") {
                ser.append_pair(k, v);
            }
            ser.append_pair("page", &p.to_string());
            format!("{}{link_path}?{}", g.base, ser.finish())
        };
        let mut rels = Vec::new();
        if page > 1 {
            rels.push(format!("<{}>; rel=\"prev\"", link(page - 1)));
        }
        if page < last {
            rels.push(format!("<{}>; rel=\"next\"", link(page + 1)));
            rels.push(format!("<{}>; rel=\"last\"", link(last)));
        }
        if page > 1 {
            rels.push(format!("<{}>; rel=\"first\"", link(1)));
        }
        if !rels.is_empty() {
            reply = reply.header("link", rels.join(", "));
        }
    }
    reply
}

fn org_repos(g: &Inner, org: &str, q: &[(String, String)]) -> Reply {
    let Some(org_id) = g
        .orgs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(org))
        .map(|(_, v)| *v)
    else {
        return Reply::error(404, "Not Found", DOCS);
    };
    let items: Vec<Value> = g
        .repos
        .iter()
        .filter(|r| r.owner.eq_ignore_ascii_case(org))
        .map(|r| {
            json!({
                "id": r.id, "node_id": format!("R_{}", r.id), "name": r.name,
                "full_name": format!("{}/{}", r.owner, r.name),
                "owner": {"login": r.owner, "id": org_id, "type": "Organization"},
                "private": false, "fork": false, "archived": r.archived, "disabled": false,
                "html_url": format!("https://github.com/{}/{}", r.owner, r.name),
                "default_branch": "main", "has_issues": true,
                "open_issues_count": r.issues.iter().filter(|i| i.state == "open").count(),
                "created_at": "2020-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
                "pushed_at": "2024-01-01T00:00:00Z"
            })
        })
        .collect();
    paginate(g, items, q, &format!("/organizations/{org_id}/repos"))
}

fn simple_user(login: &str) -> Value {
    let id = login
        .bytes()
        .fold(7u64, |a, b| a.wrapping_mul(31).wrapping_add(b as u64))
        % 1_000_000;
    json!({
        "login": login, "id": id, "node_id": format!("U_{id}"),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"), "gravatar_id": "",
        "url": format!("https://api.github.com/users/{login}"), "html_url": format!("https://github.com/{login}"),
        "type": "User", "site_admin": false
    })
}

fn user_id(login: &str) -> u64 {
    simple_user(login)["id"].as_u64().unwrap_or(0)
}

fn label_json(name: &str) -> Value {
    json!({"id": name.len() as u64 * 1000, "node_id": format!("LA_{name}"), "url": format!("https://api.github.com/labels/{name}"),
           "name": name, "color": "d73a4a", "default": false,
           "description": if name == "bug" { Value::String("Something isn't working".into()) } else { Value::Null }})
}

fn rest_issue(g: &Inner, r: &FakeRepo, i: &FakeIssue) -> Value {
    let api = format!("{}/repos/{}/{}", g.base, r.owner, r.name);
    let mut v = json!({
        "url": format!("{api}/issues/{}", i.number),
        "repository_url": api,
        "labels_url": format!("{api}/issues/{}/labels{{/name}}", i.number),
        "comments_url": format!("{api}/issues/{}/comments", i.number),
        "events_url": format!("{api}/issues/{}/events", i.number),
        "html_url": format!("https://github.com/{}/{}/issues/{}", r.owner, r.name, i.number),
        "id": i.id, "node_id": format!("I_{}", i.id), "number": i.number, "title": i.title,
        "user": i.author.as_deref().map_or(Value::Null, simple_user),
        "labels": i.labels.iter().map(|l| label_json(l)).collect::<Vec<_>>(),
        "state": i.state, "locked": false, "assignee": null, "assignees": [], "milestone": null,
        "comments": i.comments.len(), "created_at": i.created_at, "updated_at": i.updated_at,
        "closed_at": i.closed_at, "author_association": "MEMBER", "active_lock_reason": null,
        "body": i.body, "state_reason": if i.state == "closed" { json!("completed") } else { Value::Null },
        "performed_via_github_app": null,
    });
    if i.pull_request {
        v["pull_request"] = json!({
            "url": format!("{api}/pulls/{}", i.number),
            "html_url": format!("https://github.com/{}/{}/pull/{}", r.owner, r.name, i.number),
            "diff_url": null, "patch_url": null, "merged_at": null
        });
    }
    v
}

fn list_issues(g: &Inner, idx: usize, q: &[(String, String)]) -> Reply {
    let r = &g.repos[idx];
    let state = param(q, "state").unwrap_or("open");
    if !matches!(state, "open" | "closed" | "all") {
        return Reply::json(
            422,
            json!({"message": "Validation Failed", "errors": [{"resource": "Issue", "field": "state", "code": "invalid"}], "documentation_url": DOCS, "status": "422"}),
        );
    }
    let since = match param(q, "since").map(DateTime::parse_from_rfc3339) {
        Some(Err(_)) => {
            return Reply::json(
                422,
                json!({"message": "Validation Failed", "errors": [{"resource": "Issue", "field": "since", "code": "invalid"}], "documentation_url": DOCS, "status": "422"}),
            )
        }
        Some(Ok(t)) => Some(t.to_utc()),
        None => None,
    };
    let labels: Vec<&str> = param(q, "labels")
        .map(|l| l.split(',').collect())
        .unwrap_or_default();
    let mut items: Vec<&FakeIssue> = r
        .issues
        .iter()
        .filter(|i| !i.deleted && i.moved_to.is_none())
        .filter(|i| state == "all" || i.state == state)
        .filter(|i| since.is_none_or(|s| parse_ts(&i.updated_at) >= s))
        .filter(|i| labels.iter().all(|l| i.labels.iter().any(|il| il == l)))
        .collect();
    let by_updated = param(q, "sort") == Some("updated");
    items.sort_by(|a, b| {
        let k = if by_updated {
            parse_ts(&a.updated_at).cmp(&parse_ts(&b.updated_at))
        } else {
            a.number.cmp(&b.number)
        };
        k.then(a.number.cmp(&b.number))
    });
    if param(q, "direction") != Some("asc") {
        items.reverse();
    }
    let values = items.into_iter().map(|i| rest_issue(g, r, i)).collect();
    paginate(g, values, q, &format!("/repositories/{}/issues", r.id))
}

fn get_issue(g: &Inner, idx: usize, n: &str) -> Reply {
    let r = &g.repos[idx];
    let Some(i) = n
        .parse::<u64>()
        .ok()
        .and_then(|n| r.issues.iter().find(|i| i.number == n))
    else {
        return Reply::error(404, "Not Found", DOCS);
    };
    if i.deleted {
        return Reply::error(410, "This issue was deleted", DOCS);
    }
    if let Some((repo, number)) = &i.moved_to {
        let target = g
            .repos
            .iter()
            .find(|x| x.owner == r.owner && x.name == *repo)
            .map(|x| format!("{}/repositories/{}/issues/{number}", g.base, x.id));
        if let Some(url) = target {
            return Reply::json(
                301,
                json!({"message": "Moved Permanently", "url": url, "documentation_url": DOCS}),
            )
            .header("location", url);
        }
    }
    Reply::json(200, rest_issue(g, r, i))
}

fn list_comments(g: &Inner, idx: usize, n: &str, q: &[(String, String)]) -> Reply {
    let r = &g.repos[idx];
    let Some(i) = n
        .parse::<u64>()
        .ok()
        .and_then(|n| r.issues.iter().find(|i| i.number == n))
    else {
        return Reply::error(404, "Not Found", DOCS);
    };
    let api = format!("{}/repos/{}/{}", g.base, r.owner, r.name);
    let items = i
        .comments
        .iter()
        .map(|c| {
            json!({
                "id": c.id, "node_id": format!("IC_{}", c.id),
                "url": format!("{api}/issues/comments/{}", c.id),
                "html_url": format!("https://github.com/{}/{}/issues/{}#issuecomment-{}", r.owner, r.name, i.number, c.id),
                "issue_url": format!("{api}/issues/{}", i.number),
                "body": c.body, "user": c.author.as_deref().map_or(Value::Null, simple_user),
                "created_at": c.created_at, "updated_at": c.updated_at,
                "author_association": "CONTRIBUTOR", "performed_via_github_app": null
            })
        })
        .collect();
    paginate(
        g,
        items,
        q,
        &format!("/repositories/{}/issues/{}/comments", r.id, i.number),
    )
}

fn parse_ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.to_utc())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// GraphQL

fn gql_error(message: String) -> Reply {
    Reply::json(
        200,
        json!({"errors": [{"message": message, "locations": [{"line": 1, "column": 1}]}]}),
    )
}

/// Answers the two query shapes `collect` sends, validating what GitHub validates for them.
fn graphql(g: &Inner, body: &[u8]) -> (Reply, u64) {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return (
            Reply::error(
                400,
                "Problems parsing JSON",
                "https://docs.github.com/graphql",
            ),
            0,
        );
    };
    let Some(query) = req.get("query").and_then(Value::as_str) else {
        return (
            gql_error("A query attribute must be specified and must be a string.".into()),
            0,
        );
    };
    let vars = req.get("variables").cloned().unwrap_or(json!({}));
    // `first` over 100 (literal or variable) is refused.
    let literal_firsts = query
        .match_indices("first:")
        .filter_map(|(i, _)| {
            let rest = query[i + 6..].trim_start();
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u64>().ok()
        })
        .collect::<Vec<_>>();
    let var_first = vars.get("first").and_then(Value::as_u64);
    for f in literal_firsts.iter().copied().chain(var_first) {
        if f > 100 {
            return (
                gql_error(format!("Requesting {f} records on the `issues` connection exceeds the `first` limit of 100 records.")),
                0,
            );
        }
    }
    if let Some(i) = query.find("orderBy:") {
        let clause: String = query[i..].chars().take_while(|c| *c != '}').collect();
        if !clause.contains("direction") {
            return (
                gql_error("Argument 'orderBy' on Field 'issues' has an invalid value ({field: UPDATED_AT}). Expected type 'IssueOrder'.".into()),
                0,
            );
        }
    }
    let owner = vars.get("owner").and_then(Value::as_str);
    let name = vars.get("name").and_then(Value::as_str);
    let (Some(owner), Some(name)) = (owner, name) else {
        return (
            gql_error("Variable $owner of type String! was provided invalid value".into()),
            0,
        );
    };
    let renamed_id = g
        .renames
        .iter()
        .find(|(o, n, _)| o.eq_ignore_ascii_case(owner) && n.eq_ignore_ascii_case(name))
        .map(|(_, _, id)| *id);
    let repo = g.repos.iter().find(|r| {
        (r.owner.eq_ignore_ascii_case(owner) && r.name.eq_ignore_ascii_case(name))
            || Some(r.id) == renamed_id
    });
    let cost_of = |first: u64| (((1 + 2 * first) as f64 / 100.0).round() as u64).max(1);
    let kind = if query.contains("issue(number:") {
        "comments"
    } else if query.contains("issues(") {
        "issues"
    } else {
        return (gql_error("fake GitHub: unsupported query".into()), 0);
    };
    let cost = if kind == "issues" {
        cost_of(var_first.unwrap_or(100))
    } else {
        1
    };
    let rate = json!({"cost": cost, "remaining": GRAPHQL_LIMIT.saturating_sub(g.graphql_used + cost),
                      "resetAt": DateTime::from_timestamp(g.reset, 0).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Secs, true)});
    let Some(repo) = repo else {
        return (
            Reply::json(
                200,
                json!({
                    "data": {"repository": null, "rateLimit": rate},
                    "errors": [{"type": "NOT_FOUND", "path": ["repository"], "locations": [{"line": 2, "column": 3}],
                                "message": format!("Could not resolve to a Repository with the name '{owner}/{name}'.")}]
                }),
            ),
            1,
        );
    };
    let cursor = vars.get("cursor").and_then(Value::as_str);
    let offset = match cursor.map(decode_cursor) {
        None => 0,
        Some(Some(o)) => o,
        Some(None) => {
            return (
                gql_error(format!(
                    "`{}` does not appear to be a valid cursor.",
                    cursor.unwrap_or("")
                )),
                0,
            )
        }
    };
    if kind == "comments" {
        let number = vars.get("number").and_then(Value::as_u64);
        let issue = number.and_then(|n| {
            repo.issues
                .iter()
                .find(|i| i.number == n && !i.pull_request)
        });
        let data = match issue {
            None => json!({"repository": {"issue": null}, "rateLimit": rate}),
            Some(i) => {
                json!({"repository": {"issue": {"comments": comment_page(i, offset)}}, "rateLimit": rate})
            }
        };
        return (Reply::json(200, json!({"data": data})), cost);
    }
    let first = var_first.unwrap_or(100) as usize;
    let filter = vars.get("filter").cloned().unwrap_or(Value::Null);
    let since =
        match filter
            .get("since")
            .and_then(Value::as_str)
            .map(DateTime::parse_from_rfc3339)
        {
            Some(Err(_)) => return (
                gql_error(
                    "Variable $filter of type IssueFilters was provided invalid value for since"
                        .into(),
                ),
                0,
            ),
            Some(Ok(t)) => Some(t.to_utc()),
            None => None,
        };
    let states: Vec<String> = filter
        .get("states")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if states.iter().any(|s| s != "OPEN" && s != "CLOSED") {
        return (
            gql_error(
                "Variable $filter of type IssueFilters was provided invalid value for states"
                    .into(),
            ),
            0,
        );
    }
    let labels: Vec<String> = filter
        .get("labels")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let mut matching: Vec<&FakeIssue> = repo
        .issues
        .iter()
        .filter(|i| !i.pull_request && !i.deleted && i.moved_to.is_none())
        .filter(|i| states.is_empty() || states.contains(&i.state.to_ascii_uppercase()))
        .filter(|i| since.is_none_or(|s| parse_ts(&i.updated_at) >= s))
        .filter(|i| labels.is_empty() || i.labels.iter().any(|l| labels.contains(l)))
        .collect();
    matching.sort_by(|a, b| {
        parse_ts(&b.updated_at)
            .cmp(&parse_ts(&a.updated_at))
            .then(b.number.cmp(&a.number))
    });
    let total = matching.len();
    let nodes: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(first)
        .map(|i| issue_node(i, &repo.owner, &repo.name))
        .collect();
    let end = offset + nodes.len();
    let data = json!({
        "repository": {"nameWithOwner": format!("{}/{}", repo.owner, repo.name), "issues": {
            "totalCount": total,
            "pageInfo": {"hasNextPage": end < total, "endCursor": if nodes.is_empty() { Value::Null } else { json!(encode_cursor(end)) }},
            "nodes": nodes
        }},
        "rateLimit": rate
    });
    (Reply::json(200, json!({"data": data})), cost)
}

fn encode_cursor(offset: usize) -> String {
    format!("Y3Vyc29yOnYyOpK5{offset:08}")
}

fn decode_cursor(c: &str) -> Option<usize> {
    c.strip_prefix("Y3Vyc29yOnYyOpK5")?.parse().ok()
}

fn actor(login: &Option<String>) -> Value {
    match login {
        Some(l) => json!({"login": l, "databaseId": user_id(l)}),
        None => Value::Null,
    }
}

fn comment_page(i: &FakeIssue, offset: usize) -> Value {
    let nodes: Vec<Value> = i
        .comments
        .iter()
        .skip(offset)
        .take(100)
        .map(|c| json!({"databaseId": c.id, "author": actor(&c.author), "body": c.body, "createdAt": c.created_at, "updatedAt": c.updated_at}))
        .collect();
    let end = offset + nodes.len();
    json!({
        "totalCount": i.comments.len(),
        "pageInfo": {"hasNextPage": end < i.comments.len(), "endCursor": if nodes.is_empty() { Value::Null } else { json!(encode_cursor(end)) }},
        "nodes": nodes
    })
}

fn issue_node(i: &FakeIssue, owner: &str, name: &str) -> Value {
    json!({
        "databaseId": i.id, "number": i.number, "title": i.title,
        // GraphQL's body is `String!`: "" when empty.
        "body": i.body.clone().unwrap_or_default(),
        "state": i.state.to_ascii_uppercase(),
        "url": format!("https://github.com/{owner}/{name}/issues/{}", i.number),
        "createdAt": i.created_at, "updatedAt": i.updated_at, "closedAt": i.closed_at,
        "author": actor(&i.author),
        "labels": {"totalCount": i.labels.len(), "nodes": i.labels.iter().map(|l| {
            let v = label_json(l);
            json!({"name": v["name"], "color": v["color"], "description": v["description"]})
        }).collect::<Vec<_>>()},
        "comments": comment_page(i, 0),
    })
}
