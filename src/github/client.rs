//! HTTP transport to GitHub's REST and GraphQL APIs: headers, rate limits, retries, conditional
//! requests and Link pagination. Endpoint knowledge lives in `rest.rs` and `graphql.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, ETAG, IF_NONE_MATCH};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use url::Url;

use crate::env::GITHUB_MAX_WAIT as ENV_GITHUB_MAX_WAIT;
use crate::http::{error_chain, Backoff, Verdict};
use crate::report::Reporter;

pub const DEFAULT_API_URL: &str = "https://api.github.com";
/// The REST API version we were written against (github.md §0).
pub const API_VERSION: &str = "2022-11-28";

/// Attempts per request for faults worth retrying (5xx, network errors, rate limits).
const MAX_ATTEMPTS: u32 = 6;
/// GitHub's advice for a secondary limit without `retry-after`: wait at least a minute.
const SECONDARY_MIN_WAIT: Duration = Duration::from_secs(60);
/// A reset more than this far away is not believable (the window is one hour).
const LONGEST_RESET: Duration = Duration::from_secs(3700);

/// Where and how to talk to GitHub.
#[derive(Clone)]
pub struct ClientConfig {
    pub api_url: Url,
    pub graphql_url: Url,
    pub token: String,
    /// Cap on any single wait (env `GITHUB_ANALYSIS_MAX_WAIT`); `None` waits as long as GitHub asks.
    pub max_wait: Option<Duration>,
}

impl ClientConfig {
    /// Resolves URLs: GraphQL is `GITHUB_GRAPHQL_URL` if given, else `{api}/graphql`, or
    /// `https://HOST/api/graphql` for an Enterprise Server REST URL `https://HOST/api/v3`.
    pub fn new(
        api_url: Option<&str>,
        graphql_url: Option<&str>,
        token: String,
        max_wait: Option<&str>,
    ) -> anyhow::Result<Self> {
        let api_raw = api_url
            .filter(|s| !s.trim().is_empty())
            .unwrap_or(DEFAULT_API_URL);
        let api_url = parse_base(api_raw, "GITHUB_API_URL")?;
        let graphql_url = match graphql_url.filter(|s| !s.trim().is_empty()) {
            Some(g) => Url::parse(g.trim()).map_err(|e| {
                crate::error::user(format!("GITHUB_GRAPHQL_URL {g:?} is not a valid URL: {e}"))
            })?,
            None => derive_graphql(&api_url)?,
        };
        let max_wait = match max_wait.filter(|s| !s.trim().is_empty()) {
            None => None,
            // try_from refuses negative, NaN, infinite and absurdly large values.
            Some(s) => match s.trim().parse::<f64>().map(Duration::try_from_secs_f64) {
                Ok(Ok(d)) => Some(d),
                _ => {
                    return Err(crate::error::user(format!(
                        "{ENV_GITHUB_MAX_WAIT} must be a non-negative number of seconds, got {s:?}"
                    )))
                }
            },
        };
        Ok(Self {
            api_url,
            graphql_url,
            token,
            max_wait,
        })
    }
}

/// Never prints the token.
impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("api_url", &self.api_url.as_str())
            .field("graphql_url", &self.graphql_url.as_str())
            .field("token", &"<redacted>")
            .field("max_wait", &self.max_wait)
            .finish()
    }
}

/// The base URL with exactly one trailing slash, so `join("repos/…")` keeps any path prefix.
fn parse_base(raw: &str, what: &str) -> anyhow::Result<Url> {
    let mut s = raw.trim().to_string();
    if !s.ends_with('/') {
        s.push('/');
    }
    let url = Url::parse(&s)
        .map_err(|e| crate::error::user(format!("{what} {raw:?} is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(crate::error::user(format!(
            "{what} {raw:?} must be an http(s) URL"
        )));
    }
    Ok(url)
}

fn derive_graphql(api: &Url) -> anyhow::Result<Url> {
    let path = api.path().trim_end_matches('/');
    let joined = if let Some(prefix) = path.strip_suffix("/api/v3") {
        // Enterprise Server: REST at /api/v3, GraphQL at /api/graphql.
        api.join(&format!("{prefix}/api/graphql"))
    } else {
        api.join("graphql")
    };
    joined.map_err(|e| crate::error::user(format!("cannot derive the GraphQL URL from {api}: {e}")))
}

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
}

