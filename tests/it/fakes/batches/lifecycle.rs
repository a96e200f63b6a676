//! How a batch lives: made ([`create`]), moved one state per poll ([`step`]), cancelled
//! ([`start_cancel`]) and ended by its script ([`finish`]), with the ids, timestamps, shuffled
//! outputs and public objects every provider's batches share.

use std::collections::HashMap;

use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::limits::lost_answer;
use super::{anthropic, call_of, openai, Advance, Batch, End, Inner, Kind, LineReply};

pub(super) fn next_id(g: &mut Inner, prefix: &str) -> String {
    g.next_id += 1;
    format!("{prefix}{:06}", g.next_id)
}

pub(super) fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A deterministic shuffle that is never the input order (for two or more lines): reversed,
/// then the first line moved to the end.
pub(super) fn shuffled(lines: Vec<(String, Value)>) -> Vec<Value> {
    let mut v: Vec<Value> = lines.into_iter().rev().map(|(_, v)| v).collect();
    if v.len() > 2 {
        v.rotate_left(1);
    }
    v
}

pub(super) fn jsonl(lines: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// Runs the script over a batch's lines: (custom_id, reply) for the first `processed` lines.
fn replies(g: &Inner, b: &Batch, processed: usize) -> Vec<(String, Option<LineReply>)> {
    b.lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let cid = l["custom_id"].as_str().unwrap_or("").to_string();
            let body = match b.kind {
                Kind::OpenAi => &l["body"],
                Kind::Anthropic => &l["params"],
            };
            let reply = (i < processed).then(|| (g.script)(&call_of(b.kind, &cid, body)));
            (cid, reply)
        })
        .collect()
}

/// Ends batch `i` per its end plan (or as cancelled), writing its output.
pub(super) fn finish(g: &mut Inner, i: usize) {
    let (kind, status) = (g.batches[i].kind, g.batches[i].status.clone());
    let done = matches!(
        status.as_str(),
        "completed" | "failed" | "expired" | "cancelled" | "ended"
    );
    if done {
        return;
    }
    if kind == Kind::OpenAi && !g.batches[i].invalid.is_empty() {
        g.batches[i].status = "failed".into();
        return;
    }
    let cancelled = g.batches[i].cancel_initiated;
    let total = g.batches[i].lines.len();
    let processed = if cancelled {
        g.cancel_processed.min(total)
    } else {
        match g.batches[i].end {
            End::Completed => total,
            End::Expired { processed } => processed.min(total),
        }
    };
    let rs = replies(g, &g.batches[i], processed);
    let model = g.batches[i].lines.first().map(|l| match kind {
        Kind::OpenAi => l["body"]["model"].clone(),
        Kind::Anthropic => l["params"]["model"].clone(),
    });
    let model = model
        .and_then(|m| m.as_str().map(str::to_string))
        .unwrap_or_default();
    match kind {
        Kind::OpenAi => openai::finish(g, i, rs, model, cancelled, processed, total),
        Kind::Anthropic => anthropic::finish(g, i, rs, model, cancelled),
    }
}

/// One poll: moves a batch one state on (in [`Advance::OnPoll`] mode).
pub(super) fn step(g: &mut Inner, i: usize) {
    if g.advance != Advance::OnPoll {
        return;
    }
    let next = match (g.batches[i].kind, g.batches[i].status.as_str()) {
        (Kind::OpenAi, "validating") if !g.batches[i].invalid.is_empty() => Some("failed"),
        (Kind::OpenAi, "validating") => Some("in_progress"),
        (Kind::OpenAi, "in_progress") => Some("finalizing"),
        (Kind::OpenAi, "finalizing" | "cancelling") => None,
        (Kind::Anthropic, "in_progress" | "canceling") => None,
        _ => return,
    };
    match next {
        Some(s) => g.batches[i].status = s.into(),
        None => finish(g, i),
    }
}

/// Starts cancelling batch `i` (`cancelling` is the provider's name for that status); answered
/// with its object. Lines still to run end as cancelled when the batch next moves.
pub(super) fn start_cancel(g: &mut Inner, i: usize, cancelling: &str) -> Response {
    g.batches[i].status = cancelling.into();
    g.batches[i].cancel_initiated = true;
    axum::Json(batch_object(g, &g.batches[i])).into_response()
}

/// Makes a batch of `kind` (id `<prefix>…`, in `status`, of these request lines; `set` fills in
/// the rest) and answers with its object, unless the answer is to be lost ([`lost_answer`]).
pub(super) fn create(
    g: &mut Inner,
    kind: Kind,
    prefix: &str,
    status: &str,
    lines: Vec<Value>,
    set: impl FnOnce(&mut Batch),
) -> Response {
    let id = next_id(g, prefix);
    let mut batch = Batch {
        kind,
        id,
        status: status.into(),
        input_file_id: None,
        lines,
        invalid: Vec::new(),
        metadata: Value::Null,
        created_at: chrono::Utc::now(),
        output_file_id: None,
        error_file_id: None,
        counts: (0, 0),
        cancel_initiated: false,
        results: None,
        end: g.end.clone(),
        a_counts: HashMap::new(),
        line_errors: HashMap::new(),
    };
    set(&mut batch);
    g.batches.push(batch);
    if let Some(lost) = lost_answer(g, kind) {
        return lost;
    }
    let b = g.batches.last().expect("just pushed");
    axum::Json(batch_object(g, b)).into_response()
}

pub(super) fn batch_object(g: &Inner, b: &Batch) -> Value {
    match b.kind {
        Kind::OpenAi => openai::object(b),
        Kind::Anthropic => anthropic::object(g, b),
    }
}
