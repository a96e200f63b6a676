//! What every batch route goes through ([`gate`]: the request log, auth and scripted faults), the
//! providers' error envelopes, and the handlers both providers share: one batch ([`retrieve`],
//! [`with_batch`]) and the paged batch list ([`list`]).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::lifecycle::{batch_object, step};
use super::{
    anthropic, lock, openai, Batch, Inner, Kind, Recorded, Shared, ANTHROPIC_KEY, OPENAI_KEY,
};

pub(super) fn kind_of(path: &str) -> Kind {
    if path.starts_with("/v1/messages") {
        Kind::Anthropic
    } else {
        Kind::OpenAi
    }
}

pub(super) fn error(kind: Kind, status: u16, etype: &str, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = match kind {
        Kind::OpenAi => (
            code,
            axum::Json(json!({"error": {"message": message, "type": etype, "param": null, "code": null}})),
        )
            .into_response(),
        Kind::Anthropic => (
            code,
            axum::Json(json!({"type": "error", "error": {"type": etype, "message": message}, "request_id": "req_fake"})),
        )
            .into_response(),
    };
    if status == 429 {
        resp.headers_mut()
            .insert("retry-after-ms", "5".parse().expect("header"));
        resp.headers_mut()
            .insert("retry-after", "0".parse().expect("header"));
    }
    resp
}

/// Logs the request, applies auth and scripted faults. `Err` is the response to send.
pub(super) fn gate(
    st: &Shared,
    method: &str,
    path: &str,
    headers: &HeaderMap,
) -> Result<(), Box<Response>> {
    let kind = kind_of(path);
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let verdict: Result<(), (u16, &str, String)> = (|| {
        match kind {
            Kind::OpenAi => {
                if header("authorization").as_deref() != Some(&format!("Bearer {OPENAI_KEY}")) {
                    return Err((401, "invalid_request_error", "Incorrect API key provided: sk-…. You can find your API key at https://platform.openai.com/account/api-keys.".to_string()));
                }
            }
            Kind::Anthropic => {
                if header("x-api-key").as_deref() != Some(ANTHROPIC_KEY) {
                    return Err((401, "authentication_error", "invalid x-api-key".to_string()));
                }
                if header("anthropic-version").is_none() {
                    return Err((
                        400,
                        "invalid_request_error",
                        "anthropic-version: header is required".to_string(),
                    ));
                }
            }
        }
        let mut g = lock(st);
        if let Some(f) = g
            .faults
            .iter_mut()
            .find(|f| f.remaining > 0 && f.method == method && path.starts_with(&f.path_prefix))
        {
            f.remaining -= 1;
            let (t, m) = match (kind, f.status) {
                (_, 429) => (
                    "rate_limit_error",
                    "Rate limit reached; please try again in 5ms.",
                ),
                (Kind::OpenAi, 500) => (
                    "server_error",
                    "The server had an error while processing your request.",
                ),
                (Kind::Anthropic, 500) => ("api_error", "Internal server error"),
                (Kind::Anthropic, 529) => ("overloaded_error", "Overloaded"),
                (_, 404) => ("not_found_error", "Not found"),
                _ => ("server_error", "Service unavailable"),
            };
            return Err((f.status, t, m.to_string()));
        }
        Ok(())
    })();
    let status = match &verdict {
        Ok(()) => 200,
        Err((s, _, _)) => *s,
    };
    lock(st).log.push(Recorded {
        method: method.to_string(),
        path: path.to_string(),
        status,
    });
    verdict.map_err(|(s, t, m)| Box::new(error(kind, s, t, &m)))
}

/// One page of a provider's batch list, newest first: `limit` (default 20, at most the rules'),
/// after the id in the rules' cursor parameter; `Err` is the provider's 400 for a bad limit.
fn list_page(
    st: &Shared,
    kind: Kind,
    q: &HashMap<String, String>,
    rules: &ListRules,
) -> Result<(Vec<Value>, bool), Box<Response>> {
    let limit: usize = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 20,
        Some(Ok(n)) if (1..=rules.max_limit).contains(&n) => n,
        _ => {
            return Err(Box::new(error(
                kind,
                400,
                "invalid_request_error",
                rules.bad_limit,
            )))
        }
    };
    let g = lock(st);
    let all: Vec<&Batch> = g.batches.iter().rev().filter(|b| b.kind == kind).collect();
    let start = match q.get(rules.cursor) {
        Some(a) => all
            .iter()
            .position(|b| &b.id == a)
            .map_or(all.len(), |p| p + 1),
        None => 0,
    };
    let page: Vec<Value> = all
        .iter()
        .skip(start)
        .take(limit)
        .map(|b| batch_object(&g, b))
        .collect();
    let has_more = start + page.len() < all.len();
    Ok((page, has_more))
}

/// The provider's 404 for a batch id it does not know.
fn no_batch(kind: Kind, id: &str) -> Response {
    match kind {
        Kind::OpenAi => error(
            kind,
            404,
            "invalid_request_error",
            &format!("No batch found with id '{id}'."),
        ),
        Kind::Anthropic => error(
            kind,
            404,
            "not_found_error",
            &format!("No message batch found with id {id}"),
        ),
    }
}

/// A request about batch `id` (the provider is `path`'s): [`gate`], then `f` on that batch under
/// the lock, or the provider's 404 when it has no such batch.
pub(super) fn with_batch(
    st: &Shared,
    headers: &HeaderMap,
    method: &str,
    path: &str,
    id: &str,
    f: impl FnOnce(&mut Inner, usize) -> Response,
) -> Response {
    if let Err(r) = gate(st, method, path, headers) {
        return *r;
    }
    let kind = kind_of(path);
    let mut g = lock(st);
    match g.batches.iter().position(|b| b.id == id && b.kind == kind) {
        Some(i) => f(&mut g, i),
        None => no_batch(kind, id),
    }
}

/// `GET` of one batch, either provider's route (the path says which): a poll, which moves the
/// batch a step on; answered with its object.
pub(super) async fn retrieve(
    State(st): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    with_batch(&st, &headers, "GET", uri.path(), &id, |g, i| {
        step(g, i);
        axum::Json(batch_object(g, &g.batches[i])).into_response()
    })
}

/// How a provider pages its batch list.
pub(super) struct ListRules {
    /// The query parameter of the id the page starts after.
    pub(super) cursor: &'static str,
    /// The largest `limit`.
    pub(super) max_limit: usize,
    /// The 400's message for a `limit` out of range.
    pub(super) bad_limit: &'static str,
    /// The list's `object` field, if it has one.
    pub(super) object: Option<&'static str>,
}

/// `GET` of the batch list, either provider's route: one page (see [`list_page`]) with `data`,
/// `has_more`, `first_id` and `last_id`, as the provider's [`ListRules`] say.
pub(super) async fn list(
    State(st): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = gate(&st, "GET", uri.path(), &headers) {
        return *r;
    }
    let kind = kind_of(uri.path());
    let rules = match kind {
        Kind::OpenAi => &openai::LIST,
        Kind::Anthropic => &anthropic::LIST,
    };
    let (page, has_more) = match list_page(&st, kind, &q, rules) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let mut out = json!({"data": page, "has_more": has_more,
        "first_id": page.first().map(|b| b["id"].clone()), "last_id": page.last().map(|b| b["id"].clone())});
    if let Some(object) = rules.object {
        out["object"] = json!(object);
    }
    axum::Json(out).into_response()
}
