//! Anthropic Messages: pure request builder (one forced tool carries the JSON schema, the
//! system block carries `cache_control`), response parser.

use serde_json::{json, Value};

use std::sync::Arc;

use crate::ai::adapt::Adjustments;
use crate::ai::http::{estimate_tokens, Auth, HttpRequest};
use crate::ai::openai::{repair_text, strip_fences, truncate};
use crate::ai::{Answer, AnswerError, Endpoint, GenSettings, Prompt, Repair, Usage};

/// SDK convention: the base URL has no `/v1`; paths carry it.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
pub const MESSAGES_PATH: &str = "/v1/messages";
pub const API_VERSION: &str = "2023-06-01";
const DEFAULT_MAX_TOKENS: u64 = 2_000;

#[derive(Debug, Clone)]
pub struct Anthropic {
    pub model: String,
    pub endpoint: Endpoint,
    pub settings: GenSettings,
    /// What the adaptive fallback learned during this run (shared by every worker).
    pub adjust: Arc<Adjustments>,
}

impl Anthropic {
    pub fn new(model: &str, endpoint: Endpoint, settings: GenSettings) -> Self {
        Self {
            model: model.to_string(),
            endpoint,
            settings,
            adjust: Arc::default(),
        }
    }

    /// The Messages request body (also the `params` of a Message Batches request). Tools and
    /// the system block come first in Anthropic's cache order and never change between issues,
    /// so the `cache_control` breakpoint on the system block caches both.
    pub fn request_body(&self, prompt: &Prompt, repair: Option<&Repair>) -> Value {
        let mut messages = vec![json!({"role": "user", "content": prompt.user})];
        if let Some(r) = repair {
            messages.push(json!({"role": "assistant", "content": r.replay}));
            let tool_use_id = r.replay.as_array().and_then(|blocks| {
                blocks.iter().find_map(|b| {
                    (b.get("type").and_then(Value::as_str) == Some("tool_use"))
                        .then(|| b.get("id").and_then(Value::as_str))
                        .flatten()
                })
            });
            // A tool_use must be answered by its tool_result; otherwise plain text.
            let content = match tool_use_id {
                Some(id) => json!([{
                    "type": "tool_result",
                    "tool_use_id": id,
                    "is_error": true,
                    "content": repair_text(&r.problem),
                }]),
                None => json!(repair_text(&r.problem)),
            };
            messages.push(json!({"role": "user", "content": content}));
        }
        let thinking = self.settings.thinking_budget;
        let mut body = json!({
            "model": self.model,
            // Thinking spends its budget from max_tokens: the answer's own budget comes on top.
            "max_tokens": self
                .settings
                .max_tokens
                .unwrap_or(DEFAULT_MAX_TOKENS + thinking.unwrap_or(0)),
            "system": [{
                "type": "text",
                "text": prompt.system,
                "cache_control": {"type": "ephemeral"},
            }],
            "messages": messages,
            "tools": [{
                "name": prompt.schema_name,
                "description": prompt.schema_description,
                "input_schema": prompt.schema,
            }],
            // Forcing the tool is refused while thinking: offered instead, and an answer
            // without the call gets the repair request like any invalid answer.
            "tool_choice": match thinking {
                None => json!({"type": "tool", "name": prompt.schema_name}),
                Some(_) => json!({"type": "auto"}),
            },
        });
        match thinking {
            // While thinking only the default temperature is accepted: none is sent.
            Some(budget) => {
                body["thinking"] = json!({"type": "enabled", "budget_tokens": budget});
            }
            None => body["temperature"] = json!(self.settings.temperature.unwrap_or(0.0)),
        }
        if let Some(p) = self.settings.top_p {
            body["top_p"] = json!(p);
        }
        self.adjust.apply(&mut body);
        body
    }

    pub fn http_request(&self, body: &Value) -> HttpRequest {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        HttpRequest {
            url: format!("{}{MESSAGES_PATH}", self.endpoint.base_url),
            auth: Auth::ApiKey(self.endpoint.key.clone()),
            headers: vec![("anthropic-version", API_VERSION.to_string())],
            // The input-tokens window counts the prompt only.
            est_tokens: estimate_tokens(&bytes, 0),
            body: bytes,
        }
    }
}

/// `input_tokens` excludes cached tokens: the prompt is the sum of the three counters.
fn usage_of(v: &Value) -> Usage {
    let n = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let read = n("/usage/cache_read_input_tokens");
    let created = n("/usage/cache_creation_input_tokens");
    Usage {
        prompt_tokens: n("/usage/input_tokens") + read + created,
        cached_tokens: read,
        cache_creation_tokens: created,
        completion_tokens: n("/usage/output_tokens"),
    }
}

/// Parses a Message (200 body, or the `message` of a succeeded batch result).
pub fn parse_response(body: &[u8]) -> Result<Answer, AnswerError> {
    parse_value(&AnswerError::json(body)?)
}

