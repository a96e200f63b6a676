//! A loopback fake of OpenAI's Chat Completions API (axum on 127.0.0.1:0), as strict as the real
//! service where our client is concerned (spec/openai.md): bearer auth with OpenAI's 401 bodies,
//! request fields checked against OpenAI's own OpenAPI schema (unknown arguments rejected),
//! strict-mode `json_schema` rules, reasoning-model temperature rules, 404 `model_not_found`
//! for models outside OpenAI's published list, the error envelope,
//! `x-request-id` and `x-ratelimit-*` headers, prompt caching in 128-token steps, and scripted
//! replies: answers, invalid content, refusals, cut-offs, 429 with retry-after(-ms), 500,
//! 503, insufficient quota, hangs, and optional requests-per-minute and tokens-per-minute
//! buckets with latency.
//!
//! Shared by the integration tests and `examples/process_bench.rs` (included there with
//! `#[path]`), so it depends on nothing else under tests/.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

mod checks;
mod completion;
mod limits;
mod scripts;

use super::serve::lock;
use checks::{allowed_request_fields, check_model, known_models, validate};
use completion::{completion, prompt_tokens};
use limits::{draw_request, draw_tokens};
// (Not every includer of this fake uses every script.)
#[allow(unused_imports)]
pub use scripts::{after, fault_of, faults, FAULTS};

pub const KEY: &str = "sk-test-fake-openai-key-0123456789";

/// What the fake answers to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A valid structured answer: this JSON becomes `message.content` (as a string).
    Answer(Value),
    /// `message.content` exactly as given (e.g. invalid JSON).
    Content(String),
    /// `content: null` and this `refusal`.
    Refusal(String),
    /// `finish_reason: "length"` with this truncated content.
    Length(String),
    /// 429 `rate_limit_exceeded` with `retry-after-ms` (and `retry-after` in whole seconds).
    RateLimited { retry_after_ms: u64 },
    /// 429 `insufficient_quota` (must not be retried).
    QuotaExceeded,
    /// 500 `server_error`.
    ServerError,
    /// 503 overloaded, with `retry-after-ms` if given.
    Overloaded { retry_after_ms: Option<u64> },
    /// Answers normally after this delay (to trip a client timeout).
    Hang(Duration),
    /// Waits until [`FakeOpenAi::release`] is called, then answers normally.
    Hold,
    /// 402 Payment Required, as OpenAI-compatible servers (proxies, resellers) answer when the
    /// account's credit is spent.
    PaymentRequired,
}

#[derive(Debug, Clone)]
pub struct Call {
    /// `org/repo#n` read from the user message.
    pub issue: Option<String>,
    /// 1 for the first request about this issue, 2 for the next…
    pub attempt: usize,
    /// The request replays a rejected answer (a repair request).
    pub repair: bool,
    /// The user message (the issue text).
    pub user: String,
    /// The label enum of the schema.
    pub labels: Vec<String>,
}

impl Call {
    /// The issue number (what follows `#` in [`Call::issue`]); `""` when the prompt names none.
    pub fn number(&self) -> &str {
        self.issue
            .as_deref()
            .and_then(|i| i.rsplit('#').next())
            .unwrap_or("")
    }
}

pub type Script = Arc<dyn Fn(&Call) -> Reply + Send + Sync>;

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Lower-case header names.
    pub headers: HashMap<String, String>,
    pub body: Value,
    /// The body exactly as received.
    pub raw: Vec<u8>,
    pub status: u16,
    /// Tokens drawn from the tokens-per-minute window (0 when refused or without a TPM limit).
    pub tokens: u64,
    /// When the request arrived.
    pub at: Instant,
}

struct Bucket {
    capacity: f64,
    tokens: f64,
    per_sec: f64,
    last: Instant,
    limit_rpm: u64,
}

struct Inner {
    script: Script,
    log: Vec<Recorded>,
    attempts: HashMap<String, usize>,
    seen_prefixes: HashSet<String>,
    bucket: Option<Bucket>,
    latency: Duration,
    next_id: u64,
    /// Parameters refused as unsupported, like a compatible server (or a model) without them.
    rejected: Vec<String>,
    /// Tokens-per-minute limit: a bucket of tokens (`limit_rpm` holds the TPM limit).
    tpm: Option<Bucket>,
}

pub struct FakeOpenAi {
    /// Base URL including `/v1`, as `OPENAI_BASE_URL` expects.
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    release: Arc<tokio::sync::Semaphore>,
    /// The running server; dropping it stops the server.
    _served: super::serve::Served,
}

