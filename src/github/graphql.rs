//! GraphQL queries for bulk issue collection (GitHub GraphQL API), their response shapes, and the
//! conversion of issue nodes to [`StoredIssue`].

use serde::Deserialize;
use serde_json::{json, Value};

use crate::store::{names, Comment, Issue, Label, Metadata, StoredIssue, User};

/// Issues per page and labels/comments per issue: GitHub's `first` maximum. Cost of one page is
/// (1 + 100 + 100) / 100 ≈ 2 points (GitHub's GraphQL point cost: requested nodes / 100).
pub const PAGE_SIZE: u32 = 100;

/// One page of a repository's issues with their labels and first 100 comments. `filterBy` carries
/// `since` (incremental runs), `states` and `labels`. Ordered by update time, newest first, so
/// `--limit` keeps the most recently active issues.
pub const ISSUES_QUERY: &str = r#"query Issues($owner: String!, $name: String!, $first: Int!, $cursor: String, $filter: IssueFilters) {
  repository(owner: $owner, name: $name) {
    nameWithOwner
    issues(first: $first, after: $cursor, filterBy: $filter, orderBy: {field: UPDATED_AT, direction: DESC}) {
      totalCount
      pageInfo { hasNextPage endCursor }
      nodes {
        databaseId number title body state url createdAt updatedAt closedAt
        author { login ... on User { databaseId } ... on Bot { databaseId } }
        labels(first: 100) { totalCount nodes { name color description } }
        comments(first: 100) {
          totalCount
          pageInfo { hasNextPage endCursor }
          nodes { databaseId body createdAt updatedAt author { login ... on User { databaseId } ... on Bot { databaseId } } }
        }
      }
    }
  }
  rateLimit { cost remaining resetAt }
}"#;

/// The comments of one issue after the first 100 (issues with long threads).
pub const COMMENTS_QUERY: &str = r#"query IssueComments($owner: String!, $name: String!, $number: Int!, $cursor: String) {
  repository(owner: $owner, name: $name) {
    issue(number: $number) {
      comments(first: 100, after: $cursor) {
        totalCount
        pageInfo { hasNextPage endCursor }
        nodes { databaseId body createdAt updatedAt author { login ... on User { databaseId } ... on Bot { databaseId } } }
      }
    }
  }
  rateLimit { cost remaining resetAt }
}"#;

/// Filters of one repository collect.
#[derive(Debug, Clone, Default)]
pub struct IssueFilter {
    /// RFC 3339; only issues updated at or after it.
    pub since: Option<String>,
    /// `OPEN` / `CLOSED`; empty = both.
    pub states: Vec<&'static str>,
    /// GitHub returns issues carrying any of these; the caller narrows to all of them.
    pub labels: Vec<String>,
}

pub fn issues_variables(
    owner: &str,
    name: &str,
    first: u32,
    cursor: Option<&str>,
    filter: &IssueFilter,
) -> Value {
    let mut f = serde_json::Map::new();
    if let Some(s) = &filter.since {
        f.insert("since".into(), json!(s));
    }
    if !filter.states.is_empty() {
        f.insert("states".into(), json!(filter.states));
    }
    if !filter.labels.is_empty() {
        f.insert("labels".into(), json!(filter.labels));
    }
    json!({
        "owner": owner,
        "name": name,
        "first": first.clamp(1, PAGE_SIZE),
        "cursor": cursor,
        "filter": Value::Object(f),
    })
}

pub fn comments_variables(owner: &str, name: &str, number: u64, cursor: Option<&str>) -> Value {
    json!({ "owner": owner, "name": name, "number": number, "cursor": cursor })
}

