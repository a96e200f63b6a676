//! The fake's rate limits: a requests-per-minute bucket holding one second of requests, and a
//! tokens-per-minute bucket each request draws its prompt and completion budget from, as
//! OpenAI counts them; OpenAI's 429s and `x-ratelimit-*` headers.

use std::time::Instant;

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::{error, lock, prompt_tokens, AppState, Bucket};

/// Refills bucket `b` for the time since it was last drawn from.
fn refill(b: &mut Bucket) {
    let now = Instant::now();
    b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * b.per_sec).min(b.capacity);
    b.last = now;
}

/// How long (ms, rounded up) bucket `b` takes to gain `tokens`.
fn ms_for(b: &Bucket, tokens: f64) -> u64 {
    ((tokens / b.per_sec) * 1000.0).ceil() as u64
}

/// OpenAI's 429 for a per-minute limit on `kind` (`tokens` or `requests`; `per` is TPM or RPM)
/// of `body`'s model, with `retry-after-ms` and `x-ratelimit-limit-<kind>`; the caller adds the
/// remaining and reset headers.
fn rate_limited(
    body: &Value,
    kind: &str,
    per: &str,
    limit: u64,
    used: u64,
    requested: u64,
    wait_ms: u64,
) -> Response {
    let model = body["model"].as_str().unwrap_or("");
    let msg = format!("Rate limit reached for {model} in organization org-fake on {kind} per min ({per}): Limit {limit}, Used {used}, Requested {requested}. Please try again in {wait_ms}ms. Visit https://platform.openai.com/account/rate-limits to learn more.");
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        &msg,
        kind,
        Some(kind),
        Some("rate_limit_exceeded"),
    );
    let h = r.headers_mut();
    h.insert("retry-after-ms", HeaderValue::from(wait_ms));
    h.insert(
        HeaderName::try_from(format!("x-ratelimit-limit-{kind}")).expect("h"),
        HeaderValue::from(limit),
    );
    r
}

/// Draws a request's tokens from the tokens-per-minute bucket, if there is one: the headers to
/// send (limit, remaining, ms until full), or the 429 when the bucket cannot cover it.
#[allow(clippy::type_complexity)]
pub(super) fn draw_tokens(
    st: &AppState,
    body: &Value,
    index: usize,
) -> Result<Option<(u64, u64, u64)>, Box<Response>> {
    let requested = prompt_tokens(body) + body["max_completion_tokens"].as_u64().unwrap_or(0);
    let mut g = lock(&st.inner);
    let Some(b) = g.tpm.as_mut() else {
        return Ok(None);
    };
    refill(b);
    let limit = b.limit_rpm;
    let full_ms = |b: &Bucket| ms_for(b, b.capacity - b.tokens);
    if b.tokens < requested as f64 {
        let wait_ms = ms_for(b, requested as f64 - b.tokens);
        let used = (b.capacity - b.tokens).max(0.0) as u64;
        let (remaining, reset_ms) = (b.tokens.max(0.0) as u64, full_ms(b));
        drop(g);
        let mut r = rate_limited(body, "tokens", "TPM", limit, used, requested, wait_ms);
        let h = r.headers_mut();
        h.insert("x-ratelimit-remaining-tokens", HeaderValue::from(remaining));
        h.insert(
            "x-ratelimit-reset-tokens",
            HeaderValue::from_str(&format!("{reset_ms}ms")).expect("h"),
        );
        return Err(Box::new(r));
    }
    b.tokens -= requested as f64;
    let headers = (limit, b.tokens as u64, full_ms(b));
    g.log[index].tokens = requested;
    Ok(Some(headers))
}

/// Takes one request from the requests-per-minute bucket, if there is one: the headers to send
/// (limit, remaining, ms until full), or the 429 when the bucket is empty.
#[allow(clippy::type_complexity)]
pub(super) fn draw_request(
    st: &AppState,
    body: &Value,
) -> Result<Option<(u64, u64, u64)>, Box<Response>> {
    let mut g = lock(&st.inner);
    match g.bucket.as_mut() {
        Some(b) => {
            refill(b);
            if b.tokens < 1.0 {
                let wait_ms = ms_for(b, 1.0 - b.tokens);
                let limit = b.limit_rpm;
                drop(g);
                let mut r = rate_limited(body, "requests", "RPM", limit, limit, 1, wait_ms);
                let h = r.headers_mut();
                h.insert("retry-after", HeaderValue::from(wait_ms.div_ceil(1000)));
                h.insert(
                    "x-ratelimit-remaining-requests",
                    HeaderValue::from_static("0"),
                );
                h.insert(
                    "x-ratelimit-reset-requests",
                    HeaderValue::from_str(&format!("{wait_ms}ms")).expect("h"),
                );
                return Err(Box::new(r));
            }
            b.tokens -= 1.0;
            let reset_ms = ms_for(b, b.capacity - b.tokens);
            Ok(Some((b.limit_rpm, b.tokens.floor() as u64, reset_ms)))
        }
        None => Ok(None),
    }
}
