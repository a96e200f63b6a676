//! Slow and stalled transfers: a layer over the batch routes that reads upload bodies (OpenAI
//! `POST /v1/files`, Anthropic `POST /v1/messages/batches`) and sends downloads (file content,
//! message batch results) a few bytes at a time, or stops moving bytes after a while, like a
//! slow uplink or a hung connection. It records how long each throttled transfer took, so a test
//! can show the transfer outlived the client's idle timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;

use super::{lock, Shared};

/// How one direction is slowed down.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttle {
    /// Bytes moved per step at most; the rate is `chunk` bytes per `every`.
    pub chunk: usize,
    /// Pause before a step of `chunk` bytes (shorter steps pause proportionally less).
    pub every: Duration,
    /// After this many bytes nothing moves any more (until the fake is dropped).
    pub stall_after: Option<usize>,
}

/// The throttles of a fake and what they saw.
#[derive(Debug, Default)]
pub struct Throttles {
    pub upload: Option<Throttle>,
    pub download: Option<Throttle>,
    /// Seconds each throttled transfer ran until its last byte moved (stalled ones excluded).
    pub finished: Vec<(&'static str, f64)>,
    /// The direction of every throttled transfer started.
    pub started: Vec<&'static str>,
    /// Set when the fake is dropped: stalled transfers end, so the server can shut down.
    pub released: Arc<AtomicBool>,
}

fn is_upload(method: &str, path: &str) -> bool {
    method == "POST" && (path == "/v1/files" || path == "/v1/messages/batches")
}

fn is_download(method: &str, path: &str) -> bool {
    method == "GET" && (path.ends_with("/content") || path.ends_with("/results"))
}

/// Fixes the receive buffer of the connections `listener` accepts (they inherit it).
pub fn set_receive_buffer(listener: &std::net::TcpListener, bytes: usize) {
    use std::os::fd::AsRawFd;
    let v = libc::c_int::try_from(bytes).expect("a buffer size");
    // SAFETY: a valid socket descriptor and a pointer to a c_int of the given length.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            std::ptr::addr_of!(v).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt: {}", std::io::Error::last_os_error());
}

/// The axum middleware.
pub async fn layer(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    let (up, down, released) = {
        let g = lock(&st);
        (
            g.throttle.upload,
            g.throttle.download,
            g.throttle.released.clone(),
        )
    };
    let req = match up.filter(|_| is_upload(&method, &path)) {
        Some(t) => {
            let (parts, body) = req.into_parts();
            let slow = slowed(body, t, released.clone(), st.clone(), "upload");
            Request::from_parts(parts, Body::from_stream(slow))
        }
        None => req,
    };
    let resp = next.run(req).await;
    match down.filter(|_| is_download(&method, &path) && resp.status().is_success()) {
        Some(t) => {
            let (parts, body) = resp.into_parts();
            Response::from_parts(
                parts,
                Body::from_stream(slowed(body, t, released, st, "download")),
            )
        }
        None => resp,
    }
}

/// `body` re-cut into `t.chunk`-byte pieces, each after `t.every`; nothing after
/// `t.stall_after` bytes until `released`.
fn slowed(
    body: Body,
    t: Throttle,
    released: Arc<AtomicBool>,
    st: Shared,
    what: &'static str,
) -> impl futures::Stream<Item = Result<Bytes, axum::Error>> + Send + 'static {
    let started = Instant::now();
    lock(&st).throttle.started.push(what);
    futures::stream::unfold(
        (body.into_data_stream(), Bytes::new(), 0usize, false),
        move |(mut inner, mut pending, mut moved, done)| {
            let released = released.clone();
            let st = st.clone();
            async move {
                if done {
                    return None;
                }
                if t.stall_after.is_some_and(|s| moved >= s) {
                    while !released.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    return None;
                }
                if pending.is_empty() {
                    match inner.next().await {
                        Some(Ok(b)) => pending = b,
                        Some(Err(e)) => return Some((Err(e), (inner, pending, moved, true))),
                        None => {
                            let secs = started.elapsed().as_secs_f64();
                            lock(&st).throttle.finished.push((what, secs));
                            return None;
                        }
                    }
                }
                // The pause is proportional to the bytes moved, so the rate is `chunk` per
                // `every` whatever the size of the pieces the connection hands over.
                let n = t.chunk.min(pending.len());
                tokio::time::sleep(t.every.mul_f64(n as f64 / t.chunk.max(1) as f64)).await;
                let piece = pending.split_to(n);
                moved += n;
                Some((Ok(piece), (inner, pending, moved, false)))
            }
        },
    )
}
