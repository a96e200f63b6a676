//! HTTP to a provider's batch endpoints: JSON calls and streamed uploads and downloads, through
//! the shared retry loop (`crate::http`) with the AI layer's error decoder and server-delay
//! rules. Request bodies of any size are streamed from the input file and downloads are
//! streamed to disk, so memory stays flat however large a job is. Uploads and downloads have a
//! connect timeout and an idle timeout ([`Watch`]: no bytes moved for N s), never a
//! whole-request one, and show their progress on a terminal. What the endpoints are and mean
//! lives in `backend.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE,
};
use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ai::http::{decode_error, transport_error, ApiError, Auth, ErrorKind, RetryPolicy};
use crate::ai::Secret;
use crate::env::{self, EnvFn};
use crate::error::user;
use crate::http::{idle_bounded, Activity, Transfer, Verdict};
use crate::report::Reporter;
use indicatif::{ProgressBar, ProgressStyle};

/// Seconds an upload or download may move no byte before the attempt is dropped (and retried
/// like a network error); [`env::TRANSFER_IDLE_TIMEOUT`] overrides it.
pub const DEFAULT_TRANSFER_IDLE_SECS: f64 = 60.0;

/// How uploads and downloads are bounded and shown.
#[derive(Debug, Clone)]
pub struct Watch {
    /// An attempt that moves no byte for this long fails.
    pub idle: Duration,
    /// One bar, reset for every transfer; hidden unless stderr is a terminal.
    pub bar: ProgressBar,
}

impl Default for Watch {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs_f64(DEFAULT_TRANSFER_IDLE_SECS),
            bar: ProgressBar::hidden(),
        }
    }
}

impl Watch {
    /// The idle timeout from the environment and a progress bar from the reporter.
    pub fn new(var: &EnvFn, reporter: &dyn Reporter) -> anyhow::Result<Self> {
        let name = env::TRANSFER_IDLE_TIMEOUT;
        let idle = match var(name) {
            Some(v) if !v.trim().is_empty() => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| {
                    user(format!(
                        "{name}={v:?}: expected seconds, more than 0 and at most 86400"
                    ))
                })?,
            _ => Duration::from_secs_f64(DEFAULT_TRANSFER_IDLE_SECS),
        };
        let bar = reporter.progress(0, "transfer");
        // Nothing is drawn until a transfer starts (`show` resets it).
        bar.finish_and_clear();
        Ok(Self { idle, bar })
    }

    /// Starts showing a transfer of `len` bytes (0: unknown).
    fn show(&self, label: &str, len: u64) {
        if let Ok(style) = ProgressStyle::with_template(
            "{msg:>10} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
        ) {
            self.bar.set_style(style.progress_chars("=> "));
        }
        self.bar.reset();
        self.bar.set_length(len);
        self.bar.set_message(label.to_string());
    }
}

/// A request body, rebuilt for every attempt (streamed bodies cannot be replayed).
#[derive(Debug, Clone)]
pub enum Body {
    Empty,
    Json(Vec<u8>),
    /// OpenAI file upload: `purpose=batch` and the JSONL file, streamed.
    Upload {
        path: PathBuf,
        filename: String,
    },
    /// Anthropic batch create: `{"requests":[` + the JSONL lines joined by commas + `]}`.
    Requests {
        path: PathBuf,
    },
}

/// Whether a failed call may be sent again by the retry loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    Always,
    /// Only when the server certainly did not act on it.
    IfRefused,
}

