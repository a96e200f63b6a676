//! Request checks of the fake Messages endpoint, in the wording of the real service's 400s, and
//! its model catalogue (unknown models get the real service's 404).

/// Model ids the fake serves (aliases and dated ids of the current and recent models).
pub const MODELS: &[&str] = &[
    "claude-opus-4-6",
    "claude-sonnet-4-6",
    "claude-opus-4-5",
    "claude-opus-4-5-20251101",
    "claude-haiku-4-5",
    "claude-haiku-4-5-20251001",
    "claude-sonnet-4-5",
    "claude-sonnet-4-5-20250929",
    "claude-opus-4-1",
    "claude-opus-4-1-20250805",
    "claude-opus-4-0",
    "claude-opus-4-20250514",
    "claude-sonnet-4-0",
    "claude-sonnet-4-20250514",
    "claude-3-7-sonnet-latest",
    "claude-3-7-sonnet-20250219",
    "claude-3-5-haiku-latest",
    "claude-3-5-haiku-20241022",
    "claude-3-haiku-20240307",
];

use serde_json::Value;

/// Most output tokens a model may be asked for (the real service refuses more); `None` for
/// models this fake does not know.
fn max_output_tokens(model: &str) -> Option<u64> {
    const TABLE: &[(&str, u64)] = &[
        ("claude-haiku-4-5", 64_000),
        ("claude-sonnet-4-5", 64_000),
        ("claude-sonnet-4", 64_000),
        ("claude-opus-4-5", 64_000),
        ("claude-opus-4-1", 32_000),
        ("claude-opus-4", 32_000),
        ("claude-3-7-sonnet", 64_000),
        ("claude-3-5-haiku", 8_192),
        ("claude-3-haiku", 4_096),
    ];
    TABLE
        .iter()
        .find(|(prefix, _)| model.starts_with(prefix))
        .map(|(_, n)| *n)
}

/// The checks of the real Messages endpoint that our requests could trip (also applied to each
/// request of a message batch, whose problems come back as `errored` results).
pub(crate) fn validate(body: &Value) -> Result<(), String> {
    const FIELDS: &[&str] = &[
        "model",
        "max_tokens",
        "messages",
        "system",
        "temperature",
        "tools",
        "tool_choice",
        "metadata",
        "stop_sequences",
        "stream",
        "top_k",
        "top_p",
        "thinking",
        "service_tier",
        "container",
        "mcp_servers",
        "context_management",
        "output_config",
        "cache_control",
        "inference_geo",
    ];
    let obj = body.as_object().ok_or("body must be an object")?;
    for k in obj.keys() {
        if !FIELDS.contains(&k.as_str()) {
            return Err(format!("{k}: Extra inputs are not permitted"));
        }
    }
    if !obj.get("model").is_some_and(Value::is_string) {
        return Err("model: Field required".into());
    }
    match obj.get("max_tokens").and_then(Value::as_u64) {
        Some(n) if n >= 1 => {
            let model = obj.get("model").and_then(Value::as_str).unwrap_or("");
            if let Some(max) = max_output_tokens(model).filter(|max| n > *max) {
                return Err(format!(
                    "max_tokens: {n} > {max}, which is the maximum allowed number of output tokens for {model}"
                ));
            }
        }
        Some(_) => return Err("max_tokens: Input should be greater than or equal to 1".into()),
        None => return Err("max_tokens: Field required".into()),
    }
    if let Some(t) = obj.get("temperature") {
        if !t.as_f64().is_some_and(|t| (0.0..=1.0).contains(&t)) {
            return Err("temperature: Input should be less than or equal to 1".into());
        }
    }
    sampling_and_thinking(obj)?;
    if let Some(system) = obj.get("system") {
        match system {
            Value::String(_) => {}
            Value::Array(blocks) => {
                for (i, b) in blocks.iter().enumerate() {
                    if b["type"] != "text" || !b["text"].is_string() {
                        return Err(format!("system.{i}: Input should be a valid text block"));
                    }
                    if let Some(cc) = b.get("cache_control") {
                        if cc["type"] != "ephemeral" {
                            return Err(format!(
                                "system.{i}.cache_control.type: Input should be 'ephemeral'"
                            ));
                        }
                        if let Some(ttl) = cc.get("ttl") {
                            if ttl != "5m" && ttl != "1h" {
                                return Err(format!(
                                    "system.{i}.cache_control.ttl: Input should be '5m' or '1h'"
                                ));
                            }
                        }
                    }
                }
            }
            _ => return Err("system: Input should be a valid string or list".into()),
        }
    }
    let mut tool_names = Vec::new();
    if let Some(tools) = obj.get("tools") {
        for (i, t) in tools
            .as_array()
            .ok_or("tools: Input should be a valid list")?
            .iter()
            .enumerate()
        {
            let name = t["name"].as_str().unwrap_or("");
            if name.is_empty()
                || name.len() > 128
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(format!(
                    "tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
                ));
            }
            if t["input_schema"]["type"] != "object" {
                return Err(format!(
                    "tools.{i}.custom.input_schema.type: Input should be 'object'"
                ));
            }
            tool_names.push(name.to_string());
        }
    }
    if let Some(tc) = obj.get("tool_choice") {
        match tc["type"].as_str() {
            Some("auto" | "any" | "none") => {}
            Some("tool") => {
                let n = tc["name"].as_str().unwrap_or("");
                if !tool_names.iter().any(|t| t == n) {
                    return Err(format!(
                        "tool_choice.tool.name: Tool '{n}' not found in provided tools"
                    ));
                }
            }
            _ => {
                return Err("tool_choice: Input tag does not match any of the expected tags".into())
            }
        }
    }
    let msgs = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages: Field required")?;
    if msgs.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    if msgs[0]["role"] != "user" {
        return Err("messages: first message must use the \"user\" role".into());
    }
    let mut pending_tool_uses: Vec<String> = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or("");
        if role != "user" && role != "assistant" {
            return Err(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            ));
        }
        let blocks: Vec<Value> = match &m["content"] {
            Value::String(_) => Vec::new(),
            Value::Array(b) => b.clone(),
            _ => {
                return Err(format!(
                    "messages.{i}.content: Input should be a valid string or list"
                ))
            }
        };
        if role == "user" {
            let results: Vec<String> = blocks
                .iter()
                .filter(|b| b["type"] == "tool_result")
                .filter_map(|b| b["tool_use_id"].as_str().map(str::to_string))
                .collect();
            for r in &results {
                if !pending_tool_uses.contains(r) {
                    return Err(format!("messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: {r}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."));
                }
            }
            if pending_tool_uses.iter().any(|p| !results.contains(p)) {
                return Err(format!("messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after"));
            }
            pending_tool_uses.clear();
        } else {
            if !pending_tool_uses.is_empty() {
                return Err(format!("messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after"));
            }
            for b in &blocks {
                match b["type"].as_str() {
                    Some("text") => {}
                    Some("thinking") if b["signature"].is_string() => {}
                    Some("thinking") => {
                        return Err(format!(
                            "messages.{i}.content: thinking.signature: Field required"
                        ))
                    }
                    Some("redacted_thinking") => {}
                    Some("tool_use") => {
                        if !b["input"].is_object() {
                            return Err(format!("messages.{i}.content: tool_use.input: Input should be a valid dictionary"));
                        }
                        pending_tool_uses.push(b["id"].as_str().unwrap_or("").to_string());
                    }
                    other => {
                        return Err(format!(
                            "messages.{i}.content: unexpected block type {other:?}"
                        ))
                    }
                }
            }
        }
    }
    if !pending_tool_uses.is_empty() {
        return Err("messages: the final assistant `tool_use` has no `tool_result`".into());
    }
    Ok(())
}

