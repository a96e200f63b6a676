//! A loopback fake of Anthropic's Messages API (axum on 127.0.0.1:0), as strict as the real
//! service where our client is concerned (spec/anthropic.md): `x-api-key` and
//! `anthropic-version` checks, the `{type:"error",error:{…},request_id}` envelope, request-field
//! checks ("Extra inputs are not permitted", max_tokens, temperature ≤ 1, tool names,
//! tool_choice, tool_use/tool_result pairing, cache_control, `temperature` or `top_p` on newer
//! models, extended thinking's budget and exclusions), 404 `not_found_error` for unknown
//! models, `request-id` and
//! `anthropic-ratelimit-*` headers (RFC 3339 resets), prompt caching of the tools + system
//! prefix from the model's minimum cacheable length on (4,096 tokens for Haiku 4.5), and scripted replies: tool answers, text instead of a tool call, max_tokens cut-offs,
//! 429 with retry-after, 500 `api_error`, 529 `overloaded_error`, hangs, spent credit (400
//! "credit balance is too low", 402 `billing_error`), from the start or after N requests.
//!
//! Depends on nothing else under tests/.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

pub(crate) mod checks;

use super::serve::lock;
use checks::validate;

pub const KEY: &str = "sk-ant-api03-fake-anthropic-key-abcdef";
pub const VERSION: &str = "2023-06-01";

#[derive(Debug, Clone)]
pub enum Reply {
    /// A `tool_use` block with this input.
    Tool(Value),
    /// Only a text block (the model did not call the tool).
    Text(String),
    /// `stop_reason: "max_tokens"` with a partial tool input.
    MaxTokens,
    /// 429 `rate_limit_error` with `retry-after` (whole seconds) and an exhausted
    /// requests window whose reset is `reset_ms` from now.
    RateLimited { reset_ms: u64 },
    /// 500 `api_error`.
    ApiError,
    /// 529 `overloaded_error`.
    Overloaded,
    /// Answers normally after this delay.
    Hang(Duration),
    /// 400 `invalid_request_error` "Your credit balance is too low…": what the real service
    /// answers once an account's prepaid credit is spent (every later request gets the same).
    CreditTooLow,
    /// 402 `billing_error`.
    Billing,
}

/// The real service's answer when the prepaid credit is spent (status 400, not 402).
pub const CREDIT_TOO_LOW: &str = "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.";

/// A script that answers the first `n` requests normally and every later one with `then`
/// (e.g. credit running out in the middle of a run).
pub fn after(n: usize, then: Reply) -> Script {
    let seen = std::sync::atomic::AtomicUsize::new(0);
    Arc::new(move |c: &Call| {
        if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < n {
            Reply::Tool(default_answer(c))
        } else {
            then.clone()
        }
    })
}

/// What a script sees of a request: the chat fake's (`repair`: the request carries a
/// `tool_result`).
pub use super::openai::Call;

pub type Script = Arc<dyn Fn(&Call) -> Reply + Send + Sync>;

#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Value,
    pub status: u16,
}

struct Inner {
    script: Script,
    log: Vec<Recorded>,
    attempts: HashMap<String, usize>,
    cached_prefixes: HashSet<String>,
    next_id: u64,
}

pub struct FakeAnthropic {
    /// Base URL without `/v1`, as `ANTHROPIC_BASE_URL` expects.
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    /// The running server; dropping it stops the server.
    _served: super::serve::Served,
}

impl FakeAnthropic {
    pub fn start() -> Self {
        Self::with_script(Arc::new(|c: &Call| Reply::Tool(default_answer(c))))
    }

    pub fn with_script(script: Script) -> Self {
        Self::build(script, None)
    }

    /// Messages and Message Batches on one base URL, as the real service serves them: the
    /// batch routes of [`super::batches`] over `batches`, this fake for everything else.
    pub fn with_batches(batches: super::batches::Shared) -> Self {
        Self::build(
            Arc::new(|c: &Call| Reply::Tool(default_answer(c))),
            Some(batches),
        )
    }

    fn build(script: Script, batches: Option<super::batches::Shared>) -> Self {
        let (listener, addr) = super::serve::bind();
        let inner = Arc::new(Mutex::new(Inner {
            script,
            log: Vec::new(),
            attempts: HashMap::new(),
            cached_prefixes: HashSet::new(),
            next_id: 1,
        }));
        let state = inner.clone();
        let served = super::batches::serve_chat(listener, 2, batches, move || {
            axum::Router::new().fallback(handle).with_state(state)
        });
        Self {
            url: format!("http://{addr}"),
            inner,
            _served: served,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.inner).log.clone()
    }

