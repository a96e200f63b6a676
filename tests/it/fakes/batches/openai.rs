//! The OpenAI side of the batch fake: Files (`/v1/files`, multipart uploads, contents) and
//! Batches (`/v1/batches`: create with line validation, retrieve, list, cancel), with how an
//! OpenAI batch ends (output and error files) and its public object.

use std::collections::{HashMap, HashSet};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{json, Value};

use super::lifecycle::{create, jsonl, next_id, shuffled, start_cancel};
use super::limits::{queue_full, too_many_tasks};
use super::routes::{error, gate, list, retrieve, with_batch, ListRules};
use super::{lock, Batch, FileObj, Inner, Kind, LineReply, Shared, TOKENS_PER_LINE};

/// The OpenAI routes (under `/v1`).
pub(super) fn routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/v1/files", post(oa_upload).get(oa_list_files))
        .route("/v1/files/{id}", get(oa_get_file))
        .route("/v1/files/{id}/content", get(oa_file_content))
        .route("/v1/batches", post(oa_create).get(list))
        .route("/v1/batches/{id}", get(retrieve))
        .route("/v1/batches/{id}/cancel", post(oa_cancel))
}

/// How OpenAI pages its batch list.
pub(super) const LIST: ListRules = ListRules {
    cursor: "after",
    max_limit: 100,
    bad_limit: "Invalid 'limit': must be between 1 and 100.",
    object: Some("list"),
};

/// Ends OpenAI batch `i`: its output and error files, counts and final status.
pub(super) fn finish(
    g: &mut Inner,
    i: usize,
    rs: Vec<(String, Option<LineReply>)>,
    model: String,
    cancelled: bool,
    processed: usize,
    total: usize,
) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    for (n, (cid, reply)) in rs.into_iter().enumerate() {
        let req = format!("req_{n:04}");
        match reply {
            Some(LineReply::Answer(v)) | Some(LineReply::Invalid(v)) => out.push((cid.clone(), json!({
                "id": format!("batch_req_{n}"), "custom_id": cid,
                "response": {"status_code": 200, "request_id": req, "body": {
                    "id": format!("chatcmpl-{n}"), "object": "chat.completion", "created": 1741570283, "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": v.to_string(), "refusal": null, "annotations": []}, "logprobs": null, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": TOKENS_PER_LINE, "completion_tokens": 100, "total_tokens": TOKENS_PER_LINE + 100, "prompt_tokens_details": {"cached_tokens": 0}}
                }}, "error": null}))),
            Some(LineReply::HttpError { status, message }) => err.push((cid.clone(), json!({
                "id": format!("batch_req_{n}"), "custom_id": cid,
                "response": {"status_code": status, "request_id": req, "body": {"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}}},
                "error": null}))),
            None => {
                let (code, message) = if cancelled {
                    ("batch_cancelled", "This request was not executed because the batch was cancelled.")
                } else {
                    ("batch_expired", "This request could not be executed before the completion window expired.")
                };
                err.push((cid.clone(), json!({"id": format!("batch_req_{n}"), "custom_id": cid, "response": null, "error": {"code": code, "message": message}})));
            }
        }
    }
    let (ok_n, err_n) = (out.len(), err.len());
    let now = chrono::Utc::now().timestamp();
    let out_id = output_file(g, "file-out", "batch_output.jsonl", out, now);
    let err_id = output_file(g, "file-err", "batch_errors.jsonl", err, now);
    let b = &mut g.batches[i];
    b.output_file_id = out_id;
    b.error_file_id = err_id;
    b.counts = (ok_n, err_n);
    b.status = if cancelled {
        "cancelled".into()
    } else if processed < total {
        "expired".into()
    } else {
        "completed".into()
    };
}

/// Stores `lines` (shuffled) as a `batch_output` file named `filename`, id `<prefix>…`, made at
/// `created_at`; no file
/// when there are none, as OpenAI leaves the output or error file id null.
fn output_file(
    g: &mut Inner,
    prefix: &str,
    filename: &str,
    lines: Vec<(String, Value)>,
    created_at: i64,
) -> Option<String> {
    if lines.is_empty() {
        return None;
    }
    let id = next_id(g, prefix);
    g.files.insert(
        id.clone(),
        FileObj {
            id: id.clone(),
            filename: filename.into(),
            purpose: "batch_output".into(),
            bytes: jsonl(&shuffled(lines)),
            created_at,
        },
    );
    Some(id)
}

