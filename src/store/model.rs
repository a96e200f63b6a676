//! StoredIssue and AI result file shapes (docs/data.md), compatible with the original tool.

use serde::{Deserialize, Serialize};

/// Which issues a selection or a collection covers, by GitHub state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssueState {
    #[default]
    Open,
    Closed,
    All,
}

impl IssueState {
    pub const NAMES: [&'static str; 3] = ["open", "closed", "all"];

    /// Whether an issue in GitHub state `state` (`open` / `closed`) is covered.
    pub fn covers(self, state: &str) -> bool {
        match self {
            Self::All => true,
            Self::Open => state == "open",
            Self::Closed => state == "closed",
        }
    }
}

impl std::str::FromStr for IssueState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "open" => Ok(Self::Open),
            "closed" => Ok(Self::Closed),
            "all" => Ok(Self::All),
            other => Err(format!("unknown issue state {other:?}")),
        }
    }
}

/// One issue file: `issues/{org}_{repo}_issue_{n}.json`, the source of truth for issue content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredIssue {
    pub org: String,
    pub repo: String,
    pub issue: Issue,
    pub metadata: Metadata,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Issue {
    pub number: u64,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    pub state: String,
    #[serde(default)]
    pub labels: Vec<Label>,
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub comments: Vec<Comment>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    #[serde(default)]
    pub attachments: Vec<serde_json::Value>,
    /// GitHub's global id (absent in files written by the original tool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<String>,
    /// Comment count as reported by GitHub, which can exceed `comments.len()` when the bodies
    /// were not fetched (e.g. imported REST list objects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment_count: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    pub name: String,
    #[serde(default)]
    pub color: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub login: String,
    #[serde(default)]
    pub id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comment {
    pub id: i64,
    /// `None` for comments of deleted accounts ("ghost").
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub body: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub collection_timestamp: String,
    pub tool_version: String,
}

impl Metadata {
    pub fn now() -> Self {
        Self {
            collection_timestamp: chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

impl StoredIssue {
    /// A bare open issue (no body, labels, user or comments), for building on in code and tests.
    pub fn new(org: &str, repo: &str, number: u64, title: &str) -> Self {
        Self {
            org: org.into(),
            repo: repo.into(),
            issue: Issue {
                number,
                title: title.into(),
                body: None,
                state: "open".into(),
                labels: Vec::new(),
                user: None,
                comments: Vec::new(),
                created_at: None,
                updated_at: None,
                attachments: Vec::new(),
                id: None,
                html_url: None,
                closed_at: None,
                comment_count: None,
            },
            metadata: Metadata::now(),
        }
    }

    /// Checks what the database cannot hold before it gets there: DuckDB stores numbers as
    /// signed 64-bit integers, so one out-of-range value would otherwise fail a whole bulk load
    /// (and every later `sync`) instead of this one issue.
    pub fn check_ranges(&self) -> Result<(), String> {
        let i = &self.issue;
        let fits = |n: u64| i64::try_from(n).is_ok();
        if !fits(i.number) || i.number == 0 {
            return Err(format!(
                "issue number {} is out of range (1 to {})",
                i.number,
                i64::MAX
            ));
        }
        if let Some(c) = i.comment_count.filter(|c| !fits(*c)) {
            return Err(format!(
                "comment count {c} of issue #{} is out of range (at most {})",
                i.number,
                i64::MAX
            ));
        }
        Ok(())
    }

    /// The database key of an issue: `org/repo#number`.
    pub fn key(&self) -> String {
        issue_key(&self.org, &self.repo, self.issue.number)
    }
}

pub fn issue_key(org: &str, repo: &str, number: u64) -> String {
    format!("{org}/{repo}#{number}")
}
