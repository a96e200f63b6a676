//! The one decoder of AI provider errors: status + headers + body of OpenAI, Anthropic and
//! compatible servers' envelopes (or none) become an [`ApiError`] saying what happened and
//! whether and when to retry; transport failures are decoded the same way.

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::ai::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400, 422: the request itself is wrong.
    BadRequest,
    /// 401: the key is missing or wrong — every other request will fail the same way.
    Auth,
    /// 403: permission problem, also run-wide.
    Permission,
    /// 404: unknown model or path, run-wide.
    NotFound,
    /// 413: body too large (often an HTML page from a proxy).
    TooLarge,
    /// 429 with a rate limit: wait and retry.
    RateLimited,
    /// Out of credit or quota (429 `insufficient_quota`, 402, Anthropic's `billing_error` and
    /// 400 "credit balance is too low"): retrying cannot help, run-wide.
    QuotaExceeded,
    /// 503 / 529: the service is overloaded.
    Overloaded,
    /// Other 5xx.
    Server,
    /// No answer in time.
    Timeout,
    /// Connection refused, reset, DNS, TLS.
    Network,
    /// Anything else (other 4xx).
    Other,
}

/// A failed call, decoded. Its text never contains the key (messages are scrubbed).
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: Option<u16>,
    pub kind: ErrorKind,
    /// Provider's error type (`rate_limit_error`, `invalid_request_error`, …).
    pub error_type: Option<String>,
    /// OpenAI's error code (`rate_limit_exceeded`, `invalid_api_key`, …).
    pub code: Option<String>,
    pub message: String,
    pub request_id: Option<String>,
    /// Delay the server asked for (`retry-after-ms`, `retry-after`, rate-limit resets).
    pub retry_after: Option<Duration>,
    /// `x-should-retry` header, which overrides the status-based decision.
    pub should_retry: Option<bool>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "HTTP {s}")?,
            None => write!(f, "{:?}", self.kind)?,
        }
        if let Some(t) = self.code.as_ref().or(self.error_type.as_ref()) {
            write!(f, " {t}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub fn retryable(&self) -> bool {
        if let Some(b) = self.should_retry {
            return b;
        }
        matches!(
            self.kind,
            ErrorKind::RateLimited
                | ErrorKind::Overloaded
                | ErrorKind::Server
                | ErrorKind::Timeout
                | ErrorKind::Network
        ) || matches!(self.status, Some(408 | 409))
    }

    /// Errors that will hit every request of the run the same way: stop starting new ones.
    pub fn is_run_wide(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Auth
                | ErrorKind::Permission
                | ErrorKind::NotFound
                | ErrorKind::QuotaExceeded
        )
    }

    pub fn transport(kind: ErrorKind, message: String) -> Self {
        Self {
            status: None,
            kind,
            error_type: None,
            code: None,
            message,
            request_id: None,
            retry_after: None,
            should_retry: None,
        }
    }
}