/// The public object of an OpenAI batch.
pub(super) fn object(b: &Batch) -> Value {
    let total = b.lines.len();
    let created = b.created_at.timestamp();
    json!({
        "id": b.id, "object": "batch", "endpoint": "/v1/chat/completions",
        "errors": if b.invalid.is_empty() { Value::Null } else { json!({"object": "list", "data": b.invalid}) },
        "input_file_id": b.input_file_id, "completion_window": "24h", "status": b.status,
        "output_file_id": b.output_file_id, "error_file_id": b.error_file_id,
        "created_at": created, "in_progress_at": null, "expires_at": created + 86400,
        "finalizing_at": null, "completed_at": if b.status == "completed" { json!(created) } else { Value::Null },
        "failed_at": null, "expired_at": null, "cancelling_at": if b.cancel_initiated { json!(created) } else { Value::Null },
        "cancelled_at": null,
        "request_counts": {"total": if b.status == "validating" { 0 } else { total }, "completed": b.counts.0, "failed": b.counts.1},
        "metadata": b.metadata,
    })
}

fn file_object(f: &FileObj) -> Value {
    json!({"id": f.id, "object": "file", "bytes": f.bytes.len(), "created_at": f.created_at,
           "expires_at": null, "filename": f.filename, "purpose": f.purpose, "status": "processed", "status_details": null})
}

/// One part of a multipart form: (name, filename, bytes).
type FormPart = (String, Option<String>, Vec<u8>);

/// Splits a multipart/form-data body into (name, filename, bytes) parts.
fn multipart(headers: &HeaderMap, body: &[u8]) -> Result<Vec<FormPart>, String> {
    let ctype = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype.starts_with("multipart/form-data") {
        return Err(format!("expected multipart/form-data, got {ctype:?}"));
    }
    let boundary = ctype
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .ok_or("no boundary")?
        .trim_matches('"');
    let delim = format!("--{boundary}").into_bytes();
    let mut parts = Vec::new();
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay[from.min(hay.len())..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let mut pos = find(body, &delim, 0).ok_or("no first boundary")?;
    loop {
        let start = pos + delim.len();
        if body[start..].starts_with(b"--") {
            break;
        }
        let head_start = start + 2; // CRLF
        let head_end = find(body, b"\r\n\r\n", head_start).ok_or("no part headers end")?;
        let head = String::from_utf8_lossy(&body[head_start..head_end]).to_string();
        let data_start = head_end + 4;
        let next = find(body, &delim, data_start).ok_or("unterminated part")?;
        let data = body[data_start..next.saturating_sub(2)].to_vec();
        let disp = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))
            .ok_or("no content-disposition")?;
        let attr = |k: &str| {
            disp.split(';')
                .find_map(|p| p.trim().strip_prefix(&format!("{k}=")))
                .map(|v| v.trim_matches('"').to_string())
        };
        parts.push((
            attr("name").ok_or("part without a name")?,
            attr("filename"),
            data,
        ));
        pos = next;
    }
    Ok(parts)
}

async fn oa_upload(State(st): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = gate(&st, "POST", "/v1/files", &headers) {
        return *r;
    }
    let bad = |m: &str| error(Kind::OpenAi, 400, "invalid_request_error", m);
    let parts = match multipart(&headers, &body) {
        Ok(p) => p,
        Err(e) => return bad(&format!("Invalid multipart body: {e}")),
    };
    let purpose = parts
        .iter()
        .find(|p| p.0 == "purpose")
        .map(|p| String::from_utf8_lossy(&p.2).to_string());
    let Some(file) = parts.iter().find(|p| p.0 == "file") else {
        return bad("Missing required parameter: 'file'.");
    };
    match purpose.as_deref() {
        Some("batch") => {}
        Some(p) => return bad(&format!("'{p}' is not one of ['assistants', 'batch', 'fine-tune', 'vision', 'user_data', 'evals'] - 'purpose'")),
        None => return bad("Missing required parameter: 'purpose'."),
    }
    if file.2.len() > 200_000_000 {
        return bad("File is too large: batch input files are limited to 200 MB.");
    }
    let filename = file.1.clone().unwrap_or_default();
    if !filename.ends_with(".jsonl") {
        return bad("Invalid file format for Batch API. Must be .jsonl");
    }
    let mut g = lock(&st);
    let id = next_id(&mut g, "file-");
    let f = FileObj {
        id: id.clone(),
        filename,
        purpose: "batch".into(),
        bytes: file.2.clone(),
        created_at: chrono::Utc::now().timestamp(),
    };
    let obj = file_object(&f);
    g.files.insert(id, f);
    axum::Json(obj).into_response()
}

