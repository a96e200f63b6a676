//! Shared helpers for CLI tests: a temp data dir and a command bound to it.

#![allow(dead_code)]

pub mod fake_anthropic;
pub mod fake_batches;
pub mod fake_github;
pub mod fake_openai;
pub mod serve;

use std::path::{Path, PathBuf};

use assert_cmd::Command;

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The binary with a private data dir, no inherited keys or settings, run in the temp dir
    /// (so no `.env` of the developer's is read).
    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("github-analysis").expect("binary");
        c.current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GITHUB_ANALYSIS_DATA_DIR", self.data())
            .env("NO_COLOR", "1");
        c
    }

    /// Runs the binary and parses its stdout as JSON (`--format json` is added).
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self
            .cmd()
            .args(args)
            .args(["--format", "json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: stdout is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// First column of the first row of a query.
    pub fn scalar(&self, sql: &str) -> serde_json::Value {
        let rows = self.json(&["query", "sql", sql]);
        let obj = rows[0].as_object().expect("a row").clone();
        obj.into_iter().next().expect("a column").1
    }
}

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn sample(name: &str) -> String {
    repo_root()
        .join("data/sample")
        .join(name)
        .display()
        .to_string()
}

pub fn fixture(name: &str) -> String {
    repo_root()
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}
