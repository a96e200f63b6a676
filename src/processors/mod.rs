//! Processor registry: a processor is a prompt + output schema + validation + the mapping of
//! its result to `ai_results` / `ai_recommendations`. Unknown names list the known ones.

pub mod local;
pub mod product_labeling;
pub mod rules;
pub mod taxonomy;

use serde_json::Value;

use crate::ai::Prompt;
use crate::error::user;
use crate::learn::LocalModel;
use crate::store::StoredIssue;
use product_labeling::ProductLabeling;

/// Every processor name, in the order they are listed to users.
pub const KNOWN: &[&str] = &[product_labeling::NAME];

/// A row of `ai_recommendations`.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    /// `label` (add this label) or `remove_label` (a current label judged wrong).
    pub kind: String,
    pub value: String,
    pub confidence: Option<f64>,
    pub reasoning: Option<String>,
}

/// A validated result, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    /// The `analysis` object of the result file (includes `confidence`).
    pub analysis: Value,
    pub confidence: f64,
    pub recommendations: Vec<Recommendation>,
}

/// How a processor is configured from the command line.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub taxonomy: Option<std::path::PathBuf>,
    pub token_budget: Option<usize>,
}

#[derive(Debug, Clone)]
pub enum Processor {
    ProductLabeling(ProductLabeling),
}

impl Processor {
    /// [`Self::get`] with only a taxonomy (the quality commands).
    pub fn with_taxonomy(name: &str, taxonomy: Option<std::path::PathBuf>) -> anyhow::Result<Self> {
        Self::get(
            name,
            &Options {
                taxonomy,
                token_budget: None,
            },
        )
    }

    /// Looks a processor up by name; an unknown name is a user error listing the known ones.
    pub fn get(name: &str, opts: &Options) -> anyhow::Result<Self> {
        match name {
            product_labeling::NAME => {
                let taxonomy = match &opts.taxonomy {
                    Some(path) => taxonomy::Taxonomy::load(path)?,
                    None => taxonomy::Taxonomy::default_replicated()?,
                };
                let budget = opts
                    .token_budget
                    .unwrap_or(product_labeling::DEFAULT_TOKEN_BUDGET);
                if budget < 100 {
                    return Err(user(format!(
                        "token budget {budget} is too small (at least 100)"
                    )));
                }
                Ok(Self::ProductLabeling(ProductLabeling::new(
                    taxonomy, budget,
                )))
            }
            other => Err(user(format!(
                "unknown processor {other:?}; known processors: {}",
                KNOWN.join(", ")
            ))),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::ProductLabeling(_) => product_labeling::NAME,
        }
    }

    /// Tokens of one issue that reach a prompt at most (longer threads are cut).
    pub fn token_budget(&self) -> usize {
        match self {
            Self::ProductLabeling(p) => p.token_budget,
        }
    }

