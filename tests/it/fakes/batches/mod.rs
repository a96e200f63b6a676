//! A loopback fake of the provider batch APIs (axum on 127.0.0.1:0), as strict as the real
//! services where our client is concerned (spec/openai.md §2-5, spec/anthropic.md §2-3):
//!
//! * OpenAI (under `/v1`): `POST /files` (multipart, `purpose=batch`, `.jsonl` only),
//!   `GET /files`, `GET /files/{id}`, `GET /files/{id}/content`, `POST /batches` (known fields
//!   only, `completion_window` 24h, metadata ≤ 16 string pairs), `GET /batches/{id}`,
//!   `GET /batches` (`limit`/`after` pagination), `POST /batches/{id}/cancel`. Bearer auth with
//!   OpenAI's 401 envelope; input lines are validated at creation but, like the real service,
//!   problems only show on a later poll (`failed` with `errors.data[].line`).
//! * Anthropic: `POST /v1/messages/batches`, `GET /v1/messages/batches[/{id}]`,
//!   `POST …/{id}/cancel`, `GET …/{id}/results`; `x-api-key` + `anthropic-version` required,
//!   custom ids checked against `^[a-zA-Z0-9_-]{1,64}$` and for uniqueness, double-nested
//!   `errored` results, absolute `results_url`.
//!
//! Batches advance one state per poll (or only when the test says, [`Advance::Manual`]); how a
//! batch ends is scripted ([`End`]), each line's answer too ([`LineReply`]); outputs are shuffled
//! relative to the input; failures go to the error file; the next N requests to a route can be
//! made to fail ([`FakeBatches::fail_next`]); every request is counted.
//!
//! [`router`] returns the axum Router alone, so it can be merged with the chat fakes on one
//! base URL; [`FakeBatches::start`] serves it.
//!
//! This module holds what both providers share: the scripted state, [`FakeBatches`], auth and
//! faults ([`gate`]), and the batch lifecycle (poll steps, endings, shuffled outputs); the
//! routes and wire shapes of each provider are in [`openai`] and [`anthropic`]; lost create
//! answers, per-batch caps and the enqueued-token queue in [`limits`].

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use super::serve::lock;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

mod anthropic;
pub mod chaos;
mod limits;
mod openai;
pub mod throttle;

/// The same keys as the chat fakes, so both can be served on one base URL.
pub const OPENAI_KEY: &str = super::openai::KEY;
pub const ANTHROPIC_KEY: &str = super::anthropic::KEY;

/// What the model answers to one request line.
#[derive(Debug, Clone)]
pub enum LineReply {
    /// A structured answer (becomes `message.content` / the tool input).
    Answer(Value),
    /// An answer that parses but must fail validation (same wire shape as `Answer`).
    Invalid(Value),
    /// The inner request fails with this HTTP status and message (error file / `errored`).
    HttpError { status: u16, message: String },
}

/// What a script sees of a line.
#[derive(Debug, Clone)]
pub struct LineCall {
    pub custom_id: String,
    /// `org/repo#n`, read from the prompt.
    pub issue: Option<String>,
    pub user: String,
    /// The label enum of the schema.
    pub labels: Vec<String>,
}

pub type LineScript = Arc<dyn Fn(&LineCall) -> LineReply + Send + Sync>;

/// How batches end once they reach the end of their run.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    Completed,
    /// Only the first `processed` lines (input order) ran; the rest expired.
    Expired {
        processed: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    /// Every GET of a batch moves it one step on.
    OnPoll,
    /// Batches move only through [`FakeBatches::finish_all`].
    Manual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    OpenAi,
    Anthropic,
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub status: u16,
}

struct FileObj {
    id: String,
    filename: String,
    purpose: String,
    bytes: Vec<u8>,
    created_at: i64,
}

struct Batch {
    kind: Kind,
    id: String,
    status: String,
    input_file_id: Option<String>,
    lines: Vec<Value>,
    /// Validation errors found at creation (shown on the first poll).
    invalid: Vec<Value>,
    metadata: Value,
    created_at: chrono::DateTime<chrono::Utc>,
    output_file_id: Option<String>,
    error_file_id: Option<String>,
    counts: (usize, usize),
    cancel_initiated: bool,
    /// Anthropic results JSONL once ended.
    results: Option<Vec<u8>>,
    end: End,
    a_counts: HashMap<&'static str, usize>,
    /// Anthropic: custom id → why its params are invalid (an `errored` result, whatever the
    /// script says).
    line_errors: HashMap<String, String>,
}

