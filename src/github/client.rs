//! HTTP transport to GitHub's REST and GraphQL APIs: headers, rate limits, retries, conditional
//! requests and Link pagination. Endpoint knowledge lives in `rest.rs` and `graphql.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, ETAG, IF_NONE_MATCH};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use url::Url;

use crate::env::GITHUB_MAX_WAIT as ENV_GITHUB_MAX_WAIT;
pub use crate::github::config::{ClientConfig, DEFAULT_API_URL};
pub use crate::github::limits::next_link;
use crate::github::limits::{
    classify_limit, error_message, error_messages, header_str, header_u64, human, retry_after,
    server_date, until, Limit, SECONDARY_MIN_WAIT,
};
use crate::github::pacing::Pacer;
use crate::http::{error_chain, Backoff, Verdict};
use crate::report::Reporter;

/// The REST API version we were written against (GitHub's `X-GitHub-Api-Version`).
pub const API_VERSION: &str = "2022-11-28";

/// Attempts per request for faults worth retrying (5xx, network errors, rate limits).
const MAX_ATTEMPTS: u32 = 6;

/// Failures the caller turns into messages; everything retryable was retried already.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    #[error("token rejected by GitHub (401 {0}); check --token or GITHUB_TOKEN")]
    Unauthorized(String),
    #[error("not found (404): {url}")]
    NotFound { url: String },
    #[error("gone (410): {url}")]
    Gone { url: String },
    #[error("forbidden (403): {message}")]
    Forbidden { message: String },
    #[error("GitHub answered {status} for {url}: {message}")]
    Status {
        status: u16,
        url: String,
        message: String,
    },
    #[error("GitHub kept failing for {url} after {attempts} attempts: {last}")]
    GaveUp {
        url: String,
        attempts: u32,
        last: String,
    },
    #[error("GitHub timed out answering {url}")]
    Timeout { url: String },
    /// A write that is not safe to repeat was sent and its outcome is unknown (the caller looks
    /// on GitHub before sending it again).
    #[error("the outcome of {url} is unknown: {why}")]
    OutcomeUnknown { url: String, why: String },
    #[error("GraphQL error: {0}")]
    GraphQl(String),
    #[error("GraphQL: {message}")]
    GraphQlNotFound { message: String },
    #[error("refusing to follow a pagination link to another host: {0}")]
    ForeignLink(String),
    #[error("unexpected answer from {url}: {why}")]
    BadBody { url: String, why: String },
}

/// What one successful request returned.
#[derive(Debug, Clone)]
pub struct Page {
    pub status: StatusCode,
    pub body: Vec<u8>,
    pub etag: Option<String>,
    /// The `rel="next"` link, checked to point at the same host as the API.
    pub next: Option<Url>,
    /// GitHub's clock (`Date` header), used as the incremental cursor.
    pub date: Option<DateTime<Utc>>,
}

impl Page {
    pub fn not_modified(&self) -> bool {
        self.status == StatusCode::NOT_MODIFIED
    }
}

/// The last rate-limit headers seen for one bucket (`core`, `graphql`, `search`…).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateState {
    pub limit: Option<u64>,
    pub remaining: u64,
    pub reset: Option<DateTime<Utc>>,
}

pub struct Client {
    http: reqwest::Client,
    /// Added per request (not as a default header) so downloads from other hosts never carry it.
    auth: HeaderValue,
    cfg: ClientConfig,
    reporter: std::sync::Arc<dyn Reporter>,
    requests: AtomicU64,
    rates: Mutex<HashMap<String, RateState>>,
    /// GitHub's clock minus ours (milliseconds, from the last `Date`): resets are on its clock.
    skew_ms: AtomicI64,
}

