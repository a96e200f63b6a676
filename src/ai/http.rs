//! The thin send shared by every provider: one POST through the shared retry loop
//! (`crate::http`), with the provider error decoder (`errors.rs`) and rate pacing
//! (`rate_gate.rs`).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};

pub use crate::ai::errors::{
    decode_error, parse_go_duration, server_delay, transport_error, ApiError, ErrorKind,
};
pub use crate::ai::rate_gate::RateGate;
use crate::ai::Secret;
use crate::http::{Backoff, Verdict};

/// How the key travels: OpenAI uses a bearer token, Anthropic an `x-api-key` header.
#[derive(Debug, Clone)]
pub enum Auth {
    Bearer(Secret),
    ApiKey(Secret),
}

/// One POST, fully built: nothing provider-specific happens after this point.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub url: String,
    pub auth: Auth,
    /// Non-secret headers (e.g. `anthropic-version`).
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// What the request draws from a tokens-per-minute window (for pacing): see
    /// [`estimate_tokens`].
    pub est_tokens: u64,
}

/// The tokens a request draws from the provider's tokens-per-minute window: its prompt (≈ 4
/// bytes a token) plus, when the provider counts it (OpenAI), the completion budget it asks for.
pub fn estimate_tokens(body: &[u8], completion_budget: u64) -> u64 {
    (body.len() as u64).div_ceil(4) + completion_budget
}

impl HttpRequest {
    fn secret(&self) -> &Secret {
        match &self.auth {
            Auth::Bearer(s) | Auth::ApiKey(s) => s,
        }
    }
}

/// Retry settings. The defaults follow the official SDKs (retry 408/409/429/5xx, honour the
/// server's delay up to two minutes), with more attempts because a CLI run is unattended.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first attempt for server errors, overloads, timeouts and network
    /// failures.
    pub max_retries: u32,
    /// Retries after rate-limit answers (429 with a limit, not a quota): the server says when
    /// to come back, so waiting is safe, but a run must still end.
    pub max_rate_limit_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A server asking for a longer wait than this ends the item instead (the SDKs use 120 s).
    pub max_server_delay: Duration,
    /// Whole-request timeout (connect + send + body).
    pub timeout: Duration,
}

impl RetryPolicy {
    /// The defaults with the first backoff delay from [`crate::env::RETRY_DELAY`], if set.
    pub fn from_env(env: &crate::env::EnvFn) -> anyhow::Result<Self> {
        let mut policy = Self::default();
        if let Some(d) = crate::env::retry_delay(env).map_err(crate::error::user)? {
            policy.base_delay = d;
        }
        Ok(policy)
    }

    /// The backoff between attempts that fail without a server-given delay: enough delays for
    /// both budgets (the client's judge enforces each budget itself).
    pub fn backoff(&self) -> Backoff {
        Backoff {
            min: self.base_delay,
            max: self.max_delay,
            times: self.max_retries + self.max_rate_limit_retries,
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            max_rate_limit_retries: 20,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_server_delay: Duration::from_secs(120),
            timeout: Duration::from_secs(120),
        }
    }
}

/// A 2xx answer.
#[derive(Debug, Clone)]
pub struct HttpSuccess {
    pub body: Vec<u8>,
    /// Attempts made (1 = no retry).
    pub attempts: u32,
}

/// The final failure of a call after its retries.
#[derive(Debug, Clone)]
pub struct HttpFailure {
    pub error: ApiError,
    pub attempts: u32,
}

/// The shared client: connection pool, retry policy and rate gate.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    policy: RetryPolicy,
    gate: Arc<RateGate>,
}