    pub fn requests_for(&self, issue: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| issue_of(&r.body).as_deref() == Some(issue))
            .collect()
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ANTHROPIC_BASE_URL", self.url.clone()),
            ("ANTHROPIC_API_KEY", KEY.to_string()),
        ]
    }
}

pub fn default_answer(c: &Call) -> Value {
    let text = c.user.to_lowercase();
    let recommended: Vec<Value> = c
        .labels
        .iter()
        .filter(|l| text.contains(&l.rsplit("::").next().unwrap_or(l).to_lowercase()))
        .map(|l| json!({"label": l, "confidence": 0.8, "reasoning": format!("mentions {l}")}))
        .collect();
    json!({
        "recommended_labels": recommended,
        "current_labels_assessment": [],
        "confidence": 0.75,
        "summary": "An issue.",
        "reasoning": "Matched product names."
    })
}

fn user_text(body: &Value) -> Option<String> {
    let first = body.get("messages")?.as_array()?.first()?;
    match &first["content"] {
        Value::String(s) => Some(s.clone()),
        Value::Array(blocks) => Some(
            blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        _ => None,
    }
}

pub fn issue_of(body: &Value) -> Option<String> {
    super::openai::issue_named(&user_text(body)?)
}

fn error(status: StatusCode, kind: &str, message: &str, request_id: &str) -> Response {
    (
        status,
        axum::Json(json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id})),
    )
        .into_response()
}

fn estimate_tokens(s: &str) -> u64 {
    (s.len() as u64).div_ceil(4)
}

async fn handle(
    State(st): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let request_id = {
        let mut g = lock(&st);
        g.next_id += 1;
        format!("req_011Fake{:08}", g.next_id)
    };
    // Logged on arrival (status 0 until answered): a request the client abandons still counts.
    let index = {
        let mut g = lock(&st);
        g.log.push(Recorded {
            path: uri.path().to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                .collect(),
            body: body.clone(),
            status: 0,
        });
        g.log.len() - 1
    };
    let mut resp = respond(&st, &method, &uri, &headers, &raw, &body, &request_id).await;
    resp.headers_mut()
        .insert("request-id", HeaderValue::from_str(&request_id).expect("h"));
    lock(&st).log[index].status = resp.status().as_u16();
    resp
}

async fn respond(
    st: &Arc<Mutex<Inner>>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    raw: &Bytes,
    body: &Value,
    rid: &str,
) -> Response {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    match h("x-api-key") {
        Some(k) if k == KEY => {}
        _ => {
            return error(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "invalid x-api-key",
                rid,
            )
        }
    }
    if h("anthropic-version").is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version: header is required",
            rid,
        );
    }
    if h("anthropic-version") != Some(VERSION) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version: invalid version",
            rid,
        );
    }
    if method != Method::POST || uri.path() != "/v1/messages" {
        return error(StatusCode::NOT_FOUND, "not_found_error", "Not found", rid);
    }
    if !h("content-type").is_some_and(|c| c.starts_with("application/json"))
        || serde_json::from_slice::<Value>(raw).is_err()
    {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "Request body must be valid JSON",
            rid,
        );
    }
    if let Err(msg) = validate(body) {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", &msg, rid);
    }
    let model = body["model"].as_str().unwrap_or("");
    if !checks::MODELS.contains(&model) {
        return error(
            StatusCode::NOT_FOUND,
            "not_found_error",
            &format!("model: {model}"),
            rid,
        );
    }
    let call = {
        let issue = issue_of(body);
        let mut g = lock(st);
        let n = g
            .attempts
            .entry(issue.clone().unwrap_or_default())
            .or_insert(0);
        *n += 1;
        let attempt = *n;
        let repair = body["messages"].as_array().is_some_and(|m| m.len() > 1);
        let labels = super::openai::label_enum(body.pointer("/tools/0/input_schema"));
        Call {
            issue,
            attempt,
            repair,
            user: user_text(body).unwrap_or_default(),
            labels,
        }
    };
    let script = lock(st).script.clone();
    match script(&call) {
        Reply::RateLimited { reset_ms } => {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit (https://docs.claude.com/en/api/rate-limits); see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later.", rid);
            let reset = chrono::Utc::now() + chrono::Duration::milliseconds(reset_ms as i64);
            r.headers_mut()
                .insert("retry-after", HeaderValue::from(reset_ms / 1000));
            let reset = reset.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            requests_window(&mut r, "50", "0", &reset);
            r
        }
        Reply::ApiError => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "Internal server error",
            rid,
        ),
        Reply::Overloaded => error(
            StatusCode::from_u16(529).expect("529"),
            "overloaded_error",
            "Overloaded",
            rid,
        ),
        Reply::CreditTooLow => error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            CREDIT_TOO_LOW,
            rid,
        ),
        Reply::Billing => error(
            StatusCode::PAYMENT_REQUIRED,
            "billing_error",
            "This organization has a billing problem. Please check Plans & Billing.",
            rid,
        ),
        Reply::Hang(d) => {
            tokio::time::sleep(d).await;
            message(
                st,
                body,
                vec![tool_block(body, default_answer(&call))],
                "tool_use",
            )
        }
        Reply::Tool(input) => message(st, body, vec![tool_block(body, input)], "tool_use"),
        Reply::Text(t) => message(
            st,
            body,
            vec![json!({"type": "text", "text": t, "citations": null})],
            "end_turn",
        ),
        Reply::MaxTokens => message(
            st,
            body,
            vec![tool_block(body, json!({"recommended_labels": []}))],
            "max_tokens",
        ),
    }
}

