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
//! This module holds the scripted state both providers share and the router; [`FakeBatches`]
//! and what a test asks of it are in [`fake`]; auth, faults and the shared batch routes in
//! [`routes`]; the batch lifecycle (poll steps, endings, shuffled outputs) in [`lifecycle`]; the
//! routes and wire shapes of each provider in [`openai`] and [`anthropic`]; lost create
//! answers, per-batch caps and the enqueued-token queue in [`limits`].

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::serve::lock;
use serde_json::Value;

mod anthropic;
pub mod chaos;
mod fake;
mod lifecycle;
mod limits;
mod openai;
mod routes;
pub mod throttle;

pub use fake::FakeBatches;
use lifecycle::finish;

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