struct Fault {
    method: String,
    path_prefix: String,
    status: u16,
    remaining: usize,
}

pub struct Inner {
    files: HashMap<String, FileObj>,
    batches: Vec<Batch>,
    log: Vec<Recorded>,
    script: LineScript,
    advance: Advance,
    end: End,
    faults: Vec<Fault>,
    next_id: u64,
    base_url: String,
    /// Lines processed before a cancel takes effect.
    cancel_processed: usize,
    /// A batch-level validation error every new OpenAI batch fails with (code, message).
    reject: Option<(String, String)>,
    /// Creates that make their batch, then answer 502 (a gateway losing the answer).
    lost_creates: usize,
    /// OpenAI: the organisation's enqueued-token limit per model (each request line counts
    /// [`TOKENS_PER_LINE`]); a batch that would pass it fails validation.
    token_limit: Option<usize>,
    /// OpenAI: most requests one batch may hold (a compatible server's lower cap); more is a
    /// 400 `too_many_tasks` at creation.
    max_requests: Option<usize>,
    /// Slow or stalled uploads and downloads.
    throttle: throttle::Throttles,
    /// Seeded request faults.
    chaos: Option<chaos::Chaos>,
}

pub use limits::TOKENS_PER_LINE;
use limits::{lost_answer, queue_full, too_many_tasks};

pub type Shared = Arc<Mutex<Inner>>;

/// A valid answer recommending the taxonomy labels named in the issue text (the chat fake's
/// [`default_answer`](super::openai::default_answer)).
pub fn default_reply(c: &LineCall) -> LineReply {
    LineReply::Answer(super::openai::answer_naming(&c.user, &c.labels))
}

pub fn new_state() -> Shared {
    Arc::new(Mutex::new(Inner {
        files: HashMap::new(),
        batches: Vec::new(),
        log: Vec::new(),
        script: Arc::new(default_reply),
        advance: Advance::OnPoll,
        end: End::Completed,
        faults: Vec::new(),
        next_id: 1,
        base_url: String::new(),
        cancel_processed: 1,
        reject: None,
        lost_creates: 0,
        token_limit: None,
        max_requests: None,
        throttle: Default::default(),
        chaos: None,
    }))
}

/// Tells the batch routes the base URL they are served at (Anthropic's `results_url`).
pub fn set_base_url(state: &Shared, url: &str) {
    lock(state).base_url = url.to_string();
}

/// Requests to `state`'s routes with this method whose path starts with `prefix`.
pub fn count(state: &Shared, method: &str, prefix: &str) -> usize {
    lock(state)
        .log
        .iter()
        .filter(|r| r.method == method && r.path.starts_with(prefix))
        .count()
}

/// Every OpenAI batch created from now on fails validation with this error.
pub fn reject_batches(state: &Shared, code: &str, message: &str) {
    lock(state).reject = Some((code.to_string(), message.to_string()));
}

/// How batches of `state` advance from now on.
pub fn set_advance(state: &Shared, a: Advance) {
    lock(state).advance = a;
}

/// How the lines of batches of `state` are answered from now on.
pub fn set_script(state: &Shared, script: LineScript) {
    lock(state).script = script;
}

/// Moves every running batch of `state` to its end now.
pub fn finish_all(state: &Shared) {
    let mut g = lock(state);
    let n = g.batches.len();
    for i in 0..n {
        finish(&mut g, i);
    }
}

/// The routes of both providers' batch APIs, over a shared state.
pub fn router(state: Shared) -> axum::Router {
    axum::Router::new()
        .merge(openai::routes())
        .merge(anthropic::routes())
        // Bodies up to the real caps are accepted here; the handlers answer like the services
        // beyond them (OpenAI 400 over 200 MB, Anthropic 413 over 256 MB).
        .layer(axum::extract::DefaultBodyLimit::max(300_000_000))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            throttle::layer,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            chaos::layer,
        ))
        .with_state(state)
}

/// Serves a chat fake's routes (`chat()`) on `listener` with `worker_threads` workers, behind
/// the batch routes over `batches` when given: one base URL, as the real services have.
pub fn serve_chat(
    listener: std::net::TcpListener,
    worker_threads: usize,
    batches: Option<Shared>,
    chat: impl FnOnce() -> axum::Router + Send + 'static,
) -> super::serve::Served {
    let addr = listener.local_addr().expect("addr");
    let batch_routes = batches.map(|b| {
        set_base_url(&b, &format!("http://{addr}"));
        router(b)
    });
    super::serve::spawn(listener, worker_threads, true, move || match batch_routes {
        Some(batch_routes) => batch_routes.merge(chat()),
        None => chat(),
    })
}