impl Client {
    pub fn new(cfg: ClientConfig, reporter: std::sync::Arc<dyn Reporter>) -> anyhow::Result<Self> {
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        );
        headers.insert(
            "x-github-api-version",
            HeaderValue::from_static(API_VERSION),
        );
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", cfg.token.trim())).map_err(|_| {
                crate::error::user(
                    "the GitHub token contains characters that cannot go in a header",
                )
            })?;
        auth.set_sensitive(true);
        let http = reqwest::Client::builder()
            .user_agent(concat!("github-analysis/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(15))
            // GitHub itself gives up on a query after 10 s; a minute covers slow networks.
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            http,
            auth,
            cfg,
            reporter,
            requests: AtomicU64::new(0),
            rates: Mutex::new(HashMap::new()),
            skew_ms: AtomicI64::new(0),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// Requests sent so far (every attempt counts, 304s included).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The last rate-limit state of each bucket seen.
    pub fn rate_limits(&self) -> HashMap<String, RateState> {
        self.rates.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// `{api_url}/{path}` (path without a leading slash).
    pub fn api(&self, path: &str) -> anyhow::Result<Url> {
        Ok(self.cfg.api_url.join(path.trim_start_matches('/'))?)
    }

    /// GET a REST URL, with `If-None-Match` when an ETag is known (a 304 comes back as a page
    /// whose `not_modified()` is true and whose body is empty).
    pub async fn get(&self, url: &Url, etag: Option<&str>) -> Result<Page, GitHubError> {
        let etag = etag.and_then(|e| HeaderValue::from_str(e).ok());
        self.execute("core", url, MAX_ATTEMPTS, None, false, || {
            let mut req = self.http.get(url.clone());
            if let Some(e) = &etag {
                req = req.header(IF_NONE_MATCH, e.clone());
            }
            req
        })
        .await
    }

    /// GET anything (attachments): no rate-limit bookkeeping, the token only for the API's host.
    pub async fn get_raw(&self, url: &Url) -> Result<reqwest::Response, reqwest::Error> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut req = self.http.request(Method::GET, url.clone());
        // Never hand the token to a third-party host (e.g. a CDN): only the API's own host and
        // github.com (private-repo attachments need it there).
        if self.same_origin(url) || url.host_str() == Some("github.com") {
            req = req.header(AUTHORIZATION, self.auth.clone());
        }
        req.send().await
    }

    /// POST a GraphQL query and return its `data`. HTTP-level faults are retried in `execute`;
    /// GraphQL rate-limit errors (which arrive with HTTP 200) are retried here.
    pub async fn graphql(
        &self,
        query: &str,
        variables: Value,
    ) -> Result<(Value, Page), GitHubError> {
        self.graphql_with(query, variables, MAX_ATTEMPTS).await
    }

    /// Like [`Client::graphql`], but after `timeout_attempts` answers of 502/504 (GitHub's
    /// "couldn't respond in time") returns [`GitHubError::Timeout`], so the caller can ask for
    /// a smaller page instead of repeating a query that is too heavy.
    pub async fn graphql_with(
        &self,
        query: &str,
        variables: Value,
        timeout_attempts: u32,
    ) -> Result<(Value, Page), GitHubError> {
        let body = serde_json::json!({ "query": query, "variables": variables });
        let url = self.cfg.graphql_url.clone();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let page = self
                .execute("graphql", &url, timeout_attempts, None, false, || {
                    self.http.post(url.clone()).json(&body)
                })
                .await?;
            let v: Value =
                serde_json::from_slice(&page.body).map_err(|e| GitHubError::BadBody {
                    url: url.to_string(),
                    why: format!("not JSON: {e}"),
                })?;
            let errors = v
                .get("errors")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if errors.is_empty() {
                let data = v.get("data").cloned().unwrap_or(Value::Null);
                if data.is_null() {
                    return Err(GitHubError::BadBody {
                        url: url.to_string(),
                        why: "neither data nor errors".into(),
                    });
                }
                return Ok((data, page));
            }
            if let Some(wait) = self.graphql_limit(&errors) {
                if attempt >= MAX_ATTEMPTS {
                    return Err(GitHubError::GaveUp {
                        url: url.to_string(),
                        attempts: attempt,
                        last: error_messages(&errors),
                    });
                }
                self.sleep(wait, "GraphQL rate limit reached (graphql)")
                    .await;
                self.assume_reset("graphql");
                continue;
            }
            if let Some(nf) = errors
                .iter()
                .find(|e| e.get("type").and_then(Value::as_str) == Some("NOT_FOUND"))
            {
                return Err(GitHubError::GraphQlNotFound {
                    message: nf
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("not found")
                        .to_string(),
                });
            }
            // Partial data with errors would silently lose issues: treat it as a failure.
            return Err(GitHubError::GraphQl(error_messages(&errors)));
        }
    }

    /// How long to wait for a GraphQL-level rate limit, if the errors are one.
    fn graphql_limit(&self, errors: &[Value]) -> Option<Duration> {
        let limited = errors.iter().any(|e| {
            let ty = e.get("type").and_then(Value::as_str).unwrap_or("");
            let code = e.get("code").and_then(Value::as_str).unwrap_or("");
            ty == "RATE_LIMITED" || ty == "RATE_LIMIT" || code == "graphql_rate_limit"
        });
        let secondary = errors.iter().any(|e| {
            e.get("message")
                .and_then(Value::as_str)
                .is_some_and(|m| m.to_ascii_lowercase().contains("secondary rate limit"))
        });
        if secondary {
            return Some(SECONDARY_MIN_WAIT);
        }
        if !limited {
            return None;
        }
        let reset = self
            .rates
            .lock()
            .ok()
            .and_then(|m| m.get("graphql").and_then(|r| r.reset));
        Some(until(reset, self.github_now()).unwrap_or(SECONDARY_MIN_WAIT))
    }

    /// Sends with retries: 5xx and network errors back off exponentially with jitter; rate
    /// limits wait as GitHub says (`retry-after`, else `x-ratelimit-reset`, else ≥ 60 s).
    async fn execute(
        &self,
        bucket: &str,
        url: &Url,
        timeout_attempts: u32,
        pacer: Option<&Pacer>,
        once: bool,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Page, GitHubError> {
        let unknown = |why: String| {
            Verdict::Fail(GitHubError::OutcomeUnknown {
                url: url.to_string(),
                why,
            })
        };
        let secondary_hits = AtomicU32::new(0);
        let timeouts = AtomicU32::new(0);
        let (secondary_hits, timeouts) = (&secondary_hits, &timeouts);
        let give_up = |attempts: u32, last: String| GitHubError::GaveUp {
            url: url.to_string(),
            attempts,
            last,
        };
        crate::http::send(
            backoff(self.cfg.retry_delay),
            |_| {
                let builder = build().header(AUTHORIZATION, self.auth.clone());
                async move {
                    self.wait_if_exhausted(bucket).await;
                    if let Some(p) = pacer {
                        p.space().await;
                    }
                    self.requests.fetch_add(1, Ordering::Relaxed);
                    Ok(builder)
                }
            },
            |attempt, sent| async move {
                // A retry's reason: what the note says, and whether it waits out a rate limit.
                let retry = |why: String, after: Option<Duration>, limit: bool| {
                    if attempt >= MAX_ATTEMPTS {
                        Verdict::Fail(give_up(attempt, why))
                    } else {
                        Verdict::Retry {
                            error: give_up(attempt, why.clone()),
                            after,
                            reason: (why, limit),
                        }
                    }
                };
                let resp = match sent {
                    Ok(r) => r,
                    Err(e) => {
                        let why = format!("network error: {}", error_chain(&e));
                        if once && !e.is_connect() {
                            return unknown(why);
                        }
                        return retry(format!("{why}; retrying"), None, false);
                    }
                };
                let status = resp.status();
                let headers = resp.headers().clone();
                self.record_rate(bucket, &headers);
                let final_url = resp.url().clone();
                let body = match resp.bytes().await {
                    Ok(b) => b.to_vec(),
                    Err(e) => {
                        let why = format!(
                            "connection lost while reading the answer: {}",
                            error_chain(&e)
                        );
                        if once {
                            return unknown(why);
                        }
                        return retry(format!("{why}; retrying"), None, false);
                    }
                };
                if status.is_success() || status == StatusCode::NOT_MODIFIED {
                    let next = match next_link(&headers) {
                        Some(n) => match self.checked_link(&n) {
                            Ok(u) => Some(u),
                            Err(e) => return Verdict::Fail(e),
                        },
                        None => None,
                    };
                    return Verdict::Done(Page {
                        status,
                        etag: header_str(&headers, ETAG.as_str()).map(str::to_string),
                        next,
                        date: server_date(&headers),
                        body,
                    });
                }
                let message = error_message(&body);
                match status.as_u16() {
                    401 => Verdict::Fail(GitHubError::Unauthorized(message)),
                    403 | 429 => match classify_limit(status, &headers, &body) {
                        Some(limit) => {
                            if attempt >= MAX_ATTEMPTS {
                                return Verdict::Fail(give_up(
                                    attempt,
                                    format!("{status}: {message}"),
                                ));
                            }
                            let (wait, what) = match limit {
                                Limit::Primary(w) => (w, "primary rate limit reached"),
                                Limit::Secondary { wait, from_header } => {
                                    let hits = secondary_hits.fetch_add(1, Ordering::SeqCst) + 1;
                                    // Without retry-after, repeated hits back off exponentially
                                    // (GitHub's advice); a retry-after is obeyed as given.
                                    let factor = if from_header {
                                        1
                                    } else {
                                        1u32 << (hits - 1).min(4)
                                    };
                                    (wait * factor, "secondary rate limit hit")
                                }
                            };
                            let resource =
                                header_str(&headers, "x-ratelimit-resource").unwrap_or(bucket);
                            retry(format!("GitHub {what} ({resource})"), Some(wait), true)
                        }
                        None => Verdict::Fail(GitHubError::Forbidden { message }),
                    },
                    404 => Verdict::Fail(GitHubError::NotFound {
                        url: final_url.to_string(),
                    }),
                    410 => Verdict::Fail(GitHubError::Gone {
                        url: final_url.to_string(),
                    }),
                    500 | 502 | 503 | 504 => {
                        if once {
                            return unknown(format!("GitHub answered {status}: {message}"));
                        }
                        if attempt >= MAX_ATTEMPTS {
                            return Verdict::Fail(give_up(attempt, format!("{status}: {message}")));
                        }
                        if matches!(status.as_u16(), 502 | 504)
                            && timeouts.fetch_add(1, Ordering::SeqCst) + 1 >= timeout_attempts
                        {
                            return Verdict::Fail(GitHubError::Timeout {
                                url: url.to_string(),
                            });
                        }
                        // A 503 may say when to come back; otherwise back off.
                        retry(
                            format!("GitHub answered {status}; retrying"),
                            retry_after(&headers),
                            false,
                        )
                    }
                    _ => Verdict::Fail(GitHubError::Status {
                        status: status.as_u16(),
                        url: url.to_string(),
                        message,
                    }),
                }
            },
            |(why, limit): (String, bool), wait| async move {
                self.sleep(wait, &why).await;
                if limit {
                    self.assume_reset(bucket);
                }
            },
        )
        .await
    }

    /// A request that changes something (POST / PATCH / DELETE, JSON body if any), through the
    /// same retry loop as reads; one write at a time, every attempt in its slot of `pacer`
    /// (GitHub's secondary limits for content-creating requests, `pacing.rs`).
    pub async fn write(
        &self,
        method: Method,
        url: &Url,
        body: Option<&Value>,
        pacer: &Pacer,
    ) -> Result<Page, GitHubError> {
        let _turn = pacer.turn().await;
        self.execute("core", url, MAX_ATTEMPTS, Some(pacer), false, || {
            let req = self.http.request(method.clone(), url.clone());
            match body {
                Some(b) => req.json(b),
                None => req,
            }
        })
        .await
    }

    /// A `POST` that must not happen twice (a comment): like [`Client::write`], but once the
    /// request may have reached GitHub (a 5xx, a reset after sending, a lost answer) it is not
    /// repeated; the error is [`GitHubError::OutcomeUnknown`]. Refusals (rate limits, a refused
    /// connection) are still retried: nothing was created.
    pub async fn write_once(
        &self,
        url: &Url,
        body: &Value,
        pacer: &Pacer,
    ) -> Result<Page, GitHubError> {
        let _turn = pacer.turn().await;
        self.execute("core", url, MAX_ATTEMPTS, Some(pacer), true, || {
            self.http.request(Method::POST, url.clone()).json(body)
        })
        .await
    }

    /// Before spending a request: if the bucket is known to be empty, sleep until its reset.
    async fn wait_if_exhausted(&self, bucket: &str) {
        let state = self.rates.lock().ok().and_then(|m| m.get(bucket).copied());
        let Some(state) = state else { return };
        if state.remaining > 0 {
            return;
        }
        let Some(wait) = until(state.reset, self.github_now()) else {
            return;
        };
        self.sleep(wait, &format!("GitHub rate limit exhausted ({bucket})"))
            .await;
        self.assume_reset(bucket);
    }

    /// After waiting for a reset, assume the window renewed (so the pre-request check does not
    /// wait a second time); the next answer's headers say the truth.
    fn assume_reset(&self, bucket: &str) {
        if let Ok(mut m) = self.rates.lock() {
            if let Some(s) = m.get_mut(bucket) {
                s.remaining = s.limit.unwrap_or(1).max(1);
            }
        }
    }

    /// GitHub's clock now, as estimated from the last answer's `Date`.
    fn github_now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.skew_ms.load(Ordering::Relaxed))
    }

    fn record_rate(&self, bucket: &str, headers: &HeaderMap) {
        if let Some(date) = server_date(headers) {
            self.skew_ms
                .store((date - Utc::now()).num_milliseconds(), Ordering::Relaxed);
        }
        let Some(remaining) = header_u64(headers, "x-ratelimit-remaining") else {
            return;
        };
        let state = RateState {
            limit: header_u64(headers, "x-ratelimit-limit"),
            remaining,
            reset: header_u64(headers, "x-ratelimit-reset")
                .and_then(|s| i64::try_from(s).ok())
                .and_then(|s| DateTime::from_timestamp(s, 0)),
        };
        let resource = header_str(headers, "x-ratelimit-resource").unwrap_or(bucket);
        if let Ok(mut m) = self.rates.lock() {
            m.insert(resource.to_string(), state);
        }
    }

    /// Sleeps (capped by `GITHUB_ANALYSIS_MAX_WAIT`) after saying why on stderr.
    async fn sleep(&self, wait: Duration, why: &str) {
        let capped = self.cfg.max_wait.map_or(wait, |cap| wait.min(cap));
        let mut msg = format!("{why}: waiting {}", human(wait));
        if wait > Duration::from_secs(90) {
            let at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
            msg.push_str(&format!(" (until {} UTC)", at.format("%H:%M:%S")));
        }
        if capped < wait {
            msg.push_str(&format!(
                " (capped at {} by {ENV_GITHUB_MAX_WAIT})",
                human(capped)
            ));
        }
        self.reporter.note(&msg);
        tokio::time::sleep(capped).await;
    }

    fn same_origin(&self, url: &Url) -> bool {
        let api = &self.cfg.api_url;
        url.scheme() == api.scheme()
            && url.host_str() == api.host_str()
            && url.port_or_known_default() == api.port_or_known_default()
    }

    /// Pagination links are followed verbatim, but only to the API's own host (they carry the token).
    fn checked_link(&self, link: &str) -> Result<Url, GitHubError> {
        match Url::parse(link) {
            Ok(u) if self.same_origin(&u) => Ok(u),
            _ => Err(GitHubError::ForeignLink(link.to_string())),
        }
    }
}

/// Exponential delays with jitter for 5xx and network faults: ~1 s, 2 s, 4 s, … (max 30 s),
/// starting at the configured delay.
fn backoff(first: Duration) -> Backoff {
    Backoff {
        min: first,
        max: Duration::from_secs(30),
        times: MAX_ATTEMPTS,
    }
}
