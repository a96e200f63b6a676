//! Request checks of the fake Messages endpoint, in the wording of the real service's 400s.

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
