//! The provider batch APIs over HTTP: OpenAI Files + Batches and Anthropic Message Batches.
//! Every call retries rate limits, overloads and 5xx like the real-time client (same error
//! decoder, same server-delay rules); request bodies of any size are streamed from the input
//! file and downloads are streamed to disk, so memory stays flat however large a job is.

use std::path::{Path, PathBuf};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ai::http::{decode_error, ApiError, ErrorKind, RetryPolicy};
use crate::ai::{anthropic, Endpoint, ProviderKind, Secret};

/// Metadata key carrying our job id on OpenAI batches (and the part number under `PART_KEY`).
pub const JOB_KEY: &str = "github_analysis_job";
pub const PART_KEY: &str = "github_analysis_part";

/// A request body, rebuilt for every attempt (streamed bodies cannot be replayed).
#[derive(Debug, Clone)]
enum Body {
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

const BOUNDARY: &str = "----github-analysis-batch-7d1f3a9c";

/// A client for one provider's batch endpoints.
#[derive(Debug, Clone)]
pub struct BatchApi {
    pub kind: ProviderKind,
    base_url: String,
    key: Secret,
    client: reqwest::Client,
    policy: RetryPolicy,
}

impl BatchApi {
    pub fn new(
        kind: ProviderKind,
        endpoint: &Endpoint,
        policy: RetryPolicy,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("github-analysis/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10).min(policy.timeout))
            .build()?;
        Ok(Self {
            kind,
            base_url: endpoint.base_url.clone(),
            key: endpoint.key.clone(),
            client,
            policy,
        })
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            return path.to_string();
        }
        // OpenAI's base URL ends in /v1 and its paths here are relative to it; Anthropic's
        // has no /v1 and its paths carry it.
        format!("{}{path}", self.base_url)
    }

    fn headers(&self) -> Result<HeaderMap, ApiError> {
        let mut h = HeaderMap::new();
        let bad = || {
            transport(
                ErrorKind::BadRequest,
                "the API key contains characters not allowed in an HTTP header".into(),
            )
        };
        match self.kind {
            ProviderKind::Anthropic => {
                let mut v = HeaderValue::from_str(self.key.expose()).map_err(|_| bad())?;
                v.set_sensitive(true);
                h.insert(HeaderName::from_static("x-api-key"), v);
                h.insert(
                    HeaderName::from_static("anthropic-version"),
                    HeaderValue::from_static(anthropic::API_VERSION),
                );
            }
            _ => {
                let mut v = HeaderValue::from_str(&format!("Bearer {}", self.key.expose()))
                    .map_err(|_| bad())?;
                v.set_sensitive(true);
                h.insert(AUTHORIZATION, v);
            }
        }
        Ok(h)
    }

    async fn body(
        &self,
        body: &Body,
    ) -> Result<(Option<&'static str>, Option<u64>, reqwest::Body), ApiError> {
        let io = |e: std::io::Error, p: &Path| {
            transport(
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
                let stream = futures::stream::iter([Ok::<_, std::io::Error>(bytes_of(head))])
                    .chain(file_stream(file, None))
                    .chain(futures::stream::iter([Ok(bytes_of(tail))]));
                (
                    Some("multipart/form-data; boundary=----github-analysis-batch-7d1f3a9c"),
                    Some(total),
                    reqwest::Body::wrap_stream(stream),
                )
            }
            Body::Requests { path } => {
                let len = tokio::fs::metadata(path)
                    .await
                    .map_err(|e| io(e, path))?
                    .len();
                let file = tokio::fs::File::open(path).await.map_err(|e| io(e, path))?;
                let stream = futures::stream::iter([Ok::<_, std::io::Error>(bytes_of(
                    "{\"requests\":[".to_string(),
                ))])
                .chain(file_stream(file, Some(len)))
                .chain(futures::stream::iter([Ok(bytes_of("]}".to_string()))]));
                // `{"requests":[` + the lines without their final newline + `]}`.
                let total = 13 + len.saturating_sub(1) + 2;
                (
                    Some("application/json"),
                    Some(total),
                    reqwest::Body::wrap_stream(stream),
                )
            }
        })
    }