pub struct FakeBatches {
    /// Base URL without `/v1` (Anthropic's convention; OpenAI's is this + `/v1`).
    pub url: String,
    pub state: Shared,
    /// The running server; dropping it stops the server.
    _served: super::serve::Served,
}

impl FakeBatches {
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        Self::start_on(listener)
    }

    /// A fake whose connections have a fixed, small receive buffer (no autotuning), so that a
    /// slowly reading server slows the client's upload down instead of the kernel absorbing
    /// megabytes of it (see `throttle`).
    pub fn start_with_receive_buffer(bytes: usize) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        throttle::set_receive_buffer(&listener, bytes);
        Self::start_on(listener)
    }

    fn start_on(listener: std::net::TcpListener) -> Self {
        let state = new_state();
        listener.set_nonblocking(true).expect("nonblocking");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        lock(&state).base_url = format!("http://{addr}");
        let app = router(state.clone());
        let served = super::serve::spawn(listener, 2, true, move || app);
        Self {
            url: format!("http://{addr}"),
            state,
            _served: served,
        }
    }

    pub fn openai_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("OPENAI_BASE_URL", format!("{}/v1", self.url)),
            ("OPENAI_API_KEY", OPENAI_KEY.to_string()),
        ]
    }

    pub fn anthropic_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ANTHROPIC_BASE_URL", self.url.clone()),
            ("ANTHROPIC_API_KEY", ANTHROPIC_KEY.to_string()),
        ]
    }

    pub fn set_script(&self, script: LineScript) {
        lock(&self.state).script = script;
    }

    pub fn set_advance(&self, a: Advance) {
        lock(&self.state).advance = a;
    }

    /// How batches that end from now on end.
    pub fn set_end(&self, end: End) {
        lock(&self.state).end = end;
    }

    /// The next `times` requests whose method matches and whose path starts with
    /// `path_prefix` get `status` with the provider's error envelope.
    pub fn fail_next(&self, method: &str, path_prefix: &str, status: u16, times: usize) {
        lock(&self.state).faults.push(Fault {
            method: method.to_string(),
            path_prefix: path_prefix.to_string(),
            status,
            remaining: times,
        });
    }

    /// Every OpenAI batch created from now on fails validation with this error (e.g.
    /// `token_limit_exceeded`), as the real service reports on a later poll.
    pub fn reject_batches(&self, code: &str, message: &str) {
        reject_batches(&self.state, code, message);
    }

    /// Moves every running batch to its end now.
    pub fn finish_all(&self) {
        finish_all(&self.state);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).log.clone()
    }

    /// Requests with this method whose path starts with `prefix`.
    pub fn count(&self, method: &str, prefix: &str) -> usize {
        count(&self.state, method, prefix)
    }

    /// Public objects of every batch, oldest first.
    pub fn batches(&self) -> Vec<Value> {
        let g = lock(&self.state);
        g.batches.iter().map(|b| batch_object(&g, b)).collect()
    }

    /// The request lines a batch was created with.
    pub fn input_lines(&self, batch_id: &str) -> Vec<Value> {
        lock(&self.state)
            .batches
            .iter()
            .find(|b| b.id == batch_id)
            .map(|b| b.lines.clone())
            .unwrap_or_default()
    }

    /// Uploads (request bodies of file uploads and Anthropic batch creates) are read this slowly.
    pub fn throttle_uploads(&self, t: throttle::Throttle) {
        lock(&self.state).throttle.upload = Some(t);
    }

    /// Downloads (file content, batch results) are sent this slowly.
    pub fn throttle_downloads(&self, t: throttle::Throttle) {
        lock(&self.state).throttle.download = Some(t);
    }

    /// Seeded fault mode: a share `rate` of the requests fail (429, 500, 503, or held `hold`
    /// and refused) before they have any effect.
    pub fn set_chaos(&self, seed: u64, rate: f64, hold: std::time::Duration) {
        lock(&self.state).chaos = Some(chaos::Chaos::new(seed, rate, hold));
    }

    /// Faults injected so far and requests seen by the fault mode.
    pub fn chaos_counts(&self) -> (chaos::Injected, usize) {
        lock(&self.state)
            .chaos
            .as_ref()
            .map_or((Default::default(), 0), |c| (c.injected, c.seen))
    }

    /// (direction, seconds) of every throttled transfer that ran to its end.
    pub fn throttled_transfers(&self) -> Vec<(&'static str, f64)> {
        lock(&self.state).throttle.finished.clone()
    }

    /// Throttled transfers started in a direction (`upload` / `download`), ended or not.
    pub fn throttled_started(&self, direction: &str) -> usize {
        let g = lock(&self.state);
        g.throttle
            .started
            .iter()
            .filter(|d| **d == direction)
            .count()
    }

    /// Raw bytes of an uploaded file.
    pub fn file_bytes(&self, file_id: &str) -> Option<Vec<u8>> {
        lock(&self.state)
            .files
            .get(file_id)
            .map(|f| f.bytes.clone())
    }
}

