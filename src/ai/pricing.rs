//! Prices (USD per million tokens) for cost estimates and recorded costs, with a TOML
//! override file for models not listed or prices that changed.

use std::path::Path;

use serde::Deserialize;

use crate::ai::{ModelSpec, Usage};
use crate::error::{user, UserContext};

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    /// Prompt tokens read from the provider's cache (default: the input price).
    #[serde(default)]
    pub cached_input: Option<f64>,
    /// Prompt tokens written to Anthropic's cache (default: the input price).
    #[serde(default)]
    pub cache_write: Option<f64>,
    pub output: f64,
}

/// Batch APIs of both providers cost half the real-time price.
pub const BATCH_DISCOUNT: f64 = 0.5;

/// When the built-in table was last checked against the providers' pricing pages, and where.
pub const PRICES_AS_OF: &str = "2026-12-02";
pub const PRICES_SOURCE: &str =
    "openai.com/api/pricing and anthropic.com/pricing (standard tier, USD per million tokens)";

/// Built-in list prices (standard tier). A model id matches its own entry, or the entry of its
/// family followed by a dated snapshot (`gpt-4o-mini-2024-07-18`, `claude-sonnet-4-5-20250929`)
/// or `-latest`; anything else has no price (cost unknown, never another model's price).
/// Snapshots priced unlike their family have an entry of their own.
const BUILTIN: &[(&str, f64, f64, f64, f64)] = &[
    // (model, input, cached input, cache write, output)
    ("openai:gpt-4o-mini", 0.15, 0.075, 0.15, 0.60),
    ("openai:gpt-4o", 2.50, 1.25, 2.50, 10.00),
    // The first gpt-4o snapshot kept its launch price and has no cache discount.
    ("openai:gpt-4o-2024-05-13", 5.00, 5.00, 5.00, 15.00),
    ("openai:gpt-4.1-nano", 0.10, 0.025, 0.10, 0.40),
    ("openai:gpt-4.1-mini", 0.40, 0.10, 0.40, 1.60),
    ("openai:gpt-4.1", 2.00, 0.50, 2.00, 8.00),
    ("openai:gpt-5-nano", 0.05, 0.005, 0.05, 0.40),
    ("openai:gpt-5-mini", 0.25, 0.025, 0.25, 2.00),
    ("openai:gpt-5", 1.25, 0.125, 1.25, 10.00),
    ("openai:o4-mini", 1.10, 0.275, 1.10, 4.40),
    ("openai:o3-mini", 1.10, 0.55, 1.10, 4.40),
    ("openai:o3", 2.00, 0.50, 2.00, 8.00),
    ("openai:o1", 15.00, 7.50, 15.00, 60.00),
    ("anthropic:claude-opus-4-6", 5.00, 0.50, 6.25, 25.00),
    ("anthropic:claude-opus-4-5", 5.00, 0.50, 6.25, 25.00),
    ("anthropic:claude-opus-4-1", 15.00, 1.50, 18.75, 75.00),
    ("anthropic:claude-opus-4", 15.00, 1.50, 18.75, 75.00),
    ("anthropic:claude-sonnet-4-5", 3.00, 0.30, 3.75, 15.00),
    ("anthropic:claude-sonnet-4", 3.00, 0.30, 3.75, 15.00),
    ("anthropic:claude-3-7-sonnet", 3.00, 0.30, 3.75, 15.00),
    ("anthropic:claude-3-5-sonnet", 3.00, 0.30, 3.75, 15.00),
    ("anthropic:claude-haiku-4-5", 1.00, 0.10, 1.25, 5.00),
    ("anthropic:claude-3-5-haiku", 0.80, 0.08, 1.00, 4.00),
    ("anthropic:claude-3-haiku", 0.25, 0.03, 0.30, 1.25),
];

