//! REST endpoints `collect` uses (single issue, its comments, an organisation's repositories),
//! paged by `Link` headers and made conditional with the ETag cache (a 304 costs no rate limit).

use serde::de::DeserializeOwned;
use serde::Deserialize;
use url::Url;

use crate::db::{CachedPage, Db};
use crate::github::client::{Client, GitHubError};
use crate::github::models::{RestIssue, RestUser};
use crate::store::{Comment, User};

/// Items per REST page: GitHub's maximum.
pub const PER_PAGE: u32 = 100;

/// GETs a URL through the ETag cache. Returns the body and the next-page link, replaying the
/// cached ones on a 304.
pub async fn get_cached(
    client: &Client,
    db: &mut Db,
    url: &Url,
) -> anyhow::Result<(Vec<u8>, Option<Url>)> {
    let key = url.as_str();
    let cached = db.cached_page(key)?;
    let page = client
        .get(url, cached.as_ref().map(|c| c.etag.as_str()))
        .await?;
    if page.not_modified() {
        if let Some(c) = cached {
            let next = c.link_next.as_deref().and_then(|n| Url::parse(n).ok());
            return Ok((c.body.into_bytes(), next));
        }
        // A 304 without our ETag would be a server bug; asking again without one is safe.
        let page = client.get(url, None).await?;
        return Ok((page.body, page.next));
    }
    if let (Some(etag), Ok(text)) = (&page.etag, std::str::from_utf8(&page.body)) {
        db.store_page(
            key,
            &CachedPage {
                etag: etag.clone(),
                body: text.to_string(),
                link_next: page.next.as_ref().map(Url::to_string),
            },
        )?;
    }
    Ok((page.body, page.next))
}

/// Every item of a paginated list, following `rel="next"` links verbatim.
async fn get_all<T: DeserializeOwned>(
    client: &Client,
    db: &mut Db,
    first: Url,
) -> anyhow::Result<Vec<T>> {
    let mut out = Vec::new();
    let mut next = Some(first);
    let mut pages = 0;
    while let Some(url) = next {
        pages += 1;
        // A server that links in a circle must not keep us here forever.
        if pages > 10_000 {
            anyhow::bail!("more than 10,000 pages at {url}: giving up");
        }
        let (body, n) = get_cached(client, db, &url).await?;
        let items: Vec<T> = serde_json::from_slice(&body).map_err(|e| GitHubError::BadBody {
            url: url.to_string(),
            why: format!("not a JSON array of the expected objects: {e}"),
        })?;
        out.extend(items);
        next = n;
    }
    Ok(out)
}

/// `GET /repos/{o}/{r}/issues/{n}` (follows the 301 of a transferred issue).
pub async fn get_issue(
    client: &Client,
    db: &mut Db,
    org: &str,
    repo: &str,
    number: u64,
) -> anyhow::Result<RestIssue> {
    let url = client.api(&format!("repos/{org}/{repo}/issues/{number}"))?;
    let (body, _) = get_cached(client, db, &url).await?;
    Ok(
        serde_json::from_slice(&body).map_err(|e| GitHubError::BadBody {
            url: url.to_string(),
            why: format!("not an issue object: {e}"),
        })?,
    )
}

#[derive(Debug, Deserialize)]
struct RestComment {
    id: i64,
    #[serde(default)]
    user: Option<RestUser>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    updated_at: Option<String>,
}

/// Every comment of an issue, oldest first.
pub async fn list_comments(
    client: &Client,
    db: &mut Db,
    org: &str,
    repo: &str,
    number: u64,
) -> anyhow::Result<Vec<Comment>> {
    let mut url = client.api(&format!("repos/{org}/{repo}/issues/{number}/comments"))?;
    url.query_pairs_mut()
        .append_pair("per_page", &PER_PAGE.to_string());
    let items: Vec<RestComment> = get_all(client, db, url).await?;
    Ok(items
        .into_iter()
        .map(|c| Comment {
            id: c.id,
            user: c.user.map(|u| User {
                login: u.login,
                id: u.id,
            }),
            body: c.body,
            created_at: c.created_at,
            updated_at: c.updated_at,
        })
        .collect())
}

/// The fields of a repository that decide whether to collect it.
#[derive(Debug, Clone, Deserialize)]
pub struct RepoInfo {
    pub name: String,
    #[serde(default)]
    pub archived: bool,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default = "yes")]
    pub has_issues: bool,
}

fn yes() -> bool {
    true
}

/// `GET /orgs/{org}/repos`, or `/users/{org}/repos` when the owner is a user account.
pub async fn list_repos(client: &Client, db: &mut Db, org: &str) -> anyhow::Result<Vec<RepoInfo>> {
    let mut url = client.api(&format!("orgs/{org}/repos"))?;
    url.query_pairs_mut()
        .append_pair("type", "all")
        .append_pair("per_page", &PER_PAGE.to_string());
    match get_all(client, db, url).await {
        Err(e)
            if matches!(
                e.downcast_ref::<GitHubError>(),
                Some(GitHubError::NotFound { .. })
            ) =>
        {
            let mut url = client.api(&format!("users/{org}/repos"))?;
            url.query_pairs_mut()
                .append_pair("type", "owner")
                .append_pair("per_page", &PER_PAGE.to_string());
            get_all(client, db, url).await
        }
        other => other,
    }
}

/// The repository an issue lives in now, from its `repository_url` (differs after a transfer).
pub fn issue_location(issue: &RestIssue) -> Option<(String, String)> {
    issue.repository()
}