impl Drop for FakeBatches {
    /// Stalled transfers end first, so the server's graceful shutdown does not wait on them.
    fn drop(&mut self) {
        lock(&self.state)
            .throttle
            .released
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

// ---- shared helpers --------------------------------------------------------------------------

fn kind_of(path: &str) -> Kind {
    if path.starts_with("/v1/messages") {
        Kind::Anthropic
    } else {
        Kind::OpenAi
    }
}

fn error(kind: Kind, status: u16, etype: &str, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = match kind {
        Kind::OpenAi => (
            code,
            axum::Json(json!({"error": {"message": message, "type": etype, "param": null, "code": null}})),
        )
            .into_response(),
        Kind::Anthropic => (
            code,
            axum::Json(json!({"type": "error", "error": {"type": etype, "message": message}, "request_id": "req_fake"})),
        )
            .into_response(),
    };
    if status == 429 {
        resp.headers_mut()
            .insert("retry-after-ms", "5".parse().expect("header"));
        resp.headers_mut()
            .insert("retry-after", "0".parse().expect("header"));
    }
    resp
}

/// Logs the request, applies auth and scripted faults. `Err` is the response to send.
fn gate(st: &Shared, method: &str, path: &str, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let kind = kind_of(path);
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let verdict: Result<(), (u16, &str, String)> = (|| {
        match kind {
            Kind::OpenAi => {
                if header("authorization").as_deref() != Some(&format!("Bearer {OPENAI_KEY}")) {
                    return Err((401, "invalid_request_error", "Incorrect API key provided: sk-…. You can find your API key at https://platform.openai.com/account/api-keys.".to_string()));
                }
            }
            Kind::Anthropic => {
                if header("x-api-key").as_deref() != Some(ANTHROPIC_KEY) {
                    return Err((401, "authentication_error", "invalid x-api-key".to_string()));
                }
                if header("anthropic-version").is_none() {
                    return Err((
                        400,
                        "invalid_request_error",
                        "anthropic-version: header is required".to_string(),
                    ));
                }
            }
        }
        let mut g = lock(st);
        if let Some(f) = g
            .faults
            .iter_mut()
            .find(|f| f.remaining > 0 && f.method == method && path.starts_with(&f.path_prefix))
        {
            f.remaining -= 1;
            let (t, m) = match (kind, f.status) {
                (_, 429) => (
                    "rate_limit_error",
                    "Rate limit reached; please try again in 5ms.",
                ),
                (Kind::OpenAi, 500) => (
                    "server_error",
                    "The server had an error while processing your request.",
                ),
                (Kind::Anthropic, 500) => ("api_error", "Internal server error"),
                (Kind::Anthropic, 529) => ("overloaded_error", "Overloaded"),
                (_, 404) => ("not_found_error", "Not found"),
                _ => ("server_error", "Service unavailable"),
            };
            return Err((f.status, t, m.to_string()));
        }
        Ok(())
    })();
    let status = match &verdict {
        Ok(()) => 200,
        Err((s, _, _)) => *s,
    };
    lock(st).log.push(Recorded {
        method: method.to_string(),
        path: path.to_string(),
        status,
    });
    verdict.map_err(|(s, t, m)| Box::new(error(kind, s, t, &m)))
}

fn next_id(g: &mut Inner, prefix: &str) -> String {
    g.next_id += 1;
    format!("{prefix}{:06}", g.next_id)
}

fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A deterministic shuffle that is never the input order (for two or more lines): reversed,
/// then the first line moved to the end.
fn shuffled(lines: Vec<(String, Value)>) -> Vec<Value> {
    let mut v: Vec<Value> = lines.into_iter().rev().map(|(_, v)| v).collect();
    if v.len() > 2 {
        v.rotate_left(1);
    }
    v
}

fn jsonl(lines: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

pub fn call_of(kind: Kind, custom_id: &str, body: &Value) -> LineCall {
    let user = match kind {
        Kind::OpenAi => body["messages"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["role"] == "user"))
            .and_then(|m| m["content"].as_str()),
        Kind::Anthropic => body["messages"][0]["content"].as_str(),
    }
    .unwrap_or("")
    .to_string();
    let schema = match kind {
        Kind::OpenAi => body.pointer("/response_format/json_schema/schema"),
        Kind::Anthropic => body.pointer("/tools/0/input_schema"),
    };
    let labels = super::openai::label_enum(schema);
    LineCall {
        custom_id: custom_id.to_string(),
        issue: super::openai::issue_named(&user),
        user,
        labels,
    }
}

/// Runs the script over a batch's lines: (custom_id, reply) for the first `processed` lines.
fn replies(g: &Inner, b: &Batch, processed: usize) -> Vec<(String, Option<LineReply>)> {
    b.lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let cid = l["custom_id"].as_str().unwrap_or("").to_string();
            let body = match b.kind {
                Kind::OpenAi => &l["body"],
                Kind::Anthropic => &l["params"],
            };
            let reply = (i < processed).then(|| (g.script)(&call_of(b.kind, &cid, body)));
            (cid, reply)
        })
        .collect()
}

