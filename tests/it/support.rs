//! Shared helpers for CLI tests: a temp data dir and a command bound to it.

#![allow(dead_code)]

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

    /// The data directory's DuckDB file (`issues.duckdb`, the name users see).
    pub fn db_file(&self) -> PathBuf {
        self.data().join("issues.duckdb")
    }

    /// The binary with a private data dir, no inherited keys or settings, run in the temp dir
    /// (so no `.env` of the developer's is read).
    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("github-analysis").expect("binary");
        c.current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GITHUB_ANALYSIS_DATA_DIR", self.data())
            .env("NO_COLOR", "1")
            // Retries after injected faults start at 50 ms instead of 0.5–1 s: the suite tests
            // that and how often the CLI retries, not the length of its default backoff.
            .env("GITHUB_ANALYSIS_RETRY_DELAY", "0.05");
        c
    }

    /// [`Env::cmd`] with these environment variables too.
    pub fn cmd_with(&self, vars: &[(&str, String)]) -> Command {
        let mut c = self.cmd();
        for (k, v) in vars {
            c.env(k, v);
        }
        c
    }

    /// Runs the binary and parses its stdout as JSON (`--format json` is added).
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        self.json_with(&[], args)
    }

    /// [`Env::json`] with these environment variables too.
    pub fn json_with(&self, vars: &[(&str, String)], args: &[&str]) -> serde_json::Value {
        let out = self
            .cmd_with(vars)
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

    /// Runs the binary with extra environment variables and `--format json`, whatever the outcome.
    pub fn run_json(&self, vars: &[(&str, String)], args: &[&str]) -> Run {
        let c = self
            .cmd_with(vars)
            .args(args)
            .args(["--format", "json"])
            .output();
        Run::of(c.unwrap())
    }

    /// Runs the binary with exactly these arguments (no `--format` added), whatever the outcome.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(&[], args)
    }

    /// [`Env::run`] with these environment variables too.
    pub fn run_with(&self, vars: &[(&str, String)], args: &[&str]) -> Run {
        Run::of(self.cmd_with(vars).args(args).output().unwrap())
    }

    /// Rows of a read-only query, as JSON objects: what `query sql --format json` prints, read
    /// in this process (one shared DuckDB instance attaches the file: ~7 ms, where a run of the
    /// binary opens an instance of its own, ~50 ms). The `query` command has tests of its own.
    pub fn rows(&self, sql: &str) -> Vec<serde_json::Value> {
        let db = self.db_file();
        if !db.exists() {
            // The binary creates (and migrates) a database; a read-only attach cannot.
            return self
                .json(&["query", "sql", sql])
                .as_array()
                .unwrap()
                .clone();
        }
        let table = reader()
            .query(&db, sql)
            .unwrap_or_else(|e| panic!("{sql}: {e:#}"));
        table
            .rows
            .into_iter()
            .map(|row| {
                let object = table.columns.iter().cloned().zip(row).collect();
                serde_json::Value::Object(object)
            })
            .collect()
    }

    /// Writes StoredIssue (or REST) objects to a file and imports them; returns the summary.
    pub fn import_json(&self, issues: &serde_json::Value) -> serde_json::Value {
        let path = self.dir.path().join("issues.json");
        std::fs::write(&path, serde_json::to_vec(issues).unwrap()).unwrap();
        self.json(&["import", path.to_str().unwrap()])
    }

    /// Writes file `name` in the temp dir (beside the data dir, e.g. a taxonomy); its path.
    pub fn write_file(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// First column of the first row of a query.
    pub fn scalar(&self, sql: &str) -> serde_json::Value {
        let rows = self.rows(sql);
        let obj = rows.first().and_then(|r| r.as_object()).expect("a row");
        obj.values().next().expect("a column").clone()
    }
}

/// The suite's one in-process database reader (see [`Env::rows`]).
fn reader() -> &'static github_analysis::db::Reader {
    static READER: std::sync::OnceLock<github_analysis::db::Reader> = std::sync::OnceLock::new();
    READER.get_or_init(|| {
        github_analysis::db::Reader::new(std::time::Duration::from_secs(10)).expect("DuckDB")
    })
}

