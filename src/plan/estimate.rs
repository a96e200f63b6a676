//! The one cost estimator: prompt tokens per issue (the stable prefix counted once, plus the
//! issue), an assumed answer length, and the plan's prices — used by dry runs, by the selection
//! summary of `process-query` and by batch submission. No prompt caching is assumed, so
//! estimates are upper bounds; whether the stable prefix will be cached at all (the model's
//! minimum cacheable prompt, from the capability table) is reported beside them.

use std::cell::OnceCell;

use serde::Serialize;

use crate::ai::{models, tokens, Prompt, Usage};
use crate::plan::Plan;
use crate::store::StoredIssue;

/// Completion tokens assumed per issue: a labeling answer with reasoning is typically 200–500
/// tokens.
pub const EST_COMPLETION_TOKENS: u64 = 400;
/// Characters per token for estimates from text sizes (OpenAI's rule of thumb for English).
pub const CHARS_PER_TOKEN: u64 = 4;
/// Tokens of message framing (roles, tool or schema wrapper) around the prompt's parts.
const FRAMING_TOKENS: u64 = 20;

/// Whether the stable prefix (instructions, taxonomy, schema) reaches the model's minimum
/// cacheable prompt: below it the provider never caches, and every request pays it in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PrefixCache {
    /// Estimated tokens of the stable prefix.
    pub prefix_tokens: u64,
    /// The model's minimum cacheable prompt.
    pub min_tokens: u64,
    pub cached: bool,
}

impl PrefixCache {
    /// One sentence for the dry-run summary.
    pub fn describe(&self) -> String {
        if self.cached {
            format!(
                "the stable prefix (~{} tokens) reaches this model's cache minimum ({}): \
                 requests after the first read it from the prompt cache",
                self.prefix_tokens, self.min_tokens
            )
        } else {
            format!(
                "the stable prefix (~{} tokens) is below this model's cache minimum ({}): \
                 it will not be cached, every request pays it in full",
                self.prefix_tokens, self.min_tokens
            )
        }
    }
}

pub struct Estimator<'a> {
    plan: &'a Plan,
    /// Tokens of the stable prefix (instructions, taxonomy, schema): the same for every issue.
    prefix: OnceCell<u64>,
}

impl<'a> Estimator<'a> {
    pub fn new(plan: &'a Plan) -> Self {
        Self {
            plan,
            prefix: OnceCell::new(),
        }
    }

    fn prefix_tokens(&self) -> u64 {
        *self.prefix.get_or_init(|| {
            let (prompt, _) = self
                .plan
                .processor
                .prompt(&StoredIssue::new("o", "r", 0, ""));
            tokens::count(&prompt.system) as u64
                + tokens::count(&prompt.schema.to_string()) as u64
                + FRAMING_TOKENS
        })
    }

    /// Whether the stable prefix will be cached (`None` for the offline model).
    pub fn prefix_cache(&self) -> Option<PrefixCache> {
        if self.plan.offline() {
            return None;
        }
        let caps = models::capabilities(self.plan.model.provider, &self.plan.model.model);
        let prefix_tokens = self.prefix_tokens();
        Some(PrefixCache {
            prefix_tokens,
            min_tokens: caps.min_cache_tokens,
            cached: prefix_tokens >= caps.min_cache_tokens,
        })
    }

    /// Estimated usage of one request with this prompt (nothing for the offline model).
    pub fn for_prompt(&self, prompt: &Prompt) -> Usage {
        if self.plan.offline() {
            return Usage::default();
        }
        Usage {
            prompt_tokens: self.prefix_tokens() + tokens::count(&prompt.user) as u64,
            completion_tokens: EST_COMPLETION_TOKENS,
            ..Usage::default()
        }
    }

    /// Estimated usage of `issues` requests whose issue texts hold `chars` characters in all
    /// (what a selection query can count without reading the files).
    pub fn for_selection(&self, issues: u64, chars: u64) -> Usage {
        if self.plan.offline() {
            return Usage::default();
        }
        Usage {
            prompt_tokens: issues * (self.prefix_tokens() + self.plan.processor.few_shot_tokens())
                + chars / CHARS_PER_TOKEN,
            completion_tokens: issues * EST_COMPLETION_TOKENS,
            ..Usage::default()
        }
    }

    /// The most characters of one issue that reach a prompt (the processor cuts to its budget).
    pub fn max_issue_chars(&self) -> u64 {
        self.plan.processor.token_budget() as u64 * CHARS_PER_TOKEN
    }

    /// USD of a usage (`batch`: with the batch discount); `None` when the model has no price.
    pub fn cost(&self, usage: &Usage, batch: bool) -> Option<f64> {
        self.plan.prices.cost(&self.plan.model, usage, batch)
    }
}