/// The one error decoder: status + headers + body (any envelope, or none) → [`ApiError`].
pub fn decode_error(status: u16, headers: &HeaderMap, body: &[u8], secret: &Secret) -> ApiError {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let str_at = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let (mut error_type, mut code, mut message, mut request_id) = (None, None, None, None);
    if let Some(j) = &json {
        match j.get("error") {
            // OpenAI `{error:{message,type,param,code}}`; Anthropic `{type:"error",error:{type,message}}`.
            Some(e @ Value::Object(_)) => {
                error_type = str_at(e.get("type"));
                message = str_at(e.get("message"));
                code = match e.get("code") {
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                };
            }
            // Some compatible servers: `{"error": "text"}`.
            Some(Value::String(s)) => message = Some(s.clone()),
            _ => {
                // vLLM `{object:"error",message,type,code}`; FastAPI `{detail}`.
                message = str_at(j.get("message")).or_else(|| match j.get("detail") {
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(other) => Some(other.to_string()),
                    None => None,
                });
                error_type = str_at(j.get("type")).filter(|t| t != "error");
            }
        }
        request_id = str_at(j.get("request_id"));
    }
    let message = message.unwrap_or_else(|| {
        // Proxies (e.g. a 413 from a CDN) answer with HTML or plain text.
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            "(empty body)".to_string()
        } else {
            text.chars().take(300).collect()
        }
    });
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let request_id = request_id
        .or_else(|| header("x-request-id").map(str::to_string))
        .or_else(|| header("request-id").map(str::to_string));
    let is = |s: &str| error_type.as_deref() == Some(s) || code.as_deref() == Some(s);
    let kind = match status {
        _ if out_of_credit(status, &is, &message) => ErrorKind::QuotaExceeded,
        401 => ErrorKind::Auth,
        403 => ErrorKind::Permission,
        404 => ErrorKind::NotFound,
        413 => ErrorKind::TooLarge,
        429 => ErrorKind::RateLimited,
        408 | 504 => ErrorKind::Timeout,
        503 | 529 => ErrorKind::Overloaded,
        500..=599 => ErrorKind::Server,
        400 | 422 => ErrorKind::BadRequest,
        _ => ErrorKind::Other,
    };
    let retry_after = server_delay(headers, status == 429);
    let should_retry = match header("x-should-retry") {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    };
    ApiError {
        status: Some(status),
        kind,
        error_type: error_type.map(|s| secret.scrub(&s)),
        code: code.map(|s| secret.scrub(&s)),
        message: secret.scrub(&message),
        request_id,
        retry_after,
        should_retry,
    }
}

/// The account has no money left to spend: OpenAI's 429 `insufficient_quota`, Anthropic's
/// `billing_error` and its 400 "credit balance is too low" (the status the real service uses
/// for spent prepaid credit), and any 402 (compatible servers). Every later request would get
/// the same answer, so the run stops (docs/process.md, "Run-wide errors").
fn out_of_credit(status: u16, is: &dyn Fn(&str) -> bool, message: &str) -> bool {
    status == 402
        || is("insufficient_quota")
        || is("billing_error")
        || (status == 400
            && message
                .to_ascii_lowercase()
                .contains("credit balance is too low"))
}

/// The longest delay a server's headers can ask for: longer asks are clamped to it, so a broken or
/// hostile header (`retry-after: 1e20`) can neither park a run for years nor overflow a clock.
/// Whether a run waits that long is the retry policy's `max_server_delay`.
pub const MAX_SERVER_WAIT: Duration = Duration::from_secs(15 * 60);

/// `secs` as a delay, clamped to [`MAX_SERVER_WAIT`]; nothing for negative or non-finite values.
pub fn clamped_secs(secs: f64) -> Option<Duration> {
    (secs.is_finite() && secs >= 0.0)
        .then(|| Duration::from_secs_f64(secs.min(MAX_SERVER_WAIT.as_secs_f64())))
}

