//! Fetching repositories' issues from GitHub (GraphQL pages with labels and comments), apart
//! from storing them: fetchers of several repositories run at once and hand each page to the
//! one collector that owns the files and the database ([`super::collector`]), waiting for its
//! answer before the next page, so storage and `--limit` stay exactly as in a sequential run.

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use crate::github::client::{Client, GitHubError};
use crate::github::graphql::{
    self, CommentsData, IssueFilter, IssuesData, COMMENTS_QUERY, ISSUES_QUERY, PAGE_SIZE,
};
use crate::github::scope::{gql_states, renamed, rfc3339, CollectOptions};
use crate::report::Reporter;
use crate::store::StoredIssue;

/// Smallest GraphQL page the fetcher falls back to when GitHub times out.
const MIN_PAGE_SIZE: u32 = 12;

/// What a repository fetch needs to know from the collector before its first request.
pub(crate) struct Start {
    /// The stored incremental cursor of this repository and scope.
    pub cursor: Option<DateTime<Utc>>,
    /// Issues still allowed by `--limit`.
    pub budget: Option<usize>,
}

/// Messages from fetchers to the collector.
pub(crate) enum Event {
    /// Asks for the repository's cursor and the `--limit` budget.
    Start {
        org: String,
        repo: String,
        reply: oneshot::Sender<Start>,
    },
    /// One page of converted issues (long comment threads complete). The reply is the budget
    /// left (`Some`: go on), or `None` when `--limit` was reached.
    Page {
        org: String,
        repo: String,
        issues: Vec<StoredIssue>,
        incremental: bool,
        reply: oneshot::Sender<Option<Option<usize>>>,
    },
    /// The repository's pages are all handed over (or `--limit` stopped them).
    Done(RepoDone),
    /// The repository failed (the collector decides whether that stops the run).
    Failed {
        org: String,
        repo: String,
        error: anyhow::Error,
    },
}

pub(crate) struct RepoDone {
    pub org: String,
    pub repo: String,
    pub cursor: Option<DateTime<Utc>>,
    pub since: Option<DateTime<Utc>>,
    /// GitHub's clock at the first answer: the next run's cursor.
    pub started: Option<DateTime<Utc>>,
    pub returned: u64,
    /// False when `--limit` stopped the repository early.
    pub complete: bool,
    pub incremental: bool,
    /// GraphQL requests made for this repository (retries not counted).
    pub requests: u64,
}

/// Why a fetch ended early.
enum End {
    /// The collector is gone (it failed, or the run was interrupted).
    Closed,
    Failed(anyhow::Error),
}

impl From<GitHubError> for End {
    fn from(e: GitHubError) -> Self {
        Self::Failed(e.into())
    }
}

impl From<anyhow::Error> for End {
    fn from(e: anyhow::Error) -> Self {
        Self::Failed(e)
    }
}

pub(crate) struct Fetcher<'a> {
    pub client: &'a Client,
    pub reporter: &'a dyn Reporter,
    pub opts: &'a CollectOptions,
    pub tx: mpsc::Sender<Event>,
    /// Per-repository progress bars (only when one repository is fetched at a time).
    pub progress: bool,
}

