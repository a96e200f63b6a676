//! Request checks of the fake Chat Completions endpoint, in the order and wording of the real
//! service's 400s: top-level fields allowed by OpenAI's OpenAPI schema, the sampling and
//! reasoning rules of each model family (o-series and gpt-5 take only the default temperature
//! and no top_p; gpt-5.1 and later take them only while reasoning is off; each family its own
//! reasoning_effort values), strict-mode `json_schema` rules, and the model catalogue.

use std::collections::HashSet;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::{error, AppState};

const OAS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/openai-openapi-subset.json"
));

/// Top-level fields of `CreateChatCompletionRequest` in OpenAI's OpenAPI schema (allOf resolved).
pub(super) fn allowed_request_fields() -> HashSet<String> {
    let oas: Value = serde_json::from_str(OAS).expect("OpenAPI subset parses");
    let schemas = &oas["components"]["schemas"];
    fn collect(schemas: &Value, name: &str, out: &mut HashSet<String>) {
        let s = &schemas[name];
        let parts = s
            .get("allOf")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_else(|| vec![s.clone()]);
        for part in parts {
            if let Some(r) = part.get("$ref").and_then(Value::as_str) {
                collect(schemas, r.rsplit('/').next().unwrap_or(""), out);
            } else if let Some(p) = part.get("properties").and_then(Value::as_object) {
                out.extend(p.keys().cloned());
            }
        }
    }
    let mut out = HashSet::new();
    collect(schemas, "CreateChatCompletionRequest", &mut out);
    assert!(
        out.contains("messages") && out.contains("model"),
        "schema walk failed"
    );
    out
}

/// The model ids OpenAI's OpenAPI schema lists (`ModelIdsShared`): the fake's catalogue.
pub(super) fn known_models() -> HashSet<String> {
    let oas: Value = serde_json::from_str(OAS).expect("OpenAPI subset parses");
    oas.pointer("/components/schemas/ModelIdsShared/anyOf/1/enum")
        .and_then(Value::as_array)
        .expect("ModelIdsShared enum")
        .iter()
        .filter_map(|m| m.as_str().map(str::to_string))
        .collect()
}

/// 404 `model_not_found` for a model the account cannot use, as the real service answers
/// (fine-tuned `ft:` models pass, and variants or snapshots of a listed id: `gpt-4o-mini-…`).
pub(super) fn check_model(st: &AppState, body: &Value) -> Result<(), Box<Response>> {
    let model = body["model"].as_str().unwrap_or("");
    let variant = || {
        st.models.iter().any(|m| {
            model
                .strip_prefix(m.as_str())
                .is_some_and(|rest| rest.starts_with('-'))
        })
    };
    if st.models.contains(model) || model.starts_with("ft:") || variant() {
        return Ok(());
    }
    Err(Box::new(error(
        StatusCode::NOT_FOUND,
        &format!("The model `{model}` does not exist or you do not have access to it."),
        "invalid_request_error",
        None,
        Some("model_not_found"),
    )))
}

/// How a model family treats sampling and reasoning parameters (OpenAI's reasoning guide).
#[derive(Clone, Copy, PartialEq)]
enum Family {
    /// gpt-4o, gpt-4.1, gpt-5-chat…: any temperature, no reasoning_effort.
    Chat,
    /// o-series, gpt-5: always reasoning; temperature only 1, no top_p.
    Reasoning(&'static [&'static str]),
    /// gpt-5.1 and later: reasoning off by default (`none`); temperature and top_p only
    /// while it is off.
    Newer(&'static [&'static str]),
}

fn family(model: &str) -> Family {
    let m = model.to_lowercase();
    if m.starts_with("gpt-5") && m.contains("-chat") {
        Family::Chat
    } else if m.starts_with("gpt-5.1") {
        Family::Newer(&["none", "low", "medium", "high"])
    } else if m.starts_with("gpt-5.") {
        Family::Newer(&["none", "low", "medium", "high", "xhigh"])
    } else if m.starts_with("gpt-5") {
        Family::Reasoning(&["minimal", "low", "medium", "high"])
    } else if m.starts_with('o') && m[1..].starts_with(|c: char| c.is_ascii_digit()) {
        Family::Reasoning(&["low", "medium", "high"])
    } else {
        Family::Chat
    }
}

