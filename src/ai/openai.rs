//! OpenAI Chat Completions: pure request builder (strict `json_schema` output), response parser.

use serde_json::{json, Value};

use std::sync::Arc;

use crate::ai::adapt::Adjustments;
use crate::ai::http::{estimate_tokens, Auth, HttpRequest};
use crate::ai::models::{self, Temperature};
use crate::ai::{Answer, AnswerError, Endpoint, GenSettings, Prompt, ProviderKind, Repair, Usage};

/// SDK convention: the base URL includes `/v1`.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// Path relative to the base URL; batch input lines use `/v1` + this as their `url`.
pub const CHAT_PATH: &str = "/chat/completions";

#[derive(Debug, Clone)]
pub struct OpenAi {
    pub model: String,
    pub endpoint: Endpoint,
    pub settings: GenSettings,
    /// What the adaptive fallback learned during this run (shared by every worker).
    pub adjust: Arc<Adjustments>,
}

impl OpenAi {
    pub fn new(model: &str, endpoint: Endpoint, settings: GenSettings) -> Self {
        Self {
            model: model.to_string(),
            endpoint,
            settings,
            adjust: Arc::default(),
        }
    }

    /// The Chat Completions request body. Pure and deterministic (keys are sorted by
    /// serde_json), so a batch JSONL line carries exactly the bytes a real-time call sends.
    pub fn request_body(&self, prompt: &Prompt, repair: Option<&Repair>) -> Value {
        let caps = models::capabilities(ProviderKind::OpenAi, &self.model);
        let effort = self.settings.reasoning_effort.as_deref();
        let reasoning = caps.reasons(effort);
        let mut messages = vec![
            json!({"role": "system", "content": prompt.system}),
            json!({"role": "user", "content": prompt.user}),
        ];
        if let Some(r) = repair {
            messages.push(r.replay.clone());
            messages.push(json!({"role": "user", "content": repair_text(&r.problem)}));
        }
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": prompt.schema_name,
                    "description": prompt.schema_description,
                    "strict": true,
                    "schema": prompt.schema,
                }
            },
            "max_completion_tokens": self.settings.max_tokens.unwrap_or(caps.default_max_tokens),
        });
        // Temperature 0 for reproducible labels where the family takes one; reasoning models
        // keep their default (the table says which).
        let default_temperature = match caps.temperature {
            Temperature::Any => Some(0.0),
            Temperature::WithoutReasoning if !reasoning => Some(0.0),
            _ => None,
        };
        if let Some(t) = self.settings.temperature.or(default_temperature) {
            body["temperature"] = json!(t);
        }
        if let Some(p) = self.settings.top_p {
            body["top_p"] = json!(p);
        }
        if let Some(e) = effort {
            body["reasoning_effort"] = json!(e);
        }
        self.adjust.apply(&mut body);
        body
    }

    pub fn http_request(&self, body: &Value) -> HttpRequest {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        // OpenAI's tokens-per-minute limit counts the completion budget asked for too.
        let budget = body["max_completion_tokens"].as_u64().unwrap_or(0);
        HttpRequest {
            url: format!("{}{CHAT_PATH}", self.endpoint.base_url),
            auth: Auth::Bearer(self.endpoint.key.clone()),
            headers: Vec::new(),
            est_tokens: estimate_tokens(&bytes, budget),
            body: bytes,
        }
    }
}

pub(crate) fn repair_text(problem: &str) -> String {
    format!(
        "Your previous answer was rejected: {problem}\nAnswer again for the same issue, \
         following the schema exactly and using only labels from the taxonomy."
    )
}

fn usage_of(v: &Value) -> Usage {
    let n = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    Usage {
        prompt_tokens: n("/usage/prompt_tokens"),
        cached_tokens: n("/usage/prompt_tokens_details/cached_tokens"),
        cache_creation_tokens: 0,
        completion_tokens: n("/usage/completion_tokens"),
    }
}

/// Parses a chat completion (200 body) into the structured answer.
pub fn parse_response(body: &[u8]) -> Result<Answer, AnswerError> {
    parse_value(&AnswerError::json(body)?)
}

/// [`parse_response`] of a body already parsed (a batch result line carries it parsed).
pub fn parse_value(v: &Value) -> Result<Answer, AnswerError> {
    let protocol = AnswerError::protocol;
    let usage = usage_of(v);
    let Some(choice) = v.pointer("/choices/0") else {
        return Err(protocol("the response has no choices[0]".into(), usage));
    };
    let Some(message) = choice.get("message").filter(|m| m.is_object()) else {
        return Err(protocol("choices[0] has no message".into(), usage));
    };
    let finish = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .unwrap_or("");
    // `content` is a string; some compatible servers send an array of text parts.
    let content = match message.get("content") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(parts)) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<String>(),
        ),
        _ => None,
    };
    let refusal = message
        .get("refusal")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let replay_text = content
        .clone()
        .or_else(|| refusal.map(str::to_string))
        .unwrap_or_default();
    let replay = json!({"role": "assistant", "content": replay_text});
    let invalid = |message: String| AnswerError {
        message,
        usage,
        replay: Some(replay.clone()),
    };
    if let Some(r) = refusal {
        return Err(invalid(format!("the model refused: {}", truncate(r, 300))));
    }
    let Some(text) = content.filter(|t| !t.trim().is_empty()) else {
        return Err(invalid(format!(
            "the answer is empty (finish_reason {finish:?})"
        )));
    };
    if finish == "length" {
        return Err(invalid(
            "the answer was cut off at the completion token limit (finish_reason \"length\")"
                .into(),
        ));
    }
    let value: Value = serde_json::from_str(strip_fences(&text))
        .map_err(|e| invalid(format!("the answer is not valid JSON: {e}")))?;
    Ok(Answer {
        value,
        usage,
        replay,
        response_id: v.get("id").and_then(Value::as_str).map(str::to_string),
    })
}

