//! Where and how to reach GitHub: REST and GraphQL URLs (GitHub.com or Enterprise Server),
//! the token, and the cap on any single wait.

use std::time::Duration;

use url::Url;

use crate::env::GITHUB_MAX_WAIT as ENV_GITHUB_MAX_WAIT;

pub const DEFAULT_API_URL: &str = "https://api.github.com";
/// First backoff delay after a 5xx or network fault: ~1 s, 2 s, 4 s, … (max 30 s).
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);

/// Where and how to talk to GitHub.
#[derive(Clone)]
pub struct ClientConfig {
    pub api_url: Url,
    pub graphql_url: Url,
    pub token: String,
    /// Cap on any single wait (env `GITHUB_ANALYSIS_MAX_WAIT`); `None` waits as long as GitHub asks.
    pub max_wait: Option<Duration>,
    /// First delay of the backoff after a 5xx or network fault (env `GITHUB_ANALYSIS_RETRY_DELAY`).
    pub retry_delay: Duration,
}

impl ClientConfig {
    /// Resolves URLs: GraphQL is `GITHUB_GRAPHQL_URL` if given, else `{api}/graphql`, or
    /// `https://HOST/api/graphql` for an Enterprise Server REST URL `https://HOST/api/v3`.
    pub fn new(
        api_url: Option<&str>,
        graphql_url: Option<&str>,
        token: String,
        max_wait: Option<&str>,
        retry_delay: Option<Duration>,
    ) -> anyhow::Result<Self> {
        let api_raw = api_url
            .filter(|s| !s.trim().is_empty())
            .unwrap_or(DEFAULT_API_URL);
        let api_url = parse_base(api_raw, "GITHUB_API_URL")?;
        let graphql_url = match graphql_url.filter(|s| !s.trim().is_empty()) {
            Some(g) => Url::parse(g.trim()).map_err(|e| {
                crate::error::user(format!("GITHUB_GRAPHQL_URL {g:?} is not a valid URL: {e}"))
            })?,
            None => derive_graphql(&api_url)?,
        };
        let max_wait = match max_wait.filter(|s| !s.trim().is_empty()) {
            None => None,
            // try_from refuses negative, NaN, infinite and absurdly large values.
            Some(s) => match s.trim().parse::<f64>().map(Duration::try_from_secs_f64) {
                Ok(Ok(d)) => Some(d),
                _ => {
                    return Err(crate::error::user(format!(
                        "{ENV_GITHUB_MAX_WAIT} must be a non-negative number of seconds, got {s:?}"
                    )))
                }
            },
        };
        Ok(Self {
            api_url,
            graphql_url,
            token,
            max_wait,
            retry_delay: retry_delay.unwrap_or(DEFAULT_RETRY_DELAY),
        })
    }
}

/// Never prints the token.
impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("api_url", &self.api_url.as_str())
            .field("graphql_url", &self.graphql_url.as_str())
            .field("token", &"<redacted>")
            .field("max_wait", &self.max_wait)
            .field("retry_delay", &self.retry_delay)
            .finish()
    }
}

/// The base URL with exactly one trailing slash, so `join("repos/…")` keeps any path prefix.
fn parse_base(raw: &str, what: &str) -> anyhow::Result<Url> {
    let mut s = raw.trim().to_string();
    if !s.ends_with('/') {
        s.push('/');
    }
    let url = Url::parse(&s)
        .map_err(|e| crate::error::user(format!("{what} {raw:?} is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(crate::error::user(format!(
            "{what} {raw:?} must be an http(s) URL"
        )));
    }
    Ok(url)
}

fn derive_graphql(api: &Url) -> anyhow::Result<Url> {
    let path = api.path().trim_end_matches('/');
    let joined = if let Some(prefix) = path.strip_suffix("/api/v3") {
        // Enterprise Server: REST at /api/v3, GraphQL at /api/graphql.
        api.join(&format!("{prefix}/api/graphql"))
    } else {
        api.join("graphql")
    };
    joined.map_err(|e| crate::error::user(format!("cannot derive the GraphQL URL from {api}: {e}")))
}

/// The configuration of a GitHub Enterprise Server at `ghe.example.com` (unit tests).
#[cfg(test)]
pub fn enterprise_for_tests() -> ClientConfig {
    ClientConfig::new(
        Some("https://ghe.example.com/api/v3"),
        None,
        "t".into(),
        None,
        None,
    )
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphql_url_is_derived_for_dotcom_and_enterprise_server() {
        let c = ClientConfig::new(None, None, "t".into(), None, None).unwrap();
        assert_eq!(c.graphql_url.as_str(), "https://api.github.com/graphql");
        let c = enterprise_for_tests();
        assert_eq!(
            c.graphql_url.as_str(),
            "https://ghe.example.com/api/graphql"
        );
        assert_eq!(
            c.api_url.join("repos/o/r").unwrap().as_str(),
            "https://ghe.example.com/api/v3/repos/o/r"
        );
        let c = ClientConfig::new(
            Some("http://127.0.0.1:9/"),
            Some("http://127.0.0.1:9/gql"),
            "t".into(),
            Some("0.5"),
            None,
        )
        .unwrap();
        assert_eq!(c.graphql_url.as_str(), "http://127.0.0.1:9/gql");
        assert_eq!(c.max_wait, Some(Duration::from_millis(500)));
        assert!(ClientConfig::new(Some("ftp://x"), None, "t".into(), None, None).is_err());
        assert!(ClientConfig::new(None, None, "t".into(), Some("-1"), None).is_err());
        assert!(ClientConfig::new(None, None, "t".into(), Some("1e300"), None).is_err());
        assert!(ClientConfig::new(None, None, "t".into(), Some("NaN"), None).is_err());
    }
}
