//! The REST endpoints `update-labels` uses: the issue's labels now (conditional GET through the
//! ETag cache), adding labels (`POST …/issues/{n}/labels`, never the PUT that replaces the whole
//! set), removing one (`DELETE …/labels/{name}`, the name percent-encoded as one path segment),
//! looking up and creating repository labels, and the explanatory comment. Every write goes
//! through [`Client::write`]: the shared retry loop, one at a time, paced.

use reqwest::Method;
use serde_json::{json, Value};
use url::Url;

use crate::db::Db;
use crate::github::client::{Client, GitHubError, Page};
use crate::github::models::RestLabel;
use crate::github::pacing::Pacer;
use crate::github::rest;
use crate::store::Label;

/// An issue as GitHub has it right now.
#[derive(Debug, Clone)]
pub struct IssueNow {
    pub number: u64,
    /// `(org, repo)` it lives in now (differs after a transfer or a rename).
    pub location: Option<(String, String)>,
    pub labels: Vec<Label>,
    pub state: String,
}

impl IssueNow {
    pub fn names(&self) -> Vec<String> {
        self.labels.iter().map(|l| l.name.clone()).collect()
    }
}

fn labels_of(page: &Page, url: &Url) -> Result<Vec<Label>, GitHubError> {
    let list: Vec<RestLabel> =
        serde_json::from_slice(&page.body).map_err(|e| GitHubError::BadBody {
            url: url.to_string(),
            why: format!("not a list of labels: {e}"),
        })?;
    Ok(list.into_iter().map(Label::from).collect())
}

/// `repos/{org}/{repo}/{rest…}` with each extra part as one percent-encoded path segment, so a
/// label like `product::kots`, `needs info`, `100%` or an emoji arrives as its exact name.
fn repo_url(client: &Client, org: &str, repo: &str, parts: &[&str]) -> Result<Url, GitHubError> {
    let bad = |why: String| GitHubError::BadBody {
        url: client.config().api_url.to_string(),
        why,
    };
    let mut url = client
        .api(&format!("repos/{org}/{repo}"))
        .map_err(|e| bad(e.to_string()))?;
    url.path_segments_mut()
        .map_err(|()| bad("the API URL cannot take a path".into()))?
        .pop_if_empty()
        .extend(parts);
    Ok(url)
}

/// `GET /repos/{o}/{r}/issues/{n}`, conditional on the cached ETag (a 304 is free).
pub async fn issue_now(
    client: &Client,
    db: &mut Db,
    org: &str,
    repo: &str,
    number: u64,
) -> anyhow::Result<IssueNow> {
    let issue = rest::get_issue(client, db, org, repo, number).await?;
    let location = issue.repository();
    Ok(IssueNow {
        number: issue.number,
        location,
        state: issue.state,
        labels: issue.labels.into_iter().map(Label::from).collect(),
    })
}

/// `POST /repos/{o}/{r}/issues/{n}/labels` with `{"labels": [...]}`: GitHub adds them to what
/// the issue has and answers with the whole set. (It would also create labels the repository
/// lacks, without description: callers check with [`repo_label`] first.)
pub async fn add_labels(
    client: &Client,
    pacer: &Pacer,
    org: &str,
    repo: &str,
    number: u64,
    names: &[String],
) -> Result<(u16, Vec<Label>), GitHubError> {
    let url = repo_url(
        client,
        org,
        repo,
        &["issues", &number.to_string(), "labels"],
    )?;
    let page = client
        .write(Method::POST, &url, Some(&json!({ "labels": names })), pacer)
        .await?;
    Ok((page.status.as_u16(), labels_of(&page, &url)?))
}

/// What removing a label from an issue came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Removed {
    /// Removed; the labels the issue still has.
    Done(u16, Vec<Label>),
    /// GitHub says the issue does not carry it (someone removed it meanwhile): 404.
    NotOnIssue,
}

/// `DELETE /repos/{o}/{r}/issues/{n}/labels/{name}`.
pub async fn remove_label(
    client: &Client,
    pacer: &Pacer,
    org: &str,
    repo: &str,
    number: u64,
    name: &str,
) -> Result<Removed, GitHubError> {
    let url = repo_url(
        client,
        org,
        repo,
        &["issues", &number.to_string(), "labels", name],
    )?;
    match client.write(Method::DELETE, &url, None, pacer).await {
        Ok(page) => Ok(Removed::Done(page.status.as_u16(), labels_of(&page, &url)?)),
        // The issue was read a moment ago: a 404 here is GitHub's "Label does not exist".
        Err(GitHubError::NotFound { .. }) => Ok(Removed::NotOnIssue),
        Err(e) => Err(e),
    }
}