async fn oa_list_files(
    State(st): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = gate(&st, "GET", "/v1/files", &headers) {
        return *r;
    }
    let g = lock(&st);
    let mut data: Vec<Value> = g
        .files
        .values()
        .filter(|f| q.get("purpose").is_none_or(|p| *p == f.purpose))
        .map(file_object)
        .collect();
    data.sort_by(|a, b| b["id"].as_str().cmp(&a["id"].as_str()));
    axum::Json(json!({"object": "list", "data": data, "has_more": false,
        "first_id": data.first().map(|f| f["id"].clone()), "last_id": data.last().map(|f| f["id"].clone())})).into_response()
}

/// OpenAI's 404 for a file id it does not know.
fn no_such_file(id: &str) -> Response {
    error(
        Kind::OpenAi,
        404,
        "invalid_request_error",
        &format!("No such File object: {id}"),
    )
}

/// A `GET` about file `id`: [`gate`], then `f` on that file, or the 404 when there is none.
fn with_file(
    st: &Shared,
    headers: &HeaderMap,
    path: &str,
    id: &str,
    f: impl FnOnce(&FileObj) -> Response,
) -> Response {
    if let Err(r) = gate(st, "GET", path, headers) {
        return *r;
    }
    match lock(st).files.get(id) {
        Some(file) => f(file),
        None => no_such_file(id),
    }
}

async fn oa_get_file(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    with_file(&st, &headers, &format!("/v1/files/{id}"), &id, |f| {
        axum::Json(file_object(f)).into_response()
    })
}

async fn oa_file_content(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    with_file(
        &st,
        &headers,
        &format!("/v1/files/{id}/content"),
        &id,
        |f| {
            (
                [("content-type", "application/octet-stream")],
                f.bytes.clone(),
            )
                .into_response()
        },
    )
}

/// Validates request lines like the batch validator: errors carry their 1-based line.
fn validate_openai_lines(bytes: &[u8]) -> (Vec<Value>, Vec<Value>) {
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    let mut model: Option<String> = None;
    let allowed: HashSet<&str> = [
        "model",
        "messages",
        "response_format",
        "temperature",
        "max_completion_tokens",
        "reasoning_effort",
        "max_tokens",
        "n",
        "stop",
        "seed",
        "tools",
        "tool_choice",
        "store",
        "service_tier",
        "metadata",
        "top_p",
        "logprobs",
        "top_logprobs",
    ]
    .into_iter()
    .collect();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        if raw.is_empty() {
            continue;
        }
        let line = i + 1;
        let mut err = |code: &str, message: String| {
            errors.push(json!({"code": code, "message": message, "param": null, "line": line}))
        };
        let Ok(v) = serde_json::from_slice::<Value>(raw) else {
            err(
                "invalid_json_line",
                "This line is not parseable as valid JSON.".into(),
            );
            continue;
        };
        let Some(obj) = v.as_object() else {
            err("invalid_request", "Each line must be a JSON object.".into());
            continue;
        };
        let unknown: Vec<&String> = obj
            .keys()
            .filter(|k| !["custom_id", "method", "url", "body"].contains(&k.as_str()))
            .collect();
        if !unknown.is_empty() {
            err(
                "invalid_request",
                format!("Unrecognized request arguments: {unknown:?}"),
            );
        }
        match v["custom_id"].as_str() {
            Some(c) if !seen.insert(c.to_string()) => err("duplicate_custom_id", "The custom_id for this request is a duplicate of another request. The custom_id parameter must be unique for each individual request in a batch.".into()),
            Some(_) => {}
            None => err("missing_required_parameter", "Missing required parameter: 'custom_id'.".into()),
        }
        if v["method"] != "POST" {
            err("invalid_method", "The method must be POST.".into());
        }
        if v["url"] != "/v1/chat/completions" {
            err(
                "invalid_url",
                "The URL provided for this request does not match the batch endpoint.".into(),
            );
        }
        let body = &v["body"];
        if let Some(b) = body.as_object() {
            if let Some(k) = b.keys().find(|k| !allowed.contains(k.as_str())) {
                err(
                    "invalid_request",
                    format!("Unrecognized request argument supplied: {k}"),
                );
            }
            match body["model"].as_str() {
                Some(m) => match &model {
                    Some(first) if first != m => err(
                        "mismatched_model",
                        "All requests in a batch must use the same model.".into(),
                    ),
                    None => model = Some(m.to_string()),
                    _ => {}
                },
                None => err(
                    "missing_required_parameter",
                    "Missing required parameter: 'body.model'.".into(),
                ),
            }
            if body["messages"].as_array().is_none_or(|m| m.is_empty()) {
                err(
                    "invalid_request",
                    "'messages' must be a non-empty array.".into(),
                );
            }
            if body["response_format"]["type"] == "json_schema"
                && body["response_format"]["json_schema"]["strict"] != true
            {
                err(
                    "invalid_request",
                    "json_schema must be strict for this test server".into(),
                );
            }
        } else {
            err(
                "missing_required_parameter",
                "Missing required parameter: 'body'.".into(),
            );
        }
        lines.push(v);
    }
    if lines.is_empty() && errors.is_empty() {
        errors.push(json!({"code": "empty_file", "message": "The batch input file is empty.", "param": null, "line": null}));
    }
    (lines, errors)
}