/// Time from now until an RFC 3339 instant (Anthropic's reset headers), clamped; zero if past.
pub fn until_rfc3339(value: &str) -> Option<Duration> {
    let when = chrono::DateTime::parse_from_rfc3339(value).ok()?;
    let ms = (when.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_milliseconds();
    clamped_secs(ms.max(0) as f64 / 1000.0)
}

/// The delay a response asks for: `retry-after-ms`, then `retry-after` (seconds or HTTP date),
/// then — on a 429 — the reset time of an exhausted rate-limit window.
pub fn server_delay(headers: &HeaderMap, rate_limited: bool) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(d) = header("retry-after-ms")
        .and_then(|v| v.parse::<f64>().ok())
        .and_then(|ms| clamped_secs(ms / 1000.0))
    {
        return Some(d);
    }
    if let Some(v) = header("retry-after") {
        if let Ok(secs) = v.parse::<f64>() {
            if let Some(d) = clamped_secs(secs) {
                return Some(d);
            }
        } else if let Ok(when) = chrono::DateTime::parse_from_rfc2822(v) {
            let ms = (when.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_milliseconds();
            return clamped_secs(ms.max(0) as f64 / 1000.0);
        }
    }
    if rate_limited {
        return exhausted_window_reset(headers);
    }
    None
}

/// When a rate-limit window reports nothing remaining, how long until it resets.
pub(crate) fn exhausted_window_reset(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let mut longest: Option<Duration> = None;
    for window in ["requests", "tokens"] {
        // OpenAI: `x-ratelimit-remaining-requests: 0`, `x-ratelimit-reset-requests: 1m30s`.
        if header(&format!("x-ratelimit-remaining-{window}")) == Some("0") {
            if let Some(d) =
                header(&format!("x-ratelimit-reset-{window}")).and_then(parse_go_duration)
            {
                longest = longest.max(Some(d.min(MAX_SERVER_WAIT)));
            }
        }
    }
    for window in ["requests", "tokens", "input-tokens", "output-tokens"] {
        // Anthropic: `anthropic-ratelimit-requests-remaining: 0`, reset as an RFC 3339 time.
        if header(&format!("anthropic-ratelimit-{window}-remaining")) == Some("0") {
            let reset = header(&format!("anthropic-ratelimit-{window}-reset"));
            if let Some(d) = reset.and_then(until_rfc3339) {
                longest = longest.max(Some(d));
            }
        }
    }
    longest
}

/// Go-style durations as OpenAI sends them: `12ms`, `6s`, `1m30s`, `1h2m3.5s`, `250us`. Values
/// too large for a `Duration` saturate; callers clamp delays to [`MAX_SERVER_WAIT`].
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * factor;
        rest = &rest[unit_end..];
    }
    (total.is_finite() && total >= 0.0)
        .then(|| Duration::try_from_secs_f64(total).unwrap_or(Duration::MAX))
}

/// A network or timeout failure of a request, with its whole source chain, key scrubbed.
pub fn transport_error(e: &reqwest::Error, secret: &Secret) -> ApiError {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Network
    };
    // The full source chain says why (refused, reset, TLS); the key is never in it, but scrub
    // anyway since the text ends up in result failure records.
    ApiError::transport(kind, secret.scrub(&crate::http::error_chain(e)))
}

/// Response headers from pairs, for tests of header readers.
#[cfg(test)]
pub(crate) fn test_headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    use reqwest::header::{HeaderName, HeaderValue};
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            HeaderName::from_static(k),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

