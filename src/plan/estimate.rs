//! The one cost estimator: prompt tokens per issue (the stable prefix counted once, plus the
//! issue), an assumed answer length, and the plan's prices — used by dry runs, by the selection
//! summary of `process-query` and by batch submission. No prompt caching is assumed, so
//! estimates are upper bounds.

use std::cell::OnceCell;

use crate::ai::{tokens, Prompt, Usage};
use crate::plan::Plan;
use crate::store::StoredIssue;

/// Completion tokens assumed per issue: a labeling answer with reasoning is typically 200–500
/// tokens.
pub const EST_COMPLETION_TOKENS: u64 = 400;
/// Characters per token for estimates from text sizes (OpenAI's rule of thumb for English).
pub const CHARS_PER_TOKEN: u64 = 4;
/// Tokens of message framing (roles, tool or schema wrapper) around the prompt's parts.
const FRAMING_TOKENS: u64 = 20;

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
