//! After `update-labels` changed (or re-read) an issue on GitHub, the local copy follows: the
//! issue file gets GitHub's label set and is loaded into DuckDB like `sync` would, so `query`
//! shows the truth and the next `sync` has nothing to redo.

use crate::db::Db;
use crate::ingest;
use crate::store::{load_issue, Label, Store};

/// Label sets to write into issue files, loaded into DuckDB together.
#[derive(Debug, Default)]
pub struct LocalUpdates {
    /// (issue id, file path relative to the data directory, GitHub's labels).
    pending: Vec<(String, String, Vec<Label>)>,
}

/// Issues written per DuckDB load.
const GROUP: usize = 100;

impl LocalUpdates {
    pub fn push(&mut self, issue_id: &str, file_path: &str, labels: Vec<Label>) {
        self.pending
            .push((issue_id.to_string(), file_path.to_string(), labels));
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Writes the files and loads them once a group is full.
    pub fn flush_if_full(&mut self, store: &Store, db: &mut Db) -> Vec<(String, String)> {
        if self.pending.len() >= GROUP {
            self.flush(store, db)
        } else {
            Vec::new()
        }
    }

    /// Writes every pending issue file and loads them into DuckDB. Returns (issue, reason) of
    /// the ones that could not be updated (GitHub has the change either way; `collect` brings
    /// the file up to date later).
    pub fn flush(&mut self, store: &Store, db: &mut Db) -> Vec<(String, String)> {
        let mut failed = Vec::new();
        let mut written = Vec::new();
        for (id, rel, labels) in self.pending.drain(..) {
            let mut issue = match load_issue(store, &rel, &id) {
                Ok(i) => i,
                Err(why) => {
                    failed.push((id, why));
                    continue;
                }
            };
            if issue.issue.labels == labels {
                continue;
            }
            issue.issue.labels = labels;
            match store.write_issue(&issue) {
                Ok(path) => written.push(path),
                Err(e) => failed.push((id, format!("{e:#}"))),
            }
        }
        if !written.is_empty() {
            let bar = indicatif::ProgressBar::hidden();
            match ingest::sync_paths(store, db, &written, &bar) {
                Ok(r) => failed.extend(r.failed),
                Err(e) => failed.extend(
                    written
                        .into_iter()
                        .map(|p| (p, format!("written, not loaded into DuckDB: {e:#}"))),
                ),
            }
        }
        failed
    }
}