fn is_reasoning(model: &str) -> bool {
    matches!(family(model), Family::Reasoning(_))
}

/// `'a', 'b', and 'c'`, as OpenAI lists supported values.
fn listed(values: &[&str]) -> String {
    let q: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
    match q.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{}, and {last}", rest.join(", ")),
        _ => q.join(""),
    }
}

fn unsupported_parameter(param: &str) -> Box<Response> {
    Box::new(error(
        StatusCode::BAD_REQUEST,
        &format!("Unsupported parameter: '{param}' is not supported with this model."),
        "invalid_request_error",
        Some(param),
        Some("unsupported_parameter"),
    ))
}

/// The sampling and reasoning rules of the model's family, and the parameters a compatible
/// server refuses (`rejected`).
fn check_family(
    obj: &serde_json::Map<String, Value>,
    model: &str,
    rejected: &[String],
) -> Result<(), Box<Response>> {
    for p in rejected {
        if obj.contains_key(p) {
            return Err(unsupported_parameter(p));
        }
    }
    let fam = family(model);
    let effort = obj.get("reasoning_effort").and_then(Value::as_str);
    let reasoning = match fam {
        Family::Chat => false,
        Family::Reasoning(_) => true,
        Family::Newer(_) => effort.is_some_and(|e| e != "none"),
    };
    if let (Family::Reasoning(efforts) | Family::Newer(efforts), Some(e)) = (fam, effort) {
        if !efforts.contains(&e)
            && ["none", "minimal", "low", "medium", "high", "xhigh", "max"].contains(&e)
        {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                &format!("Unsupported value: 'reasoning_effort' does not support '{e}' with this model. Supported values are: {}.", listed(efforts)),
                "invalid_request_error",
                Some("reasoning_effort"),
                Some("unsupported_value"),
            )));
        }
    }
    if reasoning && matches!(fam, Family::Newer(_)) && obj.contains_key("temperature") {
        return Err(unsupported_parameter("temperature"));
    }
    if reasoning && obj.contains_key("top_p") {
        return Err(unsupported_parameter("top_p"));
    }
    Ok(())
}