#[cfg(test)]
mod tests {
    use super::test_headers as headers;
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("12ms"), Some(Duration::from_millis(12)));
        assert_eq!(parse_go_duration("6s"), Some(Duration::from_secs(6)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(
            parse_go_duration("1h2m3.5s"),
            Some(Duration::from_secs_f64(3723.5))
        );
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        // Absurd values saturate, never a panic or an overflow.
        assert_eq!(
            parse_go_duration("99999999999999999999h"),
            Some(Duration::MAX)
        );
        for bad in ["", "s", "12", "1x", "-1s", "1m30"] {
            assert_eq!(parse_go_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn server_delay_prefers_ms_then_seconds_then_resets() {
        assert_eq!(
            server_delay(
                &headers(&[("retry-after-ms", "10"), ("retry-after", "5")]),
                true
            ),
            Some(Duration::from_millis(10))
        );
        assert_eq!(
            server_delay(&headers(&[("retry-after", "2")]), false),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            server_delay(&headers(&[("retry-after", "0.5")]), false),
            Some(Duration::from_millis(500))
        );
        let past = server_delay(
            &headers(&[("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")]),
            false,
        );
        assert_eq!(past, Some(Duration::ZERO));
        let h = headers(&[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "1m30s"),
        ]);
        assert_eq!(server_delay(&h, true), Some(Duration::from_secs(90)));
        assert_eq!(server_delay(&h, false), None);
        let h = headers(&[
            ("x-ratelimit-remaining-requests", "3"),
            ("x-ratelimit-reset-requests", "1s"),
        ]);
        assert_eq!(server_delay(&h, true), None);
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc3339();
        let h = headers(&[
            ("anthropic-ratelimit-requests-remaining", "0"),
            ("anthropic-ratelimit-requests-reset", &later),
        ]);
        let d = server_delay(&h, true).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert_eq!(
            server_delay(&headers(&[("retry-after", "soon")]), true),
            None
        );
        for (name, absurd) in [
            ("retry-after", "1e20"),
            ("retry-after-ms", "1e300"),
            ("retry-after", "inf"),
        ] {
            assert_eq!(
                server_delay(&headers(&[(name, absurd)]), false),
                if absurd == "inf" {
                    None
                } else {
                    Some(MAX_SERVER_WAIT)
                },
                "{name}: {absurd}"
            );
        }
        let far = headers(&[
            ("anthropic-ratelimit-requests-remaining", "0"),
            ("anthropic-ratelimit-requests-reset", "9999-12-31T23:59:59Z"),
        ]);
        assert_eq!(server_delay(&far, true), Some(MAX_SERVER_WAIT));
        let far = headers(&[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "99999999999999999999h"),
        ]);
        assert_eq!(server_delay(&far, true), Some(MAX_SERVER_WAIT));
    }

    #[test]
    fn decodes_openai_envelope_and_scrubs_the_key() {
        let key = Secret::new("sk-proj-abcdefghijklmnop");
        let body = br#"{"error":{"message":"Incorrect API key provided: sk-proj-****mnop. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        let e = decode_error(401, &headers(&[("x-request-id", "req_1")]), body, &key);
        assert_eq!(e.kind, ErrorKind::Auth);
        assert_eq!(e.code.as_deref(), Some("invalid_api_key"));
        assert_eq!(e.request_id.as_deref(), Some("req_1"));
        assert!(!e.to_string().contains("mnop"), "{e}");
        assert!(e.is_run_wide() && !e.retryable());
    }

    #[test]
    fn spent_credit_is_a_run_wide_quota_error_whatever_the_status() {
        let key = Secret::new("k");
        let credit = br#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."},"request_id":"req_1"}"#;
        let billing = br#"{"type":"error","error":{"type":"billing_error","message":"billing"}}"#;
        let other_400 = br#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}"#;
        for (status, body, quota) in [
            (400, &credit[..], true),
            (402, &billing[..], true),
            (402, &b"Payment Required"[..], true),
            (400, &other_400[..], false),
        ] {
            let e = decode_error(status, &HeaderMap::new(), body, &key);
            assert_eq!(e.kind == ErrorKind::QuotaExceeded, quota, "{status}: {e}");
            assert_eq!(e.is_run_wide(), quota, "{status}: {e}");
            assert!(!e.retryable(), "{status}: {e}");
        }
    }

    #[test]
    fn decodes_anthropic_envelope_and_statuses() {
        let key = Secret::new("k");
        let body = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_011"}"#;
        let e = decode_error(529, &HeaderMap::new(), body, &key);
        assert_eq!(
            (e.kind, e.error_type.as_deref()),
            (ErrorKind::Overloaded, Some("overloaded_error"))
        );
        assert_eq!(e.request_id.as_deref(), Some("req_011"));
        assert!(e.retryable());
        let quota = br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        let e = decode_error(429, &headers(&[("retry-after", "1")]), quota, &key);
        assert_eq!(e.kind, ErrorKind::QuotaExceeded);
        assert!(!e.retryable());
        let e = decode_error(
            413,
            &HeaderMap::new(),
            b"<html>413 Request Entity Too Large</html>",
            &key,
        );
        assert_eq!(e.kind, ErrorKind::TooLarge);
        assert!(e.message.contains("413"));
        let e = decode_error(500, &headers(&[("x-should-retry", "false")]), b"", &key);
        assert!(!e.retryable());
        assert_eq!(e.message, "(empty body)");
        let e = decode_error(
            400,
            &headers(&[("x-should-retry", "true")]),
            br#"{"detail":"bad"}"#,
            &key,
        );
        assert!(e.retryable());
        assert_eq!(e.message, "bad");
        let e = decode_error(
            400,
            &HeaderMap::new(),
            br#"{"object":"error","message":"m","type":"BadRequestError","code":400}"#,
            &key,
        );
        assert_eq!(
            (e.message.as_str(), e.error_type.as_deref()),
            ("m", Some("BadRequestError"))
        );
    }
}