async fn oa_create(State(st): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = gate(&st, "POST", "/v1/batches", &headers) {
        return *r;
    }
    let bad = |m: &str| error(Kind::OpenAi, 400, "invalid_request_error", m);
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return bad("We could not parse the JSON body of your request.");
    };
    let Some(obj) = v.as_object() else {
        return bad("The body must be a JSON object.");
    };
    if let Some(k) = obj.keys().find(|k| {
        ![
            "input_file_id",
            "endpoint",
            "completion_window",
            "metadata",
            "output_expires_after",
        ]
        .contains(&k.as_str())
    }) {
        return bad(&format!("Unrecognized request argument supplied: {k}"));
    }
    let Some(file_id) = v["input_file_id"].as_str() else {
        return bad("Missing required parameter: 'input_file_id'.");
    };
    if v["endpoint"] != "/v1/chat/completions"
        && v["endpoint"] != "/v1/responses"
        && v["endpoint"] != "/v1/embeddings"
        && v["endpoint"] != "/v1/completions"
    {
        return bad("Invalid 'endpoint'.");
    }
    if v["completion_window"] != "24h" {
        return bad("Invalid value for 'completion_window': only '24h' is supported.");
    }
    match &v["metadata"] {
        Value::Null => {}
        Value::Object(m) => {
            if m.len() > 16
                || m.iter()
                    .any(|(k, val)| k.len() > 64 || val.as_str().is_none_or(|s| s.len() > 512))
            {
                return bad("Invalid 'metadata': at most 16 string pairs, keys ≤ 64 and values ≤ 512 characters.");
            }
        }
        _ => return bad("Invalid type for 'metadata': expected an object."),
    }
    let mut g = lock(&st);
    let Some(file) = g.files.get(file_id) else {
        return no_such_file(file_id);
    };
    if file.purpose != "batch" {
        return bad("The input file must have purpose 'batch'.");
    }
    let (lines, mut invalid) = validate_openai_lines(&file.bytes);
    if let Some(refused) = too_many_tasks(&mut g, lines.len()) {
        return refused;
    }
    if let Some((code, message)) = &g.reject {
        invalid.push(json!({"code": code, "message": message, "param": null, "line": null}));
    }
    invalid.extend(queue_full(&g, &lines));
    create(&mut g, Kind::OpenAi, "batch_", "validating", lines, |b| {
        b.input_file_id = Some(file_id.to_string());
        b.invalid = invalid;
        b.metadata = v["metadata"].clone();
    })
}

async fn oa_cancel(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let path = format!("/v1/batches/{id}/cancel");
    with_batch(&st, &headers, "POST", &path, &id, |g, i| {
        let status = g.batches[i].status.clone();
        if !matches!(status.as_str(), "validating" | "in_progress" | "finalizing") {
            return error(
                Kind::OpenAi,
                409,
                "invalid_request_error",
                &format!("Cannot cancel a batch with status '{status}'."),
            );
        }
        start_cancel(g, i, "cancelling")
    })
}