/// Request checks, in the order and wording of the real service's 400s.
pub(super) fn validate(st: &AppState, body: &Value) -> Result<(), Box<Response>> {
    let bad = |msg: String, param: Option<&str>, code: Option<&str>| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            &msg,
            "invalid_request_error",
            param,
            code,
        ))
    };
    let Some(obj) = body.as_object() else {
        return Err(bad(
            "The request body must be a JSON object.".into(),
            None,
            None,
        ));
    };
    for k in obj.keys() {
        if !st.allowed.contains(k) {
            return Err(bad(
                format!("Unrecognized request argument supplied: {k}"),
                None,
                None,
            ));
        }
    }
    let model = match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => return Err(bad("you must provide a model parameter".into(), None, None)),
    };
    let msgs = match obj.get("messages") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => {
            return Err(bad(
                "[] is too short - 'messages'".into(),
                Some("messages"),
                None,
            ))
        }
        _ => {
            return Err(bad(
                "Missing required parameter: 'messages'.".into(),
                Some("messages"),
                Some("missing_required_parameter"),
            ))
        }
    };
    for (i, m) in msgs.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if ![
            "developer",
            "system",
            "user",
            "assistant",
            "tool",
            "function",
        ]
        .contains(&role)
        {
            return Err(bad(format!("Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'."), Some(&format!("messages[{i}].role")), Some("invalid_value")));
        }
        match m.get("content") {
            Some(Value::String(_)) | Some(Value::Array(_)) => {}
            Some(Value::Null) | None if role == "assistant" => {}
            _ => return Err(bad(format!("Invalid type for 'messages[{i}].content': expected one of a string or array of objects."), Some(&format!("messages[{i}].content")), Some("invalid_type"))),
        }
    }
    if let Some(t) = obj.get("temperature") {
        let Some(t) = t.as_f64() else {
            return Err(bad(
                "Invalid type for 'temperature': expected a decimal.".into(),
                Some("temperature"),
                Some("invalid_type"),
            ));
        };
        if !(0.0..=2.0).contains(&t) {
            return Err(bad(format!("Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got {t} instead."), Some("temperature"), Some("decimal_above_max_value")));
        }
        if is_reasoning(&model) && t != 1.0 {
            return Err(bad(format!("Unsupported value: 'temperature' does not support {t} with this model. Only the default (1) value is supported."), Some("temperature"), Some("unsupported_value")));
        }
    }
    if is_reasoning(&model) && obj.contains_key("max_tokens") {
        return Err(bad("Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.".into(), Some("max_tokens"), Some("unsupported_parameter")));
    }
    if let Some(n) = obj.get("max_completion_tokens") {
        if n.as_u64().is_none_or(|n| n < 1) {
            return Err(bad(
                "Invalid 'max_completion_tokens': integer below minimum value.".into(),
                Some("max_completion_tokens"),
                Some("integer_below_min_value"),
            ));
        }
    }
    if let Some(e) = obj.get("reasoning_effort") {
        if family(&model) == Family::Chat {
            return Err(bad(
                "Unsupported parameter: 'reasoning_effort' is not supported with this model."
                    .into(),
                Some("reasoning_effort"),
                Some("unsupported_parameter"),
            ));
        }
        if !["none", "minimal", "low", "medium", "high", "xhigh", "max"]
            .contains(&e.as_str().unwrap_or(""))
        {
            return Err(bad(
                format!("Invalid value: {e}."),
                Some("reasoning_effort"),
                Some("invalid_value"),
            ));
        }
    }
    let rejected = super::lock(&st.inner).rejected.clone();
    check_family(obj, &model, &rejected)?;
    if let Some(rf) = obj.get("response_format") {
        match rf.get("type").and_then(Value::as_str) {
            Some("text") | Some("json_object") => {}
            Some("json_schema") => {
                let js = &rf["json_schema"];
                let name = js.get("name").and_then(Value::as_str).unwrap_or("");
                let name_ok = !name.is_empty()
                    && name.len() <= 64
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !name_ok {
                    return Err(bad("Invalid 'response_format.json_schema.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'.".into(), Some("response_format.json_schema.name"), Some("invalid_value")));
                }
                for k in js
                    .as_object()
                    .map(|o| o.keys().cloned().collect::<Vec<_>>())
                    .unwrap_or_default()
                {
                    if !["name", "description", "schema", "strict"].contains(&k.as_str()) {
                        return Err(bad(format!("Unrecognized request argument supplied: response_format.json_schema.{k}"), None, None));
                    }
                }
                if js.get("strict") == Some(&Value::Bool(true)) {
                    if let Err(why) = strict_schema_ok(&js["schema"], "()") {
                        return Err(bad(
                            format!("Invalid schema for response_format '{name}': {why}"),
                            Some("response_format"),
                            None,
                        ));
                    }
                }
            }
            _ => {
                return Err(bad(
                    "Invalid value for 'response_format.type'.".into(),
                    Some("response_format.type"),
                    Some("invalid_value"),
                ))
            }
        }
    }
    Ok(())
}

/// Structured Outputs' strict-mode rules: every object lists all its properties as required and
/// sets `additionalProperties: false`.
fn strict_schema_ok(s: &Value, ctx: &str) -> Result<(), String> {
    if s.get("type") == Some(&json!("object")) {
        if s.get("additionalProperties") != Some(&Value::Bool(false)) {
            return Err(format!("In context={ctx}, 'additionalProperties' is required to be supplied and to be false."));
        }
        let props = s
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let required = super::strings(s.get("required"));
        for k in props.keys() {
            if !required.contains(k) {
                return Err(format!("In context={ctx}, 'required' is required to be supplied and to be an array including every key in properties. Missing '{k}'."));
            }
        }
        for (k, v) in &props {
            strict_schema_ok(v, &format!("('properties', '{k}')"))?;
        }
    }
    if let Some(items) = s.get("items") {
        strict_schema_ok(items, &format!("{ctx}, 'items'"))?;
    }
    Ok(())
}
