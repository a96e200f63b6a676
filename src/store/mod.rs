//! The JSON file store under the data directory: paths, atomic writes, reading issue files.

pub mod atomic;
pub mod model;
pub mod names;

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::error::{user, UserContext};
pub use atomic::{make_durable, write_atomic, write_unsynced};
pub use model::{Comment, Issue, IssueState, Label, Metadata, StoredIssue, User};

pub const ISSUES_DIR: &str = "issues";
pub const RESULTS_DIR: &str = "results";
pub const BATCH_INPUT_DIR: &str = "batch/input";
pub const BATCH_OUTPUT_DIR: &str = "batch/output";
pub const ATTACHMENTS_DIR: &str = "attachments";

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Trained `local` models (`train`), one file per processor and taxonomy.
    pub fn models_dir(&self) -> PathBuf {
        self.root.join("models")
    }

    pub fn issues_dir(&self) -> PathBuf {
        self.root.join(ISSUES_DIR)
    }

    /// Creates the data folders, failing with a clear message when the place is not writable.
    pub fn ensure_dirs(&self) -> anyhow::Result<()> {
        for sub in [ISSUES_DIR, RESULTS_DIR, BATCH_INPUT_DIR, BATCH_OUTPUT_DIR] {
            let dir = self.root.join(sub);
            std::fs::create_dir_all(&dir)
                .user_context(|| format!("cannot create data directory {}", dir.display()))?;
        }
        // create_dir_all succeeds on an existing read-only folder: probe for write access.
        tempfile::tempfile_in(self.issues_dir())
            .user_context(|| format!("data directory {} is not writable", self.root.display()))?;
        Ok(())
    }

    /// File name of an issue, relative to the data directory: `issues/{org}_{repo}_issue_{n}.json`.
    pub fn issue_rel_path(org: &str, repo: &str, number: u64) -> anyhow::Result<String> {
        names::validate_org(org)?;
        names::validate_repo(repo)?;
        Ok(format!("{ISSUES_DIR}/{org}_{repo}_issue_{number}.json"))
    }

    /// Writes one issue file atomically and returns its path relative to the data directory.
    /// Refuses (a user error naming both issues) when the file holds another issue.
    pub fn write_issue(&self, issue: &StoredIssue) -> anyhow::Result<String> {
        self.write_issue_with(issue, write_atomic)
    }

    /// Like [`Store::write_issue`], without making the file durable: for writers of many files
    /// who then call [`make_durable`] once for all of them.
    pub fn write_issue_unsynced(&self, issue: &StoredIssue) -> anyhow::Result<String> {
        self.write_issue_with(issue, write_unsynced)
    }

    fn write_issue_with(
        &self,
        issue: &StoredIssue,
        write: fn(&Path, &[u8]) -> anyhow::Result<()>,
    ) -> anyhow::Result<String> {
        let rel = Self::issue_rel_path(&issue.org, &issue.repo, issue.issue.number)?;
        issue.check_ranges().map_err(user)?;
        self.refuse_foreign(&rel, &issue.key())?;
        let bytes = serde_json::to_vec_pretty(issue).context("cannot serialize issue")?;
        write(&self.root.join(&rel), &bytes)
            .user_context(|| format!("cannot write issue file in {}", self.root.display()))?;
        Ok(rel)
    }

    /// File names join organisation and repository with `_`, which both may contain, so
    /// `a_b/c#1` and `a/b_c#1` share `issues/a_b_c_issue_1.json`. Errors when the issue file at
    /// `rel` exists and holds an issue other than `key`; a missing or unreadable file is not
    /// another issue's and may be (re)written.
    pub fn refuse_foreign(&self, rel: &str, key: &str) -> anyhow::Result<()> {
        let Ok(bytes) = std::fs::read(self.abs(rel)) else {
            return Ok(());
        };
        match issue_key_of(&bytes) {
            Some(other) if other != key => Err(collision(rel, &other, key)),
            _ => Ok(()),
        }
    }

    /// Every `*.json` issue file (relative paths, sorted); temp files and dotfiles are skipped.
    pub fn list_issue_files(&self) -> anyhow::Result<Vec<String>> {
        let dir = self.issues_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(e).user_context(|| format!("cannot read {}", dir.display()));
            }
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.user_context(|| format!("cannot read {}", dir.display()))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
                out.push(format!("{ISSUES_DIR}/{name}"));
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn abs(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

/// The refusal of an issue whose file name is taken by another issue.
pub fn collision(rel: &str, holder: &str, refused: &str) -> anyhow::Error {
    user(format!(
        "{refused} was not stored: its file name {rel} is already used by {holder} \
         (file names join organisation and repository with '_', so the two cannot both be kept)"
    ))
}

/// The `org/repo#number` an issue file holds, read without building the whole issue.
pub fn issue_key_of(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Number {
        number: u64,
    }
    #[derive(serde::Deserialize)]
    struct Key {
        org: String,
        repo: String,
        issue: Number,
    }
    let k: Key = serde_json::from_slice(bytes).ok()?;
    Some(model::issue_key(&k.org, &k.repo, k.issue.number))
}

/// Reads the issue file at `rel` and checks it still holds issue `expected_key`; the error is a
/// reason for a failure record (processing commands report it per issue, they don't stop).
pub fn load_issue(store: &Store, rel: &str, expected_key: &str) -> Result<StoredIssue, String> {
    let path = store.abs(rel);
    let bytes = std::fs::read(&path)
        .map_err(|e| format!("cannot read issue file {rel}: {e} (run `sync`?)"))?;
    let stored = parse_issue(&path, &bytes).map_err(|e| format!("{e:#}"))?;
    if stored.key() != expected_key {
        return Err(format!(
            "issue file {rel} holds {}, not {expected_key} (run `sync`)",
            stored.key()
        ));
    }
    Ok(stored)
}

/// Parses an issue file, checking the names it carries; errors name the path and the reason.
pub fn parse_issue(path: &Path, bytes: &[u8]) -> anyhow::Result<StoredIssue> {
    let issue: StoredIssue = serde_json::from_slice(bytes)
        .map_err(|e| user(format!("{}: not a valid issue file: {e}", path.display())))?;
    names::validate_org(&issue.org)
        .and_then(|()| names::validate_repo(&issue.repo))
        .map_err(|e| user(format!("{}: {e}", path.display())))?;
    issue
        .check_ranges()
        .map_err(|e| user(format!("{}: {e}", path.display())))?;
    Ok(issue)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(org: &str, repo: &str, number: u64) -> StoredIssue {
        StoredIssue {
            org: org.into(),
            repo: repo.into(),
            issue: Issue {
                number,
                title: format!("Issue {number}"),
                body: Some("body".into()),
                state: "open".into(),
                labels: vec![Label {
                    name: "bug".into(),
                    color: Some("f29513".into()),
                    description: None,
                }],
                user: Some(User {
                    login: "octocat".into(),
                    id: Some(1),
                }),
                comments: vec![],
                created_at: Some("2024-01-02T03:04:05Z".into()),
                updated_at: Some("2024-01-02T03:04:05Z".into()),
                ..Default::default()
            },
            metadata: Metadata::now(),
        }
    }

    #[test]
    fn round_trips_an_issue_file_with_underscores_in_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store.ensure_dirs().unwrap();
        let issue = sample("my_org", "my_repo", 7);
        let rel = store.write_issue(&issue).unwrap();
        assert_eq!(rel, "issues/my_org_my_repo_issue_7.json");
        assert_eq!(store.list_issue_files().unwrap(), vec![rel.clone()]);
        let back = parse_issue(&store.abs(&rel), &std::fs::read(store.abs(&rel)).unwrap()).unwrap();
        assert_eq!(back, issue);
        assert_eq!(back.key(), "my_org/my_repo#7");
    }

    #[test]
    fn an_issue_never_overwrites_another_issues_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store.ensure_dirs().unwrap();
        let first = sample("a_b", "c", 1);
        let rel = store.write_issue(&first).unwrap();
        let second = sample("a", "b_c", 1);
        assert_eq!(
            Store::issue_rel_path("a", "b_c", 1).unwrap(),
            rel,
            "the two names share a file name"
        );
        let err = store.write_issue(&second).unwrap_err().to_string();
        assert!(
            err.contains("a/b_c#1 was not stored") && err.contains("a_b/c#1"),
            "{err}"
        );
        let kept = parse_issue(&store.abs(&rel), &std::fs::read(store.abs(&rel)).unwrap());
        assert_eq!(kept.unwrap().key(), "a_b/c#1");
        // The same issue may be rewritten.
        store.write_issue(&first).unwrap();
    }

    #[test]
    fn numbers_beyond_the_database_range_fail_the_file() {
        let mut big = sample("o", "r", 1);
        big.issue.number = i64::MAX as u64 + 1;
        let bytes = serde_json::to_vec(&big).unwrap();
        let err = parse_issue(Path::new("issues/x.json"), &bytes).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
        let mut many = sample("o", "r", 1);
        many.issue.comment_count = Some(u64::MAX);
        let bytes = serde_json::to_vec(&many).unwrap();
        assert!(parse_issue(Path::new("x"), &bytes).is_err());
    }

    #[test]
    fn refuses_names_that_escape_the_folder() {
        assert!(Store::issue_rel_path("..", "x", 1).is_err());
        assert!(Store::issue_rel_path("a", "b/c", 1).is_err());
    }

    #[test]
    fn reads_files_of_the_original_tool_without_extra_fields() {
        let json = r#"{"org":"o","repo":"r","issue":{"number":1,"title":"t","body":null,
            "state":"open","labels":[{"name":"bug","color":"fff","description":null}],
            "user":{"login":"u","id":2},"comments":[{"id":3,"user":null,"body":"c",
            "created_at":"2024-01-01T00:00:00Z","updated_at":"2024-01-01T00:00:00Z"}],
            "created_at":"2024-01-01T00:00:00Z","updated_at":"2024-01-01T00:00:00Z",
            "attachments":[]},"metadata":{"collection_timestamp":"x","tool_version":"1"}}"#;
        let i = parse_issue(Path::new("f.json"), json.as_bytes()).unwrap();
        assert_eq!(i.issue.comments[0].user, None);
    }

    #[test]
    fn a_bad_file_names_its_path_and_reason() {
        let err = parse_issue(Path::new("issues/x.json"), b"{\"org\": 1}").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("issues/x.json") && msg.contains("invalid type"),
            "{msg}"
        );
    }
}