/// The minimum cacheable prompt of a model (Anthropic's prompt-caching guide): a shorter
/// prefix is processed without caching, even with a `cache_control` breakpoint.
pub fn min_cache_tokens(model: &str) -> u64 {
    const MINIMUMS: &[(&str, u64)] = &[
        ("claude-opus-4-6", 4096),
        ("claude-opus-4-5", 4096),
        ("claude-haiku-4-5", 4096),
        ("claude-sonnet-4-6", 2048),
        ("claude-3-5-haiku", 2048),
        ("claude-3-haiku", 2048),
    ];
    MINIMUMS
        .iter()
        .find(|(m, _)| model.starts_with(m))
        .map_or(1024, |(_, n)| *n)
}

/// Models released from Claude Opus 4.1 on take `temperature` or `top_p`, not both.
const ONE_OF_TEMPERATURE_TOP_P: &[&str] = &[
    "claude-opus-4-1",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
    "claude-opus-4-5",
    "claude-opus-4-6",
    "claude-sonnet-4-6",
];

/// Models without extended thinking.
const NO_THINKING: &[&str] = &["claude-3-5-haiku", "claude-3-haiku"];

/// Sampling parameters of newer models, and extended thinking: its budget, and what it
/// excludes (a temperature but 1, top_p below 0.95, forced tool use).
fn sampling_and_thinking(obj: &serde_json::Map<String, Value>) -> Result<(), String> {
    let model = obj.get("model").and_then(Value::as_str).unwrap_or("");
    if ONE_OF_TEMPERATURE_TOP_P
        .iter()
        .any(|m| model.starts_with(m))
        && obj.contains_key("temperature")
        && obj.contains_key("top_p")
    {
        return Err(
            "`temperature` and `top_p` cannot both be specified for this model. Please use only one."
                .into(),
        );
    }
    let Some(thinking) = obj.get("thinking") else {
        return Ok(());
    };
    match thinking["type"].as_str() {
        Some("disabled") => return Ok(()),
        Some("enabled") => {}
        _ => return Err("thinking: Input tag does not match any of the expected tags".into()),
    }
    if NO_THINKING.iter().any(|m| model.starts_with(m)) {
        return Err(format!("'{model}' does not support thinking."));
    }
    let budget = thinking["budget_tokens"].as_u64().unwrap_or(0);
    if budget < 1024 {
        return Err(
            "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024".into(),
        );
    }
    if obj.get("max_tokens").and_then(Value::as_u64).unwrap_or(0) <= budget {
        return Err("`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size".into());
    }
    if obj
        .get("temperature")
        .is_some_and(|t| t.as_f64() != Some(1.0))
    {
        return Err("`temperature` may only be set to 1 when thinking is enabled or in interleaved thinking mode. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#feature-compatibility".into());
    }
    if obj
        .get("top_p")
        .is_some_and(|p| p.as_f64().is_some_and(|p| p < 0.95))
    {
        return Err("`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#feature-compatibility".into());
    }
    if matches!(
        obj.get("tool_choice").and_then(|t| t["type"].as_str()),
        Some("any" | "tool")
    ) {
        return Err("Thinking may not be enabled when tool_choice forces tool use.".into());
    }
    Ok(())
}
