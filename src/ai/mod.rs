//! The AI layer: model strings, the provider enum, and what every provider returns.
//!
//! Providers are pure request builders and response parsers (`openai.rs`, `anthropic.rs`) plus
//! one thin send with retries (`http.rs`), so the batch mode can build byte-identical JSONL lines
//! and reuse the same parsers on batch output without sending anything.

pub mod adapt;
pub mod anthropic;
pub mod errors;
pub mod http;
pub mod models;
pub mod openai;
pub mod pricing;
pub mod rate_gate;
pub mod secret;
mod settings;
pub mod tokens;

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::env::{
    ANTHROPIC_API_KEY as ENV_ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL as ENV_ANTHROPIC_BASE_URL,
    MODEL as ENV_MODEL, OPENAI_API_KEY as ENV_OPENAI_API_KEY,
    OPENAI_BASE_URL as ENV_OPENAI_BASE_URL,
};
use crate::error::user;
pub use secret::Secret;
pub use settings::GenSettings;

/// Default model when only the provider is known (cheap, good at structured output).
pub const DEFAULT_OPENAI_MODEL: &str = "gpt-4o-mini";
pub const DEFAULT_ANTHROPIC_MODEL: &str = "claude-haiku-4-5";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    OpenAi,
    Anthropic,
    Rules,
    /// The learned offline model of a taxonomy (`train`): like `rules`, no key, no cost.
    Local,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 4] = [Self::OpenAi, Self::Anthropic, Self::Rules, Self::Local];

    /// The name stored in `ai_results.provider` and used in model strings.
    pub fn name(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
            Self::Rules => "rules",
            Self::Local => "local",
        }
    }

    /// Offline models run here: no key, no requests, no cost.
    pub fn is_offline(self) -> bool {
        matches!(self, Self::Rules | Self::Local)
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// A parsed model string: `openai:gpt-4o-mini`, `anthropic:claude-haiku-4-5`, or `rules`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    pub provider: ProviderKind,
    /// Provider's model id; `rules` for the embedded scorer.
    pub model: String,
}

impl ModelSpec {
    pub fn rules() -> Self {
        Self {
            provider: ProviderKind::Rules,
            model: "rules".into(),
        }
    }

    /// Parses a model string. A bare provider name picks its default model; a bare model id
    /// that is obviously OpenAI's (`gpt-…`, `o3…`) or Anthropic's (`claude-…`) is accepted too.
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let s = s.trim();
        let known =
            "use `openai:MODEL`, `anthropic:MODEL`, `rules` or `local` (e.g. `openai:gpt-4o-mini`)";
        if s.is_empty() {
            return Err(user(format!("empty model string: {known}")));
        }
        let (provider, model) = match s.split_once(':') {
            Some((p, m)) => {
                let provider =
                    ProviderKind::from_name(&p.to_ascii_lowercase()).ok_or_else(|| {
                        user(format!("unknown provider {p:?} in model {s:?}: {known}"))
                    })?;
                (provider, m.trim().to_string())
            }
            None => match ProviderKind::from_name(&s.to_ascii_lowercase()) {
                Some(p) => (p, String::new()),
                None => (
                    infer_provider(s).ok_or_else(|| {
                        user(format!("cannot tell the provider of model {s:?}: {known}"))
                    })?,
                    s.to_string(),
                ),
            },
        };
        let model = match (provider, model.is_empty()) {
            (ProviderKind::Rules, _) => "rules".to_string(),
            (ProviderKind::Local, _) => "local".to_string(),
            (ProviderKind::OpenAi, true) => DEFAULT_OPENAI_MODEL.to_string(),
            (ProviderKind::Anthropic, true) => DEFAULT_ANTHROPIC_MODEL.to_string(),
            (_, false) => model,
        };
        if model.chars().any(|c| c.is_whitespace() || c.is_control()) || model.len() > 256 {
            return Err(user(format!("invalid model id {model:?}")));
        }
        Ok(Self { provider, model })
    }

    /// The canonical model string (`provider:model`, or `rules`).
    pub fn id(&self) -> String {
        match self.provider {
            ProviderKind::Rules => "rules".into(),
            ProviderKind::Local => "local".into(),
            p => format!("{}:{}", p.name(), self.model),
        }
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id())
    }
}

