//! `Plan`: everything a processing run resolves before any issue is touched — model, generation
//! settings, processor, prices, retry policy — from an [`AiConfig`], the serialisable form that
//! batch jobs store so that later commands rebuild the same plan without the command line.

mod estimate;
mod local;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ai::http::RetryPolicy;
use crate::ai::pricing::PriceTable;
use crate::ai::{self, Endpoint, GenSettings, ModelSpec, Provider, ProviderKind};
use crate::env::EnvFn;
use crate::error::user;
use crate::processors::{self, Processor};
use crate::report::Reporter;
pub use estimate::{Estimator, PrefixCache, EST_COMPLETION_TOKENS};

/// How to process: taxonomy, model settings, token budget, prices and timeouts. What the
/// processing flags say, and what a batch job keeps (in `batch_jobs.metadata.config`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AiConfig {
    /// Taxonomy TOML file replacing the embedded one.
    #[serde(default)]
    pub taxonomy: Option<PathBuf>,
    /// Token budget of one issue in the prompt.
    #[serde(default)]
    pub token_budget: Option<usize>,
    /// `key=value` model settings.
    #[serde(default)]
    pub settings: Vec<String>,
    /// Price table override file.
    #[serde(default)]
    pub prices: Option<PathBuf>,
    /// Seconds before one request is abandoned and retried.
    #[serde(default)]
    pub request_timeout: Option<f64>,
    /// Retries after overloads, server errors, timeouts and network errors.
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Longest provider-requested wait (seconds) a request waits out.
    #[serde(default)]
    pub max_server_wait: Option<f64>,
    /// Where trained `local` models live (`<data dir>/models`): `--model local` loads the
    /// taxonomy's model from here, and with no model configured it is the default if present.
    #[serde(default)]
    pub models_dir: Option<PathBuf>,
    /// Few-shot: the K most similar human-labelled issues added to each AI prompt.
    #[serde(default)]
    pub examples: Option<usize>,
}

impl AiConfig {
    /// The same configuration with absolute file paths: a job is read again by commands that
    /// may run from another folder.
    pub fn with_absolute_paths(&self) -> Self {
        let abs = |p: &PathBuf| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        Self {
            taxonomy: self.taxonomy.as_ref().map(abs),
            prices: self.prices.as_ref().map(abs),
            ..self.clone()
        }
    }
}

/// Everything resolved from a configuration before any issue is touched.
#[derive(Debug, Clone)]
pub struct Plan {
    pub model: ModelSpec,
    pub settings: GenSettings,
    pub processor: Processor,
    pub prices: PriceTable,
    pub policy: RetryPolicy,
}

impl Plan {
    /// Resolves model (flag > env > keys > the taxonomy's trained `local` model > `rules`, with
    /// a notice when an offline model is a fallback), settings, processor, prices and retry
    /// policy.
    pub fn resolve(
        processor: &str,
        model: Option<&str>,
        config: &AiConfig,
        env: &EnvFn,
        reporter: &dyn Reporter,
    ) -> anyhow::Result<Self> {
        let mut resolved = ai::resolve_model(model, env)?;
        let mut processor = Processor::get(
            processor,
            &processors::Options {
                taxonomy: config.taxonomy.clone(),
                token_budget: config.token_budget,
            },
        )?;
        local::attach(&mut resolved, &mut processor, config.models_dir.as_deref())?;
        if resolved.spec.provider == ProviderKind::Rules {
            // The one model that matches signals: a pattern too large to compile stops here.
            processor.taxonomy().compile_signals()?;
        }
        if let Some(k) = config.examples.filter(|k| *k > 0) {
            local::attach_examples(&resolved, &mut processor, config.models_dir.as_deref(), k)?;
        }
        if let Some(n) = &resolved.notice {
            reporter.note(n);
        }
        let settings = GenSettings::parse(&resolved.spec, &config.settings)?;
        let prices = match &config.prices {
            Some(p) => PriceTable::with_overrides(p)?,
            None => PriceTable::builtin(),
        };
        let mut policy = RetryPolicy::from_env(env)?;
        if let Some(t) = config.request_timeout {
            if !t.is_finite() || t <= 0.0 || t > 3600.0 {
                return Err(user(format!(
                    "--request-timeout {t}: must be between 0 and 3600 seconds"
                )));
            }
            policy.timeout = Duration::from_secs_f64(t);
        }
        if let Some(n) = config.max_retries {
            if n > 20 {
                return Err(user(format!("--max-retries {n}: at most 20")));
            }
            policy.max_retries = n;
        }
        if let Some(w) = config.max_server_wait {
            let cap = crate::ai::errors::MAX_SERVER_WAIT.as_secs_f64();
            if !w.is_finite() || !(0.0..=cap).contains(&w) {
                return Err(user(format!(
                    "--max-server-wait {w}: must be between 0 and {cap} seconds"
                )));
            }
            policy.max_server_delay = Duration::from_secs_f64(w);
        }
        Ok(Self {
            model: resolved.spec,
            settings,
            processor,
            prices,
            policy,
        })
    }

    /// Whether the model runs here, offline (`rules`): no requests, no key, no cost.
    pub fn offline(&self) -> bool {
        self.model.provider.is_offline()
    }

    /// The provider's key and base URL from the environment (`None` for `rules`); a missing
    /// key is a user error.
    pub fn endpoint(&self, env: &EnvFn) -> anyhow::Result<Option<Endpoint>> {
        Endpoint::from_env(self.model.provider, env)
    }

    /// Tokens and cost estimates for this plan.
    pub fn estimator(&self) -> Estimator<'_> {
        Estimator::new(self)
    }
}

// The one construction of a provider, here rather than in `ai` because a plan sits above the
// AI layer: `ai` knows nothing of processors and plans.
impl Provider {
    /// The provider of a plan: `rules` needs nothing; a network provider needs an endpoint. No
    /// endpoint for a network model means nothing will be sent (an empty run) and gives `Rules`.
    pub fn from_plan(plan: &Plan, endpoint: Option<Endpoint>) -> anyhow::Result<Self> {
        match (plan.model.provider, endpoint) {
            (ProviderKind::Rules | ProviderKind::Local, _) | (_, None) => Ok(Provider::Rules),
            (_, ep) => Provider::new(&plan.model, ep, plan.settings.clone()),
        }
    }

    /// A provider that builds request bodies but can send nothing (dry runs need no key).
    pub fn for_bodies(plan: &Plan) -> anyhow::Result<Self> {
        Self::from_plan(
            plan,
            Some(Endpoint {
                base_url: String::new(),
                key: ai::Secret::new("dry-run"),
            }),
        )
    }
}
