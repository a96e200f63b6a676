//! HTTP to a provider's batch endpoints: JSON calls and streamed uploads and downloads, through
//! the shared retry loop (`crate::http`) with the AI layer's error decoder and server-delay
//! rules. Request bodies of any size are streamed from the input file and downloads are
//! streamed to disk, so memory stays flat however large a job is. Uploads and downloads have a
//! connect timeout and an idle timeout ([`Watch`]: no bytes moved for N s), never a
//! whole-request one, and show their progress on a terminal. The streaming itself is in
//! `api/stream.rs`; what the endpoints are and mean lives in `backend.rs`.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE,
};
use reqwest::Method;
use serde_json::Value;

use crate::ai::http::{decode_error, transport_error, ApiError, Auth, ErrorKind, RetryPolicy};
use crate::ai::Secret;
use crate::env;
use crate::http::{idle_bounded, Activity, Transfer, Verdict};

mod stream;

pub use stream::{Body, Watch};

/// Whether a failed call may be sent again by the retry loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    Always,
    /// Only when the server certainly did not act on it.
    IfRefused,
}

/// A client for one provider's batch endpoints.
#[derive(Debug, Clone)]
pub struct BatchApi {
    /// Base URL without a trailing slash; paths are appended as given.
    base_url: String,
    auth: Auth,
    /// Non-secret headers every call carries (e.g. `anthropic-version`).
    extra: Vec<(&'static str, &'static str)>,
    client: reqwest::Client,
    policy: RetryPolicy,
    watch: Watch,
}

impl BatchApi {
    pub fn new(
        base_url: &str,
        auth: Auth,
        extra: Vec<(&'static str, &'static str)>,
        policy: RetryPolicy,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("github-analysis/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10).min(policy.timeout))
            .build()?;
        Ok(Self {
            base_url: base_url.to_string(),
            auth,
            extra,
            client,
            policy,
            watch: Watch::default(),
        })
    }

    /// The idle timeout and progress bar of uploads and downloads.
    pub fn watched(mut self, watch: Watch) -> Self {
        self.watch = watch;
        self
    }

    fn secret(&self) -> &Secret {
        match &self.auth {
            Auth::Bearer(s) | Auth::ApiKey(s) => s,
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            return path.to_string();
        }
        format!("{}{path}", self.base_url)
    }

    fn headers(&self) -> Result<HeaderMap, ApiError> {
        let mut h = HeaderMap::new();
        let (name, value) = match &self.auth {
            Auth::Bearer(s) => (AUTHORIZATION, format!("Bearer {}", s.expose())),
            Auth::ApiKey(s) => (HeaderName::from_static("x-api-key"), s.expose().to_string()),
        };
        let mut value = HeaderValue::from_str(&value).map_err(|_| {
            ApiError::transport(
                ErrorKind::BadRequest,
                "the API key contains characters not allowed in an HTTP header".into(),
            )
        })?;
        value.set_sensitive(true);
        h.insert(name, value);
        for (k, v) in &self.extra {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        Ok(h)
    }

    /// A failed transfer attempt, as an error worth retrying like a dropped connection.
    fn broken(&self, what: &str, t: Transfer) -> ApiError {
        match t {
            Transfer::Http(e) => transport_error(&e, self.secret()),
            Transfer::Stalled(idle) => ApiError::transport(
                ErrorKind::Timeout,
                format!(
                    "the {what} stalled: no bytes moved for {} s (raise {} on a slow link)",
                    idle.as_secs_f64(),
                    env::TRANSFER_IDLE_TIMEOUT
                ),
            ),
            Transfer::NoAnswer(wait) => ApiError::transport(
                ErrorKind::Timeout,
                format!(
                    "the {what} was sent, but no answer came within {} s (--request-timeout)",
                    wait.as_secs_f64()
                ),
            ),
        }
    }

    /// What an answer that is not a success means: retry (within the policy) or give up.
    fn judge_error<T>(&self, error: ApiError, attempts: u32) -> Verdict<T, ApiError, String> {
        if attempts > self.policy.max_retries || !error.retryable() {
            return Verdict::Fail(error);
        }
        match error.retry_after {
            Some(d) if d > self.policy.max_server_delay => Verdict::Fail(error),
            after => Verdict::Retry {
                reason: error.to_string(),
                error,
                after,
            },
        }
    }

    async fn pause(why: String, delay: Duration) {
        tracing::info!(
            "batch API call failed ({why}); retrying in {} ms",
            delay.as_millis()
        );
        tokio::time::sleep(delay).await;
    }

    /// One call with retries; returns the 2xx body. Calls that stream a file (uploads) have an
    /// idle timeout instead of the policy's whole-request one.
    pub async fn call(&self, method: Method, path: &str, body: Body) -> Result<Vec<u8>, ApiError> {
        self.call_with(method, path, body, Replay::Always).await
    }

    /// A call that creates something (a batch): retried only when the server certainly did not
    /// act on it (429, connection refused). Any other failure — a 5xx, a timeout, a reset after
    /// the body was sent — leaves the outcome unknown, and the caller must look before sending
    /// again (docs/batch.md, "Adopting a batch whose create answer was lost").
    pub async fn json_once(
        &self,
        method: Method,
        path: &str,
        body: Body,
    ) -> Result<Value, ApiError> {
        let bytes = self
            .call_with(method, path, body, Replay::IfRefused)
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::transport(
                ErrorKind::Other,
                format!("{path} answered with something that is not JSON: {e}"),
            )
        })
    }