impl Fetcher<'_> {
    /// Fetches one repository, reporting a failure to the collector as an event.
    pub async fn run(&self, org: String, repo: String) {
        if let Err(End::Failed(error)) = self.repo(&org, &repo, true).await {
            let _ = self.tx.send(Event::Failed { org, repo, error }).await;
        }
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Event) -> Result<T, End> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| End::Closed)?;
        answer.await.map_err(|_| End::Closed)
    }

    /// GraphQL pages of 100 issues with labels and their first 100 comments. `follow_rename`:
    /// whether a rename reported by GitHub may be followed (once).
    async fn repo(&self, org: &str, repo: &str, follow_rename: bool) -> Result<(), End> {
        let start = self
            .ask(|reply| Event::Start {
                org: org.to_string(),
                repo: repo.to_string(),
                reply,
            })
            .await?;
        let cursor = start.cursor;
        let mut budget = start.budget;
        let since = self.opts.since.or(cursor);
        let incremental = self.opts.since.is_none() && cursor.is_some();
        // An incremental run asks for every change, whatever its state and labels: an issue that
        // was closed or relabelled since the last run must be updated too. Changes outside the
        // filters only touch issues already stored.
        let filter = IssueFilter {
            since: since.map(rfc3339),
            states: if incremental {
                vec![]
            } else {
                gql_states(self.opts.state)
            },
            labels: if incremental {
                vec![]
            } else {
                self.opts.labels.clone()
            },
        };
        let bar = if self.progress {
            self.reporter.progress(0, repo)
        } else {
            indicatif::ProgressBar::hidden()
        };
        let mut after: Option<String> = None;
        let mut page_size = PAGE_SIZE;
        let mut started: Option<DateTime<Utc>> = None;
        let mut complete = true;
        let mut returned = 0u64;
        let mut requests = 0u64;
        loop {
            // With --limit, do not ask for (and pay for) more issues than can still be kept.
            let first = budget.map_or(page_size, |b| (b as u32).clamp(1, page_size));
            let vars = graphql::issues_variables(org, repo, first, after.as_deref(), &filter);
            let asked_at = Utc::now();
            // Pages of long threads can be too heavy for GitHub's 10 s budget (502/504): after
            // two timeouts ask for half as many issues, down to MIN_PAGE_SIZE, which gets the
            // client's full retry budget.
            let timeout_attempts = if first > MIN_PAGE_SIZE { 2 } else { u32::MAX };
            requests += 1;
            let (data, page) = match self
                .client
                .graphql_with(ISSUES_QUERY, vars, timeout_attempts)
                .await
            {
                Err(GitHubError::Timeout { .. }) => {
                    page_size = (first / 2).max(MIN_PAGE_SIZE);
                    self.reporter.note(&format!(
                        "{org}/{repo}: GitHub timed out on a page of {first} issues; \
                         asking for {page_size} at a time"
                    ));
                    continue;
                }
                other => other?,
            };
            // GitHub's clock at the first answer: the cursor for the next run (no skew).
            started.get_or_insert(page.date.unwrap_or(asked_at));
            let data: IssuesData =
                serde_json::from_value(data).map_err(|e| GitHubError::BadBody {
                    url: self.client.config().graphql_url.to_string(),
                    why: format!("unexpected issues page: {e}"),
                })?;
            let Some(r) = data.repository else {
                return Err(GitHubError::GraphQlNotFound {
                    message: format!("repository {org}/{repo} is null"),
                }
                .into());
            };
            if after.is_none() && follow_rename {
                if let Some((new_org, new_repo)) = renamed(r.name_with_owner.as_deref(), org, repo)
                {
                    // Store under the current name, so files, rows and cursors do not split
                    // between the old and the new one. The old name's first page is discarded.
                    bar.finish_and_clear();
                    self.reporter.note(&format!(
                        "{org}/{repo} was renamed to {new_org}/{new_repo}: collecting it under the new name"
                    ));
                    return Box::pin(self.repo(&new_org, &new_repo, false)).await;
                }
            }
            let conn = r.issues;
            bar.set_length(conn.total_count);
            let mut issues = Vec::with_capacity(conn.nodes.len());
            for node in conn.nodes.into_iter().flatten() {
                returned += 1;
                let more = node.more_comments();
                let number = node.number;
                let mut issue = node.into_stored(org, repo)?;
                if let Some(c) = more {
                    requests += self.more_comments(org, repo, number, c, &mut issue).await?;
                }
                issues.push(issue);
            }
            bar.inc(issues.len() as u64);
            let next = self
                .ask(|reply| Event::Page {
                    org: org.to_string(),
                    repo: repo.to_string(),
                    issues,
                    incremental,
                    reply,
                })
                .await?;
            match next {
                Some(left) => budget = left,
                None => {
                    complete = false;
                    break;
                }
            }
            match (conn.page_info.has_next_page, conn.page_info.end_cursor) {
                (true, Some(c)) => after = Some(c),
                _ => break,
            }
        }
        bar.finish_and_clear();
        let done = RepoDone {
            org: org.to_string(),
            repo: repo.to_string(),
            cursor,
            since,
            started,
            returned,
            complete,
            incremental,
            requests,
        };
        self.tx
            .send(Event::Done(done))
            .await
            .map_err(|_| End::Closed)
    }

    /// Comments 101 and onwards of a long thread, 100 per request; returns the requests made.
    async fn more_comments(
        &self,
        org: &str,
        repo: &str,
        number: u64,
        mut cursor: String,
        issue: &mut StoredIssue,
    ) -> Result<u64, End> {
        let mut requests = 0;
        loop {
            let vars = graphql::comments_variables(org, repo, number, Some(&cursor));
            requests += 1;
            let (data, _) = self.client.graphql(COMMENTS_QUERY, vars).await?;
            let data: CommentsData =
                serde_json::from_value(data).map_err(|e| GitHubError::BadBody {
                    url: self.client.config().graphql_url.to_string(),
                    why: format!("unexpected comments page: {e}"),
                })?;
            let Some(conn) = data.repository.and_then(|r| r.issue).map(|i| i.comments) else {
                // Deleted between the two requests: keep what we have.
                return Ok(requests);
            };
            graphql::convert_comments(conn.nodes, &mut issue.issue.comments);
            match (conn.page_info.has_next_page, conn.page_info.end_cursor) {
                (true, Some(c)) if c != cursor => cursor = c,
                _ => return Ok(requests),
            }
        }
    }
}
