//! Reading GitHub's answers: whether a 403/429 is a primary or secondary rate limit and how
//! long to wait, `retry-after` and reset headers (bounded), `Link` pagination, and the error
//! message of a REST or GraphQL envelope.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;

/// GitHub's advice for a secondary limit without `retry-after`: wait at least a minute.
pub(crate) const SECONDARY_MIN_WAIT: Duration = Duration::from_secs(60);
/// A reset more than this far away is not believable (the window is one hour).
const LONGEST_RESET: Duration = Duration::from_secs(3700);

/// What a 403/429 meant, and how long to wait before trying again.
#[derive(Debug, PartialEq)]
pub(crate) enum Limit {
    Primary(Duration),
    /// `from_header`: the wait came from `retry-after` (used as is, never stretched).
    Secondary {
        wait: Duration,
        from_header: bool,
    },
}

/// Decides whether a 403/429 is a rate limit and how long to wait (GitHub's documented primary and secondary limits, as go-github reads them).
pub(crate) fn classify_limit(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Limit> {
    let retry_after = retry_after(headers);
    let remaining = header_u64(headers, "x-ratelimit-remaining");
    let reset = header_u64(headers, "x-ratelimit-reset")
        .and_then(|s| i64::try_from(s).ok())
        .and_then(|s| DateTime::from_timestamp(s, 0));
    // The reset is on GitHub's clock: measure the wait from the answer's own `Date`.
    let now = server_date(headers).unwrap_or_else(Utc::now);
    let until = |reset| until(reset, now);
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

/// Time from `now` (GitHub's clock) until `reset` (plus a second of slack, which also covers
/// the `Date` header's one-second resolution), if it is in the future and believable.
pub(crate) fn until(reset: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<Duration> {
    let d = (reset? - now).to_std().ok()? + Duration::from_secs(1);
    Some(d.min(LONGEST_RESET))
}

/// GitHub's clock when it answered (`Date` header).
pub(crate) fn server_date(headers: &HeaderMap) -> Option<DateTime<Utc>> {
    header_str(headers, "date")
        .and_then(|d| DateTime::parse_from_rfc2822(d).ok())
        .map(|d| d.to_utc())
}

/// `retry-after` in seconds, bounded so a hostile or broken value cannot park us for years.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    header_u64(headers, "retry-after").map(|s| Duration::from_secs(s).min(LONGEST_RESET))
}

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

pub(crate) fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
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
pub(crate) fn error_message(body: &[u8]) -> String {
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

pub(crate) fn error_messages(errors: &[Value]) -> String {
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

pub(crate) fn human(d: Duration) -> String {
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
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
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
    fn a_reset_is_measured_on_githubs_clock() {
        // GitHub's clock is an hour behind ours; its reset is 30 s ahead of its own clock.
        let github_now = Utc::now() - chrono::Duration::hours(1);
        let reset = (github_now.timestamp() + 30).to_string();
        let date = github_now.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let h = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &reset),
            ("date", &date),
        ]);
        match classify_limit(StatusCode::FORBIDDEN, &h, b"{}") {
            Some(Limit::Primary(w)) => {
                assert!(
                    w > Duration::from_secs(25) && w <= Duration::from_secs(32),
                    "{w:?}"
                )
            }
            other => panic!("{other:?}"),
        }
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