fn infer_provider(model: &str) -> Option<ProviderKind> {
    let m = model.to_ascii_lowercase();
    if m.starts_with("claude") {
        Some(ProviderKind::Anthropic)
    } else if m.starts_with("gpt-")
        || m.starts_with("chatgpt")
        || (m.starts_with('o') && m[1..].starts_with(|c: char| c.is_ascii_digit()))
    {
        Some(ProviderKind::OpenAi)
    } else {
        None
    }
}

/// Which model a run uses and why (the notice is printed when `rules` is a fallback).
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    pub spec: ModelSpec,
    pub notice: Option<String>,
}

/// The default order (docs/process.md): `--model` > env `GITHUB_ANALYSIS_MODEL` > OpenAI if `OPENAI_API_KEY` is set
/// > Anthropic if `ANTHROPIC_API_KEY` is set > `rules` (with a one-line notice).
pub fn resolve_model(
    cli: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<ResolvedModel> {
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let spec = if let Some(m) = cli {
        ModelSpec::parse(m)?
    } else if let Some(m) = set(ENV_MODEL) {
        ModelSpec::parse(&m).map_err(|e| e.context(format!("in {ENV_MODEL}")))?
    } else if set(ENV_OPENAI_API_KEY).is_some() {
        ModelSpec::parse("openai")?
    } else if set(ENV_ANTHROPIC_API_KEY).is_some() {
        ModelSpec::parse("anthropic")?
    } else {
        return Ok(ResolvedModel {
            spec: ModelSpec::rules(),
            notice: Some(format!(
                "no --model, {ENV_MODEL}, {ENV_OPENAI_API_KEY} or {ENV_ANTHROPIC_API_KEY}: \
                 using the offline `rules` model"
            )),
        });
    };
    Ok(ResolvedModel { spec, notice: None })
}

/// Where and how to reach a provider: key and base URL from the environment.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Base URL without a trailing slash (OpenAI's includes `/v1`, Anthropic's does not).
    pub base_url: String,
    pub key: Secret,
}

impl Endpoint {
    /// Reads the key (required) and base URL (optional) of a network provider.
    pub fn from_env(
        provider: ProviderKind,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Option<Self>> {
        let (key_var, url_var, default_url) = match provider {
            ProviderKind::Rules | ProviderKind::Local => return Ok(None),
            ProviderKind::OpenAi => (
                ENV_OPENAI_API_KEY,
                ENV_OPENAI_BASE_URL,
                openai::DEFAULT_BASE_URL,
            ),
            ProviderKind::Anthropic => (
                ENV_ANTHROPIC_API_KEY,
                ENV_ANTHROPIC_BASE_URL,
                anthropic::DEFAULT_BASE_URL,
            ),
        };
        let key = env(key_var)
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                user(format!(
                    "{key_var} is not set: export it or put it in a .env file \
                     (or use --model rules, which needs no key)"
                ))
            })?;
        if key.chars().any(|c| c.is_control()) {
            return Err(user(format!("{key_var} contains control characters")));
        }
        let base_url = env(url_var)
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| default_url.to_string());
        let parsed = url::Url::parse(&base_url)
            .map_err(|e| user(format!("{url_var} is not a valid URL ({base_url:?}): {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(user(format!(
                "{url_var} must be an http(s) URL, got {base_url:?}"
            )));
        }
        Ok(Some(Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            key: Secret::new(key),
        }))
    }
}

/// Token counts of one or more calls. `prompt_tokens` is the whole prompt, cached parts
/// included (OpenAI's convention; Anthropic's three input counters are summed into it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    /// Prompt tokens served from the provider's prompt cache (billed cheaper).
    pub cached_tokens: u64,
    /// Prompt tokens written to Anthropic's cache (billed dearer); 0 for OpenAI.
    pub cache_creation_tokens: u64,
    pub completion_tokens: u64,
}

impl Usage {
    pub fn add(&mut self, other: &Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.cached_tokens += other.cached_tokens;
        self.cache_creation_tokens += other.cache_creation_tokens;
        self.completion_tokens += other.completion_tokens;
    }
}