#[derive(Debug, Deserialize)]
pub struct IssuesData {
    pub repository: Option<RepositoryIssues>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryIssues {
    /// `owner/name` as GitHub knows it now: differs from what was asked after a rename (GitHub
    /// resolves old names).
    #[serde(default)]
    pub name_with_owner: Option<String>,
    pub issues: IssueConnection,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssueConnection {
    #[serde(default)]
    pub total_count: u64,
    pub page_info: PageInfo,
    /// Nodes may be `null` when GitHub fails to resolve one; those are skipped and counted.
    #[serde(default)]
    pub nodes: Vec<Option<IssueNode>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageInfo {
    pub has_next_page: bool,
    #[serde(default)]
    pub end_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssueNode {
    #[serde(default)]
    pub database_id: Option<i64>,
    pub number: u64,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    pub state: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub closed_at: Option<String>,
    /// `null` for deleted accounts.
    #[serde(default)]
    pub author: Option<Actor>,
    /// A nullable connection in the schema.
    #[serde(default)]
    pub labels: Option<LabelConnection>,
    pub comments: CommentConnection,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    pub login: String,
    #[serde(default)]
    pub database_id: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelConnection {
    #[serde(default)]
    pub total_count: u64,
    #[serde(default)]
    pub nodes: Vec<Option<LabelNode>>,
}

#[derive(Debug, Deserialize)]
pub struct LabelNode {
    pub name: String,
    #[serde(default)]
    pub color: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommentConnection {
    #[serde(default)]
    pub total_count: u64,
    pub page_info: PageInfo,
    #[serde(default)]
    pub nodes: Vec<Option<CommentNode>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommentNode {
    /// Nullable in the schema; a comment without one cannot be keyed and is skipped.
    #[serde(default)]
    pub database_id: Option<i64>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub author: Option<Actor>,
}

#[derive(Debug, Deserialize)]
pub struct CommentsData {
    pub repository: Option<CommentsRepository>,
}

#[derive(Debug, Deserialize)]
pub struct CommentsRepository {
    pub issue: Option<CommentsIssue>,
}

#[derive(Debug, Deserialize)]
pub struct CommentsIssue {
    pub comments: CommentConnection,
}

fn user(a: Actor) -> User {
    User {
        login: a.login,
        id: a.database_id,
    }
}

/// Comments with an id, in order; returns how many had none.
pub fn convert_comments(nodes: Vec<Option<CommentNode>>, out: &mut Vec<Comment>) -> usize {
    let mut skipped = 0;
    for c in nodes.into_iter().flatten() {
        let Some(id) = c.database_id else {
            skipped += 1;
            continue;
        };
        out.push(Comment {
            id,
            user: c.author.map(user),
            body: c.body,
            created_at: c.created_at,
            updated_at: c.updated_at,
        });
    }
    skipped
}

impl IssueNode {
    /// Whether the issue has comments beyond the first page, and the cursor to continue from.
    pub fn more_comments(&self) -> Option<String> {
        let pi = &self.comments.page_info;
        if pi.has_next_page {
            pi.end_cursor.clone()
        } else {
            None
        }
    }

    pub fn into_stored(self, org: &str, repo: &str) -> anyhow::Result<StoredIssue> {
        names::validate_org(org)?;
        names::validate_repo(repo)?;
        let mut comments = Vec::with_capacity(self.comments.nodes.len());
        let unkeyed = convert_comments(self.comments.nodes, &mut comments);
        if unkeyed > 0 {
            tracing::warn!(
                "{org}/{repo}#{}: {unkeyed} comment(s) without a database id were skipped",
                self.number
            );
        }
        if let Some(l) = self
            .labels
            .as_ref()
            .filter(|l| l.total_count > l.nodes.len() as u64)
        {
            // 100 labels on one issue is GitHub's page size; more is not worth a second query.
            tracing::warn!(
                "{org}/{repo}#{}: only the first {} of {} labels were fetched",
                self.number,
                l.nodes.len(),
                l.total_count
            );
        }
        let labels = self
            .labels
            .map(|l| l.nodes)
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .map(|l| Label {
                name: l.name,
                color: l.color,
                description: l.description,
            })
            .collect();
        let stored = StoredIssue {
            org: org.to_string(),
            repo: repo.to_string(),
            issue: Issue {
                number: self.number,
                title: self.title,
                // GraphQL's body is `String!` ("" when empty); REST gives null. Store REST's form.
                body: self.body.filter(|b| !b.is_empty()),
                state: self.state.to_ascii_lowercase(),
                labels,
                user: self.author.map(user),
                comments,
                created_at: self.created_at,
                updated_at: self.updated_at,
                attachments: Vec::new(),
                id: self.database_id,
                html_url: self.url,
                closed_at: self.closed_at,
                comment_count: Some(self.comments.total_count),
            },
            metadata: Metadata::now(),
        };
        stored.check_ranges().map_err(crate::error::user)?;
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_response_of_the_protocol_notes_converts() {
        let data = json!({"repository":{"issues":{"totalCount":742,"pageInfo":{"hasNextPage":true,"endCursor":"Y3Vy"},
          "nodes":[{"number":12,"title":"Crash","body":"","state":"OPEN","createdAt":"2024-05-01T10:00:00Z","updatedAt":"2024-05-03T08:00:00Z",
           "author":null,"labels":{"nodes":[{"name":"bug","color":"d73a4a","description":null}]},
           "comments":{"totalCount":101,"pageInfo":{"hasNextPage":true,"endCursor":"c100"},
             "nodes":[{"databaseId":1501,"author":{"login":"hubot"},"body":"ack","createdAt":"2024-05-02T00:00:00Z","updatedAt":"2024-05-02T00:00:00Z"},
                      {"databaseId":null,"author":null,"body":"x"}]}}, null]}},
          "rateLimit":{"cost":2,"remaining":4998,"resetAt":"2024-05-03T09:00:00Z"}});
        let d: IssuesData = serde_json::from_value(data).unwrap();
        let conn = d.repository.unwrap().issues;
        assert_eq!(conn.page_info.end_cursor.as_deref(), Some("Y3Vy"));
        let node = conn.nodes.into_iter().flatten().next().unwrap();
        assert_eq!(node.more_comments().as_deref(), Some("c100"));
        let s = node.into_stored("o", "r").unwrap();
        assert_eq!(s.issue.state, "open");
        assert_eq!(s.issue.body, None);
        assert_eq!(s.issue.user, None);
        assert_eq!(s.issue.comments.len(), 1);
        assert_eq!(s.issue.comments[0].user.as_ref().unwrap().login, "hubot");
        assert_eq!(s.issue.comment_count, Some(101));
        assert_eq!(s.issue.labels[0].name, "bug");
    }

    #[test]
    fn variables_carry_filters_and_clamp_page_size() {
        let f = IssueFilter {
            since: Some("2024-01-01T00:00:00Z".into()),
            states: vec!["OPEN"],
            labels: vec!["bug".into()],
        };
        let v = issues_variables("o", "r", 500, None, &f);
        assert_eq!(v["first"], 100);
        assert_eq!(v["filter"]["since"], "2024-01-01T00:00:00Z");
        assert_eq!(v["filter"]["states"], json!(["OPEN"]));
        assert_eq!(v["cursor"], Value::Null);
        let v = issues_variables("o", "r", 100, Some("c"), &IssueFilter::default());
        assert_eq!(v["filter"], json!({}));
    }
}