    /// One call with retries; returns the 2xx body.
    async fn call(&self, method: Method, path: &str, body: Body) -> Result<Vec<u8>, ApiError> {
        let url = self.url(path);
        let headers = self.headers()?;
        let mut backoff = self.backoff();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let (ctype, length, reqbody) = self.body(&body).await?;
            let mut h = headers.clone();
            if let Some(c) = ctype {
                h.insert(CONTENT_TYPE, HeaderValue::from_static(c));
            }
            if let Some(n) = length {
                h.insert(reqwest::header::CONTENT_LENGTH, HeaderValue::from(n));
            }
            let sent = self
                .client
                .request(method.clone(), &url)
                .headers(h)
                .timeout(self.policy.timeout)
                .body(reqbody)
                .send()
                .await;
            let error = match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let rh = resp.headers().clone();
                    match resp.bytes().await {
                        Ok(b) if (200..300).contains(&status) => return Ok(b.to_vec()),
                        Ok(b) => decode_error(status, &rh, &b, &self.key),
                        Err(e) => crate::ai::http::transport_error(&e, &self.key),
                    }
                }
                Err(e) => crate::ai::http::transport_error(&e, &self.key),
            };
            self.wait_or_fail(error, attempts, &mut backoff).await?;
        }
    }

    fn backoff(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(self.policy.base_delay)
            .with_max_delay(self.policy.max_delay)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.policy.max_retries as usize)
            .build()
    }

    /// Sleeps before the next attempt, or returns the error when it is final.
    async fn wait_or_fail(
        &self,
        error: ApiError,
        attempts: u32,
        backoff: &mut impl Iterator<Item = Duration>,
    ) -> Result<(), ApiError> {
        if attempts > self.policy.max_retries || !error.retryable() {
            return Err(error);
        }
        let delay = match error.retry_after {
            Some(d) if d > self.policy.max_server_delay => return Err(error),
            Some(d) => d,
            None => backoff.next().unwrap_or(self.policy.max_delay),
        };
        tracing::info!(
            "batch API attempt {attempts} failed ({error}); retrying in {} ms",
            delay.as_millis()
        );
        tokio::time::sleep(delay).await;
        Ok(())
    }

    async fn json(&self, method: Method, path: &str, body: Body) -> Result<Value, ApiError> {
        let bytes = self.call(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            transport(
                ErrorKind::Other,
                format!("{path} answered with something that is not JSON: {e}"),
            )
        })
    }

    /// Streams a GET body into `dest` (temp file + rename), with retries.
    pub async fn download(&self, path: &str, dest: &Path) -> Result<u64, ApiError> {
        let url = self.url(path);
        let headers = self.headers()?;
        let mut backoff = self.backoff();
        let mut attempts = 0u32;
        let dir = dest.parent().unwrap_or(Path::new("."));
        let io = |e: std::io::Error| {
            transport(
                ErrorKind::Other,
                format!("cannot write {}: {e}", dest.display()),
            )
        };
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
        loop {
            attempts += 1;
            let sent = self
                .client
                .get(&url)
                .headers(headers.clone())
                .header("accept", "application/binary")
                .send()
                .await;
            let error = match sent {
                Ok(resp) if resp.status().is_success() => {
                    let tmp = dir.join(format!(
                        ".tmp-{}-{}",
                        std::process::id(),
                        dest.file_name()
                            .and_then(|n| n.to_str())
                            .unwrap_or("download")
                    ));
                    match stream_to(resp, &tmp).await {
                        Ok(n) => {
                            tokio::fs::rename(&tmp, dest).await.map_err(io)?;
                            return Ok(n);
                        }
                        Err(e) => {
                            let _ = tokio::fs::remove_file(&tmp).await;
                            transport(
                                ErrorKind::Network,
                                format!("download of {path} broke off: {e}"),
                            )
                        }
                    }
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let rh = resp.headers().clone();
                    let b = resp.bytes().await.unwrap_or_default();
                    decode_error(status, &rh, &b, &self.key)
                }
                Err(e) => crate::ai::http::transport_error(&e, &self.key),
            };
            self.wait_or_fail(error, attempts, &mut backoff).await?;
        }
    }

    // ---- OpenAI Files + Batches ------------------------------------------------------------

    /// `POST /files` (multipart, purpose=batch) → file id.
    pub async fn openai_upload(&self, path: &Path, filename: &str) -> Result<String, ApiError> {
        let v = self
            .json(
                Method::POST,
                "/files",
                Body::Upload {
                    path: path.to_path_buf(),
                    filename: filename.to_string(),
                },
            )
            .await?;
        str_field(&v, "id", "/files")
    }

    /// An uploaded batch file with this filename, if any (finds uploads whose id was lost in
    /// a crash, so they are reused instead of uploaded twice).
    pub async fn openai_find_file(&self, filename: &str) -> Result<Option<String>, ApiError> {
        let v = self
            .json(Method::GET, "/files?purpose=batch", Body::Empty)
            .await?;
        Ok(v["data"].as_array().and_then(|files| {
            files
                .iter()
                .filter(|f| f["filename"].as_str() == Some(filename))
                .find_map(|f| f["id"].as_str().map(str::to_string))
        }))
    }

    /// `POST /batches` for the chat completions endpoint, our ids in its metadata.
    pub async fn openai_create(
        &self,
        input_file_id: &str,
        job_id: &str,
        part: i32,
    ) -> Result<Value, ApiError> {
        let body = json!({
            "input_file_id": input_file_id,
            "endpoint": format!("/v1{}", crate::ai::openai::CHAT_PATH),
            "completion_window": "24h",
            "metadata": {JOB_KEY: job_id, PART_KEY: part.to_string()},
        });
        let v = self
            .json(
                Method::POST,
                "/batches",
                Body::Json(body.to_string().into_bytes()),
            )
            .await?;
        str_field(&v, "id", "/batches")?;
        Ok(v)
    }

    pub async fn openai_retrieve(&self, batch_id: &str) -> Result<Value, ApiError> {
        self.json(
            Method::GET,
            &format!("/batches/{}", seg(batch_id)),
            Body::Empty,
        )
        .await
    }

    pub async fn openai_cancel(&self, batch_id: &str) -> Result<Value, ApiError> {
        self.json(
            Method::POST,
            &format!("/batches/{}/cancel", seg(batch_id)),
            Body::Empty,
        )
        .await
    }

    /// Every batch of the account (paginated with `after`), newest first, at most `max`.
    pub async fn openai_list(&self, max: usize) -> Result<Vec<Value>, ApiError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => format!("/batches?limit=100&after={}", seg(a)),
                None => "/batches?limit=100".to_string(),
            };
            let v = self.json(Method::GET, &path, Body::Empty).await?;
            let data = v["data"].as_array().cloned().unwrap_or_default();
            let last = data
                .last()
                .and_then(|b| b["id"].as_str())
                .map(str::to_string);
            out.extend(data);
            if v["has_more"].as_bool() != Some(true) || out.len() >= max || last.is_none() {
                break;
            }
            after = last;
        }
        Ok(out)
    }

    // ---- Anthropic Message Batches ---------------------------------------------------------

    /// `POST /v1/messages/batches` with the requests streamed from the JSONL input file.
    pub async fn anthropic_create(&self, path: &Path) -> Result<Value, ApiError> {
        let v = self
            .json(
                Method::POST,
                "/v1/messages/batches",
                Body::Requests {
                    path: path.to_path_buf(),
                },
            )
            .await?;
        str_field(&v, "id", "/v1/messages/batches")?;
        Ok(v)
    }

    pub async fn anthropic_retrieve(&self, batch_id: &str) -> Result<Value, ApiError> {
        self.json(
            Method::GET,
            &format!("/v1/messages/batches/{}", seg(batch_id)),
            Body::Empty,
        )
        .await
    }

    pub async fn anthropic_cancel(&self, batch_id: &str) -> Result<Value, ApiError> {
        self.json(
            Method::POST,
            &format!("/v1/messages/batches/{}/cancel", seg(batch_id)),
            Body::Empty,
        )
        .await
    }

    /// Batches of the workspace, newest first (paginated with `after_id`), at most `max`.
    pub async fn anthropic_list(&self, max: usize) -> Result<Vec<Value>, ApiError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => format!("/v1/messages/batches?limit=100&after_id={}", seg(a)),
                None => "/v1/messages/batches?limit=100".to_string(),
            };
            let v = self.json(Method::GET, &path, Body::Empty).await?;
            let data = v["data"].as_array().cloned().unwrap_or_default();
            out.extend(data);
            let last = v["last_id"].as_str().map(str::to_string);
            if v["has_more"].as_bool() != Some(true) || out.len() >= max || last.is_none() {
                break;
            }
            after = last;
        }
        Ok(out)
    }

    /// The results path of an ended batch: its `results_url` (absolute or relative).
    pub fn anthropic_results_path(&self, batch: &Value, batch_id: &str) -> String {
        match batch["results_url"].as_str() {
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                // Keep the server the user configured (a proxy or a fake) but the URL's path.
                match url::Url::parse(u) {
                    Ok(parsed) => {
                        let mut p = parsed.path().to_string();
                        if let Some(q) = parsed.query() {
                            p.push('?');
                            p.push_str(q);
                        }
                        p
                    }
                    Err(_) => format!("/v1/messages/batches/{}/results", seg(batch_id)),
                }
            }
            Some(u) if u.starts_with('/') => u.to_string(),
            _ => format!("/v1/messages/batches/{}/results", seg(batch_id)),
        }
    }
}

