//! The collect pipeline: which repositories and issues to fetch (organisation, repository or
//! single-issue mode), incremental cursors, writing files and upserting DuckDB page by page.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::db::{AttachmentRow, Db};
use crate::error::user;
use crate::github::attachments;
use crate::github::client::{Client, GitHubError};
use crate::github::graphql::{
    self, CommentsData, IssueFilter, IssuesData, COMMENTS_QUERY, ISSUES_QUERY, PAGE_SIZE,
};
use crate::github::rest;
use crate::github::scope::{gql_states, renamed, rfc3339, scope_key};
pub use crate::github::scope::{parse_since, parse_size, CollectOptions, CollectReport};
use crate::report::Reporter;
use crate::store::{names, parse_issue, Store, StoredIssue};

pub struct Collector<'a> {
    client: &'a Client,
    store: &'a Store,
    db: &'a mut Db,
    reporter: &'a dyn Reporter,
    opts: &'a CollectOptions,
    pub report: CollectReport,
    /// Issues still allowed by `--limit` (across repositories).
    budget: Option<usize>,
    /// Issue files written but not yet loaded into DuckDB (loaded in batches: one bulk load per
    /// 1,000 issues is much cheaper than one per page), with their attachment rows.
    pending: Vec<String>,
    pending_attachments: (Vec<String>, Vec<AttachmentRow>),
    /// Files the database has loaded, read once when first needed.
    ledger: Option<HashSet<String>>,
}

/// Smallest GraphQL page the collector falls back to when GitHub times out.
const MIN_PAGE_SIZE: u32 = 12;

/// Issues written between two bulk loads into DuckDB.
const LOAD_BATCH: usize = 1_000;

/// Turns client errors into the messages a user can act on.
fn explain(e: anyhow::Error, org: &str, repo: Option<&str>) -> anyhow::Error {
    let target = repo.map_or_else(|| org.to_string(), |r| format!("{org}/{r}"));
    match e.downcast_ref::<GitHubError>() {
        Some(GitHubError::Unauthorized(_)) => user(e.to_string()),
        Some(GitHubError::NotFound { .. } | GitHubError::GraphQlNotFound { .. }) => match repo {
            Some(_) => user(format!(
                "repository {target} not found or not visible to this token"
            )),
            None => user(format!(
                "organisation or user {target} not found or not visible to this token"
            )),
        },
        Some(GitHubError::Forbidden { message }) => user(format!(
            "GitHub refused access to {target} (403): {message}"
        )),
        Some(GitHubError::GaveUp { .. }) => user(format!("cannot collect {target}: {e}")),
        // GitHub refusing the query for this repository (e.g. SAML enforcement, a forbidden
        // field) is about access, not a bug here.
        Some(GitHubError::GraphQl(msg)) => {
            user(format!("GitHub refused the query for {target}: {msg}"))
        }
        Some(GitHubError::BadBody { .. } | GitHubError::Status { .. }) => {
            e.context(format!("collecting {target}"))
        }
        // Our own user errors (bad names, pull requests…) already say what is wrong.
        _ => e,
    }
}

/// Whether an organisation-mode run should stop: only failures that concern one repository
/// (not found, forbidden, a GraphQL error about it…) let the others go on. A rejected token,
/// GitHub being unreachable, or a local failure (disk, database) would fail them all.
fn is_fatal(e: &anyhow::Error) -> bool {
    !e.chain().any(|c| {
        matches!(
            c.downcast_ref::<GitHubError>(),
            Some(
                GitHubError::NotFound { .. }
                    | GitHubError::GraphQlNotFound { .. }
                    | GitHubError::Gone { .. }
                    | GitHubError::Forbidden { .. }
                    | GitHubError::GraphQl(_)
                    | GitHubError::Status { .. }
                    | GitHubError::BadBody { .. }
            )
        )
    })
}

impl<'a> Collector<'a> {
    pub fn new(
        client: &'a Client,
        store: &'a Store,
        db: &'a mut Db,
        reporter: &'a dyn Reporter,
        opts: &'a CollectOptions,
    ) -> Self {
        Self {
            client,
            store,
            db,
            reporter,
            opts,
            report: CollectReport::default(),
            budget: opts.limit,
            pending: Vec::new(),
            pending_attachments: (Vec::new(), Vec::new()),
            ledger: None,
        }
    }