/// Compatible servers without structured outputs sometimes wrap JSON in a Markdown fence.
pub(crate) fn strip_fences(text: &str) -> &str {
    let t = text.trim();
    if let Some(rest) = t.strip_prefix("```") {
        let rest = rest.strip_prefix("json").unwrap_or(rest);
        if let Some(inner) = rest.trim_end().strip_suffix("```") {
            return inner.trim();
        }
    }
    t
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::Secret;

    fn client(model: &str, settings: GenSettings) -> OpenAi {
        OpenAi::new(
            model,
            Endpoint {
                base_url: "http://x/v1".into(),
                key: Secret::new("sk-test"),
            },
            settings,
        )
    }

    fn prompt() -> Prompt {
        Prompt {
            system: "sys".into(),
            user: "issue".into(),
            schema_name: "product_labeling".into(),
            schema_description: "d".into(),
            schema: json!({"type": "object"}),
        }
    }

    #[test]
    fn builds_strict_json_schema_requests() {
        let b = client("gpt-4o-mini", GenSettings::default()).request_body(&prompt(), None);
        assert_eq!(b["response_format"]["json_schema"]["strict"], true);
        assert_eq!(b["response_format"]["type"], "json_schema");
        assert_eq!(
            b["messages"][0],
            json!({"role": "system", "content": "sys"})
        );
        assert_eq!(b["temperature"], 0.0);
        assert!(b.get("reasoning_effort").is_none());
        let r = client(
            "o3-mini",
            GenSettings {
                reasoning_effort: Some("low".into()),
                ..Default::default()
            },
        )
        .request_body(&prompt(), None);
        assert!(r.get("temperature").is_none());
        assert_eq!(r["reasoning_effort"], "low");
        let req = client("gpt-4o-mini", GenSettings::default()).http_request(&b);
        assert_eq!(req.url, "http://x/v1/chat/completions");
        // Same input, same bytes: batch lines rely on it.
        assert_eq!(
            serde_json::to_vec(
                &client("gpt-4o-mini", GenSettings::default()).request_body(&prompt(), None)
            )
            .unwrap(),
            req.body
        );
    }

    #[test]
    fn repair_replays_the_answer_and_says_why() {
        let rep = Repair {
            replay: json!({"role": "assistant", "content": "{bad"}),
            problem: "not JSON".into(),
        };
        let b = client("gpt-4o-mini", GenSettings::default()).request_body(&prompt(), Some(&rep));
        assert_eq!(b["messages"].as_array().unwrap().len(), 4);
        assert_eq!(b["messages"][2]["content"], "{bad");
        assert!(b["messages"][3]["content"]
            .as_str()
            .unwrap()
            .contains("not JSON"));
    }

    #[test]
    fn parses_answers_refusals_and_cut_offs() {
        let ok = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"{\"a\":1}","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":100,"completion_tokens":5,"total_tokens":105,"prompt_tokens_details":{"cached_tokens":64}}}"#;
        let a = parse_response(ok).unwrap();
        assert_eq!(a.value, json!({"a": 1}));
        assert_eq!(
            (
                a.usage.prompt_tokens,
                a.usage.cached_tokens,
                a.usage.completion_tokens
            ),
            (100, 64, 5)
        );
        assert_eq!(a.response_id.as_deref(), Some("chatcmpl-1"));
        let refusal = br#"{"choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"I can't"},"finish_reason":"stop"}]}"#;
        let e = parse_response(refusal).unwrap_err();
        assert!(e.message.contains("refused") && e.replay.is_some());
        let cut = br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"{\"a\":","refusal":null},"finish_reason":"length"}],"usage":{"prompt_tokens":1,"completion_tokens":9}}"#;
        let e = parse_response(cut).unwrap_err();
        assert!(e.message.contains("cut off"));
        assert_eq!(e.usage.completion_tokens, 9);
        let bad = br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"nope"},"finish_reason":"stop"}]}"#;
        assert!(parse_response(bad)
            .unwrap_err()
            .message
            .contains("not valid JSON"));
        let fenced = br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"```json\n{\"a\":2}\n```"},"finish_reason":"stop"}]}"#;
        assert_eq!(parse_response(fenced).unwrap().value, json!({"a": 2}));
        for junk in [&b"<html>"[..], b"{}", b"{\"choices\":[]}", b"[]"] {
            let e = parse_response(junk).unwrap_err();
            assert!(e.replay.is_none(), "{e}");
        }
    }
}