/// A path segment from a provider id: only URL-safe characters pass unchanged.
fn seg(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

fn str_field(v: &Value, key: &str, path: &str) -> Result<String, ApiError> {
    v[key].as_str().map(str::to_string).ok_or_else(|| {
        transport(
            ErrorKind::Other,
            format!(
                "{path} answered without an `{key}`: {}",
                truncate(&v.to_string(), 200)
            ),
        )
    })
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn bytes_of(s: String) -> Vec<u8> {
    s.into_bytes()
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

async fn stream_to(resp: reqwest::Response, tmp: &Path) -> Result<u64, String> {
    let mut f = tokio::fs::File::create(tmp)
        .await
        .map_err(|e| e.to_string())?;
    let mut n = 0u64;
    let mut s = resp.bytes_stream();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        n += chunk.len() as u64;
        f.write_all(&chunk).await.map_err(|e| e.to_string())?;
    }
    f.sync_data().await.map_err(|e| e.to_string())?;
    Ok(n)
}

pub fn transport(kind: ErrorKind, message: String) -> ApiError {
    ApiError::transport(kind, message)
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
    }

    #[test]
    fn results_urls_keep_the_configured_server() {
        let ep = Endpoint {
            base_url: "http://127.0.0.1:9".into(),
            key: Secret::new("k"),
        };
        let api = BatchApi::new(ProviderKind::Anthropic, &ep, RetryPolicy::default()).unwrap();
        let abs =
            json!({"results_url": "https://api.anthropic.com/v1/messages/batches/m1/results"});
        assert_eq!(
            api.anthropic_results_path(&abs, "m1"),
            "/v1/messages/batches/m1/results"
        );
        assert_eq!(
            api.anthropic_results_path(&json!({}), "m/1"),
            "/v1/messages/batches/m%2F1/results"
        );
        assert_eq!(seg("batch_abc-1"), "batch_abc-1");
    }
}