    pub async fn run(&mut self) -> anyhow::Result<()> {
        let org = self.opts.org.clone();
        names::validate_org(&org)?;
        match (self.opts.repo.clone(), self.opts.issue_number) {
            (Some(repo), Some(n)) => {
                names::validate_repo(&repo)?;
                self.collect_one(&org, &repo, n)
                    .await
                    .map_err(|e| explain_issue(e, &org, &repo, n))
            }
            (Some(repo), None) => {
                names::validate_repo(&repo)?;
                self.collect_repo(&org, &repo, true)
                    .await
                    .map_err(|e| explain(e, &org, Some(&repo)))
            }
            (None, _) => self.collect_org(&org).await,
        }
    }

    async fn collect_org(&mut self, org: &str) -> anyhow::Result<()> {
        let repos = rest::list_repos(self.client, self.db, org)
            .await
            .map_err(|e| explain(e, org, None))?;
        let excluded: HashSet<String> = self
            .opts
            .exclude_repos
            .iter()
            .map(|r| r.to_ascii_lowercase())
            .collect();
        let mut todo = Vec::new();
        for r in repos {
            let skip = if excluded.contains(&r.name.to_ascii_lowercase()) {
                Some("excluded")
            } else if r.archived && !self.opts.include_archived {
                Some("archived (use --include-archived)")
            } else if r.disabled {
                Some("disabled")
            } else if !r.has_issues {
                Some("issues are turned off")
            } else {
                None
            };
            match skip {
                Some(why) => {
                    self.report.repositories_skipped += 1;
                    tracing::info!("skipping {org}/{}: {why}", r.name);
                }
                None => todo.push(r.name),
            }
        }
        self.reporter.note(&format!(
            "{org}: {} repositories to collect ({} skipped)",
            todo.len(),
            self.report.repositories_skipped
        ));
        for repo in todo {
            if self.budget == Some(0) {
                break;
            }
            if let Err(e) = names::validate_repo(&repo) {
                self.report
                    .failed
                    .push((format!("{org}/{repo}"), e.to_string()));
                continue;
            }
            if let Err(e) = self.collect_repo(org, &repo, true).await {
                let fatal = is_fatal(&e);
                let e = explain(e, org, Some(&repo));
                if fatal {
                    return Err(e);
                }
                self.reporter.warn(&format!("{org}/{repo}: {e:#}"));
                self.report
                    .failed
                    .push((format!("{org}/{repo}"), format!("{e:#}")));
            }
        }
        Ok(())
    }