#[derive(Clone)]
struct AppState {
    inner: Arc<Mutex<Inner>>,
    release: Arc<tokio::sync::Semaphore>,
    allowed: Arc<HashSet<String>>,
    /// Model ids the fake serves; others get 404 `model_not_found`.
    models: Arc<HashSet<String>>,
}

impl FakeOpenAi {
    /// Starts a fake that answers every issue with [`default_answer`].
    pub fn start() -> Self {
        Self::with_script(Arc::new(|c: &Call| Reply::Answer(default_answer(c))))
    }

    pub fn with_script(script: Script) -> Self {
        Self::build(script, None, Duration::ZERO, 2, None)
    }

    /// Chat Completions, Files and Batches on one base URL, as the real service serves them:
    /// the routes of [`super::batches`] over `batches`, this fake for everything else.
    pub fn with_batches(batches: super::batches::Shared) -> Self {
        Self::build(
            Arc::new(|c: &Call| Reply::Answer(default_answer(c))),
            None,
            Duration::ZERO,
            2,
            Some(batches),
        )
    }

    /// A fake with `latency` per request and a requests-per-minute limit enforced by a token
    /// bucket holding one second of requests (like OpenAI's per-second smoothing of RPM limits).
    pub fn with_rate_limit(rpm: u64, latency: Duration, worker_threads: usize) -> Self {
        let per_sec = rpm as f64 / 60.0;
        let bucket = Bucket {
            capacity: per_sec.max(1.0),
            tokens: per_sec.max(1.0),
            per_sec,
            last: Instant::now(),
            limit_rpm: rpm,
        };
        Self::build(
            Arc::new(|c: &Call| Reply::Answer(default_answer(c))),
            Some(bucket),
            latency,
            worker_threads,
            None,
        )
    }

    fn build(
        script: Script,
        bucket: Option<Bucket>,
        latency: Duration,
        worker_threads: usize,
        batches: Option<super::batches::Shared>,
    ) -> Self {
        let (listener, addr) = super::serve::bind();
        let inner = Arc::new(Mutex::new(Inner {
            script,
            log: Vec::new(),
            attempts: HashMap::new(),
            seen_prefixes: HashSet::new(),
            bucket,
            latency,
            next_id: 1,
            rejected: Vec::new(),
            tpm: None,
        }));
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let state = AppState {
            inner: inner.clone(),
            release: release.clone(),
            allowed: Arc::new(allowed_request_fields()),
            models: Arc::new(known_models()),
        };
        let served = super::batches::serve_chat(listener, worker_threads, batches, move || {
            axum::Router::new().fallback(handle).with_state(state)
        });
        Self {
            url: format!("http://{addr}/v1"),
            inner,
            release,
            _served: served,
        }
    }

    /// Refuses these request parameters with OpenAI's 400 `unsupported_parameter`, as a
    /// compatible server (or a model) without them does.
    pub fn reject_params(&self, params: &[&str]) {
        lock(&self.inner).rejected = params.iter().map(|p| p.to_string()).collect();
    }

    /// Adds a tokens-per-minute limit: a bucket refilled at `tpm / 60` tokens a second holding
    /// `burst` seconds of them. A request draws its prompt tokens plus its completion budget
    /// (`max_completion_tokens`), as OpenAI counts them; one the bucket cannot cover gets a 429
    /// `rate_limit_exceeded` on tokens. Every answer carries `x-ratelimit-*-tokens` headers.
    pub fn set_token_limit(&self, tpm: u64, burst: Duration) {
        let per_sec = tpm as f64 / 60.0;
        let capacity = per_sec * burst.as_secs_f64();
        lock(&self.inner).tpm = Some(Bucket {
            capacity,
            tokens: capacity,
            per_sec,
            last: Instant::now(),
            limit_rpm: tpm,
        });
    }

    pub fn set_script(&self, script: Script) {
        lock(&self.inner).script = script;
    }

    /// Every request received, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.inner).log.clone()
    }

    /// Requests about one issue (`org/repo#n`).
    pub fn requests_for(&self, issue: &str) -> Vec<Recorded> {
        // Only the matches are cloned: a fault suite asks this of a log of a thousand requests.
        lock(&self.inner)
            .log
            .iter()
            .filter(|r| issue_of(&r.body).as_deref() == Some(issue))
            .cloned()
            .collect()
    }

    /// Lets `n` held requests ([`Reply::Hold`]) answer.
    pub fn release(&self, n: usize) {
        self.release.add_permits(n);
    }

    /// Environment for the binary under test.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("OPENAI_BASE_URL", self.url.clone()),
            ("OPENAI_API_KEY", KEY.to_string()),
        ]
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        // Held requests must not keep the server from shutting down.
        self.release.add_permits(1_000_000);
        // (`_served` is dropped next, which stops and joins the server.)
    }
}