    async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Body,
        replay: Replay,
    ) -> Result<Vec<u8>, ApiError> {
        let url = self.url(path);
        let headers = self.headers()?;
        let streamed = matches!(body, Body::Upload { .. } | Body::Requests { .. });
        let activity = Arc::new(Activity::new(self.policy.timeout));
        let (url, headers, body, method, act) = (&url, &headers, &body, &method, &activity);
        let request = |_| async move {
            let (ctype, length, reqbody) = self.body(body, act).await?;
            let mut h = headers.clone();
            if let Some(c) = ctype {
                h.insert(CONTENT_TYPE, HeaderValue::from_static(c));
            }
            if let Some(n) = length {
                h.insert(CONTENT_LENGTH, HeaderValue::from(n));
            }
            let mut b = self.client.request(method.clone(), url).headers(h);
            if !streamed {
                b = b.timeout(self.policy.timeout);
            }
            Ok(b.body(reqbody))
        };
        if !streamed {
            return crate::http::send(
                self.policy.backoff(),
                request,
                |attempts, sent| async move {
                    let refused = match &sent {
                        Ok(resp) => resp.status().as_u16() == 429,
                        Err(e) => e.is_connect(),
                    };
                    let error = match sent {
                        Ok(resp) => match self.answer(resp).await {
                            Ok(b) => return Verdict::Done(b),
                            Err(e) => e,
                        },
                        Err(e) => transport_error(&e, self.secret()),
                    };
                    if replay == Replay::IfRefused && !refused {
                        return Verdict::Fail(error);
                    }
                    self.judge_error(error, attempts)
                },
                Self::pause,
            )
            .await;
        }
        let idle = self.watch.idle;
        let got = crate::http::send_watched(
            self.policy.backoff(),
            idle,
            act,
            request,
            |attempts, sent| async move {
                self.watch.bar.finish_and_clear();
                let refused = matches!(&sent, Ok(resp) if resp.status().as_u16() == 429);
                let error = match sent {
                    // The answer to an upload is small, but it is read under the same clock.
                    Ok(resp) => match idle_bounded(idle, act, self.answer(resp)).await {
                        Ok(Ok(b)) => return Verdict::Done(b),
                        Ok(Err(e)) => e,
                        Err(t) => self.broken(&format!("upload to {path}"), t),
                    },
                    Err(t) => self.broken(&format!("upload to {path}"), t),
                };
                if replay == Replay::IfRefused && !refused {
                    return Verdict::Fail(error);
                }
                self.judge_error(error, attempts)
            },
            Self::pause,
        )
        .await;
        self.watch.bar.finish_and_clear();
        got
    }

    /// A 2xx body, or the decoded error of any other answer.
    async fn answer(&self, resp: reqwest::Response) -> Result<Vec<u8>, ApiError> {
        let status = resp.status().as_u16();
        let rh = resp.headers().clone();
        match resp.bytes().await {
            Ok(b) if (200..300).contains(&status) => Ok(b.to_vec()),
            Ok(b) => Err(decode_error(status, &rh, &b, self.secret())),
            Err(e) => Err(transport_error(&e, self.secret())),
        }
    }

    /// A call whose 2xx body is JSON.
    pub async fn json(&self, method: Method, path: &str, body: Body) -> Result<Value, ApiError> {
        let bytes = self.call(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::transport(
                ErrorKind::Other,
                format!("{path} answered with something that is not JSON: {e}"),
            )
        })
    }
}

/// A path segment from a provider id: only URL-safe characters pass unchanged.
pub fn seg(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

/// A string field of an answer, or an error naming the endpoint and showing the answer.
pub fn str_field(v: &Value, key: &str, path: &str) -> Result<String, ApiError> {
    v[key].as_str().map(str::to_string).ok_or_else(|| {
        ApiError::transport(
            ErrorKind::Other,
            format!(
                "{path} answered without an `{key}`: {}",
                v.to_string().chars().take(200).collect::<String>()
            ),
        )
    })
}