    /// Repository mode: GraphQL pages of 100 issues with labels and their first 100 comments.
    /// `follow_rename`: whether a rename reported by GitHub may be followed (once).
    async fn collect_repo(
        &mut self,
        org: &str,
        repo: &str,
        follow_rename: bool,
    ) -> anyhow::Result<()> {
        let scope = scope_key(self.opts.state, &self.opts.labels);
        let cursor = if self.opts.full {
            None
        } else {
            self.db.collect_cursor(org, repo, &scope)?
        };
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
        if incremental {
            self.report.incremental += 1;
        }
        let requests_before = self.client.requests();
        let bar = self.reporter.progress(0, repo);
        let mut after: Option<String> = None;
        let mut page_size = PAGE_SIZE;
        let mut started: Option<DateTime<Utc>> = None;
        let mut complete = true;
        let mut returned = 0u64;
        let before = self.report.clone();
        loop {
            // With --limit, do not ask for (and pay for) more issues than can still be kept.
            let first = self
                .budget
                .map_or(page_size, |b| (b as u32).clamp(1, page_size));
            let vars = graphql::issues_variables(org, repo, first, after.as_deref(), &filter);
            let asked_at = Utc::now();
            // Pages of long threads can be too heavy for GitHub's 10 s budget (502/504): after
            // two timeouts ask for half as many issues, down to MIN_PAGE_SIZE, which gets the
            // client's full retry budget.
            let timeout_attempts = if first > MIN_PAGE_SIZE { 2 } else { u32::MAX };
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
                    return Box::pin(self.collect_repo(&new_org, &new_repo, false)).await;
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
                    self.fetch_more_comments(org, repo, number, c, &mut issue)
                        .await?;
                }
                issues.push(issue);
            }
            bar.inc(issues.len() as u64);
            if !self.store_issues(issues, true, incremental).await? {
                complete = false;
                break;
            }
            match (conn.page_info.has_next_page, conn.page_info.end_cursor) {
                (true, Some(c)) => after = Some(c),
                _ => break,
            }
        }
        bar.finish_and_clear();
        // The cursor may only move once everything fetched is in the database.
        self.flush()?;
        // The run covered everything before `since` only if the old cursor did.
        let covered = self
            .opts
            .since
            .is_none_or(|d| cursor.is_some_and(|c| d <= c));
        if complete && covered {
            if let Some(at) = started {
                self.db
                    .set_collect_cursor(org, repo, &scope, at, returned)?;
            }
        }
        self.report.repositories += 1;
        let r = &self.report;
        self.reporter.note(&format!(
            "{org}/{repo}: {} issues ({} new, {} updated, {} unchanged){}, {} requests",
            r.issues() - before.issues(),
            r.issues_new - before.issues_new,
            r.issues_updated - before.issues_updated,
            r.issues_unchanged - before.issues_unchanged,
            match since {
                Some(s) => format!(" updated since {}", rfc3339(s)),
                None => String::new(),
            },
            self.client.requests() - requests_before,
        ));
        Ok(())
    }

    /// Comments 101 and onwards of a long thread, 100 per request.
    async fn fetch_more_comments(
        &mut self,
        org: &str,
        repo: &str,
        number: u64,
        mut cursor: String,
        issue: &mut StoredIssue,
    ) -> anyhow::Result<()> {
        loop {
            let vars = graphql::comments_variables(org, repo, number, Some(&cursor));
            let (data, _) = self.client.graphql(COMMENTS_QUERY, vars).await?;
            let data: CommentsData =
                serde_json::from_value(data).map_err(|e| GitHubError::BadBody {
                    url: self.client.config().graphql_url.to_string(),
                    why: format!("unexpected comments page: {e}"),
                })?;
            let Some(conn) = data.repository.and_then(|r| r.issue).map(|i| i.comments) else {
                // Deleted between the two requests: keep what we have.
                return Ok(());
            };
            graphql::convert_comments(conn.nodes, &mut issue.issue.comments);
            match (conn.page_info.has_next_page, conn.page_info.end_cursor) {
                (true, Some(c)) if c != cursor => cursor = c,
                _ => return Ok(()),
            }
        }
    }

    /// Single-issue mode: the REST issue and all its comment pages.
    async fn collect_one(&mut self, org: &str, repo: &str, number: u64) -> anyhow::Result<()> {
        let rest_issue = rest::get_issue(self.client, self.db, org, repo, number).await?;
        if rest_issue.is_pull_request() {
            self.report.pull_requests_skipped += 1;
            return Err(user(format!(
                "{org}/{repo}#{number} is a pull request; pull requests are not collected"
            )));
        }
        // A transferred issue answers (after a 301) from its new repository: store it there.
        let (o, r) = rest::issue_location(&rest_issue)
            .filter(|(o, r)| names::validate_org(o).is_ok() && names::validate_repo(r).is_ok())
            .unwrap_or_else(|| (org.to_string(), repo.to_string()));
        let new_number = rest_issue.number;
        if (o.as_str(), r.as_str(), new_number) != (org, repo, number) {
            self.reporter.note(&format!(
                "{org}/{repo}#{number} now lives at {o}/{r}#{new_number}; stored there"
            ));
        }
        let mut issue = rest_issue.into_stored(o.clone(), r.clone())?;
        if issue.issue.comment_count != Some(0) {
            issue.issue.comments =
                rest::list_comments(self.client, self.db, &o, &r, new_number).await?;
        }
        self.store_issues(vec![issue], false, false).await?;
        self.flush()?;
        self.report.repositories += 1;
        Ok(())
    }

    /// Writes changed issues, loads them into DuckDB, records attachments. Returns false when
    /// `--limit` was reached.
    async fn store_issues(
        &mut self,
        issues: Vec<StoredIssue>,
        apply_filters: bool,
        incremental: bool,
    ) -> anyhow::Result<bool> {
        let mut to_write = Vec::new();
        let mut more = true;
        for mut issue in issues {
            let rel = Store::issue_rel_path(&issue.org, &issue.repo, issue.issue.number)?;
            let abs = self.store.abs(&rel);
            let old = std::fs::read(&abs)
                .ok()
                .and_then(|b| parse_issue(&abs, &b).ok());
            if apply_filters && !self.matches(&issue) && !(incremental && old.is_some()) {
                continue;
            }
            if let Some(o) = old.as_ref().filter(|o| o.key() != issue.key()) {
                let e = crate::store::collision(&rel, &o.key(), &issue.key());
                self.reporter.warn(&e.to_string());
                self.report.refused.push((issue.key(), e.to_string()));
                continue;
            }
            if self.budget == Some(0) {
                more = false;
                break;
            }
            if let Some(b) = self.budget.as_mut() {
                *b -= 1;
            }
            self.report.comments += issue.issue.comments.len();
            match self.opts.attachments {
                Some(cap) => {
                    let rows = attachments::download(
                        self.client,
                        self.store.root(),
                        &mut issue,
                        cap,
                        &mut self.report.attachments,
                    )
                    .await;
                    self.pending_attachments.0.push(issue.key());
                    self.pending_attachments.1.extend(rows);
                }
                // Without --download-attachments, keep what an earlier run recorded.
                None => {
                    if let Some(o) = &old {
                        issue.issue.attachments = o.issue.attachments.clone();
                    }
                }
            }
            match &old {
                Some(o) if o.org == issue.org && o.repo == issue.repo && o.issue == issue.issue => {
                    self.report.issues_unchanged += 1;
                    // Written by a run that stopped before loading it: load it now.
                    if !self.loaded()?.contains(&rel) {
                        self.pending.push(rel);
                    }
                }
                Some(_) => {
                    self.report.issues_updated += 1;
                    to_write.push(issue);
                }
                None => {
                    self.report.issues_new += 1;
                    to_write.push(issue);
                }
            }
        }
        self.pending.extend(write_parallel(self.store, &to_write)?);
        if self.pending.len() >= LOAD_BATCH {
            self.flush()?;
        }
        Ok(more && self.budget != Some(0))
    }

    fn loaded(&mut self) -> anyhow::Result<&HashSet<String>> {
        if self.ledger.is_none() {
            self.ledger = Some(self.db.file_records()?.into_keys().collect());
        }
        Ok(self.ledger.get_or_insert_with(HashSet::new))
    }

    /// Loads every written file into DuckDB and records attachment rows. Called at the end of
    /// each repository, and by the command after an interruption or error, so every file
    /// written is also in the database.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        if !self.pending.is_empty() {
            let paths = std::mem::take(&mut self.pending);
            let hidden = indicatif::ProgressBar::hidden();
            let rep = crate::ingest::sync_paths(self.store, self.db, &paths, &hidden)?;
            self.report.sync_failed.extend(rep.failed);
        }
        let (ids, rows) = std::mem::take(&mut self.pending_attachments);
        self.db.replace_attachments(&ids, &rows)?;
        Ok(())
    }

    /// `--state` and every `--labels` (GitHub's label filter matches any; ours needs all).
    fn matches(&self, issue: &StoredIssue) -> bool {
        let state_ok = self.opts.state.covers(&issue.issue.state);
        state_ok
            && self.opts.labels.iter().all(|want| {
                issue
                    .issue
                    .labels
                    .iter()
                    .any(|l| l.name.eq_ignore_ascii_case(want))
            })
    }
}