const BOUNDARY: &str = "----github-analysis-batch-7d1f3a9c";

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

    /// Content type, length and the body stream of one attempt.
    /// Streamed bodies report every chunk to `activity` and the progress bar.
    async fn body(
        &self,
        body: &Body,
        activity: &Arc<Activity>,
    ) -> Result<(Option<&'static str>, Option<u64>, reqwest::Body), ApiError> {
        let io = |e: std::io::Error, p: &Path| {
            ApiError::transport(
                ErrorKind::Other,
                format!("cannot read {}: {e}", p.display()),
            )
        };
        Ok(match body {
            Body::Empty => (None, None, reqwest::Body::from(Vec::new())),
            Body::Json(b) => (
                Some("application/json"),
                None,
                reqwest::Body::from(b.clone()),
            ),
            Body::Upload { path, filename } => {
                let len = tokio::fs::metadata(path)
                    .await
                    .map_err(|e| io(e, path))?
                    .len();
                let head = format!(
                    "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
                     --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
                     Content-Type: application/jsonl\r\n\r\n"
                );
                let tail = format!("\r\n--{BOUNDARY}--\r\n");
                let file = tokio::fs::File::open(path).await.map_err(|e| io(e, path))?;
                let total = head.len() as u64 + len + tail.len() as u64;
                let stream = futures::stream::iter([Ok::<_, std::io::Error>(head.into_bytes())])
                    .chain(file_stream(file, None))
                    .chain(futures::stream::iter([Ok(tail.into_bytes())]));
                self.watch.show("upload", total);
                (
                    Some("multipart/form-data; boundary=----github-analysis-batch-7d1f3a9c"),
                    Some(total),
                    reqwest::Body::wrap_stream(self.counted(stream, total, activity)),
                )
            }
            Body::Requests { path } => {
                let len = tokio::fs::metadata(path)
                    .await
                    .map_err(|e| io(e, path))?
                    .len();
                let file = tokio::fs::File::open(path).await.map_err(|e| io(e, path))?;
                let stream =
                    futures::stream::iter([Ok::<_, std::io::Error>(b"{\"requests\":[".to_vec())])
                        .chain(file_stream(file, Some(len)))
                        .chain(futures::stream::iter([Ok(b"]}".to_vec())]));
                // `{"requests":[` + the lines without their final newline + `]}`.
                let total = 13 + len.saturating_sub(1) + 2;
                self.watch.show("upload", total);
                (
                    Some("application/json"),
                    Some(total),
                    reqwest::Body::wrap_stream(self.counted(stream, total, activity)),
                )
            }
        })
    }

    /// A body stream of `total` bytes that reports each chunk as moved bytes (idle clock and
    /// progress bar), and the last one as the end of the body (the answer wait starts).
    fn counted(
        &self,
        stream: impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static,
        total: u64,
        activity: &Arc<Activity>,
    ) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
        let activity = activity.clone();
        let bar = self.watch.bar.clone();
        // The client stops polling a body of known length after its last byte, so the end is
        // seen by counting, not by the stream ending.
        stream.inspect(move |chunk| {
            if let Ok(c) = chunk {
                activity.moved(c.len() as u64);
                bar.inc(c.len() as u64);
                if activity.bytes() >= total {
                    activity.body_sent();
                }
            }
        })
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

    /// Streams a GET body into `dest` (temp file + rename), with retries. An attempt that moves
    /// no byte for the idle timeout (headers or body) is dropped and retried.
    pub async fn download(&self, path: &str, dest: &Path) -> Result<u64, ApiError> {
        let url = self.url(path);
        let headers = self.headers()?;
        let dir = dest.parent().unwrap_or(Path::new("."));
        let io = |e: std::io::Error| {
            ApiError::transport(
                ErrorKind::Other,
                format!("cannot write {}: {e}", dest.display()),
            )
        };
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
        let tmp = dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            dest.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("download")
        ));
        let idle = self.watch.idle;
        let activity = Activity::default();
        let (url, headers, tmp, io, act) = (&url, &headers, &tmp, &io, &activity);
        let what = format!("download of {path}");
        let what = &what;
        let got = crate::http::send_watched(
            self.policy.backoff(),
            idle,
            act,
            |_| {
                let builder = self
                    .client
                    .get(url)
                    .headers(headers.clone())
                    .header("accept", "application/binary");
                async move { Ok(builder) }
            },
            |attempts, sent| async move {
                let error = match sent {
                    Ok(resp) if resp.status().is_success() => {
                        self.watch
                            .show("download", resp.content_length().unwrap_or(0));
                        let streamed =
                            idle_bounded(idle, act, stream_to(resp, tmp, act, &self.watch.bar))
                                .await;
                        self.watch.bar.finish_and_clear();
                        match streamed {
                            Ok(Ok(n)) => {
                                return match tokio::fs::rename(tmp, dest).await {
                                    Ok(()) => Verdict::Done(n),
                                    Err(e) => Verdict::Fail(io(e)),
                                }
                            }
                            Ok(Err(e)) => {
                                let _ = tokio::fs::remove_file(tmp).await;
                                ApiError::transport(
                                    ErrorKind::Network,
                                    format!("{what} broke off: {e}"),
                                )
                            }
                            Err(t) => {
                                let _ = tokio::fs::remove_file(tmp).await;
                                self.broken(what, t)
                            }
                        }
                    }
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let rh = resp.headers().clone();
                        let b = idle_bounded(idle, act, resp.bytes())
                            .await
                            .ok()
                            .and_then(Result::ok)
                            .unwrap_or_default();
                        decode_error(status, &rh, &b, self.secret())
                    }
                    Err(t) => self.broken(what, t),
                };
                self.judge_error(error, attempts)
            },
            Self::pause,
        )
        .await;
        self.watch.bar.finish_and_clear();
        got
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