/// A provider-neutral prompt: the stable prefix (system) first, the issue (user) last.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// Instructions + taxonomy: identical bytes for every issue, so prompt caching works.
    pub system: String,
    /// The issue itself.
    pub user: String,
    /// Name of the JSON schema / forced tool (`[a-zA-Z0-9_-]{1,64}`).
    pub schema_name: String,
    pub schema_description: String,
    /// JSON Schema of the answer (strict-mode compatible).
    pub schema: Value,
}

/// A rejected answer to feed back for the one repair attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Repair {
    /// The provider-specific assistant turn to replay (what the model said).
    pub replay: Value,
    /// Why it was rejected, in words the model can act on.
    pub problem: String,
}

/// A successfully parsed answer: the structured JSON the model produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub value: Value,
    pub usage: Usage,
    /// The assistant turn as the provider returned it, for a repair request.
    pub replay: Value,
    /// The provider's response id (`chatcmpl-…`, `msg_…`).
    pub response_id: Option<String>,
}

/// A 200 response whose content cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerError {
    pub message: String,
    pub usage: Usage,
    /// Set when the model produced something a repair request can correct (bad JSON, cut off);
    /// `None` when the body is not the provider's response shape at all.
    pub replay: Option<Value>,
}

impl AnswerError {
    /// A body that is not the provider's response shape (nothing to repair).
    pub fn protocol(message: String, usage: Usage) -> Self {
        Self {
            message,
            usage,
            replay: None,
        }
    }

    /// Parses a 200 body as JSON.
    pub fn json(body: &[u8]) -> Result<Value, Self> {
        serde_json::from_slice(body)
            .map_err(|e| Self::protocol(format!("the response is not JSON: {e}"), Usage::default()))
    }
}

impl fmt::Display for AnswerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A ready-to-use model: the provider with its endpoint and settings. `Rules` needs nothing.
#[derive(Debug, Clone)]
pub enum Provider {
    OpenAi(openai::OpenAi),
    Anthropic(anthropic::Anthropic),
    Rules,
}

impl Provider {
    pub fn new(
        spec: &ModelSpec,
        endpoint: Option<Endpoint>,
        settings: GenSettings,
    ) -> anyhow::Result<Self> {
        Ok(match (spec.provider, endpoint) {
            // Both offline models run in the processor; the provider only says "no requests".
            (ProviderKind::Rules | ProviderKind::Local, _) => Self::Rules,
            (ProviderKind::OpenAi, Some(ep)) => {
                Self::OpenAi(openai::OpenAi::new(&spec.model, ep, settings))
            }
            (ProviderKind::Anthropic, Some(ep)) => {
                Self::Anthropic(anthropic::Anthropic::new(&spec.model, ep, settings))
            }
            (p, None) => anyhow::bail!("provider {} needs an endpoint", p.name()),
        })
    }

    pub fn kind(&self) -> ProviderKind {
        match self {
            Self::OpenAi(_) => ProviderKind::OpenAi,
            Self::Anthropic(_) => ProviderKind::Anthropic,
            Self::Rules => ProviderKind::Rules,
        }
    }

    /// The request body for a prompt (and an optional repair turn). Pure: batch lines use it too.
    pub fn request_body(&self, prompt: &Prompt, repair: Option<&Repair>) -> Option<Value> {
        match self {
            Self::OpenAi(p) => Some(p.request_body(prompt, repair)),
            Self::Anthropic(p) => Some(p.request_body(prompt, repair)),
            Self::Rules => None,
        }
    }

    /// Parses a 200 response body into the structured answer. Pure: batch output uses it too.
    pub fn parse_response(&self, body: &[u8]) -> Result<Answer, AnswerError> {
        match self {
            Self::OpenAi(_) => openai::parse_response(body),
            Self::Anthropic(_) => anthropic::parse_response(body),
            Self::Rules => Err(AnswerError {
                message: "the rules model has no responses to parse".into(),
                usage: Usage::default(),
                replay: None,
            }),
        }
    }

    /// [`Self::parse_response`] of a body already parsed (batch result lines).
    pub fn parse_value(&self, body: &Value) -> Result<Answer, AnswerError> {
        match self {
            Self::OpenAi(_) => openai::parse_value(body),
            Self::Anthropic(_) => anthropic::parse_value(body),
            Self::Rules => self.parse_response(b""),
        }
    }

