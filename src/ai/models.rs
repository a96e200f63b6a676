//! The model-capability table: per model family, which temperature a request may carry, which
//! `reasoning_effort` values it takes, whether it can think (Anthropic), how structured output
//! is asked for, and the shortest prompt prefix the provider caches. Request builders and
//! setting checks read it instead of special-casing model names; what it does not know is
//! learned during a run from the provider's 400s (`adapt.rs`). docs/process.md, "Models".

use crate::ai::ProviderKind;

/// Which temperatures a model accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temperature {
    /// Any value in the provider's range.
    Any,
    /// Only the default (1): reasoning-only models (o-series, gpt-5).
    DefaultOnly,
    /// Any value while reasoning is off (`reasoning_effort: none`, their default); none while
    /// reasoning (gpt-5.1 and later).
    WithoutReasoning,
}

/// How the answer's JSON schema is imposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StructuredOutput {
    /// OpenAI `response_format: {type: json_schema, strict: true}`.
    JsonSchema,
    /// Anthropic: one tool carrying the schema, forced with `tool_choice` — or offered with
    /// `tool_choice: auto` while thinking (forcing is refused then), the answer validated and
    /// repaired like any other.
    Tool,
}

/// What one model family accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The family's name (for messages and `--format json` listings).
    pub family: &'static str,
    pub temperature: Temperature,
    /// `reasoning_effort` values accepted (OpenAI); empty: the model does not take it.
    pub efforts: &'static [&'static str],
    /// Anthropic extended thinking (`thinking: {type: enabled, budget_tokens}`).
    pub thinking: bool,
    pub structured: StructuredOutput,
    /// The fewest prompt tokens the provider caches: a shorter stable prefix is never cached.
    pub min_cache_tokens: u64,
    /// Completion budget when none is set (reasoning spends hidden tokens from it too).
    pub default_max_tokens: u64,
    /// `false` for a model the table does not list: settings pass through unchecked, and the
    /// adaptive fallback deals with what the provider refuses.
    pub known: bool,
}

/// Every `reasoning_effort` value any OpenAI model takes, lowest first.
pub const ALL_EFFORTS: [&str; 7] = ["none", "minimal", "low", "medium", "high", "xhigh", "max"];

const fn openai(
    family: &'static str,
    temperature: Temperature,
    efforts: &'static [&'static str],
) -> Capabilities {
    let reasoning = !efforts.is_empty();
    Capabilities {
        family,
        temperature,
        efforts,
        thinking: false,
        structured: StructuredOutput::JsonSchema,
        // OpenAI caches prompts of 1,024 tokens and more, for every current model.
        min_cache_tokens: 1_024,
        default_max_tokens: if reasoning { 16_000 } else { 2_000 },
        known: true,
    }
}

const fn claude(family: &'static str, thinking: bool, min_cache_tokens: u64) -> Capabilities {
    Capabilities {
        family,
        temperature: Temperature::Any,
        efforts: &[],
        thinking,
        structured: StructuredOutput::Tool,
        min_cache_tokens,
        default_max_tokens: 2_000,
        known: true,
    }
}

const CHAT: Capabilities = openai("gpt (chat)", Temperature::Any, &[]);
const GPT5: Capabilities = openai(
    "gpt-5",
    Temperature::DefaultOnly,
    &["minimal", "low", "medium", "high"],
);
const GPT51: Capabilities = openai(
    "gpt-5.1",
    Temperature::WithoutReasoning,
    &["none", "low", "medium", "high"],
);
const GPT52: Capabilities = openai(
    "gpt-5.2+",
    Temperature::WithoutReasoning,
    &["none", "low", "medium", "high", "xhigh"],
);
const O_SERIES: Capabilities = openai(
    "o-series",
    Temperature::DefaultOnly,
    &["low", "medium", "high"],
);

/// OpenAI families by id prefix; the first match wins, so specific prefixes come first.
const OPENAI: &[(&str, Capabilities)] = &[
    ("gpt-5-chat", CHAT),
    ("gpt-5.1-chat", CHAT),
    ("gpt-5.2-chat", CHAT),
    ("gpt-5.3-chat", CHAT),
    ("gpt-5.1", GPT51),
    ("gpt-5.", GPT52),
    ("gpt-5", GPT5),
    ("o1", O_SERIES),
    ("o3", O_SERIES),
    ("o4", O_SERIES),
    ("gpt-4", CHAT),
    ("gpt-3.5", CHAT),
    ("chatgpt", CHAT),
];

