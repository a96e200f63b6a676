//! The streamed side of the batch HTTP layer: request bodies of any size streamed from the input
//! file ([`Body`]), downloads streamed to disk, and how both are bounded and shown ([`Watch`]:
//! an idle timeout and a progress bar). The calls and their retry loop are in `api.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::BatchApi;
use crate::ai::http::{decode_error, ApiError, ErrorKind};
use crate::env::{self, EnvFn};
use crate::error::user;
use crate::http::{idle_bounded, Activity, Verdict};
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

const BOUNDARY: &str = "----github-analysis-batch-7d1f3a9c";

impl BatchApi {
    /// Content type, length and the body stream of one attempt.
    /// Streamed bodies report every chunk to `activity` and the progress bar.
    pub(super) async fn body(
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
    use super::super::seg;
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
