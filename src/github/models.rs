//! GitHub REST issue objects (as returned by `/repos/{o}/{r}/issues`, search and `gh api`) and
//! their conversion to [`StoredIssue`].

use serde::Deserialize;

use crate::store::{names, Issue, Label, Metadata, StoredIssue, User};

/// The fields of a REST issue that we keep; everything else is ignored.
#[derive(Debug, Deserialize)]
pub struct RestIssue {
    pub number: u64,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    pub state: String,
    #[serde(default)]
    pub id: Option<i64>,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub repository_url: Option<String>,
    /// Real responses give objects; the schema also allows plain strings.
    #[serde(default)]
    pub labels: Vec<RestLabel>,
    #[serde(default)]
    pub user: Option<RestUser>,
    /// The comment count (an integer on issue objects).
    #[serde(default)]
    pub comments: Option<serde_json::Value>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub closed_at: Option<String>,
    /// Present only on pull requests.
    #[serde(default)]
    pub pull_request: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RestLabel {
    Object {
        name: String,
        #[serde(default)]
        color: Option<String>,
        #[serde(default)]
        description: Option<String>,
    },
    Name(String),
}

impl From<RestLabel> for Label {
    fn from(l: RestLabel) -> Self {
        match l {
            RestLabel::Object {
                name,
                color,
                description,
            } => Label {
                name,
                color,
                description,
            },
            RestLabel::Name(name) => Label {
                name,
                color: None,
                description: None,
            },
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct RestUser {
    pub login: String,
    #[serde(default)]
    pub id: Option<i64>,
}

impl RestIssue {
    pub fn is_pull_request(&self) -> bool {
        self.pull_request.as_ref().is_some_and(|v| !v.is_null())
    }

    /// `(org, repo)` from `repository_url` (`…/repos/{org}/{repo}`, also on Enterprise Server).
    pub fn repository(&self) -> Option<(String, String)> {
        let url = self.repository_url.as_deref()?;
        let rest = &url[url.rfind("/repos/")? + "/repos/".len()..];
        let mut parts = rest.trim_end_matches('/').split('/');
        let (org, repo) = (parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        Some((org.to_string(), repo.to_string()))
    }

    pub fn into_stored(self, org: String, repo: String) -> anyhow::Result<StoredIssue> {
        names::validate_org(&org)?;
        names::validate_repo(&repo)?;
        let comment_count = self.comments.as_ref().and_then(|c| c.as_u64());
        let stored = StoredIssue {
            org,
            repo,
            issue: Issue {
                number: self.number,
                title: self.title,
                body: self.body,
                state: self.state.to_ascii_lowercase(),
                labels: self.labels.into_iter().map(Label::from).collect(),
                user: self.user.map(|u| User {
                    login: u.login,
                    id: u.id,
                }),
                comments: Vec::new(),
                created_at: self.created_at,
                updated_at: self.updated_at,
                attachments: Vec::new(),
                id: self.id,
                html_url: self.html_url,
                closed_at: self.closed_at,
                comment_count,
            },
            metadata: Metadata::now(),
        };
        stored.check_ranges().map_err(crate::error::user)?;
        Ok(stored)
    }
}