/// `GET /repos/{o}/{r}/labels/{name}`: the repository's label (GitHub matches names without
/// regard to case), or `None` on 404.
pub async fn repo_label(
    client: &Client,
    org: &str,
    repo: &str,
    name: &str,
) -> Result<Option<Label>, GitHubError> {
    let url = repo_url(client, org, repo, &["labels", name])?;
    match client.get(&url, None).await {
        Ok(page) => {
            let l: RestLabel =
                serde_json::from_slice(&page.body).map_err(|e| GitHubError::BadBody {
                    url: url.to_string(),
                    why: format!("not a label: {e}"),
                })?;
            Ok(Some(Label::from(l)))
        }
        Err(GitHubError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `POST /repos/{o}/{r}/labels`. A 422 `already_exists` (someone created it meanwhile) counts
/// as created. GitHub caps descriptions at 100 characters.
pub async fn create_label(
    client: &Client,
    pacer: &Pacer,
    org: &str,
    repo: &str,
    label: &Label,
) -> Result<u16, GitHubError> {
    let url = repo_url(client, org, repo, &["labels"])?;
    let mut body = json!({
        "name": label.name,
        "color": label.color.as_deref().unwrap_or(DEFAULT_COLOR),
    });
    if let Some(d) = &label.description {
        body["description"] = Value::String(d.chars().take(100).collect());
    }
    match client.write(Method::POST, &url, Some(&body), pacer).await {
        Ok(page) => Ok(page.status.as_u16()),
        Err(GitHubError::Status { status: 422, .. }) => {
            // Only "already exists" is harmless: check that the label is there now.
            match repo_label(client, org, repo, &label.name).await? {
                Some(_) => Ok(422),
                None => Err(GitHubError::Status {
                    status: 422,
                    url: url.to_string(),
                    message: format!("GitHub refused to create label {:?}", label.name),
                }),
            }
        }
        Err(e) => Err(e),
    }
}

/// Colour of labels this tool creates (GitHub's own default grey).
pub const DEFAULT_COLOR: &str = "ededed";

/// `POST /repos/{o}/{r}/issues/{n}/comments`, never repeated blindly: a comment whose outcome
/// is unknown is [`GitHubError::OutcomeUnknown`], and the caller looks for it before posting again.
pub async fn post_comment(
    client: &Client,
    pacer: &Pacer,
    org: &str,
    repo: &str,
    number: u64,
    body: &str,
) -> Result<u16, GitHubError> {
    let url = repo_url(
        client,
        org,
        repo,
        &["issues", &number.to_string(), "comments"],
    )?;
    let page = client
        .write_once(&url, &json!({ "body": body }), pacer)
        .await?;
    Ok(page.status.as_u16())
}

/// Whether one of the issue's comments carries `marker` (a comment posted by an earlier run
/// whose record was lost).
pub async fn has_comment_with(
    client: &Client,
    db: &mut Db,
    org: &str,
    repo: &str,
    number: u64,
    marker: &str,
) -> anyhow::Result<bool> {
    let comments = rest::list_comments(client, db, org, repo, number).await?;
    Ok(comments
        .iter()
        .any(|c| c.body.as_deref().is_some_and(|b| b.contains(marker))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_are_one_encoded_path_segment_also_on_enterprise_server() {
        let cfg = crate::github::config::enterprise_for_tests();
        let client = Client::new(cfg, std::sync::Arc::new(crate::report::Silent)).unwrap();
        let url = repo_url(
            &client,
            "o",
            "r",
            &["issues", "7", "labels", "100% broken 🐛 ?#/x"],
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "https://ghe.example.com/api/v3/repos/o/r/issues/7/labels/100%25%20broken%20%F0%9F%90%9B%20%3F%23%2Fx"
        );
        let url = repo_url(&client, "o", "r", &["labels", "product::kots"]).unwrap();
        assert_eq!(
            url.as_str(),
            "https://ghe.example.com/api/v3/repos/o/r/labels/product::kots"
        );
    }
}