/// A JSON file, parsed (panics when it cannot be read or parsed).
pub fn read_json<T: serde::de::DeserializeOwned>(path: impl AsRef<Path>) -> T {
    let path = path.as_ref();
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A custom taxonomy, `areas`: billing (invoices) and install problems, for the offline rules
/// model at threshold 1.0.
pub const AREAS_TAXONOMY: &str = r#"
name = "areas"
[rules]
threshold = 1.0
[[labels]]
name = "area::billing"
description = "Invoices, payments and billing contacts."
signals = [{ pattern = 'invoice|billing', weight = 2.0 }]
[[labels]]
name = "area::install"
description = "Installation problems."
signals = [{ pattern = '\binstall', weight = 1.0 }]
"#;

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

/// What one run of the binary produced.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn of(out: std::process::Output) -> Self {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts exit code 1 (a user error) and that stderr says `text`.
    pub fn fails_with(&self, text: &str) -> &Self {
        assert_eq!(
            self.code, 1,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self.says(text)
    }

    /// Asserts that stderr says `text`.
    pub fn says(&self, text: &str) -> &Self {
        assert!(
            self.stderr.contains(text),
            "{text:?} not in stderr: {}",
            self.stderr
        );
        self
    }

    /// Asserts that stderr begins with `text`.
    pub fn opens_with(&self, text: &str) -> &Self {
        assert!(
            self.stderr.starts_with(text),
            "stderr does not begin with {text:?}: {}",
            self.stderr
        );
        self
    }

    /// Stdout as JSON (panics with both streams when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout not JSON ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts exit code 0.
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

/// `process product-labeling --org <org> --model <model>` and `extra`: a real-time labeling run.
pub fn labeling_args<'a>(org: &'a str, model: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let run = [
        "process",
        "product-labeling",
        "--org",
        org,
        "--model",
        model,
    ];
    [&run[..], extra].concat()
}

/// `batch submit product-labeling --org <org> --model <model>` and `extra`: the same labeling
/// as a batch job.
pub fn batch_submit_args<'a>(org: &'a str, model: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let run = labeling_args(org, model, extra);
    [&["batch", "submit"], &run[1..]].concat()
}

/// `process-query missing product-labeling --batch-mode --yes --wait` with `model`, polling
/// every `poll_interval` seconds, and `extra`: a batch job waited for to its end.
pub fn batch_wait_args<'a>(
    model: &'a str,
    poll_interval: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let run = [
        "process-query",
        "missing",
        "product-labeling",
        "--batch-mode",
        "--yes",
        "--wait",
        "--poll-interval",
        poll_interval,
        "--model",
        model,
    ];
    [&run[..], extra].concat()
}

/// The names of the files directly in `dir`, sorted (none when it does not exist).
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A new data dir holding issues 1..=n of `org/repo` (no labels, no comments), imported;
/// `issue(i)` gives issue i's title and body.
pub fn env_with_issues(
    org: &str,
    repo: &str,
    n: u64,
    issue: impl Fn(u64) -> (String, String),
) -> Env {
    let env = Env::new();
    let issues: Vec<serde_json::Value> = (1..=n)
        .map(|i| {
            let (title, body) = issue(i);
            stored_issue(org, repo, i, &title, &body, &[], &[])
        })
        .collect();
    let s = env.import_json(&serde_json::json!(issues));
    assert_eq!(s["issues"], n, "{s}");
    env
}

/// A StoredIssue of an open issue with these labels and comments (comment ids derive from the
/// issue number), as JSON for `import`.
pub fn stored_issue(
    org: &str,
    repo: &str,
    number: u64,
    title: &str,
    body: &str,
    labels: &[&str],
    comments: &[&str],
) -> serde_json::Value {
    serde_json::json!({
        "org": org,
        "repo": repo,
        "issue": {
            "number": number,
            "title": title,
            "body": body,
            "state": "open",
            "labels": labels.iter().map(|l| serde_json::json!({"name": l, "color": "ededed", "description": null})).collect::<Vec<_>>(),
            "user": {"login": "reporter", "id": 1},
            "comments": comments.iter().enumerate().map(|(i, c)| serde_json::json!({
                "id": number as i64 * 100 + i as i64, "user": {"login": "helper", "id": 2}, "body": c,
                "created_at": "2024-05-01T10:00:00Z", "updated_at": "2024-05-01T10:00:00Z"
            })).collect::<Vec<_>>(),
            "created_at": "2024-05-01T09:00:00Z",
            "updated_at": "2024-05-02T09:00:00Z",
            "attachments": []
        },
        "metadata": {"collection_timestamp": "2024-05-03T00:00:00Z", "tool_version": "test"}
    })
}
