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
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};

mod graphql;
mod labels;
mod rest;
mod selection;
mod server;

use super::serve::lock;
use server::handle;

pub const TOKEN: &str = "ghp_fake_token_for_tests";
/// The wait cap of rate-limit tests (seconds): longer than any refusal the fake scripts lasts
/// (see `Block`), far shorter than the minute GitHub asks for after a secondary limit without
/// `retry-after`.
pub const RATE_LIMIT_WAIT: &str = "2.5";
/// How long the fake refuses a bucket after a secondary limit without `retry-after` (GitHub
/// says "a few minutes"; a client must wait at least a minute, capped in tests by `MAX_WAIT`).
pub const SECONDARY_WINDOW_MS: i64 = 1_000;
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
    /// The write is done, but the answer is lost to a 500 / 502 / 503 / 504 (an edge timeout
    /// after the backend did the work): the client cannot know it happened.
    ServerErrorAfterWriting { status: u16 },
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
    /// GitHub's clock when the request arrived.
    pub at: chrono::DateTime<Utc>,
    pub if_none_match: bool,
    /// Whether the request carried an `Authorization` header (whatever its value).
    pub authorization: bool,
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
    /// Attachment paths answered with a 302 to another origin (GitHub's uploads live on S3).
    redirects: HashMap<String, String>,
    /// Set by a `Delay` fault for the request being answered.
    delay_ms: u64,
    /// Repository labels and the write gate of the label endpoints (`labels.rs`).
    labels: labels::LabelState,
    /// Added to every answer (GitHub's own latency), in milliseconds.
    latency_ms: u64,
    /// Requests being answered now, and the most at once so far.
    in_flight: usize,
    max_in_flight: usize,
    /// GitHub's clock minus ours, in seconds: `Date`, resets and refusals follow GitHub's clock.
    clock_offset: i64,
    /// Per bucket: until when (GitHub's clock, epoch milliseconds) requests are refused, and how.
    blocked: HashMap<&'static str, Block>,
    /// Per-bucket limits (GitHub's 5,000 per hour unless a benchmark raises them).
    core_limit: u64,
    graphql_limit: u64,
}

/// A refusal in force: every request to the bucket before `until_ms` gets this answer again,
/// so a client that announces a wait but does not wait is refused (as GitHub refuses it).
#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub until_ms: i64,
    pub fault: Fault,
}

pub struct FakeGitHub {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    /// The running server; dropping it stops the server.
    _served: super::serve::Served,
}

impl FakeGitHub {
    /// Starts the server on its own thread and runtime (tests are synchronous).
    pub fn start() -> Self {
        let (listener, addr) = super::serve::bind();
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
            redirects: HashMap::new(),
            delay_ms: 0,
            labels: Default::default(),
            latency_ms: 0,
            in_flight: 0,
            max_in_flight: 0,
            clock_offset: 0,
            blocked: HashMap::new(),
            core_limit: CORE_LIMIT,
            graphql_limit: GRAPHQL_LIMIT,
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

    /// Answers `path` (an attachment) with a 302 to `location`, as github.com does for uploads
    /// stored on a third-party host.
    pub fn add_attachment_redirect(&self, path: &str, location: &str) {
        lock(&self.inner)
            .redirects
            .insert(path.to_string(), location.to_string());
    }

    /// Sets GitHub's clock to ours plus `seconds` (its `Date` header, resets and refusals).
    pub fn set_clock_offset(&self, seconds: i64) {
        let mut g = lock(&self.inner);
        g.clock_offset = seconds;
        g.reset = Utc::now().timestamp() + seconds + 3600;
    }

    /// Delays every answer by `ms` milliseconds (GitHub's own response time, for benchmarks).
    pub fn set_latency_ms(&self, ms: u64) {
        lock(&self.inner).latency_ms = ms;
    }

    /// Replaces the hourly budgets of the `core` and `graphql` buckets.
    pub fn set_limits(&self, core: u64, graphql: u64) {
        let mut g = lock(&self.inner);
        g.core_limit = core;
        g.graphql_limit = graphql;
    }

    /// GitHub's clock now.
    pub fn github_now(&self) -> chrono::DateTime<Utc> {
        Utc::now() + chrono::Duration::seconds(lock(&self.inner).clock_offset)
    }

    pub fn push_fault(&self, target: Target, fault: Fault) {
        lock(&self.inner).faults.push_back((target, fault));
    }

    pub fn requests(&self) -> Vec<Logged> {
        lock(&self.inner).log.clone()
    }

    /// The most requests GitHub was answering at the same moment.
    pub fn max_in_flight(&self) -> usize {
        lock(&self.inner).max_in_flight
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
            // Short backoffs for 5xx faults. Tests of rate limits raise it to
            // `RATE_LIMIT_WAIT`: the fake refuses every request until a limit is over.
            ("GITHUB_ANALYSIS_MAX_WAIT", "0.1".to_string()),
        ]
    }

    /// `YYYY-MM-DDTHH:MM:SSZ` for now (GitHub's timestamp format).
    pub fn now() -> String {
        Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    /// One raw HTTP/1.1 request, as any client could send it, for tests of the fake's own
    /// strictness: `headers` are whole `Name: value\r\n` lines besides Host and Connection, a
    /// `body` gets its Content-Length. Returns the whole answer, status line and headers included.
    pub fn raw(&self, method: &str, path: &str, headers: &str, body: &str) -> String {
        use std::io::{Read, Write};
        let addr = self.url.trim_start_matches("http://");
        let length = if body.is_empty() {
            String::new()
        } else {
            format!("Content-Length: {}\r\n", body.len())
        };
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}{length}Connection: close\r\n\r\n{body}"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// [`FakeGitHub::raw`] with what GitHub requires of every request (a User-Agent and the
    /// token); a body is JSON.
    pub fn raw_authorized(&self, method: &str, path: &str, body: &str) -> String {
        let json = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/json\r\n"
        };
        let headers = format!("User-Agent: t\r\nAuthorization: Bearer {TOKEN}\r\n{json}");
        self.raw(method, path, &headers, body)
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