    pub fn version(&self) -> &'static str {
        match self {
            Self::ProductLabeling(_) => product_labeling::VERSION,
        }
    }

    /// Extra provenance recorded in the result file's `processor` block.
    pub fn provenance(&self) -> Value {
        match self {
            Self::ProductLabeling(p) => {
                let mut v = serde_json::json!({
                    "taxonomy": {
                        "name": p.taxonomy.name,
                        "version": p.taxonomy.version,
                        "sha256": p.taxonomy.sha256,
                    }
                });
                if let Some(m) = &p.local {
                    v["local_model"] = serde_json::json!({
                        "trained_at": m.info.created_at,
                        "training_issues": m.info.training_ids.len(),
                    });
                }
                v
            }
        }
    }

    /// The prompt for one issue and a note on what the token budget cut, if anything.
    pub fn prompt(&self, issue: &StoredIssue) -> (Prompt, Option<String>) {
        match self {
            Self::ProductLabeling(p) => {
                let (mut prompt, cut) = p.prompt(issue);
                let mut note = (cut.comments_omitted > 0 || cut.body_tokens_omitted > 0).then(|| {
                    format!(
                        "cut to the token budget: {} earlier comment(s) and {} body token(s) omitted",
                        cut.comments_omitted, cut.body_tokens_omitted
                    )
                });
                if let Some(fs) = &p.few_shot {
                    let (block, ids) = fs.block(issue);
                    if !ids.is_empty() {
                        prompt.user = format!("{block}{}", prompt.user);
                        let used = format!("few-shot examples: {}", ids.join(", "));
                        note = Some(match note {
                            Some(n) => format!("{n}; {used}"),
                            None => used,
                        });
                    }
                }
                (prompt, note)
            }
        }
    }

    /// Validates a model's answer; the error is the reason, phrased for the repair request.
    pub fn validate(&self, value: &Value) -> Result<Validated, String> {
        match self {
            Self::ProductLabeling(p) => {
                let a = p.validate(value)?;
                Ok(Self::validated_labeling(&a))
            }
        }
    }

    /// The result of the offline model: the trained `local` model when attached, else `rules`.
    pub fn offline(&self, issue: &StoredIssue) -> Validated {
        match self {
            Self::ProductLabeling(p) => match &p.local {
                Some(m) => Self::validated_labeling(&local::analysis(m, issue)),
                None => Self::validated_labeling(&p.rules_analysis(issue)),
            },
        }
    }

    /// The taxonomy's name and SHA-256 (what a `local` model is trained for).
    pub fn taxonomy_id(&self) -> (String, String) {
        match self {
            Self::ProductLabeling(p) => (p.taxonomy.name.clone(), p.taxonomy.sha256.clone()),
        }
    }

    /// The taxonomy of the processor.
    pub fn taxonomy(&self) -> &taxonomy::Taxonomy {
        match self {
            Self::ProductLabeling(p) => &p.taxonomy,
        }
    }

    /// Uses a trained `local` model instead of `rules`; it must be this processor's and
    /// taxonomy's (a model of another taxonomy would recommend labels this one lacks).
    pub fn attach_local(&mut self, model: std::sync::Arc<LocalModel>) -> anyhow::Result<()> {
        let (name, sha) = self.taxonomy_id();
        if model.info.processor != self.name() || model.info.taxonomy_sha256 != sha {
            return Err(user(format!(
                "the local model was trained for {} with taxonomy {:?} ({}), not {} with                  taxonomy {name:?} ({}): run `train` again",
                model.info.processor,
                model.info.taxonomy_name,
                &model.info.taxonomy_sha256.get(..12).unwrap_or(""),
                self.name(),
                sha.get(..12).unwrap_or("")
            )));
        }
        match self {
            Self::ProductLabeling(p) => p.local = Some(model),
        }
        Ok(())
    }

    /// Adds the K most similar human-labelled issues to each AI prompt.
    pub fn attach_few_shot(&mut self, few_shot: local::FewShot) {
        match self {
            Self::ProductLabeling(p) => p.few_shot = Some(few_shot),
        }
    }

    /// Estimated prompt tokens the few-shot examples add to one request (0 without).
    pub fn few_shot_tokens(&self) -> u64 {
        match self {
            Self::ProductLabeling(p) => p.few_shot.as_ref().map_or(0, |f| f.tokens_per_issue()),
        }
    }

    /// The attached `local` model, if any.
    pub fn local_model(&self) -> Option<&LocalModel> {
        match self {
            Self::ProductLabeling(p) => p.local.as_deref(),
        }
    }

    fn validated_labeling(a: &product_labeling::Analysis) -> Validated {
        Validated {
            analysis: serde_json::to_value(a).unwrap_or(Value::Null),
            confidence: a.confidence,
            recommendations: ProductLabeling::recommendations(a),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_processors_list_the_known_ones() {
        let err = Processor::get("sentiment", &Options::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown processor \"sentiment\"; known processors: product-labeling"
        );
        assert_eq!(
            crate::error::ExitStatus::of_error(&err),
            crate::error::ExitStatus::Failure
        );
        let p = Processor::get("product-labeling", &Options::default()).unwrap();
        assert_eq!((p.name(), p.version()), ("product-labeling", "1.0.0"));
    }

    #[test]
    fn a_missing_taxonomy_file_is_a_user_error() {
        let opts = Options {
            taxonomy: Some("/nonexistent/t.toml".into()),
            token_budget: None,
        };
        let err = Processor::get("product-labeling", &opts).unwrap_err();
        assert_eq!(
            crate::error::ExitStatus::of_error(&err),
            crate::error::ExitStatus::Failure
        );
        assert!(err.to_string().contains("/nonexistent/t.toml"));
    }
}