    /// The HTTP request (URL, headers, body bytes) for a body built by [`Self::request_body`].
    pub fn http_request(&self, body: &Value) -> Option<http::HttpRequest> {
        match self {
            Self::OpenAi(p) => Some(p.http_request(body)),
            Self::Anthropic(p) => Some(p.http_request(body)),
            Self::Rules => None,
        }
    }

    /// The adaptive fallback (`adapt.rs`): learns from a 400 refusing a parameter of the `sent`
    /// body, for every later request of the run. The notice to show when the change is new.
    pub fn adapt(&self, error: &errors::ApiError, sent: &Value) -> Option<String> {
        match self {
            Self::OpenAi(p) => {
                p.adjust
                    .learn(ProviderKind::OpenAi, error, sent, &p.settings, &p.model)
            }
            Self::Anthropic(p) => {
                p.adjust
                    .learn(ProviderKind::Anthropic, error, sent, &p.settings, &p.model)
            }
            Self::Rules => None,
        }
    }

    pub fn secret(&self) -> Option<&Secret> {
        match self {
            Self::OpenAi(p) => Some(&p.endpoint.key),
            Self::Anthropic(p) => Some(&p.endpoint.key),
            Self::Rules => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn parses_model_strings() {
        let m = ModelSpec::parse("openai:gpt-4o-mini").unwrap();
        assert_eq!(
            (m.provider, m.model.as_str()),
            (ProviderKind::OpenAi, "gpt-4o-mini")
        );
        assert_eq!(
            ModelSpec::parse("anthropic:claude-sonnet-4-5")
                .unwrap()
                .id(),
            "anthropic:claude-sonnet-4-5"
        );
        assert_eq!(ModelSpec::parse("rules").unwrap(), ModelSpec::rules());
        assert_eq!(
            ModelSpec::parse("openai").unwrap().model,
            DEFAULT_OPENAI_MODEL
        );
        assert_eq!(
            ModelSpec::parse("claude-haiku-4-5").unwrap().provider,
            ProviderKind::Anthropic
        );
        assert_eq!(
            ModelSpec::parse("o3-mini").unwrap().provider,
            ProviderKind::OpenAi
        );
        for bad in ["", "gemini:pro", "llama3", "openai:gpt 4"] {
            assert!(ModelSpec::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn default_order_follows_the_design() {
        let r = |cli, env: &'static [(&'static str, &'static str)]| {
            resolve_model(cli, &env_of(env)).unwrap().spec.id()
        };
        let both = &[(ENV_OPENAI_API_KEY, "k1"), (ENV_ANTHROPIC_API_KEY, "k2")];
        assert_eq!(r(Some("rules"), both), "rules");
        assert_eq!(
            r(
                None,
                &[(ENV_MODEL, "anthropic:claude-x"), (ENV_OPENAI_API_KEY, "k")]
            ),
            "anthropic:claude-x"
        );
        assert_eq!(r(None, both), format!("openai:{DEFAULT_OPENAI_MODEL}"));
        assert_eq!(
            r(None, &[(ENV_ANTHROPIC_API_KEY, "k2")]),
            format!("anthropic:{DEFAULT_ANTHROPIC_MODEL}")
        );
        let fallback = resolve_model(None, &env_of(&[(ENV_OPENAI_API_KEY, " ")])).unwrap();
        assert_eq!(fallback.spec, ModelSpec::rules());
        assert!(fallback.notice.is_some());
    }

    #[test]
    fn endpoint_needs_a_key_and_a_valid_url() {
        let err = Endpoint::from_env(ProviderKind::OpenAi, &env_of(&[])).unwrap_err();
        assert!(err.to_string().contains("OPENAI_API_KEY is not set"));
        let ep = Endpoint::from_env(
            ProviderKind::Anthropic,
            &env_of(&[
                (ENV_ANTHROPIC_API_KEY, "k"),
                (ENV_ANTHROPIC_BASE_URL, "http://127.0.0.1:9/"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(ep.base_url, "http://127.0.0.1:9");
        assert!(Endpoint::from_env(
            ProviderKind::OpenAi,
            &env_of(&[(ENV_OPENAI_API_KEY, "k"), (ENV_OPENAI_BASE_URL, "ftp://x")]),
        )
        .is_err());
    }
}
