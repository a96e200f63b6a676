//! How the GitHub fake answers: logging, ETags and 304s, rate-limit headers and buckets, auth
//! and API-version checks, scripted faults; the REST and GraphQL replies come from [`super::rest`]
//! and [`super::graphql`].

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::graphql::graphql;
use super::rest::rest;
use super::{lock, Block, Fault, Inner, Logged, Reply, Target, DOCS, SECONDARY_WINDOW_MS, TOKEN};

/// GitHub's clock (ours plus the scripted offset).
pub(super) fn now(g: &Inner) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::seconds(g.clock_offset)
}

pub(super) async fn handle(
    State(state): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    {
        let mut g = lock(&state);
        g.in_flight += 1;
        g.max_in_flight = g.max_in_flight.max(g.in_flight);
    }
    let (resp, delay) = respond(&state, method, uri, headers, body);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    lock(&state).in_flight -= 1;
    resp
}

/// Everything but the optional delay, synchronously (the state lock is never held across an
/// await).
fn respond(
    state: &Mutex<Inner>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (Response, u64) {
    let target = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| uri.path().to_string());
    let mut g = lock(state);
    let graphql_kind = if uri.path() == "/graphql" {
        Some(graphql_kind(&body))
    } else {
        None
    };
    let if_none_match = headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let authorization = headers.contains_key("authorization");
    let (reply, bucket, cost) = route(&mut g, &method, &uri, &headers, &body);
    let is_graphql = bucket == "graphql";
    let mut status = reply.status;
    let mut bytes = match (&reply.raw, &reply.body) {
        (Some((b, _)), _) => b.clone(),
        (None, Some(v)) => serde_json::to_vec(v).unwrap_or_default(),
        (None, None) => Vec::new(),
    };
    // ETags on successful REST GETs; a matching If-None-Match is a free 304.
    let mut etag = None;
    let mut free = false;
    if method == Method::GET && status == StatusCode::OK && !is_graphql && reply.raw.is_none() {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut h);
        let tag = format!("W/\"{:016x}\"", h.finish());
        if if_none_match.as_deref() == Some(tag.as_str()) {
            status = StatusCode::NOT_MODIFIED;
            bytes.clear();
            free = true;
        }
        etag = Some(tag);
    }
    let exhausted = reply
        .headers
        .iter()
        .any(|(k, v)| k == "x-ratelimit-remaining" && v == "0");
    if !free && !exhausted {
        if is_graphql {
            g.graphql_used += cost;
        } else if bucket == "core" {
            g.core_used += cost;
        }
    }
    let at = now(&g);
    g.log.push(Logged {
        method: method.to_string(),
        target,
        status: status.as_u16(),
        graphql: graphql_kind,
        variables: graphql_kind.and_then(|_| {
            serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("variables").cloned())
        }),
        if_none_match: if_none_match.is_some(),
        authorization,
        at,
    });
    let (limit, used) = if is_graphql {
        (g.graphql_limit, g.graphql_used)
    } else {
        (g.core_limit, g.core_used)
    };
    let mut resp = Response::builder().status(status);
    let date = httpdate(now(&g));
    let mut std_headers: Vec<(String, String)> = vec![
        ("date".into(), date),
        (
            "x-github-request-id".into(),
            format!("FAKE:{:08X}", g.log.len()),
        ),
        (
            "x-github-media-type".into(),
            "github.v3; format=json".into(),
        ),
    ];
    if bucket != "none" {
        std_headers.extend([
            ("x-ratelimit-limit".into(), limit.to_string()),
            (
                "x-ratelimit-remaining".into(),
                limit.saturating_sub(used).to_string(),
            ),
            ("x-ratelimit-used".into(), used.to_string()),
            ("x-ratelimit-reset".into(), g.reset.to_string()),
            ("x-ratelimit-resource".into(), bucket.to_string()),
        ]);
    }
    // Scripted headers override the standard ones of the same name.
    std_headers.retain(|(k, _)| !reply.headers.iter().any(|(rk, _)| rk == k));
    for (k, v) in std_headers.iter().chain(reply.headers.iter()) {
        if let Ok(v) = HeaderValue::from_str(v) {
            resp = resp.header(k.as_str(), v);
        }
    }
    if let Some(e) = etag {
        resp = resp.header("etag", e);
    }
    if !bytes.is_empty() {
        let ct = reply
            .raw
            .as_ref()
            .map_or("application/json; charset=utf-8", |(_, ct)| *ct);
        resp = resp.header("content-type", ct);
    }
    let delay = std::mem::take(&mut g.delay_ms) + g.latency_ms;
    let resp = resp
        .body(Body::from(bytes))
        .unwrap_or_else(|_| Response::new(Body::empty()));
    (resp, delay)
}

