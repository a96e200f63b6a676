//! The fake's 200 answer: a chat completion with usage counted the way this fake counts tokens
//! (≈ 4 bytes a token), and prompt caching of a repeated prefix from 1,024 tokens on, in
//! 128-token steps, as OpenAI caches.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{estimate_tokens, lock, AppState};

/// The prompt tokens of a request as this fake counts them (≈ 4 bytes a token per message).
pub(super) fn prompt_tokens(body: &Value) -> u64 {
    let msgs = body["messages"].as_array().cloned().unwrap_or_default();
    msgs.iter()
        .map(|m| estimate_tokens(&text_of(m)) + 4)
        .sum::<u64>()
        + estimate_tokens(&body["response_format"].to_string())
}

fn text_of(m: &Value) -> String {
    match &m["content"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(super) fn completion(
    st: &AppState,
    body: &Value,
    content: Option<String>,
    refusal: Option<String>,
    finish: &str,
) -> Response {
    let msgs = body["messages"].as_array().cloned().unwrap_or_default();
    let prompt = prompt_tokens(body);
    // Prompt caching: a repeated prefix of at least 1024 tokens is served from cache in
    // 128-token steps (the first message stands for the prefix).
    let prefix = msgs.first().map(text_of).unwrap_or_default();
    let prefix_tokens = estimate_tokens(&prefix);
    let cached = {
        let mut g = lock(&st.inner);
        let seen = !g.seen_prefixes.insert(prefix.clone());
        if seen && prefix_tokens >= 1024 {
            (prefix_tokens / 128) * 128
        } else {
            0
        }
    };
    let completion_tokens =
        estimate_tokens(content.as_deref().or(refusal.as_deref()).unwrap_or("")) + 1;
    let id = lock(&st.inner).next_id;
    (
        StatusCode::OK,
        axum::Json(json!({
            "id": format!("chatcmpl-fake{id}"),
            "object": "chat.completion",
            "created": chrono::Utc::now().timestamp(),
            "model": body["model"],
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal, "annotations": []},
                "logprobs": null,
                "finish_reason": finish
            }],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
            },
            "service_tier": "default",
            "system_fingerprint": "fp_fake"
        })),
    )
        .into_response()
}