/// Anthropic families by id prefix (aliases and dated ids share them). Cache minimums from
/// Anthropic's prompt-caching guide: 4,096 tokens for Opus 4.5/4.6 and Haiku 4.5, 2,048 for
/// Sonnet 4.6 and the Haiku 3.x models, 1,024 for the others.
const ANTHROPIC: &[(&str, Capabilities)] = &[
    ("claude-opus-4-6", claude("claude-opus-4.6", true, 4_096)),
    ("claude-opus-4-5", claude("claude-opus-4.5", true, 4_096)),
    ("claude-haiku-4-5", claude("claude-haiku-4.5", true, 4_096)),
    (
        "claude-sonnet-4-6",
        claude("claude-sonnet-4.6", true, 2_048),
    ),
    (
        "claude-sonnet-4-5",
        claude("claude-sonnet-4.5", true, 1_024),
    ),
    ("claude-opus-4-1", claude("claude-opus-4.1", true, 1_024)),
    ("claude-opus-4", claude("claude-opus-4", true, 1_024)),
    ("claude-sonnet-4", claude("claude-sonnet-4", true, 1_024)),
    (
        "claude-3-7-sonnet",
        claude("claude-3.7-sonnet", true, 1_024),
    ),
    (
        "claude-3-5-sonnet",
        claude("claude-3.5-sonnet", false, 1_024),
    ),
    ("claude-3-5-haiku", claude("claude-3.5-haiku", false, 2_048)),
    ("claude-3-haiku", claude("claude-3-haiku", false, 2_048)),
    ("claude-3-opus", claude("claude-3-opus", false, 1_024)),
];

/// The capabilities of a model (an OpenAI id may carry an `org/` prefix on compatible servers).
pub fn capabilities(provider: ProviderKind, model: &str) -> Capabilities {
    let m = model.to_ascii_lowercase();
    let m = m.rsplit('/').next().unwrap_or(&m);
    let (table, unknown) = match provider {
        ProviderKind::OpenAi => (
            OPENAI,
            Capabilities {
                family: "unknown",
                efforts: &ALL_EFFORTS,
                known: false,
                ..CHAT
            },
        ),
        ProviderKind::Anthropic | ProviderKind::Rules | ProviderKind::Local => (
            ANTHROPIC,
            Capabilities {
                family: "unknown",
                known: false,
                ..claude("unknown", true, 1_024)
            },
        ),
    };
    table
        .iter()
        .find(|(prefix, _)| m.starts_with(prefix))
        .map_or(unknown, |(_, c)| *c)
}

impl Capabilities {
    /// Whether a request reasons with this effort setting (`None`: the model's default).
    pub fn reasons(&self, effort: Option<&str>) -> bool {
        match (self.temperature, effort) {
            (_, Some(e)) => e != "none",
            // gpt-5.1 and later default to no reasoning.
            (Temperature::WithoutReasoning, None) => false,
            (_, None) => !self.efforts.is_empty() && self.known,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oa(m: &str) -> Capabilities {
        capabilities(ProviderKind::OpenAi, m)
    }

    #[test]
    fn openai_families() {
        for m in ["o1", "o3-mini", "o4-mini-2025-04-16", "gpt-5", "gpt-5-mini"] {
            assert_eq!(oa(m).temperature, Temperature::DefaultOnly, "{m}");
            assert!(oa(m).reasons(None), "{m}");
        }
        for m in [
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-5-chat-latest",
            "gpt-5.2-chat-latest",
        ] {
            assert_eq!(
                (oa(m).temperature, oa(m).efforts.len()),
                (Temperature::Any, 0),
                "{m}"
            );
        }
        let g51 = oa("gpt-5.1-2025-11-13");
        assert_eq!(g51.temperature, Temperature::WithoutReasoning);
        assert!(g51.efforts.contains(&"none") && !g51.efforts.contains(&"minimal"));
        assert!(!g51.reasons(None) && g51.reasons(Some("high")) && !g51.reasons(Some("none")));
        assert!(oa("gpt-5.4-mini").efforts.contains(&"xhigh"));
        assert!(!oa("gpt-5").efforts.contains(&"none"));
        assert_eq!(oa("o3").default_max_tokens, 16_000);
        assert_eq!(oa("gpt-4o").default_max_tokens, 2_000);
        // A compatible server's model: unknown, so nothing is refused up front.
        let local = oa("meta/llama-3-70b");
        assert!(!local.known && local.temperature == Temperature::Any);
        assert!(!local.reasons(None));
        assert!(oa("omni").family == "unknown");
        for m in ["gpt-4o-mini", "o3", "gpt-5.2"] {
            assert_eq!(oa(m).min_cache_tokens, 1_024);
        }
    }

    #[test]
    fn anthropic_cache_minimums_and_thinking() {
        let a = |m: &str| capabilities(ProviderKind::Anthropic, m);
        assert_eq!(a("claude-haiku-4-5").min_cache_tokens, 4_096);
        assert_eq!(a("claude-haiku-4-5-20251001").min_cache_tokens, 4_096);
        assert_eq!(a("claude-opus-4-6").min_cache_tokens, 4_096);
        assert_eq!(a("claude-sonnet-4-6").min_cache_tokens, 2_048);
        assert_eq!(a("claude-sonnet-4-5-20250929").min_cache_tokens, 1_024);
        assert_eq!(a("claude-opus-4-1").min_cache_tokens, 1_024);
        assert_eq!(a("claude-3-5-haiku-latest").min_cache_tokens, 2_048);
        assert!(a("claude-3-7-sonnet-latest").thinking && !a("claude-3-5-haiku").thinking);
        assert_eq!(a("claude-opus-4-5").structured, StructuredOutput::Tool);
        assert!(!a("claude-next").known);
    }
}
