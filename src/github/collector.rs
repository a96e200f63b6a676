//! The collect pipeline: which repositories and issues to fetch (organisation, repository or
//! single-issue mode), incremental cursors, writing files and upserting DuckDB page by page.

use std::collections::{HashMap, HashSet};

use futures::StreamExt;

use crate::db::{AttachmentRow, Db};
use crate::error::user;
use crate::github::attachments;
use crate::github::client::{Client, GitHubError};
use crate::github::fetch::{Event, Fetcher, RepoDone, Start};
use crate::github::rest;
pub use crate::github::scope::{parse_since, parse_size, CollectOptions, CollectReport};
use crate::github::scope::{rfc3339, scope_key};
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
                self.collect_repos(&org, vec![repo], 1, false).await
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
        let mut valid = Vec::with_capacity(todo.len());
        for repo in todo {
            match names::validate_repo(&repo) {
                Ok(()) => valid.push(repo),
                Err(e) => self
                    .report
                    .failed
                    .push((format!("{org}/{repo}"), e.to_string())),
            }
        }
        self.collect_repos(org, valid, self.opts.parallel_repos, true)
            .await?;
        Ok(())
    }

    /// Collects repositories, up to `parallel` at once: their fetchers run concurrently and
    /// hand pages here, where they are stored one at a time (files, DuckDB, cursors), so a
    /// failure or an interruption leaves the same state as a sequential run would. In
    /// organisation mode (`org_mode`) a failure that concerns one repository is reported and
    /// the others go on.
    async fn collect_repos(
        &mut self,
        org: &str,
        repos: Vec<String>,
        parallel: usize,
        org_mode: bool,
    ) -> anyhow::Result<()> {
        // `--limit` counts issues across repositories in order: one at a time.
        let parallel = if self.budget.is_some() {
            1
        } else {
            parallel.max(1)
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(parallel);
        let fetcher = Fetcher {
            client: self.client,
            reporter: self.reporter,
            opts: self.opts,
            tx,
            progress: parallel == 1,
        };
        let org_owned = org.to_string();
        let fetchers = async move {
            let fetcher = &fetcher;
            futures::stream::iter(repos)
                .for_each_concurrent(parallel, |repo| fetcher.run(org_owned.clone(), repo))
                .await;
        };
        let scope = scope_key(self.opts.state, &self.opts.labels);
        let store = async {
            let mut counts: HashMap<String, (usize, usize, usize)> = HashMap::new();
            while let Some(event) = rx.recv().await {
                match event {
                    Event::Start { org, repo, reply } => {
                        let cursor = if self.opts.full {
                            None
                        } else {
                            self.db.collect_cursor(&org, &repo, &scope)?
                        };
                        let _ = reply.send(Start {
                            cursor,
                            budget: self.budget,
                        });
                    }
                    Event::Page {
                        org,
                        repo,
                        issues,
                        incremental,
                        reply,
                    } => {
                        let before = self.report.clone();
                        let more = self.store_issues(issues, true, incremental).await?;
                        let c = counts.entry(format!("{org}/{repo}")).or_default();
                        c.0 += self.report.issues_new - before.issues_new;
                        c.1 += self.report.issues_updated - before.issues_updated;
                        c.2 += self.report.issues_unchanged - before.issues_unchanged;
                        let _ = reply.send(more.then_some(self.budget));
                    }
                    Event::Done(done) => {
                        let c = counts
                            .remove(&format!("{}/{}", done.org, done.repo))
                            .unwrap_or_default();
                        self.finish_repo(&scope, &done, c)?;
                    }
                    Event::Failed { org, repo, error } => {
                        let fatal = !org_mode || is_fatal(&error);
                        let e = explain(error, &org, Some(&repo));
                        if fatal {
                            return Err(e);
                        }
                        self.reporter.warn(&format!("{org}/{repo}: {e:#}"));
                        self.report
                            .failed
                            .push((format!("{org}/{repo}"), format!("{e:#}")));
                    }
                }
            }
            anyhow::Ok(())
        };
        // The fetchers end when the store loop fails (their channel closes), and the store
        // loop ends when every fetcher has finished.
        let ((), stored) = futures::join!(fetchers, store);
        stored
    }

    /// A repository's pages are all stored: load them, then move its cursor.
    fn finish_repo(
        &mut self,
        scope: &str,
        done: &RepoDone,
        (new, updated, unchanged): (usize, usize, usize),
    ) -> anyhow::Result<()> {
        // The cursor may only move once everything fetched is in the database.
        self.flush()?;
        // The run covered everything before `since` only if the old cursor did.
        let covered = self
            .opts
            .since
            .is_none_or(|d| done.cursor.is_some_and(|c| d <= c));
        if done.complete && covered {
            if let Some(at) = done.started {
                self.db
                    .set_collect_cursor(&done.org, &done.repo, scope, at, done.returned)?;
            }
        }
        self.report.repositories += 1;
        if done.incremental {
            self.report.incremental += 1;
        }
        self.reporter.note(&format!(
            "{}/{}: {} issues ({new} new, {updated} updated, {unchanged} unchanged){}, {} requests",
            done.org,
            done.repo,
            new + updated + unchanged,
            match done.since {
                Some(s) => format!(" updated since {}", rfc3339(s)),
                None => String::new(),
            },
            done.requests,
        ));
        Ok(())
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
        // Pages keep coming from the network: another process may use the database meanwhile.
        self.db.release();
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

/// Threads writing issue files (serializing and writing; the flush comes once per page).
const WRITERS: usize = 4;

/// Writes a page's issue files concurrently, then makes them durable together (one flush per
/// page instead of two fsyncs per file; they are loaded into DuckDB only after that); returns
/// their paths in order.
fn write_parallel(store: &Store, issues: &[StoredIssue]) -> anyhow::Result<Vec<String>> {
    let written = write_unsynced(store, issues)?;
    let abs: Vec<_> = written.iter().map(|r| store.abs(r)).collect();
    crate::store::make_durable(&store.issues_dir(), &abs)?;
    Ok(written)
}

fn write_unsynced(store: &Store, issues: &[StoredIssue]) -> anyhow::Result<Vec<String>> {
    if issues.len() <= 1 {
        return issues
            .iter()
            .map(|i| store.write_issue_unsynced(i))
            .collect();
    }
    let per = issues.len().div_ceil(WRITERS);
    std::thread::scope(|s| {
        let handles: Vec<_> = issues
            .chunks(per)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|i| store.write_issue_unsynced(i))
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