fn tool_block(body: &Value, input: Value) -> Value {
    // The forced tool, else (tool_choice auto) the first tool offered.
    let name = body
        .pointer("/tool_choice/name")
        .or_else(|| body.pointer("/tools/0/name"))
        .and_then(Value::as_str)
        .unwrap_or("tool");
    json!({"type": "tool_use", "id": format!("toolu_fake{}", estimate_tokens(&input.to_string())), "name": name, "input": input})
}

fn message(st: &Arc<Mutex<Inner>>, body: &Value, content: Vec<Value>, stop: &str) -> Response {
    // With extended thinking the answer starts with a signed thinking block.
    let mut content = content;
    if body.pointer("/thinking/type").and_then(Value::as_str) == Some("enabled") {
        content.insert(
            0,
            json!({"type": "thinking", "thinking": "The issue names a product.", "signature": "EqQBCgIYAhIMfake"}),
        );
    }
    // Cache prefix: tools + system, cached when the system block carries cache_control.
    let prefix = format!("{}{}", body["tools"], body["system"]);
    let prefix_tokens = estimate_tokens(&prefix);
    let min = checks::min_cache_tokens(body["model"].as_str().unwrap_or(""));
    let cacheable = body.pointer("/system/0/cache_control").is_some() && prefix_tokens >= min;
    let (created, read) = if cacheable {
        let mut g = lock(st);
        if g.cached_prefixes.insert(prefix) {
            (prefix_tokens, 0)
        } else {
            (0, prefix_tokens)
        }
    } else {
        (0, 0)
    };
    let total = estimate_tokens(&body["messages"].to_string()) + prefix_tokens;
    let input_tokens = total - created - read;
    let output_tokens = estimate_tokens(&Value::Array(content.clone()).to_string()) + 1;
    let id = lock(st).next_id;
    let mut r = (
        StatusCode::OK,
        axum::Json(json!({
            "id": format!("msg_01Fake{id}"),
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop,
            "stop_sequence": null,
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cache_creation_input_tokens": created,
                "cache_read_input_tokens": read,
                "cache_creation": {"ephemeral_5m_input_tokens": created, "ephemeral_1h_input_tokens": 0},
                "service_tier": "standard"
            }
        })),
    )
        .into_response();
    let reset = (chrono::Utc::now() + chrono::Duration::seconds(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    requests_window(&mut r, "4000", "3999", &reset);
    r
}

/// The `anthropic-ratelimit-requests-*` headers: the window's limit, what is left of it, and
/// when it resets (RFC 3339).
fn requests_window(r: &mut Response, limit: &'static str, remaining: &'static str, reset: &str) {
    let hs = r.headers_mut();
    hs.insert(
        "anthropic-ratelimit-requests-limit",
        HeaderValue::from_static(limit),
    );
    hs.insert(
        "anthropic-ratelimit-requests-remaining",
        HeaderValue::from_static(remaining),
    );
    hs.insert(
        "anthropic-ratelimit-requests-reset",
        HeaderValue::from_str(reset).expect("h"),
    );
}