/// Ends batch `i` per its end plan (or as cancelled), writing its output.
fn finish(g: &mut Inner, i: usize) {
    let (kind, status) = (g.batches[i].kind, g.batches[i].status.clone());
    let done = matches!(
        status.as_str(),
        "completed" | "failed" | "expired" | "cancelled" | "ended"
    );
    if done {
        return;
    }
    if kind == Kind::OpenAi && !g.batches[i].invalid.is_empty() {
        g.batches[i].status = "failed".into();
        return;
    }
    let cancelled = g.batches[i].cancel_initiated;
    let total = g.batches[i].lines.len();
    let processed = if cancelled {
        g.cancel_processed.min(total)
    } else {
        match g.batches[i].end {
            End::Completed => total,
            End::Expired { processed } => processed.min(total),
        }
    };
    let rs = replies(g, &g.batches[i], processed);
    let model = g.batches[i].lines.first().map(|l| match kind {
        Kind::OpenAi => l["body"]["model"].clone(),
        Kind::Anthropic => l["params"]["model"].clone(),
    });
    let model = model
        .and_then(|m| m.as_str().map(str::to_string))
        .unwrap_or_default();
    match kind {
        Kind::OpenAi => openai::finish(g, i, rs, model, cancelled, processed, total),
        Kind::Anthropic => anthropic::finish(g, i, rs, model, cancelled),
    }
}

/// One poll: moves a batch one state on (in [`Advance::OnPoll`] mode).
fn step(g: &mut Inner, i: usize) {
    if g.advance != Advance::OnPoll {
        return;
    }
    let next = match (g.batches[i].kind, g.batches[i].status.as_str()) {
        (Kind::OpenAi, "validating") if !g.batches[i].invalid.is_empty() => Some("failed"),
        (Kind::OpenAi, "validating") => Some("in_progress"),
        (Kind::OpenAi, "in_progress") => Some("finalizing"),
        (Kind::OpenAi, "finalizing" | "cancelling") => None,
        (Kind::Anthropic, "in_progress" | "canceling") => None,
        _ => return,
    };
    match next {
        Some(s) => g.batches[i].status = s.into(),
        None => finish(g, i),
    }
}

/// One page of a provider's batch list, newest first: `limit` (default 20, at most the rules'),
/// after the id in the rules' cursor parameter; `Err` is the provider's 400 for a bad limit.
fn list_page(
    st: &Shared,
    kind: Kind,
    q: &HashMap<String, String>,
    rules: &ListRules,
) -> Result<(Vec<Value>, bool), Box<Response>> {
    let limit: usize = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 20,
        Some(Ok(n)) if (1..=rules.max_limit).contains(&n) => n,
        _ => {
            return Err(Box::new(error(
                kind,
                400,
                "invalid_request_error",
                rules.bad_limit,
            )))
        }
    };
    let g = lock(st);
    let all: Vec<&Batch> = g.batches.iter().rev().filter(|b| b.kind == kind).collect();
    let start = match q.get(rules.cursor) {
        Some(a) => all
            .iter()
            .position(|b| &b.id == a)
            .map_or(all.len(), |p| p + 1),
        None => 0,
    };
    let page: Vec<Value> = all
        .iter()
        .skip(start)
        .take(limit)
        .map(|b| batch_object(&g, b))
        .collect();
    let has_more = start + page.len() < all.len();
    Ok((page, has_more))
}

