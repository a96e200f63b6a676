//! The adaptive fallback: when a provider answers 400 that a parameter or value is unsupported
//! (`temperature`, `top_p`, `reasoning_effort`, a forced `tool_choice` while thinking), the
//! request is changed — the parameter dropped or its value replaced — and sent once more, and the
//! change is remembered for the rest of the run (every later request carries it) and announced.
//! The capability table (`models.rs`) covers what is known up front; this covers the rest
//! (new model families, compatible servers). docs/process.md, "Models".

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::ai::errors::{ApiError, ErrorKind};
use crate::ai::models::ALL_EFFORTS;
use crate::ai::{GenSettings, ProviderKind};

/// A change every request of the run carries: the parameter's new value, or `None` to drop it.
#[derive(Debug, Default)]
pub struct Adjustments {
    changes: Mutex<BTreeMap<String, Option<Value>>>,
}

impl Clone for Adjustments {
    fn clone(&self) -> Self {
        Self {
            changes: Mutex::new(self.snapshot()),
        }
    }
}

impl Adjustments {
    fn snapshot(&self) -> BTreeMap<String, Option<Value>> {
        self.changes.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Applies every remembered change to a request body.
    pub fn apply(&self, body: &mut Value) {
        let Some(obj) = body.as_object_mut() else {
            return;
        };
        for (k, v) in self.snapshot() {
            match v {
                Some(v) => {
                    obj.insert(k, v);
                }
                None => {
                    obj.remove(&k);
                }
            }
        }
    }

    /// Remembers a change; `true` when it is new (so it is announced once).
    fn remember(&self, param: &str, value: Option<Value>) -> bool {
        let Ok(mut c) = self.changes.lock() else {
            return false;
        };
        c.insert(param.to_string(), value.clone()) != Some(value)
    }

    /// Learns from a refused request: the change it calls for is remembered, and the notice to
    /// show returned when the change is new. `None` when the error is not about an unsupported
    /// parameter or value this fallback knows how to change.
    pub fn learn(
        &self,
        provider: ProviderKind,
        error: &ApiError,
        sent: &Value,
        settings: &GenSettings,
        model: &str,
    ) -> Option<String> {
        if error.kind != ErrorKind::BadRequest {
            return None;
        }
        let (param, value) = match provider {
            ProviderKind::OpenAi => openai_change(error, sent)?,
            ProviderKind::Anthropic => anthropic_change(error, sent, settings)?,
            ProviderKind::Rules | ProviderKind::Local => return None,
        };
        let what = match &value {
            None => format!("without `{param}`"),
            Some(v) => format!("with `{param}: {v}`"),
        };
        self.remember(param, value).then(|| {
            format!(
                "{}:{model} refused a parameter ({error}); sending the rest of this run {what}",
                provider.name()
            )
        })
    }
}

/// The first `'quoted'` word of a message (OpenAI names the parameter that way).
fn quoted(message: &str) -> Option<&str> {
    let start = message.find('\'')? + 1;
    let len = message[start..].find('\'')?;
    Some(&message[start..start + len])
}

/// OpenAI: `unsupported_parameter` / `unsupported_value` (400) naming `temperature`, `top_p` or
/// `reasoning_effort`. An unsupported effort becomes the nearest supported one the message
/// lists (the next higher, else the highest); anything else is dropped.
fn openai_change(error: &ApiError, sent: &Value) -> Option<(&'static str, Option<Value>)> {
    let m = error.message.as_str();
    let unsupported = matches!(
        error.code.as_deref(),
        Some("unsupported_parameter" | "unsupported_value")
    ) || m.starts_with("Unsupported parameter")
        || m.starts_with("Unsupported value");
    if !unsupported {
        return None;
    }
    let param = ["temperature", "top_p", "reasoning_effort"]
        .into_iter()
        .find(|p| quoted(m) == Some(*p))?;
    sent.get(param)?;
    if param == "reasoning_effort" {
        if let Some(list) = m.split("Supported values are:").nth(1) {
            let supported: Vec<&str> = ALL_EFFORTS
                .into_iter()
                .filter(|e| list.contains(&format!("'{e}'")))
                .collect();
            let rank = |e: &str| ALL_EFFORTS.iter().position(|x| *x == e);
            let asked = sent[param].as_str().and_then(rank).unwrap_or(0);
            let pick = supported
                .iter()
                .find(|e| rank(e).is_some_and(|r| r >= asked))
                .or(supported.last());
            if let Some(e) = pick {
                return Some((param, Some(json!(e))));
            }
        }
    }
    Some((param, None))
}

/// Anthropic (400 `invalid_request_error`): forced tool use while thinking becomes
/// `tool_choice: auto`; a temperature refused while thinking, or alongside `top_p`, is dropped
/// (the user's own `top_p` is kept when only the temperature was ours); a refused `top_p` too.
fn anthropic_change(
    error: &ApiError,
    sent: &Value,
    settings: &GenSettings,
) -> Option<(&'static str, Option<Value>)> {
    let m = error.message.to_ascii_lowercase();
    let has = |p: &str| sent.get(p).is_some();
    if m.contains("tool_choice") && m.contains("thinking") && has("tool_choice") {
        return Some(("tool_choice", Some(json!({"type": "auto"}))));
    }
    if m.contains("temperature") && m.contains("top_p") && has("temperature") && has("top_p") {
        let drop = if settings.temperature.is_none() {
            "temperature"
        } else {
            "top_p"
        };
        return Some((drop, None));
    }
    let refused = m.contains("not supported")
        || m.contains("unsupported")
        || m.contains("may only be set")
        || m.contains("extra inputs are not permitted");
    if !refused {
        return None;
    }
    ["temperature", "top_p"]
        .into_iter()
        .find(|p| m.contains(p) && has(p))
        .map(|p| (p, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(code: Option<&str>, message: &str) -> ApiError {
        ApiError {
            status: Some(400),
            kind: ErrorKind::BadRequest,
            error_type: Some("invalid_request_error".into()),
            code: code.map(str::to_string),
            message: message.into(),
            request_id: None,
            retry_after: None,
            should_retry: None,
        }
    }

    fn learn(
        p: ProviderKind,
        e: &ApiError,
        sent: Value,
        s: &GenSettings,
    ) -> (Option<String>, Value) {
        let a = Adjustments::default();
        let note = a.learn(p, e, &sent, s, "m");
        let mut body = sent;
        a.apply(&mut body);
        (note, body)
    }

    #[test]
    fn openai_unsupported_parameters_are_dropped_and_efforts_moved() {
        let s = GenSettings::default();
        let e = bad(
            Some("unsupported_parameter"),
            "Unsupported parameter: 'top_p' is not supported with this model.",
        );
        let (note, body) = learn(
            ProviderKind::OpenAi,
            &e,
            json!({"top_p": 0.9, "model": "o3"}),
            &s,
        );
        assert!(note.unwrap().contains("without `top_p`"));
        assert_eq!(body, json!({"model": "o3"}));
        let e = bad(Some("unsupported_value"), "Unsupported value: 'reasoning_effort' does not support 'minimal' with this model. Supported values are: 'low', 'medium', and 'high'.");
        let (_, body) = learn(
            ProviderKind::OpenAi,
            &e,
            json!({"reasoning_effort": "minimal"}),
            &s,
        );
        assert_eq!(body["reasoning_effort"], "low");
        let (_, body) = learn(
            ProviderKind::OpenAi,
            &e,
            json!({"reasoning_effort": "xhigh"}),
            &s,
        );
        assert_eq!(body["reasoning_effort"], "high");
        let e = bad(Some("unsupported_value"), "Unsupported value: 'temperature' does not support 0 with this model. Only the default (1) value is supported.");
        let (_, body) = learn(ProviderKind::OpenAi, &e, json!({"temperature": 0.0}), &s);
        assert!(body.get("temperature").is_none());
        // Other 400s, and parameters the request does not carry, change nothing.
        for (code, msg) in [
            (
                None,
                "Invalid 'max_completion_tokens': integer below minimum value.",
            ),
            (
                Some("unsupported_parameter"),
                "Unsupported parameter: 'max_tokens' is not supported with this model.",
            ),
            (
                Some("unsupported_parameter"),
                "Unsupported parameter: 'top_p' is not supported with this model.",
            ),
        ] {
            let (note, _) = learn(
                ProviderKind::OpenAi,
                &bad(code, msg),
                json!({"temperature": 0.0}),
                &s,
            );
            assert!(note.is_none(), "{msg}");
        }
    }

    #[test]
    fn anthropic_thinking_and_sampling_refusals_are_adapted() {
        let s = GenSettings::default();
        let sent =
            json!({"temperature": 0.0, "top_p": 0.9, "tool_choice": {"type": "tool", "name": "x"}});
        let e = bad(
            None,
            "Thinking may not be enabled when tool_choice forces tool use.",
        );
        let (_, body) = learn(ProviderKind::Anthropic, &e, sent.clone(), &s);
        assert_eq!(body["tool_choice"], json!({"type": "auto"}));
        let e = bad(None, "`temperature` and `top_p` cannot both be specified for this model. Please use only one.");
        let user_top_p = GenSettings {
            top_p: Some(0.9),
            ..Default::default()
        };
        let (_, body) = learn(ProviderKind::Anthropic, &e, sent.clone(), &user_top_p);
        assert!(body.get("temperature").is_none() && body.get("top_p").is_some());
        let user_both = GenSettings {
            top_p: Some(0.9),
            temperature: Some(0.2),
            ..Default::default()
        };
        let (_, body) = learn(ProviderKind::Anthropic, &e, sent.clone(), &user_both);
        assert!(body.get("temperature").is_some() && body.get("top_p").is_none());
        let e = bad(
            None,
            "`temperature` may only be set to 1 when thinking is enabled.",
        );
        let (_, body) = learn(ProviderKind::Anthropic, &e, sent.clone(), &s);
        assert!(body.get("temperature").is_none());
        let (note, _) = learn(
            ProviderKind::Anthropic,
            &bad(None, "messages: Field required"),
            sent,
            &s,
        );
        assert!(note.is_none());
    }

    #[test]
    fn a_change_is_announced_once_and_kept_for_the_run() {
        let a = Adjustments::default();
        let e = bad(
            Some("unsupported_parameter"),
            "Unsupported parameter: 'top_p' is not supported with this model.",
        );
        let sent = json!({"top_p": 0.5});
        let s = GenSettings::default();
        assert!(a.learn(ProviderKind::OpenAi, &e, &sent, &s, "o3").is_some());
        assert!(a.learn(ProviderKind::OpenAi, &e, &sent, &s, "o3").is_none());
        let mut later = json!({"top_p": 0.5, "model": "o3"});
        a.apply(&mut later);
        assert_eq!(later, json!({"model": "o3"}));
    }
}