/// Whether `suffix` (what follows a family's id) names a snapshot of that family: `-2024-07-18`,
/// `-20250929` or `-latest`.
fn is_snapshot_suffix(suffix: &str) -> bool {
    let Some(rest) = suffix.strip_prefix('-') else {
        return false;
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    rest == "latest"
        || digits(rest, 8)
        || matches!(rest.split('-').collect::<Vec<_>>().as_slice(),
            [y, m, d] if digits(y, 4) && digits(m, 2) && digits(d, 2))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideFile {
    #[serde(default)]
    batch_discount: Option<f64>,
    #[serde(default)]
    models: std::collections::BTreeMap<String, Price>,
}

#[derive(Debug, Clone)]
pub struct PriceTable {
    /// (model-string prefix, price); overrides come first so they win ties.
    entries: Vec<(String, Price)>,
    pub batch_discount: f64,
}

impl Default for PriceTable {
    fn default() -> Self {
        Self::builtin()
    }
}

impl PriceTable {
    pub fn builtin() -> Self {
        Self {
            entries: BUILTIN
                .iter()
                .map(|(m, i, c, w, o)| {
                    (
                        m.to_string(),
                        Price {
                            input: *i,
                            cached_input: Some(*c),
                            cache_write: Some(*w),
                            output: *o,
                        },
                    )
                })
                .collect(),
            batch_discount: BATCH_DISCOUNT,
        }
    }

    /// The built-in table with a TOML file's entries on top.
    pub fn with_overrides(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .user_context(|| format!("cannot read price file {}", path.display()))?;
        Self::builtin().merge_toml(&text).map_err(|e| {
            e.context(crate::error::UserError(format!(
                "invalid price file {}",
                path.display()
            )))
        })
    }

    fn merge_toml(mut self, text: &str) -> anyhow::Result<Self> {
        let f: OverrideFile = toml::from_str(text).map_err(|e| user(e.to_string()))?;
        if let Some(d) = f.batch_discount {
            if !(0.0..=1.0).contains(&d) {
                return Err(user("batch_discount must be between 0 and 1"));
            }
            self.batch_discount = d;
        }
        for (model, price) in f.models {
            // `provider:prefix*` prices every model id that begins with the prefix.
            let (name, wildcard) = match model.strip_suffix('*') {
                Some(n) => (n, "*"),
                None => (model.as_str(), ""),
            };
            let spec = ModelSpec::parse(name)?;
            let all = [
                Some(price.input),
                price.cached_input,
                price.cache_write,
                Some(price.output),
            ];
            if all.iter().flatten().any(|p| !p.is_finite() || *p < 0.0) {
                return Err(user(format!(
                    "prices of {model} must be non-negative numbers"
                )));
            }
            self.entries
                .insert(0, (format!("{}{wildcard}", spec.id()), price));
        }
        Ok(self)
    }

    /// The price of a model: its own entry, or its family's for a dated snapshot; an override
    /// key ending in `*` matches every model id it begins. The longest match wins (an override,
    /// listed first, wins ties). `rules` is free.
    pub fn lookup(&self, spec: &ModelSpec) -> Option<Price> {
        if spec.provider.is_offline() {
            return Some(Price {
                input: 0.0,
                cached_input: None,
                cache_write: None,
                output: 0.0,
            });
        }
        let id = spec.id();
        let matches = |key: &str| match key.strip_suffix('*') {
            Some(prefix) => id.starts_with(prefix),
            None => id
                .strip_prefix(key)
                .is_some_and(|rest| rest.is_empty() || is_snapshot_suffix(rest)),
        };
        // Reversed so that, between equal keys, the first entry (an override) wins.
        self.entries
            .iter()
            .rev()
            .filter(|(key, _)| matches(key))
            .max_by_key(|(key, _)| key.len())
            .map(|(_, p)| *p)
    }

    /// Every priced model (overrides first), for `models`.
    pub fn entries(&self) -> impl Iterator<Item = (&str, Price)> {
        self.entries.iter().map(|(k, p)| (k.as_str(), *p))
    }

    /// USD for a usage; `None` when the model has no price.
    pub fn cost(&self, spec: &ModelSpec, usage: &Usage, batch: bool) -> Option<f64> {
        let p = self.lookup(spec)?;
        let uncached = usage
            .prompt_tokens
            .saturating_sub(usage.cached_tokens)
            .saturating_sub(usage.cache_creation_tokens);
        let usd = (uncached as f64 * p.input
            + usage.cached_tokens as f64 * p.cached_input.unwrap_or(p.input)
            + usage.cache_creation_tokens as f64 * p.cache_write.unwrap_or(p.input)
            + usage.completion_tokens as f64 * p.output)
            / 1_000_000.0;
        Some(if batch {
            usd * (1.0 - self.batch_discount)
        } else {
            usd
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> ModelSpec {
        ModelSpec::parse(s).unwrap()
    }

    #[test]
    fn families_price_their_snapshots_but_never_another_model() {
        let t = PriceTable::builtin();
        assert_eq!(
            t.lookup(&spec("openai:gpt-4o-mini-2024-07-18"))
                .unwrap()
                .input,
            0.15
        );
        assert_eq!(
            t.lookup(&spec("openai:gpt-4o-2024-08-06")).unwrap().input,
            2.50
        );
        assert_eq!(
            t.lookup(&spec("anthropic:claude-sonnet-4-5-20250929"))
                .unwrap()
                .output,
            15.0
        );
        assert_eq!(
            t.lookup(&spec("anthropic:claude-opus-4-5")).unwrap().input,
            5.0
        );
        assert!(t.lookup(&spec("openai:my-local-llama")).is_none());
        assert_eq!(t.cost(&spec("rules"), &Usage::default(), false), Some(0.0));
        // A snapshot priced unlike its family has its own entry.
        let old = t.lookup(&spec("openai:gpt-4o-2024-05-13")).unwrap();
        assert_eq!((old.input, old.output), (5.0, 15.0));
        let opus = t.lookup(&spec("anthropic:claude-opus-4-6")).unwrap();
        assert_eq!((opus.input, opus.output), (5.0, 25.0));
        // Not a snapshot of a known family: no price, never the family's.
        for unknown in [
            "openai:gpt-5.1",
            "openai:gpt-4o-audio-preview",
            "openai:o1-mini",
            "anthropic:claude-sonnet-4-7",
            "openai:gpt-4o-mini-tts",
        ] {
            assert!(t.lookup(&spec(unknown)).is_none(), "{unknown}");
            assert_eq!(t.cost(&spec(unknown), &Usage::default(), false), None);
        }
        assert!(t
            .lookup(&spec("anthropic:claude-3-7-sonnet-latest"))
            .is_some());
    }

    #[test]
    fn cost_counts_cached_and_batch_prices() {
        let t = PriceTable::builtin();
        let u = Usage {
            prompt_tokens: 1_000_000,
            cached_tokens: 500_000,
            cache_creation_tokens: 0,
            completion_tokens: 100_000,
        };
        let c = t.cost(&spec("openai:gpt-4o-mini"), &u, false).unwrap();
        assert!((c - (0.075 + 0.0375 + 0.06)).abs() < 1e-9, "{c}");
        let b = t.cost(&spec("openai:gpt-4o-mini"), &u, true).unwrap();
        assert!((b - c / 2.0).abs() < 1e-9);
        let a = Usage {
            prompt_tokens: 3_000_000,
            cached_tokens: 1_000_000,
            cache_creation_tokens: 1_000_000,
            completion_tokens: 0,
        };
        let c = t
            .cost(&spec("anthropic:claude-haiku-4-5"), &a, false)
            .unwrap();
        assert!((c - (1.0 + 0.10 + 1.25)).abs() < 1e-9, "{c}");
    }

    #[test]
    fn overrides_add_and_replace_models() {
        let t = PriceTable::builtin()
            .merge_toml("batch_discount = 0.4\n[models.\"openai:my-model\"]\ninput = 1.0\noutput = 2.0\n[models.\"openai:gpt-4o-mini\"]\ninput = 9.0\noutput = 9.0\n[models.\"openai:ft:*\"]\ninput = 3.0\noutput = 4.0")
            .unwrap();
        assert_eq!(t.lookup(&spec("openai:my-model")).unwrap().output, 2.0);
        assert!(t.lookup(&spec("openai:my-model-v2")).is_none());
        assert_eq!(
            t.lookup(&spec("openai:ft:gpt-4o:acme:x")).unwrap().input,
            3.0
        );
        assert_eq!(t.lookup(&spec("openai:gpt-4o-mini")).unwrap().input, 9.0);
        assert_eq!(t.batch_discount, 0.4);
        assert!(PriceTable::builtin()
            .merge_toml("[models.\"x:y\"]\ninput = 1.0\noutput = 1.0")
            .is_err());
        assert!(PriceTable::builtin()
            .merge_toml("[models.\"openai:a\"]\ninput = -1.0\noutput = 1.0")
            .is_err());
    }
}