/// What a 403/429 meant, and how long to wait before trying again.
#[derive(Debug, PartialEq)]
enum Limit {
    Primary(Duration),
    /// `from_header`: the wait came from `retry-after` (used as is, never stretched).
    Secondary {
        wait: Duration,
        from_header: bool,
    },
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
        self.execute("core", url, MAX_ATTEMPTS, || {
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
                .execute("graphql", &url, timeout_attempts, || {
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
        Some(until(reset).unwrap_or(SECONDARY_MIN_WAIT))
    }

    /// Sends with retries: 5xx and network errors back off exponentially with jitter; rate
    /// limits wait as GitHub says (`retry-after`, else `x-ratelimit-reset`, else ≥ 60 s).
    async fn execute(
        &self,
        bucket: &str,
        url: &Url,
        timeout_attempts: u32,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Page, GitHubError> {
        let secondary_hits = AtomicU32::new(0);
        let timeouts = AtomicU32::new(0);
        let (secondary_hits, timeouts) = (&secondary_hits, &timeouts);
        let give_up = |attempts: u32, last: String| GitHubError::GaveUp {
            url: url.to_string(),
            attempts,
            last,
        };
        crate::http::send(
            BACKOFF,
            |_| {
                let builder = build().header(AUTHORIZATION, self.auth.clone());
                async move {
                    self.wait_if_exhausted(bucket).await;
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
                        date: header_str(&headers, "date")
                            .and_then(|d| DateTime::parse_from_rfc2822(d).ok())
                            .map(|d| d.to_utc()),
                        body,
                    });
                }
                let message = error_message(&body);
                match status.as_u16() {
                    401 => Verdict::Fail(GitHubError::Unauthorized(message)),
                    403 | 429 => match classify_limit(status, &headers, &body) {
                        Some(limit) => {
                            if attempt >= MAX_ATTEMPTS {
                                return Verdict::Fail(give_up(attempt, format!("{status}: {message}")));
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

    /// Before spending a request: if the bucket is known to be empty, sleep until its reset.
    async fn wait_if_exhausted(&self, bucket: &str) {
        let state = self.rates.lock().ok().and_then(|m| m.get(bucket).copied());
        let Some(state) = state else { return };
        if state.remaining > 0 {
            return;
        }
        let Some(wait) = until(state.reset) else {
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

    fn record_rate(&self, bucket: &str, headers: &HeaderMap) {
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

/// Decides whether a 403/429 is a rate limit and how long to wait (github.md §0.3).
fn classify_limit(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Option<Limit> {
    let retry_after = retry_after(headers);
    let remaining = header_u64(headers, "x-ratelimit-remaining");
    let reset = header_u64(headers, "x-ratelimit-reset")
        .and_then(|s| i64::try_from(s).ok())
        .and_then(|s| DateTime::from_timestamp(s, 0));
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = v
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    let doc = v
        .get("documentation_url")
        .and_then(Value::as_str)
        .unwrap_or("");
    let secondary = message.contains("secondary rate limit")
        || doc.ends_with("secondary-rate-limits")
        || doc.ends_with("#abuse-rate-limits");
    if remaining == Some(0) && !secondary {
        let wait = retry_after
            .or_else(|| until(reset))
            .unwrap_or(SECONDARY_MIN_WAIT);
        return Some(Limit::Primary(wait));
    }
    if secondary || retry_after.is_some() || status == StatusCode::TOO_MANY_REQUESTS {
        let wait = retry_after.unwrap_or_else(|| {
            // No retry-after: at least a minute, longer if the primary window is also spent.
            let to_reset = if remaining == Some(0) {
                until(reset)
            } else {
                None
            };
            to_reset.map_or(SECONDARY_MIN_WAIT, |r| r.max(SECONDARY_MIN_WAIT))
        });
        return Some(Limit::Secondary {
            wait,
            from_header: retry_after.is_some(),
        });
    }
    None
}

/// Time from now until `reset` (plus a second of slack), if it is in the future and believable.
fn until(reset: Option<DateTime<Utc>>) -> Option<Duration> {
    let d = (reset? - Utc::now()).to_std().ok()? + Duration::from_secs(1);
    Some(d.min(LONGEST_RESET))
}

/// Exponential delays with jitter for 5xx and network faults: ~1 s, 2 s, 4 s, … (max 30 s).
const BACKOFF: Backoff = Backoff {
    min: Duration::from_secs(1),
    max: Duration::from_secs(30),
    times: MAX_ATTEMPTS,
};

/// `retry-after` in seconds, bounded so a hostile or broken value cannot park us for years.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    header_u64(headers, "retry-after").map(|s| Duration::from_secs(s).min(LONGEST_RESET))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    header_str(headers, name).and_then(|s| s.parse().ok())
}

/// The `rel="next"` URL of a `Link` header (`<url>; rel="next", <url>; rel="last"`).
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|part| {
            let (target, params) = part.trim().split_once(';')?;
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            let is_next = params.split(';').any(|p| {
                p.trim()
                    .strip_prefix("rel=")
                    .map(|r| r.trim_matches('"').split_whitespace().any(|r| r == "next"))
                    .unwrap_or(false)
            });
            is_next.then(|| target.to_string())
        })
}

/// GitHub's error `message` (REST envelope), or a short excerpt of a non-JSON body.
fn error_message(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => v
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string().chars().take(200).collect()),
        Err(_) => {
            let s = String::from_utf8_lossy(body);
            let s = s.trim();
            if s.is_empty() {
                "(empty body)".into()
            } else {
                s.chars().take(200).collect()
            }
        }
    }
}

fn error_messages(errors: &[Value]) -> String {
    errors
        .iter()
        .map(|e| {
            e.get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| e.to_string())
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn human(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 10.0 {
        format!("{secs:.1}s")
    } else if secs < 120.0 {
        format!("{secs:.0}s")
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn graphql_url_is_derived_for_dotcom_and_enterprise_server() {
        let c = ClientConfig::new(None, None, "t".into(), None).unwrap();
        assert_eq!(c.graphql_url.as_str(), "https://api.github.com/graphql");
        let c = ClientConfig::new(
            Some("https://ghe.example.com/api/v3"),
            None,
            "t".into(),
            None,
        )
        .unwrap();
        assert_eq!(
            c.graphql_url.as_str(),
            "https://ghe.example.com/api/graphql"
        );
        assert_eq!(
            c.api_url.join("repos/o/r").unwrap().as_str(),
            "https://ghe.example.com/api/v3/repos/o/r"
        );
        let c = ClientConfig::new(
            Some("http://127.0.0.1:9/"),
            Some("http://127.0.0.1:9/gql"),
            "t".into(),
            Some("0.5"),
        )
        .unwrap();
        assert_eq!(c.graphql_url.as_str(), "http://127.0.0.1:9/gql");
        assert_eq!(c.max_wait, Some(Duration::from_millis(500)));
        assert!(ClientConfig::new(Some("ftp://x"), None, "t".into(), None).is_err());
        assert!(ClientConfig::new(None, None, "t".into(), Some("-1")).is_err());
        assert!(ClientConfig::new(None, None, "t".into(), Some("1e300")).is_err());
        assert!(ClientConfig::new(None, None, "t".into(), Some("NaN")).is_err());
    }

    #[test]
    fn link_header_next_is_found_among_other_rels() {
        let h = headers(&[(
            "link",
            "<https://api.github.com/repositories/1/issues?per_page=2&page=2>; rel=\"next\", \
             <https://api.github.com/repositories/1/issues?per_page=2&page=7>; rel=\"last\"",
        )]);
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://api.github.com/repositories/1/issues?per_page=2&page=2")
        );
        let h = headers(&[(
            "link",
            "<https://x/?page=1>; rel=\"prev\", <https://x/?page=1>; rel=\"first\"",
        )]);
        assert_eq!(next_link(&h), None);
        assert_eq!(next_link(&HeaderMap::new()), None);
    }

    #[test]
    fn rate_limits_are_classified_like_go_github() {
        let future = (Utc::now().timestamp() + 30).to_string();
        let primary = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &future),
        ]);
        let body = br#"{"message":"API rate limit exceeded for 1.2.3.4.","documentation_url":"x"}"#;
        match classify_limit(StatusCode::FORBIDDEN, &primary, body) {
            Some(Limit::Primary(w)) => {
                assert!(w > Duration::from_secs(20) && w <= Duration::from_secs(32))
            }
            other => panic!("{other:?}"),
        }
        let secondary = br#"{"message":"You have exceeded a secondary rate limit.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"}"#;
        let h = headers(&[("x-ratelimit-remaining", "10")]);
        assert_eq!(
            classify_limit(StatusCode::FORBIDDEN, &h, secondary),
            Some(Limit::Secondary {
                wait: SECONDARY_MIN_WAIT,
                from_header: false
            })
        );
        let h = headers(&[("retry-after", "7"), ("x-ratelimit-remaining", "10")]);
        assert_eq!(
            classify_limit(StatusCode::TOO_MANY_REQUESTS, &h, secondary),
            Some(Limit::Secondary {
                wait: Duration::from_secs(7),
                from_header: true
            })
        );
        // A plain permission 403 is not a rate limit.
        let h = headers(&[("x-ratelimit-remaining", "4000")]);
        let perm = br#"{"message":"Resource not accessible by personal access token"}"#;
        assert_eq!(classify_limit(StatusCode::FORBIDDEN, &h, perm), None);
        // A 429 is always a limit, even with an unreadable body.
        assert!(
            classify_limit(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), b"<html>").is_some()
        );
    }

    #[test]
    fn error_messages_come_from_the_envelope_or_the_body() {
        assert_eq!(
            error_message(br#"{"message":"Bad credentials","documentation_url":"x"}"#),
            "Bad credentials"
        );
        assert_eq!(error_message(b""), "(empty body)");
        assert_eq!(
            error_message(b"<h1>Server Error</h1>"),
            "<h1>Server Error</h1>"
        );
    }
}