/// Reads a file in 64 KiB chunks. With `join_len` (the file's length) every newline but the
/// last byte becomes a comma and the final newline is dropped: JSONL → JSON array items.
fn file_stream(
    file: tokio::fs::File,
    join_len: Option<u64>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::unfold(
        (file, 0u64, false),
        move |(mut file, pos, done)| async move {
            if done {
                return None;
            }
            let mut buf = vec![0u8; 64 * 1024];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    let end = pos + n as u64;
                    if let Some(len) = join_len {
                        for b in buf.iter_mut() {
                            if *b == b'\n' {
                                *b = b',';
                            }
                        }
                        if end >= len && buf.last() == Some(&b',') {
                            buf.pop();
                        }
                    }
                    Some((Ok(buf), (file, end, false)))
                }
                Err(e) => Some((Err(e), (file, pos, true))),
            }
        },
    )
}

/// Writes a response body to `tmp`, reporting every chunk as moved bytes.
async fn stream_to(
    resp: reqwest::Response,
    tmp: &Path,
    activity: &Activity,
    bar: &ProgressBar,
) -> Result<u64, String> {
    let mut f = tokio::fs::File::create(tmp)
        .await
        .map_err(|e| e.to_string())?;
    let mut n = 0u64;
    let mut s = resp.bytes_stream();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        n += chunk.len() as u64;
        activity.moved(chunk.len() as u64);
        bar.inc(chunk.len() as u64);
        f.write_all(&chunk).await.map_err(|e| e.to_string())?;
    }
    f.sync_data().await.map_err(|e| e.to_string())?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jsonl_becomes_a_json_array_body() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.jsonl");
        std::fs::write(&p, "{\"a\":1}\n{\"b\":2}\n").unwrap();
        let len = std::fs::metadata(&p).unwrap().len();
        let f = tokio::fs::File::open(&p).await.unwrap();
        let chunks: Vec<_> = file_stream(f, Some(len)).collect().await;
        let bytes: Vec<u8> = chunks
            .into_iter()
            .flat_map(|c| c.unwrap().to_vec())
            .collect();
        assert_eq!(String::from_utf8(bytes).unwrap(), "{\"a\":1},{\"b\":2}");
        assert_eq!(seg("batch_abc-1"), "batch_abc-1");
        assert_eq!(seg("m/1"), "m%2F1");
    }
}