/// A valid answer: every taxonomy label whose short name (after `::`) appears in the issue.
pub fn default_answer(c: &Call) -> Value {
    answer_naming(&c.user, &c.labels)
}

/// A valid answer to an issue whose text is `user`: every one of `labels` whose short name
/// (after `::`) appears in it.
pub fn answer_naming(user: &str, labels: &[String]) -> Value {
    let text = user.to_lowercase();
    let recommended: Vec<Value> = labels
        .iter()
        .filter(|l| {
            let short = l.rsplit("::").next().unwrap_or(l).to_lowercase();
            text.contains(&short)
        })
        .map(|l| json!({"label": l, "confidence": 0.9, "reasoning": format!("the issue mentions {l}")}))
        .collect();
    json!({
        "recommended_labels": recommended,
        "current_labels_assessment": [],
        "confidence": 0.85,
        "summary": "An issue.",
        "reasoning": "Matched product names in the text."
    })
}

/// The strings in a JSON array (none when `v` is not one).
pub fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The label enum of a labeling schema (`recommended_labels[].label`).
pub fn label_enum(schema: Option<&Value>) -> Vec<String> {
    strings(
        schema
            .and_then(|s| s.pointer("/properties/recommended_labels/items/properties/label/enum")),
    )
}

/// A valid answer recommending exactly these labels.
pub fn answer_with(labels: &[&str], confidence: f64) -> Value {
    json!({
        "recommended_labels": labels.iter().map(|l| json!({"label": l, "confidence": confidence, "reasoning": "r"})).collect::<Vec<_>>(),
        "current_labels_assessment": [],
        "confidence": confidence,
        "summary": "s",
        "reasoning": "r"
    })
}

pub fn issue_of(body: &Value) -> Option<String> {
    let msgs = body.get("messages")?.as_array()?;
    let user = msgs.iter().find(|m| m["role"] == "user")?["content"].as_str()?;
    issue_named(user)
}

/// The issue (`org/repo#n`) a prompt is about: its `Repository:` and `Issue #n:` lines.
pub fn issue_named(user: &str) -> Option<String> {
    let repo = user.lines().find_map(|l| l.strip_prefix("Repository: "))?;
    let num = user
        .lines()
        .find_map(|l| l.strip_prefix("Issue #"))?
        .split(':')
        .next()?;
    Some(format!("{repo}#{num}"))
}

