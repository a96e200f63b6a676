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

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{json, Value};

/// The same keys as the chat fakes, so both can be served on one base URL.
pub const OPENAI_KEY: &str = super::fake_openai::KEY;
pub const ANTHROPIC_KEY: &str = super::fake_anthropic::KEY;

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
}

pub type Shared = Arc<Mutex<Inner>>;

fn lock(s: &Shared) -> MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// A valid answer recommending the taxonomy labels named in the issue text.
pub fn default_reply(c: &LineCall) -> LineReply {
    let text = c.user.to_lowercase();
    let recommended: Vec<Value> = c
        .labels
        .iter()
        .filter(|l| {
            let short = l.rsplit("::").next().unwrap_or(l).to_lowercase();
            text.contains(&short)
        })
        .map(|l| json!({"label": l, "confidence": 0.9, "reasoning": format!("the issue mentions {l}")}))
        .collect();
    LineReply::Answer(json!({
        "recommended_labels": recommended,
        "current_labels_assessment": [],
        "confidence": 0.85,
        "summary": "An issue.",
        "reasoning": "Matched product names in the text."
    }))
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
        .route("/v1/files", post(oa_upload).get(oa_list_files))
        .route("/v1/files/{id}", get(oa_get_file))
        .route("/v1/files/{id}/content", get(oa_file_content))
        .route("/v1/batches", post(oa_create).get(oa_list))
        .route("/v1/batches/{id}", get(oa_retrieve))
        .route("/v1/batches/{id}/cancel", post(oa_cancel))
        .route("/v1/messages/batches", post(an_create).get(an_list))
        .route("/v1/messages/batches/{id}", get(an_retrieve))
        .route("/v1/messages/batches/{id}/cancel", post(an_cancel))
        .route("/v1/messages/batches/{id}/results", get(an_results))
        // Bodies up to the real caps are accepted here; the handlers answer like the services
        // beyond them (OpenAI 400 over 200 MB, Anthropic 413 over 256 MB).
        .layer(axum::extract::DefaultBodyLimit::max(300_000_000))
        .with_state(state)
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
        let state = new_state();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
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

    /// Raw bytes of an uploaded file.
    pub fn file_bytes(&self, file_id: &str) -> Option<Vec<u8>> {
        lock(&self.state)
            .files
            .get(file_id)
            .map(|f| f.bytes.clone())
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

fn call_of(kind: Kind, custom_id: &str, body: &Value) -> LineCall {
    let user = match kind {
        Kind::OpenAi => body["messages"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["role"] == "user"))
            .and_then(|m| m["content"].as_str()),
        Kind::Anthropic => body["messages"][0]["content"].as_str(),
    }
    .unwrap_or("")
    .to_string();
    let repo = user.lines().find_map(|l| l.strip_prefix("Repository: "));
    let num = user
        .lines()
        .find_map(|l| l.strip_prefix("Issue #"))
        .and_then(|l| l.split(':').next());
    let schema = match kind {
        Kind::OpenAi => body.pointer("/response_format/json_schema/schema"),
        Kind::Anthropic => body.pointer("/tools/0/input_schema"),
    };
    let labels = schema
        .and_then(|s| s.pointer("/properties/recommended_labels/items/properties/label/enum"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    LineCall {
        custom_id: custom_id.to_string(),
        issue: repo.zip(num).map(|(r, n)| format!("{r}#{n}")),
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
        Kind::OpenAi => {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            for (n, (cid, reply)) in rs.into_iter().enumerate() {
                let req = format!("req_{n:04}");
                match reply {
                    Some(LineReply::Answer(v)) | Some(LineReply::Invalid(v)) => out.push((cid.clone(), json!({
                        "id": format!("batch_req_{n}"), "custom_id": cid,
                        "response": {"status_code": 200, "request_id": req, "body": {
                            "id": format!("chatcmpl-{n}"), "object": "chat.completion", "created": 1741570283, "model": model,
                            "choices": [{"index": 0, "message": {"role": "assistant", "content": v.to_string(), "refusal": null, "annotations": []}, "logprobs": null, "finish_reason": "stop"}],
                            "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100, "prompt_tokens_details": {"cached_tokens": 0}}
                        }}, "error": null}))),
                    Some(LineReply::HttpError { status, message }) => err.push((cid.clone(), json!({
                        "id": format!("batch_req_{n}"), "custom_id": cid,
                        "response": {"status_code": status, "request_id": req, "body": {"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}}},
                        "error": null}))),
                    None => {
                        let (code, message) = if cancelled {
                            ("batch_cancelled", "This request was not executed because the batch was cancelled.")
                        } else {
                            ("batch_expired", "This request could not be executed before the completion window expired.")
                        };
                        err.push((cid.clone(), json!({"id": format!("batch_req_{n}"), "custom_id": cid, "response": null, "error": {"code": code, "message": message}})));
                    }
                }
            }
            let (ok_n, err_n) = (out.len(), err.len());
            let now = chrono::Utc::now().timestamp();
            let out_id = (!out.is_empty()).then(|| {
                let id = next_id(g, "file-out");
                g.files.insert(
                    id.clone(),
                    FileObj {
                        id: id.clone(),
                        filename: "batch_output.jsonl".into(),
                        purpose: "batch_output".into(),
                        bytes: jsonl(&shuffled(out)),
                        created_at: now,
                    },
                );
                id
            });
            let err_id = (!err.is_empty()).then(|| {
                let id = next_id(g, "file-err");
                g.files.insert(
                    id.clone(),
                    FileObj {
                        id: id.clone(),
                        filename: "batch_errors.jsonl".into(),
                        purpose: "batch_output".into(),
                        bytes: jsonl(&shuffled(err)),
                        created_at: now,
                    },
                );
                id
            });
            let b = &mut g.batches[i];
            b.output_file_id = out_id;
            b.error_file_id = err_id;
            b.counts = (ok_n, err_n);
            b.status = if cancelled {
                "cancelled".into()
            } else if processed < total {
                "expired".into()
            } else {
                "completed".into()
            };
        }
        Kind::Anthropic => {
            let mut lines = Vec::new();
            let mut counts: HashMap<&'static str, usize> = HashMap::new();
            let tool = g.batches[i]
                .lines
                .first()
                .and_then(|l| l["params"]["tool_choice"]["name"].as_str())
                .unwrap_or("tool")
                .to_string();
            for (n, (cid, reply)) in rs.into_iter().enumerate() {
                let (key, result) = match reply {
                    Some(LineReply::Answer(v)) | Some(LineReply::Invalid(v)) => (
                        "succeeded",
                        json!({"type": "succeeded", "message": {
                        "id": format!("msg_{n:04}"), "type": "message", "role": "assistant", "model": model,
                        "content": [{"type": "tool_use", "id": format!("toolu_{n:04}"), "name": tool, "input": v}],
                        "stop_reason": "tool_use", "stop_sequence": null,
                        "usage": {"input_tokens": 200, "output_tokens": 80, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 800, "service_tier": "batch"}}}),
                    ),
                    Some(LineReply::HttpError { message, .. }) => (
                        "errored",
                        json!({"type": "errored", "error": {"type": "error", "error": {"type": "invalid_request_error", "message": message}, "request_id": "req_fake"}}),
                    ),
                    None if cancelled => ("canceled", json!({"type": "canceled"})),
                    None => ("expired", json!({"type": "expired"})),
                };
                *counts.entry(key).or_insert(0) += 1;
                lines.push((cid.clone(), json!({"custom_id": cid, "result": result})));
            }
            let b = &mut g.batches[i];
            b.results = Some(jsonl(&shuffled(lines)));
            b.a_counts = counts;
            b.status = "ended".into();
        }
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

fn batch_object(g: &Inner, b: &Batch) -> Value {
    match b.kind {
        Kind::OpenAi => {
            let total = b.lines.len();
            let created = b.created_at.timestamp();
            json!({
                "id": b.id, "object": "batch", "endpoint": "/v1/chat/completions",
                "errors": if b.invalid.is_empty() { Value::Null } else { json!({"object": "list", "data": b.invalid}) },
                "input_file_id": b.input_file_id, "completion_window": "24h", "status": b.status,
                "output_file_id": b.output_file_id, "error_file_id": b.error_file_id,
                "created_at": created, "in_progress_at": null, "expires_at": created + 86400,
                "finalizing_at": null, "completed_at": if b.status == "completed" { json!(created) } else { Value::Null },
                "failed_at": null, "expired_at": null, "cancelling_at": if b.cancel_initiated { json!(created) } else { Value::Null },
                "cancelled_at": null,
                "request_counts": {"total": if b.status == "validating" { 0 } else { total }, "completed": b.counts.0, "failed": b.counts.1},
                "metadata": b.metadata,
            })
        }
        Kind::Anthropic => {
            let ended = b.status == "ended";
            let n = |k: &str| b.a_counts.get(k).copied().unwrap_or(0);
            json!({
                "id": b.id, "type": "message_batch", "processing_status": b.status,
                "request_counts": {
                    "processing": if ended { 0 } else { b.lines.len() },
                    "succeeded": n("succeeded"), "errored": n("errored"), "canceled": n("canceled"), "expired": n("expired"),
                },
                "ended_at": if ended { json!(ts(chrono::Utc::now())) } else { Value::Null },
                "created_at": ts(b.created_at),
                "expires_at": ts(b.created_at + chrono::Duration::hours(24)),
                "archived_at": null,
                "cancel_initiated_at": if b.cancel_initiated { json!(ts(b.created_at)) } else { Value::Null },
                "results_url": if ended { json!(format!("{}/v1/messages/batches/{}/results", g.base_url, b.id)) } else { Value::Null },
            })
        }
    }
}

fn file_object(f: &FileObj) -> Value {
    json!({"id": f.id, "object": "file", "bytes": f.bytes.len(), "created_at": f.created_at,
           "expires_at": null, "filename": f.filename, "purpose": f.purpose, "status": "processed", "status_details": null})
}

// ---- OpenAI ----------------------------------------------------------------------------------

/// One part of a multipart form: (name, filename, bytes).
type FormPart = (String, Option<String>, Vec<u8>);

/// Splits a multipart/form-data body into (name, filename, bytes) parts.
fn multipart(headers: &HeaderMap, body: &[u8]) -> Result<Vec<FormPart>, String> {
    let ctype = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype.starts_with("multipart/form-data") {
        return Err(format!("expected multipart/form-data, got {ctype:?}"));
    }
    let boundary = ctype
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .ok_or("no boundary")?
        .trim_matches('"');
    let delim = format!("--{boundary}").into_bytes();
    let mut parts = Vec::new();
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay[from.min(hay.len())..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let mut pos = find(body, &delim, 0).ok_or("no first boundary")?;
    loop {
        let start = pos + delim.len();
        if body[start..].starts_with(b"--") {
            break;
        }
        let head_start = start + 2; // CRLF
        let head_end = find(body, b"\r\n\r\n", head_start).ok_or("no part headers end")?;
        let head = String::from_utf8_lossy(&body[head_start..head_end]).to_string();
        let data_start = head_end + 4;
        let next = find(body, &delim, data_start).ok_or("unterminated part")?;
        let data = body[data_start..next.saturating_sub(2)].to_vec();
        let disp = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))
            .ok_or("no content-disposition")?;
        let attr = |k: &str| {
            disp.split(';')
                .find_map(|p| p.trim().strip_prefix(&format!("{k}=")))
                .map(|v| v.trim_matches('"').to_string())
        };
        parts.push((
            attr("name").ok_or("part without a name")?,
            attr("filename"),
            data,
        ));
        pos = next;
    }
    Ok(parts)
}

async fn oa_upload(State(st): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = gate(&st, "POST", "/v1/files", &headers) {
        return *r;
    }
    let bad = |m: &str| error(Kind::OpenAi, 400, "invalid_request_error", m);
    let parts = match multipart(&headers, &body) {
        Ok(p) => p,
        Err(e) => return bad(&format!("Invalid multipart body: {e}")),
    };
    let purpose = parts
        .iter()
        .find(|p| p.0 == "purpose")
        .map(|p| String::from_utf8_lossy(&p.2).to_string());
    let Some(file) = parts.iter().find(|p| p.0 == "file") else {
        return bad("Missing required parameter: 'file'.");
    };
    match purpose.as_deref() {
        Some("batch") => {}
        Some(p) => return bad(&format!("'{p}' is not one of ['assistants', 'batch', 'fine-tune', 'vision', 'user_data', 'evals'] - 'purpose'")),
        None => return bad("Missing required parameter: 'purpose'."),
    }
    if file.2.len() > 200_000_000 {
        return bad("File is too large: batch input files are limited to 200 MB.");
    }
    let filename = file.1.clone().unwrap_or_default();
    if !filename.ends_with(".jsonl") {
        return bad("Invalid file format for Batch API. Must be .jsonl");
    }
    let mut g = lock(&st);
    let id = next_id(&mut g, "file-");
    let f = FileObj {
        id: id.clone(),
        filename,
        purpose: "batch".into(),
        bytes: file.2.clone(),
        created_at: chrono::Utc::now().timestamp(),
    };
    let obj = file_object(&f);
    g.files.insert(id, f);
    axum::Json(obj).into_response()
}

async fn oa_list_files(
    State(st): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = gate(&st, "GET", "/v1/files", &headers) {
        return *r;
    }
    let g = lock(&st);
    let mut data: Vec<Value> = g
        .files
        .values()
        .filter(|f| q.get("purpose").is_none_or(|p| *p == f.purpose))
        .map(file_object)
        .collect();
    data.sort_by(|a, b| b["id"].as_str().cmp(&a["id"].as_str()));
    axum::Json(json!({"object": "list", "data": data, "has_more": false,
        "first_id": data.first().map(|f| f["id"].clone()), "last_id": data.last().map(|f| f["id"].clone())})).into_response()
}

async fn oa_get_file(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = gate(&st, "GET", &format!("/v1/files/{id}"), &headers) {
        return *r;
    }
    match lock(&st).files.get(&id) {
        Some(f) => axum::Json(file_object(f)).into_response(),
        None => error(
            Kind::OpenAi,
            404,
            "invalid_request_error",
            &format!("No such File object: {id}"),
        ),
    }
}

async fn oa_file_content(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = gate(&st, "GET", &format!("/v1/files/{id}/content"), &headers) {
        return *r;
    }
    match lock(&st).files.get(&id) {
        Some(f) => (
            [("content-type", "application/octet-stream")],
            f.bytes.clone(),
        )
            .into_response(),
        None => error(
            Kind::OpenAi,
            404,
            "invalid_request_error",
            &format!("No such File object: {id}"),
        ),
    }
}

/// Validates request lines like the batch validator: errors carry their 1-based line.
fn validate_openai_lines(bytes: &[u8]) -> (Vec<Value>, Vec<Value>) {
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    let mut model: Option<String> = None;
    let allowed: HashSet<&str> = [
        "model",
        "messages",
        "response_format",
        "temperature",
        "max_completion_tokens",
        "reasoning_effort",
        "max_tokens",
        "n",
        "stop",
        "seed",
        "tools",
        "tool_choice",
        "store",
        "service_tier",
        "metadata",
        "top_p",
        "logprobs",
        "top_logprobs",
    ]
    .into_iter()
    .collect();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        if raw.is_empty() {
            continue;
        }
        let line = i + 1;
        let mut err = |code: &str, message: String| {
            errors.push(json!({"code": code, "message": message, "param": null, "line": line}))
        };
        let Ok(v) = serde_json::from_slice::<Value>(raw) else {
            err(
                "invalid_json_line",
                "This line is not parseable as valid JSON.".into(),
            );
            continue;
        };
        let Some(obj) = v.as_object() else {
            err("invalid_request", "Each line must be a JSON object.".into());
            continue;
        };
        let unknown: Vec<&String> = obj
            .keys()
            .filter(|k| !["custom_id", "method", "url", "body"].contains(&k.as_str()))
            .collect();
        if !unknown.is_empty() {
            err(
                "invalid_request",
                format!("Unrecognized request arguments: {unknown:?}"),
            );
        }
        match v["custom_id"].as_str() {
            Some(c) if !seen.insert(c.to_string()) => err("duplicate_custom_id", "The custom_id for this request is a duplicate of another request. The custom_id parameter must be unique for each individual request in a batch.".into()),
            Some(_) => {}
            None => err("missing_required_parameter", "Missing required parameter: 'custom_id'.".into()),
        }
        if v["method"] != "POST" {
            err("invalid_method", "The method must be POST.".into());
        }
        if v["url"] != "/v1/chat/completions" {
            err(
                "invalid_url",
                "The URL provided for this request does not match the batch endpoint.".into(),
            );
        }
        let body = &v["body"];
        if let Some(b) = body.as_object() {
            if let Some(k) = b.keys().find(|k| !allowed.contains(k.as_str())) {
                err(
                    "invalid_request",
                    format!("Unrecognized request argument supplied: {k}"),
                );
            }
            match body["model"].as_str() {
                Some(m) => match &model {
                    Some(first) if first != m => err(
                        "mismatched_model",
                        "All requests in a batch must use the same model.".into(),
                    ),
                    None => model = Some(m.to_string()),
                    _ => {}
                },
                None => err(
                    "missing_required_parameter",
                    "Missing required parameter: 'body.model'.".into(),
                ),
            }
            if body["messages"].as_array().is_none_or(|m| m.is_empty()) {
                err(
                    "invalid_request",
                    "'messages' must be a non-empty array.".into(),
                );
            }
            if body["response_format"]["type"] == "json_schema"
                && body["response_format"]["json_schema"]["strict"] != true
            {
                err(
                    "invalid_request",
                    "json_schema must be strict for this test server".into(),
                );
            }
        } else {
            err(
                "missing_required_parameter",
                "Missing required parameter: 'body'.".into(),
            );
        }
        lines.push(v);
    }
    if lines.is_empty() && errors.is_empty() {
        errors.push(json!({"code": "empty_file", "message": "The batch input file is empty.", "param": null, "line": null}));
    }
    (lines, errors)
}

async fn oa_create(State(st): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = gate(&st, "POST", "/v1/batches", &headers) {
        return *r;
    }
    let bad = |m: &str| error(Kind::OpenAi, 400, "invalid_request_error", m);
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return bad("We could not parse the JSON body of your request.");
    };
    let Some(obj) = v.as_object() else {
        return bad("The body must be a JSON object.");
    };
    if let Some(k) = obj.keys().find(|k| {
        ![
            "input_file_id",
            "endpoint",
            "completion_window",
            "metadata",
            "output_expires_after",
        ]
        .contains(&k.as_str())
    }) {
        return bad(&format!("Unrecognized request argument supplied: {k}"));
    }
    let Some(file_id) = v["input_file_id"].as_str() else {
        return bad("Missing required parameter: 'input_file_id'.");
    };
    if v["endpoint"] != "/v1/chat/completions"
        && v["endpoint"] != "/v1/responses"
        && v["endpoint"] != "/v1/embeddings"
        && v["endpoint"] != "/v1/completions"
    {
        return bad("Invalid 'endpoint'.");
    }
    if v["completion_window"] != "24h" {
        return bad("Invalid value for 'completion_window': only '24h' is supported.");
    }
    match &v["metadata"] {
        Value::Null => {}
        Value::Object(m) => {
            if m.len() > 16
                || m.iter()
                    .any(|(k, val)| k.len() > 64 || val.as_str().is_none_or(|s| s.len() > 512))
            {
                return bad("Invalid 'metadata': at most 16 string pairs, keys ≤ 64 and values ≤ 512 characters.");
            }
        }
        _ => return bad("Invalid type for 'metadata': expected an object."),
    }
    let mut g = lock(&st);
    let Some(file) = g.files.get(file_id) else {
        return error(
            Kind::OpenAi,
            404,
            "invalid_request_error",
            &format!("No such File object: {file_id}"),
        );
    };
    if file.purpose != "batch" {
        return bad("The input file must have purpose 'batch'.");
    }
    let (lines, mut invalid) = validate_openai_lines(&file.bytes);
    if let Some((code, message)) = &g.reject {
        invalid.push(json!({"code": code, "message": message, "param": null, "line": null}));
    }
    let id = next_id(&mut g, "batch_");
    let end = g.end.clone();
    g.batches.push(Batch {
        kind: Kind::OpenAi,
        id,
        status: "validating".into(),
        input_file_id: Some(file_id.to_string()),
        lines,
        invalid,
        metadata: v["metadata"].clone(),
        created_at: chrono::Utc::now(),
        output_file_id: None,
        error_file_id: None,
        counts: (0, 0),
        cancel_initiated: false,
        results: None,
        end,
        a_counts: HashMap::new(),
    });
    let b = g.batches.last().expect("just pushed");
    axum::Json(batch_object(&g, b)).into_response()
}

async fn oa_retrieve(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = gate(&st, "GET", &format!("/v1/batches/{id}"), &headers) {
        return *r;
    }
    let mut g = lock(&st);
    let Some(i) = g
        .batches
        .iter()
        .position(|b| b.id == id && b.kind == Kind::OpenAi)
    else {
        return error(
            Kind::OpenAi,
            404,
            "invalid_request_error",
            &format!("No batch found with id '{id}'."),
        );
    };
    step(&mut g, i);
    axum::Json(batch_object(&g, &g.batches[i])).into_response()
}

async fn oa_list(
    State(st): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = gate(&st, "GET", "/v1/batches", &headers) {
        return *r;
    }
    let limit: usize = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 20,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        _ => {
            return error(
                Kind::OpenAi,
                400,
                "invalid_request_error",
                "Invalid 'limit': must be between 1 and 100.",
            )
        }
    };
    let g = lock(&st);
    let all: Vec<&Batch> = g
        .batches
        .iter()
        .rev()
        .filter(|b| b.kind == Kind::OpenAi)
        .collect();
    let start = match q.get("after") {
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
    axum::Json(json!({"object": "list", "data": page, "has_more": has_more,
        "first_id": page.first().map(|b| b["id"].clone()), "last_id": page.last().map(|b| b["id"].clone())})).into_response()
}

async fn oa_cancel(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = gate(&st, "POST", &format!("/v1/batches/{id}/cancel"), &headers) {
        return *r;
    }
    let mut g = lock(&st);
    let Some(i) = g
        .batches
        .iter()
        .position(|b| b.id == id && b.kind == Kind::OpenAi)
    else {
        return error(
            Kind::OpenAi,
            404,
            "invalid_request_error",
            &format!("No batch found with id '{id}'."),
        );
    };
    let status = g.batches[i].status.clone();
    if !matches!(status.as_str(), "validating" | "in_progress" | "finalizing") {
        return error(
            Kind::OpenAi,
            409,
            "invalid_request_error",
            &format!("Cannot cancel a batch with status '{status}'."),
        );
    }
    g.batches[i].status = "cancelling".into();
    g.batches[i].cancel_initiated = true;
    axum::Json(batch_object(&g, &g.batches[i])).into_response()
}

// ---- Anthropic -------------------------------------------------------------------------------

async fn an_create(State(st): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = gate(&st, "POST", "/v1/messages/batches", &headers) {
        return *r;
    }
    if body.len() > 256_000_000 {
        return error(
            Kind::Anthropic,
            413,
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
        );
    }
    let bad = |m: String| error(Kind::Anthropic, 400, "invalid_request_error", &m);
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return bad("The request body is not valid JSON.".into());
    };
    if let Some(k) = v
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "requests"))
    {
        return bad(format!("{k}: Extra inputs are not permitted"));
    }
    let Some(reqs) = v["requests"].as_array() else {
        return bad("requests: Field required".into());
    };
    if reqs.is_empty() || reqs.len() > 100_000 {
        return bad(format!(
            "requests: must have between 1 and 100000 items, got {}",
            reqs.len()
        ));
    }
    let re = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    let mut seen = HashSet::new();
    for (i, r) in reqs.iter().enumerate() {
        if let Some(k) = r
            .as_object()
            .and_then(|o| o.keys().find(|k| *k != "custom_id" && *k != "params"))
        {
            return bad(format!("requests.{i}.{k}: Extra inputs are not permitted"));
        }
        let Some(cid) = r["custom_id"].as_str().filter(|c| re(c)) else {
            return bad(format!(
                "requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
            ));
        };
        if !seen.insert(cid.to_string()) {
            return bad(format!("requests: custom_id '{cid}' is duplicated; custom_id must be unique within a batch"));
        }
        let p = &r["params"];
        if p["model"].as_str().is_none() {
            return bad(format!("requests.{i}.params.model: Field required"));
        }
        if p["max_tokens"].as_u64().is_none_or(|n| n < 1) {
            return bad(format!(
                "requests.{i}.params.max_tokens: must be at least 1"
            ));
        }
        if p["messages"].as_array().is_none_or(|m| m.is_empty()) {
            return bad(format!("requests.{i}.params.messages: Field required"));
        }
        if p["stream"] == true {
            return bad(format!(
                "requests.{i}.params.stream: streaming is not supported in batches"
            ));
        }
    }
    let mut g = lock(&st);
    let id = next_id(&mut g, "msgbatch_");
    let end = g.end.clone();
    g.batches.push(Batch {
        kind: Kind::Anthropic,
        id,
        status: "in_progress".into(),
        input_file_id: None,
        lines: reqs.clone(),
        invalid: Vec::new(),
        metadata: Value::Null,
        created_at: chrono::Utc::now(),
        output_file_id: None,
        error_file_id: None,
        counts: (0, 0),
        cancel_initiated: false,
        results: None,
        end,
        a_counts: HashMap::new(),
    });
    let b = g.batches.last().expect("just pushed");
    axum::Json(batch_object(&g, b)).into_response()
}

async fn an_retrieve(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = gate(&st, "GET", &format!("/v1/messages/batches/{id}"), &headers) {
        return *r;
    }
    let mut g = lock(&st);
    let Some(i) = g
        .batches
        .iter()
        .position(|b| b.id == id && b.kind == Kind::Anthropic)
    else {
        return error(
            Kind::Anthropic,
            404,
            "not_found_error",
            &format!("No message batch found with id {id}"),
        );
    };
    step(&mut g, i);
    axum::Json(batch_object(&g, &g.batches[i])).into_response()
}

async fn an_list(
    State(st): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = gate(&st, "GET", "/v1/messages/batches", &headers) {
        return *r;
    }
    let limit: usize = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 20,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        _ => {
            return error(
                Kind::Anthropic,
                400,
                "invalid_request_error",
                "limit: must be between 1 and 1000",
            )
        }
    };
    let g = lock(&st);
    let all: Vec<&Batch> = g
        .batches
        .iter()
        .rev()
        .filter(|b| b.kind == Kind::Anthropic)
        .collect();
    let start = match q.get("after_id") {
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
    axum::Json(json!({"data": page, "has_more": has_more,
        "first_id": page.first().map(|b| b["id"].clone()), "last_id": page.last().map(|b| b["id"].clone())})).into_response()
}

async fn an_cancel(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = gate(
        &st,
        "POST",
        &format!("/v1/messages/batches/{id}/cancel"),
        &headers,
    ) {
        return *r;
    }
    let mut g = lock(&st);
    let Some(i) = g
        .batches
        .iter()
        .position(|b| b.id == id && b.kind == Kind::Anthropic)
    else {
        return error(
            Kind::Anthropic,
            404,
            "not_found_error",
            &format!("No message batch found with id {id}"),
        );
    };
    if g.batches[i].status != "in_progress" {
        return error(
            Kind::Anthropic,
            400,
            "invalid_request_error",
            "Only a batch that is in progress can be canceled.",
        );
    }
    g.batches[i].status = "canceling".into();
    g.batches[i].cancel_initiated = true;
    axum::Json(batch_object(&g, &g.batches[i])).into_response()
}

async fn an_results(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = gate(
        &st,
        "GET",
        &format!("/v1/messages/batches/{id}/results"),
        &headers,
    ) {
        return *r;
    }
    let g = lock(&st);
    let Some(b) = g
        .batches
        .iter()
        .find(|b| b.id == id && b.kind == Kind::Anthropic)
    else {
        return error(
            Kind::Anthropic,
            404,
            "not_found_error",
            &format!("No message batch found with id {id}"),
        );
    };
    match &b.results {
        Some(bytes) => ([("content-type", "application/binary")], bytes.clone()).into_response(),
        None => error(
            Kind::Anthropic,
            400,
            "invalid_request_error",
            &format!("Message batch {id} has not ended; results are not available yet."),
        ),
    }
}
