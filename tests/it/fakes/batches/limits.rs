//! Provider behaviours of the batch fake that cost money or stall a job when a client gets them
//! wrong: a create whose answer is lost after the batch was made (a gateway's 502), a per-batch
//! request cap below ours (OpenAI 400 `too_many_tasks`), and the organisation's per-model
//! enqueued-token queue (a batch that would overflow it fails validation with
//! `token_limit_exceeded`, shown on a later poll as the real service does).

use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::routes::error;
use super::{lock, FakeBatches, Inner, Kind};

/// Prompt tokens the fake counts (and reports in usage) for each request line.
pub const TOKENS_PER_LINE: usize = 1000;

impl FakeBatches {
    /// The next `times` batch creates (either provider) make their batch, then answer 502 as a
    /// gateway does when the upstream answer is lost: the client cannot know it was made.
    pub fn lose_create_answers(&self, times: usize) {
        lock(&self.state).lost_creates = times;
    }

    /// OpenAI: the enqueued-token limit of each model; a batch that would pass it fails
    /// validation with `token_limit_exceeded` (seen on a later poll, as the real service does).
    pub fn set_token_limit(&self, tokens: usize) {
        lock(&self.state).token_limit = Some(tokens);
    }

    /// OpenAI: batches of more than `n` requests are refused with 400 `too_many_tasks`.
    pub fn set_max_requests(&self, n: usize) {
        lock(&self.state).max_requests = Some(n);
    }
}

/// After a create made its batch: the 502 that loses its answer, when one is scripted.
pub(super) fn lost_answer(g: &mut Inner, kind: Kind) -> Option<Response> {
    if g.lost_creates == 0 {
        return None;
    }
    g.lost_creates -= 1;
    if let Some(r) = g.log.last_mut() {
        r.status = 502;
    }
    let t = match kind {
        Kind::OpenAi => "server_error",
        Kind::Anthropic => "api_error",
    };
    Some(error(kind, 502, t, "Bad gateway"))
}

/// OpenAI: the 400 a batch of `n` requests gets from a server with a lower per-batch cap.
pub(super) fn too_many_tasks(g: &mut Inner, n: usize) -> Option<Response> {
    let max = g.max_requests.filter(|m| n > *m)?;
    if let Some(r) = g.log.last_mut() {
        r.status = 400;
    }
    let message =
        format!("The batch input file has {n} requests, which exceeds the maximum of {max} requests per batch.");
    Some(
        (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(
                json!({"error": {"message": message, "type": "invalid_request_error",
                "param": null, "code": "too_many_tasks"}}),
            ),
        )
            .into_response(),
    )
}

/// OpenAI: the validation error of a new batch of `lines` that would overflow its model's
/// queue (what valid, unfinished batches of the model already hold, plus these lines).
pub(super) fn queue_full(g: &Inner, lines: &[Value]) -> Option<Value> {
    let limit = g.token_limit?;
    let model_of = |l: &Value| l["body"]["model"].as_str().map(str::to_string);
    let model = lines.first().and_then(model_of).unwrap_or_default();
    let queued: usize = g
        .batches
        .iter()
        .filter(|b| {
            b.kind == Kind::OpenAi
                && b.invalid.is_empty()
                && matches!(
                    b.status.as_str(),
                    "validating" | "in_progress" | "finalizing"
                )
                && b.lines.first().and_then(model_of).as_deref() == Some(model.as_str())
        })
        .map(|b| b.lines.len() * TOKENS_PER_LINE)
        .sum();
    (queued + lines.len() * TOKENS_PER_LINE > limit).then(|| {
        json!({"code": "token_limit_exceeded", "line": null, "param": null,
            "message": format!("Enqueued token limit reached for {model} in organization org-fake. Limit: {} enqueued tokens. Please try again once some in_progress batches have been completed.", group(limit))})
    })
}

/// `2000000` → `2,000,000`, as the service writes its limits.
fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