fn error(
    status: StatusCode,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Response {
    (
        status,
        axum::Json(
            json!({"error": {"message": message, "type": kind, "param": param, "code": code}}),
        ),
    )
        .into_response()
}

fn estimate_tokens(s: &str) -> u64 {
    (s.len() as u64).div_ceil(4)
}

async fn handle(
    State(st): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    // Logged on arrival (status 0 until answered): a request the client abandons still counts.
    let index = {
        let mut g = lock(&st.inner);
        g.log.push(Recorded {
            method: method.to_string(),
            path: uri.path().to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                .collect(),
            body: parsed.clone(),
            raw: body.to_vec(),
            status: 0,
            tokens: 0,
            at: Instant::now(),
        });
        g.log.len() - 1
    };
    let (mut response, request_id) =
        respond(&st, &method, &uri, &headers, &body, &parsed, index).await;
    lock(&st.inner).log[index].status = response.status().as_u16();
    response.headers_mut().insert(
        "x-request-id",
        HeaderValue::from_str(&request_id).expect("header"),
    );
    response
}

async fn respond(
    st: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    raw: &Bytes,
    body: &Value,
    index: usize,
) -> (Response, String) {
    let request_id = {
        let mut g = lock(&st.inner);
        g.next_id += 1;
        format!("req_{:08x}", g.next_id)
    };
    // Auth comes first, as on the real service.
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    match auth {
        None => {
            return (error(StatusCode::UNAUTHORIZED, "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.", "invalid_request_error", None, None), request_id)
        }
        Some(a) if a != format!("Bearer {KEY}") => {
            let given = a.strip_prefix("Bearer ").unwrap_or(a);
            let tail: String = given.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
            let head: String = given.chars().take(8).collect();
            let msg = format!("Incorrect API key provided: {head}****{tail}. You can find your API key at https://platform.openai.com/account/api-keys.");
            return (error(StatusCode::UNAUTHORIZED, &msg, "invalid_request_error", None, Some("invalid_api_key")), request_id);
        }
        _ => {}
    }
    if method != Method::POST || uri.path() != "/v1/chat/completions" {
        let msg = format!("Invalid URL ({} {})", method, uri.path());
        return (
            error(
                StatusCode::NOT_FOUND,
                &msg,
                "invalid_request_error",
                None,
                None,
            ),
            request_id,
        );
    }
    if !headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"))
    {
        return (
            error(
                StatusCode::BAD_REQUEST,
                "Invalid Content-Type header, expected application/json.",
                "invalid_request_error",
                None,
                None,
            ),
            request_id,
        );
    }
    if serde_json::from_slice::<Value>(raw).is_err() {
        return (error(StatusCode::BAD_REQUEST, "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.", "invalid_request_error", None, None), request_id);
    }
    if let Err(resp) = validate(st, body) {
        return (*resp, request_id);
    }
    if let Err(resp) = check_model(st, body) {
        return (*resp, request_id);
    }
    // Rate limit, then latency, then the scripted reply.
    let latency = lock(&st.inner).latency;
    let limit_headers = match draw_request(st, body) {
        Ok(h) => h,
        Err(r) => return (*r, request_id),
    };
    let token_headers = match draw_tokens(st, body, index) {
        Ok(h) => h,
        Err(r) => return (*r, request_id),
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let call = call_of(st, body);
    let script = lock(&st.inner).script.clone();
    let reply = script(&call);
    let mut resp = match reply {
        Reply::RateLimited { retry_after_ms } => {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "Rate limit reached for requests. Please try again shortly.", "requests", Some("requests"), Some("rate_limit_exceeded"));
            r.headers_mut().insert("retry-after-ms", HeaderValue::from(retry_after_ms));
            r.headers_mut().insert("retry-after", HeaderValue::from(retry_after_ms.div_ceil(1000)));
            r
        }
        Reply::QuotaExceeded => error(StatusCode::TOO_MANY_REQUESTS, "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.", "insufficient_quota", None, Some("insufficient_quota")),
        Reply::PaymentRequired => error(StatusCode::PAYMENT_REQUIRED, "Insufficient credits. Add more credits to your account to continue.", "insufficient_credits", None, Some("payment_required")),
        Reply::ServerError => error(StatusCode::INTERNAL_SERVER_ERROR, "The server had an error while processing your request. Sorry about that!", "server_error", None, None),
        Reply::Overloaded { retry_after_ms } => {
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "The engine is currently overloaded, please try again later", "service_unavailable_error", None, Some("server_is_overloaded"));
            if let Some(ms) = retry_after_ms {
                r.headers_mut().insert("retry-after-ms", HeaderValue::from(ms));
            }
            r
        }
        Reply::Hang(d) => {
            tokio::time::sleep(d).await;
            completion(st, body, Some(default_answer(&call).to_string()), None, "stop")
        }
        Reply::Hold => {
            if let Ok(p) = st.release.acquire().await {
                p.forget();
            }
            completion(st, body, Some(default_answer(&call).to_string()), None, "stop")
        }
        Reply::Answer(v) => completion(st, body, Some(v.to_string()), None, "stop"),
        Reply::Content(s) => completion(st, body, Some(s), None, "stop"),
        Reply::Refusal(s) => completion(st, body, None, Some(s), "stop"),
        Reply::Length(s) => completion(st, body, Some(s), None, "length"),
    };
    if let Some((limit, remaining, reset_ms)) = token_headers {
        let h = resp.headers_mut();
        h.insert("x-ratelimit-limit-tokens", HeaderValue::from(limit));
        h.insert("x-ratelimit-remaining-tokens", HeaderValue::from(remaining));
        h.insert(
            "x-ratelimit-reset-tokens",
            HeaderValue::from_str(&format!("{reset_ms}ms")).expect("h"),
        );
    }
    if let Some((limit, remaining, reset_ms)) = limit_headers {
        let h = resp.headers_mut();
        h.insert("x-ratelimit-limit-requests", HeaderValue::from(limit));
        h.insert(
            "x-ratelimit-remaining-requests",
            HeaderValue::from(remaining),
        );
        h.insert(
            "x-ratelimit-reset-requests",
            HeaderValue::from_str(&format!("{reset_ms}ms")).expect("h"),
        );
    }
    (resp, request_id)
}

fn call_of(st: &AppState, body: &Value) -> Call {
    let issue = issue_of(body);
    let msgs = body["messages"].as_array().cloned().unwrap_or_default();
    let user = msgs
        .iter()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string();
    let labels = label_enum(body.pointer("/response_format/json_schema/schema"));
    let attempt = {
        let mut g = lock(&st.inner);
        let n = g
            .attempts
            .entry(issue.clone().unwrap_or_default())
            .or_insert(0);
        *n += 1;
        *n
    };
    Call {
        issue,
        attempt,
        repair: msgs.iter().any(|m| m["role"] == "assistant"),
        user,
        labels,
    }
}