/// Threads writing issue files: each write ends in an fsync, which is I/O wait, not CPU, so
/// more threads than cores pay off (the file system batches concurrent syncs).
const WRITERS: usize = 16;

/// Writes a page's issue files concurrently; returns their paths in order.
fn write_parallel(store: &Store, issues: &[StoredIssue]) -> anyhow::Result<Vec<String>> {
    if issues.len() <= 1 {
        return issues.iter().map(|i| store.write_issue(i)).collect();
    }
    let per = issues.len().div_ceil(WRITERS);
    std::thread::scope(|s| {
        let handles: Vec<_> = issues
            .chunks(per)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|i| store.write_issue(i))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(issues.len());
        for h in handles {
            let results = h
                .join()
                .map_err(|_| anyhow::anyhow!("an issue writer thread panicked"))?;
            for r in results {
                out.push(r?);
            }
        }
        Ok(out)
    })
}

fn explain_issue(e: anyhow::Error, org: &str, repo: &str, number: u64) -> anyhow::Error {
    match e.downcast_ref::<GitHubError>() {
        Some(GitHubError::NotFound { .. }) => user(format!(
            "issue {org}/{repo}#{number} not found, or repository not found or not visible to this token"
        )),
        Some(GitHubError::Gone { .. }) => user(format!("issue {org}/{repo}#{number} was deleted (410 Gone)")),
        _ => explain(e, org, Some(repo)),
    }
}