/// [`parse_response`] of a body already parsed (a batch result line carries it parsed).
pub fn parse_value(v: &Value) -> Result<Answer, AnswerError> {
    let protocol = AnswerError::protocol;
    let usage = usage_of(v);
    let Some(blocks) = v.get("content").and_then(Value::as_array) else {
        return Err(protocol("the response has no content array".into(), usage));
    };
    let stop = v.get("stop_reason").and_then(Value::as_str).unwrap_or("");
    let invalid = |message: String, replay: Value| AnswerError {
        message,
        usage,
        replay: Some(replay),
    };
    if stop == "max_tokens" {
        // The tool input is cut short: replaying it would only repeat a broken call.
        return Err(invalid(
            "the answer was cut off at max_tokens (stop_reason \"max_tokens\")".into(),
            json!([{"type": "text", "text": "(my previous answer was cut off by the token limit)"}]),
        ));
    }
    let text: String = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("\n");
    if stop == "refusal" {
        return Err(invalid(
            format!("the model refused: {}", truncate(&text, 300)),
            json!([{"type": "text", "text": if text.is_empty() { "(refused)".to_string() } else { text.clone() }}]),
        ));
    }
    let tool = blocks
        .iter()
        .find(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"));
    let replay = Value::Array(blocks.clone());
    let response_id = v.get("id").and_then(Value::as_str).map(str::to_string);
    match tool.and_then(|t| t.get("input")) {
        Some(input @ Value::Object(_)) => Ok(Answer {
            value: input.clone(),
            usage,
            replay,
            response_id,
        }),
        // Some proxies hand the tool input over as a JSON string.
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(value @ Value::Object(_)) => Ok(Answer {
                value,
                usage,
                replay,
                response_id,
            }),
            _ => Err(invalid(
                "the tool input is not a JSON object".into(),
                replay,
            )),
        },
        Some(_) => Err(invalid(
            "the tool input is not a JSON object".into(),
            replay,
        )),
        None => {
            // A compatible server without tool support may answer with the JSON as text.
            if let Ok(value @ Value::Object(_)) = serde_json::from_str::<Value>(strip_fences(&text))
            {
                return Ok(Answer {
                    value,
                    usage,
                    replay,
                    response_id,
                });
            }
            let replay = if blocks.is_empty() {
                json!([{"type": "text", "text": "(no answer)"}])
            } else {
                replay
            };
            Err(invalid(
                format!("the model answered without calling the tool (stop_reason {stop:?})"),
                replay,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::Secret;

    fn client() -> Anthropic {
        Anthropic::new(
            "claude-haiku-4-5",
            Endpoint {
                base_url: "http://x".into(),
                key: Secret::new("k"),
            },
            GenSettings::default(),
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
    fn forces_the_tool_and_caches_the_system_block() {
        let b = client().request_body(&prompt(), None);
        assert_eq!(
            b["tool_choice"],
            json!({"type": "tool", "name": "product_labeling"})
        );
        assert_eq!(b["tools"][0]["input_schema"], json!({"type": "object"}));
        assert_eq!(
            b["system"][0]["cache_control"],
            json!({"type": "ephemeral"})
        );
        assert_eq!(b["max_tokens"], 2000);
        let req = client().http_request(&b);
        assert_eq!(req.url, "http://x/v1/messages");
        assert_eq!(
            req.headers,
            vec![("anthropic-version", "2023-06-01".to_string())]
        );
    }

    #[test]
    fn repair_answers_the_tool_use_with_an_error_result() {
        let replay = json!([{"type": "tool_use", "id": "toolu_1", "name": "product_labeling", "input": {"x": 1}}]);
        let b = client().request_body(
            &prompt(),
            Some(&Repair {
                replay,
                problem: "bad label".into(),
            }),
        );
        let msgs = b["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[1]["role"], "assistant");
        assert_eq!(msgs[2]["content"][0]["tool_use_id"], "toolu_1");
        assert_eq!(msgs[2]["content"][0]["is_error"], true);
    }

    #[test]
    fn parses_tool_use_and_cache_usage() {
        let ok = br#"{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"Sure"},{"type":"tool_use","id":"toolu_1","name":"product_labeling","input":{"a":1}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":200,"output_tokens":30,"cache_creation_input_tokens":0,"cache_read_input_tokens":1800}}"#;
        let a = parse_response(ok).unwrap();
        assert_eq!(a.value, json!({"a": 1}));
        assert_eq!(
            (
                a.usage.prompt_tokens,
                a.usage.cached_tokens,
                a.usage.completion_tokens
            ),
            (2000, 1800, 30)
        );
        let cut = br#"{"content":[{"type":"tool_use","id":"t","name":"p","input":{}}],"stop_reason":"max_tokens","usage":{"input_tokens":1,"output_tokens":2}}"#;
        assert!(parse_response(cut).unwrap_err().message.contains("cut off"));
        let text = br#"{"content":[{"type":"text","text":"I think kots"}],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":2}}"#;
        let e = parse_response(text).unwrap_err();
        assert!(e.message.contains("without calling the tool") && e.replay.is_some());
        for junk in [&b"nope"[..], b"{}", b"{\"content\":3}"] {
            assert!(parse_response(junk).unwrap_err().replay.is_none());
        }
    }
}