fn graphql_kind(body: &[u8]) -> &'static str {
    let q = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("query").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    if q.contains("issue(number:") {
        "comments"
    } else if q.contains("issues(") {
        "issues"
    } else {
        "other"
    }
}

fn httpdate(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Returns the reply, its rate-limit bucket (`core`, `graphql`, `none`) and its point cost.
fn route(
    g: &mut Inner,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> (Reply, &'static str, u64) {
    let path = uri.path().to_string();
    // Uploads are served by another host on github.com; no API checks apply.
    if path.starts_with("/user-attachments/") {
        if let Some(location) = g.redirects.get(&path) {
            return (
                Reply {
                    status: StatusCode::FOUND,
                    headers: vec![("location".into(), location.clone())],
                    body: None,
                    raw: None,
                },
                "none",
                0,
            );
        }
        return match g.attachments.get(&path) {
            Some(b) => (
                Reply {
                    status: StatusCode::OK,
                    headers: Vec::new(),
                    body: None,
                    raw: Some((b.clone(), "image/png")),
                },
                "none",
                0,
            ),
            None => (Reply::error(404, "Not Found", DOCS), "none", 0),
        };
    }
    let is_graphql = path == "/graphql";
    let bucket = if is_graphql { "graphql" } else { "core" };
    if headers.get("user-agent").is_none_or(|v| v.is_empty()) {
        return (
            Reply::error(
                403,
                "Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). Check https://developer.github.com for other possible causes.",
                DOCS,
            ),
            bucket,
            0,
        );
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let token_ok = auth.split_once(' ').is_some_and(|(scheme, t)| {
        matches!(scheme.to_ascii_lowercase().as_str(), "bearer" | "token") && t == TOKEN
    });
    if !token_ok {
        return (Reply::error(401, "Bad credentials", DOCS), bucket, 0);
    }
    if let Some(v) = headers
        .get("x-github-api-version")
        .and_then(|v| v.to_str().ok())
    {
        if v != "2022-11-28" && v != "2026-03-10" {
            return (
                Reply::error(400, &format!("API version '{v}' is not supported."), DOCS),
                bucket,
                1,
            );
        }
    }
    // A limit in force refuses the request whatever it is: the client had to wait.
    let now_ms = now(g).timestamp_millis();
    if let Some(block) = g
        .blocked
        .get(bucket)
        .filter(|b| now_ms < b.until_ms)
        .cloned()
    {
        let left_s = (block.until_ms - now_ms + 999) / 1000;
        let fault = match block.fault {
            Fault::SecondaryRateLimit {
                status,
                retry_after: Some(_),
            } => Fault::SecondaryRateLimit {
                status,
                retry_after: Some(left_s.max(1) as u64),
            },
            Fault::Exhausted => Fault::PrimaryRateLimit { status: 403 },
            other => other,
        };
        if let Some(r) = fault_reply(g, &fault, bucket, Some(block.until_ms / 1000)) {
            return (r, bucket, 0);
        }
    }
    let (limit, used) = if is_graphql {
        (g.graphql_limit, g.graphql_used)
    } else {
        (g.core_limit, g.core_used)
    };
    if used >= limit && now(g).timestamp() < g.reset {
        let fault = Fault::PrimaryRateLimit { status: 403 };
        let reset = g.reset;
        if let Some(r) = fault_reply(g, &fault, bucket, Some(reset)) {
            return (r, bucket, 0);
        }
    }
    let want = if is_graphql {
        Target::GraphQl
    } else {
        Target::Rest
    };
    if let Some(pos) = g
        .faults
        .iter()
        .position(|(t, _)| *t == Target::Any || *t == want)
    {
        if let Some((_, fault)) = g.faults.remove(pos) {
            if fault == Fault::Pass {
                return route_ok(g, method, uri, body, is_graphql);
            }
            if let Fault::Delay(ms) = fault {
                g.delay_ms = ms;
                return route_ok(g, method, uri, body, is_graphql);
            }
            if let Fault::GraphQlError {
                kind,
                message,
                with_data,
            } = fault
            {
                let (mut r, b, c) = route_ok(g, method, uri, body, is_graphql);
                let data = match (&r.body, with_data) {
                    (Some(v), true) => v.get("data").cloned().unwrap_or(Value::Null),
                    _ => Value::Null,
                };
                r.body = Some(json!({
                    "data": data,
                    "errors": [{"type": kind, "path": ["repository"], "message": message}]
                }));
                return (r, b, c);
            }
            // GitHub's reset is a whole second; at least half a second ahead, so a limit is
            // never over before the client's next request could see it (a reset of "the next
            // second" is 1 ms away when the request came at .999).
            let reset = (now_ms + 500).div_euclid(1000) + 1;
            let until_ms = match fault {
                Fault::SecondaryRateLimit {
                    retry_after: Some(s),
                    ..
                } => Some(now_ms + s as i64 * 1000),
                Fault::SecondaryRateLimit { .. } => Some(now_ms + SECONDARY_WINDOW_MS),
                Fault::PrimaryRateLimit { .. }
                | Fault::GraphQlRateLimited { .. }
                | Fault::Exhausted => Some(reset * 1000),
                _ => None,
            };
            if let Some(until_ms) = until_ms {
                g.blocked.insert(
                    bucket,
                    Block {
                        until_ms,
                        fault: fault.clone(),
                    },
                );
            }
            if let Some(r) = fault_reply(g, &fault, bucket, Some(reset)) {
                return (r, bucket, 1);
            }
            // `Exhausted`: answer normally but with an empty bucket.
            let (r, b, c) = route_ok(g, method, uri, body, is_graphql);
            return (
                r.header("x-ratelimit-remaining", "0")
                    .header("x-ratelimit-reset", reset.to_string()),
                b,
                c,
            );
        }
    }
    route_ok(g, method, uri, body, is_graphql)
}

/// The answer of a scripted fault; `reset` (GitHub's clock, epoch seconds) for primary limits.
fn fault_reply(g: &Inner, fault: &Fault, bucket: &str, reset: Option<i64>) -> Option<Reply> {
    let reset = reset.unwrap_or_else(|| now(g).timestamp() + 1).to_string();
    let id = format!("FAKE:{:08X}", g.log.len());
    Some(match fault {
        Fault::PrimaryRateLimit { status } => Reply::json(
            *status,
            json!({
                "message": format!("API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please include the request ID {id}."),
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
                "status": status.to_string(),
            }),
        )
        .header("x-ratelimit-remaining", "0")
        .header("x-ratelimit-reset", reset),
        Fault::SecondaryRateLimit { status, retry_after } => {
            let r = Reply::json(
                *status,
                json!({
                    "message": format!("You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID {id}."),
                    "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
                    "status": status.to_string(),
                }),
            );
            match retry_after {
                Some(s) => r.header("retry-after", s.to_string()),
                None => r,
            }
        }
        Fault::ServerError { status } | Fault::ServerErrorAfterWriting { status } => {
            let msg = if *status == 502 || *status == 504 {
                "We couldn't respond to your request in time. Sorry about that. Please try resubmitting your request and contact us if the problem persists."
            } else {
                "Server Error"
            };
            Reply::error(*status, msg, DOCS)
        }
        Fault::GraphQlRateLimited { newer_variant } => {
            let err = if *newer_variant {
                json!({"type": "RATE_LIMIT", "code": "graphql_rate_limit", "message": "API rate limit already exceeded for user ID 1."})
            } else {
                json!({"type": "RATE_LIMITED", "message": "API rate limit exceeded for user ID 1."})
            };
            let _ = bucket;
            Reply::json(200, json!({"errors": [err]}))
                .header("x-ratelimit-remaining", "0")
                .header("x-ratelimit-reset", reset)
        }
        Fault::Exhausted | Fault::Pass | Fault::Delay(_) | Fault::GraphQlError { .. } => {
            return None
        }
    })
}

fn route_ok(
    g: &mut Inner,
    method: &Method,
    uri: &Uri,
    body: &[u8],
    is_graphql: bool,
) -> (Reply, &'static str, u64) {
    if is_graphql {
        if method != Method::POST {
            return (Reply::error(404, "Not Found", DOCS), "graphql", 0);
        }
        let (r, cost) = graphql(g, body);
        return (r, "graphql", cost);
    }
    if let Some((reply, cost)) = super::labels::route(g, method, uri, body) {
        return (reply, "core", cost);
    }
    if method != Method::GET {
        return (Reply::error(404, "Not Found", DOCS), "core", 1);
    }
    (rest(g, uri), "core", 1)
}
