//! `GenSettings`: the `--setting key=value` pairs of a run, checked per provider and per model
//! family against the capability table (`models.rs`) before anything is sent.

use crate::ai::{models, ModelSpec, ProviderKind};
use crate::error::user;

/// Generation settings from `--setting key=value`, validated per provider and model family
/// (the capability table, `models.rs`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenSettings {
    pub temperature: Option<f64>,
    /// Nucleus sampling (both providers); not in the table: a model that refuses it is handled
    /// by the adaptive fallback.
    pub top_p: Option<f64>,
    /// `max_completion_tokens` (OpenAI) / `max_tokens` (Anthropic).
    pub max_tokens: Option<u64>,
    /// OpenAI reasoning models only.
    pub reasoning_effort: Option<String>,
    /// Anthropic extended thinking: the thinking budget in tokens (at least 1,024).
    pub thinking_budget: Option<u64>,
}

impl GenSettings {
    /// Parses `key=value` pairs for a model; unknown keys and out-of-range values are user errors.
    pub fn parse(spec: &ModelSpec, pairs: &[String]) -> anyhow::Result<Self> {
        let caps = models::capabilities(spec.provider, &spec.model);
        let mut s = Self::default();
        let number = |k: &str, v: &str, max: f64| -> anyhow::Result<f64> {
            let x: f64 = v
                .parse()
                .map_err(|_| user(format!("--setting {k}={v}: not a number")))?;
            if !(0.0..=max).contains(&x) {
                return Err(user(format!(
                    "--setting {k}={v}: must be between 0 and {max} for {}",
                    spec.provider.name()
                )));
            }
            Ok(x)
        };
        for pair in pairs {
            let (k, v) = pair
                .split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| user(format!("--setting {pair:?}: expected key=value")))?;
            let max_temperature = if spec.provider == ProviderKind::Anthropic {
                1.0
            } else {
                2.0
            };
            match (spec.provider, k) {
                (ProviderKind::Rules, _) => {
                    return Err(user(format!(
                        "--setting {k}: the rules model takes no settings (its threshold lives in the taxonomy file)"
                    )))
                }
                (ProviderKind::Local, _) => {
                    return Err(user(format!(
                        "--setting {k}: the local model takes no settings (`train` fits it)"
                    )))
                }
                (_, "temperature") => {
                    let t = number(k, v, max_temperature)?;
                    if caps.temperature == models::Temperature::DefaultOnly && t != 1.0 {
                        return Err(user(format!(
                            "--setting temperature={v}: {} ({} family) is a reasoning model and only accepts the default temperature (1)",
                            spec.model, caps.family
                        )));
                    }
                    s.temperature = Some(t);
                }
                (_, "top_p") => s.top_p = Some(number(k, v, 1.0)?),
                (_, "max_tokens" | "max_completion_tokens") => {
                    let n: u64 = v.parse().ok().filter(|n| *n >= 1 && *n <= 1_000_000).ok_or_else(
                        || user(format!("--setting {k}={v}: must be a whole number from 1 to 1000000")),
                    )?;
                    s.max_tokens = Some(n);
                }
                (ProviderKind::OpenAi, "reasoning_effort") => {
                    if caps.efforts.is_empty() {
                        return Err(user(format!(
                            "--setting reasoning_effort: {} ({} family) is not a reasoning model",
                            spec.model, caps.family
                        )));
                    }
                    if !caps.efforts.contains(&v) {
                        return Err(user(format!(
                            "--setting reasoning_effort={v}: {} ({} family) takes one of {}",
                            spec.model,
                            caps.family,
                            caps.efforts.join(", ")
                        )));
                    }
                    s.reasoning_effort = Some(v.to_string());
                }
                (ProviderKind::Anthropic, "thinking_budget") => {
                    if !caps.thinking {
                        return Err(user(format!(
                            "--setting thinking_budget: {} ({} family) has no extended thinking",
                            spec.model, caps.family
                        )));
                    }
                    let n: u64 = v.parse().ok().filter(|n| (1_024..=1_000_000).contains(n)).ok_or_else(
                        || user(format!("--setting thinking_budget={v}: must be a whole number from 1024 to 1000000")),
                    )?;
                    s.thinking_budget = Some(n);
                }
                (p, _) => {
                    let known = match p {
                        ProviderKind::OpenAi => "temperature, top_p, max_completion_tokens, reasoning_effort",
                        _ => "temperature, top_p, max_tokens, thinking_budget",
                    };
                    return Err(user(format!(
                        "--setting {k}: unknown setting for {}; known: {known}",
                        p.name()
                    )));
                }
            }
        }
        let reasoning = caps.reasons(s.reasoning_effort.as_deref());
        if caps.temperature == models::Temperature::WithoutReasoning && reasoning {
            if let Some(t) = s.temperature {
                return Err(user(format!(
                    "--setting temperature={t}: {} ({} family) takes no temperature while reasoning; \
                     drop it or set reasoning_effort=none",
                    spec.model, caps.family
                )));
            }
        }
        if let (Some(budget), Some(max)) = (s.thinking_budget, s.max_tokens) {
            if max <= budget {
                return Err(user(format!(
                    "--setting max_tokens={max}: must be more than thinking_budget ({budget})"
                )));
            }
        }
        if s.thinking_budget.is_some() && s.temperature.is_some_and(|t| t != 1.0) {
            return Err(user(
                "--setting temperature: Anthropic takes no temperature but 1 while thinking",
            ));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_validated_per_model_family() {
        let gpt = ModelSpec::parse("openai:gpt-4o-mini").unwrap();
        let o3 = ModelSpec::parse("openai:o3-mini").unwrap();
        let claude = ModelSpec::parse("anthropic:claude-haiku-4-5").unwrap();
        let s = |m: &ModelSpec, kv: &[&str]| {
            GenSettings::parse(m, &kv.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(
            s(&gpt, &["temperature=0.2"]).unwrap().temperature,
            Some(0.2)
        );
        assert!(s(&o3, &["temperature=0.2"]).is_err());
        assert_eq!(
            s(&o3, &["reasoning_effort=low"])
                .unwrap()
                .reasoning_effort
                .as_deref(),
            Some("low")
        );
        assert!(s(&gpt, &["reasoning_effort=low"]).is_err());
        assert!(s(&claude, &["temperature=1.5"]).is_err());
        assert_eq!(
            s(&claude, &["max_tokens=300"]).unwrap().max_tokens,
            Some(300)
        );
        assert!(s(&claude, &["reasoning_effort=low"]).is_err());
        assert!(s(&gpt, &["max_completion_tokens=0"]).is_err());
        assert!(s(&gpt, &["nonsense"]).is_err());
        assert!(s(&ModelSpec::rules(), &["temperature=0"]).is_err());
    }

    #[test]
    fn newer_families_and_thinking_are_checked_against_the_table() {
        let spec = |m: &str| ModelSpec::parse(m).unwrap();
        let s = |m: &str, kv: &[&str]| {
            GenSettings::parse(
                &spec(m),
                &kv.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        };
        // gpt-5.1: temperature only while reasoning is off; its own efforts.
        assert!(s("openai:gpt-5.1", &["temperature=0.3"]).is_ok());
        assert!(s(
            "openai:gpt-5.1",
            &["temperature=0.3", "reasoning_effort=none"]
        )
        .is_ok());
        assert!(s(
            "openai:gpt-5.1",
            &["temperature=0.3", "reasoning_effort=low"]
        )
        .is_err());
        assert!(s("openai:gpt-5.1", &["reasoning_effort=minimal"]).is_err());
        assert!(s("openai:gpt-5", &["reasoning_effort=minimal"]).is_ok());
        assert!(s("openai:gpt-5.2", &["reasoning_effort=xhigh"]).is_ok());
        // A model the table does not know: passed through for the provider to judge.
        assert!(s(
            "openai:my-local-llama",
            &["reasoning_effort=high", "temperature=0.5"]
        )
        .is_ok());
        assert_eq!(s("openai:o3", &["top_p=0.5"]).unwrap().top_p, Some(0.5));
        assert!(s("openai:o3", &["top_p=1.5"]).is_err());
        // Anthropic thinking: only where the family has it, at least 1,024, below max_tokens,
        // and without a temperature but 1.
        let t = s("anthropic:claude-sonnet-4-5", &["thinking_budget=2048"]).unwrap();
        assert_eq!(t.thinking_budget, Some(2048));
        assert!(s(
            "anthropic:claude-3-5-haiku-latest",
            &["thinking_budget=2048"]
        )
        .is_err());
        assert!(s("anthropic:claude-sonnet-4-5", &["thinking_budget=500"]).is_err());
        assert!(s(
            "anthropic:claude-sonnet-4-5",
            &["thinking_budget=2048", "max_tokens=2048"]
        )
        .is_err());
        assert!(s(
            "anthropic:claude-sonnet-4-5",
            &["thinking_budget=2048", "temperature=0.2"]
        )
        .is_err());
        assert!(s("openai:gpt-4o", &["thinking_budget=2048"]).is_err());
    }
}
