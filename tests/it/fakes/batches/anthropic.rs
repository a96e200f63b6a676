//! The Anthropic side of the batch fake: Message Batches (`/v1/messages/batches`: create with
//! request checks, retrieve, list, cancel, results), with how a message batch ends (the results
//! JSONL) and its public object.

use std::collections::{HashMap, HashSet};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{json, Value};

use super::super::anthropic::checks::validate;

use super::lifecycle::{create, jsonl, shuffled, start_cancel, ts};
use super::routes::{error, gate, list, retrieve, with_batch, ListRules};
use super::{lock, Batch, Inner, Kind, LineReply, Shared};

/// The Message Batches routes.
pub(super) fn routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/v1/messages/batches", post(an_create).get(list))
        .route("/v1/messages/batches/{id}", get(retrieve))
        .route("/v1/messages/batches/{id}/cancel", post(an_cancel))
        .route("/v1/messages/batches/{id}/results", get(an_results))
}

/// How Anthropic pages its batch list.
pub(super) const LIST: ListRules = ListRules {
    cursor: "after_id",
    max_limit: 1000,
    bad_limit: "limit: must be between 1 and 1000",
    object: None,
};

/// Ends message batch `i`: its results JSONL, counts and `ended` status.
pub(super) fn finish(
    g: &mut Inner,
    i: usize,
    rs: Vec<(String, Option<LineReply>)>,
    model: String,
    cancelled: bool,
) {
    let mut lines = Vec::new();
    let mut counts: HashMap<&'static str, usize> = HashMap::new();
    let tool = g.batches[i]
        .lines
        .first()
        .and_then(|l| l["params"]["tool_choice"]["name"].as_str())
        .unwrap_or("tool")
        .to_string();
    for (n, (cid, reply)) in rs.into_iter().enumerate() {
        let reply = match g.batches[i].line_errors.get(&cid) {
            Some(why) => Some(LineReply::HttpError {
                status: 400,
                message: why.clone(),
            }),
            None => reply,
        };
        let (key, result) = match reply {
            Some(LineReply::Answer(v)) | Some(LineReply::Invalid(v)) => (
                "succeeded",
                json!({"type": "succeeded", "message": {
                "id": format!("msg_{n:04}"), "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "tool_use", "id": format!("toolu_{n:04}"), "name": tool, "input": v}],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 200, "output_tokens": 80, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 800, "service_tier": "batch"}}}),
            ),
            Some(LineReply::HttpError { message, .. }) => (
                "errored",
                json!({"type": "errored", "error": {"type": "error", "error": {"type": "invalid_request_error", "message": message}, "request_id": "req_fake"}}),
            ),
            None if cancelled => ("canceled", json!({"type": "canceled"})),
            None => ("expired", json!({"type": "expired"})),
        };
        *counts.entry(key).or_insert(0) += 1;
        lines.push((cid.clone(), json!({"custom_id": cid, "result": result})));
    }
    let b = &mut g.batches[i];
    b.results = Some(jsonl(&shuffled(lines)));
    b.a_counts = counts;
    b.status = "ended".into();
}

/// The public object of a message batch.
pub(super) fn object(g: &Inner, b: &Batch) -> Value {
    let ended = b.status == "ended";
    let n = |k: &str| b.a_counts.get(k).copied().unwrap_or(0);
    json!({
        "id": b.id, "type": "message_batch", "processing_status": b.status,
        "request_counts": {
            "processing": if ended { 0 } else { b.lines.len() },
            "succeeded": n("succeeded"), "errored": n("errored"), "canceled": n("canceled"), "expired": n("expired"),
        },
        "ended_at": if ended { json!(ts(chrono::Utc::now())) } else { Value::Null },
        "created_at": ts(b.created_at),
        "expires_at": ts(b.created_at + chrono::Duration::hours(24)),
        "archived_at": null,
        "cancel_initiated_at": if b.cancel_initiated { json!(ts(b.created_at)) } else { Value::Null },
        "results_url": if ended { json!(format!("{}/v1/messages/batches/{}/results", g.base_url, b.id)) } else { Value::Null },
    })
}

async fn an_create(State(st): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = gate(&st, "POST", "/v1/messages/batches", &headers) {
        return *r;
    }
    if body.len() > 256_000_000 {
        return error(
            Kind::Anthropic,
            413,
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
        );
    }
    let bad = |m: String| error(Kind::Anthropic, 400, "invalid_request_error", &m);
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return bad("The request body is not valid JSON.".into());
    };
    if let Some(k) = v
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "requests"))
    {
        return bad(format!("{k}: Extra inputs are not permitted"));
    }
    let Some(reqs) = v["requests"].as_array() else {
        return bad("requests: Field required".into());
    };
    if reqs.is_empty() || reqs.len() > 100_000 {
        return bad(format!(
            "requests: must have between 1 and 100000 items, got {}",
            reqs.len()
        ));
    }
    let re = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    let mut seen = HashSet::new();
    let mut line_errors = HashMap::new();
    for (i, r) in reqs.iter().enumerate() {
        if let Some(k) = r
            .as_object()
            .and_then(|o| o.keys().find(|k| *k != "custom_id" && *k != "params"))
        {
            return bad(format!("requests.{i}.{k}: Extra inputs are not permitted"));
        }
        let Some(cid) = r["custom_id"].as_str().filter(|c| re(c)) else {
            return bad(format!(
                "requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
            ));
        };
        if !seen.insert(cid.to_string()) {
            return bad(format!("requests: custom_id '{cid}' is duplicated; custom_id must be unique within a batch"));
        }
        // Only the envelope is checked at creation; each request's params are validated like
        // a Messages call, and an invalid one comes back as an `errored` result.
        let p = &r["params"];
        let invalid = if p["stream"] == true {
            Err("stream: streaming is not supported in batches".to_string())
        } else {
            validate(p)
        };
        if let Err(why) = invalid {
            line_errors.insert(cid.to_string(), why);
        }
    }
    let mut g = lock(&st);
    create(
        &mut g,
        Kind::Anthropic,
        "msgbatch_",
        "in_progress",
        reqs.clone(),
        |b| b.line_errors = line_errors,
    )
}

async fn an_cancel(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let path = format!("/v1/messages/batches/{id}/cancel");
    with_batch(&st, &headers, "POST", &path, &id, |g, i| {
        if g.batches[i].status != "in_progress" {
            return error(
                Kind::Anthropic,
                400,
                "invalid_request_error",
                "Only a batch that is in progress can be canceled.",
            );
        }
        start_cancel(g, i, "canceling")
    })
}

async fn an_results(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let path = format!("/v1/messages/batches/{id}/results");
    with_batch(&st, &headers, "GET", &path, &id, |g, i| {
        match &g.batches[i].results {
            Some(bytes) => {
                ([("content-type", "application/binary")], bytes.clone()).into_response()
            }
            None => error(
                Kind::Anthropic,
                400,
                "invalid_request_error",
                &format!("Message batch {id} has not ended; results are not available yet."),
            ),
        }
    })
}
