//! Settings resolved once from CLI flags, environment and defaults; env var names live here.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{GlobalArgs, OutputFormat};

/// Data directory (default `./data`).
pub const ENV_DATA_DIR: &str = "GITHUB_ANALYSIS_DATA_DIR";
/// Seconds to wait for a database held by another process.
pub const ENV_LOCK_TIMEOUT: &str = "GITHUB_ANALYSIS_LOCK_TIMEOUT";
/// Log filter override (tracing `EnvFilter` syntax).
pub const ENV_LOG: &str = "GITHUB_ANALYSIS_LOG";
/// GitHub token for `collect` (also `--token`).
pub const ENV_GITHUB_TOKEN: &str = "GITHUB_TOKEN";
/// GitHub REST base URL (default `https://api.github.com`; Enterprise Server: `https://HOST/api/v3`).
pub const ENV_GITHUB_API_URL: &str = "GITHUB_API_URL";
/// GitHub GraphQL endpoint (default: derived from the REST base URL).
pub const ENV_GITHUB_GRAPHQL_URL: &str = "GITHUB_GRAPHQL_URL";
/// Upper bound in seconds on any single rate-limit or retry wait of the GitHub client. Unset,
/// waits last as long as GitHub asks (up to its hourly reset); tests set it to a fraction of a
/// second so rate-limit paths run without real waiting.
pub const ENV_GITHUB_MAX_WAIT: &str = "GITHUB_ANALYSIS_MAX_WAIT";
/// OpenAI API key (also read from `.env`).
pub const ENV_OPENAI_API_KEY: &str = "OPENAI_API_KEY";
/// Anthropic API key (also read from `.env`).
pub const ENV_ANTHROPIC_API_KEY: &str = "ANTHROPIC_API_KEY";
/// OpenAI-compatible base URL, including `/v1` (SDK convention).
pub const ENV_OPENAI_BASE_URL: &str = "OPENAI_BASE_URL";
/// Anthropic base URL, without `/v1` (SDK convention).
pub const ENV_ANTHROPIC_BASE_URL: &str = "ANTHROPIC_BASE_URL";
/// Default model string (`provider:model` or `rules`) when `--model` is not given.
pub const ENV_MODEL: &str = "GITHUB_ANALYSIS_MODEL";
/// Price table override (TOML file), see docs/process.md.
pub const ENV_PRICES: &str = "GITHUB_ANALYSIS_PRICES";
/// Seconds before one AI request is abandoned (and retried).
pub const ENV_REQUEST_TIMEOUT: &str = "GITHUB_ANALYSIS_REQUEST_TIMEOUT";

const DEFAULT_DATA_DIR: &str = "data";
const DEFAULT_LOCK_TIMEOUT_SECS: f64 = 10.0;

#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub format: OutputFormat,
    pub lock_timeout: Duration,
    pub verbose: u8,
    pub quiet: bool,
}

impl Settings {
    pub fn resolve(global: &GlobalArgs) -> anyhow::Result<Self> {
        let secs = global.lock_timeout.unwrap_or(DEFAULT_LOCK_TIMEOUT_SECS);
        if !secs.is_finite() || secs < 0.0 {
            return Err(crate::error::user(format!(
                "lock timeout must be a non-negative number of seconds, got {secs}"
            )));
        }
        Ok(Self {
            data_dir: global
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            format: global.format,
            lock_timeout: Duration::from_secs_f64(secs),
            verbose: global.verbose,
            quiet: global.quiet,
        })
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("issues.duckdb")
    }
}