/// The provider's 404 for a batch id it does not know.
fn no_batch(kind: Kind, id: &str) -> Response {
    match kind {
        Kind::OpenAi => error(
            kind,
            404,
            "invalid_request_error",
            &format!("No batch found with id '{id}'."),
        ),
        Kind::Anthropic => error(
            kind,
            404,
            "not_found_error",
            &format!("No message batch found with id {id}"),
        ),
    }
}

/// A request about batch `id` (the provider is `path`'s): [`gate`], then `f` on that batch under
/// the lock, or the provider's 404 when it has no such batch.
fn with_batch(
    st: &Shared,
    headers: &HeaderMap,
    method: &str,
    path: &str,
    id: &str,
    f: impl FnOnce(&mut Inner, usize) -> Response,
) -> Response {
    if let Err(r) = gate(st, method, path, headers) {
        return *r;
    }
    let kind = kind_of(path);
    let mut g = lock(st);
    match g.batches.iter().position(|b| b.id == id && b.kind == kind) {
        Some(i) => f(&mut g, i),
        None => no_batch(kind, id),
    }
}

/// Starts cancelling batch `i` (`cancelling` is the provider's name for that status); answered
/// with its object. Lines still to run end as cancelled when the batch next moves.
fn start_cancel(g: &mut Inner, i: usize, cancelling: &str) -> Response {
    g.batches[i].status = cancelling.into();
    g.batches[i].cancel_initiated = true;
    axum::Json(batch_object(g, &g.batches[i])).into_response()
}

/// `GET` of one batch, either provider's route (the path says which): a poll, which moves the
/// batch a step on; answered with its object.
async fn retrieve(
    State(st): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    with_batch(&st, &headers, "GET", uri.path(), &id, |g, i| {
        step(g, i);
        axum::Json(batch_object(g, &g.batches[i])).into_response()
    })
}

/// How a provider pages its batch list.
struct ListRules {
    /// The query parameter of the id the page starts after.
    cursor: &'static str,
    /// The largest `limit`.
    max_limit: usize,
    /// The 400's message for a `limit` out of range.
    bad_limit: &'static str,
    /// The list's `object` field, if it has one.
    object: Option<&'static str>,
}

/// `GET` of the batch list, either provider's route: one page (see [`list_page`]) with `data`,
/// `has_more`, `first_id` and `last_id`, as the provider's [`ListRules`] say.
async fn list(
    State(st): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = gate(&st, "GET", uri.path(), &headers) {
        return *r;
    }
    let kind = kind_of(uri.path());
    let rules = match kind {
        Kind::OpenAi => &openai::LIST,
        Kind::Anthropic => &anthropic::LIST,
    };
    let (page, has_more) = match list_page(&st, kind, &q, rules) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let mut out = json!({"data": page, "has_more": has_more,
        "first_id": page.first().map(|b| b["id"].clone()), "last_id": page.last().map(|b| b["id"].clone())});
    if let Some(object) = rules.object {
        out["object"] = json!(object);
    }
    axum::Json(out).into_response()
}

/// Makes a batch of `kind` (id `<prefix>…`, in `status`, of these request lines; `set` fills in
/// the rest) and answers with its object, unless the answer is to be lost ([`lost_answer`]).
fn create(
    g: &mut Inner,
    kind: Kind,
    prefix: &str,
    status: &str,
    lines: Vec<Value>,
    set: impl FnOnce(&mut Batch),
) -> Response {
    let id = next_id(g, prefix);
    let mut batch = Batch {
        kind,
        id,
        status: status.into(),
        input_file_id: None,
        lines,
        invalid: Vec::new(),
        metadata: Value::Null,
        created_at: chrono::Utc::now(),
        output_file_id: None,
        error_file_id: None,
        counts: (0, 0),
        cancel_initiated: false,
        results: None,
        end: g.end.clone(),
        a_counts: HashMap::new(),
        line_errors: HashMap::new(),
    };
    set(&mut batch);
    g.batches.push(batch);
    if let Some(lost) = lost_answer(g, kind) {
        return lost;
    }
    let b = g.batches.last().expect("just pushed");
    axum::Json(batch_object(g, b)).into_response()
}

fn batch_object(g: &Inner, b: &Batch) -> Value {
    match b.kind {
        Kind::OpenAi => openai::object(b),
        Kind::Anthropic => anthropic::object(g, b),
    }
}