impl HttpClient {
    pub fn new(policy: RetryPolicy) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("github-analysis/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10).min(policy.timeout))
            .timeout(policy.timeout)
            .build()?;
        Ok(Self {
            client,
            policy,
            gate: Arc::new(RateGate::default()),
        })
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// POSTs the request, retrying retryable failures with the server's delay or exponential
    /// backoff with jitter. Never returns an error text that contains the key.
    pub async fn send(&self, req: &HttpRequest) -> Result<HttpSuccess, HttpFailure> {
        let secret = req.secret();
        let headers = build_headers(req).map_err(|message| HttpFailure {
            error: ApiError::transport(ErrorKind::BadRequest, message),
            attempts: 0,
        })?;
        let policy = &self.policy;
        let gate = &*self.gate;
        let rate_limited = AtomicU32::new(0);
        let rate_limited = &rate_limited;
        let est_tokens = req.est_tokens;
        // The rate gate's ticket of the attempt in flight (attempts run one after another).
        let ticket = AtomicU64::new(0);
        let ticket = &ticket;
        crate::http::send(
            policy.backoff(),
            |_| {
                let builder = self
                    .client
                    .post(&req.url)
                    .headers(headers.clone())
                    .body(req.body.clone());
                async move {
                    ticket.store(gate.wait_turn(est_tokens).await, Ordering::SeqCst);
                    Ok(builder)
                }
            },
            |attempts, sent| async move {
                let error = match sent {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let resp_headers = resp.headers().clone();
                        gate.observe(&resp_headers, ticket.load(Ordering::SeqCst));
                        match resp.bytes().await {
                            Ok(body) if (200..300).contains(&status) => {
                                return Verdict::Done(HttpSuccess {
                                    body: body.to_vec(),
                                    attempts,
                                })
                            }
                            Ok(body) => decode_error(status, &resp_headers, &body, secret),
                            Err(e) => transport_error(&e, secret),
                        }
                    }
                    Err(e) => {
                        gate.abandoned(ticket.load(Ordering::SeqCst));
                        transport_error(&e, secret)
                    }
                };
                let limited = error.kind == ErrorKind::RateLimited;
                let limited_so_far = if limited {
                    rate_limited.fetch_add(1, Ordering::SeqCst) + 1
                } else {
                    rate_limited.load(Ordering::SeqCst)
                };
                let other_failures = attempts - limited_so_far;
                if !error.retryable()
                    || other_failures > policy.max_retries
                    || limited_so_far > policy.max_rate_limit_retries
                {
                    return Verdict::Fail(HttpFailure { error, attempts });
                }
                if let Some(d) = error.retry_after.filter(|d| *d > policy.max_server_delay) {
                    let mut error = error;
                    error.message = format!(
                        "{} (the server asked to wait {:.0}s, more than the {:.0}s this tool waits)",
                        error.message,
                        d.as_secs_f64(),
                        policy.max_server_delay.as_secs_f64()
                    );
                    return Verdict::Fail(HttpFailure { error, attempts });
                }
                let reason = (limited, format!("attempt {attempts} failed ({error})"));
                Verdict::Retry {
                    after: error.retry_after,
                    error: HttpFailure { error, attempts },
                    reason,
                }
            },
            |(limited, why): (bool, String), delay| async move {
                if limited {
                    gate.pause_for(delay);
                }
                tracing::info!("{why}; retrying in {} ms", delay.as_millis());
                tokio::time::sleep(delay).await;
            },
        )
        .await
    }
}

fn build_headers(req: &HttpRequest) -> Result<HeaderMap, String> {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let (name, value) = match &req.auth {
        Auth::Bearer(s) => (AUTHORIZATION, format!("Bearer {}", s.expose())),
        Auth::ApiKey(s) => (HeaderName::from_static("x-api-key"), s.expose().to_string()),
    };
    let mut value = HeaderValue::from_str(&value)
        .map_err(|_| "the API key contains characters not allowed in an HTTP header".to_string())?;
    // Keeps the key out of reqwest/hyper debug output.
    value.set_sensitive(true);
    h.insert(name, value);
    for (k, v) in &req.headers {
        let v = HeaderValue::from_str(v).map_err(|_| format!("invalid value for header {k}"))?;
        h.insert(HeaderName::from_static(k), v);
    }
    Ok(h)
}
