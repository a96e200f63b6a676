//! Every environment variable the tool reads, named once; and the one way to read them.
//!
//! Lower layers never call `std::env::var` themselves: they take an [`EnvFn`] (so tests and
//! library users can pass their own) or a value resolved from one.

/// Data directory (default `./data`).
pub const DATA_DIR: &str = "GITHUB_ANALYSIS_DATA_DIR";
/// Seconds to wait for a database held by another process.
pub const LOCK_TIMEOUT: &str = "GITHUB_ANALYSIS_LOCK_TIMEOUT";
/// Log filter override (tracing `EnvFilter` syntax).
pub const LOG: &str = "GITHUB_ANALYSIS_LOG";
/// GitHub token for `collect` (also `--token`).
pub const GITHUB_TOKEN: &str = "GITHUB_TOKEN";
/// GitHub REST base URL (default `https://api.github.com`; Enterprise Server: `https://HOST/api/v3`).
pub const GITHUB_API_URL: &str = "GITHUB_API_URL";
/// GitHub GraphQL endpoint (default: derived from the REST base URL).
pub const GITHUB_GRAPHQL_URL: &str = "GITHUB_GRAPHQL_URL";
/// Upper bound in seconds on any single rate-limit or retry wait of the GitHub client. Unset,
/// waits last as long as GitHub asks (up to its hourly reset); tests set it to a fraction of a
/// second so rate-limit paths run without real waiting.
pub const GITHUB_MAX_WAIT: &str = "GITHUB_ANALYSIS_MAX_WAIT";
/// Scale of the pacing of GitHub writes by `update-labels` (default 1: GitHub's documented
/// secondary limits, a second apart, at most 80 per minute and 500 per hour; 0 turns pacing off,
/// for tests and benchmarks against a fake server; at most 100).
pub const GITHUB_WRITE_PACE: &str = "GITHUB_ANALYSIS_WRITE_PACE";
/// OpenAI API key (also read from `.env`).
pub const OPENAI_API_KEY: &str = "OPENAI_API_KEY";
/// Anthropic API key (also read from `.env`).
pub const ANTHROPIC_API_KEY: &str = "ANTHROPIC_API_KEY";
/// OpenAI-compatible base URL, including `/v1` (SDK convention).
pub const OPENAI_BASE_URL: &str = "OPENAI_BASE_URL";
/// Anthropic base URL, without `/v1` (SDK convention).
pub const ANTHROPIC_BASE_URL: &str = "ANTHROPIC_BASE_URL";
/// Default model string (`provider:model` or `rules`) when `--model` is not given.
pub const MODEL: &str = "GITHUB_ANALYSIS_MODEL";
/// Price table override (TOML file), see docs/process.md.
pub const PRICES: &str = "GITHUB_ANALYSIS_PRICES";
/// Seconds before one AI request is abandoned (and retried).
pub const REQUEST_TIMEOUT: &str = "GITHUB_ANALYSIS_REQUEST_TIMEOUT";
/// Seconds a batch upload or download may move no byte before the attempt is dropped and
/// retried (default 60); uploads and downloads have no whole-request timeout.
pub const TRANSFER_IDLE_TIMEOUT: &str = "GITHUB_ANALYSIS_TRANSFER_IDLE_TIMEOUT";
/// Longest provider-requested wait (seconds) a request waits out before it is given up.
pub const MAX_SERVER_WAIT: &str = "GITHUB_ANALYSIS_MAX_SERVER_WAIT";
/// Most requests in one OpenAI batch (default 50,000).
pub const OPENAI_BATCH_MAX_REQUESTS: &str = "GITHUB_ANALYSIS_OPENAI_BATCH_MAX_REQUESTS";
/// Largest OpenAI batch input file in bytes (default 200 MB).
pub const OPENAI_BATCH_MAX_BYTES: &str = "GITHUB_ANALYSIS_OPENAI_BATCH_MAX_BYTES";
/// Most requests in one Anthropic message batch (default 100,000).
pub const ANTHROPIC_BATCH_MAX_REQUESTS: &str = "GITHUB_ANALYSIS_ANTHROPIC_BATCH_MAX_REQUESTS";
/// Largest Anthropic message batch body in bytes (default 256 MB).
pub const ANTHROPIC_BATCH_MAX_BYTES: &str = "GITHUB_ANALYSIS_ANTHROPIC_BATCH_MAX_BYTES";
/// Enqueued-token budget of one model at the batch provider (OpenAI's per-model queue limit):
/// parts beyond it wait (`queued`) until earlier ones end. Learned from `token_limit_exceeded`
/// refusals when unset; the lower of the two applies.
pub const ENQUEUED_TOKEN_BUDGET: &str = "GITHUB_ANALYSIS_ENQUEUED_TOKEN_BUDGET";
/// Test hook: abort the process at a named step of a submission (`rows`, `input`, `upload`
/// (answered, id not saved), `uploaded`, `create`), or after two items of a local job
/// (`local`), or in `batch collect` after the second chunk's files are durable and before its
/// rows commit (`collect`, with chunks of two lines), to prove a crash there is repaired by
/// `batch status` / `batch reconcile` / collect.
pub const BATCH_CRASH_AT: &str = "GITHUB_ANALYSIS_BATCH_CRASH_AT";

/// Test hook: `STEP:PATH` — at the named step (`selected`: a `batch submit` has selected its
/// issues, before it opens the database to claim them) create `PATH.waiting` and wait until
/// `PATH` exists (at most a minute), to prove two submissions at once never take one issue.
pub const BATCH_PAUSE_AT: &str = "GITHUB_ANALYSIS_BATCH_PAUSE_AT";

/// Seconds of the first delay before a failed request (server error, timeout, network failure)
/// is retried; it doubles with each retry, up to 30 s. Default 0.5 for AI providers, 1 for
/// GitHub. Waits a server asks for (retry-after, rate-limit resets) are not affected.
pub const RETRY_DELAY: &str = "GITHUB_ANALYSIS_RETRY_DELAY";

/// [`RETRY_DELAY`] as read by `var`: `None` when unset or empty; an error message for a value
/// that is not a number of seconds above 0 and at most 60.
pub fn retry_delay(var: &EnvFn) -> Result<Option<std::time::Duration>, String> {
    match var(RETRY_DELAY).filter(|v| !v.trim().is_empty()) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0 && *s <= 60.0)
            .map(|s| Some(std::time::Duration::from_secs_f64(s)))
            .ok_or_else(|| {
                format!("{RETRY_DELAY}={v:?}: expected seconds, more than 0 and at most 60")
            }),
    }
}

/// Reads one variable: `Some` only when it is set (to anything, even empty).
pub type EnvFn = dyn Fn(&str) -> Option<String> + Send + Sync;

/// The process environment.
pub fn process(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Whether the crash test hook asks to stop at `step`.
pub fn crash_requested(step: &str) -> bool {
    process(BATCH_CRASH_AT).is_some_and(|v| v == step)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &'static str) -> impl Fn(&str) -> Option<String> + Send + Sync {
        move |name: &str| (name == RETRY_DELAY).then(|| value.to_string())
    }

    #[test]
    fn retry_delay_takes_seconds_and_refuses_nonsense() {
        assert_eq!(retry_delay(&with("")), Ok(None));
        assert_eq!(
            retry_delay(&with("0.05")),
            Ok(Some(std::time::Duration::from_millis(50)))
        );
        for bad in ["0", "-1", "61", "NaN", "inf", "soon"] {
            let err = retry_delay(&with(bad)).unwrap_err();
            assert!(err.contains(RETRY_DELAY), "{bad}: {err}");
        }
    }
}
